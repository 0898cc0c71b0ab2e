use std::cell::Cell;

use pgrx::prelude::*;
use pgrx::{register_xact_callback, PgXactCallbackEvent};

use crate::workers;

thread_local! {
    /// Whether this transaction already arranged a wake-up (many sessions may complete in one).
    static WAKE_PENDING: Cell<bool> = const { Cell::new(false) };
}

/// Wakes the extraction workers when the current transaction commits (so they see its rows).
/// Called by the trigger on ibex_core.sessions; background workers cannot LISTEN, so this is
/// their NOTIFY. Harmless to call often: one wake-up per transaction. SECURITY DEFINER because
/// pg_stat_activity hides other users' processes (the workers run as the bootstrap superuser)
/// from application roles; the function does nothing but look the workers up and wake them.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
fn ibex_wake_extraction_workers() {
    if WAKE_PENDING.get() {
        return;
    }
    let pids: Vec<i32> = Spi::connect(|client| {
        client
            .select(
                "SELECT pid FROM pg_catalog.pg_stat_activity WHERE backend_type = 'ibex extraction'",
                None,
                &[],
            )
            .map(|rows| rows.filter_map(|row| row.get::<i32>(1).ok().flatten()).collect())
            .unwrap_or_default()
    });
    if pids.is_empty() {
        return;
    }
    WAKE_PENDING.set(true);
    register_xact_callback(PgXactCallbackEvent::Commit, move || {
        WAKE_PENDING.set(false);
        pids.iter().for_each(|&pid| workers::set_latch_of(pid));
    });
    register_xact_callback(PgXactCallbackEvent::Abort, || WAKE_PENDING.set(false));
}
