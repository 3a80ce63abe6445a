//! The demo marketplace as data: who takes part, which gigs they post, who proposes, and how far
//! each hire has got. Built from a fixed seed with a generator of our own (not `rand`'s, whose
//! streams may change between versions), so every run plans the same ids and the same story, and
//! a later run can find the demo's users and contracts again without storing anything.

use gigledger_domain::{
    Budget, ContractId, Currency, DisputeId, GigId, MilestoneId, Money, ProposalId, UserId,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::catalog::{self, Kind};

/// How many clients and freelancers take part.
pub const CLIENTS: usize = 60;
pub const FREELANCERS: usize = 240;
/// Gigs each client posts.
const GIGS_PER_CLIENT: usize = 3;

/// The whole demo.
#[derive(Clone, Debug)]
pub struct Plan {
    pub clients: Vec<UserId>,
    pub freelancers: Vec<UserId>,
    /// Resolves the disputes (a party to none of the contracts).
    pub admin: UserId,
    pub auditor: UserId,
    pub analyst: UserId,
    pub gigs: Vec<GigPlan>,
    /// Posted after everything else: while it is missing, seeding did not finish.
    pub last: GigPlan,
}

/// One gig and everything that happens to it.
#[derive(Clone, Debug)]
pub struct GigPlan {
    pub id: GigId,
    pub client: UserId,
    pub title: String,
    pub description: String,
    pub skills: Vec<String>,
    pub budget: Budget,
    /// Days from now to the deadline, if any.
    pub deadline_in_days: Option<u64>,
    /// How long ago it was posted, in hours; every later step follows within that time.
    pub posted_hours_ago: u32,
    pub proposals: Vec<ProposalPlan>,
    pub story: Story,
    /// Seeds the choice of texts (notes, reasons, reviews) along the way.
    pub seed: u64,
}

/// A freelancer's proposal.
#[derive(Clone, Debug)]
pub struct ProposalPlan {
    pub id: ProposalId,
    pub freelancer: UserId,
    pub cover_letter: String,
    pub milestones: Vec<MilestonePlan>,
    pub fate: Fate,
}

#[derive(Clone, Debug)]
pub struct MilestonePlan {
    pub id: MilestoneId,
    pub title: String,
    pub amount: Money,
    /// Days from now, if agreed.
    pub due_in_days: Option<u64>,
}

/// What becomes of a proposal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Pending,
    Withdrawn,
    Rejected,
    /// Hired: the gig's story is [`Story::Hired`].
    Accepted,
}

/// How far a gig got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Story {
    /// Taking proposals.
    Open,
    /// Closed to new proposals, nobody hired.
    Closed,
    /// Cancelled by its client, nobody hired.
    Cancelled,
    /// A proposal was accepted: the contract's stage.
    Hired { contract: ContractId, stage: Stage },
}

/// Where a contract stands, milestone by milestone (`m0` the first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Nothing funded yet.
    AwaitingFunds,
    /// `m0` funded, no work delivered.
    Funded,
    /// `approved` milestones approved, the next one submitted and awaiting the client's review,
    /// and with `fund_next` the one after it funded.
    Submitted { approved: usize, fund_next: bool },
    /// `m0` submitted and sent back.
    ChangesRequested,
    /// `m0` approved, `m1` funded.
    InProgress,
    /// Every milestone approved (some after a change request).
    Completed(Reviews),
    /// `m0` (the only one) submitted longer ago than the review window and approved by the
    /// platform's timer; the freelancer has reviewed the client since.
    AutoApproved,
    /// Cancelled by a party, with `m0` funded (and refunded) or not.
    Cancelled { funded: bool, by_client: bool },
    /// `m0` submitted, then disputed by the client: its funds are frozen.
    Disputed { dispute: DisputeId },
    /// `m0` (the only one) disputed and split by the admin; both parties reviewed.
    Resolved {
        dispute: DisputeId,
        release_percent: i64,
    },
}

/// The reviews after completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reviews {
    /// Nobody reviewed yet.
    None,
    /// One side reviewed: hidden until the other does or the period ends.
    Pending { by_client: bool },
    /// Both did: revealed.
    Revealed,
}

