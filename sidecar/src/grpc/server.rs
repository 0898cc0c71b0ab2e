//! The gRPC server: which services it carries, and serving them until shutdown.

use std::future::Future;

use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic_health::pb::health_server::{Health, HealthServer};

use crate::state::AppState;

/// Every gRPC service of the sidecar. New services (context assembly, auth) are added here and
/// take what they need from `state`.
pub fn services(_state: &AppState, health: HealthServer<impl Health>) -> Routes {
    let mut routes = Routes::builder();
    routes.add_service(health);
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
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await
}
