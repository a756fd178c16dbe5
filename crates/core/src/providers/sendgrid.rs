//! SendGrid Event Webhook (email), signed: ECDSA P-256 with SHA-256 over the
//! `X-Twilio-Email-Event-Webhook-Timestamp` value immediately followed by the raw body; the
//! signature header is base64 DER, the verification key base64 DER (SubjectPublicKeyInfo), one
//! per webhook and several per account (sendgrid-python's `EventWebhook.verify_signature`, which
//! uses `cryptography`). SendGrid does not say whether a retry is signed again, and retries for
//! 24 hours: the timestamp tolerance covers that span (a capture sent again inside it carries
//! the same `sg_event_id`s and is absorbed by dedup).
//!
//! A request is a JSON **array** of events: ingest publishes each as its own message
//! ([`Provider::split`]) with `sg_event_id` as its id. A split event no longer verifies on its
//! own (the signature covered the whole request); the log and the database keep each one, and a
//! replay re-publishes them one by one, never re-verified.
//!
//! The message a recipient row joins on is `{X-Message-Id}:{email}`: `sg_message_id` starts
//! with the send request's `X-Message-Id` (the part before the first `.`), shared by every
//! recipient of that request, so the address tells them apart. An application registers a
//! SendGrid recipient under that id (docs/providers.md).

use std::sync::Arc;

use base64::Engine as _;
use chrono::{DateTime, TimeZone as _, Utc};
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{
    DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _, EncodePublicKey as _,
};
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::{
    BuiltIn, ConfigError, DecodeError, Envelope, Headers, Provider, Request, Sample, SampleStatus,
    Setting, Signer, Values,
};
use crate::event::{DeliveryEvent, DeliveryStatus, Engagement, FailureClass};
use crate::signature::{check_timestamp, SignatureError};

pub static SENDGRID: SendGridKind = SendGridKind;

pub struct SendGridKind;

pub const SIGNATURE_HEADER: &str = "x-twilio-email-event-webhook-signature";
pub const TIMESTAMP_HEADER: &str = "x-twilio-email-event-webhook-timestamp";

const PUBLIC_KEY: Setting = Setting::new(
    "sendgrid-webhook-public-key",
    "SENDGRID_WEBHOOK_PUBLIC_KEY",
    "SendGrid signed Event Webhook verification key(s), base64 DER as SendGrid shows them, \
     comma-separated: one per webhook (an account may have several) or old and new during a \
     rotation. Without one, /webhooks/sendgrid answers 404.",
)
.secret()
.list();

const TOLERANCE: Setting = Setting::new(
    "sendgrid-timestamp-tolerance-secs",
    "SENDGRID_TIMESTAMP_TOLERANCE_SECS",
    "Largest accepted age (or skew) of a SendGrid signature's timestamp, in seconds: SendGrid \
     retries for 24 hours and does not say it signs a retry again, so the default covers it.",
)
.default("90000");

const VERIFY: [Setting; 2] = [PUBLIC_KEY, TOLERANCE];

const SIGNING_KEY: Setting = Setting::new(
    "sendgrid-signing-key",
    "SENDGRID_SIGNING_KEY",
    "SendGrid test private key: base64 PKCS#8 DER P-256 (from `hookline keygen`).",
)
.secret();

