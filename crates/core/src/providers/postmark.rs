//! Postmark (email) webhooks: **unsigned**. Postmark protects a webhook with HTTP basic-auth
//! credentials (in the webhook URL, `https://user:pass@host/...`, or `HttpAuth` through its
//! Webhooks API) and with custom headers set through that API (`HttpHeaders`); it publishes the
//! addresses it calls from (docs/providers.md). So ingest checks a credential in constant time —
//! a basic-auth pair or a secret header, either is enough — and the source allowlist
//! (`HOOKLINE_SOURCE_ALLOWLIST=postmark=...`) is the second lock. Nothing binds the body to the
//! credential: whoever holds it (or captures one request over a broken TLS) can post any event.
//!
//! One event per request, `RecordType` naming it: Delivery, Bounce, SpamComplaint, Open, Click,
//! SubscriptionChange (postmarkapp.com/developer/webhooks/webhooks-overview). Bounce and
//! SpamComplaint carry Postmark's numeric bounce `ID`; the others have no event id, so one is
//! derived from what identifies the event: message, record type, time (and a click's link).
//! Bounce `Type`s map by what they say about delivery (see [`bounce_status`]); a type that is
//! not about an outbound delivery (an auto-responder, a subscribe request) is stored without a
//! status, and a type Postmark adds later is kept as unmapped.

use std::sync::Arc;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{
    BuiltIn, ConfigError, DecodeError, Envelope, Headers, Provider, Request, Sample, SampleStatus,
    Setting, Signer, Values,
};
use crate::event::{DeliveryEvent, DeliveryStatus, Engagement, FailureClass};
use crate::signature::SignatureError;

pub static POSTMARK: PostmarkKind = PostmarkKind;

pub struct PostmarkKind;

const CREDENTIALS: Setting = Setting::new(
    "postmark-webhook-credentials",
    "POSTMARK_WEBHOOK_CREDENTIALS",
    "Basic-auth credentials `user:password` Postmark calls with (in the webhook URL or its \
     HttpAuth), comma-separated during a rotation. With POSTMARK_WEBHOOK_TOKEN, either is \
     enough. Without both, /webhooks/postmark answers 404.",
)
.secret()
.list();

const TOKEN: Setting = Setting::new(
    "postmark-webhook-token",
    "POSTMARK_WEBHOOK_TOKEN",
    "Secret value(s) of the header named by POSTMARK_WEBHOOK_TOKEN_HEADER, set on the webhook \
     through Postmark's Webhooks API (HttpHeaders), comma-separated during a rotation.",
)
.secret()
.list();

const TOKEN_HEADER: Setting = Setting::new(
    "postmark-webhook-token-header",
    "POSTMARK_WEBHOOK_TOKEN_HEADER",
    "The header carrying POSTMARK_WEBHOOK_TOKEN.",
)
.default("x-hookline-token");

const VERIFY: [Setting; 3] = [CREDENTIALS, TOKEN, TOKEN_HEADER];

