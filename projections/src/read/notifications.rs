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

use chrono::{DateTime, Utc};
use gigledger_domain::{ContractEvent, EscrowEvent, GigEvent, UserId};
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
use crate::log::RecordedEvent;
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
        EscrowEvent::FundsDeposited { .. }
        | EscrowEvent::FundsFrozen { .. }
        | EscrowEvent::EscrowClosed { .. }
        | EscrowEvent::ChargeVoided { .. } => {}
    }
    Ok(())
}

/// One notification.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Notification {
    /// Unique: `{position}-{user}`.
    pub id: String,
    /// Where a listing (or a resumed stream) continues after this notification.
    pub cursor: String,
    /// The position of the event it comes from.
    pub position: i64,
    pub user_id: UserId,
    pub kind: String,
    pub data: Value,
    pub gig_id: Option<Uuid>,
    pub proposal_id: Option<Uuid>,
    pub contract_id: Option<Uuid>,
    pub milestone_id: Option<Uuid>,
    pub dispute_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub read: bool,
}

const CURSOR: &str = "n";

impl FromRow<'_, PgRow> for Notification {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        let transaction_id: i64 = row.try_get("transaction_id")?;
        let position: i64 = row.try_get("position")?;
        let user_id: Uuid = row.try_get("user_id")?;
        let Json(data) = row.try_get("data")?;
        Ok(Self {
            id: format!("{position}-{user_id}"),
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
        })
    }
}

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
        "select * from read.notifications
          where user_id = $1 and (transaction_id, position) > ($2, $3)
          order by transaction_id, position
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

/// Marks a user's notifications from the events at `positions` as read; returns how many
/// changed. (The flag is the user's, not an event's: a rebuild starts every notification unread.)
pub async fn mark_read<'e>(
    db: impl PgExecutor<'e>,
    user_id: UserId,
    positions: &[i64],
) -> Result<u64, ReadError> {
    let done = sqlx::query(
        "update read.notifications set read = true
          where user_id = $1 and position = any($2) and not read",
    )
    .bind(user_id.0)
    .bind(positions)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// How many of a user's notifications are unread.
pub async fn unread_count<'e>(db: impl PgExecutor<'e>, user_id: UserId) -> Result<i64, ReadError> {
    Ok(sqlx::query_scalar(
        "select count(*) from read.notifications where user_id = $1 and not read",
    )
    .bind(user_id.0)
    .fetch_one(db)
    .await?)
}
