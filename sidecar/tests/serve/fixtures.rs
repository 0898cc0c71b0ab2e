//! Tenants, tokens, memories and directives in the test database, a gRPC client, and a TCP proxy
//! that delays traffic. Every test makes its own org, so tests can share one database.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ibex_sidecar::grpc::proto::context::v1 as pb;
use pb::context_service_client::ContextServiceClient;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

use crate::common::env;
pub use crate::common::{admin_pool as admin, admin_url};

/// Tests about what is assembled (not how fast) allow a generous deadline: the test machine runs
/// many servers and model inferences at once, and a 40 ms deadline would make them degrade
/// at random. The deadline itself is tested with its default.
pub const RELAXED_DEADLINE: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug)]
pub struct Tenant {
    pub org: Uuid,
    pub agent: Uuid,
}

/// A fresh org with one agent.
pub async fn tenant(admin: &PgPool, label: &str) -> Tenant {
    let (org, agent) = crate::common::org_with_agent(admin, label).await;
    Tenant { org, agent }
}

/// The answer's section of this kind (every answer has all five).
pub fn section(r: &pb::AssembleContextResponse, kind: pb::SectionKind) -> &pb::Section {
    r.sections
        .iter()
        .find(|s| s.kind == kind as i32)
        .expect("section present")
}

/// The answer's timing of this source.
pub fn timing<'a>(r: &'a pb::AssembleContextResponse, name: &str) -> &'a pb::DependencyTiming {
    r.timings
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("timing {name}: {r:?}"))
}

pub async fn add_agent(admin: &PgPool, org: Uuid, agent: Uuid, name: &str) {
    sqlx::query("INSERT INTO ibex_core.agents (org_id, id, name) VALUES ($1, $2, $3)")
        .bind(org)
        .bind(agent)
        .bind(name)
        .execute(admin)
        .await
        .expect("agent");
}

/// A new API token (through the same code as `ibex token create`).
pub async fn token(org: Uuid, scopes: &str, agent: Option<Uuid>) -> String {
    ibex_sidecar::admin::create_token(&admin_url(), org, "test", scopes, agent, None)
        .await
        .expect("token")
        .token
}

/// Stores a memory through `ibex_core.remember`; returns its id. Supersession is switched off
/// (threshold 0.999) so that similar test sentences stay separate memories.
pub async fn remember(admin: &PgPool, t: Tenant, content: &str, category: &str) -> Uuid {
    let mut tx = admin.begin().await.unwrap();
    sqlx::query(
        "SELECT set_config('ibex.org_id', $1, true), set_config('ibex.near_duplicate_threshold', '0.999', true)",
    )
    .bind(t.org.to_string())
    .execute(&mut *tx)
    .await
    .unwrap();
    let id: Uuid = sqlx::query_scalar("SELECT memory_id FROM ibex_core.remember($1, $2, $3, $4, 0.9)")
        .bind(t.org)
        .bind(t.agent)
        .bind(content)
        .bind(category)
        .fetch_one(&mut *tx)
        .await
        .expect("remember");
    tx.commit().await.unwrap();
    id
}

pub async fn in_org(admin: &PgPool, org: Uuid, sql: &str, id: Uuid) {
    let mut tx = admin.begin().await.unwrap();
    sqlx::query("SELECT set_config('ibex.org_id', $1, true)")
        .bind(org.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(sql).bind(org).bind(id).execute(&mut *tx).await.expect(sql);
    tx.commit().await.unwrap();
}

pub async fn forget(admin: &PgPool, t: Tenant, memory: Uuid) {
    in_org(admin, t.org, "SELECT ibex_core.forget($1, $2)", memory).await;
}

pub async fn directive(admin: &PgPool, t: Tenant, name: &str, content: &str, priority: i32) {
    sqlx::query(
        "INSERT INTO ibex_core.directives (org_id, agent_id, name, content, priority) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(t.org)
    .bind(t.agent)
    .bind(name)
    .bind(content)
    .bind(priority)
    .execute(admin)
    .await
    .expect("directive");
}

pub async fn grpc(addr: SocketAddr) -> ContextServiceClient<tonic::transport::Channel> {
    ContextServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("gRPC connects")
}

pub fn message(role: &str, content: &str) -> pb::ChatMessage {
    pb::ChatMessage {
        role: role.into(),
        content: content.into(),
    }
}

pub fn request(t: Tenant, model: &str, messages: Vec<pb::ChatMessage>) -> pb::AssembleContextRequest {
    pb::AssembleContextRequest {
        org_id: t.org.to_string(),
        agent_id: t.agent.to_string(),
        model: model.into(),
        messages,
        max_output_tokens: None,
        session_id: None,
        ..Default::default()
    }
}

pub fn authorized<T>(body: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(body);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

pub async fn assemble(
    client: &mut ContextServiceClient<tonic::transport::Channel>,
    token: &str,
    body: pb::AssembleContextRequest,
) -> Result<pb::AssembleContextResponse, tonic::Status> {
    client
        .assemble_context(authorized(body, token))
        .await
        .map(tonic::Response::into_inner)
}

/// Polls `check` every 50 ms until it holds or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The members of an agent's hot set in Redis, best first.
pub async fn hot_members(redis: &mut redis::aio::MultiplexedConnection, t: Tenant) -> Vec<String> {
    redis::cmd("ZRANGE")
        .arg(ibex_sidecar::hotcache::set_key(t.org, t.agent))
        .arg(0)
        .arg(-1)
        .arg("REV")
        .query_async(redis)
        .await
        .unwrap()
}

/// A TCP proxy in front of `target` that holds every chunk for the current delay, both ways.
pub struct DelayProxy {
    pub addr: SocketAddr,
    delay_ms: Arc<AtomicU64>,
}

impl DelayProxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let delay_ms = Arc::new(AtomicU64::new(0));
        let delay = Arc::clone(&delay_ms);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let delay = Arc::clone(&delay);
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::spawn(pump(cr, sw, Arc::clone(&delay)));
                    tokio::spawn(pump(sr, cw, delay));
                });
            }
        });
        Self { addr, delay_ms }
    }

    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Arc<AtomicU64>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let ms = delay.load(Ordering::SeqCst);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// The application-role URL with its host and port replaced (e.g. by a proxy's).
pub fn database_url_via(addr: SocketAddr) -> String {
    let url = env("IBEX_DATABASE_URL");
    let (scheme_and_user, rest) = url.split_once('@').expect("URL with credentials");
    let path = &rest[rest.find('/').expect("URL with a database")..];
    format!("{scheme_and_user}@{addr}{path}")
}

/// The Postgres address of the application-role URL.
pub fn database_addr() -> SocketAddr {
    let url = env("IBEX_DATABASE_URL");
    let (_, rest) = url.split_once('@').unwrap();
    let hostport = &rest[..rest.find('/').unwrap()];
    hostport.parse().expect("host:port")
}

/// A loopback port with nothing listening.
pub async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}
