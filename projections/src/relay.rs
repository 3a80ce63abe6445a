//! The relay: a worker over the global log (its own checkpoint, lease and status row, like a
//! projection) that publishes every event, in log order, to NATS JetStream as the public
//! [`Envelope`](crate::integration::Envelope).
//!
//! A batch is published with asynchronous acks and [`Handler::handle`] returns only once every
//! ack of the batch is in, so the checkpoint (moved by the runtime after `handle`) never passes an
//! event JetStream has not stored. A failure (the bus down, a timeout) is transient: the batch is
//! retried from the checkpoint. Republished events carry the same `Nats-Msg-Id` (the event id), so
//! JetStream's duplicate window drops what it already stored. Within a batch each message also
//! says which message must precede it (`Nats-Expected-Last-Msg-Id`): if one is lost, the ones
//! after it are refused rather than stored ahead of it, so the stream keeps log order. (JetStream
//! checks duplicates before that expectation, so a republished prefix is dropped, not refused.)
//!
//! The stream is created, or checked and brought to the configured subjects, duplicate window,
//! replicas and age limit, before the first batch (and again after a failure), so a bus that is
//! down at start delays only the relay.

use std::time::Duration;

pub use async_nats::jetstream::stream::RetentionPolicy;
use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use sqlx::PgConnection;

use crate::integration::{envelope_of, Envelope};
use crate::log::RecordedEvent;
use crate::runtime::{retry_later, Handler, HandlerError};

/// The relay's stored worker name (its checkpoint row, lease and metrics label).
pub const NAME: &str = "relay_nats";

/// The header carrying the event's correlation id.
pub const CORRELATION_HEADER: &str = "Gigledger-Correlation-Id";
/// The header carrying the event's causation id.
pub const CAUSATION_HEADER: &str = "Gigledger-Causation-Id";

/// Where and how the relay publishes.
#[derive(Clone, Debug, PartialEq)]
pub struct RelayConfig {
    /// The NATS server(s), e.g. `nats://127.0.0.1:4222` (comma-separated for a cluster).
    pub url: String,
    /// The JetStream stream's name.
    pub stream: String,
    /// The first token of every subject: `<prefix>.<aggregate>.<event>`; the stream takes
    /// `<prefix>.>`.
    pub subject_prefix: String,
    /// The stream's retention policy.
    pub retention: stream::RetentionPolicy,
    /// How long JetStream remembers a message id to drop a republish. A relay that crashed must
    /// be back within it, or what it republishes is stored twice.
    pub duplicate_window: Duration,
    /// Replicas of the stream (3 on a three-node cluster).
    pub replicas: usize,
    /// How long messages are kept (zero: no limit).
    pub max_age: Duration,
    /// How long one ack may take before the batch counts as failed.
    pub ack_timeout: Duration,
}

impl RelayConfig {
    /// A relay to `url` with the defaults: stream `GIGLEDGER`, subjects `gigledger.>`, limits
    /// retention, a 10-minute duplicate window, one replica, no age limit, 5 s per ack.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            stream: "GIGLEDGER".to_owned(),
            subject_prefix: crate::integration::SUBJECT_PREFIX.to_owned(),
            retention: stream::RetentionPolicy::Limits,
            duplicate_window: Duration::from_secs(600),
            replicas: 1,
            max_age: Duration::ZERO,
            ack_timeout: Duration::from_secs(5),
        }
    }

    /// The stream as configured.
    #[must_use]
    pub fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.stream.clone(),
            subjects: vec![format!("{}.>", self.subject_prefix)],
            retention: self.retention,
            duplicate_window: self.duplicate_window,
            num_replicas: self.replicas,
            max_age: self.max_age,
            storage: stream::StorageType::File,
            ..stream::Config::default()
        }
    }

    /// The subject of one envelope.
    #[must_use]
    pub fn subject_of(&self, envelope: &Envelope) -> String {
        format!(
            "{}.{}.{}",
            self.subject_prefix, envelope.aggregate_type, envelope.event_type
        )
    }
}

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("GIGLEDGER_NATS_URL {url:?} is not usable: {source}")]
    Connect {
        url: String,
        source: async_nats::ConnectError,
    },
    #[error("GIGLEDGER_NATS_URL {url:?}: {reason}")]
    Url { url: String, reason: String },
}

/// A header value NATS can carry: a correlation id is the client's (or a provider notice's) text,
/// and a line break in a header would end the message's headers (the client refuses it).
fn header_safe(value: &str) -> Option<&str> {
    (!value.is_empty() && !value.chars().any(char::is_control)).then_some(value)
}

/// The relay's handler.
pub struct NatsRelay {
    config: RelayConfig,
    client: async_nats::Client,
    jetstream: jetstream::Context,
    /// Whether the stream is known to exist as configured (checked again after a failure).
    stream_ready: tokio::sync::Mutex<bool>,
    /// The id of the last message the stream held when the relay (re)started: a batch that
    /// holds it was stored but not checkpointed (the acks or the commit were lost), and is
    /// resumed after it, whatever the duplicate window.
    resume_after: tokio::sync::Mutex<Option<String>>,
}

impl NatsRelay {
    /// A relay whose connection is made in the background (and remade after every loss): a bus
    /// that is down at start delays only the relay.
    pub async fn connect(config: RelayConfig) -> Result<Self, RelayError> {
        // One URL, or several of a cluster separated by commas.
        let servers = config
            .url
            .split(',')
            .map(|url| url.trim().parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| RelayError::Url {
                url: config.url.clone(),
                reason: e.to_string(),
            })?;
        let client = async_nats::ConnectOptions::new()
            .name("gigledger-relay")
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .connect(servers)
            .await
            .map_err(|source| RelayError::Connect {
                url: config.url.clone(),
                source,
            })?;
        let mut jetstream = jetstream::new(client.clone());
        jetstream.set_timeout(config.ack_timeout);
        Ok(Self {
            config,
            client,
            jetstream,
            stream_ready: tokio::sync::Mutex::new(false),
            resume_after: tokio::sync::Mutex::new(None),
        })
    }

