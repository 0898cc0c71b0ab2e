//! The conversational set ([`crate::conversations`]) learned by the real extraction workers, and
//! measured: which turns the learned memories cover, and how well each ranker finds the turns a
//! question needs. Used by `make bench-memory` (retrieval per question kind) and
//! `make bench-extraction` (a 300-turn session learned without an LLM).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use uuid::Uuid;

use crate::conversations::{Conversation, ConversationSet, Evidence, Kind, Question};
use crate::retrieval::{self, Ranker};

/// The seed of the conversational set every benchmark measures.
pub const SET_SEED: u64 = 14;
/// The org the set is learned into, in the dev database.
pub const SET_SLUG: &str = "bench-conversations";

/// One conversation's sessions as stored: external id `s<index>` on the conversation's agent.
pub struct Learned {
    pub org: Uuid,
    /// Per conversation: its agent.
    pub agents: Vec<Uuid>,
    /// Session id -> (conversation, session index).
    pub sessions: HashMap<Uuid, (usize, usize)>,
}

/// Records one completed session of `turns` (JSON objects as `append_turns` takes them) on
/// `agent`, in one transaction, and checks that every turn was stored. Returns its id.
pub async fn record_session(
    admin: &PgPool,
    org: Uuid,
    agent: Uuid,
    external_id: &str,
    turns: Vec<serde_json::Value>,
) -> anyhow::Result<Uuid> {
    let expected = turns.len();
    let mut tx = admin.begin().await?;
    sqlx::query("SELECT set_config('ibex.org_id', $1, true)")
        .bind(org.to_string())
        .execute(&mut *tx)
        .await?;
    let session: Uuid = sqlx::query_scalar("SELECT ibex_core.ensure_session($1, $2, $3)")
        .bind(org)
        .bind(agent)
        .bind(external_id)
        .fetch_one(&mut *tx)
        .await?;
    let count: i32 = sqlx::query_scalar("SELECT ibex_core.append_turns($1, $2, $3)")
        .bind(org)
        .bind(session)
        .bind(serde_json::Value::Array(turns))
        .fetch_one(&mut *tx)
        .await?;
    anyhow::ensure!(
        count as usize == expected,
        "session {session} holds {count} turns, {expected} were appended"
    );
    sqlx::query("SELECT ibex_core.complete_session($1, $2)")
        .bind(org)
        .bind(session)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(session)
}

/// Records the sessions of `conversation` on `agent` with their turns' times (each session its
/// own, or all as one when `as_one`), completed. Returns the session ids in order.
pub async fn record(
    admin: &PgPool,
    org: Uuid,
    agent: Uuid,
    conversation: &Conversation,
    as_one: bool,
    tag: &str,
) -> anyhow::Result<Vec<Uuid>> {
    let turns = |sessions: &[crate::conversations::Session]| -> Vec<serde_json::Value> {
        sessions
            .iter()
            .flat_map(|s| &s.turns)
            .map(|t| serde_json::json!({"role": t.role, "content": t.content, "at": t.at}))
            .collect()
    };
    let groups: Vec<&[crate::conversations::Session]> = if as_one {
        vec![&conversation.sessions[..]]
    } else {
        conversation.sessions.chunks(1).collect()
    };
    let mut ids = Vec::new();
    for (i, group) in groups.into_iter().enumerate() {
        ids.push(record_session(admin, org, agent, &format!("{tag}-s{i}"), turns(group)).await?);
    }
    Ok(ids)
}

