//! Signature schemes used by providers, as pure functions of (headers, body, now): verify for
//! ingest, sign for the CLI and the tests. Each rejection names a bounded reason, used as a metric
//! label and in the 401 answer, and never echoes the secret or the signature.

pub mod ed25519;
pub mod svix;

use thiserror::Error;

/// Why a request's signature was not accepted. All of these answer 401.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SignatureError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("malformed header {0}")]
    MalformedHeader(&'static str),
    #[error("timestamp outside the allowed tolerance")]
    StaleTimestamp,
    #[error("signature does not match")]
    Mismatch,
    /// A one-time token already used with another event (see `Provider::replay_token`).
    #[error("token already used for another event")]
    Replayed,
}

impl SignatureError {
    /// Every [`reason`](Self::reason), for metrics created at zero.
    pub const REASONS: [&'static str; 5] = [
        Self::MissingHeader("").reason(),
        Self::MalformedHeader("").reason(),
        Self::StaleTimestamp.reason(),
        Self::Mismatch.reason(),
        Self::Replayed.reason(),
    ];

    /// A short, bounded name for metrics and logs.
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::MissingHeader(_) => "missing_header",
            Self::MalformedHeader(_) => "malformed_header",
            Self::StaleTimestamp => "stale_timestamp",
            Self::Mismatch => "mismatch",
            Self::Replayed => "replayed",
        }
    }
}

/// Why a configured key or secret cannot be used. Fixed texts: never (part of) the key.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum KeyError {
    #[error("expected {0}, it does not decode as base64")]
    NotBase64(&'static str),
    #[error("expected {expected} bytes, got {got}")]
    Length { expected: usize, got: usize },
    #[error("not a valid Ed25519 public key")]
    NotAPoint,
    #[error("not the canonical encoding of an Ed25519 public key")]
    NotCanonical,
    #[error("a point of small order, not an Ed25519 public key anyone could sign with")]
    SmallOrder,
    #[error("the secret is empty")]
    Empty,
}

/// Parses a unix-seconds timestamp header and checks it is within `tolerance_secs` of `now`
/// (either side: a clock ahead of ours is as suspicious as a replayed old request).
pub fn check_timestamp(
    header: &'static str,
    value: &str,
    now: i64,
    tolerance_secs: u64,
) -> Result<i64, SignatureError> {
    let ts: i64 = value
        .trim()
        .parse()
        .map_err(|_| SignatureError::MalformedHeader(header))?;
    if now.abs_diff(ts) > tolerance_secs {
        return Err(SignatureError::StaleTimestamp);
    }
    Ok(ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_window_is_inclusive_both_sides() {
        assert_eq!(check_timestamp("t", "1000", 1300, 300), Ok(1000));
        assert_eq!(check_timestamp("t", "1600", 1300, 300), Ok(1600));
        assert_eq!(
            check_timestamp("t", "999", 1300, 300),
            Err(SignatureError::StaleTimestamp)
        );
        assert_eq!(
            check_timestamp("t", "1601", 1300, 300),
            Err(SignatureError::StaleTimestamp)
        );
        assert_eq!(
            check_timestamp("t", "12a", 1300, 300),
            Err(SignatureError::MalformedHeader("t"))
        );
    }
}
