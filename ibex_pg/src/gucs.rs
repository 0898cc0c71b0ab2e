//! Every `ibex.*` setting: a documented private static, registered in one `init()`, read through
//! typed getters. `SELECT name, setting, short_desc FROM pg_settings WHERE name LIKE 'ibex.%'`
//! lists them; docs/sql.md describes each.

use std::ffi::{CStr, CString};
use std::path::PathBuf;

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

type Text = GucSetting<Option<CString>>;

// ---- Embedding model -------------------------------------------------------------------------
/// Directory holding model.onnx and tokenizer.json. Superuser-only: it names files the server loads.
static MODEL_DIR: Text = Text::new(None);
/// Path of libonnxruntime.so. Loaded once per backend; a change applies to new backends.
static ORT_LIBRARY_PATH: Text = Text::new(None);
/// ONNX Runtime intra-op threads per backend. 1: every backend is its own process, and more
/// threads per backend only compete for the same cores.
static INFERENCE_THREADS: GucSetting<i32> = GucSetting::<i32>::new(1);

// ---- Scoring and the write pipeline ----------------------------------------------------------
static RECENCY_HALF_LIFE_HOURS: GucSetting<f64> = GucSetting::<f64>::new(ibex_engine::score::DEFAULT_HALF_LIFE_HOURS);
static LEXICAL_WEIGHT: GucSetting<f64> = GucSetting::<f64>::new(ibex_engine::relevance::DEFAULT_LEXICAL_WEIGHT);
static NEAR_DUPLICATE_THRESHOLD: GucSetting<f64> = GucSetting::<f64>::new(0.92);
static CONFLICT_THRESHOLD: GucSetting<f64> = GucSetting::<f64>::new(0.85);
static RELATED_THRESHOLD: GucSetting<f64> = GucSetting::<f64>::new(0.75);
static MAX_MEMORY_CHARS: GucSetting<i32> = GucSetting::<i32>::new(8000);
/// Input bounds (superuser-only: an application must not raise the limits that protect other
/// tenants). See docs/SECURITY.md.
static MAX_EMBED_BATCH_TOKENS: GucSetting<i32> = GucSetting::<i32>::new(32_768);
/// As long as the sidecar's `max_text_chars`, which cuts a context query to it.
static MAX_QUERY_CHARS: GucSetting<i32> = GucSetting::<i32>::new(65_536);
static MAX_METADATA_BYTES: GucSetting<i32> = GucSetting::<i32>::new(65_536);
/// Agents with at most this many active memories are searched exactly instead of through IVFFlat.
static EXACT_SEARCH_MAX_MEMORIES: GucSetting<i32> = GucSetting::<i32>::new(10_000);
/// Search bridges through names (docs/ARCHITECTURE.md, "Search"); read by the SQL function.
static SEARCH_BRIDGING: GucSetting<bool> = GucSetting::<bool>::new(true);

// ---- Tenancy and history ---------------------------------------------------------------------
/// The organisation this session acts for. Row-level security policies and every ibex_core
/// function compare against it; the trusted application sets it after authenticating a caller.
static ORG_ID: Text = Text::new(None);
/// Lets a superuser delete rows of the append-only history tables (GDPR purge of an org).
static ALLOW_HISTORY_PURGE: GucSetting<bool> = GucSetting::<bool>::new(false);

// ---- Background workers ----------------------------------------------------------------------
/// Database the background workers connect to (one IBEX database per cluster).
static DATABASE: Text = Text::new(Some(c"postgres"));
static INDEXER_ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);
static INDEXER_NAPTIME_MS: GucSetting<i32> = GucSetting::<i32>::new(1000);
/// libpq connection string the indexer uses for work that cannot run inside a transaction
/// (CREATE INDEX CONCURRENTLY). Empty: the server's own Unix socket, as the bootstrap superuser.
static MAINTENANCE_CONNINFO: Text = Text::new(None);
static IVFFLAT_MAX_LISTS: GucSetting<i32> = GucSetting::<i32>::new(4000);
static OUTBOX_RETENTION_HOURS: GucSetting<i32> = GucSetting::<i32>::new(24);

