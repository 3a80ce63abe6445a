//! Proposals per gig (for its owner) and per freelancer, with their status.
//!
//! Listings are keyset-paged by the position of the `ProposalSubmitted` event: a gig's proposals
//! oldest first (the order they arrived), a freelancer's newest first.
//!
//! A proposal's status is its own fate ([`ProposalViewStatus`]), including what the gig's fate
//! did to it when nobody decided it: `not_selected` once another proposal was accepted,
//! `gig_cancelled` once the gig was cancelled, `gig_closed` while the gig is closed (still
//! acceptable). An explicit withdrawal, rejection or acceptance afterwards still sets it.

use chrono::{DateTime, Utc};
use gigledger_domain::{
    ContractId, GigEvent, GigId, MilestoneTerms, Money, ProposalId, ProposalStatus, UserId,
};
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{FromRow, PgConnection, PgExecutor, Row};
use uuid::Uuid;

use super::{
    cursor_part, decode, decode_cursor, encode_cursor, into_page, money, page_limit, AnyEvent,
    Page, ReadError,
};
use crate::log::RecordedEvent;
use crate::runtime::{Handler, HandlerError};

/// The handler's stored name.
pub const NAME: &str = "proposals";
/// The tables this read model fills.
pub const TABLES: &[&str] = &["proposal_gigs", "proposals"];

/// Projects gig events into `proposals` (and the gigs' owners and titles into `proposal_gigs`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Proposals;

#[async_trait::async_trait]
impl Handler for Proposals {
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
            }
        }
        Ok(())
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
            client_id, title, ..
        } => {
            sqlx::query(
                "insert into proposal_gigs (gig_id, client_id, title, last_position)
                 values ($1, $2, $3, $4) on conflict (gig_id) do nothing",
            )
            .bind(gig_id)
            .bind(client_id.0)
            .bind(title)
            .bind(position)
            .execute(&mut *tx)
            .await?;
        }
        GigEvent::GigRevised {
            title: Some(title), ..
        } => {
            sqlx::query(
                "update proposal_gigs set title = $3, last_position = $2
                  where gig_id = $1 and last_position < $2",
            )
            .bind(gig_id)
            .bind(position)
            .bind(title)
            .execute(&mut *tx)
            .await?;
        }
        GigEvent::ProposalSubmitted {
            proposal_id,
            freelancer_id,
            cover_letter,
            milestones,
            bid,
            submitted_at,
        } => {
            sqlx::query(
                "insert into proposals (proposal_id, gig_id, freelancer_id, cover_letter, milestones,
                                        bid_amount, currency, status, submitted_at,
                                        submitted_position, last_position)
                 values ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9, $9)
                 on conflict (proposal_id) do nothing",
            )
            .bind(proposal_id.0)
            .bind(gig_id)
            .bind(freelancer_id.0)
            .bind(cover_letter)
            .bind(Json(milestones))
            .bind(bid.amount)
            .bind(bid.currency.code())
            .bind(submitted_at)
            .bind(position)
            .execute(&mut *tx)
            .await?;
        }
        GigEvent::ProposalWithdrawn {
            proposal_id,
            withdrawn_at: at,
            ..
        }
        | GigEvent::ProposalRejected {
            proposal_id,
            rejected_at: at,
            ..
        } => {
            let status = if matches!(event, GigEvent::ProposalWithdrawn { .. }) {
                "withdrawn"
            } else {
                "rejected"
            };
            sqlx::query(
                "update proposals set status = $3, decided_at = $4, last_position = $2
                  where proposal_id = $1 and last_position < $2",
            )
            .bind(proposal_id.0)
            .bind(position)
            .bind(status)
            .bind(at)
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
                "update proposals
                    set status = 'accepted', decided_at = $3, contract_id = $4, last_position = $2
                  where proposal_id = $1 and last_position < $2",
            )
            .bind(proposal_id.0)
            .bind(position)
            .bind(accepted_at)
            .bind(contract_id.0)
            .execute(&mut *tx)
            .await?;
            // One hire per gig: every other proposal still awaiting a decision lost.
            sqlx::query(
                "update proposals
                    set status = 'not_selected', decided_at = $3, last_position = $2
                  where gig_id = $1 and proposal_id <> $4 and status in ('pending', 'gig_closed')
                    and last_position < $2",
            )
            .bind(gig_id)
            .bind(position)
            .bind(accepted_at)
            .bind(proposal_id.0)
            .execute(&mut *tx)
            .await?;
        }
        GigEvent::GigClosed { .. } => {
            // Not a decision: the owner may still accept a proposal of a closed gig.
            sqlx::query(
                "update proposals set status = 'gig_closed', last_position = $2
                  where gig_id = $1 and status = 'pending' and last_position < $2",
            )
            .bind(gig_id)
            .bind(position)
            .execute(&mut *tx)
            .await?;
        }
        GigEvent::GigCancelled { cancelled_at } => {
            sqlx::query(
                "update proposals
                    set status = 'gig_cancelled', decided_at = $3, last_position = $2
                  where gig_id = $1 and status in ('pending', 'gig_closed') and last_position < $2",
            )
            .bind(gig_id)
            .bind(position)
            .bind(cancelled_at)
            .execute(&mut *tx)
            .await?;
        }
        GigEvent::GigRevised { title: None, .. } => {}
    }
    Ok(())
}

