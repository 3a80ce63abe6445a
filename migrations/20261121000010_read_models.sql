-- The read models (projections/src/read/): tables derived from the event log, never written by
-- commands. Every table lives in schema `read`; a rebuild creates a sibling table in
-- `read_rebuild` with `create table read_rebuild.x (like read.x including all)`, refills it from
-- position zero and swaps it in. Handlers name tables unqualified (the worker sets search_path),
-- so the same SQL fills either schema.
--
-- Conventions:
-- - Ids are uuid, amounts bigint minor units with a `currency` text code beside them, never a
--   float; counters are bigint.
-- - `last_position` on a row is the global position of the last event that changed it. A row is
--   only ever changed by events of one stream, whose positions increase along the stream, so
--   `where last_position < $position` makes every increment and state change apply once even if a
--   batch were replayed.
-- - Rows keyed by an event position (or by an id an event creates) are inserted with
--   `on conflict do nothing` for the same reason.
-- - Times are the domain's times (posted_at, …) or the event's `recorded_at`, never now(), so an
--   incremental build and a rebuild from zero produce identical rows.

------------------------------------------------------------------------------------------------
-- gig_board: every gig with its status, searchable.
------------------------------------------------------------------------------------------------

-- `array_to_string` is only stable in general (element output functions may depend on
-- settings), but for text[] it is a plain concatenation; the wrapper is declared immutable so a
-- generated column can use it.
create function read.skills_document(skills text[]) returns text
language sql immutable parallel safe
as $$ select array_to_string(skills, ' ') $$;

