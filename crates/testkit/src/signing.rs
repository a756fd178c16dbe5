//! Correctly signed test requests for both providers, with keys shared by tests and the servers
//! they start. Signing uses hookline-core's signers, which are themselves checked against
//! independent implementations (testdata/).

use base64::Engine as _;
use hookline_core::signature::{ed25519, svix::SvixSecret};

/// Test-only Telnyx seed (base64) and the matching public key ingest is configured with.
pub const TELNYX_SEED_B64: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
/// Test-only Resend secrets: the current one and one being rotated out.
pub const RESEND_SECRET: &str = "whsec_aG9va2xpbmUtcmVzZW5kLWN1cnJlbnQtc2VjcmV0ISE=";
pub const RESEND_OLD_SECRET: &str = "whsec_aG9va2xpbmUtcmVzZW5kLXByZXZpb3VzLXNlY3JldCE=";

pub fn telnyx_public_key_b64() -> String {
    let key = ed25519::parse_signing_key(TELNYX_SEED_B64).unwrap();
    base64::engine::general_purpose::STANDARD.encode(key.verifying_key().to_bytes())
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Headers for a Telnyx request signed at `ts`.
pub fn telnyx_headers(body: &str, ts: i64) -> Vec<(String, String)> {
    let key = ed25519::parse_signing_key(TELNYX_SEED_B64).unwrap();
    vec![
        (
            ed25519::SIGNATURE_HEADER.into(),
            ed25519::sign(&key, ts, body.as_bytes()),
        ),
        (ed25519::TIMESTAMP_HEADER.into(), ts.to_string()),
    ]
}

/// Headers for a Resend request with `svix-id` = `event_id`, signed at `ts` with `secret`.
pub fn resend_headers(secret: &str, event_id: &str, body: &str, ts: i64) -> Vec<(String, String)> {
    let s = SvixSecret::parse(secret).unwrap();
    vec![
        ("svix-id".into(), event_id.into()),
        ("svix-timestamp".into(), ts.to_string()),
        (
            "svix-signature".into(),
            s.sign(event_id, ts, body.as_bytes()),
        ),
    ]
}

pub use hookline_core::providers::samples::{resend_body, telnyx_body};
