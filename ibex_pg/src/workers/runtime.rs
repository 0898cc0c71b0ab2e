//! The loop every IBEX worker runs: signals, one transaction per unit of work, errors caught and
//! logged so a bad unit never takes the worker down.

use std::time::Duration;

use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;

use super::entry;
use crate::gucs;

/// Signal handlers and the database connection; call once at worker start.
pub fn start(name: &str) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let database = gucs::database();
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    // pg_stat_activity shows which worker is which (and tests terminate a given one).
    let _ = transaction("naming the worker", || {
        Spi::run_with_args("SELECT set_config('application_name', $1, false)", &[name.into()])
    });
    log!("{name} started (database {database})");
}

/// Sleeps up to `timeout` (a latch set wakes it early). Returns false once the worker should stop.
pub fn sleep(timeout: Duration) -> bool {
    if entry::shutdown_requested() {
        return false;
    }
    let alive = BackgroundWorker::wait_latch(Some(timeout));
    if BackgroundWorker::sighup_received() {
        entry::reload_config();
    }
    alive && !entry::shutdown_requested()
}

/// Whether the migrations that define `function` have run (a worker waits for them).
pub fn function_exists(function: &str) -> bool {
    let function = function.to_string();
    transaction("schema check", move || {
        Spi::get_one_with_args::<bool>("SELECT to_regproc($1) IS NOT NULL", &[function.as_str().into()])
    })
    .ok()
    .and_then(|r| r.ok().flatten())
    .unwrap_or(false)
}

pub fn stopping() -> bool {
    entry::shutdown_requested()
}

/// Runs `work` in its own transaction. An ERROR (or a Rust panic) rolls the transaction back and
/// comes back as `Err(message)`; the worker goes on with the next unit.
pub fn transaction<R>(what: &str, work: impl FnOnce() -> R + std::panic::UnwindSafe) -> Result<R, String> {
    entry::begin_transaction();
    let result = PgTryBuilder::new(move || {
        let value = work();
        entry::commit_transaction();
        Ok(value)
    })
    .catch_others(|e| Err(describe(&e)))
    .execute();
    if let Err(message) = &result {
        entry::abort_transaction();
        warning!("{what} failed: {message}");
    }
    result
}

fn describe(e: &CaughtError) -> String {
    match e {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => match r.detail() {
            Some(detail) => format!("{} ({detail})", r.message()),
            None => r.message().to_string(),
        },
        CaughtError::RustPanic { ereport, .. } => format!("panic: {}", ereport.message()),
    }
}
