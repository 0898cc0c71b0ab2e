//! A blocking client for OpenAI-compatible chat-completions endpoints (OpenAI, Azure-style
//! gateways, vLLM, llama.cpp server, Ollama's `/v1`...).
//!
//! It runs inside a Postgres background worker, so it is deliberately plain: one synchronous
//! request on the calling thread, no async runtime and no helper threads. ureq's default resolver
//! starts a thread per lookup to enforce a deadline on DNS; [`InlineResolver`] resolves on the
//! calling thread instead, so DNS time is bounded by the system resolver's own timeout rather
//! than by [`ChatConfig::timeout`]. Everything after name resolution (connect, TLS, sending,
//! waiting for and reading the answer) shares the one configured timeout.
//!
//! Errors say whether a retry can help ([`LlmError::is_retryable`]); the worker owns the retry
//! loop and its backoff.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{time, DefaultConnector, NextTimeout};
use ureq::Agent;

use super::ChatMessage;

/// Largest response body read. A chat completion holding 50 memories is a few kilobytes; a much
/// larger body is a misconfigured endpoint, and reading it would only burn worker memory.
const MAX_RESPONSE_BYTES: u64 = 4 << 20;

/// How much of an error response is kept: enough for the provider's message, not a whole HTML
/// error page in the server log.
pub const MAX_ERROR_BODY_CHARS: usize = 500;

/// Where and how to call the model.
#[derive(Clone)]
pub struct ChatConfig {
    /// Up to and including the version segment, e.g. `https://api.openai.com/v1` or
    /// `http://127.0.0.1:11434/v1`; `/chat/completions` is appended.
    pub base_url: String,
    pub model: String,
    /// Sent as `Authorization: Bearer <key>` when set. Local servers usually need none.
    pub api_key: Option<String>,
    /// Budget for one whole call after name resolution.
    pub timeout: Duration,
}

impl fmt::Debug for ChatConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key must never reach a log line through `{:?}`.
        f.debug_struct("ChatConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    #[error("LLM request timed out")]
    Timeout,
    /// Could not connect, TLS failed, the connection broke...
    #[error("LLM transport error: {0}")]
    Transport(String),
    /// The endpoint answered with a non-success status. `body` is cut to
    /// [`MAX_ERROR_BODY_CHARS`] characters.
    #[error("LLM endpoint answered HTTP {status}: {body}")]
    Http { status: u16, body: String },
    /// A success status, but not a chat completion with a text answer.
    #[error("LLM endpoint gave an unusable response: {0}")]
    BadResponse(String),
}

impl LlmError {
    /// Timeouts, broken connections, rate limiting (429) and server errors (5xx) are usually
    /// transient. Other 4xx (bad key, unknown model, request too large) and unusable bodies will
    /// fail the same way again, so the worker should dead-letter at once instead of backing off.
    pub fn is_retryable(&self) -> bool {
        match self {
            LlmError::Timeout | LlmError::Transport(_) => true,
            LlmError::Http { status, .. } => *status == 429 || (500..=599).contains(status),
            LlmError::BadResponse(_) => false,
        }
    }
}

/// A configured endpoint. Cheap to keep for the worker's lifetime: it pools the connection.
pub struct ChatClient {
    agent: Agent,
    url: String,
    model: String,
    authorization: Option<String>,
}

impl fmt::Debug for ChatClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatClient")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("authorization", &self.authorization.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl ChatClient {
    pub fn new(config: ChatConfig) -> Self {
        let agent_config = Config::builder()
            .timeout_global(Some(config.timeout))
            // Error statuses are answers too: their body says what went wrong.
            .http_status_as_error(false)
            // A POST that gets redirected is a wrong base URL; following it would either drop
            // the body or (cross-host) the key. Return the 3xx as an error instead.
            .max_redirects(0)
            .build();
        let agent = Agent::with_parts(agent_config, DefaultConnector::new(), InlineResolver::default());
        ChatClient {
            agent,
            url: chat_completions_url(&config.base_url),
            model: config.model,
            authorization: config.api_key.map(|key| format!("Bearer {key}")),
        }
    }

    /// The full endpoint URL that is POSTed to.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    /// The JSON request body for `messages`. Temperature 0 makes reruns of a failed session give
    /// the same memories; the JSON response format keeps chatty models from wrapping the answer
    /// in prose.
    pub fn request_body(&self, messages: &[ChatMessage]) -> Value {
        json!({
            "model": self.model,
            "messages": messages,
            "temperature": 0.0,
            "response_format": {"type": "json_object"},
        })
    }

    /// Sends one chat completion request and returns `choices[0].message.content`.
    pub fn complete(&self, messages: &[ChatMessage]) -> Result<String, LlmError> {
        let body = self.request_body(messages).to_string();
        let mut request = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json");
        if let Some(authorization) = &self.authorization {
            request = request.header("Authorization", authorization);
        }
        let mut response = request.send(body.as_str()).map_err(transport_error)?;
        let status = response.status().as_u16();
        let read = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec();
        if !(200..300).contains(&status) {
            // The status is the error; a body that cannot be read just leaves it empty.
            let body = read
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            return Err(LlmError::Http {
                status,
                body: truncate_chars(body.trim(), MAX_ERROR_BODY_CHARS),
            });
        }
        answer_content(&read.map_err(transport_error)?)
    }
}

