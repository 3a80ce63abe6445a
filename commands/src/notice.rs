//! Provider notices: the signed messages a payment provider sends to `POST /v1/webhooks/payments`
//! (an account verified, a transfer paid or failed, a refund failed), how their signature is made
//! and checked, and our record of each one received so that a repeat changes nothing.
//!
//! # The signature
//!
//! Header `Gigledger-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`
//! (the shape Stripe uses). A notice is accepted when some `v1` matches (several may be sent while
//! a secret is rotated), compared in constant time, and `t` is within [`TOLERANCE_SECS`] of now,
//! so a captured notice cannot be replayed later and a body changed after signing never matches.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use sqlx::PgExecutor;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "gigledger-signature";

/// How far a notice's timestamp may be from now, either way.
pub const TOLERANCE_SECS: i64 = 300;

type HmacSha256 = Hmac<Sha256>;

/// Why a notice's signature is not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no {SIGNATURE_HEADER} header")]
    Missing,
    #[error("the {SIGNATURE_HEADER} header is not `t=<unix seconds>,v1=<hex>`")]
    Malformed,
    #[error("the notice was signed {0} seconds away from now (at most {TOLERANCE_SECS} allowed)")]
    Stale(i64),
    #[error("the signature does not match the body")]
    Mismatch,
}

/// The header value signing `body` at `timestamp` with `secret`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let signed = keyed(secret, &timestamp.to_string(), body)
        .finalize()
        .into_bytes();
    format!("t={timestamp},v1={}", hex::encode(signed))
}

/// The MAC over `"<timestamp>.<body>"` (the timestamp as the header spells it), ready to
/// finalise or to compare.
fn keyed(secret: &[u8], timestamp: &str, body: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length: this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The longest signature header read, and the most `v1` entries in it (a provider rotating its
/// secret sends two): past them the header is refused before any hashing.
const MAX_HEADER: usize = 1024;
const MAX_SIGNATURES: usize = 8;

/// The smallest secret accepted (as for the JWT secret).
pub const MIN_SECRET_BYTES: usize = 32;

/// Checks `header` against `body` at `now` (unix seconds).
pub fn verify(
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    if header.len() > MAX_HEADER {
        return Err(SignatureError::Malformed);
    }
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => {
                timestamp = Some((t, t.parse::<i64>().map_err(|_| SignatureError::Malformed)?));
            }
            Some(("v1", v)) => {
                let signature = hex::decode(v).map_err(|_| SignatureError::Malformed)?;
                // An HMAC-SHA256 is 32 bytes; anything else cannot match.
                if signature.len() != 32 || signatures.len() == MAX_SIGNATURES {
                    return Err(SignatureError::Malformed);
                }
                signatures.push(signature);
            }
            // Other schemes may come and go; they are not ours to check.
            Some(_) => {}
            None => return Err(SignatureError::Malformed),
        }
    }
    let (spelled, timestamp) = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let skew = now.saturating_sub(timestamp);
    if skew.saturating_abs() > TOLERANCE_SECS {
        return Err(SignatureError::Stale(skew));
    }
    // The body is hashed once; each candidate is compared (in constant time, `verify_slice`)
    // against a copy of the finished state.
    let mac = keyed(secret, spelled, body);
    let matched = signatures
        .iter()
        .any(|signature| mac.clone().verify_slice(signature).is_ok());
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The envelope every notice has: its id at the provider, its type, and its data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoticeEnvelope {
    pub id: String,
    #[serde(rename = "type")]
    pub notice_type: String,
    /// Unix seconds at the provider.
    #[serde(default)]
    pub created: Option<i64>,
    #[serde(default)]
    pub data: serde_json::Value,
}

/// What recording a notice found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// First time here (or here before but never applied): apply it now.
    New,
    /// Applied before: answer as then, change nothing.
    AlreadyApplied { outcome: String },
}

const RECORD: &str = "insert into provider_notices (notice_id, notice_type, body)
      values ($1, $2, $3)
      on conflict (notice_id) do nothing";

const APPLIED: &str = "select applied_at is not null as applied, coalesce(outcome, '') as outcome
      from provider_notices where notice_id = $1";

/// Records a notice by its id (a repeat is recorded once) and says whether it still needs applying.
pub async fn record<'e, E: PgExecutor<'e> + Copy>(
    db: E,
    notice: &NoticeEnvelope,
    body: &serde_json::Value,
) -> Result<Recorded, sqlx::Error> {
    sqlx::query(RECORD)
        .bind(&notice.id)
        .bind(&notice.notice_type)
        .bind(body)
        .execute(db)
        .await?;
    let (applied, outcome): (bool, String) = sqlx::query_as(APPLIED)
        .bind(&notice.id)
        .fetch_one(db)
        .await?;
    Ok(if applied {
        Recorded::AlreadyApplied { outcome }
    } else {
        Recorded::New
    })
}

/// Marks a notice applied, with what applying it did.
pub async fn mark_applied<'e>(
    db: impl PgExecutor<'e>,
    notice_id: &str,
    outcome: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update provider_notices set applied_at = now(), outcome = $2
          where notice_id = $1 and applied_at is null",
    )
    .bind(notice_id)
    .bind(outcome)
    .execute(db)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test";

    #[test]
    fn a_signed_body_verifies_and_nothing_else_does() {
        let body = br#"{"id":"n1","type":"transfer.paid","data":{}}"#;
        let header = sign(SECRET, 1_000, body);
        assert_eq!(verify(SECRET, Some(&header), body, 1_000), Ok(()));
        assert_eq!(verify(SECRET, Some(&header), body, 1_000 + 300), Ok(()));
        assert_eq!(
            verify(SECRET, Some(&header), body, 1_000 + 360),
            Err(SignatureError::Stale(360))
        );
        assert_eq!(
            verify(SECRET, Some(&header), body, 1_000 - 301),
            Err(SignatureError::Stale(-301))
        );
        let changed = br#"{"id":"n1","type":"transfer.paid","data":{"x":1}}"#;
        assert_eq!(
            verify(SECRET, Some(&header), changed, 1_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"another", Some(&header), body, 1_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, None, body, 1_000),
            Err(SignatureError::Missing)
        );
        let many = format!("t=1000{}", ",v1=".repeat(10));
        let long = format!("t=1000,v1={}", "0".repeat(2000));
        for bad in [
            "",
            "t=1000",
            "v1=00",
            "t=x,v1=00",
            "t=1000,v1=zz",
            "t=1000,v1=00",
            "garbage",
            many.as_str(),
            long.as_str(),
        ] {
            assert_eq!(
                verify(SECRET, Some(bad), body, 1_000),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
        // A rotated secret: any matching v1 is enough.
        let two = format!(
            "{},v1={}",
            sign(b"old", 1_000, body),
            &header[header.find("v1=").unwrap_or(0) + 3..]
        );
        assert_eq!(verify(SECRET, Some(&two), body, 1_000), Ok(()));
    }
}
