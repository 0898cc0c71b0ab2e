use ibex_engine::EmbedError;

/// What the embedding core can refuse or fail with. Transport-neutral: `crate::error` maps each
/// variant to an HTTP status and a gRPC code.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddingError {
    #[error("no text given; send at least one")]
    NoInput,
    #[error("text {index} is empty or only whitespace; embeddings need text")]
    EmptyText { index: usize },
    #[error("text {index} has {chars} characters; at most {max} are accepted (setting max_text_chars)")]
    TextTooLong { index: usize, chars: usize, max: usize },
    #[error("a request holds at most {max} texts, got {len}")]
    TooManyTexts { len: usize, max: usize },
    #[error("the embedding model is still loading")]
    Loading,
    #[error("the embedding model failed to load: {0}")]
    LoadFailed(String),
    #[error("{max_inflight} embedding requests are already in flight; retry shortly")]
    Overloaded { max_inflight: usize },
    #[error("inference failed: {0}")]
    Inference(#[from] EmbedError),
    #[error("inference worker stopped before answering")]
    WorkerLost,
}
