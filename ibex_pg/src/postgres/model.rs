//! The embedding model of this backend: loaded on first use, never per call, and reloaded only
//! when the settings that shape it change.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

use ibex_engine::{Embedder, EmbedderConfig};

use crate::gucs;
use crate::postgres::errors::SqlError;

#[derive(Clone, PartialEq)]
struct LoadedWith {
    model_dir: PathBuf,
    threads: usize,
}

thread_local! {
    // Postgres runs every SQL function on the backend's one thread.
    static MODEL: RefCell<Option<(LoadedWith, Rc<Embedder>)>> = const { RefCell::new(None) };
}

/// The backend's embedder, loading it if needed. Failures are not cached: fixing the setting and
/// calling again works without a reconnect.
pub fn embedder() -> Result<Rc<Embedder>, SqlError> {
    let model_dir =
        gucs::model_dir().ok_or_else(|| unset("ibex.model_dir", "the directory with model.onnx and tokenizer.json"))?;
    let ort_library = gucs::ort_library_path()
        .ok_or_else(|| unset("ibex.ort_library_path", "libonnxruntime.so (installed by `make setup`)"))?;
    let wanted = LoadedWith {
        model_dir: model_dir.clone(),
        threads: gucs::inference_threads(),
    };
    if let Some(hit) = MODEL.with_borrow(|m| m.as_ref().filter(|(with, _)| *with == wanted).map(|(_, e)| e.clone())) {
        return Ok(hit);
    }
    let config = EmbedderConfig::new(model_dir, ort_library)
        .with_threads(wanted.threads)
        .with_setting_names("ibex.model_dir", "ibex.ort_library_path");
    let embedder = Rc::new(Embedder::load(&config)?);
    MODEL.with_borrow_mut(|m| *m = Some((wanted, embedder.clone())));
    Ok(embedder)
}

fn unset(setting: &str, what: &str) -> SqlError {
    SqlError::new(
        pgrx::PgSqlErrorCode::ERRCODE_CONFIG_FILE_ERROR,
        format!("{setting} is not set"),
    )
    .detail(format!("IBEX needs {setting} to find {what}."))
    .hint(format!(
        "ALTER SYSTEM SET {setting} = '/path'; SELECT pg_reload_conf();"
    ))
}
