//! The `ibex` CLI's API subcommands (`orgs`, `agents`, `tokens`, `memories export`, `context`),
//! run as the built binary against a server in this process, as an operator runs them.

use std::process::Output;

use serde_json::Value;
use uuid::Uuid;

use crate::fixtures::{admin, remember, tenant, token};
use crate::support::{config, TestServer};

/// Runs `ibex <args>` against `server` with `token` (the environment a shell after `make run` has).
async fn ibex(server: &TestServer, token: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_ibex"))
        .args(args)
        .env("IBEX_API_URL", &server.http)
        .env("IBEX_GRPC_URL", format!("http://{}", server.server.grpc_addr))
        .env("IBEX_TOKEN", token)
        .env_remove("IBEX_ORG_ID")
        .env_remove("IBEX_AGENT_ID")
        .output()
        .await
        .expect("ibex runs")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "ibex failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stdout.clone()).expect("utf-8")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(output: &Output) -> Value {
    serde_json::from_str(&stdout(output)).expect("JSON on stdout")
}

#[tokio::test]
async fn cli_manages_agents_tokens_and_exports() {
    let server = TestServer::start(config()).await;
    let pool = admin().await;
    let t = tenant(&pool, "cli").await;
    let org_admin = token(t.org, "admin", None).await;

    let created = json(
        &ibex(
            &server,
            &org_admin,
            &["agents", "create", "--name", "cli-helper", "--json"],
        )
        .await,
    );
    let agent = created["id"].as_str().expect("id").to_string();
    assert_eq!(created["status"], "active");
    let table = stdout(&ibex(&server, &org_admin, &["agents", "list", "--limit", "1", "--all"]).await);
    assert!(table.lines().next().unwrap().starts_with("id"), "{table}");
    assert!(table.contains("cli-helper"), "every page followed: {table}");
    assert_eq!(table.lines().count(), 3, "header and both agents: {table}");
    let paused = json(&ibex(&server, &org_admin, &["agents", "status", &agent, "paused"]).await);
    assert_eq!(paused["status"], "paused");
    // A refused transition: a non-zero exit naming the allowed states, from the envelope.
    ibex(&server, &org_admin, &["agents", "status", &agent, "archived"]).await;
    let refused = ibex(&server, &org_admin, &["agents", "status", &agent, "paused"]).await;
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("HTTP 409 invalid_transition"),
        "{}",
        stderr(&refused)
    );
    assert!(stderr(&refused).contains("allowed: "), "{}", stderr(&refused));

    // A token made by the CLI: the secret alone on stdout, usable at once, gone once revoked.
    let minted = ibex(
        &server,
        &org_admin,
        &[
            "tokens",
            "create",
            "--name",
            "reader",
            "--scopes",
            "agents:read,memories:read",
        ],
    )
    .await;
    let secret = stdout(&minted).trim().to_string();
    assert!(stderr(&minted).contains("shown only now"));
    stdout(&ibex(&server, &secret, &["agents", "get", &agent]).await);
    let denied = ibex(&server, &secret, &["agents", "delete", &agent, "--yes"]).await;
    assert!(stderr(&denied).contains("HTTP 403"), "{}", stderr(&denied));
    let listed = stdout(&ibex(&server, &org_admin, &["tokens", "list", "--json"]).await);
    let reader: Value = listed
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|row| row["name"] == "reader")
        .expect("the new token is listed");
    assert!(reader.get("token").is_none(), "lists never show a secret");
    let reader_id = reader["id"].as_str().unwrap();
    stdout(&ibex(&server, &org_admin, &["tokens", "revoke", reader_id]).await);
    crate::fixtures::eventually(std::time::Duration::from_secs(2), "revoked token refused", || async {
        stderr(&ibex(&server, &secret, &["agents", "get", &agent]).await).contains("HTTP 401")
    })
    .await;

    // Export: every memory of the agent, as JSON Lines on stdout, or CSV into a file.
    for fact in ["Ana leads the platform team", "Bo moved to Lisbon in May"] {
        remember(&pool, t, fact, "declarative").await;
    }
    let exported = stdout(
        &ibex(
            &server,
            &org_admin,
            &["memories", "export", "--agent", &t.agent.to_string()],
        )
        .await,
    );
    let contents: Vec<String> = exported
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["content"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(contents.len(), 2, "{exported}");
    let file = std::env::temp_dir().join(format!("ibex-cli-export-{}.csv", Uuid::new_v4()));
    let to_file = ibex(
        &server,
        &org_admin,
        &[
            "memories",
            "export",
            "--format",
            "csv",
            "--output",
            file.to_str().unwrap(),
        ],
    )
    .await;
    stdout(&to_file);
    let csv = std::fs::read_to_string(&file).unwrap();
    std::fs::remove_file(&file).ok();
    assert!(csv.starts_with("id,agent_id,category"), "{csv}");
    assert!(csv.contains("Bo moved to Lisbon in May"));

    // Deleting asks for --yes.
    let unconfirmed = ibex(&server, &org_admin, &["agents", "delete", &agent]).await;
    assert!(!unconfirmed.status.success());
    assert!(stderr(&unconfirmed).contains("--yes"));
    let receipt = json(&ibex(&server, &org_admin, &["agents", "delete", &agent, "--yes"]).await);
    assert_eq!(receipt["memories"], 0);

    // Without a token, or against nothing, a clear message rather than a panic.
    let anonymous = ibex(&server, "", &["agents", "list"]).await;
    assert!(stderr(&anonymous).contains("no token"), "{}", stderr(&anonymous));
    server.stop().await;
}