impl BuiltIn for PostmarkKind {
    fn name(&self) -> &'static str {
        "postmark"
    }

    fn scheme(&self) -> &'static str {
        "none: basic auth or a secret header"
    }

    fn retry_span(&self) -> std::time::Duration {
        // Postmark retries a webhook not answered 2xx at growing intervals; its longest
        // documented schedule (inbound webhooks) spans about 10.5 hours. 12 hours.
        std::time::Duration::from_secs(12 * 3600)
    }

    fn verify_settings(&self) -> &'static [Setting] {
        &VERIFY
    }

    fn configure(
        &self,
        values: &Values,
        _tolerance_secs: u64,
    ) -> Result<Option<Arc<dyn Provider>>, ConfigError> {
        let mut credentials = Vec::new();
        for (i, c) in values.list(&CREDENTIALS).iter().enumerate() {
            if !c.contains(':') {
                return Err(ConfigError::InvalidEntry {
                    variable: CREDENTIALS.env,
                    entry: i + 1,
                    problem: "expected user:password".into(),
                });
            }
            credentials.push(digest(c.as_bytes()));
        }
        let tokens: Vec<[u8; 32]> = values
            .list(&TOKEN)
            .iter()
            .map(|t| digest(t.as_bytes()))
            .collect();
        if credentials.is_empty() && tokens.is_empty() {
            return Ok(None);
        }
        let header = values
            .one(&TOKEN_HEADER)
            .or(TOKEN_HEADER.default)
            .unwrap_or_default()
            .to_ascii_lowercase();
        Ok(Some(Arc::new(Postmark {
            credentials,
            tokens,
            token_header: header,
        })))
    }

    fn decoder(&self) -> Arc<dyn Provider> {
        Arc::new(Postmark::default())
    }

    fn sign_settings(&self) -> &'static [Setting] {
        std::slice::from_ref(&CREDENTIALS)
    }

    fn signer(&self, values: &Values) -> Result<Box<dyn Signer>, ConfigError> {
        let credential = values.one(&CREDENTIALS).ok_or(ConfigError::Missing {
            variable: CREDENTIALS.env,
            hint: " (make one with `hookline keygen`)",
        })?;
        Ok(Box::new(PostmarkSigner(credential.to_owned())))
    }

    fn keygen(&self) -> Values {
        let password: [u8; 18] = rand::random();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        Values::new().with(&CREDENTIALS, format!("postmark:{}", b64.encode(password)))
    }

    fn sample(&self, s: &Sample<'_>) -> Option<String> {
        let record = match s.status {
            // Postmark reports no "sent".
            SampleStatus::Sent => return None,
            SampleStatus::Delivered => serde_json::json!({
                "RecordType": "Delivery", "ServerID": 23, "MessageStream": "outbound",
                "MessageID": s.message_id, "Recipient": "john@example.com", "Tag": "welcome",
                "DeliveredAt": s.at, "Details": "Test delivery webhook details",
                "Metadata": {"event": s.event_id}
            }),
            SampleStatus::Undelivered => serde_json::json!({
                "RecordType": "Bounce", "ID": sample_bounce_id(s.event_id), "Type": "HardBounce",
                "TypeCode": 1, "Name": "Hard bounce", "MessageID": s.message_id, "ServerID": 23,
                "MessageStream": "outbound",
                "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
                "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
                "Email": "john@example.com", "From": "sender@example.com", "BouncedAt": s.at,
                "DumpAvailable": true, "Inactive": true, "CanActivate": true,
                "Subject": "Your order", "Metadata": {}
            }),
            SampleStatus::Opened => serde_json::json!({
                "RecordType": "Open", "FirstOpen": true, "Platform": "WebMail",
                "UserAgent": "Mozilla/5.0", "ReadSeconds": 5, "MessageID": s.message_id,
                "MessageStream": "outbound", "ReceivedAt": s.at, "Tag": "welcome",
                "Recipient": "john@example.com", "Metadata": {}
            }),
        };
        Some(record.to_string())
    }

    fn sample_address(&self, n: usize) -> String {
        format!("reader{n}@example.com")
    }
}

/// A bounce id for a sample: Postmark's are numbers.
fn sample_bounce_id(event_id: &str) -> u64 {
    let d = digest(event_id.as_bytes());
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes")) >> 12
}

struct PostmarkSigner(String);

