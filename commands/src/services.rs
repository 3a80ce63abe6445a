//! Command services: the one entry point for every command, whoever sends it.
//!
//! A service call loads the aggregate, lets the domain decide (authorisation included: the
//! command carries its actor), appends, and then runs the follow-up steps the committed events
//! call for (`shared/API.md`, "Effects across aggregates are complete when a command answers"), so
//! the caller's next step works at once. The answer's `position` covers every event written,
//! follow-ups included. The process managers ([`crate::process`]) run the same follow-ups from the
//! log; whichever comes second finds the work done (the domain treats repeated process commands as
//! no-ops), so a crash between the steps is completed exactly once.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cqrs_es::{AggregateContext, EventStore};
use gigledger_domain::gateway::{
    OnboardReceipt, OnboardRequest, RefundReceipt, RefundRequest, TransferReceipt, TransferRequest,
};
use gigledger_domain::process::{after_refund, after_transfer, Cause};
use gigledger_domain::{
    Actor, AnyEvent, Authorise, Contract, ContractCommand, ContractError, ContractId, DomainError,
    ErrorKind, Escrow, EscrowCommand, EscrowError, EscrowEvent, EscrowServices, GatewayError, Gig,
    GigCommand, GigError, GigId, MilestoneId, PaymentGateway, UserId, Wallet, WalletCommand,
    WalletError,
};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::bus::{CommandBus, CommandError, Committed};
use crate::clock::Clock;
use crate::metadata::CommandMetadata;
use crate::store::{PgEventRepository, StoreConfig};

/// How the services are set up.
#[derive(Clone, Debug)]
pub struct ServicesConfig {
    /// Platform fee in basis points, fixed into each contract's terms when a proposal is accepted.
    pub fee_bps: u32,
    /// Days a client has to review a submitted milestone before it is approved automatically.
    pub review_window_days: u32,
    /// Change requests allowed per milestone.
    pub max_revisions: u32,
    /// How long a charge may take before it counts as failed (nothing is written then).
    pub gateway_timeout: Duration,
    /// Storage of each aggregate type.
    pub gig_store: StoreConfig,
    pub contract_store: StoreConfig,
    pub escrow_store: StoreConfig,
    pub wallet_store: StoreConfig,
    /// Run follow-up steps before answering (off only in tests that simulate a crash between the
    /// steps, leaving the follow-ups to the process managers).
    pub run_follow_ups: bool,
}

impl Default for ServicesConfig {
    fn default() -> Self {
        Self {
            fee_bps: gigledger_domain::contract::DEFAULT_FEE_BPS,
            review_window_days: gigledger_domain::contract::DEFAULT_REVIEW_WINDOW_DAYS,
            max_revisions: gigledger_domain::contract::DEFAULT_MAX_REVISIONS,
            gateway_timeout: Duration::from_secs(10),
            gig_store: StoreConfig::default(),
            contract_store: StoreConfig::default(),
            escrow_store: StoreConfig::default(),
            wallet_store: StoreConfig::default(),
            run_follow_ups: true,
        }
    }
}

/// Who asked, within which request, expecting which version.
#[derive(Clone, Debug, Default)]
pub struct RequestContext {
    /// `X-Request-Id`, or a new id.
    pub correlation_id: Option<String>,
    /// `If-Match`: the aggregate's version the caller decided on.
    pub expected_version: Option<u64>,
}

impl RequestContext {
    pub fn new() -> Self {
        Self::default()
    }
}

/// What a successful command answers: `{ id, version, position }` of API.md.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// The aggregate the command was sent to.
    pub id: String,
    /// Its version after the command.
    pub version: u64,
    /// The global position of the last event written by the command and its follow-ups (`None`
    /// when nothing was written).
    pub position: Option<i64>,
    /// The types of the events the command itself wrote.
    pub events: Vec<String>,
}