impl Stage {
    /// How many milestones the accepted proposal needs for this stage (at least).
    const fn milestones_needed(self) -> usize {
        match self {
            Self::Submitted {
                approved,
                fund_next,
            } => approved + 1 + if fund_next { 1 } else { 0 },
            Self::InProgress => 2,
            _ => 1,
        }
    }

    /// Whether the contract must have exactly one milestone (so that it completes).
    const fn single_milestone(self) -> bool {
        matches!(self, Self::AutoApproved | Self::Resolved { .. })
    }
}

/// The stories of every gig but the featured first one, in the proportions of a busy board.
fn stories(next: &mut impl FnMut(&str) -> Uuid) -> Vec<Story> {
    let mut stories = vec![Story::Open; 58];
    stories.extend([Story::Closed; 6]);
    stories.extend([Story::Cancelled; 6]);
    let mut stages = Vec::new();
    stages.extend([Stage::AwaitingFunds; 10]);
    stages.extend([Stage::Funded; 12]);
    stages.extend(
        [Stage::Submitted {
            approved: 0,
            fund_next: false,
        }; 13],
    );
    stages.extend([Stage::ChangesRequested; 8]);
    stages.extend([Stage::InProgress; 10]);
    stages.extend([Stage::Completed(Reviews::Revealed); 14]);
    stages.extend([Stage::Completed(Reviews::Pending { by_client: true }); 5]);
    stages.extend([Stage::Completed(Reviews::Pending { by_client: false }); 5]);
    stages.extend([Stage::Completed(Reviews::None); 4]);
    stages.extend([Stage::AutoApproved; 6]);
    for i in 0..8 {
        stages.push(Stage::Cancelled {
            funded: i % 2 == 0,
            by_client: i % 3 != 2,
        });
    }
    for _ in 0..6 {
        stages.push(Stage::Disputed {
            dispute: DisputeId(next("dispute")),
        });
    }
    for release_percent in [50, 60, 70, 80, 30, 100, 0, 75] {
        stages.push(Stage::Resolved {
            dispute: DisputeId(next("dispute")),
            release_percent,
        });
    }
    stories.extend(stages.into_iter().map(|stage| Story::Hired {
        contract: ContractId(next("contract")),
        stage,
    }));
    stories
}