/// `{base_url}/chat/completions` with exactly one slash in between.
pub fn chat_completions_url(base_url: &str) -> String {
    format!("{}/chat/completions", base_url.trim().trim_end_matches('/'))
}

fn answer_content(body: &[u8]) -> Result<String, LlmError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        LlmError::BadResponse(format!(
            "body is not JSON ({e}): {}",
            truncate_chars(&String::from_utf8_lossy(body), 200)
        ))
    })?;
    match value.pointer("/choices/0/message/content") {
        Some(Value::String(content)) => Ok(content.clone()),
        _ => {
            // Some gateways answer 200 with an error object.
            let detail = value
                .get("error")
                .map(|e| format!(" (error: {})", truncate_chars(&e.to_string(), 200)))
                .unwrap_or_default();
            Err(LlmError::BadResponse(format!(
                "no string at choices[0].message.content{detail}"
            )))
        }
    }
}

fn transport_error(error: ureq::Error) -> LlmError {
    match error {
        ureq::Error::Timeout(_) => LlmError::Timeout,
        ureq::Error::Io(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => {
            LlmError::Timeout
        }
        ureq::Error::BodyExceedsLimit(limit) => {
            LlmError::BadResponse(format!("response body is larger than {limit} bytes"))
        }
        other => LlmError::Transport(other.to_string()),
    }
}

fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => text[..cut].to_string(),
        None => text.to_string(),
    }
}

/// ureq's default resolver, minus its deadline: with a deadline it resolves on a spawned thread,
/// and a Postgres backend should not grow threads.
#[derive(Debug, Default)]
struct InlineResolver(DefaultResolver);

impl Resolver for InlineResolver {
    fn resolve(&self, uri: &Uri, config: &Config, timeout: NextTimeout) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let no_deadline = NextTimeout {
            after: time::Duration::NotHappening,
            ..timeout
        };
        self.0.resolve(uri, config, no_deadline)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the API key file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("the API key file {0} is empty")]
    EmptyFile(PathBuf),
    #[error("the environment variable {0} is not valid Unicode")]
    NotUnicode(String),
    /// Whitespace or control characters inside a key would corrupt the Authorization header.
    #[error("the API key from {0} contains whitespace or control characters")]
    Invalid(String),
}

/// The API key from a file (first line's content, trimmed) or, when no file is given, from an
/// environment variable. `Ok(None)` when neither is configured or the variable is unset or empty:
/// local endpoints need no key. A configured file that is missing or empty is an error, not a
/// silent fallback: it is a deployment mistake worth stopping for.
pub fn api_key_from(file: Option<&Path>, env_var: Option<&str>) -> Result<Option<String>, KeyError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let key = text.trim();
        if key.is_empty() {
            return Err(KeyError::EmptyFile(path.to_path_buf()));
        }
        return checked_key(key, &path.display().to_string()).map(Some);
    }
    let Some(name) = env_var else {
        return Ok(None);
    };
    match std::env::var(name) {
        Ok(value) if value.trim().is_empty() => Ok(None),
        Ok(value) => checked_key(value.trim(), &format!("${name}")).map(Some),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(KeyError::NotUnicode(name.to_string())),
    }
}