impl Outcome {
    /// A step that found its work done: the aggregate at `version`, nothing written.
    fn nothing_written(id: String, version: u64) -> Self {
        Self {
            id,
            version,
            position: None,
            events: Vec::new(),
        }
    }
}

/// Why a command did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Gig(#[from] GigError),
    #[error(transparent)]
    Contract(#[from] ContractError),
    #[error(transparent)]
    Escrow(#[from] EscrowError),
    #[error(transparent)]
    Wallet(#[from] WalletError),
    /// The payment provider could not be reached or did not answer in time; nothing was
    /// recorded, and the step is retried (by the caller, or the process manager).
    #[error("the payment provider is unavailable: {0}")]
    ProviderUnavailable(GatewayError),
    /// The payment provider refused the request (onboarding declined, say); nothing was
    /// recorded, and the same request will be refused again.
    #[error("the payment provider refused: {0}")]
    ProviderRefused(GatewayError),
    /// A stale `If-Match`, or an aggregate that kept changing under every retry.
    #[error("the {aggregate_type} changed meanwhile; reload it and try again")]
    Conflict { aggregate_type: &'static str },
    /// Storage failed: not the caller's fault. The command may have been recorded.
    #[error("internal error: {0}")]
    Internal(String),
    /// Storage failed before anything of the command was recorded (a statement timeout, a
    /// deadlock, no connection, …): not the caller's fault, and retrying is safe.
    #[error("storage failed and nothing was recorded: {0}")]
    NotRecorded(String),
    /// The command itself was recorded, but a follow-up step it calls for failed. The process
    /// managers will complete the step; until then its effects are not all visible.
    #[error("the command was recorded but its follow-up step {step} failed: {cause}")]
    Incomplete {
        outcome: Box<Outcome>,
        step: String,
        cause: String,
    },
}

impl ServiceError {
    /// How the API should classify it (`None`: an internal failure).
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            Self::Gig(e) => Some(e.kind()),
            Self::Contract(e) => Some(e.kind()),
            Self::Escrow(e) => Some(e.kind()),
            Self::Wallet(e) => Some(e.kind()),
            Self::Conflict { .. } | Self::ProviderRefused(_) => Some(ErrorKind::Conflict),
            Self::ProviderUnavailable(_)
            | Self::Internal(_)
            | Self::NotRecorded(_)
            | Self::Incomplete { .. } => None,
        }
    }

    /// The input field a validation error is about.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::Gig(e) => DomainError::field(e),
            Self::Contract(e) => DomainError::field(e),
            Self::Escrow(e) => DomainError::field(e),
            Self::Wallet(e) => DomainError::field(e),
            Self::Conflict { .. }
            | Self::ProviderUnavailable(_)
            | Self::ProviderRefused(_)
            | Self::Internal(_)
            | Self::NotRecorded(_)
            | Self::Incomplete { .. } => None,
        }
    }
}

fn from_bus<E>(e: CommandError<E>) -> ServiceError
where
    E: std::error::Error + Into<ServiceError>,
{
    match e {
        CommandError::Rejected(e) => e.into(),
        CommandError::Conflict { aggregate_type } => ServiceError::Conflict { aggregate_type },
        CommandError::Store(message) => ServiceError::Internal(message),
        CommandError::NotCommitted(message) => ServiceError::NotRecorded(message),
    }
}

/// The process table of `shared/DOMAIN.md` (the timer rows aside) lives in the domain; the
/// services run its steps right after a command and the process managers from the log.
pub use gigledger_domain::process::{follow_ups, FollowUp};

/// Bounds every charge in time: a gateway that hangs becomes `GatewayError::Timeout`, and the
/// deposit writes nothing.
struct TimeoutGateway {
    inner: Arc<dyn PaymentGateway>,
    timeout: Duration,
}

tokio::task_local! {
    /// Set when a deposit command, in the scope of [`Services::escrow`], asked the provider to
    /// charge: only then can a refused or failed deposit have left a charge to void.
    static CHARGE_ASKED: std::cell::Cell<bool>;
}

