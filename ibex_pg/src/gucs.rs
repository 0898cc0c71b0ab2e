//! Every `ibex.*` setting: a documented private static, registered in one `init()`, read through
//! typed getters. `SELECT name, setting, short_desc FROM pg_settings WHERE name LIKE 'ibex.%'`
//! lists them; docs/sql.md describes each.

use std::ffi::CString;
use std::path::PathBuf;

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

/// Directory holding model.onnx and tokenizer.json (all-MiniLM-L6-v2). Superuser-only: it names
/// files the server will load.
static MODEL_DIR: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
/// Path of libonnxruntime.so. Loaded once per backend; a change applies to new backends.
static ORT_LIBRARY_PATH: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
/// ONNX Runtime intra-op threads per backend. 1 by default: every backend is its own process,
/// so more threads per backend only compete for the same cores.
static INFERENCE_THREADS: GucSetting<i32> = GucSetting::<i32>::new(1);
/// Hours after which the recency component of the score halves.
static RECENCY_HALF_LIFE_HOURS: GucSetting<f64> = GucSetting::<f64>::new(ibex_engine::score::DEFAULT_HALF_LIFE_HOURS);
/// The organisation this session acts for. Row-level security policies and every ibex_core
/// function compare against it; the trusted application sets it after authenticating a caller.
static ORG_ID: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
/// Lets a superuser delete rows of the append-only history tables (GDPR purge of an org). The
/// history triggers read it; registering it here makes it superuser-only.
static ALLOW_HISTORY_PURGE: GucSetting<bool> = GucSetting::<bool>::new(false);

pub fn init() {
    GucRegistry::define_string_guc(
        c"ibex.model_dir",
        c"Directory with model.onnx and tokenizer.json of all-MiniLM-L6-v2.",
        c"Read by ibex_embed() when a backend first embeds; a change reloads the model on next use.",
        &MODEL_DIR,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"ibex.ort_library_path",
        c"Path of the ONNX Runtime shared library (libonnxruntime.so).",
        c"Loaded once per backend process; a change applies to new backends.",
        &ORT_LIBRARY_PATH,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"ibex.inference_threads",
        c"ONNX Runtime intra-op threads per backend.",
        c"Keep at 1 unless few backends embed at once; a change reloads the model on next use.",
        &INFERENCE_THREADS,
        1,
        64,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"ibex.recency_half_life_hours",
        c"Hours after which a memory's recency score halves.",
        c"recency = 0.5 ^ (hours since last access or creation / half-life).",
        &RECENCY_HALF_LIFE_HOURS,
        0.01,
        1_000_000.0,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"ibex.org_id",
        c"Organisation (uuid) this session acts for; row-level security filters on it.",
        c"Set by the trusted application after it authenticated the caller.",
        &ORG_ID,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"ibex.allow_history_purge",
        c"Allow deleting rows of the append-only history tables (superuser only).",
        c"For GDPR purges of an org; updates to history rows stay impossible.",
        &ALLOW_HISTORY_PURGE,
        GucContext::Suset,
        GucFlags::default(),
    );
}

fn string(setting: &GucSetting<Option<CString>>) -> Option<String> {
    setting
        .get()
        .and_then(|c| c.into_string().ok())
        .filter(|s| !s.trim().is_empty())
}

pub fn model_dir() -> Option<PathBuf> {
    string(&MODEL_DIR).map(PathBuf::from)
}

pub fn ort_library_path() -> Option<PathBuf> {
    string(&ORT_LIBRARY_PATH).map(PathBuf::from)
}

pub fn inference_threads() -> usize {
    INFERENCE_THREADS.get().max(1) as usize
}

pub fn recency_half_life_hours() -> f64 {
    RECENCY_HALF_LIFE_HOURS.get()
}
