//! The "ibex extraction N" workers: learn memories from completed sessions.
//!
//! One job, in three steps, so that nothing is lost or written twice whatever fails:
//! 1. claim (transaction): the oldest completed session with turns beyond its checkpoint, with a
//!    lease (SKIP LOCKED: workers share the queue); read the new turns and the agent's existing
//!    memories related to them (so the LLM does not repeat them);
//! 2. extract (no transaction): the LLM (OpenAI-compatible), or without one the rules and every
//!    substantive user turn (`extract_without_llm`); the LLM's answer is validated item by item
//!    (supporting turns included), invalid items are dropped and logged. Each memory then has its
//!    relative dates resolved against the time of its first turn, which is also when it happened;
//! 3. write (transaction): move the checkpoint with a compare-and-set, then store every memory
//!    through `ibex_core.remember` (redaction, de-duplication, embedding, supersession,
//!    conflicts). Both commit together or not at all.
//!
//! A crash between 1 and 3 leaves a lease that expires; the session is claimed again and the
//! same turns are read again. A job whose lease was taken over finds the checkpoint moved and
//! writes nothing. Failures are retried with exponential backoff, then dead-lettered.

use std::time::{Duration, Instant};

use std::collections::HashMap;

use chrono::NaiveDate;
use ibex_engine::extract::openai::{api_key_from, ChatClient, ChatConfig, LlmError};
use ibex_engine::extract::{
    build_messages, extract_without_llm, parse_answer, resolve_relative_dates, ExtractedMemory, Turn,
};
use pgrx::prelude::*;

use super::runtime;
use crate::gucs;

const SCHEMA_POLL: Duration = Duration::from_secs(10);
/// How much of the new user text is used to find the related existing memories.
const RELATED_QUERY_CHARS: usize = 2000;
const RELATED_MEMORIES: i32 = 20;

struct Job {
    org: String,
    session: String,
    agent: String,
    from_turn: i32,
    to_turn: i32,
    attempts: i32,
}

struct Inputs {
    turns: Vec<Turn>,
    /// When each turn was said, by turn index: its time (timestamptz text, for SQL) and its UTC day.
    said: HashMap<i32, (String, NaiveDate)>,
    existing: Vec<String>,
}

/// A memory ready to store: dates resolved, with when it happened.
#[derive(Clone)]
struct Learned {
    memory: ExtractedMemory,
    occurred_at: Option<String>,
}

/// Why a job failed, and whether trying again can help.
struct Failure {
    message: String,
    retryable: bool,
}

pub fn run(index: i32) {
    let name = format!("ibex extraction {index}");
    runtime::start(&name);
    let mut waiting_logged = false;
    let mut nap = Duration::ZERO;
    while runtime::sleep(nap) {
        nap = Duration::from_millis(gucs::extraction_poll_ms());
        if !runtime::function_exists("ibex_ops.claim_extraction") {
            if !waiting_logged {
                log!(
                    "{name}: extraction queue not found in database {}; waiting for migrations",
                    gucs::database()
                );
                waiting_logged = true;
            }
            nap = SCHEMA_POLL;
            continue;
        }
        waiting_logged = false;
        // Work until the queue is empty, then sleep until woken or the next poll.
        while !runtime::stopping() {
            match claim(&name) {
                Some(job) => process(&name, job),
                None => break,
            }
        }
    }
    log!("{name} stopping");
}

