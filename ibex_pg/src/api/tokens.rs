use pgrx::prelude::*;

use ibex_engine::models::{self, TokenizerKind};
use ibex_engine::tokens;

/// Tokens of `text` for `model`: exact for OpenAI models (o200k_base / cl100k_base), a declared
/// approximation (cl100k_base + 10%) for others. See ibex_models().
#[pg_extern(immutable, parallel_safe)]
fn ibex_token_count(text: &str, model: &str) -> i32 {
    tokens::count(model, text).tokens.min(i32::MAX as usize) as i32
}

/// Context window of a model, NULL when the model is unknown.
#[pg_extern(immutable, parallel_safe)]
fn ibex_model_context_window(model: &str) -> Option<i32> {
    models::lookup(model).map(|m| m.context_window as i32)
}

/// The models IBEX knows, their context windows, output limits and how tokens are counted.
#[pg_extern(immutable, parallel_safe)]
fn ibex_models() -> TableIterator<
    'static,
    (
        name!(model, String),
        name!(context_window, i32),
        name!(max_output_tokens, i32),
        name!(tokenizer, String),
        name!(exact_count, bool),
    ),
> {
    TableIterator::new(models::MODELS.iter().map(|m| {
        let (tokenizer, exact) = match m.tokenizer {
            TokenizerKind::O200k => ("o200k_base", true),
            TokenizerKind::Cl100k => ("cl100k_base", true),
            TokenizerKind::Approximate => ("cl100k_base+10%", false),
        };
        (
            m.name.to_string(),
            m.context_window as i32,
            m.max_output_tokens as i32,
            tokenizer.to_string(),
            exact,
        )
    }))
}
