//! hookline's main JetStream topology: the `WEBHOOKS` stream ingest publishes to and the durable
//! pull consumer every worker shares. Both are created or updated from config at start-up, so a
//! deployment converges to what its flags say. (The dead-letter stream is defined beside its
//! writer, in the worker's `dead_letter` module.)
//!
//! Not here: publishing (ingest) and consuming (worker).
#![forbid(unsafe_code)]

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use thiserror::Error;

/// Parses `NATS_URL`: one URL or several, comma-separated (the cluster's nodes; the client picks
/// one and fails over to the others). async-nats itself takes one URL per string.
pub fn server_addrs(urls: &str) -> Result<Vec<async_nats::ServerAddr>, String> {
    let addrs: Vec<async_nats::ServerAddr> = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            u.parse()
                .map_err(|e| format!("NATS_URL entry {u:?} is invalid: {e}"))
        })
        .collect::<Result<_, _>>()?;
    if addrs.is_empty() {
        return Err("NATS_URL is empty".to_owned());
    }
    Ok(addrs)
}

/// Stream subjects: `webhook.{provider}.{event_type}`.
pub const SUBJECTS: &str = "webhook.>";

#[cfg(test)]
mod tests {
    #[test]
    fn nats_url_takes_a_comma_separated_list() {
        let a = super::server_addrs("nats://127.0.0.1:4222, nats://127.0.0.1:4223,").unwrap();
        assert_eq!(a.len(), 2);
        assert!(super::server_addrs(" , ").unwrap_err().contains("empty"));
        assert!(super::server_addrs("nats://a:1,http://[::1").is_err());
    }
}

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