#[async_trait::async_trait]
impl PaymentGateway for TimeoutGateway {
    async fn charge(
        &self,
        request: gigledger_domain::ChargeRequest,
    ) -> Result<gigledger_domain::ChargeReceipt, GatewayError> {
        let _outside_a_deposit = CHARGE_ASKED.try_with(|asked| asked.set(true));
        tokio::time::timeout(self.timeout, self.inner.charge(request))
            .await
            .unwrap_or(Err(GatewayError::Timeout))
    }

    async fn void(&self, idempotency_key: &str) -> Result<(), GatewayError> {
        tokio::time::timeout(self.timeout, self.inner.void(idempotency_key))
            .await
            .unwrap_or(Err(GatewayError::Timeout))
    }

    async fn onboard(&self, request: OnboardRequest) -> Result<OnboardReceipt, GatewayError> {
        tokio::time::timeout(self.timeout, self.inner.onboard(request))
            .await
            .unwrap_or(Err(GatewayError::Timeout))
    }

    async fn transfer(&self, request: TransferRequest) -> Result<TransferReceipt, GatewayError> {
        tokio::time::timeout(self.timeout, self.inner.transfer(request))
            .await
            .unwrap_or(Err(GatewayError::Timeout))
    }

    async fn refund(&self, request: RefundRequest) -> Result<RefundReceipt, GatewayError> {
        tokio::time::timeout(self.timeout, self.inner.refund(request))
            .await
            .unwrap_or(Err(GatewayError::Timeout))
    }
}

/// Every command of the system, with its follow-ups.
pub struct Services {
    gigs: CommandBus<Gig>,
    contracts: CommandBus<Contract>,
    escrows: CommandBus<Escrow>,
    wallets: CommandBus<Wallet>,
    gateway: Arc<dyn PaymentGateway>,
    clock: Arc<dyn Clock>,
    config: ServicesConfig,
}

impl Services {
    pub fn new(
        pool: PgPool,
        config: ServicesConfig,
        gateway: Arc<dyn PaymentGateway>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let repo = PgEventRepository::new(pool);
        let gateway: Arc<dyn PaymentGateway> = Arc::new(TimeoutGateway {
            inner: gateway,
            timeout: config.gateway_timeout,
        });
        Self {
            gigs: CommandBus::new(repo.clone(), config.gig_store, ()),
            contracts: CommandBus::new(repo.clone(), config.contract_store, ()),
            escrows: CommandBus::new(
                repo.clone(),
                config.escrow_store,
                EscrowServices::new(gateway.clone()),
            ),
            wallets: CommandBus::new(repo, config.wallet_store, ()),
            gateway,
            clock,
            config,
        }
    }

    /// The time to stamp on a command.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The platform terms a new contract gets.
    pub fn config(&self) -> &ServicesConfig {
        &self.config
    }

    fn metadata(&self, ctx: &RequestContext, actor_id: String, role: String) -> CommandMetadata {
        let correlation = ctx
            .correlation_id
            .clone()
            .unwrap_or_else(|| Uuid::now_v7().to_string());
        CommandMetadata::for_user(correlation, actor_id, role, self.now())
    }

    /// Runs a gig command, then its follow-ups (accepting a proposal starts the contract and escrow).
    pub async fn gig(
        &self,
        gig_id: GigId,
        command: GigCommand,
        ctx: &RequestContext,
    ) -> Result<Outcome, ServiceError> {
        let id = gig_id.to_string();
        let actor = self
            .actor_of(&self.gigs, &id, &command, command.actor())
            .await?;
        let metadata = self.metadata(ctx, actor.0, actor.1);
        self.run_on(
            &self.gigs,
            id,
            command,
            AnyEvent::Gig,
            &metadata,
            ctx.expected_version,
        )
        .await
    }

