//! The extraction workers (ibex_pg) with an OpenAI-compatible LLM: a local server that answers
//! from a script (ibex_bench::fake_llm). Every test uses its own org and script key, so they run
//! in parallel against the same workers and settings.

use std::collections::HashSet;
use std::time::Duration;

use ibex_bench::fake_llm::FakeLlm;
use ibex_e2e::{admin, app_for, eventually, org_with_agent};
use sqlx::PgPool;
use tokio::sync::OnceCell;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(40);

/// One fake LLM for the whole test binary, and the cluster pointed at it. The settings are
/// reloaded, not restarted: extraction settings are SIGHUP settings.
async fn llm() -> &'static FakeLlm {
    static LLM: OnceCell<FakeLlm> = OnceCell::const_new();
    LLM.get_or_init(|| async {
        // Its own runtime on its own thread: each #[tokio::test] has a runtime that ends with it.
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            rt.block_on(async move {
                let llm = FakeLlm::start(Duration::from_millis(50)).await;
                tx.send(llm).ok();
                std::future::pending::<()>().await;
            });
        });
        let llm = rx.await.expect("fake LLM started");
        let admin = admin().await;
        for (name, value) in [
            ("ibex.llm_base_url", llm.base_url()),
            ("ibex.llm_model", "fake-llm".to_string()),
            ("ibex.llm_timeout_ms", "1500".to_string()),
            ("ibex.extraction_retry_base_ms", "200".to_string()),
            ("ibex.extraction_lease_seconds", "4".to_string()),
            ("ibex.extraction_poll_ms", "200".to_string()),
        ] {
            // ALTER SYSTEM takes no parameters; the values here are fixed by this test.
            sqlx::query(&format!("ALTER SYSTEM SET {name} = '{value}'"))
                .execute(&admin)
                .await
                .unwrap();
        }
        sqlx::query("SELECT pg_reload_conf()").execute(&admin).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        llm
    })
    .await
}

/// A session with these user turns (each answered by a short assistant turn), completed or not.
async fn session(app: &PgPool, org: Uuid, agent: Uuid, user_turns: &[String], complete: bool) -> Uuid {
    let id: Uuid = sqlx::query_scalar("SELECT ibex_core.ensure_session($1, $2, $3)")
        .bind(org)
        .bind(agent)
        .bind(Uuid::new_v4().to_string())
        .fetch_one(app)
        .await
        .unwrap();
    let mut turns = Vec::new();
    for text in user_turns {
        turns.push(serde_json::json!({"role": "user", "content": text}));
        turns.push(serde_json::json!({"role": "assistant", "content": "Noted."}));
    }
    sqlx::query("SELECT ibex_core.append_turns($1, $2, $3)")
        .bind(org)
        .bind(id)
        .bind(serde_json::Value::Array(turns))
        .execute(app)
        .await
        .unwrap();
    if complete {
        sqlx::query("SELECT ibex_core.complete_session($1, $2)")
            .bind(org)
            .bind(id)
            .execute(app)
            .await
            .unwrap();
    }
    id
}

async fn checkpoint(admin: &PgPool, org: Uuid, session: Uuid) -> (i32, i32, bool) {
    sqlx::query_as(
        "SELECT last_extracted_turn, turn_count, extraction_dead FROM ibex_core.sessions WHERE org_id = $1 AND id = $2",
    )
    .bind(org)
    .bind(session)
    .fetch_one(admin)
    .await
    .unwrap()
}

async fn wait_extracted(admin: &PgPool, org: Uuid, session: Uuid) {
    eventually("the session to be extracted", WAIT, || async {
        let (done, total, _) = checkpoint(admin, org, session).await;
        (done == total).then_some(())
    })
    .await;
}

async fn memories(admin: &PgPool, org: Uuid) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT content FROM ibex_core.memories WHERE org_id = $1 AND status = 'active' ORDER BY content",
    )
    .bind(org)
    .fetch_all(admin)
    .await
    .unwrap()
}

fn key() -> String {
    Uuid::new_v4().simple().to_string()
}

