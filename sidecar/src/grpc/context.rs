//! `ibex.context.v1.ContextService/AssembleContext`: authentication and translation around
//! [`crate::context::ContextEngine`].

use std::sync::Arc;

use ibex_engine::context::Category;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::proto::context::v1 as pb;
use crate::auth::{Authenticator, SCOPE_CONTEXT};
use crate::context::{ContextAnswer, ContextEngine, ContextRequest, MemoryControls};
use crate::error::ApiError;

pub use pb::context_service_server::ContextServiceServer;

pub struct ContextService {
    pub engine: Arc<ContextEngine>,
    pub auth: Arc<Authenticator>,
}

fn parse_uuid(field: &str, value: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(value.trim()).map_err(|_| ApiError::invalid(format!("{field} must be a UUID, got {value:?}")))
}

/// The wire request as the context engine takes it: ids parsed, the model named, the optional
/// memory controls gathered. Bounds that need the server's settings (message size, the controls'
/// ranges) are checked by the engine before any work.
pub fn context_request(body: pb::AssembleContextRequest) -> Result<ContextRequest, ApiError> {
    let org = parse_uuid("org_id", &body.org_id)?;
    let agent = parse_uuid("agent_id", &body.agent_id)?;
    if body.model.trim().is_empty() {
        return Err(ApiError::invalid("model must not be empty"));
    }
    Ok(ContextRequest {
        org,
        agent,
        model: body.model,
        messages: body.messages.into_iter().map(|m| (m.role, m.content)).collect(),
        max_output_tokens: body.max_output_tokens,
        session_id: body.session_id,
        controls: MemoryControls {
            max_memory_tokens: body.max_memory_tokens,
            min_relevance: body.min_relevance,
            explain: body.explain.unwrap_or(false),
        },
    })
}

#[tonic::async_trait]
impl pb::context_service_server::ContextService for ContextService {
    async fn assemble_context(
        &self,
        request: Request<pb::AssembleContextRequest>,
    ) -> Result<Response<pb::AssembleContextResponse>, Status> {
        let authorization = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let source = super::auth::peer_source(&request);
        let principal = self.auth.authenticate_from(authorization.as_deref(), &source).await?;
        principal.require_scope(SCOPE_CONTEXT)?;
        let context_request = context_request(request.into_inner())?;
        principal.require_org(context_request.org)?;
        principal.require_agent(context_request.agent)?;
        let answer = self.engine.assemble(context_request).await?;
        Ok(Response::new(to_proto(answer)))
    }
}

fn kind(category: Category) -> pb::SectionKind {
    match category {
        Category::Procedural => pb::SectionKind::Procedural,
        Category::Declarative => pb::SectionKind::Declarative,
        Category::Episodic => pb::SectionKind::Episodic,
    }
}

/// The answer as the proto describes it (five sections, always in order).
pub fn to_proto(answer: ContextAnswer) -> pb::AssembleContextResponse {
    let a = &answer.assembly;
    let mut sections = Vec::with_capacity(5);
    sections.push(pb::Section {
        kind: pb::SectionKind::Directive as i32,
        text: a.directive_text.clone(),
        tokens: a.directive_tokens as u32,
        items: answer
            .directives
            .iter()
            .zip(&a.directive_item_tokens)
            .map(|(d, &tokens)| pb::SectionItem {
                id: d.id.clone(),
                role: String::new(),
                content: d.content.clone(),
                tokens: tokens as u32,
            })
            .collect(),
    });
    for section in &a.memory_sections {
        sections.push(pb::Section {
            kind: kind(section.category) as i32,
            text: section.text.clone(),
            tokens: section.tokens as u32,
            items: section
                .items
                .iter()
                .map(|&(i, tokens)| pb::SectionItem {
                    id: answer.candidates[i].id.clone(),
                    role: String::new(),
                    content: answer.candidates[i].content.clone(),
                    tokens: tokens as u32,
                })
                .collect(),
        });
    }
    sections.push(pb::Section {
        kind: pb::SectionKind::History as i32,
        text: String::new(),
        tokens: a.budget.history_tokens as u32,
        items: a
            .history
            .iter()
            .map(|&(i, tokens)| pb::SectionItem {
                id: String::new(),
                role: answer.messages[i].0.clone(),
                content: answer.messages[i].1.clone(),
                tokens: tokens as u32,
            })
            .collect(),
    });
    let memories = a
        .chosen
        .iter()
        .map(|&(i, tokens)| {
            let c = &answer.candidates[i];
            pb::ScoredMemory {
                memory_id: c.id.clone(),
                category: c.category.as_str().to_string(),
                score: c.score.total,
                relevance: c.score.relevance,
                recency: c.score.recency,
                usefulness: c.score.usefulness,
                confidence: c.score.confidence,
                access_frequency: c.score.access_frequency,
                tokens: tokens as u32,
                source: c.source.as_str().to_string(),
            }
        })
        .collect();
    let b = &a.budget;
    pb::AssembleContextResponse {
        sections,
        context: a.context.clone(),
        memories,
        total_tokens: a.total_tokens as u32,
        budget: Some(pb::Budget {
            context_window: b.context_window as u32,
            max_output_tokens: b.max_output_tokens as u32,
            directive_tokens: b.directive_tokens as u32,
            available_tokens: b.available_tokens as u32,
            memory_budget: b.memory_budget as u32,
            memory_tokens: b.memory_tokens as u32,
            history_budget: b.history_budget as u32,
            history_tokens: b.history_tokens as u32,
        }),
        degraded: answer.degraded.is_some(),
        degraded_reason: answer.degraded.clone().unwrap_or_default(),
        timings: answer
            .timings
            .iter()
            .map(|t| pb::DependencyTiming {
                name: t.name.to_string(),
                millis: t.millis,
                status: t.status.to_string(),
                detail: t.detail.clone(),
            })
            .collect(),
        total_millis: answer.total.as_secs_f64() * 1000.0,
        model: a.model.name.to_string(),
        exact_token_counts: a.exact_token_counts,
        session_id: answer.session_id.clone().unwrap_or_default(),
        left_out: if answer.explain {
            answer
                .left_out()
                .into_iter()
                .map(|m| pb::LeftOutMemory {
                    memory_id: m.memory_id,
                    category: m.category.to_string(),
                    score: m.score,
                    relevance: m.relevance,
                    tokens: m.tokens as u32,
                    source: m.source.to_string(),
                    reason: m.reason.to_string(),
                    threshold: m.threshold,
                    near_copy_of: m.near_copy_of.unwrap_or_default(),
                })
                .collect()
        } else {
            Vec::new()
        },
        candidates_considered: answer.candidates.len() as u32,
    }
}
