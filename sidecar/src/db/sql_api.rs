//! The files of sql/api: every function, trigger function, trigger and view, as `CREATE OR
//! REPLACE` statements, applied after the migrations in the order of sql/api/ORDER (embedded at
//! build time by build.rs).
//!
//! Each file runs in its own transaction, as the migration runner's (superuser) role; a file sets
//! the role its objects belong to itself (`SET LOCAL ROLE ibex_owner`). Its SHA-256 is recorded in
//! `ibex_ops.sql_api_files`: an unchanged file is skipped, a changed one applied again. A changed
//! signature cannot be replaced (Postgres refuses to change a function's result type in place),
//! so such a change needs a `DROP FUNCTION` in a new migration; after any migration ran, every
//! file is applied again, so whatever a migration dropped is recreated.

use std::collections::HashMap;

use anyhow::Context;
use ibex_engine::content::sha256_hex;

include!(concat!(env!("OUT_DIR"), "/sql_api.rs"));

#[derive(sqlx::FromRow)]
struct AppliedFile {
    file: String,
    sha256: String,
}

async fn recorded(conn: &mut sqlx::PgConnection) -> anyhow::Result<HashMap<String, String>> {
    let rows: Vec<AppliedFile> = sqlx::query_as("SELECT file, sha256 FROM ibex_ops.sql_api_files")
        .fetch_all(&mut *conn)
        .await
        .context("reading ibex_ops.sql_api_files (is migration 0010 applied?)")?;
    Ok(rows.into_iter().map(|r| (r.file, r.sha256)).collect())
}

/// Applies the files whose text changed since they were last applied (all of them with `all`);
/// returns their names in the order applied.
pub async fn apply(conn: &mut sqlx::PgConnection, all: bool) -> anyhow::Result<Vec<&'static str>> {
    let known = recorded(conn).await?;
    let mut applied = Vec::new();
    for &(file, sql) in SQL_API_FILES {
        let hash = sha256_hex(sql.as_bytes());
        if !all && known.get(file) == Some(&hash) {
            continue;
        }
        apply_one(conn, file, sql, &hash).await?;
        tracing::info!(file, "applied sql/api file");
        applied.push(file);
    }
    Ok(applied)
}

async fn apply_one(conn: &mut sqlx::PgConnection, file: &str, sql: &str, hash: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut tx = conn.begin().await?;
    sqlx::raw_sql(sql)
        .execute(&mut *tx)
        .await
        .with_context(|| format!("applying sql/api/{file}"))?;
    // The file may have switched roles; the record is written by the runner itself.
    sqlx::query("RESET ROLE").execute(&mut *tx).await?;
    sqlx::query(
        "INSERT INTO ibex_ops.sql_api_files (file, sha256) VALUES ($1, $2)
         ON CONFLICT (file) DO UPDATE SET sha256 = excluded.sha256, applied_at = now()",
    )
    .bind(file)
    .bind(hash)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Each file of this build with its state in the database: `applied`, `changed` or `pending`.
pub async fn status(conn: &mut sqlx::PgConnection) -> anyhow::Result<Vec<(&'static str, &'static str)>> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('ibex_ops.sql_api_files') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await?;
    let known = if exists { recorded(conn).await? } else { HashMap::new() };
    Ok(SQL_API_FILES
        .iter()
        .map(|&(file, sql)| {
            let state = match known.get(file) {
                Some(h) if *h == sha256_hex(sql.as_bytes()) => "applied",
                Some(_) => "changed",
                None => "pending",
            };
            (file, state)
        })
        .collect())
}