/// One proposal with its gig's title and owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ProposalView {
    pub proposal_id: ProposalId,
    pub gig_id: GigId,
    pub gig_title: String,
    pub client_id: UserId,
    pub freelancer_id: UserId,
    pub cover_letter: String,
    pub milestones: Vec<MilestoneTerms>,
    pub bid: Money,
    pub status: ProposalViewStatus,
    pub submitted_at: DateTime<Utc>,
    /// When it was withdrawn, rejected, accepted, not selected or its gig cancelled.
    pub decided_at: Option<DateTime<Utc>>,
    /// The contract, once accepted.
    pub contract_id: Option<ContractId>,
    #[serde(skip)]
    submitted_position: i64,
}

/// What became of a proposal, as its freelancer and the gig's owner read it: the aggregate's
/// [`ProposalStatus`] plus what the gig's fate did to a proposal nobody decided (the aggregate
/// keeps those pending, since nothing can be done with them any more).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProposalViewStatus {
    /// Awaiting the owner's decision; the gig is open.
    Pending,
    /// Withdrawn by its freelancer.
    Withdrawn,
    /// Rejected by the owner.
    Rejected,
    /// Accepted: the freelancer was hired.
    Accepted,
    /// Another proposal of the gig was accepted (final).
    NotSelected,
    /// The gig was cancelled before anyone was hired (final).
    GigCancelled,
    /// The gig was closed to new proposals; still awaiting the owner's decision, who may yet
    /// accept it (not final).
    GigClosed,
}

impl ProposalViewStatus {
    const fn text(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Withdrawn => "withdrawn",
            Self::Rejected => "rejected",
            Self::Accepted => "accepted",
            Self::NotSelected => "not_selected",
            Self::GigCancelled => "gig_cancelled",
            Self::GigClosed => "gig_closed",
        }
    }
}

impl From<ProposalStatus> for ProposalViewStatus {
    fn from(status: ProposalStatus) -> Self {
        match status {
            ProposalStatus::Pending => Self::Pending,
            ProposalStatus::Withdrawn => Self::Withdrawn,
            ProposalStatus::Rejected => Self::Rejected,
            ProposalStatus::Accepted => Self::Accepted,
        }
    }
}

impl PartialEq<ProposalStatus> for ProposalViewStatus {
    fn eq(&self, other: &ProposalStatus) -> bool {
        *self == Self::from(*other)
    }
}

fn proposal_status(text: &str) -> Result<ProposalViewStatus, sqlx::Error> {
    [
        ProposalViewStatus::Pending,
        ProposalViewStatus::Withdrawn,
        ProposalViewStatus::Rejected,
        ProposalViewStatus::Accepted,
        ProposalViewStatus::NotSelected,
        ProposalViewStatus::GigCancelled,
        ProposalViewStatus::GigClosed,
    ]
    .into_iter()
    .find(|status| status.text() == text)
    .ok_or_else(|| sqlx::Error::Decode(format!("unknown proposal status {text:?}").into()))
}

