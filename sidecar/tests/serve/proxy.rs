//! The OpenAI-compatible proxy against a local test upstream: context injection, turns and usage
//! recorded, streaming pass-through, upstream failures in the error envelope, authentication.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::StatusCode;
use futures_util::StreamExt;
use ibex_sidecar::config::Secret;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::fixtures::{self, eventually, Tenant};
use crate::support::{self, Reply, TestServer};
use crate::upstream::upstream;

async fn proxy_server(upstream: SocketAddr) -> TestServer {
    TestServer::start_ready(ibex_sidecar::Config {
        upstream_base_url: Some(format!("http://{upstream}/v1")),
        upstream_api_key: Some(Secret("sk-upstream-test".into())),
        upstream_timeout: Duration::from_millis(700),
        context_deadline: fixtures::RELAXED_DEADLINE,
        ..support::config()
    })
    .await
}

async fn call(server: &TestServer, token: &str, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = server
        .client
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(token)
        .json(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("proxy answers")
}

async fn turns(admin: &sqlx::PgPool, t: Tenant, external: &str) -> (Uuid, String, Vec<(String, String)>) {
    let (session, status): (Uuid, String) =
        sqlx::query_as("SELECT id, status FROM ibex_core.sessions WHERE org_id = $1 AND external_id = $2")
            .bind(t.org)
            .bind(external)
            .fetch_one(admin)
            .await
            .expect("session recorded");
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT role, content FROM ibex_core.session_turns WHERE org_id = $1 AND session_id = $2 ORDER BY turn_index",
    )
    .bind(t.org)
    .bind(session)
    .fetch_all(admin)
    .await
    .unwrap();
    (session, status, rows)
}

type Usage = (String, i32, i32, i32, Option<i32>, bool, Option<Uuid>);

