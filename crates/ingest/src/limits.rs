//! Per-provider rate limits: a token bucket per provider route, refilled continuously, with one
//! second's worth of burst. Only providers named in `HOOKLINE_RATE_LIMITS` are limited.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

struct Bucket {
    rate: f64,
    tokens: f64,
    refilled: Instant,
}

#[derive(Default)]
pub struct RateLimits {
    buckets: HashMap<String, Mutex<Bucket>>,
}

impl RateLimits {
    pub fn new(limits: &[(String, f64)]) -> Self {
        let now = Instant::now();
        Self {
            buckets: limits
                .iter()
                .map(|(name, rate)| {
                    let bucket = Bucket {
                        rate: *rate,
                        tokens: rate.max(1.0),
                        refilled: now,
                    };
                    (name.clone(), Mutex::new(bucket))
                })
                .collect(),
        }
    }

    /// Takes one token for `provider`; `false` means over its limit.
    pub fn allow(&self, provider: &str) -> bool {
        self.allow_at(provider, Instant::now())
    }

    fn allow_at(&self, provider: &str, now: Instant) -> bool {
        let Some(bucket) = self.buckets.get(provider) else {
            return true;
        };
        let mut b = bucket.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = now.saturating_duration_since(b.refilled).as_secs_f64();
        b.tokens = (b.tokens + elapsed * b.rate).min(b.rate.max(1.0));
        b.refilled = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_one_second_then_refills_at_the_rate() {
        let limits = RateLimits::new(&[("resend".into(), 10.0)]);
        let t0 = Instant::now();
        let allowed = (0..25).filter(|_| limits.allow_at("resend", t0)).count();
        assert_eq!(allowed, 10, "one second's burst");
        assert!(!limits.allow_at("resend", t0 + Duration::from_millis(50)));
        assert!(limits.allow_at("resend", t0 + Duration::from_millis(110)));
        let later = t0 + Duration::from_secs(60);
        let allowed = (0..25).filter(|_| limits.allow_at("resend", later)).count();
        assert_eq!(allowed, 10, "the burst never exceeds one second's worth");
        assert!(
            (0..1000).all(|_| limits.allow_at("telnyx", t0)),
            "unlimited"
        );
    }
}
