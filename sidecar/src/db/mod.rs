//! Database access: the connection pool and org-scoped transactions.
pub mod migrate;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use std::str::FromStr;
use std::time::Duration;
use uuid::Uuid;

/// A pool for the application role. Every connection says who it is in pg_stat_activity.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::from_str(url)?.application_name("ibex-sidecar");
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
}

/// The same pool, connecting on first use: a server starts (and reports ready) while the database
/// is still unreachable, and features that need it fail per request instead.
pub fn connect_lazy(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::from_str(url)?.application_name("ibex-sidecar");
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options))
}

/// Begins a transaction acting for `org`: `ibex.org_id` is set with `set_config(..., true)` so it
/// ends with the transaction and can never leak to the next user of a pooled connection.
pub async fn begin_for_org(pool: &PgPool, org: Uuid) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT set_config('ibex.org_id', $1, true)")
        .bind(org.to_string())
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}