// ---- Extraction ------------------------------------------------------------------------------
/// Number of "ibex extraction" workers (they share the queue through SKIP LOCKED and leases).
static EXTRACTION_WORKERS: GucSetting<i32> = GucSetting::<i32>::new(1);
static EXTRACTION_POLL_MS: GucSetting<i32> = GucSetting::<i32>::new(1000);
/// Seconds a claimed session stays reserved for one worker (covers the LLM call).
static EXTRACTION_LEASE_SECONDS: GucSetting<i32> = GucSetting::<i32>::new(300);
/// New turns read per job; a longer backlog is worked through in several jobs.
static EXTRACTION_MAX_TURNS: GucSetting<i32> = GucSetting::<i32>::new(50);
static EXTRACTION_MAX_RETRIES: GucSetting<i32> = GucSetting::<i32>::new(3);
/// First retry delay; each further retry waits twice as long.
static EXTRACTION_RETRY_BASE_MS: GucSetting<i32> = GucSetting::<i32>::new(2000);
/// OpenAI-compatible endpoint (e.g. https://api.openai.com/v1). Empty: the rule-based extractor.
static LLM_BASE_URL: Text = Text::new(None);
static LLM_MODEL: Text = Text::new(Some(c"gpt-4o-mini"));
/// File holding the API key (read at each job, so a rotated key needs no restart).
static LLM_API_KEY_FILE: Text = Text::new(None);
/// Environment variable of the postmaster holding the API key, used when no file is set.
static LLM_API_KEY_ENV: Text = Text::new(Some(c"IBEX_LLM_API_KEY"));
static LLM_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(30_000);

fn text(name: &'static CStr, short: &'static CStr, long: &'static CStr, s: &'static Text, ctx: GucContext) {
    GucRegistry::define_string_guc(name, short, long, s, ctx, GucFlags::default());
}

fn real(name: &'static CStr, short: &'static CStr, s: &'static GucSetting<f64>, min: f64, max: f64, ctx: GucContext) {
    GucRegistry::define_float_guc(name, short, c"", s, min, max, ctx, GucFlags::default());
}

fn int(name: &'static CStr, short: &'static CStr, s: &'static GucSetting<i32>, min: i32, max: i32, ctx: GucContext) {
    GucRegistry::define_int_guc(name, short, c"", s, min, max, ctx, GucFlags::default());
}

fn flag(name: &'static CStr, short: &'static CStr, s: &'static GucSetting<bool>, ctx: GucContext) {
    GucRegistry::define_bool_guc(name, short, c"", s, ctx, GucFlags::default());
}

