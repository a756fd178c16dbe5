//! Telnyx's scheme: `telnyx-signature-ed25519` is a base64 Ed25519 signature over
//! `"{telnyx-timestamp}|{body}"`, checked against the account's base64 public key.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use super::{check_timestamp, SignatureError};

pub const SIGNATURE_HEADER: &str = "telnyx-signature-ed25519";
pub const TIMESTAMP_HEADER: &str = "telnyx-timestamp";

/// Parses the base64 public key Telnyx shows in its portal.
pub fn parse_public_key(b64: &str) -> Result<VerifyingKey, String> {
    let bytes = B64
        .decode(b64.trim())
        .map_err(|_| "expected a base64 Ed25519 public key, it does not decode".to_owned())?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|v: Vec<u8>| format!("expected 32 bytes, got {}", v.len()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| "not a valid Ed25519 public key".to_owned())
}

/// Parses a base64 32-byte Ed25519 seed (used by `hookline sign` and the tests).
pub fn parse_signing_key(b64: &str) -> Result<SigningKey, String> {
    let bytes = B64
        .decode(b64.trim())
        .map_err(|_| "expected a base64 Ed25519 private key seed".to_owned())?;
    let seed: [u8; 32] = bytes
        .try_into()
        .map_err(|v: Vec<u8>| format!("expected a 32-byte seed, got {} bytes", v.len()))?;
    Ok(SigningKey::from_bytes(&seed))
}

fn signed_bytes(timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(timestamp.len() + 1 + body.len());
    msg.extend_from_slice(timestamp.as_bytes());
    msg.push(b'|');
    msg.extend_from_slice(body);
    msg
}

/// The `telnyx-signature-ed25519` value for these inputs.
pub fn sign(key: &SigningKey, timestamp: i64, body: &[u8]) -> String {
    let sig = key.sign(&signed_bytes(&timestamp.to_string(), body));
    B64.encode(sig.to_bytes())
}

pub fn verify(
    key: &VerifyingKey,
    signature: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
    now: i64,
    tolerance_secs: u64,
) -> Result<(), SignatureError> {
    let signature = signature.ok_or(SignatureError::MissingHeader(SIGNATURE_HEADER))?;
    let timestamp = timestamp.ok_or(SignatureError::MissingHeader(TIMESTAMP_HEADER))?;
    check_timestamp(TIMESTAMP_HEADER, timestamp, now, tolerance_secs)?;
    let raw = B64
        .decode(signature.trim())
        .map_err(|_| SignatureError::MalformedHeader(SIGNATURE_HEADER))?;
    let raw: [u8; 64] = raw
        .try_into()
        .map_err(|_| SignatureError::MalformedHeader(SIGNATURE_HEADER))?;
    key.verify(
        &signed_bytes(timestamp.trim(), body),
        &Signature::from_bytes(&raw),
    )
    .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    #[test]
    fn sign_then_verify() {
        let sig = sign(&key(), 1000, b"{\"a\":1}");
        let pk = key().verifying_key();
        assert_eq!(
            verify(&pk, Some(&sig), Some("1000"), b"{\"a\":1}", 1000, 300),
            Ok(())
        );
        assert_eq!(
            verify(&pk, Some(&sig), Some("1000"), b"{\"a\":2}", 1000, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&pk, Some(&sig), Some("1001"), b"{\"a\":1}", 1000, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&pk, Some(&sig), Some("1"), b"{\"a\":1}", 1000, 300),
            Err(SignatureError::StaleTimestamp)
        );
        assert_eq!(
            verify(&pk, Some("AAAA"), Some("1000"), b"", 1000, 300),
            Err(SignatureError::MalformedHeader(SIGNATURE_HEADER))
        );
        assert_eq!(
            verify(&pk, None, Some("1000"), b"", 1000, 300),
            Err(SignatureError::MissingHeader(SIGNATURE_HEADER))
        );
    }

    #[test]
    fn key_parsing_explains_itself() {
        let pk = B64.encode(key().verifying_key().to_bytes());
        assert!(parse_public_key(&pk).is_ok());
        assert!(parse_public_key("!!").unwrap_err().contains("base64"));
        assert!(parse_public_key("AAAA").unwrap_err().contains("32 bytes"));
    }
}
