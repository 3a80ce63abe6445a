//! The demo (`serve --demo`): a marketplace worth looking at, seeded into an empty database, and
//! what a newcomer needs to drive it (dev tokens for its users and curl lines that work as
//! printed).
//!
//! Everything is sent as ordinary commands through [`Services`], so read models and process
//! managers see real events. The data is a [`plan::Plan`] fixed by a seed: the same ids on every
//! run, so a later run on a seeded database seeds nothing and finds the demo's users and
//! contracts again.
//!
//! Time: each gig's story happens over the days leading up to now (posted three to thirteen days
//! ago; the auto-approved ones earlier, so that their review window has run out), so that dates,
//! review windows and analytics look lived in. The seeding [`Services`] read a [`StoryClock`]: the
//! time of the story step being sent (a task-local, since stories are sent concurrently), which
//! stamps the commands, their metadata and their follow-ups (the deposit's "funded" step, the
//! approval's release) alike. Every time is an offset from one reading of the process's clock.
//! Gigs are seeded concurrently (each gig's story in order), a bounded number at a time.

mod catalog;
pub mod plan;

use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Days, Utc};
use futures::stream::{self, StreamExt};
use gigledger_commands::clock::Clock;
use gigledger_commands::provider::PgSimulatedGateway;
use gigledger_commands::services::{Outcome, RequestContext, ServiceError, Services};
use gigledger_domain::{
    Actor, ContractCommand, ContractId, EscrowCommand, GigCommand, GigId, MilestoneStatus,
    MilestoneTerms, Money, Role, UserId,
};
use sqlx::PgPool;

use crate::settings::{AuthSettings, Secret};
use plan::{Fate, GigPlan, Plan, ProposalPlan, Reviews, Rng, Stage, Story};

/// Gigs seeded at once (each a sequence of commands).
const CONCURRENCY: usize = 8;
/// How long the printed tokens are valid.
pub const TOKEN_TTL_SECS: u64 = 12 * 3600;
/// The most the demo waits for the read models to catch up with the seeded events before
/// printing anyway.
pub const CATCH_UP_LIMIT: Duration = Duration::from_secs(120);

/// Why seeding failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot read the event store: {0}")]
    Storage(#[from] sqlx::Error),
    #[error("{step} failed: {source}")]
    Command { step: String, source: ServiceError },
    #[error("{0}")]
    Unexpected(String),
}

/// What the demo found in the database, or made of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// It was empty: seeded now, with this many commands.
    Seeded { commands: usize },
    /// Seeded by an earlier run.
    AlreadySeeded,
    /// An earlier run began seeding and did not finish.
    Incomplete,
    /// It holds events that are not the demo's: left alone.
    Foreign,
}

/// A random HS256 secret for this process, for `serve --demo` without `GIGLEDGER_JWT_SECRET`.
#[must_use]
pub fn random_secret() -> Secret {
    use rand::RngCore as _;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    match text.parse::<Secret>() {
        Ok(secret) => secret,
        Err(never) => match never {},
    }
}

tokio::task_local! {
    /// The time of the story step being sent.
    static STORY_TIME: Cell<DateTime<Utc>>;
}

/// The seeding services' clock: the story's time within a story, the real clock outside.
struct StoryClock {
    real: Arc<dyn Clock>,
}

impl Clock for StoryClock {
    fn now(&self) -> DateTime<Utc> {
        STORY_TIME
            .try_with(Cell::get)
            .unwrap_or_else(|_| self.real.now())
    }
}

