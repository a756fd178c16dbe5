//! Storing a decoded batch. A failure is classified by cause (`failure.rs`): an outage is retried
//! in place with exponential backoff behind the circuit breaker, however long it lasts (the
//! caller keeps the events alive meanwhile); a failure the database attributes to the data is
//! narrowed down by bisection, and an event that fails alone is dead-lettered only if a canary
//! write succeeds right after, i.e. the database accepts writes and rejects just this event.
//!
//! An outage-class failure that persists while canary writes succeed (one event that always runs
//! past `statement_timeout`, say) is the data's fault after all: after `isolate_after` attempts
//! the batch is bisected like a rejection, and an event failing alone `isolate_after` times more,
//! each time with the canary succeeding, is dead-lettered (`db_fails_alone`). A real outage fails
//! the canary too and is retried for as long as it lasts.

use std::sync::Arc;
use std::time::Duration;

use hookline_store::failure::Cause;
use hookline_store::{BatchWriter, EventRecord, WriteError, WriteOutcome};
use rand::Rng;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::breaker::{Breaker, Transition};
use crate::consume::Phase;
use crate::metrics::WorkerMetrics;

/// The shutdown deadline passed while the database was still failing.
pub struct Interrupted;

/// How failed writes are retried.
#[derive(Debug, Clone)]
pub struct RetrySettings {
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub breaker_threshold: u32,
    pub breaker_open_for: Duration,
    /// Attempts of one write failing with an outage-class error, with canary writes succeeding,
    /// before its events are suspected (`HOOKLINE_ISOLATE_AFTER`).
    pub isolate_after: u32,
}

/// Why the database will not take an isolated event.
#[derive(Debug)]
pub enum Rejected {
    /// It rejects the event's data (the SQLSTATE says so, and a canary write succeeded).
    Data(WriteError),
    /// It failed alone `attempts` times with an outage-class error while canary writes succeeded.
    FailsAlone { error: WriteError, attempts: u32 },
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Data(e) => write!(f, "{e}"),
            Self::FailsAlone { error, attempts } => write!(
                f,
                "failed alone {attempts} times with an outage-class error while the database \
                 accepted a canary write each time: {error}"
            ),
        }
    }
}

/// The database side of a worker: the writer, and the circuit breaker every batch shares.
pub struct Committer {
    writer: BatchWriter,
    settings: RetrySettings,
    metrics: Arc<WorkerMetrics>,
    /// A plain mutex, held only between awaits: the batches being written are futures polled
    /// by the fetch loop itself, so the loop must never wait on a lock one of them might hold
    /// (tokio's mutex hands the lock to a queued waiter before that waiter is polled again).
    breaker: std::sync::Mutex<Breaker>,
    /// Wakes the batches waiting out an open breaker when a probe closes it.
    breaker_closed: tokio::sync::Notify,
    /// Wakes the change feed's relay after a commit that changed recipients.
    changed: tokio::sync::Notify,
}

impl Committer {
    pub fn new(writer: BatchWriter, settings: RetrySettings, metrics: Arc<WorkerMetrics>) -> Self {
        Self {
            writer,
            breaker: std::sync::Mutex::new(Breaker::new(
                settings.breaker_threshold,
                settings.breaker_open_for,
            )),
            breaker_closed: Default::default(),
            changed: Default::default(),
            settings,
            metrics,
        }
    }

    /// Notified after each commit that changed recipients (their changes are in the outbox).
    pub fn changed(&self) -> &tokio::sync::Notify {
        &self.changed
    }

