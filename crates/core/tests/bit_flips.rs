//! Signature verification rejects every single-bit change of the body, the timestamp, the event
//! id (Svix) and the signature itself: exhaustively for real-shaped webhooks, and for random
//! bodies and timestamps by proptest.

use hookline_core::providers::samples;
use hookline_core::signature::{ed25519, svix};
use proptest::prelude::*;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SEED: &str = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
const NOW: i64 = 1_795_168_800;
const TOLERANCE: u64 = 300;

/// Every copy of `data` with exactly one bit flipped.
fn flips(data: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    (0..data.len() * 8).map(move |bit| {
        let mut d = data.to_vec();
        d[bit / 8] ^= 1 << (bit % 8);
        d
    })
}

/// Headers must be text; a flip that leaves UTF-8 behind could not arrive as a header at all,
/// so it is rejected as missing (what the HTTP layer gives us) — still a rejection.
fn as_text(d: &[u8]) -> Option<String> {
    String::from_utf8(d.to_vec()).ok()
}

struct Svix {
    secret: svix::SvixSecret,
    id: String,
    ts: String,
    sig: String,
    body: Vec<u8>,
}

impl Svix {
    fn new(id: &str, ts: i64, body: &[u8]) -> Self {
        let secret = svix::SvixSecret::parse(SECRET).unwrap();
        let sig = secret.sign(id, ts, body);
        Self {
            secret,
            id: id.into(),
            ts: ts.to_string(),
            sig,
            body: body.to_vec(),
        }
    }

    fn verify(&self, id: Option<&str>, ts: Option<&str>, sig: Option<&str>, body: &[u8]) -> bool {
        svix::verify(
            std::slice::from_ref(&self.secret),
            id,
            ts,
            sig,
            body,
            NOW,
            TOLERANCE,
        )
        .is_ok()
    }

    /// Returns how many variants were checked; panics on the first accepted one.
    fn check_all_flips(&self) -> usize {
        let (id, ts, sig) = (Some(self.id.as_str()), Some(&*self.ts), Some(&*self.sig));
        assert!(
            self.verify(id, ts, sig, &self.body),
            "the genuine request verifies"
        );
        let mut n = 0;
        for body in flips(&self.body) {
            assert!(!self.verify(id, ts, sig, &body), "body flip accepted");
            n += 1;
        }
        for v in flips(self.id.as_bytes()) {
            assert!(
                !self.verify(as_text(&v).as_deref(), ts, sig, &self.body),
                "id flip accepted: {v:?}"
            );
            n += 1;
        }
        for v in flips(self.ts.as_bytes()) {
            assert!(
                !self.verify(id, as_text(&v).as_deref(), sig, &self.body),
                "timestamp flip accepted: {v:?}"
            );
            n += 1;
        }
        for v in flips(self.sig.as_bytes()) {
            let v = as_text(&v);
            assert!(
                !self.verify(id, ts, v.as_deref(), &self.body),
                "signature flip accepted: {v:?}"
            );
            n += 1;
        }
        n
    }
}

struct Telnyx {
    key: ed25519::PublicKey,
    ts: String,
    sig: String,
    body: Vec<u8>,
}

impl Telnyx {
    fn new(ts: i64, body: &[u8]) -> Self {
        let key = ed25519::parse_signing_key(SEED).unwrap();
        let sig = ed25519::sign(&key, ts, body);
        Self {
            key: ed25519::PublicKey::from_bytes(key.verifying_key().to_bytes()).unwrap(),
            ts: ts.to_string(),
            sig,
            body: body.to_vec(),
        }
    }

    fn verify(&self, sig: Option<&str>, ts: Option<&str>, body: &[u8]) -> bool {
        let names = ed25519::HeaderNames {
            signature: "telnyx-signature-ed25519",
            timestamp: "telnyx-timestamp",
        };
        ed25519::verify(&names, &self.key, sig, ts, body, NOW, TOLERANCE).is_ok()
    }

