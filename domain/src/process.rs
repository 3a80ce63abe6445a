//! The process table of `shared/DOMAIN.md`: which event calls for which step on another
//! aggregate or at the payment provider. It is the one place where the aggregates meet, so each
//! aggregate knows only itself; the command service runs these steps right after a command, and
//! the process managers run them from the log, both from [`follow_ups`].
//!
//! | on | send |
//! |---|---|
//! | ProposalAccepted | StartContract, OpenEscrow |
//! | FundsDeposited | MarkMilestoneFunded |
//! | MilestoneApproved | Release |
//! | DisputeOpened | Freeze |
//! | DisputeResolved | Settle |
//! | ContractCancelled | RefundUnreleased |
//! | FundsReleased | CreditEarnings on the freelancer's wallet |
//! | PayoutRequested | provider transfer, then MarkPayoutPaid / MarkPayoutFailed |
//! | FundsRefunded | provider refund of the deposit's charge, then RecordRefundIssued / RecordRefundFailed |
//!
//! The two timed rows (MilestoneSubmitted + review window → AutoApproveMilestone,
//! ContractCompleted + [`REVIEW_PERIOD_DAYS`](crate::contract::REVIEW_PERIOD_DAYS) → RevealReviews)
//! wait for a clock, so they are due timers of the process managers, not steps here.
//!
//! The two provider rows are steps too ([`FollowUp::Transfer`], [`FollowUp::Refund`]): whoever
//! runs one calls the gateway with the request as given (its idempotency key derived from the
//! payout or the refund event, so a repeat or a crash between the call and its event meets the
//! first result), then runs the step [`after_transfer`] or [`after_refund`] makes of the answer.
//! A transient failure (unavailable, timeout) makes no step: the caller retries the call later.
//!
//! Every step is sent as [`Actor::system`] and stamped with `at`, the time of whoever runs it.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::actor::Actor;
use crate::any_event::AnyEvent;
use crate::contract::{ContractCommand, ContractEvent};
use crate::escrow::{
    Escrow, EscrowCloseReason, EscrowCommand, EscrowEvent, ScheduledMilestone,
    MAX_REFUND_FAILURE_CHARS,
};
use crate::gateway::{
    refund_key, transfer_key, GatewayError, RefundReceipt, RefundRequest, TransferReceipt,
    TransferReference, TransferRequest,
};
use crate::gig::GigEvent;
use crate::ids::{ContractId, MilestoneId, UserId};
use crate::wallet::{WalletCommand, WalletEvent, MAX_PAYOUT_FAILURE_CHARS};

/// A step another aggregate, or the payment provider, must take because of an event. The
/// escrow's stream id is its contract's id, so both kinds are addressed by a [`ContractId`]; a
/// wallet's is its freelancer's [`UserId`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FollowUp {
    /// A command to the contract with this id.
    Contract(ContractId, ContractCommand),
    /// A command to the escrow of the contract with this id.
    Escrow(ContractId, EscrowCommand),
    /// A command to the wallet of this freelancer.
    Wallet(UserId, WalletCommand),
    /// Ask the provider to transfer a payout of this freelancer's wallet; the answer becomes the
    /// wallet's next step through [`after_transfer`].
    Transfer(UserId, TransferRequest),
    /// Ask the provider to refund the deposit's charge of this escrow's milestone; the answer
    /// becomes the escrow's next step through [`after_refund`].
    Refund {
        /// The escrow's contract.
        contract_id: ContractId,
        /// The milestone whose refunded amount goes back to the card.
        milestone_id: MilestoneId,
        /// The provider request.
        request: RefundRequest,
    },
}

impl FollowUp {
    /// The step's command, for messages (`Escrow.Release`, `Provider.Transfer`).
    #[must_use]
    pub fn name(&self) -> String {
        let debug = match self {
            Self::Contract(_, c) => format!("Contract.{c:?}"),
            Self::Escrow(_, c) => format!("Escrow.{c:?}"),
            Self::Wallet(_, c) => format!("Wallet.{c:?}"),
            Self::Transfer(..) => "Provider.Transfer".to_owned(),
            Self::Refund { .. } => "Provider.Refund".to_owned(),
        };
        debug
            .split([' ', '{', '('])
            .next()
            .unwrap_or_default()
            .to_owned()
    }
}

