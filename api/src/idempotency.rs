//! `Idempotency-Key`: the first response to a caller's key, kept in PostgreSQL and replayed.
//!
//! A command handler (or a layer in front of it) that got a key calls
//! [`IdempotencyStore::begin`] with the caller, the key and the request's [`Fingerprint`]
//! (method, path and body), and acts on the answer:
//! - [`Begin::Fresh`]: run the request, then [`IdempotencyStore::complete`] with its response
//!   when it succeeded or [`ApiError::recorded_something`], else [`IdempotencyStore::abandon`]
//!   (a 4xx validation, 401/403, a refusal, a 503 "nothing recorded"), so that the key can be
//!   used again (API.md);
//! - [`Begin::Replay`]: answer [`StoredResponse::into_replay`]: the same status, headers and
//!   bytes as the first time, plus `Idempotent-Replayed: true`, writing nothing;
//! - [`Begin::InFlight`]: `409` with `Retry-After` ([`ApiError::IdempotencyKeyInFlight`]);
//! - [`Begin::Mismatch`]: `422` ([`ApiError::IdempotencyKeyReused`]).
//!
//! **Why a reservation, not the command's transaction.** The event store appends a command's
//! events in one autocommit statement (`commands/src/store.rs`), a command's follow-ups are further
//! commands on other aggregates, and a deposit asks the payment provider between the two. Recording
//! the key in the same transaction would mean one transaction held open across a network call and
//! several appends, and an open writing transaction holds every log reader (projections, process
//! managers) back until it ends (`projections/src/log.rs`). So the key is reserved first, in its
//! own statement, and completed after the answer. A process that dies between the two leaves a
//! reservation: until its lease (`IdempotencyConfig::lease`, longer than the request time limit)
//! runs out, a retry gets `409`; after, the same request takes the reservation over
//! ([`Reservation::taken_over`]) and runs again, meeting what the first run wrote (the domain
//! answers a repeated process command with no events, a deposit meets its milestone's single
//! charge). An attempt whose reservation was taken over cannot complete it (the reservation id
//! fences it), so exactly one response is ever stored. A handler that creates a resource should
//! derive its id with [`Reservation::derived_id`], so that a re-run meets the first run's resource
//! instead of creating a second one.
//!
//! Times come from the database's clock ([`IdempotencyStore::with_database_clock`], what the
//! service uses: every process judges leases by one clock), or from an injected [`Clock`] so that
//! tests move a `ManualClock` instead of sleeping.
//! Records are kept [`IdempotencyConfig::retention`] (24 h) and then treated as gone;
//! [`IdempotencyStore::purge`] deletes them (for a worker or a timer to call).

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use gigledger_commands::clock::Clock;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::ApiError;

