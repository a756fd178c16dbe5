//! The fetch loop: pull up to `batch_size` events from the shared durable consumer (one pull
//! request, waiting at most `flush_interval`), decode them, store them (see `commit.rs`), and only
//! then acknowledge.
//!
//! One pull request per batch, not a prefetching stream. Up to `writers` batches are stored at
//! once (each its own transaction); the next pull starts only when a writer is free and the
//! database is healthy. While batches are being retried during a database outage no other event
//! is out on delivery, so no delivery attempt is burnt and nothing times out into the dead-letter
//! stream because of the outage.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer, AckKind};
use futures::StreamExt;
use hookline_core::Providers;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use hookline_store::EventRecord;

use crate::commit::{Committer, Interrupted, RetrySettings};
use crate::dead_letter::{self, Failure, Reason};
use crate::decode::{decode, Decoded};
use crate::metrics::WorkerMetrics;

/// Whether the worker should keep fetching, or finish what it holds before `deadline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Running,
    Draining { deadline: Instant },
}

#[derive(Debug, Clone)]
pub struct BatchSettings {
    pub batch_size: usize,
    /// Batches stored concurrently (see `HOOKLINE_WRITERS`).
    pub writers: usize,
    pub flush_interval: Duration,
    pub retry: RetrySettings,
    /// Deliveries without an ack after which an event is dead-lettered unprocessed on its next
    /// delivery (`HOOKLINE_MAX_DELIVER`; JetStream's own limit is off, see `topology.rs`).
    pub max_deliver: i64,
}

pub struct Consumer {
    pub js: jetstream::Context,
    pub consumer: PullConsumer,
    pub committer: Arc<Committer>,
    pub providers: Providers,
    pub settings: BatchSettings,
    pub metrics: Arc<WorkerMetrics>,
    /// Events fetched and not yet settled: what a shutdown that cannot reach NATS leaves behind.
    pub(crate) in_hand: AtomicUsize,
    /// Events handed back (nak) at the shutdown deadline: sent only if NATS is there to take them.
    pub(crate) handed_back: AtomicUsize,
}

