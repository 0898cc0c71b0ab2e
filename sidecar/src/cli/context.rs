//! `ibex context`: one AssembleContext call, as the LLM proxy makes it, without grpcurl. Prints
//! what was chosen (memories with their score parts, the budget) and the context message itself.

use std::time::Duration;

use anyhow::{anyhow, Context as _};
use clap::Args;
use serde_json::{json, Value};
use tonic::metadata::MetadataValue;
use uuid::Uuid;

use super::output::{table, Printer};
use crate::grpc::proto::context::v1::context_service_client::ContextServiceClient;
use crate::grpc::proto::context::v1::{AssembleContextRequest, AssembleContextResponse, ChatMessage, SectionKind};

#[derive(Debug, Args)]
pub struct ContextArgs {
    /// The sidecar's gRPC listener.
    #[arg(long, env = "IBEX_GRPC_URL", default_value = "http://127.0.0.1:8781")]
    grpc_url: String,
    /// A token with the context:assemble scope.
    #[arg(long, env = "IBEX_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[arg(long, env = "IBEX_ORG_ID")]
    org: Uuid,
    #[arg(long, env = "IBEX_AGENT_ID")]
    agent: Uuid,
    /// The model whose context window sets the budget.
    #[arg(long, default_value = "gpt-4o-mini")]
    model: String,
    /// Earlier turns, in order, as ROLE=TEXT (e.g. -m user=hi -m assistant=hello).
    #[arg(long = "message", short = 'm', value_parser = parse_message)]
    messages: Vec<(String, String)>,
    /// The user's latest message.
    question: String,
    #[arg(long)]
    session: Option<Uuid>,
    #[arg(long)]
    max_output_tokens: Option<u32>,
    /// At most this many memory tokens in the context (the server's cap still applies).
    #[arg(long)]
    max_memory_tokens: Option<u32>,
    /// Relevance (0 to 1) below which a memory is not packed, instead of the server's.
    #[arg(long)]
    min_relevance: Option<f64>,
    /// Also list the candidates that were left out, and why.
    #[arg(long)]
    explain: bool,
    /// Print the whole answer as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_message(text: &str) -> Result<(String, String), String> {
    let (role, content) = text
        .split_once('=')
        .ok_or_else(|| format!("expected ROLE=TEXT, got {text:?}"))?;
    match role {
        "system" | "user" | "assistant" | "tool" => Ok((role.to_string(), content.to_string())),
        other => Err(format!("unknown role {other:?} (system, user, assistant or tool)")),
    }
}

pub async fn run(args: ContextArgs) -> anyhow::Result<()> {
    let token = args
        .token
        .clone()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| anyhow!("no token: pass --token or set IBEX_TOKEN"))?;
    let endpoint = tonic::transport::Endpoint::from_shared(args.grpc_url.clone())
        .context("--grpc-url is not a URL")?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30));
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("connecting to {}: is the sidecar running (make run)?", args.grpc_url))?;
    let mut messages: Vec<ChatMessage> = args
        .messages
        .iter()
        .map(|(role, content)| ChatMessage {
            role: role.clone(),
            content: content.clone(),
        })
        .collect();
    messages.push(ChatMessage {
        role: "user".into(),
        content: args.question.clone(),
    });
    let mut request = tonic::Request::new(AssembleContextRequest {
        org_id: args.org.to_string(),
        agent_id: args.agent.to_string(),
        model: args.model.clone(),
        messages,
        max_output_tokens: args.max_output_tokens,
        session_id: args.session.map(|s| s.to_string()),
        max_memory_tokens: args.max_memory_tokens,
        min_relevance: args.min_relevance,
        explain: args.explain.then_some(true),
    });
    let bearer: MetadataValue<_> = format!("Bearer {token}")
        .parse()
        .context("the token is not a valid header value")?;
    request.metadata_mut().insert("authorization", bearer);
    let answer = ContextServiceClient::new(channel)
        .assemble_context(request)
        .await
        .map_err(|status| anyhow!("AssembleContext: {:?}: {}", status.code(), status.message()))?
        .into_inner();
    if args.json {
        Printer { json: true }.object(&to_json(&answer));
    } else {
        print_for_people(&answer);
    }
    Ok(())
}

