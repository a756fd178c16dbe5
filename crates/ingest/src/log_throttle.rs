//! Refusal logs under a flood: one line per (provider, reason) a second at most, the next one
//! saying how many were left out. A flood of refused requests must not become a flood of log
//! lines; the metrics still count every one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a line is about: provider and reason.
type Key = (&'static str, &'static str);

pub struct LogThrottle {
    every: Duration,
    /// Per key: when its last line was written, and how many were left out since.
    last: Mutex<HashMap<Key, (Instant, u64)>>,
}

impl LogThrottle {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(left out since the last line)` if a line about `key` may be written at `now`;
    /// `None` (and one more left out) if not. Keys are bounded (providers × reasons).
    pub fn admit(&self, key: Key, now: Instant) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match last.get_mut(&key) {
            Some((at, left_out)) if now.duration_since(*at) < self.every => {
                *left_out += 1;
                None
            }
            Some((at, left_out)) => {
                let n = std::mem::take(left_out);
                *at = now;
                Some(n)
            }
            None => {
                last.insert(key, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_second_per_key_then_the_count_left_out() {
        let t = LogThrottle::new(Duration::from_secs(1));
        let start = Instant::now();
        let key = ("resend", "mismatch");
        assert_eq!(t.admit(key, start), Some(0));
        for i in 1..=1000 {
            assert_eq!(t.admit(key, start + Duration::from_micros(i)), None);
        }
        assert_eq!(
            t.admit(("telnyx", "mismatch"), start),
            Some(0),
            "keys apart"
        );
        assert_eq!(t.admit(key, start + Duration::from_secs(1)), Some(1000));
        assert_eq!(t.admit(key, start + Duration::from_secs(3)), Some(0));
    }
}