/// Seeds the demo when the event store is empty; otherwise says what is there. `services` are
/// the application's (for looking); the seeding runs on services of the same configuration and
/// payment provider whose clock is the story's ([`StoryClock`] over `clock`).
pub async fn seed_if_empty(
    pool: &PgPool,
    services: &Services,
    clock: Arc<dyn Clock>,
) -> Result<Found, DemoError> {
    let any: bool = sqlx::query_scalar("select exists (select 1 from events)")
        .fetch_one(pool)
        .await?;
    let plan = Plan::build();
    if !any {
        let started = std::time::Instant::now();
        let now = clock.now();
        let seeding = Services::new(
            pool.clone(),
            services.config().clone(),
            Arc::new(PgSimulatedGateway::new(pool.clone())),
            Arc::new(StoryClock { real: clock }),
        );
        let commands = seed(&seeding, pool, &plan, now).await?;
        tracing::info!(
            demo.commands = commands,
            demo.millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "seeded the demo marketplace"
        );
        return Ok(Found::Seeded { commands });
    }
    if gig_exists(services, plan.last.id).await? {
        Ok(Found::AlreadySeeded)
    } else if gig_exists(services, plan.gigs[0].id).await? {
        tracing::warn!(
            "an earlier run began seeding the demo and did not finish: its data is incomplete \
             (drop the database, or remove the private PostgreSQL's directory, to seed afresh)"
        );
        Ok(Found::Incomplete)
    } else {
        tracing::warn!("the database holds events that are not the demo's: nothing seeded");
        Ok(Found::Foreign)
    }
}

async fn gig_exists(services: &Services, gig: GigId) -> Result<bool, DemoError> {
    let (_, version) = services
        .load_gig(gig)
        .await
        .map_err(|source| DemoError::Command {
            step: format!("loading gig {gig}"),
            source,
        })?;
    Ok(version > 0)
}

/// Runs the plan: every gig's story (a bounded number at once), then the last gig, whose
/// presence says that seeding finished. Answers how many commands were sent.
async fn seed(
    services: &Services,
    pool: &PgPool,
    plan: &Plan,
    now: DateTime<Utc>,
) -> Result<usize, DemoError> {
    let story = |gig| STORY_TIME.scope(Cell::new(now), seed_gig(services, plan, gig, now));
    let mut runs = stream::iter(plan.gigs.iter().map(story)).buffer_unordered(CONCURRENCY);
    let mut commands = 0;
    while let Some(done) = runs.next().await {
        commands += done?;
    }
    commands += seed_payouts(services, pool).await?;
    commands += story(&plan.last).await?;
    Ok(commands)
}

/// How many freelancers with earnings the demo pays out (the last of them fails).
const PAID_OUT_FREELANCERS: i64 = 6;

/// Money leaving the platform: the first freelancers with earnings register a payout account at
/// the simulated provider (verified at once, as its notice will say again) and ask for half of
/// what they have in one currency; the workers make the transfers once `serve` runs. The last
/// one's account is then suspended at the provider, so that payout fails and shows in
/// `GET /v1/payouts`. Card refunds need nothing here: every cancelled or split milestone's
/// refund goes back to the card by the same workers.
async fn seed_payouts(services: &Services, pool: &PgPool) -> Result<usize, DemoError> {
    use gigledger_domain::gateway::Provider;
    use gigledger_domain::{Currency, Money, PayoutId, WalletCommand};
    let earners: Vec<(String, String, i64)> = sqlx::query_as(
        "select aggregate_id, payload->'EarningsCredited'->'net'->>'currency' as currency,
                sum((payload->'EarningsCredited'->'net'->>'amount')::bigint)::bigint as earned
           from events where aggregate_type = 'wallet' and event_type = 'EarningsCredited'
          group by 1, 2 order by 1, 2 limit $1",
    )
    .bind(PAID_OUT_FREELANCERS)
    .fetch_all(pool)
    .await?;
    let mut sent = 0;
    let count = earners.len();
    for (i, (user, currency, earned)) in earners.into_iter().enumerate() {
        let user_id = UserId(
            user.parse()
                .map_err(|e| DemoError::Unexpected(format!("a wallet id: {e}")))?,
        );
        let currency = Currency::parse(&currency)
            .map_err(|e| DemoError::Unexpected(format!("a currency: {e}")))?;
        let ctx = RequestContext {
            correlation_id: Some(format!("demo-payout-{i}")),
            expected_version: None,
        };
        let failed = |step: &str| {
            let step = format!("{step} (freelancer {user_id})");
            move |source| DemoError::Command { step, source }
        };
        let freelancer = Actor::new(user_id, vec![Role::Freelancer]);
        let (_, receipt) = services
            .register_payout_account(freelancer.clone(), Provider::Simulated, &ctx)
            .await
            .map_err(failed("register a payout account"))?;
        services
            .wallet(
                user_id,
                WalletCommand::VerifyPayoutAccount {
                    account_id: receipt.account_id.clone(),
                    actor: Actor::system(),
                    at: services.now(),
                },
                &ctx,
            )
            .await
            .map_err(failed("verify the payout account"))?;
        sent += 2;
        let minimum = gigledger_domain::minimum_payout(currency);
        let half = earned / 2;
        if half < minimum.amount {
            continue;
        }
        services
            .wallet(
                user_id,
                WalletCommand::RequestPayout {
                    payout_id: PayoutId(uuid::Uuid::now_v7()),
                    amount: Money::new(half, currency),
                    actor: freelancer,
                    at: services.now(),
                },
                &ctx,
            )
            .await
            .map_err(failed("request a payout"))?;
        sent += 1;
        if i + 1 == count {
            // The provider suspends this account before the transfer: it is declined.
            sqlx::query("update provider.accounts set status = 'pending' where account_id = $1")
                .bind(&receipt.account_id)
                .execute(pool)
                .await?;
        }
    }
    Ok(sent)
}

