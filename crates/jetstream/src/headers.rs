//! Every header hookline writes on a JetStream message, by name. Provider signature headers are
//! the providers' own (see `hookline_core::providers`); everything hookline adds starts with
//! `Hookline-`.

/// JetStream's dedup id.
pub use async_nats::header::NATS_MESSAGE_ID as MSG_ID;

/// `Hookline-Event-Time-Ms`: on a `hookline replay` copy of an event whose provider sends no
/// event time, the time it was stored with. Declared in core, whose decoders read it.
pub use hookline_core::providers::EVENT_TIME;
/// `Hookline-Received-At-Ms`: when ingest (or the tool publishing a copy) received the event, in
/// unix milliseconds. Declared in core, whose decoders read it.
pub use hookline_core::providers::RECEIVED_AT;
/// The HTTP request that carried the event into ingest (`x-request-id`, or one ingest made up).
pub const REQUEST_ID: &str = "Hookline-Request-Id";
/// On an event that came in a request carrying several (a provider that batches events): its
/// place in the request, `3/17`. Such an event no longer verifies on its own.
pub const PART: &str = "Hookline-Part";
/// Set by `hookline replay` to its run id: the worker re-derives an event already stored.
pub const REPLAY: &str = "Hookline-Replay";
/// Set by `hookline reconcile` on an event it learned from a provider's API (value: `reconcile`).
pub const SYNTHETIC: &str = "Hookline-Synthetic";
/// On a copy `hookline log replay` published: the stream sequence of the event it copies. A
/// later log replay skips copies (their originals are in the log).
pub const REPLAYED_FROM: &str = "Hookline-Replayed-From";
/// On a copy the worker re-published at shutdown: the stream sequence of the event it replaces.
pub const REQUEUED_FROM: &str = "Hookline-Requeued-From";

/// The headers of a dead letter (stream `WEBHOOKS_DLQ`), added to the original ones.
pub mod dlq {
    /// Every dead-letter header starts with this; `hookline dlq replay` strips them.
    pub const PREFIX: &str = "Hookline-Dlq-";
    /// A bounded reason, the same value as the worker's metric label.
    pub const REASON: &str = "Hookline-Dlq-Reason";
    /// The error, one line, at most 500 characters.
    pub const DETAIL: &str = "Hookline-Dlq-Detail";
    /// Where the event failed: `decode`, `db_write` or `consume` (JetStream gave up on it).
    pub const STAGE: &str = "Hookline-Dlq-Stage";
    /// How many times JetStream had delivered the event.
    pub const DELIVERIES: &str = "Hookline-Dlq-Deliveries";
    pub const ORIGINAL_SUBJECT: &str = "Hookline-Dlq-Original-Subject";
    pub const ORIGINAL_SEQUENCE: &str = "Hookline-Dlq-Original-Sequence";
    pub const ORIGINAL_MSG_ID: &str = "Hookline-Dlq-Original-Msg-Id";
    /// When hookline gave up on the event (RFC 3339). Earlier failed attempts are not recorded:
    /// transient failures are retried in place and leave no trace on the message.
    pub const FAILED_AT: &str = "Hookline-Dlq-Failed-At";
}

/// The headers of an event published again (requeued, or replayed from the DLQ): the original
/// ones but its `Nats-Msg-Id` and those `drop` names, under a new dedup id `msg_id` (the original
/// one may still be inside the duplicate window).
pub fn republished(
    original: Option<&async_nats::HeaderMap>,
    drop: impl Fn(&str) -> bool,
    msg_id: &str,
) -> async_nats::HeaderMap {
    let mut headers = async_nats::HeaderMap::new();
    for (name, values) in original.iter().flat_map(|h| h.iter()) {
        if *name == MSG_ID || drop(name.as_ref()) {
            continue;
        }
        for v in values {
            headers.append(name.clone(), v.clone());
        }
    }
    headers.insert(MSG_ID, msg_id);
    headers
}

/// The headers of a change `hookline deliver` gave up on (stream `WEBHOOK_CHANGES_UNDELIVERED`),
/// added to the change's own (`Nats-Msg-Id`, its change id).
pub mod undelivered {
    /// Why: `refused` (a 4xx other than 408 and 429), `gone` (410), `attempts` (every attempt
    /// failed with a 5xx, a 408 or 429, a timeout or no connection).
    pub const REASON: &str = "Hookline-Undelivered-Reason";
    /// The last attempt's outcome: an HTTP status, `timeout` or `connect`.
    pub const LAST_RESULT: &str = "Hookline-Undelivered-Last-Result";
    pub const ATTEMPTS: &str = "Hookline-Undelivered-Attempts";
    /// Where it was to go.
    pub const URL: &str = "Hookline-Undelivered-Url";
    /// When it was given up on (RFC 3339).
    pub const AT: &str = "Hookline-Undelivered-At";
}
