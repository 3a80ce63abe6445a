-- Read models of money leaving the platform (issue 11): wallets, payouts, card refunds, and the
-- journal lines of payouts.

-- The card refund is a ledger movement of its own: `client_refund` back to `client_funding`.
alter table read.ledger_entries drop constraint ledger_entries_movement_check;
alter table read.ledger_entries add constraint ledger_entries_movement_check
    check (movement in ('deposit', 'release_gross', 'release_fee', 'release_net', 'refund',
                        'card_refund'));

-- Payouts' journal lines: `freelancer_payable:{user}` → `payouts_sent`, and back after a failure
-- of a paid payout. They belong to no contract; the trial balance sums them with the escrows'.
create table read.wallet_ledger_entries (
    position    bigint not null,
    line        smallint not null,
    user_id     uuid not null,
    payout_id   uuid not null,
    event_type  text not null,
    movement    text not null check (movement in ('payout', 'payout_returned')),
    account     text not null,
    amount      bigint not null,
    currency    text not null,
    recorded_at timestamptz not null,
    primary key (position, line)
);
create index wallet_ledger_entries_by_user on read.wallet_ledger_entries (user_id, position, line);

-- A freelancer's balances per currency, as the wallet aggregate keeps them (each bounded by what
-- the aggregate accepts: it refuses a balance past i64).
create table read.wallet_balances (
    user_id       uuid not null,
    currency      text not null,
    available     bigint not null default 0,
    pending       bigint not null default 0,
    paid_out      bigint not null default 0,
    credited      bigint not null default 0,
    last_position bigint not null,
    primary key (user_id, currency)
);

-- The payout account each freelancer registered last, per provider.
create table read.wallet_accounts (
    user_id       uuid not null,
    provider      text not null,
    account_id    text not null,
    status        text not null check (status in ('pending', 'verified')),
    registered_at timestamptz not null,
    verified_at   timestamptz,
    primary key (user_id, provider)
);

-- Each credit of a release's net amount.
create table read.wallet_credits (
    position     bigint primary key,
    user_id      uuid not null,
    contract_id  uuid not null,
    milestone_id uuid not null,
    amount       bigint not null,
    currency     text not null,
    credited_at  timestamptz not null
);
create index wallet_credits_by_user on read.wallet_credits (user_id, position desc);

-- Every payout and where it stands.
create table read.payouts (
    payout_id     uuid primary key,
    user_id       uuid not null,
    amount        bigint not null,
    currency      text not null,
    provider      text not null,
    account_id    text not null,
    status        text not null check (status in ('pending', 'paid', 'failed')),
    transfer_id   text,
    reason        text,
    requested_at  timestamptz not null,
    updated_at    timestamptz not null,
    -- the position of the request: newest-first listings page on it
    position      bigint not null unique,
    last_position bigint not null
);
create index payouts_by_user on read.payouts (user_id, position desc);
create index payouts_by_status on read.payouts (status, position desc);

-- Every refund booked on an escrow and whether it reached the card.
create table read.card_refunds (
    contract_id   uuid not null,
    milestone_id  uuid not null,
    amount        bigint not null,
    currency      text not null,
    status        text not null check (status in ('pending', 'issued', 'failed')),
    refund_id     text,
    reason        text,
    refunded_at   timestamptz not null,
    updated_at    timestamptz not null,
    position      bigint not null unique,
    last_position bigint not null,
    primary key (contract_id, milestone_id)
);
create index card_refunds_by_status on read.card_refunds (status, position desc);

grant select, insert, update, delete on read.wallet_ledger_entries, read.wallet_balances,
    read.wallet_accounts, read.wallet_credits, read.payouts, read.card_refunds to gigledger_app;
