use pgrx::prelude::*;

/// Version of the extension library loaded in this backend.
#[pg_extern(stable, parallel_safe)]
fn ibex_version() -> String {
    format!("ibex_pg {}", env!("CARGO_PKG_VERSION"))
}