#[tokio::test]
async fn a_completed_session_becomes_memories_once() {
    let llm = llm().await;
    let admin = admin().await;
    let (org, agent) = org_with_agent(&admin, "extract-ok").await;
    let app = app_for(org).await;
    let k = key();
    let facts = [
        "The user can be reached at 555-123-4567 on weekdays",
        "The user grows tomatoes on the balcony",
        "The user is learning Portuguese with a tutor",
        "The user rides a green bicycle to work",
        "The user's sister lives in Montreal",
    ];
    let turns: Vec<String> = facts
        .iter()
        .map(|f| format!("[llm:ok:{k}] FACT: {f}. Thanks!"))
        .collect();
    let s = session(&app, org, agent, &turns, true).await;
    wait_extracted(&admin, org, s).await;
    let stored = memories(&admin, org).await;
    assert_eq!(stored.len(), 5, "{stored:?}");
    assert!(
        stored.contains(&"The user can be reached at [PHONE] on weekdays.".to_string()),
        "PII redacted: {stored:?}"
    );
    // The source is recorded to the turn (fact i was said in turn 2i + 1), and the LLM only saw
    // the new turns.
    let sourced: Vec<(String, Vec<i32>)> = sqlx::query_as(
        "SELECT content, source_turns FROM ibex_core.memories
         WHERE org_id = $1 AND source_session_id = $2 AND source_turn = source_turns[1]
           AND metadata->>'extractor' = 'llm:fake-llm'
         ORDER BY source_turns",
    )
    .bind(org)
    .bind(s)
    .fetch_all(&admin)
    .await
    .unwrap();
    let turns: Vec<Vec<i32>> = sourced.iter().map(|(_, t)| t.clone()).collect();
    assert_eq!(turns, vec![vec![1], vec![3], vec![5], vec![7], vec![9]], "{sourced:?}");
    assert!(sourced[1].0.contains("tomatoes"), "{sourced:?}");
    assert_eq!(llm.calls(&k), 1);

    // Processing the same checkpoint again (as after a crash before the pointer moved) creates
    // no duplicates: every memory goes through remember's de-duplication.
    sqlx::query("UPDATE ibex_core.sessions SET last_extracted_turn = 0 WHERE org_id = $1 AND id = $2")
        .bind(org)
        .bind(s)
        .execute(&admin)
        .await
        .unwrap();
    sqlx::query("SELECT ibex_wake_extraction_workers()")
        .execute(&admin)
        .await
        .unwrap();
    wait_extracted(&admin, org, s).await;
    eventually("the second run", WAIT, || async { (llm.calls(&k) == 2).then_some(()) }).await;
    assert_eq!(memories(&admin, org).await.len(), 5, "no duplicates after reprocessing");

    // New turns on the same (re-opened by the test) session: only they are read.
    let k2 = key();
    sqlx::query("UPDATE ibex_core.sessions SET status = 'active' WHERE org_id = $1 AND id = $2")
        .bind(org)
        .bind(s)
        .execute(&admin)
        .await
        .unwrap();
    sqlx::query("SELECT ibex_core.append_turns($1, $2, $3)")
        .bind(org)
        .bind(s)
        .bind(serde_json::json!([{"role": "user", "content": format!("[llm:ok:{k2}] FACT: The user adopted a cat named Miso.")}]))
        .execute(&app)
        .await
        .unwrap();
    sqlx::query("SELECT ibex_core.complete_session($1, $2)")
        .bind(org)
        .bind(s)
        .execute(&app)
        .await
        .unwrap();
    wait_extracted(&admin, org, s).await;
    assert!(
        llm.requests().iter().all(|r| !r.contains("555-123-4567")),
        "turns are redacted before they reach the LLM"
    );
    let last = llm.requests().into_iter().rev().find(|r| r.contains(&k2)).unwrap();
    assert!(!last.contains(&k), "old turns are not sent again");
    assert!(
        last.contains("The user grows tomatoes on the balcony."),
        "related existing memories are sent so they are not repeated"
    );
    let stored = memories(&admin, org).await;
    assert_eq!(stored.len(), 6, "{stored:?}");
    assert!(stored.iter().all(|m| !m.contains("555-123")), "no PII in any memory");
}

