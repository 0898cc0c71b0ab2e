//! The fault suite (`make test-faults`, the `faults` tier of `make test`).
//!
//! A steady mixed workload runs against the test stack and a sidecar process of its own:
//! `remember` and `search` in SQL as a bound application login, AssembleContext over gRPC,
//! proxied chat completions (against a local OpenAI-protocol server) whose every third call
//! completes its session, which the sidecar then archives to S3. Meanwhile, one after another:
//!
//! | fault                  | how                                                   | back by                    |
//! |------------------------|-------------------------------------------------------|----------------------------|
//! | postgres-backend       | `kill -9` of one of the application's backends        | Postgres' crash restart    |
//! | extraction-worker      | `kill -9` of an `ibex extraction` background worker   | Postgres' crash restart    |
//! | postgres-postmaster    | `kill -9` of the postmaster                           | `stack.sh pg-recover`      |
//! | outbox-burst-restart   | an UPDATE of every memory (one outbox event each), then a restart of Postgres while the consumer works through them | `stack.sh restart-pg` |
//! | redis                  | `kill -9` of Redis (no persistence: its data is gone)  | `stack.sh redis-start`     |
//! | s3                     | `kill -9` of Garage                                   | `stack.sh s3-start`        |
//! | s3-read-only-disk      | Garage's data directory remounted read-only for 8 s   | `stack.sh s3-writable`     |
//! | sidecar                | `kill -9` of the sidecar                              | started again              |
//!
//! Each fault's recovery time is measured from the moment it was done to the first success of
//! every operation after its last failure (a degraded AssembleContext answer counts as a
//! failure); for the S3 faults, which no client call waits for, to the moment the archive queue
//! is empty again. After the last fault the suite waits for the background work to drain and
//! checks every acknowledged write:
//!
//! * every acknowledged `remember` is there, once (0 lost, 0 duplicated memories);
//! * every acknowledged proxied call has its usage row (0 lost usage rows);
//! * every completed session is archived (0 sessions neither archived nor queued, nothing
//!   dead-lettered), and no outbox event is left unprocessed;
//! * the hot cache equals what a rebuild from Postgres would write, entry by entry.
//!
//! It prints the table of faults and the ledger, and fails on any loss.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ibex_bench::fake_llm::FakeLlm;
use ibex_e2e::{bound_login, org_with_agent};
use ibex_sidecar::grpc::proto::context::v1 as pb;
use ibex_sidecar::hotcache::{self, HotEntry};
use pb::context_service_client::ContextServiceClient;
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use uuid::Uuid;

/// Agents the workload writes to; each gets at most MEMORIES_PER_AGENT memories, fewer than the
/// hot cache holds (50), so the cache must hold all of them and the comparison has no rank
/// boundary to argue about. Past AGENTS x MEMORIES_PER_AGENT writes, `remember` goes on with
/// content already stored (its de-duplicated path).
const AGENTS: usize = 120;
const MEMORIES_PER_AGENT: usize = 40;
/// A Redis logical database of the suite's own (the hot cache's ready marker is per database).
const REDIS_DB: u32 = 5;
/// Longest wait for one fault's recovery, and for the final drain.
const RECOVERY_LIMIT: Duration = Duration::from_secs(90);
const DRAIN_LIMIT: Duration = Duration::from_secs(120);
/// Steady workload before each fault and after its recovery.
const STEADY: Duration = Duration::from_secs(3);

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run through `make test-faults`"))
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `scripts/stack.sh <command> test`; panics with its output on failure.
fn stack(command: &str) -> String {
    let out = Command::new(repo_root().join("scripts/stack.sh"))
        .args([command, "test"])
        .output()
        .expect("run stack.sh");
    assert!(
        out.status.success(),
        "stack.sh {command} test failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn stack_async(command: &'static str) -> String {
    tokio::task::spawn_blocking(move || stack(command))
        .await
        .expect("stack.sh task")
}

fn stack_pid(name: &str) -> i32 {
    stack("pids")
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} pid from stack.sh pids"))
}

fn kill9(pid: i32) {
    let status = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -9 {pid} failed");
}

