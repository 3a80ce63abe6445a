//! The ledger digest: a running SHA-256 over the whole log in the log reader's order, which proves
//! what the per-stream hash chain cannot — that history up to a point is *complete*.
//!
//! # What it covers
//!
//! `D₀` is 32 zero bytes; for each event in log order (`(transaction_id, position)`, the order
//! [`crate::log::read_after`] serves), `Dₙ = SHA-256(Dₙ₋₁ ‖ position ‖ sequence ‖ aggregate_type ‖
//! aggregate_id ‖ hash)`, the integers as 8 big-endian bytes and each text or byte string preceded
//! by its length as 4 big-endian bytes (so no two different inputs concatenate alike). The event's
//! `hash` is its chain hash, which already covers every field of the event and its predecessor.
//!
//! So a digest an auditor keeps, with the position it was given at, fixes everything up to there:
//! an edited event (its hash changes), a removed event anywhere — the last of a stream, or a whole
//! stream — a reordering of events of different streams, or an event inserted behind with a valid
//! chain hash (a back-dated insert) all change the digest recomputed from the events.
//!
//! # Where it is kept
//!
//! The `ledger_digest` worker ([`LedgerDigest`], run like every projection, with its checkpoint and
//! lease) folds each batch onto the last stored digest and appends one row per batch to the
//! append-only table `ledger_digests`: the digest at every checkpoint it passed. Re-delivered
//! events (a reset checkpoint) are skipped by key, never folded twice.
//!
//! [`verify`] recomputes from the events alone and compares with the kept digest; the stored rows
//! are only used to say *where* history first differs (the first stored checkpoint the
//! recomputation disagrees with).

use serde::Serialize;
use sha2::{Digest as _, Sha256};
use sqlx::{PgConnection, PgExecutor, PgPool, Row};

use crate::log::{Checkpoint, RecordedEvent};
use crate::runtime::{Handler, HandlerError};

/// The worker's (and its checkpoint's) name.
pub const NAME: &str = "ledger_digest";

/// A digest and how many events it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Running {
    pub digest: [u8; 32],
    pub events: i64,
}

impl Running {
    /// Before the first event.
    pub const GENESIS: Running = Running {
        digest: [0; 32],
        events: 0,
    };

    /// Folds one event in (its position, stream, sequence and chain hash).
    pub fn fold(
        &mut self,
        position: i64,
        aggregate_type: &str,
        aggregate_id: &str,
        sequence: i64,
        hash: &[u8],
    ) {
        let mut h = Sha256::new();
        h.update(self.digest);
        h.update(position.to_be_bytes());
        h.update(sequence.to_be_bytes());
        for part in [aggregate_type.as_bytes(), aggregate_id.as_bytes(), hash] {
            h.update(u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
            h.update(part);
        }
        self.digest = h.finalize().into();
        self.events = self.events.saturating_add(1);
    }

    pub fn hex(&self) -> String {
        hex::encode(self.digest)
    }
}

/// The digest at one point of the log, as `GET /v1/audit/digest` gives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct DigestPoint {
    /// The last event the digest covers (0: none).
    pub position: i64,
    /// How many events it covers.
    pub events: i64,
    /// SHA-256, hex.
    pub digest: String,
}

impl DigestPoint {
    pub fn of(position: i64, running: Running) -> Self {
        Self {
            position,
            events: running.events,
            digest: running.hex(),
        }
    }
}

/// Keeps the digest: folds each batch onto the last stored one and stores the result.
pub struct LedgerDigest;

const LAST_STORED: &str =
    "select position, transaction_id, events, digest from public.ledger_digests
      order by checkpoint desc limit 1";

const STORE: &str = "insert into public.ledger_digests (position, transaction_id, events, digest)
      values ($1, $2, $3, $4)";

#[async_trait::async_trait]
impl Handler for LedgerDigest {
    fn name(&self) -> &str {
        NAME
    }

