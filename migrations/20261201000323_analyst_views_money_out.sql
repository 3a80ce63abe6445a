-- Analysts see what left the platform too (issue 11): the daily rollup's view gains paid_out and
-- refunded_to_card, as `GET /v1/analytics/gmv` shows them. The other views are as before.

create or replace function analyst_views_create() returns void
language plpgsql
as $$
begin
    -- Money per UTC day and currency, what left the platform included: paid out to freelancers
    -- (less payouts failed after being paid) and refunded to cards.
    create view analytics.daily as
        select day, currency, gigs_posted, proposals, hires, gmv_released, fees, refunds,
               paid_out, refunded_to_card
          from read.analytics_daily;
    create view analytics.skills_daily as
        select day, skill, gigs, proposals
          from read.analytics_skills_daily;
    -- One row per gig, without its id or exact times: the UTC day it was posted, its current
    -- currency and skills, how many proposals it received, and whole hours from posting to the
    -- first proposal, to the hire and to completion (null when it has not happened).
    create view analytics.gigs as
        select (posted_at at time zone 'UTC')::date as posted_on, currency, skills, proposals,
               floor(extract(epoch from first_proposal_at - posted_at) / 3600)::bigint
                   as hours_to_first_proposal,
               floor(extract(epoch from hired_at - posted_at) / 3600)::bigint as hours_to_hire,
               floor(extract(epoch from completed_at - posted_at) / 3600)::bigint
                   as hours_to_completion
          from read.analytics_gigs;
    -- One row per hire: the UTC day it was accepted, the currency, whole hours from posting.
    create view analytics.hires as
        select currency, (accepted_at at time zone 'UTC')::date as accepted_on,
               floor(extract(epoch from accepted_at - posted_at) / 3600)::bigint as hours_to_hire
          from read.analytics_hires;
    -- One row per dispute: the UTC days it was opened and resolved and how the milestone was
    -- split (no parties, no reason).
    create view analytics.disputes as
        select currency, (opened_at at time zone 'UTC')::date as opened_on,
               (resolved_at at time zone 'UTC')::date as resolved_on, release_amount,
               refund_amount
          from read.analytics_disputes;
    grant select on all tables in schema analytics to gigledger_analyst;
end
$$;

select analyst_views_drop();
select analyst_views_create();
