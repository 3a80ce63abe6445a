-- no-transaction
-- Replaced by events_correlation_in_log_order (20261201000303).
drop index concurrently if exists events_correlation_id;
