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