/// The request header.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Set on every replayed response.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// A key as API.md allows it: 1 to 255 printable ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The longest key accepted.
    pub const MAX_LEN: usize = 255;

    /// Parses a key, or refuses it as a `400` naming the header.
    pub fn parse(value: &str) -> Result<Self, ApiError> {
        let printable = value.bytes().all(|b| (b' '..=b'~').contains(&b));
        if value.is_empty() || value.len() > Self::MAX_LEN || !printable {
            return Err(ApiError::bad_request(
                "Idempotency-Key",
                "must be 1 to 255 printable ASCII characters",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    /// The request's key, if it sent one.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Self>, ApiError> {
        let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
            return Ok(None);
        };
        let value = value.to_str().map_err(|_| {
            ApiError::bad_request("Idempotency-Key", "must be printable ASCII characters")
        })?;
        Self::parse(value).map(Some)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What must match when a key is used again: sha-256 of the method, the path with its query,
/// and the body, each length-prefixed so that no two requests share an encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    pub fn of(method: &Method, path_and_query: &str, body: &[u8]) -> Self {
        let mut hash = Sha256::new();
        for part in [method.as_str().as_bytes(), path_and_query.as_bytes(), body] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        Self(hash.finalize().into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Headers of a response that belong to that one exchange, not to its meaning: never stored, so a
/// replay carries its own (`X-Request-Id` of the retry, say).
const UNSTORED_HEADERS: [&str; 5] = [
    "x-request-id",
    "date",
    "content-length",
    "transfer-encoding",
    "connection",
];

/// A response as stored and replayed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: StatusCode,
    /// In order; a name may repeat.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

impl StoredResponse {
    /// Reads a handler's response whole (up to `limit` bytes of body) into what is stored, and
    /// gives back an equal response to send.
    pub async fn capture(response: Response, limit: usize) -> Result<(Self, Response), ApiError> {
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, limit)
            .await
            .map_err(|e| ApiError::internal(format!("cannot read a response to store: {e}")))?;
        let stored = Self {
            status: parts.status,
            headers: parts
                .headers
                .iter()
                .filter(|(name, _)| !UNSTORED_HEADERS.contains(&name.as_str()))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
            body: body.clone(),
        };
        Ok((stored, Response::from_parts(parts, body.into())))
    }

    /// The response to a repeat: as stored, plus `Idempotent-Replayed: true`.
    pub fn into_replay(self) -> Response {
        let mut response = (self.status, self.body).into_response();
        let headers = response.headers_mut();
        // The stored headers replace the defaults (content type) rather than add to them.
        for (name, _) in &self.headers {
            headers.remove(name);
        }
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        headers.insert(
            HeaderName::from_static(IDEMPOTENT_REPLAYED),
            HeaderValue::from_static("true"),
        );
        response
    }

    fn headers_json(&self) -> serde_json::Value {
        self.headers
            .iter()
            .map(|(name, value)| {
                // Header values are bytes; stored as latin-1 text so any byte survives.
                let value: String = value.as_bytes().iter().map(|&b| char::from(b)).collect();
                serde_json::json!([name.as_str(), value])
            })
            .collect()
    }

    fn from_row(status: i16, headers: serde_json::Value, body: Vec<u8>) -> Result<Self, String> {
        let status = u16::try_from(status)
            .ok()
            .and_then(|s| StatusCode::from_u16(s).ok())
            .ok_or_else(|| format!("stored status {status} is not a status"))?;
        let pairs: Vec<(String, String)> =
            serde_json::from_value(headers).map_err(|e| format!("stored headers: {e}"))?;
        let headers = pairs
            .into_iter()
            .map(|(name, value)| {
                let bytes = value
                    .chars()
                    .map(|c| u8::try_from(u32::from(c)))
                    .collect::<Result<Vec<u8>, _>>()
                    .map_err(|e| format!("stored header {name}: {e}"))?;
                Ok((
                    HeaderName::try_from(name.as_str()).map_err(|e| e.to_string())?,
                    HeaderValue::from_bytes(&bytes).map_err(|e| e.to_string())?,
                ))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            status,
            headers,
            body: Bytes::from(body),
        })
    }
}

/// How long records and reservations last.
#[derive(Clone, Copy, Debug)]
pub struct IdempotencyConfig {
    /// How long a record is kept (API.md: at least 24 h); older ones count as gone and are purged.
    pub retention: Duration,
    /// How long a reservation is its holder's; past it the holder is presumed dead and the same
    /// request may take it over. Must be longer than the request time limit, so that a live
    /// request is never taken over.
    pub lease: Duration,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self {
            retention: Duration::hours(24),
            lease: Duration::seconds(60),
        }
    }
}

/// A key reserved for one attempt at a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    caller: Uuid,
    key: IdempotencyKey,
    id: Uuid,
    /// What derived ids come from: the record's own random seed, the same for every attempt at
    /// this record (a takeover keeps it), new when an expired record is reused.
    seed: Uuid,
    /// The request ran before under this key and its process died (or overran the lease) without
    /// completing: what it wrote is there to be met.
    pub taken_over: bool,
}

impl Reservation {
    /// An id for a resource the request creates, the same for every attempt at this record, so
    /// that a re-run after a crash meets the resource the first run created; a key used again
    /// after its record expired has a new seed, so it never meets an old request's resources. `purpose`
    /// tells apart several ids of one request (`"gig"`, `"milestone:0"`, …).
    pub fn derived_id(&self, purpose: &str) -> Uuid {
        let mut hash = Sha256::new();
        for part in [
            self.caller.as_bytes().as_slice(),
            self.seed.as_bytes().as_slice(),
            purpose.as_bytes(),
        ] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        let digest: [u8; 32] = hash.finalize().into();
        let mut bytes = [0; 16];
        bytes.copy_from_slice(&digest[..16]);
        // A version 8 ("custom") UUID: these ids are hashes, not times or random draws.
        uuid::Builder::from_custom_bytes(bytes).into_uuid()
    }
}

/// What [`IdempotencyStore::begin`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Begin {
    /// The key is this request's now: run it.
    Fresh(Reservation),
    /// The request was answered before: send this again.
    Replay(StoredResponse),
    /// An earlier request with this key is still running.
    InFlight,
    /// The key was used for a different request.
    Mismatch,
}

