use pgrx::prelude::*;

use crate::gucs;
use crate::postgres::errors::{OrRaise, SqlError};
use crate::postgres::model;
use crate::postgres::vector::PgVector;
use ibex_engine::embed::MAX_BATCH;

/// all-MiniLM-L6-v2 sentence embedding of `text`: 384 dimensions, unit length.
/// STABLE rather than IMMUTABLE: the result depends on the configured model, so it must never be
/// frozen into an index expression.
#[pg_extern(stable, parallel_safe, cost = 5000)]
fn ibex_embed(text: &str) -> PgVector {
    let embedder = model::embedder().or_raise();
    PgVector(embedder.embed(text).or_raise())
}

/// Embeds up to 512 texts holding at most `ibex.max_embed_batch_tokens` model tokens together,
/// in forward passes of bounded size (ONNX Runtime's memory stays bounded), checking for a
/// cancelled query before each pass. NULL elements give NULL elements.
#[pg_extern(stable, parallel_safe, cost = 100000)]
fn ibex_embed_batch(texts: Array<&str>) -> Vec<Option<PgVector>> {
    if texts.len() > MAX_BATCH {
        SqlError::new(
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            "too many texts in one embedding batch",
        )
        .detail(format!("got {} texts; the limit is {MAX_BATCH}", texts.len()))
        .hint(format!(
            "Split the input into batches of at most {MAX_BATCH} texts, e.g. with array slices."
        ))
        .raise();
    }
    let present: Vec<&str> = texts.iter().flatten().collect();
    let embedder = model::embedder().or_raise();
    let mut vectors = embedder
        .embed_batch_bounded(
            &present,
            Some(gucs::max_embed_batch_tokens()),
            &mut check_for_interrupts,
        )
        .or_raise()
        .into_iter();
    texts
        .iter()
        .map(|text| text.map(|_| PgVector(vectors.next().expect("one vector per text"))))
        .collect()
}

/// Called between forward passes: a cancelled query (statement timeout, pg_cancel_backend) stops
/// there instead of after the whole batch.
fn check_for_interrupts() {
    pgrx::check_for_interrupts!();
}
