-- What the ids a keyed request creates are derived from (api/src/idempotency.rs,
-- `Reservation::derived_id`): drawn afresh when a key is first used and when an expired record is
-- reused, kept when a reservation left by a dead process is taken over. So a re-run meets what its
-- first run created, while the same key used again after its 24 hours creates new resources
-- instead of colliding with the old ones.
alter table public.idempotency_keys add column seed uuid not null default gen_random_uuid();