/// The `Idempotency-Key` records, in `public.idempotency_keys`.
#[derive(Clone)]
pub struct IdempotencyStore {
    pool: PgPool,
    /// `None`: the database's clock, one clock for every process sharing the table (leases and
    /// retention are then never judged by two clocks that disagree). Tests give a manual clock.
    clock: Option<Arc<dyn Clock>>,
    config: IdempotencyConfig,
}

/// A record as `begin` reads it: fingerprint, and the response once there is one.
type KeyRow = (
    Vec<u8>,
    Option<i16>,
    Option<serde_json::Value>,
    Option<Vec<u8>>,
);

/// How many times `begin` looks again when the row it lost to vanished before it could read it
/// (abandoned or purged in between); each round is a fresh race, so losing them all means a
/// stream of requests with this key, and the answer is "in flight".
const BEGIN_ROUNDS: usize = 4;

impl IdempotencyStore {
    /// Records timed by `clock` (tests that move time by hand).
    pub fn new(pool: PgPool, clock: Arc<dyn Clock>, config: IdempotencyConfig) -> Self {
        Self {
            pool,
            clock: Some(clock),
            config,
        }
    }

    /// Records timed by the database's clock: what the service uses, so that processes whose
    /// clocks disagree still agree on when a lease ran out.
    pub fn with_database_clock(pool: PgPool, config: IdempotencyConfig) -> Self {
        Self {
            pool,
            clock: None,
            config,
        }
    }

    /// The injected time, or `None` for the database's `now()` (the statements read `$n` as
    /// `coalesce($n, now())`).
    fn now(&self) -> Option<DateTime<Utc>> {
        self.clock.as_ref().map(|clock| clock.now())
    }

    fn millis(duration: Duration) -> i64 {
        duration.num_milliseconds()
    }

