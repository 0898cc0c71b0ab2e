//! Token counting for budgets.
//!
//! OpenAI models are counted exactly with their own BPE (tiktoken's o200k_base or cl100k_base,
//! bundled in the crate, no download). Other models use the declared approximation of
//! [`TokenizerKind::Approximate`]. The BPE tables load once per process on first use.
//!
//! BPE merging costs time quadratic in the length of one pre-tokenized piece, and a run of
//! letters is one piece however long it is: one 120,000-character word took 12 s. Runs of more
//! than [`MAX_RUN_CHARS`] non-whitespace characters are therefore counted in pieces of that
//! length, which keeps every count linear in the text. Words of real text are far shorter, so
//! their counts stay exact; a text that was cut (a pasted blob, base64, a flood) gets a close
//! count marked inexact.

use tiktoken_rs::{cl100k_base_singleton, o200k_base_singleton, CoreBPE};

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

/// Longest run of non-whitespace characters counted as one piece (see the module docs). 256
/// characters count in well under a millisecond; no word of a natural language comes close.
pub const MAX_RUN_CHARS: usize = 256;

pub fn count_with(kind: TokenizerKind, text: &str) -> TokenCount {
    match kind {
        TokenizerKind::O200k => {
            let (tokens, cut) = bpe_count(o200k_base_singleton(), text);
            TokenCount { tokens, exact: !cut }
        }
        TokenizerKind::Cl100k => {
            let (tokens, cut) = bpe_count(cl100k_base_singleton(), text);
            TokenCount { tokens, exact: !cut }
        }
        TokenizerKind::Approximate => {
            let (base, _) = bpe_count(cl100k_base_singleton(), text);
            TokenCount {
                tokens: base + base.div_ceil(10),
                exact: false,
            }
        }
    }
}

/// Tokens of `text`, and whether a run longer than [`MAX_RUN_CHARS`] had to be cut. The text is
/// encoded in segments that end right after every [`MAX_RUN_CHARS`]-th character of such a run,
/// so no piece the BPE sees is longer; text without such runs is one segment, counted exactly.
fn bpe_count(bpe: &CoreBPE, text: &str) -> (usize, bool) {
    let mut tokens = 0;
    let mut cut = false;
    let mut segment_start = 0;
    let mut run = 0;
    for (index, c) in text.char_indices() {
        if c.is_whitespace() {
            run = 0;
            continue;
        }
        run += 1;
        if run == MAX_RUN_CHARS {
            let end = index + c.len_utf8();
            tokens += bpe.encode_ordinary(&text[segment_start..end]).len();
            segment_start = end;
            run = 0;
            cut = true;
        }
    }
    if segment_start < text.len() {
        tokens += bpe.encode_ordinary(&text[segment_start..]).len();
    }
    (tokens, cut)
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
    fn a_huge_word_is_counted_in_linear_time_and_marked_inexact() {
        // One 120,000-character word took 12 s before runs were cut; now milliseconds.
        let word = "abcdefghij".repeat(12_000);
        let started = std::time::Instant::now();
        let c = count("gpt-4o", &word);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(!c.exact);
        assert!(c.tokens > 120_000 / MAX_RUN_CHARS && c.tokens <= 120_000, "{c:?}");
        // Ordinary text, even long, is not cut and stays exact.
        let prose = "The quick brown fox jumps over the lazy dog. ".repeat(2_000);
        assert!(count("gpt-4o", &prose).exact);
        // A run just below the limit is not cut: counted as the whole.
        let limit = "x".repeat(MAX_RUN_CHARS - 1);
        assert_eq!(
            count("gpt-4o", &limit).tokens,
            o200k_base_singleton().encode_ordinary(&limit).len()
        );
    }

    #[test]
    fn others_are_declared_approximations_that_round_up() {
        let c = count("claude-3-5-sonnet", "hello world");
        assert!(!c.exact);
        assert_eq!(c.tokens, 3); // 2 + ceil(0.2)
        assert!(!count("some-unknown-model", "hello").exact);
    }
}
