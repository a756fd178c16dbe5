//! The change feed's relay: copies the database's outbox (`change_outbox`, written by triggers in
//! the transaction that changes a recipient or completes a batch) to the `WEBHOOK_CHANGES` stream,
//! oldest first, and deletes what JetStream acknowledged.
//!
//! Every worker runs it; one at a time relays (a transaction-scoped advisory lock), so a
//! message's changes reach the feed in the order they were committed (its changes are committed
//! one after another under its message lock, and get ever larger outbox ids). A relay that dies
//! between its publish and its delete leaves the rows; the next one publishes them again with the
//! same `Nats-Msg-Id` (the change id), which JetStream drops within the feed's dedup window, and a
//! consumer can drop by `change_id` beyond it. With NATS or the feed unavailable the rows wait and
//! the outbox grows (`webhook_change_outbox_rows`); nothing is lost.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::HeaderMap;
use sqlx::PgPool;
use tracing::{info, warn};

use crate::commit::Committer;
use crate::metrics::WorkerMetrics;

/// The advisory lock one relay holds for the duration of its transaction.
const RELAY_LOCK: i64 = 0x686f_6f6b_6665_6564; // "hookfeed"

/// Most changes relayed per transaction.
const ROWS_PER_ROUND: i64 = 1000;

/// After a commit wakes the relay, how long it waits for the next ones to share its round.
const LINGER: Duration = Duration::from_millis(10);

/// How often the outbox gauges are read (not at every round).
const GAUGES_EVERY: Duration = Duration::from_secs(1);

/// Longest wait between attempts while NATS or the database fails.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How one round went.
#[derive(Debug, PartialEq, Eq)]
pub enum Round {
    /// Another worker holds the relay.
    NotLeader,
    /// This many changes relayed (fewer than a round's worth: the outbox is drained).
    Relayed(usize),
}

/// Why a round relayed nothing.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("publishing to the change feed: {0}")]
    Publish(String),
}

/// The relay of one worker.
pub struct Relay {
    /// Its own pool (one connection): never one of the writers'.
    pub pool: PgPool,
    pub js: jetstream::Context,
    /// How often to look for changes other processes committed.
    pub poll: Duration,
    /// Whose commits wake it.
    pub committer: Arc<Committer>,
    pub metrics: Arc<WorkerMetrics>,
    #[cfg(feature = "fault-injection")]
    pub crash: Option<hookline_store::fault::CrashPlan>,
}