impl BuiltIn for SendGridKind {
    fn name(&self) -> &'static str {
        "sendgrid"
    }

    fn scheme(&self) -> &'static str {
        "ECDSA P-256 over timestamp and body; many events per request"
    }

    fn retry_span(&self) -> std::time::Duration {
        // "All events are retried at increasing intervals for up to 24 hours after the event
        // occurs" (SendGrid's Event Webhook guide).
        std::time::Duration::from_secs(24 * 3600)
    }

    fn verify_settings(&self) -> &'static [Setting] {
        &VERIFY
    }

    fn configure(
        &self,
        values: &Values,
        _tolerance_secs: u64,
    ) -> Result<Option<Arc<dyn Provider>>, ConfigError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let keys = values
            .list(&PUBLIC_KEY)
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let invalid = |problem: &str| ConfigError::InvalidEntry {
                    variable: PUBLIC_KEY.env,
                    entry: i + 1,
                    problem: problem.into(),
                };
                let der = b64
                    .decode(k.trim())
                    .map_err(|_| invalid("expected base64 DER, it does not decode as base64"))?;
                VerifyingKey::from_public_key_der(&der)
                    .map_err(|_| invalid("not a DER P-256 public key (SubjectPublicKeyInfo)"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Ok(None);
        }
        let tolerance_secs = match values.one(&TOLERANCE).or(TOLERANCE.default) {
            Some(t) => t
                .parse()
                .map_err(|_| ConfigError::invalid(&TOLERANCE, "expected whole seconds"))?,
            None => 90_000,
        };
        Ok(Some(Arc::new(SendGrid {
            keys,
            tolerance_secs,
        })))
    }

    fn decoder(&self) -> Arc<dyn Provider> {
        Arc::new(SendGrid {
            keys: Vec::new(),
            tolerance_secs: 0,
        })
    }

    fn sign_settings(&self) -> &'static [Setting] {
        std::slice::from_ref(&SIGNING_KEY)
    }

    fn signer(&self, values: &Values) -> Result<Box<dyn Signer>, ConfigError> {
        let encoded = values.one(&SIGNING_KEY).ok_or(ConfigError::Missing {
            variable: SIGNING_KEY.env,
            hint: " (make one with `hookline keygen`)",
        })?;
        let der = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| ConfigError::invalid(&SIGNING_KEY, "not base64"))?;
        let key = SigningKey::from_pkcs8_der(&der)
            .map_err(|_| ConfigError::invalid(&SIGNING_KEY, "not a PKCS#8 DER P-256 key"))?;
        Ok(Box::new(SendGridSigner(key)))
    }

    fn keygen(&self) -> Values {
        let key = loop {
            let bytes: [u8; 32] = rand::random();
            if let Ok(k) = SigningKey::from_slice(&bytes) {
                break k;
            }
        };
        let b64 = base64::engine::general_purpose::STANDARD;
        let private = key.to_pkcs8_der().expect("a P-256 key encodes");
        let public = key
            .verifying_key()
            .to_public_key_der()
            .expect("a P-256 key encodes");
        Values::new()
            .with(&SIGNING_KEY, b64.encode(private.as_bytes()))
            .with(&PUBLIC_KEY, b64.encode(public.as_bytes()))
    }

    fn sample(&self, s: &Sample<'_>) -> Option<String> {
        let timestamp = DateTime::parse_from_rfc3339(s.at).ok()?.timestamp();
        let mut event = serde_json::json!({
            "email": "ada@example.com",
            "timestamp": timestamp,
            "smtp-id": format!("<{}@ismtpd-555>", s.message_id),
            "sg_event_id": s.event_id,
            "sg_message_id": format!("{}.filter0001.16648.5515E0B88.0", s.message_id),
            "category": "bulk",
        });
        let fields = match s.status {
            SampleStatus::Sent => serde_json::json!({"event": "processed"}),
            SampleStatus::Delivered => {
                serde_json::json!({"event": "delivered", "response": "250 OK", "tls": 1})
            }
            SampleStatus::Undelivered => serde_json::json!({"event": "bounce", "type": "bounce",
                "bounce_classification": "Invalid Address", "reason": "550 5.1.1 unknown recipient",
                "status": "5.1.1"}),
            SampleStatus::Opened => serde_json::json!({"event": "open", "sg_machine_open": false,
                "useragent": "Mozilla/5.0", "ip": "192.0.2.1"}),
        };
        for (k, v) in fields.as_object().expect("an object") {
            event[k] = v.clone();
        }
        Some(serde_json::json!([event]).to_string())
    }

    /// `{X-Message-Id}:{address}`, the address lower-cased.
    fn recipient_id(&self, message_id: &str, address: &str) -> String {
        format!("{message_id}:{}", address.trim().to_lowercase())
    }

    fn sample_address(&self, _n: usize) -> String {
        "ada@example.com".into()
    }
}

struct SendGridSigner(SigningKey);

