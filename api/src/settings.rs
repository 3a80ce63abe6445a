//! Configuration: one struct, read once from flags and the environment (same names), passed down.
//! Tests build it directly and override fields.

use std::net::SocketAddr;

use clap::{Args, ValueEnum};

/// How logs are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (for log collectors).
    Json,
    /// Human-readable lines (for a terminal).
    #[default]
    Pretty,
}

/// Where the database is.
#[derive(Clone, Debug, Args)]
pub struct DatabaseSettings {
    /// PostgreSQL connection URL. The database is created if it does not exist.
    #[arg(
        long = "database-url",
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/gigledger"
    )]
    pub database_url: String,

    /// Most connections the pool opens.
    #[arg(
        long = "db-max-connections",
        env = "GIGLEDGER_DB_MAX_CONNECTIONS",
        default_value_t = 16
    )]
    pub max_connections: u32,
}

/// Everything `serve` needs.
#[derive(Clone, Debug, Args)]
pub struct ServeSettings {
    #[command(flatten)]
    pub database: DatabaseSettings,

    /// Address and port the HTTP server listens on.
    #[arg(
        long = "listen",
        env = "GIGLEDGER_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,
}

/// Settings every command shares.
#[derive(Clone, Debug, Args)]
pub struct GlobalSettings {
    /// Log format: `json` or `pretty`. Verbosity follows `RUST_LOG` (default `info`).
    #[arg(long = "log", env = "GIGLEDGER_LOG", value_enum, default_value_t = LogFormat::Pretty, global = true)]
    pub log: LogFormat,
}
