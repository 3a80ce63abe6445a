//! Contracts per party: the contract, its milestones with their escrow balances, disputes, and
//! reviews once revealed.
//!
//! Milestone states come from the contract stream and balances from the escrow stream, in
//! separate tables joined on read: the two streams may be projected in either order, and each row
//! has exactly one writing stream (so its `last_position` guard is sound).

use chrono::{DateTime, NaiveDate, Utc};
use gigledger_domain::{
    ContractEvent, ContractId, ContractStatus, Currency, DisputeId, EscrowEvent, GigId,
    MilestoneId, MilestoneStatus, Money, Party, ProposalId, UserId,
};
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection, PgExecutor, PgPool, Row};
use uuid::Uuid;

use super::{
    currency_of, cursor_part, decode, decode_cursor, encode_cursor, into_page, money, page_limit,
    AnyEvent, Page, ReadError,
};
use crate::log::RecordedEvent;
use crate::runtime::{Handler, HandlerError};

/// The handler's stored name.
pub const NAME: &str = "contracts";
/// The tables this read model fills.
pub const TABLES: &[&str] = &[
    "contracts",
    "contract_milestones",
    "contract_escrow_balances",
    "contract_disputes",
    "contract_reviews",
    "contract_escrows",
];

/// Projects contract and escrow events into the contract tables.
#[derive(Clone, Copy, Debug, Default)]
pub struct Contracts;

#[async_trait::async_trait]
impl Handler for Contracts {
    fn name(&self) -> &str {
        NAME
    }

    async fn handle(
        &self,
        tx: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), HandlerError> {
        for event in events {
            match decode(event)? {
                Some((id, AnyEvent::Contract(contract_event))) => {
                    apply_contract(tx, id, event.position, &contract_event).await?;
                    record_contract_version(tx, id, event.sequence).await?;
                }
                Some((id, AnyEvent::Escrow(escrow_event))) => {
                    apply_escrow(tx, id, event.position, &escrow_event).await?;
                    record_escrow_version(tx, id, event.sequence).await?;
                }
                Some((_, AnyEvent::Gig(_) | AnyEvent::Wallet(_))) | None => {}
            }
        }
        Ok(())
    }
}

/// Keeps the contract's version (its stream sequence) in its row after every contract event,
/// including those that change only a milestone, a dispute or a review, so the row says which
/// version of the contract the view reflects. Sequences increase along the stream, so the guard
/// makes a replayed event change nothing.
async fn record_contract_version(
    tx: &mut PgConnection,
    contract_id: Uuid,
    sequence: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("update contracts set version = $2 where contract_id = $1 and version < $2")
        .bind(contract_id)
        .bind(sequence)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Keeps the version of the contract's escrow (its own stream, same id) that the balances
/// reflect; a row of its own since the escrow may be projected before the contract starts.
async fn record_escrow_version(
    tx: &mut PgConnection,
    contract_id: Uuid,
    sequence: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into contract_escrows (contract_id, version) values ($1, $2)
         on conflict (contract_id) do update set version = excluded.version
          where contract_escrows.version < excluded.version",
    )
    .bind(contract_id)
    .bind(sequence)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

const fn milestone_status_text(status: MilestoneStatus) -> &'static str {
    match status {
        MilestoneStatus::AwaitingFunds => "awaiting_funds",
        MilestoneStatus::Funded => "funded",
        MilestoneStatus::Submitted => "submitted",
        MilestoneStatus::ChangesRequested => "changes_requested",
        MilestoneStatus::Approved => "approved",
        MilestoneStatus::Disputed => "disputed",
        MilestoneStatus::Resolved => "resolved",
        MilestoneStatus::Cancelled => "cancelled",
    }
}

/// A milestone's new state; `None` fields other than `review_due_at` keep their value (the
/// review window, like the aggregate's, is set only while the milestone is submitted).
struct MilestoneChange {
    status: MilestoneStatus,
    review_due_at: Option<DateTime<Utc>>,
    funded_at: Option<DateTime<Utc>>,
    submitted_at: Option<DateTime<Utc>>,
    approved_at: Option<DateTime<Utc>>,
    auto_approved: Option<bool>,
    revision_count: Option<i64>,
}

