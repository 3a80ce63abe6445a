//! The `gigledger` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::settings::{DatabaseSettings, GlobalSettings, ServeSettings};

/// gigledger: an event-sourced backend for freelance marketplaces.
#[derive(Debug, Parser)]
#[command(name = "gigledger", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalSettings,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the database if needed, migrate it, and serve the HTTP API.
    Serve(ServeSettings),
    /// Create the database if needed and apply pending migrations, then exit.
    Migrate(DatabaseSettings),
}

/// Parses the command line, runs it, and turns any failure into one clear message and exit code 1
/// (no panic, no backtrace).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::telemetry::init(cli.global.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Serve(settings) => crate::startup::serve(settings)
            .await
            .map_err(|e| e.to_string()),
        Command::Migrate(settings) => {
            let pool = crate::db::prepare(&settings)
                .await
                .map_err(|e| e.to_string())?;
            pool.close().await;
            tracing::info!(db.url = %crate::db::redact(&settings.database_url), "migrations applied");
            Ok(())
        }
    }
}
