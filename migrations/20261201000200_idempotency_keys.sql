-- The API's `Idempotency-Key` records (api/src/idempotency.rs): one row per caller and key. A row
-- is written when a request with the key begins (a reservation, `status` null) and completed with
-- the response once the request has answered, so that a repeat is answered from here byte for
-- byte. The events a command writes are appended by the store in their own autocommit statement,
-- so the reservation, not a shared transaction, is what makes a crash between the two safe: a
-- reservation whose lease ran out is taken over by the next request with the same fingerprint.
create table public.idempotency_keys (
    -- the caller's `sub`: keys are scoped to the caller, two users may use the same key
    caller uuid not null,
    key text not null,
    -- sha-256 of the method, path and body: the same key with another request is refused
    fingerprint bytea not null,
    -- which attempt holds the reservation; completing or abandoning names it, so an attempt
    -- whose reservation was taken over (its lease ran out) cannot overwrite its successor
    reservation uuid not null,
    -- until when the reservation is the holder's; past it the holder is presumed dead
    locked_until timestamptz not null,
    -- the response, null while in flight
    status smallint,
    -- `[[name, value], ...]` in order: a header may repeat
    headers jsonb,
    body bytea,
    created_at timestamptz not null,
    completed_at timestamptz,
    primary key (caller, key),
    constraint idempotency_keys_key_length check (char_length(key) between 1 and 255),
    constraint idempotency_keys_fingerprint_length check (octet_length(fingerprint) = 32),
    constraint idempotency_keys_response_whole check (
        (status is null) = (body is null)
        and (status is null) = (headers is null)
        and (status is null) = (completed_at is null)
    )
);

-- The purge deletes by age: without this it would scan the whole table every run.
create index idempotency_keys_created_at on public.idempotency_keys (created_at);

grant select, insert, update, delete on public.idempotency_keys to gigledger_app;