impl Plan {
    /// The demo, the same on every call.
    #[must_use]
    pub fn build() -> Self {
        let mut ids = Ids::default();
        let mut next = |kind: &str| ids.next(kind);
        let clients: Vec<UserId> = (0..CLIENTS).map(|_| UserId(next("client"))).collect();
        let freelancers: Vec<UserId> = (0..FREELANCERS)
            .map(|_| UserId(next("freelancer")))
            .collect();
        let admin = UserId(next("admin"));
        let auditor = UserId(next("auditor"));
        let analyst = UserId(next("analyst"));

        let mut rng = Rng(0x6769_676c_6564_6765);
        let mut stories = stories(&mut next);
        rng.shuffle(&mut stories);
        // The featured contract: the first client's first gig, a milestone approved, the next
        // submitted and awaiting review, the one after funded.
        let featured = Story::Hired {
            contract: ContractId(next("contract")),
            stage: Stage::Submitted {
                approved: 1,
                fund_next: true,
            },
        };
        stories.insert(0, featured);
        debug_assert_eq!(
            stories.len(),
            CLIENTS * GIGS_PER_CLIENT,
            "one story per gig"
        );

        // Freelancers propose in turns, so that every one of them takes part.
        let mut turn = 0usize;
        let mut gigs = Vec::with_capacity(stories.len());
        for (index, story) in stories.into_iter().enumerate() {
            let client_index = index / GIGS_PER_CLIENT;
            let kind_index = if index == 0 {
                catalog::FEATURED_KIND
            } else {
                rng.below(catalog::KINDS.len())
            };
            let business = catalog::BUSINESSES[rng.below(catalog::BUSINESSES.len())];
            let currency = currency_of(client_index);
            let kind = &catalog::KINDS[kind_index];
            let proposal_count = match story {
                Story::Open if rng.below(3) == 0 => 0,
                Story::Cancelled => rng.below(3),
                _ => 2 + rng.below(5),
            };
            let stage = match story {
                Story::Hired { stage, .. } => Some(stage),
                _ => None,
            };
            let posted_hours_ago = match stage {
                // Submitted longer ago than the review window, which then ran out.
                Some(Stage::AutoApproved) => 24 * 20 + rng.below_u32(24),
                // Within the review window and the review period, so that the platform's
                // timers leave pending reviews and submitted work as they are for a while.
                _ => 24 * (3 + rng.below_u32(10)) + rng.below_u32(24),
            };
            let budget = budget_of(kind, currency, &mut rng);
            let mut proposals = Vec::with_capacity(proposal_count);
            for p in 0..proposal_count {
                let freelancer = freelancers[turn % FREELANCERS];
                turn += 1;
                let fate = match (story, p) {
                    (Story::Hired { .. }, 0) => Fate::Accepted,
                    (Story::Open | Story::Hired { .. }, _) if p % 4 == 3 => Fate::Rejected,
                    (Story::Open, _) if p % 5 == 4 => Fate::Withdrawn,
                    _ => Fate::Pending,
                };
                let count = match stage.filter(|_| fate == Fate::Accepted) {
                    Some(stage) if stage.single_milestone() => 1,
                    Some(stage) => stage
                        .milestones_needed()
                        .max(1 + rng.below(3))
                        .min(kind.deliverables.len().max(stage.milestones_needed())),
                    None => 1 + rng.below(kind.deliverables.len()),
                };
                let bid = bid_of(&budget, count, &mut rng);
                let milestones = split(bid, count, currency)
                    .into_iter()
                    .enumerate()
                    .map(|(i, amount)| MilestonePlan {
                        id: MilestoneId(next("milestone")),
                        title: kind
                            .deliverables
                            .get(i)
                            .map_or_else(|| format!("Part {}", i + 1), |d| (*d).to_owned()),
                        amount,
                        due_in_days: (rng.below(2) == 0)
                            .then(|| 14 + 10 * u64::try_from(i).unwrap_or(0)),
                    })
                    .collect();
                proposals.push(ProposalPlan {
                    id: ProposalId(next("proposal")),
                    freelancer,
                    cover_letter: catalog::COVER_LETTERS[rng.below(catalog::COVER_LETTERS.len())]
                        .to_owned(),
                    milestones,
                    fate,
                });
            }
            gigs.push(GigPlan {
                id: GigId(next("gig")),
                client: clients[client_index],
                title: kind.title.replace("{b}", business.0),
                description: format!("{} {}", kind.description, business.1),
                skills: kind.skills.iter().map(|s| (*s).to_owned()).collect(),
                budget,
                deadline_in_days: (rng.below(3) == 0).then(|| 20 + u64::from(rng.below_u32(40))),
                posted_hours_ago,
                proposals,
                story,
                seed: rng.next_u64(),
            });
        }
        let last = GigPlan {
            id: GigId(next("gig")),
            client: clients[0],
            title: "Office plants care for a coworking space".to_owned(),
            description: "Water, feed and look after 60 office plants every two weeks; replace the ones that do not make it.".to_owned(),
            skills: vec!["gardening".to_owned(), "office-services".to_owned()],
            budget: Budget::Fixed {
                amount: Money::new(24_000, Currency::USD),
            },
            deadline_in_days: None,
            posted_hours_ago: 2,
            proposals: Vec::new(),
            story: Story::Open,
            seed: rng.next_u64(),
        };
        Self {
            clients,
            freelancers,
            admin,
            auditor,
            analyst,
            gigs,
            last,
        }
    }

    /// The contracts that may hold a milestone awaiting the client's review, the featured one
    /// first: where the printed approve line points (the first one still submitted).
    pub fn review_candidates(&self) -> impl Iterator<Item = (&GigPlan, ContractId, &ProposalPlan)> {
        self.gigs.iter().filter_map(|gig| match gig.story {
            Story::Hired {
                contract,
                stage: Stage::Submitted { .. } | Stage::Funded | Stage::InProgress,
            } => gig
                .proposals
                .iter()
                .find(|p| p.fate == Fate::Accepted)
                .map(|p| (gig, contract, p)),
            _ => None,
        })
    }
}

/// Clients pay in their own currency: US dollars for most, euros, pounds and yen for the rest.
fn currency_of(client: usize) -> Currency {
    const PATTERN: [Currency; 10] = [
        Currency::USD,
        Currency::EUR,
        Currency::USD,
        Currency::GBP,
        Currency::EUR,
        Currency::USD,
        Currency::JPY,
        Currency::GBP,
        Currency::USD,
        Currency::EUR,
    ];
    PATTERN[client % PATTERN.len()]
}

