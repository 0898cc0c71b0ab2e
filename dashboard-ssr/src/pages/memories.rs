//! placeholder
use crate::render::PageError;
pub async fn list() -> PageError { PageError::NotFound }
pub async fn detail() -> PageError { PageError::NotFound }
pub async fn confirm_delete() -> PageError { PageError::NotFound }
pub async fn delete() -> PageError { PageError::NotFound }
