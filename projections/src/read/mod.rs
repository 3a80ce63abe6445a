//! The read models: tables derived from the global log, and the read functions the API serves
//! from them.
//!
//! Each module holds one read model: its [`Handler`] (a unit struct whose `name()` is its stored
//! checkpoint name), `TABLES` (the tables a rebuild refills and swaps, all in schema `read`,
//! created by `migrations/20261121000010_read_models.sql`) and its read functions.
//!
//! What users write is never in a `TABLES` list: a rebuild drops the tables it lists and swaps in
//! copies replayed from the log, so anything not derived from events would be lost. Such tables
//! (`read.notification_read_marks`) are written by read-side functions only
//! ([`notifications::mark_read_up_to`]) and survive every rebuild.
//!
//! Views served as one resource keep the version (stream sequence) of the aggregate they reflect,
//! set after every event of that stream (`gig_board.version`, `contracts.version`,
//! `contract_escrows.version`): the `ETag` of `GET /v1/gigs/{id}` and `GET /v1/contracts/{id}`.
//!
//! Handlers write through the worker's transaction with unqualified table names (the worker's
//! `search_path` points at `read` or `read_rebuild`); read functions name `read.` tables, since
//! they run on the API's pool. Handlers skip events of aggregate types they do not know, and fail
//! on an event of a known type that does not decode (the worker then stops on it, never skips it).
//!
//! Read functions return [`ReadError`]: a bad cursor or argument is the caller's mistake, a
//! database error is not.

pub mod analytics;
pub mod contracts;
pub mod gig_board;
pub mod ledger;
pub mod notifications;
pub mod proposals;
pub mod user_stats;
pub mod wallets;

use std::fmt::Display;
use std::sync::Arc;

pub(crate) use gigledger_domain::AnyEvent;
use gigledger_domain::{Currency, Money};
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::Row;
use uuid::Uuid;

use crate::log::RecordedEvent;
use crate::runtime::{Handler, HandlerError};

/// Every read model's handler, each to be run by its own worker.
pub fn all() -> Vec<Arc<dyn Handler>> {
    vec![
        Arc::new(gig_board::GigBoard),
        Arc::new(proposals::Proposals),
        Arc::new(contracts::Contracts),
        Arc::new(ledger::Ledger),
        Arc::new(notifications::Notifications),
        Arc::new(user_stats::UserStats),
        Arc::new(analytics::Analytics),
        Arc::new(wallets::Wallets),
    ]
}

/// The tables of the read model called `name` (its handler's name), for a rebuild.
pub fn tables_of(name: &str) -> Option<&'static [&'static str]> {
    match name {
        gig_board::NAME => Some(gig_board::TABLES),
        proposals::NAME => Some(proposals::TABLES),
        contracts::NAME => Some(contracts::TABLES),
        ledger::NAME => Some(ledger::TABLES),
        notifications::NAME => Some(notifications::TABLES),
        user_stats::NAME => Some(user_stats::TABLES),
        analytics::NAME => Some(analytics::TABLES),
        wallets::NAME => Some(wallets::TABLES),
        _ => None,
    }
}

/// Why a read function failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The cursor was not one this listing hands out (or was made for another sort order).
    #[error("the cursor is not valid for this listing")]
    InvalidCursor,
    /// An argument is out of range (e.g. an unknown interval).
    #[error("{0}")]
    InvalidArgument(String),
    /// A budget filter without a currency: minor units of different currencies do not compare
    /// (`min_budget=100000` would match USD 1 000.00 and JPY 100 000).
    #[error("a budget filter needs a currency")]
    BudgetWithoutCurrency,
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// One page of a keyset-paged listing: `next_cursor` is `None` on the last page, and only there.
/// A page may hold fewer items than asked for, even none, and still have a `next_cursor` (the
/// gig board stops a page after a bounded walk): a listing ends when `next_cursor` is `None`,
/// not at a short page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Items per page when the caller does not say.
pub const DEFAULT_LIMIT: u32 = 20;
/// The most items a page holds.
pub const MAX_LIMIT: u32 = 100;

