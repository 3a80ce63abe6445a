//! Configuration: one struct, read once from flags and the environment (same names), passed down.
//! Tests build it directly and override fields.

use std::net::SocketAddr;
use std::path::PathBuf;

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

/// Where the database is when nothing says otherwise.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/gigledger";

/// Where the database is.
#[derive(Clone, Debug, Args)]
pub struct DatabaseSettings {
    /// PostgreSQL connection URL. The database is created if it does not exist.
    #[arg(
        long = "database-url",
        env = "DATABASE_URL",
        default_value = DEFAULT_DATABASE_URL
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

    #[command(flatten)]
    pub relay: RelaySettings,
}

/// The relay that publishes every event to NATS JetStream (run with the workers, only when
/// `GIGLEDGER_NATS_URL` is set). The stream is created or brought to these settings at start.
#[derive(Clone, Debug, Args)]
pub struct RelaySettings {
    /// The NATS server(s) to publish to, e.g. `nats://127.0.0.1:4222` (comma-separated for a
    /// cluster). Unset: no relay.
    #[arg(long = "nats-url", env = "GIGLEDGER_NATS_URL")]
    pub nats_url: Option<String>,

    /// The JetStream stream's name.
    #[arg(
        long = "nats-stream",
        env = "GIGLEDGER_NATS_STREAM",
        default_value = "GIGLEDGER"
    )]
    pub stream: String,

    /// The first token of every subject (`<prefix>.<aggregate>.<event>`); the stream takes
    /// `<prefix>.>`.
    #[arg(
        long = "nats-subject-prefix",
        env = "GIGLEDGER_NATS_SUBJECT_PREFIX",
        default_value = "gigledger"
    )]
    pub subject_prefix: String,

    /// The stream's retention: `limits` (keep until the age limit), `interest` (until every
    /// consumer acked) or `workqueue`.
    #[arg(
        long = "nats-retention",
        env = "GIGLEDGER_NATS_RETENTION",
        value_enum,
        default_value_t = Retention::Limits
    )]
    pub retention: Retention,

    /// Seconds JetStream remembers a message id to drop a republish (a relay that crashed
    /// must be back within it).
    #[arg(
        long = "nats-duplicate-window-secs",
        env = "GIGLEDGER_NATS_DUPLICATE_WINDOW_SECS",
        default_value_t = 600
    )]
    pub duplicate_window_secs: u64,

    /// Replicas of the stream (3 on a three-node NATS cluster).
    #[arg(
        long = "nats-replicas",
        env = "GIGLEDGER_NATS_REPLICAS",
        default_value_t = 1
    )]
    pub replicas: usize,

    /// Seconds messages are kept in the stream; 0 keeps them without an age limit.
    #[arg(
        long = "nats-max-age-secs",
        env = "GIGLEDGER_NATS_MAX_AGE_SECS",
        default_value_t = 0
    )]
    pub max_age_secs: u64,

    /// Milliseconds one publish ack may take before the batch is retried.
    #[arg(
        long = "nats-ack-timeout-ms",
        env = "GIGLEDGER_NATS_ACK_TIMEOUT_MS",
        default_value_t = 5_000
    )]
    pub ack_timeout_ms: u64,
}

/// A JetStream retention policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Retention {
    #[default]
    Limits,
    Interest,
    Workqueue,
}

impl Default for RelaySettings {
    /// The flags' defaults (no relay), for tests that build settings directly.
    fn default() -> Self {
        Self {
            nats_url: None,
            stream: "GIGLEDGER".to_owned(),
            subject_prefix: "gigledger".to_owned(),
            retention: Retention::Limits,
            duplicate_window_secs: 600,
            replicas: 1,
            max_age_secs: 0,
            ack_timeout_ms: 5_000,
        }
    }
}

impl RelaySettings {
    /// The relay's configuration, when a NATS URL is set.
    #[must_use]
    pub fn config(&self) -> Option<gigledger_projections::relay::RelayConfig> {
        use gigledger_projections::relay::RetentionPolicy;
        let url = self.nats_url.as_ref().filter(|u| !u.trim().is_empty())?;
        Some(gigledger_projections::relay::RelayConfig {
            stream: self.stream.clone(),
            subject_prefix: self.subject_prefix.clone(),
            retention: match self.retention {
                Retention::Limits => RetentionPolicy::Limits,
                Retention::Interest => RetentionPolicy::Interest,
                Retention::Workqueue => RetentionPolicy::WorkQueue,
            },
            duplicate_window: std::time::Duration::from_secs(self.duplicate_window_secs),
            replicas: self.replicas,
            max_age: std::time::Duration::from_secs(self.max_age_secs),
            ack_timeout: std::time::Duration::from_millis(self.ack_timeout_ms),
            ..gigledger_projections::relay::RelayConfig::new(url.trim())
        })
    }
}

