//! pgvector's `vector` type, built directly in its on-disk layout so `ibex_embed()` returns a real
//! `vector` without a text or array round trip.
//!
//! Layout (pgvector src/vector.h): a 4-byte varlena header, `int16 dim`, `int16 unused` (zero),
//! then `dim` float4 values.
#![allow(unsafe_code)]

use std::cell::Cell;

use pgrx::callconv::{BoxRet, FcInfo};
use pgrx::datum::Datum;
use pgrx::pg_sys;
use pgrx::pgrx_sql_entity_graph::metadata::{
    ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable, TypeOrigin,
};
use pgrx::{IntoDatum, Spi};

/// An embedding on its way out to SQL as `vector`.
pub struct PgVector(pub Vec<f32>);

const HEADER_BYTES: usize = 8; // varlena header + dim + unused

thread_local! {
    static VECTOR_OID: Cell<pg_sys::Oid> = const { Cell::new(pg_sys::InvalidOid) };
}

/// OID of pgvector's `vector` type, looked up through the extension (whatever schema it is in)
/// once per backend.
fn vector_type_oid() -> pg_sys::Oid {
    let cached = VECTOR_OID.get();
    if cached != pg_sys::InvalidOid {
        return cached;
    }
    let oid = Spi::get_one::<pg_sys::Oid>(
        "SELECT t.oid FROM pg_catalog.pg_type t \
         JOIN pg_catalog.pg_extension e ON e.extnamespace = t.typnamespace \
         WHERE e.extname = 'vector' AND t.typname = 'vector'",
    )
    .ok()
    .flatten()
    .unwrap_or_else(|| {
        crate::postgres::errors::SqlError::new(
            pgrx::PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            "the vector extension is not installed",
        )
        .hint("CREATE EXTENSION vector; (ibex_pg requires pgvector 0.8)")
        .raise()
    });
    VECTOR_OID.set(oid);
    oid
}

impl IntoDatum for PgVector {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        let dim = self.0.len();
        let bytes = HEADER_BYTES + dim * std::mem::size_of::<f32>();
        // SAFETY: palloc0 returns `bytes` zeroed bytes in the current memory context (or raises
        // an ERROR); we write the header and exactly `dim` floats inside that allocation, with
        // pgvector's layout. dim is at most 16000 in pgvector and 384 here, well inside i16.
        unsafe {
            let ptr = pg_sys::palloc0(bytes) as *mut u8;
            pgrx::set_varsize_4b(ptr as *mut pg_sys::varlena, bytes as i32);
            (ptr.add(4) as *mut i16).write_unaligned(dim as i16);
            std::ptr::copy_nonoverlapping(self.0.as_ptr(), ptr.add(HEADER_BYTES) as *mut f32, dim);
            Some(pg_sys::Datum::from(ptr))
        }
    }

    fn type_oid() -> pg_sys::Oid {
        vector_type_oid()
    }
}

// SAFETY: the datum handed to Postgres is the palloc'd vector built by `into_datum`, returned
// from the function that owns `fcinfo`.
unsafe impl BoxRet for PgVector {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> Datum<'fcx> {
        match self.into_datum() {
            Some(datum) => unsafe { fcinfo.return_raw_datum(datum) },
            None => fcinfo.return_null(),
        }
    }
}

// SAFETY: the SQL type named here is exactly what `into_datum` produces.
unsafe impl SqlTranslatable for PgVector {
    const TYPE_IDENT: &'static str = pgrx::pgrx_resolved_type!(PgVector);
    const TYPE_ORIGIN: TypeOrigin = TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> = Ok(SqlMappingRef::literal("vector"));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> = Ok(ReturnsRef::One(SqlMappingRef::literal("vector")));
}
