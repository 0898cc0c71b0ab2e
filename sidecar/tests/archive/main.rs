//! Session archives against the real S3 server of the test stack (Garage, started by
//! `scripts/stack.sh up test`; IBEX_S3_* name it). Some tests stop and start Garage, so the
//! tests of this binary run one at a time (a lock, whatever the harness's thread count), and
//! live in their own binary so that no other test sees S3 go away.

#[path = "../common.rs"]
mod common;
#[allow(dead_code)]
#[path = "../serve/dashboard_client.rs"]
mod dashboard_client;
#[path = "../serve/fixtures.rs"]
mod fixtures;
#[allow(dead_code)]
#[path = "../serve/support.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use fixtures::{admin, Tenant};
use ibex_sidecar::archive::ArchiveStore;
use ibex_sidecar::Config;
use serde_json::{json, Value};
use sqlx::PgPool;
use support::TestServer;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::common::env;

/// One test at a time: some stop Garage.
static SERIAL: Mutex<()> = Mutex::const_new(());
/// Archives are written within a second or two of completion on an idle stack; generous for a
/// busy test machine.
const ARCHIVED_WITHIN: Duration = Duration::from_secs(60);

fn s3_config() -> Config {
    Config {
        s3_endpoint: Some(env("IBEX_S3_ENDPOINT")),
        s3_region: env("IBEX_S3_REGION"),
        s3_access_key_id: Some(env("IBEX_S3_ACCESS_KEY_ID")),
        s3_secret_access_key: Some(ibex_sidecar::config::Secret(env("IBEX_S3_SECRET_ACCESS_KEY"))),
        archive_poll: Duration::from_millis(100),
        archive_retention: Duration::ZERO,
        s3_timeout: Duration::from_secs(5),
        ..support::config()
    }
}

fn store() -> ArchiveStore {
    ArchiveStore::from_config(&s3_config()).unwrap().expect("s3 configured")
}

/// `scripts/stack.sh <action> test`: s3-stop and s3-start stop and start Garage alone.
fn stack(action: &str) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/stack.sh");
    let status = Command::new(script)
        .args([action, "test"])
        .status()
        .expect("stack.sh runs");
    assert!(status.success(), "stack.sh {action} test failed");
}