impl Default for WorkerSettings {
    /// The flags' defaults, for tests that build settings directly.
    fn default() -> Self {
        Self {
            enabled: true,
            batch_size: 500,
            poll_interval_ms: 500,
            stall_after_secs: 60,
            lease_timeout_ms: 10_000,
            relay: RelaySettings::default(),
        }
    }
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

    /// Seed a demo marketplace (a few hundred users; gigs, proposals and contracts at every
    /// stage) when the event store is empty, and print dev tokens and curl lines once ready. With
    /// DATABASE_URL unset and no PostgreSQL at the default address that lets its user in, start
    /// a private PostgreSQL for it (see --data-dir). Without GIGLEDGER_JWT_SECRET, sign with a
    /// random one.
    #[arg(long = "demo", env = "GIGLEDGER_DEMO", default_value_t = false, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub demo: bool,

    #[command(flatten)]
    pub private_pg: PrivatePgSettings,

    /// Whether DATABASE_URL (or --database-url) was left to its default: only then may
    /// `serve --demo` start a PostgreSQL of its own. Set by the command line, not a flag.
    #[arg(skip)]
    pub database_url_from_default: bool,

    #[command(flatten)]
    pub auth: AuthSettings,

    #[command(flatten)]
    pub http: HttpSettings,
}

/// The private PostgreSQL that `serve --demo` starts when there is no database to use.
#[derive(Clone, Debug, Args)]
pub struct PrivatePgSettings {
    /// Where `serve --demo` keeps its private PostgreSQL cluster (under `pg/`), reused by the
    /// next run. Default: `$XDG_DATA_HOME/gigledger`, else `~/.local/share/gigledger`.
    #[arg(long = "data-dir", env = "GIGLEDGER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Where `serve --demo` looks for PostgreSQL when DATABASE_URL is unset; when nothing answers
    /// there, or the server refuses the URL's user, it starts a private cluster instead.
    #[arg(
        long = "demo-database-url",
        env = "GIGLEDGER_DEMO_DATABASE_URL",
        default_value = DEFAULT_DATABASE_URL
    )]
    pub demo_database_url: String,

    /// The directory of PostgreSQL's server programs (initdb, pg_ctl, postgres) for the private
    /// cluster. Default: the newest found on PATH, in `pg_config --bindir` and in the usual
    /// install locations (`/usr/lib/postgresql/*/bin`, Homebrew's, …).
    #[arg(long = "pg-bin", env = "GIGLEDGER_PG_BIN")]
    pub pg_bin: Option<PathBuf>,
}

impl Default for PrivatePgSettings {
    /// The flags' defaults, for tests that build settings directly.
    fn default() -> Self {
        Self {
            data_dir: None,
            demo_database_url: DEFAULT_DATABASE_URL.to_owned(),
            pg_bin: None,
        }
    }
}

/// The HTTP edge's limits (API.md, "Limits" and "Read your writes").
#[derive(Clone, Debug, Args)]
pub struct HttpSettings {
    /// Milliseconds a request may take before it is answered `503`. A command already running
    /// when the limit passes runs to its end (nothing is left half-written); a retry with the
    /// same `Idempotency-Key` then gets its answer.
    #[arg(
        long = "request-timeout-ms",
        env = "GIGLEDGER_REQUEST_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub request_timeout_ms: u64,

