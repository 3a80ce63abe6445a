//! Notifications: per person, what they want to be told, derived from events.
//!
//! | event | kind | to |
//! |---|---|---|
//! | ProposalSubmitted | `proposal_received` | the gig's owner |
//! | ProposalAccepted | `proposal_accepted` (hired) | the freelancer |
//! | ProposalRejected | `proposal_rejected` | the freelancer |
//! | MilestoneFunded | `milestone_funded` | the freelancer |
//! | MilestoneSubmitted | `milestone_submitted` | the client |
//! | MilestoneChangesRequested | `changes_requested` | the freelancer |
//! | MilestoneApproved | `milestone_approved` | the freelancer |
//! | FundsReleased | `payment_released` (paid) | the freelancer |
//! | FundsRefunded | `funds_refunded` | the client |
//! | DisputeOpened / DisputeResolved | `dispute_opened` / `dispute_resolved` | both parties |
//! | ReviewsRevealed | `review_received` | each reviewee (never before the reveal) |
//! | ContractCancelled | `contract_cancelled` | the other party (both if neither cancelled) |
//!
//! A notification's key is its event's position and its recipient. A user's notifications are
//! listed in the order the projection applied them, `(transaction_id, position)`: a notification
//! added later always sorts after every one already listed, so a client following the cursor
//! (e.g. an SSE stream resumed with `Last-Event-ID`) never misses one that committed late.
//! `GET /v1/me/notifications` lists them in that order reversed (newest first).
//!
//! Whether a notification was read is the user's, not the events': each user has one read mark,
//! a `(transaction_id, position)` in `notification_read_marks`, and a notification is read when it
//! sorts at or before the mark. That table is not in [`TABLES`], so a rebuild, which replaces the
//! tables it lists, keeps every mark; and since the log order of an event never changes, a mark
//! names the same notifications in the rebuilt tables.

use chrono::{DateTime, Utc};
use gigledger_domain::{ContractEvent, EscrowEvent, GigEvent, UserId, WalletEvent};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{FromRow, PgConnection, PgExecutor, Row};
use uuid::Uuid;

use super::{
    cursor_part, decode, decode_cursor, encode_cursor, into_page, page_limit, AnyEvent, Page,
    ReadError,
};
use crate::log::{Checkpoint, RecordedEvent};
use crate::runtime::{Handler, HandlerError};

/// The handler's stored name.
pub const NAME: &str = "notifications";
/// The tables this read model fills.
pub const TABLES: &[&str] = &[
    "notification_gigs",
    "notification_contracts",
    "notification_reviews",
    "notifications",
];

/// Projects events into per-user notifications.
#[derive(Clone, Copy, Debug, Default)]
pub struct Notifications;

#[async_trait::async_trait]
impl Handler for Notifications {
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
                Some((id, AnyEvent::Gig(e))) => on_gig(tx, event, id, &e).await?,
                Some((id, AnyEvent::Contract(e))) => on_contract(tx, event, id, &e).await?,
                Some((id, AnyEvent::Escrow(e))) => on_escrow(tx, event, id, &e).await?,
                Some((id, AnyEvent::Wallet(e))) => on_wallet(tx, event, id, &e).await?,
                None => {}
            }
        }
        Ok(())
    }
}

/// One notification to write.
struct Note {
    user_id: Uuid,
    kind: &'static str,
    data: Value,
    gig_id: Option<Uuid>,
    proposal_id: Option<Uuid>,
    contract_id: Option<Uuid>,
    milestone_id: Option<Uuid>,
    dispute_id: Option<Uuid>,
}

impl Note {
    fn new(user_id: Uuid, kind: &'static str, data: Value) -> Self {
        Self {
            user_id,
            kind,
            data,
            gig_id: None,
            proposal_id: None,
            contract_id: None,
            milestone_id: None,
            dispute_id: None,
        }
    }
}

