//! The SQL fuzzer: every function of `ibex_core`, `ibex_ops` and every `ibex_*` function is
//! called with generated arguments (NULLs, extremes, empty and huge values, invalid encodings,
//! injection attempts), each call in its own transaction that is rolled back. Errors are
//! expected; what must never happen:
//!
//! - a backend crash: the connection dropping mid-call, the postmaster restarting (its start
//!   time changes), or "terminated by signal" in the server log written during the run;
//! - an internal error (SQLSTATE XX000: a Rust panic or an `elog(ERROR)` bug) instead of a
//!   clear error;
//! - a call running into the 5 s statement timeout (input not bounded before expensive work).
//!
//! `IBEX_SQL_FUZZ_SEED` picks the random argument tuples (the seed is printed; the default is
//! fixed so a run is reproducible).

use std::collections::BTreeMap;
use std::time::Instant;

use ibex_e2e::{admin, app_for, bound_login, org_with_agent};
use sqlx::{Connection, PgConnection, Row};
use uuid::Uuid;

/// One argument: a text parameter cast to the argument's type, or a fixed SQL expression (for
/// what a parameter cannot carry, such as bytes that are not UTF-8).
#[derive(Clone, Debug)]
enum Arg {
    Param(Option<String>),
    Expr(&'static str),
}

fn p(value: impl Into<String>) -> Arg {
    Arg::Param(Some(value.into()))
}

const NULL: Arg = Arg::Param(None);

struct Function {
    /// Schema-qualified and quoted by the catalog (`%I.%I`).
    name: String,
    arg_names: Vec<String>,
    arg_types: Vec<String>,
}

/// Ids that exist, so that calls get past "not found" into the code behind it.
struct Fixture {
    org: Uuid,
    agent: Uuid,
    memory: Uuid,
    session: Uuid,
}

fn vector(dims: usize, value: &str) -> String {
    format!("[{}]", vec![value; dims].join(","))
}

fn array(elements: &[&str]) -> String {
    format!("{{{}}}", elements.join(","))
}

fn deep_json(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

/// The values tried for one type. The first is NULL; the third is the "typical" value used
/// while another argument varies.
fn pool(type_name: &str, fixture: &Fixture) -> Vec<Arg> {
    let ids = [fixture.org, fixture.agent, fixture.memory, fixture.session].map(|u| u.to_string());
    match type_name {
        "text" | "name" => vec![
            NULL,
            p(""),
            p("The user plays the cello."),
            p("Mail jane.doe@example.com, card 4111 1111 1111 1111, SSN 123-45-6789"),
            p("'); DROP TABLE ibex_core.memories; --"),
            p("semantic"),
            p("active"),
            p("gpt-4o"),
            p("x\u{0}y"),
            Arg::Expr("E'\\xc3\\x28'"),
            p("naïve café 東京 🚀 \u{202e}rtl\u{202c} i\u{307}\u{33a}"),
            p("lorem ipsum ".repeat(10_000)),
            p("x".repeat(1 << 20)),
        ],
        "uuid" => vec![
            NULL,
            p(Uuid::nil().to_string()),
            p(ids[0].clone()),
            p(ids[1].clone()),
            p(ids[2].clone()),
            p(ids[3].clone()),
            p(Uuid::new_v4().to_string()),
            p("not-a-uuid"),
        ],
        "integer" => ["0", "1", "-1", "5", "100000", "2147483647", "-2147483648"]
            .into_iter()
            .map(p)
            .fold(vec![NULL], push),
        "bigint" => ["0", "1", "-1", "9223372036854775807", "-9223372036854775808"]
            .into_iter()
            .map(p)
            .fold(vec![NULL], push),
        "double precision" | "real" => ["0", "0.5", "1", "-1", "NaN", "Infinity", "-Infinity", "1e308", "1e-320"]
            .into_iter()
            .map(p)
            .fold(vec![NULL], push),
        "boolean" => vec![NULL, p("false"), p("true")],
        "jsonb" => vec![
            NULL,
            p("{}"),
            p(r#"[{"role": "user", "content": "I moved to Lisbon."}]"#),
            p("[]"),
            p("null"),
            p(r#""a string""#),
            p(r#"{"email": "jane@example.com", "nested": {"phone": "+1 415 555 0132"}}"#),
            p(deep_json(5_000)),
            p(format!(r#"{{"big": "{}"}}"#, "x".repeat(1 << 20))),
            p(format!(
                "[{}]",
                vec![r#"{"role":"user","content":"hi"}"#; 20_000].join(",")
            )),
        ],
        "timestamp with time zone" => vec![
            NULL,
            p("-infinity"),
            p("2026-11-01 10:00:00+00"),
            p("infinity"),
            p("4713-01-01 00:00:00+00 BC"),
            p("294276-12-31 23:59:59+00"),
            p("1970-01-01 00:00:00+00"),
        ],
        "vector" => vec![
            NULL,
            p("[1,2,3]"),
            p(vector(384, "0.05")),
            p(vector(384, "0")),
            p(vector(384, "1e38")),
            p(vector(16_000, "1")),
        ],
        "uuid[]" => vec![
            NULL,
            p("{}"),
            p(array(&[&ids[0], &ids[2]])),
            p("{NULL}"),
            p(array(&vec![ids[2].as_str(); 100_000])),
        ],
        "text[]" => vec![
            NULL,
            p("{}"),
            p(r#"{"home","music"}"#),
            p("{NULL}"),
            p(r#"{"", " ", "jane@example.com"}"#),
            p(array(&vec!["tag"; 100_000])),
            p(format!(r#"{{"{}"}}"#, "x".repeat(1 << 20))),
            p("{{a,b},{c,d}}"),
        ],
        "integer[]" | "bigint[]" => vec![
            NULL,
            p("{}"),
            p("{1,2,3}"),
            p("{NULL}"),
            p("{-1,2147483647}"),
            p(array(&vec!["7"; 100_000])),
            p("{{1,2},{3,4}}"),
        ],
        "double precision[]" => vec![
            NULL,
            p("{}"),
            p("{0.9,0.5,0.1}"),
            p("{NaN,Infinity,-Infinity}"),
            p(array(&vec!["0.5"; 100_000])),
        ],
        // Composite arrays and anything else: what generic input can reach.
        _ => vec![NULL, p(""), p("{}"), p("{NULL}")],
    }
}

fn push(mut values: Vec<Arg>, value: Arg) -> Vec<Arg> {
    values.push(value);
    values
}

/// The typical value of an argument: the fixture's id when the name says which, else the
/// pool's third value.
fn typical(name: &str, type_name: &str, pool: &[Arg], fixture: &Fixture) -> Arg {
    if type_name == "uuid" {
        let id = [
            ("org", fixture.org),
            ("agent", fixture.agent),
            ("memory", fixture.memory),
            ("session", fixture.session),
        ]
        .into_iter()
        .find(|(key, _)| name.contains(key))
        .map(|(_, id)| id);
        if let Some(id) = id {
            return p(id.to_string());
        }
    }
    pool.get(2).or(pool.last()).cloned().unwrap_or(NULL)
}

/// xorshift64*: enough randomness for argument tuples, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

/// Random tuples per function, on top of the systematic ones.
const RANDOM_TUPLES: usize = 30;

/// The argument tuples for one function: all NULL; the typical tuple with one argument varied
/// through its pool; a few random tuples.
fn tuples(function: &Function, fixture: &Fixture, rng: &mut Rng) -> Vec<Vec<Arg>> {
    let pools: Vec<Vec<Arg>> = function.arg_types.iter().map(|t| pool(t, fixture)).collect();
    let base: Vec<Arg> = function
        .arg_names
        .iter()
        .zip(&function.arg_types)
        .zip(&pools)
        .map(|((n, t), pool)| typical(n, t, pool, fixture))
        .collect();
    let mut out = vec![vec![NULL; base.len()], base.clone()];
    for (i, pool) in pools.iter().enumerate() {
        for value in pool {
            let mut tuple = base.clone();
            tuple[i] = value.clone();
            out.push(tuple);
        }
    }
    for _ in 0..if base.is_empty() { 0 } else { RANDOM_TUPLES } {
        out.push(pools.iter().map(|pool| pool[rng.below(pool.len())].clone()).collect());
    }
    out
}

fn call_sql(function: &Function, tuple: &[Arg]) -> String {
    let mut params = 0;
    let args: Vec<String> = tuple
        .iter()
        .zip(&function.arg_types)
        .map(|(arg, type_name)| match arg {
            Arg::Param(_) => {
                params += 1;
                format!("${params}::{type_name}")
            }
            Arg::Expr(expr) => format!("({expr})::{type_name}"),
        })
        .collect();
    // count(r) uses the result, so even an immutable function is really called.
    format!(
        "SELECT count(r) FROM (SELECT {}({}) AS r) s",
        function.name,
        args.join(", ")
    )
}

fn describe(function: &Function, tuple: &[Arg]) -> String {
    let args: Vec<String> = tuple
        .iter()
        .map(|a| match a {
            Arg::Param(None) => "NULL".into(),
            Arg::Param(Some(v)) if v.len() > 60 => format!("<{} bytes>", v.len()),
            Arg::Param(Some(v)) => format!("{v:?}"),
            Arg::Expr(e) => (*e).into(),
        })
        .collect();
    format!("{}({})", function.name, args.join(", "))
}

enum Outcome {
    Ok,
    Error(String),
    ConnectionLost(String),
}

async fn call(conn: &mut PgConnection, org: Uuid, function: &Function, tuple: &[Arg]) -> Outcome {
    let sql = call_sql(function, tuple);
    let run = async {
        let mut tx = conn.begin().await?;
        sqlx::query("SELECT set_config('statement_timeout', '5s', true), set_config('ibex.org_id', $1, true)")
            .bind(org.to_string())
            .execute(&mut *tx)
            .await?;
        let mut query = sqlx::query(&sql);
        for arg in tuple {
            if let Arg::Param(value) = arg {
                query = query.bind(value.clone());
            }
        }
        let result = query.fetch_all(&mut *tx).await.map(|_| ());
        // Whatever happened is rolled back: the fuzzer leaves the database as it found it.
        tx.rollback().await?;
        result
    };
    match run.await {
        Ok(()) => Outcome::Ok,
        Err(sqlx::Error::Database(e)) => Outcome::Error(e.code().map(|c| c.into_owned()).unwrap_or_default()),
        Err(other) => Outcome::ConnectionLost(other.to_string()),
    }
}

async fn functions(conn: &mut PgConnection) -> Vec<Function> {
    let rows = sqlx::query(
        "SELECT format('%I.%I', n.nspname, p.proname) AS name,
                coalesce(p.proargnames[1:p.pronargs], '{}') AS arg_names,
                ARRAY(SELECT format_type(t, NULL) FROM unnest(p.proargtypes) WITH ORDINALITY AS a(t, i) ORDER BY i) AS arg_types
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE p.prokind = 'f'
            AND (n.nspname IN ('ibex_core', 'ibex_ops') OR (n.nspname = 'public' AND p.proname LIKE 'ibex\\_%'))
          ORDER BY 1, 2",
    )
    .fetch_all(conn)
    .await
    .expect("catalog");
    rows.into_iter()
        .map(|row| {
            let arg_types: Vec<String> = row.get("arg_types");
            let mut arg_names: Vec<String> = row.get("arg_names");
            arg_names.resize(arg_types.len(), String::new());
            Function {
                name: row.get("name"),
                arg_names,
                arg_types,
            }
        })
        .collect()
}

async fn fixture() -> Fixture {
    let admin = admin().await;
    let (org, agent) = org_with_agent(&admin, "sql-fuzz").await;
    let app = app_for(org).await;
    let memory: Uuid =
        sqlx::query_scalar("SELECT memory_id FROM ibex_core.remember($1, $2, 'The user plays the cello.')")
            .bind(org)
            .bind(agent)
            .fetch_one(&app)
            .await
            .expect("remember");
    let session: Uuid = sqlx::query_scalar("SELECT ibex_core.ensure_session($1, $2, 'sql-fuzz', NULL, '{}')")
        .bind(org)
        .bind(agent)
        .fetch_one(&app)
        .await
        .expect("session");
    Fixture {
        org,
        agent,
        memory,
        session,
    }
}

fn log_size(path: &str) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The server log written since `from`, lossily decoded.
fn log_since(path: &str, from: u64) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(bytes.get(from as usize..).unwrap_or_default()).into_owned()
}

/// What one pass found.
#[derive(Default)]
struct Findings {
    calls: usize,
    ok: usize,
    errors: BTreeMap<String, usize>,
    internal: Vec<String>,
    timeouts: Vec<String>,
    lost: Vec<String>,
    slowest: (f64, String),
}

/// A new connection once the server takes them again (after a crash it first recovers).
async fn reconnect(url: &str) -> PgConnection {
    let started = Instant::now();
    loop {
        match PgConnection::connect(url).await {
            Ok(conn) => return conn,
            Err(e) if started.elapsed().as_secs() < 60 => {
                eprintln!("sql fuzz: reconnecting ({e})");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(e) => panic!("the server did not take connections again within 60 s: {e}"),
        }
    }
}

/// Calls every function with every tuple over one login's connection.
async fn fuzz_as(url: &str, functions: &[Function], fixture: &Fixture, rng: &mut Rng) -> Findings {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    let mut found = Findings::default();
    for function in functions {
        for tuple in tuples(function, fixture, rng) {
            found.calls += 1;
            let t = Instant::now();
            let outcome = call(&mut conn, fixture.org, function, &tuple).await;
            let secs = t.elapsed().as_secs_f64();
            if secs > found.slowest.0 {
                found.slowest = (secs, describe(function, &tuple));
            }
            match outcome {
                Outcome::Ok => found.ok += 1,
                Outcome::Error(code) => {
                    match code.as_str() {
                        "XX000" => found.internal.push(describe(function, &tuple)),
                        "57014" => found.timeouts.push(describe(function, &tuple)),
                        _ => {}
                    }
                    *found.errors.entry(code).or_default() += 1;
                }
                Outcome::ConnectionLost(why) => {
                    found.lost.push(format!("{} ({why})", describe(function, &tuple)));
                    conn = reconnect(url).await;
                }
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ibex_function_survives_generated_arguments() {
    let owner_url =
        std::env::var("IBEX_MIGRATE_DATABASE_URL").expect("IBEX_MIGRATE_DATABASE_URL (run through make test)");
    let log = std::env::var("IBEX_PG_LOG").expect("IBEX_PG_LOG (run through make test)");
    let seed: u64 = std::env::var("IBEX_SQL_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x1BE7);
    let fixture = fixture().await;
    let admin = admin().await;
    // The superuser reaches every function past RLS and grants; the application login, bound to
    // the fixture's org as a deployment binds one, is the hostile caller.
    let (_, app_url) = bound_login(&admin, fixture.org, "sqlfuzz").await;
    let started_at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT pg_postmaster_start_time()")
        .fetch_one(&admin)
        .await
        .expect("uptime");
    let log_from = log_size(&log);
    let mut catalog = PgConnection::connect(&owner_url).await.expect("connect");
    let functions = functions(&mut catalog).await;
    assert!(
        functions.len() > 100,
        "only {} functions found: is the database migrated?",
        functions.len()
    );

    let mut rng = Rng(seed | 1);
    let mut problems = Vec::new();
    for (login, url) in [
        ("superuser", owner_url.as_str()),
        ("application login", app_url.as_str()),
    ] {
        let t0 = Instant::now();
        let found = fuzz_as(url, &functions, &fixture, &mut rng).await;
        eprintln!(
            "sql fuzz as the {login}: seed {seed}, {} functions, {} calls in {:.1}s; succeeded {}; errors by SQLSTATE {:?}",
            functions.len(),
            found.calls,
            t0.elapsed().as_secs_f64(),
            found.ok,
            found.errors
        );
        eprintln!("  slowest call {:.2}s: {}", found.slowest.0, found.slowest.1);
        let mut note = |what: &str, list: &[String]| {
            if !list.is_empty() {
                problems.push(format!("as the {login}, {what}:\n  {}", list.join("\n  ")));
            }
        };
        note("connections lost (a backend crashed?)", &found.lost);
        note("internal errors (XX000) instead of clear ones", &found.internal);
        note("calls ran into the 5 s statement timeout", &found.timeouts);
    }

    let restarted_at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT pg_postmaster_start_time()")
        .fetch_one(&admin)
        .await
        .expect("uptime");
    let server_log = log_since(&log, log_from);
    let crashes: Vec<&str> = server_log
        .lines()
        .filter(|l| l.contains("terminated by signal") || l.contains("was terminated by exception"))
        .collect();
    if !crashes.is_empty() {
        problems.push(format!("the server log reports crashes:\n  {}", crashes.join("\n  ")));
    }
    if started_at != restarted_at {
        problems.push(format!(
            "the postmaster restarted during the run (started {started_at}, now {restarted_at})"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
