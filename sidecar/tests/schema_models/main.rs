//! The Rust models and the live schema must agree on every column's name, type and nullability.

#[path = "../common.rs"]
mod common;
mod models;

use std::collections::BTreeMap;

use models::ColumnSpec;

/// (type, nullable) of each column of ibex_core.<table> as Postgres reports it.
async fn live_columns(pool: &sqlx::PgPool, table: &str) -> BTreeMap<String, (String, bool)> {
    let rows: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull
         FROM pg_attribute a
         WHERE a.attrelid = to_regclass(CASE WHEN strpos($1, '.') > 0 THEN $1 ELSE format('ibex_core.%I', $1::text) END)
           AND a.attnum > 0 AND NOT a.attisdropped
         ORDER BY a.attnum",
    )
    .bind(table)
    .fetch_all(pool)
    .await
    .expect("catalog query");
    rows.into_iter()
        .map(|(name, ty, nullable)| (name, (ty, nullable)))
        .collect()
}

/// Every disagreement between a model and its table, as readable lines.
fn disagreements(
    table: &str,
    model: &[ColumnSpec],
    unmapped: &[&str],
    live: &BTreeMap<String, (String, bool)>,
) -> Vec<String> {
    let mut problems = Vec::new();
    if live.is_empty() {
        problems.push(format!("{table}: table does not exist"));
        return problems;
    }
    for col in model {
        match live.get(col.name) {
            None => problems.push(format!("{table}.{}: in the model, not in the table", col.name)),
            Some((ty, nullable)) => {
                if ty != col.pg_type {
                    problems.push(format!(
                        "{table}.{}: model type {} but column is {ty}",
                        col.name, col.pg_type
                    ));
                }
                if *nullable != col.nullable {
                    problems.push(format!(
                        "{table}.{}: model nullable={} but column nullable={nullable}",
                        col.name, col.nullable
                    ));
                }
            }
        }
    }
    for name in live.keys() {
        if !model.iter().any(|c| c.name == name) && !unmapped.contains(&name.as_str()) {
            problems.push(format!("{table}.{name}: in the table, not in the model"));
        }
    }
    problems
}

#[tokio::test]
async fn every_model_matches_the_live_schema() {
    let pool = common::admin_pool().await;
    let mut problems = Vec::new();
    for (table, columns, unmapped) in models::all_tables() {
        problems.extend(disagreements(
            table,
            &columns,
            unmapped,
            &live_columns(&pool, table).await,
        ));
    }
    assert!(
        problems.is_empty(),
        "models and schema disagree:\n{}",
        problems.join("\n")
    );
}

#[tokio::test]
async fn every_table_has_a_model() {
    let pool = common::admin_pool().await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT CASE WHEN relnamespace = 'ibex_core'::regnamespace THEN relname::text ELSE 'ibex_ops.' || relname END
         FROM pg_class WHERE relnamespace IN ('ibex_core'::regnamespace, 'ibex_ops'::regnamespace) AND relkind = 'r' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let modelled: Vec<&str> = models::all_tables().iter().map(|(t, _, _)| *t).collect();
    let missing: Vec<&String> = tables.iter().filter(|t| !modelled.contains(&t.as_str())).collect();
    assert!(missing.is_empty(), "tables without a model: {missing:?}");
}

#[test]
fn the_comparison_catches_each_kind_of_drift() {
    let live: BTreeMap<String, (String, bool)> = [
        ("id".to_string(), ("uuid".to_string(), false)),
        ("score".to_string(), ("real".to_string(), true)),
        ("extra".to_string(), ("text".to_string(), false)),
    ]
    .into();
    let model = [
        ColumnSpec {
            name: "id",
            pg_type: "uuid",
            nullable: false,
        },
        ColumnSpec {
            name: "score",
            pg_type: "double precision",
            nullable: false,
        },
        ColumnSpec {
            name: "gone",
            pg_type: "text",
            nullable: false,
        },
    ];
    let found = disagreements("t", &model, &[], &live);
    assert_eq!(
        found,
        vec![
            "t.score: model type double precision but column is real",
            "t.score: model nullable=false but column nullable=true",
            "t.gone: in the model, not in the table",
            "t.extra: in the table, not in the model",
        ]
    );
    assert!(disagreements("t", &model[..1], &["score", "extra"], &live).is_empty());
}

#[tokio::test]
async fn models_decode_real_rows() {
    let admin = common::admin_pool().await;
    let (org, agent) = common::org_with_agent(&admin, "decode").await;
    sqlx::query(
        "INSERT INTO ibex_core.memories (org_id, agent_id, content, content_hash, embedding, category)
         VALUES ($1, $2, 'likes green tea', ibex_content_hash('likes green tea'), ibex_embed('likes green tea'), 'declarative')",
    )
    .bind(org)
    .bind(agent)
    .execute(&admin)
    .await
    .unwrap();
    let app = common::app_pool().await;
    let mut tx = ibex_sidecar::db::begin_for_org(&app, org).await.unwrap();
    let memory: models::Memory = sqlx::query_as("SELECT * FROM ibex_core.memories")
        .fetch_one(&mut *tx)
        .await
        .expect("decodes into Memory");
    assert_eq!(memory.agent_id, agent);
    assert_eq!(memory.embedding.as_slice().len(), 384);
    let org_row: models::Org = sqlx::query_as("SELECT * FROM ibex_core.orgs")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(org_row.id, org);
    tx.commit().await.unwrap();
}
