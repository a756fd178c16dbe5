//! The streams and the consumer: `WEBHOOKS` (the event log: every event ingest accepted, kept for
//! its retention window whether or not a worker has stored it), the durable pull consumer the
//! workers share, and `WEBHOOKS_DLQ` (limits, what could never be stored). Binaries
//! either create or update them from their flags at start-up ([`Ownership::Manage`], the local
//! run), or, where an operator owns them (`nats stream edit` must stick, and binaries should not
//! hold stream-admin permissions), only check that they exist with settings hookline's promise
//! depends on ([`Ownership::Check`]); `hookline streams` then creates and updates them.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use thiserror::Error;

/// Stream subjects: `webhook.{provider}.{event_type}`.
pub const SUBJECTS: &str = "webhook.>";

/// DLQ subjects: this prefix + the original subject.
pub const DLQ_SUBJECT_PREFIX: &str = "dlq.";

#[derive(Debug, Error)]
pub enum TopologyError {
    #[error("cannot create or update stream {stream}: {source}")]
    Stream {
        stream: String,
        source: jetstream::context::CreateStreamError,
    },
    #[error("cannot create or update consumer {consumer} on {stream}: {source}")]
    Consumer {
        stream: String,
        consumer: String,
        source: jetstream::stream::ConsumerError,
    },
    #[error("cannot look up stream {stream}: {source}")]
    Lookup {
        stream: String,
        source: jetstream::context::GetStreamError,
    },
    #[error("cannot look up consumer {consumer} on {stream}: {source}")]
    LookupConsumer {
        stream: String,
        consumer: String,
        source: async_nats::Error,
    },
    #[error(
        "stream {0} is a work queue (hookline before the event log): run `hookline streams \
         --upgrade` once, with the workers stopped, to make it a log without losing a queued event"
    )]
    WorkQueue(String),
    #[error(
        "{what} is incompatible with hookline (HOOKLINE_STREAMS=check leaves it to its operator; \
         `hookline streams` would set it right): {}",
        .problems.join("; ")
    )]
    Incompatible { what: String, problems: Vec<String> },
}

impl TopologyError {
    /// Whether waiting could fix it: a stream that is not there yet may be created by its
    /// operator; one with incompatible settings will not fix itself.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Incompatible { .. } | Self::WorkQueue(_))
    }
}

/// Who owns the streams and the consumer.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ownership {
    /// Create them, or update them to this binary's flags, at every start (the local run).
    #[default]
    Manage,
    /// Only check that they exist with compatible settings; an operator (or `hookline streams`)
    /// creates and changes them, and this binary needs no stream-admin permission.
    Check,
}

/// Who owns the streams and the consumer, as a flag of the long-running binaries.
#[derive(clap::Args, Debug, Clone, Copy, Default)]
pub struct OwnershipArgs {
    /// `manage`: create the streams and the consumer, or update them to this binary's flags, at
    /// every start. `check`: only check that they exist with compatible settings (an operator
    /// owns them; `hookline streams` creates and updates them), needing no stream-admin
    /// permission.
    #[arg(
        long = "streams",
        env = "HOOKLINE_STREAMS",
        value_enum,
        default_value = "manage"
    )]
    pub ownership: Ownership,
}

/// How one setting of an existing stream or consumer compares with what hookline expects.
struct Comparison {
    what: String,
    problems: Vec<String>,
    notes: Vec<String>,
}

