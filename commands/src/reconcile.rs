//! Reconciliation of the payment provider with the ledger (`gigledger audit reconcile` and
//! `GET /v1/audit/reconcile`): its charges with the escrows' deposits, its refunds with the
//! escrows' `RefundIssued`, and its transfers with the wallets' `PayoutPaid`, per currency.
//!
//! Every charge that stands at the provider (not voided) must have exactly one `FundsDeposited`
//! of the same amount and currency, and every deposit must name a charge that stands. A mismatch
//! is money the ledger and the provider disagree on: a charge whose deposit was never recorded (a
//! crash between charging and appending, a void that did not reach the provider), a deposit whose
//! charge is unknown or was voided, an amount that differs, a charge recorded twice.
//!
//! It reads the simulated provider's records (`provider.charges`, kept by
//! [`crate::provider::PgSimulatedGateway`]) and the events themselves, never a read model, so it
//! holds whatever state the workers are in.

use serde::Serialize;
use sqlx::{PgPool, Row};

/// Every charge beside the deposits that name it: one row per (charge, deposit) pair, a charge
/// without deposit or a deposit without charge alone on its row.
const PAIRS: &str = "
    with deposits as (
        select aggregate_id as contract_id,
               payload->'FundsDeposited'->>'milestone_id' as milestone_id,
               payload->'FundsDeposited'->>'charge_id' as charge_id,
               (payload->'FundsDeposited'->'amount'->>'amount')::bigint as amount,
               -- codes are stored upper-case by the domain; compared as such
               payload->'FundsDeposited'->'amount'->>'currency' as currency
          from events
         where aggregate_type = 'escrow' and event_type = 'FundsDeposited'
    ), voids as (
        -- keys the escrow voided (ChargeVoided): a charge still standing under one is a void
        -- that never reached the provider
        select distinct payload->'ChargeVoided'->>'charge_key' as charge_key
          from events
         where aggregate_type = 'escrow' and event_type = 'ChargeVoided'
    ), charges as (
        -- a key voided before any charge was made under it holds no money
        select charge_id, idempotency_key, amount, currency, voided_at is not null as voided,
               contract_id::text as contract_id, milestone_id::text as milestone_id,
               exists (select 1 from voids where voids.charge_key = idempotency_key)
                   as voided_by_escrow
          from provider.charges
         where charge_id is not null
    )
    select c.charge_id as charge_id, c.idempotency_key, c.amount as charged,
           c.currency as charged_currency, coalesce(c.voided, false) as voided,
           c.contract_id as charged_contract, c.milestone_id as charged_milestone,
           coalesce(c.voided_by_escrow, false) as voided_by_escrow,
           d.charge_id as deposit_charge_id, d.contract_id, d.milestone_id,
           d.amount as deposited, d.currency as deposited_currency,
           count(d.charge_id) over (partition by d.charge_id) as deposits_of_charge
      from charges c
      full join deposits d on d.charge_id = c.charge_id
     order by coalesce(c.charge_id, d.charge_id), d.contract_id, d.milestone_id";

