//! The Ed25519 scheme: a signature header holds a base64 Ed25519 signature over
//! `"{timestamp}|{body}"`, where the timestamp (unix seconds) comes from a second header; checked
//! against the account's base64 public key. The provider names the two headers.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use super::{check_timestamp, KeyError, SignatureError};

/// The headers a provider sends this scheme's signature and timestamp in.
#[derive(Debug, Clone, Copy)]
pub struct HeaderNames {
    pub signature: &'static str,
    pub timestamp: &'static str,
}

/// Parses a base64 Ed25519 public key, as providers show it in their portals.
pub fn parse_public_key(b64: &str) -> Result<VerifyingKey, KeyError> {
    let bytes = B64
        .decode(b64.trim())
        .map_err(|_| KeyError::NotBase64("a base64 Ed25519 public key"))?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|v: Vec<u8>| KeyError::Length {
        expected: 32,
        got: v.len(),
    })?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::NotAPoint)
}

/// Parses a base64 32-byte Ed25519 seed (used by `hookline sign` and the tests).
pub fn parse_signing_key(b64: &str) -> Result<SigningKey, KeyError> {
    let bytes = B64
        .decode(b64.trim())
        .map_err(|_| KeyError::NotBase64("a base64 Ed25519 private key seed"))?;
    let seed: [u8; 32] = bytes.try_into().map_err(|v: Vec<u8>| KeyError::Length {
        expected: 32,
        got: v.len(),
    })?;
    Ok(SigningKey::from_bytes(&seed))
}

fn signed_bytes(timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(timestamp.len() + 1 + body.len());
    msg.extend_from_slice(timestamp.as_bytes());
    msg.push(b'|');
    msg.extend_from_slice(body);
    msg
}

/// The signature header's value for these inputs.
pub fn sign(key: &SigningKey, timestamp: i64, body: &[u8]) -> String {
    let sig = key.sign(&signed_bytes(&timestamp.to_string(), body));
    B64.encode(sig.to_bytes())
}

/// The signature and timestamp headers, checked for presence, form and freshness.
fn parse_headers<'a>(
    names: &HeaderNames,
    signature: Option<&str>,
    timestamp: Option<&'a str>,
    now: i64,
    tolerance_secs: u64,
) -> Result<([u8; 64], &'a str), SignatureError> {
    let signature = signature.ok_or(SignatureError::MissingHeader(names.signature))?;
    let timestamp = timestamp.ok_or(SignatureError::MissingHeader(names.timestamp))?;
    check_timestamp(names.timestamp, timestamp, now, tolerance_secs)?;
    let raw = B64
        .decode(signature.trim())
        .map_err(|_| SignatureError::MalformedHeader(names.signature))?;
    let raw: [u8; 64] = raw
        .try_into()
        .map_err(|_| SignatureError::MalformedHeader(names.signature))?;
    Ok((raw, timestamp))
}

/// What can be checked before the body is read: both headers present, well-formed, and fresh.
pub fn precheck(
    names: &HeaderNames,
    signature: Option<&str>,
    timestamp: Option<&str>,
    now: i64,
    tolerance_secs: u64,
) -> Result<(), SignatureError> {
    parse_headers(names, signature, timestamp, now, tolerance_secs).map(|_| ())
}

pub fn verify(
    names: &HeaderNames,
    key: &VerifyingKey,
    signature: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
    now: i64,
    tolerance_secs: u64,
) -> Result<(), SignatureError> {
    let (raw, timestamp) = parse_headers(names, signature, timestamp, now, tolerance_secs)?;
    key.verify(
        &signed_bytes(timestamp.trim(), body),
        &Signature::from_bytes(&raw),
    )
    .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: HeaderNames = HeaderNames {
        signature: "x-signature",
        timestamp: "x-timestamp",
    };

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    #[test]
    fn sign_then_verify() {
        let sig = sign(&key(), 1000, b"{\"a\":1}");
        let pk = key().verifying_key();
        assert_eq!(
            verify(
                &NAMES,
                &pk,
                Some(&sig),
                Some("1000"),
                b"{\"a\":1}",
                1000,
                300
            ),
            Ok(())
        );
        assert_eq!(
            verify(
                &NAMES,
                &pk,
                Some(&sig),
                Some("1000"),
                b"{\"a\":2}",
                1000,
                300
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(
                &NAMES,
                &pk,
                Some(&sig),
                Some("1001"),
                b"{\"a\":1}",
                1000,
                300
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&NAMES, &pk, Some(&sig), Some("1"), b"{\"a\":1}", 1000, 300),
            Err(SignatureError::StaleTimestamp)
        );
        assert_eq!(
            verify(&NAMES, &pk, Some("AAAA"), Some("1000"), b"", 1000, 300),
            Err(SignatureError::MalformedHeader(NAMES.signature))
        );
        assert_eq!(
            verify(&NAMES, &pk, None, Some("1000"), b"", 1000, 300),
            Err(SignatureError::MissingHeader(NAMES.signature))
        );
    }

    #[test]
    fn key_parsing_explains_itself() {
        let pk = B64.encode(key().verifying_key().to_bytes());
        assert!(parse_public_key(&pk).is_ok());
        assert!(parse_public_key("!!")
            .unwrap_err()
            .to_string()
            .contains("base64"));
        assert_eq!(
            parse_public_key("AAAA").unwrap_err(),
            KeyError::Length {
                expected: 32,
                got: 3
            }
        );
    }
}
