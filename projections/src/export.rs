//! The log as JSON Lines that an auditor can verify with no database: `GET /v1/audit/export` and
//! `gigledger audit export` write it, `gigledger audit verify-export` checks it.
//!
//! # The file
//!
//! 1. A header line: `{"gigledger_export":1,"after":…,"before":…,"start":{position,events,digest}}`,
//!    the ledger digest ([`crate::digest`]) just before the first exported event (the genesis
//!    digest for an export from the start of the log).
//! 2. One line per event in log order ([`ExportedEvent`]): every field its chain hash covers, its
//!    predecessor's hash (`prev_hash`, empty for a stream's first event) and its own `hash`.
//!    `payload` and `metadata` are PostgreSQL's own text of the stored `jsonb`, byte for byte,
//!    since that text is what the hash covers.
//! 3. A trailer line: `{"end":{position,events,digest}}`, the ledger digest at the last exported
//!    event.
//!
//! # What verification proves
//!
//! [`verify_export`] recomputes each event's chain hash from its fields, checks that each event
//! follows its stream's previous one in the file (sequence and hash), that the lines are in log
//! order, that each line is exactly as the exporter writes it (so no byte of the file is free),
//! and folds the ledger digest from the header's to the trailer's. A file that verifies is
//! internally consistent; whoever changed history *and* recomputed every hash would also have
//! changed the end digest, which the auditor compares with a digest kept earlier (or with
//! `GET /v1/audit/digest/verify`).
//!
//! Not covered by any hash: each line's `transaction_id` (it orders the lines, and the digest
//! covers the order they are in), the header's `before`, and, in an export with `after`, the
//! header's start digest itself (it is the digest the service computed at `after`; compare it
//! with one kept, or verify it with the service).

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{BufRead, Read as _};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest as _, Sha256};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::digest::{digest_at, DigestPoint, Running};
use crate::log::Checkpoint;

/// The format's version, in the header.
pub const FORMAT: u32 = 1;

/// The first line of an export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportHeader {
    pub gigledger_export: u32,
    /// The position the export starts after (none: the start of the log).
    pub after: Option<i64>,
    /// The position the export stops before (none: the end of the settled log when it began).
    pub before: Option<i64>,
    /// The ledger digest just before the first exported event.
    pub start: DigestPoint,
}

/// The last line of an export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportTrailer {
    /// The ledger digest at the last exported event.
    pub end: DigestPoint,
}

/// One event line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedEvent {
    pub position: i64,
    pub transaction_id: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: String,
    pub event_id: Uuid,
    /// The stored `jsonb`'s text, verbatim.
    pub payload: Box<RawValue>,
    /// The stored `jsonb`'s text, verbatim.
    pub metadata: Box<RawValue>,
    /// RFC 3339, microseconds, UTC.
    pub recorded_at: String,
    /// The predecessor's hash in the stream, hex (empty for sequence 1).
    pub prev_hash: String,
    /// This event's chain hash, hex.
    pub hash: String,
}

/// `extract(epoch from recorded_at)::text` as PostgreSQL 15 writes it: seconds, a point, six
/// digits.
fn epoch_text(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let abs = micros.unsigned_abs();
    format!("{sign}{}.{:06}", abs / 1_000_000, abs % 1_000_000)
}

/// The chain hash the store's `event_hash` computes (migrations/20261121000001_event_store.sql):
/// SHA-256 over the predecessor's hash and the event's fields joined by U+001F.
#[expect(
    clippy::too_many_arguments,
    reason = "the fields the stored hash covers, in its order"
)]
pub fn chain_hash(
    prev: &[u8],
    position: i64,
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: i64,
    event_id: Uuid,
    event_type: &str,
    event_version: &str,
    payload_text: &str,
    metadata_text: &str,
    recorded_at_micros: i64,
) -> [u8; 32] {
    let sep = "\u{1f}";
    let text = [
        Cow::Owned(position.to_string()),
        Cow::Borrowed(aggregate_type),
        Cow::Borrowed(aggregate_id),
        Cow::Owned(sequence.to_string()),
        Cow::Owned(event_id.to_string()),
        Cow::Borrowed(event_type),
        Cow::Borrowed(event_version),
        Cow::Borrowed(payload_text),
        Cow::Borrowed(metadata_text),
        Cow::Owned(epoch_text(recorded_at_micros)),
    ]
    .join(sep);
    let mut h = Sha256::new();
    h.update(prev);
    h.update(text.as_bytes());
    h.finalize().into()
}

