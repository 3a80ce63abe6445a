//! The gig board: every gig with its status, full-text search and filters, keyset-paged.
//!
//! Search uses the generated `search` tsvector (title weight A, description B, skills C; English
//! stemming) with `websearch_to_tsquery`, so users type what they would type into a search box.
//! Relevance is `ts_rank` scaled to an integer (millionths), which makes it an exact keyset
//! component: the order is (rank desc, posted_at desc, gig_id desc) with `q`, (posted_at desc,
//! gig_id desc) without, and a cursor names the last row's key, so paging never repeats or skips
//! a gig even when ranks and times are equal.

use chrono::{DateTime, NaiveDate, Utc};
use gigledger_domain::{Budget, ContractId, GigEvent, GigId, GigStatus, Money, UserId};
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection, PgExecutor, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use super::{
    cursor_part, decode, decode_cursor, encode_cursor, into_page, money, page_limit, AnyEvent,
    Page, ReadError,
};
use crate::log::RecordedEvent;
use crate::runtime::{Handler, HandlerError};

/// The handler's stored name.
pub const NAME: &str = "gig_board";
/// The tables this read model fills.
pub const TABLES: &[&str] = &["gig_board"];

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
            sqlx::query(
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
            sqlx::query(
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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

const CARD_COLUMNS: &str = "g.gig_id, g.client_id, g.title, g.description, g.skills, \
     g.budget_kind, g.currency, g.budget_min, g.budget_max, g.deadline, g.posted_at, \
     g.revised_at, g.proposals_count, g.status, g.version";

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

/// How the board is ordered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, Serialize)]
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

fn from_micros(part: &str) -> Result<DateTime<Utc>, ReadError> {
    DateTime::from_timestamp_micros(cursor_part(part)?).ok_or(ReadError::InvalidCursor)
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

/// One page of the board.
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

    let mut sql = QueryBuilder::<Postgres>::new("select * from (select ");
    sql.push(CARD_COLUMNS);
    match text {
        Some(text) => {
            sql.push(", (ts_rank(g.search, query) * 1000000)::bigint as rank from read.gig_board g, websearch_to_tsquery('english', ");
            sql.push_bind(text.to_owned());
            sql.push(") query where g.search @@ query");
        }
        None => {
            sql.push(", 0::bigint as rank from read.gig_board g where true");
        }
    }
    if !query.skills.is_empty() {
        let skills: Vec<String> = query
            .skills
            .iter()
            .map(|skill| skill.trim().to_lowercase())
            .collect();
        sql.push(" and g.skills && ");
        sql.push_bind(skills);
    }
    if let Some(currency) = &query.currency {
        sql.push(" and g.currency = ");
        sql.push_bind(currency.trim().to_uppercase());
    }
    if let Some(min) = query.min_budget {
        sql.push(" and g.budget_max >= ");
        sql.push_bind(min);
    }
    if let Some(max) = query.max_budget {
        sql.push(" and g.budget_min <= ");
        sql.push_bind(max);
    }
    if let Some(status) = query.status {
        sql.push(" and g.status = ");
        sql.push_bind(gig_status_text(status));
    }
    sql.push(") s");
    match cursor {
        Some(BoardCursor::Relevance {
            rank,
            posted_at,
            gig_id,
        }) => {
            sql.push(" where (s.rank, s.posted_at, s.gig_id) < (");
            sql.push_bind(rank);
            sql.push(", ");
            sql.push_bind(posted_at);
            sql.push(", ");
            sql.push_bind(gig_id);
            sql.push(")");
        }
        Some(BoardCursor::Newest { posted_at, gig_id }) => {
            sql.push(" where (s.posted_at, s.gig_id) < (");
            sql.push_bind(posted_at);
            sql.push(", ");
            sql.push_bind(gig_id);
            sql.push(")");
        }
        None => {}
    }
    if by_relevance {
        sql.push(" order by s.rank desc, s.posted_at desc, s.gig_id desc");
    } else {
        sql.push(" order by s.posted_at desc, s.gig_id desc");
    }
    sql.push(" limit ");
    sql.push_bind(limit + 1);
    let rows: Vec<GigCard> = sql.build_query_as().fetch_all(db).await?;
    Ok(into_page(rows, limit, |card| {
        BoardCursor::of(card, by_relevance)
    }))
}

/// One gig with its proposals count, if it was ever posted.
pub async fn get_gig<'e>(
    db: impl PgExecutor<'e>,
    gig_id: GigId,
) -> Result<Option<GigCard>, ReadError> {
    let sql = format!(
        "select {CARD_COLUMNS}, 0::bigint as rank from read.gig_board g where g.gig_id = $1"
    );
    Ok(sqlx::query_as(&sql)
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
