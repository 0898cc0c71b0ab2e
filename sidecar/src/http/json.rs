//! `ApiJson<T>`: axum's `Json` extractor whose rejections (bad syntax, wrong shape, body over the
//! limit, wrong content type) come back in the error envelope instead of axum's plain text.

use axum::extract::{FromRequest, Request};
use axum::Json;

use crate::error::ApiError;

pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(request, state).await?;
        Ok(Self(value))
    }
}