/// One gig's story, in order, at times leading up to `now`.
struct Chain<'a> {
    services: &'a Services,
    label: String,
    at: DateTime<Utc>,
    gap: chrono::Duration,
    sent: usize,
    rng: Rng,
}

impl Chain<'_> {
    /// Moves the story's clock to `at` (never back).
    fn set_time(&mut self, at: DateTime<Utc>) -> DateTime<Utc> {
        self.at = self.at.max(at);
        let _outside_a_story = STORY_TIME.try_with(|time| time.set(self.at));
        self.at
    }

    /// The time of the next step.
    fn tick(&mut self) -> DateTime<Utc> {
        self.set_time(self.at + self.gap)
    }

    fn ctx(&self) -> RequestContext {
        RequestContext {
            correlation_id: Some(format!("demo-{}-{}", self.label, self.sent + 1)),
            expected_version: None,
        }
    }

    fn failed(&self, what: &str) -> impl FnOnce(ServiceError) -> DemoError {
        let step = format!("{what} ({})", self.label);
        move |source| DemoError::Command { step, source }
    }

    async fn gig(
        &mut self,
        id: GigId,
        command: GigCommand,
        what: &str,
    ) -> Result<Outcome, DemoError> {
        let outcome = self
            .services
            .gig(id, command, &self.ctx())
            .await
            .map_err(self.failed(what))?;
        self.sent += 1;
        Ok(outcome)
    }

    async fn contract(
        &mut self,
        id: ContractId,
        command: ContractCommand,
        what: &str,
    ) -> Result<Outcome, DemoError> {
        let outcome = self
            .services
            .contract(id, command, &self.ctx())
            .await
            .map_err(self.failed(what))?;
        self.sent += 1;
        Ok(outcome)
    }

    async fn fund(
        &mut self,
        contract: ContractId,
        client: &Actor,
        m: &plan::MilestonePlan,
    ) -> Result<(), DemoError> {
        let at = self.tick();
        let command = EscrowCommand::Deposit {
            milestone_id: m.id,
            idempotency_key: format!("demo-fund-{}", m.id),
            actor: client.clone(),
            at,
        };
        self.services
            .escrow(contract, command, &self.ctx())
            .await
            .map_err(self.failed("funding a milestone"))?;
        self.sent += 1;
        Ok(())
    }

    async fn submit(
        &mut self,
        contract: ContractId,
        freelancer: &Actor,
        m: &plan::MilestonePlan,
    ) -> Result<DateTime<Utc>, DemoError> {
        let at = self.tick();
        let note = (*self.rng.pick(catalog::SUBMISSION_NOTES)).to_owned();
        let command = ContractCommand::SubmitMilestone {
            milestone_id: m.id,
            note,
            links: vec![format!(
                "https://example.com/deliveries/{contract}/{}",
                m.id
            )],
            actor: freelancer.clone(),
            at,
        };
        self.contract(contract, command, "submitting a milestone")
            .await?;
        Ok(at)
    }

    async fn approve(
        &mut self,
        contract: ContractId,
        client: &Actor,
        m: &plan::MilestonePlan,
    ) -> Result<(), DemoError> {
        let at = self.tick();
        let command = ContractCommand::ApproveMilestone {
            milestone_id: m.id,
            actor: client.clone(),
            at,
        };
        self.contract(contract, command, "approving a milestone")
            .await
            .map(drop)
    }

    async fn request_changes(
        &mut self,
        contract: ContractId,
        client: &Actor,
        m: &plan::MilestonePlan,
    ) -> Result<(), DemoError> {
        let at = self.tick();
        let reason = (*self.rng.pick(catalog::CHANGE_REQUESTS)).to_owned();
        let command = ContractCommand::RequestChanges {
            milestone_id: m.id,
            reason,
            actor: client.clone(),
            at,
        };
        self.contract(contract, command, "requesting changes")
            .await
            .map(drop)
    }

    /// Fund, submit and approve, sometimes with a round of changes in between.
    async fn deliver(
        &mut self,
        contract: ContractId,
        parties: &(Actor, Actor),
        m: &plan::MilestonePlan,
        with_changes: bool,
    ) -> Result<(), DemoError> {
        let (client, freelancer) = parties;
        self.fund(contract, client, m).await?;
        self.submit(contract, freelancer, m).await?;
        if with_changes {
            self.request_changes(contract, client, m).await?;
            self.submit(contract, freelancer, m).await?;
        }
        self.approve(contract, client, m).await
    }

    async fn review(
        &mut self,
        contract: ContractId,
        by: &Actor,
        by_client: bool,
    ) -> Result<(), DemoError> {
        let at = self.tick();
        let (rating, text) = if by_client {
            *self.rng.pick(catalog::CLIENT_REVIEWS)
        } else {
            *self.rng.pick(catalog::FREELANCER_REVIEWS)
        };
        let command = ContractCommand::LeaveReview {
            rating,
            text: text.to_owned(),
            actor: by.clone(),
            at,
        };
        self.contract(contract, command, "leaving a review")
            .await
            .map(drop)
    }
}

