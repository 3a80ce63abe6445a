-- Where each worker over the global log stands: projections and process managers alike.
-- A worker's read-model writes and its new checkpoint commit in one transaction.
create table projection_checkpoints (
    name            text primary key,
    -- the last event applied, in log order (see projections/src/log.rs); (0, 0) before the first
    transaction_id  bigint not null default 0,
    position        bigint not null default 0,
    events_applied  bigint not null default 0,
    updated_at      timestamptz not null default now(),
    -- 'running' or 'failed' (stopped on an event it cannot apply; never skipped)
    status          text not null default 'running' check (status in ('running', 'failed')),
    failed_position bigint,
    last_error      text
);

-- Read models live in their own schema, so analysts can be given exactly that and nothing else,
-- and a rebuild can fill a sibling schema before swapping tables in.
create schema read;
create schema read_rebuild;

-- Analysts' read-only role: SELECT on the read models and nothing else. NOLOGIN; give a person a
-- login with: create role alice login password '…' in role gigledger_analyst;
do $$
begin
    create role gigledger_analyst nologin;
exception
    when duplicate_object or unique_violation then null;
end
$$;

grant usage on schema read to gigledger_analyst;
alter default privileges in schema read grant select on tables to gigledger_analyst;

grant usage on schema read, read_rebuild to gigledger_app;
grant select, insert, update on projection_checkpoints to gigledger_app;