impl Comparison {
    fn new(what: String) -> Self {
        Self {
            what,
            problems: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// A setting hookline's promise depends on: different is incompatible.
    fn require<T: PartialEq + std::fmt::Debug>(&mut self, name: &str, have: T, want: T) {
        if have != want {
            self.problems
                .push(format!("{name} is {have:?}, hookline needs {want:?}"));
        }
    }

    /// A limit its operator may choose: different is reported, and kept.
    fn note<T: PartialEq + std::fmt::Debug>(&mut self, name: &str, have: T, flags: T) {
        if have != flags {
            self.notes.push(format!(
                "{name} is {have:?} (this binary's flags say {flags:?})"
            ));
        }
    }

    fn finish(self) -> Result<(), TopologyError> {
        if !self.notes.is_empty() {
            tracing::info!(
                differences = %self.notes.join("; "),
                "{} differs from this binary's flags; kept as its operator set it.",
                self.what
            );
        }
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(TopologyError::Incompatible {
                what: self.what,
                problems: self.problems,
            })
        }
    }
}

/// Checks an existing stream against `want`: what makes it hookline's kind of stream must match
/// (subjects, retention, storage, discard); limits may differ.
fn compare_stream(have: &stream::Config, want: &stream::Config) -> Result<(), TopologyError> {
    if have.retention == stream::RetentionPolicy::WorkQueue
        && want.retention == stream::RetentionPolicy::Limits
    {
        return Err(TopologyError::WorkQueue(want.name.clone()));
    }
    let mut c = Comparison::new(format!("stream {}", want.name));
    for subject in &want.subjects {
        if !have.subjects.contains(subject) {
            c.problems.push(format!(
                "subjects are {:?}, hookline needs {subject:?} among them",
                have.subjects
            ));
        }
    }
    c.require("retention", have.retention, want.retention);
    c.require("storage", have.storage, want.storage);
    c.require("discard", have.discard, want.discard);
    c.note("max_age", have.max_age, want.max_age);
    c.note("max_bytes", have.max_bytes, want.max_bytes);
    c.note(
        "duplicate_window",
        have.duplicate_window,
        want.duplicate_window,
    );
    c.note("num_replicas", have.num_replicas, want.num_replicas);
    c.finish()
}

/// Checks that stream `want.name` exists and is compatible; never changes it.
pub async fn check_stream(
    js: &jetstream::Context,
    want: &stream::Config,
) -> Result<stream::Info, TopologyError> {
    let s = js
        .get_stream(&want.name)
        .await
        .map_err(|source| TopologyError::Lookup {
            stream: want.name.clone(),
            source,
        })?;
    let info = s.cached_info();
    compare_stream(&info.config, want)?;
    Ok(info.clone())
}

/// The log's default retention: three days, so the log still holds everything since the
/// previous day's backup when a restore or a lagging failover is found a day or more late.
pub const DEFAULT_RETENTION_SECS: u64 = 3 * 24 * 60 * 60;

/// The stream's settings (defaults: a 3-day log, 10 GiB, a 60 s dedup window).
#[derive(clap::Args, Debug, Clone)]
pub struct StreamArgs {
    /// JetStream stream holding accepted webhooks (the event log).
    #[arg(long, env = "HOOKLINE_STREAM", default_value = "WEBHOOKS")]
    pub stream: String,
    /// Stream replicas (3 on a JetStream cluster).
    #[arg(long, env = "HOOKLINE_STREAM_REPLICAS", default_value_t = 1)]
    pub stream_replicas: usize,
    /// How long the log keeps every accepted event, stored by a worker or not, in seconds: the
    /// window `hookline log replay` can recover from after a database loses committed rows. An
    /// event no worker has stored by then is dropped too (alert: WebhookUnprocessedNearExpiry).
    #[arg(long, env = "HOOKLINE_STREAM_MAX_AGE_SECS", default_value_t = DEFAULT_RETENTION_SECS)]
    pub stream_max_age_secs: u64,
    /// Log size limit in bytes: size it as bytes per event x events per second x the retention
    /// window. When full, publishes are refused (ingest answers 503), nothing is dropped.
    #[arg(long, env = "HOOKLINE_STREAM_MAX_BYTES", default_value_t = 10 * 1024 * 1024 * 1024)]
    pub stream_max_bytes: i64,
    /// JetStream duplicate window for `Nats-Msg-Id`, in milliseconds.
    #[arg(
        long,
        env = "HOOKLINE_STREAM_DUPLICATE_WINDOW_MS",
        default_value_t = 60_000
    )]
    pub stream_duplicate_window_ms: u64,
}

impl StreamArgs {
    pub fn config(&self) -> stream::Config {
        stream::Config {
            name: self.stream.clone(),
            subjects: vec![SUBJECTS.to_owned()],
            // Limits: a message stays for max_age whether or not the workers' consumer has acked
            // it, so a database that loses committed rows can be refilled from the log. (A
            // work-queue stream forgets an event at its ack; see `upgrade.rs`.)
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            // A full stream refuses new events (ingest answers 503 and the provider retries)
            // instead of silently discarding the oldest unprocessed ones.
            discard: stream::DiscardPolicy::New,
            max_age: Duration::from_secs(self.stream_max_age_secs),
            max_bytes: self.stream_max_bytes,
            duplicate_window: Duration::from_millis(self.stream_duplicate_window_ms),
            num_replicas: self.stream_replicas,
            ..Default::default()
        }
    }
}