async fn usage(admin: &sqlx::PgPool, t: Tenant) -> Vec<Usage> {
    sqlx::query_as(
        "SELECT model, prompt_tokens, completion_tokens, latency_ms, status_code, streamed, session_id
         FROM ibex_core.usage_events WHERE org_id = $1 ORDER BY created_at",
    )
    .bind(t.org)
    .fetch_all(admin)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_trip_injects_context_and_records_turns_and_usage() {
    let (addr, seen) = upstream().await;
    let server = proxy_server(addr).await;
    let admin = fixtures::admin().await;
    let t = fixtures::tenant(&admin, "proxy-round").await;
    fixtures::directive(&admin, t, "tone", "Speak like a pirate.", 0).await;
    fixtures::remember(&admin, t, "The user's boat is called Sea Biscuit.", "declarative").await;
    let token = fixtures::token(t.org, "proxy", Some(t.agent)).await;
    let body = json!({
        "model": "gpt-4o-mini",
        "temperature": 0.3,
        "messages": [
            {"role": "system", "content": "You are the harbour assistant."},
            {"role": "user", "content": "What is my boat called?"}
        ]
    });
    let response = call(&server, &token, &body, &[("x-ibex-session-id", "conv-1")]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-ibex-context-degraded"], "false");
    let session_header = response.headers()["x-ibex-session-uuid"].to_str().unwrap().to_string();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "Hello from upstream");

    let sent = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(sent["temperature"], 0.3, "other fields pass through");
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    let context = messages[0]["content"].as_str().unwrap();
    assert!(context.starts_with("## Directives\nSpeak like a pirate."), "{context}");
    assert!(context.contains("Sea Biscuit"), "the memory is injected: {context}");
    assert_eq!(
        messages[1],
        json!({"role": "system", "content": "You are the harbour assistant."})
    );
    assert_eq!(messages[2]["content"], "What is my boat called?");

    let (session, status, rows) = turns(&admin, t, "conv-1").await;
    assert_eq!(session.to_string(), session_header);
    assert_eq!(status, "active");
    assert_eq!(
        rows,
        vec![
            ("user".to_string(), "What is my boat called?".to_string()),
            ("assistant".to_string(), "Hello from upstream".to_string())
        ]
    );
    let events = usage(&admin, t).await;
    assert_eq!(events.len(), 1);
    let (model, prompt, completion, _latency, code, streamed, usage_session) = &events[0];
    assert_eq!(model, "gpt-4o-mini");
    assert_eq!((*prompt, *completion), (123, 4), "the upstream's usage");
    assert_eq!((*code, *streamed, *usage_session), (Some(200), false, Some(session)));
    // What the context's memories cost is recorded with the call.
    let (memory_tokens, memory_count, memory_source): (Option<i32>, Option<i32>, Option<String>) = sqlx::query_as(
        "SELECT memory_tokens, memory_count, memory_source FROM ibex_core.usage_events WHERE org_id = $1",
    )
    .bind(t.org)
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(memory_count, Some(1), "the one memory was packed");
    assert!(memory_tokens.is_some_and(|n| n > 0), "{memory_tokens:?}");
    assert!(
        matches!(memory_source.as_deref(), Some("cold" | "both")),
        "found by the question's search: {memory_source:?}"
    );

    // The next turn of the same conversation appends, then completes the session.
    let body = json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "user", "content": "What is my boat called?"},
            {"role": "assistant", "content": "Hello from upstream"},
            {"role": "user", "content": "Thanks, bye."}
        ]
    });
    let response = call(
        &server,
        &token,
        &body,
        &[("x-ibex-session-id", "conv-1"), ("x-ibex-session-complete", "true")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let (_, status, rows) = turns(&admin, t, "conv-1").await;
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[2], ("user".to_string(), "Thanks, bye.".to_string()));
    assert_eq!(status, "completed");
    let again = support::reply(call(&server, &token, &body, &[("x-ibex-session-id", "conv-1")]).await).await;
    again.error(409, "conflict");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_passes_chunks_through_and_records_the_reply() {
    let (addr, _seen) = upstream().await;
    let server = proxy_server(addr).await;
    let admin = fixtures::admin().await;
    let t = fixtures::tenant(&admin, "proxy-stream").await;
    let token = fixtures::token(t.org, "admin", None).await;
    let body = json!({
        "model": "gpt-4o",
        "stream": true,
        "messages": [{"role": "user", "content": "Say hello."}]
    });
    let agent = t.agent.to_string();
    let response = call(
        &server,
        &token,
        &body,
        &[("x-ibex-session-id", "stream-1"), ("x-ibex-agent-id", &agent)],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut stream = response.bytes_stream();
    let mut chunks = 0;
    let mut text = String::new();
    while let Some(chunk) = stream.next().await {
        chunks += 1;
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    assert!(chunks >= 2, "chunks arrive as the upstream sends them ({chunks})");
    assert!(
        text.contains("\" stream\"") && text.ends_with("data: [DONE]\n\n"),
        "{text}"
    );

    let admin2 = admin.clone();
    eventually(Duration::from_secs(5), "the streamed turn is recorded", || {
        let admin = admin2.clone();
        async move { turns(&admin, t, "stream-1").await.2.len() == 2 }
    })
    .await;
    let (_, _, rows) = turns(&admin, t, "stream-1").await;
    assert_eq!(rows[1], ("assistant".to_string(), "Hello from the stream".to_string()));
    let events = usage(&admin, t).await;
    assert_eq!(events.len(), 1);
    let (_, prompt, completion, _, code, streamed, _) = &events[0];
    assert!(*prompt > 0 && *completion > 0, "counted when the stream sends no usage");
    assert_eq!((*code, *streamed), (Some(200), true));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_come_back_in_the_envelope() {
    let (addr, _seen) = upstream().await;
    let server = proxy_server(addr).await;
    let admin = fixtures::admin().await;
    let t = fixtures::tenant(&admin, "proxy-fail").await;
    let token = fixtures::token(t.org, "proxy", Some(t.agent)).await;

    let crash = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "[500] please"}]});
    let reply: Reply = support::reply(call(&server, &token, &crash, &[]).await).await;
    let error = reply.error(502, "upstream_error");
    assert_eq!(error["details"]["upstream_status"], 500);
    assert_eq!(
        error["details"]["upstream_body"]["error"]["message"],
        "the model crashed"
    );

    // An upstream that answers after 20 s: the proxy gives up at upstream_timeout (700 ms).
    // The bound only tells "gave up" from "waited for the answer", with room for a loaded
    // machine (context assembly runs before the upstream call).
    let hang = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "[hang] please"}]});
    let started = std::time::Instant::now();
    let reply = support::reply(call(&server, &token, &hang, &[]).await).await;
    reply.error(504, "upstream_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "gave up after upstream_timeout, not after the upstream's 20 s"
    );

    let unreachable = TestServer::start_ready(ibex_sidecar::Config {
        upstream_base_url: Some(format!("http://127.0.0.1:{}/v1", fixtures::closed_port().await)),
        ..support::config()
    })
    .await;
    let ok = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    let reply = support::reply(call(&unreachable, &token, &ok, &[]).await).await;
    let error = reply.error(502, "upstream_error");
    assert!(error["details"]["upstream_status"].is_null());
    assert!(
        !error["message"].as_str().unwrap().contains("127.0.0.1"),
        "the upstream URL is not shown"
    );
    unreachable.stop().await;

    // Failed calls are still accounted for.
    let codes: Vec<Option<i32>> = usage(&admin, t).await.into_iter().map(|u| u.4).collect();
    assert_eq!(codes, vec![Some(500), Some(504), Some(502)]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_checks_tokens_scopes_and_agents() {
    let (addr, seen) = upstream().await;
    let server = proxy_server(addr).await;
    let admin = fixtures::admin().await;
    let t = fixtures::tenant(&admin, "proxy-auth").await;
    let other = fixtures::tenant(&admin, "proxy-auth-other").await;
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});

    let reply = support::reply(
        server
            .client
            .post(server.url("/v1/chat/completions"))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    reply.error(401, "unauthenticated");
    assert_eq!(reply.headers["www-authenticate"], "Bearer");
    let fake = ibex_sidecar::auth::generate_token();
    support::reply(call(&server, &fake, &body, &[]).await)
        .await
        .error(401, "unauthenticated");
    let no_scope = fixtures::token(t.org, "context:assemble", Some(t.agent)).await;
    support::reply(call(&server, &no_scope, &body, &[]).await)
        .await
        .error(403, "permission_denied");
    let unbound = fixtures::token(t.org, "proxy", None).await;
    support::reply(call(&server, &unbound, &body, &[]).await)
        .await
        .error(400, "invalid_request");
    let foreign = other.agent.to_string();
    support::reply(call(&server, &unbound, &body, &[("x-ibex-agent-id", &foreign)]).await)
        .await
        .error(404, "not_found");
    let bound = fixtures::token(t.org, "proxy", Some(t.agent)).await;
    support::reply(call(&server, &bound, &body, &[("x-ibex-agent-id", &foreign)]).await)
        .await
        .error(403, "permission_denied");
    support::reply(call(&server, &bound, &json!({"model": "gpt-4o", "messages": []}), &[]).await)
        .await
        .error(400, "invalid_request");
    support::reply(
        call(
            &server,
            &bound,
            &json!({"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}),
            &[],
        )
        .await,
    )
    .await
    .error(400, "invalid_request");
    assert!(seen.lock().unwrap().is_empty(), "nothing reached the upstream");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_controls_come_from_x_ibex_headers() {
    let (addr, _seen) = upstream().await;
    let server = TestServer::start_ready(ibex_sidecar::Config {
        upstream_base_url: Some(format!("http://{addr}/v1")),
        upstream_api_key: Some(Secret("sk-upstream-test".into())),
        upstream_timeout: Duration::from_millis(700),
        context_deadline: fixtures::RELAXED_DEADLINE,
        ..support::selecting()
    })
    .await;
    let admin = fixtures::admin().await;
    let t = fixtures::tenant(&admin, "proxy-controls").await;
    fixtures::remember(&admin, t, "The user's boat is called Sea Biscuit.", "declarative").await;
    fixtures::remember(&admin, t, "The user plays the cello on Sundays.", "episodic").await;
    let token = fixtures::token(t.org, "proxy", Some(t.agent)).await;
    let body = json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "What is my boat called?"}]
    });

    let plain = call(&server, &token, &body, &[]).await;
    assert_eq!(plain.status(), StatusCode::OK);
    assert_eq!(plain.headers()["x-ibex-memories"], "1", "the boat, not the cello");
    assert!(!plain.headers().contains_key("x-ibex-context-explain"));

    let none = call(&server, &token, &body, &[("x-ibex-max-memory-tokens", "0")]).await;
    assert_eq!(none.status(), StatusCode::OK);
    assert_eq!(none.headers()["x-ibex-memories"], "0");

    let explained = call(&server, &token, &body, &[("x-ibex-explain", "true")]).await;
    assert_eq!(explained.status(), StatusCode::OK);
    let explain: Value = serde_json::from_str(explained.headers()["x-ibex-context-explain"].to_str().unwrap()).unwrap();
    assert_eq!(explain["considered"], 2);
    assert_eq!(explain["more"], 0);
    let left_out = explain["left_out"].as_array().unwrap();
    assert_eq!(left_out.len(), 1, "{explain}");
    assert!(
        left_out[0]["reason"].as_str().unwrap().starts_with("below_"),
        "{explain}"
    );

    let loose = call(
        &server,
        &token,
        &body,
        &[("x-ibex-min-relevance", "0"), ("x-ibex-explain", "false")],
    )
    .await;
    assert_eq!(loose.status(), StatusCode::OK);

    for (name, value) in [
        ("x-ibex-max-memory-tokens", "-1"),
        ("x-ibex-max-memory-tokens", "lots"),
        ("x-ibex-max-memory-tokens", "1048577"),
        ("x-ibex-min-relevance", "1.5"),
        ("x-ibex-min-relevance", "NaN"),
        ("x-ibex-explain", "yes"),
    ] {
        let reply = support::reply(call(&server, &token, &body, &[(name, value)]).await).await;
        let error = reply.error(400, "invalid_request");
        let message = error["message"].as_str().unwrap();
        let field = name.trim_start_matches("x-ibex-").replace('-', "_");
        assert!(message.contains(name) || message.contains(&field), "{error}");
    }
    server.stop().await;
}
