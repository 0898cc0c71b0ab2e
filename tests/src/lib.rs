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
