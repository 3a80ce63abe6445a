-- The last running total that could overflow (issue 8, item 14). Issue 7 made the sums of money
-- numeric (20261201000020). Every other accumulator of the read models was checked:
--
-- - sums of money: user_stats_earnings.net and analytics_daily.{gmv_released, fees, refunds}
--   are numeric; the ledger's and the analytics' read functions sum into numeric and send text
--   (no cast back to bigint);
-- - per-milestone balances (contract_escrow_balances) stay bigint: the escrow's invariants bound
--   each by the milestone's amount (at most 10^13);
-- - counters (gigs, proposals, hires, completed contracts, rating_count, events_applied,
--   proposals_count) stay bigint: each adds 1 per event at most, so none can pass the number of
--   events, which the log's bigint positions bound;
-- - user_stats.rating_sum adds up to 5 per revealed review, so it could pass bigint before the
--   log runs out of positions: it becomes numeric here, read exactly as text.
--
-- A rebuild copies the table with `like … including all`, so the copy gets the new type.
alter table read.user_stats
    alter column rating_sum type numeric;
