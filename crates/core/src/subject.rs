//! How events are named on the broker: the subject `webhook.{provider}.{event_type}` and the
//! `Nats-Msg-Id` used for JetStream's duplicate window.
//!
//! Event types come from untrusted payloads, so they are reduced to subject-safe tokens here.

use sha2::{Digest, Sha256};

/// Subject prefix of the main stream (`webhook.>`).
pub const SUBJECT_PREFIX: &str = "webhook";

/// Header ingest adds to every stored event: when it received it, in unix milliseconds. The
/// worker measures end-to-end latency from it.
pub const RECEIVED_AT_HEADER: &str = "Hookline-Received-At-Ms";

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
pub fn message_id(provider: &str, event_id: Option<&str>, body: &[u8]) -> String {
    match event_id {
        Some(id) => format!("{provider}:{id}"),
        None => {
            let digest = Sha256::digest(body);
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            format!("{provider}:sha256:{hex}")
        }
    }
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
}
