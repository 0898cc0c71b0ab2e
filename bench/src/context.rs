//! The AssembleContext workload shared by `bench-sidecar` and `bench-context-load`: the seeded
//! org (100 agents x 1,000 memories, from `bench-memory`), one directive per agent, a token, and
//! a 4-message conversation whose last user message asks about the agent's people.

use anyhow::{bail, Context};
use ibex_sidecar::grpc::proto::context::v1 as pb;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::dataset;

pub const AGENTS: usize = 100;
pub const PER_AGENT: usize = 1000;
pub const MODEL: &str = "gpt-4o-mini";

/// The questions of each agent's dataset (the same corpus `bench-memory` seeded).
pub fn agent_queries(agent_index: usize) -> Vec<String> {
    let people = PER_AGENT.div_ceil(18) + 1;
    let d = dataset::generate(1000 + agent_index as u64, people, 60);
    d.queries
        .into_iter()
        .filter(|q| q.answer < PER_AGENT)
        .map(|q| q.text)
        .collect()
}

pub struct Setup {
    pub org: Uuid,
    pub agents: Vec<Uuid>,
    pub token: String,
}

pub async fn setup(url: &str) -> anyhow::Result<Setup> {
    let mut conn = PgConnection::connect(url).await?;
    let org: Uuid = sqlx::query_scalar("SELECT id FROM ibex_core.orgs WHERE slug = 'bench'")
        .fetch_optional(&mut conn)
        .await?
        .context("no org 'bench': the database is not seeded (scripts/bench-sidecar.sh seeds it)")?;
    let agents: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM ibex_core.agents WHERE org_id = $1 ORDER BY name")
        .bind(org)
        .fetch_all(&mut conn)
        .await?;
    if agents.len() != AGENTS {
        bail!("expected {AGENTS} agents in org bench, found {}", agents.len());
    }
    // One directive per agent, as a deployed agent would have.
    sqlx::query(
        "INSERT INTO ibex_core.directives (org_id, agent_id, name, content, priority)
         SELECT $1, a.id, 'house-rules', 'Answer from what you know about the people you are asked about. '
                || 'Be brief, and say so when you do not know.', 0
         FROM ibex_core.agents a WHERE a.org_id = $1
         ON CONFLICT (org_id, agent_id, name) DO NOTHING",
    )
    .bind(org)
    .execute(&mut conn)
    .await?;
    let token = ibex_sidecar::admin::create_token(url, org, "bench-sidecar", "context:assemble,embed", None, Some(1))
        .await?
        .token;
    Ok(Setup { org, agents, token })
}

pub fn conversation(query: &str) -> Vec<pb::ChatMessage> {
    let m = |role: &str, content: &str| pb::ChatMessage {
        role: role.into(),
        content: content.into(),
    };
    vec![
        m(
            "system",
            "You are the assistant of a small team; you keep track of its people.",
        ),
        m("user", "Hi! I have a question about someone on the team."),
        m("assistant", "Of course. Who is it about?"),
        m("user", query),
    ]
}

impl Setup {
    /// An authorized AssembleContext request for agent `agent` asking `query`.
    pub fn request(&self, agent: usize, query: &str) -> anyhow::Result<tonic::Request<pb::AssembleContextRequest>> {
        let mut request = tonic::Request::new(pb::AssembleContextRequest {
            org_id: self.org.to_string(),
            agent_id: self.agents[agent].to_string(),
            model: MODEL.into(),
            messages: conversation(query),
            max_output_tokens: Some(1024),
            session_id: None,
            ..Default::default()
        });
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {}", self.token).parse()?);
        Ok(request)
    }
}
