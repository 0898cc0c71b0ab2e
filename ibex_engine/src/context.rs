//! Context assembly, the pure part: the token budget of one model call, scoring and packing the
//! memory candidates, trimming the conversation history, and rendering the sections in order
//! (directive, procedural, declarative, episodic, history). The sidecar fetches the inputs
//! (directives, hot memories from Redis, cold ones from `ibex_core.search`) and calls [`assemble`].
//!
//! # Budget
//!
//! ```text
//! output reserve   = max_output_tokens of the request, else min(model output limit, window / 4)
//! framing          = the context system message's chat framing + the reply primer
//! available        = window - output reserve - directive tokens - framing
//! mandatory        = the caller's system messages + the latest user message and everything after it
//! memory budget    = min(max_memory_tokens, floor(memory_share * available), available - mandatory)
//! history budget   = available - tokens the packed memories actually use
//! ```
//!
//! So memories get at most a configurable share (and an absolute cap: memory context is paid for
//! on every call), what they leave unused goes to the history, and the history is filled newest
//! first as a contiguous tail of the conversation: an older message is never kept while a newer
//! one is dropped. The mandatory messages are always kept; when they alone do not fit, the call is
//! refused ([`ContextError::HistoryTooLarge`]) rather than sent truncated. The default output
//! reserve is capped at a quarter of the window because some models (GPT-4: 8K window, 8K output)
//! would otherwise leave nothing for the prompt.
//!
//! # Scores
//!
//! Every candidate gets the full composite score of [`crate::score`]. A candidate returned by the
//! cold search carries the score Postgres computed at query time with this same code (fresher
//! counts, and a relevance that blends semantic and lexical evidence); it is kept as is and wins
//! when a memory is both hot and cold. Hot-only candidates are scored with the [`ScoreParams`]
//! the database used for that search. A hot-only candidate's relevance is the semantic similarity to the query blended with
//! a lexical coverage of 0: the search already returned the memories whose lexical evidence
//! ranked them highest, so a hot memory missing from its top k would rank below them anyway;
//! treating its lexical part as 0 can only lower memories that were outside that top k.
//!
//! # Selection
//!
//! Before packing, [`crate::selection`] decides which candidates may go in at all (relevance
//! floors, small talk, near-copies); the knapsack then packs those by composite score. Every
//! candidate left out is in [`Assembly::left_out`] with its reason.
//!
//! # Tokens
//!
//! Counted with [`crate::tokens`] for the model. A section's count is the sum of its pieces
//! (heading line and one line per item); whole-text counts are never larger, because the
//! tokenizers split at line breaks and merging whitespace across pieces only removes tokens.
//! Memory headings of all three categories are reserved before packing, so any mix of categories
//! fits what the packer chose.

use std::fmt;

use serde::Serialize;

pub use crate::category::Category;
use crate::knapsack::{self, Item};
use crate::models::{self, ModelSpec, TokenizerKind};
use crate::relevance;
use crate::score::{self, MemorySignals, ScoreBreakdown, ScoreParams};
use crate::selection::{self, Candidate};
pub use crate::selection::{LeftOut, SelectionSettings};
use crate::tokens::{self, TOKENS_PER_MESSAGE, TOKENS_REPLY_PRIMER};

/// Heading of the directive section.
pub const DIRECTIVE_HEADING: &str = "## Directives\n";
/// Blank line between sections of the context message.
pub const SECTION_SEPARATOR: &str = "\n";

/// Knobs of the assembly; the sidecar's settings of the same names.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ContextSettings {
    /// Largest share of the available tokens that memories may take.
    pub memory_share: f64,
    /// Absolute cap on memory tokens.
    pub max_memory_tokens: usize,
    /// Which candidates may be packed at all ([`crate::selection`]).
    pub selection: SelectionSettings,
}

impl Default for ContextSettings {
    fn default() -> Self {
        Self {
            memory_share: 0.5,
            max_memory_tokens: 4096,
            selection: SelectionSettings::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContextError {
    UnknownModel(String),
    OutputTooLarge { requested: usize, window: usize },
    DirectivesTooLarge { directive_tokens: usize, room: usize },
    HistoryTooLarge { needed: usize, available: usize },
}

impl fmt::Display for ContextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownModel(name) => write!(
                f,
                "unknown model {name:?}: its context window is not known, so no token budget can be computed \
                 (use a listed model name such as gpt-4o or gpt-4o-mini, optionally with a date suffix)"
            ),
            Self::OutputTooLarge { requested, window } => write!(
                f,
                "max_output_tokens {requested} leaves no room for a prompt in the model's {window}-token window"
            ),
            Self::DirectivesTooLarge { directive_tokens, room } => write!(
                f,
                "the agent's directives take {directive_tokens} tokens; the model leaves {room} after the output reserve"
            ),
            Self::HistoryTooLarge { needed, available } => write!(
                f,
                "the latest user message and the system messages need {needed} tokens; the model leaves {available} \
                 after the output reserve and the directives"
            ),
        }
    }
}