/// The stored event steps follow, with what the steps need to know besides the event.
#[derive(Clone, Copy, Debug)]
pub struct Cause<'a> {
    /// The id of the event's stream.
    pub aggregate_id: &'a str,
    /// The stored event's id: the key of the steps that must happen once per event (the credit
    /// of a release, the card refund of a refund).
    pub event_id: Uuid,
    /// The event.
    pub event: &'a AnyEvent,
    /// For an escrow event, its escrow (loaded after the event): the rows on `FundsReleased`
    /// and `FundsRefunded` read the freelancer and the deposit's charge from it. Both are fixed
    /// once written, so any state after the event will do.
    pub escrow: Option<&'a Escrow>,
}

impl<'a> Cause<'a> {
    /// The event `event_id` of the stream `aggregate_id`, without an escrow.
    #[must_use]
    pub const fn new(aggregate_id: &'a str, event_id: Uuid, event: &'a AnyEvent) -> Self {
        Self {
            aggregate_id,
            event_id,
            event,
            escrow: None,
        }
    }

    /// The same cause with its escrow's state.
    #[must_use]
    pub const fn with_escrow(self, escrow: &'a Escrow) -> Self {
        Self {
            escrow: Some(escrow),
            ..self
        }
    }

    /// Whether [`follow_ups`] needs the escrow's state for this event.
    #[must_use]
    pub const fn needs_escrow(&self) -> bool {
        matches!(
            self.event,
            AnyEvent::Escrow(EscrowEvent::FundsReleased { .. } | EscrowEvent::FundsRefunded { .. })
        )
    }
}

/// Why the steps of an event cannot be formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// An escrow event whose steps read its escrow was given without it (or with another
    /// contract's).
    #[error("the steps of {event_type} need the state of the escrow of contract {aggregate_id}")]
    EscrowNeeded {
        /// The event's type.
        event_type: &'static str,
        /// The event's stream.
        aggregate_id: String,
    },
    /// A refund of a milestone whose deposit has no charge id in the escrow.
    #[error("milestone {milestone_id} was refunded but the escrow records no charge for it")]
    NoChargeRecorded {
        /// The milestone.
        milestone_id: MilestoneId,
    },
}

/// The steps an event calls for, in the table's order; empty for an event that calls for none
/// (or a stream id that is not the id its aggregate type uses).
pub fn follow_ups(cause: &Cause<'_>, at: DateTime<Utc>) -> Result<Vec<FollowUp>, StepError> {
    Ok(match cause.event {
        AnyEvent::Gig(event) => on_gig(event, at),
        AnyEvent::Contract(event) => cause
            .aggregate_id
            .parse::<ContractId>()
            .ok()
            .and_then(|id| on_contract(event, at).map(|c| FollowUp::Escrow(id, c)))
            .into_iter()
            .collect(),
        AnyEvent::Escrow(event) => match cause.aggregate_id.parse::<ContractId>() {
            Ok(id) => on_escrow(cause, id, event, at)?.into_iter().collect(),
            Err(_) => Vec::new(),
        },
        AnyEvent::Wallet(event) => cause
            .aggregate_id
            .parse::<UserId>()
            .ok()
            .and_then(|id| on_wallet(id, event))
            .into_iter()
            .collect(),
    })
}

