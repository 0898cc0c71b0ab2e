//! The gRPC server: which services it carries, and serving them until shutdown.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic_health::pb::health_server::{Health, HealthServer};

use super::auth::{AuthService, AuthServiceServer};
use super::context::{ContextService, ContextServiceServer};
use crate::state::AppState;

/// Every gRPC service of the sidecar; each takes what it needs from `state`.
pub fn services(state: &AppState, health: HealthServer<impl Health>) -> Routes {
    let mut routes = Routes::builder();
    routes.add_service(health);
    routes.add_service(ContextServiceServer::new(ContextService {
        engine: Arc::clone(&state.context),
        auth: Arc::clone(&state.auth),
    }));
    routes.add_service(AuthServiceServer::new(AuthService {
        validator: Arc::clone(&state.validator),
    }));
    routes.routes()
}

/// Serves `routes` on `listener` until `shutdown` completes, then lets in-flight calls finish.
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    Server::builder()
        .trace_fn(|request| tracing::info_span!("grpc_request", path = %request.uri().path()))
        .add_routes(routes)
        // Without TCP_NODELAY a response's last frame (the trailers) waits for the client's
        // delayed ACK: 40 ms on Linux, the whole context-assembly deadline.
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), shutdown)
        .await
}