impl Signer for SendGridSigner {
    fn sign(&self, _url: &str, _event_id: &str, body: &[u8], ts: i64) -> Vec<(String, String)> {
        let ts = ts.to_string();
        let mut message = ts.as_bytes().to_vec();
        message.extend_from_slice(body);
        let signature: Signature = self.0.sign(&message);
        let der: DerSignature = signature.to_der();
        vec![
            ("content-type".into(), "application/json".into()),
            (
                SIGNATURE_HEADER.into(),
                base64::engine::general_purpose::STANDARD.encode(der.as_bytes()),
            ),
            (TIMESTAMP_HEADER.into(), ts),
        ]
    }
}

pub struct SendGrid {
    keys: Vec<VerifyingKey>,
    tolerance_secs: u64,
}

impl SendGrid {
    /// The signature (DER) and the timestamp as sent, checked for form and age.
    fn signed_headers<'h>(
        &self,
        headers: &'h dyn Headers,
        now: i64,
    ) -> Result<(Signature, &'h str), SignatureError> {
        let sig = headers
            .get(SIGNATURE_HEADER)
            .ok_or(SignatureError::MissingHeader(SIGNATURE_HEADER))?;
        let ts = headers
            .get(TIMESTAMP_HEADER)
            .ok_or(SignatureError::MissingHeader(TIMESTAMP_HEADER))?;
        check_timestamp(TIMESTAMP_HEADER, ts, now, self.tolerance_secs)?;
        let der = base64::engine::general_purpose::STANDARD
            .decode(sig.trim())
            .map_err(|_| SignatureError::MalformedHeader(SIGNATURE_HEADER))?;
        let sig = Signature::from_der(&der)
            .map_err(|_| SignatureError::MalformedHeader(SIGNATURE_HEADER))?;
        Ok((sig, ts))
    }
}

/// The documented event types (twilio.com/docs/sendgrid/for-developers/tracking-events/event).
const EVENT_TYPES: [&str; 11] = [
    "processed",
    "deferred",
    "delivered",
    "bounce",
    "dropped",
    "spamreport",
    "open",
    "click",
    "unsubscribe",
    "group_unsubscribe",
    "group_resubscribe",
];

/// The drop reasons that mean the address is on one of SendGrid's suppression lists.
const SUPPRESSION_DROPS: [&str; 3] = [
    "Bounced Address",
    "Unsubscribed Address",
    "Spam Reporting Address",
];

#[derive(Deserialize)]
struct EnvelopeEvent {
    sg_event_id: Option<String>,
    event: Option<String>,
}

#[derive(Deserialize)]
struct Event {
    event: String,
    email: Option<String>,
    timestamp: i64,
    sg_event_id: Option<String>,
    sg_message_id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    reason: Option<String>,
    status: Option<serde_json::Value>,
    /// On a bounce, when Bounce & Block Classifications is on in the account's Mail Settings.
    bounce_classification: Option<String>,
}

/// A bounce's `type` by class, for a bounce without a classification (the Event Webhook
/// reference, twilio.com/docs/sendgrid/for-developers/tracking-events/event): `bounce`, the
/// receiving server will not take mail for the address; `blocked`, it will not for now.
const BOUNCE_TYPE_CLASSES: &[(&str, FailureClass)] = &[
    ("bounce", FailureClass::Hard),
    ("blocked", FailureClass::Soft),
];

/// `bounce_classification` by class (twilio.com/docs/sendgrid/ui/analytics-and-reporting/
/// bounce-and-block-classifications). It decides over `type` when present: SendGrid read the
/// receiving server's answer. The page defines only Invalid Address in full; the others are
/// classed by what their names say (unverified). The Bounces API spells one `Technical Failure`
/// where the webhook's examples say `Technical`: both are listed. `Unclassified` (SendGrid could
/// not tell) and any other value are `unknown`.
const CLASSIFICATION_CLASSES: &[(&str, FailureClass)] = {
    use FailureClass::{Hard, Policy, Soft};
    &[
        ("Invalid Address", Hard),     // Malformed, or the mailbox does not exist
        ("Mailbox Unavailable", Soft), // Full, disabled or unavailable for now
        ("Technical", Soft),           // DNS, connection, protocol: not the address
        ("Technical Failure", Soft),   // The same, as the Bounces API spells it
        ("Content", Policy),           // Refused for the message's content
        ("Reputation", Policy),        // Refused for the sender's IP or domain
        ("Frequency or Volume Too High", Soft), // The receiver's rate limits
    ]
};

