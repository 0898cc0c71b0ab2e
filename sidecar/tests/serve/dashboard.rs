//! The operator dashboard over HTTP as a browser sends it: cookies, forms, redirects. Signs in
//! with real tokens, works through the management API of a real server, and checks what bad
//! input (no or a wrong CSRF token, an expired session, another org's ids, oversized fields)
//! gets: a page with the reason, nothing changed.

#[path = "dashboard_client.rs"]
mod client;

use reqwest::header::COOKIE;
use reqwest::StatusCode;
use serde_json::Value;

use crate::fixtures::{admin, tenant, token};
use crate::support::{config, TestServer};
use client::Browser;

async fn agents_named(server: &TestServer, token: &str, name: &str) -> usize {
    let list: Value = server
        .client
        .get(server.url("/v1/agents?limit=100"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["name"] == name)
        .count()
}

#[tokio::test]
async fn an_operator_signs_in_manages_agents_and_tokens_and_signs_out() {
    let server = TestServer::start(config()).await;
    let pool = admin().await;
    let t = tenant(&pool, "dashboard").await;
    let org_admin = token(t.org, "admin", None).await;
    let mut browser = Browser::new(&server);

    // Not signed in: every page leads to the login page, which sends a strict policy.
    let overview = browser.get("/dashboard/").await;
    assert_eq!(overview.status, StatusCode::SEE_OTHER);
    assert_eq!(overview.location.as_deref(), Some("/dashboard/login?reason=signed_out"));
    let login = browser.get("/dashboard/login").await;
    assert_eq!(login.status, StatusCode::OK);
    let csp = login.csp.clone().expect("a Content-Security-Policy");
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );

    // A wrong token, and a login form without its CSRF token: refused with the reason.
    let wrong = browser
        .post(
            "/dashboard/login",
            &[("token", "ibx_notatokenatall0000000000000000"), ("csrf", &login.csrf())],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.body);
    assert!(wrong.body.contains("role=\"alert\""), "{}", wrong.body);
    let forged = browser.post("/dashboard/login", &[("token", &org_admin)]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(forged.body.contains("CSRF"), "{}", forged.body);

    // Signing in: a session cookie, HttpOnly and SameSite=Strict, holding no token.
    let signed_in = browser.sign_in(&org_admin).await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER, "{}", signed_in.body);
    let session_cookie = signed_in
        .set_cookies
        .iter()
        .find(|c| c.starts_with("ibex_dashboard="))
        .expect("a session cookie");
    assert!(session_cookie.contains("HttpOnly") && session_cookie.contains("SameSite=Strict"));
    assert!(!session_cookie.contains(&org_admin));
    let overview = browser.get("/dashboard/").await;
    assert_eq!(overview.status, StatusCode::OK, "{}", overview.body);
    assert!(overview.body.contains("Last 24 hours") && overview.body.contains("Last 30 days"));

    // Agents: the list shows the tenant's agent; a form without CSRF changes nothing.
    let agents = browser.get("/dashboard/agents").await;
    assert_eq!(agents.status, StatusCode::OK);
    assert!(agents.body.contains(&format!("/dashboard/agents/{}", t.agent)));
    let csrf = agents.csrf();
    let refused = browser
        .post(
            "/dashboard/agents",
            &[("name", "no-csrf"), ("csrf", "0".repeat(64).as_str())],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(agents_named(&server, &org_admin, "no-csrf").await, 0);
    let too_long = "d".repeat(4001);
    let refused = browser
        .post(
            "/dashboard/agents",
            &[("name", "too-long"), ("description", &too_long), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    let huge = "x".repeat(100_000);
    let refused = browser
        .post("/dashboard/agents", &[("name", &huge), ("csrf", &csrf)])
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
    assert!(refused.body.contains("larger than 64 KiB"), "{}", refused.body);
    assert_eq!(agents_named(&server, &org_admin, "too-long").await, 0);

    let created = browser
        .post(
            "/dashboard/agents",
            &[
                ("name", "Dashboard <b>helper</b>"),
                ("description", "made in a browser"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let detail_path = created.location.unwrap();
    let detail = browser.get(&detail_path).await;
    assert_eq!(detail.status, StatusCode::OK);
    assert!(
        detail.body.contains("Dashboard &#60;b&#62;helper&#60;/b&#62;")
            || detail.body.contains("Dashboard &lt;b&gt;helper&lt;/b&gt;"),
        "names are escaped: {}",
        detail.body
    );
    let paused = browser
        .post(
            &format!("{detail_path}/status"),
            &[("status", "paused"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(paused.status, StatusCode::SEE_OTHER, "{}", paused.body);
    assert!(browser.get(&detail_path).await.body.contains("badge paused"));
    let confirm = browser.get(&format!("{detail_path}/delete")).await;
    assert!(confirm.body.contains("cannot be undone"));
    let deleted = browser.post(&format!("{detail_path}/delete"), &[("csrf", &csrf)]).await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    assert!(deleted.body.contains("deleted"));
    assert_eq!(browser.get(&detail_path).await.status, StatusCode::NOT_FOUND);

    // Another org's agent is not found, whatever the address says; a bad id names no page.
    let other = tenant(&pool, "dashboard-other").await;
    let foreign = browser.get(&format!("/dashboard/agents/{}", other.agent)).await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND, "{}", foreign.body);
    let renamed = browser
        .post(
            &format!("/dashboard/agents/{}", other.agent),
            &[("name", "taken over"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(renamed.status, StatusCode::NOT_FOUND);
    assert_eq!(
        browser.get("/dashboard/agents/not-a-uuid").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        browser.get("/dashboard/no-such-page").await.status,
        StatusCode::NOT_FOUND
    );

    // Tokens: created with its secret shown once, listed without it, revoked.
    let made = browser
        .post(
            "/dashboard/tokens",
            &[
                ("name", "from-dashboard"),
                ("scopes", "memories:read agents:read"),
                ("expires_in_days", "30"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let marker = "<pre class=\"secret\">";
    let at = made.body.find(marker).unwrap() + marker.len();
    let secret = made.body[at..].split('<').next().unwrap().to_string();
    assert!(secret.starts_with("ibx_"), "{secret}");
    let tokens = browser.get("/dashboard/tokens").await;
    assert!(tokens.body.contains("from-dashboard") && !tokens.body.contains(&secret));
    let listed: Value = server
        .client
        .get(server.url("/v1/tokens?limit=100"))
        .bearer_auth(&org_admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let made_id = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "from-dashboard")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let revoked = browser
        .post(&format!("/dashboard/tokens/{made_id}/revoke"), &[("csrf", &csrf)])
        .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER, "{}", revoked.body);
    assert!(browser
        .get("/dashboard/tokens")
        .await
        .body
        .contains("class=\"revoked\""));

    // Signing out ends the session: the old cookie opens nothing.
    let old = browser.cookie_header();
    let out = browser.post("/dashboard/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    let replayed = server
        .client
        .get(server.url("/dashboard/"))
        .header(COOKIE, old)
        .send()
        .await
        .unwrap();
    assert!(
        replayed.url().path().ends_with("/dashboard/login"),
        "{}",
        replayed.url()
    );
    server.stop().await;
}

#[tokio::test]
async fn a_token_s_scopes_decide_what_the_pages_offer_and_an_expired_session_signs_out() {
    let mut settings = config();
    settings.dashboard_session_idle = std::time::Duration::from_millis(300);
    let server = TestServer::start(settings).await;
    let pool = admin().await;
    let t = tenant(&pool, "dashboard-scopes").await;
    let reader = token(t.org, "memories:read", None).await;
    let mut browser = Browser::new(&server);
    assert_eq!(browser.sign_in(&reader).await.status, StatusCode::SEE_OTHER);
    let overview = browser.get("/dashboard/").await;
    assert_eq!(overview.status, StatusCode::OK);
    assert!(overview.body.contains("may not read analytics"));
    assert!(
        !overview.body.contains("href=\"/dashboard/agents\""),
        "no Agents entry without agents:read"
    );
    let agents = browser.get("/dashboard/agents").await;
    assert_eq!(
        agents.status,
        StatusCode::FORBIDDEN,
        "the API refuses it: {}",
        agents.body
    );
    assert!(agents.body.contains("agents:read"));

    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let expired = browser.get("/dashboard/").await;
    assert_eq!(expired.status, StatusCode::SEE_OTHER);
    assert_eq!(expired.location.as_deref(), Some("/dashboard/login?reason=expired"));
    let login = browser.get("/dashboard/login?reason=expired").await;
    assert!(login.body.contains("session has expired"));
    server.stop().await;
}

/// A session of the tenant with the given turns, in one checkpoint, still active.
async fn session_with_turns(pool: &sqlx::PgPool, t: crate::fixtures::Tenant, turns: Value) -> uuid::Uuid {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SELECT set_config('ibex.org_id', $1, true)")
        .bind(t.org.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    let session: uuid::Uuid = sqlx::query_scalar("SELECT ibex_core.ensure_session($1, $2)")
        .bind(t.org)
        .bind(t.agent)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    sqlx::query("SELECT ibex_core.append_turns($1, $2, $3)")
        .bind(t.org)
        .bind(session)
        .bind(turns)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    session
}

async fn memory_status(pool: &sqlx::PgPool, memory: uuid::Uuid) -> String {
    sqlx::query_scalar("SELECT status FROM ibex_core.memories WHERE id = $1")
        .bind(memory)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_memory_browser_searches_forgets_resolves_conflicts_and_shows_sessions() {
    use crate::fixtures::remember;
    let server = TestServer::start(config()).await;
    let pool = admin().await;
    let t = tenant(&pool, "dashboard-memories").await;
    let other = tenant(&pool, "dashboard-memories-other").await;
    let org_admin = token(t.org, "admin", None).await;
    let teal = remember(&pool, t, "The user's favourite colour is teal.", "declarative").await;
    let office = remember(&pool, t, "The office opens at 9 every weekday.", "declarative").await;
    let later = remember(&pool, t, "The office opens at 10 on Mondays.", "declarative").await;
    // The pair as remember's conflict check may have linked it, or as linked here.
    let foreign = remember(&pool, other, "Another org's secret plan.", "declarative").await;
    for (source, target, kind) in [(later, office, "conflicts_with"), (teal, office, "related_to")] {
        sqlx::query(
            "INSERT INTO ibex_core.memory_relationships (org_id, source_memory_id, target_memory_id, kind, similarity)
             VALUES ($1, $2, $3, $4, 0.91) ON CONFLICT DO NOTHING",
        )
        .bind(t.org)
        .bind(source)
        .bind(target)
        .bind(kind)
        .execute(&pool)
        .await
        .unwrap();
    }
    // remember may have found the pair already (its step 6): one open conflict either way.
    sqlx::query(
        "INSERT INTO ibex_core.memory_conflicts (org_id, memory_id, conflicting_memory_id, similarity)
         SELECT $1, $2, $3, 0.91
         WHERE NOT EXISTS (SELECT 1 FROM ibex_core.memory_conflicts WHERE org_id = $1 AND status = 'open')",
    )
    .bind(t.org)
    .bind(later)
    .bind(office)
    .execute(&pool)
    .await
    .unwrap();
    let mut browser = Browser::new(&server);
    assert_eq!(browser.sign_in(&org_admin).await.status, StatusCode::SEE_OTHER);

    // The list, newest first, and a search ranked with its scores.
    let list = browser.get("/dashboard/memories").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    assert!(list.body.contains("favourite colour is teal") && list.body.contains("opens at 9"));
    assert!(!list.body.contains("secret plan"));
    let hits = browser
        .get(&format!("/dashboard/memories?q=favourite+colour&agent={}", t.agent))
        .await;
    assert_eq!(hits.status, StatusCode::OK, "{}", hits.body);
    assert!(
        hits.body.contains("Best matches") && hits.body.contains("Semantic"),
        "{}",
        hits.body
    );
    let first_hit = hits.body.find("/dashboard/memories/").unwrap();
    assert!(
        hits.body[first_hit..].starts_with(&format!("/dashboard/memories/{teal}")),
        "teal ranks first"
    );
    let no_agent = browser.get("/dashboard/memories?q=colour").await;
    assert!(no_agent.body.contains("Choose an agent"), "{}", no_agent.body);
    let filtered = browser.get("/dashboard/memories?category=episodic").await;
    assert!(filtered.body.contains("No memories match"), "{}", filtered.body);
    for bad in [
        "category=gossip",
        "from=2026-13-01",
        "agent=nope",
        "from=2026-11-02&to=2026-11-01",
    ] {
        let refused = browser.get(&format!("/dashboard/memories?{bad}")).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            refused.body
        );
    }

    // Detail: history and relationships read from this memory's side.
    let detail = browser.get(&format!("/dashboard/memories/{office}")).await;
    assert_eq!(detail.status, StatusCode::OK, "{}", detail.body);
    assert!(detail.body.contains("Version history") && detail.body.contains("created"));
    assert!(
        detail.body.contains("conflicts with") && detail.body.contains("related to"),
        "{}",
        detail.body
    );
    assert!(detail.body.contains(&format!("/dashboard/memories/{later}")));
    assert_eq!(
        browser.get(&format!("/dashboard/memories/{foreign}")).await.status,
        StatusCode::NOT_FOUND
    );

    // Forget: refused without the CSRF token, done with it, the reason kept in the history.
    let confirm = browser.get(&format!("/dashboard/memories/{teal}/delete")).await;
    assert!(confirm.body.contains("Forget this memory?"));
    let csrf = confirm.csrf();
    let forged = browser
        .post(&format!("/dashboard/memories/{teal}/delete"), &[("reason", "x")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(memory_status(&pool, teal).await, "active");
    let foreign_forget = browser
        .post(&format!("/dashboard/memories/{foreign}/delete"), &[("csrf", &csrf)])
        .await;
    assert_eq!(foreign_forget.status, StatusCode::NOT_FOUND);
    assert_eq!(memory_status(&pool, foreign).await, "active");
    let long_reason = "r".repeat(501);
    let refused = browser
        .post(
            &format!("/dashboard/memories/{teal}/delete"),
            &[("reason", &long_reason), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    let forgot = browser
        .post(
            &format!("/dashboard/memories/{teal}/delete"),
            &[("reason", "no longer true"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(forgot.status, StatusCode::SEE_OTHER, "{}", forgot.body);
    assert_eq!(memory_status(&pool, teal).await, "deleted");
    let after = browser.get(&format!("/dashboard/memories/{teal}")).await;
    assert!(after.body.contains("badge deleted") && after.body.contains("no longer true"));

    // Conflicts: the open pair, a decision naming a memory outside it refused, then keep one.
    let conflicts = browser.get("/dashboard/conflicts").await;
    assert_eq!(conflicts.status, StatusCode::OK, "{}", conflicts.body);
    assert!(conflicts.body.contains("opens at 10 on Mondays") && conflicts.body.contains("opens at 9"));
    let marker = "action=\"/dashboard/conflicts/";
    let at = conflicts.body.find(marker).unwrap() + marker.len();
    let conflict = &conflicts.body[at..at + 36];
    let forged = browser
        .post(
            &format!("/dashboard/conflicts/{conflict}/resolve"),
            &[("decision", &format!("forget:{foreign}")), ("csrf", &csrf)],
        )
        .await;
    assert!(forged.status.is_client_error(), "{}", forged.body);
    assert_eq!(memory_status(&pool, foreign).await, "active");
    let kept = browser
        .post(
            &format!("/dashboard/conflicts/{conflict}/resolve"),
            &[
                ("decision", &format!("forget:{office}")),
                ("note", "Mondays changed"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(kept.status, StatusCode::SEE_OTHER, "{}", kept.body);
    assert_eq!(memory_status(&pool, office).await, "deleted");
    assert_eq!(memory_status(&pool, later).await, "active");
    assert!(browser
        .get("/dashboard/conflicts")
        .await
        .body
        .contains("No open conflicts"));

    // Sessions: the list with filters, one session's turns; another org's is not found.
    let session = session_with_turns(
        &pool,
        t,
        serde_json::json!([
            {"role": "user", "content": "book a table for two", "tokens": 6, "model": "gpt-test"},
            {"role": "assistant", "content": "Booked for 8 pm.", "tokens": 5, "model": "gpt-test"}
        ]),
    )
    .await;
    let foreign_session =
        session_with_turns(&pool, other, serde_json::json!([{"role": "user", "content": "hidden"}])).await;
    let sessions = browser
        .get(&format!("/dashboard/sessions?agent={}&status=active", t.agent))
        .await;
    assert_eq!(sessions.status, StatusCode::OK, "{}", sessions.body);
    assert!(sessions.body.contains(&format!("/dashboard/sessions/{session}")));
    assert!(!sessions.body.contains(&foreign_session.to_string()));
    let none = browser.get("/dashboard/sessions?status=failed").await;
    assert!(none.body.contains("No sessions match"));
    let one = browser.get(&format!("/dashboard/sessions/{session}")).await;
    assert!(one.body.contains("book a table for two") && one.body.contains("Booked for 8 pm."));
    let not_archived = browser.get(&format!("/dashboard/sessions/{session}/replay")).await;
    assert_eq!(not_archived.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(not_archived.body.contains("not archived yet"));
    assert_eq!(
        browser
            .get(&format!("/dashboard/sessions/{foreign_session}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    server.stop().await;
}

#[tokio::test]
async fn directives_are_created_edited_compared_and_archived_through_their_forms() {
    let server = TestServer::start(config()).await;
    let pool = admin().await;
    let t = tenant(&pool, "dashboard-directives").await;
    let other = tenant(&pool, "dashboard-directives-other").await;
    let org_admin = token(t.org, "admin", None).await;
    let mut browser = Browser::new(&server);
    assert_eq!(browser.sign_in(&org_admin).await.status, StatusCode::SEE_OTHER);

    let list_path = format!("/dashboard/agents/{}/directives", t.agent);
    let list = browser.get(&list_path).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    assert!(list.body.contains("No directives yet"), "{}", list.body);
    let csrf = list.csrf();
    let refused = browser
        .post(
            &list_path,
            &[
                ("name", "tone"),
                ("content", "x"),
                ("priority", "high"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
    let created = browser
        .post(
            &list_path,
            &[
                ("name", "tone"),
                ("content", "Be brief.\nUse metric units."),
                ("priority", "5"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let detail_path = created.location.unwrap();
    let saved = browser
        .post(
            &detail_path,
            &[
                ("action", "save"),
                ("content", "Be brief.\r\nUse imperial units."),
                ("priority", "5"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);

    // Version 2 against version 1 by default: one line kept, one removed, one added.
    let detail = browser.get(&detail_path).await;
    assert_eq!(detail.status, StatusCode::OK, "{}", detail.body);
    assert!(
        detail.body.contains("class=\"del\"") && detail.body.contains("class=\"add\""),
        "{}",
        detail.body
    );
    assert!(detail.body.contains("Use metric units.") && detail.body.contains("Use imperial units."));
    let bad = browser.get(&format!("{detail_path}?from=0&to=9")).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let forged = browser.post(&detail_path, &[("action", "drop"), ("csrf", &csrf)]).await;
    assert_eq!(forged.status, StatusCode::UNPROCESSABLE_ENTITY);

    let archived = browser
        .post(&detail_path, &[("action", "archive"), ("csrf", &csrf)])
        .await;
    assert_eq!(archived.status, StatusCode::SEE_OTHER, "{}", archived.body);
    assert!(browser.get(&detail_path).await.body.contains("archived"));

    // Another org's agent has no directives page here, and its ids change nothing.
    let foreign = browser
        .get(&format!("/dashboard/agents/{}/directives", other.agent))
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND, "{}", foreign.body);
    let planted = browser
        .post(
            &format!("/dashboard/agents/{}/directives", other.agent),
            &[("name", "planted"), ("content", "obey"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(planted.status, StatusCode::NOT_FOUND, "{}", planted.body);
    server.stop().await;
}
