//! The streams and the consumer, created or updated from config at start-up so a deployment
//! converges to what its flags say: `WEBHOOKS` (work queue, what ingest accepted), the durable pull
//! consumer the workers share, and `WEBHOOKS_DLQ` (limits, what could never be stored).

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
}

/// The stream's settings (defaults: 24 h, 1 GiB, a 60 s dedup window).
#[derive(clap::Args, Debug, Clone)]
pub struct StreamArgs {
    /// JetStream stream holding accepted webhooks.
    #[arg(long, env = "HOOKLINE_STREAM", default_value = "WEBHOOKS")]
    pub stream: String,
    /// Stream replicas (3 on a JetStream cluster).
    #[arg(long, env = "HOOKLINE_STREAM_REPLICAS", default_value_t = 1)]
    pub stream_replicas: usize,
    /// Oldest an unprocessed event may get before JetStream drops it, in seconds.
    #[arg(long, env = "HOOKLINE_STREAM_MAX_AGE_SECS", default_value_t = 24 * 60 * 60)]
    pub stream_max_age_secs: u64,
    /// Stream size limit; when full, publishes are refused (ingest answers 503), nothing is dropped.
    #[arg(long, env = "HOOKLINE_STREAM_MAX_BYTES", default_value_t = 1024 * 1024 * 1024)]
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
            // Work-queue: a message is removed once a worker acks it.
            retention: stream::RetentionPolicy::WorkQueue,
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

/// Creates the stream, or updates it to match `args`.
pub async fn ensure_stream(
    js: &jetstream::Context,
    args: &StreamArgs,
) -> Result<stream::Info, TopologyError> {
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
    /// Deliveries of one event before it is given up on (1 + retries).
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
            max_deliver: self.max_deliver,
            max_ack_pending: self.max_ack_pending,
            filter_subject: SUBJECTS.to_owned(),
            ..Default::default()
        }
    }
}

/// Creates the durable consumer on `stream`, or updates it to match `args`.
pub async fn ensure_consumer(
    js: &jetstream::Context,
    stream: &str,
    args: &ConsumerArgs,
) -> Result<consumer::PullConsumer, TopologyError> {
    let s = js
        .get_stream(stream)
        .await
        .map_err(|source| TopologyError::Lookup {
            stream: stream.to_owned(),
            source,
        })?;
    s.create_consumer(args.config())
        .await
        .map_err(|source| TopologyError::Consumer {
            stream: stream.to_owned(),
            consumer: args.consumer.clone(),
            source,
        })
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

/// Creates the dead-letter stream if it is missing; never rewrites it (`hookline streams` applies
/// changed settings, so a worker start does not undo an operator's edit).
pub async fn ensure_dlq_stream(
    js: &jetstream::Context,
    args: &DlqArgs,
    replicas: usize,
) -> Result<stream::Stream, TopologyError> {
    js.get_or_create_stream(args.config(replicas))
        .await
        .map_err(|source| TopologyError::Stream {
            stream: args.dlq_stream.clone(),
            source,
        })
}
