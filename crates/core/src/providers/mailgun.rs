//! Mailgun (email) webhooks. The signature travels **inside the body** and **does not cover the
//! payload**: `{"signature": {"timestamp", "token", "signature"}, "event-data": {...}}`, where
//! `signature` is the hex HMAC-SHA256, keyed with the webhook signing key, of `timestamp`
//! followed by `token` (documentation.mailgun.com, "Securing webhooks"). Anyone holding one
//! genuine request could attach any `event-data` to its signature, so the signature alone proves
//! little. Mailgun's advice is to remember tokens: ingest claims each token in a JetStream KV
//! bucket every replica shares ([`Provider::replay_token`]), for the event the request carries;
//! the same token with another event is refused (401 `replayed`). A token is remembered for the
//! whole timestamp window, on either side, so it cannot outlive its own freshness.
//!
//! Mailgun retries for 8 hours and does not say whether a retry is signed again, so the
//! timestamp tolerance covers 9 hours (`MAILGUN_TIMESTAMP_TOLERANCE_SECS`); a retry with the same
//! token and event passes the token check and is absorbed by dedup. `event-data.id` is unique
//! within a day only: the event id is `{UTC date of the event}-{id}`.
//!
//! The recipient row joins on `{Message-Id}:{recipient}` (the send API's `id` without its angle
//! brackets, the address lower-cased): one send's Message-Id covers all its recipients.

use std::sync::Arc;

use base64::Engine as _;
use chrono::{DateTime, TimeZone as _, Utc};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::{
    BuiltIn, ConfigError, DecodeError, Envelope, Headers, Provider, ReplayToken, Request, Sample,
    SampleStatus, Setting, Signer, Values,
};
use crate::event::{DeliveryEvent, DeliveryStatus, Engagement, FailureClass};
use crate::signature::{check_timestamp, SignatureError};

pub static MAILGUN: MailgunKind = MailgunKind;

pub struct MailgunKind;

const SIGNING_KEY: Setting = Setting::new(
    "mailgun-webhook-signing-key",
    "MAILGUN_WEBHOOK_SIGNING_KEY",
    "Mailgun webhook signing key(s) (Sending > Webhooks), comma-separated: one per account or \
     old and new during a rotation. Without one, /webhooks/mailgun answers 404.",
)
.secret()
.list();

const TOLERANCE: Setting = Setting::new(
    "mailgun-timestamp-tolerance-secs",
    "MAILGUN_TIMESTAMP_TOLERANCE_SECS",
    "Largest accepted age (or skew) of a Mailgun signature's timestamp, in seconds: Mailgun \
     retries for 8 hours and does not say it signs a retry again, so the default covers it. \
     Tokens are remembered this long on either side.",
)
.default("32400");

const VERIFY: [Setting; 2] = [SIGNING_KEY, TOLERANCE];