    /// Creates the stream, or brings an existing one to the configuration (subjects, duplicate
    /// window, replicas, age limit; JetStream refuses to change the retention of a stream).
    async fn ensure_stream(&self) -> Result<(), HandlerError> {
        let mut ready = self.stream_ready.lock().await;
        if *ready {
            return Ok(());
        }
        let wanted = self.config.stream_config();
        let stream = self
            .jetstream
            .get_or_create_stream(wanted.clone())
            .await
            .map_err(|e| retry_later(format!("stream {}: {e}", wanted.name)))?;
        let found = &stream.cached_info().config;
        if found.retention != wanted.retention {
            return Err(retry_later(format!(
                "stream {} has retention {:?}, configured {:?}: JetStream cannot change it; \
                 change GIGLEDGER_NATS_RETENTION or the stream",
                wanted.name, found.retention, wanted.retention
            )));
        }
        let missing: Vec<String> = wanted
            .subjects
            .iter()
            .filter(|s| !found.subjects.contains(s))
            .cloned()
            .collect();
        if !missing.is_empty()
            || found.duplicate_window != wanted.duplicate_window
            || found.num_replicas != wanted.num_replicas
            || found.max_age != wanted.max_age
        {
            // The stream as it is, with our subjects added and our settings: its other
            // subjects and an operator's tuning (limits, placement, …) stay.
            let mut updated = found.clone();
            updated.subjects.extend(missing);
            updated.duplicate_window = wanted.duplicate_window;
            updated.num_replicas = wanted.num_replicas;
            updated.max_age = wanted.max_age;
            tracing::info!(relay.stream = %wanted.name, "updating the stream to its configuration");
            self.jetstream.update_stream(updated).await.map_err(|e| {
                retry_later(format!(
                    "stream {} differs from the configuration and cannot be updated: {e}",
                    wanted.name
                ))
            })?;
        }
        // Where the stream ends now, if it ends with one of ours.
        let mut stream = stream;
        let last = stream
            .info()
            .await
            .map_err(|e| retry_later(format!("stream {}: {e}", wanted.name)))?
            .state
            .last_sequence;
        let mut resume = None;
        if last > 0 {
            let message = stream
                .get_raw_message(last)
                .await
                .map_err(|e| retry_later(format!("stream {}: {e}", wanted.name)))?;
            let ours = message
                .subject
                .as_str()
                .starts_with(&format!("{}.", self.config.subject_prefix));
            if ours {
                resume = message
                    .headers
                    .get("Nats-Msg-Id")
                    .map(|id| id.as_str().to_owned());
            }
        }
        *self.resume_after.lock().await = resume;
        *ready = true;
        Ok(())
    }

    async fn publish(&self, events: &[RecordedEvent]) -> Result<(), HandlerError> {
        // The batch's transaction holds a pool connection while this runs: with the bus
        // unreachable, give it back at once rather than after an ack timeout.
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return Err(retry_later("NATS is not connected"));
        }
        self.ensure_stream().await?;
        // A batch holding the stream's last message was stored already: go on after it, and
        // expect it to be the last one (beyond the duplicate window, a republish would be
        // stored twice).
        let resume = self.resume_after.lock().await.take();
        let start = resume
            .as_deref()
            .and_then(|id| {
                events
                    .iter()
                    .position(|e| e.event_id.to_string() == id)
                    .map(|at| at + 1)
            })
            .unwrap_or(0);
        let mut acks = Vec::with_capacity(events.len());
        let mut previous: Option<String> = if start > 0 { resume } else { None };
        for event in &events[start..] {
            let Some(envelope) = envelope_of(event)? else {
                continue;
            };
            let id = envelope.event_id.to_string();
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", id.as_str());
            if let Some(previous) = &previous {
                headers.insert("Nats-Expected-Last-Msg-Id", previous.as_str());
            }
            // (In the envelope whatever they hold; as headers only when a header can carry them.)
            if let Some(correlation) = envelope.correlation_id.as_deref().and_then(header_safe) {
                headers.insert(CORRELATION_HEADER, correlation);
            }
            if let Some(causation) = envelope.causation_id.as_deref().and_then(header_safe) {
                headers.insert(CAUSATION_HEADER, causation);
            }
            let body = serde_json::to_vec(&envelope)?;
            let ack = self
                .jetstream
                .publish_with_headers(self.config.subject_of(&envelope), headers, body.into())
                .await
                .map_err(|e| retry_later(format!("publish of event {id}: {e}")))?;
            acks.push((id.clone(), ack));
            previous = Some(id);
        }
        for (id, ack) in acks {
            ack.await
                .map_err(|e| retry_later(format!("ack of event {id}: {e}")))?;
        }
        metrics::counter!("gigledger_relay_published_total").increment(events.len() as u64);
        Ok(())
    }
}

#[async_trait::async_trait]
impl Handler for NatsRelay {
    fn name(&self) -> &str {
        NAME
    }

    async fn handle(
        &self,
        _tx: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), HandlerError> {
        let published = self.publish(events).await;
        if published.is_err() {
            // The stream may have been deleted or changed meanwhile: check it again next time.
            *self.stream_ready.lock().await = false;
        }
        published
    }
}
