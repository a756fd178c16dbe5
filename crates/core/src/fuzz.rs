//! Fuzz harnesses for everything on the untrusted path, shared by the libFuzzer targets in
//! `fuzz/` and by the normal test suite, which replays the checked-in corpus through them
//! (`tests/fuzz_corpus.rs`). Each harness asserts properties, not just "no panic":
//!
//! - a signature is accepted only if it is the one the key really produces;
//! - subjects are always valid, wildcard-free NATS subjects;
//! - dedup ids are always safe header values.
//!
//! Inputs are split into fields on `\n` so one byte string can drive several headers and a body.

use crate::providers::{Headers, Provider, Providers, Request};
use crate::signature::{ed25519, svix};
use crate::subject;

/// The fixed Svix secret the harnesses verify against.
pub const SVIX_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// The fixed Ed25519 seed (base64) the harnesses verify against.
pub const ED25519_SEED: &str = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
/// The `now` every harness uses, so timestamps near it are inside the tolerance.
pub const NOW: i64 = 1_795_168_800;
const TOLERANCE: u64 = 300;

/// Splits `data` on `\n` into exactly `N` fields (the last one keeps the rest, newlines and all).
fn fields<const N: usize>(data: &[u8]) -> [&[u8]; N] {
    let mut out = [&data[data.len()..]; N];
    let mut rest = data;
    for slot in out.iter_mut().take(N - 1) {
        match rest.iter().position(|b| *b == b'\n') {
            Some(i) => {
                *slot = &rest[..i];
                rest = &rest[i + 1..];
            }
            None => {
                *slot = rest;
                rest = &rest[rest.len()..];
            }
        }
    }
    out[N - 1] = rest;
    out
}

fn text(b: &[u8]) -> Option<&str> {
    std::str::from_utf8(b).ok()
}

/// Svix header parsing and verification: `id \n timestamp \n signature-header \n body`.
pub fn svix_signature(data: &[u8]) {
    svix_accepts(data);
}

/// [`svix_signature`], saying whether the input was accepted.
pub fn svix_accepts(data: &[u8]) -> bool {
    let [id, ts, sig, body] = fields::<4>(data);
    let secret = svix::SvixSecret::parse(SVIX_SECRET).expect("fixed secret parses");
    let (id, ts, sig) = (text(id), text(ts), text(sig));
    let verdict = svix::verify(
        std::slice::from_ref(&secret),
        id,
        ts,
        sig,
        body,
        NOW,
        TOLERANCE,
    );
    let precheck = svix::precheck(id, ts, sig, NOW, TOLERANCE);
    // The pre-check sees only headers: it may pass what verification rejects, never the reverse.
    assert!(
        verdict.is_err() || precheck.is_ok(),
        "pre-check rejected an accepted signature"
    );
    if verdict.is_ok() {
        let (id, ts, sig) = (id.unwrap(), ts.unwrap(), sig.unwrap());
        let ts: i64 = ts.trim().parse().expect("an accepted timestamp parses");
        let genuine = secret.sign(id, ts, body);
        assert!(
            sig.split_whitespace().any(|entry| entry == genuine),
            "accepted a signature header without the genuine entry"
        );
    }
    verdict.is_ok()
}

/// Ed25519 header parsing and verification: `timestamp \n signature \n body`.
pub fn ed25519_signature(data: &[u8]) {
    ed25519_accepts(data);
}

/// The header names the Ed25519 harness reports errors with.
const ED25519_NAMES: ed25519::HeaderNames = ed25519::HeaderNames {
    signature: "signature",
    timestamp: "timestamp",
};

/// [`ed25519_signature`], saying whether the input was accepted.
pub fn ed25519_accepts(data: &[u8]) -> bool {
    let [ts, sig, body] = fields::<3>(data);
    let key = ed25519::parse_signing_key(ED25519_SEED).expect("fixed seed parses");
    let (ts, sig) = (text(ts), text(sig));
    static PUBLIC: std::sync::OnceLock<ed25519::PublicKey> = std::sync::OnceLock::new();
    let public = PUBLIC.get_or_init(|| {
        ed25519::PublicKey::from_bytes(key.verifying_key().to_bytes()).expect("a genuine key")
    });
    let verdict = ed25519::verify(&ED25519_NAMES, public, sig, ts, body, NOW, TOLERANCE);
    let precheck = ed25519::precheck(&ED25519_NAMES, sig, ts, NOW, TOLERANCE);
    assert!(
        verdict.is_err() || precheck.is_ok(),
        "pre-check rejected an accepted signature"
    );
    if verdict.is_ok() {
        let ts: i64 = ts
            .unwrap()
            .trim()
            .parse()
            .expect("an accepted timestamp parses");
        // Ed25519 signing is deterministic: anything else accepted would be a forgery.
        assert_eq!(
            sig.unwrap().trim(),
            ed25519::sign(&key, ts, body),
            "accepted a signature that is not the genuine one"
        );
    }
    verdict.is_ok()
}

