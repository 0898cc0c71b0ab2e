//! The MCP endpoint (`/mcp`) through a real MCP client (rmcp's, over Streamable HTTP): the
//! handshake and the four tools with their schemas, a memory's life through the tools, and who
//! may do what (no or bad token, scopes, orgs, agents).

use rmcp::model::{CallToolRequestParams, CallToolResult, ClientConfig};
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::fixtures::{add_agent, admin, tenant, token};
use crate::support::{config, reply, TestServer};

type Client = RunningService<RoleClient, ClientConfig>;

/// An MCP client of `server` that sends `token` (initialize done).
async fn connect(server: &TestServer, token: &str) -> Client {
    try_connect(server, token).await.expect("MCP initialize")
}

async fn try_connect(server: &TestServer, token: &str) -> Result<Client, String> {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(server.url("/mcp")).auth_header(token),
    );
    ClientConfig::default()
        .serve(transport)
        .await
        .map_err(|e| e.to_string())
}

async fn call(client: &Client, tool: &str, arguments: Value) -> CallToolResult {
    let arguments = arguments.as_object().expect("arguments object").clone();
    client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(arguments))
        .await
        .unwrap_or_else(|e| panic!("tools/call {tool}: {e}"))
}

/// A successful answer: its structured content, which the text block repeats.
fn ok(result: &CallToolResult) -> Value {
    assert_ne!(result.is_error, Some(true), "{result:?}");
    let structured = result.structured_content.clone().expect("structured content");
    let text = &result.content[0].as_text().expect("text block").text;
    assert_eq!(serde_json::from_str::<Value>(text).unwrap(), structured);
    structured
}

/// A refusal: a tool error carrying the error envelope with `code`; its message.
fn refused(result: &CallToolResult, code: &str) -> String {
    assert_eq!(result.is_error, Some(true), "{result:?}");
    let envelope = result.structured_content.clone().expect("structured error");
    assert_eq!(envelope["error"]["code"], code, "{envelope}");
    envelope["error"]["message"].as_str().expect("message").to_string()
}

