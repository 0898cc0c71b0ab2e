//! The management REST API (`/v1/agents`, `/v1/directives`, `/v1/tokens`) against the test stack:
//! each route's success, its error classes, other orgs' ids, pagination over several pages,
//! idempotent retries, and revocation pushed to every cache within 2 s.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::fixtures::{admin, tenant, token};
use crate::support::{config, reply, Reply, TestServer};

struct Api<'a> {
    server: &'a TestServer,
    token: String,
}

impl Api<'_> {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.call_with(method, path, body, None).await
    }

    async fn call_with(&self, method: Method, path: &str, body: Option<Value>, key: Option<&str>) -> Reply {
        let mut request = self
            .server
            .client
            .request(method, self.server.url(path))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        reply(request.send().await.expect("request")).await
    }

    async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }
}

fn ok(reply: &Reply, status: u16) -> &Value {
    assert_eq!(reply.status.as_u16(), status, "{}", reply.body);
    &reply.body
}

fn id(value: &Value) -> Uuid {
    value["id"].as_str().expect("id").parse().expect("uuid")
}

async fn server() -> TestServer {
    TestServer::start(config()).await
}

#[tokio::test]
async fn management_agents_crud_transitions_and_pages() {
    let server = server().await;
    let t = tenant(&admin().await, "mgmt-agents").await;
    let api = Api {
        server: &server,
        token: token(t.org, "admin", None).await,
    };
    let created = api
        .post(
            "/v1/agents",
            json!({ "name": "support", "description": "answers tickets", "metadata": {"team": "a"} }),
        )
        .await;
    let agent = ok(&created, 201).clone();
    assert_eq!(agent["status"], "active");
    assert_eq!(agent["org_id"], t.org.to_string());
    let agent_id = id(&agent);
    // A name taken in the org is a 409.
    api.post("/v1/agents", json!({ "name": "support" }))
        .await
        .error(409, "already_exists");
    for n in 0..3 {
        ok(
            &api.post("/v1/agents", json!({ "name": format!("extra-{n}") })).await,
            201,
        );
    }
    // Five agents (the fixture's, support, three extras) over pages of two: every one once.
    let mut seen = HashSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/agents?limit=2&cursor={c}"),
            None => "/v1/agents?limit=2".into(),
        };
        let page = api.get(&path).await;
        let body = ok(&page, 200);
        pages += 1;
        for a in body["data"].as_array().unwrap() {
            assert!(seen.insert(id(a)), "an agent listed twice");
        }
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!((seen.len(), pages), (5, 3));
    assert!(seen.contains(&t.agent) && seen.contains(&agent_id));

    let path = format!("/v1/agents/{agent_id}");
    assert_eq!(ok(&api.get(&path).await, 200)["name"], "support");
    let patched = api
        .call(
            Method::PATCH,
            &path,
            Some(json!({ "description": null, "default_model": "gpt-4o-mini" })),
        )
        .await;
    let patched = ok(&patched, 200);
    assert_eq!(patched["description"], Value::Null);
    assert_eq!(patched["default_model"], "gpt-4o-mini");
    assert_eq!(patched["name"], "support", "absent fields keep their value");

    let status = format!("{path}/status");
    assert_eq!(
        ok(&api.post(&status, json!({ "status": "paused" })).await, 200)["status"],
        "paused"
    );
    let refused = api.post(&status, json!({ "status": "paused" })).await;
    let error = refused.error(409, "invalid_transition");
    assert_eq!(error["details"]["allowed"], json!(["active", "archived"]));
    ok(&api.post(&status, json!({ "status": "archived" })).await, 200);
    let refused = api.post(&status, json!({ "status": "paused" })).await;
    assert_eq!(
        refused.error(409, "invalid_transition")["details"]["allowed"],
        json!(["active"])
    );
    api.post(&status, json!({ "status": "gone" }))
        .await
        .error(400, "invalid_request");

    let deleted = api.call(Method::DELETE, &path, None).await;
    assert_eq!(ok(&deleted, 200)["memories"], 0);
    api.get(&path).await.error(404, "not_found");
    server.stop().await;
}

