//! Write-path benchmark: commands per second and latency of four ways of appending to the same
//! `events`/`snapshots` tables.
//!
//! 1. stock postgres-es: `CqrsFramework` over `PersistedEventStore::new_event_store` on
//!    `postgres_es::PostgresEventRepository` (every command reloads the whole stream);
//! 2. the same with `new_snapshot_store(repo, 100)`;
//! 3. gigledger's `CommandBus` (cache, one-statement append, snapshot every 100), on a pool set up
//!    as the service sets up its own (`gigledger.notify = off`: the store sends one coalesced NOTIFY
//!    after commits instead of the trigger's NOTIFY inside every writing transaction);
//! 4. one raw `insert into events … values (…)` per command, the floor (the hash trigger and the
//!    NOTIFY trigger still fire: it is the same table).
//!
//! Each of C concurrent tasks (C = 1 and 16, pool of 16) sends its share of the commands to an
//! aggregate of its own, so there is no contention and streams grow long. The commands come in
//! rounds, each running every path once in a rotating order, so that the machine's slow spells
//! (WAL flush latency, neighbours) fall on every path alike. Afterwards it reports the
//! events table's size per event.
//!
//! `cargo bench -p gigledger-commands --bench write_path`; `DATABASE_URL` names the server (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). A database of its own is created, migrated and
//! dropped at the end. Two options, off by default to keep the run short:
//!
//! - `WRITE_PATH_TRIGGERS=1` adds gigledger and the raw insert with the NOTIFY trigger and the hash
//!   trigger disabled in the benchmark's database (it needs to own the tables: its creator does);
//! - `WRITE_PATH_SYNCHRONOUS_COMMIT=off` (any value of the setting) runs the benchmark's sessions
//!   with that `synchronous_commit`, which takes the WAL flush, and its noise, out of the latency.

#![expect(
    clippy::float_arithmetic,
    reason = "a benchmark reports rates, means and ratios"
)]

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, CqrsFramework, DomainEvent};
use gigledger_commands::bus::CommandBus;
use gigledger_commands::metadata::CommandMetadata;
use gigledger_commands::store::{PgEventRepository, StoreConfig};
use gigledger_domain::SnapshotSchema;
use postgres_es::PostgresEventRepository;
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool, Row};
use uuid::Uuid;

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = Error> = std::result::Result<T, E>;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Commands per measured configuration (split evenly over the tasks).
const COMMANDS: usize = 2_000;
/// Warm-up per path: this many commands on each of `POOL` tasks (opens and prepares every
/// connection), not measured.
const WARM_UP_PER_TASK: usize = 8;
const POOL: u32 = 16;
const CONCURRENCY: [usize; 2] = [1, 16];
/// Each configuration's commands come in this many rounds, interleaved with the other paths'.
const ROUNDS: usize = 5;

// ---------------------------------------------------------------------------------------------
// A minimal aggregate (the shape of the store tests' `Tally`).

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Tally {
    total: i64,
    additions: u64,
}

#[derive(Clone, Debug)]
enum TallyCommand {
    Add(i64),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum TallyEvent {
    Added { n: i64 },
}

impl DomainEvent for TallyEvent {
    fn event_type(&self) -> String {
        "Added".to_owned()
    }
    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

#[derive(Debug, PartialEq, thiserror::Error)]
#[error("cannot add a negative number")]
struct Negative;

impl SnapshotSchema for Tally {
    const SNAPSHOT_VERSION: i32 = 1;
}

impl Aggregate for Tally {
    const TYPE: &'static str = "tally";
    type Command = TallyCommand;
    type Event = TallyEvent;
    type Error = Negative;
    type Services = ();

    async fn handle(
        &mut self,
        command: TallyCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), Negative> {
        let TallyCommand::Add(n) = command;
        if n < 0 {
            return Err(Negative);
        }
        sink.write(TallyEvent::Added { n }, self).await;
        Ok(())
    }