pub fn init() {
    use GucContext::{Postmaster, Sighup, Suset, Userset};
    text(
        c"ibex.model_dir",
        c"Directory with model.onnx and tokenizer.json of all-MiniLM-L6-v2.",
        c"Read when a backend first embeds; a change reloads the model on next use.",
        &MODEL_DIR,
        Suset,
    );
    text(
        c"ibex.ort_library_path",
        c"Path of the ONNX Runtime shared library (libonnxruntime.so).",
        c"Loaded once per backend process; a change applies to new backends.",
        &ORT_LIBRARY_PATH,
        Suset,
    );
    int(
        c"ibex.inference_threads",
        c"ONNX Runtime intra-op threads per backend.",
        &INFERENCE_THREADS,
        1,
        64,
        Suset,
    );
    real(
        c"ibex.recency_half_life_hours",
        c"Hours after which a memory's recency score halves.",
        &RECENCY_HALF_LIFE_HOURS,
        0.01,
        1_000_000.0,
        Userset,
    );
    real(
        c"ibex.lexical_weight",
        c"Weight of full-text evidence in relevance: (1-w)*semantic + w*lexical.",
        &LEXICAL_WEIGHT,
        0.0,
        1.0,
        Userset,
    );
    real(
        c"ibex.near_duplicate_threshold",
        c"Cosine similarity above which a new memory supersedes an old one of the same agent.",
        &NEAR_DUPLICATE_THRESHOLD,
        0.0,
        1.0,
        Suset,
    );
    real(
        c"ibex.conflict_threshold",
        c"Cosine similarity above which a new memory of the same category is recorded as a conflict.",
        &CONFLICT_THRESHOLD,
        0.0,
        1.0,
        Suset,
    );
    real(
        c"ibex.related_threshold",
        c"Cosine similarity above which the indexer links memories as related_to.",
        &RELATED_THRESHOLD,
        0.0,
        1.0,
        Suset,
    );
    int(
        c"ibex.exact_search_max_memories",
        c"Agents with at most this many active memories are searched exactly, larger ones via IVFFlat.",
        &EXACT_SEARCH_MAX_MEMORIES,
        0,
        i32::MAX,
        Userset,
    );
    flag(
        c"ibex.search_bridging",
        c"Search lends the best results' query terms to memories that share a name with them.",
        &SEARCH_BRIDGING,
        Userset,
    );
    int(
        c"ibex.max_memory_chars",
        c"Longest memory content accepted, in characters.",
        &MAX_MEMORY_CHARS,
        16,
        32768,
        Suset,
    );
    int(
        c"ibex.max_embed_batch_tokens",
        c"Most model tokens the texts of one ibex_embed_batch call may hold together.",
        &MAX_EMBED_BATCH_TOKENS,
        256,
        (ibex_engine::embed::MAX_BATCH * ibex_engine::embed::MAX_TOKENS) as i32,
        Suset,
    );
    int(
        c"ibex.max_query_chars",
        c"Longest query ibex_core.search accepts, in characters.",
        &MAX_QUERY_CHARS,
        16,
        1_048_576,
        Suset,
    );
    int(
        c"ibex.max_metadata_bytes",
        c"Largest metadata document (JSON text, bytes) of a memory, session or agent.",
        &MAX_METADATA_BYTES,
        2,
        16_777_216,
        Suset,
    );
    text(
        c"ibex.org_id",
        c"Organisation (uuid) this session acts for; row-level security filters on it.",
        c"Set by the trusted application after it authenticated the caller.",
        &ORG_ID,
        Userset,
    );
    flag(
        c"ibex.allow_history_purge",
        c"Allow deleting rows of the append-only history tables (superuser only, for GDPR purges).",
        &ALLOW_HISTORY_PURGE,
        Suset,
    );
    text(
        c"ibex.database",
        c"Database the IBEX background workers connect to.",
        c"",
        &DATABASE,
        Postmaster,
    );
    flag(
        c"ibex.indexer_enabled",
        c"Run the indexing background worker.",
        &INDEXER_ENABLED,
        Postmaster,
    );
    int(
        c"ibex.indexer_naptime_ms",
        c"How long the indexing worker sleeps between polls, in milliseconds.",
        &INDEXER_NAPTIME_MS,
        10,
        3_600_000,
        Sighup,
    );
    text(
        c"ibex.maintenance_conninfo",
        c"Connection string for index rebuilds (CREATE INDEX CONCURRENTLY); empty: the local socket.",
        c"",
        &MAINTENANCE_CONNINFO,
        Sighup,
    );
    int(
        c"ibex.ivfflat_max_lists",
        c"Upper bound on IVFFlat lists when the indexer rebuilds.",
        &IVFFLAT_MAX_LISTS,
        100,
        65535,
        Sighup,
    );
    int(
        c"ibex.outbox_retention_hours",
        c"Hours processed outbox rows are kept before the indexer deletes them.",
        &OUTBOX_RETENTION_HOURS,
        1,
        8760,
        Sighup,
    );
    init_extraction();
}

