//! Dead letters: an event that can never be stored is copied, body and headers unchanged, to the
//! `WEBHOOKS_DLQ` stream with headers saying why, and only then terminated on the main stream.
//! Readable with `nats stream view WEBHOOKS_DLQ`; replayable by republishing to `webhook.…`.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;

/// DLQ subjects: `dlq.` + the original subject.
pub const DLQ_SUBJECT_PREFIX: &str = "dlq.";

pub mod header {
    pub const REASON: &str = "Hookline-Dlq-Reason";
    pub const DETAIL: &str = "Hookline-Dlq-Detail";
    pub const STAGE: &str = "Hookline-Dlq-Stage";
    pub const DELIVERIES: &str = "Hookline-Dlq-Deliveries";
    pub const ORIGINAL_SUBJECT: &str = "Hookline-Dlq-Original-Subject";
    pub const ORIGINAL_SEQUENCE: &str = "Hookline-Dlq-Original-Sequence";
    pub const FIRST_FAILURE: &str = "Hookline-Dlq-First-Failure";
    pub const LAST_FAILURE: &str = "Hookline-Dlq-Last-Failure";
}

/// The DLQ stream: limits retention (kept until an operator replays or purges), file storage.
pub fn stream_config(name: &str, replicas: usize) -> stream::Config {
    stream::Config {
        name: name.to_owned(),
        subjects: vec![format!("{DLQ_SUBJECT_PREFIX}webhook.>")],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::New,
        max_age: Duration::from_secs(14 * 24 * 60 * 60),
        num_replicas: replicas,
        ..Default::default()
    }
}

/// Why and where an event failed.
pub struct Failure<'a> {
    pub reason: &'static str,
    pub detail: String,
    pub stage: &'a str,
    pub first_failure: Option<chrono::DateTime<chrono::Utc>>,
}

/// Publishes a copy of `msg` to the DLQ and waits for the PubAck.
pub async fn publish(
    js: &jetstream::Context,
    msg: &jetstream::Message,
    failure: &Failure<'_>,
) -> Result<(), async_nats::Error> {
    let info = msg.info()?;
    let now = chrono::Utc::now();
    // Original headers, less the dedup id: a replayed event that fails again must not be
    // swallowed as a duplicate of its first dead letter.
    let mut headers = HeaderMap::new();
    for (name, values) in msg.headers.iter().flat_map(|h| h.iter()) {
        if *name == async_nats::header::NATS_MESSAGE_ID {
            continue;
        }
        for v in values {
            headers.append(name.clone(), v.clone());
        }
    }
    set(&mut headers, header::REASON, failure.reason);
    // Header values are single-line and bounded.
    let detail: String = failure
        .detail
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(500)
        .collect();
    set(&mut headers, header::DETAIL, &detail);
    set(&mut headers, header::STAGE, failure.stage);
    set(
        &mut headers,
        header::DELIVERIES,
        &info.delivered.to_string(),
    );
    set(&mut headers, header::ORIGINAL_SUBJECT, msg.subject.as_str());
    set(
        &mut headers,
        header::ORIGINAL_SEQUENCE,
        &info.stream_sequence.to_string(),
    );
    let first = failure.first_failure.unwrap_or(now);
    set(&mut headers, header::FIRST_FAILURE, &first.to_rfc3339());
    set(&mut headers, header::LAST_FAILURE, &now.to_rfc3339());
    js.publish_with_headers(
        format!("{DLQ_SUBJECT_PREFIX}{}", msg.subject),
        headers,
        msg.payload.clone(),
    )
    .await?
    .await?;
    Ok(())
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    headers.insert(name, value);
}
