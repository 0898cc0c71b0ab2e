//! Database access: the connection pool and org-scoped transactions.
mod legacy;
pub mod migrate;
pub mod outbox_wakeup;
pub mod sql_api;

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

/// The pool `ibex serve` uses: lazy like [`connect_lazy`], and every new connection loads the
/// embedding model in its backend (`SELECT ibex_embed(...)`, about 200 ms) before it is handed out,
/// so that cost never lands inside the 40 ms context-assembly deadline. `warm` connections are
/// kept open (no idle timeout or lifetime for them: a backend's loaded model is worth keeping);
/// [`warm_up`] opens them at start.
pub fn connect_lazy_warm(url: &str, max_connections: u32, warm: u32) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::from_str(url)?.application_name("ibex-sidecar");
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(warm.min(max_connections))
        .idle_timeout(None)
        .max_lifetime(None)
        .acquire_timeout(Duration::from_secs(5))
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                // Best effort: a database without the extension (not migrated yet) still connects.
                if let Err(e) = sqlx::query("SELECT ibex_embed('warm-up')").execute(&mut *conn).await {
                    tracing::debug!(error = %e, "warming a new connection failed");
                }
                Ok(())
            })
        })
        .connect_lazy_with(options))
}

/// Opens `count` connections at once (each warmed by the pool's after-connect hook) and returns
/// them to the pool. Failures are logged: the database may come later.
pub async fn warm_up(pool: &PgPool, count: u32) {
    let started = std::time::Instant::now();
    let acquired = futures_util::future::join_all((0..count).map(|_| pool.acquire())).await;
    let ok = acquired.iter().filter(|c| c.is_ok()).count();
    match acquired.into_iter().find_map(Result::err) {
        Some(e) if ok == 0 => {
            tracing::warn!(error = %e, "could not open database connections at start; will retry on use")
        }
        _ => tracing::info!(
            connections = ok,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "database connections open and warmed"
        ),
    }
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

/// [`begin_for_org`] with a `statement_timeout` for the transaction, set in the same round trip:
/// the hot path gives up on a query it has stopped waiting for instead of letting it hold a
/// connection.
pub async fn begin_for_org_with_timeout(
    pool: &PgPool,
    org: Uuid,
    statement_timeout: Duration,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let tx = pool.begin().await?;
    set_org_and_timeout(tx, org, statement_timeout).await
}

/// A transaction for `org` whose statements must end by `deadline` (each at most `cap`). The
/// `statement_timeout` is what is left once the connection is acquired (time spent waiting for
/// the pool is not given to the query again), and a transaction begun after the deadline runs
/// nothing. The caller gives up at the deadline by itself; this only keeps late work out of
/// Postgres.
pub async fn begin_for_org_until(
    pool: &PgPool,
    org: Uuid,
    deadline: tokio::time::Instant,
    cap: Duration,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let tx = pool.begin().await?;
    let left = deadline.saturating_duration_since(tokio::time::Instant::now()).min(cap);
    if left < Duration::from_millis(1) {
        // Dropping the transaction rolls it back; nothing was sent in it yet.
        return Err(sqlx::Error::PoolTimedOut);
    }
    set_org_and_timeout(tx, org, left).await
}

async fn set_org_and_timeout(
    mut tx: Transaction<'static, Postgres>,
    org: Uuid,
    statement_timeout: Duration,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    sqlx::query("SELECT set_config('ibex.org_id', $1, true), set_config('statement_timeout', $2, true)")
        .bind(org.to_string())
        .bind(format!("{}ms", statement_timeout.as_millis().max(1)))
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// Whether `e` says the database was unreachable for a while rather than that the statement was
/// wrong: a lost or refused connection, no connection free in time, a server shutting down or
/// restarting after a crash (SQLSTATE class 08, 57P01-57P03), or a serialization failure or
/// deadlock (40001, 40P01). Retrying such a statement later can succeed.
pub fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "40001" | "40P01")
        }),
        _ => false,
    }
}
