//! Security tier, tenancy (issue 10, items 1, 2 and 4). A hostile application holds a database
//! login of its own, bound to org A, and goes after org B's rows, queues and locks. Every test
//! connects as the roles a deployment uses: an application login bound with
//! `ibex_ops.bind_login`, an unbound login, the sidecar's login (`ibex_sidecar`, through
//! IBEX_DATABASE_URL); the superuser only builds fixtures and reads the catalog.

use std::time::Duration;

use ibex_e2e::{admin, app_for, bound_login, org_with_agent, unbound_login};
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

const INSUFFICIENT_PRIVILEGE: &str = "42501";

async fn connect(url: &str) -> PgConnection {
    PgConnection::connect(url).await.expect("connect")
}

fn sqlstate(result: Result<impl std::fmt::Debug, sqlx::Error>) -> String {
    match result {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e
            .as_database_error()
            .and_then(|d| d.code())
            .map(|c| c.to_string())
            .unwrap_or_else(|| panic!("not a database error: {e}")),
    }
}

/// Org A (the attacker's, with a bound login) and org B (the victim, with one memory).
struct Orgs {
    admin: PgPool,
    a: Uuid,
    a_agent: Uuid,
    a_url: String,
    b: Uuid,
    b_agent: Uuid,
    b_url: String,
}

async fn orgs(label: &str) -> Orgs {
    let admin = admin().await;
    let (a, a_agent) = org_with_agent(&admin, &format!("{label}-a")).await;
    let (b, b_agent) = org_with_agent(&admin, &format!("{label}-b")).await;
    let (_, a_url) = bound_login(&admin, a, "a").await;
    let (_, b_url) = bound_login(&admin, b, "b").await;
    let sidecar = app_for(b).await;
    sqlx::query("SELECT ibex_core.remember($1, $2, 'The user of org B banks with Nordbank.')")
        .bind(b)
        .bind(b_agent)
        .execute(&sidecar)
        .await
        .expect("remember in B");
    Orgs {
        admin,
        a,
        a_agent,
        a_url,
        b,
        b_agent,
        b_url,
    }
}

