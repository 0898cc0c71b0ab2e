//! Cursor pagination of every list: keyset, never offset, so page 1,000 costs what page 1 costs
//! and rows written meanwhile neither repeat nor vanish. Lists are ordered newest first by
//! `(created_at, id)`; the cursor is that pair of the last row sent, opaque to clients
//! (base64url of a small JSON object, tagged with the list it belongs to so a cursor of one list
//! is refused by another).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::ApiError;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;
/// A cursor longer than this is not one of ours.
const MAX_CURSOR_LEN: usize = 256;

/// `?limit=&cursor=` of a list request.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Rows per page (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Where a page starts: after `(created_at, id)`, or at the newest row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct After {
    #[serde(rename = "t")]
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

#[derive(Serialize, Deserialize)]
struct CursorBody {
    /// The list the cursor belongs to.
    l: String,
    #[serde(flatten)]
    after: After,
}

/// A checked page request: how many rows, and after which.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub limit: u32,
    pub after: Option<After>,
}

/// A row of a list: where a page that ends with it continues.
pub trait Keyed {
    fn key(&self) -> After;
}

/// Rows with `created_at` and `id` are keyed by them.
macro_rules! keyed_by_created_at {
    ($($row:ty),+ $(,)?) => {
        $(impl $crate::api::page::Keyed for $row {
            fn key(&self) -> $crate::api::page::After {
                $crate::api::page::After { created_at: self.created_at, id: self.id }
            }
        })+
    };
}
pub(crate) use keyed_by_created_at;

impl PageRequest {
    /// The `limit` and `cursor` of a request for the list `list`.
    pub fn new(limit: Option<u32>, cursor: Option<&str>, list: &str) -> Result<Self, ApiError> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::InvalidRequest {
                message: format!("limit must be 1 to {MAX_LIMIT}, got {limit}"),
                details: Some(serde_json::json!({ "max_limit": MAX_LIMIT })),
            });
        }
        let after = match cursor {
            None | Some("") => None,
            Some(cursor) => Some(decode(cursor, list)?),
        };
        Ok(Self { limit, after })
    }

    /// [`Self::new`] of a `?limit=&cursor=` query.
    pub fn parse(query: &PageQuery, list: &str) -> Result<Self, ApiError> {
        Self::new(query.limit, query.cursor.as_deref(), list)
    }

    /// Rows to ask the database for: one more than the page, to know whether another follows.
    pub fn fetch(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    /// The page of `rows` (fetched with [`Self::fetch`]) and the cursor of the next one.
    pub fn finish<T: Keyed>(&self, mut rows: Vec<T>, list: &str) -> Page<T> {
        let more = rows.len() > self.limit as usize;
        rows.truncate(self.limit as usize);
        let next_cursor = if more {
            rows.last().map(|row| encode(&row.key(), list))
        } else {
            None
        };
        Page {
            data: rows,
            next_cursor,
        }
    }

    pub fn after_time(&self) -> Option<DateTime<Utc>> {
        self.after.map(|a| a.created_at)
    }

    pub fn after_id(&self) -> Option<Uuid> {
        self.after.map(|a| a.id)
    }

    /// The newest-first bound of this page: rows strictly before it.
    pub fn before(&self) -> After {
        After::or_newest(self.after)
    }
}

impl After {
    /// `after`, or a key past every row when a walk starts. Lists bind a bound always, never
    /// `$n IS NULL OR (created_at, id) < ($n, $m)`: a prepared statement's generic plan (which
    /// Postgres may pick after five runs) cannot use a bound behind an OR as an index condition,
    /// and would read the index from the newest row down to the cursor on every page.
    pub fn or_newest(after: Option<After>) -> After {
        after.unwrap_or(After {
            // 9999-12-31T23:59:59Z: later than any row, and in range for timestamptz.
            created_at: DateTime::from_timestamp(253_402_300_799, 0).unwrap_or_default(),
            id: Uuid::max(),
        })
    }
}

/// One page of a list: `next_cursor` is absent on the last page.
/// (Documented per item type in api/openapi.rs.)
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

pub fn encode(after: &After, list: &str) -> String {
    let body = CursorBody {
        l: list.to_string(),
        after: *after,
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&body).unwrap_or_default())
}

fn decode(cursor: &str, list: &str) -> Result<After, ApiError> {
    let bad = || ApiError::invalid("invalid cursor: pass the next_cursor of the previous page unchanged");
    if cursor.len() > MAX_CURSOR_LEN {
        return Err(bad());
    }
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let body: CursorBody = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if body.l != list {
        return Err(ApiError::invalid(format!(
            "this cursor belongs to another list ({}), not {list}",
            body.l
        )));
    }
    Ok(body.after)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(n: u128) -> After {
        After {
            created_at: DateTime::from_timestamp_micros(1_700_000_000_000_000 + n as i64).unwrap(),
            id: Uuid::from_u128(n),
        }
    }

    #[test]
    fn cursors_round_trip_and_are_bound_to_their_list() {
        let cursor = encode(&after(7), "agents");
        let query = PageQuery {
            limit: Some(10),
            cursor: Some(cursor.clone()),
        };
        assert_eq!(PageRequest::parse(&query, "agents").unwrap().after, Some(after(7)));
        assert!(PageRequest::parse(&query, "tokens").is_err());
        for bad in ["x", "!!!", &"a".repeat(300), &URL_SAFE_NO_PAD.encode(b"{\"l\":1}")] {
            let query = PageQuery {
                limit: None,
                cursor: Some(bad.to_string()),
            };
            assert_eq!(
                PageRequest::parse(&query, "agents").unwrap_err().code(),
                "invalid_request"
            );
        }
    }

    #[test]
    fn limits_are_bounded() {
        for limit in [0, MAX_LIMIT + 1] {
            let query = PageQuery {
                limit: Some(limit),
                cursor: None,
            };
            assert!(PageRequest::parse(&query, "agents").is_err());
        }
        assert_eq!(
            PageRequest::parse(&PageQuery::default(), "a").unwrap().limit,
            DEFAULT_LIMIT
        );
    }

    impl Keyed for After {
        fn key(&self) -> After {
            *self
        }
    }

    #[test]
    fn a_page_knows_whether_another_follows() {
        let request = PageRequest { limit: 2, after: None };
        let page = request.finish(vec![after(3), after(2), after(1)], "a");
        assert_eq!(page.data.len(), 2);
        assert_eq!(decode(page.next_cursor.as_deref().unwrap(), "a").unwrap(), after(2));
        assert!(request.before().created_at > Utc::now() && request.before().id == Uuid::max());
        let last = request.finish(vec![after(1)], "a");
        assert!(last.next_cursor.is_none());
    }
}