/// Sends one gig's story and answers how many commands it took.
async fn seed_gig(
    services: &Services,
    plan: &Plan,
    gig: &GigPlan,
    now: DateTime<Utc>,
) -> Result<usize, DemoError> {
    let posted = now - chrono::Duration::hours(i64::from(gig.posted_hours_ago));
    // Room for every step before now: a post, the proposals, their fates, and a contract's
    // dozen steps at most.
    let steps = i32::try_from(gig.proposals.len() * 2 + 16).unwrap_or(i32::MAX);
    let room =
        chrono::Duration::hours(i64::from(gig.posted_hours_ago)) - chrono::Duration::hours(1);
    let gap = (room / steps).min(chrono::Duration::hours(8));
    let mut story = Chain {
        services,
        label: gig.id.to_string(),
        at: posted,
        gap,
        sent: 0,
        rng: Rng(gig.seed),
    };
    story.set_time(posted);
    let client = Actor::new(gig.client, vec![Role::Client]);
    let deadline = gig
        .deadline_in_days
        .and_then(|days| now.checked_add_days(Days::new(days)))
        .map(|at| at.date_naive());
    story
        .gig(
            gig.id,
            GigCommand::PostGig {
                gig_id: gig.id,
                title: gig.title.clone(),
                description: gig.description.clone(),
                skills: gig.skills.clone(),
                budget: gig.budget.clone(),
                deadline,
                actor: client.clone(),
                at: posted,
            },
            "posting a gig",
        )
        .await?;
    for proposal in &gig.proposals {
        let at = story.tick();
        let milestones = proposal
            .milestones
            .iter()
            .map(|m| MilestoneTerms {
                milestone_id: m.id,
                title: m.title.clone(),
                amount: m.amount,
                due_date: m
                    .due_in_days
                    .and_then(|days| now.checked_add_days(Days::new(days)))
                    .map(|at| at.date_naive()),
            })
            .collect();
        story
            .gig(
                gig.id,
                GigCommand::SubmitProposal {
                    proposal_id: proposal.id,
                    cover_letter: proposal.cover_letter.clone(),
                    milestones,
                    actor: freelancer(proposal),
                    at,
                },
                "proposing",
            )
            .await?;
    }
    for proposal in &gig.proposals {
        let at = story.tick();
        let command = match proposal.fate {
            Fate::Withdrawn => GigCommand::WithdrawProposal {
                proposal_id: proposal.id,
                actor: freelancer(proposal),
                at,
            },
            Fate::Rejected => GigCommand::RejectProposal {
                proposal_id: proposal.id,
                actor: client.clone(),
                at,
            },
            Fate::Pending | Fate::Accepted => continue,
        };
        story.gig(gig.id, command, "answering a proposal").await?;
    }
    match gig.story {
        Story::Open => {}
        Story::Closed => {
            let at = story.tick();
            story
                .gig(
                    gig.id,
                    GigCommand::CloseGig {
                        actor: client.clone(),
                        at,
                    },
                    "closing a gig",
                )
                .await?;
        }
        Story::Cancelled => {
            let at = story.tick();
            story
                .gig(
                    gig.id,
                    GigCommand::CancelGig {
                        actor: client.clone(),
                        at,
                    },
                    "cancelling a gig",
                )
                .await?;
        }
        Story::Hired { contract, stage } => {
            let hired = gig
                .proposals
                .iter()
                .find(|p| p.fate == Fate::Accepted)
                .ok_or_else(|| DemoError::Unexpected(format!("gig {} hires nobody", gig.id)))?;
            let at = story.tick();
            let terms = services.config();
            story
                .gig(
                    gig.id,
                    GigCommand::AcceptProposal {
                        proposal_id: hired.id,
                        contract_id: contract,
                        fee_bps: terms.fee_bps,
                        review_window_days: terms.review_window_days,
                        max_revisions: terms.max_revisions,
                        actor: client.clone(),
                        at,
                    },
                    "hiring",
                )
                .await?;
            let parties = (client, freelancer(hired));
            play_stage(&mut story, plan, contract, stage, &parties, hired, now).await?;
        }
    }
    Ok(story.sent)
}