impl std::error::Error for ContextError {}

/// The model entry for a name (see [`models::lookup`]); unknown models are an error.
pub fn resolve_model(name: &str) -> Result<&'static ModelSpec, ContextError> {
    models::lookup(name).ok_or_else(|| ContextError::UnknownModel(name.to_string()))
}

/// Tokens kept free for the answer.
pub fn output_reserve(model: &ModelSpec, requested: Option<usize>) -> Result<usize, ContextError> {
    let window = model.context_window as usize;
    match requested {
        Some(n) if n >= window => Err(ContextError::OutputTooLarge { requested: n, window }),
        Some(n) => Ok(n),
        None => Ok((model.max_output_tokens as usize).min(window / 4)),
    }
}

/// The most memory tokens a call can get before its messages are counted: the cap, or the
/// memory share of the window left after the output reserve, whichever is less. The real
/// budget ([`assemble`]) is never more; the cold pool is sized by this.
pub fn memory_token_ceiling(model: &ModelSpec, output_reserve: usize, settings: &ContextSettings) -> usize {
    let room = (model.context_window as usize).saturating_sub(output_reserve);
    let share = (settings.memory_share.clamp(0.0, 1.0) * room as f64).floor() as usize;
    settings.max_memory_tokens.min(share)
}

/// A directive, already ordered (priority, then name).
#[derive(Clone, Debug, PartialEq)]
pub struct Directive {
    pub id: String,
    pub content: String,
}

/// A memory from the hot cache: its stored inputs, scored here at assembly time.
#[derive(Clone, Debug, PartialEq)]
pub struct HotCandidate {
    pub id: String,
    pub category: Category,
    pub content: String,
    pub signals: MemorySignals,
    /// Cosine similarity of the memory's embedding and the query's; `None` without a query.
    pub semantic: Option<f64>,
    /// The memory's embedding (for the near-copy rule).
    pub embedding: Option<Vec<f32>>,
}

/// A memory from the cold search, with the score Postgres computed (`ibex_core.search`): kept
/// as it is, never recomputed here.
#[derive(Clone, Debug, PartialEq)]
pub struct ColdCandidate {
    pub id: String,
    pub category: Category,
    pub content: String,
    pub score: ScoreBreakdown,
    /// The memory's embedding (for the near-copy rule).
    pub embedding: Option<Vec<f32>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Hot,
    Cold,
    Both,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hot => "hot",
            Self::Cold => "cold",
            Self::Both => "both",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ScoredCandidate {
    pub id: String,
    pub category: Category,
    pub content: String,
    pub score: ScoreBreakdown,
    pub source: Source,
    pub embedding: Option<Vec<f32>>,
}

/// Merges hot and cold candidates (one entry per memory id, cold first, then hot-only ones in
/// their input order) and scores each with the full composite score (see the module docs).
pub fn merge_and_score(hot: Vec<HotCandidate>, cold: Vec<ColdCandidate>, params: &ScoreParams) -> Vec<ScoredCandidate> {
    let hot_ids: std::collections::HashSet<&str> = hot.iter().map(|h| h.id.as_str()).collect();
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(hot.len() + cold.len());
    for c in cold {
        if !seen.insert(c.id.clone()) {
            continue;
        }
        let source = if hot_ids.contains(c.id.as_str()) {
            Source::Both
        } else {
            Source::Cold
        };
        out.push(ScoredCandidate {
            id: c.id,
            category: c.category,
            content: c.content,
            score: c.score,
            source,
            embedding: c.embedding,
        });
    }
    for h in hot {
        if !seen.insert(h.id.clone()) {
            continue;
        }
        let relevance = relevance::blend(h.semantic.unwrap_or(0.0), 0.0, params.lexical_weight);
        out.push(ScoredCandidate {
            score: score::composite(relevance, &h.signals, params.half_life_hours),
            id: h.id,
            category: h.category,
            content: h.content,
            source: Source::Hot,
            embedding: h.embedding,
        });
    }
    out
}

/// One memory as a line of its section. Line breaks inside a memory become spaces: one memory,
/// one line.
pub fn memory_line(content: &str) -> String {
    let flat: String = content
        .trim()
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    format!("- {flat}\n")
}

/// The directive section's text: heading, then each directive as a paragraph.
pub fn directive_text(directives: &[Directive]) -> String {
    if directives.is_empty() {
        return String::new();
    }
    let mut text = String::from(DIRECTIVE_HEADING);
    for (i, d) in directives.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        text.push_str(d.content.trim());
        text.push('\n');
    }
    text
}

/// Instructions of the caller (`system`, and OpenAI's newer name for it, `developer`): always
/// kept, wherever they are in the conversation.
pub fn is_instruction(role: &str) -> bool {
    role == "system" || role == "developer"
}