impl Signer for PostmarkSigner {
    fn sign(&self, _url: &str, _event_id: &str, _body: &[u8], _ts: i64) -> Vec<(String, String)> {
        let b64 = base64::engine::general_purpose::STANDARD;
        vec![
            ("content-type".into(), "application/json".into()),
            (
                "authorization".into(),
                format!("Basic {}", b64.encode(&self.0)),
            ),
        ]
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Whether `value` is one of `known` (SHA-256 digests): compared digest to digest in constant
/// time, so neither a credential's bytes nor its length shows in the timing.
fn any_matches(known: &[[u8; 32]], value: &[u8]) -> bool {
    let d = digest(value);
    known.iter().fold(false, |found, k| {
        let diff = k
            .iter()
            .zip(d.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        found | (diff == 0)
    })
}

#[derive(Default)]
pub struct Postmark {
    /// Digests of the accepted `user:password` pairs.
    credentials: Vec<[u8; 32]>,
    /// Digests of the accepted header tokens.
    tokens: Vec<[u8; 32]>,
    token_header: String,
}

const AUTHORIZATION: &str = "authorization";

impl Postmark {
    /// The `user:password` of a `Basic` authorization header.
    fn basic(headers: &dyn Headers) -> Result<Option<Vec<u8>>, SignatureError> {
        let Some(value) = headers.get(AUTHORIZATION) else {
            return Ok(None);
        };
        let (scheme, encoded) = value
            .trim()
            .split_once(' ')
            .ok_or(SignatureError::MalformedHeader(AUTHORIZATION))?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(SignatureError::MalformedHeader(AUTHORIZATION));
        }
        base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map(Some)
            .map_err(|_| SignatureError::MalformedHeader(AUTHORIZATION))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EnvelopeBody {
    record_type: Option<String>,
    #[serde(rename = "ID")]
    id: Option<serde_json::Value>,
    #[serde(rename = "MessageID")]
    message_id: Option<String>,
    delivered_at: Option<String>,
    bounced_at: Option<String>,
    received_at: Option<String>,
    changed_at: Option<String>,
    original_link: Option<String>,
}

impl EnvelopeBody {
    fn time(&self) -> Option<&str> {
        [
            &self.delivered_at,
            &self.bounced_at,
            &self.received_at,
            &self.changed_at,
        ]
        .into_iter()
        .find_map(|t| t.as_deref())
    }

    /// Postmark's bounce `ID` where the record has one; otherwise message, record type and time
    /// (and a click's link: two links clicked in the same second are two events).
    fn event_id(&self) -> Option<String> {
        let record = self.record_type.as_deref()?;
        if let Some(id) = self.id.as_ref().and_then(super::code_to_string) {
            return Some(format!("{record}-{id}"));
        }
        let message = self.message_id.as_deref().unwrap_or_default();
        let time = self.time()?;
        Some(match &self.original_link {
            Some(link) => format!("{message}:{record}:{time}:{link}"),
            None => format!("{message}:{record}:{time}"),
        })
    }
}

/// The outbound record types; bounce `Type`s are mapped by [`bounce_status`].
const RECORD_TYPES: [&str; 6] = [
    "Delivery",
    "Bounce",
    "SpamComplaint",
    "Open",
    "Click",
    "SubscriptionChange",
];

/// What a bounce `Type` (postmarkapp.com/developer/api/bounce-api#bounce-types) says about
/// delivery. `Some(None)`: a documented type that is not about an outbound delivery (stored
/// without a status). `None`: a type Postmark added since (unmapped).
fn bounce_status(kind: &str) -> Option<Option<DeliveryStatus>> {
    use DeliveryStatus::*;
    Some(match kind {
        // The address will not take mail: unknown user, bad address, the receiving side's
        // policy refusing it.
        "HardBounce" | "BadEmailAddress" | "Blocked" | "DMARCPolicy" | "SpamNotification" => {
            Some(Bounced)
        }
        // Delayed, being retried by the receiving side.
        "Transient" => Some(Delayed),
        // Gave up for now (a full mailbox, a DNS failure) or never sent (an API or template
        // error, an unconfirmed sender).
        "SoftBounce" | "DnsError" | "SMTPApiError" | "TemplateRenderingFailed" | "Unconfirmed" => {
            Some(Failed)
        }
        // Not sent: the address is deactivated on Postmark's side.
        "ManuallyDeactivated" => Some(Suppressed),
        // A complaint reported through the bounce API rather than as a SpamComplaint record.
        "SpamComplaint" => Some(Complained),
        // Replies and notices that arrive as bounces but say nothing of this delivery.
        "Unsubscribe"
        | "Subscribe"
        | "AutoResponder"
        | "AddressChange"
        | "OpenRelayTest"
        | "VirusNotification"
        | "ChallengeVerification"
        | "InboundError" => None,
        // Postmark itself could not classify it ("Unknown") or a type added since.
        _ => return None,
    })
}

/// Postmark's bounce types (postmarkapp.com/developer/api/bounce-api#bounce-types) by class,
/// keyed by `TypeCode` as `error_code` keeps it: the number Postmark's SDKs treat as the stable
/// name. The table classes every documented type, also those that get no status (an
/// unsubscribe request, an address change): the status decides whether the class is kept. A
/// receiving side's spam, virus or challenge gate is `policy`, as is our own DMARC or template.
/// The descriptions of 100002–100010 were only partly read (their names and numbers match the
/// SDK): unverified. Types that say nothing of the address (Subscribe 32, AutoResponder 64,
/// OpenRelayTest 1024, Unknown 2048), a deactivation or suppression that names no reason
/// (ManuallyDeactivated 100002, SMTPApiError 100007), InboundError 100008 and any other code are
/// `unknown`.
const CLASSES: &[(&str, FailureClass)] = {
    use FailureClass::{Hard, OptOut, Policy, Soft};
    &[
        ("1", Hard),        // HardBounce: unknown user, mailbox not found
        ("2", Soft),        // Transient: delayed, e.g. network trouble
        ("16", OptOut),     // Unsubscribe: an unsubscribe or remove request
        ("128", Hard),      // AddressChange: the recipient moved to another address
        ("256", Soft),      // DnsError: a temporary DNS error
        ("512", Policy),    // SpamNotification: blocked or filed as spam by the receiver
        ("4096", Soft),     // SoftBounce: mailbox full, over quota, for now
        ("8192", Policy),   // VirusNotification: the message was taken for infected
        ("16384", Policy),  // ChallengeVerification: a spam challenge we must answer
        ("100000", Hard),   // BadEmailAddress: not a valid email address
        ("100001", OptOut), // SpamComplaint: the recipient marked it as spam
        ("100003", OptOut), // Unconfirmed: registration not confirmed (unverified)
        ("100006", Policy), // Blocked: an ISP block, for content or a blocklist (unverified)
        ("100009", Policy), // DMARCPolicy: refused by DMARC policy (unverified)
        ("100010", Policy), // TemplateRenderingFailed: our template (unverified)
    ]
};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Body {
    #[serde(flatten)]
    envelope: EnvelopeBody,
    #[serde(rename = "Type")]
    kind: Option<String>,
    type_code: Option<serde_json::Value>,
    description: Option<String>,
    details: Option<String>,
}

impl Provider for Postmark {
    fn name(&self) -> &'static str {
        "postmark"
    }

    fn forwarded_headers(&self) -> &'static [&'static str] {
        // The credentials are secrets: never kept with the event.
        &[]
    }

    fn known_event_types(&self) -> &'static [&'static str] {
        &RECORD_TYPES
    }

    fn precheck(&self, headers: &dyn Headers, _now: i64) -> Result<(), SignatureError> {
        if headers.get(AUTHORIZATION).is_none()
            && (self.tokens.is_empty() || headers.get(&self.token_header).is_none())
        {
            return Err(SignatureError::MissingHeader(AUTHORIZATION));
        }
        Ok(())
    }

    fn verify(&self, request: &Request<'_>, now: i64) -> Result<(), SignatureError> {
        self.precheck(request.headers, now)?;
        let basic = Self::basic(request.headers)?;
        let by_basic = basic.is_some_and(|b| any_matches(&self.credentials, &b));
        let by_token = !self.tokens.is_empty()
            && request
                .headers
                .get(&self.token_header)
                .is_some_and(|t| any_matches(&self.tokens, t.trim().as_bytes()));
        if by_basic || by_token {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }

    fn envelope(&self, _headers: &dyn Headers, body: &[u8]) -> Envelope {
        match serde_json::from_slice::<EnvelopeBody>(body) {
            Ok(b) => Envelope {
                event_id: b.event_id(),
                event_type: b.record_type,
            },
            Err(_) => Envelope::default(),
        }
    }

    fn decode(&self, _headers: &dyn Headers, body: &[u8]) -> Result<DeliveryEvent, DecodeError> {
        let b: Body =
            serde_json::from_slice(body).map_err(|e| DecodeError::Shape(e.to_string()))?;
        let record = b
            .envelope
            .record_type
            .clone()
            .ok_or_else(|| DecodeError::Shape("missing RecordType".into()))?;
        let event_id = b
            .envelope
            .event_id()
            .ok_or_else(|| DecodeError::Shape("no ID and no event time".into()))?;
        let time = b.envelope.time().unwrap_or_default();
        let occurred_at = DateTime::parse_from_rfc3339(time)
            .map_err(|e| DecodeError::Shape(format!("event time {time:?}: {e}")))?
            .with_timezone(&Utc);
        let mut event = DeliveryEvent {
            provider: "postmark",
            event_id,
            message_id: b.envelope.message_id.clone().unwrap_or_default(),
            event_type: record.clone(),
            status: None,
            engagement: None,
            provider_status: None,
            unmapped: false,
            addresses: Vec::new(),
            occurred_at,
            error_code: None,
            error_description: None,
            failure_class: None,
            cost: None,
            parts: None,
        };
        match record.as_str() {
            "Delivery" => event.status = Some(DeliveryStatus::Delivered),
            "SpamComplaint" => {
                event.status = Some(DeliveryStatus::Complained);
                event.failure_class = Some(FailureClass::OptOut);
            }
            "Open" => event.engagement = Some(Engagement::Opened),
            "Click" => event.engagement = Some(Engagement::Clicked),
            "Bounce" => {
                let kind = b.kind.clone().unwrap_or_default();
                match bounce_status(&kind) {
                    Some(status) => event.status = status,
                    None => event.unmapped = true,
                }
                event.error_code = b.type_code.as_ref().and_then(super::code_to_string);
                event.failure_class = event
                    .error_code
                    .as_deref()
                    .map(|c| super::class_of(CLASSES, c));
                event.error_description = b.details.clone().or(b.description.clone());
                event.provider_status = Some(kind);
            }
            // A suppression turned on or off: no delivery status (issue 32's list reads it).
            "SubscriptionChange" => {}
            _ => event.unmapped = true,
        }
        if event.message_id.is_empty() && (event.status.is_some() || event.engagement.is_some()) {
            return Err(DecodeError::Shape("missing MessageID".into()));
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configured() -> Postmark {
        Postmark {
            credentials: vec![digest(b"hook:s3cret")],
            tokens: vec![digest(b"tok-1")],
            token_header: "x-hookline-token".into(),
        }
    }

    fn verdict(p: &Postmark, headers: &[(&str, &str)]) -> Result<(), SignatureError> {
        let h: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        p.verify(&Request::new(&h, b"{}"), 0)
    }

    #[test]
    fn basic_auth_or_header_token_in_constant_time() {
        let p = configured();
        let b64 = base64::engine::general_purpose::STANDARD;
        let good = format!("Basic {}", b64.encode("hook:s3cret"));
        assert_eq!(verdict(&p, &[("authorization", &good)]), Ok(()));
        assert_eq!(verdict(&p, &[("x-hookline-token", "tok-1")]), Ok(()));
        let wrong = format!("Basic {}", b64.encode("hook:s3cres"));
        assert_eq!(
            verdict(&p, &[("authorization", &wrong)]),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verdict(&p, &[("x-hookline-token", "tok-2")]),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verdict(&p, &[("authorization", "Bearer abc")]),
            Err(SignatureError::MalformedHeader(AUTHORIZATION))
        );
        assert_eq!(
            verdict(&p, &[]),
            Err(SignatureError::MissingHeader(AUTHORIZATION))
        );
        assert!(POSTMARK.configure(&Values::new(), 300).unwrap().is_none());
        assert!(POSTMARK
            .configure(&Values::new().with(&CREDENTIALS, "no-colon"), 300)
            .is_err());
    }

    fn decode(body: serde_json::Value) -> DeliveryEvent {
        Postmark::default()
            .decode(&super::super::NO_HEADERS, body.to_string().as_bytes())
            .unwrap()
    }

    fn bounce(kind: &str, code: u64) -> serde_json::Value {
        serde_json::json!({"RecordType": "Bounce", "ID": 42, "Type": kind, "TypeCode": code,
            "MessageID": "m-1", "Email": "a@example.com", "BouncedAt": "2026-11-20T10:00:00Z",
            "Description": "d", "Details": "smtp;550"})
    }

    #[test]
    fn every_documented_bounce_type_maps() {
        use DeliveryStatus::*;
        let cases: [(&str, u64, Option<DeliveryStatus>); 22] = [
            ("HardBounce", 1, Some(Bounced)),
            ("Transient", 2, Some(Delayed)),
            ("Unsubscribe", 16, None),
            ("Subscribe", 32, None),
            ("AutoResponder", 64, None),
            ("AddressChange", 128, None),
            ("DnsError", 256, Some(Failed)),
            ("SpamNotification", 512, Some(Bounced)),
            ("OpenRelayTest", 1024, None),
            ("SoftBounce", 4096, Some(Failed)),
            ("VirusNotification", 8192, None),
            ("ChallengeVerification", 16384, None),
            ("BadEmailAddress", 100000, Some(Bounced)),
            ("SpamComplaint", 100001, Some(Complained)),
            ("ManuallyDeactivated", 100002, Some(Suppressed)),
            ("Unconfirmed", 100003, Some(Failed)),
            ("Blocked", 100006, Some(Bounced)),
            ("SMTPApiError", 100007, Some(Failed)),
            ("InboundError", 100008, None),
            ("DMARCPolicy", 100009, Some(Bounced)),
            ("TemplateRenderingFailed", 100010, Some(Failed)),
            ("Unknown", 2048, None),
        ];
        for (kind, code, want) in cases {
            let e = decode(bounce(kind, code));
            assert_eq!(e.status, want, "{kind}");
            assert_eq!(e.provider_status.as_deref(), Some(kind));
            assert_eq!(e.error_code, Some(code.to_string()));
            assert_eq!(e.event_id, "Bounce-42");
            // Only what Postmark could not classify, or a type added since, is unmapped.
            assert_eq!(e.unmapped, kind == "Unknown", "{kind}");
        }
        assert!(decode(bounce("SomethingNew", 9)).unmapped);
    }

    /// Every documented bounce `Type` with its `TypeCode`, to build bounces as Postmark sends them.
    const TYPES: [(&str, u64); 22] = [
        ("HardBounce", 1),
        ("Transient", 2),
        ("Unsubscribe", 16),
        ("Subscribe", 32),
        ("AutoResponder", 64),
        ("AddressChange", 128),
        ("DnsError", 256),
        ("SpamNotification", 512),
        ("OpenRelayTest", 1024),
        ("Unknown", 2048),
        ("SoftBounce", 4096),
        ("VirusNotification", 8192),
        ("ChallengeVerification", 16384),
        ("BadEmailAddress", 100000),
        ("SpamComplaint", 100001),
        ("ManuallyDeactivated", 100002),
        ("Unconfirmed", 100003),
        ("Blocked", 100006),
        ("SMTPApiError", 100007),
        ("InboundError", 100008),
        ("DMARCPolicy", 100009),
        ("TemplateRenderingFailed", 100010),
    ];

    fn bounced(kind: &str) -> DeliveryEvent {
        let (_, code) = TYPES.iter().find(|(k, _)| *k == kind).unwrap();
        decode(bounce(kind, *code))
    }

    #[test]
    fn every_documented_type_code_has_a_class_and_others_are_unknown() {
        // What the documentation says each is, spelled out independently of the table.
        for (kind, want) in [
            ("HardBounce", FailureClass::Hard),
            ("BadEmailAddress", FailureClass::Hard),
            ("Transient", FailureClass::Soft),
            ("SoftBounce", FailureClass::Soft),
            ("DnsError", FailureClass::Soft),
            ("SpamNotification", FailureClass::Policy),
            ("Blocked", FailureClass::Policy),
            ("DMARCPolicy", FailureClass::Policy),
            ("SpamComplaint", FailureClass::OptOut),
            ("Unsubscribe", FailureClass::OptOut),
        ] {
            assert_eq!(bounced(kind).failure_class, Some(want), "{kind}");
        }
        // Every row reaches an event through a bounce in Postmark's shape, once each.
        let mut seen = std::collections::HashSet::new();
        for (code, class) in CLASSES {
            assert!(seen.insert(code), "{code} listed twice");
            let (kind, _) = TYPES
                .iter()
                .find(|(_, c)| c.to_string() == *code)
                .unwrap_or_else(|| panic!("{code} is no documented TypeCode"));
            let e = bounced(kind);
            assert_eq!(e.error_code.as_deref(), Some(*code));
            assert_eq!(e.failure_class, Some(*class), "{code} {kind}");
        }
        assert_eq!(CLASSES.len(), 15);
        // Documented, but saying nothing of the address; then codes Postmark does not list.
        for kind in [
            "Subscribe",
            "AutoResponder",
            "OpenRelayTest",
            "Unknown",
            "ManuallyDeactivated",
            "SMTPApiError",
            "InboundError",
        ] {
            assert_eq!(
                bounced(kind).failure_class,
                Some(FailureClass::Unknown),
                "{kind}"
            );
        }
        for code in [0, 3, 99999] {
            let e = decode(bounce("SomethingNew", code));
            assert_eq!(e.failure_class, Some(FailureClass::Unknown), "{code}");
        }
        // The code decides, not the name; no code, no class from the table.
        let e = decode(bounce("SoftBounce", 1));
        assert_eq!(e.failure_class, Some(FailureClass::Hard));
        let mut untyped = bounce("HardBounce", 1);
        untyped.as_object_mut().unwrap().remove("TypeCode");
        assert_eq!(decode(untyped).failure_class, None);
        // A SpamComplaint record is the recipient saying no.
        let c = decode(serde_json::json!({"RecordType": "SpamComplaint", "ID": 7,
            "Type": "SpamComplaint", "TypeCode": 100001, "MessageID": "m-1",
            "BouncedAt": "2026-11-20T10:00:00Z"}));
        assert_eq!(c.failure_class, Some(FailureClass::OptOut));
        let d = decode(
            serde_json::json!({"RecordType": "Delivery", "MessageID": "m-1",
            "Recipient": "a@example.com", "DeliveredAt": "2026-11-20T10:00:00Z"}),
        );
        assert_eq!(d.failure_class, None);
    }

    #[test]
    fn every_record_type_decodes() {
        let at = "2026-11-20T10:00:00Z";
        let d = decode(
            serde_json::json!({"RecordType": "Delivery", "MessageID": "m-1",
            "Recipient": "a@example.com", "DeliveredAt": at}),
        );
        assert_eq!(d.status, Some(DeliveryStatus::Delivered));
        assert_eq!(d.event_id, format!("m-1:Delivery:{at}"));
        let c = decode(serde_json::json!({"RecordType": "SpamComplaint", "ID": 7,
            "Type": "SpamComplaint", "TypeCode": 100001, "MessageID": "m-1", "BouncedAt": at}));
        assert_eq!(c.status, Some(DeliveryStatus::Complained));
        assert_eq!(c.event_id, "SpamComplaint-7");
        let o = decode(serde_json::json!({"RecordType": "Open", "FirstOpen": true,
            "MessageID": "m-1", "ReceivedAt": at}));
        assert_eq!(o.engagement, Some(Engagement::Opened));
        let k = decode(
            serde_json::json!({"RecordType": "Click", "OriginalLink": "https://x.test/a",
            "MessageID": "m-1", "ReceivedAt": at}),
        );
        assert_eq!(k.engagement, Some(Engagement::Clicked));
        assert_eq!(k.event_id, format!("m-1:Click:{at}:https://x.test/a"));
        let s = decode(
            serde_json::json!({"RecordType": "SubscriptionChange", "MessageID": null,
            "ChangedAt": at, "Recipient": "a@example.com", "SuppressSending": true,
            "SuppressionReason": "ManualSuppression"}),
        );
        assert_eq!((s.status, s.engagement, s.unmapped), (None, None, false));
        let n = decode(
            serde_json::json!({"RecordType": "Inbound", "MessageID": "m-1",
            "ReceivedAt": at}),
        );
        assert!(n.unmapped);
        assert!(Postmark::default()
            .decode(&super::super::NO_HEADERS, br#"{"RecordType":"Delivery"}"#)
            .is_err());
    }

    #[test]
    fn samples_decode_to_their_status() {
        for (status, want) in [
            (SampleStatus::Delivered, Some(DeliveryStatus::Delivered)),
            (SampleStatus::Undelivered, Some(DeliveryStatus::Bounced)),
        ] {
            let body = POSTMARK
                .sample(&Sample {
                    event_id: "e-1",
                    message_id: "m-1",
                    status,
                    at: "2026-11-20T10:00:00.000Z",
                })
                .unwrap();
            let e = decode(serde_json::from_str(&body).unwrap());
            assert_eq!(e.status, want);
        }
    }
}