    /// Runs a contract command, then its follow-ups (approval releases, a dispute freezes, ...).
    pub async fn contract(
        &self,
        contract_id: ContractId,
        command: ContractCommand,
        ctx: &RequestContext,
    ) -> Result<Outcome, ServiceError> {
        let actor = self
            .actor_of(
                &self.contracts,
                &contract_id.to_string(),
                &command,
                command.actor(),
            )
            .await?;
        let metadata = self.metadata(ctx, actor.0, actor.1);
        self.contract_with(contract_id, command, &metadata, ctx.expected_version)
            .await
    }

    /// Runs an escrow command, then its follow-ups (a deposit marks the milestone funded).
    ///
    /// A deposit charges the gateway, under the milestone's own provider-side key, before it can
    /// be written. If the deposit then certainly was not recorded although it may have charged
    /// (refused on the database's state after charging on a stale one, lost every race, a store
    /// failure certain not to have committed), `VoidCharge` records `ChargeVoided` for that
    /// milestone's charge, decided on the database's state (a recorded deposit keeps its
    /// charge), and then the provider voids the key. A client is never charged for a deposit the
    /// ledger does not hold, and no other milestone's charge is touched. After a store error
    /// that may have committed nothing is voided: reconciliation (`crate::reconcile`) finds
    /// such a charge.
    pub async fn escrow(
        &self,
        contract_id: ContractId,
        command: EscrowCommand,
        ctx: &RequestContext,
    ) -> Result<Outcome, ServiceError> {
        let actor = self
            .actor_of(
                &self.escrows,
                &contract_id.to_string(),
                &command,
                command.actor(),
            )
            .await?;
        let metadata = self.metadata(ctx, actor.0, actor.1);
        let deposit = match &command {
            EscrowCommand::Deposit { milestone_id, .. } => Some(*milestone_id),
            _ => None,
        };
        let (result, charge_asked) = CHARGE_ASKED
            .scope(std::cell::Cell::new(false), async {
                let result = self
                    .escrow_with(contract_id, command, &metadata, ctx.expected_version)
                    .await;
                (result, CHARGE_ASKED.with(std::cell::Cell::get))
            })
            .await;
        // A refusal before the provider was asked (a stale If-Match, a closed escrow seen at
        // once) charged nothing and writes nothing.
        if let (Err(e), Some(milestone), true) = (&result, deposit, charge_asked) {
            if may_leave_an_unrecorded_charge(e) {
                self.void_unrecorded_charge(contract_id, milestone, &metadata)
                    .await;
            } else if matches!(e, ServiceError::Internal(_)) {
                tracing::error!(
                    contract.id = %contract_id, milestone.id = %milestone, error = %e,
                    "a deposit was charged and may not be recorded; run gigledger audit reconcile"
                );
            }
        }
        result
    }

    /// Voids `charge_key` at the provider: the second half of a void whose `ChargeVoided` is
    /// recorded (the process manager on `ChargeVoided` finishes it after a crash). Idempotent.
    pub async fn void_at_provider(&self, charge_key: &str) -> Result<(), GatewayError> {
        self.gateway.void(charge_key).await
    }

    /// Runs a wallet command (a freelancer's payout request; the process steps come through
    /// [`Services::run_follow_up`]). A payout's transfer is not run here: the process manager on
    /// `PayoutRequested` makes it in the background.
    pub async fn wallet(
        &self,
        user_id: UserId,
        command: WalletCommand,
        ctx: &RequestContext,
    ) -> Result<Outcome, ServiceError> {
        let actor = self
            .actor_of(
                &self.wallets,
                &user_id.to_string(),
                &command,
                command.actor(),
            )
            .await?;
        let metadata = self.metadata(ctx, actor.0, actor.1);
        self.wallet_with(user_id, command, &metadata, ctx.expected_version)
            .await
    }