fn section_name(kind: i32) -> &'static str {
    match SectionKind::try_from(kind).unwrap_or(SectionKind::Unspecified) {
        SectionKind::Directive => "directive",
        SectionKind::Procedural => "procedural",
        SectionKind::Declarative => "declarative",
        SectionKind::Episodic => "episodic",
        SectionKind::History => "history",
        SectionKind::Unspecified => "unspecified",
    }
}

/// The answer as JSON (prost types do not serialise themselves).
pub fn to_json(a: &AssembleContextResponse) -> Value {
    let budget = a.budget.unwrap_or_default();
    json!({
        "model": a.model,
        "session_id": a.session_id,
        "total_tokens": a.total_tokens,
        "total_millis": a.total_millis,
        "degraded": a.degraded,
        "degraded_reason": a.degraded_reason,
        "exact_token_counts": a.exact_token_counts,
        "budget": {
            "context_window": budget.context_window, "max_output_tokens": budget.max_output_tokens,
            "directive_tokens": budget.directive_tokens, "available_tokens": budget.available_tokens,
            "memory_budget": budget.memory_budget, "memory_tokens": budget.memory_tokens,
            "history_budget": budget.history_budget, "history_tokens": budget.history_tokens,
        },
        "sections": a.sections.iter().map(|s| json!({
            "kind": section_name(s.kind), "tokens": s.tokens, "text": s.text,
            "items": s.items.iter().map(|i| json!({"id": i.id, "role": i.role, "tokens": i.tokens})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "memories": a.memories.iter().map(|m| json!({
            "memory_id": m.memory_id, "category": m.category, "score": m.score, "relevance": m.relevance,
            "recency": m.recency, "usefulness": m.usefulness, "confidence": m.confidence,
            "access_frequency": m.access_frequency, "tokens": m.tokens, "source": m.source,
        })).collect::<Vec<_>>(),
        "timings": a.timings.iter().map(|t| json!({
            "name": t.name, "millis": t.millis, "status": t.status, "detail": t.detail,
        })).collect::<Vec<_>>(),
        "candidates_considered": a.candidates_considered,
        "left_out": a.left_out.iter().map(|m| json!({
            "memory_id": m.memory_id, "category": m.category, "score": m.score, "relevance": m.relevance,
            "tokens": m.tokens, "source": m.source, "reason": m.reason, "threshold": m.threshold,
            "near_copy_of": m.near_copy_of,
        })).collect::<Vec<_>>(),
        "context": a.context,
    })
}

fn print_for_people(a: &AssembleContextResponse) {
    let whole = to_json(a);
    let budget = &whole["budget"];
    println!(
        "model {}  total {} tokens  in {:.1} ms{}",
        a.model,
        a.total_tokens,
        a.total_millis,
        if a.degraded {
            format!("  DEGRADED: {}", a.degraded_reason)
        } else {
            String::new()
        }
    );
    println!(
        "budget: window {}  output {}  directive {}  memories {}/{}  history {}/{}",
        budget["context_window"],
        budget["max_output_tokens"],
        budget["directive_tokens"],
        budget["memory_tokens"],
        budget["memory_budget"],
        budget["history_tokens"],
        budget["history_budget"]
    );
    let memories = whole["memories"].as_array().cloned().unwrap_or_default();
    println!("\n{} memories chosen:", memories.len());
    if !memories.is_empty() {
        println!(
            "{}",
            table(
                &memories,
                &[
                    "memory_id",
                    "category",
                    "score",
                    "relevance",
                    "recency",
                    "tokens",
                    "source"
                ]
            )
        );
    }
    let left_out = whole["left_out"].as_array().cloned().unwrap_or_default();
    if !left_out.is_empty() {
        println!(
            "\n{} of {} candidates left out:",
            left_out.len(),
            a.candidates_considered
        );
        println!(
            "{}",
            table(
                &left_out,
                &[
                    "memory_id",
                    "category",
                    "score",
                    "relevance",
                    "reason",
                    "threshold",
                    "near_copy_of"
                ]
            )
        );
    }
    println!("\n--- context message ---\n{}", a.context);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_role_equals_text() {
        assert_eq!(parse_message("user=a=b").unwrap(), ("user".into(), "a=b".into()));
        assert!(parse_message("robot=x").is_err());
        assert!(parse_message("no separator").is_err());
    }
}