impl MilestoneChange {
    const fn to(status: MilestoneStatus) -> Self {
        Self {
            status,
            review_due_at: None,
            funded_at: None,
            submitted_at: None,
            approved_at: None,
            auto_approved: None,
            revision_count: None,
        }
    }
}

async fn change_milestone(
    tx: &mut PgConnection,
    contract_id: Uuid,
    milestone_id: MilestoneId,
    position: i64,
    change: MilestoneChange,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update contract_milestones
            set status = $4, review_due_at = $5,
                funded_at = coalesce($6, funded_at),
                submitted_at = coalesce($7, submitted_at),
                approved_at = coalesce($8, approved_at),
                auto_approved = coalesce($9, auto_approved),
                revision_count = coalesce($10, revision_count),
                last_position = $3
          where contract_id = $1 and milestone_id = $2 and last_position < $3",
    )
    .bind(contract_id)
    .bind(milestone_id.0)
    .bind(position)
    .bind(milestone_status_text(change.status))
    .bind(change.review_due_at)
    .bind(change.funded_at)
    .bind(change.submitted_at)
    .bind(change.approved_at)
    .bind(change.auto_approved)
    .bind(change.revision_count)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn apply_contract(
    tx: &mut PgConnection,
    contract_id: Uuid,
    position: i64,
    event: &ContractEvent,
) -> Result<(), sqlx::Error> {
    match event {
        ContractEvent::ContractStarted {
            gig_id,
            proposal_id,
            client_id,
            freelancer_id,
            milestones,
            terms,
            started_at,
            ..
        } => {
            sqlx::query(
                "insert into contracts (contract_id, gig_id, proposal_id, client_id, freelancer_id,
                                        currency, fee_bps, review_window_days, max_revisions,
                                        status, started_at, started_position, last_position)
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'active', $10, $11, $11)
                 on conflict (contract_id) do nothing",
            )
            .bind(contract_id)
            .bind(gig_id.0)
            .bind(proposal_id.0)
            .bind(client_id.0)
            .bind(freelancer_id.0)
            .bind(terms.currency.code())
            .bind(i64::from(terms.fee_bps))
            .bind(i64::from(terms.review_window_days))
            .bind(i64::from(terms.max_revisions))
            .bind(started_at)
            .bind(position)
            .execute(&mut *tx)
            .await?;
            for (ordinal, milestone) in (0_i64..).zip(milestones) {
                sqlx::query(
                    "insert into contract_milestones (contract_id, milestone_id, ordinal, title,
                                                      amount, currency, due_date, status,
                                                      last_position)
                     values ($1, $2, $3, $4, $5, $6, $7, 'awaiting_funds', $8)
                     on conflict (contract_id, milestone_id) do nothing",
                )
                .bind(contract_id)
                .bind(milestone.milestone_id.0)
                .bind(ordinal)
                .bind(&milestone.title)
                .bind(milestone.amount.amount)
                .bind(milestone.amount.currency.code())
                .bind(milestone.due_date)
                .bind(position)
                .execute(&mut *tx)
                .await?;
            }
        }
        ContractEvent::MilestoneFunded {
            milestone_id,
            funded_at,
        } => {
            let change = MilestoneChange {
                funded_at: Some(*funded_at),
                ..MilestoneChange::to(MilestoneStatus::Funded)
            };
            change_milestone(tx, contract_id, *milestone_id, position, change).await?;
        }
        ContractEvent::MilestoneSubmitted {
            milestone_id,
            submitted_at,
            review_due_at,
            ..
        } => {
            let change = MilestoneChange {
                submitted_at: Some(*submitted_at),
                review_due_at: Some(*review_due_at),
                ..MilestoneChange::to(MilestoneStatus::Submitted)
            };
            change_milestone(tx, contract_id, *milestone_id, position, change).await?;
        }
        ContractEvent::MilestoneChangesRequested {
            milestone_id,
            revision,
            ..
        } => {
            let change = MilestoneChange {
                revision_count: Some(i64::from(*revision)),
                ..MilestoneChange::to(MilestoneStatus::ChangesRequested)
            };
            change_milestone(tx, contract_id, *milestone_id, position, change).await?;
        }
        ContractEvent::MilestoneApproved {
            milestone_id,
            auto,
            approved_at,
            ..
        } => {
            let change = MilestoneChange {
                approved_at: Some(*approved_at),
                auto_approved: Some(*auto),
                ..MilestoneChange::to(MilestoneStatus::Approved)
            };
            change_milestone(tx, contract_id, *milestone_id, position, change).await?;
        }
        ContractEvent::ContractCompleted { completed_at } => {
            sqlx::query(
                "update contracts set status = 'completed', completed_at = $3, last_position = $2
                  where contract_id = $1 and last_position < $2",
            )
            .bind(contract_id)
            .bind(position)
            .bind(completed_at)
            .execute(&mut *tx)
            .await?;
        }
        ContractEvent::ContractCancelled {
            reason,
            cancelled_by,
            cancelled_milestones,
            cancelled_at,
        } => {
            sqlx::query(
                "update contracts
                    set status = 'cancelled', cancelled_at = $3, cancelled_by = $4,
                        cancel_reason = $5, last_position = $2
                  where contract_id = $1 and last_position < $2",
            )
            .bind(contract_id)
            .bind(position)
            .bind(cancelled_at)
            .bind(cancelled_by.0)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
            for milestone_id in cancelled_milestones {
                let change = MilestoneChange::to(MilestoneStatus::Cancelled);
                change_milestone(tx, contract_id, *milestone_id, position, change).await?;
            }
        }
        ContractEvent::DisputeOpened {
            dispute_id,
            milestone_id,
            opened_by,
            reason,
            opened_at,
        } => {
            sqlx::query(
                "insert into contract_disputes (dispute_id, contract_id, milestone_id, opened_by,
                                                reason, status, opened_at, opened_position,
                                                last_position)
                 values ($1, $2, $3, $4, $5, 'open', $6, $7, $7)
                 on conflict (dispute_id) do nothing",
            )
            .bind(dispute_id.0)
            .bind(contract_id)
            .bind(milestone_id.0)
            .bind(opened_by.0)
            .bind(reason)
            .bind(opened_at)
            .bind(position)
            .execute(&mut *tx)
            .await?;
            let change = MilestoneChange::to(MilestoneStatus::Disputed);
            change_milestone(tx, contract_id, *milestone_id, position, change).await?;
        }
        ContractEvent::DisputeResolved {
            dispute_id,
            milestone_id,
            release,
            refund,
            resolved_by,
            resolved_at,
        } => {
            sqlx::query(
                "update contract_disputes
                    set status = 'resolved', resolved_at = $3, resolved_by = $4,
                        release_amount = $5, refund_amount = $6, currency = $7,
                        last_position = $2
                  where dispute_id = $1 and last_position < $2",
            )
            .bind(dispute_id.0)
            .bind(position)
            .bind(resolved_at)
            .bind(resolved_by.0)
            .bind(release.amount)
            .bind(refund.amount)
            .bind(release.currency.code())
            .execute(&mut *tx)
            .await?;
            let change = MilestoneChange::to(MilestoneStatus::Resolved);
            change_milestone(tx, contract_id, *milestone_id, position, change).await?;
        }
        ContractEvent::ReviewLeft {
            reviewer_id,
            reviewee_id,
            reviewer,
            rating,
            text,
            reviewed_at,
        } => {
            sqlx::query(
                "insert into contract_reviews (contract_id, reviewer_id, reviewee_id, reviewer,
                                               rating, text, reviewed_at)
                 values ($1, $2, $3, $4, $5, $6, $7)
                 on conflict (contract_id, reviewer_id) do nothing",
            )
            .bind(contract_id)
            .bind(reviewer_id.0)
            .bind(reviewee_id.0)
            .bind(party_text(*reviewer))
            .bind(i16::from(*rating))
            .bind(text)
            .bind(reviewed_at)
            .execute(&mut *tx)
            .await?;
        }
        ContractEvent::ReviewsRevealed { revealed_at } => {
            sqlx::query(
                "update contract_reviews set revealed_at = $2
                  where contract_id = $1 and revealed_at is null",
            )
            .bind(contract_id)
            .bind(revealed_at)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "update contracts set reviews_revealed_at = $3, last_position = $2
                  where contract_id = $1 and last_position < $2",
            )
            .bind(contract_id)
            .bind(position)
            .bind(revealed_at)
            .execute(&mut *tx)
            .await?;
        }
    }
    Ok(())
}