async fn visible_memories(conn: &mut PgConnection, org: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM ibex_core.memories WHERE org_id = $1")
        .bind(org)
        .fetch_one(conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn item1_set_config_cannot_switch_org() {
    let o = orgs("sec-setconfig").await;
    let mut a = connect(&o.a_url).await;
    sqlx::query("SELECT set_config('ibex.org_id', $1, false)")
        .bind(o.b.to_string())
        .execute(&mut a)
        .await
        .unwrap();
    let acting: Option<Uuid> = sqlx::query_scalar("SELECT ibex_core.current_org()")
        .fetch_one(&mut a)
        .await
        .unwrap();
    assert_eq!(acting, Some(o.a), "the login's binding wins over ibex.org_id");
    assert_eq!(visible_memories(&mut a, o.b).await, 0, "org B's rows stay invisible");
    let searched = sqlx::query("SELECT * FROM ibex_core.search($1, $2, 'bank')")
        .bind(o.b)
        .bind(o.b_agent)
        .fetch_all(&mut a)
        .await;
    assert_eq!(sqlstate(searched), INSUFFICIENT_PRIVILEGE);
    // Transaction-local, as the sidecar does it: no different.
    let mut tx = a.begin().await.unwrap();
    sqlx::query("SELECT set_config('ibex.org_id', $1, true)")
        .bind(o.b.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(visible_memories(&mut tx, o.b).await, 0);
    tx.rollback().await.unwrap();
    // The victim's own login does see it (the test would pass vacuously otherwise).
    let mut b = connect(&o.b_url).await;
    assert_eq!(visible_memories(&mut b, o.b).await, 1);
}

#[tokio::test]
async fn item1_alter_role_cannot_rebind_or_reach_other_roles() {
    let o = orgs("sec-alterrole").await;
    let mut a = connect(&o.a_url).await;
    // Postgres lets a role set its own session defaults; it changes nothing here.
    let _ = sqlx::query(&format!("ALTER ROLE CURRENT_USER SET ibex.org_id = '{}'", o.b))
        .execute(&mut a)
        .await;
    let mut again = connect(&o.a_url).await;
    let acting: Option<Uuid> = sqlx::query_scalar("SELECT ibex_core.current_org()")
        .fetch_one(&mut again)
        .await
        .unwrap();
    assert_eq!(acting, Some(o.a));
    assert_eq!(visible_memories(&mut again, o.b).await, 0);
    for role in ["ibex_sidecar", "ibex_app", "ibex_owner", "ibex_system"] {
        let r = sqlx::query(&format!("ALTER ROLE {role} SET ibex.org_id = '{}'", o.b))
            .execute(&mut a)
            .await;
        assert_eq!(sqlstate(r), INSUFFICIENT_PRIVILEGE, "ALTER ROLE {role}");
        let r = sqlx::query(&format!("ALTER ROLE {role} PASSWORD 'taken-over'"))
            .execute(&mut a)
            .await;
        assert_eq!(sqlstate(r), INSUFFICIENT_PRIVILEGE, "password of {role}");
    }
    let r = sqlx::query("SET ROLE ibex_sidecar").execute(&mut a).await;
    assert_eq!(sqlstate(r), INSUFFICIENT_PRIVILEGE, "SET ROLE to the sidecar");
}

#[tokio::test]
async fn item1_unbound_login_acts_for_no_org() {
    let o = orgs("sec-unbound").await;
    let mut stray = connect(&unbound_login(&o.admin, "stray").await).await;
    sqlx::query("SELECT set_config('ibex.org_id', $1, false)")
        .bind(o.b.to_string())
        .execute(&mut stray)
        .await
        .unwrap();
    assert_eq!(visible_memories(&mut stray, o.b).await, 0);
    let r = sqlx::query("SELECT * FROM ibex_core.remember($1, $2, 'Planted by a stranger.')")
        .bind(o.b)
        .bind(o.b_agent)
        .fetch_all(&mut stray)
        .await;
    assert_eq!(sqlstate(r), INSUFFICIENT_PRIVILEGE);
}

#[tokio::test]
async fn item1_pg_stat_activity_hides_other_sessions_statements() {
    let o = orgs("sec-activity").await;
    let marker = Uuid::new_v4().simple().to_string();
    let sleeper = |url: String, tag: String| {
        tokio::spawn(async move {
            let mut c = connect(&url).await;
            sqlx::query(&format!("SELECT pg_sleep(3), 'secret-{tag}'"))
                .execute(&mut c)
                .await
                .unwrap();
        })
    };
    let b_sleeps = sleeper(o.b_url.clone(), format!("b-{marker}"));
    let sidecar_sleeps = sleeper(std::env::var("IBEX_DATABASE_URL").unwrap(), format!("sidecar-{marker}"));
    // Both statements are running (seen by the superuser)...
    ibex_e2e::eventually("both sleepers running", Duration::from_secs(10), || async {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE query LIKE $1 AND state = 'active'")
                .bind(format!("%secret-%-{marker}%"))
                .fetch_one(&o.admin)
                .await
                .unwrap();
        (n == 2).then_some(())
    })
    .await;
    // ...and org A's login sees neither text.
    let mut a = connect(&o.a_url).await;
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE query LIKE $1")
        .bind(format!("%{marker}%"))
        .fetch_one(&mut a)
        .await
        .unwrap();
    assert_eq!(seen, 0, "another login's statements are hidden");
    b_sleeps.await.unwrap();
    sidecar_sleeps.await.unwrap();
}

#[tokio::test]
async fn item1_the_sidecar_acts_for_the_org_it_proved() {
    let o = orgs("sec-sidecar").await;
    let mut sidecar = connect(&std::env::var("IBEX_DATABASE_URL").unwrap()).await;
    let mut tx = sidecar.begin().await.unwrap();
    sqlx::query("SELECT set_config('ibex.org_id', $1, true)")
        .bind(o.b.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(visible_memories(&mut tx, o.b).await, 1);
    assert_eq!(visible_memories(&mut tx, o.a).await, 0);
}

#[tokio::test]
async fn item2_cross_org_functions_are_the_sidecars_alone() {
    let o = orgs("sec-crossorg").await;
    let mut a = connect(&o.a_url).await;
    let calls = [
        "SELECT * FROM ibex_core.hot_cache_agents()",
        "SELECT * FROM ibex_core.claim_hot_cache_events(100, 30)",
        "SELECT ibex_core.ack_hot_cache_events(ARRAY[gen_random_uuid()], ARRAY[1::bigint])",
        "SELECT ibex_core.retry_hot_cache_events(ARRAY[gen_random_uuid()], ARRAY[1::bigint], 'x', 3, 30)",
        "SELECT * FROM ibex_core.authenticate_token(repeat('a', 64))",
    ];
    for call in calls {
        let r = sqlx::query(call).fetch_all(&mut a).await;
        assert_eq!(sqlstate(r), INSUFFICIENT_PRIVILEGE, "{call}");
    }
    // The sidecar still may.
    let mut sidecar = connect(&std::env::var("IBEX_DATABASE_URL").unwrap()).await;
    sqlx::query("SELECT * FROM ibex_core.hot_cache_agents()")
        .fetch_all(&mut sidecar)
        .await
        .expect("the sidecar lists agents for the hot cache");
    sqlx::query("SELECT * FROM ibex_core.authenticate_token(repeat('a', 64))")
        .fetch_all(&mut sidecar)
        .await
        .expect("the sidecar authenticates tokens");
}

#[tokio::test]
async fn item2_security_definer_functions_pin_search_path() {
    let admin = admin().await;
    let unpinned: Vec<String> = sqlx::query_scalar(
        "SELECT p.oid::regprocedure::text FROM pg_proc p
         JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND NOT EXISTS (SELECT 1 FROM unnest(coalesce(p.proconfig, '{}')) c WHERE c LIKE 'search_path=%')",
    )
    .fetch_all(&admin)
    .await
    .unwrap();
    assert!(
        unpinned.is_empty(),
        "SECURITY DEFINER without a pinned search_path: {unpinned:?}"
    );
    let definers: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_proc WHERE prosecdef")
        .fetch_one(&admin)
        .await
        .unwrap();
    assert!(definers >= 7, "the check saw the functions it is about ({definers})");
}

#[tokio::test]
async fn item2_notifications_carry_no_tenant_data() {
    let o = orgs("sec-notify").await;
    let mut listener = PgListener::connect(&o.a_url).await.expect("listen as org A");
    listener
        .listen_all(["ibex_extraction", "ibex_outbox", "ibex_hot_cache"])
        .await
        .unwrap();
    // Org B works: a session completes (extraction wake-up) and a memory is stored (outbox).
    let sidecar = app_for(o.b).await;
    let session: Uuid = sqlx::query_scalar("SELECT ibex_core.ensure_session($1, $2, 'sec-notify')")
        .bind(o.b)
        .bind(o.b_agent)
        .fetch_one(&sidecar)
        .await
        .unwrap();
    sqlx::query("SELECT ibex_core.append_turns($1, $2, $3)")
        .bind(o.b)
        .bind(session)
        .bind(serde_json::json!([{"role": "user", "content": "I moved to Bergen."}]))
        .execute(&sidecar)
        .await
        .unwrap();
    sqlx::query("SELECT ibex_core.complete_session($1, $2)")
        .bind(o.b)
        .bind(session)
        .execute(&sidecar)
        .await
        .unwrap();
    sqlx::query("SELECT ibex_core.remember($1, $2, 'The user of org B moved to Bergen.')")
        .bind(o.b)
        .bind(o.b_agent)
        .execute(&sidecar)
        .await
        .unwrap();
    let secrets = [o.b.to_string(), o.b_agent.to_string(), session.to_string()];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, listener.recv()).await {
        for s in &secrets {
            assert!(
                !n.payload().contains(s.as_str()),
                "channel {} carried org B's {s}: {:?}",
                n.channel(),
                n.payload()
            );
        }
    }
}

#[tokio::test]
async fn item4_another_org_cannot_hold_the_remember_lock() {
    let o = orgs("sec-lock").await;
    let mut b = connect(&o.b_url).await;
    // The key the per-agent lock of remember used to be: computable by anyone.
    sqlx::query("SELECT pg_advisory_lock(hashtextextended('ibex.remember/' || $1 || '/' || $2, 0))")
        .bind(o.a.to_string())
        .bind(o.a_agent.to_string())
        .execute(&mut b)
        .await
        .unwrap();
    // Nor can B lock A's agent row: it cannot see it.
    let locked: Vec<(Uuid,)> = sqlx::query_as("SELECT id FROM ibex_core.agents WHERE id = $1 FOR NO KEY UPDATE")
        .bind(o.a_agent)
        .fetch_all(&mut b)
        .await
        .unwrap_or_default();
    assert!(locked.is_empty());
    let mut a = connect(&o.a_url).await;
    sqlx::query("SET statement_timeout = '5s'")
        .execute(&mut a)
        .await
        .unwrap();
    let stored: (Uuid, String) =
        sqlx::query_as("SELECT memory_id, path FROM ibex_core.remember($1, $2, 'The user of org A likes tea.')")
            .bind(o.a)
            .bind(o.a_agent)
            .fetch_one(&mut a)
            .await
            .expect("org A's remember is not blocked by org B");
    assert_eq!(stored.1, "created");
}

async fn alter_system(admin: &PgPool, statements: &[&str]) {
    for sql in statements.iter().chain(&["SELECT pg_reload_conf()"]) {
        sqlx::query(sql).execute(admin).await.unwrap();
    }
}

/// A completed session of `org` whose turns the rule-based extractor learns from.
async fn completed_session(sidecar: &PgPool, org: Uuid, agent: Uuid, name: &str) -> Uuid {
    let session: Uuid = sqlx::query_scalar("SELECT ibex_core.ensure_session($1, $2, $3)")
        .bind(org)
        .bind(agent)
        .bind(name)
        .fetch_one(sidecar)
        .await
        .unwrap();
    sqlx::query("SELECT ibex_core.append_turns($1, $2, $3)")
        .bind(org)
        .bind(session)
        .bind(serde_json::json!([{"role": "user", "content": "My name is Ana. I prefer tea over coffee."}]))
        .execute(sidecar)
        .await
        .unwrap();
    sqlx::query("SELECT ibex_core.complete_session($1, $2)")
        .bind(org)
        .bind(session)
        .execute(sidecar)
        .await
        .unwrap();
    session
}

#[tokio::test]
async fn item4_an_idle_transaction_of_one_org_does_not_stop_extraction() {
    let o = orgs("sec-extract").await;
    // Rule-based extraction (no LLM), polling often, as a deployment without an LLM runs.
    alter_system(
        &o.admin,
        &[
            "ALTER SYSTEM RESET ibex.llm_base_url",
            "ALTER SYSTEM SET ibex.extraction_poll_ms = 500",
        ],
    )
    .await;
    // Org A holds its agent's row (remember in a transaction it leaves open)...
    let mut a = connect(&o.a_url).await;
    sqlx::query("BEGIN").execute(&mut a).await.unwrap();
    sqlx::query("SELECT * FROM ibex_core.remember($1, $2, 'The user of org A is left waiting.')")
        .bind(o.a)
        .bind(o.a_agent)
        .fetch_all(&mut a)
        .await
        .unwrap();
    // ...and queues more sessions than there are extraction workers, ahead of org B's.
    let a_sidecar = app_for(o.a).await;
    for i in 0..4 {
        completed_session(&a_sidecar, o.a, o.a_agent, &format!("a-{i}")).await;
    }
    let b_session = completed_session(&app_for(o.b).await, o.b, o.b_agent, "b").await;
    ibex_e2e::eventually("org B's session is extracted", Duration::from_secs(45), || async {
        let done: bool = sqlx::query_scalar(
            "SELECT last_extracted_turn = turn_count FROM ibex_core.sessions WHERE org_id = $1 AND id = $2",
        )
        .bind(o.b)
        .bind(b_session)
        .fetch_one(&o.admin)
        .await
        .unwrap();
        done.then_some(())
    })
    .await;
    sqlx::query("ROLLBACK").execute(&mut a).await.unwrap();
    alter_system(&o.admin, &["ALTER SYSTEM RESET ibex.extraction_poll_ms"]).await;
}

#[tokio::test]
async fn item4_a_row_lock_of_one_org_does_not_stop_the_indexer() {
    let o = orgs("sec-indexer").await;
    let remember = |pool: PgPool, org: Uuid, agent: Uuid, text: &'static str| async move {
        let id: Uuid = sqlx::query_scalar("SELECT memory_id FROM ibex_core.remember($1, $2, $3)")
            .bind(org)
            .bind(agent)
            .bind(text)
            .fetch_one(&pool)
            .await
            .unwrap();
        sqlx::query("SELECT ibex_core.record_access($1, ARRAY[$2])")
            .bind(org)
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
        id
    };
    // Org A's memory has a read waiting to be folded, and A holds the memory's row.
    let x = remember(app_for(o.a).await, o.a, o.a_agent, "The user of org A collects stamps.").await;
    let mut a = connect(&o.a_url).await;
    sqlx::query("BEGIN").execute(&mut a).await.unwrap();
    sqlx::query("SELECT * FROM ibex_core.feedback($1, $2, true)")
        .bind(o.a)
        .bind(x)
        .fetch_all(&mut a)
        .await
        .unwrap();
    // Org B's read, queued after A's, is folded all the same, and B's new memory is indexed.
    let y = remember(app_for(o.b).await, o.b, o.b_agent, "The user of org B collects coins.").await;
    ibex_e2e::eventually(
        "org B's read folded and memory indexed",
        Duration::from_secs(30),
        || async {
            let (count, pending): (i64, i64) = sqlx::query_as(
                "SELECT (SELECT access_count FROM ibex_core.memories WHERE org_id = $1 AND id = $2),
                    (SELECT count(*) FROM ibex_core.outbox
                     WHERE org_id = $1 AND topic = 'index' AND processed_at IS NULL)",
            )
            .bind(o.b)
            .bind(y)
            .fetch_one(&o.admin)
            .await
            .unwrap();
            (count >= 1 && pending == 0).then_some(())
        },
    )
    .await;
    sqlx::query("ROLLBACK").execute(&mut a).await.unwrap();
}
