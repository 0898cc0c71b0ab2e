//! Extraction without an LLM: the built-in rule-based extractor is the default. Also shows that
//! completing a session wakes the workers (their poll interval is set to a minute here).

use std::time::{Duration, Instant};

use ibex_e2e::{admin, app_for, eventually, org_with_agent};
use uuid::Uuid;

#[tokio::test]
async fn rule_based_extraction_runs_by_default_and_completion_wakes_the_workers() {
    let admin = admin().await;
    for sql in [
        "ALTER SYSTEM RESET ibex.llm_base_url",
        "ALTER SYSTEM SET ibex.extraction_poll_ms = 60000",
        "SELECT pg_reload_conf()",
    ] {
        sqlx::query(sql).execute(&admin).await.unwrap();
    }
    // Let the workers finish their current nap and start the long one.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (org, agent) = org_with_agent(&admin, "extract-rules").await;
    let app = app_for(org).await;
    let session: Uuid = sqlx::query_scalar("SELECT ibex_core.ensure_session($1, $2, 'rules-1')")
        .bind(org)
        .bind(agent)
        .fetch_one(&app)
        .await
        .unwrap();
    sqlx::query("SELECT ibex_core.append_turns($1, $2, $3)")
        .bind(org)
        .bind(session)
        .bind(serde_json::json!([
            {"role": "user", "content": "Hi! My name is Ana. I prefer tea over coffee."},
            {"role": "assistant", "content": "Nice to meet you, Ana. I love coffee myself."},
            {"role": "user", "content": "From now on, answer in Portuguese please. Do I like cake?"},
            {"role": "assistant", "content": "Claro!"},
            {"role": "user", "content": "I have a dentist appointment on Friday at 3pm. My email is ana@example.com."}
        ]))
        .execute(&app)
        .await
        .unwrap();
    let completed = Instant::now();
    sqlx::query("SELECT ibex_core.complete_session($1, $2)")
        .bind(org)
        .bind(session)
        .execute(&app)
        .await
        .unwrap();

    let stored: Vec<(String, String)> = eventually("rule-based memories", Duration::from_secs(20), || async {
        let done: bool = sqlx::query_scalar(
            "SELECT last_extracted_turn = turn_count FROM ibex_core.sessions WHERE org_id = $1 AND id = $2",
        )
        .bind(org)
        .bind(session)
        .fetch_one(&admin)
        .await
        .unwrap();
        if !done {
            return None;
        }
        Some(
            sqlx::query_as(
                "SELECT category, content FROM ibex_core.memories WHERE org_id = $1 ORDER BY category, content",
            )
            .bind(org)
            .fetch_all(&admin)
            .await
            .unwrap(),
        )
    })
    .await;
    let waited = completed.elapsed();
    for sql in ["ALTER SYSTEM RESET ibex.extraction_poll_ms", "SELECT pg_reload_conf()"] {
        sqlx::query(sql).execute(&admin).await.unwrap();
    }
    assert!(
        waited < Duration::from_secs(15),
        "woken by the completion, not by the one-minute poll ({waited:?})"
    );
    let contents: Vec<&str> = stored.iter().map(|(_, c)| c.as_str()).collect();
    assert!(
        stored
            .iter()
            .any(|(cat, c)| cat == "declarative" && c.contains("prefers tea over coffee")),
        "{contents:?}"
    );
    assert!(
        stored
            .iter()
            .any(|(cat, c)| cat == "declarative" && c.contains("name is Ana")),
        "{contents:?}"
    );
    // A standing instruction from a user's turn waits for review instead of steering the agent
    // for every user (security issue, item 9).
    assert!(!stored.iter().any(|(cat, _)| cat == "procedural"), "{contents:?}");
    let queued: Vec<String> = sqlx::query_scalar(
        "SELECT content FROM ibex_core.memory_reviews WHERE org_id = $1 AND status = 'open' AND category = 'procedural'",
    )
    .bind(org)
    .fetch_all(&admin)
    .await
    .unwrap();
    assert!(queued.iter().any(|c| c.contains("Portuguese")), "{queued:?}");
    assert!(
        stored
            .iter()
            .any(|(cat, c)| cat == "episodic" && c.contains("dentist appointment on Friday")),
        "{contents:?}"
    );
    // The assistant's words and the question are not memories; PII never is.
    assert!(
        !contents
            .iter()
            .any(|c| c.contains("coffee myself") || c.contains("cake") || c.contains("@")),
        "{contents:?}"
    );
    let extractor: String =
        sqlx::query_scalar("SELECT DISTINCT metadata->>'extractor' FROM ibex_core.memories WHERE org_id = $1")
            .bind(org)
            .fetch_one(&admin)
            .await
            .unwrap();
    assert_eq!(extractor, "rules");
}