/// Creates the stream, or updates it to match `args` ([`Ownership::Manage`]); or checks it
/// ([`Ownership::Check`]).
pub async fn ensure_stream(
    js: &jetstream::Context,
    args: &StreamArgs,
    ownership: Ownership,
) -> Result<stream::Info, TopologyError> {
    if ownership == Ownership::Check {
        return check_stream(js, &args.config()).await;
    }
    // The lookup's own answer holds the config: no second request.
    if let Ok(existing) = js.get_stream(&args.stream).await {
        if existing.cached_info().config.retention == stream::RetentionPolicy::WorkQueue {
            return Err(TopologyError::WorkQueue(args.stream.clone()));
        }
    }
    js.create_or_update_stream(args.config())
        .await
        .map_err(|source| TopologyError::Stream {
            stream: args.stream.clone(),
            source,
        })
}

/// The shared durable pull consumer's settings.
#[derive(clap::Args, Debug, Clone)]
pub struct ConsumerArgs {
    /// Durable consumer name shared by all worker processes.
    #[arg(long, env = "HOOKLINE_CONSUMER", default_value = "hookline-worker")]
    pub consumer: String,
    /// How long a delivered event may stay unacknowledged before JetStream redelivers it, in seconds.
    #[arg(long, env = "HOOKLINE_ACK_WAIT_SECS", default_value_t = 30)]
    pub ack_wait_secs: u64,
    /// Deliveries of one event without an ack before a worker dead-letters it on its next
    /// delivery, unprocessed (a worker crashing on it each time). Counted by the workers:
    /// JetStream itself never gives up on an event (the consumer's max_deliver is unlimited).
    #[arg(long, env = "HOOKLINE_MAX_DELIVER", default_value_t = 4)]
    pub max_deliver: i64,
    /// Unacknowledged events in flight across all workers.
    #[arg(long, env = "HOOKLINE_MAX_ACK_PENDING", default_value_t = 20_000)]
    pub max_ack_pending: i64,
}