/// The test stack's Redis, logical database [`REDIS_DB`].
fn redis_url() -> String {
    let url = env("IBEX_REDIS_URL");
    let server: Vec<&str> = url.split('/').take(3).collect();
    format!("{}/{REDIS_DB}", server.join("/"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The suite's own `ibex serve`, a child process that can be killed and started again on the
/// same ports.
struct Sidecar {
    child: Option<Child>,
    http: String,
    grpc: String,
    envs: Vec<(String, String)>,
    log: PathBuf,
}

impl Sidecar {
    fn new(upstream: String) -> Sidecar {
        let http = format!("127.0.0.1:{}", free_port());
        let grpc = format!("127.0.0.1:{}", free_port());
        let redis = redis_url();
        let mut envs: Vec<(String, String)> = vec![
            ("IBEX_DATABASE_URL".into(), env("IBEX_DATABASE_URL")),
            ("IBEX_REDIS_URL".into(), redis),
            ("IBEX_HTTP_ADDR".into(), http.clone()),
            ("IBEX_GRPC_ADDR".into(), grpc.clone()),
            ("IBEX_UPSTREAM_BASE_URL".into(), upstream),
            ("IBEX_MODEL_DIR".into(), env("IBEX_MODEL_DIR")),
            ("IBEX_ORT_LIBRARY".into(), env("IBEX_ORT_LIB")),
            // Work a killed sidecar held under a lease comes back within seconds.
            ("IBEX_ARCHIVE_LEASE_SECONDS".into(), "5".into()),
            ("IBEX_HOT_CACHE_LEASE_SECONDS".into(), "5".into()),
            ("IBEX_EMBED_RATE_PER_SECOND".into(), "1000000".into()),
            ("IBEX_EMBED_RATE_BURST".into(), "1000000".into()),
            ("IBEX_LOG".into(), "info".into()),
        ];
        for key in [
            "IBEX_S3_ENDPOINT",
            "IBEX_S3_REGION",
            "IBEX_S3_ACCESS_KEY_ID",
            "IBEX_S3_SECRET_ACCESS_KEY",
        ] {
            envs.push((key.into(), env(key)));
        }
        let dir = repo_root().join(".ibex/faults");
        std::fs::create_dir_all(&dir).expect("log dir");
        let log = dir.join("sidecar.log");
        let _ = std::fs::remove_file(&log);
        Sidecar {
            child: None,
            http,
            grpc,
            envs,
            log,
        }
    }

    fn spawn(&mut self) {
        let bin = PathBuf::from(env("CARGO_TARGET_DIR")).join("release/ibex");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("sidecar log");
        let child = Command::new(bin)
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start ibex serve");
        self.child = Some(child);
    }

    async fn wait_ready(&mut self) {
        let url = format!("http://{}/readyz", self.http);
        let started = Instant::now();
        loop {
            if let Ok(r) = reqwest::get(&url).await {
                if r.status().is_success() {
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("the sidecar exited ({status}); log: {}", self.log.display());
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the sidecar was not ready within 60 s; log: {}",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill -9 the sidecar");
            child.wait().expect("reap the sidecar");
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let _ = child.wait();
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
enum Op {
    Remember,
    Search,
    Context,
    Proxy,
}

const OPS: [Op; 4] = [Op::Remember, Op::Search, Op::Context, Op::Proxy];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    /// An answer that is not the full one (a degraded context) or an error.
    Failed,
    /// Refused by admission control (429 / RESOURCE_EXHAUSTED): not a failure, not a success.
    Shed,
}

/// What the workload saw and what was acknowledged to it.
#[derive(Default)]
struct Ledger {
    events: BTreeMap<Op, Vec<(Instant, Outcome)>>,
    /// Acknowledged `remember`s: (agent, memory id).
    remembered: Vec<(Uuid, Uuid)>,
    /// Acknowledged `remember`s by the path they took (created, duplicate, merged, ...).
    remember_paths: BTreeMap<String, usize>,
    /// Per IBEX session: proxied calls acknowledged (200) and attempted.
    proxy_acked: HashMap<Uuid, usize>,
    proxy_attempted: HashMap<String, usize>,
    proxy_session_of: HashMap<String, Uuid>,
    /// Sessions whose completing call was acknowledged.
    completed: HashSet<Uuid>,
}

impl Ledger {
    fn note(&mut self, op: Op, outcome: Outcome) {
        self.events.entry(op).or_default().push((Instant::now(), outcome));
    }
}

struct Workload {
    org: Uuid,
    agents: Vec<Uuid>,
    app: PgPool,
    token: String,
    http: String,
    grpc: String,
    texts: Vec<String>,
    queries: Vec<String>,
    ledger: Mutex<Ledger>,
    stop: AtomicBool,
    remember_n: AtomicUsize,
    session_n: AtomicUsize,
}

const CALL_TIMEOUT: Duration = Duration::from_secs(30);

impl Workload {
    fn note(&self, op: Op, outcome: Outcome) {
        self.ledger.lock().unwrap().note(op, outcome);
    }

    async fn remember_loop(self: Arc<Self>) {
        while !self.stop.load(Ordering::Relaxed) {
            // Below the cap every (agent, text) pair is new: every write adds a memory.
            let n = self.remember_n.fetch_add(1, Ordering::Relaxed) % (AGENTS * MEMORIES_PER_AGENT);
            let agent = self.agents[n % AGENTS];
            let content = self.texts[n / AGENTS].clone();
            let call =
                sqlx::query_as::<_, (Uuid, String)>("SELECT memory_id, path FROM ibex_core.remember($1, $2, $3)")
                    .bind(self.org)
                    .bind(agent)
                    .bind(&content)
                    .fetch_one(&self.app);
            match tokio::time::timeout(CALL_TIMEOUT, call).await {
                Ok(Ok((id, path))) => {
                    let mut ledger = self.ledger.lock().unwrap();
                    ledger.remembered.push((agent, id));
                    *ledger.remember_paths.entry(path).or_default() += 1;
                    ledger.note(Op::Remember, Outcome::Ok);
                }
                _ => {
                    self.note(Op::Remember, Outcome::Failed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    async fn search_loop(self: Arc<Self>) {
        let mut n = 0usize;
        while !self.stop.load(Ordering::Relaxed) {
            n += 1;
            let call = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM ibex_core.search($1, $2, $3, 5)")
                .bind(self.org)
                .bind(self.agents[n % AGENTS])
                .bind(&self.queries[n % self.queries.len()])
                .fetch_one(&self.app);
            let ok = matches!(tokio::time::timeout(CALL_TIMEOUT, call).await, Ok(Ok(_)));
            self.note(Op::Search, if ok { Outcome::Ok } else { Outcome::Failed });
            if !ok {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    async fn context_loop(self: Arc<Self>) {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", self.grpc))
            .expect("endpoint")
            .connect_timeout(Duration::from_secs(2))
            .timeout(CALL_TIMEOUT)
            .connect_lazy();
        let mut client = ContextServiceClient::new(channel);
        let mut n = 0usize;
        while !self.stop.load(Ordering::Relaxed) {
            n += 1;
            let mut request = tonic::Request::new(pb::AssembleContextRequest {
                org_id: self.org.to_string(),
                agent_id: self.agents[n % AGENTS].to_string(),
                model: "gpt-4o-mini".into(),
                messages: vec![pb::ChatMessage {
                    role: "user".into(),
                    content: self.queries[n % self.queries.len()].clone(),
                }],
                max_output_tokens: Some(512),
                ..Default::default()
            });
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {}", self.token).parse().expect("header"),
            );
            let outcome = match client.assemble_context(request).await {
                Ok(answer) if !answer.get_ref().degraded => Outcome::Ok,
                Ok(_) => Outcome::Failed,
                Err(status) if status.code() == tonic::Code::ResourceExhausted => Outcome::Shed,
                Err(_) => Outcome::Failed,
            };
            self.note(Op::Context, outcome);
            if outcome != Outcome::Ok {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Sessions of three proxied calls; the third completes the session. A failed call ends its
    /// session (it is not retried: whether a call that got no answer was recorded is unknown).
    async fn proxy_loop(self: Arc<Self>) {
        let client = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .build()
            .expect("client");
        let url = format!("http://{}/v1/chat/completions", self.http);
        while !self.stop.load(Ordering::Relaxed) {
            let k = self.session_n.fetch_add(1, Ordering::Relaxed);
            let external = format!("faults-{}-{k}", self.org.simple());
            let agent = self.agents[k % AGENTS];
            for call in 0..3 {
                if self.stop.load(Ordering::Relaxed) {
                    return;
                }
                *self
                    .ledger
                    .lock()
                    .unwrap()
                    .proxy_attempted
                    .entry(external.clone())
                    .or_default() += 1;
                let complete = call == 2;
                let body = json!({
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": self.queries[(k + call) % self.queries.len()]}],
                });
                let response = client
                    .post(&url)
                    .bearer_auth(&self.token)
                    .header("x-ibex-agent-id", agent.to_string())
                    .header("x-ibex-session-id", &external)
                    .header("x-ibex-session-complete", if complete { "true" } else { "false" })
                    .json(&body)
                    .send()
                    .await;
                let acked = match response {
                    Ok(r) if r.status().is_success() => r
                        .headers()
                        .get("x-ibex-session-uuid")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<Uuid>().ok())
                        .map(|session| (session, r)),
                    Ok(r) if r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS => {
                        self.note(Op::Proxy, Outcome::Shed);
                        break;
                    }
                    _ => None,
                };
                let Some((session, response)) = acked else {
                    self.note(Op::Proxy, Outcome::Failed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    break;
                };
                // The body is the answer the client paid for: read it all.
                let whole = response.bytes().await.is_ok();
                let mut ledger = self.ledger.lock().unwrap();
                if !whole {
                    ledger.note(Op::Proxy, Outcome::Failed);
                    break;
                }
                ledger.note(Op::Proxy, Outcome::Ok);
                *ledger.proxy_acked.entry(session).or_default() += 1;
                ledger.proxy_session_of.insert(external.clone(), session);
                if complete {
                    ledger.completed.insert(session);
                }
            }
        }
    }

    /// The time from `since` to the first success of every operation after its last failure
    /// (`None` while some operation has not succeeded since its last failure).
    fn recovered_after(&self, since: Instant, ops: &[Op]) -> Option<Duration> {
        let ledger = self.ledger.lock().unwrap();
        let mut worst = Duration::ZERO;
        for op in ops {
            let events: Vec<&(Instant, Outcome)> = ledger
                .events
                .get(op)
                .map(|e| e.iter().filter(|(t, _)| *t >= since).collect())
                .unwrap_or_default();
            let last_failure = events.iter().rposition(|(_, o)| *o == Outcome::Failed);
            let first_ok_after = events
                .iter()
                .skip(last_failure.map_or(0, |i| i + 1))
                .find(|(_, o)| *o == Outcome::Ok)?;
            if last_failure.is_some() {
                worst = worst.max(first_ok_after.0 - since);
            }
        }
        Some(worst)
    }

    fn failures_since(&self, since: Instant) -> usize {
        let ledger = self.ledger.lock().unwrap();
        ledger
            .events
            .values()
            .flatten()
            .filter(|(t, o)| *t >= since && *o == Outcome::Failed)
            .count()
    }
}

/// One row of the table of faults.
struct FaultRow {
    name: &'static str,
    failed_calls: usize,
    recovery: Duration,
    what: &'static str,
}

/// Waits for every operation to succeed again after `since` (and for STEADY more), and returns
/// the recovery time.
async fn recovery(w: &Workload, since: Instant, ops: &[Op], name: &str) -> Duration {
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        // At least a moment after the fault, so that a call which succeeded just before the
        // process died is not taken for a recovery.
        if since.elapsed() < Duration::from_secs(1) {
            continue;
        }
        if let Some(d) = w.recovered_after(since, ops) {
            tokio::time::sleep(STEADY).await;
            return d;
        }
        assert!(
            started.elapsed() < RECOVERY_LIMIT,
            "{name}: the workload did not recover within {RECOVERY_LIMIT:?}"
        );
    }
}

/// A count whose query takes the org as its one parameter (`$1`).
async fn org_count(admin: &PgPool, org: Uuid, sql: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(sql).bind(org).fetch_one(admin).await
}

/// Waits for the archive queue of `org` to be empty; returns the time from `since`.
async fn archive_drained(admin: &PgPool, org: Uuid, since: Instant, name: &str) -> Duration {
    const PENDING: &str =
        "SELECT count(*) FROM ibex_core.outbox WHERE org_id = $1 AND topic = 'archive' AND processed_at IS NULL";
    loop {
        if org_count(admin, org, PENDING).await.is_ok_and(|n| n == 0) {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < RECOVERY_LIMIT,
            "{name}: archives still queued after {RECOVERY_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn app_backend_pid(admin: &PgPool, login: &str) -> i32 {
    sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE usename = $1 ORDER BY backend_start LIMIT 1")
        .bind(login)
        .fetch_one(admin)
        .await
        .expect("an application backend")
}

/// The admin pool's connections die with Postgres: wait until it answers again.
async fn admin_answers(admin: &PgPool) {
    let started = Instant::now();
    while sqlx::query("SELECT 1").execute(admin).await.is_err() {
        assert!(started.elapsed() < RECOVERY_LIMIT, "Postgres did not answer again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Differences between the hot cache in Redis and what a rebuild from Postgres would write, per
/// agent (empty: equal).
async fn hot_cache_differences(
    admin: &PgPool,
    redis: &mut redis::aio::MultiplexedConnection,
    org: Uuid,
    agents: &[Uuid],
) -> Vec<String> {
    let mut differences = Vec::new();
    let ready: Option<String> = redis::cmd("GET")
        .arg(hotcache::READY_KEY)
        .query_async(redis)
        .await
        .unwrap_or(None);
    if ready.is_none() {
        differences.push("the ready marker is missing".into());
    }
    for &agent in agents {
        // What the rebuild reads (hotcache::source): the agent's active memories, every one
        // of them here (fewer than the cache's 50).
        let rows: Vec<(Uuid, String, String, f32, i32, i32)> = sqlx::query_as(
            "SELECT id, content, category, confidence, useful_count, not_useful_count
               FROM ibex_core.memories WHERE org_id = $1 AND agent_id = $2 AND status = 'active'",
        )
        .bind(org)
        .bind(agent)
        .fetch_all(admin)
        .await
        .expect("memories");
        let cached: HashMap<String, Vec<u8>> = redis::cmd("HGETALL")
            .arg(hotcache::data_key(org, agent))
            .query_async(redis)
            .await
            .unwrap_or_default();
        let members: Vec<String> = redis::cmd("ZRANGE")
            .arg(hotcache::set_key(org, agent))
            .arg(0)
            .arg(-1)
            .query_async(redis)
            .await
            .unwrap_or_default();
        if members.len() != rows.len() || cached.len() != rows.len() {
            differences.push(format!(
                "agent {agent}: {} active memories, {} members and {} entries cached",
                rows.len(),
                members.len(),
                cached.len()
            ));
            continue;
        }
        for (id, content, category, confidence, useful, not_useful) in rows {
            let entry = cached
                .get(&id.to_string())
                .and_then(|bytes| HotEntry::decode(id, bytes));
            let same = entry.as_ref().is_some_and(|e| {
                e.content == content
                    && e.category.as_str() == category
                    && e.confidence == confidence
                    && e.useful_count == useful
                    && e.not_useful_count == not_useful
            });
            if !same {
                differences.push(format!("agent {agent}: memory {id} is missing or stale in the cache"));
            }
        }
    }
    differences
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fault_suite_loses_nothing_acknowledged() {
    let admin = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&env("IBEX_MIGRATE_DATABASE_URL"))
        .await
        .expect("admin pool");
    let (org, first_agent) = org_with_agent(&admin, "faults").await;
    let mut agents = vec![first_agent];
    for i in 1..AGENTS {
        let agent: Uuid =
            sqlx::query_scalar("INSERT INTO ibex_core.agents (org_id, name) VALUES ($1, $2) RETURNING id")
                .bind(org)
                .bind(format!("agent-{i}"))
                .fetch_one(&admin)
                .await
                .expect("agent");
        agents.push(agent);
    }
    let (login, app_url) = bound_login(&admin, org, "faults").await;
    let app = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(3))
        .connect(&app_url)
        .await
        .expect("app pool");
    let token = ibex_sidecar::admin::create_token(
        &env("IBEX_MIGRATE_DATABASE_URL"),
        org,
        "faults",
        "context:assemble,proxy",
        None,
        None,
    )
    .await
    .expect("token")
    .token;

    let llm = FakeLlm::start(Duration::from_millis(30)).await;
    let mut sidecar = Sidecar::new(llm.base_url());
    sidecar.spawn();
    sidecar.wait_ready().await;
    stack_async("s3-writable").await;

    let dataset = ibex_bench::dataset::generate(0xFA17, 60, 40);
    let workload = Arc::new(Workload {
        org,
        agents: agents.clone(),
        app,
        token,
        http: sidecar.http.clone(),
        grpc: sidecar.grpc.clone(),
        texts: dataset.memories.iter().map(|m| m.content.clone()).collect(),
        queries: dataset.queries.iter().map(|q| q.text.clone()).collect(),
        ledger: Mutex::new(Ledger::default()),
        stop: AtomicBool::new(false),
        remember_n: AtomicUsize::new(0),
        session_n: AtomicUsize::new(0),
    });
    assert!(workload.texts.len() >= MEMORIES_PER_AGENT, "too few texts");
    let mut tasks = Vec::new();
    for _ in 0..2 {
        tasks.push(tokio::spawn(workload.clone().remember_loop()));
        tasks.push(tokio::spawn(workload.clone().proxy_loop()));
    }
    tasks.push(tokio::spawn(workload.clone().search_loop()));
    tasks.push(tokio::spawn(workload.clone().context_loop()));

    // Steady state first: every operation succeeding.
    let warm = Instant::now();
    recovery(&workload, warm - Duration::from_secs(1), &OPS, "warm-up").await;
    println!(
        "fault suite: workload steady after {:.1} s",
        warm.elapsed().as_secs_f64()
    );

    let mut table: Vec<FaultRow> = Vec::new();
    let mut fault = |name: &'static str, since: Instant, recovery: Duration, what: &'static str| {
        let failed_calls = workload.failures_since(since);
        println!(
            "fault suite: {name}: recovered in {:.2} s ({failed_calls} failed calls)",
            recovery.as_secs_f64()
        );
        table.push(FaultRow {
            name,
            failed_calls,
            recovery,
            what,
        });
    };

    // 1. One application backend: Postgres restarts every backend (crash recovery).
    tokio::time::sleep(STEADY).await;
    let t = Instant::now();
    kill9(app_backend_pid(&admin, &login).await);
    admin_answers(&admin).await;
    let d = recovery(&workload, t, &OPS, "postgres-backend").await;
    fault("postgres-backend", t, d, "kill -9 of an application backend");

    // 2. An extraction worker: also a crash restart of every backend.
    let worker: i32 =
        sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE backend_type LIKE 'ibex extraction%' LIMIT 1")
            .fetch_one(&admin)
            .await
            .expect("an extraction worker runs");
    let t = Instant::now();
    kill9(worker);
    admin_answers(&admin).await;
    let d = recovery(&workload, t, &OPS, "extraction-worker").await;
    let back: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'ibex extraction%'")
            .fetch_one(&admin)
            .await
            .expect("workers");
    assert!(back > 0, "no extraction worker after the crash restart");
    fault("extraction-worker", t, d, "kill -9 of an extraction worker");

    // 3. The postmaster.
    let t = Instant::now();
    kill9(stack_pid("postmaster"));
    stack_async("pg-recover").await;
    admin_answers(&admin).await;
    let d = recovery(&workload, t, &OPS, "postgres-postmaster").await;
    fault("postgres-postmaster", t, d, "kill -9 of the postmaster");

    // 4. An outbox burst: one event per memory of the org, then a restart mid-way.
    let t = Instant::now();
    let burst = sqlx::query("UPDATE ibex_core.memories SET useful_count = useful_count + 1 WHERE org_id = $1")
        .bind(org)
        .execute(&admin)
        .await
        .expect("burst")
        .rows_affected();
    let pending = org_count(
        &admin,
        org,
        "SELECT count(*) FROM ibex_core.outbox WHERE org_id = $1 AND topic = 'hot_cache' AND processed_at IS NULL",
    )
    .await
    .expect("pending");
    stack_async("restart-pg").await;
    admin_answers(&admin).await;
    let d = recovery(&workload, t, &OPS, "outbox-burst-restart").await;
    println!(
        "fault suite: outbox burst of {burst} changed memories, {pending} hot-cache events pending at the restart"
    );
    fault(
        "outbox-burst-restart",
        t,
        d,
        "restart of Postgres during an outbox burst",
    );

    // 5. Redis, whose data goes with it (no persistence).
    let t = Instant::now();
    kill9(stack_pid("redis"));
    stack_async("redis-start").await;
    let d = recovery(&workload, t, &OPS, "redis").await;
    fault("redis", t, d, "kill -9 of Redis (data lost)");

    // 6. The S3 server. No client call waits for it: recovery is the archive queue drained.
    let t = Instant::now();
    kill9(stack_pid("garage"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    stack_async("s3-start").await;
    let d = archive_drained(&admin, org, t, "s3").await;
    fault("s3", t, d, "kill -9 of Garage, 3 s down");

    // 7. The S3 server's disk read-only for 8 s.
    let t = Instant::now();
    stack_async("s3-readonly").await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    stack_async("s3-writable").await;
    let d = archive_drained(&admin, org, t, "s3-read-only-disk").await;
    fault("s3-read-only-disk", t, d, "Garage's data directory read-only for 8 s");

    // 8. The sidecar.
    let t = Instant::now();
    sidecar.kill9();
    sidecar.spawn();
    sidecar.wait_ready().await;
    let d = recovery(&workload, t, &OPS, "sidecar").await;
    fault("sidecar", t, d, "kill -9 of the sidecar, started again");

    workload.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("workload task");
    }

    // Drain: nothing left in the outbox, every completed session archived, the hot cache equal
    // to a rebuild.
    let drain = Instant::now();
    let mut redis = redis::Client::open(redis_url())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let mut differences;
    loop {
        let pending = org_count(
            &admin,
            org,
            "SELECT count(*) FROM ibex_core.outbox WHERE org_id = $1 AND processed_at IS NULL",
        )
        .await
        .expect("outbox");
        let unarchived = org_count(
            &admin,
            org,
            "SELECT count(*) FROM ibex_core.sessions WHERE org_id = $1 AND status = 'completed' AND archived_at IS NULL",
        )
        .await
        .expect("sessions");
        differences = hot_cache_differences(&admin, &mut redis, org, &agents).await;
        if pending == 0 && unarchived == 0 && differences.is_empty() {
            break;
        }
        if drain.elapsed() > DRAIN_LIMIT {
            differences.push(format!(
                "{pending} outbox events pending, {unarchived} completed sessions not archived"
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let drained_in = drain.elapsed();
    sidecar.stop();

    // The ledger against Postgres.
    // The workload has stopped: the ledger is final.
    let ledger = std::mem::take(&mut *workload.ledger.lock().unwrap());
    let acked_ids: HashSet<Uuid> = ledger.remembered.iter().map(|(_, id)| *id).collect();
    let ids: Vec<Uuid> = acked_ids.iter().copied().collect();
    let present: i64 = sqlx::query_scalar("SELECT count(*) FROM ibex_core.memories WHERE org_id = $1 AND id = ANY($2)")
        .bind(org)
        .bind(&ids)
        .fetch_one(&admin)
        .await
        .expect("present");
    let lost_memories = acked_ids.len() as i64 - present;
    let duplicated_memories = org_count(
        &admin,
        org,
        "SELECT coalesce(sum(n - 1), 0)::bigint FROM (
             SELECT count(*) AS n FROM ibex_core.memories WHERE org_id = $1
              GROUP BY agent_id, content_hash HAVING count(*) > 1) d",
    )
    .await
    .expect("duplicates");
    let usage: Vec<(Uuid, i64)> = sqlx::query_as(
        "SELECT session_id, count(*) FROM ibex_core.usage_events
          WHERE org_id = $1 AND status_code = 200 AND session_id IS NOT NULL GROUP BY session_id",
    )
    .bind(org)
    .fetch_all(&admin)
    .await
    .expect("usage");
    let usage: HashMap<Uuid, i64> = usage.into_iter().collect();
    let mut lost_usage = 0i64;
    let mut duplicated_usage = 0i64;
    for (session, &acked) in &ledger.proxy_acked {
        let rows = usage.get(session).copied().unwrap_or(0);
        lost_usage += (acked as i64 - rows).max(0);
    }
    for (external, &attempted) in &ledger.proxy_attempted {
        if let Some(session) = ledger.proxy_session_of.get(external) {
            let rows = usage.get(session).copied().unwrap_or(0);
            duplicated_usage += (rows - attempted as i64).max(0);
        }
    }
    let completed: Vec<Uuid> = ledger.completed.iter().copied().collect();
    let completed_archived: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ibex_core.sessions WHERE org_id = $1 AND id = ANY($2) AND archived_at IS NOT NULL",
    )
    .bind(org)
    .bind(&completed)
    .fetch_one(&admin)
    .await
    .expect("archived");
    let neither = org_count(
        &admin,
        org,
        "SELECT count(*) FROM ibex_core.sessions s WHERE s.org_id = $1 AND s.status = 'completed'
            AND s.archived_at IS NULL
            AND NOT EXISTS (SELECT 1 FROM ibex_core.outbox o WHERE o.org_id = s.org_id AND o.topic = 'archive'
                              AND o.aggregate_id = s.id AND o.processed_at IS NULL)",
    )
    .await
    .expect("neither");
    let dead_letters = org_count(
        &admin,
        org,
        "SELECT count(*) FROM ibex_core.dead_letters WHERE org_id = $1",
    )
    .await
    .expect("dead letters");

    println!();
    println!("fault suite: table of faults");
    println!("  {:<22} {:>12} {:>13}  what", "fault", "recovery (s)", "failed calls");
    for row in &table {
        println!(
            "  {:<22} {:>12.2} {:>13}  {}",
            row.name,
            row.recovery.as_secs_f64(),
            row.failed_calls,
            row.what
        );
    }
    let calls: BTreeMap<Op, (usize, usize, usize)> = ledger
        .events
        .iter()
        .map(|(op, events)| {
            let count = |o: Outcome| events.iter().filter(|(_, x)| *x == o).count();
            (*op, (count(Outcome::Ok), count(Outcome::Failed), count(Outcome::Shed)))
        })
        .collect();
    for (op, (ok, failed, shed)) in &calls {
        println!("  calls {op:?}: {ok} ok, {failed} failed or degraded, {shed} shed");
    }
    println!(
        "  remember: {} acknowledged ({} distinct memories), {lost_memories} lost, {duplicated_memories} duplicated",
        ledger.remembered.len(),
        acked_ids.len()
    );
    println!("  remember paths: {:?}", ledger.remember_paths);
    println!(
        "  proxied calls: {} acknowledged, {lost_usage} usage rows lost, {duplicated_usage} more rows than calls",
        ledger.proxy_acked.values().sum::<usize>()
    );
    println!(
        "  sessions: {} completions acknowledged, {completed_archived} of them archived; {neither} completed sessions neither archived nor queued; {dead_letters} dead letters",
        completed.len()
    );
    println!(
        "  drained in {:.1} s; hot cache {}",
        drained_in.as_secs_f64(),
        if differences.is_empty() {
            "equal to a rebuild".to_string()
        } else {
            format!("differs: {differences:?}")
        }
    );

    assert_eq!(lost_memories, 0, "acknowledged memories lost");
    assert_eq!(duplicated_memories, 0, "memories duplicated");
    assert_eq!(lost_usage, 0, "usage rows of acknowledged calls lost");
    assert_eq!(duplicated_usage, 0, "more usage rows than calls");
    assert_eq!(
        completed_archived as usize,
        completed.len(),
        "acknowledged completed sessions not archived"
    );
    assert_eq!(neither, 0, "completed sessions neither archived nor queued");
    assert_eq!(dead_letters, 0, "work dead-lettered");
    assert!(differences.is_empty(), "after the drain: {differences:?}");
    for op in OPS {
        assert!(calls.get(&op).is_some_and(|c| c.0 > 0), "{op:?} never succeeded");
    }
    drop(llm);
}