async fn notify(
    tx: &mut PgConnection,
    event: &RecordedEvent,
    note: Note,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into notifications (transaction_id, position, user_id, kind, data, gig_id,
                                    proposal_id, contract_id, milestone_id, dispute_id, created_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         on conflict (position, user_id) do nothing",
    )
    .bind(event.transaction_id)
    .bind(event.position)
    .bind(note.user_id)
    .bind(note.kind)
    .bind(Json(note.data))
    .bind(note.gig_id)
    .bind(note.proposal_id)
    .bind(note.contract_id)
    .bind(note.milestone_id)
    .bind(note.dispute_id)
    .bind(event.recorded_at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn on_gig(
    tx: &mut PgConnection,
    event: &RecordedEvent,
    gig_id: Uuid,
    gig_event: &GigEvent,
) -> Result<(), HandlerError> {
    match gig_event {
        GigEvent::GigPosted {
            client_id, title, ..
        } => {
            sqlx::query(
                "insert into notification_gigs (gig_id, client_id, title) values ($1, $2, $3)
                 on conflict (gig_id) do nothing",
            )
            .bind(gig_id)
            .bind(client_id.0)
            .bind(title)
            .execute(&mut *tx)
            .await?;
        }
        GigEvent::GigRevised {
            title: Some(title), ..
        } => {
            sqlx::query("update notification_gigs set title = $2 where gig_id = $1")
                .bind(gig_id)
                .bind(title)
                .execute(&mut *tx)
                .await?;
        }
        GigEvent::ProposalSubmitted {
            proposal_id,
            freelancer_id,
            bid,
            ..
        } => {
            let (owner, title) = gig_of(tx, gig_id).await?;
            let mut note = Note::new(
                owner,
                "proposal_received",
                json!({ "gig_title": title, "freelancer_id": freelancer_id, "bid": bid }),
            );
            note.gig_id = Some(gig_id);
            note.proposal_id = Some(proposal_id.0);
            notify(tx, event, note).await?;
        }
        GigEvent::ProposalAccepted {
            proposal_id,
            contract_id,
            freelancer_id,
            ..
        } => {
            let (_, title) = gig_of(tx, gig_id).await?;
            let mut note = Note::new(
                freelancer_id.0,
                "proposal_accepted",
                json!({ "gig_title": title, "contract_id": contract_id }),
            );
            note.gig_id = Some(gig_id);
            note.proposal_id = Some(proposal_id.0);
            note.contract_id = Some(contract_id.0);
            notify(tx, event, note).await?;
        }
        GigEvent::ProposalRejected {
            proposal_id,
            freelancer_id,
            ..
        } => {
            let (_, title) = gig_of(tx, gig_id).await?;
            let mut note = Note::new(
                freelancer_id.0,
                "proposal_rejected",
                json!({ "gig_title": title }),
            );
            note.gig_id = Some(gig_id);
            note.proposal_id = Some(proposal_id.0);
            notify(tx, event, note).await?;
        }
        GigEvent::GigRevised { title: None, .. }
        | GigEvent::ProposalWithdrawn { .. }
        | GigEvent::GigClosed { .. }
        | GigEvent::GigCancelled { .. } => {}
    }
    Ok(())
}

async fn gig_of(tx: &mut PgConnection, gig_id: Uuid) -> Result<(Uuid, String), HandlerError> {
    let row: Option<(Uuid, String)> =
        sqlx::query_as("select client_id, title from notification_gigs where gig_id = $1")
            .bind(gig_id)
            .fetch_optional(&mut *tx)
            .await?;
    row.ok_or_else(|| format!("gig {gig_id} has events before GigPosted").into())
}

/// The parties of a contract, its gig and the title of one of its milestones.
struct Parties {
    client_id: Uuid,
    freelancer_id: Uuid,
    gig_id: Option<Uuid>,
    milestone_title: Option<String>,
}

async fn parties_of(
    tx: &mut PgConnection,
    contract_id: Uuid,
    milestone_id: Option<Uuid>,
) -> Result<Parties, HandlerError> {
    let row: Option<(Uuid, Uuid, Option<Uuid>, Option<String>)> = sqlx::query_as(
        "select client_id, freelancer_id, gig_id, milestones ->> $2::text
           from notification_contracts where contract_id = $1",
    )
    .bind(contract_id)
    .bind(milestone_id.map(|m| m.to_string()))
    .fetch_optional(&mut *tx)
    .await?;
    let (client_id, freelancer_id, gig_id, milestone_title) =
        row.ok_or_else(|| format!("contract {contract_id} has events before it started"))?;
    Ok(Parties {
        client_id,
        freelancer_id,
        gig_id,
        milestone_title,
    })
}

/// A note about a milestone of a contract.
fn milestone_note(
    to: Uuid,
    kind: &'static str,
    contract_id: Uuid,
    milestone_id: Uuid,
    parties: &Parties,
    mut data: Value,
) -> Note {
    if let Some(object) = data.as_object_mut() {
        object.insert(
            "milestone_title".to_owned(),
            json!(parties.milestone_title.clone()),
        );
    }
    let mut note = Note::new(to, kind, data);
    note.gig_id = parties.gig_id;
    note.contract_id = Some(contract_id);
    note.milestone_id = Some(milestone_id);
    note
}

async fn on_contract(
    tx: &mut PgConnection,
    event: &RecordedEvent,
    contract_id: Uuid,
    contract_event: &ContractEvent,
) -> Result<(), HandlerError> {
    match contract_event {
        ContractEvent::ContractStarted {
            gig_id,
            client_id,
            freelancer_id,
            milestones,
            ..
        } => {
            let titles: serde_json::Map<String, Value> = milestones
                .iter()
                .map(|m| (m.milestone_id.to_string(), Value::from(m.title.clone())))
                .collect();
            sqlx::query(
                "insert into notification_contracts (contract_id, client_id, freelancer_id, gig_id,
                                                     milestones)
                 values ($1, $2, $3, $4, $5)
                 on conflict (contract_id) do update
                    set gig_id = excluded.gig_id, milestones = excluded.milestones",
            )
            .bind(contract_id)
            .bind(client_id.0)
            .bind(freelancer_id.0)
            .bind(gig_id.0)
            .bind(Json(titles))
            .execute(&mut *tx)
            .await?;
        }
        ContractEvent::MilestoneFunded { milestone_id, .. } => {
            let p = parties_of(tx, contract_id, Some(milestone_id.0)).await?;
            let note = milestone_note(
                p.freelancer_id,
                "milestone_funded",
                contract_id,
                milestone_id.0,
                &p,
                json!({}),
            );
            notify(tx, event, note).await?;
        }
        ContractEvent::MilestoneSubmitted {
            milestone_id,
            review_due_at,
            ..
        } => {
            let p = parties_of(tx, contract_id, Some(milestone_id.0)).await?;
            let note = milestone_note(
                p.client_id,
                "milestone_submitted",
                contract_id,
                milestone_id.0,
                &p,
                json!({ "review_due_at": review_due_at }),
            );
            notify(tx, event, note).await?;
        }
        ContractEvent::MilestoneChangesRequested {
            milestone_id,
            reason,
            revision,
            ..
        } => {
            let p = parties_of(tx, contract_id, Some(milestone_id.0)).await?;
            let note = milestone_note(
                p.freelancer_id,
                "changes_requested",
                contract_id,
                milestone_id.0,
                &p,
                json!({ "reason": reason, "revision": revision }),
            );
            notify(tx, event, note).await?;
        }
        ContractEvent::MilestoneApproved {
            milestone_id,
            amount,
            auto,
            ..
        } => {
            let p = parties_of(tx, contract_id, Some(milestone_id.0)).await?;
            let note = milestone_note(
                p.freelancer_id,
                "milestone_approved",
                contract_id,
                milestone_id.0,
                &p,
                json!({ "amount": amount, "auto": auto }),
            );
            notify(tx, event, note).await?;
        }
        ContractEvent::ContractCancelled {
            reason,
            cancelled_by,
            ..
        } => {
            let p = parties_of(tx, contract_id, None).await?;
            let recipients: Vec<Uuid> = [p.client_id, p.freelancer_id]
                .into_iter()
                .filter(|party| *party != cancelled_by.0)
                .collect();
            for to in recipients {
                let mut note = Note::new(
                    to,
                    "contract_cancelled",
                    json!({ "reason": reason, "cancelled_by": cancelled_by }),
                );
                note.gig_id = p.gig_id;
                note.contract_id = Some(contract_id);
                notify(tx, event, note).await?;
            }
        }
        ContractEvent::DisputeOpened {
            dispute_id,
            milestone_id,
            opened_by,
            reason,
            ..
        } => {
            let p = parties_of(tx, contract_id, Some(milestone_id.0)).await?;
            for to in [p.client_id, p.freelancer_id] {
                let mut note = milestone_note(
                    to,
                    "dispute_opened",
                    contract_id,
                    milestone_id.0,
                    &p,
                    json!({ "opened_by": opened_by, "reason": reason }),
                );
                note.dispute_id = Some(dispute_id.0);
                notify(tx, event, note).await?;
            }
        }
        ContractEvent::DisputeResolved {
            dispute_id,
            milestone_id,
            release,
            refund,
            ..
        } => {
            let p = parties_of(tx, contract_id, Some(milestone_id.0)).await?;
            for to in [p.client_id, p.freelancer_id] {
                let mut note = milestone_note(
                    to,
                    "dispute_resolved",
                    contract_id,
                    milestone_id.0,
                    &p,
                    json!({ "release": release, "refund": refund }),
                );
                note.dispute_id = Some(dispute_id.0);
                notify(tx, event, note).await?;
            }
        }
        ContractEvent::ReviewLeft {
            reviewer_id,
            reviewee_id,
            rating,
            ..
        } => {
            sqlx::query(
                "insert into notification_reviews (contract_id, reviewer_id, reviewee_id, rating)
                 values ($1, $2, $3, $4) on conflict (contract_id, reviewer_id) do nothing",
            )
            .bind(contract_id)
            .bind(reviewer_id.0)
            .bind(reviewee_id.0)
            .bind(i16::from(*rating))
            .execute(&mut *tx)
            .await?;
        }
        ContractEvent::ReviewsRevealed { .. } => {
            let p = parties_of(tx, contract_id, None).await?;
            let reviews: Vec<(Uuid, Uuid, i16)> = sqlx::query_as(
                "select reviewer_id, reviewee_id, rating from notification_reviews
                  where contract_id = $1 order by reviewer_id",
            )
            .bind(contract_id)
            .fetch_all(&mut *tx)
            .await?;
            for (reviewer_id, reviewee_id, rating) in reviews {
                let mut note = Note::new(
                    reviewee_id,
                    "review_received",
                    json!({ "reviewer_id": reviewer_id, "rating": rating }),
                );
                note.gig_id = p.gig_id;
                note.contract_id = Some(contract_id);
                notify(tx, event, note).await?;
            }
        }
        ContractEvent::ContractCompleted { .. } => {}
    }
    Ok(())
}

async fn on_escrow(
    tx: &mut PgConnection,
    event: &RecordedEvent,
    contract_id: Uuid,
    escrow_event: &EscrowEvent,
) -> Result<(), HandlerError> {
    match escrow_event {
        EscrowEvent::EscrowOpened {
            client_id,
            freelancer_id,
            ..
        } => {
            // The contract's start may be projected after its escrow's opening; either fills in
            // the parties, and ContractStarted adds the gig and the milestone titles.
            sqlx::query(
                "insert into notification_contracts (contract_id, client_id, freelancer_id)
                 values ($1, $2, $3) on conflict (contract_id) do nothing",
            )
            .bind(contract_id)
            .bind(client_id.0)
            .bind(freelancer_id.0)
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
            let p = parties_of(tx, contract_id, Some(milestone_id.0)).await?;
            let note = milestone_note(
                p.freelancer_id,
                "payment_released",
                contract_id,
                milestone_id.0,
                &p,
                json!({ "gross": gross, "fee": fee, "net": net }),
            );
            notify(tx, event, note).await?;
        }
        EscrowEvent::FundsRefunded {
            milestone_id,
            amount,
            ..
        } => {
            let p = parties_of(tx, contract_id, Some(milestone_id.0)).await?;
            let note = milestone_note(
                p.client_id,
                "funds_refunded",
                contract_id,
                milestone_id.0,
                &p,
                json!({ "amount": amount }),
            );
            notify(tx, event, note).await?;
        }
        EscrowEvent::RefundIssued {
            milestone_id,
            amount,
            ..
        } => {
            let p = parties_of(tx, contract_id, Some(milestone_id.0)).await?;
            let note = milestone_note(
                p.client_id,
                "refund_reached_card",
                contract_id,
                milestone_id.0,
                &p,
                json!({ "amount": amount }),
            );
            notify(tx, event, note).await?;
        }
        EscrowEvent::FundsDeposited { .. }
        | EscrowEvent::FundsFrozen { .. }
        | EscrowEvent::EscrowClosed { .. }
        | EscrowEvent::ChargeVoided { .. }
        // A failed card refund is retried and shown to admins; the client hears when it lands.
        | EscrowEvent::RefundFailed { .. } => {}
    }
    Ok(())
}

/// A freelancer hears when a payout reaches their account, and when one fails (the money is back
/// in their wallet).
async fn on_wallet(
    tx: &mut PgConnection,
    event: &RecordedEvent,
    freelancer_id: Uuid,
    wallet_event: &WalletEvent,
) -> Result<(), HandlerError> {
    let note = match wallet_event {
        WalletEvent::PayoutPaid {
            payout_id, amount, ..
        } => Note::new(
            freelancer_id,
            "payout_paid",
            json!({ "payout_id": payout_id, "amount": amount }),
        ),
        WalletEvent::PayoutFailed {
            payout_id,
            amount,
            reason,
            ..
        } => Note::new(
            freelancer_id,
            "payout_failed",
            json!({ "payout_id": payout_id, "amount": amount, "reason": reason }),
        ),
        WalletEvent::PayoutAccountVerified { provider, .. } => Note::new(
            freelancer_id,
            "payout_account_verified",
            json!({ "provider": provider }),
        ),
        WalletEvent::PayoutAccountRegistered { .. }
        | WalletEvent::EarningsCredited { .. }
        | WalletEvent::PayoutRequested { .. } => return Ok(()),
    };
    notify(tx, event, note).await?;
    Ok(())
}

/// One notification.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Notification {
    /// Unique: `{transaction_id}-{position}-{user}`, the notification's place in the log's
    /// order and its recipient; `POST /v1/me/notifications/read { "up_to": id }` takes it.
    pub id: String,
    /// Where an oldest-first listing (or a resumed stream) continues after this notification.
    pub cursor: String,
    /// The position of the event it comes from.
    pub position: i64,
    pub user_id: UserId,
    pub kind: String,
    #[schema(value_type = Object)]
    pub data: Value,
    pub gig_id: Option<Uuid>,
    pub proposal_id: Option<Uuid>,
    pub contract_id: Option<Uuid>,
    pub milestone_id: Option<Uuid>,
    pub dispute_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    /// At or before the user's read mark (see [`mark_read_up_to`]).
    pub read: bool,
    #[serde(skip)]
    transaction_id: i64,
}