impl BuiltIn for MailgunKind {
    fn name(&self) -> &'static str {
        "mailgun"
    }

    fn scheme(&self) -> &'static str {
        "HMAC-SHA256 over timestamp and token (not the payload) + a shared token cache"
    }

    fn retry_span(&self) -> std::time::Duration {
        // Retries at 5 min, 10 min, 15 min, 1 h, 2 h and 4 h: "during 8 hours".
        std::time::Duration::from_secs(8 * 3600)
    }

    fn verify_settings(&self) -> &'static [Setting] {
        &VERIFY
    }

    fn configure(
        &self,
        values: &Values,
        _tolerance_secs: u64,
    ) -> Result<Option<Arc<dyn Provider>>, ConfigError> {
        let keys: Vec<Vec<u8>> = values
            .list(&SIGNING_KEY)
            .iter()
            .map(|k| k.as_bytes().to_vec())
            .collect();
        if keys.is_empty() {
            return Ok(None);
        }
        let tolerance_secs = values
            .one(&TOLERANCE)
            .or(TOLERANCE.default)
            .unwrap_or("32400")
            .parse()
            .map_err(|_| ConfigError::invalid(&TOLERANCE, "expected whole seconds"))?;
        Ok(Some(Arc::new(Mailgun {
            keys,
            tolerance_secs,
        })))
    }

    fn decoder(&self) -> Arc<dyn Provider> {
        Arc::new(Mailgun {
            keys: Vec::new(),
            tolerance_secs: 0,
        })
    }

    fn sign_settings(&self) -> &'static [Setting] {
        std::slice::from_ref(&SIGNING_KEY)
    }

    fn signer(&self, values: &Values) -> Result<Box<dyn Signer>, ConfigError> {
        let key = values.one(&SIGNING_KEY).ok_or(ConfigError::Missing {
            variable: SIGNING_KEY.env,
            hint: "",
        })?;
        Ok(Box::new(MailgunSigner(key.as_bytes().to_vec())))
    }

    fn keygen(&self) -> Values {
        let key: [u8; 16] = rand::random();
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        Values::new().with(&SIGNING_KEY, format!("key-{hex}"))
    }

    /// The body without its `signature` (the signer adds it, with a fresh token).
    fn sample(&self, s: &Sample<'_>) -> Option<String> {
        let at = DateTime::parse_from_rfc3339(s.at).ok()?;
        let timestamp = at.timestamp() as f64 + f64::from(at.timestamp_subsec_millis()) / 1000.0;
        let mut data = serde_json::json!({
            "id": s.event_id,
            "timestamp": timestamp,
            "recipient": "joan@example.com",
            "recipient-domain": "example.com",
            "message": {"headers": {"message-id": s.message_id, "to": "joan@example.com",
                "from": "john@example.org", "subject": "Your order"}},
            "tags": [], "user-variables": {}
        });
        let fields = match s.status {
            SampleStatus::Sent => serde_json::json!({"event": "accepted", "log-level": "info"}),
            SampleStatus::Delivered => {
                serde_json::json!({"event": "delivered", "log-level": "info",
                "delivery-status": {"tls": true, "code": 250, "description": "", "attempt-no": 1, "message": "OK"}})
            }
            SampleStatus::Undelivered => {
                serde_json::json!({"event": "failed", "log-level": "error",
                "severity": "permanent", "reason": "bounce",
                "delivery-status": {"attempt-no": 1, "code": 550, "message": "5.1.1 The email account that you tried to reach does not exist",
                    "description": ""}})
            }
            SampleStatus::Opened => serde_json::json!({"event": "opened", "log-level": "info"}),
        };
        for (k, v) in fields.as_object().expect("an object") {
            data[k] = v.clone();
        }
        Some(serde_json::json!({ "event-data": data }).to_string())
    }

    /// `{Message-Id}:{address}`, the address lower-cased.
    fn recipient_id(&self, message_id: &str, address: &str) -> String {
        format!("{message_id}:{}", address.trim().to_lowercase())
    }

    fn sample_address(&self, _n: usize) -> String {
        "joan@example.com".into()
    }
}

fn mac(key: &[u8], timestamp: &str, token: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(timestamp.as_bytes());
    mac.update(token.as_bytes());
    mac
}

/// Signs as Mailgun does: puts a `signature` object (with a fresh random token) into the body.
/// The request's headers say nothing; the signed body is what the returned headers go with, so
/// [`Signer::sign`] cannot be used for it: use [`sign_body`].
struct MailgunSigner(Vec<u8>);

impl Signer for MailgunSigner {
    fn sign(&self, _url: &str, _event_id: &str, _body: &[u8], _ts: i64) -> Vec<(String, String)> {
        vec![("content-type".into(), "application/json".into())]
    }

