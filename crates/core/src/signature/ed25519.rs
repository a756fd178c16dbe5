//! The Ed25519 scheme: a signature header holds a base64 Ed25519 signature over
//! `"{timestamp}|{body}"`, where the timestamp (unix seconds) comes from a second header; checked
//! against the account's base64 public key. The provider names the two headers.
//!
//! ## What is accepted: exactly what libsodium accepts
//!
//! Providers' own libraries verify with libsodium (the providers' files say which), whose
//! `crypto_sign_verify_detached` is *strict and cofactorless*:
//!
//! 1. `s` (the signature's second half) must be canonical: `s < ℓ`;
//! 2. `R` (its first half) must not encode a point of small order;
//! 3. the public key must be a canonical encoding of a point that is not of small order;
//! 4. with `k = SHA-512(R ‖ A ‖ message) mod ℓ`, the encoding of `[s]B − [k]A` must equal `R`'s
//!    32 bytes (no multiplication by the cofactor).
//!
//! [`verify`] checks exactly these. (3) is checked once, when the key is parsed: a key that fails
//! it is refused at start, naming the variable. In (2), `[s]B − [k]A` for a key of prime order is
//! in the prime-order subgroup, and the encoding of a point there can only be equal to a
//! small-order `R` if both are the identity, so rejecting `R` = the identity's encoding is the
//! whole of (2). ed25519-dalek's plain `verify` accepts that signature (the key's holder can make
//! one: `R` = identity, `s = k·a`); libsodium and this module do not (`testdata/ed25519/`,
//! vectors whose verdicts come from PyNaCl).
//!
//! Cofactored or batch verification (several signatures checked as one random linear
//! combination, about twice as fast per signature) would accept signatures whose `R` carries a
//! small-order component, which libsodium rejects; it is not used.
//!
//! ## How it is fast
//!
//! The key is fixed for the life of the process, so [`PublicKey`] precomputes a table of the
//! multiples of `−A` (as the library does for `B`): `[s]B + [k](−A)` is then two table
//! multiplications instead of a double-scalar multiplication that rebuilds `A`'s table on every
//! call, and the hash is fed the timestamp, `|` and the body without copying them together.
//! About 30 µs instead of 33–38 µs per signature on the benchmark machine (`bench/run.sh --only
//! verify`; docs/performance.md).

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsBasepointTableRadix32};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::BasepointTable as _;
use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest as _, Sha512};

use super::{check_timestamp, KeyError, SignatureError};

/// The headers a provider sends this scheme's signature and timestamp in.
#[derive(Debug, Clone, Copy)]
pub struct HeaderNames {
    pub signature: &'static str,
    pub timestamp: &'static str,
}

/// An Ed25519 public key ready to verify: checked (canonical, not of small order) and with its
/// table of multiples computed, once.
pub struct PublicKey {
    bytes: [u8; 32],
    /// Multiples of `−A`.
    minus_a: EdwardsBasepointTableRadix32,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", B64.encode(self.bytes))
    }
}

impl PublicKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, KeyError> {
        let point = CompressedEdwardsY(bytes)
            .decompress()
            .ok_or(KeyError::NotAPoint)?;
        if point.compress().0 != bytes {
            return Err(KeyError::NotCanonical);
        }
        if point.is_small_order() {
            return Err(KeyError::SmallOrder);
        }
        Ok(Self {
            bytes,
            minus_a: EdwardsBasepointTableRadix32::create(&-point),
        })
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.bytes
    }

    /// The strict, cofactorless check of the module's documentation on `parts` (concatenated).
    pub fn verify(&self, parts: &[&[u8]], signature: &[u8; 64]) -> bool {
        let r: [u8; 32] = signature[..32].try_into().expect("32 of 64 bytes");
        let s: [u8; 32] = signature[32..].try_into().expect("32 of 64 bytes");
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s)) else {
            return false;
        };
        if r == IDENTITY {
            return false;
        }
        let mut hash = Sha512::new();
        hash.update(r);
        hash.update(self.bytes);
        for part in parts {
            hash.update(part);
        }
        let k = Scalar::from_bytes_mod_order_wide(&hash.finalize().into());
        let r_check = basepoint() * &s + &self.minus_a * &k;
        r_check.compress().0 == r
    }
}

/// The encoding of the identity, the only small-order point a valid `R` could equal.
const IDENTITY: [u8; 32] = {
    let mut b = [0u8; 32];
    b[0] = 1;
    b
};

fn basepoint() -> &'static EdwardsBasepointTableRadix32 {
    static TABLE: OnceLock<EdwardsBasepointTableRadix32> = OnceLock::new();
    TABLE.get_or_init(|| EdwardsBasepointTableRadix32::create(&ED25519_BASEPOINT_POINT))
}

/// Parses a base64 Ed25519 public key, as providers show it in their portals.
pub fn parse_public_key(b64: &str) -> Result<PublicKey, KeyError> {
    let bytes = B64
        .decode(b64.trim())
        .map_err(|_| KeyError::NotBase64("a base64 Ed25519 public key"))?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|v: Vec<u8>| KeyError::Length {
        expected: 32,
        got: v.len(),
    })?;
    PublicKey::from_bytes(bytes)
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
    key: &PublicKey,
    signature: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
    now: i64,
    tolerance_secs: u64,
) -> Result<(), SignatureError> {
    verify_any(
        names,
        std::slice::from_ref(key),
        signature,
        timestamp,
        body,
        now,
        tolerance_secs,
    )
}

/// [`verify`] against several keys (accounts, or a rotation): accepted if any key verifies. The
/// headers are parsed once; each further key costs one verification, and only when the ones
/// before it failed.
pub fn verify_any(
    names: &HeaderNames,
    keys: &[PublicKey],
    signature: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
    now: i64,
    tolerance_secs: u64,
) -> Result<(), SignatureError> {
    let (raw, timestamp) = parse_headers(names, signature, timestamp, now, tolerance_secs)?;
    let parts: [&[u8]; 3] = [timestamp.trim().as_bytes(), b"|", body];
    if keys.iter().any(|key| key.verify(&parts, &raw)) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
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
        let pk = PublicKey::from_bytes(key().verifying_key().to_bytes()).unwrap();
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
