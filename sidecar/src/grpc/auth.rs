//! `ibex.auth.v1.AuthService/ValidateToken`: the token validator ([`TokenValidator`]) as a gRPC
//! service, for the REST API's middleware and other sidecars.

use std::net::IpAddr;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::proto::auth::v1 as pb;
use crate::auth::TokenValidator;

pub use pb::auth_service_server::AuthServiceServer;

pub struct AuthService {
    pub validator: Arc<TokenValidator>,
}

/// The caller's address as the failed-attempt limit keys it: its IP (a client reconnecting from
/// another port is the same source).
pub fn peer_source<T>(request: &Request<T>) -> String {
    request
        .remote_addr()
        .map_or_else(|| "unknown".to_string(), |addr| addr.ip().to_string())
}

/// The source an attempt is counted against: the forwarded client address when the caller is
/// this host (the sidecar's own REST middleware), otherwise the caller's own address, so a remote
/// caller cannot spread its failures over invented sources.
fn attempt_source(peer: Option<IpAddr>, forwarded: &str) -> String {
    match peer {
        Some(ip) if ip.is_loopback() && !forwarded.is_empty() => forwarded.chars().take(64).collect(),
        Some(ip) => ip.to_string(),
        None => "unknown".to_string(),
    }
}

#[tonic::async_trait]
impl pb::auth_service_server::AuthService for AuthService {
    async fn validate_token(
        &self,
        request: Request<pb::ValidateTokenRequest>,
    ) -> Result<Response<pb::ValidateTokenResponse>, Status> {
        let peer = request.remote_addr().map(|a| a.ip());
        let body = request.into_inner();
        let source = attempt_source(peer, &body.source);
        let validated = self.validator.validate(&body.token, &source).await?;
        let p = validated.principal;
        let text = |id: Option<uuid::Uuid>| id.map(|id| id.to_string()).unwrap_or_default();
        Ok(Response::new(pb::ValidateTokenResponse {
            token_id: p.token_id.to_string(),
            org_id: p.org_id.to_string(),
            agent_id: text(p.agent_id),
            user_id: text(p.user_id),
            scopes: p.scopes,
            expires_at_unix_ms: validated.expires_at.map_or(0, |t| t.timestamp_millis()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_local_caller_may_name_the_source() {
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let remote: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(attempt_source(Some(local), "203.0.113.9"), "203.0.113.9");
        assert_eq!(attempt_source(Some(local), ""), "127.0.0.1");
        assert_eq!(attempt_source(Some(remote), "203.0.113.9"), "10.1.2.3");
        assert_eq!(attempt_source(None, "x"), "unknown");
    }
}
