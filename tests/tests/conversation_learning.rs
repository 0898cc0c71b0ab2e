//! Learning from a conversation without an LLM (issue 14): every substantive user turn is kept in
//! the speaker's words next to the facts the rules recognise, each memory names the turns it came
//! from (memory -> turns -> memory), happened when its turn was said, has its relative dates
//! resolved against that time, and search filters by when things happened.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use ibex_e2e::{admin, app_for, eventually, org_with_agent};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

/// A conversation imported after the fact: (role, content, the turn a later question needs).
const CONVERSATION: &[(&str, &str, bool)] = &[
    ("user", "Hi!", false),
    ("assistant", "Hello! How have you been?", false),
    (
        "user",
        "Pretty good. I went hiking at Serra da Estrela yesterday with my brother Tomás.",
        true,
    ),
    ("assistant", "That sounds lovely. How was the weather?", false),
    (
        "user",
        "Cold but sunny. Tomás twisted his ankle on the way down, so we took it slow.",
        true,
    ),
    ("assistant", "Ouch, I hope he is fine.", false),
    ("user", "Thanks, sounds good.", false),
    ("user", "What should I cook tonight?", false),
    ("assistant", "How about a mushroom risotto?", false),
    (
        "user",
        "My daughter Inês starts at the conservatory next month, she plays the cello.",
        true,
    ),
    ("user", "From now on, answer in Portuguese please.", false),
    ("user", "Ok", false),
];

/// The first turn was said at 09:00 UTC on Saturday 14 March 2026, then one a minute.
fn said_at(turn: usize) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 14, 9, 0, 0).unwrap() + chrono::Duration::minutes(turn as i64)
}

async fn no_llm(admin: &PgPool) {
    for sql in ["ALTER SYSTEM RESET ibex.llm_base_url", "SELECT pg_reload_conf()"] {
        sqlx::query(sql).execute(admin).await.unwrap();
    }
}

/// Learns CONVERSATION as one session and waits until extraction read all of it.
async fn learned_session(admin: &PgPool, app: &PgPool, org: Uuid, agent: Uuid) -> Uuid {
    let session: Uuid = sqlx::query_scalar("SELECT ibex_core.ensure_session($1, $2, 'conversation-1')")
        .bind(org)
        .bind(agent)
        .fetch_one(app)
        .await
        .unwrap();
    let turns: Vec<_> = CONVERSATION
        .iter()
        .enumerate()
        .map(|(i, (role, content, _))| json!({"role": role, "content": content, "at": said_at(i)}))
        .collect();
    sqlx::query("SELECT ibex_core.append_turns($1, $2, $3)")
        .bind(org)
        .bind(session)
        .bind(json!(turns))
        .execute(app)
        .await
        .unwrap();
    sqlx::query("SELECT ibex_core.complete_session($1, $2)")
        .bind(org)
        .bind(session)
        .execute(app)
        .await
        .unwrap();
    eventually("the conversation learned", Duration::from_secs(30), || async {
        let done: bool = sqlx::query_scalar(
            "SELECT last_extracted_turn = turn_count FROM ibex_core.sessions WHERE org_id = $1 AND id = $2",
        )
        .bind(org)
        .bind(session)
        .fetch_one(admin)
        .await
        .unwrap();
        done.then_some(())
    })
    .await;
    session
}

#[derive(Debug, sqlx::FromRow)]
struct Learned {
    id: Uuid,
    category: String,
    content: String,
    source_turns: Vec<i32>,
    occurred_at: DateTime<Utc>,
}

