use pgrx::prelude::*;

/// Version of the extension library loaded in this backend.
#[pg_extern(stable, parallel_safe)]
fn ibex_version() -> String {
    format!("ibex_pg {}", env!("CARGO_PKG_VERSION"))
}

/// The memory categories, in section order (`ibex_engine::category::Category`): what
/// `ibex_core.assert_category` accepts, so the list exists once.
#[pg_extern(immutable, parallel_safe)]
fn ibex_memory_categories() -> Vec<String> {
    ibex_engine::category::Category::names().map(str::to_string).to_vec()
}