fn freelancer(proposal: &ProposalPlan) -> Actor {
    Actor::new(proposal.freelancer, vec![Role::Freelancer])
}

/// Takes a contract to its planned stage.
async fn play_stage(
    story: &mut Chain<'_>,
    plan: &Plan,
    contract: ContractId,
    stage: Stage,
    parties: &(Actor, Actor),
    hired: &ProposalPlan,
    now: DateTime<Utc>,
) -> Result<(), DemoError> {
    let (client, freelancer) = parties;
    let m = &hired.milestones;
    match stage {
        Stage::AwaitingFunds => {}
        Stage::Funded => story.fund(contract, client, &m[0]).await?,
        Stage::Submitted {
            approved,
            fund_next,
        } => {
            for done in &m[..approved] {
                story.deliver(contract, parties, done, false).await?;
            }
            story.fund(contract, client, &m[approved]).await?;
            story.submit(contract, freelancer, &m[approved]).await?;
            if fund_next {
                story.fund(contract, client, &m[approved + 1]).await?;
            }
        }
        Stage::ChangesRequested => {
            story.fund(contract, client, &m[0]).await?;
            story.submit(contract, freelancer, &m[0]).await?;
            story.request_changes(contract, client, &m[0]).await?;
        }
        Stage::InProgress => {
            story.deliver(contract, parties, &m[0], false).await?;
            story.fund(contract, client, &m[1]).await?;
        }
        Stage::Completed(reviews) => {
            for (i, done) in m.iter().enumerate() {
                let with_changes = i == 0 && story.rng.below(3) == 0;
                story.deliver(contract, parties, done, with_changes).await?;
            }
            match reviews {
                Reviews::None => {}
                Reviews::Pending { by_client: true } => {
                    story.review(contract, client, true).await?
                }
                Reviews::Pending { by_client: false } => {
                    story.review(contract, freelancer, false).await?;
                }
                Reviews::Revealed => {
                    story.review(contract, client, true).await?;
                    story.review(contract, freelancer, false).await?;
                }
            }
        }
        Stage::AutoApproved => {
            story.fund(contract, client, &m[0]).await?;
            let submitted = story.submit(contract, freelancer, &m[0]).await?;
            // The platform's timer, on time: when the review window ran out.
            let window = Days::new(u64::from(story.services.config().review_window_days));
            let due = submitted
                .checked_add_days(window)
                .filter(|due| *due <= now)
                .ok_or_else(|| {
                    DemoError::Unexpected(format!(
                        "the review window of contract {contract} has not run out yet"
                    ))
                })?;
            story.set_time(due);
            let outcome = story
                .contract(
                    contract,
                    ContractCommand::AutoApproveMilestone {
                        milestone_id: m[0].id,
                        actor: Actor::system(),
                        at: due,
                    },
                    "auto-approving a milestone",
                )
                .await?;
            if outcome.events.is_empty() {
                return Err(DemoError::Unexpected(format!(
                    "the milestone of contract {contract} was not auto-approved"
                )));
            }
            story.review(contract, freelancer, false).await?;
        }
        Stage::Cancelled { funded, by_client } => {
            if funded {
                story.fund(contract, client, &m[0]).await?;
            }
            let at = story.tick();
            let reason = (*story.rng.pick(catalog::CANCEL_REASONS)).to_owned();
            let actor = if by_client { client } else { freelancer };
            story
                .contract(
                    contract,
                    ContractCommand::CancelContract {
                        reason,
                        actor: actor.clone(),
                        at,
                    },
                    "cancelling a contract",
                )
                .await?;
        }
        Stage::Disputed { dispute } => {
            story.fund(contract, client, &m[0]).await?;
            story.submit(contract, freelancer, &m[0]).await?;
            open_dispute(story, contract, dispute, client, &m[0]).await?;
        }
        Stage::Resolved {
            dispute,
            release_percent,
        } => {
            story.fund(contract, client, &m[0]).await?;
            story.submit(contract, freelancer, &m[0]).await?;
            let opener = if release_percent % 20 == 0 {
                client
            } else {
                freelancer
            };
            open_dispute(story, contract, dispute, opener, &m[0]).await?;
            let amount = m[0].amount;
            let release = amount.amount * release_percent / 100;
            let at = story.tick();
            story
                .contract(
                    contract,
                    ContractCommand::ResolveDispute {
                        dispute_id: dispute,
                        release: Money::new(release, amount.currency),
                        refund: Money::new(amount.amount - release, amount.currency),
                        actor: Actor::new(plan.admin, vec![Role::Admin]),
                        at,
                    },
                    "resolving a dispute",
                )
                .await?;
            // Completed only when something was paid.
            if release > 0 {
                story.review(contract, client, true).await?;
                story.review(contract, freelancer, false).await?;
            }
        }
    }
    Ok(())
}