    fn check_all_flips(&self) -> usize {
        let (ts, sig) = (Some(&*self.ts), Some(&*self.sig));
        assert!(
            self.verify(sig, ts, &self.body),
            "the genuine request verifies"
        );
        let mut n = 0;
        for body in flips(&self.body) {
            assert!(!self.verify(sig, ts, &body), "body flip accepted");
            n += 1;
        }
        for v in flips(self.ts.as_bytes()) {
            assert!(
                !self.verify(sig, as_text(&v).as_deref(), &self.body),
                "timestamp flip accepted: {v:?}"
            );
            n += 1;
        }
        for v in flips(self.sig.as_bytes()) {
            let v = as_text(&v);
            assert!(
                !self.verify(v.as_deref(), ts, &self.body),
                "signature flip accepted: {v:?}"
            );
            n += 1;
        }
        n
    }
}

#[test]
fn every_single_bit_flip_of_a_resend_webhook_is_rejected() {
    let body = samples::resend_body("email.bounced", "em-1", "2026-11-23T10:00:00Z");
    let checked = Svix::new("msg_2Wvc0dDc4Ve0k0", NOW, body.as_bytes()).check_all_flips();
    assert!(checked > 8 * body.len(), "{checked}");
}

#[test]
fn every_single_bit_flip_of_a_telnyx_webhook_is_rejected() {
    let body = samples::telnyx_body("ev-1", "msg-1", "delivered", "2026-11-23T10:00:00Z");
    let checked = Telnyx::new(NOW, body.as_bytes()).check_all_flips();
    assert!(checked > 8 * body.len(), "{checked}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn svix_rejects_every_flip_of_random_requests(
        id in "[a-zA-Z0-9_]{1,24}",
        skew in -(TOLERANCE as i64)..=(TOLERANCE as i64),
        body in prop::collection::vec(any::<u8>(), 0..96),
    ) {
        Svix::new(&id, NOW + skew, &body).check_all_flips();
    }

    #[test]
    fn telnyx_rejects_every_flip_of_random_requests(
        skew in -(TOLERANCE as i64)..=(TOLERANCE as i64),
        body in prop::collection::vec(any::<u8>(), 0..96),
    ) {
        Telnyx::new(NOW + skew, &body).check_all_flips();
    }
}

/// Every single-bit change of what a built-in provider's scheme covers is rejected (or says the
/// same thing: a form field written another way decodes to the same value): the headers it
/// signs or checks (all but `content-type`), the body where the signature covers it, and the URL
/// where it covers that. Made by each provider's own signer with fresh keys.
fn check_provider_flips(name: &str, body_covered: bool) -> usize {
    use hookline_core::providers::{built_in, Request, Sample, SampleStatus};
    let b = built_in(name).unwrap();
    let keys = b.keygen();
    let provider = b.configure(&keys, TOLERANCE).unwrap().unwrap();
    let sample = b
        .sample(&Sample {
            event_id: "ev-flip",
            message_id: "msg-flip",
            status: SampleStatus::Undelivered,
            at: "2026-11-20T09:59:00.000Z",
        })
        .unwrap();
    let url = "https://hooks.example.com/webhooks/x?a=1";
    let (body, headers) = b
        .signer(&keys)
        .unwrap()
        .request(url, "ev-flip", sample.as_bytes(), NOW);
    let verifies = |h: &Vec<(String, String)>, body: &[u8], url: &str| {
        provider
            .verify(
                &Request {
                    headers: h,
                    body,
                    url,
                    fetched: None,
                },
                NOW,
            )
            .is_ok()
    };
    assert!(
        verifies(&headers, &body, url),
        "{name}: the genuine request"
    );
    // The same content, read as the decoder reads it.
    let same = |other: &[u8]| {
        let h = [(hookline_core::providers::RECEIVED_AT, "1")];
        match (provider.decode(&h, &body), provider.decode(&h, other)) {
            (Ok(a), Ok(b)) => {
                a == b && provider.stored_payload(&body) == provider.stored_payload(other)
            }
            _ => false,
        }
    };
    let mut n = 0;
    for (i, (k, v)) in headers.iter().enumerate() {
        if k.eq_ignore_ascii_case("content-type") {
            continue;
        }
        for flipped in flips(v.as_bytes()) {
            let mut h = headers.clone();
            match as_text(&flipped) {
                Some(t) => h[i].1 = t,
                None => {
                    h.remove(i);
                }
            }
            // An authorization scheme is case-insensitive (RFC 7235): `basic` is `Basic`.
            let same_scheme = k.eq_ignore_ascii_case("authorization")
                && h.get(i).is_some_and(|(_, t)| {
                    t.len() == v.len() && t[..5].eq_ignore_ascii_case(&v[..5]) && t[5..] == v[5..]
                });
            assert!(
                !verifies(&h, &body, url) || same_scheme,
                "{name}: {k} flip accepted: {:?}",
                h.get(i)
            );
            n += 1;
        }
    }
    if body_covered {
        for flipped in flips(&body) {
            assert!(
                !verifies(&headers, &flipped, url) || same(&flipped),
                "{name}: body flip accepted: {}",
                String::from_utf8_lossy(&flipped)
            );
            n += 1;
        }
    }
    n
}

