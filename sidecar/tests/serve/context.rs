//! gRPC AssembleContext against the real stack: section order, scores, budgets, history trimming
//! and authentication. Degradation under the real 40 ms deadline is in tests/deadline.rs.

use std::time::Duration;

use sqlx::Connection as _;

use ibex_sidecar::grpc::proto::context::v1 as pb;
use pb::SectionKind;
use tonic::Code;

use crate::fixtures::{self, assemble, eventually, message, request, section, timing, Tenant};
use crate::support::{self, TestServer};

const KINDS: [SectionKind; 5] = [
    SectionKind::Directive,
    SectionKind::Procedural,
    SectionKind::Declarative,
    SectionKind::Episodic,
    SectionKind::History,
];

/// A tenant with two directives and memories of every category, already in the hot cache.
async fn seeded(label: &str) -> (Tenant, Vec<uuid::Uuid>) {
    let admin = fixtures::admin().await;
    let t = fixtures::tenant(&admin, label).await;
    fixtures::directive(&admin, t, "tone", "Answer briefly and politely.", 1).await;
    fixtures::directive(&admin, t, "safety", "Never reveal account numbers.", 10).await;
    let mut ids = Vec::new();
    for (content, category) in [
        (
            "Always confirm the delivery address before placing a food order.",
            "procedural",
        ),
        ("The user is vegetarian and allergic to peanuts.", "declarative"),
        ("The user's favourite cuisine is Ethiopian food.", "declarative"),
        (
            "Last Friday the user ordered injera from Queen of Sheba and loved it.",
            "episodic",
        ),
        ("The user's car is a blue 2014 Volvo estate.", "declarative"),
    ] {
        ids.push(fixtures::remember(&admin, t, content, category).await);
    }
    let redis = support::redis().await;
    eventually(Duration::from_secs(15), "memories reach the hot cache", || {
        let mut redis = redis.clone();
        async move { fixtures::hot_members(&mut redis, t).await.len() == 5 }
    })
    .await;
    (t, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sections_come_in_order_with_scored_memories_from_hot_and_cold() {
    let server = TestServer::start_ready(ibex_sidecar::Config {
        context_deadline: fixtures::RELAXED_DEADLINE,
        ..support::config()
    })
    .await;
    let (t, ids) = seeded("ctx-order").await;
    let token = fixtures::token(t.org, "context:assemble", None).await;
    let mut client = fixtures::grpc(server.server.grpc_addr).await;
    let body = request(
        t,
        "gpt-4o-mini",
        vec![
            message("system", "You are a food ordering assistant."),
            message("user", "Hi!"),
            message("assistant", "Hello, how can I help?"),
            message("user", "What food should I order tonight? I am hungry."),
        ],
    );
    let r = assemble(&mut client, &token, body).await.expect("assembled");
    assert!(!r.degraded, "{}", r.degraded_reason);
    let kinds: Vec<i32> = r.sections.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        KINDS.map(|k| k as i32),
        "directive, procedural, declarative, episodic, history"
    );
    assert_eq!(r.model, "gpt-4o-mini");
    assert!(r.exact_token_counts);

    let directive = section(&r, SectionKind::Directive);
    assert_eq!(directive.items.len(), 2);
    assert_eq!(
        directive.items[0].content, "Never reveal account numbers.",
        "higher priority first"
    );
    assert!(r
        .context
        .starts_with("## Directives\nNever reveal account numbers.\n\nAnswer briefly"));

    // Every memory is chosen (the budget is large), each in its category's section, best first.
    assert_eq!(r.memories.len(), 5, "{:?}", r.memories);
    let chosen: std::collections::HashSet<String> = r.memories.iter().map(|m| m.memory_id.clone()).collect();
    assert_eq!(chosen, ids.iter().map(|i| i.to_string()).collect());
    for w in r.memories.windows(2) {
        assert!(w[0].score >= w[1].score, "packing order is score order");
    }
    for m in &r.memories {
        let expected = 0.40 * m.relevance
            + 0.25 * m.recency
            + 0.20 * m.usefulness
            + 0.10 * m.confidence
            + 0.05 * m.access_frequency;
        assert!((m.score - expected).abs() < 1e-9, "composite score: {m:?}");
        assert!(["hot", "cold", "both"].contains(&m.source.as_str()));
        assert!((m.confidence - 0.9).abs() < 1e-6);
    }
    assert!(
        r.memories.iter().any(|m| m.source == "both"),
        "hot and cold agree on some"
    );
    let declarative = section(&r, SectionKind::Declarative);
    assert_eq!(declarative.items.len(), 3);
    assert!(declarative.text.starts_with("## Memories: declarative"));
    assert_eq!(section(&r, SectionKind::Procedural).items.len(), 1);
    assert_eq!(section(&r, SectionKind::Episodic).items.len(), 1);
    let positions: Vec<usize> = [
        "## Directives",
        "## Memories: procedural",
        "## Memories: declarative",
        "## Memories: episodic",
    ]
    .iter()
    .map(|h| r.context.find(h).expect(h))
    .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{}", r.context);
    // The vegetarian fact answers the question better than the car.
    let score_of = |needle: &str| {
        let item = declarative.items.iter().find(|i| i.content.contains(needle)).unwrap();
        r.memories.iter().find(|m| m.memory_id == item.id).unwrap().relevance
    };
    assert!(score_of("vegetarian") > score_of("Volvo"));

    let history = section(&r, SectionKind::History);
    assert_eq!(history.items.len(), 4);
    assert_eq!(
        history.items[3].content,
        "What food should I order tonight? I am hungry."
    );
    let budget = r.budget.unwrap();
    assert_eq!(budget.context_window, 128_000);
    assert_eq!(budget.max_output_tokens, 16_384);
    assert!(budget.memory_tokens <= budget.memory_budget);
    assert!(r.total_tokens + budget.max_output_tokens <= budget.context_window);
    assert_eq!(budget.history_tokens, history.tokens);
    for name in ["directive", "hot", "cold"] {
        assert!(
            ["ok", "cached", "fallback"].contains(&timing(&r, name).status.as_str()),
            "{r:?}"
        );
    }
    assert!(r.total_millis < 1000.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_holds_and_a_large_memory_is_skipped() {
    let server = TestServer::start_ready(ibex_sidecar::Config {
        max_memory_tokens: 150,
        context_deadline: fixtures::RELAXED_DEADLINE,
        ..support::config()
    })
    .await;
    let admin = fixtures::admin().await;
    let t = fixtures::tenant(&admin, "ctx-budget").await;
    let long = format!(
        "The user's garden has tomatoes. {}",
        "It also grows basil, parsley, thyme, rosemary, mint, chives and oregano in raised beds. ".repeat(12)
    );
    let big = fixtures::remember(&admin, t, &long, "declarative").await;
    let small_a = fixtures::remember(&admin, t, "The user grows tomatoes in the garden.", "declarative").await;
    let small_b = fixtures::remember(&admin, t, "The user waters the garden every evening.", "procedural").await;
    let token = fixtures::token(t.org, "admin", None).await;
    let mut client = fixtures::grpc(server.server.grpc_addr).await;
    let body = request(
        t,
        "gpt-4o",
        vec![message("user", "What does the user grow in the garden? Tomatoes?")],
    );
    let r = assemble(&mut client, &token, body).await.unwrap();
    assert!(!r.degraded, "{}", r.degraded_reason);
    let budget = r.budget.unwrap();
    assert_eq!(budget.memory_budget, 150);
    assert!(budget.memory_tokens <= 150, "{budget:?}");
    let chosen: Vec<String> = r.memories.iter().map(|m| m.memory_id.clone()).collect();
    assert!(!chosen.contains(&big.to_string()), "the 200-token memory does not fit");
    assert!(chosen.contains(&small_a.to_string()) && chosen.contains(&small_b.to_string()));
    let memory_sections: u32 = r.sections[1..4].iter().map(|s| s.tokens).sum();
    assert_eq!(memory_sections, budget.memory_tokens);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_trimmed_to_fit_newest_kept() {
    let server = TestServer::start_ready(ibex_sidecar::Config {
        context_deadline: fixtures::RELAXED_DEADLINE,
        ..support::config()
    })
    .await;
    let admin = fixtures::admin().await;
    let t = fixtures::tenant(&admin, "ctx-history").await;
    let token = fixtures::token(t.org, "context:assemble", Some(t.agent)).await;
    let mut client = fixtures::grpc(server.server.grpc_addr).await;
    let paragraph = "We talked about the weather, the harvest and the price of grain at length. ".repeat(40);
    let mut messages = vec![message("system", "Be helpful.")];
    for i in 0..12 {
        messages.push(message("user", &format!("turn {i}: {paragraph}")));
        messages.push(message("assistant", &format!("reply {i}: {paragraph}")));
    }
    messages.push(message("user", "So, what did we decide?"));
    let mut body = request(t, "gpt-4", messages.clone());
    body.max_output_tokens = Some(1000);
    let r = assemble(&mut client, &token, body).await.unwrap();
    let history = section(&r, SectionKind::History);
    let budget = r.budget.unwrap();
    assert_eq!(budget.context_window, 8192);
    assert!(r.total_tokens + 1000 <= 8192, "{} tokens", r.total_tokens);
    assert!(history.items.len() < messages.len(), "something was trimmed");
    assert_eq!(
        history.items[0].content, "Be helpful.",
        "the caller's system message is kept"
    );
    assert_eq!(history.items.last().unwrap().content, "So, what did we decide?");
    // What is kept after the system message is the newest run of the conversation.
    let kept: Vec<&str> = history.items[1..].iter().map(|i| i.content.as_str()).collect();
    let tail: Vec<&str> = messages[messages.len() - kept.len()..]
        .iter()
        .map(|m| m.content.as_str())
        .collect();
    assert_eq!(kept, tail);
    assert!(history.tokens <= budget.history_budget);

    let err = assemble(
        &mut client,
        &token,
        request(t, "my-own-model", vec![message("user", "hi")]),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("unknown model"), "{}", err.message());
    let err = assemble(&mut client, &token, request(t, "gpt-4o", vec![]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_and_authorisation_failures() {
    let server = TestServer::start_ready(ibex_sidecar::Config {
        auth_cache_ttl: Duration::ZERO,
        context_deadline: fixtures::RELAXED_DEADLINE,
        ..support::config()
    })
    .await;
    let admin = fixtures::admin().await;
    let t = fixtures::tenant(&admin, "ctx-auth").await;
    let other = fixtures::tenant(&admin, "ctx-auth-other").await;
    let mut client = fixtures::grpc(server.server.grpc_addr).await;
    let body = || request(t, "gpt-4o", vec![message("user", "hello")]);

    let no_token = client.assemble_context(tonic::Request::new(body())).await.unwrap_err();
    assert_eq!(no_token.code(), Code::Unauthenticated);
    assert_eq!(no_token.metadata().get("ibex-error-code").unwrap(), "unauthenticated");
    let malformed = assemble(&mut client, "not-a-token", body()).await.unwrap_err();
    assert_eq!(malformed.code(), Code::Unauthenticated);
    let unknown = ibex_sidecar::auth::generate_token();
    let err = assemble(&mut client, &unknown, body()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("unknown"), "{}", err.message());

    let revoked = fixtures::token(t.org, "context:assemble", None).await;
    assert!(
        assemble(&mut client, &revoked, body()).await.is_ok(),
        "valid before revocation"
    );
    sqlx::query("UPDATE ibex_core.api_tokens SET revoked_at = now() WHERE token_hash = $1")
        .bind(ibex_sidecar::auth::token_hash(&revoked))
        .execute(&admin)
        .await
        .unwrap();
    let err = assemble(&mut client, &revoked, body()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("revoked"), "{}", err.message());

    let expired = fixtures::token(t.org, "context:assemble", None).await;
    sqlx::query(
        "UPDATE ibex_core.api_tokens SET created_at = now() - interval '2 days', expires_at = now() - interval '1 day'
         WHERE token_hash = $1",
    )
    .bind(ibex_sidecar::auth::token_hash(&expired))
    .execute(&admin)
    .await
    .unwrap();
    let err = assemble(&mut client, &expired, body()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("expired"), "{}", err.message());

    let wrong_scope = fixtures::token(t.org, "proxy,memories:read", None).await;
    let err = assemble(&mut client, &wrong_scope, body()).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("context:assemble"));

    let other_org = fixtures::token(other.org, "context:assemble", None).await;
    let err = assemble(&mut client, &other_org, body()).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "a token acts for its own org only");

    let bound = fixtures::token(t.org, "context:assemble", Some(t.agent)).await;
    let mut elsewhere = body();
    let second_agent = uuid::Uuid::new_v4();
    fixtures::add_agent(&admin, t.org, second_agent, "second").await;
    elsewhere.agent_id = second_agent.to_string();
    let err = assemble(&mut client, &bound, elsewhere).await.unwrap_err();
    assert_eq!(
        err.code(),
        Code::PermissionDenied,
        "an agent-bound token acts for its agent only"
    );

    let good = fixtures::token(t.org, "context:assemble", None).await;
    let mut missing_agent = body();
    missing_agent.agent_id = uuid::Uuid::new_v4().to_string();
    let err = assemble(&mut client, &good, missing_agent).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let mut bad_uuid = body();
    bad_uuid.org_id = "nope".into();
    assert_eq!(
        assemble(&mut client, &good, bad_uuid).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    // last_used_at was recorded for the token that worked.
    let used: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT last_used_at FROM ibex_core.api_tokens WHERE token_hash = $1")
            .bind(ibex_sidecar::auth::token_hash(&good))
            .fetch_one(&admin)
            .await
            .unwrap();
    assert!(used.is_some());
    server.stop().await;
}

/// Value of a counter with labels (`name{labels}`), 0 when not yet exported.
fn labelled(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Accesses per memory of a tenant: folded counts plus log rows not folded yet (the indexer
/// folds and deletes in one transaction, so one statement sees a consistent sum).
async fn accesses(admin: &sqlx::PgPool, t: Tenant) -> std::collections::HashMap<uuid::Uuid, i64> {
    sqlx::query_as::<_, (uuid::Uuid, i64)>(
        "SELECT m.id, m.access_count::bigint
                + (SELECT count(*) FROM ibex_core.memory_access a WHERE a.org_id = m.org_id AND a.memory_id = m.id)
         FROM ibex_core.memories m WHERE m.org_id = $1 AND m.agent_id = $2",
    )
    .bind(t.org)
    .bind(t.agent)
    .fetch_all(admin)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_query_embedding_per_call_and_access_recorded_for_packed_memories_only() {
    // A memory budget that holds only some of the candidates.
    let server = TestServer::start_ready(ibex_sidecar::Config {
        context_deadline: fixtures::RELAXED_DEADLINE,
        max_memory_tokens: 40,
        ..support::config()
    })
    .await;
    let (t, ids) = seeded("ctx-access").await;
    let token = fixtures::token(t.org, "context:assemble", None).await;
    let mut client = fixtures::grpc(server.server.grpc_addr).await;
    let before = server.metrics().await;
    let body = request(
        t,
        "gpt-4o",
        vec![message("user", "What should I eat? Any food allergies?")],
    );
    let r = assemble(&mut client, &token, body).await.expect("assembled");
    assert!(!r.degraded, "{}", r.degraded_reason);
    let after = server.metrics().await;
    let embeddings = |page: &str| support::counter(page, "ibex_context_query_embeddings_total");
    assert_eq!(
        embeddings(&after) - embeddings(&before),
        1.0,
        "the query is embedded once"
    );
    // The sidecar's embedding core saw exactly one text for this call (hit or miss).
    let texts = |page: &str| {
        support::counter(page, "ibex_embed_cache_hits_total") + support::counter(page, "ibex_embed_cache_misses_total")
    };
    assert_eq!(texts(&after) - texts(&before), 1.0);

    let packed: std::collections::HashSet<uuid::Uuid> =
        r.memories.iter().map(|m| m.memory_id.parse().unwrap()).collect();
    assert!(!packed.is_empty() && packed.len() < ids.len(), "{r:?}");
    let admin = fixtures::admin().await;
    eventually(Duration::from_secs(10), "the packed memories are recorded", || {
        let admin = admin.clone();
        let n = packed.len() as i64;
        async move { accesses(&admin, t).await.values().sum::<i64>() >= n }
    })
    .await;
    let recorded = accesses(&admin, t).await;
    for id in &ids {
        let expected = i64::from(packed.contains(id));
        assert_eq!(recorded[id], expected, "memory {id}: packed = {}", packed.contains(id));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_degraded_answer_records_no_access() {
    let port = fixtures::closed_port().await;
    let server = TestServer::start_ready(ibex_sidecar::Config {
        context_deadline: fixtures::RELAXED_DEADLINE,
        redis_url: Some(format!("redis://127.0.0.1:{port}/")),
        hot_cache_consumer: false,
        ..support::config()
    })
    .await;
    let admin = fixtures::admin().await;
    let t = fixtures::tenant(&admin, "ctx-degraded-access").await;
    fixtures::remember(&admin, t, "The user plays the cello.", "declarative").await;
    let token = fixtures::token(t.org, "context:assemble", None).await;
    let mut client = fixtures::grpc(server.server.grpc_addr).await;
    let body = request(t, "gpt-4o", vec![message("user", "Which instrument do I play?")]);
    let r = assemble(&mut client, &token, body).await.expect("a degraded answer");
    assert!(r.degraded);
    // Recording is queued before the answer returns, so the counter is final here.
    let page = server.metrics().await;
    assert_eq!(labelled(&page, "ibex_context_access_total{outcome=\"queued\"}"), 0.0);
    assert_eq!(accesses(&admin, t).await.values().sum::<i64>(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_beyond_the_slots_and_queue_are_shed_with_a_retry_hint() {
    // Postgres answers slowly, so admitted calls hold their slots; no queue.
    let proxy = fixtures::DelayProxy::start(fixtures::database_addr()).await;
    let server = TestServer::start_ready(ibex_sidecar::Config {
        context_deadline: fixtures::RELAXED_DEADLINE,
        database_url: Some(fixtures::database_url_via(proxy.addr)),
        hot_cache_consumer: false,
        context_slots_per_core: 1,
        context_queue: 0,
        ..support::config()
    })
    .await;
    let slots = std::thread::available_parallelism().map_or(1, usize::from);
    let admin = fixtures::admin().await;
    let t = fixtures::tenant(&admin, "ctx-shed").await;
    let token = fixtures::token(t.org, "context:assemble", None).await;
    let body = request(t, "gpt-4o", vec![message("user", "Anything to remember?")]);
    let mut client = fixtures::grpc(server.server.grpc_addr).await;
    assemble(&mut client, &token, body.clone())
        .await
        .expect("warm-up (token remembered)");

    proxy.set_delay(Duration::from_millis(400));
    let admitted_before = labelled(
        &server.metrics().await,
        "ibex_context_admission_total{outcome=\"admitted\"}",
    );
    let holders: Vec<_> = (0..slots)
        .map(|_| {
            let (mut client, token, body) = (client.clone(), token.clone(), body.clone());
            tokio::spawn(async move { assemble(&mut client, &token, body).await })
        })
        .collect();
    let server_ref = &server;
    eventually(Duration::from_secs(10), "every slot is taken", || async move {
        labelled(
            &server_ref.metrics().await,
            "ibex_context_admission_total{outcome=\"admitted\"}",
        ) >= admitted_before + slots as f64
    })
    .await;
    let refused = assemble(&mut client, &token, body).await.expect_err("shed");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.metadata().get("retry-after-ms").is_some(), "{refused:?}");
    assert_eq!(refused.metadata().get("ibex-error-code").unwrap(), "overloaded");
    proxy.set_delay(Duration::ZERO);
    for h in holders {
        h.await.unwrap().expect("admitted calls are answered");
    }
    let page = server.metrics().await;
    assert!(labelled(&page, "ibex_context_admission_total{outcome=\"shed\"}") >= 1.0);
    assert!(labelled(&page, "ibex_context_requests_total{outcome=\"shed\"}") >= 1.0);
}

/// A tenant for selection: a directive, a standing instruction, a fact with a near-copy, and
/// facts unrelated to the questions asked.
async fn selection_tenant(label: &str) -> (Tenant, [uuid::Uuid; 4]) {
    let admin = fixtures::admin().await;
    let t = fixtures::tenant(&admin, label).await;
    fixtures::directive(&admin, t, "tone", "Answer briefly.", 0).await;
    let rule = fixtures::remember(&admin, t, "Always answer in British English.", "procedural").await;
    let dog = fixtures::remember(&admin, t, "The user's dog is a beagle called Pepper.", "declarative").await;
    let copy = fixtures::remember(&admin, t, "The user's dog is a beagle named Pepper.", "declarative").await;
    let car = fixtures::remember(&admin, t, "The user's car is a blue 2014 Volvo estate.", "declarative").await;
    for fact in [
        "The user drinks their coffee black, without sugar.",
        "Last spring the user ran a half marathon in Porto.",
    ] {
        fixtures::remember(&admin, t, fact, "episodic").await;
    }
    let redis = support::redis().await;
    eventually(Duration::from_secs(15), "memories reach the hot cache", || {
        let mut redis = redis.clone();
        async move { fixtures::hot_members(&mut redis, t).await.len() == 6 }
    })
    .await;
    (t, [rule, dog, copy, car])
}

fn ask(t: Tenant, text: &str) -> pb::AssembleContextRequest {
    request(t, "gpt-4o-mini", vec![message("user", text)])
}

fn reasons(r: &pb::AssembleContextResponse) -> Vec<(String, String)> {
    r.left_out
        .iter()
        .map(|m| (m.memory_id.clone(), m.reason.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memories_are_chosen_by_the_question() {
    let server = TestServer::start_ready(ibex_sidecar::Config {
        context_deadline: fixtures::RELAXED_DEADLINE,
        ..support::selecting()
    })
    .await;
    let (t, [rule, dog, copy, car]) = selection_tenant("ctx-select").await;
    let token = fixtures::token(t.org, "context:assemble", None).await;
    let mut client = fixtures::grpc(server.server.grpc_addr).await;
    let ids =
        |r: &pb::AssembleContextResponse| -> Vec<String> { r.memories.iter().map(|m| m.memory_id.clone()).collect() };

    // A greeting: the directive and the standing instruction, no other memory.
    let hello = assemble(&mut client, &token, ask(t, "Hi! Good morning."))
        .await
        .unwrap();
    assert!(!hello.degraded, "{}", hello.degraded_reason);
    assert_eq!(ids(&hello), [rule.to_string()], "{:?}", hello.memories);
    assert!(hello.context.contains("Answer briefly."));
    assert!(hello.left_out.is_empty(), "no explain asked");
    assert_eq!(hello.candidates_considered, 6);

    // A precise question, explained: the dog (one of the two copies) and the standing rule.
    let mut body = ask(t, "What is the name of the user's beagle?");
    body.explain = Some(true);
    let r = assemble(&mut client, &token, body).await.unwrap();
    let chosen = ids(&r);
    assert!(chosen.contains(&rule.to_string()), "{chosen:?}");
    let (kept, dropped) = if chosen.contains(&dog.to_string()) {
        (dog, copy)
    } else {
        (copy, dog)
    };
    assert!(chosen.contains(&kept.to_string()), "{chosen:?}");
    let why = reasons(&r);
    let near = r
        .left_out
        .iter()
        .find(|m| m.memory_id == dropped.to_string())
        .expect("copy left out");
    assert_eq!(near.reason, "near_copy", "{why:?}");
    assert_eq!(near.near_copy_of, kept.to_string());
    assert!(near.threshold > 0.95 && near.tokens > 0);
    let floored = r
        .left_out
        .iter()
        .filter(|m| ["below_min_relevance", "below_relative_floor"].contains(&m.reason.as_str()))
        .count();
    assert!(floored >= 2, "coffee and running do not answer it: {why:?}");
    // Every packed memory but the standing rule clears both floors (defaults 0.15 and 0.35 x best).
    let best = r
        .memories
        .iter()
        .map(|m| (m.category.clone(), m.relevance))
        .chain(r.left_out.iter().map(|m| (m.category.clone(), m.relevance)))
        .filter(|(c, _)| c != "procedural")
        .map(|(_, r)| r)
        .fold(0.0_f64, f64::max);
    for m in r.memories.iter().filter(|m| m.category != "procedural") {
        assert!(m.relevance >= 0.15 && m.relevance >= 0.35 * best, "{m:?} (best {best})");
    }
    if let Some(m) = r.left_out.iter().find(|m| m.memory_id == car.to_string()) {
        assert_ne!(m.reason, "budget", "the car is left out by relevance, not room");
    }
    assert_eq!(r.left_out.len() + r.memories.len(), r.candidates_considered as usize);
    assert_eq!(r.candidates_considered, 6);

    // Explained greeting: everything but the rule is left out as small talk.
    let mut body = ask(t, "Thanks, bye!");
    body.explain = Some(true);
    let bye = assemble(&mut client, &token, body).await.unwrap();
    assert_eq!(ids(&bye), [rule.to_string()]);
    assert!(
        bye.left_out.iter().all(|m| m.reason == "small_talk"),
        "{:?}",
        reasons(&bye)
    );
    assert_eq!(bye.left_out.len(), 5);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_request_memory_controls_and_their_bounds() {
    let server = TestServer::start_ready(ibex_sidecar::Config {
        context_deadline: fixtures::RELAXED_DEADLINE,
        ..support::selecting()
    })
    .await;
    let (t, [rule, ..]) = selection_tenant("ctx-controls").await;
    let token = fixtures::token(t.org, "context:assemble", None).await;
    let mut client = fixtures::grpc(server.server.grpc_addr).await;
    let question = "Tell me about the user's dog, car, coffee and running.";

    // No memory tokens: no memories, and hot and cold are not even asked.
    let mut body = ask(t, question);
    body.max_memory_tokens = Some(0);
    let none = assemble(&mut client, &token, body).await.unwrap();
    assert!(none.memories.is_empty());
    assert_eq!(none.budget.unwrap().memory_budget, 0);
    for name in ["hot", "cold"] {
        assert_eq!(timing(&none, name).status, "skipped");
        assert!(timing(&none, name).detail.contains("max_memory_tokens"));
    }
    assert!(none.context.contains("Answer briefly."), "directives stay");

    // A small cap holds.
    let mut body = ask(t, question);
    body.max_memory_tokens = Some(40);
    let small = assemble(&mut client, &token, body).await.unwrap();
    let budget = small.budget.unwrap();
    assert_eq!(budget.memory_budget, 40);
    assert!(budget.memory_tokens <= 40 && !small.memories.is_empty());
    // A cap above the server's is the server's (4096).
    let mut body = ask(t, question);
    body.max_memory_tokens = Some(1 << 20);
    assert_eq!(
        assemble(&mut client, &token, body)
            .await
            .unwrap()
            .budget
            .unwrap()
            .memory_budget,
        4096
    );

    // A high floor: only the standing instruction. A zero floor: more than the default gives.
    let mut body = ask(t, question);
    body.min_relevance = Some(0.99);
    let strict = assemble(&mut client, &token, body).await.unwrap();
    assert_eq!(
        strict.memories.iter().map(|m| m.memory_id.clone()).collect::<Vec<_>>(),
        [rule.to_string()]
    );
    let default = assemble(&mut client, &token, ask(t, "Hi there")).await.unwrap();
    let mut body = ask(t, "Hi there");
    body.min_relevance = Some(0.0);
    let loose = assemble(&mut client, &token, body).await.unwrap();
    assert!(
        loose.memories.len() > default.memories.len(),
        "a caller's lower floor applies to small talk too: {} vs {}",
        loose.memories.len(),
        default.memories.len()
    );

    // Out of bounds: INVALID_ARGUMENT, naming the field.
    for (tokens, relevance, field) in [
        (Some((1 << 20) + 1), None, "max_memory_tokens"),
        (None, Some(1.5), "min_relevance"),
        (None, Some(-0.1), "min_relevance"),
        (None, Some(f64::NAN), "min_relevance"),
    ] {
        let mut body = ask(t, question);
        body.max_memory_tokens = tokens;
        body.min_relevance = relevance;
        let status = assemble(&mut client, &token, body).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(status.message().contains(field), "{}", status.message());
    }
    server.stop().await;
}

/// Reads on a streaming replica (`read_database_url`): with the replica's replay paused, a
/// memory written on the primary is not in the answers and one written before is; once replay
/// resumes, it is. Access counts still go to the primary. The replica is the test stack's
/// (`stack.sh replica-up test`, started by the sidecar tier). The Redis hot set is off here, so
/// every memory comes from the replica's search.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_come_from_a_streaming_replica() {
    let replica_admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&crate::common::env("IBEX_REPLICA_MIGRATE_URL"))
        .await
        .expect("replica (scripts/stack.sh replica-up test)");
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&replica_admin)
        .await
        .unwrap();
    assert!(in_recovery, "IBEX_REPLICA_MIGRATE_URL is not a standby");
    let admin = fixtures::admin().await;
    let t = fixtures::tenant(&admin, "ctx-replica").await;
    let boat = fixtures::remember(
        &admin,
        t,
        "The user's boat is a sloop called Sea Breeze.",
        "declarative",
    )
    .await;
    let replayed = |id: uuid::Uuid| {
        let replica = replica_admin.clone();
        async move {
            sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM ibex_core.memories WHERE id = $1)")
                .bind(id)
                .fetch_one(&replica)
                .await
                .unwrap()
        }
    };
    fixtures::eventually(Duration::from_secs(20), "the replica replays the boat", || {
        replayed(boat)
    })
    .await;

    let server = TestServer::start_ready(ibex_sidecar::Config {
        context_deadline: fixtures::RELAXED_DEADLINE,
        read_database_url: Some(crate::common::env("IBEX_REPLICA_DATABASE_URL")),
        redis_url: None,
        ..support::config()
    })
    .await;
    let token = fixtures::token(t.org, "context:assemble", None).await;
    let mut client = fixtures::grpc(server.server.grpc_addr).await;
    let packed =
        |r: &pb::AssembleContextResponse| -> Vec<String> { r.memories.iter().map(|m| m.memory_id.clone()).collect() };

    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&replica_admin)
        .await
        .unwrap();
    let cello = fixtures::remember(&admin, t, "The user's cello is named Bach.", "declarative").await;
    let paused = assemble(&mut client, &token, ask(t, "What is my boat called, and my cello?"))
        .await
        .unwrap();
    assert!(!paused.degraded, "{}", paused.degraded_reason);
    let seen = packed(&paused);
    assert!(seen.contains(&boat.to_string()), "{seen:?}");
    assert!(
        !seen.contains(&cello.to_string()),
        "read from the primary, not the paused replica: {seen:?}"
    );
    // The packed memory's access is written on the primary.
    fixtures::eventually(
        Duration::from_secs(10),
        "the boat's access recorded on the primary",
        || {
            let admin = admin.clone();
            async move {
                sqlx::query_scalar::<_, i64>(
                    "SELECT (SELECT count(*) FROM ibex_core.memory_access WHERE memory_id = $1)
                      + (SELECT access_count FROM ibex_core.memories WHERE id = $1)",
                )
                .bind(boat)
                .fetch_one(&admin)
                .await
                .unwrap()
                    > 0
            }
        },
    )
    .await;

    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&replica_admin)
        .await
        .unwrap();
    fixtures::eventually(Duration::from_secs(20), "the replica replays the cello", || {
        replayed(cello)
    })
    .await;
    let resumed = assemble(&mut client, &token, ask(t, "What is my boat called, and my cello?"))
        .await
        .unwrap();
    let seen = packed(&resumed);
    assert!(
        seen.contains(&cello.to_string()) && seen.contains(&boat.to_string()),
        "{seen:?}"
    );
    server.stop().await;

    // In SQL, as the application role on the replica: search without recording access runs;
    // recording access is a write, refused with a clear error.
    let mut replica = sqlx::PgConnection::connect(&crate::common::env("IBEX_REPLICA_DATABASE_URL"))
        .await
        .unwrap();
    sqlx::query("SELECT set_config('ibex.org_id', $1, false)")
        .bind(t.org.to_string())
        .execute(&mut replica)
        .await
        .unwrap();
    let found: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT memory_id FROM ibex_core.search($1, $2, 'boat name', 5, p_record_access => false)")
            .bind(t.org)
            .bind(t.agent)
            .fetch_all(&mut replica)
            .await
            .unwrap();
    assert_eq!(found.first(), Some(&boat), "{found:?}");
    let refused = sqlx::query("SELECT * FROM ibex_core.search($1, $2, 'boat name', 5)")
        .bind(t.org)
        .bind(t.agent)
        .fetch_all(&mut replica)
        .await
        .unwrap_err();
    let code = refused
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("25006"), "{refused}");
}