/// Every provider's envelope and decoder on arbitrary bytes: `svix-id \n body`. Whatever the
/// payload says, the subject and dedup id built from it must be safe to hand to NATS.
pub fn payloads(data: &[u8]) {
    let [id, body] = fields::<2>(data);
    let id = String::from_utf8_lossy(id);
    let headers = [(svix::ID_HEADER, id.as_ref())];
    let providers = Providers::decoders();
    for name in providers.names() {
        let provider = providers.get(name).expect("listed");
        let envelope = provider.envelope(&headers, body);
        let event_type = envelope
            .event_type
            .as_deref()
            .unwrap_or(subject::UNPARSED_EVENT_TYPE);
        check_subject(&subject::subject(provider.name(), event_type));
        let label = provider.event_type_label(event_type);
        assert!(label == "other" || provider.known_event_types().contains(&label));
        check_message_id(&subject::message_id(
            provider.name(),
            envelope.event_id.as_deref(),
            body,
        ));
        // A provider that splits a request: each part is what ingest publishes.
        for part in provider.split(body).into_iter().flatten() {
            let envelope = provider.envelope(&headers, &part);
            check_message_id(&subject::message_id(
                provider.name(),
                envelope.event_id.as_deref(),
                &part,
            ));
            let _ = provider.decode(&headers, &part);
        }
        if let Some(json) = provider.stored_payload(body) {
            // The database's column is JSON: whatever the body, its rendition must parse.
            assert!(
                serde_json::from_str::<serde_json::Value>(&json).is_ok(),
                "{json}"
            );
        }
        if let Ok(event) = provider.decode(&headers, body) {
            assert_eq!(event.provider, provider.name());
            assert!(
                !(event.status.is_some() && event.engagement.is_some()),
                "an event is a status or an engagement, never both"
            );
            assert!(
                !event.unmapped || (event.status.is_none() && event.engagement.is_none()),
                "an unmapped event changes nothing"
            );
        }
        // The worker looks headers up case-insensitively; make sure that path holds too.
        assert_eq!(headers.get("SVIX-ID"), Some(id.as_ref()));
    }
}

/// Key and secret parsing from configuration: one value per input.
pub fn keys(data: &[u8]) {
    let Some(s) = text(data) else { return };
    if let Err(e) = svix::SvixSecret::parse(s) {
        // Errors are fixed texts, so they can never echo (part of) the secret.
        let fixed = [
            svix::SvixSecret::parse("whsec_%").unwrap_err(),
            svix::SvixSecret::parse("whsec_").unwrap_err(),
        ];
        assert!(
            fixed.contains(&e),
            "a secret's parse error must be a fixed text: {e}"
        );
    }
    let _ = ed25519::parse_public_key(s);
    let _ = ed25519::parse_signing_key(s);
}

/// A generic sources file (TOML) from untrusted bytes, then — if it builds — the configured
/// source verifying and decoding a request: `toml \0 body`.
pub fn sources_config(data: &[u8]) {
    let (toml_part, body) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[data.len()..]),
    };
    let Some(text) = text(toml_part) else { return };
    let Ok(configs) = crate::providers::parse_sources(text) else {
        return;
    };
    for config in &configs {
        let Ok(source) = crate::providers::GenericSource::new(config, vec![b"k".to_vec()]) else {
            continue;
        };
        let headers = [
            ("x-signature", "00"),
            ("x-id", "e-1"),
            ("x-timestamp", "1795168800"),
        ];
        assert!(
            source.verify(&Request::new(&headers, body), NOW).is_err(),
            "a made-up signature was accepted"
        );
        let envelope = source.envelope(&headers, body);
        let event_type = envelope
            .event_type
            .as_deref()
            .unwrap_or(subject::UNPARSED_EVENT_TYPE);
        check_subject(&subject::subject(source.name(), event_type));
        check_message_id(&subject::message_id(
            source.name(),
            envelope.event_id.as_deref(),
            body,
        ));
        if let Ok(event) = source.decode(&headers, body) {
            assert_eq!(event.provider, source.name());
            assert!(!(event.status.is_some() && event.engagement.is_some()));
        }
    }
}

/// `webhook.<tokens>`: non-empty tokens of `[A-Za-z0-9_-]`, no wildcards, bounded length.
pub fn check_subject(s: &str) {
    assert!(s.len() <= 128, "subject too long: {s:?}");
    for token in s.split('.') {
        assert!(!token.is_empty(), "empty token in {s:?}");
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "bad subject character in {s:?}"
        );
    }
}

/// A `Nats-Msg-Id` must be one printable line of bounded length.
pub fn check_message_id(id: &str) {
    assert!(
        id.len() <= subject::MAX_MESSAGE_ID_LEN,
        "dedup id too long: {}",
        id.len()
    );
    assert!(
        id.bytes().all(|b| b.is_ascii_graphic()),
        "dedup id is not printable ASCII: {id:?}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_split_and_keep_the_rest() {
        assert_eq!(fields::<3>(b"a\nb\nc\nd"), [&b"a"[..], b"b", b"c\nd"]);
        assert_eq!(fields::<3>(b"a"), [&b"a"[..], b"", b""]);
    }

    #[test]
    fn genuine_signatures_pass_through_the_harnesses() {
        let secret = svix::SvixSecret::parse(SVIX_SECRET).unwrap();
        let sig = secret.sign("msg_1", NOW, b"{}");
        assert!(svix_accepts(
            format!("msg_1\n{NOW}\n{sig}\n{{}}").as_bytes()
        ));
        assert!(
            !svix_accepts(format!("msg_2\n{NOW}\n{sig}\n{{}}").as_bytes()),
            "another id"
        );
        let key = ed25519::parse_signing_key(ED25519_SEED).unwrap();
        let sig = ed25519::sign(&key, NOW, b"{}");
        assert!(ed25519_accepts(format!("{NOW}\n{sig}\n{{}}").as_bytes()));
        assert!(
            !ed25519_accepts(format!("{NOW}\n{sig}\n{{ }}").as_bytes()),
            "another body"
        );
    }

    #[test]
    #[should_panic(expected = "not printable")]
    fn message_id_check_catches_control_characters() {
        check_message_id("telnyx:a\r\nb");
    }
}
