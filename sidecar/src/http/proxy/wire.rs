//! The chat completions request as IBEX reads it, and the body it sends upstream.
//!
//! Only `model`, `messages`, `stream` and the output limit are read; every other field passes
//! through untouched, so the proxy does not have to follow each new upstream option.

use ibex_engine::{Message, Role};
use serde_json::{json, Value};

use crate::context::ContextAnswer;
use crate::error::ApiError;

/// The parts of a chat completions request IBEX reads; everything else passes through.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub model: String,
    /// Each message's role and text (text parts joined).
    pub messages: Vec<Message>,
    pub stream: bool,
    pub max_output_tokens: Option<u32>,
}

/// The text of a message's `content`: a string, an array of parts (text parts joined by
/// newlines, other parts ignored), or null (an assistant message with tool calls only).
pub fn content_text(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Null => Some(String::new()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        _ => None,
    }
}

fn parse_message(index: usize, message: &Value) -> Result<Message, ApiError> {
    let role = message.get("role").and_then(Value::as_str);
    let text = message.get("content").map_or(Some(String::new()), content_text);
    let (Some(role), Some(content)) = (role, text) else {
        return Err(ApiError::InvalidRequest {
            message: format!("message {index} needs a string `role` and a string or array `content`"),
            details: Some(json!({ "index": index })),
        });
    };
    let role = role.parse::<Role>().map_err(|unknown| ApiError::InvalidRequest {
        message: format!("message {index} has an {unknown}"),
        details: Some(json!({ "index": index, "roles": Role::names() })),
    })?;
    Ok(Message { role, content })
}

pub fn parse_request(body: &Value) -> Result<ChatRequest, ApiError> {
    let object = body
        .as_object()
        .ok_or_else(|| ApiError::invalid("the request body must be a JSON object"))?;
    let model = object
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("`model` is required"))?
        .to_string();
    let messages = object
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::invalid("`messages` must be a non-empty array"))?
        .iter()
        .enumerate()
        .map(|(index, message)| parse_message(index, message))
        .collect::<Result<Vec<_>, _>>()?;
    let max_output_tokens = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| object.get(*k).and_then(Value::as_u64))
        .map(|n| n.min(u64::from(u32::MAX)) as u32);
    Ok(ChatRequest {
        model,
        messages,
        stream: object.get("stream").and_then(Value::as_bool).unwrap_or(false),
        max_output_tokens,
    })
}

/// The body sent upstream: `messages` replaced by the context and the kept messages, each kept
/// message in the caller's original form (tool calls, image parts and names included).
pub fn upstream_body(body: &Value, answer: &ContextAnswer) -> Value {
    let original = body["messages"].as_array().cloned().unwrap_or_default();
    let mut messages = Vec::with_capacity(answer.assembly.history.len() + 1);
    if !answer.assembly.context.is_empty() {
        messages.push(json!({ "role": Role::System, "content": answer.assembly.context }));
    }
    for &(i, _) in &answer.assembly.history {
        if let Some(m) = original.get(i) {
            messages.push(m.clone());
        }
    }
    let mut out = body.clone();
    out["messages"] = Value::Array(messages);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_parsed_leniently() {
        let body = json!({
            "model": "gpt-4o-mini",
            "stream": true,
            "max_tokens": 100,
            "temperature": 0.2,
            "messages": [
                {"role": "system", "content": "Be nice."},
                {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "x"}}]},
                {"role": "assistant", "content": null, "tool_calls": []},
                {"role": "tool", "content": "42", "tool_call_id": "t"},
            ]
        });
        let r = parse_request(&body).unwrap();
        assert_eq!(r.model, "gpt-4o-mini");
        assert!(r.stream);
        assert_eq!(r.max_output_tokens, Some(100));
        assert_eq!(r.messages[1], Message::new(Role::User, "look"));
        assert_eq!(r.messages[2], Message::new(Role::Assistant, ""));
        assert!(parse_request(&json!({"messages": []})).is_err());
        assert!(parse_request(&json!({"model": "m", "messages": []})).is_err());
        assert!(parse_request(&json!({"model": "m", "messages": [{"content": "x"}]})).is_err());
    }

    #[test]
    fn unknown_roles_are_refused_with_the_known_ones() {
        let error = parse_request(&json!({"model": "m", "messages": [{"role": "robot", "content": "x"}]})).unwrap_err();
        assert_eq!(error.code(), "invalid_request");
        assert!(error.to_string().contains("robot"), "{error}");
    }
}
