//! The gig board: every gig with its status, full-text search and filters, keyset-paged.
//!
//! Search uses the generated `search` tsvector (title weight A, description B, skills C; English
//! stemming) with `websearch_to_tsquery`, so users type what they would type into a search box.
//! Relevance is `ts_rank` scaled to an integer (millionths), which makes it an exact keyset
//! component: the order is (rank desc, posted_at desc, gig_id desc) with `q`, (posted_at desc,
//! gig_id desc) without, and a cursor names the last row's key, so paging never repeats or skips
//! a gig even when ranks and times are equal.
//!
//! Each combination of filters is served by one of a fixed set of static statements, each
//! driven by the index of its most selective filter, so that no filter makes a page walk the
//! whole board, in generic plans as in custom ones:
//! - no filter: `(posted_at desc, gig_id desc)`; a status: `(status, posted_at desc, gig_id desc)`;
//!   a currency: `(currency, posted_at desc, gig_id desc)`;
//! - skills alone: the `gig_skills` side table, one newest-first index scan per skill, each
//!   stopping at a page;
//! - a filter no index gives in the keyset order (a budget range; skills with a currency or
//!   status; a text query): a walk of at most [`WALK_BOUND`] newest gigs (of the currency or
//!   status), and only when that shows the filter is selective, the filter's own index (budget,
//!   skills GIN, `search` GIN) and a sort of its matches, if there are at most
//!   [`SELECT_BOUND`]; a filter with more (common only in old gigs: a word, a skill popular years
//!   ago) gets a page of only the walk's hits, and the next page continues after the walk;
//! - relevance ranks the newest [`RANK_BOUND`] matches of a text query, or, for a query common
//!   only in old gigs (fewer than `RANK_BOUND` matches among the newest [`RANK_WALK`] gigs, more
//!   than `SELECT_BOUND` in all), the matches among the newest `RANK_WALK` gigs.
//!
//! So a page may hold fewer than `limit` items, even none, while `next_cursor` is not null:
//! the board is at its end only when `next_cursor` is null. Following `next_cursor` still yields
//! every matching gig exactly once, in order.
//!
//! Cursors have sentinel first values, so the keyset is always the index condition. A budget
//! filter needs a currency.

use chrono::{DateTime, NaiveDate, Utc};
use gigledger_domain::{Budget, ContractId, GigEvent, GigId, GigStatus, Money, UserId};
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection, PgExecutor, Row};
use uuid::Uuid;

use super::{
    cursor_part, decode, decode_cursor, encode_cursor, into_page, into_page_resuming, money,
    page_limit, AnyEvent, Page, ReadError,
};
use crate::log::RecordedEvent;
use crate::runtime::{Handler, HandlerError};

/// The handler's stored name.
pub const NAME: &str = "gig_board";
/// The tables this read model fills.
pub const TABLES: &[&str] = &["gig_board", "gig_skills"];

/// Projects gig events into `gig_board`.
#[derive(Clone, Copy, Debug, Default)]
pub struct GigBoard;

#[async_trait::async_trait]
impl Handler for GigBoard {
    fn name(&self) -> &str {
        NAME
    }

    async fn handle(
        &self,
        tx: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), HandlerError> {
        for event in events {
            if let Some((gig_id, AnyEvent::Gig(gig_event))) = decode(event)? {
                apply(tx, gig_id, event.position, &gig_event).await?;
                record_version(tx, gig_id, event.sequence).await?;
            }
        }
        Ok(())
    }
}

