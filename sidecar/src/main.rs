use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use ibex_sidecar::cli::{self, AgentsCommand, Common, MemoriesCommand, OrgsCommand, TokensCommand};
use ibex_sidecar::config::{Config, LogFormat, ServeArgs};
use ibex_sidecar::{admin, db, server};

/// IBEX sidecar: migrations and the HTTP/gRPC services.
#[derive(Parser)]
#[command(name = "ibex", version, about)]
struct Cli {
    /// Log format: "text" for people, "json" for log pipelines [default: text].
    #[arg(long, env = "IBEX_LOG_FORMAT", value_enum, global = true)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply sql/migrations, then the changed sql/api files (idempotent: what is applied is skipped).
    Migrate {
        /// A role allowed to create roles and extensions (a superuser) for the first migration.
        #[arg(long, env = "IBEX_MIGRATE_DATABASE_URL")]
        database_url: String,
        /// List applied and pending migrations without changing anything.
        #[arg(long)]
        status: bool,
    },
    /// Serve the HTTP API (embeddings, chat completions proxy, health, metrics) and gRPC
    /// (AssembleContext, health) until SIGINT/SIGTERM.
    /// Settings: flags > IBEX_* environment > --config file > defaults.
    Serve(Box<ServeArgs>),
    /// Create the demo org "demo", its agent "assistant" and, if the org has no token yet, an
    /// admin token (printed once). Idempotent. Prints shell assignments (IBEX_ORG_ID=...).
    Bootstrap {
        /// A superuser URL (creating orgs bypasses row-level security).
        #[arg(long, env = "IBEX_MIGRATE_DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
    /// Issue a token straight in the database (before any token exists; needs a database login).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Orgs of the deployment, over the API (needs a platform:admin token).
    Orgs {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: OrgsCommand,
    },
    /// The org's agents, over the API.
    Agents {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: AgentsCommand,
    },
    /// The org's API tokens, over the API.
    Tokens {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// The org's memories, over the API.
    Memories {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: MemoriesCommand,
    },
    /// Call AssembleContext (gRPC) as the LLM proxy does and print what it chose.
    Context(Box<cli::context::ContextArgs>),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it (it is shown only this once).
    Create {
        #[arg(long, env = "IBEX_DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// Org id (UUID).
        #[arg(long)]
        org: uuid::Uuid,
        /// A name to tell the token apart.
        #[arg(long)]
        name: String,
        /// Comma-separated scopes, e.g. proxy,context:assemble (admin implies all).
        #[arg(long)]
        scopes: String,
        /// Bind the token to one agent of the org.
        #[arg(long)]
        agent: Option<uuid::Uuid>,
        /// Expire the token after this many days.
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("IBEX_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Migrate { database_url, status } => {
            init_logging(cli.log_format.unwrap_or_default());
            if status {
                db::migrate::print_status(&database_url).await
            } else {
                db::migrate::run(&database_url).await.map(|_| ())
            }
        }
        Command::Bootstrap { database_url } => {
            init_logging(cli.log_format.unwrap_or_default());
            let b = admin::bootstrap(&database_url).await?;
            println!("IBEX_ORG_ID={}", b.org_id);
            println!("IBEX_AGENT_ID={}", b.agent_id);
            match b.token {
                Some(token) => {
                    println!("IBEX_TOKEN={token}");
                    eprintln!(
                        "issued an admin token for org {}: it is shown only now; keep it",
                        admin::DEMO_ORG_SLUG
                    );
                }
                None => eprintln!(
                    "org {} already has a token (tokens are shown only when issued); create another with \
                     `ibex token create --org {} --name <name> --scopes admin`",
                    admin::DEMO_ORG_SLUG,
                    b.org_id
                ),
            }
            Ok(())
        }
        Command::Token {
            command:
                TokenCommand::Create {
                    database_url,
                    org,
                    name,
                    scopes,
                    agent,
                    expires_in_days,
                },
        } => {
            init_logging(cli.log_format.unwrap_or_default());
            let t = admin::create_token(&database_url, org, &name, &scopes, agent, expires_in_days).await?;
            eprintln!(
                "token {} ({}) for org {org}, scopes {}: shown only now; keep it",
                t.id,
                t.prefix,
                t.scopes.join(",")
            );
            println!("{}", t.token);
            Ok(())
        }
        Command::Orgs { common, command } => cli::orgs(common, command).await,
        Command::Agents { common, command } => cli::agents(common, command).await,
        Command::Tokens { common, command } => cli::tokens(common, command).await,
        Command::Memories { common, command } => cli::memories(common, command).await,
        Command::Context(args) => cli::context::run(*args).await,
        Command::Serve(args) => {
            // The file may set the log format, so logging starts once the settings are resolved.
            let config = Config::load(*args, cli.log_format)?;
            init_logging(config.log_format);
            server::run(config).await
        }
    }
}