#[tokio::test]
async fn management_other_orgs_ids_are_not_found_and_scopes_hold() {
    let server = server().await;
    let admin_pool = admin().await;
    let a = tenant(&admin_pool, "mgmt-a").await;
    let b = tenant(&admin_pool, "mgmt-b").await;
    let api_a = Api {
        server: &server,
        token: token(a.org, "admin", None).await,
    };
    let api_b = Api {
        server: &server,
        token: token(b.org, "admin", None).await,
    };
    let directive = api_a
        .post(
            &format!("/v1/agents/{}/directives", a.agent),
            json!({ "name": "tone", "content": "Be brief." }),
        )
        .await;
    let directive_id = id(ok(&directive, 201));
    let minted = api_a
        .post("/v1/tokens", json!({ "name": "ci", "scopes": ["agents:read"] }))
        .await;
    let token_id = id(ok(&minted, 201));

    // Org B, holding every scope of its own org, reaches none of org A's resources.
    for (method, path, body) in [
        (Method::GET, format!("/v1/agents/{}", a.agent), None),
        (
            Method::PATCH,
            format!("/v1/agents/{}", a.agent),
            Some(json!({ "name": "mine" })),
        ),
        (Method::DELETE, format!("/v1/agents/{}", a.agent), None),
        (
            Method::POST,
            format!("/v1/agents/{}/status", a.agent),
            Some(json!({ "status": "paused" })),
        ),
        (Method::GET, format!("/v1/agents/{}/directives", a.agent), None),
        (
            Method::POST,
            format!("/v1/agents/{}/directives", a.agent),
            Some(json!({ "name": "x", "content": "y" })),
        ),
        (Method::GET, format!("/v1/directives/{directive_id}"), None),
        (
            Method::PUT,
            format!("/v1/directives/{directive_id}"),
            Some(json!({ "content": "z" })),
        ),
        (Method::DELETE, format!("/v1/directives/{directive_id}"), None),
        (Method::GET, format!("/v1/directives/{directive_id}/versions"), None),
        (Method::GET, format!("/v1/tokens/{token_id}"), None),
        (Method::DELETE, format!("/v1/tokens/{token_id}"), None),
    ] {
        let r = api_b.call(method.clone(), &path, body).await;
        r.error(404, "not_found");
    }
    // A token for org A's agent, asked by org B: the foreign key includes the org.
    api_b
        .post(
            "/v1/tokens",
            json!({ "name": "x", "scopes": ["agents:read"], "agent_id": a.agent }),
        )
        .await
        .error(404, "not_found");
    let listed = api_b.get("/v1/agents").await;
    assert_eq!(
        ok(&listed, 200)["data"].as_array().unwrap().len(),
        1,
        "org B sees its own agent only"
    );
    // Nothing of org A changed.
    let still = api_a.get(&format!("/v1/directives/{directive_id}")).await;
    assert_eq!(ok(&still, 200)["version"], 1);

    // Scopes: a read-only token reads and cannot write; it cannot mint a stronger token.
    let reader = Api {
        server: &server,
        token: ok(&minted, 201)["token"].as_str().unwrap().to_string(),
    };
    ok(&reader.get("/v1/agents").await, 200);
    reader
        .post("/v1/agents", json!({ "name": "n" }))
        .await
        .error(403, "permission_denied");
    reader.get("/v1/tokens").await.error(403, "permission_denied");
    let manager = Api {
        server: &server,
        token: token(a.org, "tokens:manage,agents:read", None).await,
    };
    manager
        .post("/v1/tokens", json!({ "name": "up", "scopes": ["agents:write"] }))
        .await
        .error(403, "permission_denied");
    api_a
        .post("/v1/tokens", json!({ "name": "op", "scopes": ["platform:admin"] }))
        .await
        .error(403, "permission_denied");

    // An agent-bound token sees and changes its agent only.
    let other = ok(&api_a.post("/v1/agents", json!({ "name": "other" })).await, 201).clone();
    let bound = Api {
        server: &server,
        token: token(a.org, "agents:read,agents:write,tokens:manage", Some(a.agent)).await,
    };
    let listed = bound.get("/v1/agents").await;
    let data = ok(&listed, 200)["data"].as_array().unwrap().clone();
    assert_eq!(data.len(), 1);
    assert_eq!(id(&data[0]), a.agent);
    bound
        .get(&format!("/v1/agents/{}", id(&other)))
        .await
        .error(403, "permission_denied");
    bound
        .post("/v1/agents", json!({ "name": "mine" }))
        .await
        .error(403, "permission_denied");
    let child = bound
        .post("/v1/tokens", json!({ "name": "child", "scopes": ["agents:read"] }))
        .await;
    assert_eq!(
        ok(&child, 201)["agent_id"],
        a.agent.to_string(),
        "a bound token mints bound tokens"
    );
    server.stop().await;
}

