//! Session bookkeeping of the proxy: which session a call belongs to, which of its messages are
//! new, and recording the call (turns, usage row, completion) once the answer is known.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use ibex_engine::{Message, Role};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::db;
use crate::error::ApiError;
use crate::state::AppState;

/// Indices of the messages this call adds to the session: after the request's last assistant
/// message, without the caller's instructions (system/developer, resent on every call).
pub fn new_message_indices(messages: &[Message]) -> Vec<usize> {
    let start = messages
        .iter()
        .rposition(|m| m.role == Role::Assistant)
        .map_or(0, |i| i + 1);
    (start..messages.len())
        .filter(|&i| matches!(messages[i].role, Role::User | Role::Tool))
        .collect()
}

/// The session of this call, created on first use; refuses sessions that no longer take turns.
pub(super) async fn session_for(
    state: &AppState,
    org: Uuid,
    agent: Uuid,
    external: Option<&str>,
) -> Result<Uuid, ApiError> {
    let pool = state.db.as_ref().ok_or_else(|| ApiError::Unavailable {
        public: "the proxy needs the database, and none is configured".into(),
        detail: "no database_url".into(),
    })?;
    let mut tx = db::begin_for_org(pool, org)
        .await
        .map_err(|e| ApiError::database("starting a session transaction", e))?;
    let agent_exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM ibex_core.agents WHERE org_id = $1 AND id = $2)")
            .bind(org)
            .bind(agent)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| ApiError::database("looking up the agent", e))?;
    if !agent_exists {
        return Err(ApiError::ResourceNotFound(format!(
            "agent {agent} does not exist in org {org}"
        )));
    }
    let session: Uuid = sqlx::query_scalar("SELECT ibex_core.ensure_session($1, $2, $3)")
        .bind(org)
        .bind(agent)
        .bind(external)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| ApiError::database("ensure_session", e))?;
    let status: String = sqlx::query_scalar("SELECT status FROM ibex_core.sessions WHERE org_id = $1 AND id = $2")
        .bind(org)
        .bind(session)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| ApiError::database("reading the session", e))?;
    tx.commit()
        .await
        .map_err(|e| ApiError::database("committing the session", e))?;
    // The other states (completed, failed, abandoned) all mean extraction owns the session now.
    if status != "active" {
        return Err(ApiError::Conflict(format!(
            "session {} is {status} and takes no more turns; use a new x-ibex-session-id",
            external.unwrap_or("")
        )));
    }
    Ok(session)
}

/// A message of the caller's that this call adds to the session, with its token count.
pub(super) struct NewTurn {
    pub message: Message,
    pub tokens: usize,
}

/// Everything known about the call when it is recorded.
pub(super) struct CallRecord {
    /// The usage row's id, chosen here so that a retried recording can tell whether an attempt
    /// whose commit was cut off had in fact committed.
    pub id: Uuid,
    pub org: Uuid,
    pub agent: Uuid,
    pub session: Uuid,
    pub token: Uuid,
    pub model: String,
    pub new_turns: Vec<NewTurn>,
    /// Tokens of the assembled prompt, used when the upstream reports no usage.
    pub prompt_tokens: usize,
    pub complete_session: bool,
    pub streamed: bool,
    pub started: Instant,
    /// What the context's memories cost (recorded with the call's usage).
    pub memory: ibex_engine::context::MemoryCost,
}

/// How the call ended: the status recorded in `usage_events`, and the reply if there was one.
#[derive(Default)]
pub(super) struct Outcome {
    pub status: u16,
    pub reply: Option<String>,
    /// As reported by the upstream's `usage`; counted here when absent.
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
}

impl Outcome {
    /// A call that got no answer to pass on.
    pub fn failed(status: u16) -> Self {
        Self {
            status,
            ..Self::default()
        }
    }
}

/// One element of `ibex_core.append_turns`' JSON array.
#[derive(Serialize)]
struct TurnRow<'a> {
    role: Role,
    content: Cow<'a, str>,
    tokens: usize,
    model: Cow<'a, str>,
}