    /// Reserves `key` for this request, or says why not. Of any number of concurrent begins with
    /// one caller and key, exactly one is [`Begin::Fresh`]: the primary key decides.
    pub async fn begin(
        &self,
        caller: Uuid,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
    ) -> Result<Begin, sqlx::Error> {
        for _ in 0..BEGIN_ROUNDS {
            let id = Uuid::now_v7();
            // One statement, so the primary key orders concurrent begins: a second insert waits
            // for the first to commit, then re-checks the `where` on the row it wrote. The
            // `where`: a record past its retention is gone, whether purged yet or not; a
            // reservation whose lease ran out is taken over, by the same request only. `xmax` is
            // 0 for a fresh insert and set for an update (a takeover, or an expired record
            // reused). `$6` is the time (null: the database's).
            let won: Option<(Uuid, bool, Uuid)> = sqlx::query_as(
                "with t as (select coalesce($6::timestamptz, now()) as now) \
                 insert into public.idempotency_keys as k \
                     (caller, key, fingerprint, reservation, locked_until, created_at) \
                 select $1, $2, $3, $4, t.now + ($5::bigint * interval '1 millisecond'), t.now from t \
                 on conflict (caller, key) do update \
                     set fingerprint = excluded.fingerprint, \
                         reservation = excluded.reservation, \
                         locked_until = excluded.locked_until, \
                         created_at = excluded.created_at, \
                         seed = case when k.status is null \
                                          and k.created_at > excluded.created_at - ($7::bigint * interval '1 millisecond') \
                                     then k.seed else gen_random_uuid() end, \
                         status = null, headers = null, body = null, completed_at = null \
                     where k.created_at <= excluded.created_at - ($7::bigint * interval '1 millisecond') \
                        or (k.status is null and k.locked_until <= excluded.created_at \
                            and k.fingerprint = excluded.fingerprint) \
                 returning reservation, xmax::text <> '0' as replaced, seed",
            )
            .bind(caller)
            .bind(key.as_str())
            .bind(fingerprint.as_bytes().as_slice())
            .bind(id)
            .bind(Self::millis(self.config.lease))
            .bind(self.now())
            .bind(Self::millis(self.config.retention))
            .fetch_optional(&self.pool)
            .await?;
            if let Some((reservation, replaced, seed)) = won {
                debug_assert_eq!(reservation, id);
                return Ok(Begin::Fresh(Reservation {
                    caller,
                    key: key.clone(),
                    id,
                    seed,
                    taken_over: replaced,
                }));
            }
            let row: Option<KeyRow> = sqlx::query_as(
                "select fingerprint, status, headers, body \
                     from public.idempotency_keys \
                     where caller = $1 and key = $2",
            )
            .bind(caller)
            .bind(key.as_str())
            .fetch_optional(&self.pool)
            .await?;
            let Some((stored_fingerprint, status, headers, body)) = row else {
                continue;
            };
            if stored_fingerprint.as_slice() != fingerprint.as_bytes().as_slice() {
                return Ok(Begin::Mismatch);
            }
            return match (status, headers, body) {
                (Some(status), Some(headers), Some(body)) => {
                    StoredResponse::from_row(status, headers, body)
                        .map(Begin::Replay)
                        .map_err(|e| sqlx::Error::Decode(e.into()))
                }
                _ => Ok(Begin::InFlight),
            };
        }
        Ok(Begin::InFlight)
    }

    /// Stores the response of the reserved request. `false` when the reservation is no longer
    /// this attempt's (its lease ran out and another attempt took it over, or it was purged):
    /// nothing is stored, and the response that is stored is the other attempt's.
    pub async fn complete(
        &self,
        reservation: &Reservation,
        response: &StoredResponse,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "update public.idempotency_keys \
             set status = $4, headers = $5, body = $6, \
                 completed_at = coalesce($7::timestamptz, now()) \
             where caller = $1 and key = $2 and reservation = $3 and status is null",
        )
        .bind(reservation.caller)
        .bind(reservation.key.as_str())
        .bind(reservation.id)
        .bind(i16::try_from(response.status.as_u16()).unwrap_or(i16::MAX))
        .bind(response.headers_json())
        .bind(response.body.as_ref())
        .bind(self.now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Keeps the reservation this attempt's while it runs: moves its lease on (a command that
    /// waits its turn behind others on one aggregate, or retries, may outlast one lease). `false`
    /// when it is no longer this attempt's.
    pub async fn extend(&self, reservation: &Reservation) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "update public.idempotency_keys \
             set locked_until = coalesce($4::timestamptz, now()) + ($5::bigint * interval '1 millisecond') \
             where caller = $1 and key = $2 and reservation = $3 and status is null",
        )
        .bind(reservation.caller)
        .bind(reservation.key.as_str())
        .bind(reservation.id)
        .bind(self.now())
        .bind(Self::millis(self.config.lease))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// How long a reservation lasts without being extended.
    pub fn lease(&self) -> Duration {
        self.config.lease
    }

    /// Gives the key up: the request failed before writing anything, so it may be used again.
    /// `false` when the reservation was no longer this attempt's.
    pub async fn abandon(&self, reservation: &Reservation) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "delete from public.idempotency_keys \
             where caller = $1 and key = $2 and reservation = $3 and status is null",
        )
        .bind(reservation.caller)
        .bind(reservation.key.as_str())
        .bind(reservation.id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes the records older than the retention, answered or not; returns how many.
    pub async fn purge(&self) -> Result<u64, sqlx::Error> {
        let done = sqlx::query(
            "delete from public.idempotency_keys \
             where created_at <= coalesce($1::timestamptz, now()) - ($2::bigint * interval '1 millisecond')",
        )
        .bind(self.now())
        .bind(Self::millis(self.config.retention))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
