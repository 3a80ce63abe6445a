-- The log's order belongs to the database, whatever a writer sends, and survives a dump and
-- restore into another cluster (issue 7, items 6, 7 and 8). See projections/src/log.rs.

------------------------------------------------------------------------------------------------
-- Log epochs.
--
-- Readers order the log by (transaction_id, position) and trust that every transaction that
-- starts later gets a larger transaction id. Transaction ids are a counter of the cluster, so a
-- dump restored into another cluster (or rows copied there by logical replication) carries ids
-- the new cluster's counter has not reached: every event appended there would sort below every
-- reader's checkpoint and never be read. So the stored transaction_id is the server's id plus
-- the offset of the current epoch; an epoch begins (gigledger does it at start-up and in
-- `gigledger migrate`, through begin_log_epoch_if_moved) when the log finds itself on a cluster
-- other than the one its epoch started on, with the offset that puts every new id above every
-- stored one. Restored events keep their ids and their hashes; on the cluster where the log was
-- created the offset stays 0, so stored ids there are the server's own.
------------------------------------------------------------------------------------------------

create table log_epochs (
    epoch             integer primary key,
    -- pg_control_system().system_identifier of the cluster the epoch runs on: a new cluster
    -- (initdb, a restore target, a logical replica) has another
    system_identifier bigint not null,
    -- added to pg_current_xact_id() for every event stored in this epoch
    xid_offset        bigint not null check (xid_offset >= 0),
    -- the highest stored transaction_id when the epoch began (null for the first)
    previous_top      bigint,
    started_at        timestamptz not null default now()
);

insert into log_epochs (epoch, system_identifier, xid_offset)
select 1, system_identifier, 0 from pg_control_system();

revoke all on log_epochs from public;
grant select on log_epochs to gigledger_app;

-- The bound below which the log is settled, in stored transaction ids: the oldest transaction
-- still running, shifted by the current epoch's offset. Every stored id below it belongs to a
-- transaction that has finished (restored ones included: they are all below the offset).
create function log_horizon() returns xid8
language sql stable parallel safe
as $$
    select (pg_snapshot_xmin(pg_current_snapshot())::text::bigint
            + (select xid_offset from log_epochs order by epoch desc limit 1))::text::xid8
$$;

-- Begins a new epoch when the log is on another cluster than its current epoch's, and says
-- whether it did. Takes an exclusive lock on events for the moment it needs, so no append can
-- land between reading the highest stored id and recording the new offset. Security definer:
-- the service (a gigledger_app member) calls it at start-up; it does nothing else.
create function begin_log_epoch_if_moved() returns boolean
language plpgsql security definer
set search_path = public, pg_temp
as $$
declare
    here    bigint;
    latest  log_epochs%rowtype;
    top     bigint;
    now_xid bigint;
begin
    select system_identifier into here from pg_control_system();
    select * into latest from log_epochs order by epoch desc limit 1;
    if latest.system_identifier = here then
        return false;
    end if;
    lock table events in exclusive mode;
    lock table log_epochs in exclusive mode;
    select * into latest from log_epochs order by epoch desc limit 1;
    if latest.system_identifier = here then
        return false; -- another process began it while this one waited
    end if;
    select transaction_id::text::bigint into top
      from events order by transaction_id desc, position desc limit 1;
    -- Every later transaction has a larger id than this one's.
    now_xid := pg_current_xact_id()::text::bigint;
    insert into log_epochs (epoch, system_identifier, xid_offset, previous_top)
    values (latest.epoch + 1, here, greatest(latest.xid_offset, coalesce(top, 0) + 1 - now_xid, 0), top);
    return true;
end
$$;

revoke all on function begin_log_epoch_if_moved() from public;
grant execute on function begin_log_epoch_if_moved() to gigledger_app;

------------------------------------------------------------------------------------------------
-- Positions from a sequence only the insert trigger draws from. An identity column takes a
-- writer's value under OVERRIDING SYSTEM VALUE; a plain column the trigger always assigns
-- does not. The new sequence continues after the identity's.
------------------------------------------------------------------------------------------------

create sequence events_log_position as bigint;

do $$
declare
    last bigint;
begin
    select coalesce(max(position), 0) into last from events;
    last := greatest(last, coalesce(pg_sequence_last_value(pg_get_serial_sequence('events', 'position')), 0));
    perform setval('events_log_position', last + 1, false);
end
$$;

alter table events alter column position drop identity;
alter table events alter column transaction_id drop default;
alter table events alter column recorded_at drop default;

-- Store-assigned columns, stated again for every insert (the owner's included): position,
-- transaction id and record time come from the database, never from the writer. The epoch check
-- refuses appends on a cluster the log has not begun an epoch on, rather than let them sort
-- below every reader. A stream's event never comes before its predecessor in the global log: an
-- append whose predecessor was written by a later transaction (possible only for a writer whose
-- transaction took its id before that predecessor committed) is refused.
create or replace function events_chain_hash() returns trigger
language plpgsql
as $$
declare
    current_epoch    log_epochs%rowtype;
    prev             bytea;
    prev_transaction xid8;
begin
    select * into current_epoch from log_epochs order by epoch desc limit 1;
    if current_epoch.system_identifier is distinct from
       (select system_identifier from pg_control_system()) then
        raise exception 'the event log was moved to another PostgreSQL cluster (restored or replicated) and no log epoch was begun on it'
            using errcode = 'object_not_in_prerequisite_state',
                  hint = 'run `gigledger migrate` (or start gigledger) once, which begins one';
    end if;
    new.position := nextval('events_log_position');
    new.transaction_id := (pg_current_xact_id()::text::bigint + current_epoch.xid_offset)::text::xid8;
    new.recorded_at := statement_timestamp();
    if new.sequence > 1 then
        select e.hash, e.transaction_id into prev, prev_transaction
          from events e
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
    new.hash := event_hash(prev, new.position, new.aggregate_type, new.aggregate_id, new.sequence,
        new.event_id, new.event_type, new.event_version, new.payload, new.metadata, new.recorded_at);
    return new;
end
$$;

-- The application role may name only the columns a writer decides. Naming a store-assigned
-- column (position, transaction_id, recorded_at, hash) is refused outright.
revoke insert on events from gigledger_app;
grant insert (aggregate_type, aggregate_id, sequence, event_type, event_version, payload,
              metadata, event_id)
    on events to gigledger_app;
grant usage on sequence events_log_position to gigledger_app;
