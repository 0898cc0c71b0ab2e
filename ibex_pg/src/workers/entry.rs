//! The C entry points Postgres calls, and the few raw Postgres calls the workers need.
#![allow(unsafe_code)]

use pgrx::pg_sys;
use pgrx::prelude::*;

/// True while Postgres loads shared_preload_libraries (the only time workers can be registered).
pub fn preloading() -> bool {
    // SAFETY: a plain global flag of the postmaster, read on the main thread during _PG_init.
    unsafe { pg_sys::process_shared_preload_libraries_in_progress }
}

/// Entry point of the "ibex indexer" background worker (named in its registration).
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn ibex_indexer_main(_arg: pg_sys::Datum) {
    super::indexer::run();
    // Exit code 1 asks the postmaster to restart the worker (after SIGTERM from
    // pg_terminate_backend, say); during shutdown it is not restarted anyway. Exit code 0 would
    // unregister the worker for good.
    // SAFETY: proc_exit runs the backend's exit callbacks and never returns.
    unsafe { pg_sys::proc_exit(1) }
}

/// Re-reads postgresql.conf after SIGHUP.
pub fn reload_config() {
    // SAFETY: called from the worker's main loop, outside any transaction, as Postgres' own
    // background processes do.
    unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) }
}

/// Whether SIGTERM arrived (pgrx's handler sets the flag; reading it does not clear it).
pub fn shutdown_requested() -> bool {
    // SAFETY: a sig_atomic_t written by the signal handler; a volatile read is how C reads it.
    unsafe { (&raw const pg_sys::ShutdownRequestPending).read_volatile() != 0 }
}

/// Starts a transaction with a snapshot, as a top-level command would.
pub fn begin_transaction() {
    // SAFETY: called only from the worker's loop between transactions.
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
}

pub fn commit_transaction() {
    // SAFETY: pairs with begin_transaction; an ERROR here unwinds into the caller's PgTryBuilder.
    unsafe {
        pg_sys::PopActiveSnapshot();
        pg_sys::CommitTransactionCommand();
    }
}

pub fn abort_transaction() {
    // SAFETY: after a caught ERROR the transaction is in an aborted state; this is Postgres'
    // own recovery path (it also pops the active snapshot and resets memory contexts).
    unsafe { pg_sys::AbortCurrentTransaction() }
}

/// Entry point of each "ibex extraction N" background worker; the argument is N.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn ibex_extraction_main(arg: pg_sys::Datum) {
    super::extractor::run(arg.value() as i32);
    // Exit code 1: restarted by the postmaster (see ibex_indexer_main).
    // SAFETY: proc_exit runs the backend's exit callbacks and never returns.
    unsafe { pg_sys::proc_exit(1) }
}

/// Sets the latch of the backend with this pid, if it still exists: a background worker waiting
/// in WaitLatch wakes up at once.
pub fn set_latch_of(pid: i32) {
    // SAFETY: BackendPidGetProc takes ProcArrayLock and returns the live PGPROC of pid or NULL;
    // a PGPROC's latch stays valid for the life of the shared memory segment, and SetLatch on
    // the latch of a process that has exited meanwhile is harmless.
    unsafe {
        let proc_ = pg_sys::BackendPidGetProc(pid);
        if !proc_.is_null() {
            pg_sys::SetLatch(&raw mut (*proc_).procLatch);
        }
    }
}
