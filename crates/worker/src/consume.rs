//! The fetch loop: pull events from the shared durable consumer, cut them into batches of up to
//! `batch_size` or whatever arrived within `flush_interval` of the first, store each batch in one
//! transaction, and only then acknowledge.
//!
//! Failure model: a transient database error is retried in place with exponential backoff and
//! jitter while the events are kept alive with in-progress acks, so an outage burns no delivery
//! attempts; a permanent error is narrowed down by bisecting the batch, so only the poison event
//! is dead-lettered and its batch-mates commit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer, AckKind};
use futures::StreamExt;
use hookline_core::Providers;
use rand::Rng;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::dead_letter::{self, Failure};
use crate::decode::{decode, Decoded};
use crate::writer::{BatchWriter, EventRecord, WriteError};

#[derive(Debug, Clone)]
pub struct BatchSettings {
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub retry_base: Duration,
    pub retry_max: Duration,
}

pub struct Consumer {
    pub js: jetstream::Context,
    pub consumer: PullConsumer,
    pub writer: BatchWriter,
    pub providers: Providers,
    pub settings: BatchSettings,
    pub stats: Arc<WorkerStats>,
}

/// Running totals of what this worker did (exported as metrics).
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub batches: AtomicU64,
    pub events_acked: AtomicU64,
    pub events_stored: AtomicU64,
    pub duplicates: AtomicU64,
    pub skipped: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub db_retries: AtomicU64,
}

fn bump(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Ordering::Relaxed);
}

/// The shutdown signal was seen while the database was still failing.
struct Interrupted;