/// Which history messages to keep (indices, ascending), given each message's tokens and role.
/// Returns `Err(needed)` when the mandatory ones alone exceed `budget`.
pub fn trim_history(roles: &[&str], tokens: &[usize], budget: usize) -> Result<Vec<usize>, usize> {
    debug_assert_eq!(roles.len(), tokens.len());
    let tail_start = mandatory_tail_start(roles);
    let mandatory = |i: usize| i >= tail_start || is_instruction(roles[i]);
    let needed: usize = (0..roles.len()).filter(|&i| mandatory(i)).map(|i| tokens[i]).sum();
    if needed > budget {
        return Err(needed);
    }
    let mut left = budget - needed;
    let mut keep: Vec<usize> = (0..roles.len()).filter(|&i| mandatory(i)).collect();
    // Newest first, contiguous: stop at the first message that does not fit.
    for i in (0..tail_start).rev() {
        if is_instruction(roles[i]) {
            continue;
        }
        if tokens[i] > left {
            break;
        }
        left -= tokens[i];
        keep.push(i);
    }
    keep.sort_unstable();
    Ok(keep)
}

/// Index of the latest user message (the tail from it on is always kept); the last message when
/// there is no user message; 0 for an empty conversation.
pub fn mandatory_tail_start(roles: &[&str]) -> usize {
    roles
        .iter()
        .rposition(|r| *r == "user")
        .unwrap_or_else(|| roles.len().saturating_sub(1))
}