/// One disagreement between the provider and the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mismatch {
    /// A charge stands at the provider and no deposit records it. `voided_by_escrow`: the escrow
    /// recorded `ChargeVoided` for its key, so only the provider's void is missing (the process
    /// died, or the provider failed, between the two); void the key at the provider.
    ChargeWithoutDeposit {
        charge_id: String,
        idempotency_key: String,
        contract_id: Option<String>,
        milestone_id: Option<String>,
        amount: i64,
        currency: String,
        voided_by_escrow: bool,
    },
    /// A deposit names a charge the provider does not have.
    DepositWithoutCharge {
        charge_id: String,
        contract_id: String,
        milestone_id: String,
        amount: i64,
        currency: String,
    },
    /// A deposit names a charge the provider voided.
    DepositOfVoidedCharge {
        charge_id: String,
        contract_id: String,
        milestone_id: String,
        amount: i64,
        currency: String,
    },
    /// A deposit's amount or currency is not its charge's.
    AmountDiffers {
        charge_id: String,
        contract_id: String,
        milestone_id: String,
        charged: i64,
        charged_currency: String,
        deposited: i64,
        deposited_currency: String,
    },
    /// More than one deposit names the same charge.
    ChargeDepositedTwice { charge_id: String, deposits: i64 },
    /// A deposit names a charge that was made for another contract or milestone.
    ChargeOfAnotherMilestone {
        charge_id: String,
        contract_id: String,
        milestone_id: String,
        charged_contract: String,
        charged_milestone: String,
    },
    /// The provider refunded a card and no `RefundIssued` records it (the process manager died
    /// between the refund and its event, or has not run yet).
    RefundWithoutRecord {
        refund_id: String,
        amount: i64,
        currency: String,
    },
    /// A `RefundIssued` names a refund the provider does not have.
    RecordWithoutRefund {
        refund_id: String,
        contract_id: String,
        amount: i64,
        currency: String,
    },
    /// A refund's amount or currency is not its record's, or it is recorded more than once.
    RefundDiffers {
        refund_id: String,
        refunded: i64,
        recorded: i64,
        currency: String,
        records: i64,
    },
    /// The provider transferred to a payout account and no `PayoutPaid` records it.
    TransferWithoutPayout {
        transfer_id: String,
        amount: i64,
        currency: String,
    },
    /// A `PayoutPaid` names a transfer the provider does not have.
    PayoutWithoutTransfer {
        transfer_id: String,
        user_id: String,
        amount: i64,
        currency: String,
    },
    /// A transfer's amount or currency is not its payout's, or it is recorded more than once.
    TransferDiffers {
        transfer_id: String,
        transferred: i64,
        recorded: i64,
        currency: String,
        records: i64,
    },
    /// The provider reports a transfer failed and the wallet still counts the payout paid.
    FailedTransferStillPaid {
        transfer_id: String,
        user_id: String,
    },
    /// The provider's transfer stands paid and the wallet counts the payout failed (its money
    /// available again): paid out twice if it leaves again.
    PaidTransferCountedFailed {
        transfer_id: String,
        user_id: String,
    },
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ChargeWithoutDeposit {
                charge_id,
                idempotency_key,
                contract_id,
                milestone_id,
                amount,
                currency,
                voided_by_escrow,
            } => write!(
                f,
                "charge {charge_id} ({amount} {currency}, key {idempotency_key}, contract {}, \
                 milestone {}) stands at the provider and no deposit records it{}",
                contract_id.as_deref().unwrap_or("?"),
                milestone_id.as_deref().unwrap_or("?"),
                if *voided_by_escrow {
                    "; the escrow voided its key, so void it at the provider"
                } else {
                    ""
                },
            ),
            Self::DepositWithoutCharge {
                charge_id,
                contract_id,
                milestone_id,
                amount,
                currency,
            } => write!(
                f,
                "deposit of {amount} {currency} for contract {contract_id} milestone \
                 {milestone_id} names charge {charge_id}, which the provider does not have"
            ),
            Self::DepositOfVoidedCharge {
                charge_id,
                contract_id,
                milestone_id,
                amount,
                currency,
            } => write!(
                f,
                "deposit of {amount} {currency} for contract {contract_id} milestone \
                 {milestone_id} names charge {charge_id}, which the provider voided"
            ),
            Self::AmountDiffers {
                charge_id,
                contract_id,
                milestone_id,
                charged,
                charged_currency,
                deposited,
                deposited_currency,
            } => write!(
                f,
                "charge {charge_id} took {charged} {charged_currency} but its deposit for \
                 contract {contract_id} milestone {milestone_id} holds {deposited} \
                 {deposited_currency}"
            ),
            Self::ChargeDepositedTwice {
                charge_id,
                deposits,
            } => write!(f, "charge {charge_id} is recorded by {deposits} deposits"),
            Self::ChargeOfAnotherMilestone {
                charge_id,
                contract_id,
                milestone_id,
                charged_contract,
                charged_milestone,
            } => write!(
                f,
                "the deposit for contract {contract_id} milestone {milestone_id} names charge \
                 {charge_id}, which was made for contract {charged_contract} milestone \
                 {charged_milestone}"
            ),
            Self::RefundWithoutRecord {
                refund_id,
                amount,
                currency,
            } => write!(
                f,
                "refund {refund_id} of {amount} {currency} reached a card and no RefundIssued \
                 records it"
            ),
            Self::RecordWithoutRefund {
                refund_id,
                contract_id,
                amount,
                currency,
            } => write!(
                f,
                "RefundIssued of {amount} {currency} on contract {contract_id} names refund \
                 {refund_id}, which the provider does not have"
            ),
            Self::RefundDiffers {
                refund_id,
                refunded,
                recorded,
                currency,
                records,
            } => write!(
                f,
                "refund {refund_id} gave back {refunded} {currency}; {records} RefundIssued \
                 record {recorded}"
            ),
            Self::TransferWithoutPayout {
                transfer_id,
                amount,
                currency,
            } => write!(
                f,
                "transfer {transfer_id} of {amount} {currency} left the platform and no \
                 PayoutPaid records it"
            ),
            Self::PayoutWithoutTransfer {
                transfer_id,
                user_id,
                amount,
                currency,
            } => write!(
                f,
                "PayoutPaid of {amount} {currency} to {user_id} names transfer {transfer_id}, \
                 which the provider does not have"
            ),
            Self::TransferDiffers {
                transfer_id,
                transferred,
                recorded,
                currency,
                records,
            } => write!(
                f,
                "transfer {transfer_id} sent {transferred} {currency}; {records} PayoutPaid \
                 record {recorded}"
            ),
            Self::PaidTransferCountedFailed {
                transfer_id,
                user_id,
            } => write!(
                f,
                "transfer {transfer_id} stands paid at the provider and {user_id}'s wallet \
                 counts it failed, its money available again"
            ),
            Self::FailedTransferStillPaid {
                transfer_id,
                user_id,
            } => write!(
                f,
                "transfer {transfer_id} failed at the provider and {user_id}'s wallet still \
                 counts it paid"
            ),
        }
    }
}