async fn apply_escrow(
    tx: &mut PgConnection,
    contract_id: Uuid,
    position: i64,
    event: &EscrowEvent,
) -> Result<(), sqlx::Error> {
    // Each movement: (milestone, deposited (set), released gross, fee, net, refunded (added),
    // frozen); a movement of frozen funds is their settlement, as in the aggregate.
    let update = "update contract_escrow_balances
                     set deposited = coalesce($3, deposited),
                         released_gross = released_gross + $4,
                         fee = fee + $5,
                         net = net + $6,
                         refunded = refunded + $7,
                         settled = settled or (frozen and ($4 > 0 or $7 > 0)),
                         frozen = case when $8 then true
                                       when $4 > 0 or $7 > 0 then false
                                       else frozen end,
                         last_position = $2
                   where contract_id = $1 and milestone_id = $9 and last_position < $2";
    match event {
        EscrowEvent::EscrowOpened {
            currency,
            milestones,
            ..
        } => {
            for milestone in milestones {
                sqlx::query(
                    "insert into contract_escrow_balances (contract_id, milestone_id, currency,
                                                           scheduled, last_position)
                     values ($1, $2, $3, $4, $5)
                     on conflict (contract_id, milestone_id) do nothing",
                )
                .bind(contract_id)
                .bind(milestone.milestone_id.0)
                .bind(currency.code())
                .bind(milestone.amount.amount)
                .bind(position)
                .execute(&mut *tx)
                .await?;
            }
        }
        EscrowEvent::FundsDeposited {
            milestone_id,
            amount,
            ..
        } => {
            sqlx::query(update)
                .bind(contract_id)
                .bind(position)
                .bind(Some(amount.amount))
                .bind(0_i64)
                .bind(0_i64)
                .bind(0_i64)
                .bind(0_i64)
                .bind(false)
                .bind(milestone_id.0)
                .execute(&mut *tx)
                .await?;
        }
        EscrowEvent::FundsReleased {
            milestone_id,
            gross,
            fee,
            net,
            ..
        } => {
            sqlx::query(update)
                .bind(contract_id)
                .bind(position)
                .bind(None::<i64>)
                .bind(gross.amount)
                .bind(fee.amount)
                .bind(net.amount)
                .bind(0_i64)
                .bind(false)
                .bind(milestone_id.0)
                .execute(&mut *tx)
                .await?;
        }
        EscrowEvent::FundsFrozen { milestone_id, .. } => {
            sqlx::query(update)
                .bind(contract_id)
                .bind(position)
                .bind(None::<i64>)
                .bind(0_i64)
                .bind(0_i64)
                .bind(0_i64)
                .bind(0_i64)
                .bind(true)
                .bind(milestone_id.0)
                .execute(&mut *tx)
                .await?;
        }
        EscrowEvent::FundsRefunded {
            milestone_id,
            amount,
            ..
        } => {
            sqlx::query(update)
                .bind(contract_id)
                .bind(position)
                .bind(None::<i64>)
                .bind(0_i64)
                .bind(0_i64)
                .bind(0_i64)
                .bind(amount.amount)
                .bind(false)
                .bind(milestone_id.0)
                .execute(&mut *tx)
                .await?;
        }
        // The card refund changes no escrow balance (the refund was booked by FundsRefunded).
        EscrowEvent::EscrowClosed { .. }
        | EscrowEvent::ChargeVoided { .. }
        | EscrowEvent::RefundIssued { .. }
        | EscrowEvent::RefundFailed { .. } => {}
    }
    Ok(())
}

