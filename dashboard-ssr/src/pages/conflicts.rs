//! placeholder
use crate::render::PageError;
pub async fn list() -> PageError { PageError::NotFound }
pub async fn resolve() -> PageError { PageError::NotFound }