#[tokio::test]
async fn management_bad_input_gets_the_envelope() {
    let server = server().await;
    let t = tenant(&admin().await, "mgmt-bad").await;
    let api = Api {
        server: &server,
        token: token(t.org, "admin", None).await,
    };
    let raw = |body: &'static str| {
        server
            .client
            .post(server.url("/v1/agents"))
            .bearer_auth(&api.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    reply(raw("{not json").await.unwrap())
        .await
        .error(400, "invalid_request");
    reply(raw(r#"{"name": 5}"#).await.unwrap())
        .await
        .error(400, "invalid_request");
    reply(raw(r#"{"name": "x", "colour": "red"}"#).await.unwrap())
        .await
        .error(400, "invalid_request");
    let huge = json!({ "name": "x", "description": "d".repeat(config().max_body_bytes + 1) });
    api.post("/v1/agents", huge).await.error(413, "payload_too_large");
    api.post("/v1/agents", json!({ "name": "x", "description": "d".repeat(5000) }))
        .await
        .error(400, "invalid_request");
    api.get("/v1/agents?limit=0").await.error(400, "invalid_request");
    api.get("/v1/agents?limit=201").await.error(400, "invalid_request");
    api.get("/v1/agents?cursor=bm90LWEtY3Vyc29y")
        .await
        .error(400, "invalid_request");
    api.get("/v1/agents/not-a-uuid").await.error(400, "invalid_request");
    api.get(&format!("/v1/agents/{}", Uuid::new_v4()))
        .await
        .error(404, "not_found");
    // A cursor of one list is refused by another.
    for n in 0..3 {
        ok(
            &api.post(
                "/v1/tokens",
                json!({ "name": format!("t{n}"), "scopes": ["agents:read"] }),
            )
            .await,
            201,
        );
    }
    let tokens = api.get("/v1/tokens?limit=1").await;
    let cursor = ok(&tokens, 200)["next_cursor"].as_str().unwrap().to_string();
    api.get(&format!("/v1/agents?cursor={cursor}"))
        .await
        .error(400, "invalid_request");
    // No token, a malformed one, an unknown one.
    let anonymous = reply(server.client.get(server.url("/v1/agents")).send().await.unwrap()).await;
    anonymous.error(401, "unauthenticated");
    let stranger = Api {
        server: &server,
        token: ibex_sidecar::auth::generate_token(),
    };
    stranger.get("/v1/agents").await.error(401, "unauthenticated");
    // A failed creation wrote nothing.
    let listed = api.get("/v1/agents").await;
    assert_eq!(ok(&listed, 200)["data"].as_array().unwrap().len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn management_idempotent_retries_replay_the_first_answer() {
    let server = server().await;
    let t = tenant(&admin().await, "mgmt-idem").await;
    let api = Api {
        server: &server,
        token: token(t.org, "admin", None).await,
    };
    let key = Uuid::new_v4().to_string();
    let body = json!({ "name": "once" });
    let first = api
        .call_with(Method::POST, "/v1/agents", Some(body.clone()), Some(&key))
        .await;
    let second = api.call_with(Method::POST, "/v1/agents", Some(body), Some(&key)).await;
    assert_eq!(id(ok(&first, 201)), id(ok(&second, 201)));
    assert_eq!(second.headers["idempotent-replayed"], "true");
    // The same key for another request is refused, and created nothing.
    api.call_with(Method::POST, "/v1/agents", Some(json!({ "name": "twice" })), Some(&key))
        .await
        .error(422, "idempotency_key_reused");
    // Keys belong to the token that sent them: another token's request with the same key runs
    // as a new request (and meets the name taken).
    let other = Api {
        server: &server,
        token: token(t.org, "admin", None).await,
    };
    other
        .call_with(Method::POST, "/v1/agents", Some(json!({ "name": "once" })), Some(&key))
        .await
        .error(409, "already_exists");
    let listed = api.get("/v1/agents").await;
    assert_eq!(ok(&listed, 200)["data"].as_array().unwrap().len(), 2);
    api.call_with(
        Method::POST,
        "/v1/agents",
        Some(json!({ "name": "k" })),
        Some("has space"),
    )
    .await
    .error(400, "invalid_request");
    server.stop().await;
}

#[tokio::test]
async fn management_directives_keep_every_version() {
    let server = server().await;
    let t = tenant(&admin().await, "mgmt-dir").await;
    let api = Api {
        server: &server,
        token: token(t.org, "admin", None).await,
    };
    let created = api
        .post(
            &format!("/v1/agents/{}/directives", t.agent),
            json!({ "name": "tone", "content": "v1" }),
        )
        .await;
    let directive = id(ok(&created, 201));
    api.post(
        &format!("/v1/agents/{}/directives", t.agent),
        json!({ "name": "tone", "content": "again" }),
    )
    .await
    .error(409, "conflict");
    let path = format!("/v1/directives/{directive}");
    for (content, version) in [("v2", 2), ("v2", 2), ("v3", 3)] {
        let changed = api.call(Method::PUT, &path, Some(json!({ "content": content }))).await;
        assert_eq!(
            ok(&changed, 200)["version"],
            version,
            "unchanged content makes no version"
        );
    }
    let archived = api.call(Method::DELETE, &path, None).await;
    assert_eq!(ok(&archived, 200)["status"], "archived");
    let versions = api.get(&format!("{path}/versions?limit=2")).await;
    let first = ok(&versions, 200).clone();
    let listed: Vec<i64> = first["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, [4, 3]);
    let next = api
        .get(&format!(
            "{path}/versions?limit=2&cursor={}",
            first["next_cursor"].as_str().unwrap()
        ))
        .await;
    let rest: Vec<i64> = ok(&next, 200)["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(rest, [2, 1]);
    let v2 = api.get(&format!("{path}/versions/2")).await;
    assert_eq!(ok(&v2, 200)["content"], "v2");
    api.get(&format!("{path}/versions/9")).await.error(404, "not_found");
    let active = api
        .get(&format!("/v1/agents/{}/directives?status=active", t.agent))
        .await;
    assert!(ok(&active, 200)["data"].as_array().unwrap().is_empty());
    server.stop().await;
}

/// Polls `check` until it is true; the time it took.
async fn within(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn management_revocation_is_pushed_to_every_cache_within_two_seconds() {
    let server = server().await;
    let admin_pool = admin().await;
    let t = tenant(&admin_pool, "mgmt-revoke").await;
    let api = Api {
        server: &server,
        token: token(t.org, "admin", None).await,
    };
    let minted = api
        .post(
            "/v1/tokens",
            json!({ "name": "short-lived", "scopes": ["agents:read", "embed"] }),
        )
        .await;
    let minted = ok(&minted, 201).clone();
    let secret = minted["token"].as_str().unwrap().to_string();
    assert!(secret.starts_with(minted["prefix"].as_str().unwrap()));
    let listed = api.get("/v1/tokens").await;
    assert!(
        !ok(&listed, 200).to_string().contains(&secret),
        "a list never shows a secret"
    );
    let user = Api {
        server: &server,
        token: secret.clone(),
    };
    let embed = || async {
        server
            .client
            .post(server.url("/v1/embed"))
            .bearer_auth(&secret)
            .json(&json!({ "text": "hello" }))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    // Both caches (REST through the AuthService, the hot path in process) now hold the token.
    ok(&user.get("/v1/agents").await, 200);
    assert_ne!(embed().await, 401);

    let revoked = api
        .call(Method::DELETE, &format!("/v1/tokens/{}", id(&minted)), None)
        .await;
    assert!(ok(&revoked, 200)["revoked_at"].is_string());
    let rest = within(Duration::from_secs(2), async || {
        user.get("/v1/agents").await.status == 401
    })
    .await;
    let hot = within(Duration::from_secs(2), async || embed().await == 401).await;
    println!("revocation took effect: REST {rest:?}, hot path {hot:?}");

    // A revocation made in SQL by a DBA is pushed too; so is a suspended org.
    let second = Api {
        server: &server,
        token: token(t.org, "agents:read", None).await,
    };
    ok(&second.get("/v1/agents").await, 200);
    sqlx::query("UPDATE ibex_core.orgs SET status = 'suspended' WHERE id = $1")
        .bind(t.org)
        .execute(&admin_pool)
        .await
        .unwrap();
    within(Duration::from_secs(2), async || {
        second.get("/v1/agents").await.status == 401
    })
    .await;
    sqlx::query("UPDATE ibex_core.orgs SET status = 'active' WHERE id = $1")
        .bind(t.org)
        .execute(&admin_pool)
        .await
        .unwrap();
    ok(&second.get("/v1/agents").await, 200);
    server.stop().await;
}

#[tokio::test]
async fn management_failed_logins_are_rate_limited_per_source() {
    let mut cfg = config();
    cfg.auth_failure_burst = 3;
    cfg.auth_failures_per_minute = 1.0;
    let server = TestServer::start(cfg).await;
    let t = tenant(&admin().await, "mgmt-limit").await;
    for _ in 0..3 {
        let guess = Api {
            server: &server,
            token: ibex_sidecar::auth::generate_token(),
        };
        guess.get("/v1/agents").await.error(401, "unauthenticated");
    }
    let guess = Api {
        server: &server,
        token: ibex_sidecar::auth::generate_token(),
    };
    let limited = guess.get("/v1/agents").await;
    limited.error(429, "rate_limited");
    assert!(limited.headers.contains_key("retry-after"));
    // The source is out of attempts: even a valid token from it waits (the check comes before
    // the lookup), until the source has an attempt back.
    let valid = Api {
        server: &server,
        token: token(t.org, "agents:read", None).await,
    };
    valid.get("/v1/agents").await.error(429, "rate_limited");
    server.stop().await;
}

#[tokio::test]
async fn management_memories_through_the_write_pipeline() {
    let server = server().await;
    let admin_pool = admin().await;
    let t = tenant(&admin_pool, "mgmt-mem").await;
    let stranger = tenant(&admin_pool, "mgmt-mem-b").await;
    let api = Api {
        server: &server,
        token: token(t.org, "admin", None).await,
    };
    let other = Api {
        server: &server,
        token: token(stranger.org, "admin", None).await,
    };
    let remember = |content: &str, tags: Value| json!({ "agent_id": t.agent, "content": content, "category": "declarative", "tags": tags });
    let created = api
        .post(
            "/v1/memories",
            remember("The customer prefers invoices in euros.", json!(["Billing"])),
        )
        .await;
    let created = ok(&created, 201).clone();
    assert_eq!(created["path"], "created");
    assert_eq!(created["memory"]["tags"], json!(["billing"]), "tags are normalised");
    let memory = created["memory_id"].as_str().unwrap().to_string();
    let again = api
        .post(
            "/v1/memories",
            remember("The customer prefers invoices in euros.", json!([])),
        )
        .await;
    assert_eq!(ok(&again, 200)["path"], "duplicate");
    assert_eq!(ok(&again, 200)["memory_id"], memory.as_str());
    for n in 0..4 {
        let body = remember(
            &format!("Ticket {n} was about a login problem on the mobile app."),
            json!(["support"]),
        );
        ok(&api.post("/v1/memories", body).await, 201);
    }
    // PII is redacted before anything is stored, whoever writes.
    let pii = api
        .post(
            "/v1/memories",
            remember("Reach the customer at jane.doe@example.com.", json!([])),
        )
        .await;
    assert!(!ok(&pii, 201)["memory"]["content"]
        .as_str()
        .unwrap()
        .contains("jane.doe@example.com"));

    // Filters and keyset pages: 4 support memories over pages of 3.
    let first = api
        .get(&format!("/v1/memories?agent_id={}&tag=support&limit=3", t.agent))
        .await;
    let first = ok(&first, 200).clone();
    assert_eq!(first["data"].as_array().unwrap().len(), 3);
    let next = api
        .get(&format!(
            "/v1/memories?agent_id={}&tag=support&limit=3&cursor={}",
            t.agent,
            first["next_cursor"].as_str().unwrap()
        ))
        .await;
    let next = ok(&next, 200);
    assert_eq!(next["data"].as_array().unwrap().len(), 1);
    assert!(next["next_cursor"].is_null());
    // A text query ranks through search.
    let ranked = api
        .get(&format!(
            "/v1/memories?agent_id={}&q=which%20currency%20for%20invoices&limit=2",
            t.agent
        ))
        .await;
    assert_eq!(ok(&ranked, 200)["data"][0]["memory_id"], memory.as_str());
    api.get("/v1/memories?q=invoices").await.error(400, "invalid_request");
    api.get("/v1/memories?status=gone").await.error(400, "invalid_request");

    let path = format!("/v1/memories/{memory}");
    let feedback = api.post(&format!("{path}/feedback"), json!({ "useful": true })).await;
    assert_eq!(ok(&feedback, 200)["useful_count"], 1);
    let forgotten = api.call(Method::DELETE, &format!("{path}?reason=outdated"), None).await;
    assert_eq!(ok(&forgotten, 200)["status"], "deleted");
    let read = api.get(&path).await;
    let history: Vec<&str> = ok(&read, 200)["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["change"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["created", "forgotten"]);

    // Another org reaches none of it.
    other.get(&path).await.error(404, "not_found");
    other
        .post(&format!("{path}/feedback"), json!({ "useful": false }))
        .await
        .error(404, "not_found");
    other.call(Method::DELETE, &path, None).await.error(404, "not_found");
    other
        .post("/v1/memories", remember("planted", json!([])))
        .await
        .error(404, "not_found");
    let theirs = other.get(&format!("/v1/memories?agent_id={}", t.agent)).await;
    assert!(ok(&theirs, 200)["data"].as_array().unwrap().is_empty());
    api.post("/v1/memories", json!({ "agent_id": t.agent, "content": "   " }))
        .await
        .error(400, "invalid_request");

    // Deleting the agent deletes its memories (and their history) and says how many.
    let deleted = api.call(Method::DELETE, &format!("/v1/agents/{}", t.agent), None).await;
    assert_eq!(ok(&deleted, 200)["memories"], 6);
    api.get(&path).await.error(404, "not_found");
    server.stop().await;
}

/// Runs `sql` (binding $1 = org, then `args` as text) in a transaction acting for `org`.
async fn as_org(admin_pool: &sqlx::PgPool, org: Uuid, sql: &str) -> Vec<sqlx::postgres::PgRow> {
    let mut tx = admin_pool.begin().await.unwrap();
    sqlx::query("SELECT set_config('ibex.org_id', $1, true)")
        .bind(org.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    let rows = sqlx::query(sql).bind(org).fetch_all(&mut *tx).await.expect(sql);
    tx.commit().await.unwrap();
    rows
}

#[tokio::test]
async fn management_users_sessions_conflicts_and_usage() {
    use sqlx::Row;
    let server = server().await;
    let admin_pool = admin().await;
    let t = tenant(&admin_pool, "mgmt-more").await;
    let b = tenant(&admin_pool, "mgmt-more-b").await;
    let api = Api {
        server: &server,
        token: token(t.org, "admin", None).await,
    };
    let other = Api {
        server: &server,
        token: token(b.org, "admin", None).await,
    };

    // Users: create, duplicate email, list, update, deactivate (their token stops working).
    let created = api
        .post(
            "/v1/users",
            json!({ "email": "Ada@example.com", "display_name": "Ada", "role": "admin" }),
        )
        .await;
    let user = id(ok(&created, 201));
    api.post("/v1/users", json!({ "email": "ada@EXAMPLE.com" }))
        .await
        .error(409, "already_exists");
    api.post("/v1/users", json!({ "email": "not-an-email" }))
        .await
        .error(400, "invalid_request");
    api.post("/v1/users", json!({ "email": "x@example.com", "role": "god" }))
        .await
        .error(400, "invalid_request");
    let listed = api.get("/v1/users").await;
    assert_eq!(ok(&listed, 200)["data"].as_array().unwrap().len(), 1);
    let patched = api
        .call(
            Method::PATCH,
            &format!("/v1/users/{user}"),
            Some(json!({ "role": "viewer" })),
        )
        .await;
    assert_eq!(ok(&patched, 200)["role"], "viewer");
    let minted = api
        .post(
            "/v1/tokens",
            json!({ "name": "ada", "scopes": ["agents:read"], "user_id": user }),
        )
        .await;
    let ada = Api {
        server: &server,
        token: ok(&minted, 201)["token"].as_str().unwrap().to_string(),
    };
    ok(&ada.get("/v1/agents").await, 200);
    let deactivated = api.call(Method::DELETE, &format!("/v1/users/{user}"), None).await;
    assert_eq!(ok(&deactivated, 200)["status"], "disabled");
    within(Duration::from_secs(2), async || {
        ada.get("/v1/agents").await.status == 401
    })
    .await;
    other.get(&format!("/v1/users/{user}")).await.error(404, "not_found");
    other
        .call(Method::DELETE, &format!("/v1/users/{user}"), None)
        .await
        .error(404, "not_found");

    // Sessions: list, get with turns, page the turns, complete.
    let rows = as_org(
        &admin_pool,
        t.org,
        &format!("SELECT ibex_core.ensure_session($1, '{}', 'chat-1') AS id", t.agent),
    )
    .await;
    let session: Uuid = rows[0].get("id");
    let turns: Vec<Value> = (0..5)
        .map(|n| json!({ "role": if n % 2 == 0 { "user" } else { "assistant" }, "content": format!("turn {n}") }))
        .collect();
    as_org(
        &admin_pool,
        t.org,
        &format!(
            "SELECT ibex_core.append_turns($1, '{session}', '{}'::jsonb)",
            Value::Array(turns)
        ),
    )
    .await;
    let listed = api.get(&format!("/v1/sessions?agent_id={}", t.agent)).await;
    assert_eq!(id(&ok(&listed, 200)["data"][0]), session);
    let read = api.get(&format!("/v1/sessions/{session}")).await;
    let read = ok(&read, 200);
    assert_eq!(
        (read["turn_count"].as_i64(), read["turns"].as_array().unwrap().len()),
        (Some(5), 5)
    );
    assert!(read["replay_url"].is_null());
    let page = api.get(&format!("/v1/sessions/{session}/turns?after=2&limit=2")).await;
    let page = ok(&page, 200);
    assert_eq!(page["data"][0]["turn_index"], 3);
    assert_eq!(page["next_after"], 4);
    let completed = api.post(&format!("/v1/sessions/{session}/complete"), json!({})).await;
    assert_eq!(ok(&completed, 200)["status"], "completed");
    other
        .get(&format!("/v1/sessions/{session}"))
        .await
        .error(404, "not_found");
    other
        .post(&format!("/v1/sessions/{session}/complete"), json!({}))
        .await
        .error(404, "not_found");

    // Conflicts: a pair recorded by remember's step 6 (written here directly), resolved with the
    // loser forgotten.
    let one = ok(
        &api.post(
            "/v1/memories",
            json!({ "agent_id": t.agent, "content": "The office opens at 8." }),
        )
        .await,
        201,
    )["memory_id"]
        .as_str()
        .unwrap()
        .to_string();
    let two = ok(
        &api.post(
            "/v1/memories",
            json!({ "agent_id": t.agent, "content": "The office opens at 9." }),
        )
        .await,
        201,
    )["memory_id"]
        .as_str()
        .unwrap()
        .to_string();
    sqlx::query(
        "INSERT INTO ibex_core.memory_conflicts (org_id, memory_id, conflicting_memory_id, similarity)
         SELECT $1, $2::uuid, $3::uuid, 0.9 WHERE NOT EXISTS (
             SELECT 1 FROM ibex_core.memory_conflicts WHERE org_id = $1 AND memory_id = $2::uuid)",
    )
    .bind(t.org)
    .bind(&two)
    .bind(&one)
    .execute(&admin_pool)
    .await
    .unwrap();
    let open = api.get("/v1/conflicts").await;
    let conflict = ok(&open, 200)["data"][0].clone();
    other
        .post(&format!("/v1/conflicts/{}/resolve", id(&conflict)), json!({}))
        .await
        .error(404, "not_found");
    let resolved = api
        .post(
            &format!("/v1/conflicts/{}/resolve", id(&conflict)),
            json!({ "resolution": "opens at 9 since May", "forget_memory_id": one }),
        )
        .await;
    assert_eq!(ok(&resolved, 200)["status"], "resolved");
    let forgotten = api.get(&format!("/v1/memories/{one}")).await;
    assert_eq!(ok(&forgotten, 200)["status"], "deleted");
    assert!(ok(&api.get("/v1/conflicts").await, 200)["data"]
        .as_array()
        .unwrap()
        .is_empty());

    // Usage analytics, from raw events and then from the hourly rollup: the same answer.
    // The calls lie in closed hours; a rollup worker of any test server may have moved this
    // org's watermark past them before they were written, so the mark is reset with them.
    let mut tx = admin_pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO ibex_core.usage_events (org_id, agent_id, model, prompt_tokens, completion_tokens, latency_ms, status_code, created_at)
         SELECT $1, $2, CASE WHEN n % 3 = 0 THEN 'gpt-4o' ELSE 'gpt-4o-mini' END, 100, 20, 40 * n,
                CASE WHEN n = 9 THEN 502 ELSE 200 END, now() - make_interval(mins => n * 30)
         FROM generate_series(0, 9) n",
    )
    .bind(t.org)
    .bind(t.agent)
    .execute(&mut *tx)
    .await
    .unwrap();
    // And one call three days ago, outside the last 24 hours: the month's answer takes its
    // whole day from the rollup's day rows.
    sqlx::query(
        "INSERT INTO ibex_core.usage_events (org_id, agent_id, model, prompt_tokens, completion_tokens, latency_ms, status_code, created_at)
         VALUES ($1, $2, 'gpt-4o', 7, 3, 12, 200, now() - interval '3 days')",
    )
    .bind(t.org)
    .bind(t.agent)
    .execute(&mut *tx)
    .await
    .unwrap();
    // The mark first: its row lock waits for a rollup of this org in flight.
    for reset in [
        "DELETE FROM ibex_core.usage_rollup_marks WHERE org_id = $1",
        "DELETE FROM ibex_core.usage_hourly WHERE org_id = $1",
    ] {
        sqlx::query(reset).bind(t.org).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
    // A fixed range (the default ends now, which moves): 30 days by day, a partial first hour.
    let stamp = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let now = chrono::Utc::now();
    let month = format!(
        "/v1/analytics/usage?bucket=day&from={}&to={}",
        stamp(now - chrono::Duration::days(30)),
        stamp(now + chrono::Duration::hours(1))
    );
    let raw = api.get(&month).await;
    let raw = ok(&raw, 200);
    let usage = api.get("/v1/analytics/usage?bucket=hour").await;
    let usage = ok(&usage, 200);
    assert_eq!(usage["totals"]["requests"], 10);
    assert_eq!(usage["totals"]["errors"], 1);
    assert_eq!(usage["totals"]["total_tokens"], 1200);
    let series: i64 = usage["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["requests"].as_i64().unwrap())
        .sum();
    assert_eq!(series, 10);
    assert_eq!(usage["models"][0]["model"], "gpt-4o-mini");
    assert_eq!(usage["agents"][0]["agent_id"], t.agent.to_string());
    let histogram: i64 = usage["latency_histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_i64().unwrap())
        .sum();
    assert_eq!(histogram, 10);
    // Latencies 0..360 ms: p50 about 180 ms, estimated inside its latency bucket.
    let p50 = usage["totals"]["latency_ms_p50"].as_f64().unwrap();
    assert!((150.0..=250.0).contains(&p50), "p50 {p50}");
    // (A test server's worker may get there first: either way the hours are rolled up once.)
    sqlx::query("SELECT ibex_core.roll_up_usage($1, 100, 24 * 4, 0)")
        .bind(t.org)
        .execute(&admin_pool)
        .await
        .unwrap();
    let hourly: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ibex_core.usage_hourly WHERE org_id = $1 AND grain = 'org'")
            .bind(t.org)
            .fetch_one(&admin_pool)
            .await
            .unwrap();
    assert!(hourly >= 4, "{hourly} hours rolled up");
    let from_rollup = api.get(&month).await;
    assert_eq!(ok(&from_rollup, 200), raw, "the rollup answers what the raw events did");
    assert_eq!(raw["totals"]["requests"], 11);
    assert_eq!(
        raw["agents"][0]["requests"], 11,
        "whole days and edge hours add up per agent"
    );
    let agent_only = api
        .get(&format!("/v1/analytics/usage?agent_id={}&bucket=hour", t.agent))
        .await;
    let agent_only = ok(&agent_only, 200);
    assert_eq!(agent_only["totals"], usage["totals"], "every call is this agent's");
    let theirs = other.get("/v1/analytics/usage").await;
    assert_eq!(ok(&theirs, 200)["totals"]["requests"], 0, "another org sees none of it");
    api.get("/v1/analytics/usage?bucket=minute&from=2020-01-01T00:00:00Z")
        .await
        .error(400, "invalid_request");
    server.stop().await;
}

#[tokio::test]
async fn management_export_streams_every_memory() {
    let server = server().await;
    let admin_pool = admin().await;
    let t = tenant(&admin_pool, "mgmt-export").await;
    let api = Api {
        server: &server,
        token: token(t.org, "memories:read", None).await,
    };
    // 1,234 memories (more than two chunks of 500), written directly: the export is what is
    // tested, not the write pipeline.
    sqlx::query(
        "INSERT INTO ibex_core.memories (org_id, agent_id, content, content_hash, embedding, category, created_at)
         SELECT $1, $2, 'fact, number ' || n || E' with \"quotes\"\nand a line break',
                encode(sha256(('fact ' || n)::bytea), 'hex'), array_fill(0.05::real, ARRAY[384])::vector,
                'declarative', now() - make_interval(secs => n)
         FROM generate_series(1, 1234) n",
    )
    .bind(t.org)
    .bind(t.agent)
    .execute(&admin_pool)
    .await
    .unwrap();
    let get = |path: String| {
        let request = server.client.get(server.url(&path)).bearer_auth(&api.token);
        async move { request.send().await.unwrap() }
    };
    let jsonl = get("/v1/memories/export?format=jsonl".into()).await;
    assert_eq!(jsonl.status(), 200);
    assert_eq!(jsonl.headers()["content-type"], "application/x-ndjson");
    let text = jsonl.text().await.unwrap();
    let ids: HashSet<String> = text
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids.len(), 1234, "every memory once");
    let csv = get(format!("/v1/memories/export?format=csv&agent_id={}", t.agent)).await;
    assert_eq!(csv.status(), 200);
    let text = csv.text().await.unwrap();
    assert!(text.starts_with("id,agent_id,category,status,"));
    // Each record holds one quoted line break: header + 1234 records of two lines each.
    assert_eq!(text.lines().count(), 1 + 2 * 1234);
    assert!(text.contains("\"fact, number 1 with \"\"quotes\"\""));
    let refused = reply(get("/v1/memories/export?format=xml".into()).await).await;
    refused.error(400, "invalid_request");
    let writer_only = Api {
        server: &server,
        token: token(t.org, "memories:write", None).await,
    };
    let denied = reply(
        server
            .client
            .get(server.url("/v1/memories/export"))
            .bearer_auth(&writer_only.token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    denied.error(403, "permission_denied");
    server.stop().await;
}

#[tokio::test]
async fn management_orgs_for_platform_operators() {
    let server = server().await;
    let admin_pool = admin().await;
    let home = tenant(&admin_pool, "mgmt-platform").await;
    let operator = Api {
        server: &server,
        token: token(home.org, "platform:admin,agents:read", None).await,
    };
    let org_admin = Api {
        server: &server,
        token: token(home.org, "admin", None).await,
    };
    let slug = format!("acme-{}", &Uuid::new_v4().simple().to_string()[..8]);
    org_admin
        .post("/v1/orgs", json!({ "name": "Acme", "slug": slug }))
        .await
        .error(403, "permission_denied");
    let created = operator.post("/v1/orgs", json!({ "name": "Acme", "slug": slug })).await;
    let org = ok(&created, 201).clone();
    let org_id = id(&org);
    assert_eq!(org["status"], "active");
    operator
        .post("/v1/orgs", json!({ "name": "Again", "slug": slug }))
        .await
        .error(409, "already_exists");
    operator
        .post("/v1/orgs", json!({ "name": "Bad", "slug": "-Nope" }))
        .await
        .error(400, "invalid_request");
    let path = format!("/v1/orgs/{org_id}");
    assert_eq!(ok(&operator.get(&path).await, 200)["slug"], slug.as_str());
    let renamed = operator
        .call(Method::PATCH, &path, Some(json!({ "name": "Acme Ltd" })))
        .await;
    assert_eq!(ok(&renamed, 200)["name"], "Acme Ltd");
    let listed = operator.get("/v1/orgs?limit=1").await;
    assert!(
        ok(&listed, 200)["next_cursor"].is_string(),
        "more than one org: a second page"
    );

    // The new org's own token works until the org is suspended, and again once it is resumed.
    let tenant_token = Api {
        server: &server,
        token: token(org_id, "agents:read", None).await,
    };
    ok(&tenant_token.get("/v1/agents").await, 200);
    let suspended = operator.post(&format!("{path}/suspend"), json!({})).await;
    assert_eq!(ok(&suspended, 200)["status"], "suspended");
    within(Duration::from_secs(2), async || {
        tenant_token.get("/v1/agents").await.status == 401
    })
    .await;
    let again = operator.post(&format!("{path}/suspend"), json!({})).await;
    assert_eq!(
        again.error(409, "invalid_transition")["details"]["allowed"],
        json!(["active"])
    );
    ok(&operator.post(&format!("{path}/resume"), json!({})).await, 200);
    within(Duration::from_secs(2), async || {
        tenant_token.get("/v1/agents").await.status == 200
    })
    .await;
    operator
        .post(&format!("/v1/orgs/{}/suspend", home.org), json!({}))
        .await
        .error(409, "conflict");

    // Deletion removes everything (memories too, with the statistics their triggers keep) and
    // answers the receipt.
    let new_admin = Api {
        server: &server,
        token: token(org_id, "admin", None).await,
    };
    let agent = ok(&new_admin.post("/v1/agents", json!({ "name": "doomed" })).await, 201).clone();
    assert_eq!(agent["org_id"], org_id.to_string());
    let memory = new_admin
        .post(
            "/v1/memories",
            json!({ "agent_id": agent["id"], "content": "The doomed agent likes plums." }),
        )
        .await;
    ok(&memory, 201);
    let receipt = operator.call(Method::DELETE, &path, None).await;
    let receipt = ok(&receipt, 200);
    assert_eq!(receipt["agents"], 1);
    assert_eq!(receipt["memories"], 1, "{receipt}");
    assert_eq!(receipt["api_tokens"], 2);
    operator.get(&path).await.error(404, "not_found");
    within(Duration::from_secs(2), async || {
        tenant_token.get("/v1/agents").await.status == 401
    })
    .await;
    server.stop().await;
}