async fn open_dispute(
    story: &mut Chain<'_>,
    contract: ContractId,
    dispute: gigledger_domain::DisputeId,
    by: &Actor,
    m: &plan::MilestonePlan,
) -> Result<(), DemoError> {
    let at = story.tick();
    let reason = (*story.rng.pick(catalog::DISPUTE_REASONS)).to_owned();
    story
        .contract(
            contract,
            ContractCommand::OpenDispute {
                dispute_id: dispute,
                milestone_id: m.id,
                reason,
                actor: by.clone(),
                at,
            },
            "opening a dispute",
        )
        .await
        .map(drop)
}

/// Waits (at most `limit`) until every read model has applied the last event in the log, so
/// that the printed queries answer at once. False when the limit passed first.
pub async fn wait_for_read_models(pool: &PgPool, limit: Duration) -> Result<bool, sqlx::Error> {
    let head: Option<i64> = sqlx::query_scalar("select max(position) from events")
        .fetch_one(pool)
        .await?;
    let Some(head) = head else {
        return Ok(true);
    };
    let deadline = tokio::time::Instant::now() + limit;
    for handler in gigledger_projections::read::all() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if !gigledger_projections::runtime::wait_for_position(pool, handler.name(), head, left)
            .await?
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// What the guide says about the process.
#[derive(Clone, Debug)]
pub struct Circumstances {
    /// Where the server listens.
    pub addr: SocketAddr,
    /// What the demo found.
    pub found: Found,
    /// Whether the secret was made up for this process.
    pub secret_generated: bool,
    /// Whether the read models caught up (`None`: this process runs no workers).
    pub caught_up: Option<bool>,
}

/// The milestone the printed approve line acts on.
struct Target<'a> {
    gig: &'a GigPlan,
    contract: ContractId,
    proposal: &'a ProposalPlan,
    milestone: &'a plan::MilestonePlan,
    /// Only funded: the freelancer submits it first.
    needs_submit: bool,
}