/// What reconciliation found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Reconciliation {
    /// Charges (voided ones included) and deposits looked at, each pair counted once.
    pub checked: usize,
    /// Every disagreement, in charge id order.
    pub mismatches: Vec<Mismatch>,
}

impl Reconciliation {
    /// No disagreement.
    pub fn ok(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// Every provider refund beside the `RefundIssued` that name it.
const REFUND_PAIRS: &str = "
    with issued as (
        select aggregate_id as contract_id,
               payload->'RefundIssued'->>'refund_id' as refund_id,
               (payload->'RefundIssued'->'amount'->>'amount')::bigint as amount,
               payload->'RefundIssued'->'amount'->>'currency' as currency
          from events
         where aggregate_type = 'escrow' and event_type = 'RefundIssued'
    ), recorded as (
        select refund_id, min(contract_id) as contract_id, sum(amount)::bigint as amount,
               min(currency) as currency, count(*) as records
          from issued group by refund_id
    )
    select r.refund_id, r.amount as refunded, r.currency as refunded_currency,
           i.refund_id as recorded_id, i.contract_id, i.amount as recorded,
           i.currency as recorded_currency, coalesce(i.records, 0) as records
      from (select refund_id, amount, currency from provider.refunds
             where status = 'succeeded') as r
      full join recorded i on i.refund_id = r.refund_id
     order by coalesce(r.refund_id, i.refund_id)";

/// Every provider transfer beside the `PayoutPaid` that name it, and whether the payout failed
/// since.
const TRANSFER_PAIRS: &str = "
    with paid as (
        select aggregate_id as user_id,
               payload->'PayoutPaid'->>'payout_id' as payout_id,
               payload->'PayoutPaid'->>'transfer_id' as transfer_id,
               (payload->'PayoutPaid'->'amount'->>'amount')::bigint as amount,
               payload->'PayoutPaid'->'amount'->>'currency' as currency
          from events
         where aggregate_type = 'wallet' and event_type = 'PayoutPaid'
    ), failed as (
        select aggregate_id as user_id, payload->'PayoutFailed'->>'payout_id' as payout_id
          from events
         where aggregate_type = 'wallet' and event_type = 'PayoutFailed'
    ), recorded as (
        select transfer_id, min(user_id) as user_id, sum(amount)::bigint as amount,
               min(currency) as currency, count(*) as records,
               bool_or(exists (select 1 from failed f
                                where f.user_id = paid.user_id and f.payout_id = paid.payout_id))
                   as payout_failed
          from paid group by transfer_id
    )
    select t.transfer_id, t.amount as transferred, t.currency as transferred_currency,
           t.status, p.transfer_id as recorded_id, p.user_id, p.amount as recorded,
           p.currency as recorded_currency, coalesce(p.records, 0) as records,
           coalesce(p.payout_failed, false) as payout_failed,
           -- the payout the transfer was made for (its key is `payout:{id}`) failed, whatever
           -- the wallet recorded before
           exists (select 1 from failed f
                    where 'payout:' || f.payout_id = t.idempotency_key) as failed_by_key
      from provider.transfers t
      full join recorded p on p.transfer_id = t.transfer_id
     order by coalesce(t.transfer_id, p.transfer_id)";

/// Matches every provider charge with the deposits that name it, every refund with its
/// `RefundIssued`, and every transfer with its `PayoutPaid`.
pub async fn reconcile(pool: &PgPool) -> Result<Reconciliation, sqlx::Error> {
    let mut result = reconcile_charges(pool).await?;
    let refunds = sqlx::query(REFUND_PAIRS).fetch_all(pool).await?;
    result.checked += refunds.len();
    for row in &refunds {
        let refund: Option<String> = row.try_get("refund_id")?;
        let recorded: Option<String> = row.try_get("recorded_id")?;
        match (refund, recorded) {
            (Some(refund_id), None) => result.mismatches.push(Mismatch::RefundWithoutRecord {
                refund_id,
                amount: row.try_get("refunded")?,
                currency: row.try_get("refunded_currency")?,
            }),
            (None, Some(refund_id)) => result.mismatches.push(Mismatch::RecordWithoutRefund {
                refund_id,
                contract_id: row.try_get("contract_id")?,
                amount: row.try_get("recorded")?,
                currency: row.try_get("recorded_currency")?,
            }),
            (Some(refund_id), Some(_)) => {
                let refunded: i64 = row.try_get("refunded")?;
                let recorded: i64 = row.try_get("recorded")?;
                let currency: String = row.try_get("refunded_currency")?;
                let recorded_currency: String = row.try_get("recorded_currency")?;
                let records: i64 = row.try_get("records")?;
                if refunded != recorded || currency != recorded_currency || records != 1 {
                    result.mismatches.push(Mismatch::RefundDiffers {
                        refund_id,
                        refunded,
                        recorded,
                        currency,
                        records,
                    });
                }
            }
            (None, None) => {}
        }
    }
    let transfers = sqlx::query(TRANSFER_PAIRS).fetch_all(pool).await?;
    result.checked += transfers.len();
    for row in &transfers {
        let transfer: Option<String> = row.try_get("transfer_id")?;
        let recorded: Option<String> = row.try_get("recorded_id")?;
        match (transfer, recorded) {
            (Some(transfer_id), None) => {
                // A transfer that failed at the provider, for a payout the wallet failed: no
                // money left (a notice failed the payout before its PayoutPaid).
                let status: String = row.try_get("status")?;
                if !(status == "failed" && row.try_get::<bool, _>("failed_by_key")?) {
                    result.mismatches.push(Mismatch::TransferWithoutPayout {
                        transfer_id,
                        amount: row.try_get("transferred")?,
                        currency: row.try_get("transferred_currency")?,
                    });
                }
            }
            (None, Some(transfer_id)) => {
                result.mismatches.push(Mismatch::PayoutWithoutTransfer {
                    transfer_id,
                    user_id: row.try_get("user_id")?,
                    amount: row.try_get("recorded")?,
                    currency: row.try_get("recorded_currency")?,
                });
            }
            (Some(transfer_id), Some(_)) => {
                let transferred: i64 = row.try_get("transferred")?;
                let recorded: i64 = row.try_get("recorded")?;
                let currency: String = row.try_get("transferred_currency")?;
                let recorded_currency: String = row.try_get("recorded_currency")?;
                let records: i64 = row.try_get("records")?;
                if transferred != recorded || currency != recorded_currency || records != 1 {
                    result.mismatches.push(Mismatch::TransferDiffers {
                        transfer_id: transfer_id.clone(),
                        transferred,
                        recorded,
                        currency,
                        records,
                    });
                }
                let status: String = row.try_get("status")?;
                let payout_failed: bool = row.try_get("payout_failed")?;
                if status == "failed" && !payout_failed {
                    result.mismatches.push(Mismatch::FailedTransferStillPaid {
                        transfer_id,
                        user_id: row.try_get("user_id")?,
                    });
                } else if status == "paid" && payout_failed {
                    result.mismatches.push(Mismatch::PaidTransferCountedFailed {
                        transfer_id,
                        user_id: row.try_get("user_id")?,
                    });
                }
            }
            (None, None) => {}
        }
    }
    Ok(result)
}

/// Matches every provider charge with the deposits that name it.
async fn reconcile_charges(pool: &PgPool) -> Result<Reconciliation, sqlx::Error> {
    let rows = sqlx::query(PAIRS).fetch_all(pool).await?;
    let mut result = Reconciliation {
        checked: rows.len(),
        mismatches: Vec::new(),
    };
    let mut twice_reported: Option<String> = None;
    for row in &rows {
        let charge: Option<String> = row.try_get("charge_id")?;
        let deposit: Option<String> = row.try_get("deposit_charge_id")?;
        let voided: bool = row.try_get("voided")?;
        let deposits_of_charge: i64 = row.try_get("deposits_of_charge")?;
        let deposit_side = || -> Result<(String, String, i64, String), sqlx::Error> {
            Ok((
                row.try_get("contract_id")?,
                row.try_get::<Option<String>, _>("milestone_id")?
                    .unwrap_or_default(),
                row.try_get::<Option<i64>, _>("deposited")?
                    .unwrap_or_default(),
                row.try_get::<Option<String>, _>("deposited_currency")?
                    .unwrap_or_default(),
            ))
        };
        match (charge, deposit) {
            (Some(charge_id), None) => {
                if !voided {
                    result.mismatches.push(Mismatch::ChargeWithoutDeposit {
                        charge_id,
                        idempotency_key: row.try_get("idempotency_key")?,
                        contract_id: row.try_get("charged_contract")?,
                        milestone_id: row.try_get("charged_milestone")?,
                        amount: row.try_get("charged")?,
                        currency: row.try_get("charged_currency")?,
                        voided_by_escrow: row.try_get("voided_by_escrow")?,
                    });
                }
            }
            (None, Some(charge_id)) => {
                let (contract_id, milestone_id, amount, currency) = deposit_side()?;
                result.mismatches.push(Mismatch::DepositWithoutCharge {
                    charge_id,
                    contract_id,
                    milestone_id,
                    amount,
                    currency,
                });
            }
            (Some(charge_id), Some(_)) => {
                let (contract_id, milestone_id, deposited, deposited_currency) = deposit_side()?;
                let charged: i64 = row.try_get("charged")?;
                let charged_currency: String = row.try_get("charged_currency")?;
                if deposits_of_charge > 1 && twice_reported.as_ref() != Some(&charge_id) {
                    twice_reported = Some(charge_id.clone());
                    result.mismatches.push(Mismatch::ChargeDepositedTwice {
                        charge_id: charge_id.clone(),
                        deposits: deposits_of_charge,
                    });
                }
                let charged_contract: Option<String> = row.try_get("charged_contract")?;
                let charged_milestone: Option<String> = row.try_get("charged_milestone")?;
                if charged_contract.as_deref() != Some(contract_id.as_str())
                    || charged_milestone.as_deref() != Some(milestone_id.as_str())
                {
                    result.mismatches.push(Mismatch::ChargeOfAnotherMilestone {
                        charge_id: charge_id.clone(),
                        contract_id: contract_id.clone(),
                        milestone_id: milestone_id.clone(),
                        charged_contract: charged_contract.unwrap_or_default(),
                        charged_milestone: charged_milestone.unwrap_or_default(),
                    });
                }
                if voided {
                    result.mismatches.push(Mismatch::DepositOfVoidedCharge {
                        charge_id,
                        contract_id,
                        milestone_id,
                        amount: deposited,
                        currency: deposited_currency,
                    });
                } else if charged != deposited || charged_currency != deposited_currency {
                    result.mismatches.push(Mismatch::AmountDiffers {
                        charge_id,
                        contract_id,
                        milestone_id,
                        charged,
                        charged_currency,
                        deposited,
                        deposited_currency,
                    });
                }
            }
            // A full join never yields a row with neither side.
            (None, None) => {}
        }
    }
    Ok(result)
}