/// Why an export cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("no settled event has position {position} (`{field}`)")]
    NoSuchPosition { field: &'static str, position: i64 },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Rows per page of an export.
const PAGE: i64 = 1_000;

const EXPORT_PAGE: &str = "select e.position, e.transaction_id::text::bigint as transaction_id,
           e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, e.event_version, e.event_id,
           e.payload::text as payload, e.metadata::text as metadata, e.recorded_at,
           p.hash as prev_hash, e.hash
      from events e
      left join events p
        on p.aggregate_type = e.aggregate_type and p.aggregate_id = e.aggregate_id
       and p.sequence = e.sequence - 1
     where (e.transaction_id, e.position) > ($1::bigint::text::xid8, $2)
       and (e.transaction_id, e.position) < ($3::bigint::text::xid8, $4)
     order by e.transaction_id, e.position
     limit $5";

const SETTLED_END: &str =
    "select transaction_id::text::bigint as transaction_id, position from events
      where transaction_id < log_horizon()
      order by events.transaction_id desc, events.position desc limit 1";

enum Stage {
    Header(ExportHeader),
    Events,
    Done,
}

/// Writes an export chunk by chunk (a page of lines at a time), so memory stays flat whatever
/// the log's size. The same code serves the HTTP route and the CLI.
pub struct Exporter {
    pool: PgPool,
    after: Checkpoint,
    /// Exclusive.
    end: Checkpoint,
    running: Running,
    last_position: i64,
    stage: Stage,
}

impl Exporter {
    /// Fixes the range: after the event at `after`, before the event at `before` (or the end of
    /// the settled log now). With `after`, the start digest is recomputed from the log's start.
    pub async fn start(
        pool: &PgPool,
        after: Option<i64>,
        before: Option<i64>,
    ) -> Result<Self, ExportError> {
        let settled: Option<(i64, i64)> = sqlx::query_as(SETTLED_END).fetch_optional(pool).await?;
        let mut end = settled.map_or(Checkpoint::START, |(transaction_id, position)| Checkpoint {
            transaction_id,
            position: position.saturating_add(1),
        });
        if let Some(position) = before {
            let key = crate::log::checkpoint_of(pool, position).await?.ok_or(
                ExportError::NoSuchPosition {
                    field: "before",
                    position,
                },
            )?;
            end = end.min(key);
        }
        let (from, running, start_position) = match after {
            None => (Checkpoint::START, Running::GENESIS, 0),
            Some(position) => {
                // Looked up first, so that a position no event has is refused at once rather
                // than after a walk of the whole log.
                if crate::log::checkpoint_of(pool, position).await?.is_none() {
                    return Err(ExportError::NoSuchPosition {
                        field: "after",
                        position,
                    });
                }
                let (key, running) =
                    digest_at(pool, position)
                        .await?
                        .ok_or(ExportError::NoSuchPosition {
                            field: "after",
                            position,
                        })?;
                (key, running, position)
            }
        };
        Ok(Self {
            pool: pool.clone(),
            after: from,
            end,
            running,
            last_position: start_position,
            stage: Stage::Header(ExportHeader {
                gigledger_export: FORMAT,
                after,
                before,
                start: DigestPoint::of(start_position, running),
            }),
        })
    }

    /// The next lines of the file (each ending in `\n`), or `None` at its end.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, sqlx::Error> {
        match std::mem::replace(&mut self.stage, Stage::Done) {
            Stage::Header(header) => {
                self.stage = Stage::Events;
                Ok(Some(line(&header)))
            }
            Stage::Events => {
                let rows = sqlx::query(EXPORT_PAGE)
                    .bind(self.after.transaction_id)
                    .bind(self.after.position)
                    .bind(self.end.transaction_id)
                    .bind(self.end.position)
                    .bind(PAGE)
                    .fetch_all(&self.pool)
                    .await?;
                if rows.is_empty() {
                    return Ok(Some(self.trailer()));
                }
                let mut out = Vec::with_capacity(rows.len() * 512);
                for row in &rows {
                    let event = exported(row)?;
                    let hash: Vec<u8> = row.try_get("hash")?;
                    self.running.fold(
                        event.position,
                        &event.aggregate_type,
                        &event.aggregate_id,
                        event.sequence,
                        &hash,
                    );
                    self.after = Checkpoint {
                        transaction_id: event.transaction_id,
                        position: event.position,
                    };
                    self.last_position = event.position;
                    out.extend(line(&event));
                }
                self.stage = Stage::Events;
                Ok(Some(out))
            }
            Stage::Done => Ok(None),
        }
    }

    fn trailer(&self) -> Vec<u8> {
        line(&ExportTrailer {
            end: DigestPoint::of(self.last_position, self.running),
        })
    }
}

