//! `ibex migrate`: applies sql/migrations (embedded in the binary at build time) with sqlx's
//! migrator, which records each applied migration and its checksum in `_sqlx_migrations` and
//! refuses to run if an applied file was later edited.

use std::collections::HashSet;
use std::time::Instant;

use anyhow::Context;
use sqlx::migrate::Migrator;
use sqlx::Connection;

pub static MIGRATOR: Migrator = sqlx::migrate!("../sql/migrations");

async fn applied_versions(conn: &mut sqlx::PgConnection) -> anyhow::Result<HashSet<i64>> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('public._sqlx_migrations') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await?;
    if !exists {
        return Ok(HashSet::new());
    }
    let rows: Vec<i64> = sqlx::query_scalar("SELECT version FROM public._sqlx_migrations WHERE success")
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows.into_iter().collect())
}

/// Applies pending migrations; returns the versions applied (empty when up to date).
pub async fn run(url: &str) -> anyhow::Result<Vec<i64>> {
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .context("connecting for migrations")?;
    let before = applied_versions(&mut conn).await?;
    let pending: Vec<_> = MIGRATOR.iter().filter(|m| !before.contains(&m.version)).collect();
    if pending.is_empty() {
        tracing::info!(applied = before.len(), "database is up to date; nothing to apply");
        return Ok(Vec::new());
    }
    for m in &pending {
        tracing::info!(version = m.version, description = %m.description, "pending migration");
    }
    let started = Instant::now();
    MIGRATOR.run(&mut conn).await.map_err(explain)?;
    let versions: Vec<i64> = pending.iter().map(|m| m.version).collect();
    tracing::info!(
        count = versions.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "migrations applied"
    );
    Ok(versions)
}

/// The migrator's error, with what to do about the one an operator meets most: a database
/// migrated by a build whose copy of an applied migration differs from this one's.
fn explain(error: sqlx::migrate::MigrateError) -> anyhow::Error {
    match error {
        sqlx::migrate::MigrateError::VersionMismatch(version) => anyhow::anyhow!(
            "migration {version} was applied to this database from a different file than this build's \
             sql/migrations/{version:04}_*.sql; applied migrations are never edited, so this database \
             was migrated by another build. Run the build that migrated it, or (a disposable dev \
             database) recreate it: make clean-data && make run"
        ),
        other => anyhow::Error::new(other).context("applying migrations"),
    }
}

pub async fn print_status(url: &str) -> anyhow::Result<()> {
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .context("connecting for migrations")?;
    let applied = applied_versions(&mut conn).await?;
    for m in MIGRATOR.iter() {
        let state = if applied.contains(&m.version) {
            "applied"
        } else {
            "pending"
        };
        println!("{:04} {:<8} {}", m.version, state, m.description);
    }
    Ok(())
}