/// The text retrieval searches with: the latest user message, if any and not blank.
pub fn query_text(messages: &[(String, String)]) -> Option<&str> {
    messages
        .iter()
        .rev()
        .find(|(role, _)| role == "user")
        .map(|(_, content)| content.trim())
        .filter(|c| !c.is_empty())
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Budget {
    pub context_window: usize,
    pub max_output_tokens: usize,
    pub directive_tokens: usize,
    pub framing_tokens: usize,
    pub available_tokens: usize,
    pub memory_budget: usize,
    pub memory_tokens: usize,
    pub history_budget: usize,
    pub history_tokens: usize,
}

/// A rendered memory section.
#[derive(Clone, Debug, PartialEq)]
pub struct MemorySection {
    pub category: Category,
    pub text: String,
    pub tokens: usize,
    /// Indices into the candidates, best score first, with each line's tokens.
    pub items: Vec<(usize, usize)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Assembly {
    pub model: &'static ModelSpec,
    pub exact_token_counts: bool,
    pub directive_text: String,
    pub directive_tokens: usize,
    /// Tokens of each directive's paragraph, in order.
    pub directive_item_tokens: Vec<usize>,
    /// Procedural, declarative, episodic, in that order (possibly empty).
    pub memory_sections: Vec<MemorySection>,
    /// Chosen candidate indices in packing order, with their line tokens.
    pub chosen: Vec<(usize, usize)>,
    /// Candidates considered and not packed, with the reason ([`crate::selection`]).
    pub left_out: Vec<(usize, LeftOut)>,
    /// Tokens of each candidate's line (chosen or not).
    pub line_tokens: Vec<usize>,
    /// Kept message indices (ascending) with each message's tokens (framing included).
    pub history: Vec<(usize, usize)>,
    /// The system message: directive and memory sections.
    pub context: String,
    pub budget: Budget,
    /// Context message (with framing, when not empty) + history + reply primer.
    pub total_tokens: usize,
}

pub struct AssemblyInput<'a> {
    pub model: &'static ModelSpec,
    pub max_output_tokens: Option<usize>,
    pub directives: &'a [Directive],
    pub candidates: &'a [ScoredCandidate],
    /// (role, content), oldest first.
    pub messages: &'a [(String, String)],
    pub settings: &'a ContextSettings,
}

fn count(kind: TokenizerKind, text: &str) -> usize {
    tokens::count_with(kind, text).tokens
}

/// Budgets, packs, trims and renders (see the module docs for every rule).
pub fn assemble(input: AssemblyInput<'_>) -> Result<Assembly, ContextError> {
    let model = input.model;
    let kind = model.tokenizer;
    let window = model.context_window as usize;
    let output = output_reserve(model, input.max_output_tokens)?;

    let directive_text = directive_text(input.directives);
    let mut directive_item_tokens = Vec::with_capacity(input.directives.len());
    let mut directive_tokens = 0;
    if !input.directives.is_empty() {
        directive_tokens += count(kind, DIRECTIVE_HEADING);
        for (i, d) in input.directives.iter().enumerate() {
            let sep = usize::from(i > 0) * count(kind, "\n");
            let t = count(kind, &format!("{}\n", d.content.trim())) + sep;
            directive_item_tokens.push(t);
            directive_tokens += t;
        }
    }
    let framing = TOKENS_PER_MESSAGE + count(kind, "system") + TOKENS_REPLY_PRIMER;
    // One separator per possible section boundary (directive + three memory sections).
    let separators = 3 * count(kind, SECTION_SEPARATOR);
    let room = window - output;
    if directive_tokens + framing + separators > room {
        return Err(ContextError::DirectivesTooLarge { directive_tokens, room });
    }
    let available = room - directive_tokens - framing - separators;

    let roles: Vec<&str> = input.messages.iter().map(|(r, _)| r.as_str()).collect();
    let message_tokens: Vec<usize> = input
        .messages
        .iter()
        .map(|(role, content)| TOKENS_PER_MESSAGE + count(kind, role) + count(kind, content))
        .collect();
    let tail_start = mandatory_tail_start(&roles);
    let mandatory: usize = (0..roles.len())
        .filter(|&i| i >= tail_start || is_instruction(roles[i]))
        .map(|i| message_tokens[i])
        .sum();
    if mandatory > available {
        return Err(ContextError::HistoryTooLarge {
            needed: mandatory,
            available,
        });
    }
    let share = (input.settings.memory_share.clamp(0.0, 1.0) * available as f64).floor() as usize;
    let memory_budget = input.settings.max_memory_tokens.min(share).min(available - mandatory);

    // Pack the memory lines into what is left after reserving every heading.
    let heading_tokens: Vec<usize> = Category::ALL.iter().map(|c| count(kind, c.heading())).collect();
    let heading_reserve: usize = heading_tokens.iter().sum();
    let item_budget = memory_budget.saturating_sub(heading_reserve);
    let line_tokens: Vec<usize> = input
        .candidates
        .iter()
        .map(|c| count(kind, &memory_line(&c.content)))
        .collect();
    let selected = selection::select(
        &input
            .candidates
            .iter()
            .map(|c| Candidate {
                category: c.category,
                relevance: c.score.relevance,
                score: c.score.total,
                embedding: c.embedding.as_deref(),
            })
            .collect::<Vec<_>>(),
        &input.settings.selection,
        query_text(input.messages).is_some_and(selection::is_small_talk),
    );
    let items: Vec<Item> = selected
        .eligible
        .iter()
        .map(|&i| Item {
            score: input.candidates[i].score.total,
            tokens: line_tokens[i],
        })
        .collect();
    let packing = if memory_budget > heading_reserve {
        knapsack::pack(&items, item_budget)
    } else {
        knapsack::Packing {
            chosen: Vec::new(),
            tokens_used: 0,
        }
    };
    let chosen: Vec<(usize, usize)> = packing
        .chosen
        .iter()
        .map(|&k| selected.eligible[k])
        .map(|i| (i, line_tokens[i]))
        .collect();
    let mut left_out = selected.left_out;
    let packed: std::collections::HashSet<usize> = chosen.iter().map(|&(i, _)| i).collect();
    left_out.extend(
        selected
            .eligible
            .iter()
            .filter(|i| !packed.contains(i))
            .map(|&i| (i, LeftOut::Budget)),
    );

    let mut memory_sections = Vec::with_capacity(3);
    for category in Category::ALL {
        let items: Vec<(usize, usize)> = chosen
            .iter()
            .copied()
            .filter(|&(i, _)| input.candidates[i].category == category)
            .collect();
        let mut text = String::new();
        let mut tokens = 0;
        if !items.is_empty() {
            text.push_str(category.heading());
            tokens += heading_tokens[category.index()];
            for &(i, t) in &items {
                text.push_str(&memory_line(&input.candidates[i].content));
                tokens += t;
            }
        }
        memory_sections.push(MemorySection {
            category,
            text,
            tokens,
            items,
        });
    }
    let memory_tokens: usize = memory_sections.iter().map(|s| s.tokens).sum();

    let history_budget = available - memory_tokens;
    let kept =
        trim_history(&roles, &message_tokens, history_budget).map_err(|needed| ContextError::HistoryTooLarge {
            needed,
            available: history_budget,
        })?;
    let history: Vec<(usize, usize)> = kept.iter().map(|&i| (i, message_tokens[i])).collect();
    let history_tokens: usize = history.iter().map(|&(_, t)| t).sum();

    let mut parts: Vec<&str> = Vec::new();
    if !directive_text.is_empty() {
        parts.push(&directive_text);
    }
    for s in &memory_sections {
        if !s.text.is_empty() {
            parts.push(&s.text);
        }
    }
    let context = parts.join(SECTION_SEPARATOR);
    let separator_tokens = parts.len().saturating_sub(1) * count(kind, SECTION_SEPARATOR);
    let context_tokens = directive_tokens + memory_tokens + separator_tokens;
    let total_tokens = if context.is_empty() {
        history_tokens + TOKENS_REPLY_PRIMER
    } else {
        framing + context_tokens + history_tokens
    };

    Ok(Assembly {
        model,
        exact_token_counts: kind != TokenizerKind::Approximate,
        directive_text,
        directive_tokens,
        directive_item_tokens,
        memory_sections,
        chosen,
        left_out,
        line_tokens,
        history,
        context,
        budget: Budget {
            context_window: window,
            max_output_tokens: output,
            directive_tokens,
            framing_tokens: framing + separators,
            available_tokens: available,
            memory_budget,
            memory_tokens,
            history_budget,
            history_tokens,
        },
        total_tokens,
    })
}

/// What the memories of one context cost the caller: their tokens in the context message, how
/// many were packed, and where they came from (`None`: no memory was packed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryCost {
    pub tokens: usize,
    pub count: usize,
    pub source: Option<Source>,
}

