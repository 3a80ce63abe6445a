-- Worker states beyond running/failed (issue 7, items 11 and 22).
--
-- 'stalled': the worker keeps retrying one event (a failure it counts as transient) for longer
-- than its configured bound. It is still trying, and moves back to 'running' by itself once past
-- the event, but whatever depends on it (every release, for a process manager) has stopped.
-- retrying_since says since when it has been retrying that event (null when it is not retrying).
alter table projection_checkpoints
    add column retrying_since timestamptz;

-- The check constraint was created unnamed, so it has PostgreSQL's default name.
alter table projection_checkpoints
    drop constraint projection_checkpoints_status_check,
    add constraint projection_checkpoints_status_check
        check (status in ('running', 'stalled', 'failed'));