/// Waits until the workers learned every turn of `sessions`, printing progress; the time taken.
pub async fn wait_learned(admin: &PgPool, org: Uuid, sessions: &[Uuid], timeout: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut last_report = Instant::now();
    loop {
        let (done, turns, learned): (i64, i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE last_extracted_turn = turn_count), sum(turn_count)::bigint,
                    sum(last_extracted_turn)::bigint
             FROM ibex_core.sessions WHERE org_id = $1 AND id = ANY ($2)",
        )
        .bind(org)
        .bind(sessions)
        .fetch_one(admin)
        .await?;
        if done == sessions.len() as i64 {
            return Ok(started.elapsed());
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "  learning: {learned}/{turns} turns read, {done}/{} sessions done",
                sessions.len()
            );
            last_report = Instant::now();
        }
        anyhow::ensure!(
            started.elapsed() < timeout,
            "sessions not learned after {timeout:?} ({learned}/{turns} turns read)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Replays the whole set into a fresh org `slug` (one agent per conversation, one IBEX session
/// per conversation session) and waits until everything is learned.
pub async fn learn_set(admin: &PgPool, set: &ConversationSet, slug: &str) -> anyhow::Result<(Learned, Duration)> {
    sqlx::query("DELETE FROM ibex_core.orgs WHERE slug = $1")
        .bind(slug)
        .execute(admin)
        .await?;
    let org: Uuid = sqlx::query_scalar("INSERT INTO ibex_core.orgs (name, slug) VALUES ($1, $1) RETURNING id")
        .bind(slug)
        .fetch_one(admin)
        .await?;
    let mut learned = Learned {
        org,
        agents: Vec::new(),
        sessions: HashMap::new(),
    };
    let mut all = Vec::new();
    for (c, conversation) in set.conversations.iter().enumerate() {
        let agent: Uuid =
            sqlx::query_scalar("INSERT INTO ibex_core.agents (org_id, name) VALUES ($1, $2) RETURNING id")
                .bind(org)
                .bind(format!("friend of {}", conversation.user))
                .fetch_one(admin)
                .await?;
        let ids = record(admin, org, agent, conversation, false, &format!("c{c}")).await?;
        for (s, id) in ids.iter().enumerate() {
            learned.sessions.insert(*id, (c, s));
        }
        all.extend(ids);
        learned.agents.push(agent);
    }
    let took = wait_learned(admin, org, &all, Duration::from_secs(900)).await?;
    Ok((learned, took))
}

/// The set as an earlier run of [`learn_set`] left it in org `slug`, when every session is there
/// and learned: lets a run that only changes the ranking skip the replay
/// (`IBEX_BENCH_REUSE_LEARNED=1`). None when anything is missing.
pub async fn reuse_set(admin: &PgPool, set: &ConversationSet, slug: &str) -> anyhow::Result<Option<Learned>> {
    let Some(org) = sqlx::query_scalar::<_, Uuid>("SELECT id FROM ibex_core.orgs WHERE slug = $1")
        .bind(slug)
        .fetch_optional(admin)
        .await?
    else {
        return Ok(None);
    };
    let mut learned = Learned {
        org,
        agents: Vec::new(),
        sessions: HashMap::new(),
    };
    for (c, conversation) in set.conversations.iter().enumerate() {
        let Some(agent) =
            sqlx::query_scalar::<_, Uuid>("SELECT id FROM ibex_core.agents WHERE org_id = $1 AND name = $2")
                .bind(org)
                .bind(format!("friend of {}", conversation.user))
                .fetch_optional(admin)
                .await?
        else {
            return Ok(None);
        };
        let rows: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT id, external_id FROM ibex_core.sessions
             WHERE org_id = $1 AND agent_id = $2 AND last_extracted_turn = turn_count",
        )
        .bind(org)
        .bind(agent)
        .fetch_all(admin)
        .await?;
        let prefix = format!("c{c}-s");
        for (id, external) in rows {
            if let Some(s) = external.strip_prefix(&prefix).and_then(|s| s.parse::<usize>().ok()) {
                learned.sessions.insert(id, (c, s));
            }
        }
        learned.agents.push(agent);
    }
    let wanted = set.conversations.iter().map(|c| c.sessions.len()).sum::<usize>();
    Ok((learned.sessions.len() == wanted).then_some(learned))
}

/// What the learned memories of one conversation cover.
#[derive(Debug, Default)]
pub struct Coverage {
    pub turns: usize,
    pub user_turns: usize,
    pub memories: usize,
    pub needed_turns: usize,
    pub covered_turns: usize,
}

/// A memory's turns as evidence: (conversation, session, turn) for each of its source turns.
pub type Sources = HashMap<Uuid, Vec<(usize, Evidence)>>;

/// Every learned memory's source turns.
pub async fn sources(admin: &PgPool, learned: &Learned) -> sqlx::Result<Sources> {
    let rows: Vec<(Uuid, Option<Uuid>, Option<Vec<i32>>)> = sqlx::query_as(
        "SELECT id, source_session_id, source_turns FROM ibex_core.memories WHERE org_id = $1 AND status = 'active'",
    )
    .bind(learned.org)
    .fetch_all(admin)
    .await?;
    let mut out = Sources::new();
    for (id, session, turns) in rows {
        let Some(&(c, s)) = session.and_then(|id| learned.sessions.get(&id)) else {
            continue;
        };
        let evidence = turns
            .unwrap_or_default()
            .into_iter()
            .map(|turn| (c, Evidence { session: s, turn }))
            .collect();
        out.insert(id, evidence);
    }
    Ok(out)
}

/// Coverage per conversation.
pub fn coverage(set: &ConversationSet, sources: &Sources) -> Vec<Coverage> {
    let covered: HashSet<(usize, Evidence)> = sources.values().flatten().copied().collect();
    let mut out: Vec<Coverage> = set
        .conversations
        .iter()
        .map(|c| Coverage {
            turns: c.turn_count(),
            user_turns: c
                .sessions
                .iter()
                .flat_map(|s| &s.turns)
                .filter(|t| t.role == "user")
                .count(),
            ..Default::default()
        })
        .collect();
    for evidence in sources.values() {
        if let Some((c, _)) = evidence.first() {
            out[*c].memories += 1;
        }
    }
    let needed: HashSet<(usize, Evidence)> = set
        .questions
        .iter()
        .flat_map(|q| q.evidence.iter().map(move |e| (q.conversation, *e)))
        .collect();
    for (c, e) in needed {
        out[c].needed_turns += 1;
        if covered.contains(&(c, e)) {
            out[c].covered_turns += 1;
        }
    }
    out
}

