-- Each claim of a due timer gets its own id (issue 7, item 10). The runner marks fired (or
-- failed) only the claim it fired: the process manager may have moved the timer meanwhile (a
-- resubmission), and marking by timer_key alone would mark the new schedule fired without
-- running it.
alter table due_timers
    add column claim_id uuid;
