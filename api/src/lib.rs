//! gigledger's HTTP edge and command line.
//!
//! - [`auth`]: bearer tokens (JWT) verified into the caller ([`auth::Caller`]), and dev tokens.
//! - [`cli`]: the `gigledger` command (`serve`, `migrate`).
//! - [`settings`]: all configuration, from flags and the environment, loaded once in `main`.
//! - [`db`]: connecting, creating the database and migrating it.
//! - [`state`]: what every handler reaches ([`state::AppState`]).
//! - [`app`]: the router with its layers ([`app::app`]).
//! - [`command`]: how every command request runs (auth, rate limit, idempotency, answer).
//! - [`query`]: what every query shares (read-your-writes, `X-Position`, paging).
//! - [`live`]: the shared waker and the shutdown signal of the notification streams.
//! - [`middleware`]: request ids, spans, metrics, the time limit, CORS.
//! - [`startup`]: preparing the database and serving.
//! - [`routes`]: one module per resource.
//! - [`telemetry`]: tracing and the metrics recorder, set up once.
//! - [`workers`]: the background workers (projections, process managers, timers) of a process.
//! - [`demo`]: the demo marketplace `serve --demo` seeds, and the guide it prints.
//! - [`private_pg`]: the PostgreSQL of its own `serve --demo` starts when there is none.
//! - [`error`]: `ApiError` (RFC 9457 problems) and the extractors that answer in it.
//! - [`idempotency`]: the `Idempotency-Key` records, reserved, completed and replayed.
//!
//! This is the only crate that knows HTTP.

pub mod app;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod command;
pub mod db;
pub mod demo;
pub mod error;
pub mod idempotency;
pub mod live;
pub mod middleware;
pub mod notices;
pub mod openapi;
pub mod private_pg;
pub mod query;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod workers;
