-- The store's functions name every object by schema and run with a fixed search_path, so that a
-- session's temporary tables or sequences (searched first for relations) cannot stand in for
-- log_epochs, events or the position sequence, and the epoch offset is taken from the oldest
-- running transaction rather than the function's own (a writer that took its transaction id
-- before an epoch began still sorts after every stored event). Found by review of issue 7.

create or replace function log_horizon() returns xid8
language sql stable parallel safe
as $$
    select (pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())::text::bigint
            + (select xid_offset from public.log_epochs order by epoch desc limit 1))::text::xid8
$$;

create or replace function begin_log_epoch_if_moved() returns boolean
language plpgsql security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
    here    bigint;
    latest  public.log_epochs%rowtype;
    top     bigint;
    oldest  bigint;
begin
    select system_identifier into here from pg_catalog.pg_control_system();
    select * into latest from public.log_epochs order by epoch desc limit 1;
    if latest.system_identifier = here then
        return false;
    end if;
    lock table public.events in exclusive mode;
    lock table public.log_epochs in exclusive mode;
    select * into latest from public.log_epochs order by epoch desc limit 1;
    if latest.system_identifier = here then
        return false; -- another process began it while this one waited
    end if;
    select e.transaction_id::text::bigint into top
      from public.events e order by e.transaction_id desc, e.position desc limit 1;
    -- Every transaction that can still append has an id at or above the oldest one running
    -- (this one included), so that id plus the offset must be above every stored one.
    perform pg_catalog.pg_current_xact_id();
    oldest := pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())::text::bigint;
    insert into public.log_epochs (epoch, system_identifier, xid_offset, previous_top)
    values (latest.epoch + 1, here,
            greatest(latest.xid_offset, coalesce(top, 0) + 1 - oldest, 0), top);
    return true;
end
$$;

create or replace function events_chain_hash() returns trigger
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
declare
    current_epoch    public.log_epochs%rowtype;
    prev             bytea;
    prev_transaction xid8;
begin
    select * into current_epoch from public.log_epochs order by epoch desc limit 1;
    if current_epoch.system_identifier is distinct from
       (select system_identifier from pg_catalog.pg_control_system()) then
        raise exception 'the event log was moved to another PostgreSQL cluster (restored or replicated) and no log epoch was begun on it'
            using errcode = 'object_not_in_prerequisite_state',
                  hint = 'run `gigledger migrate` (or start gigledger) once, which begins one';
    end if;
    new.position := pg_catalog.nextval('public.events_log_position'::regclass);
    new.transaction_id :=
        (pg_catalog.pg_current_xact_id()::text::bigint + current_epoch.xid_offset)::text::xid8;
    new.recorded_at := pg_catalog.statement_timestamp();
    if new.sequence > 1 then
        select e.hash, e.transaction_id into prev, prev_transaction
          from public.events e
         where e.aggregate_type = new.aggregate_type
           and e.aggregate_id = new.aggregate_id
           and e.sequence = new.sequence - 1;
        if not found then
            raise exception 'event %/%#% has no predecessor in its stream',
                new.aggregate_type, new.aggregate_id, new.sequence
                using errcode = 'foreign_key_violation';
        end if;
        if prev_transaction > new.transaction_id then
            raise exception 'event %/%#% would come before its predecessor in the global log: the predecessor was written by a later transaction',
                new.aggregate_type, new.aggregate_id, new.sequence
                using errcode = 'serialization_failure',
                      hint = 'append in a transaction whose first write is the append';
        end if;
    end if;
    new.hash := public.event_hash(prev, new.position, new.aggregate_type, new.aggregate_id,
        new.sequence, new.event_id, new.event_type, new.event_version, new.payload, new.metadata,
        new.recorded_at);
    return new;
end
$$;

-- Nobody but the owner needs temporary objects in gigledger's database.
do $$
begin
    execute format('revoke temporary on database %I from public', current_database());
end
$$;
