//! The read side of gigledger.
//!
//! - [`log`]: reading the global event log in a safe order (never skipping an event whose
//!   transaction commits late). The process managers in `commands` use it too.
//!
//! Read models never send commands and never write to the event store.

pub mod log;
pub mod runtime;

/// The SQL migrations of the whole service (event store and read models), embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
