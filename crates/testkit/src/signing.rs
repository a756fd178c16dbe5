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

/// A Telnyx `message.finalized` (or `message.sent`) body.
pub fn telnyx_body(event_id: &str, message_id: &str, status: &str, occurred_at: &str) -> String {
    let event_type = if status == "sent" || status == "sending" || status == "queued" {
        "message.sent"
    } else {
        "message.finalized"
    };
    serde_json::json!({
        "data": {
            "event_type": event_type,
            "id": event_id,
            "occurred_at": occurred_at,
            "payload": {
                "direction": "outbound",
                "errors": if status.ends_with("failed") {
                    serde_json::json!([{"code": "40008", "title": "Undeliverable", "detail": "Carrier rejected the message."}])
                } else {
                    serde_json::json!([])
                },
                "id": message_id,
                "to": [{"phone_number": "+13125550123", "status": status, "carrier": "T-MOBILE USA, INC."}],
                "type": "SMS"
            },
            "record_type": "event"
        },
        "meta": {"attempt": 1, "delivered_to": "http://127.0.0.1/webhooks/telnyx"}
    })
    .to_string()
}

/// A Resend body of type `kind` (e.g. `email.delivered`) about `email_id`.
pub fn resend_body(kind: &str, email_id: &str, created_at: &str) -> String {
    let mut data = serde_json::json!({
        "created_at": created_at,
        "email_id": email_id,
        "from": "Acme <onboarding@resend.dev>",
        "to": ["someone@example.com"],
        "subject": "Hello"
    });
    if kind == "email.bounced" {
        data["bounce"] = serde_json::json!({"message": "Mailbox does not exist", "subType": "General", "type": "Permanent"});
    }
    serde_json::json!({"type": kind, "created_at": created_at, "data": data}).to_string()
}