/// Keeps the gig's version (its stream sequence) in its row after every gig event, including the
/// ones that change nothing else there (a proposal withdrawn or rejected), so the row always says
/// which version of the gig it reflects. Sequences increase along the stream, so the guard makes
/// a replayed event change nothing.
async fn record_version(
    tx: &mut PgConnection,
    gig_id: Uuid,
    sequence: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("update gig_board set version = $2 where gig_id = $1 and version < $2")
        .bind(gig_id)
        .bind(sequence)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// `(kind, currency, min, max)` of a budget as stored: a fixed budget is min = max = its amount.
fn budget_columns(budget: &Budget) -> (&'static str, &'static str, i64, i64) {
    match budget {
        Budget::Fixed { amount } => (
            "fixed",
            amount.currency.code(),
            amount.amount,
            amount.amount,
        ),
        Budget::Hourly { min, max } => ("hourly", min.currency.code(), min.amount, max.amount),
    }
}

/// The `gig_skills` rows of a gig (its posting time copied from the board row, which never
/// changes it).
async fn add_skills(
    tx: &mut PgConnection,
    gig_id: Uuid,
    skills: &[String],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into gig_skills (gig_id, skill, posted_at)
         select g.gig_id, s.skill, g.posted_at
           from gig_board g cross join unnest($2::text[]) as s(skill)
          where g.gig_id = $1
         on conflict do nothing",
    )
    .bind(gig_id)
    .bind(skills)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn apply(
    tx: &mut PgConnection,
    gig_id: Uuid,
    position: i64,
    event: &GigEvent,
) -> Result<(), sqlx::Error> {
    match event {
        GigEvent::GigPosted {
            client_id,
            title,
            description,
            skills,
            budget,
            deadline,
            posted_at,
            ..
        } => {
            let (kind, currency, min, max) = budget_columns(budget);
            let inserted = sqlx::query(
                "insert into gig_board (gig_id, client_id, title, description, skills, budget_kind,
                                        currency, budget_min, budget_max, deadline, posted_at,
                                        status, last_position)
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'open', $12)
                 on conflict (gig_id) do nothing",
            )
            .bind(gig_id)
            .bind(client_id.0)
            .bind(title)
            .bind(description)
            .bind(skills)
            .bind(kind)
            .bind(currency)
            .bind(min)
            .bind(max)
            .bind(deadline)
            .bind(posted_at)
            .bind(position)
            .execute(&mut *tx)
            .await?;
            // A replayed posting must not bring back skills a later revision removed.
            if inserted.rows_affected() == 1 {
                add_skills(tx, gig_id, skills).await?;
            }
        }
        GigEvent::GigRevised {
            title,
            description,
            skills,
            budget,
            deadline,
            revised_at,
        } => {
            let budget = budget.as_ref().map(budget_columns);
            let revised = sqlx::query(
                "update gig_board
                    set title = coalesce($3, title),
                        description = coalesce($4, description),
                        skills = coalesce($5, skills),
                        budget_kind = coalesce($6, budget_kind),
                        currency = coalesce($7, currency),
                        budget_min = coalesce($8, budget_min),
                        budget_max = coalesce($9, budget_max),
                        deadline = coalesce($10, deadline),
                        revised_at = $11,
                        last_position = $2
                  where gig_id = $1 and last_position < $2",
            )
            .bind(gig_id)
            .bind(position)
            .bind(title)
            .bind(description)
            .bind(skills)
            .bind(budget.map(|b| b.0))
            .bind(budget.map(|b| b.1))
            .bind(budget.map(|b| b.2))
            .bind(budget.map(|b| b.3))
            .bind(deadline)
            .bind(revised_at)
            .execute(&mut *tx)
            .await?;
            // Only a revision the board applied (not one replayed) changes the skills rows.
            if let (1, Some(skills)) = (revised.rows_affected(), skills) {
                sqlx::query("delete from gig_skills where gig_id = $1 and skill <> all($2)")
                    .bind(gig_id)
                    .bind(skills)
                    .execute(&mut *tx)
                    .await?;
                add_skills(tx, gig_id, skills).await?;
            }
        }
        GigEvent::ProposalSubmitted { .. } => {
            sqlx::query(
                "update gig_board set proposals_count = proposals_count + 1, last_position = $2
                  where gig_id = $1 and last_position < $2",
            )
            .bind(gig_id)
            .bind(position)
            .execute(&mut *tx)
            .await?;
        }
        GigEvent::ProposalAccepted {
            proposal_id,
            contract_id,
            accepted_at,
            ..
        } => {
            sqlx::query(
                "update gig_board
                    set status = 'hired', hired_proposal_id = $3, hired_contract_id = $4,
                        hired_at = $5, last_position = $2
                  where gig_id = $1 and last_position < $2",
            )
            .bind(gig_id)
            .bind(position)
            .bind(proposal_id.0)
            .bind(contract_id.0)
            .bind(accepted_at)
            .execute(&mut *tx)
            .await?;
        }
        GigEvent::GigClosed { closed_at } => {
            sqlx::query(
                "update gig_board set status = 'closed', closed_at = $3, last_position = $2
                  where gig_id = $1 and last_position < $2",
            )
            .bind(gig_id)
            .bind(position)
            .bind(closed_at)
            .execute(&mut *tx)
            .await?;
        }
        GigEvent::GigCancelled { cancelled_at } => {
            sqlx::query(
                "update gig_board set status = 'cancelled', cancelled_at = $3, last_position = $2
                  where gig_id = $1 and last_position < $2",
            )
            .bind(gig_id)
            .bind(position)
            .bind(cancelled_at)
            .execute(&mut *tx)
            .await?;
        }
        GigEvent::ProposalWithdrawn { .. } | GigEvent::ProposalRejected { .. } => {}
    }
    Ok(())
}

