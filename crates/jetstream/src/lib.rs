//! hookline's JetStream side, in one place: the topology (the `WEBHOOKS` stream ingest publishes
//! to, the durable pull consumer every worker shares, the `WEBHOOKS_DLQ` dead-letter stream and
//! the `WEBHOOK_CHANGES` change feed),
//! the name of every header hookline puts on a message, how a binary connects and waits for the
//! topology, and the one way an event is published to the main stream (ingest, replay and
//! reconcile all go through [`publish_event`]).
//!
//! Not here: consuming (the worker) and what a dead letter carries (the worker's `dead_letter`).
#![forbid(unsafe_code)]

pub mod connect;
pub mod feed;
pub mod headers;
pub mod publish;
pub mod tokens;
pub mod topology;
pub mod upgrade;

pub use connect::{connect, server_addrs, ConnectError, NatsArgs, Reconnect};
pub use feed::{ensure_feed_stream, FeedArgs, FEED_SUBJECTS};
pub use publish::{publish_event, Outgoing, PublishFailure, Publisher, Stored};
pub use tokens::{ensure_tokens, TOKENS_BUCKET};
pub use topology::{
    check_stream, ensure_consumer, ensure_dlq_stream, ensure_stream, ConsumerArgs, DlqArgs,
    Ownership, OwnershipArgs, StreamArgs, TopologyError, DLQ_SUBJECT_PREFIX, SUBJECTS,
};
