//! Durable hand-off to JetStream: publish with `Nats-Msg-Id` and wait for the PubAck. Only a PubAck
//! lets ingest answer 2xx; anything else — disconnected, no stream, timeout, stream full — is a
//! [`PublishFailure`] and becomes 503.

use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind};
use async_nats::{HeaderMap, HeaderValue};
use bytes::Bytes;

/// What the broker said about an accepted event.
#[derive(Debug, Clone, Copy)]
pub struct Stored {
    pub sequence: u64,
    /// JetStream already had this `Nats-Msg-Id` inside its duplicate window.
    pub duplicate: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishFailure {
    Disconnected,
    NoStream,
    Timeout,
    Refused,
}

impl PublishFailure {
    pub fn reason(self) -> &'static str {
        match self {
            Self::Disconnected => "broker_disconnected",
            Self::NoStream => "stream_unavailable",
            Self::Timeout => "publish_timeout",
            Self::Refused => "publish_refused",
        }
    }
}

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

    pub async fn publish(
        &self,
        subject: String,
        message_id: &str,
        mut headers: HeaderMap,
        body: Bytes,
    ) -> Result<Stored, PublishFailure> {
        // While reconnecting, the client would buffer the publish and the PubAck would time out;
        // answer at once instead so the provider retries elsewhere or later.
        if !self.is_connected() {
            return Err(PublishFailure::Disconnected);
        }
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            HeaderValue::from(message_id),
        );
        let ack = self
            .js
            .publish_with_headers(subject, headers, body)
            .await
            .map_err(|e| classify(e.kind()))?;
        let ack = ack.await.map_err(|e| classify(e.kind()))?;
        Ok(Stored {
            sequence: ack.sequence,
            duplicate: ack.duplicate,
        })
    }
}

fn classify(kind: PublishErrorKind) -> PublishFailure {
    match kind {
        PublishErrorKind::StreamNotFound => PublishFailure::NoStream,
        PublishErrorKind::TimedOut => PublishFailure::Timeout,
        PublishErrorKind::BrokenPipe => PublishFailure::Disconnected,
        _ => PublishFailure::Refused,
    }
}