/// A `dropped` event's `reason` by class (the Event Webhook reference and
/// docs.sendgrid.com/glossary/drops): never sent. The address on a suppression list is its
/// reason for being there; the rest are about what we sent or our account. Any other reason
/// (the glossary's Marketing Campaigns duplicate has no documented string) is `unknown`.
const DROP_CLASSES: &[(&str, FailureClass)] = {
    use FailureClass::{Hard, OptOut, Policy};
    &[
        ("Bounced Address", Hard),          // On the bounce list: bounced before
        ("Invalid", Hard),                  // On the invalid emails list
        ("Unsubscribed Address", OptOut),   // On a global or group unsubscribe list
        ("Spam Reporting Address", OptOut), // On the spam report list
        ("Spam Content", Policy),           // Flagged by the Spam Checker
        ("Invalid SMTPAPI header", Policy), // Our X-SMTPAPI header is malformed
        ("Recipient List over Package Quota", Policy), // Over our plan's quota
    ]
};

/// The event's class, from the field SendGrid documents for its kind. A spam report is the
/// recipient saying no and carries nothing more to read.
fn failure_class(e: &Event) -> Option<FailureClass> {
    match e.event.as_str() {
        "bounce" => {
            let classification = e.bounce_classification.as_deref().filter(|c| !c.is_empty());
            // A bounce without a type is a bounce, as the decoder reads it.
            let kind = e.kind.as_deref().unwrap_or("bounce");
            Some(match classification {
                Some(c) => super::class_of(CLASSIFICATION_CLASSES, c),
                None => super::class_of(BOUNCE_TYPE_CLASSES, kind),
            })
        }
        "dropped" => e
            .reason
            .as_deref()
            .map(|r| super::class_of(DROP_CLASSES, r)),
        "spamreport" => Some(FailureClass::OptOut),
        _ => None,
    }
}