    /// Registers (or replaces) the freelancer's payout account: the provider's onboarding first
    /// (idempotent per user and provider, so a retry meets the same account), then
    /// `RegisterPayoutAccount` with the account id it answered. Nothing is written when the
    /// provider fails.
    pub async fn register_payout_account(
        &self,
        actor: Actor,
        provider: gigledger_domain::gateway::Provider,
        ctx: &RequestContext,
    ) -> Result<(Outcome, OnboardReceipt), ServiceError> {
        let user_id = actor.user_id;
        let receipt = self
            .gateway
            .onboard(OnboardRequest {
                user: user_id,
                provider,
            })
            .await
            .map_err(provider_failed)?;
        let command = WalletCommand::RegisterPayoutAccount {
            provider,
            account_id: receipt.account_id.clone(),
            actor,
            at: self.now(),
        };
        let mut outcome = self.wallet(user_id, command, ctx).await?;
        // A provider that answers the account verified already (a second registration, or a
        // provider that verifies at once) sends no notice for it: verified here, as the notice
        // would (a repeat is a no-op).
        if receipt.status == gigledger_domain::gateway::AccountStatus::Verified {
            let verified = self
                .wallet(
                    user_id,
                    WalletCommand::VerifyPayoutAccount {
                        account_id: receipt.account_id.clone(),
                        actor: Actor::system(),
                        at: self.now(),
                    },
                    ctx,
                )
                .await?;
            outcome.version = verified.version;
            outcome.position = outcome.position.max(verified.position);
        }
        Ok((outcome, receipt))
    }

    async fn wallet_with(
        &self,
        user_id: UserId,
        command: WalletCommand,
        metadata: &CommandMetadata,
        expected_version: Option<u64>,
    ) -> Result<Outcome, ServiceError> {
        self.run_on(
            &self.wallets,
            user_id.to_string(),
            command,
            AnyEvent::Wallet,
            metadata,
            expected_version,
        )
        .await
    }

    /// Voids the milestone's current charge unless the database shows a deposit for it: first
    /// `ChargeVoided` on the escrow (which a deposit still in flight with that charge then loses
    /// to), then the provider.
    async fn void_unrecorded_charge(
        &self,
        contract_id: ContractId,
        milestone: MilestoneId,
        deposit: &CommandMetadata,
    ) {
        // Same request, caused by the refused deposit command, sent by the platform.
        let metadata = CommandMetadata {
            actor_id: "system".to_owned(),
            actor_role: "system".to_owned(),
            ..deposit.clone()
        };
        let command = EscrowCommand::VoidCharge {
            milestone_id: milestone,
            actor: gigledger_domain::Actor::system(),
            at: self.now(),
        };
        let voided = self
            .escrows
            .execute(&contract_id.to_string(), command, &metadata, None)
            .await;
        let key = match voided {
            Ok(committed) => committed.events.into_iter().find_map(|(_, e)| match e {
                EscrowEvent::ChargeVoided { charge_key, .. } => Some(charge_key),
                _ => None,
            }),
            Err(e) => {
                tracing::error!(
                    contract.id = %contract_id, milestone.id = %milestone, error = %e,
                    "could not record the void of a refused deposit's charge; reconcile it"
                );
                return;
            }
        };
        // None: a deposit is on record, and its charge stays.
        if let Some(key) = key {
            if let Err(e) = self.gateway.void(&key).await {
                tracing::error!(
                    contract.id = %contract_id, milestone.id = %milestone, charge.key = %key,
                    error = %e,
                    "a voided charge could not be voided at the provider; reconcile it"
                );
            }
        }
    }

    async fn contract_with(
        &self,
        contract_id: ContractId,
        command: ContractCommand,
        metadata: &CommandMetadata,
        expected_version: Option<u64>,
    ) -> Result<Outcome, ServiceError> {
        let id = contract_id.to_string();
        self.run_on(
            &self.contracts,
            id,
            command,
            AnyEvent::Contract,
            metadata,
            expected_version,
        )
        .await
    }