/// ProposalAccepted → StartContract, OpenEscrow (both on the contract id chosen at acceptance).
fn on_gig(event: &GigEvent, at: DateTime<Utc>) -> Vec<FollowUp> {
    let GigEvent::ProposalAccepted {
        gig_id,
        proposal_id,
        contract_id,
        client_id,
        freelancer_id,
        milestones,
        terms,
        ..
    } = event
    else {
        return Vec::new();
    };
    let start = ContractCommand::StartContract {
        contract_id: *contract_id,
        gig_id: *gig_id,
        proposal_id: *proposal_id,
        client_id: *client_id,
        freelancer_id: *freelancer_id,
        currency: terms.currency,
        milestones: milestones.clone(),
        fee_bps: terms.fee_bps,
        review_window_days: terms.review_window_days,
        max_revisions: terms.max_revisions,
        actor: Actor::system(),
        at,
    };
    let open = EscrowCommand::OpenEscrow {
        contract_id: *contract_id,
        client_id: *client_id,
        freelancer_id: *freelancer_id,
        currency: terms.currency,
        milestones: milestones
            .iter()
            .map(|milestone| ScheduledMilestone {
                milestone_id: milestone.milestone_id,
                amount: milestone.amount,
            })
            .collect(),
        fee_bps: terms.fee_bps,
        actor: Actor::system(),
        at,
    };
    vec![
        FollowUp::Contract(*contract_id, start),
        FollowUp::Escrow(*contract_id, open),
    ]
}

/// MilestoneApproved → Release, DisputeOpened → Freeze, DisputeResolved → Settle,
/// ContractCancelled → RefundUnreleased (of exactly the milestones the contract cancelled).
fn on_contract(event: &ContractEvent, at: DateTime<Utc>) -> Option<EscrowCommand> {
    let actor = Actor::system();
    match event {
        ContractEvent::MilestoneApproved { milestone_id, .. } => Some(EscrowCommand::Release {
            milestone_id: *milestone_id,
            actor,
            at,
        }),
        ContractEvent::DisputeOpened { milestone_id, .. } => Some(EscrowCommand::Freeze {
            milestone_id: *milestone_id,
            actor,
            at,
        }),
        ContractEvent::DisputeResolved {
            milestone_id,
            release,
            refund,
            ..
        } => Some(EscrowCommand::Settle {
            milestone_id: *milestone_id,
            release: *release,
            refund: *refund,
            actor,
            at,
        }),
        ContractEvent::ContractCancelled {
            cancelled_milestones,
            ..
        } => Some(EscrowCommand::RefundUnreleased {
            milestones: cancelled_milestones.clone(),
            reason: EscrowCloseReason::ContractCancelled,
            actor,
            at,
        }),
        _ => None,
    }
}

/// FundsDeposited → MarkMilestoneFunded, FundsReleased → CreditEarnings on the escrow
/// freelancer's wallet (keyed by the release event), FundsRefunded → the provider refund of the
/// deposit's charge (keyed by the refund event).
fn on_escrow(
    cause: &Cause<'_>,
    contract_id: ContractId,
    event: &EscrowEvent,
    at: DateTime<Utc>,
) -> Result<Option<FollowUp>, StepError> {
    let escrow = || {
        cause
            .escrow
            .filter(|escrow| escrow.contract_id() == Some(contract_id))
            .ok_or_else(|| StepError::EscrowNeeded {
                event_type: match event {
                    EscrowEvent::FundsReleased { .. } => "FundsReleased",
                    _ => "FundsRefunded",
                },
                aggregate_id: cause.aggregate_id.to_owned(),
            })
    };
    Ok(match event {
        EscrowEvent::FundsDeposited { milestone_id, .. } => Some(FollowUp::Contract(
            contract_id,
            ContractCommand::MarkMilestoneFunded {
                milestone_id: *milestone_id,
                actor: Actor::system(),
                at,
            },
        )),
        EscrowEvent::FundsReleased {
            milestone_id, net, ..
        } => {
            let freelancer_id = escrow()?.freelancer_id().ok_or(StepError::EscrowNeeded {
                event_type: "FundsReleased",
                aggregate_id: cause.aggregate_id.to_owned(),
            })?;
            Some(FollowUp::Wallet(
                freelancer_id,
                WalletCommand::CreditEarnings {
                    freelancer_id,
                    release_event_id: cause.event_id,
                    contract_id,
                    milestone_id: *milestone_id,
                    net: *net,
                    actor: Actor::system(),
                    at,
                },
            ))
        }
        EscrowEvent::FundsRefunded {
            milestone_id,
            amount,
            ..
        } => {
            let charge_id =
                escrow()?
                    .charge_id(*milestone_id)
                    .ok_or(StepError::NoChargeRecorded {
                        milestone_id: *milestone_id,
                    })?;
            Some(FollowUp::Refund {
                contract_id,
                milestone_id: *milestone_id,
                request: RefundRequest {
                    idempotency_key: refund_key(cause.event_id),
                    charge_id: charge_id.to_owned(),
                    amount: *amount,
                },
            })
        }
        _ => None,
    })
}

