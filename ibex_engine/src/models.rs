//! Context windows and tokenizers of the chat models IBEX budgets for.
//!
//! Names match exactly or as a prefix followed by `-` (dated snapshots such as
//! `gpt-4o-2024-08-06`), longest name first, after dropping a provider prefix (`openai/gpt-4o`).
//! Unknown models return `None`; callers either refuse or use a declared default.

/// How tokens are counted for a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenizerKind {
    /// OpenAI's o200k_base (GPT-4o, GPT-4.1, GPT-5, o-series): exact.
    O200k,
    /// OpenAI's cl100k_base (GPT-4, GPT-3.5): exact.
    Cl100k,
    /// Models whose tokenizer is not public or not bundled: cl100k_base plus 10% headroom, a
    /// declared approximation that errs on the side of leaving room.
    Approximate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelSpec {
    pub name: &'static str,
    pub context_window: u32,
    pub max_output_tokens: u32,
    pub tokenizer: TokenizerKind,
}

const fn spec(name: &'static str, context_window: u32, max_output_tokens: u32, tokenizer: TokenizerKind) -> ModelSpec {
    ModelSpec {
        name,
        context_window,
        max_output_tokens,
        tokenizer,
    }
}

use TokenizerKind::{Approximate, Cl100k, O200k};

/// Published context windows and output limits (tokens).
pub const MODELS: &[ModelSpec] = &[
    spec("gpt-4o", 128_000, 16_384, O200k),
    spec("gpt-4o-mini", 128_000, 16_384, O200k),
    spec("chatgpt-4o-latest", 128_000, 16_384, O200k),
    spec("gpt-4.1", 1_047_576, 32_768, O200k),
    spec("gpt-4.1-mini", 1_047_576, 32_768, O200k),
    spec("gpt-4.1-nano", 1_047_576, 32_768, O200k),
    spec("gpt-5", 400_000, 128_000, O200k),
    spec("gpt-5-mini", 400_000, 128_000, O200k),
    spec("gpt-5-nano", 400_000, 128_000, O200k),
    spec("o1", 200_000, 100_000, O200k),
    spec("o1-mini", 128_000, 65_536, O200k),
    spec("o3", 200_000, 100_000, O200k),
    spec("o3-mini", 200_000, 100_000, O200k),
    spec("o4-mini", 200_000, 100_000, O200k),
    spec("gpt-4-turbo", 128_000, 4_096, Cl100k),
    spec("gpt-4", 8_192, 8_192, Cl100k),
    spec("gpt-4-32k", 32_768, 32_768, Cl100k),
    spec("gpt-3.5-turbo", 16_385, 4_096, Cl100k),
    spec("claude-3-haiku", 200_000, 4_096, Approximate),
    spec("claude-3-opus", 200_000, 4_096, Approximate),
    spec("claude-3-5-haiku", 200_000, 8_192, Approximate),
    spec("claude-3-5-sonnet", 200_000, 8_192, Approximate),
    spec("claude-3-7-sonnet", 200_000, 64_000, Approximate),
    spec("claude-sonnet-4", 200_000, 64_000, Approximate),
    spec("claude-sonnet-4-5", 200_000, 64_000, Approximate),
    spec("claude-opus-4", 200_000, 32_000, Approximate),
    spec("claude-opus-4-1", 200_000, 32_000, Approximate),
    spec("claude-haiku-4-5", 200_000, 64_000, Approximate),
    spec("gemini-1.5-pro", 2_097_152, 8_192, Approximate),
    spec("gemini-1.5-flash", 1_048_576, 8_192, Approximate),
    spec("gemini-2.0-flash", 1_048_576, 8_192, Approximate),
    spec("gemini-2.5-pro", 1_048_576, 65_536, Approximate),
    spec("gemini-2.5-flash", 1_048_576, 65_536, Approximate),
    spec("llama-3.1", 131_072, 4_096, Approximate),
    spec("llama-3.3", 131_072, 4_096, Approximate),
    spec("mistral-large", 131_072, 4_096, Approximate),
    spec("mistral-small", 32_768, 4_096, Approximate),
    spec("deepseek-chat", 65_536, 8_192, Approximate),
];

/// Looks a model up by name (case-insensitive, provider prefix and dated suffix allowed).
pub fn lookup(model: &str) -> Option<&'static ModelSpec> {
    let lowered = model.trim().to_ascii_lowercase();
    let name = lowered.rsplit('/').next().unwrap_or(&lowered);
    MODELS
        .iter()
        .filter(|m| name == m.name || name.strip_prefix(m.name).is_some_and(|rest| rest.starts_with('-')))
        .max_by_key(|m| m.name.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_windows() {
        assert_eq!(lookup("gpt-4o").unwrap().context_window, 128_000);
        assert_eq!(lookup("gpt-4o-mini").unwrap().context_window, 128_000);
        assert_eq!(lookup("GPT-4o-mini").unwrap().name, "gpt-4o-mini");
    }

    #[test]
    fn dated_and_prefixed_names() {
        assert_eq!(lookup("gpt-4o-2024-08-06").unwrap().name, "gpt-4o");
        assert_eq!(lookup("gpt-4o-mini-2024-07-18").unwrap().name, "gpt-4o-mini");
        assert_eq!(lookup("openai/gpt-4-turbo-2024-04-09").unwrap().name, "gpt-4-turbo");
        assert_eq!(lookup("gpt-4-0613").unwrap().name, "gpt-4");
        assert_eq!(lookup("claude-3-5-sonnet-20241022").unwrap().name, "claude-3-5-sonnet");
        assert_eq!(lookup("llama-3.1-70b-instruct").unwrap().name, "llama-3.1");
    }

    #[test]
    fn unknown_and_near_misses() {
        assert!(lookup("my-private-model").is_none());
        assert!(lookup("gpt-4ox").is_none());
        assert!(lookup("").is_none());
    }

    #[test]
    fn names_are_unique_and_lowercase() {
        for (i, a) in MODELS.iter().enumerate() {
            assert_eq!(a.name, a.name.to_ascii_lowercase());
            assert!(a.max_output_tokens <= a.context_window);
            assert!(MODELS[i + 1..].iter().all(|b| b.name != a.name));
        }
    }
}