fn ids(value: &Value, list: &str, key: &str) -> Vec<String> {
    value[list]
        .as_array()
        .unwrap_or_else(|| panic!("{list} in {value}"))
        .iter()
        .map(|m| m[key].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn mcp_tools_and_a_memory_through_them() {
    let server = TestServer::start(config()).await;
    let t = tenant(&admin().await, "mcp-life").await;
    let client = connect(&server, &token(t.org, "memories:read,memories:write", None).await).await;

    let info = client.peer_info().expect("server info");
    assert_eq!(info.server_info.as_ref().map(|s| s.name.as_str()), Some("ibex"));
    assert!(info.capabilities.tools.is_some());
    let tools = client.list_all_tools().await.expect("tools/list");
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort_unstable();
    assert_eq!(names, ["forget", "list_memories", "remember", "search"]);
    let schema = |name: &str| {
        let tool = tools.iter().find(|t| t.name == name).unwrap();
        assert!(tool.description.as_ref().is_some_and(|d| !d.is_empty()));
        Value::Object((*tool.input_schema).clone())
    };
    assert_eq!(schema("remember")["required"], json!(["content"]));
    assert_eq!(schema("remember")["properties"]["agent_id"]["format"], "uuid");
    assert_eq!(schema("search")["required"], json!(["query"]));
    assert_eq!(schema("forget")["required"], json!(["memory_id"]));
    assert_eq!(schema("list_memories")["type"], "object");

    let agent = t.agent.to_string();
    let remembered = ok(&call(
        &client,
        "remember",
        json!({ "agent_id": agent, "content": "The customer prefers invoices in euros.", "tags": ["Billing"] }),
    )
    .await);
    assert_eq!(remembered["path"], "created");
    assert_eq!(remembered["memory"]["tags"], json!(["billing"]));
    let memory = remembered["memory_id"].as_str().unwrap().to_string();
    let again = ok(&call(
        &client,
        "remember",
        json!({ "agent_id": agent, "content": "The customer prefers invoices in euros." }),
    )
    .await);
    assert_eq!(
        (again["path"].as_str(), again["memory_id"].as_str()),
        (Some("duplicate"), Some(memory.as_str()))
    );
    ok(&call(
        &client,
        "remember",
        json!({ "agent_id": agent, "content": "Ticket 7 was about a login problem on the mobile app." }),
    )
    .await);

    let found = ok(&call(
        &client,
        "search",
        json!({ "agent_id": agent, "query": "which currency for invoices", "limit": 1 }),
    )
    .await);
    assert_eq!(ids(&found, "results", "memory_id"), [memory.as_str()]);
    let listed = ok(&call(&client, "list_memories", json!({ "agent_id": agent })).await);
    assert_eq!(ids(&listed, "data", "id").len(), 2);
    assert!(ids(&listed, "data", "id").contains(&memory));

    let forgotten = ok(&call(
        &client,
        "forget",
        json!({ "agent_id": agent, "memory_id": memory, "reason": "outdated" }),
    )
    .await);
    assert_eq!(forgotten["status"], "deleted");
    let listed = ok(&call(&client, "list_memories", json!({ "agent_id": agent })).await);
    assert!(
        !ids(&listed, "data", "id").contains(&memory),
        "forgotten, so no longer listed"
    );
    let deleted = ok(&call(
        &client,
        "list_memories",
        json!({ "agent_id": agent, "status": "deleted" }),
    )
    .await);
    assert_eq!(ids(&deleted, "data", "id"), [memory.as_str()]);
    let found = ok(&call(
        &client,
        "search",
        json!({ "agent_id": agent, "query": "which currency for invoices" }),
    )
    .await);
    assert!(!ids(&found, "results", "memory_id").contains(&memory));

    // Bad input is a tool error the model can read, never a crash.
    let message = refused(
        &call(&client, "remember", json!({ "content": "no agent named" })).await,
        "invalid_request",
    );
    assert!(message.contains("agent_id"), "{message}");
    refused(
        &call(&client, "remember", json!({ "agent_id": agent })).await,
        "invalid_request",
    );
    refused(
        &call(
            &client,
            "forget",
            json!({ "agent_id": agent, "memory_id": "not-a-uuid" }),
        )
        .await,
        "invalid_request",
    );
    refused(
        &call(&client, "list_memories", json!({ "agent_id": agent, "limit": 100000 })).await,
        "invalid_request",
    );
    refused(
        &call(&client, "list_memories", json!({ "agent_id": agent, "status": "gone" })).await,
        "invalid_request",
    );
    refused(
        &call(&client, "remember", json!({ "agent_id": agent, "content": "   " })).await,
        "invalid_request",
    );
    let long = "x".repeat(100_000);
    assert_eq!(
        call(&client, "remember", json!({ "agent_id": agent, "content": long }))
            .await
            .is_error,
        Some(true)
    );
    refused(
        &call(
            &client,
            "search",
            json!({ "agent_id": agent, "query": "q", "surprise": 1 }),
        )
        .await,
        "invalid_request",
    );
    // The client still works after every refusal.
    assert_eq!(client.list_all_tools().await.unwrap().len(), 4);
    client.cancel().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn mcp_refuses_requests_without_a_valid_token() {
    let server = TestServer::start(config()).await;
    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": { "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "t", "version": "1" } }
    });
    let post_body = |token: Option<&str>, body: &Value| {
        let mut request = server
            .client
            .post(server.url("/mcp"))
            .header("accept", "application/json, text/event-stream")
            .json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let post = |token: Option<&str>| post_body(token, &initialize);
    reply(post(None).await.unwrap()).await.error(401, "unauthenticated");
    let bad = format!("ibx_{}", "A".repeat(32));
    reply(post(Some(&bad)).await.unwrap())
        .await
        .error(401, "unauthenticated");
    reply(post(Some("not-a-token")).await.unwrap())
        .await
        .error(401, "unauthenticated");
    // A GET (the SSE stream of stateful servers) is refused the same way, before rmcp sees it.
    let get = server.client.get(server.url("/mcp")).send().await.unwrap();
    reply(get).await.error(401, "unauthenticated");
    // The MCP client gets no further than its handshake.
    assert!(try_connect(&server, &bad).await.is_err());
    // A valid token passes.
    let t = tenant(&admin().await, "mcp-auth").await;
    let valid = token(t.org, "memories:read", None).await;
    let accepted = post(Some(&valid)).await.unwrap();
    assert_eq!(accepted.status().as_u16(), 200);
    // Stateless: a tool call needs no session (what the README's curl example does).
    let list = json!({
        "jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": { "name": "list_memories", "arguments": { "agent_id": t.agent } }
    });
    let listed = post_body(Some(&valid), &list).await.unwrap();
    assert_eq!(listed.status().as_u16(), 200);
    let body: Value = listed.json().await.unwrap();
    assert_eq!(body["result"]["structuredContent"]["data"], json!([]), "{body}");
    // A body over the limit is refused in the error envelope, like on the REST routes.
    let huge = json!({
        "jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": { "name": "remember", "arguments": {
            "agent_id": t.agent, "content": "x".repeat(config().max_body_bytes + 1) } }
    });
    reply(post_body(Some(&valid), &huge).await.unwrap())
        .await
        .error(413, "payload_too_large");
    server.stop().await;
}