impl Notification {
    /// Where the notification stands in the order the projection applied them: its event's
    /// place in the log. A stream that has sent it continues after it
    /// ([`cursor_after`] with this, into [`notifications_of`]).
    #[must_use]
    pub fn place(&self) -> Checkpoint {
        Checkpoint {
            transaction_id: self.transaction_id,
            position: self.position,
        }
    }
}

/// The [`notifications_of`] cursor that continues after `place` in the log's order: after the
/// notification of the event there, or, for a read model's checkpoint, after every notification
/// that read model has written so far.
#[must_use]
pub fn cursor_after(place: Checkpoint) -> String {
    encode_cursor(CURSOR, &[&place.transaction_id, &place.position])
}

const CURSOR: &str = "n";
/// The cursor kind of the newest-first listing.
const NEWEST_CURSOR: &str = "nd";

impl FromRow<'_, PgRow> for Notification {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        let transaction_id: i64 = row.try_get("transaction_id")?;
        let position: i64 = row.try_get("position")?;
        let user_id: Uuid = row.try_get("user_id")?;
        let Json(data) = row.try_get("data")?;
        Ok(Self {
            id: format!("{transaction_id}-{position}-{user_id}"),
            cursor: encode_cursor(CURSOR, &[&transaction_id, &position]),
            position,
            user_id: UserId(user_id),
            kind: row.try_get("kind")?,
            data,
            gig_id: row.try_get("gig_id")?,
            proposal_id: row.try_get("proposal_id")?,
            contract_id: row.try_get("contract_id")?,
            milestone_id: row.try_get("milestone_id")?,
            dispute_id: row.try_get("dispute_id")?,
            created_at: row.try_get("created_at")?,
            read: row.try_get("read")?,
            transaction_id,
        })
    }
}

