//! The management API's OpenAPI 3.1 document, generated from the code: each handler's
//! `#[utoipa::path]` (method, path, parameters, body, success answers, scope) and each type's
//! `ToSchema`/`IntoParams`. What every route shares is added here once by [`Shared`]: the bearer
//! scheme, and the error answers (all in the [`ErrorEnvelope`] of `crate::error`) that the
//! extractors, the idempotency layer and the SQL refusals can give. Served at `GET /openapi.json`.

use axum::http::header;
use axum::response::IntoResponse;
use serde_json::Value;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::{Modify, OpenApi, ToSchema};

use super::{agents, analytics, conflicts, directives, export, memories, orgs, overview, sessions, tokens, users};

/// Every error answer: `{"error": {...}}`.
#[derive(ToSchema)]
#[allow(dead_code)] // documentation only: the envelope is built by `ApiError::envelope`
pub struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    /// Stable machine-readable code (`invalid_request`, `not_found`, `invalid_transition`, ...):
    /// clients branch on this, never on the message.
    code: String,
    message: String,
    /// Structured context of some errors (the allowed states of a refused transition, the
    /// SQLSTATE of a database refusal, limits).
    details: Option<Value>,
    /// The request's id (also in the `x-request-id` header).
    request_id: Option<String>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "IBEX management API",
        description = "Manage what an IBEX deployment remembers: agents and their directives, memories and their \
                       conflicts, sessions, users, API tokens, usage, and (for platform operators) orgs. Every \
                       request carries `Authorization: Bearer <IBEX API token>`; each operation names the scope it \
                       needs. Lists are cursor-paginated (`limit`, `cursor` = the previous page's `next_cursor`). \
                       POSTs honour an `Idempotency-Key` header. Errors share one envelope (`ErrorEnvelope`).",
        license(name = "Apache-2.0")
    ),
    paths(
        agents::create, agents::list, agents::get, agents::update, agents::set_status, agents::delete,
        directives::list, directives::create, directives::get, directives::change, directives::archive,
        directives::versions, directives::version,
        memories::list, memories::get, memories::create, memories::feedback, memories::forget,
        export::export,
        conflicts::list, conflicts::resolve,
        sessions::list, sessions::get, sessions::turns, sessions::complete, sessions::replay_link, sessions::replay,
        sessions::delete,
        users::create, users::list, users::get, users::update, users::deactivate,
        analytics::usage, overview::get,
        orgs::create, orgs::list, orgs::get, orgs::update, orgs::suspend, orgs::resume, orgs::delete,
        tokens::create, tokens::list, tokens::get, tokens::revoke,
    ),
    // Listed so that references from hand-written schemas (Listing) and generic pages resolve.
    components(schemas(
        ErrorEnvelope, ErrorBody, memories::Memory, memories::Hit, memories::Ranked,
        agents::AgentStatus, users::Role, users::UserStatus, conflicts::Decision,
    )),
    modifiers(&Shared),
    tags(
        (name = "agents"), (name = "directives"), (name = "memories"), (name = "conflicts"),
        (name = "sessions"), (name = "users"), (name = "tokens"), (name = "analytics"),
        (name = "orgs", description = "Platform operators only (scope `platform:admin`)")
    )
)]
pub struct ApiDoc;

/// The document, built once.
pub fn document() -> &'static Value {
    static DOC: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    DOC.get_or_init(|| serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serializes"))
}

/// `GET /openapi.json` (unauthenticated: the document names no secret).
pub async fn serve() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], axum::Json(document()))
}

const BEARER: &str = "bearer";

/// What every management operation shares.
struct Shared;

impl Modify for Shared {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("IBEX API token (ibx_...)")
                    .build(),
            ),
        );
        for item in openapi.paths.paths.values_mut() {
            for (method, operation) in operations(item) {
                operation.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
                for (status, description) in errors(method, operation) {
                    operation
                        .responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| RefOr::T(error_response(description)));
                }
            }
        }
    }
}

fn operations(item: &mut PathItem) -> Vec<(&'static str, &mut Operation)> {
    [
        ("get", item.get.as_mut()),
        ("post", item.post.as_mut()),
        ("put", item.put.as_mut()),
        ("patch", item.patch.as_mut()),
        ("delete", item.delete.as_mut()),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.map(|op| (m, op)))
    .collect()
}

/// Reads of a session's archive: 409 until it is archived.
const ARCHIVE_READS: &[&str] = &["sessions_replay_link", "sessions_replay"];

/// The error answers an operation can give, by what it takes (`crate::error` decides statuses).
fn errors(method: &str, operation: &Operation) -> Vec<(u16, &'static str)> {
    let has_path = operation
        .parameters
        .iter()
        .flatten()
        .any(|p| matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Path));
    let has_body = operation.request_body.is_some();
    let mut out = vec![
        (
            400,
            "Invalid request: query, path or body malformed, or refused by the database's checks",
        ),
        (401, "Missing, unknown, expired or revoked token"),
        (403, "The token lacks the scope, or is bound to another agent"),
    ];
    if has_path || has_body || method != "get" {
        out.push((
            404,
            "A resource named by the request does not exist in the caller's org",
        ));
    }
    let operation_id = operation.operation_id.as_deref().unwrap_or_default();
    if method != "get" {
        out.push((409, "Conflicts with the resource's state (a name taken, a refused transition), or an Idempotency-Key still running"));
    } else if ARCHIVE_READS.contains(&operation_id) {
        out.push((409, "The session is not archived yet"));
    }
    if operation_id == "sessions_replay" {
        out.push((
            502,
            "The session's archive is missing from the object store (archive_missing) or damaged (archive_damaged)",
        ));
    }
    if has_body || method == "post" {
        out.push((413, "Body over the size limit"));
    }
    if has_body {
        out.push((415, "Body without a JSON content type"));
    }
    if method == "post" {
        out.push((422, "An Idempotency-Key reused for a different request"));
    }
    out.push((429, "The token is over its rate limit (Retry-After says when to retry)"));
    out.push((500, "Internal error (details are logged, never sent)"));
    out.push((
        503,
        "The database (or, with an Idempotency-Key, Redis) is unavailable; retry shortly",
    ));
    out
}