/// PayoutRequested → the provider transfer, keyed by the payout.
fn on_wallet(freelancer_id: UserId, event: &WalletEvent) -> Option<FollowUp> {
    match event {
        WalletEvent::PayoutRequested {
            payout_id,
            amount,
            account_id,
            ..
        } => Some(FollowUp::Transfer(
            freelancer_id,
            TransferRequest {
                idempotency_key: transfer_key(*payout_id),
                account_id: account_id.clone(),
                amount: *amount,
                reference: TransferReference {
                    user_id: freelancer_id,
                    payout_id: *payout_id,
                },
            },
        )),
        _ => None,
    }
}

/// The provider's reason, cut to what a failure event keeps (a real provider's message may be
/// longer, and refusing it would leave the step undone).
fn failure_reason(error: &GatewayError, max_chars: usize) -> String {
    error.to_string().chars().take(max_chars).collect()
}

/// The wallet's step once the provider answered a [`FollowUp::Transfer`]: MarkPayoutPaid with
/// the transfer id, or MarkPayoutFailed when the provider refused (`Declined`, `Voided`).
/// `None` for a transient failure (`Unavailable`, `Timeout`): the transfer may have been made,
/// so the caller asks again under the same key later, and never fails the payout for it.
#[must_use]
pub fn after_transfer(
    request: &TransferRequest,
    answer: &Result<TransferReceipt, GatewayError>,
    at: DateTime<Utc>,
) -> Option<FollowUp> {
    let payout_id = request.reference.payout_id;
    let command = match answer {
        Ok(receipt) => WalletCommand::MarkPayoutPaid {
            payout_id,
            transfer_id: receipt.transfer_id.clone(),
            actor: Actor::system(),
            at,
        },
        Err(error @ (GatewayError::Declined(_) | GatewayError::Voided)) => {
            WalletCommand::MarkPayoutFailed {
                payout_id,
                reason: failure_reason(error, MAX_PAYOUT_FAILURE_CHARS),
                actor: Actor::system(),
                at,
            }
        }
        Err(GatewayError::Unavailable(_) | GatewayError::Timeout) => return None,
    };
    Some(FollowUp::Wallet(request.reference.user_id, command))
}