/// A session of the tenant with two checkpoints (two append_turns calls), extraction marked done
/// (so the retention may clear it), still active.
async fn session_with_turns(admin: &PgPool, t: Tenant, turns: &[(&str, &str)]) -> Uuid {
    let mut tx = admin.begin().await.unwrap();
    sqlx::query("SELECT set_config('ibex.org_id', $1, true)")
        .bind(t.org.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    let session: Uuid = sqlx::query_scalar("SELECT ibex_core.ensure_session($1, $2)")
        .bind(t.org)
        .bind(t.agent)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    let (first, second) = turns.split_at(turns.len().min(2));
    for batch in [first, second] {
        if batch.is_empty() {
            continue;
        }
        let json: Vec<Value> = batch
            .iter()
            .map(|(role, content)| json!({"role": role, "content": content, "tokens": 7, "model": "gpt-test"}))
            .collect();
        sqlx::query("SELECT ibex_core.append_turns($1, $2, $3)")
            .bind(t.org)
            .bind(session)
            .bind(Value::Array(json))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    sqlx::query("UPDATE ibex_core.sessions SET last_extracted_turn = turn_count WHERE org_id = $1 AND id = $2")
        .bind(t.org)
        .bind(session)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    session
}

struct Api<'a> {
    server: &'a TestServer,
    token: String,
}

impl Api<'_> {
    async fn call(&self, method: reqwest::Method, path: &str) -> support::Reply {
        let request = self
            .server
            .client
            .request(method, self.server.url(path))
            .bearer_auth(&self.token);
        support::reply(request.send().await.expect("request")).await
    }

    async fn complete(&self, session: Uuid) -> support::Reply {
        self.call(reqwest::Method::POST, &format!("/v1/sessions/{session}/complete"))
            .await
    }

    async fn session(&self, session: Uuid) -> Value {
        let reply = self
            .call(reqwest::Method::GET, &format!("/v1/sessions/{session}"))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body
    }

    async fn wait_archived(&self, session: Uuid) -> Value {
        let deadline = Instant::now() + ARCHIVED_WITHIN;
        loop {
            let body = self.session(session).await;
            if body["archived_at"].is_string() {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "session {session} not archived in time: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn started(label: &str) -> (TestServer, PgPool, Tenant, String) {
    let server = TestServer::start_ready(s3_config()).await;
    let admin = admin().await;
    let t = fixtures::tenant(&admin, label).await;
    let token = fixtures::token(t.org, "admin", None).await;
    (server, admin, t, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_session_is_archived_replayed_and_then_cleared_from_postgres() {
    let _serial = SERIAL.lock().await;
    let (server, admin, t, token) = started("archive-flow").await;
    let api = Api { server: &server, token };
    let turns = [
        ("user", "my favourite colour is teal"),
        ("assistant", "noted: teal"),
        ("user", "and my dog is Rex"),
    ];
    let session = session_with_turns(&admin, t, &turns).await;

    let not_yet = api
        .call(reqwest::Method::GET, &format!("/v1/sessions/{session}/replay"))
        .await;
    not_yet.error(409, "conflict");
    let completed = api.complete(session).await;
    assert_eq!(completed.status, 200, "{}", completed.body);

    let body = api.wait_archived(session).await;
    let key = format!("{}/{}/{session}/{session}.ndjson", t.org, t.agent);
    assert_eq!(body["archive_key"], key.as_str());
    assert_eq!(body["archive_lines"], 2, "one line per checkpoint");
    let sha = body["archive_sha256"].as_str().unwrap().to_string();

    // The replay link is a presigned URL anyone holding it can GET, without our token.
    let url = body["replay_url"].as_str().expect("replay_url once archived");
    let object = reqwest::get(url).await.unwrap();
    assert_eq!(object.status(), 200);
    let bytes = object.bytes().await.unwrap();
    assert_eq!(bytes.len() as i64, body["archive_bytes"].as_i64().unwrap());
    assert_eq!(ibex_engine::archive::sha256_hex(&bytes), sha);
    let link = api
        .call(reqwest::Method::GET, &format!("/v1/sessions/{session}/replay"))
        .await;
    assert_eq!(link.status, 200, "{}", link.body);
    assert_eq!(link.body["sha256"], sha.as_str());
    let expires = chrono::DateTime::parse_from_rfc3339(link.body["expires_at"].as_str().unwrap()).unwrap();
    let minutes = (expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_minutes();
    assert!((14..=15).contains(&minutes), "valid 15 minutes, got {minutes}");

    // The retention (0 here) clears the turn contents; the replay reads the archive, not Postgres.
    fixtures::eventually(ARCHIVED_WITHIN, "turn contents cleared", || async {
        api.session(session).await["turns_cleared_at"].is_string()
    })
    .await;
    let kept: Vec<(String, String, Option<i32>, bool)> = sqlx::query_as(
        "SELECT role, content, tokens, content_sha256 IS NOT NULL FROM ibex_core.session_turns
         WHERE org_id = $1 AND session_id = $2 ORDER BY turn_index",
    )
    .bind(t.org)
    .bind(session)
    .fetch_all(&admin)
    .await
    .unwrap();
    assert_eq!(kept.len(), 3);
    assert!(kept
        .iter()
        .all(|(_, content, tokens, hashed)| content.is_empty() && *tokens == Some(7) && *hashed));
    let replay = api
        .call(reqwest::Method::GET, &format!("/v1/sessions/{session}/archive"))
        .await;
    assert_eq!(replay.status, 200, "{}", replay.body);
    let checkpoints = replay.body["checkpoints"].as_array().unwrap();
    assert_eq!(checkpoints.len(), 2);
    assert_eq!(checkpoints[0]["turns"][0]["content"], "my favourite colour is teal");
    assert_eq!(checkpoints[0]["tokens"], 14);
    assert_eq!(checkpoints[0]["model"], "gpt-test");
    assert_eq!(checkpoints[1]["turns"][0]["content"], "and my dog is Rex");

    // The dashboard's replay viewer reads the same archive: the turns Postgres no longer holds,
    // with the model and tokens of each checkpoint.
    let mut browser = dashboard_client::Browser::new(&server);
    assert_eq!(browser.sign_in(&api.token).await.status, reqwest::StatusCode::SEE_OTHER);
    let viewer = browser.get(&format!("/dashboard/sessions/{session}/replay")).await;
    assert_eq!(viewer.status, 200, "{}", viewer.body);
    for shown in [
        "my favourite colour is teal",
        "and my dog is Rex",
        "gpt-test",
        "Checkpoint 1",
        "2 checkpoints",
        &sha,
    ] {
        assert!(viewer.body.contains(shown), "{shown:?} in {}", viewer.body);
    }
    let page = browser.get(&format!("/dashboard/sessions/{session}")).await;
    assert!(page.body.contains("cleared from Postgres"), "{}", page.body);

    let metrics = server.metrics().await;
    assert!(
        metrics.contains("ibex_archive_uploads_total{outcome=\"archived\"}"),
        "{metrics}"
    );
    let ready = server.get("/readyz").await;
    assert_eq!(ready.body["archive_store"]["status"], "up", "{}", ready.body);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_or_missing_archive_is_refused_on_replay() {
    let _serial = SERIAL.lock().await;
    let (server, admin, t, token) = started("archive-damage").await;
    let api = Api { server: &server, token };
    let session = session_with_turns(&admin, t, &[("user", "the launch code is 1234"), ("assistant", "ok")]).await;
    api.complete(session).await;
    let body = api.wait_archived(session).await;
    let key = body["archive_key"].as_str().unwrap();
    let path = format!("/v1/sessions/{session}/archive");

    store()
        .put(key, b"{\"tampered\": true}\n".to_vec(), "application/x-ndjson")
        .await
        .unwrap();
    let damaged = api.call(reqwest::Method::GET, &path).await;
    let error = damaged.error(502, "archive_damaged");
    assert_eq!(error["details"]["expected_sha256"], body["archive_sha256"]);

    store().delete(key).await.unwrap();
    api.call(reqwest::Method::GET, &path)
        .await
        .error(502, "archive_missing");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_session_leaves_nothing_of_it_in_postgres_redis_or_s3() {
    let _serial = SERIAL.lock().await;
    let (server, admin, t, token) = started("archive-gdpr").await;
    let api = Api { server: &server, token };
    let said = support::unique("my favourite hike is the ridge above the lake");
    let session = session_with_turns(&admin, t, &[("user", &said), ("assistant", "stored")]).await;
    // Something learnt from it, and its embedding cached in Redis.
    let learnt = support::unique("the user likes the ridge hike above the lake");
    let memory = fixtures::remember(&admin, t, &learnt, "declarative").await;
    sqlx::query("UPDATE ibex_core.memories SET source_session_id = $3 WHERE org_id = $1 AND id = $2")
        .bind(t.org)
        .bind(memory)
        .bind(session)
        .execute(&admin)
        .await
        .unwrap();
    let embed = fixtures::token(t.org, "embed", None).await;
    let cached = server
        .client
        .post(server.url("/v1/embed/batch"))
        .bearer_auth(&embed)
        .json(&json!({ "texts": [said, learnt] }))
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), 200);
    let keys: Vec<String> = [&said, &learnt]
        .iter()
        .map(|text| ibex_sidecar::embedding::cache::cache_key(&support::model_id(), t.org, text))
        .collect();
    let mut redis = support::redis().await;
    let present: usize = redis::cmd("EXISTS").arg(&keys).query_async(&mut redis).await.unwrap();
    assert_eq!(present, 2, "both texts cached before the deletion");
    api.complete(session).await;
    let archived = api.wait_archived(session).await;
    let prefix = format!("{}/{}/{session}/", t.org, t.agent);
    assert_eq!(store().list(&prefix).await.unwrap().len(), 1);

    let receipt = api
        .call(reqwest::Method::DELETE, &format!("/v1/sessions/{session}"))
        .await;
    assert_eq!(receipt.status, 200, "{}", receipt.body);
    assert_eq!(receipt.body["deleted"]["turns"], 2);
    assert_eq!(receipt.body["deleted"]["memories"], 1);
    assert_eq!(receipt.body["archive"]["status"], "confirmed");
    assert_eq!(
        receipt.body["archive"]["deleted_keys"],
        json!([archived["archive_key"]])
    );
    assert_eq!(receipt.body["cache_entries_removed"], 2);

    let left: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM ibex_core.sessions WHERE org_id = $1 AND id = $2)
              + (SELECT count(*) FROM ibex_core.session_turns WHERE org_id = $1 AND session_id = $2)
              + (SELECT count(*) FROM ibex_core.memories WHERE org_id = $1 AND id = $3)
              + (SELECT count(*) FROM ibex_core.memory_versions WHERE org_id = $1 AND memory_id = $3)
              + (SELECT count(*) FROM ibex_core.outbox WHERE org_id = $1 AND aggregate_id = $2)",
    )
    .bind(t.org)
    .bind(session)
    .bind(memory)
    .fetch_one(&admin)
    .await
    .unwrap();
    // (The hot cache's events about the memory name its id and agent only, and go with the
    // outbox's retention.)
    assert_eq!(left, 0, "nothing of the session is left in Postgres");
    let present: usize = redis::cmd("EXISTS").arg(&keys).query_async(&mut redis).await.unwrap();
    assert_eq!(present, 0, "nothing of it is left in Redis");
    assert!(
        store().list(&prefix).await.unwrap().is_empty(),
        "nothing of it is left in S3"
    );
    let again = api
        .call(reqwest::Method::DELETE, &format!("/v1/sessions/{session}"))
        .await;
    again.error(404, "not_found");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_org_deletes_its_archives_once_s3_confirms() {
    let _serial = SERIAL.lock().await;
    let (server, admin, t, token) = started("archive-org").await;
    let api = Api { server: &server, token };
    let session = session_with_turns(&admin, t, &[("user", "org-wide secret"), ("assistant", "ok")]).await;
    api.complete(session).await;
    api.wait_archived(session).await;
    let prefix = format!("{}/", t.org);
    assert_eq!(store().list(&prefix).await.unwrap().len(), 1);

    let receipt: Value = sqlx::query_scalar("SELECT ibex_ops.platform_delete_org($1)")
        .bind(t.org)
        .fetch_one(&admin)
        .await
        .unwrap();
    let deletion = receipt["archive_deletion_id"]
        .as_i64()
        .expect("the receipt names the archive deletion");
    fixtures::eventually(ARCHIVED_WITHIN, "archive deletion confirmed", || {
        let admin = admin.clone();
        async move {
            sqlx::query_scalar::<_, bool>(
                "SELECT confirmed_at IS NOT NULL FROM ibex_ops.archive_deletions WHERE id = $1",
            )
            .bind(deletion)
            .fetch_one(&admin)
            .await
            .unwrap()
        }
    })
    .await;
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT unnest(deleted_keys) FROM ibex_ops.archive_deletions WHERE id = $1")
            .bind(deletion)
            .fetch_all(&admin)
            .await
            .unwrap();
    assert_eq!(keys, vec![format!("{}/{}/{session}/{session}.ndjson", t.org, t.agent)]);
    assert!(store().list(&prefix).await.unwrap().is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_complete_while_s3_is_down_and_are_archived_when_it_returns() {
    let _serial = SERIAL.lock().await;
    let (server, admin, t, token) = started("archive-outage").await;
    let api = Api { server: &server, token };
    stack("s3-stop");
    let mut sessions = Vec::new();
    for i in 0..3 {
        let session =
            session_with_turns(&admin, t, &[("user", &format!("outage turn {i}")), ("assistant", "ok")]).await;
        let started = Instant::now();
        let completed = api.complete(session).await;
        assert_eq!(completed.status, 200, "{}", completed.body);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "completion does not wait for S3"
        );
        sessions.push(session);
    }
    fixtures::eventually(Duration::from_secs(30), "readiness reports the store down", || async {
        server.get("/readyz").await.body["archive_store"]["status"] == "down"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for session in &sessions {
        assert!(api.session(*session).await["archived_at"].is_null());
    }
    let dead: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ibex_core.outbox WHERE org_id = $1 AND topic = 'archive' AND processed_at IS NOT NULL",
    )
    .bind(t.org)
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(dead, 0, "an outage burns no event");

    stack("s3-start");
    for session in &sessions {
        let body = api.wait_archived(*session).await;
        assert_eq!(body["archive_lines"], 1);
    }
    assert_eq!(server.get("/readyz").await.body["archive_store"]["status"], "up");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_short_leaves_no_object_and_the_session_is_archived_whole_after_the_lease() {
    let _serial = SERIAL.lock().await;
    let admin = admin().await;
    let t = fixtures::tenant(&admin, "archive-killed").await;
    let session = session_with_turns(&admin, t, &[("user", "cut short"), ("assistant", "ok")]).await;
    let key = format!("{}/{}/{session}/{session}.ndjson", t.org, t.agent);
    // A worker that died mid-upload: it claimed the event (a 2 s lease) and sent half a PUT.
    fixtures::in_org(&admin, t.org, "SELECT ibex_core.complete_session($1, $2)", session).await;
    let claimed: i64 = sqlx::query_scalar(
        "UPDATE ibex_core.outbox SET attempts = attempts + 1, available_at = now() + interval '2 seconds'
         WHERE org_id = $1 AND topic = 'archive' AND aggregate_id = $2 AND processed_at IS NULL RETURNING id",
    )
    .bind(t.org)
    .bind(session)
    .fetch_one(&admin)
    .await
    .unwrap();
    assert!(claimed > 0);
    half_a_put(&store(), &key).await;
    assert!(
        store().get(&key, 1 << 20).await.unwrap().is_none(),
        "S3 keeps no half object"
    );

    let (server, _, _, _) = started("archive-killed-api").await;
    let token = fixtures::token(t.org, "admin", None).await;
    let api = Api { server: &server, token };
    let body = api.wait_archived(session).await;
    let bytes = store().get(&key, 1 << 20).await.unwrap().expect("archived whole");
    assert_eq!(
        ibex_engine::archive::sha256_hex(&bytes),
        body["archive_sha256"].as_str().unwrap()
    );
    server.stop().await;
}

/// Turns of about 1 MB each added to a session as later checkpoints (the content limit is
/// 1,000,000 characters a turn): `count` MB to archive.
async fn add_large_turns(admin: &PgPool, t: Tenant, session: Uuid, count: i32) {
    sqlx::query(
        "WITH added AS (
             INSERT INTO ibex_core.session_turns (org_id, session_id, turn_index, role, content, tokens, model, checkpoint)
             SELECT $1, $2, s.turn_count + n, CASE WHEN n % 2 = 1 THEN 'user' ELSE 'assistant' END,
                    repeat(md5($2::text || n), 31000), 250000, 'gpt-test', s.checkpoint_count + n
             FROM ibex_core.sessions s, generate_series(1, $3) AS n
             WHERE s.org_id = $1 AND s.id = $2
             RETURNING turn_index, checkpoint)
         UPDATE ibex_core.sessions SET turn_count = (SELECT max(turn_index) FROM added),
                checkpoint_count = (SELECT max(checkpoint) FROM added),
                last_extracted_turn = (SELECT max(turn_index) FROM added)
         WHERE org_id = $1 AND id = $2",
    )
    .bind(t.org)
    .bind(session)
    .bind(count)
    .execute(admin)
    .await
    .unwrap();
}

/// Bytes the process has passed to write(2) and send(2) so far (`wchar` of /proc/<pid>/io):
/// rising by megabytes only while it sends an archive's body.
fn bytes_written(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    io.lines()
        .find_map(|line| line.strip_prefix("wchar: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_killed_mid_upload_leaves_no_half_object_and_another_writes_it_whole() {
    let _serial = SERIAL.lock().await;
    let admin = admin().await;
    let t = fixtures::tenant(&admin, "archive-sigkill").await;
    let session = session_with_turns(&admin, t, &[("user", "a long one"), ("assistant", "indeed")]).await;
    add_large_turns(&admin, t, session, 24).await;
    let key = format!("{}/{}/{session}/{session}.ndjson", t.org, t.agent);
    fixtures::in_org(&admin, t.org, "SELECT ibex_core.complete_session($1, $2)", session).await;

    // A real `ibex serve` with a 2 s lease, killed (SIGKILL) once megabytes of the archive's
    // body have left it and before its PUT is answered.
    let config = s3_config();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ibex"))
        .arg("serve")
        .env("IBEX_DATABASE_URL", env("IBEX_DATABASE_URL"))
        .env("IBEX_REDIS_URL", support::redis_url())
        .env("IBEX_HTTP_ADDR", "127.0.0.1:0")
        .env("IBEX_GRPC_ADDR", "127.0.0.1:0")
        .env("IBEX_MODEL_DIR", &config.model_dir)
        .env("IBEX_ORT_LIBRARY", &config.ort_library)
        .env("IBEX_EMBED_WORKERS", "1")
        .env("IBEX_HOT_CACHE_CONSUMER", "false")
        .env("IBEX_ARCHIVE_LEASE_SECONDS", "2")
        .env("IBEX_ARCHIVE_POLL_MS", "100")
        .env("IBEX_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("ibex serve starts");
    let pid = child.id();
    let deadline = Instant::now() + ARCHIVED_WITHIN;
    let claimed = || async {
        sqlx::query_scalar::<_, i32>(
            "SELECT attempts FROM ibex_core.outbox
             WHERE org_id = $1 AND topic = 'archive' AND aggregate_id = $2 AND processed_at IS NULL",
        )
        .bind(t.org)
        .bind(session)
        .fetch_optional(&admin)
        .await
        .unwrap()
        .unwrap_or(0)
            > 0
    };
    while !claimed().await {
        assert!(Instant::now() < deadline, "the sidecar never claimed the archive event");
        assert!(child.try_wait().unwrap().is_none(), "ibex serve exited early");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let at_claim = bytes_written(pid);
    while bytes_written(pid) < at_claim + (4 << 20) {
        assert!(Instant::now() < deadline, "the archive's body never left the sidecar");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    let archived_by_the_killed: Option<bool> =
        sqlx::query_scalar("SELECT archived_at IS NOT NULL FROM ibex_core.sessions WHERE org_id = $1 AND id = $2")
            .bind(t.org)
            .bind(session)
            .fetch_optional(&admin)
            .await
            .unwrap();
    assert_eq!(archived_by_the_killed, Some(false), "killed before it could record");
    assert!(
        store().get(&key, 64 << 20).await.unwrap().is_none(),
        "S3 keeps no half object of a PUT cut short"
    );

    // Another sidecar takes the event once the lease is over and writes the archive whole.
    let (server, _, _, _) = started("archive-sigkill-api").await;
    let token = fixtures::token(t.org, "admin", None).await;
    let api = Api { server: &server, token };
    let body = api.wait_archived(session).await;
    let bytes = store().get(&key, 64 << 20).await.unwrap().expect("archived whole");
    assert!(bytes.len() > 23_000_000, "{} bytes", bytes.len());
    assert_eq!(bytes.len() as i64, body["archive_bytes"].as_i64().unwrap());
    assert_eq!(
        ibex_engine::archive::sha256_hex(&bytes),
        body["archive_sha256"].as_str().unwrap()
    );
    assert_eq!(body["archive_lines"], 25, "one line per checkpoint");
    server.stop().await;
}

/// Sends a signed PUT of 64 KiB that stops after half the body, then drops the connection.
async fn half_a_put(store: &ArchiveStore, key: &str) {
    use tokio::io::AsyncWriteExt;
    let url = store.presigned_put(key, Duration::from_secs(60));
    let host = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let mut stream = tokio::net::TcpStream::connect(&host).await.unwrap();
    let path = format!("{}?{}", url.path(), url.query().unwrap_or(""));
    let head = format!("PUT {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 65536\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&[b'x'; 32768]).await.unwrap();
    stream.flush().await.unwrap();
    drop(stream);
    tokio::time::sleep(Duration::from_millis(300)).await;
}