#[tokio::test]
async fn mcp_scopes_orgs_and_agents() {
    let server = TestServer::start(config()).await;
    let admin_pool = admin().await;
    let a = tenant(&admin_pool, "mcp-org-a").await;
    let b = tenant(&admin_pool, "mcp-org-b").await;
    let writer = connect(&server, &token(a.org, "memories:write,memories:read", None).await).await;
    let agent = a.agent.to_string();
    let memory = ok(&call(
        &writer,
        "remember",
        json!({ "agent_id": agent, "content": "The warehouse closes at six on Fridays." }),
    )
    .await)["memory_id"]
        .as_str()
        .unwrap()
        .to_string();

    // A read-only token reads but cannot write; the refusal names the scope.
    let reader = connect(&server, &token(a.org, "memories:read", None).await).await;
    let message = refused(
        &call(&reader, "remember", json!({ "agent_id": agent, "content": "planted" })).await,
        "permission_denied",
    );
    assert!(message.contains("memories:write"), "{message}");
    refused(
        &call(&reader, "forget", json!({ "agent_id": agent, "memory_id": memory })).await,
        "permission_denied",
    );
    let listed = ok(&call(&reader, "list_memories", json!({ "agent_id": agent })).await);
    assert_eq!(ids(&listed, "data", "id"), [memory.as_str()]);
    // A write-only token cannot read.
    let blind = connect(&server, &token(a.org, "memories:write", None).await).await;
    let message = refused(
        &call(&blind, "search", json!({ "agent_id": agent, "query": "warehouse" })).await,
        "permission_denied",
    );
    assert!(message.contains("memories:read"), "{message}");

    // Org B reaches nothing of org A, whatever ids it sends.
    let other = connect(&server, &token(b.org, "admin", None).await).await;
    refused(
        &call(&other, "forget", json!({ "agent_id": agent, "memory_id": memory })).await,
        "not_found",
    );
    refused(
        &call(&other, "forget", json!({ "agent_id": b.agent, "memory_id": memory })).await,
        "not_found",
    );
    let theirs = ok(&call(&other, "list_memories", json!({ "agent_id": agent })).await);
    assert!(theirs["data"].as_array().unwrap().is_empty());
    let theirs = ok(&call(&other, "search", json!({ "agent_id": agent, "query": "warehouse" })).await);
    assert!(theirs["results"].as_array().unwrap().is_empty());
    refused(
        &call(&other, "remember", json!({ "agent_id": agent, "content": "planted" })).await,
        "not_found",
    );

    // A token bound to an agent acts for it (agent_id may be left out) and for no other.
    let second = Uuid::new_v4();
    add_agent(&admin_pool, a.org, second, "second").await;
    let bound = connect(
        &server,
        &token(a.org, "memories:read,memories:write", Some(a.agent)).await,
    )
    .await;
    let own = ok(&call(&bound, "list_memories", json!({})).await);
    assert_eq!(ids(&own, "data", "id"), [memory.as_str()]);
    let message = refused(
        &call(
            &bound,
            "remember",
            json!({ "agent_id": second, "content": "for another agent" }),
        )
        .await,
        "permission_denied",
    );
    assert!(message.contains(&agent), "{message}");
    refused(
        &call(&bound, "list_memories", json!({ "agent_id": second })).await,
        "permission_denied",
    );
    // An org-wide token acting for the second agent does not reach the first one's memory.
    refused(
        &call(&writer, "forget", json!({ "agent_id": second, "memory_id": memory })).await,
        "not_found",
    );
    let kept = ok(&call(&bound, "forget", json!({ "memory_id": memory })).await);
    assert_eq!(kept["status"], "deleted");

    for client in [writer, reader, blind, other, bound] {
        client.cancel().await.unwrap();
    }
    server.stop().await;
}
