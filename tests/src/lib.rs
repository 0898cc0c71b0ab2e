//! Helpers for the end-to-end tests in `tests/tests/`: connections to the test stack that
//! `scripts/test.sh` starts, fixtures, and waiting for background work.

use std::time::{Duration, Instant};

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use uuid::Uuid;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the end-to-end tests through `make test` (scripts/test.sh e2e)")
    })
}

/// A superuser pool: fixtures, catalog queries and worker inspection (bypasses RLS).
pub async fn admin() -> PgPool {
    PgPoolOptions::new()
        .max_connections(4)
        .connect(&env("IBEX_MIGRATE_DATABASE_URL"))
        .await
        .expect("admin pool")
}

/// A pool of the application role whose connections act for `org`.
pub async fn app_for(org: Uuid) -> PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                sqlx::query("SELECT set_config('ibex.org_id', $1, false)")
                    .bind(org.to_string())
                    .execute(conn)
                    .await?;
                Ok(())
            })
        })
        .connect(&env("IBEX_DATABASE_URL"))
        .await
        .expect("app pool")
}

/// A new org with one agent: (org, agent).
pub async fn org_with_agent(admin: &PgPool, label: &str) -> (Uuid, Uuid) {
    let org = Uuid::new_v4();
    let slug = format!("{label}-{}", &org.simple().to_string()[..12]);
    sqlx::query("INSERT INTO ibex_core.orgs (id, name, slug) VALUES ($1, $2, $3)")
        .bind(org)
        .bind(label)
        .bind(slug)
        .execute(admin)
        .await
        .expect("org");
    let agent: Uuid =
        sqlx::query_scalar("INSERT INTO ibex_core.agents (org_id, name) VALUES ($1, 'assistant') RETURNING id")
            .bind(org)
            .fetch_one(admin)
            .await
            .expect("agent");
    (org, agent)
}

/// Polls `check` until it returns `Some` or `timeout` passes; panics with `what` on timeout.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An application login of its own, bound to `org` as a deployment binds one
/// (`ibex_ops.bind_login`), and a connection URL for it. The login is new for each call.
pub async fn bound_login(admin: &PgPool, org: Uuid, label: &str) -> (String, String) {
    let login = format!("app_{label}_{}", &Uuid::new_v4().simple().to_string()[..10]);
    let password = Uuid::new_v4().simple().to_string();
    create_login(admin, &login, &password).await;
    sqlx::query("SELECT ibex_ops.bind_login($1, $2)")
        .bind(&login)
        .bind(org)
        .execute(admin)
        .await
        .expect("bind_login");
    let url = login_url(&login, &password);
    (login, url)
}

/// A login that can connect but that nobody bound to an org (a member of ibex_app all the same).
pub async fn unbound_login(admin: &PgPool, label: &str) -> String {
    let login = format!("app_{label}_{}", &Uuid::new_v4().simple().to_string()[..10]);
    let password = Uuid::new_v4().simple().to_string();
    create_login(admin, &login, &password).await;
    sqlx::query(&format!("GRANT ibex_app TO \"{login}\""))
        .execute(admin)
        .await
        .expect("grant ibex_app");
    login_url(&login, &password)
}

async fn create_login(admin: &PgPool, login: &str, password: &str) {
    // Identifiers cannot be bound parameters; format() quotes them in the server.
    let ddl: String = sqlx::query_scalar("SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', $1::text, $2::text)")
        .bind(login)
        .bind(password)
        .fetch_one(admin)
        .await
        .expect("format");
    sqlx::query(&ddl).execute(admin).await.expect("create role");
}

/// The sidecar's URL (IBEX_DATABASE_URL) with another login and password.
fn login_url(login: &str, password: &str) -> String {
    let sidecar = env("IBEX_DATABASE_URL");
    let host = sidecar
        .rsplit_once('@')
        .map(|(_, h)| h)
        .expect("IBEX_DATABASE_URL has user@host");
    format!("postgres://{login}:{password}@{host}")
}
