//! The read side of gigledger.
//!
//! - [`log`]: reading the global event log in a safe order (never skipping an event whose
//!   transaction commits late). The process managers in `commands` use it too.
//! - [`read`]: the read models (gig board, proposals, contracts, ledger, notifications, user
//!   stats, analytics): their handlers, tables and the read functions the API serves.
//! - [`runtime`]: the worker runtime (checkpoints, leases, batches, failures, catch-up, waiting
//!   for a position), shared by projections and process managers.
//! - [`digest`]: the ledger digest over the whole log (its worker and its verification), and
//!   [`export`]: the log as JSON Lines that verify offline.
//! - [`integration`]: the public contract of the events published to the rest of the
//!   marketplace (envelope, per-type data shapes free of personal text, their schemas).
//! - [`relay`]: the worker that publishes the log, as that contract, to NATS JetStream.
//! - [`rebuild`]: replaying a read model into fresh tables and swapping them in.
//!
//! Read models never send commands and never write to the event store.

pub mod digest;
pub mod export;
pub mod integration;
pub mod log;
pub mod read;
pub mod rebuild;
pub mod relay;
pub mod runtime;

/// The SQL migrations of the whole service (event store and read models), embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
