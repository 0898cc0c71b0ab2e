//! Tenant isolation through the sidecar's own database helper: an org-scoped transaction sees
//! only its org, cannot write into another, and leaves nothing behind on the pooled connection.

mod common;

use uuid::Uuid;

#[tokio::test]
async fn org_scoped_transactions_are_isolated_and_do_not_leak() {
    let admin = common::admin_pool().await;
    let (org_a, agent_a) = common::org_with_agent(&admin, "iso-a").await;
    let (org_b, agent_b) = common::org_with_agent(&admin, "iso-b").await;
    let app = common::app_pool().await;

    let mut tx = ibex_sidecar::db::begin_for_org(&app, org_a).await.unwrap();
    let agents: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM ibex_core.agents")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(agents, vec![agent_a], "org A sees exactly its own agent");
    // Writes go through functions, which refuse another org (and the tables refuse direct writes).
    let write_into_b = sqlx::query("SELECT ibex_core.ensure_session($1, $2)")
        .bind(org_b)
        .bind(agent_b)
        .execute(&mut *tx)
        .await;
    let err = write_into_b.expect_err("writing into org B must fail");
    assert!(err.to_string().contains("is not the org of this session"), "{err}");
    tx.rollback().await.unwrap();

    // The single pooled connection is reused: the org setting ended with the transaction.
    let visible: i64 = sqlx::query_scalar("SELECT count(*) FROM ibex_core.agents")
        .fetch_one(&app)
        .await
        .unwrap();
    assert_eq!(visible, 0, "no org set after the transaction ended");
    let setting: Option<String> = sqlx::query_scalar("SELECT current_setting('ibex.org_id', true)")
        .fetch_one(&app)
        .await
        .unwrap();
    assert!(setting.unwrap_or_default().is_empty());

    let mut tx = ibex_sidecar::db::begin_for_org(&app, org_b).await.unwrap();
    let agents: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM ibex_core.agents")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(agents, vec![agent_b]);
    tx.commit().await.unwrap();
}
