//! Correctly signed test requests for both providers, with keys shared by tests and the servers
//! they start. Signing goes through each provider's own [`Signer`], the one the CLI and the
//! benchmark use, itself checked against independent implementations (testdata/).

use base64::Engine as _;
use hookline_core::providers::{built_in, Signer, Values};
use hookline_core::signature::ed25519;

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

/// The verification keys ingest is started with in tests: the Telnyx public key and both Resend
/// secrets (the current one and the one being rotated out).
pub fn provider_keys() -> Values {
    let mut v = Values::new();
    v.set_var("TELNYX_PUBLIC_KEY", vec![telnyx_public_key_b64()]);
    v.set_var(
        "RESEND_WEBHOOK_SECRET",
        vec![RESEND_SECRET.into(), RESEND_OLD_SECRET.into()],
    );
    v
}

/// The provider's signer with the test keys (`secret` for Resend).
fn signer(provider: &str, var: &'static str, key: &str) -> Box<dyn Signer> {
    let mut v = Values::new();
    v.set_var(var, vec![key.to_owned()]);
    built_in(provider).unwrap().signer(&v).unwrap()
}

/// Headers for a Telnyx request signed at `ts`.
pub fn telnyx_headers(body: &str, ts: i64) -> Vec<(String, String)> {
    signer("telnyx", "TELNYX_SIGNING_KEY", TELNYX_SEED_B64).sign("", "", body.as_bytes(), ts)
}

/// Headers for a Resend request with `svix-id` = `event_id`, signed at `ts` with `secret`.
pub fn resend_headers(secret: &str, event_id: &str, body: &str, ts: i64) -> Vec<(String, String)> {
    signer("resend", "RESEND_WEBHOOK_SECRET", secret).sign("", event_id, body.as_bytes(), ts)
}

pub use hookline_core::providers::samples::{resend_body, telnyx_body};
