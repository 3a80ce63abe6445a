//! The `gigledger` command line.

use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::settings::{DatabaseSettings, GlobalSettings, RunSettings, ServeSettings};

/// What `gigledger --help` opens with (set here: clap's bare `about` would take the crate's
/// description, which describes the crate to its developers, not the program to its users).
const ABOUT: &str = "gigledger: an event-sourced backend for freelance marketplaces";

const LONG_ABOUT: &str = "gigledger: an event-sourced backend for freelance marketplaces: gigs, \
proposals, contracts with milestones, escrow and payouts, every change an event in an append-only \
log in PostgreSQL, with read models, an HTTP API and an audit trail.

Try it: `gigledger serve --demo` seeds a demo marketplace and prints dev tokens and curl lines.";

/// The `gigledger` command line.
#[derive(Debug, Parser)]
#[command(name = "gigledger", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalSettings,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the database if needed, migrate it, and serve the HTTP API.
    Serve(Box<ServeSettings>),
    /// Create the database if needed and apply pending migrations, then exit.
    Migrate(DatabaseSettings),
    /// Projection workers: run them, see where they stand, rebuild one.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// Checks across the ledger and the outside world.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Mint a dev token (HS256, signed with GIGLEDGER_JWT_SECRET) and print it.
    Token(TokenArgs),
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Match every payment provider charge with its escrow deposit: every charge that stands has
    /// exactly one deposit of the same amount and currency, and every deposit its charge. Prints
    /// each mismatch and exits with 1 when there is any.
    Reconcile(DatabaseSettings),
    /// Walk every stream's hash chain over the whole log, then recompute the ledger digest from
    /// the events and compare it with a digest kept earlier (--position and --digest) or, without
    /// them, with the latest one the service recorded. Exits with 1 on any difference.
    Verify {
        #[command(flatten)]
        database: DatabaseSettings,
        /// The position a kept digest was given at (`GET /v1/audit/digest`).
        #[arg(long, requires = "digest")]
        position: Option<i64>,
        /// The kept digest, hex.
        #[arg(long, requires = "position")]
        digest: Option<String>,
    },
    /// Write the log as JSON Lines to standard output (events after --after and before --before,
    /// positions in log order), ending with the ledger digest at the last event.
    Export {
        #[command(flatten)]
        database: DatabaseSettings,
        #[arg(long)]
        after: Option<i64>,
        #[arg(long)]
        before: Option<i64>,
    },
    /// Check an exported file with no database: every event's hash, every stream's links, the log
    /// order, and the digest line. Prints the end digest to compare with one kept earlier; names
    /// the first line that does not check and exits with 1.
    VerifyExport {
        /// The file `audit export` (or `GET /v1/audit/export`) wrote.
        file: std::path::PathBuf,
    },
    /// Print an aggregate's state rebuilt from its events as of a version or a time (JSON).
    Replay {
        /// gig, contract or escrow.
        aggregate_type: String,
        aggregate_id: String,
        /// Stop at this version (sequence).
        #[arg(long, conflicts_with = "at")]
        version: Option<i64>,
        /// Stop at the last event recorded at or before this RFC 3339 time.
        #[arg(long)]
        at: Option<chrono::DateTime<chrono::Utc>>,
        #[command(flatten)]
        database: DatabaseSettings,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Run the workers (projections, process managers, timers) without the HTTP server.
    Run(RunSettings),
    /// Every worker's position, lag (events and seconds), whether a process holds its lease now,
    /// and state (running, idle: no process runs it, stalled, failed).
    Status(DatabaseSettings),
    /// Replay one read model from position zero into fresh tables and swap them in when caught
    /// up; queries keep being served from the old tables meanwhile.
    Rebuild {
        /// The read model's name (see `status`).
        name: String,
        #[command(flatten)]
        database: DatabaseSettings,
        /// Events per batch during the replay.
        #[arg(long = "batch-size", default_value_t = 1000)]
        batch_size: i64,
    },
}

/// Parses the command line, runs it, and turns any failure into one clear message and exit code 1
/// (no panic, no backtrace).
pub fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Command::Serve(settings) = &mut cli.command {
        settings.database_url_from_default = matches
            .subcommand_matches("serve")
            .and_then(|serve| serve.value_source("database_url"))
            .is_none_or(|source| source == ValueSource::DefaultValue);
    }
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
        Command::Serve(settings) => crate::startup::serve(*settings)
            .await
            .map_err(|e| e.to_string()),
        Command::Projections(command) => projections(command).await,
        Command::Audit(command) => audit(command).await,
        Command::Token(args) => token(&args),
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

