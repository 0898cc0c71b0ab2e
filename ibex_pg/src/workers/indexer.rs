//! The "ibex indexer" worker: drains index events from the outbox (relationship linking), folds
//! recorded reads into access counts, keeps the IVFFlat index sized to the table, and trims the
//! outbox. The work itself is SQL (sql/api/indexer.sql); this loop schedules it.

use std::time::{Duration, Instant};

use pgrx::prelude::*;

use super::{maintenance, runtime};
use crate::gucs;

const NAME: &str = "ibex indexer";
const EVENT_BATCH: i32 = 200;
const ACCESS_BATCH: i32 = 5000;
/// Waiting for migrations: no need to poll fast.
const SCHEMA_POLL: Duration = Duration::from_secs(10);
const REBUILD_CHECK_EVERY: Duration = Duration::from_secs(30);
const CLEANUP_EVERY: Duration = Duration::from_secs(3600);

pub fn run() {
    runtime::start(NAME);
    let mut last_rebuild_check: Option<Instant> = None;
    let mut last_cleanup: Option<Instant> = None;
    let mut waiting_logged = false;
    let mut nap = Duration::ZERO;
    while runtime::sleep(nap) {
        nap = Duration::from_millis(gucs::indexer_naptime_ms());
        if !runtime::function_exists("ibex_ops.fold_memory_access") {
            if !waiting_logged {
                log!(
                    "{NAME}: ibex_ops schema not found in database {}; waiting for migrations",
                    gucs::database()
                );
                waiting_logged = true;
            }
            nap = SCHEMA_POLL;
            continue;
        }
        waiting_logged = false;
        drain("index events", "SELECT ibex_ops.process_index_events($1)", EVENT_BATCH);
        drain("access folding", "SELECT ibex_ops.fold_memory_access($1)", ACCESS_BATCH);
        if due(&mut last_rebuild_check, REBUILD_CHECK_EVERY) && !runtime::stopping() {
            maintenance::rebuild_ivfflat_if_due();
        }
        if due(&mut last_cleanup, CLEANUP_EVERY) {
            let hours = gucs::outbox_retention_hours();
            let _ = runtime::transaction("outbox cleanup", move || {
                Spi::get_one_with_args::<i32>("SELECT ibex_ops.cleanup_outbox($1)", &[hours.into()])
            });
        }
    }
    log!("{NAME} stopping");
}

/// Calls a batch function until it reports a short batch (or shutdown), one transaction per batch.
fn drain(what: &str, sql: &'static str, batch: i32) {
    while !runtime::stopping() {
        let done = runtime::transaction(what, move || Spi::get_one_with_args::<i32>(sql, &[batch.into()]));
        match done {
            Ok(Ok(Some(n))) if n >= batch => continue,
            _ => break,
        }
    }
}

fn due(last: &mut Option<Instant>, every: Duration) -> bool {
    if last.is_some_and(|t| t.elapsed() < every) {
        return false;
    }
    *last = Some(Instant::now());
    true
}