/// Records a call that got no answer to pass on (usage row with `status`), then hands back the
/// error the client gets.
pub(super) async fn failed(state: &AppState, call: &CallRecord, status: u16, error: ApiError) -> ApiError {
    record(state, call, Outcome::failed(status)).await;
    error
}

/// How long a recording is retried while the database is unreachable (a restart, a crash
/// recovery, a failover). The client waits for its answer meanwhile: an answer it was given must
/// not leave its usage row behind, and a restart takes a few seconds.
const RECORD_RETRY_FOR: Duration = Duration::from_secs(20);
const RECORD_RETRY_FIRST_DELAY: Duration = Duration::from_millis(100);
const RECORD_RETRY_MAX_DELAY: Duration = Duration::from_secs(2);

/// Writes the call down in one transaction: the new turns and the reply, the usage row, and the
/// session's completion when asked. The turns sit behind a savepoint: when they cannot be stored
/// (the session was completed meanwhile, a constraint refuses them), the usage row is still
/// written, because the upstream answered and the call costs money either way. A database that
/// cannot be reached is waited for (retried for up to [`RECORD_RETRY_FOR`]); the retry is
/// idempotent (the usage row's id is the call's, see [`write_call`]). A failure is logged and
/// counted, never returned: the client already has (or is getting) its answer.
pub(super) async fn record(state: &AppState, call: &CallRecord, outcome: Outcome) {
    let Some(pool) = state.db.as_ref() else { return };
    let started = Instant::now();
    let mut delay = RECORD_RETRY_FIRST_DELAY;
    let mut retrying = false;
    loop {
        match write_call(pool, call, &outcome, retrying).await {
            Ok(None) => return,
            Ok(Some(turns_error)) => {
                state.metrics.proxy_record_failures.inc();
                tracing::warn!(org = %call.org, session = %call.session, error = %turns_error,
                    "the proxied call's turns could not be stored; its usage was recorded");
                return;
            }
            Err(e) if db::is_transient(&e) && started.elapsed() + delay < RECORD_RETRY_FOR => {
                tracing::info!(org = %call.org, session = %call.session, error = %e,
                    retry_in_ms = delay.as_millis() as u64, "the database is unreachable; recording the proxied call again");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RECORD_RETRY_MAX_DELAY);
                retrying = true;
            }
            Err(e) => {
                state.metrics.proxy_record_failures.inc();
                tracing::warn!(org = %call.org, session = %call.session, error = %e, "could not record a proxied call");
                return;
            }
        }
    }
}

fn clamp_i32(n: usize) -> i32 {
    n.min(i32::MAX as usize) as i32
}

