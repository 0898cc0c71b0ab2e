//! Background workers, registered when the library is preloaded (shared_preload_libraries):
//! the indexer (outbox index events, access folding, IVFFlat upkeep) and, in a later module,
//! the extraction workers. Without preloading they cannot exist; _PG_init says so in the log.

mod entry;
mod extractor;
mod indexer;
mod maintenance;
mod runtime;

use std::time::Duration;

use pgrx::bgworkers::{BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::IntoDatum;

use crate::gucs;

/// How long the postmaster waits before restarting a worker that exited with an error. Short:
/// the workers keep no state outside the database, and a restart is how they recover.
const RESTART_AFTER: Duration = Duration::from_secs(5);

pub use entry::{preloading, set_latch_of};

pub fn register() {
    if gucs::indexer_enabled() {
        BackgroundWorkerBuilder::new("ibex indexer")
            .set_type("ibex indexer")
            .set_library("ibex_pg")
            .set_function("ibex_indexer_main")
            .enable_spi_access()
            .set_start_time(BgWorkerStartTime::RecoveryFinished)
            .set_restart_time(Some(RESTART_AFTER))
            .load();
    }
    for n in 1..=gucs::extraction_workers() {
        BackgroundWorkerBuilder::new(&format!("ibex extraction {n}"))
            .set_type("ibex extraction")
            .set_library("ibex_pg")
            .set_function("ibex_extraction_main")
            .set_argument(n.into_datum())
            .enable_spi_access()
            .set_start_time(BgWorkerStartTime::RecoveryFinished)
            .set_restart_time(Some(RESTART_AFTER))
            .load();
    }
}