/// A US-cent amount in `currency`'s minor units, rounded to a round price.
fn price(cents: i64, currency: Currency) -> Money {
    let (minor, step) = if currency == Currency::JPY {
        (cents * 3 / 2, 1_000)
    } else if currency == Currency::GBP {
        (cents * 4 / 5, 500)
    } else {
        (cents, 500)
    };
    Money::new(((minor + step / 2) / step).max(1) * step, currency)
}

fn budget_of(kind: &Kind, currency: Currency, rng: &mut Rng) -> Budget {
    let factor = 80 + rng.below_i64(50);
    match kind.hourly_cents {
        Some((min, max)) => Budget::Hourly {
            min: price(min * factor / 100, currency),
            max: price(max * factor / 100, currency),
        },
        None => Budget::Fixed {
            amount: price(kind.budget_cents * factor / 100, currency),
        },
    }
}

/// What a freelancer bids: near a fixed budget, or a number of hours at a rate in the range.
fn bid_of(budget: &Budget, milestones: usize, rng: &mut Rng) -> Money {
    match budget {
        Budget::Fixed { amount } => {
            let factor = 85 + rng.below_i64(26);
            Money::new(amount.amount * factor / 100, amount.currency)
        }
        Budget::Hourly { min, max } => {
            let rate = min.amount + (max.amount - min.amount) * rng.below_i64(101) / 100;
            let hours = 20 * i64::try_from(milestones).unwrap_or(1);
            Money::new(rate * hours, min.currency)
        }
    }
}

/// `total` in `parts` round amounts, the last taking what is left; each above zero.
fn split(total: Money, parts: usize, currency: Currency) -> Vec<Money> {
    let n = i64::try_from(parts).unwrap_or(1).max(1);
    let step = if currency == Currency::JPY {
        1_000
    } else {
        100
    };
    let each = (total.amount / n / step).max(1) * step;
    let mut amounts: Vec<Money> = (1..n).map(|_| Money::new(each, currency)).collect();
    amounts.push(Money::new(
        (total.amount - each * (n - 1)).max(step),
        currency,
    ));
    amounts
}

/// Deterministic ids: UUID v7 (as every id of the system) on a fixed clock, one millisecond
/// apart in the order they are made, their random bits a hash of what they name.
#[derive(Default)]
struct Ids {
    made: u64,
}

/// 2026-01-01T00:00:00Z, the demo's id clock.
const ID_EPOCH_MS: u64 = 1_767_225_600_000;

impl Ids {
    fn next(&mut self, kind: &str) -> Uuid {
        self.made += 1;
        let hash = Sha256::digest(format!("gigledger-demo:{kind}:{}", self.made).as_bytes());
        let mut random = [0u8; 10];
        random.copy_from_slice(&hash[..10]);
        uuid::Builder::from_unix_timestamp_millis(ID_EPOCH_MS + self.made, &random).into_uuid()
    }
}