    async fn escrow_with(
        &self,
        contract_id: ContractId,
        command: EscrowCommand,
        metadata: &CommandMetadata,
        expected_version: Option<u64>,
    ) -> Result<Outcome, ServiceError> {
        let id = contract_id.to_string();
        self.run_on(
            &self.escrows,
            id,
            command,
            AnyEvent::Escrow,
            metadata,
            expected_version,
        )
        .await
    }

    /// Runs `command` on aggregate `id` through `bus`, then the follow-ups of what it wrote.
    async fn run_on<A>(
        &self,
        bus: &CommandBus<A>,
        id: String,
        command: A::Command,
        wrap: fn(A::Event) -> AnyEvent,
        metadata: &CommandMetadata,
        expected_version: Option<u64>,
    ) -> Result<Outcome, ServiceError>
    where
        A: cqrs_es::Aggregate + gigledger_domain::SnapshotSchema + Clone,
        A::Command: Clone,
        A::Event: 'static,
        A::Error: Into<ServiceError>,
    {
        let committed = bus
            .execute(&id, command, metadata, expected_version)
            .await
            .map_err(from_bus)?;
        self.finish(id, committed, wrap, metadata).await
    }

    /// Runs one follow-up step caused by the stored event `cause` (used by the process managers,
    /// and after each command here).
    pub async fn run_follow_up(
        &self,
        step: FollowUp,
        metadata: &CommandMetadata,
    ) -> Result<Outcome, ServiceError> {
        match step {
            FollowUp::Contract(id, command) => {
                Box::pin(self.contract_with(id, command, metadata, None)).await
            }
            FollowUp::Escrow(id, command) => {
                Box::pin(self.escrow_with(id, command, metadata, None)).await
            }
            FollowUp::Wallet(id, command) => {
                Box::pin(self.wallet_with(id, command, metadata, None)).await
            }
            // The provider's answer decides the next step; a transient failure makes none, and
            // the step is tried again under the same key (which meets the first transfer).
            FollowUp::Transfer(user_id, request) => {
                // Only a payout still pending is transferred: one a notice failed meanwhile has
                // its money available again, and must not leave twice.
                let (wallet, version) = self.load_wallet(user_id).await?;
                let pending = wallet
                    .payout(request.reference.payout_id)
                    .is_some_and(|p| p.status == gigledger_domain::PayoutStatus::Pending);
                if !pending {
                    return Ok(Outcome::nothing_written(user_id.to_string(), version));
                }
                let answer = self.gateway.transfer(request.clone()).await;
                match after_transfer(&request, &answer, self.now()) {
                    Some(next) => match Box::pin(self.run_follow_up(next, metadata)).await {
                        // The payout was settled meanwhile (a notice came first): done.
                        Err(ServiceError::Wallet(
                            WalletError::PayoutAlreadyFailed | WalletError::PayoutAlreadyPaid,
                        )) => Ok(Outcome::nothing_written(user_id.to_string(), version)),
                        other => other,
                    },
                    None => Err(provider_failed(
                        answer.err().unwrap_or(GatewayError::Timeout),
                    )),
                }
            }
            FollowUp::Refund {
                contract_id,
                milestone_id,
                request,
            } => {
                Box::pin(self.card_refund(contract_id, milestone_id, request, None, metadata)).await
            }
        }
    }

    /// A card refund tried again (by its due timer), under its first key; a refusal is recorded
    /// with the attempt's number, so that each refusal is an event of its own (the escrow takes
    /// a repeated reason as a repeat) and schedules the next attempt.
    pub async fn retry_card_refund(
        &self,
        step: FollowUp,
        attempt: i64,
        metadata: &CommandMetadata,
    ) -> Result<Outcome, ServiceError> {
        match step {
            FollowUp::Refund {
                contract_id,
                milestone_id,
                request,
            } => {
                self.card_refund(contract_id, milestone_id, request, Some(attempt), metadata)
                    .await
            }
            other => self.run_follow_up(other, metadata).await,
        }
    }

