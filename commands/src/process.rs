//! Process managers: workers over the global log (the runtime of `projections`), one per row of
//! the process table in `shared/DOMAIN.md`, each with its own checkpoint. They send commands
//! instead of writing read models; every command carries the triggering event's id as
//! `causation_id`, and the domain answers a repeated step with no events, so handling an event
//! twice (after a crash, or after the command service already ran the step) changes nothing.
//!
//! The two timed rows (auto-approval, revealing reviews) write a row in `due_timers` in the same
//! transaction as their checkpoint; [`TimerRunner`] fires due rows by the injectable clock.
//!
//! A step that fails is judged ([`is_permanent`]): a refusal no retry can change (invalid or
//! forbidden, an id already taken, a broken invariant) stops the manager on that event with its
//! position and error, as a projection stops; anything else (another manager's step not done yet,
//! a conflict, the database, the gateway) is retried, and reported `stalled` when it lasts.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use gigledger_domain::{
    Actor, AnyEvent, ContractCommand, ContractError, ContractEvent, ContractId, ErrorKind,
    EscrowError, EscrowEvent, WalletError,
};
use gigledger_projections::log::RecordedEvent;
use gigledger_projections::runtime::{retry_later, Handler, HandlerError};
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::clock::Clock;
use crate::metadata::CommandMetadata;
use crate::services::{FollowUp, ServiceError, Services};

/// Which row of the process table a worker runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Process {
    /// ProposalAccepted → StartContract, OpenEscrow
    StartContract,
    /// FundsDeposited → MarkMilestoneFunded
    MarkFunded,
    /// MilestoneApproved → Release
    Release,
    /// DisputeOpened → Freeze
    Freeze,
    /// DisputeResolved → Settle
    Settle,
    /// ContractCancelled → RefundUnreleased
    Refund,
    /// MilestoneSubmitted → a due timer for AutoApproveMilestone
    AutoApproveTimer,
    /// ContractCompleted → a due timer for RevealReviews
    RevealReviewsTimer,
    /// ChargeVoided → void the key at the provider (finishes a void whose process died, or
    /// could not reach the provider, between recording it and voiding it)
    VoidCharge,
    /// FundsReleased → CreditEarnings on the freelancer's wallet
    CreditEarnings,
    /// PayoutRequested → the provider's transfer, then MarkPayoutPaid / MarkPayoutFailed
    PayoutTransfer,
    /// FundsRefunded → the provider's refund of the deposit's charge, then RecordRefundIssued /
    /// RecordRefundFailed
    CardRefund,
    /// RefundFailed → a due timer that tries the card refund again later (up to
    /// [`CARD_REFUND_ATTEMPTS`] failures, waiting longer after each)
    RetryCardRefundTimer,
}

/// How many refusals of one card refund are tried again; past them it stays failed, shown to
/// admins (`GET /v1/payouts?status=failed`).
pub const CARD_REFUND_ATTEMPTS: i64 = 5;

impl Process {
    pub const ALL: [Process; 13] = [
        Process::StartContract,
        Process::MarkFunded,
        Process::Release,
        Process::Freeze,
        Process::Settle,
        Process::Refund,
        Process::AutoApproveTimer,
        Process::RevealReviewsTimer,
        Process::VoidCharge,
        Process::CreditEarnings,
        Process::PayoutTransfer,
        Process::CardRefund,
        Process::RetryCardRefundTimer,
    ];

