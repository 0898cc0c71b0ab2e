//! Token counting for budgets.
//!
//! OpenAI models are counted exactly with their own BPE (tiktoken's o200k_base or cl100k_base,
//! bundled in the crate, no download). Other models use the declared approximation of
//! [`TokenizerKind::Approximate`]. The BPE tables load once per process on first use.

use tiktoken_rs::{cl100k_base_singleton, o200k_base_singleton};

use crate::models::{self, TokenizerKind};

/// Tokens that frame one chat message in OpenAI's chat format (role and separators).
pub const TOKENS_PER_MESSAGE: usize = 3;
/// Tokens that prime the assistant's reply at the end of a chat prompt.
pub const TOKENS_REPLY_PRIMER: usize = 3;

/// A count and whether it is exact for the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenCount {
    pub tokens: usize,
    pub exact: bool,
}

/// Which tokenizer a model name uses; unknown models use the approximation.
pub fn tokenizer_for(model: &str) -> TokenizerKind {
    models::lookup(model).map_or(TokenizerKind::Approximate, |m| m.tokenizer)
}

pub fn count_with(kind: TokenizerKind, text: &str) -> TokenCount {
    match kind {
        TokenizerKind::O200k => TokenCount {
            tokens: o200k_base_singleton().encode_ordinary(text).len(),
            exact: true,
        },
        TokenizerKind::Cl100k => TokenCount {
            tokens: cl100k_base_singleton().encode_ordinary(text).len(),
            exact: true,
        },
        TokenizerKind::Approximate => {
            let base = cl100k_base_singleton().encode_ordinary(text).len();
            TokenCount {
                tokens: base + base.div_ceil(10),
                exact: false,
            }
        }
    }
}

/// Tokens of `text` for `model`.
pub fn count(model: &str, text: &str) -> TokenCount {
    count_with(tokenizer_for(model), text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_counts_are_exact() {
        // "hello world" is two tokens in both o200k_base and cl100k_base.
        assert_eq!(count("gpt-4o", "hello world"), TokenCount { tokens: 2, exact: true });
        assert_eq!(count("gpt-4", "hello world"), TokenCount { tokens: 2, exact: true });
        assert_eq!(count("gpt-4o", "").tokens, 0);
    }

    #[test]
    fn special_token_text_counts_as_text() {
        // A user pasting "<|endoftext|>" must not be counted as one special token.
        assert!(count("gpt-4o", "<|endoftext|>").tokens > 1);
    }

    #[test]
    fn others_are_declared_approximations_that_round_up() {
        let c = count("claude-3-5-sonnet", "hello world");
        assert!(!c.exact);
        assert_eq!(c.tokens, 3); // 2 + ceil(0.2)
        assert!(!count("some-unknown-model", "hello").exact);
    }
}
