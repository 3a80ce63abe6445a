-- Sums that grow with the number of events are numeric, not bigint (issue 7, Money 5).
--
-- The domain bounds every amount a command carries (at most 10^13 minor units), so a column that
-- holds one milestone's or one event's amount stays bigint. A sum over events without a bound on
-- their number (a freelancer's earnings, a day's volumes) could still overflow bigint, and an
-- overflow in a handler's statement stops that read model's worker for everyone. numeric is exact
-- and unbounded; the read functions send it as text and parse it into an i128 (no float on the
-- way). Adding a bigint parameter to a numeric column is an implicit, exact cast.
--
-- A rebuild copies these tables with `like … including all`, so the copies get the new types.

-- Net released to each freelancer, per currency: one row collects every release to them.
alter table read.user_stats_earnings
    alter column net type numeric;

-- Released gross, fees and refunds per day and currency: one row collects every movement of the
-- day. The counters beside them (gigs, proposals, hires) count events and stay bigint.
alter table read.analytics_daily
    alter column gmv_released type numeric,
    alter column fees type numeric,
    alter column refunds type numeric;