// Read marks live in `read.notification_read_marks` (one per user, written only by
// `mark_read_up_to`), which no read model lists in `TABLES`, so a rebuild keeps them. Each
// statement reads the caller's mark in a `mark` CTE: one row whatever happens (the sentinel
// (-1, -1), before every notification, when the user never marked anything), read through
// scalar subqueries, which PostgreSQL evaluates once before the scan, so comparisons with the
// mark stay index conditions on `notifications_by_user`.

/// A user's notifications after `cursor` (from the first without one), oldest first.
pub async fn notifications_of<'e>(
    db: impl PgExecutor<'e>,
    user_id: UserId,
    cursor: Option<&str>,
    limit: Option<u32>,
) -> Result<Page<Notification>, ReadError> {
    let limit = page_limit(limit);
    let after: (i64, i64) = match cursor {
        None => (-1, -1),
        Some(c) => {
            let parts = decode_cursor(c, CURSOR, 2)?;
            (cursor_part(parts[0])?, cursor_part(parts[1])?)
        }
    };
    let rows = sqlx::query_as(
        "with mark as (
             select coalesce(max(m.transaction_id), -1) as transaction_id,
                    coalesce(max(m.position), -1) as position
               from read.notification_read_marks m where m.user_id = $1)
         select n.*,
                (n.transaction_id, n.position)
                    <= ((select transaction_id from mark), (select position from mark)) as read
           from read.notifications n
          where n.user_id = $1 and (n.transaction_id, n.position) > ($2, $3)
          order by n.transaction_id, n.position
          limit $4",
    )
    .bind(user_id.0)
    .bind(after.0)
    .bind(after.1)
    .bind(limit + 1)
    .fetch_all(db)
    .await?;
    Ok(into_page(rows, limit, |n: &Notification| n.cursor.clone()))
}

