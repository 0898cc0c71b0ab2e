//! The process-wide ONNX Runtime environment.
//!
//! `ort` allows one environment per process and loads the shared library once, so the first
//! successful load wins; later calls with another path reuse it (the extension documents that a
//! changed `ibex.ort_library_path` needs a new backend).

use std::path::Path;
use std::sync::OnceLock;

use ort::environment::Environment;

use super::EmbedError;

static ENVIRONMENT: OnceLock<Environment> = OnceLock::new();

pub(super) fn environment(library: &Path, setting: &str) -> Result<&'static Environment, EmbedError> {
    if let Some(env) = ENVIRONMENT.get() {
        return Ok(env);
    }
    if !library.is_file() {
        return Err(EmbedError::MissingFile {
            path: library.to_path_buf(),
            setting: setting.to_string(),
        });
    }
    let invalid = |message: String| EmbedError::InvalidFile {
        path: library.to_path_buf(),
        setting: setting.to_string(),
        message,
    };
    let builder = ort::init_from(library).map_err(|e| invalid(e.to_string()))?;
    let env = builder
        .with_name("ibex")
        .with_telemetry(false)
        .build()
        .map_err(|e| invalid(e.to_string()))?;
    // Two threads racing here: the loser's environment is dropped and the winner's is used.
    Ok(ENVIRONMENT.get_or_init(|| env))
}
