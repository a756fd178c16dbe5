//! Dead letters: an event that can never be stored is copied, body and headers unchanged, to the
//! `WEBHOOKS_DLQ` stream with headers saying why, and only then removed from the main stream.
//! Readable with `nats stream view WEBHOOKS_DLQ`; `hookline dlq replay` republishes them.
//!
//! Two ways in: the worker gives up on an event (undecodable, rejected by the database), or
//! JetStream gives up on it (delivered `max_deliver` times without an ack, e.g. a worker crashing
//! on it each time), which it announces with a MAX_DELIVERIES advisory that every worker watches.

use std::collections::HashSet;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::HeaderMap;
use bytes::Bytes;
use futures::StreamExt;
use hookline_core::DecodeError;
use tracing::{error, warn};

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
    /// JetStream delivered it `max_deliver` times without an ack.
    MaxDeliveries,
}

impl Reason {
    /// Every reason, for metrics created at zero.
    pub fn all() -> impl Iterator<Item = Self> {
        DecodeError::REASONS
            .into_iter()
            .map(Self::Undecodable)
            .chain([Self::DbRejected, Self::MaxDeliveries])
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Undecodable(reason) => reason,
            Self::DbRejected => "db_rejected",
            Self::MaxDeliveries => "max_deliveries",
        }
    }

    /// Where the event failed: the `Hookline-Dlq-Stage` header and the log's stage.
    pub fn stage(self) -> &'static str {
        match self {
            Self::Undecodable(_) => "decode",
            Self::DbRejected => "db_write",
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
        Reason::MaxDeliveries,
        format!("delivered {deliveries} times without an acknowledgement"),
    );
    publish(js, main_stream, &letter, &failure).await?;
    stream.delete_message(seq).await?;
    Ok(true)
}

/// The third net for events JetStream gave up on, after the worker's own last-attempt handling
/// and the advisory (which is not stored: nobody may be listening when it is sent). In the
/// work-queue stream an acknowledged or terminated event is deleted; an event JetStream gave up on
/// stays, though the consumer will never deliver it again. Such an event is one at or below the
/// consumer's ack floor, or, when nothing is pending at all, at or below its delivered sequence
/// (nats-server 2.15 moves the floor past it only once nothing is pending). Each is moved to the
/// DLQ once a second sweep still finds it (`seen_before` carries the first sweep's finds).
/// Returns how many were moved.
pub async fn sweep_past_max_deliveries(
    js: &jetstream::Context,
    main_stream: &str,
    consumer: &str,
    seen_before: &mut HashSet<u64>,
) -> Result<u64, async_nats::Error> {
    let stream = js.get_stream(main_stream).await?;
    let info = stream.consumer_info(consumer).await?;
    let floor = if info.num_ack_pending == 0 {
        info.delivered.stream_sequence
    } else {
        info.ack_floor.stream_sequence
    };
    let deliveries = info.config.max_deliver;
    let mut next = stream.cached_info().state.first_sequence;
    let mut candidates = HashSet::new();
    let mut moved = 0;
    while next <= floor {
        let found = stream
            .raw_message_builder()
            .sequence(next)
            .next_by_subject(hookline_jetstream::SUBJECTS.to_owned())
            .send()
            .await;
        let seq = match found {
            Ok(m) => m.sequence,
            Err(e) if e.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound => break,
            Err(e) => return Err(e.into()),
        };
        if seq > floor {
            break;
        }
        next = seq + 1;
        // An acknowledged event leaves a work-queue stream a moment after its ack: only an event
        // found by two sweeps in a row is stranded.
        if !seen_before.contains(&seq) {
            candidates.insert(seq);
            continue;
        }
        if dead_letter_sequence(js, main_stream, seq, deliveries).await? {
            moved += 1;
            warn!(
                stage = "consume",
                failed_at_stage = "consume",
                reason = "max_deliveries",
                found_by = "sweep",
                stream_sequence = seq,
                "Event past max deliveries found in the stream and dead-lettered."
            );
        }
    }
    *seen_before = candidates;
    Ok(moved)
}

/// Every `every`: sweeps (see `sweep_past_max_deliveries`) and reads the DLQ's size into
/// `on_state(messages, bytes)`. Runs until aborted.
pub async fn run_sweeps(
    js: jetstream::Context,
    main_stream: String,
    consumer: String,
    dlq_stream: String,
    every: Duration,
    on_moved: impl Fn(u64) + Send + 'static,
    on_state: impl Fn(u64, u64) + Send + 'static,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = HashSet::new();
    loop {
        tick.tick().await;
        match sweep_past_max_deliveries(&js, &main_stream, &consumer, &mut seen).await {
            Ok(0) => {}
            Ok(n) => on_moved(n),
            Err(e) => {
                warn!(error = %e, "Sweeping for events past max deliveries failed; will try again.")
            }
        }
        if let Ok(mut dlq) = js.get_stream(&dlq_stream).await {
            if let Ok(info) = dlq.info().await {
                on_state(info.state.messages, info.state.bytes);
            }
        }
    }
}
