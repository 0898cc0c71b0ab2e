//! The operator dashboard over HTTP as a browser sends it: cookies, forms, redirects. Signs in
//! with real tokens, works through the management API of a real server, and checks what bad
//! input (no or a wrong CSRF token, an expired session, another org's ids, oversized fields)
//! gets: a page with the reason, nothing changed.

use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use reqwest::StatusCode;
use serde_json::Value;

use crate::fixtures::{admin, tenant, token};
use crate::support::{config, TestServer};

/// A browser without JavaScript: follows nothing by itself, keeps the cookies it is given.
struct Browser {
    http: String,
    client: reqwest::Client,
    cookies: Vec<(String, String)>,
}

struct Page {
    status: StatusCode,
    location: Option<String>,
    csp: Option<String>,
    set_cookies: Vec<String>,
    body: String,
}

impl Page {
    /// The value of the first hidden `csrf` field.
    fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .expect("a form with a csrf field")
            + 19;
        self.body[at..at + 64].to_string()
    }
}

impl Browser {
    fn new(server: &TestServer) -> Self {
        Self {
            http: server.http.clone(),
            client: reqwest::Client::builder().redirect(Policy::none()).build().unwrap(),
            cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn keep(&mut self, response: reqwest::Response) -> Page {
        let set_cookies: Vec<String> = response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        for cookie in &set_cookies {
            let (pair, attributes) = cookie.split_once(';').unwrap_or((cookie, ""));
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(k, _)| k != name);
            if !attributes.contains("Max-Age=0") {
                self.cookies.push((name.to_string(), value.to_string()));
            }
        }
        Page {
            status: response.status(),
            location: response
                .headers()
                .get(LOCATION)
                .map(|v| v.to_str().unwrap().to_string()),
            csp: response
                .headers()
                .get(CONTENT_SECURITY_POLICY)
                .map(|v| v.to_str().unwrap().to_string()),
            set_cookies,
            body: response.text().await.unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let response = self
            .client
            .get(format!("{}{path}", self.http))
            .header(COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep(response).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let response = self
            .client
            .post(format!("{}{path}", self.http))
            .header(COOKIE, self.cookie_header())
            .form(form)
            .send()
            .await
            .unwrap();
        self.keep(response).await
    }

    async fn sign_in(&mut self, token: &str) -> Page {
        let login = self.get("/dashboard/login").await;
        let csrf = login.csrf();
        self.post("/dashboard/login", &[("token", token), ("csrf", &csrf)])
            .await
    }
}

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