/// One gig as the board shows it to anyone signed in. It carries no contract id: a hired gig's
/// contract is the parties' business ([`hired_contract`]), as the API answers 404 to anyone else.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct GigCard {
    pub gig_id: GigId,
    pub client_id: UserId,
    pub title: String,
    pub description: String,
    pub skills: Vec<String>,
    pub budget: Budget,
    pub deadline: Option<NaiveDate>,
    pub posted_at: DateTime<Utc>,
    pub revised_at: Option<DateTime<Utc>>,
    pub proposals_count: i64,
    pub status: GigStatus,
    /// The gig's version (stream sequence) this card reflects: its `ETag`.
    pub version: i64,
    /// Relevance to the query in millionths of `ts_rank` (0 without a query).
    pub rank: i64,
}

pub(crate) fn gig_status(text: &str) -> Result<GigStatus, sqlx::Error> {
    match text {
        "open" => Ok(GigStatus::Open),
        "closed" => Ok(GigStatus::Closed),
        "hired" => Ok(GigStatus::Hired),
        "cancelled" => Ok(GigStatus::Cancelled),
        other => Err(sqlx::Error::Decode(
            format!("unknown gig status {other:?}").into(),
        )),
    }
}

const fn gig_status_text(status: GigStatus) -> &'static str {
    match status {
        GigStatus::Open => "open",
        GigStatus::Closed => "closed",
        GigStatus::Hired => "hired",
        GigStatus::Cancelled => "cancelled",
    }
}

impl FromRow<'_, PgRow> for GigCard {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        let kind: String = row.try_get("budget_kind")?;
        let min: Money = money(row, "budget_min", "currency")?;
        let budget = if kind == "fixed" {
            Budget::Fixed { amount: min }
        } else {
            Budget::Hourly {
                min,
                max: money(row, "budget_max", "currency")?,
            }
        };
        let status: String = row.try_get("status")?;
        Ok(Self {
            gig_id: GigId(row.try_get("gig_id")?),
            client_id: UserId(row.try_get("client_id")?),
            title: row.try_get("title")?,
            description: row.try_get("description")?,
            skills: row.try_get("skills")?,
            budget,
            deadline: row.try_get("deadline")?,
            posted_at: row.try_get("posted_at")?,
            revised_at: row.try_get("revised_at")?,
            proposals_count: row.try_get("proposals_count")?,
            status: gig_status(&status)?,
            version: row.try_get("version")?,
            rank: row.try_get::<Option<i64>, _>("rank")?.unwrap_or(0),
        })
    }
}

/// A row of a board statement: a card of the page (`item`), or the row after which the next page
/// continues (`resume`: the last gig a `walk_then_select` page walked, when it answers only the
/// walk's hits), or both.
struct BoardRow {
    card: GigCard,
    item: bool,
    resume: bool,
}

impl FromRow<'_, PgRow> for BoardRow {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            card: GigCard::from_row(row)?,
            item: row.try_get("item")?,
            resume: row.try_get("resume")?,
        })
    }
}

/// How the board is ordered.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum GigSort {
    /// Most relevant first when there is a query, else newest first.
    #[default]
    Relevance,
    /// Newest first, even with a query.
    Newest,
}

/// What the board is asked for (`GET /v1/gigs`). Every filter is optional and they combine with
/// "and"; `skills` matches gigs having any of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GigQuery {
    /// Full-text query (web-search syntax: words, "phrases", -exclusions, or).
    pub q: Option<String>,
    /// Gigs with any of these skills (compared lower-case).
    pub skills: Vec<String>,
    /// ISO 4217 code.
    pub currency: Option<String>,
    /// Minor units: a fixed budget at least this, or an hourly range reaching it.
    pub min_budget: Option<i64>,
    /// Minor units: a fixed budget at most this, or an hourly range starting at or below it.
    pub max_budget: Option<i64>,
    /// Only gigs in this status; every status when `None`.
    pub status: Option<GigStatus>,
    pub sort: GigSort,
    pub cursor: Option<String>,
    /// Default 20, at most 100.
    pub limit: Option<u32>,
}

/// Where a page of the board continues.
enum BoardCursor {
    Relevance {
        rank: i64,
        posted_at: DateTime<Utc>,
        gig_id: Uuid,
    },
    Newest {
        posted_at: DateTime<Utc>,
        gig_id: Uuid,
    },
}

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// A cursor's time. Only years PostgreSQL's `timestamptz` holds are accepted (chrono's range is
/// wider), so a crafted cursor is an invalid cursor, never a database error.
fn from_micros(part: &str) -> Result<DateTime<Utc>, ReadError> {
    use chrono::Datelike;
    DateTime::from_timestamp_micros(cursor_part(part)?)
        .filter(|at| (1..=9999).contains(&at.year()))
        .ok_or(ReadError::InvalidCursor)
}