    fn sign_body(&self, body: &[u8], ts: i64) -> Option<Vec<u8>> {
        let mut v: serde_json::Value = serde_json::from_slice(body).ok()?;
        let token: [u8; 25] = rand::random();
        let token: String = token.iter().map(|b| format!("{b:02x}")).collect();
        let timestamp = ts.to_string();
        let tag = mac(&self.0, &timestamp, &token).finalize().into_bytes();
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        v["signature"] =
            serde_json::json!({"timestamp": timestamp, "token": token, "signature": hex});
        Some(v.to_string().into_bytes())
    }
}

pub struct Mailgun {
    keys: Vec<Vec<u8>>,
    tolerance_secs: u64,
}

#[derive(Deserialize)]
struct Signed {
    signature: Option<SignatureBlock>,
    #[serde(rename = "event-data")]
    event_data: Option<EventData>,
}

#[derive(Deserialize)]
struct SignatureBlock {
    timestamp: serde_json::Value,
    token: String,
    signature: String,
}

#[derive(Deserialize)]
struct EventData {
    id: Option<String>,
    event: Option<String>,
    timestamp: Option<f64>,
    recipient: Option<String>,
    severity: Option<String>,
    reason: Option<String>,
    message: Option<Message>,
    #[serde(rename = "delivery-status")]
    delivery_status: Option<DeliveryStatusBlock>,
}

#[derive(Deserialize)]
struct Message {
    headers: Option<MessageHeaders>,
}

#[derive(Deserialize)]
struct MessageHeaders {
    #[serde(rename = "message-id")]
    message_id: Option<String>,
}

#[derive(Deserialize)]
struct DeliveryStatusBlock {
    code: Option<serde_json::Value>,
    message: Option<String>,
    description: Option<String>,
}

impl EventData {
    fn time(&self) -> Option<DateTime<Utc>> {
        let t = self.timestamp?;
        Utc.timestamp_millis_opt((t * 1000.0).round() as i64)
            .single()
    }

    /// `{date}-{id}`: Mailgun's id is unique within a day.
    fn event_id(&self) -> Option<String> {
        let id = self.id.as_deref().filter(|s| !s.is_empty())?;
        Some(format!("{}-{id}", self.time()?.format("%Y%m%d")))
    }
}

const EVENT_TYPES: [&str; 12] = [
    "accepted",
    "rejected",
    "delivered",
    "failed",
    "opened",
    "clicked",
    "unsubscribed",
    "complained",
    "stored",
    "list_member_uploaded",
    "list_member_upload_error",
    "list_uploaded",
];

/// A permanent failure's `reason` as a status: an address on a suppression list was never
/// sent to; a bounce is a bounce; anything else (`old`: retried for 8 hours, `espblock`,
/// `generic`) failed.
fn permanent(reason: &str) -> DeliveryStatus {
    match reason {
        "suppress-bounce" | "suppress-unsubscribe" | "suppress-complaint" => {
            DeliveryStatus::Suppressed
        }
        "bounce" => DeliveryStatus::Bounced,
        _ => DeliveryStatus::Failed,
    }
}

/// A permanent failure's `reason` by class (documentation.mailgun.com/docs/mailgun/user-manual/
/// tracking-messages/tracking-failures). Mailgun documents `severity` (permanent or temporary)
/// but lists no reasons: these are the values its own payload examples carry. An address on a
/// suppression list is classed by the list it is on. `old` is a message Mailgun gave up retrying
/// (8 hours): not proof the address is dead. `generic` says nothing, and any other reason is
/// `unknown`.
const REASON_CLASSES: &[(&str, FailureClass)] = {
    use FailureClass::{Hard, OptOut, Policy, Soft};
    &[
        ("bounce", Hard),          // The receiving server refused the address for good
        ("suppress-bounce", Hard), // Not sent: on the bounces list
        ("suppress-unsubscribe", OptOut), // Not sent: on the unsubscribes list
        ("suppress-complaint", OptOut), // Not sent: on the complaints list
        ("espblock", Policy),      // The receiving provider blocked what or who sent it
        ("old", Soft),             // Retried until it expired
    ]
};

