-- A card refund the provider refused is tried again later (issue 11, DOMAIN.md "a failed refund
-- is retried and shown to admins, never dropped"): a due timer per milestone, moved on by each
-- RefundFailed, up to a bounded number of attempts; past them it stays failed in the admins' list.
alter table due_timers drop constraint due_timers_kind_check;
alter table due_timers add constraint due_timers_kind_check
    check (kind in ('auto_approve', 'reveal_reviews', 'retry_card_refund'));