impl BoardCursor {
    fn parse(cursor: &str, by_relevance: bool) -> Result<Self, ReadError> {
        if by_relevance {
            let parts = decode_cursor(cursor, "gr", 3)?;
            Ok(Self::Relevance {
                rank: cursor_part(parts[0])?,
                posted_at: from_micros(parts[1])?,
                gig_id: cursor_part(parts[2])?,
            })
        } else {
            let parts = decode_cursor(cursor, "gn", 2)?;
            Ok(Self::Newest {
                posted_at: from_micros(parts[0])?,
                gig_id: cursor_part(parts[1])?,
            })
        }
    }

    fn of(card: &GigCard, by_relevance: bool) -> String {
        if by_relevance {
            encode_cursor("gr", &[&card.rank, &micros(card.posted_at), &card.gig_id.0])
        } else {
            encode_cursor("gn", &[&micros(card.posted_at), &card.gig_id.0])
        }
    }
}

/// How many matches of a text query are ranked by relevance: the newest `RANK_BOUND` matches
/// (after the other filters). Ranking reads the rank of every row it orders, so an unbounded
/// ranking of a common word costs the whole board; past the bound a query must be refined (or
/// sorted newest first, which pages through every match).
pub const RANK_BOUND: i64 = 200;

/// How many of the newest gigs a relevance query walks before it takes its matches by the GIN
/// index instead (see `BY_RELEVANCE`).
pub const RANK_WALK: i64 = 5_000;

/// How many gigs a page walks, newest first, before it takes a selective filter's matches by
/// the filter's own index instead (see `walk_then_select`): a budget range, a text query sorted
/// newest first.
pub const WALK_BOUND: i64 = 2_000;

/// The most matches a page takes by a filter's own index, when its walk found too few (see
/// `walk_then_select`, `BY_RELEVANCE`). A filter with more is neither selective among the newest
/// gigs nor rare overall (a word common only in old gigs, a skill popular years ago): sorting all
/// its matches would cost every page a number of rows that grows with the board, so such a page
/// answers only its walk's hits (fewer than a page, perhaps none) and continues after the walk.
/// Equal to [`WALK_BOUND`], so the index's matches cost a page at most what its walk does: a
/// page reads at most `WALK_BOUND + SELECT_BOUND + 1` board rows besides its cards, and sorts
/// at most `WALK_BOUND` rows. (A GIN index still lists every match in its bitmap: index
/// entries, not rows.)
pub const SELECT_BOUND: i64 = WALK_BOUND;

/// The most skills a board query may name (a gig has at most 20): each is one index scan.
pub const MAX_QUERY_SKILLS: usize = 20;