async fn audit(command: AuditCommand) -> Result<(), String> {
    match command {
        AuditCommand::Reconcile(settings) => reconcile(&settings).await,
        AuditCommand::Verify {
            database,
            position,
            digest,
        } => {
            let pool = audited(&database).await?;
            let kept = position.zip(digest);
            let outcome = crate::audit::verify_all(&pool, kept).await;
            pool.close().await;
            let outcome = outcome.map_err(|e| format!("cannot verify: {e}"))?;
            for line in &outcome.lines {
                println!("{line}");
            }
            if outcome.ok {
                Ok(())
            } else {
                Err("the log is not what it was: see above".to_owned())
            }
        }
        AuditCommand::Export {
            database,
            after,
            before,
        } => {
            let pool = audited(&database).await?;
            let written = export(&pool, after, before).await;
            pool.close().await;
            written
        }
        AuditCommand::VerifyExport { file } => {
            let opened = std::fs::File::open(&file)
                .map_err(|e| format!("cannot open {}: {e}", file.display()))?;
            let report =
                gigledger_projections::export::verify_export(std::io::BufReader::new(opened))
                    .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            if let Some(problem) = &report.problem {
                return Err(format!(
                    "{} does not verify: line {}: {}",
                    file.display(),
                    problem.line,
                    problem.problem
                ));
            }
            let end = report.end.as_ref().map_or_else(String::new, |end| {
                format!(
                    "; digest at position {}: {} ({} events)",
                    end.position, end.digest, end.events
                )
            });
            let start = report.start.as_ref().map_or_else(String::new, |start| {
                format!(
                    "; from the digest at position {}: {} ({} events)",
                    start.position, start.digest, start.events
                )
            });
            println!(
                "ok: {} events of {} streams verify{start}{end}",
                report.events, report.streams
            );
            if report.links_into_earlier_log > 0 {
                println!(
                    "note: {} streams continue from events before the file; their links to those are as the file states",
                    report.links_into_earlier_log
                );
            }
            Ok(())
        }
        AuditCommand::Replay {
            aggregate_type,
            aggregate_id,
            version,
            at,
            database,
        } => {
            let pool = audited(&database).await?;
            let state =
                crate::audit::replay_as_of(&pool, &aggregate_type, &aggregate_id, version, at)
                    .await;
            pool.close().await;
            match state.map_err(|e| format!("cannot replay: {e}"))? {
                Some(state) => {
                    let text = serde_json::to_string_pretty(&state).map_err(|e| e.to_string())?;
                    println!("{text}");
                    Ok(())
                }
                None => Err(format!(
                    "no {aggregate_type} {aggregate_id} at that version or time (types: {})",
                    crate::audit::AGGREGATE_TYPES.join(", ")
                )),
            }
        }
    }
}

/// Writes the export to standard output as it is read (a closed pipe ends it quietly).
async fn export(
    pool: &sqlx::PgPool,
    after: Option<i64>,
    before: Option<i64>,
) -> Result<(), String> {
    use std::io::Write as _;
    let mut exporter = gigledger_projections::export::Exporter::start(pool, after, before)
        .await
        .map_err(|e| format!("cannot export: {e}"))?;
    // A CLI's one task: blocking writes to standard output hold nothing else up.
    let mut out = std::io::BufWriter::new(std::io::stdout());
    while let Some(chunk) = exporter
        .next_chunk()
        .await
        .map_err(|e| format!("the export failed midway: {e}"))?
    {
        match out.write_all(&chunk) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(format!("cannot write the export: {e}")),
        }
    }
    out.flush()
        .map_err(|e| format!("cannot write the export: {e}"))
}

/// An audit changes nothing: it connects to an existing database (never creates or migrates
/// one) and refuses one whose migrations are not all applied.
async fn audited(settings: &DatabaseSettings) -> Result<sqlx::PgPool, String> {
    let pool = crate::db::connect(settings)
        .await
        .map_err(|e| e.to_string())?;
    let pending = crate::db::pending_migrations(&pool).await;
    if !pending.is_empty() {
        pool.close().await;
        return Err(format!(
            "{} is not a gigledger database at this version ({} migrations not applied); nothing was checked",
            crate::db::redact(&settings.database_url),
            pending.len()
        ));
    }
    Ok(pool)
}

