//! The Svix scheme (used by providers that send their webhooks through Svix): `svix-signature` holds space-separated `v1,<base64>` entries,
//! each an HMAC-SHA256 of `"{svix-id}.{svix-timestamp}.{body}"` keyed with the base64 part of a
//! `whsec_...` secret. Any entry matching any configured secret is enough, which is what makes
//! secret rotation possible.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{check_timestamp, SignatureError};

pub const ID_HEADER: &str = "svix-id";
pub const TIMESTAMP_HEADER: &str = "svix-timestamp";
pub const SIGNATURE_HEADER: &str = "svix-signature";

type HmacSha256 = Hmac<Sha256>;

/// A decoded `whsec_...` signing secret. `Debug` never prints the key.
#[derive(Clone)]
pub struct SvixSecret(Vec<u8>);

impl std::fmt::Debug for SvixSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SvixSecret(<redacted>)")
    }
}

impl SvixSecret {
    /// Accepts `whsec_<base64>` (the form providers show) or the bare base64 part.
    pub fn parse(s: &str) -> Result<Self, super::KeyError> {
        let b64 = s.trim().strip_prefix("whsec_").unwrap_or(s.trim());
        let key = B64
            .decode(b64)
            .map_err(|_| super::KeyError::NotBase64("whsec_<base64>"))?;
        if key.is_empty() {
            return Err(super::KeyError::Empty);
        }
        Ok(Self(key))
    }

    fn mac(&self, id: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC accepts any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `svix-signature` value for these inputs: `v1,<base64>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self
            .mac(id, &timestamp.to_string(), body)
            .finalize()
            .into_bytes();
        format!("v1,{}", B64.encode(tag))
    }
}

/// The headers of a Svix-signed request, checked for presence, form and freshness: id,
/// timestamp, and the decoded `v1` signatures.
fn parse_headers<'a>(
    id: Option<&'a str>,
    timestamp: Option<&'a str>,
    signature: Option<&str>,
    now: i64,
    tolerance_secs: u64,
) -> Result<(&'a str, &'a str, Vec<Vec<u8>>), SignatureError> {
    let id = id
        .filter(|v| !v.is_empty())
        .ok_or(SignatureError::MissingHeader(ID_HEADER))?;
    let timestamp = timestamp.ok_or(SignatureError::MissingHeader(TIMESTAMP_HEADER))?;
    let signature = signature.ok_or(SignatureError::MissingHeader(SIGNATURE_HEADER))?;
    check_timestamp(TIMESTAMP_HEADER, timestamp, now, tolerance_secs)?;
    let candidates: Vec<Vec<u8>> = signature
        .split_whitespace()
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .filter_map(|(_, b64)| B64.decode(b64).ok())
        .collect();
    if candidates.is_empty() {
        return Err(SignatureError::MalformedHeader(SIGNATURE_HEADER));
    }
    Ok((id, timestamp, candidates))
}

/// What can be checked before the body is read: every header present, well-formed, and fresh.
pub fn precheck(
    id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    now: i64,
    tolerance_secs: u64,
) -> Result<(), SignatureError> {
    parse_headers(id, timestamp, signature, now, tolerance_secs).map(|_| ())
}

/// Verifies a Svix-signed request. `secrets` holds every currently valid secret (rotation).
pub fn verify(
    secrets: &[SvixSecret],
    id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
    tolerance_secs: u64,
) -> Result<(), SignatureError> {
    let (id, timestamp, candidates) = parse_headers(id, timestamp, signature, now, tolerance_secs)?;
    for secret in secrets {
        let mac = secret.mac(id, timestamp.trim(), body);
        // `verify_slice` compares in constant time.
        if candidates
            .iter()
            .any(|c| mac.clone().verify_slice(c).is_ok())
        {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn secret() -> SvixSecret {
        SvixSecret::parse(SECRET).unwrap()
    }

    #[test]
    fn sign_then_verify() {
        let sig = secret().sign("msg_1", 1000, b"{}");
        assert_eq!(
            verify(
                &[secret()],
                Some("msg_1"),
                Some("1000"),
                Some(&sig),
                b"{}",
                1000,
                300
            ),
            Ok(())
        );
    }

    #[test]
    fn any_entry_and_any_secret_may_match() {
        let old = SvixSecret::parse("whsec_b2xkLXNlY3JldC1rZXk=").unwrap();
        let sig = secret().sign("m", 5, b"x");
        let header = format!("v1,AAAA v2,zzz {sig}");
        assert_eq!(
            verify(
                &[old, secret()],
                Some("m"),
                Some("5"),
                Some(&header),
                b"x",
                5,
                300
            ),
            Ok(())
        );
    }

    #[test]
    fn rejections_name_their_reason() {
        let s = [secret()];
        let sig = secret().sign("m", 5, b"x");
        let v = |id, ts, sig, body: &[u8]| verify(&s, id, ts, sig, body, 5, 300);
        assert_eq!(
            v(None, Some("5"), Some(&sig), b"x"),
            Err(SignatureError::MissingHeader(ID_HEADER))
        );
        assert_eq!(
            v(Some("m"), None, Some(&sig), b"x"),
            Err(SignatureError::MissingHeader(TIMESTAMP_HEADER))
        );
        assert_eq!(
            v(Some("m"), Some("5"), None, b"x"),
            Err(SignatureError::MissingHeader(SIGNATURE_HEADER))
        );
        assert_eq!(
            v(Some("m"), Some("5"), Some("garbage"), b"x"),
            Err(SignatureError::MalformedHeader(SIGNATURE_HEADER))
        );
        assert_eq!(
            v(Some("m"), Some("5"), Some(&sig), b"y"),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            v(Some("other"), Some("5"), Some(&sig), b"x"),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&s, Some("m"), Some("5"), Some(&sig), b"x", 1000, 300),
            Err(SignatureError::StaleTimestamp)
        );
    }

    #[test]
    fn bad_secret_format_is_explained() {
        assert!(SvixSecret::parse("whsec_not base64!").is_err());
        assert!(SvixSecret::parse("whsec_").is_err());
        assert!(!format!("{:?}", secret()).contains("MfKQ"));
    }
}