/// The filters a driver does not use as its index condition, on board row `g`. `$3` currency
/// (null: any), `$4`/`$5` budget bounds (sentinels `i64::MIN`/`i64::MAX` when absent, and only
/// ever given with a currency), `$6` status (null: any). Null tests here are plain filters, never
/// the index condition, so a generic plan loses nothing by them.
macro_rules! board_filters {
    ($g:literal) => {
        concat!(
            "($3::text is null or ",
            $g,
            ".currency = $3)
             and ",
            $g,
            ".budget_max >= $4::bigint and ",
            $g,
            ".budget_min <= $5::bigint
             and ($6::text is null or ",
            $g,
            ".status = $6)"
        )
    };
}

macro_rules! card_columns {
    () => {
        "g.gig_id, g.client_id, g.title, g.description, g.skills, g.budget_kind, g.currency, \
         g.budget_min, g.budget_max, g.deadline, g.posted_at, g.revised_at, g.proposals_count, \
         g.status, g.version"
    };
}

/// A filter no index gives in the keyset order (a budget range, a text query newest first):
/// first one bounded walk of the driver's newest [`WALK_BOUND`] gigs after the cursor; if that
/// found a page, or the driver's gigs ended within it, that is the page. Otherwise fewer than a
/// page in `WALK_BOUND` gigs pass the filter, which is therefore selective among the newest gigs:
/// at most [`SELECT_BOUND`] + 1 of its matches after the cursor are taken by the filter's own
/// index (in no order: only their number matters yet). If there are at most `SELECT_BOUND`, the
/// filter is rare, and they are sorted and the page cut from them. If there are more, the filter
/// is common in older gigs only, and the page is the walk's hits alone, fewer than a page (maybe
/// none), with a `resume` row: the walk's last row, after which the next page continues. Either
/// way every match after the cursor and before the next page's cursor is on the page, so paging
/// is exact, and a page discards at most `WALK_BOUND` rows and sorts at most that many or
/// `SELECT_BOUND`, in generic and custom plans alike.
///
/// The matches are taken by a materialised statement planned for all of them (so by the
/// filter's index: no plan can turn this into a walk, as a plan for a few rows might), and read
/// lazily through `capped`, which stops that statement after `SELECT_BOUND + 1` rows.
///
/// Rows are the page's cards (`item`) and the resume row (`resume`; it is an item too when it
/// passed the filter), newest first; at most `$10`.
///
/// `$walk_from`/`$walk_where`: the walk's rows; `$hit`: whether a walked row `g` passes;
/// `$select_from`/`$select_where`: the matches by the filter's index; `$rank` computed over
/// `$page_from`: the page's rows and their rank.
macro_rules! walk_then_select {
    ($walk_from:literal, $walk_where:literal, $hit:expr, $select_from:literal, $select_where:expr,
     $page_from:literal, $rank:literal) => {
        concat!(
            "with recent as materialized (
                 select g.gig_id, g.posted_at, ", $hit, " as hit,
                        row_number() over (order by g.posted_at desc, g.gig_id desc) as walked
                   from ", $walk_from, "
                  where ", $walk_where, " and (g.posted_at, g.gig_id) < ($8::timestamptz, $9::uuid)
                  order by g.posted_at desc, g.gig_id desc
                  limit $12),
             hits as materialized (
                 select r.gig_id from recent r
                  where r.hit
                  order by r.posted_at desc, r.gig_id desc
                  limit $10),
             selective as materialized (
                 select g.gig_id, g.posted_at from ", $select_from, "
                  where (select count(*) from hits) < $10 and (select count(*) from recent) = $12
                    and ", $select_where, "
                    and (g.posted_at, g.gig_id) < ($8::timestamptz, $9::uuid)),
             capped as materialized (
                 select s.gig_id, s.posted_at from selective s limit $14 + 1),
             chosen as materialized (
                 select gig_id from hits
                 union all
                 (select c.gig_id from capped c
                   where (select count(*) from capped) <= $14
                   order by c.posted_at desc, c.gig_id desc
                   limit $10)),
             resume as materialized (
                 select r.gig_id from recent r
                  where r.walked = $12 and (select count(*) from capped) > $14)
             select ", card_columns!(), ", ", $rank, " as rank,
                    g.gig_id in (select gig_id from chosen) as item,
                    g.gig_id in (select gig_id from resume) as resume
               from ", $page_from, "
              where g.gig_id in (select gig_id from chosen
                                 union all
                                 select gig_id from resume)
              order by g.posted_at desc, g.gig_id desc
              limit $10"
        )
    };
}

// Every statement takes the same parameters (unused ones are typed by their binding):
// $1 text query, $2 skills, $3 currency, $4 min budget, $5 max budget, $6 status,
// $7 $8 $9 the cursor (rank, posted_at, gig_id; sentinels above every key on the first page),
// $10 rows to fetch (the page plus one), $11 RANK_BOUND, $12 WALK_BOUND, $13 RANK_WALK,
// $14 SELECT_BOUND. Every row says whether it is a card of the page (`item`) and whether the next
// page continues after it (`resume`, only ever in `walk_then_select`).