impl Consumer {
    /// Fetches and stores batches until the phase turns to draining; the batch in hand is then
    /// finished (or handed back at the deadline).
    pub async fn run(&self, mut phase: watch::Receiver<Phase>) -> anyhow::Result<()> {
        info!(
            batch_size = self.settings.batch_size,
            flush_interval_ms = self.settings.flush_interval.as_millis() as u64,
            "Worker consuming."
        );
        let mut fetch_failures = 0u32;
        let writers_phase = phase.clone();
        let mut writing = futures::stream::FuturesUnordered::new();
        while *phase.borrow() == Phase::Running {
            // A free writer, and a healthy database (else the batches in hand finish first).
            while writing.len() >= self.settings.writers.max(1)
                || (!writing.is_empty() && self.committer.breaker_failures() > 0)
            {
                writing.next().await;
            }
            // Not raced against shutdown: a cancelled pull request would strand what it delivered
            // until ack_wait. It ends within `flush_interval`, and its batch is stored and acked.
            // Batches in hand keep being written meanwhile.
            let fetch_started = Instant::now();
            let fetch = self.fetch();
            tokio::pin!(fetch);
            let fetched = loop {
                tokio::select! {
                    biased;
                    fetched = &mut fetch => break fetched,
                    Some(()) = writing.next(), if !writing.is_empty() => {}
                }
            };
            if matches!(&fetched, Ok(b) if !b.is_empty()) {
                self.metrics
                    .stage_duration
                    .with_label_values(&["fetch"])
                    .observe(fetch_started.elapsed().as_secs_f64());
            }
            match fetched {
                Ok(batch) if batch.is_empty() => {}
                Ok(batch) => {
                    fetch_failures = 0;
                    writing.push(self.process(batch, &writers_phase));
                }
                Err(e) => {
                    fetch_failures += 1;
                    let delay = crate::commit::backoff(&self.settings.retry, fetch_failures);
                    warn!(stage = "fetch", error = %e, retry_in_ms = delay.as_millis() as u64, "Fetching from JetStream failed.");
                    tokio::select! {
                        _ = phase.changed() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        // Draining: finish every batch in hand (each bounded by the shutdown deadline).
        while writing.next().await.is_some() {}
        info!("Worker stopped consuming.");
        Ok(())
    }

    /// One pull request: up to `batch_size` events, waiting at most `flush_interval`.
    async fn fetch(&self) -> Result<Vec<jetstream::Message>, async_nats::Error> {
        let mut messages = self
            .consumer
            .batch()
            .max_messages(self.settings.batch_size)
            .expires(self.settings.flush_interval.max(Duration::from_millis(10)))
            .messages()
            .await?;
        let mut batch = Vec::with_capacity(self.settings.batch_size);
        while let Some(m) = messages.next().await {
            batch.push(m?);
        }
        Ok(batch)
    }

    /// Settles a batch (stored and acked, or dead-lettered), keeping every event of it alive with
    /// in-progress acks at a third of the ack wait for as long as that takes: however long the
    /// database is out, no event is redelivered elsewhere and no delivery attempt is spent.
    async fn process(&self, batch: Vec<jetstream::Message>, phase: &watch::Receiver<Phase>) {
        let held = batch.len();
        self.in_hand.fetch_add(held, Ordering::Relaxed);
        let every =
            (self.consumer.cached_info().config.ack_wait / 3).max(Duration::from_millis(50));
        let keepalive = async {
            let mut tick = tokio::time::interval_at(Instant::now() + every, every);
            loop {
                tick.tick().await;
                for m in &batch {
                    let _ = m.ack_with(AckKind::Progress).await;
                }
            }
        };
        tokio::select! {
            () = self.settle(&batch, phase) => {}
            () = keepalive => unreachable!("the keepalive never ends"),
        }
        self.in_hand.fetch_sub(held, Ordering::Relaxed);
    }

    async fn settle(&self, batch: &[jetstream::Message], phase: &watch::Receiver<Phase>) {
        let started = Instant::now();
        let mut records = Vec::with_capacity(batch.len());
        let mut settled = vec![false; batch.len()];
        for (i, msg) in batch.iter().enumerate() {
            // Past its budget: every earlier delivery ended without an ack (a worker crashing on
            // it, each time). Dead-lettered before anything reads it, so it cannot crash this one.
            let delivered = msg.info().map_or(0, |i| i.delivered);
            if self.settings.max_deliver > 0 && delivered > self.settings.max_deliver {
                let failure = Failure::new(
                    Reason::MaxDeliveries,
                    format!(
                        "delivered {} times without an acknowledgement (HOOKLINE_MAX_DELIVER {})",
                        delivered - 1,
                        self.settings.max_deliver
                    ),
                );
                self.dead_letter(msg, &failure).await;
                settled[i] = true;
                continue;
            }
            match decode(
                &self.providers,
                &msg.subject,
                msg.headers.as_ref(),
                &msg.payload,
            ) {
                Ok(Decoded { event, payload }) => {
                    if let Some(class) = event.failure_class {
                        self.metrics
                            .failure_classes
                            .with_label_values(&[event.provider, class.as_str()])
                            .inc();
                    }
                    if event.unmapped {
                        self.metrics
                            .unmapped
                            .with_label_values(&[event.provider])
                            .inc();
                        warn!(stage = "decode", provider = event.provider, event_id = %event.event_id, event_type = %event.event_type, provider_status = event.provider_status.as_deref().unwrap_or(""), "Event of a type or status hookline does not map: stored, applied to nothing; replay it once a mapping ships.");
                    } else if event.status.is_none() && event.engagement.is_none() {
                        self.metrics.skipped.inc();
                        debug!(stage = "decode", subject = %msg.subject, "Event carries no delivery information; stored only.");
                    }
                    records.push((i, event, payload));
                }
                Err(e) => {
                    let failure = Failure::new(Reason::Undecodable(e.reason()), e.to_string());
                    self.dead_letter(msg, &failure).await;
                    settled[i] = true;
                }
            }
        }
        self.metrics
            .stage_duration
            .with_label_values(&["decode"])
            .observe(started.elapsed().as_secs_f64());
        let recs: Vec<(usize, EventRecord<'_>)> = records
            .iter()
            .map(|(i, event, payload)| {
                let replay = batch[*i]
                    .headers
                    .as_ref()
                    .is_some_and(|h| h.get(hookline_jetstream::headers::REPLAY).is_some());
                (
                    *i,
                    EventRecord {
                        event,
                        payload,
                        replay,
                    },
                )
            })
            .collect();
        match self.committer.store(&recs, phase).await {
            Ok(poison) => {
                for (i, rejected) in poison {
                    let reason = match rejected {
                        crate::commit::Rejected::Data(_) => Reason::DbRejected,
                        crate::commit::Rejected::FailsAlone { .. } => Reason::DbFailsAlone,
                    };
                    let failure = Failure::new(reason, rejected.to_string());
                    self.dead_letter(&batch[i], &failure).await;
                    settled[i] = true;
                }
                let ack_started = Instant::now();
                let now_ms = chrono::Utc::now().timestamp_millis();
                for (msg, _) in batch.iter().zip(&settled).filter(|(_, s)| !**s) {
                    match msg.ack().await {
                        Ok(()) => {
                            let provider = crate::decode::provider_of(&msg.subject)
                                .and_then(|p| self.providers.get(p))
                                .map_or("unknown", |p| p.name());
                            self.metrics.processed.with_label_values(&[provider]).inc();
                            if let Some(received_ms) = received_at_ms(msg) {
                                self.metrics
                                    .end_to_end
                                    .observe((now_ms - received_ms).max(0) as f64 / 1000.0);
                            }
                        }
                        // The commit stands; a redelivery will be absorbed as a duplicate.
                        Err(e) => warn!(stage = "ack", error = %e, "Ack failed after commit."),
                    }
                }
                self.metrics
                    .stage_duration
                    .with_label_values(&["ack"])
                    .observe(ack_started.elapsed().as_secs_f64());
                self.metrics.batch_size.observe(batch.len() as f64);
                self.metrics.last_batch.set(now_ms as f64 / 1000.0);
                debug!(
                    stage = "ack",
                    batch_size = batch.len(),
                    duration_ms = started.elapsed().as_millis() as u64,
                    "Batch done."
                );
            }
            Err(Interrupted) => {
                // Shutting down with the database unavailable: hand the events back now rather
                // than after ack_wait, so another worker can take them. An event on its last
                // allowed delivery would never be delivered again, and the outage is not its
                // fault: it goes back as a fresh copy with a full delivery budget instead.
                let max_deliver = self.settings.max_deliver;
                let (mut returned, mut requeued) = (0, 0);
                for (msg, _) in batch.iter().zip(&settled).filter(|(_, s)| !**s) {
                    let last = msg
                        .info()
                        .is_ok_and(|i| max_deliver > 0 && i.delivered >= max_deliver);
                    if last && self.requeue(msg).await {
                        requeued += 1;
                    } else {
                        let _ = msg.ack_with(AckKind::Nak(None)).await;
                        returned += 1;
                    }
                }
                self.handed_back.fetch_add(returned, Ordering::Relaxed);
                warn!(batch_size = batch.len(), returned, requeued, "Shutdown deadline reached with the database unavailable; batch returned to the stream.");
            }
        }
    }

    fn consumer_stream(&self) -> String {
        self.consumer.cached_info().stream_name.clone()
    }

    /// Re-publishes an event as a fresh stream message, then terminates this delivery. `false`
    /// (and the event untouched) if the copy could not be stored.
    async fn requeue(&self, msg: &jetstream::Message) -> bool {
        let Ok(info) = msg.info() else { return false };
        let copy = dead_letter::Letter {
            subject: msg.subject.as_str(),
            headers: msg.headers.as_ref(),
            payload: msg.payload.clone(),
            stream_sequence: info.stream_sequence,
            deliveries: info.delivered,
        };
        match dead_letter::requeue(&self.js, &self.consumer_stream(), &copy).await {
            Ok(()) => {
                self.metrics.requeued.inc();
                warn!(stream_sequence = info.stream_sequence, deliveries = info.delivered, subject = %msg.subject, "Event at its last delivery attempt re-published with a fresh budget.");
                if let Err(e) = msg.ack_with(AckKind::Term).await {
                    warn!(error = %e, "Terminating a re-published event failed; its copy is stored once either way.");
                }
                true
            }
            Err(e) => {
                warn!(error = %e, "Could not re-publish an event at its last delivery attempt.");
                false
            }
        }
    }

    async fn dead_letter(&self, msg: &jetstream::Message, failure: &Failure) {
        let result = match msg.info() {
            Ok(info) => {
                let letter = dead_letter::Letter {
                    subject: msg.subject.as_str(),
                    headers: msg.headers.as_ref(),
                    payload: msg.payload.clone(),
                    stream_sequence: info.stream_sequence,
                    deliveries: info.delivered,
                };
                dead_letter::publish(&self.js, &self.consumer_stream(), &letter, failure).await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                self.metrics
                    .dead_lettered
                    .with_label_values(&[failure.reason.label()])
                    .inc();
                warn!(stage = failure.reason.stage(), failed_at_stage = failure.reason.stage(), reason = failure.reason.label(), subject = %msg.subject, "Event dead-lettered.");
                if let Err(e) = msg.ack_with(AckKind::Term).await {
                    warn!(error = %e, "Terminating a dead-lettered event failed; its dead letter is deduplicated.");
                }
            }
            Err(e) => {
                // Never drop an event: leave it for redelivery.
                warn!(stage = "dead_letter", error = %e, "Could not dead-letter an event; it will be redelivered.");
                let _ = msg
                    .ack_with(AckKind::Nak(Some(self.settings.retry.retry_max)))
                    .await;
            }
        }
    }
}

/// When ingest received the event (its `Hookline-Received-At-Ms`), in unix milliseconds.
fn received_at_ms(msg: &jetstream::Message) -> Option<i64> {
    msg.headers
        .as_ref()?
        .get(hookline_jetstream::headers::RECEIVED_AT)?
        .as_str()
        .parse()
        .ok()
}