    async fn handle(
        &self,
        tx: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), HandlerError> {
        let (mut after, mut running) =
            match sqlx::query(LAST_STORED).fetch_optional(&mut *tx).await? {
                Some(row) => (
                    Checkpoint {
                        transaction_id: row.try_get("transaction_id")?,
                        position: row.try_get("position")?,
                    },
                    running_of(
                        row.try_get("events")?,
                        &row.try_get::<Vec<u8>, _>("digest")?,
                    )?,
                ),
                None => (Checkpoint::START, Running::GENESIS),
            };
        // A batch that starts at or before the stored digest is a re-delivery (a reset
        // checkpoint): only then may events be skipped, and only if the stored digest ends at an
        // event that is really there; a stored row naming no event would silently swallow the log.
        if events.first().is_some_and(|e| e.checkpoint() <= after) {
            let real: bool = sqlx::query_scalar(
                "select exists (select 1 from events
                                 where position = $1 and transaction_id = $2::bigint::text::xid8)",
            )
            .bind(after.position)
            .bind(after.transaction_id)
            .fetch_one(&mut *tx)
            .await?;
            if !real {
                return Err(format!(
                    "the last stored ledger digest ends at position {} of transaction {}, which no event has: refusing to fold past it",
                    after.position, after.transaction_id
                )
                .into());
            }
        }
        let mut folded = false;
        for event in events {
            // What the stored digest already covers (a re-delivery) is not folded again.
            if event.checkpoint() <= after {
                continue;
            }
            running.fold(
                event.position,
                &event.aggregate_type,
                &event.aggregate_id,
                event.sequence,
                &event.hash,
            );
            after = event.checkpoint();
            folded = true;
        }
        if folded {
            sqlx::query(STORE)
                .bind(after.position)
                .bind(after.transaction_id)
                .bind(running.events)
                .bind(running.digest.as_slice())
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }
}

fn running_of(events: i64, digest: &[u8]) -> Result<Running, HandlerError> {
    let digest: [u8; 32] = digest
        .try_into()
        .map_err(|_| "a stored ledger digest is not 32 bytes")?;
    Ok(Running { digest, events })
}

/// The latest stored digest (the genesis digest at position 0 when the worker has folded nothing).
pub async fn latest<'e>(db: impl PgExecutor<'e>) -> Result<DigestPoint, sqlx::Error> {
    let row = sqlx::query(LAST_STORED).fetch_optional(db).await?;
    match row {
        None => Ok(DigestPoint::of(0, Running::GENESIS)),
        Some(row) => {
            let digest: Vec<u8> = row.try_get("digest")?;
            Ok(DigestPoint {
                position: row.try_get("position")?,
                events: row.try_get("events")?,
                digest: hex::encode(digest),
            })
        }
    }
}

/// What the digest needs of one event, in log order.
pub(crate) struct Link {
    pub(crate) key: Checkpoint,
    pub(crate) aggregate_type: String,
    pub(crate) aggregate_id: String,
    pub(crate) sequence: i64,
    pub(crate) hash: Vec<u8>,
}

impl Link {
    pub(crate) fn fold_into(&self, running: &mut Running) {
        running.fold(
            self.key.position,
            &self.aggregate_type,
            &self.aggregate_id,
            self.sequence,
            &self.hash,
        );
    }
}

/// The same, each event's hash recomputed from its fields and its predecessor's hash (what the
/// chain proves), for verification: an event edited behind the store's back no longer yields its
/// stored hash, so the digest folded from recomputed hashes changes.
const CHECKED_LINKS_AFTER: &str =
    "select e.position, e.transaction_id::text::bigint as transaction_id,
           e.aggregate_type, e.aggregate_id, e.sequence, e.hash as stored,
           event_hash(p.hash, e.position, e.aggregate_type, e.aggregate_id, e.sequence,
                      e.event_id, e.event_type, e.event_version, e.payload, e.metadata,
                      e.recorded_at) as hash
      from events e
      left join events p
        on p.aggregate_type = e.aggregate_type and p.aggregate_id = e.aggregate_id
       and p.sequence = e.sequence - 1
     where (e.transaction_id, e.position) > ($1::bigint::text::xid8, $2)
       and e.transaction_id < log_horizon()
     order by e.transaction_id, e.position
     limit $3";

