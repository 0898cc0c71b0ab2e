//! placeholder
use crate::render::PageError;
pub async fn show() -> PageError { PageError::NotFound }