fn claim(worker: &str) -> Option<Job> {
    let worker = worker.to_string();
    let lease = gucs::extraction_lease_seconds();
    let max_turns = gucs::extraction_max_turns();
    runtime::transaction("claiming a session", move || {
        Spi::connect(|client| {
            let rows = client.select(
                "SELECT org_id::text, session_id::text, agent_id::text, from_turn, to_turn, attempts
                 FROM ibex_ops.claim_extraction($1, $2, $3)",
                None,
                &[worker.as_str().into(), lease.into(), max_turns.into()],
            )?;
            let mut job = None;
            for row in rows {
                job = Some(Job {
                    org: row.get::<String>(1)?.unwrap_or_default(),
                    session: row.get::<String>(2)?.unwrap_or_default(),
                    agent: row.get::<String>(3)?.unwrap_or_default(),
                    from_turn: row.get::<i32>(4)?.unwrap_or(0),
                    to_turn: row.get::<i32>(5)?.unwrap_or(0),
                    attempts: row.get::<i32>(6)?.unwrap_or(0),
                });
            }
            Ok::<_, pgrx::spi::SpiError>(job)
        })
    })
    .ok()
    .and_then(|r| r.ok())
    .flatten()
}

fn process(worker: &str, job: Job) {
    let started = Instant::now();
    let inputs = match load_inputs(&job) {
        Ok(inputs) => inputs,
        Err(message) => {
            return fail(
                worker,
                &job,
                Failure {
                    message,
                    retryable: true,
                },
            )
        }
    };
    let extracted = match extract(worker, &job, &inputs) {
        Ok(memories) => in_time(memories, &inputs.said),
        Err(failure) => return fail(worker, &job, failure),
    };
    if runtime::stopping() {
        // Terminated while waiting for the LLM: leave the lease to expire; the job runs again.
        return;
    }
    match write(&job, &extracted) {
        Ok(Some(paths)) => log!(
            "{worker}: session {} turns {}..{}: {} memories ({paths}) in {} ms",
            job.session,
            job.from_turn + 1,
            job.to_turn,
            extracted.len(),
            started.elapsed().as_millis()
        ),
        Ok(None) => log!(
            "{worker}: session {} was advanced by another worker; nothing written",
            job.session
        ),
        Err(message) => fail(
            worker,
            &job,
            Failure {
                message,
                retryable: true,
            },
        ),
    }
}

/// The new turns, and the agent's memories related to them.
fn load_inputs(job: &Job) -> Result<Inputs, String> {
    let (org, session, agent, from, to) = (
        job.org.clone(),
        job.session.clone(),
        job.agent.clone(),
        job.from_turn,
        job.to_turn,
    );
    runtime::transaction("reading turns", move || {
        Spi::connect_mut(|client| {
            client.update(
                "SELECT set_config('ibex.org_id', $1, true)",
                None,
                &[org.as_str().into()],
            )?;
            let rows = client.select(
                "SELECT turn_index, role, content, created_at::text, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')
                 FROM ibex_core.session_turns
                 WHERE org_id = $1::uuid AND session_id = $2::uuid AND turn_index > $3 AND turn_index <= $4
                 ORDER BY turn_index",
                None,
                &[org.as_str().into(), session.as_str().into(), from.into(), to.into()],
            )?;
            let mut turns = Vec::new();
            let mut said = HashMap::new();
            for row in rows {
                // Redacted before anything leaves the database: the LLM never sees the PII that
                // remember would strip from the memories anyway.
                let content = row.get::<String>(3)?.unwrap_or_default();
                let index = row.get::<i32>(1)?.unwrap_or(0);
                turns.push(Turn::new(
                    index,
                    row.get::<String>(2)?.unwrap_or_default(),
                    ibex_engine::pii::redact(&content).text,
                ));
                let at = row.get::<String>(4)?.unwrap_or_default();
                let day = row.get::<String>(5)?.unwrap_or_default();
                if let Ok(day) = NaiveDate::parse_from_str(&day, "%Y-%m-%d") {
                    said.insert(index, (at, day));
                }
            }
            let user_text: String = turns
                .iter()
                .filter(|t| t.is_user())
                .map(|t| t.content.as_str())
                .collect::<Vec<_>>()
                .join("\n");
            let query: String = {
                let chars: Vec<char> = user_text.chars().collect();
                chars[chars.len().saturating_sub(RELATED_QUERY_CHARS)..]
                    .iter()
                    .collect()
            };
            let mut existing = Vec::new();
            if !query.trim().is_empty() {
                let rows = client.select(
                    "SELECT content FROM ibex_core.search($1::uuid, $2::uuid, $3, $4, p_record_access => false)",
                    None,
                    &[
                        org.as_str().into(),
                        agent.as_str().into(),
                        query.as_str().into(),
                        RELATED_MEMORIES.into(),
                    ],
                )?;
                for row in rows {
                    existing.extend(row.get::<String>(1)?);
                }
            }
            Ok::<_, pgrx::spi::SpiError>(Inputs { turns, said, existing })
        })
    })
    .map_err(|e| format!("reading the session failed: {e}"))?
    .map_err(|e| format!("reading the session failed: {e}"))
}

