//! Rust models of every ibex_core table (sqlx `FromRow`): the schema's contract, kept with the
//! test that checks it. The service reads function results into row structs of its own.
//!
//! Each model is declared once with [`model!`], which also records the Postgres type and
//! nullability implied by each field's Rust type. `main.rs` compares that record with the live
//! schema, so a migration that renames, retypes or changes the nullability of a column fails the
//! tests until the model follows.

// Fields are read only through the schema comparison and the decoding checks, not by name.
#![allow(dead_code)]

mod column_types;
mod memory;
mod ops;
mod tenancy;

pub use column_types::{ColumnSpec, SqlColumnType, TableModel};
pub use memory::*;
pub use ops::*;
pub use tenancy::*;

/// Declares a model struct and its [`TableModel`] description from one field list. Columns
/// that no model field maps (with the reason) go in `unmapped`.
#[macro_export]
macro_rules! model {
    (
        $(#[$meta:meta])*
        pub struct $name:ident in $table:literal {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty ),* $(,)?
        }
        $(unmapped { $( $skip:literal => $why:literal ),* $(,)? })?
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty ),*
        }

        impl $crate::models::TableModel for $name {
            const TABLE: &'static str = $table;

            fn columns() -> Vec<$crate::models::ColumnSpec> {
                vec![$(
                    $crate::models::ColumnSpec {
                        name: stringify!($field),
                        pg_type: <$ty as $crate::models::SqlColumnType>::PG_TYPE,
                        nullable: <$ty as $crate::models::SqlColumnType>::NULLABLE,
                    }
                ),*]
            }

            fn unmapped() -> &'static [&'static str] {
                &[$($($skip),*)?]
            }
        }
    };
}

/// Every model, for checks that walk all tables. Names without a schema are in ibex_core.
pub fn all_tables() -> Vec<(&'static str, Vec<ColumnSpec>, &'static [&'static str])> {
    fn entry<M: TableModel>() -> (&'static str, Vec<ColumnSpec>, &'static [&'static str]) {
        (M::TABLE, M::columns(), M::unmapped())
    }
    vec![
        entry::<Org>(),
        entry::<User>(),
        entry::<Agent>(),
        entry::<ApiToken>(),
        entry::<Directive>(),
        entry::<DirectiveVersion>(),
        entry::<Session>(),
        entry::<SessionTurn>(),
        entry::<UsageEvent>(),
        entry::<UsageHour>(),
        entry::<UsageRollupMark>(),
        entry::<OutboxEvent>(),
        entry::<DeadLetter>(),
        entry::<Memory>(),
        entry::<MemoryVersion>(),
        entry::<MemoryRelationship>(),
        entry::<MemoryConflict>(),
        entry::<MemoryReview>(),
        entry::<Tag>(),
        entry::<MemoryTag>(),
        entry::<MemoryAccess>(),
        entry::<LexemeStat>(),
        entry::<AgentMemoryStat>(),
        entry::<MaintenanceLogEntry>(),
        entry::<WorkerCounter>(),
        entry::<SqlApiFile>(),
        entry::<OrgLogin>(),
        entry::<HotCacheEviction>(),
        entry::<ArchiveDeletion>(),
    ]
}
