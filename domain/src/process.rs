//! The process table of `shared/DOMAIN.md`: which event calls for which step on another
//! aggregate. It is the one place where the aggregates meet, so each aggregate knows only itself;
//! the command service runs these steps right after a command, and the process managers run them
//! from the log, both from [`follow_ups`].
//!
//! | on | send |
//! |---|---|
//! | ProposalAccepted | StartContract, OpenEscrow |
//! | FundsDeposited | MarkMilestoneFunded |
//! | MilestoneApproved | Release |
//! | DisputeOpened | Freeze |
//! | DisputeResolved | Settle |
//! | ContractCancelled | RefundUnreleased |
//!
//! The two timed rows (MilestoneSubmitted + review window → AutoApproveMilestone,
//! ContractCompleted + [`REVIEW_PERIOD_DAYS`](crate::contract::REVIEW_PERIOD_DAYS) → RevealReviews)
//! wait for a clock, so they are due timers of the process managers, not steps here.
//!
//! Every step is sent as [`Actor::system`] and stamped with `at`, the time of whoever runs it.

use chrono::{DateTime, Utc};

use crate::actor::Actor;
use crate::any_event::AnyEvent;
use crate::contract::{ContractCommand, ContractEvent};
use crate::escrow::{EscrowCloseReason, EscrowCommand, EscrowEvent, ScheduledMilestone};
use crate::gig::GigEvent;
use crate::ids::ContractId;

/// A step another aggregate must take because of an event. The escrow's stream id is its
/// contract's id, so both kinds are addressed by a [`ContractId`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FollowUp {
    /// A command to the contract with this id.
    Contract(ContractId, ContractCommand),
    /// A command to the escrow of the contract with this id.
    Escrow(ContractId, EscrowCommand),
}

impl FollowUp {
    /// The step's command, for messages (`Escrow.Release`).
    #[must_use]
    pub fn name(&self) -> String {
        let debug = match self {
            Self::Contract(_, c) => format!("Contract.{c:?}"),
            Self::Escrow(_, c) => format!("Escrow.{c:?}"),
        };
        debug
            .split([' ', '{', '('])
            .next()
            .unwrap_or_default()
            .to_owned()
    }
}

/// The steps an event of the stream `aggregate_id` calls for, in the table's order; empty for
/// an event that calls for none (or a contract or escrow stream id that is not a contract id).
#[must_use]
pub fn follow_ups(aggregate_id: &str, event: &AnyEvent, at: DateTime<Utc>) -> Vec<FollowUp> {
    match event {
        AnyEvent::Gig(event) => on_gig(event, at),
        AnyEvent::Contract(event) => aggregate_id
            .parse::<ContractId>()
            .ok()
            .and_then(|id| on_contract(event, at).map(|c| FollowUp::Escrow(id, c)))
            .into_iter()
            .collect(),
        AnyEvent::Escrow(event) => aggregate_id
            .parse::<ContractId>()
            .ok()
            .and_then(|id| on_escrow(event, at).map(|c| FollowUp::Contract(id, c)))
            .into_iter()
            .collect(),
    }
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

/// FundsDeposited → MarkMilestoneFunded.
fn on_escrow(event: &EscrowEvent, at: DateTime<Utc>) -> Option<ContractCommand> {
    match event {
        EscrowEvent::FundsDeposited { milestone_id, .. } => {
            Some(ContractCommand::MarkMilestoneFunded {
                milestone_id: *milestone_id,
                actor: Actor::system(),
                at,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::gig::MilestoneTerms;
    use crate::ids::{DisputeId, MilestoneId, ProposalId};
    use crate::money::Currency;
    use crate::test_support::*;

    fn m(n: u128) -> MilestoneId {
        MilestoneId(Uuid::from_u128(n))
    }

    fn id() -> String {
        contract_id().to_string()
    }

    fn steps(aggregate_id: &str, event: AnyEvent) -> Vec<FollowUp> {
        follow_ups(aggregate_id, &event, now())
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
}