impl Relay {
    /// Relays until the task is dropped: after each commit of this worker that changed
    /// recipients, and every `poll` (another worker's commits, a registration's).
    pub async fn run(self) {
        let mut backoff = self.poll;
        let mut failing = false;
        let mut gauges_at: Option<std::time::Instant> = None;
        loop {
            if gauges_at.is_none_or(|t| t.elapsed() >= GAUGES_EVERY) {
                refresh_gauges(&self.pool, &self.metrics).await;
                gauges_at = Some(std::time::Instant::now());
            }
            match self.round().await {
                Ok(Round::Relayed(n)) if n as i64 == ROWS_PER_ROUND => {
                    backoff = self.poll;
                    continue;
                }
                Ok(_) => {
                    if failing {
                        info!("The change feed relay works again.");
                        failing = false;
                    }
                    backoff = self.poll;
                    tokio::select! {
                        () = tokio::time::sleep(self.poll) => {}
                        () = self.committer.changed().notified() => {
                            // The commits right behind it join the same round.
                            tokio::time::sleep(LINGER).await;
                        }
                    }
                }
                Err(e) => {
                    self.metrics.feed_relay_failures.inc();
                    if !failing {
                        warn!(
                            error = %e,
                            "The change feed relay failed; the changes wait in the outbox and it \
                             retries."
                        );
                        failing = true;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// One relay transaction: take the lock, publish the oldest rows in order, wait for every
    /// PubAck, delete them, commit.
    pub async fn round(&self) -> Result<Round, RelayError> {
        let mut tx = self.pool.begin().await?;
        // The delete need not wait for its fsync: lost in a crash, its rows are relayed again
        // with the same ids (dropped by JetStream's dedup window, or by change_id after it),
        // and the workers' commits do not queue behind one more flush per round.
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *tx)
            .await?;
        let leader: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(RELAY_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !leader {
            return Ok(Round::NotLeader);
        }
        let rows: Vec<(i64, String, String, String, f64)> = sqlx::query_as(
            "SELECT id, change_id, subject, payload::text, \
                    extract(epoch FROM stored_at)::float8 \
             FROM change_outbox ORDER BY id LIMIT $1",
        )
        .bind(ROWS_PER_ROUND)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(Round::Relayed(0));
        }
        // All sent before any PubAck is awaited (one connection keeps them in order), then every
        // PubAck: one round trip's wait for the lot.
        let mut acks = Vec::with_capacity(rows.len());
        for (_, change_id, subject, payload, _) in &rows {
            let mut headers = HeaderMap::new();
            headers.insert(hookline_jetstream::headers::MSG_ID, change_id.as_str());
            let ack = self
                .js
                .publish_with_headers(subject.clone(), headers, payload.clone().into())
                .await
                .map_err(|e| RelayError::Publish(e.to_string()))?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await.map_err(|e| RelayError::Publish(e.to_string()))?;
        }
        #[cfg(feature = "fault-injection")]
        if let Some(plan) = &self.crash {
            plan.feed_published();
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
        sqlx::query("DELETE FROM change_outbox WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let now = unix_now();
        for (_, _, subject, payload, stored_at) in &rows {
            let kind = kind_of(subject);
            self.metrics
                .changes_published
                .with_label_values(&[kind])
                .inc();
            self.metrics.feed_lag.observe((now - stored_at).max(0.0));
            if kind == "batch_completed" {
                if let Some(secs) = time_to_final(payload) {
                    self.metrics.batch_time_to_final.observe(secs);
                }
            }
        }
        Ok(Round::Relayed(rows.len()))
    }
}

/// What the outbox holds: rows waiting (from the id range: no count of a large table) and the
/// age of the oldest.
async fn refresh_gauges(pool: &PgPool, metrics: &WorkerMetrics) {
    let read: Result<Option<(i64, f64)>, _> = sqlx::query_as(
        "SELECT (SELECT max(id) FROM change_outbox) - o.id + 1, \
                extract(epoch FROM now() - o.stored_at)::float8 \
         FROM (SELECT id, stored_at FROM change_outbox ORDER BY id LIMIT 1) AS o",
    )
    .fetch_optional(pool)
    .await;
    if let Ok(read) = read {
        let (rows, oldest) = read.unwrap_or((0, 0.0));
        metrics.outbox_rows.set(rows);
        metrics.outbox_oldest.set(oldest.max(0.0));
    }
}

/// The kind of change a feed subject carries (its last token).
pub fn kind_of(subject: &str) -> &'static str {
    match subject.rsplit('.').next() {
        Some("completed") => "batch_completed",
        Some("opened") => "opened",
        Some("clicked") => "clicked",
        _ => "status",
    }
}

/// First send to last final status, from a batch change's payload.
fn time_to_final(payload: &str) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_str(payload).ok()?;
    let at = |name: &str| {
        v["batch"][name]
            .as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
    };
    let secs = (at("last_final_at")? - at("first_sent_at")?).num_milliseconds() as f64 / 1000.0;
    Some(secs.max(0.0))
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_come_from_the_subjects_last_token() {
        assert_eq!(kind_of("hookline.changes.none.telnyx.delivered"), "status");
        assert_eq!(kind_of("hookline.changes.b.resend.opened"), "opened");
        assert_eq!(kind_of("hookline.changes.b.resend.clicked"), "clicked");
        assert_eq!(
            kind_of("hookline.changes.b._batch.completed"),
            "batch_completed"
        );
    }

    #[test]
    fn time_to_final_reads_the_batch_times() {
        let p = r#"{"batch":{"first_sent_at":"2026-12-07T10:00:00.000000Z",
                             "last_final_at":"2026-12-07T10:00:30.500000Z"}}"#;
        assert_eq!(time_to_final(p), Some(30.5));
        assert_eq!(time_to_final(r#"{"batch":{"first_sent_at":null}}"#), None);
    }
}