/// A text query, by relevance: the newest `RANK_BOUND` matches are ranked and the page is cut
/// from them by the rank keyset. They are found as `walk_then_select` finds a page: a walk of
/// the newest [`RANK_WALK`] gigs; if fewer than `RANK_BOUND` of them match (the query matches
/// under `RANK_BOUND / RANK_WALK` = 4 % of the board), at most [`SELECT_BOUND`] + 1 of the GIN
/// index's matches. If there are at most `SELECT_BOUND`, the newest `RANK_BOUND` of them are kept
/// by a top-N sort. If there are more (a query common only in old gigs), only the walk's hits
/// are ranked: the matches among the newest `RANK_WALK` gigs. So a common word reads `RANK_WALK`
/// rows, a rare one its few matches, one common only in old gigs `RANK_WALK + SELECT_BOUND + 1`;
/// the most a query sorts is `SELECT_BOUND` rows.
const BY_RELEVANCE: &str = concat!(
    "with recent as materialized (
         select g.gig_id, g.posted_at,
                (g.search @@ query and (cardinality($2::text[]) = 0 or g.skills && $2) and ",
    board_filters!("g"),
    ") as hit
           from read.gig_board g, websearch_to_tsquery('english', $1) query
          order by g.posted_at desc, g.gig_id desc
          limit $13),
     hits as materialized (
         select r.gig_id from recent r
          where r.hit
          order by r.posted_at desc, r.gig_id desc
          limit $11),
     selective as materialized (
         select g.gig_id, g.posted_at
           from read.gig_board g, websearch_to_tsquery('english', $1) query
          where (select count(*) from hits) < $11 and (select count(*) from recent) = $13
            and g.search @@ query and (cardinality($2::text[]) = 0 or g.skills && $2)
            and ",
    board_filters!("g"),
    "),
     capped as materialized (
         select s.gig_id, s.posted_at from selective s limit $14 + 1),
     ranked as (
         select ",
    card_columns!(),
    ", (ts_rank(g.search, query) * 1000000)::bigint as rank, true as item, false as resume
           from read.gig_board g, websearch_to_tsquery('english', $1) query
          where g.gig_id in (select gig_id from hits
                             union all
                             (select c.gig_id from capped c
                               where (select count(*) from capped) <= $14
                               order by c.posted_at desc, c.gig_id desc
                               limit $11)))
     select * from ranked s
      where (s.rank, s.posted_at, s.gig_id) < ($7::bigint, $8::timestamptz, $9::uuid)
      order by s.rank desc, s.posted_at desc, s.gig_id desc
      limit $10"
);

/// A text query, newest first: a bounded walk of the newest-first index, then (a rare query)
/// the GIN index's matches, sorted (see `walk_then_select`). With the planner left to choose, a
/// generic plan walks the whole board for a rare word (it cannot know the word is rare).
const TEXT_NEWEST: &str = walk_then_select!(
    "read.gig_board g, websearch_to_tsquery('english', $1) query",
    "true",
    concat!(
        "(g.search @@ query and (cardinality($2::text[]) = 0 or g.skills && $2) and ",
        board_filters!("g"),
        ")"
    ),
    "read.gig_board g, websearch_to_tsquery('english', $1) query",
    concat!(
        "g.search @@ query and (cardinality($2::text[]) = 0 or g.skills && $2) and ",
        board_filters!("g")
    ),
    "read.gig_board g, websearch_to_tsquery('english', $1) query",
    "(ts_rank(g.search, query) * 1000000)::bigint"
);

/// Skills alone: per skill, one walk of `gig_skills_newest` after the cursor that stops at a
/// page; the union (at most a page per skill) is sorted. (The other filters are checked here
/// too, but `search_gigs` sends skills with other filters to `SKILLS_IN_*`.)
const BY_SKILLS: &str = concat!(
    "select ",
    card_columns!(),
    ", 0::bigint as rank, true as item, false as resume
       from read.gig_board g
      where g.gig_id in (
              select k.gig_id
                from unnest($2::text[]) as s(skill)
                cross join lateral (
                      select k.gig_id
                        from read.gig_skills k join read.gig_board m using (gig_id)
                       where k.skill = s.skill
                         and (k.posted_at, k.gig_id) < ($8::timestamptz, $9::uuid)
                         and ",
    board_filters!("m"),
    "
                       order by k.posted_at desc, k.gig_id desc
                       limit $10) k)
      order by g.posted_at desc, g.gig_id desc
      limit $10"
);

/// Skills and a currency (maybe a budget or status too), no text: a walk of the currency's
/// newest gigs, then the skills' GIN matches within the currency (see `walk_then_select`). A
/// walk of each skill's gigs (`BY_SKILLS`) would discard every one of a common skill's gigs in
/// other currencies.
const SKILLS_IN_CURRENCY: &str = walk_then_select!(
    "read.gig_board g",
    "g.currency = $3",
    concat!("(g.skills && $2 and ", board_filters!("g"), ")"),
    "read.gig_board g",
    concat!(
        "g.currency = $3 and g.skills && $2 and ",
        board_filters!("g")
    ),
    "read.gig_board g",
    "0::bigint"
);

/// Skills and a status, no currency, no text: as `SKILLS_IN_CURRENCY`, walking the status's
/// newest gigs.
const SKILLS_IN_STATUS: &str = walk_then_select!(
    "read.gig_board g",
    "g.status = $6",
    "g.skills && $2",
    "read.gig_board g",
    "g.status = $6 and g.skills && $2",
    "read.gig_board g",
    "0::bigint"
);

/// A currency (no text, no skills, no budget): `gig_board_currency_newest` after the cursor,
/// status a filter on that walk.
const BY_CURRENCY: &str = concat!(
    "select ",
    card_columns!(),
    ", 0::bigint as rank, true as item, false as resume
       from read.gig_board g
      where g.currency = $3
        and (g.posted_at, g.gig_id) < ($8::timestamptz, $9::uuid)
        and ",
    board_filters!("g"),
    "
      order by g.posted_at desc, g.gig_id desc
      limit $10"
);

/// A currency with a minimum budget (and maybe a maximum), no text, no skills: the currency's
/// newest-first index, then `(currency, budget_max, budget_min)`.
const BY_MIN_BUDGET: &str = walk_then_select!(
    "read.gig_board g",
    "g.currency = $3",
    board_filters!("g"),
    "read.gig_board g",
    concat!(
        "g.currency = $3 and g.budget_max >= $4::bigint and g.budget_min <= $5::bigint
         and ($6::text is null or g.status = $6)"
    ),
    // no text query here: no tsquery (an empty one would raise a NOTICE on every call)
    "read.gig_board g",
    "0::bigint"
);

/// A currency with only a maximum budget: the currency's newest-first index, then
/// `(currency, budget_min)`.
const BY_MAX_BUDGET: &str = walk_then_select!(
    "read.gig_board g",
    "g.currency = $3",
    board_filters!("g"),
    "read.gig_board g",
    "g.currency = $3 and g.budget_min <= $5::bigint and ($6::text is null or g.status = $6)",
    // no text query here: no tsquery (an empty one would raise a NOTICE on every call)
    "read.gig_board g",
    "0::bigint"
);

/// A status only: `gig_board_status_newest` after the cursor.
const BY_STATUS: &str = concat!(
    "select ",
    card_columns!(),
    ", 0::bigint as rank, true as item, false as resume
       from read.gig_board g
      where g.status = $6
        and (g.posted_at, g.gig_id) < ($8::timestamptz, $9::uuid)
      order by g.posted_at desc, g.gig_id desc
      limit $10"
);

/// No filter: `gig_board_newest` after the cursor.
const NEWEST: &str = concat!(
    "select ",
    card_columns!(),
    ", 0::bigint as rank, true as item, false as resume
       from read.gig_board g
      where (g.posted_at, g.gig_id) < ($8::timestamptz, $9::uuid)
      order by g.posted_at desc, g.gig_id desc
      limit $10"
);

/// The first page's cursor: above every key (no rank reaches `i64::MAX`, no gig is posted in the
/// year 9999), so one statement serves every page and its plan always has the keyset as its
/// index condition.
fn first_page() -> (i64, DateTime<Utc>, Uuid) {
    let end_of_time = NaiveDate::from_ymd_opt(9999, 12, 31)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    (i64::MAX, end_of_time, Uuid::max())
}

/// One page of the board. A budget filter needs a currency (minor units of different currencies
/// do not compare): [`ReadError::BudgetWithoutCurrency`] otherwise.
pub async fn search_gigs<'e>(
    db: impl PgExecutor<'e>,
    query: &GigQuery,
) -> Result<Page<GigCard>, ReadError> {
    let limit = page_limit(query.limit);
    let text = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    let by_relevance = text.is_some() && query.sort == GigSort::Relevance;
    let cursor = query
        .cursor
        .as_deref()
        .map(|c| BoardCursor::parse(c, by_relevance))
        .transpose()?;
    let currency = query.currency.as_deref().map(|c| c.trim().to_uppercase());
    if currency.is_none() && (query.min_budget.is_some() || query.max_budget.is_some()) {
        return Err(ReadError::BudgetWithoutCurrency);
    }
    let mut skills: Vec<String> = query
        .skills
        .iter()
        .map(|skill| skill.trim().to_lowercase())
        .collect();
    skills.sort();
    skills.dedup();
    if skills.len() > MAX_QUERY_SKILLS {
        return Err(ReadError::InvalidArgument(format!(
            "at most {MAX_QUERY_SKILLS} skills may be asked for"
        )));
    }
    let (rank, posted_at, gig_id) = match cursor {
        None => first_page(),
        Some(BoardCursor::Relevance {
            rank,
            posted_at,
            gig_id,
        }) => (rank, posted_at, gig_id),
        Some(BoardCursor::Newest { posted_at, gig_id }) => (i64::MAX, posted_at, gig_id),
    };
    let sql = match (text, by_relevance) {
        (Some(_), true) => BY_RELEVANCE,
        (Some(_), false) => TEXT_NEWEST,
        (None, _) if !skills.is_empty() && currency.is_some() => SKILLS_IN_CURRENCY,
        (None, _) if !skills.is_empty() && query.status.is_some() => SKILLS_IN_STATUS,
        (None, _) if !skills.is_empty() => BY_SKILLS,
        (None, _) if query.min_budget.is_some() => BY_MIN_BUDGET,
        (None, _) if query.max_budget.is_some() => BY_MAX_BUDGET,
        (None, _) if currency.is_some() => BY_CURRENCY,
        (None, _) if query.status.is_some() => BY_STATUS,
        (None, _) => NEWEST,
    };
    let rows: Vec<BoardRow> = sqlx::query_as(sql)
        .bind(text.unwrap_or_default())
        .bind(&skills)
        .bind(currency)
        .bind(query.min_budget.unwrap_or(i64::MIN))
        .bind(query.max_budget.unwrap_or(i64::MAX))
        .bind(query.status.map(gig_status_text))
        .bind(rank)
        .bind(posted_at)
        .bind(gig_id)
        .bind(limit + 1)
        .bind(RANK_BOUND)
        .bind(WALK_BOUND)
        .bind(RANK_WALK)
        .bind(SELECT_BOUND)
        .fetch_all(db)
        .await?;
    let mut cards = Vec::with_capacity(rows.len());
    let mut resume = None;
    for row in rows {
        if row.resume {
            // Only statements in newest-first order resume after a walk.
            resume = Some(BoardCursor::of(&row.card, false));
        }
        if row.item {
            cards.push(row.card);
        }
    }
    Ok(into_page_resuming(
        cards,
        limit,
        |card| BoardCursor::of(card, by_relevance),
        resume,
    ))
}

