//! Sentence embeddings with all-MiniLM-L6-v2 through ONNX Runtime.
//!
//! The pipeline is the one sentence-transformers uses for this model: WordPiece tokens truncated
//! at 256, a BERT forward pass, mean pooling of the last hidden state over the attention mask,
//! then L2 normalisation. Batches are padded only to their longest input: padding every text to
//! the tokenizer file's default of 128 would cost several times the compute for short texts.

mod error;
mod pooling;
mod runtime;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::session::Session;
use ort::value::Tensor;
use tokenizers::{Tokenizer, TruncationParams};

pub use error::EmbedError;
pub use pooling::{cosine_similarity, mean_pool_normalised};

/// Width of every vector this model produces (`vector(384)` in the schema).
pub const EMBEDDING_DIM: usize = 384;
/// The model was trained with 256-token inputs; longer inputs are truncated, as upstream does.
pub const MAX_TOKENS: usize = 256;
/// Upper bound on one batch call: keeps a single request's memory (batch x 256 x 384 floats of
/// hidden state) bounded, and matches the public batch API.
pub const MAX_BATCH: usize = 512;
/// Tokens one forward pass holds at most (texts x padded length). ONNX Runtime's activations grow
/// with it (attention alone is texts x 12 heads x length squared floats per layer) and its memory
/// arena keeps the peak for the life of the session: 256 long texts in one pass took 6 GB in a
/// backend. A batch is run as consecutive passes within this budget (32 texts of 256 tokens).
pub const FORWARD_TOKENS: usize = 8192;
/// Characters of a text that are read. The model sees its first 256 tokens, which never span
/// more than this, so a longer text is cut before tokenizing: the same vector for bounded work.
pub const MAX_TEXT_CHARS: usize = 65_536;
/// File names inside the model directory.
pub const MODEL_FILE: &str = "model.onnx";
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// Where the model lives and how to run it. `setting_*` names are echoed in error messages so an
/// operator knows which knob to turn (a GUC inside Postgres, a flag or env var in the sidecar).
#[derive(Clone, Debug)]
pub struct EmbedderConfig {
    pub model_dir: PathBuf,
    pub ort_library: PathBuf,
    /// ONNX Runtime intra-op threads. 1 inside Postgres: each backend is its own process, and
    /// more threads per backend only fight each other for the cores.
    pub intra_threads: usize,
    pub setting_model_dir: String,
    pub setting_ort_library: String,
}

impl EmbedderConfig {
    pub fn new(model_dir: impl Into<PathBuf>, ort_library: impl Into<PathBuf>) -> Self {
        Self {
            model_dir: model_dir.into(),
            ort_library: ort_library.into(),
            intra_threads: 1,
            setting_model_dir: "model_dir".into(),
            setting_ort_library: "ort_library".into(),
        }
    }

    pub fn with_threads(mut self, threads: usize) -> Self {
        self.intra_threads = threads.max(1);
        self
    }

    pub fn with_setting_names(mut self, model_dir: &str, ort_library: &str) -> Self {
        self.setting_model_dir = model_dir.into();
        self.setting_ort_library = ort_library.into();
        self
    }
}

/// A loaded model. Cheap to share behind an `Arc`; inference is serialised by a mutex because
/// an ONNX Runtime session run needs exclusive access in `ort` (callers that want parallel
/// inference hold several embedders).
pub struct Embedder {
    session: Mutex<Session>,
    tokenizer: Tokenizer,
    model_id: String,
}

/// Token ids and mask of one batch, padded to the batch's longest input.
struct EncodedBatch {
    rows: usize,
    cols: usize,
    input_ids: Vec<i64>,
    attention_mask: Vec<i64>,
}

impl Embedder {
    /// Loads ONNX Runtime (once per process), the tokenizer and the model.
    pub fn load(config: &EmbedderConfig) -> Result<Self, EmbedError> {
        let environment = runtime::environment(&config.ort_library, &config.setting_ort_library)?;
        let tokenizer_path = config.model_dir.join(TOKENIZER_FILE);
        let model_path = config.model_dir.join(MODEL_FILE);
        let missing = |path: &Path| EmbedError::MissingFile {
            path: path.to_path_buf(),
            setting: config.setting_model_dir.clone(),
        };
        if !model_path.is_file() {
            return Err(missing(&model_path));
        }
        if !tokenizer_path.is_file() {
            return Err(missing(&tokenizer_path));
        }
        let tokenizer = load_tokenizer(&tokenizer_path, &config.setting_model_dir)?;
        let bad_model = |message: String| EmbedError::InvalidFile {
            path: model_path.clone(),
            setting: config.setting_model_dir.clone(),
            message,
        };
        let session = Session::builder(environment)
            .and_then(|b| Ok(b.with_intra_threads(config.intra_threads)?))
            .and_then(|b| Ok(b.with_inter_threads(1)?))
            // Spinning threads burn a core between requests; with one thread there is no pool.
            .and_then(|b| Ok(b.with_intra_op_spinning(config.intra_threads > 1)?))
            .and_then(|mut b| b.commit_from_file(&model_path))
            .map_err(|e| bad_model(e.to_string()))?;
        check_model_signature(&session).map_err(bad_model)?;
        let model_id = format!(
            "all-MiniLM-L6-v2/{}",
            model_path.file_name().and_then(|n| n.to_str()).unwrap_or(MODEL_FILE)
        );
        Ok(Self {
            session: Mutex::new(session),
            tokenizer,
            model_id,
        })
    }