#[tokio::test]
async fn active_sessions_are_never_touched() {
    let llm = llm().await;
    let admin = admin().await;
    let (org, agent) = org_with_agent(&admin, "extract-active").await;
    let app = app_for(org).await;
    let k = key();
    let s = session(
        &app,
        org,
        agent,
        &[format!("[llm:ok:{k}] FACT: The user is still talking.")],
        false,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(checkpoint(&admin, org, s).await.0, 0);
    assert_eq!(llm.calls(&k), 0);
    assert!(memories(&admin, org).await.is_empty());
    sqlx::query("SELECT ibex_core.complete_session($1, $2)")
        .bind(org)
        .bind(s)
        .execute(&app)
        .await
        .unwrap();
    wait_extracted(&admin, org, s).await;
    assert_eq!(
        memories(&admin, org).await,
        vec!["The user is still talking.".to_string()]
    );
}

#[tokio::test]
async fn server_errors_timeouts_and_partial_json_are_retried_without_duplicates() {
    let llm = llm().await;
    let admin = admin().await;
    let (org, agent) = org_with_agent(&admin, "extract-retry").await;
    let app = app_for(org).await;
    let mut cases = Vec::new();
    for behaviour in ["fail500x2", "timeoutx1", "partialx2"] {
        let k = key();
        let s = session(
            &app,
            org,
            agent,
            &[format!("[llm:{behaviour}:{k}] FACT: The user survived {behaviour}.")],
            true,
        )
        .await;
        cases.push((behaviour, k, s));
    }
    for (behaviour, k, s) in &cases {
        wait_extracted(&admin, org, *s).await;
        let expected_calls = if *behaviour == "timeoutx1" { 2 } else { 3 };
        assert_eq!(llm.calls(k), expected_calls, "{behaviour}");
    }
    let stored = memories(&admin, org).await;
    assert_eq!(stored.len(), 3, "one memory per session, no duplicates: {stored:?}");
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM ibex_core.dead_letters WHERE org_id = $1")
        .bind(org)
        .fetch_one(&admin)
        .await
        .unwrap();
    assert_eq!(dead, 0);
}

#[tokio::test]
async fn persistent_failures_are_dead_lettered_and_others_keep_flowing() {
    let llm = llm().await;
    let admin = admin().await;
    let (org, agent) = org_with_agent(&admin, "extract-dead").await;
    let app = app_for(org).await;
    let bad = key();
    let good = key();
    let doomed = session(
        &app,
        org,
        agent,
        &[format!("[llm:malformed:{bad}] FACT: Never stored.")],
        true,
    )
    .await;
    let fine = session(
        &app,
        org,
        agent,
        &[format!("[llm:ok:{good}] FACT: The user keeps flowing.")],
        true,
    )
    .await;
    wait_extracted(&admin, org, fine).await;
    let (error, attempts): (String, i32) = eventually("the dead letter", WAIT, || async {
        sqlx::query_as("SELECT error, attempts FROM ibex_core.dead_letters WHERE org_id = $1 AND source = 'extraction' AND reference_id = $2")
            .bind(org)
            .bind(doomed.to_string())
            .fetch_optional(&admin)
            .await
            .unwrap()
    })
    .await;
    assert!(error.contains("LLM answer rejected"), "{error}");
    // One attempt and three retries, with backoff between them.
    assert_eq!(attempts, 4);
    assert_eq!(llm.calls(&bad), 4);
    assert_eq!(checkpoint(&admin, org, doomed).await, (0, 2, true));
    assert_eq!(memories(&admin, org).await, vec!["The user keeps flowing.".to_string()]);
    let status: serde_json::Value = sqlx::query_scalar("SELECT to_jsonb(s) FROM ibex_ops.extraction_status s")
        .fetch_one(&admin)
        .await
        .unwrap();
    assert!(status["dead_letters"].as_i64().unwrap() >= 1, "{status}");
    assert!(status["counters"]["retries"].as_i64().unwrap() >= 3, "{status}");
    // After the cause is fixed, an operator can send it round again.
    let retried: bool = sqlx::query_scalar("SELECT ibex_ops.retry_extraction($1, $2)")
        .bind(org)
        .bind(doomed)
        .fetch_one(&admin)
        .await
        .unwrap();
    assert!(retried);
}

#[tokio::test]
async fn invalid_items_are_dropped_and_valid_ones_kept() {
    let _ = llm().await;
    let admin = admin().await;
    let (org, agent) = org_with_agent(&admin, "extract-mixed").await;
    let app = app_for(org).await;
    let k = key();
    let s = session(
        &app,
        org,
        agent,
        &[format!("[llm:mixed:{k}] FACT: The user sorts socks by colour.")],
        true,
    )
    .await;
    wait_extracted(&admin, org, s).await;
    assert_eq!(
        memories(&admin, org).await,
        vec!["The user sorts socks by colour.".to_string()]
    );
}

#[tokio::test]
async fn conflicts_are_detected_through_the_pipeline() {
    let _ = llm().await;
    let admin = admin().await;
    let (org, agent) = org_with_agent(&admin, "extract-conflict").await;
    let app = app_for(org).await;
    let first = session(
        &app,
        org,
        agent,
        &[format!("[llm:ok:{}] FACT: The user is 34 years old.", key())],
        true,
    )
    .await;
    wait_extracted(&admin, org, first).await;
    let second = session(
        &app,
        org,
        agent,
        &[format!("[llm:ok:{}] FACT: The user is 43 years old.", key())],
        true,
    )
    .await;
    wait_extracted(&admin, org, second).await;
    let conflicts: Vec<(String, String)> = sqlx::query_as(
        "SELECT a.content, b.content FROM ibex_core.memory_conflicts c
         JOIN ibex_core.memories a ON a.org_id = c.org_id AND a.id = c.memory_id
         JOIN ibex_core.memories b ON b.org_id = c.org_id AND b.id = c.conflicting_memory_id
         WHERE c.org_id = $1",
    )
    .bind(org)
    .fetch_all(&admin)
    .await
    .unwrap();
    assert_eq!(
        conflicts,
        vec![(
            "The user is 43 years old.".to_string(),
            "The user is 34 years old.".to_string()
        )]
    );
}

#[tokio::test]
async fn workers_share_the_queue_and_a_terminated_worker_loses_and_duplicates_nothing() {
    let llm = llm().await;
    let admin = admin().await;
    let (org, agent) = org_with_agent(&admin, "extract-kill").await;
    let app = app_for(org).await;
    // The first answer for this key takes 3 s: long enough to kill the worker waiting for it.
    let k = key();
    let victim = session(
        &app,
        org,
        agent,
        &[format!("[llm:slowx1:{k}] FACT: The user survived a crash.")],
        true,
    )
    .await;
    let worker: String = eventually("a worker to claim the session", WAIT, || async {
        let w: Option<Option<String>> = sqlx::query_scalar(
            "SELECT metadata->>'extraction_worker' FROM ibex_core.sessions
             WHERE org_id = $1 AND id = $2 AND extraction_lease_until > now()",
        )
        .bind(org)
        .bind(victim)
        .fetch_optional(&admin)
        .await
        .unwrap();
        w.flatten().filter(|_| llm.calls(&k) == 1)
    })
    .await;
    let killed: bool = sqlx::query_scalar(
        "SELECT bool_or(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE backend_type = 'ibex extraction' AND application_name = $1",
    )
    .bind(&worker)
    .fetch_one(&admin)
    .await
    .unwrap();
    assert!(killed, "terminated {worker}");

    // Meanwhile other sessions flow through the other worker; both workers take a share.
    let mut others = Vec::new();
    for i in 0..6usize {
        // Slow answers (3 s) keep each worker busy, so the queue has to be shared.
        let plant = [
            "a fern",
            "a cactus",
            "an orchid",
            "a bonsai",
            "a monstera",
            "a lemon tree",
        ][i];
        others.push(
            session(
                &app,
                org,
                agent,
                &[format!(
                    "[llm:slowx1:{}] FACT: The user looks after {plant} at the office.",
                    key()
                )],
                true,
            )
            .await,
        );
    }
    for s in &others {
        wait_extracted(&admin, org, *s).await;
    }
    // The lease of the killed job expires; the restarted worker (or the other) redoes it.
    wait_extracted(&admin, org, victim).await;
    assert_eq!(llm.calls(&k), 2, "asked again after the crash");
    let stored = memories(&admin, org).await;
    assert_eq!(
        stored.iter().filter(|m| m.contains("survived a crash")).count(),
        1,
        "{stored:?}"
    );
    assert_eq!(stored.len(), 7);
    let workers: HashSet<String> = sqlx::query_scalar::<_, Option<String>>(
        "SELECT metadata->>'extraction_worker' FROM ibex_core.sessions WHERE org_id = $1",
    )
    .bind(org)
    .fetch_all(&admin)
    .await
    .unwrap()
    .into_iter()
    .flatten()
    .collect();
    assert!(workers.len() >= 2, "several workers shared the queue: {workers:?}");
}