/// Runs the LLM, or the rules when no LLM is configured. Called outside any transaction.
fn extract(worker: &str, job: &Job, inputs: &Inputs) -> Result<Vec<ExtractedMemory>, Failure> {
    let Some(settings) = gucs::llm_settings() else {
        return Ok(extract_without_llm(&inputs.turns));
    };
    if inputs.turns.is_empty() {
        return Ok(Vec::new());
    }
    let api_key =
        api_key_from(settings.api_key_file.as_deref(), settings.api_key_env.as_deref()).map_err(|e| Failure {
            message: format!("LLM API key: {e}"),
            retryable: false,
        })?;
    let client = ChatClient::new(ChatConfig {
        base_url: settings.base_url,
        model: settings.model,
        api_key,
        timeout: Duration::from_millis(settings.timeout_ms),
    });
    let messages = build_messages(&inputs.turns, &inputs.existing);
    bump("llm_calls", 1);
    let answer = client.complete(&messages).map_err(|e: LlmError| {
        bump("llm_failures", 1);
        Failure {
            retryable: e.is_retryable(),
            message: format!("LLM call failed: {e}"),
        }
    })?;
    let batch: Vec<i32> = inputs.turns.iter().map(|t| t.index).collect();
    let parsed = parse_answer(&answer, &batch).map_err(|e| {
        bump("llm_failures", 1);
        // A malformed or cut-off answer may well come out right next time.
        Failure {
            message: format!("LLM answer rejected: {e}"),
            retryable: true,
        }
    })?;
    for dropped in &parsed.dropped {
        warning!(
            "{worker}: session {}: dropped item {} of the LLM answer: {}",
            job.session,
            dropped.index,
            dropped.reason
        );
    }
    if !parsed.dropped.is_empty() {
        bump("items_dropped", parsed.dropped.len() as i64);
    }
    Ok(parsed.kept)
}

/// Each memory happened when its first turn was said; its relative dates count from that day.
fn in_time(memories: Vec<ExtractedMemory>, said: &HashMap<i32, (String, NaiveDate)>) -> Vec<Learned> {
    memories
        .into_iter()
        .map(|mut memory| {
            let when = memory.turns.first().and_then(|turn| said.get(turn));
            if let Some((_, day)) = when {
                memory.content = resolve_relative_dates(&memory.content, *day);
            }
            Learned {
                occurred_at: when.map(|(at, _)| at.clone()),
                memory,
            }
        })
        .collect()
}

