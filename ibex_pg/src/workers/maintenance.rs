//! IVFFlat upkeep. CREATE INDEX CONCURRENTLY cannot run inside a transaction or a function, and
//! everything a background worker runs through SPI is both; so the indexer opens an ordinary
//! client connection to its own server for these statements (ibex.maintenance_conninfo, or the
//! local Unix socket as the bootstrap superuser).

use pgrx::prelude::*;

use super::runtime;
use crate::gucs;

const INDEX: &str = "memories_embedding_ivfflat";

struct Plan {
    live_rows: i64,
    current_lists: i32,
    target_lists: i32,
    reason: String,
}

pub fn rebuild_ivfflat_if_due() {
    let plan = runtime::transaction("ivfflat plan", || {
        Spi::get_three::<bool, i64, i32>("SELECT rebuild, live_rows, current_lists FROM ibex_ops.ivfflat_plan()")
            .ok()
            .and_then(|(rebuild, rows, current)| {
                let (target, reason) =
                    Spi::get_two::<i32, String>("SELECT target_lists, reason FROM ibex_ops.ivfflat_plan()").ok()?;
                (rebuild == Some(true)).then(|| Plan {
                    live_rows: rows.unwrap_or(0),
                    current_lists: current.unwrap_or(0),
                    target_lists: target.unwrap_or(100),
                    reason: reason.unwrap_or_default(),
                })
            })
    });
    let Ok(Some(plan)) = plan else { return };
    log!(
        "ibex indexer: rebuilding {INDEX} with {} lists (was {}; {} rows): {}",
        plan.target_lists,
        plan.current_lists,
        plan.live_rows,
        plan.reason
    );
    let detail = format!(
        r#"{{"lists": {}, "previous_lists": {}, "rows": {}, "reason": {}}}"#,
        plan.target_lists,
        plan.current_lists,
        plan.live_rows,
        serde_json::to_string(&plan.reason).unwrap_or_default()
    );
    let log_id = runtime::transaction("maintenance log", || {
        Spi::get_one_with_args::<i64>(
            "INSERT INTO ibex_ops.maintenance_log (worker, action, detail) VALUES ('indexer', 'ivfflat_rebuild', $1::jsonb) RETURNING id",
            &[detail.as_str().into()],
        )
    });
    let Ok(Ok(Some(log_id))) = log_id else { return };
    let outcome = conninfo().and_then(|c| rebuild(&c, plan.target_lists));
    let error = outcome.err();
    if let Some(e) = &error {
        warning!("ibex indexer: rebuilding {INDEX} failed: {e}");
    } else {
        log!("ibex indexer: {INDEX} rebuilt with {} lists", plan.target_lists);
    }
    let _ = runtime::transaction("maintenance log", move || {
        Spi::run_with_args(
            "UPDATE ibex_ops.maintenance_log SET finished_at = now(), error = $2 WHERE id = $1",
            &[log_id.into(), error.into()],
        )
    });
}

/// The connection string: the setting, or this server's own socket.
fn conninfo() -> Result<String, String> {
    if let Some(c) = gucs::maintenance_conninfo() {
        return Ok(c);
    }
    let parts = runtime::transaction("local conninfo", || {
        Spi::get_three::<String, String, String>(
            "SELECT split_part(current_setting('unix_socket_directories'), ',', 1), current_setting('port'), \
                    format('dbname=%s user=%s', quote_literal(current_database()), \
                           quote_literal((SELECT rolname FROM pg_roles WHERE oid = 10)))",
        )
    })
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    match parts {
        (Some(socket), Some(port), Some(rest)) => Ok(format!(
            "host='{}' port={port} {rest} application_name='ibex indexer maintenance'",
            socket.trim()
        )),
        _ => Err("cannot determine the local socket; set ibex.maintenance_conninfo".into()),
    }
}

/// Builds the replacement index beside the old one, then swaps them; readers and writers are
/// never blocked. A half-built index left by a crash is dropped first.
fn rebuild(conninfo: &str, lists: i32) -> Result<(), String> {
    let mut client = postgres::Client::connect(conninfo, postgres::NoTls).map_err(|e| format!("connect: {e}"))?;
    let statements = [
        format!("DROP INDEX CONCURRENTLY IF EXISTS ibex_core.{INDEX}_next"),
        format!(
            "CREATE INDEX CONCURRENTLY {INDEX}_next ON ibex_core.memories \
             USING ivfflat (embedding vector_cosine_ops) WITH (lists = {lists})"
        ),
        format!("DROP INDEX CONCURRENTLY IF EXISTS ibex_core.{INDEX}"),
        format!("ALTER INDEX ibex_core.{INDEX}_next RENAME TO {INDEX}"),
    ];
    for sql in &statements {
        // One statement per call: CONCURRENTLY refuses to run inside a multi-statement batch.
        client.batch_execute(sql).map_err(|e| format!("{sql}: {e}"))?;
    }
    Ok(())
}
