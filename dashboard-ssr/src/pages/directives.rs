//! placeholder
use crate::render::PageError;
pub async fn list() -> PageError { PageError::NotFound }
pub async fn create() -> PageError { PageError::NotFound }
pub async fn detail() -> PageError { PageError::NotFound }
pub async fn change() -> PageError { PageError::NotFound }
