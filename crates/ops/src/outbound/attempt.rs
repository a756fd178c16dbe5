//! What the receiver's answer to one POST means for the change: delivered, worth another
//! attempt (after its `Retry-After` if it sent one), or refused for good.

use std::time::Duration;

/// One attempt's outcome, the `result` label of `webhook_outbound_attempts_total`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered(u16),
    /// Worth another attempt, after the receiver's Retry-After if it sent one.
    Retry {
        result: String,
        after: Option<Duration>,
    },
    /// Not worth another: the receiver refused it (4xx) or is gone (410).
    Refused(u16),
}

impl Attempt {
    /// What an HTTP answer means for the change.
    pub fn of_status(status: u16, retry_after: Option<&str>) -> Self {
        match status {
            200..=299 => Self::Delivered(status),
            408 | 429 | 500..=599 => Self::Retry {
                result: status.to_string(),
                after: if matches!(status, 429 | 503) {
                    retry_after.and_then(parse_retry_after)
                } else {
                    None
                },
            },
            _ => Self::Refused(status),
        }
    }

    pub(crate) fn label(&self) -> String {
        match self {
            Self::Delivered(s) | Self::Refused(s) => s.to_string(),
            Self::Retry { result, .. } => result.clone(),
        }
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let secs = (at.timestamp() - chrono::Utc::now().timestamp()).max(0);
    Some(Duration::from_secs(secs as u64))
}

/// Why a change was given up on (the `reason` label and header).
pub(crate) fn give_up_reason(last: &Attempt) -> &'static str {
    match last {
        Attempt::Refused(410) => "gone",
        Attempt::Refused(_) => "refused",
        _ => "attempts",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_decide_delivered_retry_or_refused() {
        assert_eq!(Attempt::of_status(204, None), Attempt::Delivered(204));
        for s in [408, 429, 500, 502, 503] {
            assert!(
                matches!(Attempt::of_status(s, None), Attempt::Retry { .. }),
                "{s}"
            );
        }
        for s in [400, 401, 403, 404, 410, 422] {
            assert_eq!(Attempt::of_status(s, None), Attempt::Refused(s));
        }
        assert_eq!(give_up_reason(&Attempt::Refused(410)), "gone");
        assert_eq!(give_up_reason(&Attempt::Refused(400)), "refused");
    }

    #[test]
    fn retry_after_counts_on_429_and_503_only() {
        let after = |s, v| match Attempt::of_status(s, Some(v)) {
            Attempt::Retry { after, .. } => after,
            other => panic!("{other:?}"),
        };
        assert_eq!(after(429, "3"), Some(Duration::from_secs(3)));
        assert_eq!(after(503, " 7 "), Some(Duration::from_secs(7)));
        assert_eq!(after(500, "3"), None);
        assert_eq!(after(429, "soon"), None);
        let later = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        let d = after(429, &later).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
    }
}