/// `GET /v1/me/notifications[?unread=true]`: a user's notifications newest first (the log's
/// `(transaction_id, position)` order, reversed), all of them or only the unread ones (after the
/// user's read mark). One static statement: the first page starts before a sentinel key above
/// every notification, and without `unread_only` the lower bound is the sentinel (-1, -1), so
/// both bounds are always index conditions and a page reads only its own rows.
pub async fn notifications_newest_first<'e>(
    db: impl PgExecutor<'e>,
    user_id: UserId,
    unread_only: bool,
    cursor: Option<&str>,
    limit: Option<u32>,
) -> Result<Page<Notification>, ReadError> {
    let limit = page_limit(limit);
    let before: (i64, i64) = match cursor {
        None => (i64::MAX, i64::MAX),
        Some(c) => {
            let parts = decode_cursor(c, NEWEST_CURSOR, 2)?;
            (cursor_part(parts[0])?, cursor_part(parts[1])?)
        }
    };
    let rows = sqlx::query_as(
        "with mark as (
             select coalesce(max(m.transaction_id), -1) as transaction_id,
                    coalesce(max(m.position), -1) as position
               from read.notification_read_marks m where m.user_id = $1)
         select n.*,
                (n.transaction_id, n.position)
                    <= ((select transaction_id from mark), (select position from mark)) as read
           from read.notifications n
          where n.user_id = $1
            and (n.transaction_id, n.position) < ($2, $3)
            and (n.transaction_id, n.position)
                > (case when $4 then (select transaction_id from mark) else -1 end,
                   case when $4 then (select position from mark) else -1 end)
          order by n.transaction_id desc, n.position desc
          limit $5",
    )
    .bind(user_id.0)
    .bind(before.0)
    .bind(before.1)
    .bind(unread_only)
    .bind(limit + 1)
    .fetch_all(db)
    .await?;
    Ok(into_page(rows, limit, |n: &Notification| {
        encode_cursor(NEWEST_CURSOR, &[&n.transaction_id, &n.position])
    }))
}