fn error_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ErrorEnvelope::name())))
                .build(),
        )
        .build()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// `(method, path)` of every route `api::routes()` declares, read from its source: a route
    /// added there without a `#[utoipa::path]` fails [`every_route_is_documented`].
    fn declared_routes() -> BTreeSet<(String, String)> {
        let source = include_str!("mod.rs");
        let body = &source[source.find("pub fn routes(").expect("routes() in api/mod.rs")..];
        let body = &body[..body.find("\n}\n").expect("end of routes()")];
        let mut routes = BTreeSet::new();
        for chunk in body.split(".route(").skip(1) {
            let chunk = chunk.trim_start();
            let path = chunk.strip_prefix('"').expect("a route path literal");
            let path = &path[..path.find('"').unwrap()];
            // The method router: up to the `)` that closes `.route(`.
            let mut depth = 1;
            let end = chunk
                .char_indices()
                .find_map(|(i, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    (depth == 0).then_some(i)
                })
                .expect("balanced .route(...)");
            let methods = &chunk[..end];
            for method in ["get", "post", "put", "patch", "delete"] {
                let call = format!("{method}(");
                let mut rest = methods;
                while let Some(i) = rest.find(&call) {
                    let before = rest[..i].chars().last();
                    // `get(` or `.get(`, never `agents::get` nor `forget(`.
                    if !matches!(before, Some(c) if c.is_alphanumeric() || c == '_' || c == ':') {
                        routes.insert((method.to_string(), path.to_string()));
                    }
                    rest = &rest[i + call.len()..];
                }
            }
        }
        routes
    }

    fn documented_routes() -> BTreeSet<(String, String)> {
        let doc = document();
        let mut routes = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                    routes.insert((method.clone(), path.clone()));
                }
            }
        }
        routes
    }

    #[test]
    fn every_route_is_documented() {
        let declared = declared_routes();
        assert!(declared.len() >= 40, "routes() parsed: {declared:?}");
        let documented = documented_routes();
        let undocumented: Vec<_> = declared.difference(&documented).collect();
        let phantom: Vec<_> = documented.difference(&declared).collect();
        assert!(
            undocumented.is_empty(),
            "routes without #[utoipa::path]: {undocumented:?}"
        );
        assert!(phantom.is_empty(), "documented but not routed: {phantom:?}");
    }

    #[test]
    fn operation_ids_are_unique() {
        let mut seen = BTreeSet::new();
        for item in document()["paths"].as_object().unwrap().values() {
            for operation in item.as_object().unwrap().values() {
                if let Some(id) = operation["operationId"].as_str() {
                    assert!(seen.insert(id.to_string()), "operationId {id} twice");
                }
            }
        }
        assert!(seen.len() >= 42);
    }

    /// Every `$ref` names a schema of the document.
    #[test]
    fn references_resolve() {
        fn refs(value: &Value, out: &mut Vec<String>) {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(r)) = map.get("$ref") {
                        out.push(r.clone());
                    }
                    map.values().for_each(|v| refs(v, out));
                }
                Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let doc = document();
        let mut found = Vec::new();
        refs(doc, &mut found);
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for r in found {
            let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{r}"));
            assert!(schemas.contains_key(name), "dangling $ref {r}");
        }
    }

    /// `IBEX_OPENAPI_OUT=<file> cargo test ... write_document -- --ignored` writes the document.
    #[test]
    #[ignore]
    fn write_document() {
        let out = std::env::var("IBEX_OPENAPI_OUT").expect("IBEX_OPENAPI_OUT");
        std::fs::write(out, serde_json::to_string_pretty(document()).unwrap()).unwrap();
    }

    #[test]
    fn bodies_refuse_unknown_fields_and_ids_are_uuids() {
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        for body in [
            "CreateAgent",
            "UpdateAgent",
            "CreateMemory",
            "CreateToken",
            "Resolve",
            "CreateOrg",
        ] {
            assert_eq!(schemas[body]["additionalProperties"], false, "{body}");
        }
        assert_eq!(schemas["Agent"]["properties"]["id"]["format"], "uuid");
        assert_eq!(schemas["Agent"]["properties"]["created_at"]["format"], "date-time");
        let description = &schemas["Agent"]["properties"]["description"]["type"];
        assert!(
            description.as_array().unwrap().contains(&"null".into()),
            "{description}"
        );
        let create = &doc["paths"]["/v1/agents"]["post"];
        assert!(create["description"].as_str().unwrap().contains("agents:write"));
        assert!(create["responses"]["401"]["content"]["application/json"].is_object());
        assert_eq!(create["security"][0]["bearer"], serde_json::json!([]));
    }
}