/// The escrow's step once the provider answered a [`FollowUp::Refund`]: RecordRefundIssued
/// with the refund id and the refunded amount, or RecordRefundFailed when the provider refused.
/// `None` for a transient failure: the caller asks again under the same key later.
#[must_use]
pub fn after_refund(
    contract_id: ContractId,
    milestone_id: MilestoneId,
    request: &RefundRequest,
    answer: &Result<RefundReceipt, GatewayError>,
    at: DateTime<Utc>,
) -> Option<FollowUp> {
    let command = match answer {
        Ok(receipt) => EscrowCommand::RecordRefundIssued {
            milestone_id,
            refund_id: receipt.refund_id.clone(),
            amount: request.amount,
            actor: Actor::system(),
            at,
        },
        Err(error @ (GatewayError::Declined(_) | GatewayError::Voided)) => {
            EscrowCommand::RecordRefundFailed {
                milestone_id,
                reason: failure_reason(error, MAX_REFUND_FAILURE_CHARS),
                actor: Actor::system(),
                at,
            }
        }
        Err(GatewayError::Unavailable(_) | GatewayError::Timeout) => return None,
    };
    Some(FollowUp::Escrow(contract_id, command))
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::gateway::Provider;
    use crate::gig::MilestoneTerms;
    use crate::ids::{DisputeId, MilestoneId, PayoutId, ProposalId};
    use crate::money::Currency;
    use crate::test_support::*;

    fn m(n: u128) -> MilestoneId {
        MilestoneId(Uuid::from_u128(n))
    }

    fn id() -> String {
        contract_id().to_string()
    }

    fn steps(aggregate_id: &str, event: AnyEvent) -> Vec<FollowUp> {
        follow_ups(
            &Cause::new(aggregate_id, Uuid::from_u128(77), &event),
            now(),
        )
        .unwrap()
    }

    #[test]
    fn an_accepted_proposal_starts_the_contract_and_opens_its_escrow() {
        let milestones = vec![MilestoneTerms {
            milestone_id: m(1),
            title: "Design".to_owned(),
            amount: usd(20_000),
            due_date: None,
        }];
        let accepted = GigEvent::ProposalAccepted {
            gig_id: gig_id(),
            proposal_id: ProposalId(Uuid::from_u128(200)),
            contract_id: contract_id(),
            client_id: client().user_id,
            freelancer_id: freelancer().user_id,
            milestones: milestones.clone(),
            terms: crate::ContractTerms {
                currency: Currency::USD,
                fee_bps: 1_000,
                review_window_days: 14,
                max_revisions: 2,
            },
            accepted_at: now(),
            posted_at: now(),
        };
        let expected = vec![
            FollowUp::Contract(
                contract_id(),
                ContractCommand::StartContract {
                    contract_id: contract_id(),
                    gig_id: gig_id(),
                    proposal_id: ProposalId(Uuid::from_u128(200)),
                    client_id: client().user_id,
                    freelancer_id: freelancer().user_id,
                    currency: Currency::USD,
                    milestones,
                    fee_bps: 1_000,
                    review_window_days: 14,
                    max_revisions: 2,
                    actor: system(),
                    at: now(),
                },
            ),
            FollowUp::Escrow(
                contract_id(),
                EscrowCommand::OpenEscrow {
                    contract_id: contract_id(),
                    client_id: client().user_id,
                    freelancer_id: freelancer().user_id,
                    currency: Currency::USD,
                    milestones: vec![ScheduledMilestone {
                        milestone_id: m(1),
                        amount: usd(20_000),
                    }],
                    fee_bps: 1_000,
                    actor: system(),
                    at: now(),
                },
            ),
        ];
        // The gig's stream id says nothing about the contract: the event carries it.
        assert_eq!(
            steps(&gig_id().to_string(), AnyEvent::Gig(accepted)),
            expected
        );
        let closed = GigEvent::GigClosed { closed_at: now() };
        assert_eq!(steps(&gig_id().to_string(), AnyEvent::Gig(closed)), vec![]);
    }

    #[test]
    fn a_deposit_marks_the_contracts_milestone_funded() {
        let deposited = EscrowEvent::FundsDeposited {
            milestone_id: m(1),
            amount: usd(20_000),
            charge_id: "sim_ch_000001".to_owned(),
            deposited_at: now(),
        };
        assert_eq!(
            steps(&id(), AnyEvent::Escrow(deposited)),
            vec![FollowUp::Contract(
                contract_id(),
                ContractCommand::MarkMilestoneFunded {
                    milestone_id: m(1),
                    actor: system(),
                    at: now(),
                }
            )]
        );
    }

    #[test]
    fn contract_events_become_the_matching_escrow_steps() {
        let escrow = |command| vec![FollowUp::Escrow(contract_id(), command)];
        let approved = ContractEvent::MilestoneApproved {
            milestone_id: m(1),
            amount: usd(20_000),
            auto: false,
            approved_at: now(),
        };
        assert_eq!(
            steps(&id(), AnyEvent::Contract(approved)),
            escrow(EscrowCommand::Release {
                milestone_id: m(1),
                actor: system(),
                at: now()
            })
        );
        let opened = ContractEvent::DisputeOpened {
            dispute_id: DisputeId(Uuid::from_u128(5)),
            milestone_id: m(1),
            opened_by: client().user_id,
            reason: "x".to_owned(),
            opened_at: now(),
        };
        assert_eq!(
            steps(&id(), AnyEvent::Contract(opened)),
            escrow(EscrowCommand::Freeze {
                milestone_id: m(1),
                actor: system(),
                at: now()
            })
        );
        let resolved = ContractEvent::DisputeResolved {
            dispute_id: DisputeId(Uuid::from_u128(5)),
            milestone_id: m(1),
            release: usd(5),
            refund: usd(7),
            resolved_by: admin().user_id,
            resolved_at: now(),
        };
        assert_eq!(
            steps(&id(), AnyEvent::Contract(resolved)),
            escrow(EscrowCommand::Settle {
                milestone_id: m(1),
                release: usd(5),
                refund: usd(7),
                actor: system(),
                at: now()
            })
        );
        let cancelled = ContractEvent::ContractCancelled {
            reason: "x".to_owned(),
            cancelled_by: client().user_id,
            cancelled_milestones: vec![m(2)],
            cancelled_at: now(),
        };
        assert_eq!(
            steps(&id(), AnyEvent::Contract(cancelled)),
            escrow(EscrowCommand::RefundUnreleased {
                milestones: vec![m(2)],
                reason: EscrowCloseReason::ContractCancelled,
                actor: system(),
                at: now()
            }),
            "the escrow refunds exactly the milestones the contract cancelled"
        );
    }

    #[test]
    fn events_outside_the_table_call_for_nothing() {
        let funded = ContractEvent::MilestoneFunded {
            milestone_id: m(1),
            funded_at: now(),
        };
        assert_eq!(steps(&id(), AnyEvent::Contract(funded)), vec![]);
        let completed = ContractEvent::ContractCompleted {
            completed_at: now(),
        };
        assert_eq!(steps(&id(), AnyEvent::Contract(completed)), vec![]);
        let frozen = EscrowEvent::FundsFrozen {
            milestone_id: m(1),
            amount: usd(1),
            frozen_at: now(),
        };
        assert_eq!(steps(&id(), AnyEvent::Escrow(frozen)), vec![]);
    }

    #[test]
    fn a_contract_event_on_a_stream_id_that_is_not_a_contract_id_calls_for_nothing() {
        let approved = ContractEvent::MilestoneApproved {
            milestone_id: m(1),
            amount: usd(1),
            auto: false,
            approved_at: now(),
        };
        assert_eq!(steps("not-a-uuid", AnyEvent::Contract(approved)), vec![]);
    }

    #[test]
    fn a_steps_name_is_its_aggregate_and_command() {
        let step = FollowUp::Escrow(
            contract_id(),
            EscrowCommand::Release {
                milestone_id: m(1),
                actor: system(),
                at: now(),
            },
        );
        assert_eq!(step.name(), "Escrow.Release");
    }

    // ---- the wallet and provider rows ----

    fn escrow_with_deposit() -> Escrow {
        use cqrs_es::Aggregate;
        let mut escrow = Escrow::default();
        escrow.apply(EscrowEvent::EscrowOpened {
            contract_id: contract_id(),
            client_id: client().user_id,
            freelancer_id: freelancer().user_id,
            currency: Currency::USD,
            milestones: vec![
                ScheduledMilestone {
                    milestone_id: m(1),
                    amount: usd(20_000),
                },
                ScheduledMilestone {
                    milestone_id: m(2),
                    amount: usd(5_000),
                },
            ],
            fee_bps: 1_000,
            opened_at: now(),
        });
        escrow.apply(EscrowEvent::FundsDeposited {
            milestone_id: m(1),
            amount: usd(20_000),
            charge_id: "sim_ch_000007".to_owned(),
            deposited_at: now(),
        });
        escrow
    }

    fn event_id() -> Uuid {
        Uuid::from_u128(77)
    }

    fn released() -> AnyEvent {
        AnyEvent::Escrow(EscrowEvent::FundsReleased {
            milestone_id: m(1),
            gross: usd(20_000),
            fee: usd(2_000),
            net: usd(18_000),
            released_at: now(),
        })
    }

    fn refunded(milestone: MilestoneId) -> AnyEvent {
        AnyEvent::Escrow(EscrowEvent::FundsRefunded {
            milestone_id: milestone,
            amount: usd(20_000),
            refunded_at: now(),
        })
    }

    fn with_escrow(event: &AnyEvent, escrow: &Escrow) -> Result<Vec<FollowUp>, StepError> {
        let id = id();
        follow_ups(
            &Cause::new(&id, event_id(), event).with_escrow(escrow),
            now(),
        )
    }

    #[test]
    fn a_release_credits_its_net_to_the_escrow_freelancers_wallet_keyed_by_the_release_event() {
        let escrow = escrow_with_deposit();
        let freelancer_id = freelancer().user_id;
        let steps = with_escrow(&released(), &escrow);
        assert_eq!(
            steps,
            Ok(vec![FollowUp::Wallet(
                freelancer_id,
                WalletCommand::CreditEarnings {
                    freelancer_id,
                    release_event_id: event_id(),
                    contract_id: contract_id(),
                    milestone_id: m(1),
                    net: usd(18_000),
                    actor: system(),
                    at: now(),
                }
            )])
        );
        assert_eq!(
            steps.ok().and_then(|s| s.first().map(FollowUp::name)),
            Some("Wallet.CreditEarnings".to_owned())
        );
    }

    #[test]
    fn the_escrow_rows_refuse_to_guess_without_their_escrow() {
        let id = id();
        for event in [released(), refunded(m(1))] {
            let cause = Cause::new(&id, event_id(), &event);
            assert!(cause.needs_escrow());
            assert!(matches!(
                follow_ups(&cause, now()),
                Err(StepError::EscrowNeeded { .. })
            ));
            // Another contract's escrow is no better.
            let other = ContractId(Uuid::from_u128(301)).to_string();
            let escrow = escrow_with_deposit();
            let cause = Cause::new(&other, event_id(), &event).with_escrow(&escrow);
            assert!(matches!(
                follow_ups(&cause, now()),
                Err(StepError::EscrowNeeded { .. })
            ));
        }
        let deposited = AnyEvent::Escrow(EscrowEvent::FundsDeposited {
            milestone_id: m(1),
            amount: usd(1),
            charge_id: "c".to_owned(),
            deposited_at: now(),
        });
        assert!(!Cause::new(&id, event_id(), &deposited).needs_escrow());
    }

    #[test]
    fn a_refund_asks_the_provider_to_refund_the_deposits_charge_keyed_by_the_refund_event() {
        let steps = with_escrow(&refunded(m(1)), &escrow_with_deposit());
        let expected = FollowUp::Refund {
            contract_id: contract_id(),
            milestone_id: m(1),
            request: RefundRequest {
                idempotency_key: format!("refund:{}", event_id()),
                charge_id: "sim_ch_000007".to_owned(),
                amount: usd(20_000),
            },
        };
        assert_eq!(steps, Ok(vec![expected.clone()]));
        assert_eq!(expected.name(), "Provider.Refund");
        assert_eq!(
            with_escrow(&refunded(m(2)), &escrow_with_deposit()),
            Err(StepError::NoChargeRecorded { milestone_id: m(2) })
        );
    }

    #[test]
    fn a_payout_request_asks_the_provider_to_transfer_keyed_by_the_payout() {
        let freelancer_id = freelancer().user_id;
        let payout_id = PayoutId(Uuid::from_u128(600));
        let requested = AnyEvent::Wallet(WalletEvent::PayoutRequested {
            payout_id,
            amount: usd(1_500),
            account_id: "sim_acct_000001".to_owned(),
            provider: Provider::Simulated,
            requested_at: now(),
        });
        let expected = FollowUp::Transfer(
            freelancer_id,
            TransferRequest {
                idempotency_key: format!("payout:{payout_id}"),
                account_id: "sim_acct_000001".to_owned(),
                amount: usd(1_500),
                reference: TransferReference {
                    user_id: freelancer_id,
                    payout_id,
                },
            },
        );
        assert_eq!(
            steps(&freelancer_id.to_string(), requested.clone()),
            vec![expected.clone()]
        );
        assert_eq!(expected.name(), "Provider.Transfer");
        assert_eq!(steps("not-a-uuid", requested), vec![]);
        let paid = AnyEvent::Wallet(WalletEvent::PayoutPaid {
            payout_id,
            amount: usd(1_500),
            transfer_id: "t".to_owned(),
            paid_at: now(),
        });
        assert_eq!(steps(&freelancer_id.to_string(), paid), vec![]);
    }

    fn transfer_request() -> TransferRequest {
        TransferRequest {
            idempotency_key: "payout:600".to_owned(),
            account_id: "sim_acct_000001".to_owned(),
            amount: usd(1_500),
            reference: TransferReference {
                user_id: freelancer().user_id,
                payout_id: PayoutId(Uuid::from_u128(600)),
            },
        }
    }

    #[test]
    fn a_transfer_answer_marks_the_payout_paid_or_failed_and_a_transient_failure_waits() {
        let request = transfer_request();
        let wallet = |command| Some(FollowUp::Wallet(freelancer().user_id, command));
        let receipt = Ok(TransferReceipt {
            transfer_id: "sim_tr_000001".to_owned(),
        });
        assert_eq!(
            after_transfer(&request, &receipt, now()),
            wallet(WalletCommand::MarkPayoutPaid {
                payout_id: PayoutId(Uuid::from_u128(600)),
                transfer_id: "sim_tr_000001".to_owned(),
                actor: system(),
                at: now(),
            })
        );
        let declined = Err(GatewayError::Declined("account closed".to_owned()));
        assert_eq!(
            after_transfer(&request, &declined, now()),
            wallet(WalletCommand::MarkPayoutFailed {
                payout_id: PayoutId(Uuid::from_u128(600)),
                reason: "the payment was declined: account closed".to_owned(),
                actor: system(),
                at: now(),
            })
        );
        for transient in [
            Err(GatewayError::Timeout),
            Err(GatewayError::Unavailable("down".to_owned())),
        ] {
            assert_eq!(after_transfer(&request, &transient, now()), None);
        }
        // A provider's long message still makes a reason the wallet accepts.
        let long = Err(GatewayError::Declined("x".repeat(5_000)));
        let Some(FollowUp::Wallet(_, WalletCommand::MarkPayoutFailed { reason, .. })) =
            after_transfer(&request, &long, now())
        else {
            panic!("a declined transfer fails the payout");
        };
        assert_eq!(reason.chars().count(), MAX_PAYOUT_FAILURE_CHARS);
    }

    #[test]
    fn a_refund_answer_records_the_card_refund_issued_or_failed_and_a_transient_failure_waits() {
        let request = RefundRequest {
            idempotency_key: "refund:77".to_owned(),
            charge_id: "sim_ch_000007".to_owned(),
            amount: usd(20_000),
        };
        let escrow = |command| Some(FollowUp::Escrow(contract_id(), command));
        let receipt = Ok(RefundReceipt {
            refund_id: "sim_re_000001".to_owned(),
        });
        assert_eq!(
            after_refund(contract_id(), m(1), &request, &receipt, now()),
            escrow(EscrowCommand::RecordRefundIssued {
                milestone_id: m(1),
                refund_id: "sim_re_000001".to_owned(),
                amount: usd(20_000),
                actor: system(),
                at: now(),
            })
        );
        let declined = Err(GatewayError::Declined("card expired".to_owned()));
        assert_eq!(
            after_refund(contract_id(), m(1), &request, &declined, now()),
            escrow(EscrowCommand::RecordRefundFailed {
                milestone_id: m(1),
                reason: "the payment was declined: card expired".to_owned(),
                actor: system(),
                at: now(),
            })
        );
        assert_eq!(
            after_refund(
                contract_id(),
                m(1),
                &request,
                &Err(GatewayError::Timeout),
                now()
            ),
            None
        );
    }
}