const fn party_text(party: Party) -> &'static str {
    match party {
        Party::Client => "client",
        Party::Freelancer => "freelancer",
    }
}

fn decode_err(what: &str, text: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("unknown {what} {text:?}").into())
}

fn contract_status(text: &str) -> Result<ContractStatus, sqlx::Error> {
    match text {
        "active" => Ok(ContractStatus::Active),
        "completed" => Ok(ContractStatus::Completed),
        "cancelled" => Ok(ContractStatus::Cancelled),
        other => Err(decode_err("contract status", other)),
    }
}

fn milestone_status(text: &str) -> Result<MilestoneStatus, sqlx::Error> {
    [
        MilestoneStatus::AwaitingFunds,
        MilestoneStatus::Funded,
        MilestoneStatus::Submitted,
        MilestoneStatus::ChangesRequested,
        MilestoneStatus::Approved,
        MilestoneStatus::Disputed,
        MilestoneStatus::Resolved,
        MilestoneStatus::Cancelled,
    ]
    .into_iter()
    .find(|status| milestone_status_text(*status) == text)
    .ok_or_else(|| decode_err("milestone status", text))
}

/// A contract with everything a party sees of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ContractView {
    pub contract_id: ContractId,
    pub gig_id: GigId,
    pub proposal_id: ProposalId,
    pub client_id: UserId,
    pub freelancer_id: UserId,
    pub currency: Currency,
    pub fee_bps: i64,
    pub review_window_days: i64,
    pub max_revisions: i64,
    pub status: ContractStatus,
    pub started_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancelled_by: Option<UserId>,
    pub cancel_reason: Option<String>,
    pub reviews_revealed_at: Option<DateTime<Utc>>,
    pub milestones: Vec<MilestoneView>,
    pub disputes: Vec<DisputeView>,
    /// Only once revealed (double-blind until then).
    pub reviews: Vec<ReviewView>,
    /// The contract's version (stream sequence) this view reflects: its `ETag`.
    pub version: i64,
    /// The version of its escrow (stream of the same id) the balances reflect; `None` until the
    /// escrow's opening has been projected.
    pub escrow_version: Option<i64>,
    #[serde(skip)]
    started_position: i64,
}