    /// The stored checkpoint name: never change it.
    pub fn name(self) -> &'static str {
        match self {
            Process::StartContract => "pm_start_contract",
            Process::MarkFunded => "pm_mark_funded",
            Process::Release => "pm_release",
            Process::Freeze => "pm_freeze",
            Process::Settle => "pm_settle",
            Process::Refund => "pm_refund",
            Process::AutoApproveTimer => "pm_auto_approve_timer",
            Process::RevealReviewsTimer => "pm_reveal_reviews_timer",
            Process::VoidCharge => "pm_void_charge",
            Process::CreditEarnings => "pm_credit_earnings",
            Process::PayoutTransfer => "pm_payout_transfer",
            Process::CardRefund => "pm_card_refund",
            Process::RetryCardRefundTimer => "pm_retry_card_refund_timer",
        }
    }

    /// The event type this process reacts to.
    fn trigger(self) -> &'static str {
        match self {
            Process::StartContract => "ProposalAccepted",
            Process::MarkFunded => "FundsDeposited",
            Process::Release => "MilestoneApproved",
            Process::Freeze => "DisputeOpened",
            Process::Settle => "DisputeResolved",
            Process::Refund => "ContractCancelled",
            Process::AutoApproveTimer => "MilestoneSubmitted",
            Process::RevealReviewsTimer => "ContractCompleted",
            Process::VoidCharge => "ChargeVoided",
            Process::CreditEarnings => "FundsReleased",
            Process::PayoutTransfer => "PayoutRequested",
            Process::CardRefund => "FundsRefunded",
            Process::RetryCardRefundTimer => "RefundFailed",
        }
    }
}

/// How many process managers' batches may be in flight at once in one process. Each holds its
/// batch's transaction and takes a second connection for its commands, so together they must
/// leave a connection free: fewer than the smallest pool the service runs on (5, a test's).
pub const BATCHES_IN_FLIGHT: usize = 3;

/// One process manager.
pub struct ProcessManager {
    process: Process,
    services: Arc<Services>,
    gate: Arc<tokio::sync::Semaphore>,
}

impl ProcessManager {
    /// One manager with a gate of its own.
    pub fn new(process: Process, services: Arc<Services>) -> Self {
        Self::gated(
            process,
            services,
            Arc::new(tokio::sync::Semaphore::new(BATCHES_IN_FLIGHT)),
        )
    }

    fn gated(process: Process, services: Arc<Services>, gate: Arc<tokio::sync::Semaphore>) -> Self {
        Self {
            process,
            services,
            gate,
        }
    }

    /// Every process manager, ready for the runtime, sharing one gate of
    /// [`BATCHES_IN_FLIGHT`] permits.
    pub fn all(services: &Arc<Services>) -> Vec<Arc<dyn Handler>> {
        Self::all_within(services, BATCHES_IN_FLIGHT)
    }

    /// The same, for a pool of `connections`: at most [`BATCHES_IN_FLIGHT`] batches at once,
    /// and always two connections fewer than the pool has (at least one batch).
    pub fn all_for_pool(services: &Arc<Services>, connections: u32) -> Vec<Arc<dyn Handler>> {
        let spare = usize::try_from(connections.saturating_sub(2)).unwrap_or(usize::MAX);
        Self::all_within(services, spare.clamp(1, BATCHES_IN_FLIGHT))
    }

    fn all_within(services: &Arc<Services>, permits: usize) -> Vec<Arc<dyn Handler>> {
        let gate = Arc::new(tokio::sync::Semaphore::new(permits));
        Process::ALL
            .into_iter()
            .map(|p| Arc::new(Self::gated(p, services.clone(), gate.clone())) as Arc<dyn Handler>)
            .collect()
    }
}

/// The metadata of a step caused by `event`: same request, the event as cause, the system as actor.
fn caused_by(event: &RecordedEvent, at: DateTime<Utc>) -> CommandMetadata {
    let correlation = event
        .metadata_str("correlation_id")
        .map_or_else(|| event.event_id.to_string(), str::to_owned);
    CommandMetadata::for_process(correlation, event.event_id, at)
}

#[async_trait::async_trait]
impl Handler for ProcessManager {
    fn name(&self) -> &str {
        self.process.name()
    }

    fn gate(&self) -> Option<Arc<tokio::sync::Semaphore>> {
        Some(self.gate.clone())
    }

