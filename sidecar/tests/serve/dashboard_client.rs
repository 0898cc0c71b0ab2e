//! A browser without JavaScript for the dashboard's tests: keeps cookies, follows no redirect,
//! reads a page's CSRF field. Shared by the test binaries that sign in (serve, archive).

use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use reqwest::StatusCode;

use crate::support::TestServer;

/// A browser without JavaScript: follows nothing by itself, keeps the cookies it is given.
pub struct Browser {
    http: String,
    client: reqwest::Client,
    cookies: Vec<(String, String)>,
}

pub struct Page {
    pub status: StatusCode,
    pub location: Option<String>,
    pub csp: Option<String>,
    pub set_cookies: Vec<String>,
    pub body: String,
}

impl Page {
    /// The value of the first hidden `csrf` field.
    pub fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .expect("a form with a csrf field")
            + 19;
        self.body[at..at + 64].to_string()
    }
}

impl Browser {
    pub fn new(server: &TestServer) -> Self {
        Self {
            http: server.http.clone(),
            client: reqwest::Client::builder().redirect(Policy::none()).build().unwrap(),
            cookies: Vec::new(),
        }
    }

    pub fn cookie_header(&self) -> String {
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

    pub async fn get(&mut self, path: &str) -> Page {
        let response = self
            .client
            .get(format!("{}{path}", self.http))
            .header(COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep(response).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
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

    pub async fn sign_in(&mut self, token: &str) -> Page {
        let login = self.get("/dashboard/login").await;
        let csrf = login.csrf();
        self.post("/dashboard/login", &[("token", token), ("csrf", &csrf)])
            .await
    }
}
