//! `ibex orgs|agents|tokens|memories|context`: the common operator tasks, over the same
//! management API and gRPC service applications use (so the CLI needs a token, never a database
//! login, and is held to the same scopes and tenancy).

pub mod client;
pub mod context;
pub mod output;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{json, Map, Value};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use client::{ApiArgs, ApiClient};
use output::Printer;

/// Options every API subcommand takes.
#[derive(Debug, Args)]
pub struct Common {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Print the API's JSON (lists: one row per line) instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Paging options of the list subcommands.
#[derive(Debug, Args)]
pub struct Paging {
    /// Rows per page (the API allows 1..=200).
    #[arg(long)]
    limit: Option<u32>,
    /// Continue after a page (the cursor a previous call printed).
    #[arg(long)]
    cursor: Option<String>,
    /// Follow every page to the end.
    #[arg(long)]
    all: bool,
}

impl Paging {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        if let Some(limit) = self.limit {
            query.push(("limit", limit.to_string()));
        }
        if let Some(cursor) = &self.cursor {
            query.push(("cursor", cursor.clone()));
        }
        query
    }
}

#[derive(Debug, Subcommand)]
pub enum OrgsCommand {
    /// Orgs on this deployment (needs platform:admin).
    List {
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Create an org.
    Create {
        #[arg(long)]
        name: String,
        /// URL-safe short name, unique.
        #[arg(long)]
        slug: String,
    },
    Get {
        id: Uuid,
    },
    /// Rename an org.
    Update {
        id: Uuid,
        #[arg(long)]
        name: String,
    },
    /// Refuse every token of the org until resumed.
    Suspend {
        id: Uuid,
    },
    Resume {
        id: Uuid,
    },
    /// Delete the org and all its data; prints the receipt of what was deleted.
    Delete {
        id: Uuid,
        /// Deleting cannot be undone: say so.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AgentStatus {
    Active,
    Paused,
    Archived,
}

#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    List {
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        default_model: Option<String>,
    },
    Get {
        id: Uuid,
    },
    Update {
        id: Uuid,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        default_model: Option<String>,
    },
    /// Move an agent to active, paused or archived (the API names the allowed moves on refusal).
    Status {
        id: Uuid,
        #[arg(value_enum)]
        status: AgentStatus,
    },
    /// Delete an agent with its memories, directives, sessions and tokens; prints the counts.
    Delete {
        id: Uuid,
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Tokens of the org (never their secrets).
    List {
        #[arg(long)]
        agent: Option<Uuid>,
        #[arg(long)]
        include_revoked: bool,
        #[command(flatten)]
        paging: Paging,
    },
    /// Create a token; its secret is printed on stdout only this once.
    Create {
        #[arg(long)]
        name: String,
        /// Comma-separated scopes, e.g. memories:read,context:assemble.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// Bind the token to one agent.
        #[arg(long)]
        agent: Option<Uuid>,
        /// Bind the token to one user.
        #[arg(long)]
        user: Option<Uuid>,
        /// Expire after this many days.
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// Revoke a token (every cache forgets it within two seconds).
    Revoke { id: Uuid },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

#[derive(Debug, Subcommand)]
pub enum MemoriesCommand {
    /// Stream every memory (of an agent) as JSON Lines or CSV, in constant memory.
    Export {
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
        #[arg(long)]
        agent: Option<Uuid>,
        #[arg(long)]
        category: Option<String>,
        #[arg(long)]
        status: Option<String>,
        /// Write here instead of stdout.
        #[arg(long, short)]
        output: Option<std::path::PathBuf>,
    },
}

const ORG_COLUMNS: &[&str] = &["id", "slug", "name", "status", "created_at"];
const AGENT_COLUMNS: &[&str] = &["id", "name", "status", "default_model", "created_at"];
const TOKEN_COLUMNS: &[&str] = &["id", "name", "prefix", "scopes", "agent_id", "expires_at", "revoked_at"];

fn confirm(yes: bool, what: &str) -> anyhow::Result<()> {
    anyhow::ensure!(yes, "deleting {what} cannot be undone: add --yes to go ahead");
    Ok(())
}

fn with_status(mut query: Vec<(&'static str, String)>, status: &Option<String>) -> Vec<(&'static str, String)> {
    if let Some(status) = status {
        query.push(("status", status.clone()));
    }
    query
}

/// A JSON object of the given fields, leaving out those not set.
fn object(fields: &[(&str, Option<Value>)]) -> Value {
    let map: Map<String, Value> = fields
        .iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k.to_string(), v)))
        .collect();
    Value::Object(map)
}

pub async fn orgs(common: Common, command: OrgsCommand) -> anyhow::Result<()> {
    let api = ApiClient::new(&common.api)?;
    let print = Printer { json: common.json };
    match command {
        OrgsCommand::List { status, paging } => {
            let (rows, next) = api
                .list("/v1/orgs", with_status(paging.query(), &status), paging.all)
                .await?;
            print.list(&rows, next, ORG_COLUMNS);
        }
        OrgsCommand::Create { name, slug } => {
            let body = json!({"name": name, "slug": slug});
            print.object(&api.json(Method::POST, "/v1/orgs", &[], Some(&body)).await?);
        }
        OrgsCommand::Get { id } => print.object(&api.json(Method::GET, &format!("/v1/orgs/{id}"), &[], None).await?),
        OrgsCommand::Update { id, name } => {
            let body = json!({"name": name});
            print.object(
                &api.json(Method::PATCH, &format!("/v1/orgs/{id}"), &[], Some(&body))
                    .await?,
            );
        }
        OrgsCommand::Suspend { id } => print.object(
            &api.json(Method::POST, &format!("/v1/orgs/{id}/suspend"), &[], None)
                .await?,
        ),
        OrgsCommand::Resume { id } => print.object(
            &api.json(Method::POST, &format!("/v1/orgs/{id}/resume"), &[], None)
                .await?,
        ),
        OrgsCommand::Delete { id, yes } => {
            confirm(yes, &format!("org {id} and all its data"))?;
            print.object(&api.json(Method::DELETE, &format!("/v1/orgs/{id}"), &[], None).await?);
        }
    }
    Ok(())
}

pub async fn agents(common: Common, command: AgentsCommand) -> anyhow::Result<()> {
    let api = ApiClient::new(&common.api)?;
    let print = Printer { json: common.json };
    match command {
        AgentsCommand::List { status, paging } => {
            let (rows, next) = api
                .list("/v1/agents", with_status(paging.query(), &status), paging.all)
                .await?;
            print.list(&rows, next, AGENT_COLUMNS);
        }
        AgentsCommand::Create {
            name,
            description,
            default_model,
        } => {
            let body = object(&[
                ("name", Some(json!(name))),
                ("description", description.map(Value::from)),
                ("default_model", default_model.map(Value::from)),
            ]);
            print.object(&api.json(Method::POST, "/v1/agents", &[], Some(&body)).await?);
        }
        AgentsCommand::Get { id } => {
            print.object(&api.json(Method::GET, &format!("/v1/agents/{id}"), &[], None).await?)
        }
        AgentsCommand::Update {
            id,
            name,
            description,
            default_model,
        } => {
            let body = object(&[
                ("name", name.map(Value::from)),
                ("description", description.map(Value::from)),
                ("default_model", default_model.map(Value::from)),
            ]);
            print.object(
                &api.json(Method::PATCH, &format!("/v1/agents/{id}"), &[], Some(&body))
                    .await?,
            );
        }
        AgentsCommand::Status { id, status } => {
            let name = status
                .to_possible_value()
                .map(|v| v.get_name().to_string())
                .unwrap_or_default();
            let body = json!({"status": name});
            print.object(
                &api.json(Method::POST, &format!("/v1/agents/{id}/status"), &[], Some(&body))
                    .await?,
            );
        }
        AgentsCommand::Delete { id, yes } => {
            confirm(
                yes,
                &format!("agent {id} with its memories, directives, sessions and tokens"),
            )?;
            print.object(&api.json(Method::DELETE, &format!("/v1/agents/{id}"), &[], None).await?);
        }
    }
    Ok(())
}

pub async fn tokens(common: Common, command: TokensCommand) -> anyhow::Result<()> {
    let api = ApiClient::new(&common.api)?;
    let print = Printer { json: common.json };
    match command {
        TokensCommand::List {
            agent,
            include_revoked,
            paging,
        } => {
            let mut query = paging.query();
            if let Some(agent) = agent {
                query.push(("agent_id", agent.to_string()));
            }
            if include_revoked {
                query.push(("include_revoked", "true".into()));
            }
            let (rows, next) = api.list("/v1/tokens", query, paging.all).await?;
            print.list(&rows, next, TOKEN_COLUMNS);
        }
        TokensCommand::Create {
            name,
            scopes,
            agent,
            user,
            expires_in_days,
        } => {
            let expires_at = expires_in_days.map(|d| json!(chrono::Utc::now() + chrono::Duration::days(i64::from(d))));
            let body = object(&[
                ("name", Some(json!(name))),
                ("scopes", Some(json!(&scopes))),
                ("agent_id", agent.map(|a| json!(a))),
                ("user_id", user.map(|u| json!(u))),
                ("expires_at", expires_at),
            ]);
            let created = api.json(Method::POST, "/v1/tokens", &[], Some(&body)).await?;
            if common.json {
                print.object(&created);
            } else {
                // The secret alone on stdout (for `TOKEN=$(ibex tokens create ...)`), the rest for people.
                eprintln!(
                    "token {} ({}) scopes {}: shown only now; keep it",
                    created["id"].as_str().unwrap_or(""),
                    created["prefix"].as_str().unwrap_or(""),
                    scopes.join(",")
                );
                println!("{}", created["token"].as_str().unwrap_or(""));
            }
        }
        TokensCommand::Revoke { id } => {
            api.send(Method::DELETE, &format!("/v1/tokens/{id}"), &[], None).await?;
            eprintln!("token {id} revoked");
        }
    }
    Ok(())
}

pub async fn memories(common: Common, command: MemoriesCommand) -> anyhow::Result<()> {
    let api = ApiClient::new(&common.api)?;
    let MemoriesCommand::Export {
        format,
        agent,
        category,
        status,
        output,
    } = command;
    let mut query = vec![(
        "format",
        match format {
            ExportFormat::Jsonl => "jsonl",
            ExportFormat::Csv => "csv",
        }
        .to_string(),
    )];
    query.extend(agent.map(|a| ("agent_id", a.to_string())));
    query.extend(category.map(|c| ("category", c)));
    query = with_status(query, &status);
    let response = api.send(Method::GET, "/v1/memories/export", &query, None).await?;
    let mut sink: Box<dyn tokio::io::AsyncWrite + Unpin> = match &output {
        Some(path) => Box::new(
            tokio::fs::File::create(path)
                .await
                .with_context(|| format!("creating {}", path.display()))?,
        ),
        None => Box::new(tokio::io::stdout()),
    };
    // Chunk by chunk: an export of any size passes through in constant memory.
    let mut bytes = 0u64;
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.context("the export stream broke off")?;
        bytes += chunk.len() as u64;
        sink.write_all(&chunk).await.context("writing the export")?;
    }
    sink.flush().await.context("writing the export")?;
    if let Some(path) = output {
        eprintln!("exported {bytes} bytes to {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_leave_out_unset_fields() {
        let body = object(&[("name", Some(json!("a"))), ("description", None)]);
        assert_eq!(body, json!({"name": "a"}));
    }
}