/// The page size to use for a requested `limit`: default 20, between 1 and 100.
pub fn page_limit(limit: Option<u32>) -> i64 {
    i64::from(limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT))
}

/// Builds a page from up to `limit + 1` fetched rows: the extra row only says a next page exists,
/// and the cursor is made from the last row kept.
pub(crate) fn into_page<T>(
    mut rows: Vec<T>,
    limit: i64,
    cursor_of: impl Fn(&T) -> String,
) -> Page<T> {
    let keep = usize::try_from(limit).unwrap_or(usize::MAX);
    let next_cursor = if rows.len() > keep {
        rows.truncate(keep);
        rows.last().map(cursor_of)
    } else {
        None
    };
    Page {
        items: rows,
        next_cursor,
    }
}

/// As [`into_page`], for a listing that may stop a page before filling it: `resume` is the cursor
/// after the last row the listing looked at, where the next page continues when the rows do not
/// fill this one. (When they do, the cursor after the last row kept comes first, so nothing is
/// skipped.)
pub(crate) fn into_page_resuming<T>(
    rows: Vec<T>,
    limit: i64,
    cursor_of: impl Fn(&T) -> String,
    resume: Option<String>,
) -> Page<T> {
    let mut page = into_page(rows, limit, cursor_of);
    if page.next_cursor.is_none() {
        page.next_cursor = resume;
    }
    page
}

/// Cursors are short dotted texts, `<kind>.<part>.<part>…`: opaque to clients, safe in a query
/// string, and checked for their kind so a cursor of one listing or sort order is refused by
/// another.
pub(crate) fn encode_cursor(kind: &str, parts: &[&dyn Display]) -> String {
    let mut out = kind.to_owned();
    for part in parts {
        out.push('.');
        out.push_str(&part.to_string());
    }
    out
}

/// The parts of a cursor of `kind` with exactly `parts` parts.
pub(crate) fn decode_cursor<'c>(
    cursor: &'c str,
    kind: &str,
    parts: usize,
) -> Result<Vec<&'c str>, ReadError> {
    let mut split = cursor.split('.');
    if split.next() != Some(kind) {
        return Err(ReadError::InvalidCursor);
    }
    let found: Vec<&str> = split.collect();
    if found.len() == parts {
        Ok(found)
    } else {
        Err(ReadError::InvalidCursor)
    }
}

pub(crate) fn cursor_part<T: std::str::FromStr>(part: &str) -> Result<T, ReadError> {
    part.parse().map_err(|_| ReadError::InvalidCursor)
}

/// Decodes `event` with its stream id; `None` for an aggregate type no read model knows.
pub(crate) fn decode(event: &RecordedEvent) -> Result<Option<(Uuid, AnyEvent)>, HandlerError> {
    let Some(decoded) = AnyEvent::decode(
        &event.aggregate_type,
        &event.event_type,
        &event.event_version,
        &event.payload,
    )?
    else {
        return Ok(None);
    };
    let id = Uuid::parse_str(&event.aggregate_id)?;
    Ok(Some((id, decoded)))
}

/// A `Money` from an amount column and a currency-code column.
pub(crate) fn money(row: &PgRow, amount: &str, currency: &str) -> Result<Money, sqlx::Error> {
    let amount: i64 = row.try_get(amount)?;
    let currency = currency_of(row, currency)?;
    Ok(Money::new(amount, currency))
}

/// A `Currency` from a currency-code column.
pub(crate) fn currency_of(row: &PgRow, column: &str) -> Result<Currency, sqlx::Error> {
    let code: String = row.try_get(column)?;
    Currency::parse(&code).map_err(|e| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: Box::new(e),
    })
}

/// An exact sum of minor units from a column the query sends as text (`sum(x)::text`, or a
/// `numeric` column cast to text): sums that grow with the number of events are `numeric` in
/// SQL (no `bigint` overflow), and text is how an exact `numeric` reaches Rust without a float.
/// `i128` holds any sum of `i64` amounts the log could ever hold.
pub(crate) fn exact_sum(row: &PgRow, column: &str) -> Result<i128, sqlx::Error> {
    let text: String = row.try_get(column)?;
    text.parse::<i128>().map_err(|e| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: Box::new(e),
    })
}
