//! The change feed's stream, `WEBHOOK_CHANGES`: where the workers relay each change of delivery
//! state (docs/feed.md). Created like the dead-letter stream: by a managing worker if missing,
//! changed only by `hookline streams`.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::topology::{create_if_missing, Ownership, TopologyError};

/// The feed's default retention: 7 days.
const DEFAULT_MAX_AGE_SECS: u64 = 7 * 24 * 60 * 60;

/// The feed's default size limit: 10 GiB.
const DEFAULT_MAX_BYTES: i64 = 10 * 1024 * 1024 * 1024;

/// Change feed subjects: `hookline.changes.{batch}.{provider}.{what}` — `{batch}` the batch's id
/// (`none` for a recipient without one), `{what}` the new status, `opened` or `clicked`; a batch
/// becoming complete is `hookline.changes.{batch}._batch.completed`. docs/feed.md has the payload.
pub const FEED_SUBJECTS: &str = "hookline.changes.>";

/// The change feed stream's settings (worker and `hookline streams`).
#[derive(clap::Args, Debug, Clone)]
pub struct FeedArgs {
    /// The change feed stream: every change of a recipient's delivery state and every batch
    /// completion, relayed by the workers from the database's outbox.
    #[arg(long, env = "HOOKLINE_FEED_STREAM", default_value = "WEBHOOK_CHANGES")]
    pub feed_stream: String,
    /// How long the feed keeps a change, read or not, in seconds (default 7 days): how far back a
    /// new consumer can start, and how long one may be away.
    #[arg(long, env = "HOOKLINE_FEED_MAX_AGE_SECS", default_value_t = DEFAULT_MAX_AGE_SECS)]
    pub feed_max_age_secs: u64,
    /// Size limit of the feed in bytes (about 650 bytes per change). When full, the relay waits
    /// and the outbox grows (alert: WebhookChangeFeedStalled); no change is dropped.
    #[arg(long, env = "HOOKLINE_FEED_MAX_BYTES", default_value_t = DEFAULT_MAX_BYTES)]
    pub feed_max_bytes: i64,
}

impl FeedArgs {
    /// The feed: file storage, limits retention (each application its own durable consumer),
    /// discard new (a full feed refuses; the outbox keeps the change meanwhile).
    pub fn config(&self, replicas: usize) -> stream::Config {
        stream::Config {
            name: self.feed_stream.clone(),
            description: Some("hookline change feed: delivery state changes".to_owned()),
            subjects: vec![FEED_SUBJECTS.to_owned()],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::New,
            max_age: Duration::from_secs(self.feed_max_age_secs),
            max_bytes: self.feed_max_bytes,
            // Covers a relay retrying a publish whose PubAck it never saw.
            duplicate_window: Duration::from_secs(120),
            num_replicas: replicas,
            ..Default::default()
        }
    }

    /// The defaults, for tests and tools.
    pub fn named(name: &str) -> Self {
        Self {
            feed_stream: name.to_owned(),
            feed_max_age_secs: DEFAULT_MAX_AGE_SECS,
            feed_max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// Creates the feed stream if it is missing ([`Ownership::Manage`]; `hookline streams` applies
/// changed settings), or checks that it exists and is compatible ([`Ownership::Check`]).
pub async fn ensure_feed_stream(
    js: &jetstream::Context,
    args: &FeedArgs,
    replicas: usize,
    ownership: Ownership,
) -> Result<(), TopologyError> {
    create_if_missing(js, args.config(replicas), ownership).await
}
