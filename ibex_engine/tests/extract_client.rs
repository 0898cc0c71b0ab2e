//! The extraction LLM client against a real (tiny) HTTP server on 127.0.0.1.
//!
//! Each test starts its own server on port 0 in a thread, built on `std::net` only: it reads one
//! request, hands it to the test through a channel and answers with a canned response (or, for the
//! timeout test, never answers).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use ibex_engine::extract::{parse_answer, ChatClient, ChatConfig, ChatMessage, LlmError};
use serde_json::{json, Value};

/// One request as the server saw it.
struct Captured {
    request_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Captured {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }
}

enum Reply {
    /// Status line tail ("200 OK") and body.
    Respond(&'static str, String),
    /// Read the request, then hold the connection open without answering.
    Hang(Duration),
}

fn read_request(stream: &TcpStream) -> Captured {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').expect("header line");
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    Captured {
        request_line: request_line.trim_end().to_string(),
        headers,
        body,
    }
}

/// Serves exactly one request; returns the base URL (with `/v1`) and the captured request.
fn serve_once(reply: Reply) -> (String, Receiver<Captured>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let captured = read_request(&stream);
        tx.send(captured).unwrap();
        match reply {
            Reply::Respond(status, body) => {
                let response = format!(
                    concat!(
                        "HTTP/1.1 {status}\r\n",
                        "Content-Type: application/json\r\n",
                        "Content-Length: {length}\r\n",
                        "Connection: close\r\n\r\n",
                        "{body}",
                    ),
                    status = status,
                    length = body.len(),
                    body = body
                );
                stream.write_all(response.as_bytes()).unwrap();
                stream.flush().unwrap();
            }
            Reply::Hang(duration) => thread::sleep(duration),
        }
    });
    (base_url, rx)
}

fn client(base_url: &str, api_key: Option<&str>, timeout: Duration) -> ChatClient {
    ChatClient::new(ChatConfig {
        base_url: base_url.to_string(),
        model: "test-model".to_string(),
        api_key: api_key.map(String::from),
        timeout,
    })
}

fn messages() -> Vec<ChatMessage> {
    vec![ChatMessage::system("extract"), ChatMessage::user("I prefer tea.")]
}

fn completion(content: &str) -> String {
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
    })
    .to_string()
}

#[test]
fn good_answer_is_returned() {
    let answer = r#"{"memories": [{"category": "declarative", "content": "User prefers tea.", "confidence": 0.9, "turns": [1]}]}"#;
    let (base_url, _rx) = serve_once(Reply::Respond("200 OK", completion(answer)));
    let content = client(&base_url, None, Duration::from_secs(5))
        .complete(&messages())
        .unwrap();
    assert_eq!(content, answer);
    // And it is what the parser expects.
    let parsed = parse_answer(&content, &[1]).unwrap();
    assert_eq!(parsed.kept.len(), 1);
    assert_eq!(parsed.kept[0].content, "User prefers tea.");
}

#[test]
fn request_has_model_messages_temperature_format_and_bearer() {
    let (base_url, rx) = serve_once(Reply::Respond("200 OK", completion("{}")));
    // A trailing slash on the base URL must not give a double slash.
    let client = client(&format!("{base_url}/"), Some("sk-test-123"), Duration::from_secs(5));
    client.complete(&messages()).unwrap();
    let request = rx.recv_timeout(Duration::from_secs(5)).unwrap();

    assert_eq!(request.request_line, "POST /v1/chat/completions HTTP/1.1");
    assert_eq!(request.header("authorization"), Some("Bearer sk-test-123"));
    assert!(request.header("content-type").unwrap().starts_with("application/json"));
    let body = request.json();
    assert_eq!(body["model"], "test-model");
    assert_eq!(
        body["messages"],
        json!([{"role": "system", "content": "extract"}, {"role": "user", "content": "I prefer tea."}])
    );
    assert_eq!(body["temperature"].as_f64(), Some(0.0));
    assert_eq!(body["response_format"], json!({"type": "json_object"}));
}