impl MemoryCost {
    /// The source as recorded: `none` when no memory was packed.
    pub fn source_name(&self) -> &'static str {
        self.source.map_or("none", Source::as_str)
    }
}

/// The cost of an assembly's memories; `candidates` are the ones it was assembled from.
pub fn memory_cost(assembly: &Assembly, candidates: &[ScoredCandidate]) -> MemoryCost {
    let source = assembly
        .chosen
        .iter()
        .filter_map(|&(i, _)| candidates.get(i).map(|c| c.source))
        .reduce(|a, b| if a == b { a } else { Source::Both });
    MemoryCost {
        tokens: assembly.budget.memory_tokens,
        count: assembly.chosen.len(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Packing alone: these tests are about budgets and rendering, selection has its own.
    fn settings() -> ContextSettings {
        ContextSettings {
            selection: SelectionSettings::OFF,
            ..ContextSettings::default()
        }
    }

    fn msgs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(r, c)| (r.to_string(), c.to_string())).collect()
    }

    fn cand(id: &str, category: Category, content: &str, total: f64) -> ScoredCandidate {
        ScoredCandidate {
            id: id.into(),
            category,
            content: content.into(),
            score: ScoreBreakdown {
                relevance: total / 0.4,
                recency: 0.0,
                usefulness: 0.0,
                confidence: 0.0,
                access_frequency: 0.0,
                total,
            },
            source: Source::Cold,
            embedding: None,
        }
    }

    fn gpt4o() -> &'static ModelSpec {
        resolve_model("gpt-4o").unwrap()
    }

    #[test]
    fn unknown_models_are_refused_and_dated_names_resolve() {
        assert!(matches!(resolve_model("my-model"), Err(ContextError::UnknownModel(_))));
        assert_eq!(resolve_model("gpt-4o-mini-2024-07-18").unwrap().context_window, 128_000);
        assert!(resolve_model("nope").unwrap_err().to_string().contains("unknown model"));
    }

    #[test]
    fn output_reserve_defaults_to_the_limit_capped_at_a_quarter_window() {
        assert_eq!(output_reserve(gpt4o(), None).unwrap(), 16_384);
        let gpt4 = resolve_model("gpt-4").unwrap();
        assert_eq!(output_reserve(gpt4, None).unwrap(), 2048);
        assert_eq!(output_reserve(gpt4, Some(100)).unwrap(), 100);
        assert_eq!(
            output_reserve(gpt4, Some(8192)),
            Err(ContextError::OutputTooLarge {
                requested: 8192,
                window: 8192
            })
        );
    }

    #[test]
    fn cold_components_win_and_hot_only_use_semantic_relevance() {
        let signals = MemorySignals {
            confidence: 0.9,
            useful_count: 1,
            not_useful_count: 0,
            access_count: 4,
            hours_since_touch: 168.0,
        };
        let hot = vec![
            HotCandidate {
                id: "a".into(),
                category: Category::Declarative,
                content: "A".into(),
                signals,
                semantic: Some(0.5),
                embedding: None,
            },
            HotCandidate {
                id: "b".into(),
                category: Category::Procedural,
                content: "B".into(),
                signals,
                semantic: Some(0.8),
                embedding: None,
            },
        ];
        let cold = vec![ColdCandidate {
            id: "a".into(),
            category: Category::Declarative,
            content: "A".into(),
            // As Postgres computed it: kept, not recomputed.
            score: ScoreBreakdown {
                relevance: 0.7,
                recency: 0.9,
                usefulness: 0.6,
                confidence: 0.9,
                access_frequency: 0.3,
                total: 0.123,
            },
            embedding: None,
        }];
        let merged = merge_and_score(hot, cold, &ScoreParams::default());
        assert_eq!(merged.len(), 2, "one entry per memory");
        assert_eq!((merged[0].id.as_str(), merged[0].source), ("a", Source::Both));
        assert_eq!(merged[0].score.total, 0.123);
        assert_eq!((merged[1].id.as_str(), merged[1].source), ("b", Source::Hot));
        let relevance = 0.65 * 0.8;
        let want = score::composite(relevance, &signals, 168.0);
        assert!((merged[1].score.total - want.total).abs() < 1e-12);
        assert!((merged[1].score.relevance - relevance).abs() < 1e-12);
    }

    #[test]
    fn sections_come_in_order_with_best_scores_first() {
        let candidates = vec![
            cand("e1", Category::Episodic, "Met Ana in Lisbon last spring.", 0.9),
            cand("d1", Category::Declarative, "The user is vegetarian.", 0.5),
            cand("p1", Category::Procedural, "Answer in French.", 0.3),
            cand("d2", Category::Declarative, "The user's dog is called Rex.", 0.7),
        ];
        let directives = vec![
            Directive {
                id: "x".into(),
                content: "Be concise.".into(),
            },
            Directive {
                id: "y".into(),
                content: "Never share secrets.".into(),
            },
        ];
        let messages = msgs(&[("user", "hi"), ("assistant", "hello"), ("user", "what should I cook?")]);
        let a = assemble(AssemblyInput {
            model: gpt4o(),
            max_output_tokens: None,
            directives: &directives,
            candidates: &candidates,
            messages: &messages,
            settings: &settings(),
        })
        .unwrap();
        let expected = "## Directives\nBe concise.\n\nNever share secrets.\n\n\
                        ## Memories: procedural (how to work)\n- Answer in French.\n\n\
                        ## Memories: declarative (facts)\n- The user's dog is called Rex.\n- The user is vegetarian.\n\n\
                        ## Memories: episodic (what happened)\n- Met Ana in Lisbon last spring.\n";
        assert_eq!(a.context, expected);
        let order: Vec<&str> = a.chosen.iter().map(|&(i, _)| candidates[i].id.as_str()).collect();
        assert_eq!(order, ["e1", "d2", "d1", "p1"], "packing order is score order");
        assert_eq!(a.history.iter().map(|&(i, _)| i).collect::<Vec<_>>(), [0, 1, 2]);
        // Reported counts add up and never undercount the rendered text.
        let whole = tokens::count("gpt-4o", &a.context).tokens;
        let sections = a.directive_tokens + a.memory_sections.iter().map(|s| s.tokens).sum::<usize>();
        assert!(whole <= sections + 3, "{whole} vs {sections}");
        for s in &a.memory_sections {
            assert!(tokens::count("gpt-4o", &s.text).tokens <= s.tokens);
        }
        assert_eq!(
            a.total_tokens,
            a.budget.framing_tokens - 3 + a.directive_tokens + a.budget.memory_tokens + a.budget.history_tokens + 3
        );
    }

    #[test]
    fn memory_cost_counts_what_was_packed_and_where_it_came_from() {
        let with_source = |id: &str, source| ScoredCandidate {
            source,
            ..cand(id, Category::Declarative, "The user's dog is called Rex.", 0.5)
        };
        let messages = msgs(&[("user", "what is my dog called?")]);
        let cost = |candidates: &[ScoredCandidate]| {
            let a = assemble(AssemblyInput {
                model: gpt4o(),
                max_output_tokens: None,
                directives: &[],
                candidates,
                messages: &messages,
                settings: &settings(),
            })
            .unwrap();
            (memory_cost(&a, candidates), a.budget.memory_tokens)
        };
        let (none, _) = cost(&[]);
        assert_eq!((none.tokens, none.count, none.source_name()), (0, 0, "none"));
        let (hot, tokens) = cost(&[with_source("a", Source::Hot), with_source("b", Source::Hot)]);
        assert_eq!((hot.count, hot.source_name()), (2, "hot"));
        assert!(hot.tokens > 0 && hot.tokens == tokens);
        let (cold, _) = cost(&[with_source("a", Source::Cold)]);
        assert_eq!(cold.source_name(), "cold");
        let (mixed, _) = cost(&[with_source("a", Source::Hot), with_source("b", Source::Cold)]);
        assert_eq!(mixed.source_name(), "both");
        let (both, _) = cost(&[with_source("a", Source::Both)]);
        assert_eq!(both.source_name(), "both");
    }

    #[test]
    fn selection_decides_what_may_be_packed_and_says_why_the_rest_is_left_out() {
        let with_relevance = |id: &str, category, relevance: f64, total: f64| {
            let mut c = cand(id, category, &format!("Memory {id}."), total);
            c.score.relevance = relevance;
            c
        };
        let candidates = vec![
            with_relevance("best", Category::Episodic, 0.8, 0.6),
            with_relevance("weak", Category::Episodic, 0.1, 0.5),
            with_relevance("tail", Category::Episodic, 0.2, 0.45),
            with_relevance("rule", Category::Procedural, 0.0, 0.2),
            with_relevance("good", Category::Declarative, 0.7, 0.4),
            with_relevance("copy", Category::Episodic, 0.7, 0.3),
        ];
        let mut candidates = candidates;
        candidates[0].embedding = Some(vec![1.0, 0.0]);
        candidates[5].embedding = Some(vec![1.0, 0.01]);
        let messages = msgs(&[("user", "what did I do last weekend?")]);
        let ask = |messages: &[(String, String)], settings: ContextSettings| {
            assemble(AssemblyInput {
                model: gpt4o(),
                max_output_tokens: None,
                directives: &[],
                candidates: &candidates,
                messages,
                settings: &settings,
            })
            .unwrap()
        };
        let run = |settings: ContextSettings| ask(&messages, settings);
        let a = run(ContextSettings::default());
        let chosen: Vec<&str> = a.chosen.iter().map(|&(i, _)| candidates[i].id.as_str()).collect();
        assert_eq!(chosen, ["best", "good", "rule"]);
        let reasons: Vec<(&str, &str)> = a
            .left_out
            .iter()
            .map(|(i, r)| (candidates[*i].id.as_str(), r.code()))
            .collect();
        assert_eq!(
            reasons,
            [
                ("weak", "below_min_relevance"),
                ("tail", "below_relative_floor"),
                ("copy", "near_copy")
            ]
        );
        assert!(matches!(a.left_out[2].1, LeftOut::NearCopy { of: 0, .. }));
        assert_eq!(a.line_tokens.len(), candidates.len());

        // A budget that holds only the best: the other eligible ones are left out for it.
        let tight = ContextSettings {
            max_memory_tokens: count(TokenizerKind::O200k, Category::Episodic.heading())
                + count(TokenizerKind::O200k, Category::Declarative.heading())
                + count(TokenizerKind::O200k, Category::Procedural.heading())
                + a.line_tokens[0],
            ..ContextSettings::default()
        };
        let b = run(tight);
        assert_eq!(b.chosen.len(), 1);
        let budget: Vec<&str> = b
            .left_out
            .iter()
            .filter(|(_, r)| *r == LeftOut::Budget)
            .map(|(i, _)| candidates[*i].id.as_str())
            .collect();
        assert_eq!(budget, ["good", "rule"]);

        // Small talk: the standing instruction only.
        let hello = msgs(&[("user", "Hi! Good morning.")]);
        let greeted = ask(
            &hello,
            ContextSettings {
                selection: SelectionSettings {
                    small_talk_relevance: 0.9,
                    ..SelectionSettings::default()
                },
                ..ContextSettings::default()
            },
        );
        let chosen: Vec<&str> = greeted.chosen.iter().map(|&(i, _)| candidates[i].id.as_str()).collect();
        assert_eq!(chosen, ["rule"]);
        assert!(greeted.left_out.iter().any(|(_, r)| r.code() == "small_talk"));

        // Selection off: everything fits and is packed.
        let all = run(settings());
        assert_eq!(all.chosen.len(), candidates.len());
        assert!(all.left_out.is_empty());
    }

    #[test]
    fn knapsack_skips_a_large_memory_and_keeps_going() {
        let big = "word ".repeat(400);
        let candidates = vec![
            cand("big", Category::Declarative, &big, 0.95),
            cand("s1", Category::Declarative, "Small fact one.", 0.5),
            cand("s2", Category::Episodic, "Small fact two.", 0.4),
        ];
        let messages = msgs(&[("user", "hello")]);
        let settings = ContextSettings {
            max_memory_tokens: 100,
            ..settings()
        };
        let a = assemble(AssemblyInput {
            model: gpt4o(),
            max_output_tokens: None,
            directives: &[],
            candidates: &candidates,
            messages: &messages,
            settings: &settings,
        })
        .unwrap();
        let chosen: Vec<&str> = a.chosen.iter().map(|&(i, _)| candidates[i].id.as_str()).collect();
        assert_eq!(chosen, ["s1", "s2"]);
        assert!(a.budget.memory_tokens <= 100);
        assert_eq!(a.budget.memory_budget, 100);
    }

    #[test]
    fn history_is_trimmed_newest_first_and_the_latest_user_message_is_kept() {
        let roles = ["system", "user", "assistant", "user", "assistant", "user"];
        let tokens = [5, 10, 10, 10, 10, 50];
        assert_eq!(trim_history(&roles, &tokens, 1000).unwrap(), [0, 1, 2, 3, 4, 5]);
        // 55 mandatory (system + last user); 25 left: messages 4 and 3 fit (20), 2 does not.
        assert_eq!(trim_history(&roles, &tokens, 80).unwrap(), [0, 3, 4, 5]);
        // Contiguous: a small older message is not kept after a newer one was dropped.
        let tokens = [5, 1, 10, 30, 10, 50];
        assert_eq!(trim_history(&roles, &tokens, 70).unwrap(), [0, 4, 5]);
        assert_eq!(trim_history(&roles, &tokens, 54), Err(55));
        // A tool reply after the last user message belongs to the mandatory tail.
        let roles = ["user", "assistant", "user", "tool"];
        assert_eq!(trim_history(&roles, &[10, 10, 10, 10], 20).unwrap(), [2, 3]);
        assert_eq!(mandatory_tail_start(&["assistant", "assistant"]), 1);
        assert_eq!(mandatory_tail_start(&[]), 0);
    }

    #[test]
    fn a_small_window_trims_history_and_refuses_what_cannot_fit() {
        let gpt4 = resolve_model("gpt-4").unwrap();
        let long = "lorem ipsum dolor sit amet ".repeat(200);
        let mut conversation = Vec::new();
        for _ in 0..20 {
            conversation.push(("user", long.as_str()));
            conversation.push(("assistant", long.as_str()));
        }
        conversation.push(("user", "and now?"));
        let messages = msgs(&conversation);
        let a = assemble(AssemblyInput {
            model: gpt4,
            max_output_tokens: Some(1000),
            directives: &[],
            candidates: &[],
            messages: &messages,
            settings: &settings(),
        })
        .unwrap();
        assert!(a.total_tokens + 1000 <= 8192);
        let kept: Vec<usize> = a.history.iter().map(|&(i, _)| i).collect();
        assert_eq!(*kept.last().unwrap(), messages.len() - 1);
        assert!(kept.len() < messages.len());
        assert!(kept.windows(2).all(|w| w[1] == w[0] + 1), "a contiguous tail: {kept:?}");

        let huge = "token ".repeat(9000);
        let messages = msgs(&[("user", &huge)]);
        let err = assemble(AssemblyInput {
            model: gpt4,
            max_output_tokens: Some(100),
            directives: &[],
            candidates: &[],
            messages: &messages,
            settings: &settings(),
        })
        .unwrap_err();
        assert!(matches!(err, ContextError::HistoryTooLarge { .. }), "{err}");
        let directives = [Directive {
            id: "d".into(),
            content: huge.clone(),
        }];
        let err = assemble(AssemblyInput {
            model: gpt4,
            max_output_tokens: Some(100),
            directives: &directives,
            candidates: &[],
            messages: &msgs(&[("user", "hi")]),
            settings: &settings(),
        })
        .unwrap_err();
        assert!(matches!(err, ContextError::DirectivesTooLarge { .. }), "{err}");
    }

    #[test]
    fn memory_lines_are_single_lines() {
        assert_eq!(memory_line("  a\nb\r\nc "), "- a b  c\n");
        assert_eq!(directive_text(&[]), "");
    }

    #[test]
    fn query_is_the_latest_user_message() {
        let m = msgs(&[
            ("user", "first"),
            ("assistant", "x"),
            ("user", "  second "),
            ("assistant", "y"),
        ]);
        assert_eq!(query_text(&m), Some("second"));
        assert_eq!(query_text(&msgs(&[("system", "s")])), None);
        assert_eq!(query_text(&msgs(&[("user", "   ")])), None);
    }

    proptest! {
        #[test]
        fn budget_is_never_exceeded(
            n_mem in 0usize..40,
            words in prop::collection::vec(1usize..60, 40),
            scores in prop::collection::vec(0.0f64..1.0, 40),
            turns in prop::collection::vec(1usize..400, 1..30),
            output in 100usize..4000,
            cap in 0usize..3000,
            share in 0.0f64..1.0,
        ) {
            let gpt4 = resolve_model("gpt-4").unwrap();
            let candidates: Vec<ScoredCandidate> = (0..n_mem)
                .map(|i| cand(&format!("m{i}"), Category::ALL[i % 3], &"fact ".repeat(words[i]), scores[i]))
                .collect();
            let conversation: Vec<(String, String)> = turns
                .iter()
                .enumerate()
                .map(|(i, &w)| (if i % 2 == 0 { "user" } else { "assistant" }.to_string(), "chat ".repeat(w)))
                .collect();
            let settings = ContextSettings { max_memory_tokens: cap, memory_share: share, selection: SelectionSettings::OFF };
            let result = assemble(AssemblyInput {
                model: gpt4,
                max_output_tokens: Some(output),
                directives: &[Directive { id: "d".into(), content: "Be brief.".into() }],
                candidates: &candidates,
                messages: &conversation,
                settings: &settings,
            });
            if let Ok(a) = result {
                prop_assert!(a.budget.memory_tokens <= a.budget.memory_budget);
                prop_assert!(a.budget.memory_budget <= cap);
                prop_assert!(a.budget.history_tokens <= a.budget.history_budget);
                prop_assert!(a.total_tokens + output <= 8192, "{} + {output}", a.total_tokens);
                let whole = tokens::count("gpt-4", &a.context).tokens + a.budget.framing_tokens + a.budget.history_tokens;
                prop_assert!(whole + output <= 8192);
                let last = conversation.len() - 1;
                prop_assert_eq!(a.history.last().map(|&(i, _)| i), Some(last));
            }
        }
    }
}
