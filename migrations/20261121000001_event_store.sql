-- The event store: the one source of truth. Every other table is derived from it.
--
-- `events` and `snapshots` keep the columns postgres-es 0.5 reads and writes (so its stock
-- repository works on them unchanged, which the benchmarks use as the baseline), extended with a
-- global position, the writing transaction's id, the record time, an event id, indexed
-- correlation/causation ids and a per-stream hash chain.

create table events (
    aggregate_type text   not null,
    aggregate_id   text   not null,
    sequence       bigint not null check (sequence > 0),
    event_type     text   not null,
    event_version  text   not null,
    -- jsonb, not json: analysts query into payloads, and jsonb's text form is canonical, which the
    -- hash chain relies on (the same value always hashes the same).
    payload        jsonb  not null,
    metadata       jsonb  not null default '{}',
    -- Assigned at insert from a sequence: unique and increasing in insert order, but transactions
    -- commit out of that order and a rolled-back insert leaves a hole. Readers therefore never
    -- read "everything after position p"; they read in (transaction_id, position) order below the
    -- oldest transaction still open (see projections/src/log.rs).
    position       bigint generated always as identity,
    transaction_id xid8   not null default pg_current_xact_id(),
    recorded_at    timestamptz not null default statement_timestamp(),
    event_id       uuid   not null default gen_random_uuid(),
    -- Pulled out of the metadata so an auditor can fetch every event of one request (correlation)
    -- or one process step (causation) by index. Text, not uuid: X-Request-Id is the client's.
    correlation_id text generated always as (metadata ->> 'correlation_id') stored,
    causation_id   text generated always as (metadata ->> 'causation_id') stored,
    -- sha256 over the previous event's hash in the same stream and this event's own fields; set by
    -- the insert trigger below, never by the application.
    hash           bytea  not null,
    primary key (aggregate_type, aggregate_id, sequence),
    unique (position),
    unique (event_id)
);

-- Serves the ordered global read: where (transaction_id, position) > checkpoint order by both.
create index events_global_order on events (transaction_id, position);
create index events_correlation_id on events (correlation_id) where correlation_id is not null;
create index events_causation_id on events (causation_id) where causation_id is not null;
create index events_type on events (event_type, position);

create table snapshots (
    aggregate_type   text   not null,
    aggregate_id     text   not null,
    -- the stream version the snapshot's state includes
    last_sequence    bigint not null,
    -- how many snapshots were taken of this stream (postgres-es's column)
    current_snapshot bigint not null,
    payload          jsonb  not null,
    primary key (aggregate_type, aggregate_id)
);

-- The hash of one event. Marked immutable: every input is a value, and each conversion to text
-- used here is independent of session settings (jsonb's canonical text; the record time as epoch
-- seconds, which no TimeZone setting changes).
create function event_hash(
    prev_hash      bytea,
    p_position     bigint,
    aggregate_type text,
    aggregate_id   text,
    seq            bigint,
    event_id       uuid,
    event_type     text,
    event_version  text,
    payload        jsonb,
    metadata       jsonb,
    recorded_at    timestamptz
) returns bytea
language sql immutable parallel safe
as $$
    select sha256(
        coalesce(prev_hash, '\x'::bytea)
        || convert_to(
            p_position::text || chr(31) || aggregate_type || chr(31) || aggregate_id || chr(31)
            || seq::text || chr(31) || event_id::text || chr(31) || event_type || chr(31)
            || event_version || chr(31) || payload::text || chr(31) || metadata::text || chr(31)
            || extract(epoch from recorded_at)::text,
            'UTF8'))
$$;

-- Chains each new event to its predecessor in the stream. A BEFORE ROW trigger sees the rows an
-- earlier row of the same INSERT statement wrote, so a multi-event append chains correctly.
create function events_chain_hash() returns trigger
language plpgsql
as $$
declare
    prev bytea;
begin
    if new.sequence > 1 then
        select e.hash into prev
          from events e
         where e.aggregate_type = new.aggregate_type
           and e.aggregate_id = new.aggregate_id
           and e.sequence = new.sequence - 1;
        if not found then
            raise exception 'event %/%#% has no predecessor in its stream',
                new.aggregate_type, new.aggregate_id, new.sequence
                using errcode = 'foreign_key_violation';
        end if;
    end if;
    new.hash := event_hash(prev, new.position, new.aggregate_type, new.aggregate_id, new.sequence,
        new.event_id, new.event_type, new.event_version, new.payload, new.metadata, new.recorded_at);
    return new;
end
$$;

create trigger events_chain_hash before insert on events
    for each row execute function events_chain_hash();

-- Append-only, enforced by the database for every role, the owner included. (A superuser can still
-- disable triggers; that is what the hash chain is for.)
create function events_refuse_change() returns trigger
language plpgsql
as $$
begin
    raise exception 'the event store is append-only: % on events is refused', tg_op
        using errcode = 'insufficient_privilege';
end
$$;

create trigger events_no_update before update on events
    for each row execute function events_refuse_change();
create trigger events_no_delete before delete on events
    for each row execute function events_refuse_change();
create trigger events_no_truncate before truncate on events
    for each statement execute function events_refuse_change();

-- Wakes log readers at commit (NOTIFY is delivered only when the writing transaction commits).
-- Once per statement, not per row: a reader wants to know that something arrived, not what.
create function events_notify() returns trigger
language plpgsql
as $$
begin
    perform pg_notify('gigledger_events', '');
    return null;
end
$$;

create trigger events_notify after insert on events
    for each statement execute function events_notify();

-- The role the application runs as in production: it may read and append events, nothing more.
-- Roles are cluster-wide, so creating it must tolerate another database having done so already.
do $$
begin
    create role gigledger_app nologin;
exception
    when duplicate_object or unique_violation then null;
end
$$;

revoke all on events, snapshots from public;
grant select, insert on events to gigledger_app;
grant select, insert, update on snapshots to gigledger_app;