fn init_extraction() {
    use GucContext::{Postmaster, Sighup};
    int(
        c"ibex.extraction_workers",
        c"Number of extraction background workers.",
        &EXTRACTION_WORKERS,
        0,
        32,
        Postmaster,
    );
    int(
        c"ibex.extraction_poll_ms",
        c"How often idle extraction workers look for work, in milliseconds.",
        &EXTRACTION_POLL_MS,
        10,
        3_600_000,
        Sighup,
    );
    int(
        c"ibex.extraction_lease_seconds",
        c"Seconds a claimed session stays reserved for the worker that claimed it.",
        &EXTRACTION_LEASE_SECONDS,
        1,
        86_400,
        Sighup,
    );
    int(
        c"ibex.extraction_max_turns",
        c"New turns read per extraction job.",
        &EXTRACTION_MAX_TURNS,
        1,
        10_000,
        Sighup,
    );
    int(
        c"ibex.extraction_max_retries",
        c"Retries of a failed extraction before it is dead-lettered.",
        &EXTRACTION_MAX_RETRIES,
        0,
        100,
        Sighup,
    );
    int(
        c"ibex.extraction_retry_base_ms",
        c"Delay before the first retry of a failed extraction; doubles with each retry.",
        &EXTRACTION_RETRY_BASE_MS,
        0,
        86_400_000,
        Sighup,
    );
    text(
        c"ibex.llm_base_url",
        c"OpenAI-compatible API base URL for extraction; empty uses the built-in rule-based extractor.",
        c"",
        &LLM_BASE_URL,
        Sighup,
    );
    text(
        c"ibex.llm_model",
        c"Model name sent to the extraction LLM.",
        c"",
        &LLM_MODEL,
        Sighup,
    );
    text(
        c"ibex.llm_api_key_file",
        c"File with the extraction LLM's API key.",
        c"",
        &LLM_API_KEY_FILE,
        Sighup,
    );
    text(
        c"ibex.llm_api_key_env",
        c"Environment variable (of the postmaster) with the extraction LLM's API key.",
        c"",
        &LLM_API_KEY_ENV,
        Sighup,
    );
    int(
        c"ibex.llm_timeout_ms",
        c"Timeout of one extraction LLM call, in milliseconds.",
        &LLM_TIMEOUT_MS,
        100,
        600_000,
        Sighup,
    );
}

fn string(setting: &Text) -> Option<String> {
    setting
        .get()
        .and_then(|c| c.into_string().ok())
        .filter(|s| !s.trim().is_empty())
}

pub fn max_embed_batch_tokens() -> usize {
    MAX_EMBED_BATCH_TOKENS.get().max(1) as usize
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

pub fn lexical_weight() -> f64 {
    LEXICAL_WEIGHT.get()
}

pub fn database() -> String {
    string(&DATABASE).unwrap_or_else(|| "postgres".into())
}

pub fn indexer_enabled() -> bool {
    INDEXER_ENABLED.get()
}

pub fn indexer_naptime_ms() -> u64 {
    INDEXER_NAPTIME_MS.get().max(10) as u64
}

pub fn maintenance_conninfo() -> Option<String> {
    string(&MAINTENANCE_CONNINFO)
}

pub fn outbox_retention_hours() -> i32 {
    OUTBOX_RETENTION_HOURS.get()
}

pub fn extraction_workers() -> i32 {
    EXTRACTION_WORKERS.get()
}

pub fn extraction_poll_ms() -> u64 {
    EXTRACTION_POLL_MS.get().max(10) as u64
}

pub fn extraction_lease_seconds() -> i32 {
    EXTRACTION_LEASE_SECONDS.get()
}

pub fn extraction_max_turns() -> i32 {
    EXTRACTION_MAX_TURNS.get()
}

pub fn extraction_max_retries() -> i32 {
    EXTRACTION_MAX_RETRIES.get()
}

pub fn extraction_retry_base_ms() -> i64 {
    i64::from(EXTRACTION_RETRY_BASE_MS.get())
}

/// The extraction LLM settings, or None for the rule-based extractor.
pub struct LlmSettings {
    pub base_url: String,
    pub model: String,
    pub api_key_file: Option<PathBuf>,
    pub api_key_env: Option<String>,
    pub timeout_ms: u64,
}

pub fn llm_settings() -> Option<LlmSettings> {
    Some(LlmSettings {
        base_url: string(&LLM_BASE_URL)?,
        model: string(&LLM_MODEL).unwrap_or_else(|| "gpt-4o-mini".into()),
        api_key_file: string(&LLM_API_KEY_FILE).map(PathBuf::from),
        api_key_env: string(&LLM_API_KEY_ENV),
        timeout_ms: LLM_TIMEOUT_MS.get().max(1) as u64,
    })
}