/// A `failed` event's class, read as its status is (`provider_status` is
/// `failed/{severity}/{reason}`): a temporary failure may yet succeed, whatever its reason; a
/// permanent one is classed by its reason. A severity Mailgun does not document is `unknown`.
fn failed_class(severity: &str, reason: &str) -> FailureClass {
    match severity {
        "temporary" => FailureClass::Soft,
        "permanent" => super::class_of(REASON_CLASSES, reason),
        _ => FailureClass::Unknown,
    }
}

impl Mailgun {
    fn block(body: &[u8]) -> Result<SignatureBlock, SignatureError> {
        let signed: Signed = serde_json::from_slice(body)
            .map_err(|_| SignatureError::MalformedHeader("signature"))?;
        signed
            .signature
            .ok_or(SignatureError::MissingHeader("signature"))
    }
}

fn text(v: &serde_json::Value) -> Option<String> {
    super::code_to_string(v)
}

impl Provider for Mailgun {
    fn name(&self) -> &'static str {
        "mailgun"
    }

    fn forwarded_headers(&self) -> &'static [&'static str] {
        &[]
    }

    fn known_event_types(&self) -> &'static [&'static str] {
        &EVENT_TYPES
    }

    fn verify(&self, request: &Request<'_>, now: i64) -> Result<(), SignatureError> {
        let block = Self::block(request.body)?;
        let timestamp =
            text(&block.timestamp).ok_or(SignatureError::MalformedHeader("signature.timestamp"))?;
        check_timestamp("signature.timestamp", &timestamp, now, self.tolerance_secs)?;
        let tag = hex_decode(&block.signature)
            .filter(|t| t.len() == 32)
            .ok_or(SignatureError::MalformedHeader("signature.signature"))?;
        if block.token.is_empty() {
            return Err(SignatureError::MalformedHeader("signature.token"));
        }
        if self
            .keys
            .iter()
            .any(|k| mac(k, &timestamp, &block.token).verify_slice(&tag).is_ok())
        {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }

    fn replay_token(&self, request: &Request<'_>) -> Option<ReplayToken> {
        let block = Self::block(request.body).ok()?;
        let event = self.envelope(request.headers, request.body).event_id;
        Some(ReplayToken {
            token: block.token,
            // Whatever body arrives with this token must be this event (or be refused).
            vouches_for: event.unwrap_or_else(|| {
                let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
                b64.encode(<Sha256 as sha2::Digest>::digest(request.body))
            }),
        })
    }

    fn token_window(&self) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_secs(2 * self.tolerance_secs))
    }

    fn envelope(&self, _headers: &dyn Headers, body: &[u8]) -> Envelope {
        match serde_json::from_slice::<Signed>(body) {
            Ok(Signed {
                event_data: Some(e),
                ..
            }) => Envelope {
                event_id: e.event_id(),
                event_type: e.event.clone(),
            },
            _ => Envelope::default(),
        }
    }

    fn decode(&self, _headers: &dyn Headers, body: &[u8]) -> Result<DeliveryEvent, DecodeError> {
        let signed: Signed =
            serde_json::from_slice(body).map_err(|e| DecodeError::Shape(e.to_string()))?;
        let e = signed
            .event_data
            .ok_or_else(|| DecodeError::Shape("missing event-data".into()))?;
        let event_id = e
            .event_id()
            .ok_or_else(|| DecodeError::Shape("missing event-data.id or timestamp".into()))?;
        let kind = e
            .event
            .clone()
            .ok_or_else(|| DecodeError::Shape("missing event-data.event".into()))?;
        let message = e
            .message
            .as_ref()
            .and_then(|m| m.headers.as_ref())
            .and_then(|h| h.message_id.as_deref())
            .map(|m| m.trim().trim_start_matches('<').trim_end_matches('>'));
        let message_id = match (message, e.recipient.as_deref()) {
            (Some(m), Some(r)) if !m.is_empty() => format!("{m}:{}", r.trim().to_lowercase()),
            _ => String::new(),
        };
        let status = e.delivery_status.as_ref();
        let mut event = DeliveryEvent {
            provider: "mailgun",
            event_id,
            message_id,
            event_type: kind.clone(),
            status: None,
            engagement: None,
            provider_status: Some(kind.clone()),
            unmapped: false,
            addresses: Vec::new(),
            occurred_at: e.time().expect("checked by event_id"),
            error_code: status.and_then(|s| s.code.as_ref()).and_then(text),
            error_description: status
                .and_then(|s| s.message.clone().filter(|m| !m.is_empty()))
                .or_else(|| status.and_then(|s| s.description.clone()))
                .filter(|m| !m.is_empty())
                .or(e.reason.clone()),
            failure_class: None,
            cost: None,
            parts: None,
        };
        use DeliveryStatus::*;
        match kind.as_str() {
            "accepted" => event.status = Some(Queued),
            "rejected" => event.status = Some(Failed),
            "delivered" => event.status = Some(Delivered),
            "failed" => {
                let severity = e.severity.as_deref().unwrap_or("permanent");
                let reason = e.reason.as_deref().unwrap_or("generic");
                event.status = Some(if severity == "temporary" {
                    Delayed
                } else {
                    permanent(reason)
                });
                event.provider_status = Some(format!("failed/{severity}/{reason}"));
                event.failure_class = Some(failed_class(severity, reason));
            }
            "opened" => event.engagement = Some(Engagement::Opened),
            "clicked" => event.engagement = Some(Engagement::Clicked),
            "complained" => {
                event.status = Some(Complained);
                event.failure_class = Some(FailureClass::OptOut);
            }
            "unsubscribed"
            | "stored"
            | "list_member_uploaded"
            | "list_member_upload_error"
            | "list_uploaded" => {}
            _ => event.unmapped = true,
        }
        if event.message_id.is_empty() && (event.status.is_some() || event.engagement.is_some()) {
            return Err(DecodeError::Shape(
                "missing message.headers.message-id or recipient".into(),
            ));
        }
        Ok(event)
    }
}

