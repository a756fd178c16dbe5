//! Dead letters: an event that can never be stored is copied, body and headers unchanged, to the
//! `WEBHOOKS_DLQ` stream with headers saying why, and only then terminated on the workers'
//! consumer (the log keeps the original for its retention window). Readable with
//! `nats stream view WEBHOOKS_DLQ`; `hookline dlq replay` republishes them.
//!
//! Three ways in, all decided by a worker holding the event: undecodable, rejected by the
//! database (confirmed by a canary), or delivered `HOOKLINE_MAX_DELIVER` times without an ack
//! (a worker crashing on it each time; dead-lettered unread on the next delivery). JetStream
//! itself never gives up on an event, so none can be stranded where no worker looks.

use std::time::Duration;

use async_nats::jetstream;
use async_nats::HeaderMap;
use bytes::Bytes;
use hookline_core::DecodeError;

use hookline_jetstream::headers::{self as hdr, dlq as header};
use hookline_jetstream::DLQ_SUBJECT_PREFIX;

/// Re-publishes an event to the main stream as a fresh message, with a full delivery budget, and
/// waits for the PubAck. The copy's dedup id comes from the original's place in the stream, so
/// two attempts leave one copy; the database absorbs it if the original was stored after all.
pub async fn requeue(
    js: &jetstream::Context,
    main_stream: &str,
    letter: &Letter<'_>,
) -> Result<(), async_nats::Error> {
    let mut headers = hdr::republished(
        letter.headers,
        |name| name == hdr::REQUEUED_FROM,
        &format!("requeue:{main_stream}:{}", letter.stream_sequence),
    );
    headers.insert(
        hdr::REQUEUED_FROM,
        letter.stream_sequence.to_string().as_str(),
    );
    js.publish_with_headers(letter.subject.to_owned(), headers, letter.payload.clone())
        .await?
        .await?;
    Ok(())
}

/// Why an event was dead-lettered: the `reason` label of `webhook_dead_lettered_total` and the
/// `Hookline-Dlq-Reason` header; each reason has one stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The body cannot be read as its provider's event (a [`DecodeError::reason`]).
    Undecodable(&'static str),
    /// The database rejects the event itself (confirmed by a canary write).
    DbRejected,
    /// Writing the event alone keeps failing with an outage-class error (a statement timeout)
    /// while canary writes succeed (`HOOKLINE_ISOLATE_AFTER` attempts).
    DbFailsAlone,
    /// Delivered `HOOKLINE_MAX_DELIVER` times without an ack.
    MaxDeliveries,
}

impl Reason {
    /// Every reason, for metrics created at zero.
    pub fn all() -> impl Iterator<Item = Self> {
        DecodeError::REASONS
            .into_iter()
            .map(Self::Undecodable)
            .chain([Self::DbRejected, Self::DbFailsAlone, Self::MaxDeliveries])
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Undecodable(reason) => reason,
            Self::DbRejected => "db_rejected",
            Self::DbFailsAlone => "db_fails_alone",
            Self::MaxDeliveries => "max_deliveries",
        }
    }

    /// Where the event failed: the `Hookline-Dlq-Stage` header and the log's stage.
    pub fn stage(self) -> &'static str {
        match self {
            Self::Undecodable(_) => "decode",
            Self::DbRejected | Self::DbFailsAlone => "db_write",
            Self::MaxDeliveries => "consume",
        }
    }
}

/// Why an event failed, and the error.
pub struct Failure {
    pub reason: Reason,
    pub detail: String,
}

impl Failure {
    pub fn new(reason: Reason, detail: String) -> Self {
        Self { reason, detail }
    }
}

/// The event being dead-lettered, as it sits in the main stream.
pub struct Letter<'a> {
    pub subject: &'a str,
    pub headers: Option<&'a HeaderMap>,
    pub payload: Bytes,
    pub stream_sequence: u64,
    pub deliveries: i64,
}

/// Publishes a copy of the event to the DLQ and waits for the PubAck. The copy's dedup id is
/// derived from its place in the main stream, so dead-lettering the same event twice (a retry,
/// two workers seeing one advisory) leaves one dead letter.
pub async fn publish(
    js: &jetstream::Context,
    main_stream: &str,
    letter: &Letter<'_>,
    failure: &Failure,
) -> Result<(), async_nats::Error> {
    let now = chrono::Utc::now().to_rfc3339();
    let mut headers = HeaderMap::new();
    for (name, values) in letter.headers.iter().flat_map(|h| h.iter()) {
        if *name == hdr::MSG_ID {
            for v in values {
                headers.append(header::ORIGINAL_MSG_ID, v.clone());
            }
            continue;
        }
        for v in values {
            headers.append(name.clone(), v.clone());
        }
    }
    // Header values are single-line and bounded.
    let detail: String = failure
        .detail
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(500)
        .collect();
    headers.insert(
        hdr::MSG_ID,
        format!("dlq:{main_stream}:{}", letter.stream_sequence).as_str(),
    );
    headers.insert(header::REASON, failure.reason.label());
    headers.insert(header::DETAIL, detail.as_str());
    headers.insert(header::STAGE, failure.reason.stage());
    headers.insert(header::DELIVERIES, letter.deliveries.to_string().as_str());
    headers.insert(header::ORIGINAL_SUBJECT, letter.subject);
    headers.insert(
        header::ORIGINAL_SEQUENCE,
        letter.stream_sequence.to_string().as_str(),
    );
    headers.insert(header::FAILED_AT, now.as_str());
    js.publish_with_headers(
        format!("{DLQ_SUBJECT_PREFIX}{}", letter.subject),
        headers,
        letter.payload.clone(),
    )
    .await?
    .await?;
    Ok(())
}

/// Every `every`: reads the DLQ's size into `on_state(messages, bytes)`. Runs until aborted.
pub async fn watch_size(
    js: jetstream::Context,
    dlq_stream: String,
    every: Duration,
    on_state: impl Fn(u64, u64) + Send + 'static,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Ok(mut dlq) = js.get_stream(&dlq_stream).await {
            if let Ok(info) = dlq.info().await {
                on_state(info.state.messages, info.state.bytes);
            }
        }
    }
}
