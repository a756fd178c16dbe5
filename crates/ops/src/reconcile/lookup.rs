//! One lookup in a provider's API, paced and retried: what each answer means (success, 404, 429
//! with its wait, 5xx, a final 4xx) is decided by [`step`], a pure function with a test per case.

use std::time::Duration;

use rand::Rng as _;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;

use super::args::Api;
use super::metrics::Unknown;

/// Spaces requests to one provider at `rate` per second (shared by all in-flight lookups).
pub(super) struct Pacer(tokio::sync::Mutex<tokio::time::Interval>);

impl Pacer {
    pub(super) fn new(rate: f64) -> Self {
        let period = Duration::from_secs_f64(1.0 / rate.max(0.001));
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self(tokio::sync::Mutex::new(interval))
    }

    pub(super) async fn wait(&self) {
        self.0.lock().await.tick().await;
    }
}

/// What to do after an answer (or a failure to get one) on attempt `attempt` (from 0).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Read the body: the API answered.
    Read,
    /// Give up on this lookup for the reason given.
    Stop(Unknown),
    /// Try again after this long, remembering the reason should attempts run out.
    Retry(Unknown, Duration),
}

/// An answer's status (or `None`: a timeout when `timed_out`, else another transport error)
/// and headers, as a [`Step`]. 429 waits for `Retry-After`, else the rate-limit window's reset
/// (the IETF draft's `ratelimit-reset`, or the older `x-ratelimit-reset`), else a second, at
/// most a minute; 5xx and transport failures back off exponentially (`backoff`); 404 and
/// other 4xx are final (retrying will not help).
pub(super) fn step(
    answer: Option<(StatusCode, &HeaderMap)>,
    timed_out: bool,
    backoff: Duration,
) -> Step {
    match answer {
        None if timed_out => Step::Retry(Unknown::Timeout, backoff),
        None => Step::Retry(Unknown::HttpError, backoff),
        Some((s, _)) if s.is_success() => Step::Read,
        Some((StatusCode::NOT_FOUND, _)) => Step::Stop(Unknown::NotFound),
        Some((StatusCode::TOO_MANY_REQUESTS, headers)) => {
            let secs = [
                reqwest::header::RETRY_AFTER.as_str(),
                "ratelimit-reset",
                "x-ratelimit-reset",
            ]
            .iter()
            .find_map(|h| {
                headers
                    .get(*h)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
            .unwrap_or(1);
            Step::Retry(Unknown::RateLimited, Duration::from_secs(secs.min(60)))
        }
        Some((s, _)) if s.is_server_error() => Step::Retry(Unknown::HttpError, backoff),
        Some(_) => Step::Stop(Unknown::HttpError),
    }
}

/// GET `api`'s record of `message_id`, at `pacer`'s pace, up to `attempts` times.
pub(super) async fn lookup(
    http: &reqwest::Client,
    api: &Api,
    pacer: &Pacer,
    attempts: u32,
    message_id: &str,
) -> Result<Vec<u8>, Unknown> {
    let mut last = Unknown::HttpError;
    for attempt in 0..attempts.max(1) {
        pacer.wait().await;
        let sent = http
            .get(api.url(message_id))
            .header("authorization", api.spec.authorization(&api.key))
            .header("accept", "application/json")
            .send()
            .await;
        // Exponential, with jitter down to half so that lookups failing together spread out.
        let backoff =
            Duration::from_millis(200 << attempt).mul_f64(rand::rng().random_range(0.5..=1.0));
        let (answer, timed_out) = match &sent {
            Ok(r) => (Some((r.status(), r.headers())), false),
            Err(e) => (None, e.is_timeout()),
        };
        match step(answer, timed_out, backoff) {
            Step::Read => {
                let r = sent.map_err(|_| Unknown::HttpError)?;
                return r
                    .bytes()
                    .await
                    .map(|b| b.to_vec())
                    .map_err(|_| Unknown::HttpError);
            }
            Step::Stop(why) => return Err(why),
            Step::Retry(why, wait) => {
                last = why;
                if attempt + 1 < attempts {
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKOFF: Duration = Duration::from_millis(300);

    fn with(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_429_waits_for_retry_after_then_the_reset_headers_then_a_second_at_most_a_minute() {
        let limited =
            |h: HeaderMap| step(Some((StatusCode::TOO_MANY_REQUESTS, &h)), false, BACKOFF);
        let secs = |n| Step::Retry(Unknown::RateLimited, Duration::from_secs(n));
        assert_eq!(limited(with(&[("retry-after", "7")])), secs(7));
        assert_eq!(
            limited(with(&[
                ("ratelimit-reset", "4"),
                ("x-ratelimit-reset", "9")
            ])),
            secs(4)
        );
        assert_eq!(limited(with(&[("x-ratelimit-reset", " 9 ")])), secs(9));
        assert_eq!(
            limited(with(&[("retry-after", "3600")])),
            secs(60),
            "capped"
        );
        // An HTTP date is not seconds: fall through to the next header, then to a second.
        assert_eq!(
            limited(with(&[("retry-after", "Wed, 21 Oct 2026 07:28:00 GMT")])),
            secs(1)
        );
        assert_eq!(limited(HeaderMap::new()), secs(1));
    }

    #[test]
    fn success_not_found_server_errors_and_final_client_errors() {
        let h = HeaderMap::new();
        let at = |s: u16| step(Some((StatusCode::from_u16(s).unwrap(), &h)), false, BACKOFF);
        assert_eq!(at(200), Step::Read);
        assert_eq!(at(404), Step::Stop(Unknown::NotFound));
        assert_eq!(at(503), Step::Retry(Unknown::HttpError, BACKOFF));
        for s in [400, 401, 403, 422] {
            assert_eq!(at(s), Step::Stop(Unknown::HttpError), "{s} is final");
        }
        assert_eq!(
            step(None, true, BACKOFF),
            Step::Retry(Unknown::Timeout, BACKOFF)
        );
        assert_eq!(
            step(None, false, BACKOFF),
            Step::Retry(Unknown::HttpError, BACKOFF)
        );
    }
}
