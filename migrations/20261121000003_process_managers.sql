-- Due timers for the process managers: auto-approval when a review window ends, and revealing
-- reviews when the review period ends. Written by the process managers in the same transaction as
-- their checkpoint; fired by the timer runner, which takes due rows with `for update skip locked`
-- so several processes never fire one timer at once (and firing twice is harmless anyway: the
-- commands are idempotent).
create table due_timers (
    -- kind:contract[:milestone]: one timer per thing that can come due
    timer_key      text primary key,
    kind           text not null check (kind in ('auto_approve', 'reveal_reviews')),
    contract_id    uuid not null,
    milestone_id   uuid,
    due_at         timestamptz not null,
    -- the event that set the timer, and its request, for the fired command's metadata
    causation_id   uuid not null,
    correlation_id text not null,
    fired_at       timestamptz
);

create index due_timers_pending on due_timers (due_at) where fired_at is null;

grant select, insert, update on due_timers to gigledger_app;