impl FromRow<'_, PgRow> for ProposalView {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        let status: String = row.try_get("status")?;
        let Json(milestones) = row.try_get("milestones")?;
        Ok(Self {
            proposal_id: ProposalId(row.try_get("proposal_id")?),
            gig_id: GigId(row.try_get("gig_id")?),
            gig_title: row.try_get("gig_title")?,
            client_id: UserId(row.try_get("client_id")?),
            freelancer_id: UserId(row.try_get("freelancer_id")?),
            cover_letter: row.try_get("cover_letter")?,
            milestones,
            bid: money(row, "bid_amount", "currency")?,
            status: proposal_status(&status)?,
            submitted_at: row.try_get("submitted_at")?,
            decided_at: row.try_get("decided_at")?,
            contract_id: row
                .try_get::<Option<Uuid>, _>("contract_id")?
                .map(ContractId),
            submitted_position: row.try_get("submitted_position")?,
        })
    }
}

const CURSOR: &str = "p";

fn after_position(cursor: Option<&str>) -> Result<Option<i64>, ReadError> {
    cursor
        .map(|c| decode_cursor(c, CURSOR, 1).and_then(|parts| cursor_part(parts[0])))
        .transpose()
}

fn cursor_of(view: &ProposalView) -> String {
    encode_cursor(CURSOR, &[&view.submitted_position])
}

/// The proposals of a gig, in the order they arrived (for the gig's owner).
pub async fn proposals_of_gig<'e>(
    db: impl PgExecutor<'e>,
    gig_id: GigId,
    cursor: Option<&str>,
    limit: Option<u32>,
) -> Result<Page<ProposalView>, ReadError> {
    let limit = page_limit(limit);
    // Sentinel before every position on the first page: the keyset stays the index condition
    // in a generic plan (`$2 is null or …` would not).
    let after = after_position(cursor)?.unwrap_or(-1);
    let rows = sqlx::query_as(
        "select p.*, g.title as gig_title, g.client_id
           from read.proposals p join read.proposal_gigs g using (gig_id)
          where p.gig_id = $1 and p.submitted_position > $2
          order by p.submitted_position
          limit $3",
    )
    .bind(gig_id.0)
    .bind(after)
    .bind(limit + 1)
    .fetch_all(db)
    .await?;
    Ok(into_page(rows, limit, cursor_of))
}

/// A freelancer's proposals, newest first.
pub async fn proposals_of_freelancer<'e>(
    db: impl PgExecutor<'e>,
    freelancer_id: UserId,
    cursor: Option<&str>,
    limit: Option<u32>,
) -> Result<Page<ProposalView>, ReadError> {
    let limit = page_limit(limit);
    // Sentinel after every position on the first page (see `proposals_of_gig`).
    let before = after_position(cursor)?.unwrap_or(i64::MAX);
    let rows = sqlx::query_as(
        "select p.*, g.title as gig_title, g.client_id
           from read.proposals p join read.proposal_gigs g using (gig_id)
          where p.freelancer_id = $1 and p.submitted_position < $2
          order by p.submitted_position desc
          limit $3",
    )
    .bind(freelancer_id.0)
    .bind(before)
    .bind(limit + 1)
    .fetch_all(db)
    .await?;
    Ok(into_page(rows, limit, cursor_of))
}

/// One proposal.
pub async fn get_proposal<'e>(
    db: impl PgExecutor<'e>,
    proposal_id: ProposalId,
) -> Result<Option<ProposalView>, ReadError> {
    Ok(sqlx::query_as(
        "select p.*, g.title as gig_title, g.client_id
           from read.proposals p join read.proposal_gigs g using (gig_id)
          where p.proposal_id = $1",
    )
    .bind(proposal_id.0)
    .fetch_optional(db)
    .await?)
}
