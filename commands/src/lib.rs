//! The write side of gigledger.
//!
//! - [`store`]: the PostgreSQL event store under cqrs-es (`PgEventRepository` for the SQL,
//!   `PgEventStore` for loading, caching, snapshots and appending).
//! - [`scope`]: what travels beside a command through `CqrsFramework` (the expected version in,
//!   the commit receipt out).
//! - [`bus`]: running one command through `CqrsFramework` with bounded retries on conflicts.
//! - [`metadata`]: the metadata every stored event carries.
//! - [`services`]: one entry point per command (authorised by the domain), running the follow-up
//!   steps of cross-aggregate effects before answering.
//! - [`process`]: the process managers (workers over the global log) and the due-timer runner.
//! - [`provider`]: the simulated payment provider kept in PostgreSQL (schema `provider`), which
//!   several processes share.
//! - [`reconcile`]: provider charges against escrow deposits.
//! - [`clock`]: injectable time.
//!
//! Which error to use: storage code returns `cqrs_es::persist::PersistenceError` (it plugs into
//! cqrs-es); code that runs commands returns [`bus::CommandError`], which keeps the domain's own
//! refusal intact for the API to map.

pub mod bus;
pub mod clock;
pub mod metadata;
pub mod notice;
pub mod process;
pub mod provider;
pub mod reconcile;
pub mod scope;
pub mod services;
pub mod store;