/// The first review candidate with a milestone awaiting approval, else the first with a funded
/// one (which the freelancer can submit first), read from the contracts' streams.
async fn find_target<'a>(services: &Services, plan: &'a Plan) -> Option<Target<'a>> {
    let mut loaded = Vec::new();
    for (gig, contract, proposal) in plan.review_candidates() {
        match services.load_contract(contract).await {
            Ok((state, version)) if version > 0 => loaded.push((gig, contract, proposal, state)),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(contract.id = %contract, error = %e, "cannot load a demo contract")
            }
        }
    }
    for wanted in [MilestoneStatus::Submitted, MilestoneStatus::Funded] {
        for (gig, contract, proposal, state) in &loaded {
            let found = proposal
                .milestones
                .iter()
                .find(|m| state.milestone_status(m.id) == Some(wanted));
            if let Some(milestone) = found {
                return Some(Target {
                    gig,
                    contract: *contract,
                    proposal,
                    milestone,
                    needs_submit: wanted == MilestoneStatus::Funded,
                });
            }
        }
    }
    None
}

/// The base URL a client on this machine reaches the server at.
#[must_use]
pub fn base_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// What `serve --demo` prints once it is ready: where it listens, a dev token for each kind of
/// user (each a user of the demo data) and curl lines that work as printed.
pub async fn guide(services: &Services, auth: &AuthSettings, about: &Circumstances) -> String {
    let base = base_url(about.addr);
    let mut out = format!("gigledger demo: listening on {base}\n");
    let plan = Plan::build();
    let contracts = plan
        .gigs
        .iter()
        .filter(|g| matches!(g.story, Story::Hired { .. }))
        .count();
    let what = match about.found {
        Found::Seeded { commands } => format!("seeded just now, with {commands} commands"),
        Found::AlreadySeeded => "seeded by an earlier run".to_owned(),
        Found::Incomplete => {
            "seeded in part by an earlier run that did not finish: drop the database (or remove \
             the private PostgreSQL's directory) to seed it afresh"
                .to_owned()
        }
        Found::Foreign => {
            out.push_str(
                "  The database already holds events that are not the demo's, so nothing was \
                 seeded. Mint tokens for its users with `gigledger token --sub <uuid> --role \
                 client`.\n",
            );
            return out;
        }
    };
    out.push_str(&format!(
        "  The marketplace: {} clients, {} freelancers, {} gigs in USD, EUR, GBP and JPY, {contracts} \
         contracts at every stage ({what}).\n",
        plan.clients.len(),
        plan.freelancers.len(),
        plan.gigs.len() + 1,
    ));
    if about.secret_generated {
        out.push_str(
            "  GIGLEDGER_JWT_SECRET is not set: this process signs tokens with a random secret, \
             so the tokens below stop working when it exits.\n",
        );
    }
    match about.caught_up {
        Some(true) => {}
        Some(false) => out.push_str(
            "  Note: the read models have not caught up with the log yet; a query may miss the \
             latest changes for a few seconds.\n",
        ),
        None => out.push_str(
            "  Note: this process runs no workers (--workers false): queries show what other \
             processes have projected.\n",
        ),
    }

    let target = find_target(services, &plan).await;
    let (client, freelancer) = target
        .as_ref()
        .map_or((plan.clients[0], plan.freelancers[0]), |t| {
            (t.gig.client, t.proposal.freelancer)
        });
    let now = u64::try_from(services.now().timestamp()).unwrap_or(0);
    let mint = |user: UserId, role: Role| {
        crate::auth::mint(auth, user.0, &[role], TOKEN_TTL_SECS, now).map_err(|e| e.to_string())
    };
    let people = [
        (
            "client",
            client,
            Role::Client,
            target.as_ref().map_or_else(
                || "posts gigs and hires".to_owned(),
                |t| {
                    format!(
                        "hired {} for \"{}\" (contract {}); its milestone \"{}\" {}",
                        t.proposal.freelancer,
                        t.gig.title,
                        t.contract,
                        t.milestone.title,
                        if t.needs_submit {
                            "is funded and waits for the freelancer's work"
                        } else {
                            "awaits the client's approval"
                        }
                    )
                },
            ),
        ),
        (
            "freelancer",
            freelancer,
            Role::Freelancer,
            "hired on that contract".to_owned(),
        ),
        (
            "admin",
            plan.admin,
            Role::Admin,
            "resolved the demo's disputes (GET /v1/disputes)".to_owned(),
        ),
        (
            "auditor",
            plan.auditor,
            Role::Auditor,
            "reads ledgers (GET /v1/contracts/{id}/ledger)".to_owned(),
        ),
        (
            "analyst",
            plan.analyst,
            Role::Analyst,
            "reads analytics".to_owned(),
        ),
    ];
    out.push_str(&format!(
        "\nDev tokens (HS256, valid for {} h), each one a user of the demo:\n",
        TOKEN_TTL_SECS / 3600
    ));
    let mut tokens = Vec::new();
    for (name, user, role, about_them) in &people {
        match mint(*user, *role) {
            Ok(token) => {
                out.push_str(&format!("  {name:<11} {token}\n"));
                tokens.push(token);
            }
            Err(e) => {
                out.push_str(&format!("  {name:<11} (cannot mint: {e})\n"));
                tokens.push(format!("${}_TOKEN", name.to_uppercase()));
            }
        }
        out.push_str(&format!("              user {user}: {about_them}\n"));
    }

    let curl =
        |token: &str, rest: &str| format!("  curl -sS -H 'Authorization: Bearer {token}' {rest}\n");
    out.push_str("\nTry it:\n  # the gig board, searched\n");
    out.push_str(&curl(
        &tokens[0],
        &format!("'{base}/v1/gigs?q={}'", catalog::FEATURED_QUERY),
    ));
    match &target {
        Some(t) => {
            out.push_str("  # the client's contract: milestones, escrow, disputes, reviews\n");
            out.push_str(&curl(
                &tokens[0],
                &format!("'{base}/v1/contracts/{}'", t.contract),
            ));
            let milestone = format!(
                "{base}/v1/contracts/{}/milestones/{}",
                t.contract, t.milestone.id
            );
            if t.needs_submit {
                out.push_str("  # the freelancer delivers the funded milestone\n");
                out.push_str(&curl(
                    &tokens[1],
                    &format!(
                        "-X POST -H 'Content-Type: application/json' -d '{{\"note\": \"Done, see the link.\", \"links\": [\"https://example.com/work\"]}}' '{milestone}/submit'"
                    ),
                ));
            }
            out.push_str(
                "  # the client approves it: escrow releases the amount less the fee (run twice: \
                 the same Idempotency-Key replays the answer)\n",
            );
            out.push_str(&curl(
                &tokens[0],
                &format!(
                    "-X POST -H 'Idempotency-Key: demo-approve-{}' '{milestone}/approve'",
                    t.milestone.id
                ),
            ));
        }
        None => out.push_str(
            "  # every demo milestone that awaited approval has been approved since; the \
             client's contracts: GET /v1/me/contracts\n",
        ),
    }
    out.push_str("\nStop with Ctrl-C.\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_address_is_reached_on_localhost() {
        assert_eq!(
            base_url("0.0.0.0:8080".parse().unwrap_or_else(|_| unreachable!())),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            base_url("[::]:80".parse().unwrap_or_else(|_| unreachable!())),
            "http://[::1]:80"
        );
        assert_eq!(
            base_url("127.0.0.1:3000".parse().unwrap_or_else(|_| unreachable!())),
            "http://127.0.0.1:3000"
        );
    }

    #[test]
    fn a_random_secret_is_long_enough_and_new_each_time() {
        let (a, b) = (random_secret(), random_secret());
        assert!(a.expose().len() >= crate::auth::MIN_SECRET_BYTES);
        assert_ne!(a, b);
    }
}
