//! One place that turns domain errors into Postgres errors: SQLSTATE, message, detail, hint.

use ibex_engine::EmbedError;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// A user-facing SQL error. `raise` never returns.
pub struct SqlError {
    code: PgSqlErrorCode,
    message: String,
    detail: Option<String>,
    hint: Option<String>,
}

impl SqlError {
    pub fn new(code: PgSqlErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, message)
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    #[track_caller]
    pub fn raise(self) -> ! {
        let mut report = ErrorReport::new(self.code, self.message, "ibex_pg");
        if let Some(detail) = self.detail {
            report = report.set_detail(detail);
        }
        if let Some(hint) = self.hint {
            report = report.set_hint(hint);
        }
        report.report(PgLogLevel::ERROR);
        unreachable!("ERROR-level reports do not return")
    }
}

impl From<EmbedError> for SqlError {
    fn from(e: EmbedError) -> Self {
        match &e {
            EmbedError::MissingFile { setting, .. } | EmbedError::InvalidFile { setting, .. } => {
                SqlError::new(PgSqlErrorCode::ERRCODE_CONFIG_FILE_ERROR, "the embedding model could not be loaded")
                    .detail(e.to_string())
                    .hint(format!(
                        "Point {setting} at the files installed by `make setup` (ALTER SYSTEM SET {setting} = '...'; SELECT pg_reload_conf();)."
                    ))
            }
            EmbedError::EmptyText { index } => SqlError::invalid_parameter("cannot embed an empty text")
                .detail(format!("text {} of the input is empty or only whitespace", index + 1))
                .hint("Filter empty texts out first, e.g. WHERE btrim(content) <> ''."),
            EmbedError::BatchTooLarge { len, max } => {
                SqlError::new(PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED, "too many texts in one embedding batch")
                    .detail(format!("got {len} texts; the limit is {max}"))
                    .hint(format!("Split the input into batches of at most {max} texts."))
            }
            EmbedError::TooManyTokens { total, max } => {
                SqlError::new(PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED, "too many tokens in one embedding batch")
                    .detail(format!(
                        "the texts hold {total} model tokens together; the limit (ibex.max_embed_batch_tokens) is {max}"
                    ))
                    .hint("Split the input into smaller batches.")
            }
            EmbedError::Tokenize(_) | EmbedError::UnexpectedOutput(_) | EmbedError::Runtime(_) => {
                SqlError::new(PgSqlErrorCode::ERRCODE_EXTERNAL_ROUTINE_EXCEPTION, "embedding inference failed")
                    .detail(e.to_string())
            }
        }
    }
}

/// Raises `Err` values as SQL errors.
pub trait OrRaise<T> {
    fn or_raise(self) -> T;
}

impl<T, E: Into<SqlError>> OrRaise<T> for Result<T, E> {
    #[track_caller]
    fn or_raise(self) -> T {
        match self {
            Ok(v) => v,
            Err(e) => e.into().raise(),
        }
    }
}
