//! `grpc.health.v1.Health` (tonic-health): the overall service (""), `ibex.embedding` and
//! `ibex.context.v1.ContextService` are NOT_SERVING until the model is loaded and warmed up, and
//! again once shutdown starts. The database and Redis are not consulted: context assembly
//! degrades without them rather than stopping.

use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::server::{health_reporter, HealthReporter};
use tonic_health::ServingStatus;

/// Health service name of the embedding API.
pub const EMBEDDING_SERVICE: &str = "ibex.embedding";
/// Health service name of context assembly (it embeds the query with the same model).
pub const CONTEXT_SERVICE: &str = "ibex.context.v1.ContextService";
/// The service names this process reports on; "" is the whole server, per the gRPC health spec.
const REPORTED: [&str; 3] = ["", EMBEDDING_SERVICE, CONTEXT_SERVICE];

#[derive(Clone)]
pub struct HealthStatus {
    reporter: HealthReporter,
}

impl HealthStatus {
    /// A reporter with every service NOT_SERVING, and the gRPC service that publishes it.
    pub async fn new() -> (Self, HealthServer<impl Health>) {
        let (reporter, service) = health_reporter();
        let status = Self { reporter };
        status.set(ServingStatus::NotServing).await;
        (status, service)
    }

    pub async fn set_serving(&self) {
        self.set(ServingStatus::Serving).await;
    }

    pub async fn set_not_serving(&self) {
        self.set(ServingStatus::NotServing).await;
    }

    async fn set(&self, status: ServingStatus) {
        for name in REPORTED {
            self.reporter.set_service_status(name, status).await;
        }
    }
}