    fn apply(&mut self, event: TallyEvent) {
        let TallyEvent::Added { n } = event;
        self.total += n;
        self.additions += 1;
    }
}

// ---------------------------------------------------------------------------------------------
// The write paths.

type StockCqrs = CqrsFramework<Tally, PersistedEventStore<PostgresEventRepository, Tally>>;

enum Writer {
    Stock(Box<StockCqrs>),
    Gigledger(CommandBus<Tally>),
    Raw(PgPool),
}

/// postgres-es's own insert, as one autocommitted statement (sqlx prepares it once per connection).
const RAW_INSERT: &str = "insert into events (aggregate_type, aggregate_id, sequence, event_type,
                                              event_version, payload, metadata)
                          values ($1, $2, $3, $4, $5, $6, $7)";

impl Writer {
    fn new(path: Path, pool: &PgPool) -> Self {
        match path {
            Path::Stock => Self::Stock(Box::new(CqrsFramework::new(
                PersistedEventStore::new_event_store(PostgresEventRepository::new(pool.clone())),
                Vec::new(),
                (),
            ))),
            Path::StockSnapshots => Self::Stock(Box::new(CqrsFramework::new(
                PersistedEventStore::new_snapshot_store(
                    PostgresEventRepository::new(pool.clone()),
                    100,
                ),
                Vec::new(),
                (),
            ))),
            Path::Gigledger => Self::Gigledger(CommandBus::new(
                PgEventRepository::new(pool.clone()),
                StoreConfig::default(),
                (),
            )),
            Path::Raw => Self::Raw(pool.clone()),
        }
    }