fn line<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these types cannot fail: every field is a string, an integer or raw JSON.
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

fn exported(row: &sqlx::postgres::PgRow) -> Result<ExportedEvent, sqlx::Error> {
    let raw = |column: &str| -> Result<Box<RawValue>, sqlx::Error> {
        let text: String = row.try_get(column)?;
        RawValue::from_string(text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
    };
    let recorded_at: chrono::DateTime<chrono::Utc> = row.try_get("recorded_at")?;
    let prev: Option<Vec<u8>> = row.try_get("prev_hash")?;
    let hash: Vec<u8> = row.try_get("hash")?;
    Ok(ExportedEvent {
        position: row.try_get("position")?,
        transaction_id: row.try_get("transaction_id")?,
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        event_type: row.try_get("event_type")?,
        version: row.try_get("event_version")?,
        event_id: row.try_get("event_id")?,
        payload: raw("payload")?,
        metadata: raw("metadata")?,
        recorded_at: recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        prev_hash: prev.map(hex::encode).unwrap_or_default(),
        hash: hex::encode(hash),
    })
}

/// The first problem found in a file, with its 1-based line number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LineProblem {
    pub line: u64,
    pub problem: String,
}

/// What [`verify_export`] found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExportReport {
    /// Event lines checked.
    pub events: i64,
    /// Streams seen.
    pub streams: usize,
    /// Events whose predecessor lies before the file (an export with `after`): their link to it
    /// is taken as the file states it.
    pub links_into_earlier_log: i64,
    /// The header's digest.
    pub start: Option<DigestPoint>,
    /// The digest recomputed at the last event (equal to the trailer's when the file verifies).
    pub end: Option<DigestPoint>,
    /// The first problem; none when the file verifies.
    pub problem: Option<LineProblem>,
}

impl ExportReport {
    pub fn ok(&self) -> bool {
        self.problem.is_none()
    }
}

/// A hash as the exporter writes it: lowercase hex, nothing else.
fn decode_hash(text: &str) -> Result<Vec<u8>, String> {
    match hex::decode(text) {
        Ok(bytes) if hex::encode(&bytes) == text => Ok(bytes),
        _ => Err(format!("`{text}` is not a lowercase hex hash")),
    }
}

/// Checks an exported file with no database: see the module's documentation for what it proves.
/// Stops at the first problem and names its line. Memory grows with the number of streams (one
/// hash each), not with the file.
/// The longest line accepted (a stored event is far smaller: commands are bounded at 256 KiB).
pub const MAX_LINE: usize = 16 * 1024 * 1024;