impl ConsumerArgs {
    pub fn config(&self) -> consumer::pull::Config {
        consumer::pull::Config {
            durable_name: Some(self.consumer.clone()),
            description: Some("hookline workers: webhook events into PostgreSQL".to_owned()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(self.ack_wait_secs),
            // Unlimited: the workers count deliveries and dead-letter an event past
            // HOOKLINE_MAX_DELIVER themselves. An event JetStream gave up on would sit in the log
            // unprocessed, acked by nobody and indistinguishable from a stored one.
            max_deliver: -1,
            max_ack_pending: self.max_ack_pending,
            filter_subject: SUBJECTS.to_owned(),
            ..Default::default()
        }
    }
}

/// Creates the durable consumer on `stream`, or updates it to match `args`
/// ([`Ownership::Manage`]); or looks it up and checks it ([`Ownership::Check`]): a durable pull
/// consumer with explicit acks over every webhook subject. Its ack wait and delivery limit may
/// differ from the flags; the worker uses the consumer's own.
pub async fn ensure_consumer(
    js: &jetstream::Context,
    stream: &str,
    args: &ConsumerArgs,
    ownership: Ownership,
) -> Result<consumer::PullConsumer, TopologyError> {
    let s = js
        .get_stream(stream)
        .await
        .map_err(|source| TopologyError::Lookup {
            stream: stream.to_owned(),
            source,
        })?;
    // The workers' delivery counting and the log's replay both need the log: a work queue of an
    // earlier release is upgraded first, never consumed as if it were one.
    if s.cached_info().config.retention == stream::RetentionPolicy::WorkQueue {
        return Err(TopologyError::WorkQueue(stream.to_owned()));
    }
    if ownership == Ownership::Manage {
        return s
            .create_consumer(args.config())
            .await
            .map_err(|source| TopologyError::Consumer {
                stream: stream.to_owned(),
                consumer: args.consumer.clone(),
                source,
            });
    }
    let consumer: consumer::PullConsumer =
        s.get_consumer(&args.consumer)
            .await
            .map_err(|source| TopologyError::LookupConsumer {
                stream: stream.to_owned(),
                consumer: args.consumer.clone(),
                source,
            })?;
    let have = consumer.cached_info().config.clone();
    let want = args.config();
    let mut c = Comparison::new(format!("consumer {} on {stream}", args.consumer));
    c.require("ack_policy", have.ack_policy, want.ack_policy);
    if have.max_deliver > 0 {
        c.problems.push(format!(
            "max_deliver is {}, hookline needs it unlimited (-1): the workers count deliveries \
             themselves (HOOKLINE_MAX_DELIVER)",
            have.max_deliver
        ));
    }
    if !(have.filter_subject == SUBJECTS
        || have.filter_subject.is_empty() && have.filter_subjects.is_empty())
    {
        c.problems.push(format!(
            "filter is {:?} {:?}, hookline needs {SUBJECTS:?} (every webhook)",
            have.filter_subject, have.filter_subjects
        ));
    }
    c.note("ack_wait", have.ack_wait, want.ack_wait);
    c.note(
        "max_ack_pending",
        have.max_ack_pending,
        want.max_ack_pending,
    );
    c.finish()?;
    Ok(consumer)
}

/// The dead-letter stream's settings (worker and `hookline streams`).
#[derive(clap::Args, Debug, Clone)]
pub struct DlqArgs {
    /// The dead-letter stream (created if missing).
    #[arg(long, env = "HOOKLINE_DLQ_STREAM", default_value = "WEBHOOKS_DLQ")]
    pub dlq_stream: String,
    /// Oldest a dead letter may get before JetStream deletes it, in seconds. 0 (the default)
    /// keeps every dead letter until an operator replays or purges it.
    #[arg(long, env = "HOOKLINE_DLQ_MAX_AGE_SECS", default_value_t = 0)]
    pub dlq_max_age_secs: u64,
    /// Size limit of the dead-letter stream in bytes (-1: none but the account's). When full, a
    /// new dead letter is refused and its event stays in the main stream.
    #[arg(long, env = "HOOKLINE_DLQ_MAX_BYTES", default_value_t = -1,
          allow_negative_numbers = true)]
    pub dlq_max_bytes: i64,
}

impl DlqArgs {
    /// The DLQ stream: file storage, limits retention, discard new (a full DLQ refuses, it never
    /// drops what it holds).
    pub fn config(&self, replicas: usize) -> stream::Config {
        stream::Config {
            name: self.dlq_stream.clone(),
            subjects: vec![format!("{DLQ_SUBJECT_PREFIX}{SUBJECTS}")],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::New,
            max_age: Duration::from_secs(self.dlq_max_age_secs),
            max_bytes: self.dlq_max_bytes,
            duplicate_window: Duration::from_secs(120),
            num_replicas: replicas,
            ..Default::default()
        }
    }

    /// The defaults, for tests and tools.
    pub fn named(name: &str) -> Self {
        Self {
            dlq_stream: name.to_owned(),
            dlq_max_age_secs: 0,
            dlq_max_bytes: -1,
        }
    }
}

/// Creates the dead-letter stream if it is missing ([`Ownership::Manage`]); never rewrites it
/// (`hookline streams` applies changed settings, so a worker start does not undo an operator's
/// edit). With [`Ownership::Check`], checks that it exists and is compatible.
pub async fn ensure_dlq_stream(
    js: &jetstream::Context,
    args: &DlqArgs,
    replicas: usize,
    ownership: Ownership,
) -> Result<(), TopologyError> {
    create_if_missing(js, args.config(replicas), ownership).await
}

/// Creates stream `want` if it is missing, never rewriting one that exists
/// ([`Ownership::Manage`]); or checks that it exists and is compatible ([`Ownership::Check`]).
/// The dead-letter stream and the change feed are kept this way.
pub(crate) async fn create_if_missing(
    js: &jetstream::Context,
    want: stream::Config,
    ownership: Ownership,
) -> Result<(), TopologyError> {
    if ownership == Ownership::Check {
        return check_stream(js, &want).await.map(|_| ());
    }
    let stream = want.name.clone();
    js.get_or_create_stream(want)
        .await
        .map(|_| ())
        .map_err(|source| TopologyError::Stream { stream, source })
}
