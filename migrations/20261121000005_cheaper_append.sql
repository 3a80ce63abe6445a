-- Two costs on the append path, measured by commands/benches/write_path.rs:
--
-- 1. event_hash was declared immutable, but its body calls functions PostgreSQL rates stable
--    (convert_to, extract from timestamptz), so the planner never inlined it and set the SQL
--    function up again in every transaction. Declared stable it inlines; the hashes are the same.
alter function event_hash(bytea, bigint, text, text, bigint, uuid, text, text, jsonb, jsonb, timestamptz)
    stable;

-- 2. A NOTIFY inside the writing transaction takes one database-wide lock at commit, so at 16
--    concurrent writers most commits queued on it and could not share a disk flush. gigledger's own
--    processes wake readers themselves after commit, coalescing many commits into one NOTIFY, and
--    say so with `gigledger.notify = off` on their sessions; every other writer still notifies here.
create or replace function events_notify() returns trigger
language plpgsql
as $$
begin
    if coalesce(current_setting('gigledger.notify', true), '') <> 'off' then
        perform pg_notify('gigledger_events', '');
    end if;
    return null;
end
$$;
