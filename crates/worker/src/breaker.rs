//! The database circuit breaker. After `threshold` consecutive transient failures it opens: the
//! worker stops fetching (events wait in JetStream, none is dead-lettered for the outage) and only
//! probes the database every `open_for`. The first success closes it again.
//!
//! Pure state, driven by the caller with explicit instants, so it is unit-tested without a clock.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    /// Failing; the next attempt is a probe at `until`.
    Open {
        until: Instant,
    },
}

impl BreakerState {
    /// 0 = closed, 1 = open: for metrics and health.
    pub fn as_gauge(self) -> u8 {
        match self {
            Self::Closed => 0,
            Self::Open { .. } => 1,
        }
    }
}

/// What a failure or success changed, for logging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Opened,
    StillOpen,
    Closed,
}

#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    open_for: Duration,
    consecutive_failures: u32,
    state: BreakerState,
}

impl Breaker {
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            open_for,
            consecutive_failures: 0,
            state: BreakerState::Closed,
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Records a transient failure at `now`. Returns the transition, if any.
    pub fn on_failure(&mut self, now: Instant) -> Option<Transition> {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        match self.state {
            BreakerState::Closed if self.consecutive_failures >= self.threshold => {
                self.state = BreakerState::Open {
                    until: now + self.open_for,
                };
                Some(Transition::Opened)
            }
            BreakerState::Closed => None,
            BreakerState::Open { .. } => {
                // A failed probe: wait a full period before the next one.
                self.state = BreakerState::Open {
                    until: now + self.open_for,
                };
                Some(Transition::StillOpen)
            }
        }
    }

    pub fn on_success(&mut self) -> Option<Transition> {
        self.consecutive_failures = 0;
        match std::mem::replace(&mut self.state, BreakerState::Closed) {
            BreakerState::Open { .. } => Some(Transition::Closed),
            BreakerState::Closed => None,
        }
    }

    /// Before a write: `None` to go ahead (closed, or open with the probe due: this caller takes
    /// the probe, and the next one is pushed a full period out so no other batch probes with it);
    /// `Some(wait)` while open with the probe not yet due. Several batches held through an outage
    /// thus probe the database once per period between them, not once each.
    pub fn claim_probe(&mut self, now: Instant) -> Option<Duration> {
        match self.state {
            BreakerState::Closed => None,
            BreakerState::Open { until } if now >= until => {
                self.state = BreakerState::Open {
                    until: now + self.open_for,
                };
                None
            }
            BreakerState::Open { until } => Some(until - now),
        }
    }

    /// How long to wait before the next attempt: the backoff while closed, the time to the next
    /// probe while open.
    pub fn wait_before_retry(&self, now: Instant, backoff: Duration) -> Duration {
        match self.state {
            BreakerState::Closed => backoff,
            BreakerState::Open { until } => until.saturating_duration_since(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_probes_after_timeout_and_closes_on_success() {
        let t0 = Instant::now();
        let mut b = Breaker::new(3, Duration::from_secs(60));
        assert_eq!(b.on_failure(t0), None);
        assert_eq!(b.on_failure(t0), None);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(
            b.wait_before_retry(t0, Duration::from_millis(5)),
            Duration::from_millis(5)
        );
        assert_eq!(b.on_failure(t0), Some(Transition::Opened));
        assert_eq!(b.state().as_gauge(), 1);
        let later = t0 + Duration::from_secs(20);
        assert_eq!(
            b.wait_before_retry(later, Duration::from_millis(5)),
            Duration::from_secs(40)
        );
        // The probe fails: another full period.
        let probe = t0 + Duration::from_secs(60);
        assert_eq!(b.on_failure(probe), Some(Transition::StillOpen));
        assert_eq!(
            b.wait_before_retry(probe, Duration::ZERO),
            Duration::from_secs(60)
        );
        assert_eq!(b.on_success(), Some(Transition::Closed));
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.consecutive_failures(), 0);
        assert_eq!(b.on_success(), None);
    }

    #[test]
    fn one_probe_per_period_however_many_batches_wait() {
        let t0 = Instant::now();
        let mut b = Breaker::new(1, Duration::from_secs(10));
        assert_eq!(b.claim_probe(t0), None, "closed: write");
        b.on_failure(t0);
        assert_eq!(b.claim_probe(t0), Some(Duration::from_secs(10)));
        let due = t0 + Duration::from_secs(10);
        assert_eq!(
            b.claim_probe(due),
            None,
            "the first batch at the due time probes"
        );
        assert_eq!(
            b.claim_probe(due),
            Some(Duration::from_secs(10)),
            "the others wait a period"
        );
        b.on_success();
        assert_eq!(b.claim_probe(due), None, "closed again: everyone writes");
    }

    #[test]
    fn a_success_resets_the_count() {
        let t0 = Instant::now();
        let mut b = Breaker::new(2, Duration::from_secs(1));
        b.on_failure(t0);
        b.on_success();
        assert_eq!(b.on_failure(t0), None, "count restarted");
        assert_eq!(b.on_failure(t0), Some(Transition::Opened));
    }
}
