use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use ibex_sidecar::config::{Config, LogFormat, ServeArgs};
use ibex_sidecar::{db, server};

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
    /// Apply sql/migrations to the database (idempotent: applied migrations are skipped).
    Migrate {
        /// A role allowed to create roles and extensions (a superuser) for the first migration.
        #[arg(long, env = "IBEX_MIGRATE_DATABASE_URL")]
        database_url: String,
        /// List applied and pending migrations without changing anything.
        #[arg(long)]
        status: bool,
    },
    /// Serve the HTTP API (embeddings, health, metrics) and gRPC until SIGINT/SIGTERM.
    /// Settings: flags > IBEX_* environment > --config file > defaults.
    Serve(Box<ServeArgs>),
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
        Command::Serve(args) => {
            // The file may set the log format, so logging starts once the settings are resolved.
            let config = Config::load(*args, cli.log_format)?;
            init_logging(config.log_format);
            server::run(config).await
        }
    }
}
