//! How events are named on the broker: the subject `webhook.{provider}.{event_type}` and the
//! `Nats-Msg-Id` used for JetStream's duplicate window.
//!
//! Event types come from untrusted payloads, so they are reduced to subject-safe tokens here.

use sha2::{Digest, Sha256};

/// Subject prefix of the main stream (`webhook.>`).
pub const SUBJECT_PREFIX: &str = "webhook";

/// The event type used when a signed payload cannot be parsed; the worker dead-letters it.
pub const UNPARSED_EVENT_TYPE: &str = "unparsed";

const MAX_EVENT_TYPE_LEN: usize = 64;

/// `webhook.{provider}.{event_type}`, with the event type's characters limited to
/// `[A-Za-z0-9_-]` and non-empty dot-separated tokens, so no payload can inject wildcards.
pub fn subject(provider: &str, event_type: &str) -> String {
    let mut clean = String::with_capacity(event_type.len().min(MAX_EVENT_TYPE_LEN));
    for token in event_type.split('.').filter(|t| !t.is_empty()) {
        if !clean.is_empty() {
            clean.push('.');
        }
        clean.extend(token.chars().map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        }));
        if clean.len() >= MAX_EVENT_TYPE_LEN {
            clean.truncate(MAX_EVENT_TYPE_LEN);
            break;
        }
    }
    if clean.is_empty() || clean.ends_with('.') {
        clean = UNPARSED_EVENT_TYPE.to_owned();
    }
    format!("{SUBJECT_PREFIX}.{provider}.{clean}")
}

/// The dedup key: the provider's event id, prefixed by the provider so two providers' ids cannot
/// collide in one stream. Without an event id (unparseable payload) the body's hash stands in, so
/// a provider's retries of the same bytes are still deduplicated.
///
/// The id is used as-is only when it is printable ASCII of at most [`MAX_EVENT_ID_LEN`] bytes;
/// any other id (control characters, spaces, non-ASCII, huge) is replaced by its own hash, which
/// is just as stable for dedup and cannot break the broker's header framing.
pub fn message_id(provider: &str, event_id: Option<&str>, body: &[u8]) -> String {
    match event_id {
        Some(id) if id.len() <= MAX_EVENT_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic()) => {
            format!("{provider}:{id}")
        }
        Some(id) => format!("{provider}:id-sha256:{}", sha256_hex(id.as_bytes())),
        None => format!("{provider}:sha256:{}", sha256_hex(body)),
    }
}

/// Longest provider event id used verbatim in a dedup id.
pub const MAX_EVENT_ID_LEN: usize = 128;
/// Longest dedup id [`message_id`] can return for a provider name of up to 32 bytes.
pub const MAX_MESSAGE_ID_LEN: usize = 32 + 1 + MAX_EVENT_ID_LEN;

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_dotted_event_types() {
        assert_eq!(
            subject("telnyx", "message.finalized"),
            "webhook.telnyx.message.finalized"
        );
    }

    #[test]
    fn strips_wildcards_and_empty_tokens() {
        assert_eq!(subject("resend", "email.>"), "webhook.resend.email._");
        assert_eq!(subject("resend", "a..b. *"), "webhook.resend.a.b.__");
        assert_eq!(subject("resend", ""), "webhook.resend.unparsed");
        assert_eq!(subject("resend", "..."), "webhook.resend.unparsed");
    }

    #[test]
    fn bounds_length() {
        let long = "x".repeat(500);
        assert_eq!(subject("resend", &long).len(), "webhook.resend.".len() + 64);
    }

    #[test]
    fn message_id_prefers_event_id() {
        assert_eq!(message_id("telnyx", Some("abc"), b"{}"), "telnyx:abc");
        let hashed = message_id("telnyx", None, b"{}");
        assert!(hashed.starts_with("telnyx:sha256:"));
        assert_eq!(hashed, message_id("telnyx", None, b"{}"));
        assert_ne!(hashed, message_id("telnyx", None, b"{ }"));
    }

    #[test]
    fn unsafe_event_ids_are_hashed_stably() {
        let injected = message_id("telnyx", Some("a\r\nNats-Expected-Stream: x"), b"{}");
        assert!(injected.starts_with("telnyx:id-sha256:"), "{injected}");
        assert_eq!(
            injected,
            message_id(
                "telnyx",
                Some("a\r\nNats-Expected-Stream: x"),
                b"other body"
            )
        );
        let long = "x".repeat(MAX_EVENT_ID_LEN + 1);
        assert!(message_id("telnyx", Some(&long), b"").len() <= MAX_MESSAGE_ID_LEN);
        let exact = "x".repeat(MAX_EVENT_ID_LEN);
        assert_eq!(
            message_id("telnyx", Some(&exact), b""),
            format!("telnyx:{exact}")
        );
    }
}
