//! The MCP tools: `remember`, `search`, `list_memories`, `forget`, each for one agent of the
//! caller's org. They parse their arguments, check the scope and the agent, and call the REST
//! handlers' functions (`crate::api::memories::*_for`): one implementation of every check and
//! query. Answers are JSON: as structured content, and as the same JSON in a text block for
//! clients that read text only. A refusal is a tool error (`isError`) whose JSON is the REST
//! API's error envelope, so a model sees what went wrong and can correct its call.

use std::sync::Arc;

use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use rmcp::handler::server::common::{schema_for_empty_input, schema_for_input};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{CallToolResult, JsonObject, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::{tool, tool_handler, tool_router, ErrorData, RoleServer, ServerHandler};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::api::memories::{self, CreateMemory, ListMemories, Listing};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::http::middleware::RequestId;
use crate::state::AppState;

pub const READ: &str = "memories:read";
pub const WRITE: &str = "memories:write";
/// Hits a search answers unless asked: enough context, a small share of a model's window.
const DEFAULT_SEARCH_LIMIT: u32 = 10;
const DEFAULT_LIST_LIMIT: u32 = 20;

const INSTRUCTIONS: &str = "IBEX long-term memory for one agent. `remember` stores a fact \
(duplicates and superseded facts are handled for you), `search` finds memories relevant to a \
text, `list_memories` pages through them newest first, `forget` removes one. With a token bound \
to an agent, agent_id may be left out; with an org-wide token, every call names agent_id.";

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RememberArgs {
    /// The agent whose memory this is. Optional with a token bound to an agent (it must be that
    /// agent); required with an org-wide token.
    pub agent_id: Option<Uuid>,
    /// The fact to remember: one short, self-contained statement.
    pub content: String,
    /// declarative (facts; the default), procedural (how to do things) or episodic (events).
    pub category: Option<String>,
    /// How sure the fact is, 0 to 1 (default 0.8).
    pub confidence: Option<f32>,
    /// Tags to file the memory under (normalised to lower case).
    #[serde(default)]
    pub tags: Vec<String>,
    /// A small JSON object kept with the memory.
    pub metadata: Option<serde_json::Map<String, Value>>,
    /// When what it says happened, if not now (RFC 3339).
    pub occurred_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchArgs {
    /// The agent whose memories to search (see remember).
    pub agent_id: Option<Uuid>,
    /// What to look for, in natural language.
    pub query: String,
    /// How many memories at most (default 10, at most 200).
    pub limit: Option<u32>,
    /// Only memories of this category.
    pub category: Option<String>,
    /// Only memories with this tag.
    pub tag: Option<String>,
    /// Only memories created at or after this time (RFC 3339).
    pub created_after: Option<DateTime<Utc>>,
    /// Only memories created before this time (RFC 3339).
    pub created_before: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {
    /// The agent whose memories to list (see remember).
    pub agent_id: Option<Uuid>,
    /// Only memories of this category.
    pub category: Option<String>,
    /// Only memories with this tag.
    pub tag: Option<String>,
    /// active (default), superseded or deleted.
    pub status: Option<String>,
    /// Memories per page (default 20, at most 200).
    pub limit: Option<u32>,
    /// The next_cursor of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgetArgs {
    /// The agent whose memory this is (see remember).
    pub agent_id: Option<Uuid>,
    /// The memory to forget.
    pub memory_id: Uuid,
    /// Why, kept in the memory's history.
    pub reason: Option<String>,
}

/// A search answer: the hits, best first.
#[derive(Serialize)]
struct SearchResults<T> {
    results: T,
}

/// The MCP server of one request (stateless: rmcp builds one per POST from a clone).
#[derive(Clone)]
pub struct IbexMcp {
    state: AppState,
    tool_router: ToolRouter<Self>,
}

impl IbexMcp {
    pub fn new(state: AppState) -> Self {
        Self {
            state,
            tool_router: Self::tool_router(),
        }
    }
}

#[tool_router]
impl IbexMcp {
    #[tool(
        description = "Remember a fact for the agent. Near-duplicates are recognised and \
                       contradicted facts superseded; the answer says which path was taken \
                       (created, duplicate or superseded) and gives the stored memory. \
                       Needs scope memories:write.",
        input_schema = input_schema::<RememberArgs>(),
        annotations(title = "Remember", read_only_hint = false, destructive_hint = false, open_world_hint = false)
    )]
    async fn remember(
        &self,
        context: RequestContext<RoleServer>,
        arguments: JsonObject,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(
            &context,
            WRITE,
            arguments,
            |state, caller, args: RememberArgs| async move {
                let agent = acting_for(&caller, args.agent_id)?;
                let body = CreateMemory {
                    agent_id: agent,
                    content: args.content,
                    category: args.category,
                    confidence: args.confidence,
                    tags: args.tags,
                    metadata: args.metadata.map(Value::Object),
                    occurred_at: args.occurred_at,
                };
                let created = memories::remember_for(&state, &caller, body).await?;
                to_json(&created)
            },
        )
        .await
    }

    #[tool(
        description = "Search the agent's active memories for a text: the most relevant first, \
                       each with its score. Needs scope memories:read.",
        input_schema = input_schema::<SearchArgs>(),
        annotations(title = "Search memories", read_only_hint = true, open_world_hint = false)
    )]
    async fn search(
        &self,
        context: RequestContext<RoleServer>,
        arguments: JsonObject,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(
            &context,
            READ,
            arguments,
            |state, caller, args: SearchArgs| async move {
                let agent = acting_for(&caller, args.agent_id)?;
                let query = ListMemories {
                    agent_id: Some(agent),
                    category: args.category,
                    tag: args.tag,
                    status: None,
                    created_after: args.created_after,
                    created_before: args.created_before,
                    q: Some(args.query),
                    limit: Some(args.limit.unwrap_or(DEFAULT_SEARCH_LIMIT)),
                    cursor: None,
                };
                match memories::list_for(&state, &for_agent(&caller, agent), query).await? {
                    Listing::Ranked(ranked) => to_json(&SearchResults { results: ranked.data }),
                    // list_for ranks whenever a text query is given.
                    Listing::Page(page) => to_json(&SearchResults { results: page.data }),
                }
            },
        )
        .await
    }

    #[tool(
        description = "List the agent's memories (active ones unless status says otherwise), \
                       newest first, one page at a time (pass the answer's next_cursor to get \
                       the next page). Needs scope memories:read.",
        input_schema = input_schema::<ListArgs>(),
        annotations(title = "List memories", read_only_hint = true, open_world_hint = false)
    )]
    async fn list_memories(
        &self,
        context: RequestContext<RoleServer>,
        arguments: JsonObject,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(&context, READ, arguments, |state, caller, args: ListArgs| async move {
            let agent = acting_for(&caller, args.agent_id)?;
            let query = ListMemories {
                agent_id: Some(agent),
                category: args.category,
                tag: args.tag,
                // What the agent still knows, unless it asks for its past.
                status: Some(args.status.unwrap_or_else(|| "active".into())),
                created_after: None,
                created_before: None,
                q: None,
                limit: Some(args.limit.unwrap_or(DEFAULT_LIST_LIMIT)),
                cursor: args.cursor,
            };
            to_json(&memories::list_for(&state, &for_agent(&caller, agent), query).await?)
        })
        .await
    }

    #[tool(
        description = "Forget one of the agent's memories: it leaves every search and ranking \
                       (its history is kept). Needs scope memories:write.",
        input_schema = input_schema::<ForgetArgs>(),
        annotations(title = "Forget", read_only_hint = false, destructive_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn forget(
        &self,
        context: RequestContext<RoleServer>,
        arguments: JsonObject,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(
            &context,
            WRITE,
            arguments,
            |state, caller, args: ForgetArgs| async move {
                let agent = acting_for(&caller, args.agent_id)?;
                let memory = memories::forget_for(
                    &state,
                    &for_agent(&caller, agent),
                    args.memory_id,
                    args.reason.as_deref(),
                )
                .await?;
                to_json(&memory)
            },
        )
        .await
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for IbexMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(rmcp::model::Implementation::new("ibex", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }
}

impl IbexMcp {
    /// The frame of every tool: the caller (from the request), its scope, then the arguments;
    /// any refusal becomes a tool error carrying the error envelope.
    async fn run<A, F, Fut>(
        &self,
        context: &RequestContext<RoleServer>,
        scope: &str,
        arguments: JsonObject,
        tool: F,
    ) -> Result<CallToolResult, ErrorData>
    where
        A: DeserializeOwned,
        F: FnOnce(AppState, Principal, A) -> Fut,
        Fut: std::future::Future<Output = Result<Value, ApiError>>,
    {
        let parts = context.extensions.get::<Parts>();
        let request_id = parts
            .and_then(|p| p.extensions.get::<RequestId>())
            .map(|r| r.0.as_str());
        // The authentication layer put it there; without it the request was never checked.
        let Some(caller) = parts.and_then(|p| p.extensions.get::<Principal>()).cloned() else {
            return Err(ErrorData::internal_error(
                "the request carries no authenticated caller",
                None,
            ));
        };
        let outcome = async {
            caller.require_scope(scope)?;
            let args = serde_json::from_value::<A>(Value::Object(arguments))
                .map_err(|e| ApiError::invalid(format!("invalid arguments: {e}")))?;
            tool(self.state.clone(), caller, args).await
        }
        .await;
        Ok(match outcome {
            Ok(value) => CallToolResult::structured(value),
            Err(error) => {
                error.log(request_id);
                CallToolResult::structured_error(error.envelope(request_id))
            }
        })
    }
}

/// The agent a tool acts for: the token's own when it is bound to one (naming another is
/// refused), else the one named, which an org-wide token must do.
pub fn acting_for(caller: &Principal, asked: Option<Uuid>) -> Result<Uuid, ApiError> {
    if let Some(agent) = asked {
        caller.require_agent(agent)?;
    }
    asked.or(caller.agent_id).ok_or_else(|| {
        ApiError::invalid("this token is not bound to an agent: name the agent with the argument agent_id")
    })
}

/// The caller narrowed to one agent: the shared functions then read and write that agent's
/// memories only (another agent's memory id is not found), as for an agent-bound token.
fn for_agent(caller: &Principal, agent: Uuid) -> Principal {
    Principal {
        agent_id: Some(agent),
        ..caller.clone()
    }
}

fn to_json(value: &impl Serialize) -> Result<Value, ApiError> {
    serde_json::to_value(value).map_err(|e| ApiError::Internal(format!("serialising a tool answer: {e}")))
}

/// The JSON Schema of a tool's arguments (2020-12, as MCP asks), from their Rust type. The
/// arguments are parsed by the tool itself (not rmcp's `Parameters`), so that a bad argument is
/// a tool error the model can read and act on, not a protocol error.
fn input_schema<T: JsonSchema + 'static>() -> Arc<JsonObject> {
    schema_for_input::<T>().unwrap_or_else(|error| {
        // Unreachable for the derived argument types above (a unit test checks each).
        tracing::error!(%error, "MCP tool input schema");
        schema_for_empty_input()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn principal(agent: Option<Uuid>) -> Principal {
        Principal {
            token_id: Uuid::nil(),
            org_id: Uuid::from_u128(7),
            agent_id: agent,
            user_id: None,
            scopes: vec![READ.into()],
        }
    }

    #[test]
    fn schemas_are_objects_with_typed_ids() {
        for schema in [
            schema_for_input::<RememberArgs>(),
            schema_for_input::<SearchArgs>(),
            schema_for_input::<ListArgs>(),
            schema_for_input::<ForgetArgs>(),
        ] {
            let schema = schema.expect("valid input schema");
            assert_eq!(schema["type"], "object", "{schema:?}");
        }
        let forget = schema_for_input::<ForgetArgs>().unwrap();
        assert_eq!(forget["properties"]["memory_id"]["format"], "uuid");
        assert_eq!(forget["required"], json!(["memory_id"]));
        let remember = schema_for_input::<RememberArgs>().unwrap();
        assert_eq!(remember["required"], json!(["content"]));
    }

    #[test]
    fn the_agent_acted_for() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let bound = principal(Some(a));
        assert_eq!(acting_for(&bound, None).unwrap(), a);
        assert_eq!(acting_for(&bound, Some(a)).unwrap(), a);
        assert_eq!(acting_for(&bound, Some(b)).unwrap_err().code(), "permission_denied");
        let org_wide = principal(None);
        assert_eq!(acting_for(&org_wide, Some(b)).unwrap(), b);
        assert_eq!(acting_for(&org_wide, None).unwrap_err().code(), "invalid_request");
        let narrowed = for_agent(&org_wide, b);
        assert_eq!((narrowed.agent_id, narrowed.org_id), (Some(b), org_wide.org_id));
    }
}
