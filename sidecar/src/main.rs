use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use ibex_sidecar::db;

/// IBEX sidecar: migrations and (with `serve`) the gRPC/HTTP services.
#[derive(Parser)]
#[command(name = "ibex", version, about)]
struct Cli {
    /// Log format: "text" for people, "json" for log pipelines.
    #[arg(long, env = "IBEX_LOG_FORMAT", default_value = "text", global = true)]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply sql/migrations to the database (idempotent: applied migrations are skipped).
    Migrate {
        /// A role allowed to create roles and extensions (a superuser) for the first migration.
        #[arg(long, env = "IBEX_MIGRATE_DATABASE_URL")]
        database_url: String,
        /// List applied and pending migrations without changing anything.
        #[arg(long)]
        status: bool,
    },
}

fn init_logging(format: &str) {
    let filter = EnvFilter::try_from_env("IBEX_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    match cli.command {
        Command::Migrate { database_url, status } => {
            if status {
                db::migrate::print_status(&database_url).await
            } else {
                db::migrate::run(&database_url).await.map(|_| ())
            }
        }
    }
}