pub fn verify_export(mut input: impl BufRead) -> std::io::Result<ExportReport> {
    let mut report = ExportReport {
        events: 0,
        streams: 0,
        links_into_earlier_log: 0,
        start: None,
        end: None,
        problem: None,
    };
    let mut header: Option<ExportHeader> = None;
    let mut trailer_at: Option<u64> = None;
    let mut running = Running::GENESIS;
    let mut last_key: Option<(i64, i64)> = None;
    let mut last_position = 0;
    let mut streams: HashMap<(String, String), (i64, Vec<u8>)> = HashMap::new();
    let mut number = 0u64;
    let mut raw = Vec::new();
    loop {
        raw.clear();
        let read = (&mut input)
            .take(u64::try_from(MAX_LINE).unwrap_or(u64::MAX) + 1)
            .read_until(b'\n', &mut raw)?;
        if read == 0 {
            break;
        }
        number += 1;
        let fail = |problem: String| LineProblem {
            line: number,
            problem,
        };
        // Every line ends in a bare `\n`, as the exporter writes it: no `\r`, no missing end.
        let text = match raw.strip_suffix(b"\n") {
            Some(line) if !line.ends_with(b"\r") => match std::str::from_utf8(line) {
                Ok(text) => text.to_owned(),
                Err(_) => {
                    report.problem = Some(fail("the line is not UTF-8".to_owned()));
                    return Ok(report);
                }
            },
            _ => {
                report.problem = Some(fail(if raw.len() > MAX_LINE {
                    format!("the line is longer than {MAX_LINE} bytes")
                } else {
                    "the line does not end in a bare newline as the exporter writes it".to_owned()
                }));
                return Ok(report);
            }
        };
        if let Some(at) = trailer_at {
            report.problem = Some(fail(format!(
                "a line after the digest line (line {at}) that ends the export"
            )));
            return Ok(report);
        }
        let step = if header.is_none() {
            check_header(&text).map(|h| {
                running = Running {
                    digest: hex::decode(&h.start.digest)
                        .ok()
                        .and_then(|d| d.try_into().ok())
                        .unwrap_or([0; 32]),
                    events: h.start.events,
                };
                last_position = h.start.position;
                report.start = Some(h.start.clone());
                header = Some(h);
            })
        } else if let Ok(trailer) = serde_json::from_str::<ExportTrailer>(&text) {
            trailer_at = Some(number);
            check_canonical(&text, &trailer).and_then(|()| {
                let end = DigestPoint::of(last_position, running);
                report.end = Some(end.clone());
                if trailer.end == end {
                    Ok(())
                } else {
                    Err(format!(
                        "the digest line says {} events and digest {} at position {}, the events above recompute to {} and {} at position {}",
                        trailer.end.events, trailer.end.digest, trailer.end.position,
                        end.events, end.digest, end.position
                    ))
                }
            })
        } else {
            let from_start = header.as_ref().is_some_and(|h| h.after.is_none());
            check_event(&text, from_start, &mut streams, &mut last_key).map(
                |(event, hash, earlier)| {
                    running.fold(
                        event.position,
                        &event.aggregate_type,
                        &event.aggregate_id,
                        event.sequence,
                        &hash,
                    );
                    last_position = event.position;
                    report.events += 1;
                    if earlier {
                        report.links_into_earlier_log += 1;
                    }
                },
            )
        };
        if let Err(problem) = step {
            report.problem = Some(fail(problem));
            return Ok(report);
        }
    }
    report.streams = streams.len();
    if header.is_none() {
        report.problem = Some(LineProblem {
            line: 1,
            problem: "the file is empty: no export header".to_owned(),
        });
    } else if trailer_at.is_none() {
        report.problem = Some(LineProblem {
            line: number + 1,
            problem: "the file ends without its digest line: it is cut short".to_owned(),
        });
    }
    Ok(report)
}

fn check_canonical<T: Serialize>(text: &str, value: &T) -> Result<(), String> {
    let again = serde_json::to_string(value).map_err(|e| e.to_string())?;
    if again == text {
        Ok(())
    } else {
        Err("the line is not byte for byte as the exporter writes it".to_owned())
    }
}

fn check_header(text: &str) -> Result<ExportHeader, String> {
    let header: ExportHeader = serde_json::from_str(text)
        .map_err(|e| format!("the first line is not an export header: {e}"))?;
    if header.gigledger_export != FORMAT {
        return Err(format!(
            "export format {} (this verifier reads {FORMAT})",
            header.gigledger_export
        ));
    }
    if decode_hash(&header.start.digest)?.len() != 32 {
        return Err("the start digest is not 32 bytes".to_owned());
    }
    match header.after {
        // From the start of the log: nothing can come before the first line, so the start is
        // the genesis digest and nothing else (a file cut at its beginning does not verify).
        None if header.start != DigestPoint::of(0, Running::GENESIS) => {
            return Err(
                "an export from the start of the log must start at the genesis digest".to_owned(),
            )
        }
        Some(after) if header.start.position != after => {
            return Err(format!(
                "the start digest is at position {}, the export starts after {after}",
                header.start.position
            ))
        }
        _ => {}
    }
    check_canonical(text, &header)?;
    Ok(header)
}

type Streams = HashMap<(String, String), (i64, Vec<u8>)>;