async fn reconcile(settings: &DatabaseSettings) -> Result<(), String> {
    let pool = audited(settings).await?;
    let found = gigledger_commands::reconcile::reconcile(&pool)
        .await
        .map_err(|e| format!("cannot reconcile: {e}"))?;
    pool.close().await;
    for mismatch in &found.mismatches {
        println!("mismatch: {mismatch}");
    }
    if found.ok() {
        println!(
            "ok: {} charges and deposits checked, no mismatch",
            found.checked
        );
        Ok(())
    } else {
        Err(format!(
            "{} mismatches between provider charges and escrow deposits ({} checked)",
            found.mismatches.len(),
            found.checked
        ))
    }
}

async fn projections(command: ProjectionsCommand) -> Result<(), String> {
    match command {
        ProjectionsCommand::Run(settings) => crate::startup::run_workers(settings)
            .await
            .map_err(|e| e.to_string()),
        ProjectionsCommand::Status(settings) => {
            let pool = crate::db::prepare(&settings)
                .await
                .map_err(|e| e.to_string())?;
            let all =
                gigledger_projections::runtime::statuses(&pool, &crate::workers::known_names())
                    .await
                    .map_err(|e| e.to_string())?;
            println!(
                "{:<28} {:>10} {:>10} {:>10} {:>10} {:>6}  state",
                "name", "position", "applied", "lag", "lag (s)", "lease"
            );
            for s in all {
                let state = match (&s.failed_position, &s.last_error) {
                    (Some(p), Some(e)) => format!("{} at position {p}: {e}", s.state()),
                    _ => s.state().to_owned(),
                };
                let lease = if s.leased { "held" } else { "free" };
                println!(
                    "{:<28} {:>10} {:>10} {:>10} {:>10.1} {lease:>6}  {state}",
                    s.name, s.position, s.events_applied, s.lag_events, s.lag_seconds
                );
            }
            Ok(())
        }
        ProjectionsCommand::Rebuild {
            name,
            database,
            batch_size,
        } => {
            let handler = gigledger_projections::read::all()
                .into_iter()
                .find(|h| h.name() == name);
            let tables = gigledger_projections::read::tables_of(&name);
            let (Some(handler), Some(tables)) = (handler, tables) else {
                let names: Vec<String> = gigledger_projections::read::all()
                    .iter()
                    .map(|h| h.name().to_owned())
                    .collect();
                return Err(format!(
                    "no read model named {name:?}; the read models are: {}",
                    names.join(", ")
                ));
            };
            let pool = crate::db::prepare(&database)
                .await
                .map_err(|e| e.to_string())?;
            let applied = gigledger_projections::rebuild::rebuild(
                &pool,
                handler.as_ref(),
                tables,
                batch_size,
            )
            .await
            .map_err(|e| e.to_string())?;
            println!("rebuilt {name} from {applied} events and swapped it in");
            Ok(())
        }
    }
}

// --- `gigledger token` (issue 9, auth) -----------------------------------------------------------

/// What `gigledger token` signs.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// The user id the token speaks for (its `sub`).
    #[arg(long = "sub")]
    pub sub: uuid::Uuid,

    /// The roles it grants: client, freelancer, auditor, analyst, admin (repeat the flag or list
    /// several after it).
    #[arg(long = "role", required = true, num_args = 1.., value_parser = crate::auth::parse_role_arg)]
    pub roles: Vec<gigledger_domain::actor::Role>,

    /// Seconds until the token expires.
    #[arg(long = "ttl-secs", default_value_t = 3600)]
    pub ttl_secs: u64,

    #[command(flatten)]
    pub auth: crate::settings::AuthSettings,
}

/// Prints the token alone on stdout, so that `TOKEN=$(gigledger token …)` works.
fn token(args: &TokenArgs) -> Result<(), String> {
    if args.sub.is_nil() {
        return Err("--sub may not be the nil UUID: it is the platform's own id".to_owned());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| format!("the system clock is before 1970: {e}"))?
        .as_secs();
    let token = crate::auth::mint(&args.auth, args.sub, &args.roles, args.ttl_secs, now)
        .map_err(|e| e.to_string())?;
    println!("{token}");
    Ok(())
}