/// The digest's columns of the settled events after a checkpoint, in log order.
const LINKS_AFTER: &str = "select position, transaction_id::text::bigint as transaction_id,
           aggregate_type, aggregate_id, sequence, hash
      from events
     where (transaction_id, position) > ($1::bigint::text::xid8, $2)
       and transaction_id < log_horizon()
     order by events.transaction_id, events.position
     limit $3";

/// Rows per page of a walk over the log.
pub(crate) const WALK_PAGE: i64 = 10_000;

pub(crate) async fn links_after<'e>(
    db: impl PgExecutor<'e>,
    after: Checkpoint,
    limit: i64,
) -> Result<Vec<Link>, sqlx::Error> {
    links(db, LINKS_AFTER, after, limit).await
}

/// The links with recomputed hashes, and the first position whose stored hash differs.
async fn checked_links_after<'e>(
    db: impl PgExecutor<'e>,
    after: Checkpoint,
    limit: i64,
) -> Result<(Vec<Link>, Option<i64>), sqlx::Error> {
    let rows = sqlx::query(CHECKED_LINKS_AFTER)
        .bind(after.transaction_id)
        .bind(after.position)
        .bind(limit)
        .fetch_all(db)
        .await?;
    let mut edited = None;
    let mut links = Vec::with_capacity(rows.len());
    for row in &rows {
        let link = link_of(row)?;
        let stored: Vec<u8> = row.try_get("stored")?;
        if edited.is_none() && stored != link.hash {
            edited = Some(link.key.position);
        }
        links.push(link);
    }
    Ok((links, edited))
}

fn link_of(row: &sqlx::postgres::PgRow) -> Result<Link, sqlx::Error> {
    Ok(Link {
        key: Checkpoint {
            transaction_id: row.try_get("transaction_id")?,
            position: row.try_get("position")?,
        },
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        hash: row.try_get("hash")?,
    })
}

async fn links<'e>(
    db: impl PgExecutor<'e>,
    statement: &'static str,
    after: Checkpoint,
    limit: i64,
) -> Result<Vec<Link>, sqlx::Error> {
    let rows = sqlx::query(statement)
        .bind(after.transaction_id)
        .bind(after.position)
        .bind(limit)
        .fetch_all(db)
        .await?;
    rows.iter().map(link_of).collect()
}

/// The digest recomputed from the events up to and including the one at `position` in log order,
/// with that event's place; `None` when no settled event has that position. Walks the log from
/// its start in pages (memory flat).
pub async fn digest_at(
    pool: &PgPool,
    position: i64,
) -> Result<Option<(Checkpoint, Running)>, sqlx::Error> {
    let mut running = Running::GENESIS;
    let mut after = Checkpoint::START;
    loop {
        let page = links_after(pool, after, WALK_PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(None);
        };
        let end = last.key;
        for link in &page {
            link.fold_into(&mut running);
            if link.key.position == position {
                return Ok(Some((link.key, running)));
            }
        }
        after = end;
    }
}

/// Where a recomputation first disagrees with the digests the worker stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FirstDifference {
    /// The last stored checkpoint that still agrees (none: not even the first one).
    pub agrees_up_to: Option<i64>,
    /// The first stored checkpoint that does not: history differs after `agrees_up_to` and at or
    /// before this position.
    pub differs_by: i64,
    /// What differs there, in words.
    pub detail: String,
}

/// The outcome of [`verify`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DigestCheck {
    /// Whether the log up to `position` is exactly what the kept digest proves.
    pub ok: bool,
    pub position: i64,
    /// The digest recomputed from the events (none when the event at `position` is gone).
    pub recomputed: Option<DigestPoint>,
    /// Where history first differs from what the worker recorded while it happened; none when
    /// every stored checkpoint agrees (then a difference from the kept digest means the stored
    /// digests were rewritten as well, and only the kept digest can tell). Set even when `ok`:
    /// the kept digest holds, yet what the worker stored does not (its table was changed).
    pub first_difference: Option<FirstDifference>,
    /// The first event whose fields no longer yield its stored hash (edited in place).
    pub edited_at: Option<i64>,
    /// In words, when not ok.
    pub detail: Option<String>,
}