    async fn handle(
        &self,
        tx: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), HandlerError> {
        for event in events {
            if event.event_type != self.process.trigger() {
                continue;
            }
            let Some(decoded) = AnyEvent::decode(
                &event.aggregate_type,
                &event.event_type,
                &event.event_version,
                &event.payload,
            )?
            else {
                continue;
            };
            let at = self.services.now();
            match (&self.process, &decoded) {
                (
                    Process::AutoApproveTimer,
                    AnyEvent::Contract(ContractEvent::MilestoneSubmitted {
                        milestone_id,
                        review_due_at,
                        ..
                    }),
                ) => {
                    let key = format!("auto_approve:{}:{}", event.aggregate_id, milestone_id);
                    schedule(
                        tx,
                        &key,
                        "auto_approve",
                        event,
                        Some(milestone_id.0),
                        *review_due_at,
                    )
                    .await?;
                }
                (
                    Process::RevealReviewsTimer,
                    AnyEvent::Contract(ContractEvent::ContractCompleted { completed_at }),
                ) => {
                    let key = format!("reveal_reviews:{}", event.aggregate_id);
                    let due = gigledger_domain::contract::review_period_ends_at(*completed_at)
                        .ok_or("review period end out of range")?;
                    schedule(tx, &key, "reveal_reviews", event, None, due).await?;
                }
                (
                    Process::RetryCardRefundTimer,
                    AnyEvent::Escrow(EscrowEvent::RefundFailed { milestone_id, .. }),
                ) => {
                    // The refusals so far, this one included (the log up to this event).
                    let refusals = card_refund_refusals(
                        &mut *tx,
                        &event.aggregate_id,
                        milestone_id.0,
                        event.sequence,
                    )
                    .await?;
                    if refusals <= CARD_REFUND_ATTEMPTS {
                        let wait = chrono::Duration::hours(1 << (refusals - 1).clamp(0, 10));
                        let key =
                            format!("retry_card_refund:{}:{}", event.aggregate_id, milestone_id);
                        schedule(
                            tx,
                            &key,
                            "retry_card_refund",
                            event,
                            Some(milestone_id.0),
                            event.recorded_at + wait,
                        )
                        .await?;
                    }
                }
                (
                    Process::VoidCharge,
                    AnyEvent::Escrow(EscrowEvent::ChargeVoided { charge_key, .. }),
                ) => {
                    // Voiding a voided key is a no-op at the provider, so a replay is harmless.
                    self.services
                        .void_at_provider(charge_key)
                        .await
                        .map_err(retry_later)?;
                }
                _ => {
                    let steps = self
                        .services
                        .follow_ups_of(&event.aggregate_id, event.event_id, &decoded, at)
                        .await
                        .map_err(retry_later)?;
                    for step in steps {
                        match self
                            .services
                            .run_follow_up(step, &caused_by(event, at))
                            .await
                        {
                            // Incomplete: this step is recorded; the steps its events call for
                            // belong to their own managers.
                            Ok(_) | Err(ServiceError::Incomplete { .. }) => {}
                            Err(e) if is_permanent(&e) => {
                                return Err(format!(
                                    "{} at position {} cannot be processed: {e}",
                                    event.event_type, event.position
                                )
                                .into())
                            }
                            // A step of another manager not done yet, a conflict, the database,
                            // the gateway: says nothing against the event.
                            Err(e) => return Err(retry_later(e)),
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Whether a step's failure is one no retry can change: the command is invalid or forbidden as
/// the event asks for it, names an id another aggregate already holds, or would break an
/// invariant. Anything else may be waiting for another manager (a contract not started yet, a
/// milestone not frozen yet), so it is retried rather than stopping every contract behind it.
fn is_permanent(error: &ServiceError) -> bool {
    let (kind, no_retry_changes_it) = match error {
        ServiceError::Gig(e) => (e.kind(), false),
        ServiceError::Contract(e) => (
            e.kind(),
            matches!(
                e,
                ContractError::ContractIdTaken | ContractError::DisputeIdTaken
            ),
        ),
        ServiceError::Escrow(e) => (
            e.kind(),
            matches!(
                e,
                EscrowError::EscrowIdTaken | EscrowError::InvariantViolated(_)
            ),
        ),
        ServiceError::Wallet(e) => (
            e.kind(),
            matches!(
                e,
                WalletError::PayoutIdTaken | WalletError::InvariantViolated(_)
            ),
        ),
        // A provider's refusal of a step is made into the step's failure event by the domain
        // (`after_transfer`, `after_refund`); one reaching here is the provider refusing what
        // the event asks, which no retry changes.
        ServiceError::ProviderRefused(_) => return true,
        ServiceError::Conflict { .. }
        | ServiceError::ProviderUnavailable(_)
        | ServiceError::Internal(_)
        | ServiceError::NotRecorded(_)
        | ServiceError::Incomplete { .. } => return false,
    };
    no_retry_changes_it || matches!(kind, ErrorKind::Validation | ErrorKind::Forbidden)
}

/// Sets (or moves, on resubmission) a timer. A later submission's due time replaces an earlier
/// one; firing at a stale time is harmless because the domain checks the window itself.
async fn schedule(
    tx: &mut PgConnection,
    key: &str,
    kind: &str,
    event: &RecordedEvent,
    milestone: Option<Uuid>,
    due_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let contract: Uuid = event
        .aggregate_id
        .parse()
        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let correlation = event
        .metadata_str("correlation_id")
        .map_or_else(|| event.event_id.to_string(), str::to_owned);
    sqlx::query(
        "insert into due_timers (timer_key, kind, contract_id, milestone_id, due_at, causation_id,
                                 correlation_id)
         values ($1, $2, $3, $4, $5, $6, $7)
         on conflict (timer_key) do update
            set due_at = excluded.due_at, causation_id = excluded.causation_id,
                correlation_id = excluded.correlation_id, fired_at = null,
                claimed_until = null, claim_id = null, attempts = 0, last_error = null
          where due_timers.causation_id <> excluded.causation_id",
    )
    .bind(key)
    .bind(kind)
    .bind(contract)
    .bind(milestone)
    .bind(due_at)
    .bind(event.event_id)
    .bind(correlation)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// How many `RefundFailed` the escrow `contract` holds for `milestone`, up to its event
/// `up_to_sequence`.
async fn card_refund_refusals<'e>(
    db: impl sqlx::PgExecutor<'e>,
    contract: &str,
    milestone: Uuid,
    up_to_sequence: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "select count(*) from events
          where aggregate_type = 'escrow' and aggregate_id = $1
            and event_type = 'RefundFailed' and sequence <= $2
            and payload->'RefundFailed'->>'milestone_id' = $3",
    )
    .bind(contract)
    .bind(up_to_sequence)
    .bind(milestone.to_string())
    .fetch_one(db)
    .await
}

/// Fires due timers by the injectable clock.
pub struct TimerRunner {
    pool: PgPool,
    services: Arc<Services>,
    clock: Arc<dyn Clock>,
}

impl TimerRunner {
    pub fn new(pool: PgPool, services: Arc<Services>, clock: Arc<dyn Clock>) -> Self {
        Self {
            pool,
            services,
            clock,
        }
    }

    /// Fires every timer due by the clock's now and returns how many fired. Each is claimed for a
    /// minute in one short statement (`for update skip locked`, so concurrent runners never take
    /// the same one), fired outside any transaction, then marked fired; a failure is recorded and
    /// retried after a pause that grows with each attempt, and the runner moves on. Both marks
    /// name the claim (its `claim_id`), not just the timer: if the process manager moved the
    /// timer meanwhile (a resubmission clears the claim), the new schedule is left to fire.
    pub async fn fire_due(&self) -> Result<usize, HandlerError> {
        let mut fired = 0;
        loop {
            let now = self.clock.now();
            let row = sqlx::query(
                "update due_timers
                    set claimed_until = $1 + interval '1 minute', attempts = attempts + 1,
                      claim_id = gen_random_uuid()
                  where timer_key = (
                        select timer_key from due_timers
                         where fired_at is null and due_at <= $1
                           and (claimed_until is null or claimed_until <= $1)
                         order by due_at
                         limit 1
                           for update skip locked)
                 returning timer_key, claim_id, kind, contract_id, milestone_id, causation_id,
                           correlation_id, attempts",
            )
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
            let Some(row) = row else {
                return Ok(fired);
            };
            let key: String = row.try_get("timer_key")?;
            let claim: Uuid = row.try_get("claim_id")?;
            let kind: String = row.try_get("kind")?;
            let contract = ContractId(row.try_get("contract_id")?);
            let milestone: Option<Uuid> = row.try_get("milestone_id")?;
            let causation: Uuid = row.try_get("causation_id")?;
            let correlation: String = row.try_get("correlation_id")?;
            let attempts: i32 = row.try_get("attempts")?;
            let metadata = CommandMetadata::for_process(correlation, causation, now);
            let retry = kind == "retry_card_refund";
            let fired_step = match (kind.as_str(), milestone) {
                ("retry_card_refund", Some(m)) => self.retry_card_refund(contract, m, now).await,
                ("auto_approve", Some(m)) => Ok(FollowUp::Contract(
                    contract,
                    ContractCommand::AutoApproveMilestone {
                        milestone_id: gigledger_domain::MilestoneId(m),
                        actor: Actor::system(),
                        at: now,
                    },
                )),
                _ => Ok(FollowUp::Contract(
                    contract,
                    ContractCommand::RevealReviews {
                        actor: Actor::system(),
                        at: now,
                    },
                )),
            };
            let ran = match (fired_step, milestone) {
                (Ok(step), Some(m)) if retry => {
                    let attempt = self.refusals(contract, m).await? + 1;
                    self.services
                        .retry_card_refund(step, attempt, &metadata)
                        .await
                }
                (Ok(step), _) => self.services.run_follow_up(step, &metadata).await,
                (Err(e), _) => Err(e),
            };
            match ran {
                Ok(_) => {
                    sqlx::query(
                        "update due_timers set fired_at = $3, last_error = null
                          where timer_key = $1 and claim_id = $2",
                    )
                    .bind(&key)
                    .bind(claim)
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                    fired += 1;
                }
                Err(e) => {
                    let pause = chrono::Duration::seconds(10 << attempts.clamp(0, 10));
                    tracing::warn!(timer.key = %key, attempt = attempts, error = %e, "timer failed; will retry");
                    sqlx::query(
                        "update due_timers set last_error = $3, claimed_until = $4
                          where timer_key = $1 and claim_id = $2",
                    )
                    .bind(&key)
                    .bind(claim)
                    .bind(e.to_string())
                    .bind(now + pause)
                    .execute(&self.pool)
                    .await?;
                }
            }
        }
    }

    /// How many times the provider refused the milestone's card refund so far.
    async fn refusals(&self, contract: ContractId, milestone: Uuid) -> Result<i64, sqlx::Error> {
        card_refund_refusals(&self.pool, &contract.to_string(), milestone, i64::MAX).await
    }

    /// The card refund of the milestone's `FundsRefunded`, made again under that event's key (so
    /// a refund the provider did make is met, never made twice).
    async fn retry_card_refund(
        &self,
        contract: ContractId,
        milestone: Uuid,
        now: DateTime<Utc>,
    ) -> Result<FollowUp, ServiceError> {
        let row: Option<(String, Uuid, String, String, serde_json::Value)> = sqlx::query_as(
            "select aggregate_id, event_id, event_type, event_version, payload from events
              where aggregate_type = 'escrow' and aggregate_id = $1
                and event_type = 'FundsRefunded'
                and payload->'FundsRefunded'->>'milestone_id' = $2
              order by sequence limit 1",
        )
        .bind(contract.to_string())
        .bind(milestone.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let Some((id, event_id, event_type, version, payload)) = row else {
            return Err(ServiceError::Internal(format!(
                "no refund of milestone {milestone} in escrow {contract} to try again"
            )));
        };
        let decoded = AnyEvent::decode("escrow", &event_type, &version, &payload)
            .map_err(|e| ServiceError::Internal(e.to_string()))?
            .ok_or_else(|| ServiceError::Internal("an escrow event that does not decode".into()))?;
        let steps = self
            .services
            .follow_ups_of(&id, event_id, &decoded, now)
            .await?;
        steps
            .into_iter()
            .find(|s| matches!(s, FollowUp::Refund { .. }))
            .ok_or_else(|| ServiceError::Internal("the refund has no card step".into()))
    }

    /// Fires due timers every `interval` until `shutdown` turns true.
    pub async fn run(
        self,
        interval: std::time::Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            if let Err(e) = self.fire_due().await {
                tracing::warn!(error = %e, "firing due timers failed; retrying");
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
