//! `ibex migrate`: brings a database to this build's schema in three steps.
//!
//! 1. [`legacy::rebaseline`]: migrations that an earlier release shipped with their functions
//!    inside are accepted under their current (tables-only) text, so databases made by those
//!    releases upgrade in place.
//! 2. sql/migrations (embedded at build time), forward-only, with sqlx's migrator: it records each
//!    applied migration and its checksum in `_sqlx_migrations` and refuses to run if an applied
//!    file was later edited.
//! 3. sql/api ([`sql_api::apply`]): functions, triggers and views, `CREATE OR REPLACE`, each file
//!    applied again when its hash changed, and all of them after any migration ran (a migration
//!    may have dropped what a file defines).

use std::collections::HashSet;
use std::time::Instant;

use anyhow::Context;
use sqlx::migrate::Migrator;
use sqlx::Connection;

use super::{legacy, sql_api};

pub static MIGRATOR: Migrator = sqlx::migrate!("../sql/migrations");

/// What one `ibex migrate` did.
#[derive(Debug, Default)]
pub struct MigrateReport {
    pub migrations: Vec<i64>,
    pub api_files: Vec<&'static str>,
}

async fn applied_versions(conn: &mut sqlx::PgConnection) -> anyhow::Result<HashSet<i64>> {
    if !legacy::migrations_table_exists(conn).await? {
        return Ok(HashSet::new());
    }
    let rows: Vec<i64> = sqlx::query_scalar("SELECT version FROM public._sqlx_migrations WHERE success")
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows.into_iter().collect())
}

/// Applies pending migrations, then the sql/api files that changed.
pub async fn run(url: &str) -> anyhow::Result<MigrateReport> {
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .context("connecting for migrations")?;
    legacy::rebaseline(&mut conn, &MIGRATOR).await?;
    let before = applied_versions(&mut conn).await?;
    let pending: Vec<_> = MIGRATOR.iter().filter(|m| !before.contains(&m.version)).collect();
    for m in &pending {
        tracing::info!(version = m.version, description = %m.description, "pending migration");
    }
    let started = Instant::now();
    if !pending.is_empty() {
        MIGRATOR.run(&mut conn).await.map_err(explain)?;
    }
    let migrations: Vec<i64> = pending.iter().map(|m| m.version).collect();
    let api_files = sql_api::apply(&mut conn, !migrations.is_empty()).await?;
    if migrations.is_empty() && api_files.is_empty() {
        tracing::info!(applied = before.len(), "database is up to date; nothing to apply");
    } else {
        tracing::info!(
            migrations = migrations.len(),
            api_files = api_files.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "database migrated"
        );
    }
    Ok(MigrateReport { migrations, api_files })
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
    for (file, state) in sql_api::status(&mut conn).await? {
        println!("api  {state:<8} {file}");
    }
    Ok(())
}