/// One digest the worker stored, in log order.
struct Stored {
    key: Checkpoint,
    events: i64,
    digest: Vec<u8>,
}

/// Stored digests in the order they were written, paged by their checkpoint number.
struct StoredWalk {
    after: i64,
    page: std::collections::VecDeque<(i64, Stored)>,
    done: bool,
}

impl StoredWalk {
    fn new() -> Self {
        Self {
            after: 0,
            page: std::collections::VecDeque::new(),
            done: false,
        }
    }

    async fn peek(&mut self, pool: &PgPool) -> Result<Option<&Stored>, sqlx::Error> {
        if self.page.is_empty() && !self.done {
            let rows = sqlx::query(
                "select checkpoint, position, transaction_id, events, digest
                   from ledger_digests where checkpoint > $1 order by checkpoint limit $2",
            )
            .bind(self.after)
            .bind(WALK_PAGE)
            .fetch_all(pool)
            .await?;
            self.done = rows.is_empty();
            for row in rows {
                let checkpoint: i64 = row.try_get("checkpoint")?;
                self.after = checkpoint;
                self.page.push_back((
                    checkpoint,
                    Stored {
                        key: Checkpoint {
                            transaction_id: row.try_get("transaction_id")?,
                            position: row.try_get("position")?,
                        },
                        events: row.try_get("events")?,
                        digest: row.try_get("digest")?,
                    },
                ));
            }
        }
        Ok(self.page.front().map(|(_, s)| s))
    }

    fn pop(&mut self) {
        self.page.pop_front();
    }
}

/// Where the digest at `position` ends in log order: the event's key, or, when that event is
/// gone, the key the worker recorded for it; `None` when neither knows the position.
async fn end_of(pool: &PgPool, position: i64) -> Result<Option<Checkpoint>, sqlx::Error> {
    let settled: Option<i64> = sqlx::query_scalar(
        "select transaction_id::text::bigint from events
          where position = $1 and transaction_id < log_horizon()",
    )
    .bind(position)
    .fetch_optional(pool)
    .await?;
    let recorded: Option<i64> = match settled {
        Some(_) => None,
        None => {
            sqlx::query_scalar("select transaction_id from ledger_digests where position = $1")
                .bind(position)
                .fetch_optional(pool)
                .await?
        }
    };
    Ok(settled.or(recorded).map(|transaction_id| Checkpoint {
        transaction_id,
        position,
    }))
}