/// An event without `sg_event_id` (SendGrid has sent some): an id from its bytes, so the same
/// event sent again is the same id.
fn derived_id(body: &[u8]) -> String {
    let d = Sha256::digest(body);
    format!(
        "sha256-{}",
        d[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

impl Provider for SendGrid {
    fn name(&self) -> &'static str {
        "sendgrid"
    }

    fn forwarded_headers(&self) -> &'static [&'static str] {
        &[SIGNATURE_HEADER, TIMESTAMP_HEADER]
    }

    fn known_event_types(&self) -> &'static [&'static str] {
        &EVENT_TYPES
    }

    fn precheck(&self, headers: &dyn Headers, now: i64) -> Result<(), SignatureError> {
        self.signed_headers(headers, now).map(|_| ())
    }

    fn verify(&self, request: &Request<'_>, now: i64) -> Result<(), SignatureError> {
        let (sig, ts) = self.signed_headers(request.headers, now)?;
        let mut message = Vec::with_capacity(ts.len() + request.body.len());
        message.extend_from_slice(ts.as_bytes());
        message.extend_from_slice(request.body);
        if self.keys.iter().any(|k| k.verify(&message, &sig).is_ok()) {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }

    /// Each element of the array, byte for byte as SendGrid wrote it.
    fn split(&self, body: &[u8]) -> Option<Vec<Vec<u8>>> {
        let parts: Vec<&RawValue> = serde_json::from_slice(body).ok()?;
        Some(
            parts
                .into_iter()
                .map(|p| p.get().as_bytes().to_vec())
                .collect(),
        )
    }

    fn envelope(&self, _headers: &dyn Headers, body: &[u8]) -> Envelope {
        match serde_json::from_slice::<EnvelopeEvent>(body) {
            Ok(e) => Envelope {
                event_id: Some(
                    e.sg_event_id
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| derived_id(body)),
                ),
                event_type: e.event,
            },
            Err(_) => Envelope::default(),
        }
    }

    fn decode(&self, _headers: &dyn Headers, body: &[u8]) -> Result<DeliveryEvent, DecodeError> {
        let e: Event =
            serde_json::from_slice(body).map_err(|e| DecodeError::Shape(e.to_string()))?;
        let occurred_at = Utc
            .timestamp_opt(e.timestamp, 0)
            .single()
            .ok_or_else(|| DecodeError::Shape("timestamp out of range".into()))?;
        // `{X-Message-Id}:{email}`; no message when SendGrid sent no `sg_message_id` (a late
        // asynchronous bounce may come without one): stored, matched to no recipient.
        let message_id = match (&e.sg_message_id, &e.email) {
            (Some(m), Some(email)) if !m.is_empty() => {
                let request = m.split('.').next().unwrap_or(m);
                format!("{request}:{}", email.trim().to_lowercase())
            }
            _ => String::new(),
        };
        let failure_class = failure_class(&e);
        let mut event = DeliveryEvent {
            provider: "sendgrid",
            event_id: e
                .sg_event_id
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| derived_id(body)),
            message_id,
            event_type: e.event.clone(),
            status: None,
            engagement: None,
            provider_status: Some(e.event.clone()),
            unmapped: false,
            addresses: Vec::new(),
            occurred_at,
            error_code: e.status.as_ref().and_then(super::code_to_string),
            error_description: e.reason.clone(),
            failure_class,
            cost: None,
            parts: None,
        };
        use DeliveryStatus::*;
        match e.event.as_str() {
            "processed" => event.status = Some(Queued),
            "deferred" => event.status = Some(Delayed),
            "delivered" => event.status = Some(Delivered),
            "bounce" => {
                // `blocked`: refused for now (reputation, content), not a dead address.
                let kind = e.kind.unwrap_or_else(|| "bounce".into());
                event.status = Some(if kind == "blocked" { Failed } else { Bounced });
                event.provider_status = Some(kind);
            }
            "dropped" => {
                let suppressed = e
                    .reason
                    .as_deref()
                    .is_some_and(|r| SUPPRESSION_DROPS.iter().any(|s| r.starts_with(s)));
                event.status = Some(if suppressed { Suppressed } else { Failed });
            }
            "spamreport" => event.status = Some(Complained),
            "open" => event.engagement = Some(Engagement::Opened),
            "click" => event.engagement = Some(Engagement::Clicked),
            "unsubscribe" | "group_unsubscribe" | "group_resubscribe" => {}
            _ => event.unmapped = true,
        }
        if event.message_id.is_empty() && !event.unmapped {
            // Nothing to change without a message: kept, counted with the events that carry no
            // delivery information.
            event.status = None;
            event.engagement = None;
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(v: serde_json::Value) -> DeliveryEvent {
        SENDGRID
            .decoder()
            .decode(&super::super::NO_HEADERS, v.to_string().as_bytes())
            .unwrap()
    }

    fn event(name: &str, extra: serde_json::Value) -> serde_json::Value {
        let mut e = serde_json::json!({"email": "Ada@Example.com", "timestamp": 1795168800,
            "event": name, "sg_event_id": format!("ev-{name}"),
            "sg_message_id": "XBg2anf2TqCy6WXKQFhieQ.filter0001.16648.5515E0B88.0"});
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        e
    }

    #[test]
    fn every_documented_event_decodes() {
        use DeliveryStatus::*;
        let none = serde_json::json!({});
        let cases = [
            ("processed", none.clone(), Some(Queued), None),
            (
                "deferred",
                serde_json::json!({"attempt": "5", "response": "400 try again"}),
                Some(Delayed),
                None,
            ),
            (
                "delivered",
                serde_json::json!({"response": "250 OK"}),
                Some(Delivered),
                None,
            ),
            (
                "bounce",
                serde_json::json!({"type": "bounce", "status": "5.1.1", "reason": "550 unknown"}),
                Some(Bounced),
                None,
            ),
            (
                "bounce",
                serde_json::json!({"type": "blocked", "status": "4.0.0", "reason": "blocked"}),
                Some(Failed),
                None,
            ),
            (
                "dropped",
                serde_json::json!({"reason": "Bounced Address", "status": "5.0.0"}),
                Some(Suppressed),
                None,
            ),
            (
                "dropped",
                serde_json::json!({"reason": "Invalid SMTPAPI header"}),
                Some(Failed),
                None,
            ),
            ("spamreport", none.clone(), Some(Complained), None),
            (
                "open",
                serde_json::json!({"sg_machine_open": true}),
                None,
                Some(Engagement::Opened),
            ),
            (
                "click",
                serde_json::json!({"url": "https://x.test"}),
                None,
                Some(Engagement::Clicked),
            ),
            ("unsubscribe", none.clone(), None, None),
            (
                "group_unsubscribe",
                serde_json::json!({"asm_group_id": 1}),
                None,
                None,
            ),
            (
                "group_resubscribe",
                serde_json::json!({"asm_group_id": 1}),
                None,
                None,
            ),
        ];
        for (name, extra, status, engagement) in cases {
            let e = decode(event(name, extra));
            assert_eq!((e.status, e.engagement), (status, engagement), "{name}");
            assert!(!e.unmapped, "{name}");
            assert_eq!(e.event_id, format!("ev-{name}"));
            assert_eq!(e.message_id, "XBg2anf2TqCy6WXKQFhieQ:ada@example.com");
            assert_eq!(e.occurred_at.timestamp(), 1_795_168_800);
        }
        let bounce = decode(event(
            "bounce",
            serde_json::json!({"type": "bounce", "status": "5.1.1", "reason": "550 unknown"}),
        ));
        assert_eq!(bounce.provider_status.as_deref(), Some("bounce"));
        assert_eq!(bounce.error_code.as_deref(), Some("5.1.1"));
        assert_eq!(bounce.error_description.as_deref(), Some("550 unknown"));
        let new = decode(event("machine_learned", none));
        assert!(new.unmapped);
        // A late bounce without sg_message_id: stored, changes nothing.
        let mut orphan = event("bounce", serde_json::json!({"type": "bounce"}));
        orphan.as_object_mut().unwrap().remove("sg_message_id");
        let o = decode(orphan);
        assert_eq!((o.status, o.message_id.as_str()), (None, ""));
    }

    fn bounce(kind: &str, classification: Option<&str>) -> DeliveryEvent {
        let mut extra = serde_json::json!({"type": kind, "status": "5.1.1",
            "reason": "550 5.1.1 The email account that you tried to reach does not exist."});
        if let Some(c) = classification {
            extra["bounce_classification"] = c.into();
        }
        decode(event("bounce", extra))
    }

    fn dropped(reason: &str) -> DeliveryEvent {
        decode(event(
            "dropped",
            serde_json::json!({"reason": reason, "status": "5.0.0"}),
        ))
    }

    #[test]
    fn every_documented_bounce_and_drop_reason_has_a_class_and_others_are_unknown() {
        use FailureClass::*;
        // What the documentation says each is, spelled out independently of the tables.
        for (kind, classification, want) in [
            ("bounce", None, Hard),
            ("blocked", None, Soft),
            ("bounce", Some("Invalid Address"), Hard),
            ("bounce", Some("Mailbox Unavailable"), Soft),
            ("blocked", Some("Technical"), Soft),
            ("blocked", Some("Frequency or Volume Too High"), Soft),
            ("blocked", Some("Reputation"), Policy),
            ("blocked", Some("Content"), Policy),
        ] {
            let e = bounce(kind, classification);
            assert_eq!(e.failure_class, Some(want), "{kind} {classification:?}");
        }
        for (reason, want) in [
            ("Bounced Address", Hard),
            ("Invalid", Hard),
            ("Unsubscribed Address", OptOut),
            ("Spam Reporting Address", OptOut),
            ("Spam Content", Policy),
            ("Recipient List over Package Quota", Policy),
        ] {
            assert_eq!(dropped(reason).failure_class, Some(want), "{reason}");
        }
        let spam = decode(event("spamreport", serde_json::json!({})));
        assert_eq!(spam.failure_class, Some(OptOut));
        // Every row reaches an event through one in SendGrid's shape, once each.
        let mut seen = std::collections::HashSet::new();
        for (kind, class) in BOUNCE_TYPE_CLASSES {
            assert!(seen.insert(kind), "{kind} listed twice");
            let e = bounce(kind, None);
            assert_eq!(e.provider_status.as_deref(), Some(*kind));
            assert_eq!(e.error_code.as_deref(), Some("5.1.1"));
            assert_eq!(e.failure_class, Some(*class), "{kind}");
        }
        for (classification, class) in CLASSIFICATION_CLASSES {
            assert!(seen.insert(classification), "{classification} listed twice");
            // The classification decides, whichever the type.
            for kind in ["bounce", "blocked"] {
                let e = bounce(kind, Some(*classification));
                assert_eq!(e.failure_class, Some(*class), "{kind} {classification}");
            }
        }
        for (reason, class) in DROP_CLASSES {
            assert!(seen.insert(reason), "{reason} listed twice");
            let e = dropped(reason);
            assert_eq!(e.error_description.as_deref(), Some(*reason));
            assert_eq!(e.error_code.as_deref(), Some("5.0.0"));
            assert_eq!(e.failure_class, Some(*class), "{reason}");
        }
        assert_eq!(
            (
                BOUNCE_TYPE_CLASSES.len(),
                CLASSIFICATION_CLASSES.len(),
                DROP_CLASSES.len()
            ),
            (2, 7, 7)
        );
        // Unclassified is SendGrid saying it cannot tell; the rest are not documented.
        for classification in ["Unclassified", "Teleported", "invalid address"] {
            let e = bounce("bounce", Some(classification));
            assert_eq!(e.failure_class, Some(Unknown), "{classification}");
        }
        assert_eq!(bounce("teleported", None).failure_class, Some(Unknown));
        for reason in ["Duplicate", "Bounced", "Invalid Address", ""] {
            assert_eq!(dropped(reason).failure_class, Some(Unknown), "{reason:?}");
        }
        // No type is a bounce, as the status says; an empty classification is none.
        let untyped = decode(event("bounce", serde_json::json!({"status": "5.1.1"})));
        assert_eq!(untyped.failure_class, Some(Hard));
        assert_eq!(bounce("blocked", Some("")).failure_class, Some(Soft));
        let no_reason = decode(event("dropped", serde_json::json!({})));
        assert_eq!(no_reason.failure_class, None);
        // Not failures, or no class of their own: none.
        for name in ["deferred", "delivered", "unsubscribe", "group_unsubscribe"] {
            let e = decode(event(
                name,
                serde_json::json!({"reason": "Bounced Address"}),
            ));
            assert_eq!(e.failure_class, None, "{name}");
        }
    }

    #[test]
    fn a_batch_splits_into_its_events_byte_for_byte_and_ids_hold() {
        let p = SENDGRID.decoder();
        let body = br#"[ {"event":"processed","sg_event_id":"a","timestamp":1} ,{"event":"delivered", "timestamp":2}]"#;
        let parts = p.split(body).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            parts[0],
            br#"{"event":"processed","sg_event_id":"a","timestamp":1}"#
        );
        assert_eq!(
            p.envelope(&super::super::NO_HEADERS, &parts[0])
                .event_id
                .as_deref(),
            Some("a")
        );
        // No sg_event_id: an id from the bytes, the same in the envelope and the decoder.
        let derived = p
            .envelope(&super::super::NO_HEADERS, &parts[1])
            .event_id
            .unwrap();
        assert!(derived.starts_with("sha256-"));
        let e = p.decode(&super::super::NO_HEADERS, &parts[1]).unwrap();
        assert_eq!(e.event_id, derived);
        assert_eq!(p.split(b"{\"not\":\"an array\"}"), None);
        assert_eq!(p.split(b"[]"), Some(vec![]));
    }

    #[test]
    fn signer_and_verifier_agree_within_the_tolerance() {
        let keys = SENDGRID.keygen();
        let p = SENDGRID.configure(&keys, 300).unwrap().unwrap();
        let body = br#"[{"event":"delivered"}]"#;
        let h = SENDGRID
            .signer(&keys)
            .unwrap()
            .sign("", "", body, 1_000_000);
        assert_eq!(
            p.verify(&Request::new(&h, body), 1_000_000 + 86_400),
            Ok(())
        );
        assert_eq!(
            p.verify(&Request::new(&h, body), 1_000_000 + 90_001),
            Err(SignatureError::StaleTimestamp)
        );
        assert_eq!(
            p.verify(&Request::new(&h, br#"[{"event":"bounce"}]"#), 1_000_000),
            Err(SignatureError::Mismatch)
        );
    }
}