    /// Asks the provider to refund, then records what it answered (a refusal numbered with its
    /// `attempt` when it is a retry); a transient failure records nothing.
    async fn card_refund(
        &self,
        contract_id: ContractId,
        milestone_id: MilestoneId,
        request: RefundRequest,
        attempt: Option<i64>,
        metadata: &CommandMetadata,
    ) -> Result<Outcome, ServiceError> {
        let answer = self.gateway.refund(request.clone()).await;
        let next = match after_refund(contract_id, milestone_id, &request, &answer, self.now()) {
            Some(FollowUp::Escrow(
                id,
                EscrowCommand::RecordRefundFailed {
                    milestone_id,
                    reason,
                    actor,
                    at,
                },
            )) => {
                let reason = match attempt {
                    Some(attempt) => format!("{reason} (attempt {attempt})")
                        .chars()
                        .take(gigledger_domain::escrow::MAX_REFUND_FAILURE_CHARS)
                        .collect(),
                    None => reason,
                };
                FollowUp::Escrow(
                    id,
                    EscrowCommand::RecordRefundFailed {
                        milestone_id,
                        reason,
                        actor,
                        at,
                    },
                )
            }
            Some(next) => next,
            None => {
                return Err(provider_failed(
                    answer.err().unwrap_or(GatewayError::Timeout),
                ))
            }
        };
        self.run_follow_up(next, metadata).await
    }

    /// The steps `event` (stored with `event_id` on stream `aggregate_id`) calls for, with the
    /// escrow loaded for the rows that read it.
    pub async fn follow_ups_of(
        &self,
        aggregate_id: &str,
        event_id: Uuid,
        event: &AnyEvent,
        at: DateTime<Utc>,
    ) -> Result<Vec<FollowUp>, ServiceError> {
        let cause = Cause::new(aggregate_id, event_id, event);
        let escrow;
        let cause = if cause.needs_escrow() {
            let id = aggregate_id
                .parse::<ContractId>()
                .map_err(|e| ServiceError::Internal(e.to_string()))?;
            escrow = self.load_escrow(id).await?.0;
            cause.with_escrow(&escrow)
        } else {
            cause
        };
        follow_ups(&cause, at).map_err(|e| ServiceError::Internal(e.to_string()))
    }

    /// The answer for a committed command, after running the follow-ups its events call for.
    async fn finish<E>(
        &self,
        id: String,
        committed: Committed<E>,
        wrap: fn(E) -> AnyEvent,
        metadata: &CommandMetadata,
    ) -> Result<Outcome, ServiceError>
    where
        E: cqrs_es::DomainEvent,
    {
        let mut outcome = Outcome {
            id: id.clone(),
            version: committed.receipt.version,
            position: committed.receipt.position,
            events: committed
                .events
                .iter()
                .map(|(_, e)| e.event_type())
                .collect(),
        };
        if !self.config.run_follow_ups {
            return Ok(outcome);
        }
        // Every step is tried even if an earlier one failed; the first failure is reported.
        let mut failed = None;
        for (event_id, event) in committed.events {
            let event = wrap(event);
            let steps = match self.follow_ups_of(&id, event_id, &event, metadata.at).await {
                Ok(steps) => steps,
                Err(e) => {
                    failed.get_or_insert(("follow-ups".to_owned(), e.to_string()));
                    continue;
                }
            };
            for step in steps {
                // Money leaving the platform (a payout's transfer, a card refund) goes through
                // the provider in the background, by its process manager, never in a command.
                if matches!(step, FollowUp::Transfer(..) | FollowUp::Refund { .. }) {
                    continue;
                }
                let name = step.name();
                match self
                    .run_follow_up(step, &metadata.follow_up(event_id))
                    .await
                {
                    Ok(done) => outcome.position = outcome.position.max(done.position),
                    Err(e) => {
                        failed.get_or_insert((name, e.to_string()));
                    }
                }
            }
        }
        match failed {
            None => Ok(outcome),
            Some((step, cause)) => Err(ServiceError::Incomplete {
                outcome: Box::new(outcome),
                step,
                cause,
            }),
        }
    }