/// Recomputes the digest from the events up to the one at `position` (in log order), each
/// event's hash recomputed from its fields, and says whether it is `kept` (hex, as
/// `GET /v1/audit/digest` gave it). Along the way it compares with every digest the worker stored
/// up to there, to say where history first differs. The walk ends at `position`'s place (or the
/// place the worker recorded for it, if its event is gone); a position neither knows is answered
/// at once.
pub async fn verify(pool: &PgPool, position: i64, kept: &str) -> Result<DigestCheck, sqlx::Error> {
    let Some(end) = end_of(pool, position).await? else {
        return Ok(DigestCheck {
            ok: false,
            position,
            recomputed: None,
            first_difference: None,
            edited_at: None,
            detail: Some(format!(
                "no settled event has position {position}, and no digest was recorded there"
            )),
        });
    };
    let mut running = Running::GENESIS;
    let mut after = Checkpoint::START;
    let mut stored = StoredWalk::new();
    let mut agrees_up_to = None;
    let mut first_difference = None;
    let mut edited_at = None;
    let mut reached = None;
    'walk: loop {
        let (page, edited) = checked_links_after(pool, after, WALK_PAGE).await?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.key;
        for link in &page {
            if link.key > end {
                break 'walk;
            }
            if edited_at.is_none() && edited.is_some_and(|p| p == link.key.position) {
                edited_at = Some(link.key.position);
            }
            link.fold_into(&mut running);
            // Stored checkpoints this walk has passed without meeting their event: that event is
            // no longer where it was (removed, or moved in the order).
            while first_difference.is_none() {
                let Some(s) = stored.peek(pool).await? else {
                    break;
                };
                if s.key > link.key {
                    break;
                }
                if s.key < link.key {
                    first_difference = Some(FirstDifference {
                        agrees_up_to,
                        differs_by: s.key.position,
                        detail: format!(
                            "the event at position {} that a stored checkpoint ended at is no longer at its place in the log",
                            s.key.position
                        ),
                    });
                    break;
                }
                if s.events != running.events || s.digest.as_slice() != running.digest.as_slice() {
                    first_difference = Some(FirstDifference {
                        agrees_up_to,
                        differs_by: s.key.position,
                        detail: if s.events == running.events {
                            format!(
                                "the events up to position {} are not the ones recorded then (an event was changed, removed and replaced, or reordered)",
                                s.key.position
                            )
                        } else {
                            format!(
                                "{} events up to position {} where {} were recorded then",
                                running.events, s.key.position, s.events
                            )
                        },
                    });
                } else {
                    agrees_up_to = Some(s.key.position);
                }
                stored.pop();
            }
            if link.key == end {
                reached = Some(running);
                break 'walk;
            }
        }
    }
    // A stored checkpoint at or before the end that the walk never met ended at an event that is
    // gone (the end itself, when its event was removed).
    if first_difference.is_none() {
        if let Some(s) = stored.peek(pool).await? {
            if s.key <= end {
                first_difference = Some(FirstDifference {
                    agrees_up_to,
                    differs_by: s.key.position,
                    detail: format!(
                        "the event at position {} that a stored checkpoint ended at is no longer in the log",
                        s.key.position
                    ),
                });
            }
        }
    }
    let edited_detail = edited_at.map(|p| {
        format!("the event at position {p} no longer matches its hash: it was changed after it was written")
    });
    let Some(recomputed) = reached else {
        return Ok(DigestCheck {
            ok: false,
            position,
            recomputed: None,
            first_difference,
            edited_at,
            detail: Some(edited_detail.unwrap_or_else(|| format!(
                "the event at position {position}, where the digest was taken, is no longer in the log"
            ))),
        });
    };
    let ok = edited_at.is_none() && recomputed.hex().eq_ignore_ascii_case(kept.trim());
    Ok(DigestCheck {
        ok,
        position,
        recomputed: Some(DigestPoint::of(position, recomputed)),
        first_difference,
        edited_at,
        detail: if ok {
            None
        } else {
            Some(edited_detail.unwrap_or_else(|| {
                "the log up to this position is not what the kept digest proves".to_owned()
            }))
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_of_an_event_changes_the_digest() {
        let base = |p: i64, t: &str, i: &str, s: i64, h: &[u8]| {
            let mut r = Running::GENESIS;
            r.fold(p, t, i, s, h);
            r
        };
        let one = base(1, "gig", "a", 1, &[1, 2]);
        assert_eq!(one.events, 1);
        for other in [
            base(2, "gig", "a", 1, &[1, 2]),
            base(1, "gia", "a", 1, &[1, 2]),
            base(1, "gig", "b", 1, &[1, 2]),
            base(1, "gig", "a", 2, &[1, 2]),
            base(1, "gig", "a", 1, &[1, 3]),
            // The lengths keep a shifted boundary from hashing alike.
            base(1, "gi", "ga", 1, &[1, 2]),
        ] {
            assert_ne!(one.digest, other.digest);
        }
    }

    #[test]
    fn order_matters() {
        let mut ab = Running::GENESIS;
        ab.fold(1, "gig", "a", 1, &[1]);
        ab.fold(2, "gig", "b", 1, &[2]);
        let mut ba = Running::GENESIS;
        ba.fold(2, "gig", "b", 1, &[2]);
        ba.fold(1, "gig", "a", 1, &[1]);
        assert_ne!(ab.digest, ba.digest);
        assert_eq!(ab.events, ba.events);
    }
}
