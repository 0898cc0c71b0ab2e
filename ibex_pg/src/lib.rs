//! ibex_pg: IBEX inside PostgreSQL. Thin adapters over `ibex_engine`: the SQL functions
//! (`api/`), Postgres glue (`postgres/`), settings (`gucs.rs`).

use pgrx::prelude::*;

mod api;
mod gucs;
mod postgres;
mod workers;

::pgrx::pg_module_magic!();

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    gucs::init();
    if workers::preloading() {
        workers::register();
    } else {
        log!(
            "ibex_pg is not in shared_preload_libraries: its background workers (indexer, extraction) are not running"
        );
    }
}

#[cfg(any(test, feature = "pg_test"))]
mod tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    /// The test cluster gets the model from the same place as the project's own clusters.
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        let vendor =
            std::env::var("IBEX_VENDOR").unwrap_or_else(|_| format!("{}/../.ibex/vendor", env!("CARGO_MANIFEST_DIR")));
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        vec![
            leak(format!("ibex.model_dir = '{vendor}/model'")),
            leak(format!(
                "ibex.ort_library_path = '{vendor}/onnxruntime/libonnxruntime.so.1.32.0'"
            )),
            "shared_preload_libraries = 'ibex_pg'",
        ]
    }
}