/// The `(transaction_id, position)` a notification id names, if it is one of `user_id`'s ids.
fn place_of(id: &str, user_id: UserId) -> Option<(i64, i64)> {
    let mut parts = id.splitn(3, '-');
    let transaction_id = parts.next()?.parse().ok()?;
    let position = parts.next()?.parse().ok()?;
    let user: Uuid = parts.next()?.parse().ok()?;
    (user == user_id.0).then_some((transaction_id, position))
}

/// `POST /v1/me/notifications/read { "up_to": id }`: marks every notification of `user_id` up to
/// and including `up_to` (in the log's order) read, by moving the user's read mark there; a mark
/// never moves back. Returns how many notifications became read. `up_to` must be the id of one of
/// the user's notifications ([`ReadError::InvalidArgument`] otherwise), so a mark always names a
/// notification the user was shown: every notification projected later sorts after it, so it
/// starts unread.
pub async fn mark_read_up_to<'e>(
    db: impl PgExecutor<'e>,
    user_id: UserId,
    up_to: &str,
) -> Result<u64, ReadError> {
    let unknown = || ReadError::InvalidArgument(format!("no notification {up_to:?} of this user"));
    let (transaction_id, position) = place_of(up_to, user_id).ok_or_else(unknown)?;
    // One statement, one snapshot: `mark` is the mark before the move, `moved` the mark after
    // it (no row when the notification is unknown or the mark was already past it).
    let (found, newly_read): (i64, i64) = sqlx::query_as(
        "with target as (
             select n.transaction_id, n.position from read.notifications n
              where n.position = $3 and n.user_id = $1 and n.transaction_id = $2),
         mark as (
             select coalesce(max(m.transaction_id), -1) as transaction_id,
                    coalesce(max(m.position), -1) as position
               from read.notification_read_marks m where m.user_id = $1),
         moved as (
             insert into read.notification_read_marks as m (user_id, transaction_id, position)
             select $1, t.transaction_id, t.position from target t
             on conflict (user_id) do update
                set transaction_id = excluded.transaction_id, position = excluded.position
              where (m.transaction_id, m.position) < (excluded.transaction_id, excluded.position)
             returning m.transaction_id, m.position)
         select (select count(*) from target),
                (select count(*) from read.notifications n, moved
                  where n.user_id = $1
                    and (n.transaction_id, n.position)
                        > ((select transaction_id from mark), (select position from mark))
                    and (n.transaction_id, n.position) <= (moved.transaction_id, moved.position))",
    )
    .bind(user_id.0)
    .bind(transaction_id)
    .bind(position)
    .fetch_one(db)
    .await?;
    if found == 0 {
        return Err(unknown());
    }
    Ok(u64::try_from(newly_read).unwrap_or(0))
}

/// How many of a user's notifications are unread: those after the user's read mark, a range of
/// `notifications_by_user` (so the count reads only the unread entries).
pub async fn unread_count<'e>(db: impl PgExecutor<'e>, user_id: UserId) -> Result<i64, ReadError> {
    Ok(sqlx::query_scalar(
        "with mark as (
             select coalesce(max(m.transaction_id), -1) as transaction_id,
                    coalesce(max(m.position), -1) as position
               from read.notification_read_marks m where m.user_id = $1)
         select count(*) from read.notifications n
          where n.user_id = $1
            and (n.transaction_id, n.position)
                > ((select transaction_id from mark), (select position from mark))",
    )
    .bind(user_id.0)
    .fetch_one(db)
    .await?)
}
