//! Shared set-up for tests against the migrated test database (scripts/test.sh exports the URLs).
#![allow(dead_code)]

use sqlx::PgPool;
use uuid::Uuid;

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run these tests through `make test-sidecar` (scripts/test.sh), which \
             starts the test stack; or `scripts/stack.sh up test`, then \
             `eval \"$(scripts/stack.sh urls test)\"` and export IBEX_MIGRATE_DATABASE_URL, \
             IBEX_DATABASE_URL and IBEX_REDIS_URL"
        )
    })
}

/// The superuser URL of the test database (what `ibex migrate` uses).
pub fn admin_url() -> String {
    env("IBEX_MIGRATE_DATABASE_URL")
}

/// A superuser pool (bypasses RLS): for fixtures and catalog queries.
pub async fn admin_pool() -> PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&admin_url())
        .await
        .expect("admin pool")
}

/// A pool of the application role, subject to row-level security. One connection, so tests
/// see what happens when the same pooled connection serves different orgs in turn.
pub async fn app_pool() -> PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&env("IBEX_DATABASE_URL"))
        .await
        .expect("app pool")
}

/// A fresh org with one agent; returns (org, agent).
pub async fn org_with_agent(admin: &PgPool, label: &str) -> (Uuid, Uuid) {
    let org = Uuid::new_v4();
    let agent = Uuid::new_v4();
    let slug = format!("{label}-{}", &org.simple().to_string()[..8]);
    sqlx::query("INSERT INTO ibex_core.orgs (id, name, slug) VALUES ($1, $2, $3)")
        .bind(org)
        .bind(label)
        .bind(&slug)
        .execute(admin)
        .await
        .expect("org");
    sqlx::query("INSERT INTO ibex_core.agents (org_id, id, name) VALUES ($1, $2, 'assistant')")
        .bind(org)
        .bind(agent)
        .execute(admin)
        .await
        .expect("agent");
    (org, agent)
}
