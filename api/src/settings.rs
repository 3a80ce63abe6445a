//! Configuration: one struct, read once from flags and the environment (same names), passed down.
//! Tests build it directly and override fields.

use std::net::SocketAddr;

use clap::{ArgAction, Args, ValueEnum};

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

    /// Most connections the pool opens. The workers use up to about 17 at once (one batch per
    /// worker, the notification listener, the timer runner), beside HTTP requests.
    #[arg(
        long = "db-max-connections",
        env = "GIGLEDGER_DB_MAX_CONNECTIONS",
        default_value_t = 32
    )]
    pub max_connections: u32,
}

/// The background workers: read-model projections, process managers and due timers.
#[derive(Clone, Debug, Args)]
pub struct WorkerSettings {
    /// Run the workers in this process. Several processes may run them against one database:
    /// each projection is run by one of them at a time (the others stand by).
    #[arg(long = "workers", env = "GIGLEDGER_WORKERS", default_value_t = true, action = ArgAction::Set)]
    pub enabled: bool,

    /// Events per projection batch (one transaction each).
    #[arg(
        long = "projection-batch-size",
        env = "GIGLEDGER_PROJECTION_BATCH_SIZE",
        default_value_t = 500
    )]
    pub batch_size: i64,

    /// How often (milliseconds) workers look for new events when no notification came, and
    /// standbys try to take over a projection whose runner died.
    #[arg(
        long = "poll-interval-ms",
        env = "GIGLEDGER_POLL_INTERVAL_MS",
        default_value_t = 500
    )]
    pub poll_interval_ms: u64,

    /// Seconds a worker may keep retrying one event (a failure that may pass, such as a step
    /// waiting for another process manager) before it is reported `stalled` by
    /// `gigledger projections status`, `/readyz` and `gigledger_projection_stalled`.
    #[arg(
        long = "stall-after-secs",
        env = "GIGLEDGER_STALL_AFTER_SECS",
        default_value_t = 60
    )]
    pub stall_after_secs: u64,

    /// Milliseconds the session holding this process's worker leases may go unanswered before it
    /// counts as lost: the server then ends it (so a standby takes the leases over) and this
    /// process drops it. Bounds takeover after a frozen process or a half-open connection.
    #[arg(
        long = "lease-timeout-ms",
        env = "GIGLEDGER_LEASE_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub lease_timeout_ms: u64,
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

    #[command(flatten)]
    pub workers: WorkerSettings,

    /// Seed demo data (gigs, proposals, a contract in progress) when the event store is empty.
    #[arg(long = "demo", env = "GIGLEDGER_DEMO", default_value_t = false, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub demo: bool,
}

/// Everything `projections run` needs.
#[derive(Clone, Debug, Args)]
pub struct RunSettings {
    #[command(flatten)]
    pub database: DatabaseSettings,

    #[command(flatten)]
    pub workers: WorkerSettings,
}

/// Settings every command shares.
#[derive(Clone, Debug, Args)]
pub struct GlobalSettings {
    /// Log format: `json` or `pretty`. Verbosity follows `RUST_LOG` (default `info`).
    #[arg(long = "log", env = "GIGLEDGER_LOG", value_enum, default_value_t = LogFormat::Pretty, global = true)]
    pub log: LogFormat,
}
