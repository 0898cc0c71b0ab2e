//! The REST API's way to the AuthService: a gRPC client over a lazily connected channel (the
//! service may be this process, on its gRPC address, or another sidecar). Its refusals come back
//! as the same [`ApiError`]s the validator raised, so the REST envelope says what it would have
//! said in process.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tonic::transport::{Channel, Endpoint};
use uuid::Uuid;

use super::validator::Validated;
use super::Principal;
use crate::error::ApiError;
use crate::grpc::proto::auth::v1::auth_service_client::AuthServiceClient;
use crate::grpc::proto::auth::v1::{ValidateTokenRequest, ValidateTokenResponse};

/// A validation that takes longer than this is a failing dependency, not a slow answer.
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct AuthClient {
    client: AuthServiceClient<Channel>,
}

impl AuthClient {
    /// A client of the AuthService at `url` (`http://host:port`); connects on first use.
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let channel = Endpoint::from_shared(url.to_string())?
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .tcp_nodelay(true)
            .connect_lazy();
        Ok(Self {
            client: AuthServiceClient::new(channel),
        })
    }

    pub async fn validate(&self, token: &str, source: &str) -> Result<Validated, ApiError> {
        let request = ValidateTokenRequest {
            token: token.to_string(),
            source: source.to_string(),
        };
        match self.client.clone().validate_token(request).await {
            Ok(response) => from_response(response.into_inner()),
            Err(status) => Err(from_status(&status)),
        }
    }
}

fn from_response(r: ValidateTokenResponse) -> Result<Validated, ApiError> {
    let bad = |what: &str| ApiError::Internal(format!("the AuthService answered an invalid {what}"));
    let optional = |text: &str, what: &str| -> Result<Option<Uuid>, ApiError> {
        if text.is_empty() {
            Ok(None)
        } else {
            text.parse().map(Some).map_err(|_| bad(what))
        }
    };
    Ok(Validated {
        principal: Principal {
            token_id: r.token_id.parse().map_err(|_| bad("token id"))?,
            org_id: r.org_id.parse().map_err(|_| bad("org id"))?,
            agent_id: optional(&r.agent_id, "agent id")?,
            user_id: optional(&r.user_id, "user id")?,
            scopes: r.scopes,
        },
        expires_at: (r.expires_at_unix_ms != 0)
            .then(|| DateTime::<Utc>::from_timestamp_millis(r.expires_at_unix_ms))
            .flatten(),
    })
}

fn from_status(status: &tonic::Status) -> ApiError {
    match status.code() {
        tonic::Code::Unauthenticated => ApiError::Unauthenticated(status.message().to_string()),
        tonic::Code::ResourceExhausted => {
            let retry_after_ms = status
                .metadata()
                .get("retry-after-ms")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1000);
            ApiError::RateLimited {
                retry_after: Duration::from_millis(retry_after_ms),
                limit: status.message().to_string(),
            }
        }
        _ => ApiError::Unavailable {
            public: "authentication is unavailable; retry shortly".into(),
            detail: format!("AuthService: {status}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_and_refusals_map_back() {
        let validated = from_response(ValidateTokenResponse {
            token_id: Uuid::from_u128(1).to_string(),
            org_id: Uuid::from_u128(2).to_string(),
            agent_id: String::new(),
            user_id: Uuid::from_u128(3).to_string(),
            scopes: vec!["agents:read".into()],
            expires_at_unix_ms: 0,
        })
        .unwrap();
        assert_eq!(validated.principal.agent_id, None);
        assert_eq!(validated.principal.user_id, Some(Uuid::from_u128(3)));
        assert_eq!(validated.expires_at, None);
        assert_eq!(
            from_status(&tonic::Status::unauthenticated("revoked")).code(),
            "unauthenticated"
        );
        let mut limited = tonic::Status::resource_exhausted("slow down");
        limited.metadata_mut().insert("retry-after-ms", 2500u64.into());
        let ApiError::RateLimited { retry_after, .. } = from_status(&limited) else {
            panic!("not a rate limit")
        };
        assert_eq!(retry_after, Duration::from_millis(2500));
        assert_eq!(from_status(&tonic::Status::internal("x")).code(), "unavailable");
    }
}
