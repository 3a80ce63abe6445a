-- Analysts read the analytics, and nothing personal (issue 8, item 8).
--
-- Until now `gigledger_analyst` could select every table of schema `read`: unrevealed review texts
-- and ratings, each freelancer's exact earnings, cover letters and bids, dispute, cancellation
-- and change-request reasons (in `contract_disputes`, `contracts`, `notifications.data`), the
-- ledger's per-account balances. From here on the role reads schema `analytics` only: views over
-- the analytics read model that carry counts, amounts per day and currency, and timings, with no
-- user, gig, proposal or contract id and no free text. The role loses every privilege on `read`.
--
-- The views live outside `read` because `projections rebuild` drops the live tables of `read`
-- and moves fresh copies in: a view names a table by oid, so it would block the drop or go on
-- reading the dropped table. The swap therefore drops the views before it drops tables and
-- defines them again after the copies are moved in (`analyst_views_drop()`,
-- `analyst_views_create()`, both below, called by projections/src/rebuild.rs in the swap's
-- transaction), so analysts never see a half-swapped model either.

revoke all on all tables in schema read from gigledger_analyst;
revoke usage on schema read from gigledger_analyst;
-- The default privilege granted by 20261121000002 would hand every table created in `read`
-- later (a new read model) to analysts again.
alter default privileges in schema read revoke select on tables from gigledger_analyst;

create schema analytics;
revoke all on schema analytics from public;
grant usage on schema analytics to gigledger_analyst;

-- Defines every analyst view. plpgsql runs each statement as written (static text); a view
-- reads with its owner's rights, so analysts need select on the views only, never on `read`.
create function analyst_views_create() returns void
language plpgsql
as $$
begin
    -- Volumes per UTC day and currency: counts of gigs posted, proposals and hires, and the
    -- money released (gross), the platform's fees and the refunds, in minor units (numeric).
    create view analytics.daily as
        select day, currency, gigs_posted, proposals, hires, gmv_released, fees, refunds
          from read.analytics_daily;
    -- Demand (gigs posted) and supply (proposals) per UTC day and skill.
    create view analytics.skills_daily as
        select day, skill, gigs, proposals
          from read.analytics_skills_daily;
    -- One row per gig and what became of it, without the gig's id: its current currency and
    -- skills, how many proposals it received and when the first came, when it was hired and
    -- when its contract completed.
    create view analytics.gigs as
        select posted_at, currency, skills, proposals, first_proposal_at, hired_at, completed_at
          from read.analytics_gigs;
    -- One row per hire: posted and accepted times (time to hire), currency.
    create view analytics.hires as
        select currency, posted_at, accepted_at
          from read.analytics_hires;
    -- One row per dispute: when it was opened and resolved and how the milestone was split
    -- (no parties, no reason).
    create view analytics.disputes as
        select currency, opened_at, resolved_at, release_amount, refund_amount
          from read.analytics_disputes;
    grant select on all tables in schema analytics to gigledger_analyst;
end
$$;

-- Drops every analyst view (before a rebuild drops the tables they read).
create function analyst_views_drop() returns void
language plpgsql
as $$
begin
    drop view if exists analytics.daily, analytics.skills_daily, analytics.gigs,
        analytics.hires, analytics.disputes;
end
$$;

-- Only the schema's owner (migrations, rebuilds) defines or drops views.
revoke all on function analyst_views_create() from public;
revoke all on function analyst_views_drop() from public;

select analyst_views_create();
