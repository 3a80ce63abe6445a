-- The simulated payment provider's own records, in a schema of their own standing in for the
-- provider's side of the wire: every gigledger process on this database shares them (as they
-- would share a real provider), and `gigledger audit reconcile` matches them with the deposits.
create schema provider;

-- Charge ids are `sim_ch_000001`, `sim_ch_000002`, …; a number taken by a charge that lost a
-- race for its key is skipped, so ids are unique but not gap-free.
create sequence provider.charge_numbers;

-- One row per idempotency key ever charged or voided. The key is the primary key so that a
-- charge and a void of one key, from any two sessions, are ordered by its index: whichever
-- inserts second sees the first.
create table provider.charges (
    idempotency_key text primary key,
    -- null for a key voided before any charge was made under it (a void that overtook a slow
    -- charge): the key is refused for good all the same
    charge_id text unique,
    amount bigint,
    currency text,
    payer uuid,
    contract_id uuid,
    milestone_id uuid,
    charged_at timestamptz,
    voided_at timestamptz,
    constraint charges_whole check (
        (charge_id is null) = (amount is null)
        and (charge_id is null) = (currency is null)
        and (charge_id is null) = (payer is null)
        and (charge_id is null) = (charged_at is null)
    ),
    constraint charges_tombstone_is_voided check (charge_id is not null or voided_at is not null)
);

-- The provider's side is the provider's: the service charges and voids, nobody deletes.
revoke all on schema provider from public;
grant usage on schema provider to gigledger_app;
grant select, insert, update on provider.charges to gigledger_app;
grant usage on sequence provider.charge_numbers to gigledger_app;