impl FromRow<'_, PgRow> for ContractView {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        let status: String = row.try_get("status")?;
        Ok(Self {
            contract_id: ContractId(row.try_get("contract_id")?),
            gig_id: GigId(row.try_get("gig_id")?),
            proposal_id: ProposalId(row.try_get("proposal_id")?),
            client_id: UserId(row.try_get("client_id")?),
            freelancer_id: UserId(row.try_get("freelancer_id")?),
            currency: currency_of(row, "currency")?,
            fee_bps: row.try_get("fee_bps")?,
            review_window_days: row.try_get("review_window_days")?,
            max_revisions: row.try_get("max_revisions")?,
            status: contract_status(&status)?,
            started_at: row.try_get("started_at")?,
            completed_at: row.try_get("completed_at")?,
            cancelled_at: row.try_get("cancelled_at")?,
            cancelled_by: row.try_get::<Option<Uuid>, _>("cancelled_by")?.map(UserId),
            cancel_reason: row.try_get("cancel_reason")?,
            reviews_revealed_at: row.try_get("reviews_revealed_at")?,
            milestones: Vec::new(),
            disputes: Vec::new(),
            reviews: Vec::new(),
            version: row.try_get("version")?,
            escrow_version: None,
            started_position: row.try_get("started_position")?,
        })
    }
}

/// A milestone's state and its escrow balance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MilestoneView {
    pub milestone_id: MilestoneId,
    pub title: String,
    pub amount: Money,
    pub due_date: Option<NaiveDate>,
    pub status: MilestoneStatus,
    pub revision_count: i64,
    pub review_due_at: Option<DateTime<Utc>>,
    pub funded_at: Option<DateTime<Utc>>,
    pub submitted_at: Option<DateTime<Utc>>,
    pub approved_at: Option<DateTime<Utc>>,
    pub auto_approved: bool,
    /// `None` until the escrow's opening has been projected.
    pub escrow: Option<EscrowBalanceView>,
    #[serde(skip)]
    contract_id: Uuid,
}