/// Stores the memories and moves the checkpoint in one transaction. Ok(None): another worker
/// already moved the checkpoint, nothing was written.
fn write(job: &Job, memories: &[Learned]) -> Result<Option<String>, String> {
    let (org, session, agent, from, to) = (
        job.org.clone(),
        job.session.clone(),
        job.agent.clone(),
        job.from_turn,
        job.to_turn,
    );
    let extractor = match gucs::llm_settings() {
        Some(s) => format!("llm:{}", s.model),
        None => "rules".to_string(),
    };
    let memories = memories.to_vec();
    runtime::transaction("writing memories", move || {
        Spi::connect_mut(|client| {
            client.update("SELECT set_config('ibex.org_id', $1, true)", None, &[org.as_str().into()])?;
            let moved = client
                .update(
                    "SELECT ibex_ops.finish_extraction($1::uuid, $2::uuid, $3, $4)",
                    None,
                    &[org.as_str().into(), session.as_str().into(), from.into(), to.into()],
                )?
                .first()
                .get_one::<bool>()?
                .unwrap_or(false);
            if !moved {
                return Ok(None);
            }
            // The batch it was learned in; the memory's own turns are its source_turns.
            let metadata = serde_json::json!({"source": "extraction", "extractor": extractor, "batch": [from + 1, to]}).to_string();
            let (mut created, mut duplicate, mut superseded, mut queued) = (0i64, 0i64, 0i64, 0i64);
            for Learned { memory, occurred_at } in &memories {
                let path = client
                    .update(
                        // learn: remember, except that a standing instruction (procedural) waits
                        // for review instead of steering the agent for every user (sql/api/reviews.sql).
                        "SELECT learned_path FROM ibex_core.learn($1::uuid, $2::uuid, $3, $4, $5::real, $6::uuid, $7,
                                                                   $8::timestamptz, $9::jsonb)",
                        None,
                        &[
                            org.as_str().into(),
                            agent.as_str().into(),
                            memory.content.as_str().into(),
                            memory.category.as_str().into(),
                            f64::from(memory.confidence).into(),
                            session.as_str().into(),
                            memory.turns.clone().into(),
                            occurred_at.as_deref().into(),
                            metadata.as_str().into(),
                        ],
                    )?
                    .first()
                    .get_one::<String>()?
                    .unwrap_or_default();
                match path.as_str() {
                    "duplicate" => duplicate += 1,
                    "queued" => queued += 1,
                    "superseded" => superseded += 1,
                    _ => created += 1,
                }
            }
            client.update(
                "SELECT ibex_ops.bump('extraction', c, n) FROM (VALUES ('jobs_completed', 1::bigint), ('turns_read', $1::bigint),
                        ('memories_created', $2), ('memories_duplicate', $3), ('memories_superseded', $4),
                        ('memories_queued_for_review', $5)) v(c, n) WHERE n > 0",
                None,
                &[
                    i64::from(to - from).into(),
                    created.into(),
                    duplicate.into(),
                    superseded.into(),
                    queued.into(),
                ],
            )?;
            Ok::<_, pgrx::spi::SpiError>(Some(format!(
                "{created} created, {duplicate} duplicate, {superseded} superseded, {queued} queued for review"
            )))
        })
    })?
    .map_err(|e| format!("writing memories failed: {e}"))
}

/// Records the failure: a retry after base * 2^attempts, or a dead letter.
fn fail(worker: &str, job: &Job, failure: Failure) {
    let delay = gucs::extraction_retry_base_ms().saturating_mul(1i64 << job.attempts.clamp(0, 30));
    let (org, session, from, to) = (job.org.clone(), job.session.clone(), job.from_turn, job.to_turn);
    let max_retries = gucs::extraction_max_retries();
    let Failure { message, retryable } = failure;
    let error = message.clone();
    let outcome = runtime::transaction("recording a failure", move || {
        Spi::get_one_with_args::<String>(
            "SELECT ibex_ops.fail_extraction($1::uuid, $2::uuid, $3, $4, $5, $6, $7, $8)",
            &[
                org.as_str().into(),
                session.as_str().into(),
                from.into(),
                to.into(),
                error.as_str().into(),
                retryable.into(),
                max_retries.into(),
                delay.into(),
            ],
        )
    });
    let outcome = outcome
        .ok()
        .and_then(|r| r.ok().flatten())
        .unwrap_or_else(|| "unrecorded".into());
    warning!(
        "{worker}: session {} attempt {} failed ({outcome}): {message}",
        job.session,
        job.attempts + 1
    );
}

fn bump(counter: &'static str, by: i64) {
    let _ = runtime::transaction("counters", move || {
        Spi::run_with_args(
            "SELECT ibex_ops.bump('extraction', $1, $2)",
            &[counter.into(), by.into()],
        )
    });
}
