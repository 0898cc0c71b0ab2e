//! The hot cache when Redis loses its data or goes away. Each test runs its own redis-server on
//! a free port (never the shared test Redis: FLUSHDB and a shutdown would hit other tests), and
//! the tests of this binary run one at a time, so only one hot cache consumer is running: the
//! outbox is shared, and a consumer writing to another Redis would acknowledge events this one
//! waits for.

mod common;
#[path = "serve/fixtures.rs"]
mod fixtures;
#[path = "serve/support.rs"]
#[allow(dead_code)]
mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use fixtures::{assemble, eventually, message, request, Tenant};
use support::TestServer;
use tokio::sync::Mutex;

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

struct OwnRedis {
    port: u16,
    dir: PathBuf,
}

impl OwnRedis {
    async fn start() -> Self {
        let port = fixtures::closed_port().await;
        let dir = std::env::temp_dir().join(format!("ibex-redis-{port}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let redis = Self { port, dir };
        redis.launch().await;
        redis
    }

    async fn launch(&self) {
        let status = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--daemonize",
                "yes",
            ])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--pidfile")
            .arg(self.dir.join("redis.pid"))
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .status()
            .expect("redis-server runs (Debian package redis-server)");
        assert!(status.success());
        let url = self.url();
        eventually(Duration::from_secs(5), "own redis-server answers", || {
            let url = url.clone();
            async move {
                match redis::Client::open(url)
                    .unwrap()
                    .get_multiplexed_async_connection()
                    .await
                {
                    Ok(mut c) => redis::cmd("PING").query_async::<String>(&mut c).await.is_ok(),
                    Err(_) => false,
                }
            }
        })
        .await;
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    async fn shutdown(&self) {
        let mut c = self.connection().await;
        let _ = redis::cmd("SHUTDOWN").arg("NOSAVE").query_async::<()>(&mut c).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "shutdown", "nosave"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn config(redis: &OwnRedis) -> ibex_sidecar::Config {
    ibex_sidecar::Config {
        redis_url: Some(redis.url()),
        hot_cache_poll: Duration::from_millis(200),
        context_deadline: fixtures::RELAXED_DEADLINE,
        ..support::config()
    }
}

async fn members(redis: &OwnRedis, t: Tenant) -> Vec<String> {
    let mut c = redis.connection().await;
    fixtures::hot_members(&mut c, t).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_is_rebuilt_after_flushdb_and_reads_fall_back_meanwhile() {
    let _one = ONE_AT_A_TIME.lock().await;
    let redis = OwnRedis::start().await;
    let admin = fixtures::admin().await;
    let t = fixtures::tenant(&admin, "hot-flush").await;
    let a = fixtures::remember(&admin, t, "The user's favourite colour is teal.", "declarative").await;
    let b = fixtures::remember(
        &admin,
        t,
        "Reports go out on the first Monday of the month.",
        "procedural",
    )
    .await;
    let server = TestServer::start_ready(config(&redis)).await;
    eventually(Duration::from_secs(15), "start-up rebuild fills the set", || async {
        members(&redis, t).await.len() == 2
    })
    .await;

    // While the marker is missing, reads come from Postgres: complete, not degraded.
    let token = fixtures::token(t.org, "context:assemble", None).await;
    let mut client = fixtures::grpc(server.server.grpc_addr).await;
    let mut c = redis.connection().await;
    redis::cmd("FLUSHDB").query_async::<()>(&mut c).await.unwrap();
    let r = assemble(
        &mut client,
        &token,
        request(t, "gpt-4o", vec![message("user", "What colour do I like?")]),
    )
    .await
    .unwrap();
    assert!(!r.degraded, "{}", r.degraded_reason);
    assert_eq!(r.memories.len(), 2);

    eventually(
        Duration::from_secs(10),
        "the consumer notices the lost data and rebuilds",
        || async {
            let mut members = members(&redis, t).await;
            members.sort();
            let mut want = vec![a.to_string(), b.to_string()];
            want.sort();
            members == want
        },
    )
    .await;
    // The marker is written after every agent of the database, not only this one, is rebuilt.
    eventually(Duration::from_secs(10), "the marker is back", || {
        let mut c = c.clone();
        async move {
            let ready: Option<String> = redis::cmd("GET")
                .arg(ibex_sidecar::hotcache::READY_KEY)
                .query_async(&mut c)
                .await
                .unwrap();
            ready.is_some()
        }
    })
    .await;
    let r = assemble(
        &mut client,
        &token,
        request(t, "gpt-4o", vec![message("user", "What colour do I like?")]),
    )
    .await
    .unwrap();
    let hot = r.timings.iter().find(|x| x.name == "hot").unwrap();
    assert_eq!(hot.status, "ok", "served from Redis again");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_degrades_reads_and_the_consumer_catches_up() {
    let _one = ONE_AT_A_TIME.lock().await;
    let redis = OwnRedis::start().await;
    let admin = fixtures::admin().await;
    let t = fixtures::tenant(&admin, "hot-outage").await;
    let a = fixtures::remember(&admin, t, "The user's cat is named Miso.", "declarative").await;
    let server = TestServer::start_ready(config(&redis)).await;
    eventually(Duration::from_secs(15), "first memory in the set", || async {
        members(&redis, t).await == vec![a.to_string()]
    })
    .await;

    redis.shutdown().await;
    let b = fixtures::remember(&admin, t, "The user's dog is named Tofu.", "declarative").await;
    let token = fixtures::token(t.org, "context:assemble", None).await;
    let mut client = fixtures::grpc(server.server.grpc_addr).await;
    let r = assemble(
        &mut client,
        &token,
        request(t, "gpt-4o", vec![message("user", "What are my pets called?")]),
    )
    .await
    .expect("still answered");
    assert!(r.degraded, "hot source down");
    assert!(r.memories.is_empty());
    tokio::time::sleep(Duration::from_millis(600)).await;
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ibex_core.outbox
         WHERE org_id = $1 AND topic = 'hot_cache' AND aggregate_id = $2 AND processed_at IS NULL",
    )
    .bind(t.org)
    .bind(b)
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(pending, 1, "nothing is acknowledged while Redis is down");

    // Redis comes back empty (no persistence): rebuild, then the pending event is applied.
    redis.launch().await;
    eventually(Duration::from_secs(15), "both memories after the outage", || async {
        let mut m = members(&redis, t).await;
        m.sort();
        let mut want = vec![a.to_string(), b.to_string()];
        want.sort();
        m == want
    })
    .await;
    eventually(Duration::from_secs(10), "the pending event is acknowledged", || {
        let admin = admin.clone();
        async move {
            let pending: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM ibex_core.outbox WHERE org_id = $1 AND topic = 'hot_cache' AND processed_at IS NULL",
            )
            .bind(t.org)
            .fetch_one(&admin)
            .await
            .unwrap();
            pending == 0
        }
    })
    .await;
    let r = assemble(
        &mut client,
        &token,
        request(t, "gpt-4o", vec![message("user", "What are my pets called?")]),
    )
    .await
    .unwrap();
    assert!(!r.degraded, "{}", r.degraded_reason);
    assert_eq!(r.memories.len(), 2);
    server.stop().await;
}
