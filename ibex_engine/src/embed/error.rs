use std::path::PathBuf;

/// Everything that can go wrong while loading or running the embedding model. The messages are
/// written for an operator: they name the file and the setting that points at it.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("file not found: {path} (check the setting {setting})")]
    MissingFile { path: PathBuf, setting: String },
    #[error("cannot use {path}: {message} (check the setting {setting})")]
    InvalidFile {
        path: PathBuf,
        setting: String,
        message: String,
    },
    #[error("text {index} of the input is empty; embeddings need non-empty text")]
    EmptyText { index: usize },
    #[error("a batch holds at most {max} texts, got {len}")]
    BatchTooLarge { len: usize, max: usize },
    #[error("a batch holds at most {max} model tokens together, got {total}")]
    TooManyTokens { total: usize, max: usize },
    #[error("tokenizer failed: {0}")]
    Tokenize(String),
    #[error("model returned an unexpected output: {0}")]
    UnexpectedOutput(String),
    #[error("ONNX Runtime failed: {0}")]
    Runtime(String),
}

impl From<ort::Error> for EmbedError {
    fn from(e: ort::Error) -> Self {
        EmbedError::Runtime(e.to_string())
    }
}