/// What the escrow holds and has moved for one milestone, in the contract's currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EscrowBalanceView {
    pub deposited: i64,
    pub released_gross: i64,
    pub fee: i64,
    pub net: i64,
    pub refunded: i64,
    /// `deposited − released_gross − refunded`.
    pub held: i64,
    pub frozen: bool,
    pub settled: bool,
}

impl FromRow<'_, PgRow> for MilestoneView {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        let status: String = row.try_get("status")?;
        let escrow = match row.try_get::<Option<i64>, _>("deposited")? {
            None => None,
            Some(deposited) => Some(EscrowBalanceView {
                deposited,
                released_gross: row.try_get("released_gross")?,
                fee: row.try_get("fee")?,
                net: row.try_get("net")?,
                refunded: row.try_get("refunded")?,
                held: row.try_get("held")?,
                frozen: row.try_get("frozen")?,
                settled: row.try_get("settled")?,
            }),
        };
        Ok(Self {
            milestone_id: MilestoneId(row.try_get("milestone_id")?),
            title: row.try_get("title")?,
            amount: money(row, "amount", "currency")?,
            due_date: row.try_get("due_date")?,
            status: milestone_status(&status)?,
            revision_count: row.try_get("revision_count")?,
            review_due_at: row.try_get("review_due_at")?,
            funded_at: row.try_get("funded_at")?,
            submitted_at: row.try_get("submitted_at")?,
            approved_at: row.try_get("approved_at")?,
            auto_approved: row.try_get("auto_approved")?,
            escrow,
            contract_id: row.try_get("contract_id")?,
        })
    }
}

/// A dispute over one milestone; `release`/`refund` once resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DisputeView {
    pub dispute_id: DisputeId,
    pub milestone_id: MilestoneId,
    pub opened_by: UserId,
    pub reason: String,
    /// `open` or `resolved`.
    pub status: String,
    pub opened_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolved_by: Option<UserId>,
    pub release: Option<Money>,
    pub refund: Option<Money>,
    #[serde(skip)]
    contract_id: Uuid,
}

impl FromRow<'_, PgRow> for DisputeView {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        let resolved = row.try_get::<Option<String>, _>("currency")?.is_some();
        Ok(Self {
            dispute_id: DisputeId(row.try_get("dispute_id")?),
            milestone_id: MilestoneId(row.try_get("milestone_id")?),
            opened_by: UserId(row.try_get("opened_by")?),
            reason: row.try_get("reason")?,
            status: row.try_get("status")?,
            opened_at: row.try_get("opened_at")?,
            resolved_at: row.try_get("resolved_at")?,
            resolved_by: row.try_get::<Option<Uuid>, _>("resolved_by")?.map(UserId),
            release: if resolved {
                Some(money(row, "release_amount", "currency")?)
            } else {
                None
            },
            refund: if resolved {
                Some(money(row, "refund_amount", "currency")?)
            } else {
                None
            },
            contract_id: row.try_get("contract_id")?,
        })
    }
}

/// A revealed review.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ReviewView {
    pub reviewer_id: UserId,
    pub reviewee_id: UserId,
    pub reviewer: Party,
    pub rating: i16,
    pub text: String,
    pub reviewed_at: DateTime<Utc>,
    #[serde(skip)]
    contract_id: Uuid,
}

impl FromRow<'_, PgRow> for ReviewView {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        let reviewer: String = row.try_get("reviewer")?;
        Ok(Self {
            reviewer_id: UserId(row.try_get("reviewer_id")?),
            reviewee_id: UserId(row.try_get("reviewee_id")?),
            reviewer: if reviewer == "client" {
                Party::Client
            } else {
                Party::Freelancer
            },
            rating: row.try_get("rating")?,
            text: row.try_get("text")?,
            reviewed_at: row.try_get("reviewed_at")?,
            contract_id: row.try_get("contract_id")?,
        })
    }
}