create table read.gig_board (
    gig_id            uuid primary key,
    client_id         uuid not null,
    title             text not null,
    description       text not null,
    -- normalised lower case by the domain
    skills            text[] not null,
    budget_kind       text not null check (budget_kind in ('fixed', 'hourly')),
    currency          text not null,
    -- a fixed budget is stored as budget_min = budget_max = its amount, so one overlap test
    -- (budget_max >= :min and budget_min <= :max) serves both kinds of budget filter
    budget_min        bigint not null,
    budget_max        bigint not null check (budget_max >= budget_min),
    deadline          date,
    posted_at         timestamptz not null,
    revised_at        timestamptz,
    -- every proposal received, whatever became of it (the domain's proposal_count)
    proposals_count   bigint not null default 0,
    status            text not null check (status in ('open', 'closed', 'hired', 'cancelled')),
    hired_proposal_id uuid,
    hired_contract_id uuid,
    hired_at          timestamptz,
    closed_at         timestamptz,
    cancelled_at      timestamptz,
    last_position     bigint not null,
    -- English stemming; title weighs most, then description, then skills
    search            tsvector generated always as (
                          setweight(to_tsvector('english'::regconfig, title), 'A')
                          || setweight(to_tsvector('english'::regconfig, description), 'B')
                          || setweight(to_tsvector('english'::regconfig, read.skills_document(skills)), 'C')
                      ) stored
);

create index gig_board_search on read.gig_board using gin (search);
-- "any of these skills": skills && $1
create index gig_board_skills on read.gig_board using gin (skills);
-- newest first, the default order and its keyset (posted_at, gig_id)
create index gig_board_newest on read.gig_board (posted_at desc, gig_id desc);
create index gig_board_status_newest on read.gig_board (status, posted_at desc, gig_id desc);

------------------------------------------------------------------------------------------------
-- proposals: per gig and per freelancer.
------------------------------------------------------------------------------------------------

-- What the proposals model remembers of each gig (its owner and title), from GigPosted/GigRevised.
create table read.proposal_gigs (
    gig_id        uuid primary key,
    client_id     uuid not null,
    title         text not null,
    last_position bigint not null
);

create table read.proposals (
    proposal_id        uuid primary key,
    gig_id             uuid not null,
    freelancer_id      uuid not null,
    cover_letter       text not null,
    -- the proposal's milestones as the domain serialises them (MilestoneTerms[])
    milestones         jsonb not null,
    bid_amount         bigint not null,
    currency           text not null,
    status             text not null check (status in ('pending', 'withdrawn', 'rejected', 'accepted')),
    submitted_at       timestamptz not null,
    decided_at         timestamptz,
    contract_id        uuid,
    -- the ProposalSubmitted event's position: unique, the keyset of both listings
    submitted_position bigint not null unique,
    last_position      bigint not null
);

create index proposals_by_gig on read.proposals (gig_id, submitted_position);
create index proposals_by_freelancer on read.proposals (freelancer_id, submitted_position desc);

------------------------------------------------------------------------------------------------
-- contracts: contracts, milestones, escrow balances, disputes and reviews per party.
------------------------------------------------------------------------------------------------

create table read.contracts (
    contract_id        uuid primary key,
    gig_id             uuid not null,
    proposal_id        uuid not null,
    client_id          uuid not null,
    freelancer_id      uuid not null,
    currency           text not null,
    fee_bps            bigint not null,
    review_window_days bigint not null,
    max_revisions      bigint not null,
    status             text not null check (status in ('active', 'completed', 'cancelled')),
    started_at         timestamptz not null,
    completed_at       timestamptz,
    cancelled_at       timestamptz,
    cancelled_by       uuid,
    cancel_reason      text,
    reviews_revealed_at timestamptz,
    -- the ContractStarted event's position: the keyset of a user's contracts
    started_position   bigint not null unique,
    last_position      bigint not null
);

create index contracts_by_client on read.contracts (client_id, started_position desc);
create index contracts_by_freelancer on read.contracts (freelancer_id, started_position desc);

-- Written by the contract stream only (escrow balances are a separate table: the escrow stream
-- may be projected before or after ContractStarted, and each row has one writing stream).
create table read.contract_milestones (
    contract_id    uuid not null,
    milestone_id   uuid not null,
    -- the milestone's place in the agreed schedule, from 0
    ordinal        bigint not null,
    title          text not null,
    amount         bigint not null,
    currency       text not null,
    due_date       date,
    status         text not null check (status in ('awaiting_funds', 'funded', 'submitted',
                       'changes_requested', 'approved', 'disputed', 'resolved', 'cancelled')),
    revision_count bigint not null default 0,
    review_due_at  timestamptz,
    funded_at      timestamptz,
    submitted_at   timestamptz,
    approved_at    timestamptz,
    auto_approved  boolean not null default false,
    last_position  bigint not null,
    primary key (contract_id, milestone_id)
);

-- One row per milestone of each escrow, written by the escrow stream only.
create table read.contract_escrow_balances (
    contract_id    uuid not null,
    milestone_id   uuid not null,
    currency       text not null,
    scheduled      bigint not null,
    deposited      bigint not null default 0,
    released_gross bigint not null default 0,
    fee            bigint not null default 0,
    net            bigint not null default 0,
    refunded       bigint not null default 0,
    held           bigint generated always as (deposited - released_gross - refunded) stored,
    -- frozen by a dispute until settled (then settled is true), as in the escrow aggregate
    frozen         boolean not null default false,
    settled        boolean not null default false,
    last_position  bigint not null,
    primary key (contract_id, milestone_id)
);

create table read.contract_disputes (
    dispute_id     uuid primary key,
    contract_id    uuid not null,
    milestone_id   uuid not null,
    opened_by      uuid not null,
    reason         text not null,
    status         text not null check (status in ('open', 'resolved')),
    opened_at      timestamptz not null,
    resolved_at    timestamptz,
    resolved_by    uuid,
    release_amount bigint,
    refund_amount  bigint,
    currency       text,
    opened_position bigint not null,
    last_position  bigint not null
);

create index contract_disputes_by_contract on read.contract_disputes (contract_id, opened_position);

-- Reviews are stored when left but served only once revealed (double-blind).
create table read.contract_reviews (
    contract_id  uuid not null,
    reviewer_id  uuid not null,
    reviewee_id  uuid not null,
    reviewer     text not null check (reviewer in ('client', 'freelancer')),
    rating       smallint not null check (rating between 1 and 5),
    text         text not null,
    reviewed_at  timestamptz not null,
    revealed_at  timestamptz,
    primary key (contract_id, reviewer_id)
);

------------------------------------------------------------------------------------------------
-- ledger: the double-entry journal of every escrow event.
------------------------------------------------------------------------------------------------

-- The parties of each escrow, from EscrowOpened: the freelancer names the payable account.
create table read.ledger_escrows (
    contract_id     uuid primary key,
    client_id       uuid not null,
    freelancer_id   uuid not null,
    currency        text not null,
    fee_bps         bigint not null,
    opened_position bigint not null
);

create table read.ledger_entries (
    position     bigint not null,
    -- the line's index in EscrowEvent::journal_lines
    line         smallint not null,
    contract_id  uuid not null,
    milestone_id uuid not null,
    event_type   text not null,
    movement     text not null check (movement in ('deposit', 'release_gross', 'release_fee',
                     'release_net', 'refund')),
    account      text not null,
    -- signed: positive flows into the account
    amount       bigint not null,
    currency     text not null,
    recorded_at  timestamptz not null,
    primary key (position, line)
);

create index ledger_entries_by_contract on read.ledger_entries (contract_id, position, line);
create index ledger_entries_by_account on read.ledger_entries (account, currency);

------------------------------------------------------------------------------------------------
-- notifications: what each person wants to be told.
------------------------------------------------------------------------------------------------

-- What the notifications model remembers to address and describe notifications.
create table read.notification_gigs (
    gig_id    uuid primary key,
    client_id uuid not null,
    title     text not null
);

-- Filled by ContractStarted or EscrowOpened, whichever is projected first (both carry the
-- parties); ContractStarted adds the gig and the milestone titles.
create table read.notification_contracts (
    contract_id   uuid primary key,
    client_id     uuid not null,
    freelancer_id uuid not null,
    gig_id        uuid,
    -- {milestone_id: title}
    milestones    jsonb not null default '{}'
);

-- Reviews waiting for ReviewsRevealed, which notifies each reviewee.
create table read.notification_reviews (
    contract_id uuid not null,
    reviewer_id uuid not null,
    reviewee_id uuid not null,
    rating      smallint not null,
    primary key (contract_id, reviewer_id)
);

create table read.notifications (
    -- the event's place in the log: the order in which notifications appear (and are streamed),
    -- since a later-applied event always sorts after (transaction_id, position) of earlier ones
    transaction_id bigint not null,
    position       bigint not null,
    user_id        uuid not null,
    kind           text not null,
    data           jsonb not null,
    gig_id         uuid,
    proposal_id    uuid,
    contract_id    uuid,
    milestone_id   uuid,
    dispute_id     uuid,
    created_at     timestamptz not null,
    -- set by the user through the API, not by events: a rebuild starts every row unread
    read           boolean not null default false,
    primary key (position, user_id)
);

create index notifications_by_user on read.notifications (user_id, transaction_id, position);

------------------------------------------------------------------------------------------------
-- user_stats: the public profile.
------------------------------------------------------------------------------------------------

create table read.user_stats (
    user_id                 uuid primary key,
    -- an exact rational: average = rating_sum / rating_count, revealed reviews only
    rating_sum              bigint not null default 0,
    rating_count            bigint not null default 0,
    completed_as_client     bigint not null default 0,
    completed_as_freelancer bigint not null default 0
);

-- Net released to each freelancer, per currency (the earnings band is derived on read).
create table read.user_stats_earnings (
    user_id  uuid not null,
    currency text not null,
    net      bigint not null default 0,
    primary key (user_id, currency)
);

-- Parties of each contract (from ContractStarted or EscrowOpened, whichever comes first) and
-- guards: `completed` makes ContractCompleted count once, `last_escrow_position` makes each
-- release count once.
create table read.user_stats_contracts (
    contract_id          uuid primary key,
    client_id            uuid not null,
    freelancer_id        uuid not null,
    completed            boolean not null default false,
    last_escrow_position bigint not null default 0
);

-- Reviews left but not yet revealed, and whether they were counted.
create table read.user_stats_reviews (
    contract_id uuid not null,
    reviewer_id uuid not null,
    reviewee_id uuid not null,
    rating      smallint not null,
    revealed    boolean not null default false,
    primary key (contract_id, reviewer_id)
);

------------------------------------------------------------------------------------------------
-- analytics: facts (one row per gig, proposal, hire, money movement, dispute) and daily rollups.
-- A rollup is incremented only when its fact row was inserted, so each event counts once.
-- Days are UTC dates of the domain's times.
------------------------------------------------------------------------------------------------

create table read.analytics_gigs (
    gig_id            uuid primary key,
    posted_at         timestamptz not null,
    currency          text not null,
    -- the current skills (revisions apply): proposals count towards the gig's skills
    skills            text[] not null,
    proposals         bigint not null default 0,
    first_proposal_at timestamptz,
    contract_id       uuid,
    hired_at          timestamptz,
    completed_at      timestamptz,
    last_position     bigint not null
);

create index analytics_gigs_posted on read.analytics_gigs (posted_at);
create index analytics_gigs_contract on read.analytics_gigs (contract_id);

create table read.analytics_proposals (
    proposal_id  uuid primary key,
    gig_id       uuid not null,
    submitted_at timestamptz not null,
    currency     text not null
);

-- One row per hire: time-to-hire is accepted_at - posted_at, percentiles computed on read.
create table read.analytics_hires (
    contract_id uuid primary key,
    gig_id      uuid not null,
    currency    text not null,
    posted_at   timestamptz not null,
    accepted_at timestamptz not null
);

create index analytics_hires_accepted on read.analytics_hires (accepted_at);

create table read.analytics_movements (
    position     bigint primary key,
    kind         text not null check (kind in ('release', 'refund')),
    contract_id  uuid not null,
    milestone_id uuid not null,
    currency     text not null,
    gross        bigint not null default 0,
    fee          bigint not null default 0,
    refund       bigint not null default 0,
    at           timestamptz not null
);

create table read.analytics_disputes (
    dispute_id     uuid primary key,
    contract_id    uuid not null,
    -- the contract's currency (from its gig's row), so refund shares are per currency
    currency       text not null,
    opened_at      timestamptz not null,
    resolved_at    timestamptz,
    release_amount bigint,
    refund_amount  bigint
);

create index analytics_disputes_opened on read.analytics_disputes (opened_at);
create index analytics_disputes_resolved on read.analytics_disputes (resolved_at);

create table read.analytics_daily (
    day          date not null,
    currency     text not null,
    gigs_posted  bigint not null default 0,
    proposals    bigint not null default 0,
    hires        bigint not null default 0,
    -- released gross, the platform's fees out of it, and refunds, in minor units
    gmv_released bigint not null default 0,
    fees         bigint not null default 0,
    refunds      bigint not null default 0,
    primary key (day, currency)
);

create table read.analytics_skills_daily (
    day       date not null,
    skill     text not null,
    -- demand: gigs posted with the skill; supply: proposals on gigs with the skill
    gigs      bigint not null default 0,
    proposals bigint not null default 0,
    primary key (day, skill)
);

grant select on all tables in schema read to gigledger_analyst;
grant select, insert, update, delete on all tables in schema read to gigledger_app;
