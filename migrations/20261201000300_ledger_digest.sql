-- The ledger digest (issue 10): a running SHA-256 over the global log in the log reader's order
-- (each event's position, stream, sequence and chain hash), kept by the `ledger_digest` worker
-- with one row per checkpoint (per batch it folded), so that the digest at any past checkpoint
-- can be looked up and a digest an auditor kept can later be recomputed from the events.
--
-- The per-stream hash chain proves each stored event unaltered and linked to its predecessor, but
-- not that the log is complete: a stream's last events, a whole stream, or the order of events of
-- different streams can change with every remaining link intact. The digest covers all three.
--
-- What the worker writes it never changes: the table is append-only for every role (a superuser
-- can still rewrite it; a digest kept outside the database is what proves history then).
create table ledger_digests (
    checkpoint     bigint generated always as identity primary key,
    -- The last event folded, as the log reader orders it: (transaction_id, position).
    position       bigint not null unique,
    transaction_id bigint not null,
    -- How many events the digest covers.
    events         bigint not null check (events >= 0),
    digest         bytea not null check (length(digest) = 32),
    recorded_at    timestamptz not null default now()
);

create function ledger_digests_refuse_change() returns trigger
language plpgsql
as $$
begin
    raise exception 'the ledger digest is append-only: % on ledger_digests is refused', tg_op
        using errcode = 'insufficient_privilege';
end
$$;

create trigger ledger_digests_no_update before update on ledger_digests
    for each row execute function ledger_digests_refuse_change();
create trigger ledger_digests_no_delete before delete on ledger_digests
    for each row execute function ledger_digests_refuse_change();
create trigger ledger_digests_no_truncate before truncate on ledger_digests
    for each statement execute function ledger_digests_refuse_change();

grant select, insert on ledger_digests to gigledger_app;
