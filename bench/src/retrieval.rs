//! Seeding memories in bulk and measuring retrieval quality (recall@k) of several rankers on a
//! labelled [`Dataset`]. Used by `make bench-memory` and by the end-to-end quality test.

use std::collections::HashMap;

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::dataset::{Dataset, Memory, QueryStyle};

/// Texts per `ibex_embed_batch` call while seeding.
pub const SEED_CHUNK: usize = 256;

/// Inserts memories directly (not through `remember`): bulk loading with batch embedding. The
/// text is redacted and hashed exactly as `remember` would; supersession is deliberately skipped
/// (a benchmark corpus is what it is). Returns the ids in input order.
pub async fn seed(
    conn: &mut PgConnection,
    org: Uuid,
    agent: Uuid,
    memories: &[Memory],
    mut progress: impl FnMut(usize),
) -> sqlx::Result<Vec<Uuid>> {
    let mut ids = Vec::with_capacity(memories.len());
    for chunk in memories.chunks(SEED_CHUNK) {
        let contents: Vec<String> = chunk
            .iter()
            .map(|m| ibex_engine::pii::redact(&m.content).text)
            .collect();
        let categories: Vec<&str> = chunk.iter().map(|m| m.category).collect();
        let chunk_ids: Vec<Uuid> = sqlx::query_scalar(
            "INSERT INTO ibex_core.memories (org_id, agent_id, content, content_hash, embedding, category, confidence)
             SELECT $1, $2, c.content, ibex_content_hash(c.content), e.embedding, c.category, 0.8
             FROM unnest($3::text[], $4::text[]) WITH ORDINALITY AS c(content, category, i)
             JOIN unnest(ibex_embed_batch($3::text[])) WITH ORDINALITY AS e(embedding, i) USING (i)
             ORDER BY c.i
             RETURNING id",
        )
        .bind(org)
        .bind(agent)
        .bind(&contents)
        .bind(&categories)
        .fetch_all(&mut *conn)
        .await?;
        ids.extend(chunk_ids);
        progress(ids.len());
    }
    Ok(ids)
}

/// A way of ranking an agent's memories for a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ranker {
    /// Exact cosine similarity of the embeddings (no index): the best a vector-only system does.
    Vector,
    /// Postgres full-text search: OR of the query's lexemes, ranked by ts_rank_cd.
    FullText,
    /// IBEX's lexical evidence alone (BM25-style idf coverage): `search` with weight 1.
    Lexical,
    /// `ibex_core.search` as shipped.
    Ibex,
    /// `ibex_core.search` with `ibex.search_bridging = off`: the ranking before bridging.
    IbexUnbridged,
}

impl Ranker {
    pub fn label(self) -> &'static str {
        match self {
            Ranker::Vector => "vector only (exact cosine)",
            Ranker::FullText => "full text (ts_rank_cd)",
            Ranker::Lexical => "full text (BM25-style idf)",
            Ranker::Ibex => "IBEX search",
            Ranker::IbexUnbridged => "IBEX search, no bridging",
        }
    }
}

/// Top `k` memory ids for `query` by `ranker`. The connection must have ibex.org_id set to `org`.
pub async fn rank(
    conn: &mut PgConnection,
    ranker: Ranker,
    org: Uuid,
    agent: Uuid,
    query: &str,
    k: i32,
) -> sqlx::Result<Vec<Uuid>> {
    Ok(rank_timed(conn, ranker, org, agent, query, k).await?.0)
}

/// [`rank`], with the time the ranking query took (not the settings around it).
pub async fn rank_timed(
    conn: &mut PgConnection,
    ranker: Ranker,
    org: Uuid,
    agent: Uuid,
    query: &str,
    k: i32,
) -> sqlx::Result<(Vec<Uuid>, std::time::Duration)> {
    let sql = match ranker {
        Ranker::Vector => {
            // The query vector is computed once (a STABLE call in the select list would run per row).
            "WITH q AS MATERIALIZED (SELECT ibex_embed($3) AS v),
                  c AS MATERIALIZED (
                SELECT m.id, m.embedding <=> q.v AS d FROM ibex_core.memories m, q
                WHERE m.org_id = $1 AND m.agent_id = $2 AND m.status = 'active')
             SELECT id FROM c ORDER BY d, id LIMIT $4"
        }
        Ranker::FullText => {
            "WITH q AS (SELECT string_agg(ibex_core.lexeme_query(l)::text, ' | ')::tsquery AS q
                        FROM unnest(tsvector_to_array(to_tsvector('english', $3))) l)
             SELECT m.id FROM ibex_core.memories m, q
             WHERE m.org_id = $1 AND m.agent_id = $2 AND m.status = 'active' AND m.content_tsv @@ q.q
             ORDER BY ts_rank_cd(m.content_tsv, q.q) DESC, m.id LIMIT $4"
        }
        Ranker::Lexical | Ranker::Ibex | Ranker::IbexUnbridged => {
            "SELECT memory_id FROM ibex_core.search($1, $2, $3, $4, p_record_access => false)"
        }
    };
    // The setting a variant of IBEX search runs with (constants, not input).
    let setting = match ranker {
        Ranker::Lexical => Some(("ibex.lexical_weight", "1")),
        Ranker::IbexUnbridged => Some(("ibex.search_bridging", "off")),
        _ => None,
    };
    if let Some((name, value)) = setting {
        sqlx::query(&format!("SET {name} = {value}"))
            .execute(&mut *conn)
            .await?;
    }
    let started = std::time::Instant::now();
    let ids = sqlx::query_scalar(sql)
        .bind(org)
        .bind(agent)
        .bind(query)
        .bind(k)
        .fetch_all(&mut *conn)
        .await;
    let took = started.elapsed();
    if let Some((name, _)) = setting {
        sqlx::query(&format!("RESET {name}")).execute(&mut *conn).await?;
    }
    Ok((ids?, took))
}