    /// The current state of a gig, read from the database (for checks and tests).
    pub async fn load_gig(&self, id: GigId) -> Result<(Gig, u64), ServiceError> {
        self.gigs.load(&id.to_string()).await.map_err(from_bus)
    }

    pub async fn load_contract(&self, id: ContractId) -> Result<(Contract, u64), ServiceError> {
        self.contracts.load(&id.to_string()).await.map_err(from_bus)
    }

    pub async fn load_escrow(&self, id: ContractId) -> Result<(Escrow, u64), ServiceError> {
        self.escrows.load(&id.to_string()).await.map_err(from_bus)
    }

    pub async fn load_wallet(&self, id: UserId) -> Result<(Wallet, u64), ServiceError> {
        self.wallets.load(&id.to_string()).await.map_err(from_bus)
    }
}

impl Services {
    /// The actor's id and the one role the domain authorises `command` under on aggregate `id`,
    /// for the events' metadata (`actor_role`).
    ///
    /// Asked of the aggregate's state before the command runs (the cache when warm, so usually no
    /// round trip): who may act on an aggregate (owner, parties, a proposal's author) is fixed
    /// when it is created, so the answer is the one `handle` reaches. A refusal on cached state
    /// is asked again of the database's state, as the bus does; a refusal there is the
    /// command's answer (the domain's `handle` would refuse it the same way).
    async fn actor_of<A>(
        &self,
        bus: &CommandBus<A>,
        id: &str,
        command: &A::Command,
        actor: &Actor,
    ) -> Result<(String, String), ServiceError>
    where
        A: Authorise + gigledger_domain::SnapshotSchema + Clone,
        A::Command: Clone,
        A::Event: 'static,
        A::Error: Into<ServiceError>,
    {
        let mut cached = bus
            .store()
            .load_aggregate(id)
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let acting = match AggregateContext::aggregate(&mut cached).authorise(command) {
            Ok(acting) => acting,
            Err(_) => {
                let (fresh, _) = bus.load(id).await.map_err(from_bus)?;
                fresh.authorise(command).map_err(Into::into)?
            }
        };
        Ok((actor.user_id.to_string(), acting.as_str().to_owned()))
    }
}

/// A provider call that did not answer: unavailable or timed out is retried later; a refusal is
/// the provider's decision (declined).
fn provider_failed(e: GatewayError) -> ServiceError {
    match e {
        GatewayError::Declined(_) | GatewayError::Voided => ServiceError::ProviderRefused(e),
        GatewayError::Unavailable(_) | GatewayError::Timeout => {
            ServiceError::ProviderUnavailable(e)
        }
    }
}

/// Whether a deposit that failed so may have left a charge no deposit records. Refusals decided
/// before any charge (not the client, no such milestone, a bad key) charged nothing; a milestone
/// already deposited has its one charge recorded; a store error that may have committed leaves
/// it to reconciliation. A charge whose answer was lost (the caller's timeout) may stand
/// although the deposit certainly is not recorded: it is voided, and the client's retry charges
/// under the next key. A key the provider reports voided, though the escrow has no
/// `ChargeVoided` for it (voided at the provider directly), gets one, so that the client's retry
/// charges under the next key. A provider that answers unavailable or declined charged nothing.
fn may_leave_an_unrecorded_charge(e: &ServiceError) -> bool {
    matches!(
        e,
        ServiceError::Escrow(
            EscrowError::EscrowClosed
                | EscrowError::InvariantViolated(_)
                | EscrowError::Gateway(GatewayError::Voided | GatewayError::Timeout)
        ) | ServiceError::Conflict { .. }
            | ServiceError::NotRecorded(_)
    )
}
