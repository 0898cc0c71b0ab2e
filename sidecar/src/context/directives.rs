//! The directive source of context assembly, with its in-process cache (module docs of
//! `context` say when a cached or stale copy is used).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ibex_engine::context::Directive;
use sqlx::PgPool;
use uuid::Uuid;

use super::DependencyReport;
use crate::db;

/// A stale copy is used when a fresh read fails, for at most this long after it was read.
const MAX_STALE: Duration = Duration::from_secs(600);
/// Agents held; beyond it the cache starts over (a bound, not an LRU).
const CAPACITY: usize = 10_000;

#[derive(Clone, Debug)]
pub struct DirectiveSet {
    pub agent_exists: bool,
    /// Active directives, highest priority first, then by name.
    pub directives: Arc<Vec<Directive>>,
}

pub struct DirectiveCache {
    ttl: Duration,
    entries: Mutex<HashMap<(Uuid, Uuid), (Instant, DirectiveSet)>>,
}

type Row = (bool, Vec<Uuid>, Vec<String>);

const SQL: &str = "SELECT EXISTS (SELECT 1 FROM ibex_core.agents a WHERE a.org_id = $1 AND a.id = $2),
       ARRAY(SELECT d.id FROM ibex_core.directives d
             WHERE d.org_id = $1 AND d.agent_id = $2 AND d.status = 'active'
             ORDER BY d.priority DESC, d.name, d.id),
       ARRAY(SELECT d.content FROM ibex_core.directives d
             WHERE d.org_id = $1 AND d.agent_id = $2 AND d.status = 'active'
             ORDER BY d.priority DESC, d.name, d.id)";

async fn fetch(db: &PgPool, org: Uuid, agent: Uuid, timeout: Duration) -> Result<DirectiveSet, sqlx::Error> {
    let mut tx = db::begin_for_org_with_timeout(db, org, timeout).await?;
    let (agent_exists, ids, contents): Row = sqlx::query_as(SQL).bind(org).bind(agent).fetch_one(&mut *tx).await?;
    tx.commit().await?;
    let directives = ids
        .into_iter()
        .zip(contents)
        .map(|(id, content)| Directive {
            id: id.to_string(),
            content,
        })
        .collect();
    Ok(DirectiveSet {
        agent_exists,
        directives: Arc::new(directives),
    })
}

impl DirectiveCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lookup(&self, key: (Uuid, Uuid)) -> Option<(Duration, DirectiveSet)> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(&key).map(|(at, set)| (at.elapsed(), set.clone()))
    }

    fn store(&self, key: (Uuid, Uuid), set: DirectiveSet) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CAPACITY && !entries.contains_key(&key) {
            entries.clear();
        }
        entries.insert(key, (Instant::now(), set));
    }

    /// The agent's directives: from memory when fresh, else read (the read goes on in the
    /// background past the deadline and refreshes the cache), else a stale copy, else nothing.
    pub async fn get(
        self: Arc<Self>,
        db: PgPool,
        org: Uuid,
        agent: Uuid,
        deadline: tokio::time::Instant,
        statement_timeout: Duration,
    ) -> (Option<DirectiveSet>, DependencyReport) {
        let started = Instant::now();
        let key = (org, agent);
        let held = self.lookup(key);
        let report = |status: &'static str, detail: String| DependencyReport {
            name: "directive",
            millis: started.elapsed().as_secs_f64() * 1000.0,
            status,
            detail,
        };
        if let Some((age, set)) = &held {
            if *age < self.ttl {
                return (Some(set.clone()), report("cached", String::new()));
            }
        }
        let read = tokio::spawn({
            let cache = Arc::clone(&self);
            async move {
                let result = fetch(&db, org, agent, statement_timeout).await;
                if let Ok(set) = &result {
                    cache.store(key, set.clone());
                }
                result
            }
        });
        let failure = match tokio::time::timeout_at(deadline, read).await {
            Ok(Ok(Ok(set))) => return (Some(set), report("ok", String::new())),
            Ok(Ok(Err(e))) => format!("reading directives failed: {e}"),
            Ok(Err(e)) => format!("directive task failed: {e}"),
            Err(_) => "no answer within the deadline".to_string(),
        };
        match held {
            Some((age, set)) if age < MAX_STALE => (
                Some(set),
                report(
                    "stale",
                    format!("{failure}; using the copy read {} ms ago", age.as_millis()),
                ),
            ),
            _ => {
                let status = if failure.starts_with("no answer") {
                    "timeout"
                } else {
                    "error"
                };
                (None, report(status, failure))
            }
        }
    }
}
