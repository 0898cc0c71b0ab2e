//! Database refusals as API errors. The SQL functions say precisely what is wrong (SQLSTATE,
//! message, detail, hint: sql/api/*.sql); the API passes that on with the status the class of
//! error calls for, and keeps failures of the database itself (connection, cancel, a bug) away
//! from the client.

use serde_json::json;
use sqlx::postgres::PgDatabaseError;

use crate::error::ApiError;

/// The status and stable code of a SQLSTATE the client caused, or `None` for the database's own
/// failures.
fn classify(sqlstate: &str) -> Option<(u16, &'static str)> {
    Some(match sqlstate {
        // no_data_found (P0002 in plpgsql's SELECT INTO STRICT), foreign key to a missing row.
        "02000" | "P0002" | "23503" => (404, "not_found"),
        "23505" => (409, "already_exists"),
        // object_not_in_prerequisite_state: the resource's state forbids the change.
        "55000" => (409, "conflict"),
        "42501" => (403, "permission_denied"),
        "54000" => (413, "payload_too_large"),
        s if s.starts_with("22") || s.starts_with("23") => (400, "invalid_request"),
        _ => return None,
    })
}

/// `context` names the operation for the log when the failure is the database's.
pub fn from_sqlx(context: &str, error: sqlx::Error) -> ApiError {
    if let sqlx::Error::Database(db) = &error {
        if let Some(pg) = db.try_downcast_ref::<PgDatabaseError>() {
            if let Some((status, code)) = classify(pg.code()) {
                return ApiError::Rejected {
                    status,
                    code,
                    message: pg.message().to_string(),
                    details: json!({ "sqlstate": pg.code(), "detail": pg.detail(), "hint": pg.hint() }),
                };
            }
            // Classes 08 (connection), 40 (serialization), 53 (resources), 57 (cancel, shutdown):
            // retrying later may work. Anything else is a fault of ours.
            let transient = ["08", "40", "53", "57"].iter().any(|c| pg.code().starts_with(c));
            if !transient {
                return ApiError::Internal(format!("{context}: SQLSTATE {}: {}", pg.code(), pg.message()));
            }
        }
    }
    ApiError::database(context, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_by_class() {
        assert_eq!(classify("22023"), Some((400, "invalid_request")));
        assert_eq!(classify("23514"), Some((400, "invalid_request")));
        assert_eq!(classify("23505"), Some((409, "already_exists")));
        assert_eq!(classify("P0002"), Some((404, "not_found")));
        assert_eq!(classify("55000"), Some((409, "conflict")));
        assert_eq!(classify("57014"), None);
        assert_eq!(classify("XX000"), None);
    }
}
