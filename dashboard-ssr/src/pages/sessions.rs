//! placeholder
use crate::render::PageError;
pub async fn list() -> PageError { PageError::NotFound }
pub async fn detail() -> PageError { PageError::NotFound }
pub async fn replay() -> PageError { PageError::NotFound }
