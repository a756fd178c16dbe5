//! The one way an event enters the main stream: [`publish_event`] names its subject
//! (`webhook.{provider}.{event_type}`), its dedup id (`Nats-Msg-Id`, from the provider's event
//! id or a hash of the body) and its receive time. Ingest, `hookline replay` and `hookline
//! reconcile` all publish through it; ingest wraps it in a [`Publisher`] that waits for the
//! PubAck and turns every failure into a [`PublishFailure`] (answered 503).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{
    self,
    context::{PublishAckFuture, PublishError, PublishErrorKind},
};
use async_nats::HeaderMap;
use bytes::Bytes;
use hookline_core::subject;

use crate::headers;

/// An event on its way to the main stream.
pub struct Outgoing<'a> {
    pub provider: &'a str,
    /// The event type; `None` when the body did not say (stored as `unparsed`).
    pub event_type: Option<&'a str>,
    /// What makes two publishes the same event for JetStream's duplicate window: the provider's
    /// event id, or `None` to use a hash of the body.
    pub dedup_key: Option<&'a str>,
    /// Headers to keep with the event (a provider's signature headers, hookline's markers).
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Outgoing<'_> {
    /// The `Nats-Msg-Id` this event is published under.
    pub fn msg_id(&self) -> String {
        subject::message_id(self.provider, self.dedup_key, &self.body)
    }

    pub fn subject(&self) -> String {
        subject::subject(
            self.provider,
            self.event_type.unwrap_or(subject::UNPARSED_EVENT_TYPE),
        )
    }
}

/// Publishes `event` with its dedup id and receive time; the returned future resolves to the
/// PubAck. Publishing several and then awaiting their acks keeps them in flight together.
pub async fn publish_event(
    js: &jetstream::Context,
    event: Outgoing<'_>,
) -> Result<PublishAckFuture, PublishError> {
    let subject = event.subject();
    let msg_id = event.msg_id();
    let mut headers = event.headers;
    headers.insert(headers::MSG_ID, msg_id.as_str());
    headers.insert(headers::RECEIVED_AT, unix_millis().to_string().as_str());
    js.publish_with_headers(subject, headers, event.body).await
}

fn unix_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// What the broker said about an accepted event.
#[derive(Debug, Clone, Copy)]
pub struct Stored {
    /// JetStream already had this `Nats-Msg-Id` inside its duplicate window.
    pub duplicate: bool,
}

/// Why an event was not stored. The variants are the metric's `reason` label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishFailure {
    Disconnected,
    NoStream,
    Timeout,
    Refused,
}

impl std::fmt::Display for PublishFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for PublishFailure {}

impl PublishFailure {
    pub const ALL: [Self; 4] = [
        Self::Disconnected,
        Self::NoStream,
        Self::Timeout,
        Self::Refused,
    ];

    /// The metric label and log value.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Disconnected => "broker_disconnected",
            Self::NoStream => "stream_unavailable",
            Self::Timeout => "publish_timeout",
            Self::Refused => "publish_refused",
        }
    }

    fn of(kind: PublishErrorKind) -> Self {
        match kind {
            PublishErrorKind::StreamNotFound => Self::NoStream,
            PublishErrorKind::TimedOut => Self::Timeout,
            PublishErrorKind::BrokenPipe => Self::Disconnected,
            _ => Self::Refused,
        }
    }
}

/// Publishes and waits for the PubAck, failing fast while disconnected.
#[derive(Clone)]
pub struct Publisher {
    client: async_nats::Client,
    js: jetstream::Context,
}

impl Publisher {
    /// `timeout` bounds the PubAck wait; `max_inflight` bounds PubAcks outstanding at once (more
    /// publishers wait for a slot rather than erroring).
    pub fn new(client: async_nats::Client, timeout: Duration, max_inflight: usize) -> Self {
        let js = jetstream::ContextBuilder::new()
            .timeout(timeout)
            .max_ack_inflight(max_inflight)
            .backpressure_on_inflight(true)
            .build(client.clone());
        Self { client, js }
    }

    pub fn context(&self) -> &jetstream::Context {
        &self.js
    }

    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Stores `event`: `Ok` only once JetStream has acknowledged it.
    pub async fn publish(&self, event: Outgoing<'_>) -> Result<Stored, PublishFailure> {
        // While reconnecting, the client would buffer the publish and the PubAck would time out;
        // answer at once instead so the provider retries elsewhere or later.
        if !self.is_connected() {
            return Err(PublishFailure::Disconnected);
        }
        let ack = publish_event(&self.js, event)
            .await
            .map_err(|e| PublishFailure::of(e.kind()))?;
        let ack = ack.await.map_err(|e| PublishFailure::of(e.kind()))?;
        Ok(Stored {
            duplicate: ack.duplicate,
        })
    }
}