#[test]
fn every_single_bit_flip_of_what_each_newer_scheme_covers_is_rejected() {
    // Twilio also signs the URL.
    assert!(check_provider_flips("twilio", true) > 1000);
    assert!(check_provider_flips("sendgrid", true) > 1000);
    // Postmark signs nothing: only its credential is checked.
    assert!(check_provider_flips("postmark", false) > 100);
    let b = hookline_core::providers::built_in("twilio").unwrap();
    let keys = b.keygen();
    let p = b.configure(&keys, TOLERANCE).unwrap().unwrap();
    let url = "https://hooks.example.com/webhooks/twilio?a=1";
    let body = b"MessageSid=SM1&MessageStatus=delivered";
    let headers = b.signer(&keys).unwrap().sign(url, "", body, NOW);
    for flipped in flips(url.as_bytes()) {
        let Some(u) = as_text(&flipped) else { continue };
        let r = hookline_core::providers::Request {
            headers: &headers,
            body,
            url: &u,
            fetched: None,
        };
        // Flipping a port-less URL can add nothing but a character: never the same URL.
        assert!(p.verify(&r, NOW).is_err(), "URL flip accepted: {u}");
    }
}

/// Mailgun's signature covers its timestamp and token only: every flip of the signature block
/// is rejected, and a flip of the event's id changes the event its token vouches for.
#[test]
fn every_single_bit_flip_of_a_mailgun_signature_block_is_rejected() {
    use hookline_core::providers::{built_in, Request, Sample, SampleStatus, NO_HEADERS};
    let b = built_in("mailgun").unwrap();
    let keys = b.keygen();
    let p = b.configure(&keys, TOLERANCE).unwrap().unwrap();
    let sample = b
        .sample(&Sample {
            event_id: "ev-flip",
            message_id: "msg-flip",
            status: SampleStatus::Delivered,
            at: "2026-11-20T09:59:00.000Z",
        })
        .unwrap();
    let (body, _) = b
        .signer(&keys)
        .unwrap()
        .request("", "", sample.as_bytes(), NOW);
    let signed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(p.verify(&Request::new(&NO_HEADERS, &body), NOW).is_ok());
    let mut n = 0;
    for field in ["timestamp", "token", "signature"] {
        let value = signed["signature"][field].as_str().unwrap().to_owned();
        for flipped in flips(value.as_bytes()) {
            let Some(t) = as_text(&flipped) else { continue };
            let mut v = signed.clone();
            v["signature"][field] = t.into();
            let b = v.to_string();
            assert!(
                p.verify(&Request::new(&NO_HEADERS, b.as_bytes()), NOW)
                    .is_err(),
                "{field}: {b}"
            );
            n += 1;
        }
    }
    assert!(n > 500, "{n}");
    let token = |v: &serde_json::Value| {
        let b = v.to_string();
        p.replay_token(&Request::new(&NO_HEADERS, b.as_bytes()))
            .unwrap()
    };
    let genuine = token(&signed);
    for flipped in flips(b"ev-flip") {
        let Some(t) = as_text(&flipped) else { continue };
        let mut v = signed.clone();
        v["event-data"]["id"] = t.into();
        let other = token(&v);
        assert_eq!(other.token, genuine.token);
        assert_ne!(
            other.vouches_for, genuine.vouches_for,
            "another event, the same token"
        );
    }
}