    pub fn settings(&self) -> &RetrySettings {
        &self.settings
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the circuit breaker is open (or half-open, probing) now.
    pub fn breaker_open(&self) -> bool {
        self.breaker().state().as_gauge() != 0
    }

    /// Consecutive failed writes (0 while the database is healthy).
    pub fn breaker_failures(&self) -> u32 {
        self.breaker().consecutive_failures()
    }

    /// Stores `recs`; returns the batch indexes of events the database rejects on their own.
    pub async fn store(
        &self,
        recs: &[(usize, EventRecord<'_>)],
        phase: &watch::Receiver<Phase>,
    ) -> Result<Vec<(usize, Rejected)>, Interrupted> {
        self.store_suspecting(recs, phase, self.settings.isolate_after.max(1))
            .await
    }

    /// [`Self::store`], suspecting the events after `suspect_after` outage-class failures with
    /// the canary succeeding: a whole batch after `isolate_after`, the halves of a suspected one
    /// after one (an innocent half commits at once), a single event after `isolate_after` again.
    async fn store_suspecting(
        &self,
        recs: &[(usize, EventRecord<'_>)],
        phase: &watch::Receiver<Phase>,
        suspect_after: u32,
    ) -> Result<Vec<(usize, Rejected)>, Interrupted> {
        let only: Vec<EventRecord<'_>> = recs
            .iter()
            .map(|(_, r)| EventRecord {
                event: r.event,
                payload: r.payload,
                replay: r.replay,
            })
            .collect();
        match self.write_retrying(&only, phase, suspect_after).await? {
            Ok(()) => Ok(Vec::new()),
            Err(e) if recs.len() == 1 => {
                let ev = recs[0].1.event;
                error!(stage = "db_write", failed_at_stage = "db_write", provider = ev.provider, event_id = %ev.event_id, error = %e, "Event rejected by the database.");
                Ok(vec![(recs[0].0, e)])
            }
            Err(e) => {
                self.metrics.bisections.inc();
                warn!(stage = "db_write", batch_size = recs.len(), error = %e, "Batch rejected; isolating the failing events.");
                let (a, b) = recs.split_at(recs.len() / 2);
                let after = |half: &[_]| {
                    if half.len() == 1 || !matches!(e, Rejected::FailsAlone { .. }) {
                        self.settings.isolate_after.max(1)
                    } else {
                        1
                    }
                };
                let (after_a, after_b) = (after(a), after(b));
                let mut poison = Box::pin(self.store_suspecting(a, phase, after_a)).await?;
                poison.extend(Box::pin(self.store_suspecting(b, phase, after_b)).await?);
                Ok(poison)
            }
        }
    }

    /// One write, retried for as long as the database has an outage. The outer `Err` means the
    /// shutdown deadline passed; the inner `Err` is a rejection of the data (for a single event:
    /// confirmed by a canary write), or an outage-class failure that `suspect_after` attempts in
    /// a row showed to be this write's alone (the canary succeeding after each from then on).
    async fn write_retrying(
        &self,
        recs: &[EventRecord<'_>],
        phase: &watch::Receiver<Phase>,
        suspect_after: u32,
    ) -> Result<Result<(), Rejected>, Interrupted> {
        let mut attempt: u32 = 0;
        loop {
            // While the breaker is open, only the batch holding the probe writes; the others wait
            // for the probe's period, or for the breaker to close.
            let claim = self.breaker().claim_probe(Instant::now().into_std());
            if let Some(wait) = claim {
                self.sleep_or_close(wait, phase).await?;
                continue;
            }
            let started = Instant::now();
            let outage = match self.writer.write(recs).await {
                Ok(outcome) => {
                    self.on_committed(&outcome, recs.len(), started);
                    return Ok(Ok(()));
                }
                Err(e) => match self.confirm_rejection(e, recs.len()).await {
                    Ok(rejected) => return Ok(Err(Rejected::Data(rejected))),
                    Err(outage) => outage,
                },
            };
            attempt += 1;
            if attempt >= suspect_after
                && hookline_store::failure::suspect_when_repeated(&outage.source)
                && self.writer.canary().await.is_ok()
            {
                warn!(stage = "db_write", events = recs.len(), attempts = attempt, error = %outage, "A write keeps failing with an outage-class error while the database accepts a canary write: isolating its events.");
                return Ok(Err(Rejected::FailsAlone {
                    error: outage,
                    attempts: attempt,
                }));
            }
            let wait = self.on_outage(&outage, attempt);
            self.sleep_or_close(wait, phase).await?;
        }
    }

    /// A failed write as a rejection of the data (`Ok`) or an outage (`Err`). One event refused
    /// alone is its own fault only if the database accepts a canary write right after.
    async fn confirm_rejection(
        &self,
        e: WriteError,
        events: usize,
    ) -> Result<WriteError, WriteError> {
        if e.cause != Cause::Event {
            return Err(e);
        }
        if events > 1 {
            return Ok(e);
        }
        match self.writer.canary().await {
            Ok(()) => Ok(e),
            Err(canary) => {
                warn!(stage = "db_write", error = %e, canary_error = %canary, "An event was refused alone and so was a canary write: an outage, not the event.");
                Err(canary)
            }
        }
    }

    /// A committed batch: the breaker, the metrics and the stage log, in one place.
    fn on_committed(&self, outcome: &WriteOutcome, events: usize, started: Instant) {
        let state = {
            let mut breaker = self.breaker();
            if breaker.on_success() == Some(Transition::Closed) {
                self.breaker_closed.notify_waiters();
                info!(
                    stage = "db_write",
                    breaker = "closed",
                    "Circuit breaker closed; the database is back."
                );
            }
            breaker.state()
        };
        if outcome.recipients_changed > 0 {
            self.changed.notify_one();
        }
        let m = &self.metrics;
        m.breaker_open.set(state.as_gauge().into());
        m.stored.inc_by(outcome.inserted as u64);
        m.duplicates.inc_by(outcome.duplicates as u64);
        m.rederived.inc_by(outcome.rederived as u64);
        m.stage_duration
            .with_label_values(&["db_write"])
            .observe(started.elapsed().as_secs_f64());
        debug!(
            stage = "db_write",
            events,
            inserted = outcome.inserted,
            duplicates = outcome.duplicates,
            recipients_changed = outcome.recipients_changed,
            duration_ms = started.elapsed().as_millis() as u64,
            "Batch committed."
        );
    }

    /// A write the database could not take: the breaker, the metrics and the stage log, in one
    /// place; returns how long to wait before the next attempt.
    fn on_outage(&self, e: &WriteError, attempt: u32) -> Duration {
        self.metrics.db_retries.inc();
        let now = Instant::now();
        let mut breaker = self.breaker();
        match breaker.on_failure(now.into_std()) {
            Some(Transition::Opened) => {
                self.metrics.breaker_opened.inc();
                error!(stage = "db_write", breaker = "open", consecutive_failures = breaker.consecutive_failures(), probe_in_ms = self.settings.breaker_open_for.as_millis() as u64, error = %e, "Circuit breaker opened: fetching stops until a probe succeeds.");
            }
            Some(Transition::StillOpen) => {
                warn!(stage = "db_write", breaker = "open", error = %e, "Probe failed; the database is still unavailable.");
            }
            _ => {
                warn!(stage = "db_write", attempt, error = %e, "Database write failed; will retry.");
            }
        }
        self.metrics
            .breaker_open
            .set(breaker.state().as_gauge().into());
        breaker.wait_before_retry(now.into_std(), backoff(&self.settings, attempt))
    }

    /// Sleeps `wait` (the caller keeps its events alive meanwhile with in-progress acks), or
    /// until the breaker closes, or until the shutdown deadline if that comes first; `Err` once
    /// the deadline has passed.
    async fn sleep_or_close(
        &self,
        wait: Duration,
        phase: &watch::Receiver<Phase>,
    ) -> Result<(), Interrupted> {
        let now = Instant::now();
        if let Phase::Draining { deadline } = *phase.borrow() {
            if now >= deadline {
                return Err(Interrupted);
            }
        }
        let until = now + wait;
        let closed = self.breaker_closed.notified();
        tokio::pin!(closed);
        let mut phase = phase.clone();
        loop {
            let bound = match *phase.borrow() {
                Phase::Draining { deadline } => until.min(deadline),
                Phase::Running => until,
            };
            tokio::select! {
                _ = tokio::time::sleep_until(bound) => return Ok(()),
                _ = &mut closed => return Ok(()),
                changed = phase.changed() => if changed.is_err() {
                    tokio::time::sleep_until(bound).await;
                    return Ok(());
                },
            }
        }
    }
}

/// `base * 2^(attempt-1)`, capped at `max`, with jitter down to half.
pub fn backoff(s: &RetrySettings, attempt: u32) -> Duration {
    let exp = s
        .retry_base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let capped = exp.min(s.retry_max);
    capped.mul_f64(rand::rng().random_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let s = RetrySettings {
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(2),
            breaker_threshold: 1,
            breaker_open_for: Duration::ZERO,
            isolate_after: 5,
        };
        let b1 = backoff(&s, 1);
        assert!(b1 >= Duration::from_millis(50) && b1 <= Duration::from_millis(100));
        let b3 = backoff(&s, 3);
        assert!(b3 >= Duration::from_millis(200) && b3 <= Duration::from_millis(400));
        let b30 = backoff(&s, 30);
        assert!(b30 >= Duration::from_secs(1) && b30 <= Duration::from_secs(2));
    }
}
