//! Streamed answers (`"stream": true`): the upstream's bytes go to the client as they arrive,
//! and a copy is parsed as server-sent events to capture the reply and the usage for recording.
//!
//! Forwarding and capture run side by side in one task, joined by an unbounded channel: the
//! parser only ever lags by the chunks it has not looked at yet, and a slow parse never holds
//! back a chunk on its way to the client.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, UnboundedReceiverStream};

use super::session::{record, CallRecord, Outcome};
use super::upstream::without_url;
use crate::state::AppState;

/// What a stream of chat completion chunks said: the assistant's text and the usage, if sent.
#[derive(Default, Debug, PartialEq)]
pub struct StreamCapture {
    pub text: String,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
}

impl StreamCapture {
    /// Takes in one event's data: a chunk of JSON, or `[DONE]`. Anything else is skipped, as
    /// are fields this capture has no use for.
    fn absorb(&mut self, data: &str) {
        if data == "[DONE]" {
            return;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(data) else {
            return;
        };
        if let Some(delta) = chunk["choices"][0]["delta"]["content"].as_str() {
            self.text.push_str(delta);
        }
        if let Some(n) = chunk["usage"]["prompt_tokens"].as_u64() {
            self.prompt_tokens = Some(n);
        }
        if let Some(n) = chunk["usage"]["completion_tokens"].as_u64() {
            self.completion_tokens = Some(n);
        }
    }

    /// Reads the events to the end. A malformed stream ends the capture with what it had: the
    /// client still gets the bytes, only the recorded reply is cut short.
    pub async fn from_events<S, E>(events: S) -> Self
    where
        S: Stream<Item = Result<Event, EventStreamError<E>>>,
        E: std::fmt::Display,
    {
        let mut capture = Self::default();
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => capture.absorb(&event.data),
                Err(e) => {
                    tracing::warn!(error = %e, "upstream stream is not valid server-sent events; capture stops");
                    break;
                }
            }
        }
        capture
    }
}

/// Passes the upstream's byte stream to the client and records the call when it ends (also
/// when the client went away: the upstream is read to the end so the turn is complete).
pub(super) fn stream_through(
    state: AppState,
    call: CallRecord,
    response: reqwest::Response,
    idle_timeout: Duration,
    extra: HeaderMap,
    upstream_started: Instant,
) -> Response {
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or(HeaderValue::from_static("text/event-stream"));
    let (client, client_rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    tokio::spawn(async move {
        let (copies, copies_rx) = mpsc::unbounded_channel::<Bytes>();
        let forward = async move {
            let mut upstream = response.bytes_stream();
            let mut client_gone = false;
            loop {
                match tokio::time::timeout(idle_timeout, upstream.next()).await {
                    Ok(Some(Ok(chunk))) => {
                        // The capture lives as long as this loop; a send cannot fail before it ends.
                        let _ = copies.send(chunk.clone());
                        if !client_gone && client.send(Ok(chunk)).await.is_err() {
                            // Keep reading: the turn is recorded whole.
                            client_gone = true;
                        }
                    }
                    Ok(Some(Err(e))) => {
                        tracing::warn!(error = %without_url(&e), "upstream stream broke off");
                        let _ = client
                            .send(Err(std::io::Error::other("upstream stream broke off")))
                            .await;
                        return 502;
                    }
                    Ok(None) => return status.as_u16(),
                    Err(_) => {
                        tracing::warn!("upstream stream stalled past upstream_timeout");
                        let _ = client.send(Err(std::io::Error::other("upstream stream stalled"))).await;
                        return 504;
                    }
                }
            }
        };
        let events = UnboundedReceiverStream::new(copies_rx)
            .map(Ok::<_, Infallible>)
            .eventsource();
        let (final_status, capture) = tokio::join!(forward, StreamCapture::from_events(events));
        state
            .metrics
            .proxy_upstream_duration
            .observe(upstream_started.elapsed().as_secs_f64());
        let outcome = Outcome {
            status: final_status,
            reply: Some(capture.text),
            prompt_tokens: capture.prompt_tokens,
            completion_tokens: capture.completion_tokens,
        };
        record(&state, &call, outcome).await;
    });
    let mut response = Response::new(Body::from_stream(ReceiverStream::new(client_rx)));
    *response.status_mut() = StatusCode::OK;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.extend(extra);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stream_capture_reassembles_split_chunks() {
        let sse = "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n\
                   data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n\
                   : keep-alive comment\n\n\
                   data: {\"choices\":[{\"delta\":{\"content\":\"lo \u{e9}\"}}]}\r\n\r\n\
                   data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2}}\n\n\
                   data: [DONE]\n\n";
        // Pieces of 7 bytes also split the two-byte UTF-8 of the é.
        let pieces: Vec<Result<Bytes, Infallible>> = sse
            .as_bytes()
            .chunks(7)
            .map(|piece| Ok(Bytes::copy_from_slice(piece)))
            .collect();
        let c = StreamCapture::from_events(futures_util::stream::iter(pieces).eventsource()).await;
        assert_eq!(c.text, "Hello \u{e9}");
        assert_eq!((c.prompt_tokens, c.completion_tokens), (Some(9), Some(2)));
    }
}