/// recall@k per ranker, overall and per query style.
#[derive(Debug, Default)]
pub struct QualityReport {
    pub k: i32,
    pub queries: usize,
    pub hits: HashMap<(Ranker, Option<&'static str>), usize>,
    pub per_style: HashMap<&'static str, usize>,
}

impl QualityReport {
    pub fn recall(&self, ranker: Ranker) -> f64 {
        self.hits.get(&(ranker, None)).copied().unwrap_or(0) as f64 / self.queries.max(1) as f64
    }

    pub fn recall_for(&self, ranker: Ranker, style: QueryStyle) -> f64 {
        let n = self.per_style.get(style.label()).copied().unwrap_or(0);
        self.hits.get(&(ranker, Some(style.label()))).copied().unwrap_or(0) as f64 / n.max(1) as f64
    }

    pub fn table(&self, rankers: &[Ranker]) -> String {
        let styles = [QueryStyle::Name, QueryStyle::Value, QueryStyle::Paraphrase];
        let mut out = format!(
            "  {:<30} {:>9} {:>9} {:>9} {:>11}\n",
            format!("recall@{} ({} queries)", self.k, self.queries),
            "all",
            "name",
            "value",
            "paraphrase"
        );
        out.push_str(&format!(
            "  {:<30} {:>9} {:>9} {:>9} {:>11}\n",
            "(queries per style)",
            self.queries,
            self.per_style.get("name").unwrap_or(&0),
            self.per_style.get("value").unwrap_or(&0),
            self.per_style.get("paraphrase").unwrap_or(&0)
        ));
        for &r in rankers {
            out.push_str(&format!("  {:<30} {:>9.3}", r.label(), self.recall(r)));
            for (i, s) in styles.iter().enumerate() {
                let width = if i == 2 { 11 } else { 9 };
                out.push_str(&format!(" {:>width$.3}", self.recall_for(r, *s)));
            }
            out.push('\n');
        }
        out
    }
}

/// Runs every query of `data` through every ranker and counts hits in the top `k`.
pub async fn evaluate(
    pool: &PgPool,
    org: Uuid,
    agent: Uuid,
    data: &Dataset,
    ids: &[Uuid],
    rankers: &[Ranker],
    k: i32,
) -> sqlx::Result<QualityReport> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT set_config('ibex.org_id', $1, false)")
        .bind(org.to_string())
        .execute(&mut *conn)
        .await?;
    let mut report = QualityReport {
        k,
        queries: data.queries.len(),
        ..Default::default()
    };
    for q in &data.queries {
        *report.per_style.entry(q.style.label()).or_default() += 1;
        let answer = ids[q.answer];
        for &ranker in rankers {
            let top = rank(&mut conn, ranker, org, agent, &q.text, k).await?;
            if top.contains(&answer) {
                *report.hits.entry((ranker, None)).or_default() += 1;
                *report.hits.entry((ranker, Some(q.style.label()))).or_default() += 1;
            }
        }
    }
    Ok(report)
}

/// Creates an org and an agent (as a superuser connection); returns their ids.
pub async fn create_org_and_agent(conn: &mut PgConnection, slug: &str) -> sqlx::Result<(Uuid, Uuid)> {
    let org: Uuid = sqlx::query_scalar("INSERT INTO ibex_core.orgs (name, slug) VALUES ($1, $1) RETURNING id")
        .bind(slug)
        .fetch_one(&mut *conn)
        .await?;
    let agent: Uuid =
        sqlx::query_scalar("INSERT INTO ibex_core.agents (org_id, name) VALUES ($1, 'assistant') RETURNING id")
            .bind(org)
            .fetch_one(&mut *conn)
            .await?;
    Ok((org, agent))
}