impl Consumer {
    /// Runs until `shutdown` turns true, then finishes the batch in hand and returns.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut messages = self
            .consumer
            .stream()
            .max_messages_per_batch(self.settings.batch_size * 2)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await?;
        info!(batch_size = self.settings.batch_size, "Worker consuming.");
        while !*shutdown.borrow() {
            let first = tokio::select! {
                _ = shutdown.changed() => break,
                next = messages.next() => next,
            };
            let first = match first {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    warn!(stage = "fetch", error = %e, "Fetching from JetStream failed; retrying.");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
                None => anyhow::bail!("the JetStream message stream ended"),
            };
            let mut batch = vec![first];
            let deadline = Instant::now() + self.settings.flush_interval;
            while batch.len() < self.settings.batch_size {
                tokio::select! {
                    _ = shutdown.changed() => break,
                    next = tokio::time::timeout_at(deadline, messages.next()) => match next {
                        Ok(Some(Ok(m))) => batch.push(m),
                        Ok(Some(Err(e))) => {
                            warn!(stage = "fetch", error = %e, "Fetching from JetStream failed.");
                            break;
                        }
                        Ok(None) | Err(_) => break,
                    },
                }
            }
            self.process(batch, &shutdown).await;
        }
        info!("Worker stopped consuming.");
        Ok(())
    }

    async fn process(&self, batch: Vec<jetstream::Message>, shutdown: &watch::Receiver<bool>) {
        let started = Instant::now();
        let mut records = Vec::with_capacity(batch.len());
        let mut settled = vec![false; batch.len()];
        for (i, msg) in batch.iter().enumerate() {
            match decode(
                &self.providers,
                &msg.subject,
                msg.headers.as_ref(),
                &msg.payload,
            ) {
                Ok(Decoded::Event { event, payload }) => records.push((i, event, payload)),
                Ok(Decoded::Skip) => {
                    bump(&self.stats.skipped, 1);
                    debug!(stage = "decode", subject = %msg.subject, "Event carries no delivery status; skipped.");
                }
                Err(e) => {
                    let failure = Failure {
                        reason: e.reason(),
                        detail: e.to_string(),
                        stage: "decode",
                        first_failure: None,
                    };
                    self.dead_letter(msg, &failure).await;
                    settled[i] = true;
                }
            }
        }
        let recs: Vec<(usize, EventRecord<'_>)> = records
            .iter()
            .map(|(i, event, payload)| (*i, EventRecord { event, payload }))
            .collect();
        match self.store(&recs, &batch, shutdown).await {
            Ok(poison) => {
                for (i, err) in poison {
                    let failure = Failure {
                        reason: "db_rejected",
                        detail: err.to_string(),
                        stage: "db_write",
                        first_failure: None,
                    };
                    self.dead_letter(&batch[i], &failure).await;
                    settled[i] = true;
                }
                for (msg, _) in batch.iter().zip(&settled).filter(|(_, s)| !**s) {
                    match msg.ack().await {
                        Ok(()) => bump(&self.stats.events_acked, 1),
                        // The commit stands; a redelivery will be absorbed as a duplicate.
                        Err(e) => warn!(stage = "ack", error = %e, "Ack failed after commit."),
                    }
                }
                bump(&self.stats.batches, 1);
                debug!(
                    stage = "ack",
                    batch_size = batch.len(),
                    duration_ms = started.elapsed().as_millis() as u64,
                    "Batch done."
                );
            }
            Err(Interrupted) => {
                // Shutting down while the database is unavailable: hand the events back now
                // rather than after ack_wait.
                for (msg, _) in batch.iter().zip(&settled).filter(|(_, s)| !**s) {
                    let _ = msg.ack_with(AckKind::Nak(None)).await;
                }
                warn!(
                    batch_size = batch.len(),
                    "Shut down with the database unavailable; batch returned to the stream."
                );
            }
        }
    }

    /// Stores `recs`, isolating permanent failures by bisection. Returns the indexes (into the
    /// batch) of the events the database rejects on their own.
    async fn store(
        &self,
        recs: &[(usize, EventRecord<'_>)],
        batch: &[jetstream::Message],
        shutdown: &watch::Receiver<bool>,
    ) -> Result<Vec<(usize, WriteError)>, Interrupted> {
        let only: Vec<EventRecord<'_>> = recs
            .iter()
            .map(|(_, r)| EventRecord {
                event: r.event,
                payload: r.payload,
            })
            .collect();
        match self.write_retrying(&only, batch, shutdown).await? {
            Ok(()) => Ok(Vec::new()),
            Err(e) if recs.len() == 1 => {
                error!(stage = "db_write", event_id = %recs[0].1.event.event_id, provider = recs[0].1.event.provider, error = %e, "Event rejected by the database.");
                Ok(vec![(recs[0].0, e)])
            }
            Err(e) => {
                warn!(stage = "db_write", batch_size = recs.len(), error = %e, "Batch rejected; isolating the failing events.");
                let (a, b) = recs.split_at(recs.len() / 2);
                let mut poison = Box::pin(self.store(a, batch, shutdown)).await?;
                poison.extend(Box::pin(self.store(b, batch, shutdown)).await?);
                Ok(poison)
            }
        }
    }

    /// One write, retried while the failure is transient. The outer `Err` means shutdown; the
    /// inner `Err` is a permanent failure.
    async fn write_retrying(
        &self,
        recs: &[EventRecord<'_>],
        batch: &[jetstream::Message],
        shutdown: &watch::Receiver<bool>,
    ) -> Result<Result<(), WriteError>, Interrupted> {
        let mut attempt: u32 = 0;
        loop {
            let started = Instant::now();
            match self.writer.write(recs).await {
                Ok(outcome) => {
                    bump(&self.stats.events_stored, outcome.inserted);
                    bump(&self.stats.duplicates, outcome.duplicates);
                    debug!(
                        stage = "db_write",
                        events = recs.len(),
                        inserted = outcome.inserted,
                        duplicates = outcome.duplicates,
                        recipients_changed = outcome.recipients_changed,
                        duration_ms = started.elapsed().as_millis() as u64,
                        "Batch committed."
                    );
                    return Ok(Ok(()));
                }
                Err(e) if e.retryable => {
                    attempt += 1;
                    bump(&self.stats.db_retries, 1);
                    let delay = backoff(&self.settings, attempt);
                    warn!(stage = "db_write", attempt, retry_in_ms = delay.as_millis() as u64, error = %e, "Database write failed; will retry.");
                    let mut shutdown = shutdown.clone();
                    if *shutdown.borrow() {
                        return Err(Interrupted);
                    }
                    // Keep the events ours while we wait (resets their ack_wait).
                    for m in batch {
                        let _ = m.ack_with(AckKind::Progress).await;
                    }
                    tokio::select! {
                        _ = shutdown.changed() => return Err(Interrupted),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                Err(e) => return Ok(Err(e)),
            }
        }
    }

    async fn dead_letter(&self, msg: &jetstream::Message, failure: &Failure<'_>) {
        match dead_letter::publish(&self.js, msg, failure).await {
            Ok(()) => {
                bump(&self.stats.dead_lettered, 1);
                warn!(stage = failure.stage, reason = failure.reason, subject = %msg.subject, "Event dead-lettered.");
                if let Err(e) = msg.ack_with(AckKind::Term).await {
                    warn!(error = %e, "Terminating a dead-lettered event failed; it may be dead-lettered twice.");
                }
            }
            Err(e) => {
                // Never drop an event: leave it for redelivery.
                error!(stage = "dead_letter", error = %e, "Could not dead-letter an event; it will be redelivered.");
                let _ = msg
                    .ack_with(AckKind::Nak(Some(self.settings.retry_max)))
                    .await;
            }
        }
    }
}

/// `base * 2^(attempt-1)`, capped at `max`, with full jitter down to half.
pub fn backoff(s: &BatchSettings, attempt: u32) -> Duration {
    let exp = s
        .retry_base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let capped = exp.min(s.retry_max);
    let jitter = rand::rng().random_range(0.5..=1.0);
    capped.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let s = BatchSettings {
            batch_size: 1,
            flush_interval: Duration::ZERO,
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(2),
        };
        let b1 = backoff(&s, 1);
        assert!(b1 >= Duration::from_millis(50) && b1 <= Duration::from_millis(100));
        let b3 = backoff(&s, 3);
        assert!(b3 >= Duration::from_millis(200) && b3 <= Duration::from_millis(400));
        let b30 = backoff(&s, 30);
        assert!(b30 >= Duration::from_secs(1) && b30 <= Duration::from_secs(2));
    }
}
