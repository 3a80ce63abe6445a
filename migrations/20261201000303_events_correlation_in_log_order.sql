-- no-transaction
-- The audit feed's `correlation_id=` filter, served in log order (replacing
-- `events_correlation_id`); built concurrently as 20261201000301 explains.
create index concurrently if not exists events_correlation_in_log_order
    on events (correlation_id, transaction_id, position)
    where correlation_id is not null;
