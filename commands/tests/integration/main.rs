//! The write side's storage guarantees and the global log reader, against the real PostgreSQL.
//! Every test gets a fresh, migrated database (`#[sqlx::test]`).

mod common;
mod contention;
mod event_store;
mod log_order;
mod log_reader;
mod runtime;
mod snapshots;
mod versions;
mod worker_faults;
