//! The Postgres type (as `format_type()` prints it) behind each Rust field type.

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub trait SqlColumnType {
    const PG_TYPE: &'static str;
    const NULLABLE: bool = false;
}

impl<T: SqlColumnType> SqlColumnType for Option<T> {
    const PG_TYPE: &'static str = T::PG_TYPE;
    const NULLABLE: bool = true;
}

macro_rules! column_type {
    ($($ty:ty => $pg:literal),* $(,)?) => {
        $(impl SqlColumnType for $ty { const PG_TYPE: &'static str = $pg; })*
    };
}

column_type! {
    Uuid => "uuid",
    String => "text",
    Vec<String> => "text[]",
    Vec<i32> => "integer[]",
    Vec<i64> => "bigint[]",
    Vec<u8> => "bytea",
    i32 => "integer",
    i64 => "bigint",
    f32 => "real",
    f64 => "double precision",
    bool => "boolean",
    DateTime<Utc> => "timestamp with time zone",
    serde_json::Value => "jsonb",
    // Every embedding column in IBEX is all-MiniLM-L6-v2's width.
    pgvector::Vector => "vector(384)",
}

/// One column as a model sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSpec {
    pub name: &'static str,
    pub pg_type: &'static str,
    pub nullable: bool,
}

pub trait TableModel {
    /// Table name: inside the ibex_core schema, or schema-qualified ("ibex_ops.maintenance_log").
    const TABLE: &'static str;
    fn columns() -> Vec<ColumnSpec>;
    /// Columns deliberately not mapped to a field.
    fn unmapped() -> &'static [&'static str];
}
