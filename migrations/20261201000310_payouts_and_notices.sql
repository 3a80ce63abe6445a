-- Money leaves the platform (issue 11): the simulated provider's payout accounts, transfers and
-- card refunds, the notices it sends, and our record of every notice received.

-- Account, transfer and refund ids of the simulated provider: `sim_acct_…`, `sim_tr_…`, `sim_re_…`.
create sequence provider.numbers;

-- One account per user and provider, pending until the provider verifies it.
create table provider.accounts (
    account_id text primary key,
    user_id    uuid not null,
    provider   text not null,
    status     text not null check (status in ('pending', 'verified')),
    created_at timestamptz not null default now(),
    unique (user_id, provider)
);

-- One row per idempotency key (the payout id): a retried transfer meets the first.
create table provider.transfers (
    idempotency_key text primary key,
    transfer_id     text not null unique,
    account_id      text not null references provider.accounts,
    amount          bigint not null check (amount > 0),
    currency        text not null,
    status          text not null check (status in ('paid', 'failed')),
    failure         text,
    created_at      timestamptz not null default now(),
    failed_at       timestamptz
);

-- One row per idempotency key (the FundsRefunded event id); a charge's refunds never exceed it.
create table provider.refunds (
    idempotency_key text primary key,
    refund_id       text not null unique,
    charge_id       text not null references provider.charges (charge_id),
    amount          bigint not null check (amount > 0),
    currency        text not null,
    status          text not null check (status in ('succeeded', 'failed')),
    failure         text,
    created_at      timestamptz not null default now()
);
create index refunds_of_charge on provider.refunds (charge_id);

-- The notices the provider sends to the service's webhook, signed at delivery, in order.
create table provider.outbox (
    number       bigint generated always as identity primary key,
    notice_id    text not null unique,
    body         jsonb not null,
    created_at   timestamptz not null default now(),
    delivered_at timestamptz
);
create index outbox_undelivered on provider.outbox (number) where delivered_at is null;

grant usage on sequence provider.numbers to gigledger_app;
grant select, insert, update on provider.accounts, provider.transfers, provider.refunds,
    provider.outbox to gigledger_app;

-- Our side: every notice received, by the provider's id, so that a repeat changes nothing. A notice
-- is recorded before it is applied and marked applied after: a crash between the two leaves it
-- unapplied, and the provider's retry applies it (the commands it becomes are idempotent).
create table provider_notices (
    notice_id   text primary key,
    notice_type text not null,
    body        jsonb not null,
    received_at timestamptz not null default now(),
    applied_at  timestamptz,
    -- what applying it did: `applied`, `ignored: <why>`
    outcome     text
);
grant select, insert, update on provider_notices to gigledger_app;