/// Mean share of a question's evidence turns found in the top `k`, per ranker and kind.
#[derive(Debug, Default)]
pub struct Recall {
    pub k: i32,
    sums: BTreeMap<(usize, Kind), f64>,
    counts: BTreeMap<Kind, usize>,
    /// IBEX search time per question, milliseconds.
    pub ibex_ms: Vec<f64>,
    /// The same without bridging (`Ranker::IbexUnbridged`), when that ranker is measured.
    pub unbridged_ms: Vec<f64>,
    /// Temporal questions whose day is written in a memory IBEX search returned for them.
    pub dated: usize,
    pub temporal: usize,
    /// Questions IBEX search answered without all of their evidence in the top k.
    pub ibex_misses: Vec<Miss>,
}

/// A question whose evidence IBEX search left out of its top k.
#[derive(Debug)]
pub struct Miss {
    pub kind: Kind,
    pub question: String,
    /// Evidence turns found, of those needed.
    pub found: usize,
    pub needed: usize,
}

impl Recall {
    pub fn of(&self, ranker: usize, kind: Option<Kind>) -> f64 {
        match kind {
            Some(kind) => {
                self.sums.get(&(ranker, kind)).copied().unwrap_or(0.0)
                    / self.counts.get(&kind).copied().unwrap_or(0).max(1) as f64
            }
            None => {
                let total: f64 = Kind::ALL
                    .iter()
                    .map(|k| self.sums.get(&(ranker, *k)).copied().unwrap_or(0.0))
                    .sum();
                total / self.counts.values().sum::<usize>().max(1) as f64
            }
        }
    }

    pub fn questions(&self, kind: Option<Kind>) -> usize {
        kind.map_or_else(
            || self.counts.values().sum(),
            |k| self.counts.get(&k).copied().unwrap_or(0),
        )
    }
}

/// Runs every question through every ranker on its conversation's agent.
pub async fn recall(
    admin: &PgPool,
    learned: &Learned,
    questions: &[Question],
    sources: &Sources,
    rankers: &[Ranker],
    k: i32,
) -> sqlx::Result<Recall> {
    let mut conn = admin.acquire().await?;
    sqlx::query("SELECT set_config('ibex.org_id', $1, false)")
        .bind(learned.org.to_string())
        .execute(&mut *conn)
        .await?;
    let mut out = Recall {
        k,
        ..Default::default()
    };
    for (i, q) in questions.iter().enumerate() {
        *out.counts.entry(q.kind).or_default() += 1;
        let agent = learned.agents[q.conversation];
        // Every other question runs the rankers in reverse order, so that none is always the
        // one that runs on a warmed-up backend (their times are compared).
        let mut order: Vec<(usize, Ranker)> = rankers.iter().copied().enumerate().collect();
        if i % 2 == 1 {
            order.reverse();
        }
        for (r, ranker) in order {
            let (top, took) = retrieval::rank_timed(&mut conn, ranker, learned.org, agent, &q.text, k).await?;
            let ms = took.as_secs_f64() * 1000.0;
            match ranker {
                Ranker::Ibex => out.ibex_ms.push(ms),
                Ranker::IbexUnbridged => out.unbridged_ms.push(ms),
                _ => {}
            }
            let found: HashSet<Evidence> = top
                .iter()
                .filter_map(|id| sources.get(id))
                .flatten()
                .filter(|(c, _)| *c == q.conversation)
                .map(|(_, e)| *e)
                .collect();
            let share = q.evidence.iter().filter(|e| found.contains(e)).count() as f64 / q.evidence.len() as f64;
            *out.sums.entry((r, q.kind)).or_default() += share;
            if ranker == Ranker::Ibex && share < 1.0 {
                out.ibex_misses.push(Miss {
                    kind: q.kind,
                    question: q.text.clone(),
                    found: q.evidence.iter().filter(|e| found.contains(e)).count(),
                    needed: q.evidence.len(),
                });
            }
            if let (Ranker::Ibex, Some(written)) = (ranker, &q.date) {
                out.temporal += 1;
                let texts: Vec<String> =
                    sqlx::query_scalar("SELECT content FROM ibex_core.memories WHERE org_id = $1 AND id = ANY ($2)")
                        .bind(learned.org)
                        .bind(&top)
                        .fetch_all(&mut *conn)
                        .await?;
                if texts.iter().any(|t| t.contains(written.as_str())) {
                    out.dated += 1;
                }
            }
        }
    }
    Ok(out)
}