/// Fills in the milestones, disputes, revealed reviews and escrow version of `contracts`.
async fn with_details(
    pool: &PgPool,
    mut contracts: Vec<ContractView>,
) -> Result<Vec<ContractView>, ReadError> {
    if contracts.is_empty() {
        return Ok(contracts);
    }
    let ids: Vec<Uuid> = contracts.iter().map(|c| c.contract_id.0).collect();
    let milestones: Vec<MilestoneView> = sqlx::query_as(
        "select m.*, b.deposited, b.released_gross, b.fee, b.net, b.refunded, b.held, b.frozen,
                b.settled
           from read.contract_milestones m
           left join read.contract_escrow_balances b using (contract_id, milestone_id)
          where m.contract_id = any($1)
          order by m.contract_id, m.ordinal",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let disputes: Vec<DisputeView> = sqlx::query_as(
        "select * from read.contract_disputes where contract_id = any($1)
          order by contract_id, opened_position",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let reviews: Vec<ReviewView> = sqlx::query_as(
        "select * from read.contract_reviews
          where contract_id = any($1) and revealed_at is not null
          order by contract_id, reviewed_at, reviewer_id",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let escrows: Vec<(Uuid, i64)> = sqlx::query_as(
        "select contract_id, version from read.contract_escrows where contract_id = any($1)",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    for contract in &mut contracts {
        let id = contract.contract_id.0;
        contract.escrow_version = escrows
            .iter()
            .find(|(contract_id, _)| *contract_id == id)
            .map(|(_, version)| *version);
        contract.milestones = milestones
            .iter()
            .filter(|m| m.contract_id == id)
            .cloned()
            .collect();
        contract.disputes = disputes
            .iter()
            .filter(|d| d.contract_id == id)
            .cloned()
            .collect();
        contract.reviews = reviews
            .iter()
            .filter(|r| r.contract_id == id)
            .cloned()
            .collect();
    }
    Ok(contracts)
}

/// One contract with its milestones, escrow balances, disputes and revealed reviews.
pub async fn get_contract(
    pool: &PgPool,
    contract_id: ContractId,
) -> Result<Option<ContractView>, ReadError> {
    let contract: Option<ContractView> =
        sqlx::query_as("select * from read.contracts where contract_id = $1")
            .bind(contract_id.0)
            .fetch_optional(pool)
            .await?;
    Ok(with_details(pool, contract.into_iter().collect())
        .await?
        .pop())
}

const CURSOR: &str = "c";

/// The contracts `user_id` is a party to (client or freelancer), newest first, each with its
/// milestones, balances, disputes and revealed reviews.
pub async fn contracts_of_user(
    pool: &PgPool,
    user_id: UserId,
    cursor: Option<&str>,
    limit: Option<u32>,
) -> Result<Page<ContractView>, ReadError> {
    let limit = page_limit(limit);
    // Sentinel after every position on the first page: the keyset stays the index condition in
    // a generic plan (`$2 is null or …` would not).
    let before: i64 = cursor
        .map(|c| decode_cursor(c, CURSOR, 1).and_then(|parts| cursor_part(parts[0])))
        .transpose()?
        .unwrap_or(i64::MAX);
    // Two index scans (as client, as freelancer) merged, rather than an `or` over both columns.
    let rows: Vec<ContractView> = sqlx::query_as(
        "select * from (
             (select * from read.contracts where client_id = $1 and started_position < $2
               order by started_position desc limit $3)
             union
             (select * from read.contracts where freelancer_id = $1 and started_position < $2
               order by started_position desc limit $3)
         ) c
         order by started_position desc
         limit $3",
    )
    .bind(user_id.0)
    .bind(before)
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    let page = into_page(rows, limit, |c| {
        encode_cursor(CURSOR, &[&c.started_position])
    });
    Ok(Page {
        items: with_details(pool, page.items).await?,
        next_cursor: page.next_cursor,
    })
}

/// Which disputes the admin queue lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DisputeStatus {
    /// Waiting for an admin's resolution.
    Open,
    /// Resolved: the frozen amount was split.
    Resolved,
}

/// One dispute as the admin queue lists it (`GET /v1/disputes`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct QueuedDispute {
    pub dispute_id: DisputeId,
    pub contract_id: ContractId,
    pub milestone_id: MilestoneId,
    /// `None` until the contract's start has been projected.
    pub milestone_title: Option<String>,
    pub opened_by: UserId,
    pub opened_at: DateTime<Utc>,
    pub reason: String,
    pub status: DisputeStatus,
    /// What the escrow froze for the dispute: all it held for the milestone (the FundsFrozen
    /// event's amount), still reported once settled; `None` until the freeze has been projected.
    pub amount_frozen: Option<Money>,
    pub resolved_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    opened_position: i64,
}