    /// A stable name for the model, used in cache keys so vectors of different models never mix.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// Embeds one text: 384 floats with unit L2 norm.
    pub fn embed(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let mut out = self.embed_batch(&[text])?;
        Ok(out.pop().expect("one input gives one output"))
    }

    /// Embeds up to [`MAX_BATCH`] texts, in forward passes of at most [`FORWARD_TOKENS`] tokens.
    /// The output order is the input order.
    pub fn embed_batch<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed_batch_bounded(texts, None, &mut || {})
    }

    /// [`Self::embed_batch`], refusing a batch whose texts hold more than `max_tokens` model
    /// tokens together (counted after truncation, before any inference), and calling
    /// `before_pass` before every forward pass: inside Postgres it checks for a cancelled
    /// query, so a statement timeout stops a long batch between passes.
    pub fn embed_batch_bounded<S: AsRef<str>>(
        &self,
        texts: &[S],
        max_tokens: Option<usize>,
        before_pass: &mut dyn FnMut(),
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        if texts.len() > MAX_BATCH {
            return Err(EmbedError::BatchTooLarge {
                len: texts.len(),
                max: MAX_BATCH,
            });
        }
        for (index, text) in texts.iter().enumerate() {
            if text.as_ref().trim().is_empty() {
                return Err(EmbedError::EmptyText { index });
            }
        }
        let encodings = self.tokenize(texts)?;
        let lengths: Vec<usize> = encodings.iter().map(|e| e.get_ids().len().max(1)).collect();
        if let Some(max) = max_tokens {
            let total: usize = lengths.iter().sum();
            if total > max {
                return Err(EmbedError::TooManyTokens { total, max });
            }
        }
        let mut vectors = Vec::with_capacity(texts.len());
        for range in forward_passes(&lengths, FORWARD_TOKENS) {
            before_pass();
            let batch = EncodedBatch::from_encodings(&encodings[range]);
            let hidden = self.forward(&batch)?;
            vectors.extend(mean_pool_normalised(
                &hidden,
                &batch.attention_mask,
                batch.rows,
                batch.cols,
                EMBEDDING_DIM,
            ));
        }
        Ok(vectors)
    }

    /// Number of model tokens a text has after truncation (what the model actually sees).
    pub fn token_count(&self, text: &str) -> Result<usize, EmbedError> {
        Ok(self.encode(&[text])?.cols)
    }

    fn encode<S: AsRef<str>>(&self, texts: &[S]) -> Result<EncodedBatch, EmbedError> {
        Ok(EncodedBatch::from_encodings(&self.tokenize(texts)?))
    }

    /// Each text cut to [`MAX_TEXT_CHARS`], then tokenized (truncated at [`MAX_TOKENS`]).
    fn tokenize<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<tokenizers::Encoding>, EmbedError> {
        // Encoded one by one rather than with `encode_batch`, which fans out over a rayon pool:
        // inside a Postgres backend we want no extra threads, and tokenizing is a small share of
        // the cost next to the forward pass.
        texts
            .iter()
            .map(|text| {
                self.tokenizer
                    .encode(read_prefix(text.as_ref()), true)
                    .map_err(|e| EmbedError::Tokenize(e.to_string()))
            })
            .collect()
    }

    fn forward(&self, batch: &EncodedBatch) -> Result<Vec<f32>, EmbedError> {
        let shape = [batch.rows, batch.cols];
        let ids = Tensor::from_array((shape, batch.input_ids.clone()))?;
        let mask = Tensor::from_array((shape, batch.attention_mask.clone()))?;
        let types = Tensor::from_array((shape, vec![0i64; batch.rows * batch.cols]))?;
        // A poisoned lock only means another thread panicked mid-run; the session itself holds
        // no partial state between runs, so it is safe to keep using.
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = session.run(ort::inputs![
            "input_ids" => ids,
            "attention_mask" => mask,
            "token_type_ids" => types,
        ])?;
        let (shape, data) = outputs[0].try_extract_tensor::<f32>()?;
        let expected = [batch.rows as i64, batch.cols as i64, EMBEDDING_DIM as i64];
        if shape.as_ref() != expected {
            return Err(EmbedError::UnexpectedOutput(format!(
                "shape {shape:?}, expected {expected:?}"
            )));
        }
        Ok(data.to_vec())
    }
}