/// One gig with its proposals count, if it was ever posted.
pub async fn get_gig<'e>(
    db: impl PgExecutor<'e>,
    gig_id: GigId,
) -> Result<Option<GigCard>, ReadError> {
    Ok(sqlx::query_as(concat!(
        "select ",
        card_columns!(),
        ", 0::bigint as rank from read.gig_board g where g.gig_id = $1"
    ))
    .bind(gig_id.0)
    .fetch_optional(db)
    .await?)
}

/// The contract a gig's hire started, for one of its parties: the gig's client or the hired
/// freelancer (from the contracts read model, which knows the freelancer). `None` for anyone
/// else, and for a gig nobody was hired on (the card's status says which it is).
pub async fn hired_contract<'e>(
    db: impl PgExecutor<'e>,
    gig_id: GigId,
    reader: UserId,
) -> Result<Option<ContractId>, ReadError> {
    // Two primary-key lookups. The client is known to the board at once; the freelancer once
    // the contracts model has projected ContractStarted.
    let contract: Option<Uuid> = sqlx::query_scalar(
        "select g.hired_contract_id from read.gig_board g
          where g.gig_id = $1 and g.hired_contract_id is not null
            and (g.client_id = $2
                 or exists (select 1 from read.contracts c
                             where c.contract_id = g.hired_contract_id and c.freelancer_id = $2))",
    )
    .bind(gig_id.0)
    .bind(reader.0)
    .fetch_optional(db)
    .await?;
    Ok(contract.map(ContractId))
}

