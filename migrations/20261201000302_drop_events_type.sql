-- no-transaction
-- Replaced by events_type_in_log_order (20261201000301).
drop index concurrently if exists events_type;