/// Lower-case hex only, as Mailgun writes it (and as its reference check, a string compare of
/// `hexdigest()`s, requires).
fn hex_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if s.len() % 2 != 0 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(event: serde_json::Value) -> Vec<u8> {
        let mut data = serde_json::json!({"id": "hK7mQVt1QtqRiOfQXta4sw", "timestamp": 1795168800.626182,
            "recipient": "Joan@Example.com",
            "message": {"headers": {"message-id": "20261120100000.1.48906CB188F1A454@example.org"}}});
        for (k, v) in event.as_object().unwrap() {
            data[k] = v.clone();
        }
        serde_json::json!({"event-data": data})
            .to_string()
            .into_bytes()
    }

    fn decode(event: serde_json::Value) -> DeliveryEvent {
        MAILGUN
            .decoder()
            .decode(&super::super::NO_HEADERS, &body(event))
            .unwrap()
    }

    #[test]
    fn every_documented_event_decodes() {
        use DeliveryStatus::*;
        let cases = [
            (serde_json::json!({"event": "accepted"}), Some(Queued), None),
            (
                serde_json::json!({"event": "rejected", "reject": {"reason": "no recipients"}}),
                Some(Failed),
                None,
            ),
            (
                serde_json::json!({"event": "delivered", "delivery-status": {"code": 250, "message": "OK"}}),
                Some(Delivered),
                None,
            ),
            (
                serde_json::json!({"event": "failed", "severity": "permanent", "reason": "bounce",
                 "delivery-status": {"code": 550, "message": "no such user"}}),
                Some(Bounced),
                None,
            ),
            (
                serde_json::json!({"event": "failed", "severity": "permanent", "reason": "suppress-bounce"}),
                Some(Suppressed),
                None,
            ),
            (
                serde_json::json!({"event": "failed", "severity": "permanent", "reason": "suppress-unsubscribe"}),
                Some(Suppressed),
                None,
            ),
            (
                serde_json::json!({"event": "failed", "severity": "permanent", "reason": "suppress-complaint"}),
                Some(Suppressed),
                None,
            ),
            (
                serde_json::json!({"event": "failed", "severity": "permanent", "reason": "old"}),
                Some(Failed),
                None,
            ),
            (
                serde_json::json!({"event": "failed", "severity": "permanent", "reason": "espblock"}),
                Some(Failed),
                None,
            ),
            (
                serde_json::json!({"event": "failed", "severity": "permanent", "reason": "generic"}),
                Some(Failed),
                None,
            ),
            (
                serde_json::json!({"event": "failed", "severity": "temporary", "reason": "generic"}),
                Some(Delayed),
                None,
            ),
            (
                serde_json::json!({"event": "opened"}),
                None,
                Some(Engagement::Opened),
            ),
            (
                serde_json::json!({"event": "clicked", "url": "https://x.test"}),
                None,
                Some(Engagement::Clicked),
            ),
            (
                serde_json::json!({"event": "complained"}),
                Some(Complained),
                None,
            ),
            (serde_json::json!({"event": "unsubscribed"}), None, None),
            (serde_json::json!({"event": "stored"}), None, None),
            (
                serde_json::json!({"event": "list_member_uploaded"}),
                None,
                None,
            ),
            (
                serde_json::json!({"event": "list_member_upload_error"}),
                None,
                None,
            ),
            (serde_json::json!({"event": "list_uploaded"}), None, None),
        ];
        for (data, status, engagement) in cases {
            let e = decode(data.clone());
            assert_eq!((e.status, e.engagement), (status, engagement), "{data}");
            assert!(!e.unmapped, "{data}");
            assert_eq!(e.event_id, "20261120-hK7mQVt1QtqRiOfQXta4sw");
            assert_eq!(
                e.message_id,
                "20261120100000.1.48906CB188F1A454@example.org:joan@example.com"
            );
            assert_eq!(e.occurred_at.timestamp_millis(), 1_795_168_800_626);
        }
        let bounce = decode(
            serde_json::json!({"event": "failed", "severity": "permanent", "reason": "bounce",
            "delivery-status": {"code": 550, "message": "no such user"}}),
        );
        assert_eq!(
            bounce.provider_status.as_deref(),
            Some("failed/permanent/bounce")
        );
        assert_eq!(bounce.error_code.as_deref(), Some("550"));
        assert_eq!(bounce.error_description.as_deref(), Some("no such user"));
        assert!(decode(serde_json::json!({"event": "teleported"})).unmapped);
    }

    fn failed(severity: &str, reason: &str) -> DeliveryEvent {
        decode(
            serde_json::json!({"event": "failed", "severity": severity, "reason": reason,
            "log-level": "error", "delivery-status": {"attempt-no": 1, "code": 550,
                "message": "5.1.1 The email account that you tried to reach does not exist",
                "description": ""}}),
        )
    }

    #[test]
    fn every_documented_failure_has_a_class_and_others_are_unknown() {
        use FailureClass::*;
        // What the documentation says each is, spelled out independently of the table.
        for (severity, reason, want) in [
            ("permanent", "bounce", Hard),
            ("permanent", "suppress-bounce", Hard),
            ("permanent", "suppress-unsubscribe", OptOut),
            ("permanent", "suppress-complaint", OptOut),
            ("permanent", "espblock", Policy),
            ("permanent", "old", Soft),
            // Temporary: may succeed yet, whatever the reason.
            ("temporary", "generic", Soft),
            ("temporary", "bounce", Soft),
            ("temporary", "old", Soft),
        ] {
            let e = failed(severity, reason);
            assert_eq!(e.failure_class, Some(want), "{severity}/{reason}");
        }
        // Every row reaches an event through a failure in Mailgun's shape, once each.
        let mut seen = std::collections::HashSet::new();
        for (reason, class) in REASON_CLASSES {
            assert!(seen.insert(reason), "{reason} listed twice");
            let e = failed("permanent", reason);
            assert_eq!(e.error_code.as_deref(), Some("550"), "the SMTP code, kept");
            assert_eq!(
                e.provider_status,
                Some(format!("failed/permanent/{reason}"))
            );
            assert_eq!(e.failure_class, Some(*class), "{reason}");
        }
        assert_eq!(REASON_CLASSES.len(), 6);
        // generic says nothing; the rest Mailgun has never shown; a severity it does not document.
        for reason in ["generic", "hardfail", "greylisted", "teleported", ""] {
            let e = failed("permanent", reason);
            assert_eq!(e.failure_class, Some(Unknown), "{reason:?}");
        }
        assert_eq!(failed("fatal", "bounce").failure_class, Some(Unknown));
        // Read as the status is: no severity is permanent, no reason generic.
        let e = decode(serde_json::json!({"event": "failed", "reason": "suppress-complaint"}));
        assert_eq!(e.failure_class, Some(OptOut));
        let e = decode(serde_json::json!({"event": "failed", "severity": "permanent"}));
        assert_eq!(e.failure_class, Some(Unknown));
        // A complaint is the recipient saying no; a rejection names no documented reason.
        let e = decode(serde_json::json!({"event": "complained"}));
        assert_eq!(e.failure_class, Some(OptOut));
        let e = decode(serde_json::json!({"event": "rejected", "reject": {"reason": "r"}}));
        assert_eq!(
            (e.status, e.failure_class),
            (Some(DeliveryStatus::Failed), None)
        );
        for event in ["delivered", "accepted", "unsubscribed"] {
            let e = decode(serde_json::json!({"event": event}));
            assert_eq!(e.failure_class, None, "{event}");
        }
    }

    #[test]
    fn the_token_vouches_for_one_event_and_the_signature_for_nothing_else() {
        let keys = MAILGUN.keygen();
        let p = MAILGUN.configure(&keys, 300).unwrap().unwrap();
        let signer = MAILGUN.signer(&keys).unwrap();
        let now = 1_795_168_800;
        let signed = signer
            .sign_body(&body(serde_json::json!({"event": "delivered"})), now)
            .unwrap();
        let req = |b: &[u8]| p.verify(&Request::new(&super::super::NO_HEADERS, b), now);
        assert_eq!(req(&signed), Ok(()));
        // The payload is not signed: the same signature over another event still verifies...
        let mut v: serde_json::Value = serde_json::from_slice(&signed).unwrap();
        v["event-data"]["id"] = "another-event".into();
        let other = v.to_string().into_bytes();
        assert_eq!(req(&other), Ok(()));
        // ...which is why the token is claimed for the event it came with.
        let t1 = p
            .replay_token(&Request::new(&super::super::NO_HEADERS, &signed))
            .unwrap();
        let t2 = p
            .replay_token(&Request::new(&super::super::NO_HEADERS, &other))
            .unwrap();
        assert_eq!(t1.token, t2.token);
        assert_ne!(t1.vouches_for, t2.vouches_for);
        v["signature"]["token"] = "0".repeat(50).into();
        assert_eq!(req(v.to_string().as_bytes()), Err(SignatureError::Mismatch));
        assert_eq!(
            p.verify(
                &Request::new(&super::super::NO_HEADERS, &signed),
                now + 32_401
            ),
            Err(SignatureError::StaleTimestamp)
        );
        assert_eq!(
            p.token_window(),
            Some(std::time::Duration::from_secs(64_800))
        );
    }
}
