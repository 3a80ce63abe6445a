-- Timers are claimed for a while instead of locked while their command runs: a row lock would
-- hold a transaction id (and so every log reader in the cluster) for the whole command, and a
-- timer that keeps failing would block the ones behind it. A claim that outlives its process just
-- expires; a failure is recorded and retried later with a growing pause.
alter table due_timers
    add column claimed_until timestamptz,
    add column attempts      integer not null default 0,
    add column last_error    text;
