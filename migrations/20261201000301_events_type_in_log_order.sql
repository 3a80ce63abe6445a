-- no-transaction
-- The audit feed's `type=` filter, served in log order (replacing `events_type`, which served the
-- same equality lookups in position order, so an append keeps the same number of indexes). Built
-- concurrently, outside a transaction (the first line), so appends go on while it builds on a
-- large log; one statement per file, since PostgreSQL runs a multi-statement string as one
-- transaction, where `concurrently` is refused.
create index concurrently if not exists events_type_in_log_order
    on events (event_type, transaction_id, position);