    /// One command (`Add(1)`) on `aggregate_id`; `sequence` is the stream version it makes (only
    /// the raw insert needs it: the others track versions themselves).
    async fn send(&self, aggregate_id: &str, sequence: i64) -> Result<()> {
        let metadata = CommandMetadata::for_user(
            Uuid::now_v7().to_string(),
            "bench-user",
            "client",
            Utc::now(),
        );
        match self {
            Self::Stock(cqrs) => cqrs
                .execute_with_metadata(aggregate_id, TallyCommand::Add(1), metadata.to_map())
                .await
                .map_err(|e| e.to_string())?,
            Self::Gigledger(bus) => {
                bus.execute(aggregate_id, TallyCommand::Add(1), &metadata, None)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Self::Raw(pool) => {
                let event = TallyEvent::Added { n: 1 };
                sqlx::query(RAW_INSERT)
                    .bind(Tally::TYPE)
                    .bind(aggregate_id)
                    .bind(sequence)
                    .bind(event.event_type())
                    .bind(event.event_version())
                    .bind(serde_json::to_value(&event)?)
                    .bind(serde_json::to_value(metadata.to_map())?)
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    Stock,
    StockSnapshots,
    Gigledger,
    Raw,
}

impl Path {
    const ALL: [Self; 4] = [
        Self::Stock,
        Self::StockSnapshots,
        Self::Gigledger,
        Self::Raw,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Stock => "stock postgres-es",
            Self::StockSnapshots => "stock + snapshots/100",
            Self::Gigledger => "gigledger CommandBus",
            Self::Raw => "raw insert",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Self::Stock => "stock",
            Self::StockSnapshots => "stocksnap",
            Self::Gigledger => "gigledger",
            Self::Raw => "raw",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Measuring.

/// One path at one concurrency level: `concurrency` aggregates, one per task, that keep growing
/// over the rounds (so the last round of C=1 runs on a stream of ~2 000 events).
struct Series {
    variant: &'static str,
    path: Path,
    writer: Arc<Writer>,
    concurrency: usize,
    prefix: String,
    /// Commands each task has sent so far: its stream's length.
    done: usize,
    /// The rounds' wall times, summed.
    wall: Duration,
    latencies: Vec<Duration>,
    round_rates: Vec<f64>,
}

impl Series {
    fn new(variant: &'static str, path: Path, writer: &Arc<Writer>, concurrency: usize) -> Self {
        Self {
            variant,
            path,
            writer: Arc::clone(writer),
            concurrency,
            prefix: format!("{}-{}-", path.slug(), Uuid::now_v7().simple()),
            done: 0,
            wall: Duration::ZERO,
            latencies: Vec::new(),
            round_rates: Vec::new(),
        }
    }

    /// `per_task` more commands on each task's aggregate, all tasks released together.
    async fn round(&mut self, per_task: usize) -> Result<()> {
        let barrier = Arc::new(tokio::sync::Barrier::new(self.concurrency + 1));
        let mut tasks = tokio::task::JoinSet::new();
        for task in 0..self.concurrency {
            let writer = Arc::clone(&self.writer);
            let barrier = Arc::clone(&barrier);
            let aggregate_id = format!("{}{task}", self.prefix);
            let first = self.done + 1;
            tasks.spawn(async move {
                barrier.wait().await;
                let mut latencies = Vec::with_capacity(per_task);
                for sequence in first..first + per_task {
                    let started = Instant::now();
                    writer.send(&aggregate_id, i64::try_from(sequence)?).await?;
                    latencies.push(started.elapsed());
                }
                Ok::<_, Error>(latencies)
            });
        }
        barrier.wait().await;
        let started = Instant::now();
        let mut sent = 0;
        while let Some(joined) = tasks.join_next().await {
            let latencies = joined??;
            sent += latencies.len();
            self.latencies.extend(latencies);
        }
        let wall = started.elapsed();
        self.wall += wall;
        self.done += per_task;
        self.round_rates
            .push(f64::from(u32::try_from(sent)?) / wall.as_secs_f64());
        Ok(())
    }

    /// Every command's event is in the table.
    async fn check(&self, pool: &PgPool) -> Result<()> {
        let written: i64 = sqlx::query_scalar(
            "select count(*) from events where aggregate_type = $1 and aggregate_id like $2 || '%'",
        )
        .bind(Tally::TYPE)
        .bind(&self.prefix)
        .fetch_one(pool)
        .await?;
        let expected = self.done * self.concurrency;
        if usize::try_from(written)? == expected {
            Ok(())
        } else {
            Err(format!(
                "{}: {written} events written, {expected} expected",
                self.path.name()
            )
            .into())
        }
    }

    fn summary(&self) -> Result<Measured> {
        let mut latencies = self.latencies.clone();
        latencies.sort_unstable();
        let n = u32::try_from(latencies.len())?;
        let total: Duration = latencies.iter().sum();
        let p99_index = (latencies.len() * 99).div_ceil(100).saturating_sub(1);
        let (slowest, fastest) = self
            .round_rates
            .iter()
            .fold((f64::INFINITY, 0.0_f64), |(lo, hi), r| {
                (lo.min(*r), hi.max(*r))
            });
        Ok(Measured {
            variant: self.variant,
            path: self.path,
            concurrency: self.concurrency,
            per_sec: f64::from(n) / self.wall.as_secs_f64(),
            mean_ms: millis(total / n.max(1)),
            p99_ms: latencies.get(p99_index).copied().map_or(0.0, millis),
            slowest_round: slowest,
            fastest_round: fastest,
        })
    }
}

struct Measured {
    variant: &'static str,
    path: Path,
    concurrency: usize,
    per_sec: f64,
    mean_ms: f64,
    p99_ms: f64,
    slowest_round: f64,
    fastest_round: f64,
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

/// Opens and prepares every connection of the pool for `writer`'s statements (not measured).
async fn warm_up(pool: &PgPool, path: Path, writer: &Arc<Writer>) -> Result<()> {
    let mut series = Series::new("", path, writer, usize::try_from(POOL)?);
    series.round(WARM_UP_PER_TASK).await?;
    series.check(pool).await
}

fn print_table(rows: &[Measured]) {
    let width = if rows.iter().any(|r| !r.variant.is_empty()) {
        11
    } else {
        0
    };
    println!(
        "{:<width$}{:<22} {:>3} {:>11} {:>8} {:>8}   slowest..fastest round (commands/s)",
        if width > 0 { "triggers" } else { "" },
        "path",
        "C",
        "commands/s",
        "mean ms",
        "p99 ms",
    );
    for r in rows {
        println!(
            "{:<width$}{:<22} {:>3} {:>11.0} {:>8.2} {:>8.2}   {:.0}..{:.0}",
            r.variant,
            r.path.name(),
            r.concurrency,
            r.per_sec,
            r.mean_ms,
            r.p99_ms,
            r.slowest_round,
            r.fastest_round
        );
    }
}

fn rate(rows: &[Measured], path: Path, concurrency: usize) -> f64 {
    rows.iter()
        .find(|r| r.path == path && r.concurrency == concurrency)
        .map_or(f64::NAN, |r| r.per_sec)
}

fn print_ratios(rows: &[Measured]) {
    print!("{:<36}", "ratio of commands/s");
    for c in CONCURRENCY {
        print!(" {:>8}", format!("C={c}"));
    }
    println!();
    for (name, base) in [
        ("gigledger / stock postgres-es", Path::Stock),
        ("gigledger / stock + snapshots/100", Path::StockSnapshots),
        ("gigledger / raw insert", Path::Raw),
    ] {
        print!("{name:<36}");
        for c in CONCURRENCY {
            print!(
                " {:>8.2}",
                rate(rows, Path::Gigledger, c) / rate(rows, base, c)
            );
        }
        println!();
    }
}

/// The four paths, interleaved: every round runs each path once (in a rotating order), so a slow
/// spell of the machine (fsync latency, a neighbour's build) hits every path alike.
async fn measure_paths(pool: &PgPool, ours: &PgPool) -> Result<Vec<Measured>> {
    let mut writers = Vec::new();
    for path in Path::ALL {
        let own = own_pool(path, pool, ours);
        let writer = Arc::new(Writer::new(path, own));
        warm_up(own, path, &writer).await?;
        writers.push((path, writer));
    }
    let mut rows = Vec::new();
    for concurrency in CONCURRENCY {
        eprintln!("  C={concurrency}: {ROUNDS} rounds of the four paths …");
        let mut series: Vec<Series> = writers
            .iter()
            .map(|(path, writer)| Series::new("", *path, writer, concurrency))
            .collect();
        let per_task = COMMANDS / concurrency / ROUNDS;
        for round in 0..ROUNDS {
            for k in 0..series.len() {
                let i = (round + k) % series.len();
                series[i].round(per_task).await?;
            }
        }
        for s in &series {
            s.check(pool).await?;
            rows.push(s.summary()?);
        }
    }
    Ok(rows)
}

/// gigledger runs on a pool configured as the service configures its own (`gigledger.notify =
/// off`: the store wakes readers itself after commit, coalesced); the other paths on a plain one.
fn own_pool<'p>(path: Path, plain: &'p PgPool, ours: &'p PgPool) -> &'p PgPool {
    if matches!(path, Path::Gigledger) {
        ours
    } else {
        plain
    }
}

/// The trigger settings of the events table (in the benchmark's own database).
async fn set_triggers(pool: &PgPool, notify: bool, hash: bool) -> Result<()> {
    let verb = |on: bool| if on { "enable" } else { "disable" };
    sqlx::query(&format!(
        "alter table events {} trigger events_notify",
        verb(notify)
    ))
    .execute(pool)
    .await?;
    // Without the hash trigger nothing fills the not-null `hash` column: give it a default.
    let default = if hash {
        "drop default"
    } else {
        r"set default '\x'::bytea"
    };
    sqlx::query(&format!("alter table events alter column hash {default}"))
        .execute(pool)
        .await?;
    sqlx::query(&format!(
        "alter table events {} trigger events_chain_hash",
        verb(hash)
    ))
    .execute(pool)
    .await?;
    Ok(())
}

const TRIGGER_VARIANTS: [(&str, bool, bool); 4] = [
    ("both", true, true),
    ("no NOTIFY", false, true),
    ("no hash", true, false),
    ("neither", false, false),
];

/// gigledger and the raw insert with the NOTIFY and hash triggers on and off, interleaved like
/// [`measure_paths`].
async fn measure_triggers(pool: &PgPool, ours: &PgPool) -> Result<Vec<Measured>> {
    let paths = [Path::Gigledger, Path::Raw];
    let mut writers = Vec::new();
    for path in paths {
        let own = own_pool(path, pool, ours);
        let writer = Arc::new(Writer::new(path, own));
        warm_up(own, path, &writer).await?;
        writers.push((path, writer));
    }
    let mut rows = Vec::new();
    for concurrency in CONCURRENCY {
        eprintln!("  C={concurrency}: {ROUNDS} rounds of four trigger settings …");
        let mut series: Vec<Vec<Series>> = TRIGGER_VARIANTS
            .iter()
            .map(|(variant, _, _)| {
                writers
                    .iter()
                    .map(|(path, writer)| Series::new(variant, *path, writer, concurrency))
                    .collect()
            })
            .collect();
        let per_task = COMMANDS / concurrency / ROUNDS;
        for round in 0..ROUNDS {
            for k in 0..TRIGGER_VARIANTS.len() {
                let v = (round + k) % TRIGGER_VARIANTS.len();
                let (_, notify, hash) = TRIGGER_VARIANTS[v];
                set_triggers(pool, notify, hash).await?;
                for j in 0..paths.len() {
                    series[v][(round + j) % paths.len()].round(per_task).await?;
                }
            }
        }
        set_triggers(pool, true, true).await?;
        for s in series.iter().flatten() {
            s.check(pool).await?;
            rows.push(s.summary()?);
        }
    }
    Ok(rows)
}

async fn bench(pool: &PgPool, ours: &PgPool) -> Result<()> {
    let rows = measure_paths(pool, ours).await?;
    println!();
    println!(
        "write path: {COMMANDS} commands per row, C tasks each on an aggregate of its own \
         ({ROUNDS} interleaved rounds), pool of {POOL}"
    );
    print_table(&rows);
    println!();
    print_ratios(&rows);

    let storage = sqlx::query(
        "select pg_total_relation_size('events')::bigint as total,
                pg_relation_size('events')::bigint as heap,
                (select count(*) from events) as n",
    )
    .fetch_one(pool)
    .await?;
    let (total, heap, n): (i64, i64, i64) = (
        storage.try_get("total")?,
        storage.try_get("heap")?,
        storage.try_get("n")?,
    );
    println!();
    println!(
        "events table: {n} events, {total} bytes with indexes and toast = {} bytes/event \
         (heap alone {} bytes/event)",
        total / n.max(1),
        heap / n.max(1)
    );

    if std::env::var("WRITE_PATH_TRIGGERS").is_ok_and(|v| !v.is_empty() && v != "0") {
        trigger_cost(pool, ours).await?;
    }
    Ok(())
}

/// gigledger and the raw insert with the NOTIFY and the hash trigger on and off.
async fn trigger_cost(pool: &PgPool, ours: &PgPool) -> Result<()> {
    eprintln!("trigger cost …");
    let measured = measure_triggers(pool, ours).await;
    if measured.is_err() {
        set_triggers(pool, true, true).await?;
    }
    let mut rows = measured?;
    rows.sort_by_key(|r| (r.path.slug(), r.concurrency));
    println!();
    println!("trigger cost (disabled in the benchmark's own database only)");
    print_table(&rows);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
    let server = PgConnectOptions::from_str(&url)?;
    let name = format!("gigledger_bench_{:08x}", rand::random::<u32>());
    let mut admin = server.connect().await?;
    sqlx::query(&format!("create database {name}"))
        .execute(&mut admin)
        .await?;

    let mut options = server.clone().database(&name);
    if let Ok(setting) = std::env::var("WRITE_PATH_SYNCHRONOUS_COMMIT") {
        options = options.options([("synchronous_commit", setting)]);
    }

    let outcome = async {
        let pool = PgPoolOptions::new()
            .max_connections(POOL)
            .min_connections(POOL)
            .connect_with(options.clone())
            .await?;
        gigledger_projections::MIGRATOR.run(&pool).await?;
        let settings = sqlx::query(
            "select current_setting('server_version') as version,
                    current_setting('synchronous_commit') as sync,
                    current_setting('fsync') as fsync",
        )
        .fetch_one(&pool)
        .await?;
        println!(
            "database {name}: PostgreSQL {}, synchronous_commit={}, fsync={}",
            settings.try_get::<String, _>("version")?,
            settings.try_get::<String, _>("sync")?,
            settings.try_get::<String, _>("fsync")?
        );
        let ours = PgPoolOptions::new()
            .max_connections(POOL)
            .min_connections(POOL)
            .connect_with(options.clone().options([("gigledger.notify", "off")]))
            .await?;
        let result = bench(&pool, &ours).await;
        ours.close().await;
        pool.close().await;
        result
    }
    .await;

    let dropped = sqlx::query(&format!("drop database if exists {name} with (force)"))
        .execute(&mut admin)
        .await;
    admin.close().await?;
    outcome?;
    dropped?;
    Ok(())
}