/// Text as Postgres can store it: `text` holds no NUL character, so each becomes U+FFFD (the
/// turn is kept, with a visible mark where the byte was).
fn storable(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// The model name as `usage_events` accepts it (1 to 200 characters, no NUL): a usage row is
/// never lost to an odd model name.
fn usage_model(model: &str) -> String {
    let cleaned: String = storable(model).chars().take(200).collect();
    if cleaned.is_empty() {
        "unknown".to_string()
    } else {
        cleaned
    }
}

/// `Ok(Some(error))`: the usage row was written, the turns were not. `retrying`: an earlier
/// attempt failed, possibly while its commit was under way; when its usage row exists it did
/// commit (turns and usage are one transaction) and nothing is written again.
async fn write_call(
    pool: &PgPool,
    call: &CallRecord,
    outcome: &Outcome,
    retrying: bool,
) -> Result<Option<sqlx::Error>, sqlx::Error> {
    let latency_ms = call.started.elapsed().as_millis().min(i32::MAX as u128) as i32;
    let completion_tokens = outcome.completion_tokens.map_or_else(
        || {
            outcome
                .reply
                .as_deref()
                .map_or(0, |r| ibex_engine::tokens::count(&call.model, r).tokens)
        },
        |n| n as usize,
    );
    let prompt_tokens = outcome.prompt_tokens.map_or(call.prompt_tokens, |n| n as usize);
    let mut tx = db::begin_for_org(pool, call.org).await?;
    if retrying {
        let recorded: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM ibex_core.usage_events WHERE org_id = $1 AND id = $2)")
                .bind(call.org)
                .bind(call.id)
                .fetch_one(&mut *tx)
                .await?;
        if recorded {
            return Ok(None);
        }
    }
    let turns_error = match &outcome.reply {
        Some(reply) => {
            // A nested transaction on the connection is a SAVEPOINT.
            let mut savepoint = sqlx::Connection::begin(&mut *tx).await?;
            match append_reply(&mut savepoint, call, reply, completion_tokens).await {
                Ok(()) => {
                    savepoint.commit().await?;
                    None
                }
                Err(e) => {
                    savepoint.rollback().await?;
                    Some(e)
                }
            }
        }
        None => None,
    };
    sqlx::query("SELECT ibex_core.record_usage($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)")
        .bind(call.org)
        .bind(call.agent)
        .bind(call.session)
        .bind(call.token)
        .bind(usage_model(&call.model))
        .bind(clamp_i32(prompt_tokens))
        .bind(clamp_i32(completion_tokens))
        .bind(latency_ms)
        .bind(i32::from(outcome.status))
        .bind(call.streamed)
        .bind(clamp_i32(call.memory.tokens))
        .bind(clamp_i32(call.memory.count))
        .bind(call.memory.source_name())
        .bind(call.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(turns_error)
}

/// The call's new turns and the reply, and the session's completion when asked.
async fn append_reply(
    tx: &mut sqlx::PgConnection,
    call: &CallRecord,
    reply: &str,
    completion_tokens: usize,
) -> Result<(), sqlx::Error> {
    let mut turns: Vec<TurnRow> = call
        .new_turns
        .iter()
        .map(|turn| TurnRow {
            role: turn.message.role,
            content: storable(&turn.message.content),
            tokens: turn.tokens,
            model: storable(&call.model),
        })
        .collect();
    turns.push(TurnRow {
        role: Role::Assistant,
        content: storable(reply),
        tokens: completion_tokens,
        model: storable(&call.model),
    });
    sqlx::query("SELECT ibex_core.append_turns($1, $2, $3)")
        .bind(call.org)
        .bind(call.session)
        .bind(sqlx::types::Json(&turns))
        .execute(&mut *tx)
        .await?;
    if call.complete_session {
        sqlx::query("SELECT ibex_core.complete_session($1, $2)")
            .bind(call.org)
            .bind(call.session)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(v: &[(Role, &str)]) -> Vec<Message> {
        v.iter().map(|&(role, text)| Message::new(role, text)).collect()
    }

    #[test]
    fn nul_bytes_and_odd_model_names_are_made_storable() {
        assert_eq!(storable("a\0b"), "a\u{FFFD}b");
        assert!(matches!(storable("plain"), Cow::Borrowed("plain")));
        assert_eq!(usage_model(""), "unknown");
        assert_eq!(usage_model("gpt\0x"), "gpt\u{FFFD}x");
        assert_eq!(usage_model(&"m".repeat(500)).chars().count(), 200);
    }

    #[test]
    fn new_messages_follow_the_last_assistant_reply() {
        use Role::*;
        assert_eq!(new_message_indices(&messages(&[(System, "s"), (User, "hi")])), [1]);
        assert_eq!(
            new_message_indices(&messages(&[(User, "a"), (Assistant, "b"), (User, "c"), (User, "d")])),
            [2, 3]
        );
        assert!(new_message_indices(&messages(&[(User, "a"), (Assistant, "b")])).is_empty());
        assert_eq!(
            new_message_indices(&messages(&[(System, "s"), (User, "a"), (Assistant, ""), (Tool, "42")])),
            [3]
        );
    }
}