    /// Most milliseconds a query waits for `X-Min-Position` before answering `503`.
    #[arg(
        long = "min-position-wait-ms",
        env = "GIGLEDGER_MIN_POSITION_WAIT_MS",
        default_value_t = 5_000
    )]
    pub min_position_wait_ms: u64,

    /// Commands each caller may send per minute (a burst of up to this many, refilled evenly);
    /// past it `429` with `Retry-After`. 0 turns the limit off.
    #[arg(
        long = "commands-per-minute",
        env = "GIGLEDGER_COMMANDS_PER_MINUTE",
        default_value_t = 600
    )]
    pub commands_per_minute: u32,

    /// Origins allowed to call the API from a browser (CORS), comma-separated, e.g.
    /// `https://app.example.com`. None by default: browsers on other origins are refused.
    #[arg(
        long = "cors-origins",
        env = "GIGLEDGER_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,

    /// The secret the payment provider signs its notices to `POST /v1/webhooks/payments` with
    /// (HMAC-SHA256). Without it the webhook refuses every notice; `serve --demo` makes one. The
    /// simulated provider signs its own notices with it.
    #[arg(
        long = "payments-webhook-secret",
        env = "GIGLEDGER_PAYMENTS_WEBHOOK_SECRET",
        hide_env_values = true
    )]
    pub payments_webhook_secret: Option<String>,
}

impl Default for HttpSettings {
    /// The flags' defaults, for tests that build settings directly.
    fn default() -> Self {
        Self {
            request_timeout_ms: 10_000,
            min_position_wait_ms: 5_000,
            commands_per_minute: 600,
            cors_origins: Vec::new(),
            payments_webhook_secret: None,
        }
    }
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

// --- Auth (issue 9) ---------------------------------------------------------------------------

/// A secret read from configuration: never printed, not even by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that needs it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// How bearer tokens are verified (and, for `gigledger token`, minted).
///
/// By default tokens are HS256, signed with `GIGLEDGER_JWT_SECRET`. Setting
/// `GIGLEDGER_JWT_JWKS_FILE` switches to an external identity provider's keys: RS256 and ES256
/// tokens verified against that JSON Web Key Set, and the issuer must then be configured.
#[derive(Clone, Debug, Args)]
pub struct AuthSettings {
    /// HS256 signing secret (at least 32 bytes) for tokens this service verifies and
    /// `gigledger token` mints. Unused when a JWKS file is configured.
    #[arg(
        long = "jwt-secret",
        env = "GIGLEDGER_JWT_SECRET",
        hide_env_values = true
    )]
    pub jwt_secret: Option<Secret>,

    /// A JSON Web Key Set file (RFC 7517) of an external identity provider. When set, tokens are
    /// RS256 or ES256, verified against these keys (chosen by the token's `kid`), and the HS256
    /// secret is not used.
    #[arg(long = "jwt-jwks-file", env = "GIGLEDGER_JWT_JWKS_FILE")]
    pub jwt_jwks_file: Option<std::path::PathBuf>,

    /// An identity provider's JWKS URL (its `jwks_uri`): as the file, fetched at start and
    /// again every `GIGLEDGER_JWT_JWKS_REFRESH_SECS`, so key rotation is followed.
    #[arg(long = "jwt-jwks-url", env = "GIGLEDGER_JWT_JWKS_URL")]
    pub jwt_jwks_url: Option<url::Url>,

    /// Seconds between fetches of the JWKS URL.
    #[arg(
        long = "jwt-jwks-refresh-secs",
        env = "GIGLEDGER_JWT_JWKS_REFRESH_SECS",
        default_value_t = 600
    )]
    pub jwt_jwks_refresh_secs: u64,

    /// The `iss` a token must carry. Required with a JWKS file; optional with the secret (then
    /// checked when set, and put in minted tokens).
    #[arg(long = "jwt-issuer", env = "GIGLEDGER_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// The `aud` a token must carry (put in minted tokens too). When unset, a token that names
    /// any audience is refused: it was meant for another service.
    #[arg(long = "jwt-audience", env = "GIGLEDGER_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Seconds of clock skew tolerated on `exp` and `nbf`.
    #[arg(
        long = "jwt-leeway-secs",
        env = "GIGLEDGER_JWT_LEEWAY_SECS",
        default_value_t = 30
    )]
    pub jwt_leeway_secs: u64,

    /// The claim holding the caller's roles (an array of role names, or one name), for identity
    /// providers that put them under a claim of their own.
    #[arg(
        long = "jwt-roles-claim",
        env = "GIGLEDGER_JWT_ROLES_CLAIM",
        default_value = "roles"
    )]
    pub jwt_roles_claim: String,
}

impl Default for AuthSettings {
    /// The flags' defaults, for tests that build settings directly.
    fn default() -> Self {
        Self {
            jwt_secret: None,
            jwt_jwks_file: None,
            jwt_jwks_url: None,
            jwt_jwks_refresh_secs: 600,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_leeway_secs: 30,
            jwt_roles_claim: "roles".to_owned(),
        }
    }
}