impl EncodedBatch {
    /// The encodings as one batch, padded to the longest.
    fn from_encodings(encodings: &[tokenizers::Encoding]) -> Self {
        let rows = encodings.len();
        let cols = encodings.iter().map(|e| e.get_ids().len()).max().unwrap_or(0).max(1);
        let mut input_ids = vec![0i64; rows * cols];
        let mut attention_mask = vec![0i64; rows * cols];
        for (row, encoding) in encodings.iter().enumerate() {
            for (col, (&id, &mask)) in encoding.get_ids().iter().zip(encoding.get_attention_mask()).enumerate() {
                input_ids[row * cols + col] = i64::from(id);
                attention_mask[row * cols + col] = i64::from(mask);
            }
        }
        EncodedBatch {
            rows,
            cols,
            input_ids,
            attention_mask,
        }
    }
}

/// The first [`MAX_TEXT_CHARS`] characters of `text`.
fn read_prefix(text: &str) -> &str {
    match text.char_indices().nth(MAX_TEXT_CHARS) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

/// Consecutive ranges of texts, each as many as fit `budget` tokens once padded to the longest
/// of the range (always at least one text).
fn forward_passes(lengths: &[usize], budget: usize) -> Vec<std::ops::Range<usize>> {
    let mut passes = Vec::new();
    let mut start = 0;
    while start < lengths.len() {
        let (mut end, mut longest) = (start, 0);
        while end < lengths.len() {
            let wider = longest.max(lengths[end]);
            if end > start && (end - start + 1) * wider > budget {
                break;
            }
            longest = wider;
            end += 1;
        }
        passes.push(start..end);
        start = end;
    }
    passes
}

fn load_tokenizer(path: &Path, setting: &str) -> Result<Tokenizer, EmbedError> {
    let invalid = |message: String| EmbedError::InvalidFile {
        path: path.to_path_buf(),
        setting: setting.to_string(),
        message,
    };
    let mut tokenizer = Tokenizer::from_file(path).map_err(|e| invalid(e.to_string()))?;
    // The shipped tokenizer.json pads every input to 128 tokens; padding is done per batch here.
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: MAX_TOKENS,
            ..Default::default()
        }))
        .map_err(|e| invalid(e.to_string()))?;
    Ok(tokenizer)
}

/// Refuses a model whose inputs or outputs are not the BERT encoder we pool, so a wrong file is
/// reported at load time instead of producing garbage vectors.
fn check_model_signature(session: &Session) -> Result<(), String> {
    let inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
    for needed in ["input_ids", "attention_mask", "token_type_ids"] {
        if !inputs.contains(&needed) {
            return Err(format!(
                "model has inputs {inputs:?}; expected input_ids, attention_mask, token_type_ids"
            ));
        }
    }
    if session.outputs().is_empty() {
        return Err("model has no outputs".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_passes_stay_within_the_token_budget() {
        // 256 texts of 256 tokens (the batch that took 6 GB in one pass): 8 passes of 32.
        let long = vec![MAX_TOKENS; 256];
        let passes = forward_passes(&long, FORWARD_TOKENS);
        assert_eq!(passes.len(), 8);
        assert!(passes.iter().all(|p| p.len() * MAX_TOKENS <= FORWARD_TOKENS));
        // Short texts share a pass; one long text among them narrows it, order is kept.
        let mixed = [5, 5, 300, 5];
        let passes = forward_passes(&mixed, 600);
        assert_eq!(passes, vec![0..2, 2..4]);
        assert_eq!(passes.iter().map(|p| p.len()).sum::<usize>(), mixed.len());
        // A text longer than the budget still gets a pass of its own.
        assert_eq!(forward_passes(&[10_000, 1], 100), vec![0..1, 1..2]);
        assert!(forward_passes(&[], 100).is_empty());
    }

    #[test]
    fn reading_stops_at_the_character_limit() {
        let text = "é".repeat(MAX_TEXT_CHARS + 10);
        assert_eq!(read_prefix(&text).chars().count(), MAX_TEXT_CHARS);
        assert_eq!(read_prefix("short"), "short");
    }
}