#[test]
fn no_key_no_authorization_header() {
    let (base_url, rx) = serve_once(Reply::Respond("200 OK", completion("{}")));
    client(&base_url, None, Duration::from_secs(5))
        .complete(&messages())
        .unwrap();
    let request = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(request.header("authorization"), None);
}

#[test]
fn server_error_is_http_500_and_retryable() {
    let (base_url, _rx) = serve_once(Reply::Respond(
        "500 Internal Server Error",
        r#"{"error": {"message": "boom"}}"#.to_string(),
    ));
    let error = client(&base_url, None, Duration::from_secs(5))
        .complete(&messages())
        .unwrap_err();
    match &error {
        LlmError::Http { status, body } => {
            assert_eq!(*status, 500);
            assert!(body.contains("boom"), "{body}");
        }
        other => panic!("expected Http, got {other:?}"),
    }
    assert!(error.is_retryable());
}

#[test]
fn rate_limit_is_retryable() {
    let (base_url, _rx) = serve_once(Reply::Respond("429 Too Many Requests", "{}".to_string()));
    let error = client(&base_url, None, Duration::from_secs(5))
        .complete(&messages())
        .unwrap_err();
    assert!(matches!(error, LlmError::Http { status: 429, .. }), "{error:?}");
    assert!(error.is_retryable());
}

#[test]
fn bad_request_is_not_retryable_and_body_is_truncated() {
    let long = format!(r#"{{"error": "{}"}}"#, "x".repeat(2000));
    let (base_url, _rx) = serve_once(Reply::Respond("400 Bad Request", long));
    let error = client(&base_url, None, Duration::from_secs(5))
        .complete(&messages())
        .unwrap_err();
    match &error {
        LlmError::Http { status, body } => {
            assert_eq!(*status, 400);
            assert_eq!(body.chars().count(), 500);
        }
        other => panic!("expected Http, got {other:?}"),
    }
    assert!(!error.is_retryable());
}

#[test]
fn silent_server_times_out_within_the_configured_timeout() {
    let (base_url, _rx) = serve_once(Reply::Hang(Duration::from_secs(10)));
    let timeout = Duration::from_millis(400);
    let started = Instant::now();
    let error = client(&base_url, None, timeout).complete(&messages()).unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(error, LlmError::Timeout);
    assert!(error.is_retryable());
    assert!(elapsed >= Duration::from_millis(350), "gave up too early: {elapsed:?}");
    // Generous slack for a loaded CI machine, but far below the server's 10 s.
    assert!(elapsed < timeout + Duration::from_secs(2), "took {elapsed:?}");
}

#[test]
fn non_json_body_is_bad_response() {
    let (base_url, _rx) = serve_once(Reply::Respond("200 OK", "<html>not json</html>".to_string()));
    let error = client(&base_url, None, Duration::from_secs(5))
        .complete(&messages())
        .unwrap_err();
    assert!(
        matches!(&error, LlmError::BadResponse(why) if why.contains("not JSON")),
        "{error:?}"
    );
    assert!(!error.is_retryable());
}

#[test]
fn json_without_content_is_bad_response() {
    let (base_url, _rx) = serve_once(Reply::Respond("200 OK", r#"{"choices": []}"#.to_string()));
    let error = client(&base_url, None, Duration::from_secs(5))
        .complete(&messages())
        .unwrap_err();
    assert!(matches!(error, LlmError::BadResponse(_)), "{error:?}");
}

#[test]
fn refused_connection_is_a_retryable_transport_error() {
    // Bind, note the port, close: nothing listens there any more.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let error = client(&format!("http://127.0.0.1:{port}/v1"), None, Duration::from_secs(5))
        .complete(&messages())
        .unwrap_err();
    assert!(matches!(error, LlmError::Transport(_)), "{error:?}");
    assert!(error.is_retryable());
}

#[test]
fn redirect_is_not_followed() {
    let (base_url, _rx) = serve_once(Reply::Respond("307 Temporary Redirect", String::new()));
    let error = client(&base_url, None, Duration::from_secs(5))
        .complete(&messages())
        .unwrap_err();
    assert!(matches!(error, LlmError::Http { status: 307, .. }), "{error:?}");
    assert!(!error.is_retryable());
}
