//! `/v1/overview`: the org's (or one agent's) figures at a glance, from `ibex_core.org_overview`:
//! memories, agents and sessions (now, last 24 hours, last 30 days), and the health of the
//! workers that serve the org: queue depths with their oldest item, and dead letters.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{ApiQuery, Caller};
use super::{for_org, sql_error::from_sqlx};
use crate::error::ApiError;
use crate::state::AppState;

const SCOPE: &str = "analytics:read";

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OverviewQuery {
    /// One agent's figures (an agent-bound token gets its agent's whatever it asks).
    pub agent_id: Option<Uuid>,
}

/// A count of now, the last 24 hours and the last 30 days.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Window {
    pub total: i64,
    pub last_24h: i64,
    pub last_30d: i64,
}

/// What waits in one queue, and since when (absent when it is empty).
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Queue {
    pub pending: i64,
    pub oldest: Option<DateTime<Utc>>,
}

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Workers {
    /// Memory events the indexer has not processed (related links, statistics).
    pub indexer: Queue,
    /// Completed sessions not yet learnt from.
    pub extraction: Queue,
    /// Completed sessions not yet written to S3.
    pub archive: Queue,
    /// Changes not yet pushed to the hot cache.
    pub hot_cache: Queue,
    /// Unresolved dead letters (events and jobs that failed every attempt).
    pub dead_letters: Queue,
    /// Sessions whose extraction gave up.
    pub dead_extractions: Queue,
}

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Overview {
    pub agent_id: Option<Uuid>,
    /// Active memories now; memories written in the windows.
    pub memories: Window,
    /// Agents not archived.
    pub agents: i64,
    /// Active sessions now; sessions started in the windows.
    pub sessions: Window,
    /// The org's queues, whatever the agent.
    pub workers: Workers,
}

#[utoipa::path(
    get,
    path = "/v1/overview",
    operation_id = "overview_get",
    tag = "analytics",
    description = "The org's (or one agent's) memories, agents and sessions, and the health of the workers that serve it \
                   (queues and dead letters). Scope: `analytics:read`.",
    params(OverviewQuery),
    responses((status = 200, description = "The overview", body = Overview)),
)]
pub async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(query): ApiQuery<OverviewQuery>,
) -> Result<Json<Overview>, ApiError> {
    caller.require_scope(SCOPE)?;
    if let Some(agent) = query.agent_id {
        caller.require_agent(agent)?;
    }
    let agent = query.agent_id.or(caller.agent_id);
    let mut tx = for_org(&state, caller.org_id).await?;
    let rows: Vec<(String, i64, Option<DateTime<Utc>>)> =
        sqlx::query_as("SELECT figure, value, oldest FROM ibex_core.org_overview($1, $2)")
            .bind(caller.org_id)
            .bind(agent)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| from_sqlx("reading the overview", e))?;
    Ok(Json(assemble(agent, rows)))
}

/// The figures, one row each, into their places; a figure the function does not answer stays 0.
fn assemble(agent: Option<Uuid>, rows: Vec<(String, i64, Option<DateTime<Utc>>)>) -> Overview {
    let mut overview = Overview {
        agent_id: agent,
        ..Overview::default()
    };
    for (figure, value, oldest) in rows {
        let queue = Queue { pending: value, oldest };
        let w = &mut overview.workers;
        match figure.as_str() {
            "memories_active" => overview.memories.total = value,
            "memories_24h" => overview.memories.last_24h = value,
            "memories_30d" => overview.memories.last_30d = value,
            "agents" => overview.agents = value,
            "sessions_active" => overview.sessions.total = value,
            "sessions_24h" => overview.sessions.last_24h = value,
            "sessions_30d" => overview.sessions.last_30d = value,
            "queue_index" => w.indexer = queue,
            "queue_extraction" => w.extraction = queue,
            "queue_archive" => w.archive = queue,
            "queue_hot_cache" => w.hot_cache = queue,
            "dead_letters" => w.dead_letters = queue,
            "dead_extractions" => w.dead_extractions = queue,
            other => tracing::warn!(
                figure = other,
                "org_overview answered a figure this sidecar does not know"
            ),
        }
    }
    overview
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_land_in_their_places() {
        let at = Utc::now();
        let overview = assemble(
            None,
            vec![
                ("memories_active".into(), 7, None),
                ("sessions_24h".into(), 3, None),
                ("queue_archive".into(), 2, Some(at)),
                ("something_new".into(), 9, None),
            ],
        );
        assert_eq!(overview.memories.total, 7);
        assert_eq!(overview.sessions.last_24h, 3);
        assert_eq!(overview.workers.archive.pending, 2);
        assert_eq!(overview.workers.archive.oldest, Some(at));
        assert_eq!(overview.workers.indexer.pending, 0);
    }
}
