//! Dead letters: an event that can never be stored is copied, body and headers unchanged, to the
//! `WEBHOOKS_DLQ` stream with headers saying why, and only then removed from the main stream.
//! Readable with `nats stream view WEBHOOKS_DLQ`; `hookline dlq replay` republishes them.
//!
//! Two ways in: the worker gives up on an event (undecodable, rejected by the database), or
//! JetStream gives up on it (delivered `max_deliver` times without an ack, e.g. a worker crashing
//! on it each time), which it announces with a MAX_DELIVERIES advisory that every worker watches.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use bytes::Bytes;
use futures::StreamExt;
use tracing::{error, warn};

/// DLQ subjects: `dlq.` + the original subject.
pub const DLQ_SUBJECT_PREFIX: &str = "dlq.";

pub mod header {
    pub const REASON: &str = "Hookline-Dlq-Reason";
    pub const DETAIL: &str = "Hookline-Dlq-Detail";
    pub const STAGE: &str = "Hookline-Dlq-Stage";
    pub const DELIVERIES: &str = "Hookline-Dlq-Deliveries";
    pub const ORIGINAL_SUBJECT: &str = "Hookline-Dlq-Original-Subject";
    pub const ORIGINAL_SEQUENCE: &str = "Hookline-Dlq-Original-Sequence";
    pub const ORIGINAL_MSG_ID: &str = "Hookline-Dlq-Original-Msg-Id";
    pub const FIRST_FAILURE: &str = "Hookline-Dlq-First-Failure";
    pub const LAST_FAILURE: &str = "Hookline-Dlq-Last-Failure";
    /// Every header hookline adds starts with this; replay strips them.
    pub const PREFIX: &str = "Hookline-Dlq-";
}

/// The DLQ stream: kept (limits retention) until an operator replays or purges, file storage.
pub fn stream_config(name: &str, replicas: usize) -> stream::Config {
    stream::Config {
        name: name.to_owned(),
        subjects: vec![format!("{DLQ_SUBJECT_PREFIX}webhook.>")],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::New,
        max_age: Duration::from_secs(14 * 24 * 60 * 60),
        duplicate_window: Duration::from_secs(120),
        num_replicas: replicas,
        ..Default::default()
    }
}

/// Why and where an event failed.
pub struct Failure {
    pub reason: &'static str,
    pub detail: String,
    pub stage: &'static str,
}

impl Failure {
    pub fn new(reason: &'static str, detail: String, stage: &'static str) -> Self {
        Self {
            reason,
            detail,
            stage,
        }
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
        if *name == async_nats::header::NATS_MESSAGE_ID {
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
        async_nats::header::NATS_MESSAGE_ID,
        format!("dlq:{main_stream}:{}", letter.stream_sequence).as_str(),
    );
    headers.insert(header::REASON, failure.reason);
    headers.insert(header::DETAIL, detail.as_str());
    headers.insert(header::STAGE, failure.stage);
    headers.insert(header::DELIVERIES, letter.deliveries.to_string().as_str());
    headers.insert(header::ORIGINAL_SUBJECT, letter.subject);
    headers.insert(
        header::ORIGINAL_SEQUENCE,
        letter.stream_sequence.to_string().as_str(),
    );
    // hookline retries transient failures in place, so the first failure that counts is this one.
    headers.insert(header::FIRST_FAILURE, now.as_str());
    headers.insert(header::LAST_FAILURE, now.as_str());
    js.publish_with_headers(
        format!("{DLQ_SUBJECT_PREFIX}{}", letter.subject),
        headers,
        letter.payload.clone(),
    )
    .await?
    .await?;
    Ok(())
}

#[derive(serde::Deserialize)]
struct MaxDeliveriesAdvisory {
    stream_seq: u64,
    deliveries: i64,
}

/// Watches JetStream's MAX_DELIVERIES advisories for the worker consumer and moves each such event
/// to the DLQ (copy, then delete from the main stream). Workers share a queue group, so each
/// advisory is handled once. Runs until the connection closes.
pub async fn watch_max_deliveries(
    client: async_nats::Client,
    js: jetstream::Context,
    main_stream: String,
    consumer: String,
    on_dead_letter: impl Fn() + Send + 'static,
) {
    let subject = format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{main_stream}.{consumer}");
    let mut sub = match client
        .queue_subscribe(subject.clone(), "hookline-max-deliveries".into())
        .await
    {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, %subject, "Cannot watch max-delivery advisories.");
            return;
        }
    };
    while let Some(msg) = sub.next().await {
        let Ok(adv) = serde_json::from_slice::<MaxDeliveriesAdvisory>(&msg.payload) else {
            warn!("Unreadable max-delivery advisory.");
            continue;
        };
        match dead_letter_sequence(&js, &main_stream, adv.stream_seq, adv.deliveries).await {
            Ok(true) => {
                on_dead_letter();
                warn!(
                    stage = "consume",
                    failed_at_stage = "consume",
                    reason = "max_deliveries",
                    stream_sequence = adv.stream_seq,
                    deliveries = adv.deliveries,
                    "Event dead-lettered after its last delivery attempt."
                );
            }
            Ok(false) => {}
            Err(e) => {
                error!(error = %e, stream_sequence = adv.stream_seq, "Could not dead-letter an event past max deliveries; it stays in the stream.")
            }
        }
    }
}

/// Moves stream message `seq` to the DLQ. `Ok(false)`: it was already gone (acked meanwhile).
async fn dead_letter_sequence(
    js: &jetstream::Context,
    main_stream: &str,
    seq: u64,
    deliveries: i64,
) -> Result<bool, async_nats::Error> {
    let stream = js.get_stream(main_stream).await?;
    let raw = match stream.get_raw_message(seq).await {
        Ok(m) => m,
        Err(e) if e.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound => {
            return Ok(false)
        }
        Err(e) => return Err(e.into()),
    };
    let letter = Letter {
        subject: raw.subject.as_str(),
        headers: Some(&raw.headers),
        payload: raw.payload.clone(),
        stream_sequence: seq,
        deliveries,
    };
    let failure = Failure::new(
        "max_deliveries",
        format!("delivered {deliveries} times without an acknowledgement"),
        "consume",
    );
    publish(js, main_stream, &letter, &failure).await?;
    stream.delete_message(seq).await?;
    Ok(true)
}