impl FromRow<'_, PgRow> for QueuedDispute {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        let status: String = row.try_get("status")?;
        let amount_frozen = match row.try_get::<Option<i64>, _>("amount_frozen")? {
            None => None,
            Some(amount) => Some(Money::new(amount, currency_of(row, "frozen_currency")?)),
        };
        Ok(Self {
            dispute_id: DisputeId(row.try_get("dispute_id")?),
            contract_id: ContractId(row.try_get("contract_id")?),
            milestone_id: MilestoneId(row.try_get("milestone_id")?),
            milestone_title: row.try_get("milestone_title")?,
            opened_by: UserId(row.try_get("opened_by")?),
            opened_at: row.try_get("opened_at")?,
            reason: row.try_get("reason")?,
            status: match status.as_str() {
                "open" => DisputeStatus::Open,
                "resolved" => DisputeStatus::Resolved,
                other => return Err(decode_err("dispute status", other)),
            },
            amount_frozen,
            resolved_at: row.try_get("resolved_at")?,
            opened_position: row.try_get("opened_position")?,
        })
    }
}

const QUEUE_CURSOR: &str = "dq";

/// The dispute queue's statement, with `$status` (a literal condition, or nothing) before the
/// keyset condition.
macro_rules! dispute_queue_sql {
    ($status:literal) => {
        concat!(
            "select d.dispute_id, d.contract_id, d.milestone_id, m.title as milestone_title,
                    d.opened_by, d.opened_at, d.reason, d.status, d.resolved_at,
                    d.opened_position,
                    case when b.frozen then b.held
                         when b.settled then b.released_gross + b.refunded
                    end as amount_frozen,
                    b.currency as frozen_currency
               from read.contract_disputes d
               left join read.contract_milestones m
                      on m.contract_id = d.contract_id and m.milestone_id = d.milestone_id
               left join read.contract_escrow_balances b
                      on b.contract_id = d.contract_id and b.milestone_id = d.milestone_id
              where ",
            $status,
            " d.opened_position > $1
              order by d.opened_position
              limit $2"
        )
    };
}

/// `GET /v1/disputes?status=`: the admin's dispute queue, in the order disputes were opened (the
/// DisputeOpened event's position), every dispute or only those in `status`, each with the amount
/// its escrow froze. Each form is one static statement reading its index
/// (`contract_disputes_open`, `_resolved`, `_opened`) from the cursor to the page's end; the
/// first page starts after the sentinel position -1, so the cursor is always an index condition.
/// The frozen amount comes from the milestone's escrow balance: a freeze holds everything the
/// milestone holds, and until the freeze nothing was released or refunded, so once settled it is
/// what was released plus what was refunded.
pub async fn dispute_queue<'e>(
    db: impl PgExecutor<'e>,
    status: Option<DisputeStatus>,
    cursor: Option<&str>,
    limit: Option<u32>,
) -> Result<Page<QueuedDispute>, ReadError> {
    let limit = page_limit(limit);
    let after: i64 = match cursor {
        None => -1,
        Some(c) => cursor_part(decode_cursor(c, QUEUE_CURSOR, 1)?[0])?,
    };
    // One static statement per status, naming it as a literal so that each is planned on its
    // partial index (`contract_disputes_open`, `contract_disputes_resolved`), generic plans too.
    let sql = match status {
        Some(DisputeStatus::Open) => dispute_queue_sql!("d.status = 'open' and"),
        Some(DisputeStatus::Resolved) => dispute_queue_sql!("d.status = 'resolved' and"),
        None => dispute_queue_sql!(""),
    };
    let rows: Vec<QueuedDispute> = sqlx::query_as(sql)
        .bind(after)
        .bind(limit + 1)
        .fetch_all(db)
        .await?;
    Ok(into_page(rows, limit, |d| {
        encode_cursor(QUEUE_CURSOR, &[&d.opened_position])
    }))
}