/// The cursor kind of a client's own gigs (`GET /v1/me/gigs`).
const CLIENT_CURSOR: &str = "gm";

/// `GET /v1/me/gigs?status=`: the gigs `client_id` posted, newest first (posted_at, then gig id,
/// both descending), in every status or only in `status`, each with its proposals count. Each
/// form is one static statement over its own index (`gig_board_by_client`,
/// `gig_board_by_client_status`); the first page starts after a sentinel key later than any
/// gig, so the cursor is always an index condition.
pub async fn gigs_of_client<'e>(
    db: impl PgExecutor<'e>,
    client_id: UserId,
    status: Option<GigStatus>,
    cursor: Option<&str>,
    limit: Option<u32>,
) -> Result<Page<GigCard>, ReadError> {
    let limit = page_limit(limit);
    let (before_at, before_id) = match cursor {
        None => (DateTime::<Utc>::MAX_UTC, Uuid::nil()),
        Some(c) => {
            let parts = decode_cursor(c, CLIENT_CURSOR, 2)?;
            (from_micros(parts[0])?, cursor_part(parts[1])?)
        }
    };
    let rows: Vec<GigCard> = match status {
        None => {
            sqlx::query_as(
                "select g.gig_id, g.client_id, g.title, g.description, g.skills, g.budget_kind,
                        g.currency, g.budget_min, g.budget_max, g.deadline, g.posted_at,
                        g.revised_at, g.proposals_count, g.status, g.version,
                        0::bigint as rank
                   from read.gig_board g
                  where g.client_id = $1 and (g.posted_at, g.gig_id) < ($2, $3)
                  order by g.posted_at desc, g.gig_id desc
                  limit $4",
            )
            .bind(client_id.0)
            .bind(before_at)
            .bind(before_id)
            .bind(limit + 1)
            .fetch_all(db)
            .await?
        }
        Some(status) => {
            sqlx::query_as(
                "select g.gig_id, g.client_id, g.title, g.description, g.skills, g.budget_kind,
                        g.currency, g.budget_min, g.budget_max, g.deadline, g.posted_at,
                        g.revised_at, g.proposals_count, g.status, g.version,
                        0::bigint as rank
                   from read.gig_board g
                  where g.client_id = $1 and g.status = $2
                    and (g.posted_at, g.gig_id) < ($3, $4)
                  order by g.posted_at desc, g.gig_id desc
                  limit $5",
            )
            .bind(client_id.0)
            .bind(gig_status_text(status))
            .bind(before_at)
            .bind(before_id)
            .bind(limit + 1)
            .fetch_all(db)
            .await?
        }
    };
    Ok(into_page(rows, limit, |card| {
        encode_cursor(CLIENT_CURSOR, &[&micros(card.posted_at), &card.gig_id.0])
    }))
}