/// SplitMix64: small, fast, and the same on every platform and version.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        let n64 = u64::try_from(n).unwrap_or(u64::MAX).max(1);
        usize::try_from(self.next_u64() % n64).unwrap_or(0)
    }

    fn below_u32(&mut self, n: u32) -> u32 {
        u32::try_from(self.next_u64() % u64::from(n.max(1))).unwrap_or(0)
    }

    fn below_i64(&mut self, n: i64) -> i64 {
        let n = u64::try_from(n).unwrap_or(1).max(1);
        i64::try_from(self.next_u64() % n).unwrap_or(0)
    }

    /// Fisher–Yates.
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }

    /// One of `items` (not empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn the_plan_is_the_same_on_every_build() {
        let (a, b) = (Plan::build(), Plan::build());
        assert_eq!(a.clients, b.clients);
        let ids = |p: &Plan| -> Vec<(GigId, Vec<ProposalId>)> {
            p.gigs
                .iter()
                .map(|g| (g.id, g.proposals.iter().map(|p| p.id).collect()))
                .collect()
        };
        assert_eq!(ids(&a), ids(&b));
        assert_eq!(a.last.id, b.last.id);
    }

    #[test]
    fn every_id_is_a_distinct_uuid_v7() {
        let plan = Plan::build();
        let mut all: Vec<Uuid> = plan.clients.iter().map(|u| u.0).collect();
        all.extend(plan.freelancers.iter().map(|u| u.0));
        all.extend([plan.admin.0, plan.auditor.0, plan.analyst.0, plan.last.id.0]);
        for gig in &plan.gigs {
            all.push(gig.id.0);
            for p in &gig.proposals {
                all.push(p.id.0);
                all.extend(p.milestones.iter().map(|m| m.id.0));
            }
        }
        assert!(all.iter().all(|id| id.get_version_num() == 7));
        let distinct: BTreeSet<Uuid> = all.iter().copied().collect();
        assert_eq!(distinct.len(), all.len());
    }

    #[test]
    fn the_marketplace_has_every_stage_currency_and_budget_kind_and_everyone_takes_part() {
        let plan = Plan::build();
        let currencies: BTreeSet<String> = plan
            .gigs
            .iter()
            .map(|g| g.budget.currency().code().to_owned())
            .collect();
        assert!(currencies.len() >= 4, "{currencies:?}");
        assert!(plan
            .gigs
            .iter()
            .any(|g| matches!(g.budget, Budget::Hourly { .. })));
        assert!(plan
            .gigs
            .iter()
            .any(|g| matches!(g.budget, Budget::Fixed { .. })));
        let proposers: BTreeSet<UserId> = plan
            .gigs
            .iter()
            .flat_map(|g| g.proposals.iter().map(|p| p.freelancer))
            .collect();
        assert_eq!(proposers.len(), FREELANCERS);
        let posters: BTreeSet<UserId> = plan.gigs.iter().map(|g| g.client).collect();
        assert_eq!(posters.len(), CLIENTS);
        let stages: Vec<Stage> = plan
            .gigs
            .iter()
            .filter_map(|g| match g.story {
                Story::Hired { stage, .. } => Some(stage),
                _ => None,
            })
            .collect();
        for wanted in [
            |s: &Stage| matches!(s, Stage::AwaitingFunds),
            |s: &Stage| matches!(s, Stage::Funded),
            |s: &Stage| matches!(s, Stage::Submitted { .. }),
            |s: &Stage| matches!(s, Stage::ChangesRequested),
            |s: &Stage| matches!(s, Stage::InProgress),
            |s: &Stage| matches!(s, Stage::Completed(Reviews::Revealed)),
            |s: &Stage| matches!(s, Stage::Completed(Reviews::Pending { .. })),
            |s: &Stage| matches!(s, Stage::AutoApproved),
            |s: &Stage| matches!(s, Stage::Cancelled { .. }),
            |s: &Stage| matches!(s, Stage::Disputed { .. }),
            |s: &Stage| matches!(s, Stage::Resolved { .. }),
        ] {
            assert!(stages.iter().any(wanted));
        }
    }

    #[test]
    fn accepted_proposals_have_the_milestones_their_stage_needs() {
        for gig in Plan::build().gigs {
            if let Story::Hired { stage, .. } = gig.story {
                let accepted: Vec<&ProposalPlan> = gig
                    .proposals
                    .iter()
                    .filter(|p| p.fate == Fate::Accepted)
                    .collect();
                assert_eq!(accepted.len(), 1, "{}", gig.title);
                let n = accepted[0].milestones.len();
                assert!(n >= stage.milestones_needed(), "{stage:?}: {n}");
                if stage.single_milestone() {
                    assert_eq!(n, 1);
                }
            }
        }
    }

    #[test]
    fn amounts_add_up_and_are_positive() {
        for gig in Plan::build().gigs {
            for p in &gig.proposals {
                assert!(p.milestones.iter().all(|m| m.amount.amount > 0));
                assert!(p
                    .milestones
                    .iter()
                    .all(|m| m.amount.currency == gig.budget.currency()));
            }
        }
    }

    #[test]
    fn the_featured_contract_comes_first_among_the_review_candidates() {
        let plan = Plan::build();
        let (gig, _, proposal) = plan.review_candidates().next().expect("a candidate");
        assert_eq!(gig.id, plan.gigs[0].id);
        assert_eq!(gig.client, plan.clients[0]);
        assert_eq!(proposal.milestones.len(), 3);
    }
}
