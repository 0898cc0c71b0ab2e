//! `GET /v1/memories/export`: every memory of the org (or one agent) matching the filters, as
//! JSON Lines or CSV, streamed. Rows are read in keyset chunks of [`CHUNK`], each in its own short
//! transaction, and written out as they come: an export of 100k memories holds one chunk in
//! memory at a time and no transaction open for minutes. A failure mid-stream ends the response
//! early (the client sees a truncated body and the log says why); checks come before the first byte.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::Response;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{ApiQuery, Caller};
use super::memories::{Memory, COLUMNS};
use super::page::{After, Keyed};
use super::sql_error::from_sqlx;
use crate::error::ApiError;
use crate::state::AppState;

/// Rows read per round trip.
const CHUNK: i64 = 500;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    #[default]
    Jsonl,
    Csv,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// jsonl (default) or csv.
    #[param(inline)]
    pub format: Option<Format>,
    pub agent_id: Option<Uuid>,
    pub category: Option<String>,
    pub status: Option<String>,
}

#[derive(Clone)]
struct Filter {
    org: Uuid,
    agent: Option<Uuid>,
    category: Option<String>,
    status: Option<String>,
}

const CSV_HEADER: &str = "id,agent_id,category,status,confidence,tags,created_at,updated_at,content,metadata\n";

/// One CSV field: quoted when it holds a separator, quote or line break; a leading `=`, `+`, `-`
/// or `@` is escaped with a quote character so a spreadsheet does not run it as a formula.
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn csv_line(m: &Memory) -> String {
    let fields = [
        m.id.to_string(),
        m.agent_id.to_string(),
        m.category.clone(),
        m.status.clone(),
        m.confidence.to_string(),
        m.tags.join(";"),
        m.created_at.to_rfc3339(),
        m.updated_at.to_rfc3339(),
        m.content.clone(),
        m.metadata.to_string(),
    ];
    let mut line = fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(",");
    line.push('\n');
    line
}

fn encode(rows: &[Memory], format: Format) -> Bytes {
    let mut out = String::new();
    for row in rows {
        match format {
            Format::Jsonl => {
                out.push_str(&serde_json::to_string(row).unwrap_or_default());
                out.push('\n');
            }
            Format::Csv => out.push_str(&csv_line(row)),
        }
    }
    Bytes::from(out)
}

async fn chunk(pool: &sqlx::PgPool, filter: &Filter, after: Option<After>) -> Result<Vec<Memory>, ApiError> {
    let before = After::or_newest(after);
    let mut tx = crate::db::begin_for_org(pool, filter.org)
        .await
        .map_err(|e| from_sqlx("exporting memories", e))?;
    let rows = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM ibex_core.memories m
         WHERE m.org_id = $1 AND ($2::uuid IS NULL OR m.agent_id = $2) AND ($3::text IS NULL OR m.category = $3)
           AND ($4::text IS NULL OR m.status = $4)
           AND (m.created_at, m.id) < ($5, $6)
         ORDER BY m.created_at DESC, m.id DESC LIMIT $7"
    ))
    .bind(filter.org)
    .bind(filter.agent)
    .bind(&filter.category)
    .bind(&filter.status)
    .bind(before.created_at)
    .bind(before.id)
    .bind(CHUNK)
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| from_sqlx("exporting memories", e))?;
    tx.commit().await.map_err(|e| from_sqlx("exporting memories", e))?;
    Ok(rows)
}

enum Cursor {
    After(After),
    Done,
}

#[utoipa::path(
    get,
    path = "/v1/memories/export",
    operation_id = "memories_export",
    tag = "memories",
    description = "Every memory matching the filters, streamed as JSON Lines (one Memory object a line) or CSV. Scope: `memories:read`.",
    params(ExportQuery),
    responses((status = 200, description = "The memories, streamed", content((String = "application/x-ndjson"), (String = "text/csv")))),
)]
pub async fn export(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    caller.require_scope("memories:read")?;
    if let Some(agent) = query.agent_id {
        caller.require_agent(agent)?;
    }
    let pool = super::pool(&state)?.clone();
    let format = query.format.unwrap_or_default();
    let filter = Filter {
        org: caller.org_id,
        agent: query.agent_id.or(caller.agent_id),
        category: query.category,
        status: query.status,
    };
    // The first chunk is read before answering, so a refusal (bad filter, database down) is an
    // error envelope, not a truncated 200.
    let first = chunk(&pool, &filter, None).await?;
    let head = match format {
        Format::Csv => Bytes::from_static(CSV_HEADER.as_bytes()),
        Format::Jsonl => Bytes::new(),
    };
    let next = |rows: &[Memory]| match rows.last() {
        Some(last) if rows.len() as i64 == CHUNK => Cursor::After(last.key()),
        _ => Cursor::Done,
    };
    let body_start = Bytes::from([head, encode(&first, format)].concat());
    let cursor = next(&first);
    let rest = futures_util::stream::unfold(cursor, move |cursor| {
        let (pool, filter) = (pool.clone(), filter.clone());
        async move {
            let after = match cursor {
                Cursor::Done => return None,
                Cursor::After(after) => after,
            };
            match chunk(&pool, &filter, Some(after)).await {
                Ok(rows) => {
                    let bytes = encode(&rows, format);
                    let following = next(&rows);
                    Some((Ok::<_, std::io::Error>(bytes), following))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "memory export ended early");
                    Some((Err(std::io::Error::other(e.to_string())), Cursor::Done))
                }
            }
        }
    });
    let stream = futures_util::StreamExt::chain(
        futures_util::stream::once(async move { Ok::<_, std::io::Error>(body_start) }),
        rest,
    );
    let (content_type, file) = match format {
        Format::Jsonl => ("application/x-ndjson", "memories.jsonl"),
        Format::Csv => ("text/csv; charset=utf-8", "memories.csv"),
    };
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_DISPOSITION, format!("attachment; filename=\"{file}\""))
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::Internal(format!("building the export response: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("line\nbreak"), "\"line\nbreak\"");
        assert_eq!(csv_field("=SUM(A1)"), "'=SUM(A1)");
        assert_eq!(csv_field("-1,2"), "\"'-1,2\"");
    }
}