#[tokio::test]
async fn a_conversation_is_learned_turn_by_turn_with_provenance_and_time() {
    let admin = admin().await;
    no_llm(&admin).await;
    let (org, agent) = org_with_agent(&admin, "conversation").await;
    let app = app_for(org).await;
    let session = learned_session(&admin, &app, org, agent).await;

    let learned: Vec<Learned> = sqlx::query_as(
        "SELECT id, category, content, source_turns, occurred_at FROM ibex_core.memories
         WHERE org_id = $1 AND source_session_id = $2 ORDER BY source_turns, category",
    )
    .bind(org)
    .bind(session)
    .fetch_all(&app)
    .await
    .unwrap();
    let contents: Vec<&str> = learned.iter().map(|m| m.content.as_str()).collect();

    // Coverage: every turn a question needs is the source of a memory; nothing else is, and there
    // are no more memories than turns.
    let covered: BTreeSet<i32> = learned.iter().flat_map(|m| m.source_turns.clone()).collect();
    let needed: BTreeSet<i32> = CONVERSATION
        .iter()
        .enumerate()
        .filter(|(_, (_, _, needed))| *needed)
        .map(|(i, _)| i as i32 + 1)
        .collect();
    assert_eq!(covered, needed, "{contents:?}");
    assert!(learned.len() <= CONVERSATION.len(), "{contents:?}");

    // In the speaker's words, with the relative dates resolved against when the turn was said.
    let episode = |turn: i32| {
        learned
            .iter()
            // The rules may also have learned a third-person fact ("User went hiking ...").
            .find(|m| m.category == "episodic" && m.source_turns == vec![turn] && !m.content.starts_with("User"))
            .unwrap_or_else(|| panic!("no episode of turn {turn}: {contents:?}"))
    };
    assert_eq!(
        episode(3).content,
        "Pretty good. I went hiking at Serra da Estrela yesterday (13 March 2026) with my brother Tomás."
    );
    assert_eq!(
        episode(10).content,
        "My daughter Inês starts at the conservatory next month (April 2026), she plays the cello."
    );
    // Each memory happened when its turn was said.
    for memory in &learned {
        assert_eq!(
            memory.occurred_at,
            said_at(memory.source_turns[0] as usize - 1),
            "{}",
            memory.content
        );
    }
    // The instruction waits for review, with its turn; it is not copied into an episode.
    let review_turns: Vec<i32> = sqlx::query_scalar(
        "SELECT source_turns FROM ibex_core.memory_reviews WHERE org_id = $1 AND source_session_id = $2",
    )
    .bind(org)
    .bind(session)
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(review_turns, vec![11]);
    assert!(!contents.iter().any(|c| c.contains("Portuguese")), "{contents:?}");

    // Memory -> turns -> memory, as the application sees it: memory_history names the session and
    // the turns, the turns say what the memory says, and the turn finds the memory again.
    let hike = episode(3);
    let (history_session, history_turns): (Uuid, Vec<i32>) = sqlx::query_as(
        "SELECT source_session_id, source_turns FROM ibex_core.memory_history($1, $2) WHERE change = 'created'",
    )
    .bind(org)
    .bind(hike.id)
    .fetch_one(&app)
    .await
    .unwrap();
    assert_eq!((history_session, history_turns.clone()), (session, vec![3]));
    let said: String = sqlx::query_scalar(
        "SELECT content FROM ibex_core.session_turns WHERE org_id = $1 AND session_id = $2 AND turn_index = $3",
    )
    .bind(org)
    .bind(session)
    .bind(history_turns[0])
    .fetch_one(&app)
    .await
    .unwrap();
    assert!(said.contains("I went hiking at Serra da Estrela yesterday with my brother"));
    let from_turn: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM ibex_core.memories WHERE org_id = $1 AND source_session_id = $2 AND $3 = ANY (source_turns)",
    )
    .bind(org)
    .bind(session)
    .bind(history_turns[0])
    .fetch_all(&app)
    .await
    .unwrap();
    assert!(from_turn.contains(&hike.id));

    // Search filters by when it happened, and recency counts from then (eight months ago: ~0).
    let in_march: Vec<(Uuid, f64)> = sqlx::query_as(
        "SELECT memory_id, recency FROM ibex_core.search($1, $2, 'hiking with my brother', 10,
                p_record_access => false, p_occurred_after => '2026-03-14', p_occurred_before => '2026-03-15')",
    )
    .bind(org)
    .bind(agent)
    .fetch_all(&app)
    .await
    .unwrap();
    assert!(in_march.iter().any(|h| h.0 == hike.id), "{in_march:?}");
    assert!(in_march.iter().all(|(_, recency)| *recency < 0.01), "{in_march:?}");
    let in_april: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ibex_core.search($1, $2, 'hiking with my brother', 10,
                p_record_access => false, p_occurred_after => '2026-04-01')",
    )
    .bind(org)
    .bind(agent)
    .fetch_one(&app)
    .await
    .unwrap();
    assert_eq!(in_april, 0);
}

#[tokio::test]
async fn remember_and_append_turns_take_when_it_happened_and_refuse_bad_times() {
    let admin = admin().await;
    let (org, agent) = org_with_agent(&admin, "occurred-at").await;
    let app = app_for(org).await;
    let at = Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap();
    let id: Uuid = sqlx::query_scalar(
        "SELECT memory_id FROM ibex_core.remember($1, $2, 'User ran the Lisbon half marathon.', 'episodic',
                p_occurred_at => $3)",
    )
    .bind(org)
    .bind(agent)
    .bind(at)
    .fetch_one(&app)
    .await
    .unwrap();
    let stored: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT occurred_at FROM ibex_core.memories WHERE org_id = $1 AND id = $2")
            .bind(org)
            .bind(id)
            .fetch_one(&app)
            .await
            .unwrap();
    assert_eq!(stored, Some(at));

    let code = |e: sqlx::Error| e.as_database_error().and_then(|d| d.code()).map(|c| c.to_string());
    let future = sqlx::query(
        "SELECT * FROM ibex_core.remember($1, $2, 'User will win.', p_occurred_at => now() + interval '1 year')",
    )
    .bind(org)
    .bind(agent)
    .execute(&app)
    .await
    .unwrap_err();
    assert_eq!(code(future).as_deref(), Some("22008"));
    let bad_turns = sqlx::query("SELECT * FROM ibex_core.remember($1, $2, 'User is here.', p_source_turns => '{0}')")
        .bind(org)
        .bind(agent)
        .execute(&app)
        .await
        .unwrap_err();
    assert_eq!(code(bad_turns).as_deref(), Some("22023"));

    let session: Uuid = sqlx::query_scalar("SELECT ibex_core.ensure_session($1, $2, 'bad-times')")
        .bind(org)
        .bind(agent)
        .fetch_one(&app)
        .await
        .unwrap();
    for (at, expected) in [
        (json!("last tuesday"), "22007"),
        (json!("3026-01-01T00:00:00Z"), "22008"),
    ] {
        let err = sqlx::query("SELECT ibex_core.append_turns($1, $2, $3)")
            .bind(org)
            .bind(session)
            .bind(json!([{"role": "user", "content": "hello", "at": at}]))
            .execute(&app)
            .await
            .unwrap_err();
        assert_eq!(code(err).as_deref(), Some(expected), "{at}");
    }
    let count: i32 = sqlx::query_scalar("SELECT turn_count FROM ibex_core.sessions WHERE org_id = $1 AND id = $2")
        .bind(org)
        .bind(session)
        .fetch_one(&app)
        .await
        .unwrap();
    assert_eq!(count, 0, "a refused append adds nothing");
}