#[tokio::test]
async fn cli_orgs_for_platform_operators_and_context() {
    // A generous deadline: this test is about what is printed, not how fast it is assembled.
    let server = TestServer::start_ready(ibex_sidecar::Config {
        context_deadline: crate::fixtures::RELAXED_DEADLINE,
        ..config()
    })
    .await;
    let pool = admin().await;
    let home = tenant(&pool, "cli-platform").await;
    let operator = token(home.org, "platform:admin", None).await;
    let slug = format!("cli-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let org = json(
        &ibex(
            &server,
            &operator,
            &["orgs", "create", "--name", "Cli Co", "--slug", &slug],
        )
        .await,
    );
    let org_id = org["id"].as_str().unwrap().to_string();
    let suspended = json(&ibex(&server, &operator, &["orgs", "suspend", &org_id]).await);
    assert_eq!(suspended["status"], "suspended");
    json(&ibex(&server, &operator, &["orgs", "resume", &org_id]).await);
    let table = stdout(&ibex(&server, &operator, &["orgs", "list", "--status", "active", "--all"]).await);
    assert!(table.contains(&slug), "{table}");
    let receipt = json(&ibex(&server, &operator, &["orgs", "delete", &org_id, "--yes"]).await);
    assert!(receipt.is_object(), "{receipt}");
    let gone = ibex(&server, &operator, &["orgs", "get", &org_id]).await;
    assert!(stderr(&gone).contains("HTTP 404"), "{}", stderr(&gone));

    // `ibex context`: AssembleContext over gRPC, the chosen memory and the context printed.
    remember(&pool, home, "Carmen's favourite editor is Helix", "declarative").await;
    let context_token = token(home.org, "context:assemble", None).await;
    let (org_arg, agent_arg) = (home.org.to_string(), home.agent.to_string());
    let args = [
        "context",
        "--org",
        &org_arg,
        "--agent",
        &agent_arg,
        "Which editor does Carmen like?",
    ];
    let answer = stdout(&ibex(&server, &context_token, &args).await);
    assert!(answer.contains("1 memories chosen"), "{answer}");
    assert!(answer.contains("Helix"), "{answer}");
    let mut as_json = args.to_vec();
    as_json.push("--json");
    let whole = json(&ibex(&server, &context_token, &as_json).await);
    assert_eq!(whole["sections"].as_array().unwrap().len(), 5);
    assert!(whole["context"].as_str().unwrap().contains("Helix"));
    let refused = ibex(&server, &operator, &args).await;
    assert!(stderr(&refused).contains("PermissionDenied"), "{}", stderr(&refused));
    server.stop().await;
}