/// Checks one event line: its form, its place in log order, its link to its stream's previous
/// event in the file, and its own hash. Returns the event, its hash, and whether its link points
/// before the file.
fn check_event(
    text: &str,
    from_start: bool,
    streams: &mut Streams,
    last_key: &mut Option<(i64, i64)>,
) -> Result<(ExportedEvent, Vec<u8>, bool), String> {
    let event: ExportedEvent =
        serde_json::from_str(text).map_err(|e| format!("not an event line: {e}"))?;
    check_canonical(text, &event)?;
    let key = (event.transaction_id, event.position);
    if last_key.is_some_and(|last| key <= last) {
        return Err(format!("position {} is out of log order", event.position));
    }
    *last_key = Some(key);
    let prev = decode_hash(&event.prev_hash)?;
    let hash = decode_hash(&event.hash)?;
    let stream = (event.aggregate_type.clone(), event.aggregate_id.clone());
    let mut earlier = false;
    match streams.get(&stream) {
        Some((sequence, last_hash)) => {
            if sequence.checked_add(1) != Some(event.sequence) {
                return Err(format!(
                    "{}/{} jumps from sequence {sequence} to {}: events are missing between",
                    event.aggregate_type, event.aggregate_id, event.sequence
                ));
            }
            if &prev != last_hash {
                return Err(format!(
                    "{}/{} sequence {} does not follow the previous event of its stream in the file",
                    event.aggregate_type, event.aggregate_id, event.sequence
                ));
            }
        }
        None if event.sequence == 1 => {
            if !prev.is_empty() {
                return Err("a stream's first event has a predecessor hash".to_owned());
            }
        }
        None if from_start => {
            return Err(format!(
                "{}/{} begins at sequence {} in an export from the start of the log: its first events are missing",
                event.aggregate_type, event.aggregate_id, event.sequence
            ));
        }
        None => earlier = true,
    }
    let recorded_at = chrono::DateTime::parse_from_rfc3339(&event.recorded_at)
        .map_err(|e| format!("recorded_at: {e}"))?
        .with_timezone(&chrono::Utc);
    // One spelling per instant (UTC, `Z`, six digits), as the exporter writes it.
    if recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true) != event.recorded_at {
        return Err("recorded_at is not written as the exporter writes it".to_owned());
    }
    let recorded_at = recorded_at.timestamp_micros();
    let computed = chain_hash(
        &prev,
        event.position,
        &event.aggregate_type,
        &event.aggregate_id,
        event.sequence,
        event.event_id,
        &event.event_type,
        &event.version,
        event.payload.get(),
        event.metadata.get(),
        recorded_at,
    );
    if computed.as_slice() != hash.as_slice() {
        return Err(format!(
            "{}/{} sequence {} (position {}): its fields do not hash to its hash: the event was changed",
            event.aggregate_type, event.aggregate_id, event.sequence, event.position
        ));
    }
    streams.insert(stream, (event.sequence, hash.clone()));
    Ok((event, hash, earlier))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_epoch_is_written_as_postgresql_writes_it() {
        assert_eq!(epoch_text(1_796_137_200_123_000), "1796137200.123000");
        assert_eq!(epoch_text(1_796_137_200_000_000), "1796137200.000000");
        assert_eq!(epoch_text(-500_000), "-0.500000");
        assert_eq!(epoch_text(0), "0.000000");
    }

    #[test]
    fn an_empty_or_cut_file_does_not_verify() {
        let empty = verify_export(std::io::Cursor::new("")).expect("read");
        assert!(!empty.ok());
        let header = serde_json::to_string(&ExportHeader {
            gigledger_export: FORMAT,
            after: None,
            before: None,
            start: DigestPoint::of(0, Running::GENESIS),
        })
        .expect("json");
        let cut = verify_export(std::io::Cursor::new(format!("{header}\n"))).expect("read");
        assert_eq!(cut.problem.as_ref().map(|p| p.line), Some(2));
        let trailer = serde_json::to_string(&ExportTrailer {
            end: DigestPoint::of(0, Running::GENESIS),
        })
        .expect("json");
        let whole =
            verify_export(std::io::Cursor::new(format!("{header}\n{trailer}\n"))).expect("read");
        assert!(whole.ok(), "{whole:?}");
    }
}