fn checked_key(key: &str, source: &str) -> Result<String, KeyError> {
    if key.chars().all(|c| c.is_ascii_graphic()) {
        Ok(key.to_string())
    } else {
        Err(KeyError::Invalid(source.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(base_url: &str, api_key: Option<&str>) -> ChatConfig {
        ChatConfig {
            base_url: base_url.into(),
            model: "gpt-4o-mini".into(),
            api_key: api_key.map(String::from),
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn url_joining_has_one_slash() {
        for base in [
            "http://127.0.0.1:9999/v1",
            "http://127.0.0.1:9999/v1/",
            "http://127.0.0.1:9999/v1//",
            " http://127.0.0.1:9999/v1 ",
        ] {
            assert_eq!(
                chat_completions_url(base),
                "http://127.0.0.1:9999/v1/chat/completions",
                "{base}"
            );
        }
        assert_eq!(
            ChatClient::new(config("https://api.example.com/v1/", None)).url(),
            "https://api.example.com/v1/chat/completions"
        );
    }

    #[test]
    fn request_body_shape() {
        let client = ChatClient::new(config("http://x/v1", None));
        let body = client.request_body(&[ChatMessage::system("s"), ChatMessage::user("u")]);
        assert_eq!(
            body,
            json!({
                "model": "gpt-4o-mini",
                "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
                "temperature": 0.0,
                "response_format": {"type": "json_object"},
            })
        );
    }

    #[test]
    fn retryable_errors() {
        assert!(LlmError::Timeout.is_retryable());
        assert!(LlmError::Transport("connection refused".into()).is_retryable());
        for status in [429, 500, 502, 503, 504, 599] {
            assert!(
                LlmError::Http {
                    status,
                    body: String::new()
                }
                .is_retryable(),
                "{status}"
            );
        }
        for status in [300, 301, 400, 401, 403, 404, 408, 413, 422] {
            assert!(
                !LlmError::Http {
                    status,
                    body: String::new()
                }
                .is_retryable(),
                "{status}"
            );
        }
        assert!(!LlmError::BadResponse("x".into()).is_retryable());
    }

    #[test]
    fn answer_content_extraction() {
        let ok = br#"{"choices": [{"message": {"role": "assistant", "content": "{\"memories\": []}"}}]}"#;
        assert_eq!(answer_content(ok).unwrap(), r#"{"memories": []}"#);
        for body in [
            &br#"{"choices": []}"#[..],
            br#"{"choices": [{"message": {"content": null}}]}"#,
            br#"{"choices": [{"message": {"content": 7}}]}"#,
            br#"[]"#,
        ] {
            assert!(
                matches!(answer_content(body), Err(LlmError::BadResponse(_))),
                "{body:?}"
            );
        }
        let Err(LlmError::BadResponse(why)) = answer_content(br#"{"error": {"message": "model overloaded"}}"#) else {
            panic!("expected BadResponse");
        };
        assert!(why.contains("model overloaded"), "{why}");
        let Err(LlmError::BadResponse(why)) = answer_content(b"<html>oops</html>") else {
            panic!("expected BadResponse");
        };
        assert!(why.contains("not JSON") && why.contains("<html>"), "{why}");
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate_chars("héllo", 2), "hé");
        assert_eq!(truncate_chars("héllo", 5), "héllo");
        assert_eq!(truncate_chars("héllo", 50), "héllo");
        assert_eq!(
            truncate_chars(&"é".repeat(600), MAX_ERROR_BODY_CHARS).chars().count(),
            500
        );
    }

    #[test]
    fn debug_output_hides_the_key() {
        let cfg = config("http://x/v1", Some("sk-secret-123"));
        assert!(!format!("{cfg:?}").contains("sk-secret"));
        assert!(!format!("{:?}", ChatClient::new(cfg)).contains("sk-secret"));
    }

    fn temp_file(name: &str, content: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ibex-extract-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn key_from_file_is_trimmed() {
        let path = temp_file("good", "  sk-abc123\n\n");
        assert_eq!(api_key_from(Some(&path), None).unwrap().as_deref(), Some("sk-abc123"));
        // The file wins over the environment.
        assert_eq!(
            api_key_from(Some(&path), Some("PATH")).unwrap().as_deref(),
            Some("sk-abc123")
        );
    }

    #[test]
    fn key_file_problems_are_errors() {
        let missing = std::env::temp_dir().join("ibex-extract-no-such-key-file");
        assert!(matches!(api_key_from(Some(&missing), None), Err(KeyError::Read { .. })));
        let empty = temp_file("empty", " \n");
        assert!(matches!(api_key_from(Some(&empty), None), Err(KeyError::EmptyFile(_))));
        let two_words = temp_file("spaces", "sk-abc def\n");
        assert!(matches!(
            api_key_from(Some(&two_words), None),
            Err(KeyError::Invalid(_))
        ));
    }

    #[test]
    fn key_from_environment() {
        // Variables every test process has or lacks; no test sets the environment, which would
        // race with other threads.
        assert_eq!(api_key_from(None, None).unwrap(), None);
        assert_eq!(
            api_key_from(None, Some("IBEX_TEST_SURELY_UNSET_VARIABLE_42")).unwrap(),
            None
        );
        let path = std::env::var("PATH").unwrap();
        if path.chars().all(|c| c.is_ascii_graphic()) {
            assert_eq!(api_key_from(None, Some("PATH")).unwrap(), Some(path));
        } else {
            assert!(matches!(api_key_from(None, Some("PATH")), Err(KeyError::Invalid(_))));
        }
    }
}
