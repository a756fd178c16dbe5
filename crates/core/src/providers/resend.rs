//! Resend email webhooks: signed with the Svix scheme; the event id is the `svix-id` header, the
//! type is `type`, the message is `data.email_id`. Opens and clicks are engagement, not status;
//! inbound mail, contact and domain events carry no delivery information and are stored as they
//! are, like any type Resend adds later.
//!
//! Over 500 lines on purpose: a provider is one file (its settings, verification, decoding,
//! signing, samples and API), and a quarter of it is the tests of every documented event type.

use std::sync::Arc;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::{rfc3339, ApiSettings, LearnError, Learned, ProviderApi};
use super::{
    BuiltIn, ConfigError, DecodeError, Envelope, Headers, Provider, Request, Sample, SampleStatus,
    Setting, Signer, StoredColumns, Values,
};
use crate::event::{DeliveryEvent, DeliveryStatus, Engagement, FailureClass};
use crate::signature::{svix, SignatureError};

/// Resend as a built-in provider.
pub static RESEND: ResendKind = ResendKind;

pub struct ResendKind;

/// The same secret verifies (ingest) and signs (`hookline sign`): Resend shares it with you.
const SECRET: Setting = Setting::new(
    "resend-webhook-secret",
    "RESEND_WEBHOOK_SECRET",
    "Resend signing secret(s) `whsec_…`, comma-separated during rotation (ingest accepts each; \
     `hookline sign` signs with the first). Without one, /webhooks/resend answers 404.",
)
.secret()
.list();

static API: ApiSettings = ApiSettings {
    url: Setting::new("resend-api-url", "RESEND_API_URL", "Resend API base URL.")
        .default("https://api.resend.com"),
    key: Setting::new(
        "resend-api-key",
        "RESEND_API_KEY",
        "Resend API key; without it Resend recipients are not swept.",
    )
    .secret(),
    rate: Setting::new(
        "reconcile-resend-rate",
        "HOOKLINE_RECONCILE_RESEND_RATE",
        "Resend API requests per second. Resend's documented limit is a few requests per second \
         per team; a 429 is waited out (Retry-After / ratelimit-reset).",
    )
    .default("1"),
};

impl ResendKind {
    fn secrets(values: &Values) -> Result<Vec<svix::SvixSecret>, ConfigError> {
        values
            .list(&SECRET)
            .iter()
            .enumerate()
            .map(|(i, s)| {
                svix::SvixSecret::parse(s).map_err(|e| ConfigError::InvalidEntry {
                    variable: SECRET.env,
                    entry: i + 1,
                    problem: e.to_string(),
                })
            })
            .collect()
    }
}

impl BuiltIn for ResendKind {
    fn name(&self) -> &'static str {
        "resend"
    }

    fn scheme(&self) -> &'static str {
        "Svix HMAC-SHA256"
    }

    fn retry_span(&self) -> std::time::Duration {
        // resend.com/docs/webhooks/retries-and-replays: after the first attempt, 5 s, 5 min,
        // 30 min, 2 h, 5 h, 10 h and 10 h: 27 h 35 min 5 s in all. (A manual replay from the
        // dashboard can come at any time; `store_events` keeps it once within the window.)
        std::time::Duration::from_secs(5 + 5 * 60 + 30 * 60 + (2 + 5 + 10 + 10) * 3600)
    }

    fn verify_settings(&self) -> &'static [Setting] {
        std::slice::from_ref(&SECRET)
    }

    fn configure(
        &self,
        values: &Values,
        tolerance_secs: u64,
    ) -> Result<Option<Arc<dyn Provider>>, ConfigError> {
        let secrets = Self::secrets(values)?;
        if secrets.is_empty() {
            return Ok(None);
        }
        Ok(Some(Arc::new(Resend::new(secrets, tolerance_secs))))
    }

    fn decoder(&self) -> Arc<dyn Provider> {
        Arc::new(Resend::new(Vec::new(), 0))
    }

    fn sign_settings(&self) -> &'static [Setting] {
        std::slice::from_ref(&SECRET)
    }

    fn signer(&self, values: &Values) -> Result<Box<dyn Signer>, ConfigError> {
        let secret = Self::secrets(values)?
            .into_iter()
            .next()
            .ok_or(ConfigError::Missing {
                variable: SECRET.env,
                hint: "",
            })?;
        Ok(Box::new(ResendSigner(secret)))
    }

    fn keygen(&self) -> Values {
        let secret: [u8; 24] = rand::random();
        let b64 = base64::engine::general_purpose::STANDARD;
        Values::new().with(&SECRET, format!("whsec_{}", b64.encode(secret)))
    }

    fn sample(&self, s: &Sample<'_>) -> Option<String> {
        let kind = match s.status {
            SampleStatus::Sent => "email.sent",
            SampleStatus::Delivered => "email.delivered",
            SampleStatus::Undelivered => "email.bounced",
            SampleStatus::Opened => "email.opened",
        };
        Some(super::samples::resend_body(kind, s.message_id, s.at))
    }

    fn sample_address(&self, n: usize) -> String {
        let names = ["ada", "bob", "cyd", "dee"];
        format!("{}@example.com", names[n % names.len()])
    }

    fn api(&self) -> Option<&'static dyn ProviderApi> {
        Some(&RESEND)
    }
}

struct ResendSigner(svix::SvixSecret);

impl Signer for ResendSigner {
    fn sign(&self, _url: &str, event_id: &str, body: &[u8], ts: i64) -> Vec<(String, String)> {
        vec![
            (svix::ID_HEADER.into(), event_id.into()),
            (svix::TIMESTAMP_HEADER.into(), ts.to_string()),
            (
                svix::SIGNATURE_HEADER.into(),
                self.0.sign(event_id, ts, body),
            ),
            ("content-type".into(), "application/json".into()),
        ]
    }
}

impl ProviderApi for ResendKind {
    fn settings(&self) -> &'static ApiSettings {
        &API
    }

    fn lookup_path(&self, escaped_id: &str, _key: &str) -> String {
        format!("/emails/{escaped_id}")
    }

    fn learn(&self, response: &[u8], now: DateTime<Utc>) -> Result<Option<Learned>, LearnError> {
        from_api(response, now)
    }
}

pub struct Resend {
    secrets: Vec<svix::SvixSecret>,
    tolerance_secs: u64,
}

impl Resend {
    /// `secrets`: every currently valid `whsec_` secret (more than one during rotation).
    pub fn new(secrets: Vec<svix::SvixSecret>, tolerance_secs: u64) -> Self {
        Self {
            secrets,
            tolerance_secs,
        }
    }
}

#[derive(Deserialize)]
struct EnvelopeBody {
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct Body {
    #[serde(rename = "type")]
    kind: String,
    created_at: DateTime<Utc>,
    data: Data,
}

#[derive(Deserialize)]
struct Data {
    email_id: Option<String>,
    bounce: Option<Bounce>,
    failed: Option<Failed>,
}

#[derive(Deserialize)]
struct Bounce {
    message: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(rename = "subType")]
    sub_type: Option<String>,
}

#[derive(Deserialize)]
struct Failed {
    reason: Option<String>,
}

/// Resend's bounce types and subtypes (resend.com/docs/dashboard/emails/email-bounces) by class,
/// keyed `{type}/{subType}` as `error_code` spells them: `General` is both a permanent and a
/// transient subtype. A transient bounce about the message itself (its size, content or
/// attachment) is `policy`: sending the same message again will not help. `Undetermined`
/// (the bounce said too little) and any other pair are `unknown`.
const BOUNCE_CLASSES: &[(&str, FailureClass)] = {
    use FailureClass::{Hard, Policy, Soft};
    &[
        ("Permanent/General", Hard), // The recipient's provider hard-bounced it
        ("Permanent/NoEmail", Hard), // No recipient address in the bounce
        ("Permanent/Suppressed", Hard), // Suppressed after a history of hard bounces
        ("Permanent/OnAccountSuppressionList", Hard), // Not sent: it hard-bounced before
        ("Transient/General", Soft), // May be delivered later
        ("Transient/MailboxFull", Soft), // Inbox full
        ("Transient/MessageTooLarge", Policy), // Message too large
        ("Transient/ContentRejected", Policy), // Content the provider does not allow
        ("Transient/AttachmentRejected", Policy), // Attachment not acceptable
    ]
};

/// `failed.reason` values by class. Resend lists no reasons (resend.com/docs/webhooks/emails/
/// failed names the causes in prose: invalid recipients, API keys, domain verification, quota);
/// this is the one its example shows. Any other reason is `unknown`.
const FAILED_CLASSES: &[(&str, FailureClass)] = &[
    ("reached_daily_quota", FailureClass::Policy), // Our account's daily sending quota
];

/// The class of a failure, from the field its code came from. A complaint carries no code: it is
/// the recipient marking the email as spam. `email.suppressed` has no documented values
/// (resend.com/docs/dashboard/emails/email-suppressions: a past bounce or complaint, not which),
/// so it is left `unknown`.
fn failure_class(event_type: &str, data: &Data, code: Option<&str>) -> Option<FailureClass> {
    if event_type == "email.complained" {
        return Some(FailureClass::OptOut);
    }
    let table = match (&data.bounce, &data.failed) {
        (Some(_), _) => BOUNCE_CLASSES,
        (None, Some(_)) => FAILED_CLASSES,
        (None, None) => return None,
    };
    code.map(|c| super::class_of(table, c))
}

enum Kind {
    Status(DeliveryStatus),
    Engagement(Engagement),
    /// Documented, but nothing about a sent email's delivery.
    NoDelivery,
}

/// A Resend webhook type's delivery status (`None` for engagement and other types).
fn kind_status(event_type: &str) -> Option<DeliveryStatus> {
    match kind(event_type)? {
        Kind::Status(s) => Some(s),
        Kind::Engagement(_) | Kind::NoDelivery => None,
    }
}

/// Every documented type (resend.com/docs/webhooks/event-types); `None`: not (yet) documented.
fn kind(event_type: &str) -> Option<Kind> {
    use DeliveryStatus as S;
    Some(match event_type {
        "email.scheduled" => Kind::Status(S::Queued),
        "email.sent" => Kind::Status(S::Sent),
        "email.delivery_delayed" => Kind::Status(S::Delayed),
        "email.delivered" => Kind::Status(S::Delivered),
        "email.failed" => Kind::Status(S::Failed),
        "email.bounced" => Kind::Status(S::Bounced),
        "email.complained" => Kind::Status(S::Complained),
        "email.suppressed" => Kind::Status(S::Suppressed),
        "email.opened" => Kind::Engagement(Engagement::Opened),
        "email.clicked" => Kind::Engagement(Engagement::Clicked),
        "email.received" | "contact.created" | "contact.updated" | "contact.deleted"
        | "domain.created" | "domain.updated" | "domain.deleted" => Kind::NoDelivery,
        _ => return None,
    })
}

impl Provider for Resend {
    fn name(&self) -> &'static str {
        "resend"
    }

    fn forwarded_headers(&self) -> &'static [&'static str] {
        &[
            svix::ID_HEADER,
            svix::TIMESTAMP_HEADER,
            svix::SIGNATURE_HEADER,
        ]
    }

    fn known_event_types(&self) -> &'static [&'static str] {
        &[
            "email.scheduled",
            "email.sent",
            "email.delivered",
            "email.delivery_delayed",
            "email.bounced",
            "email.complained",
            "email.failed",
            "email.suppressed",
            "email.opened",
            "email.clicked",
            "email.received",
            "contact.created",
            "contact.updated",
            "contact.deleted",
            "domain.created",
            "domain.updated",
            "domain.deleted",
        ]
    }

    fn verify(&self, request: &Request<'_>, now: i64) -> Result<(), SignatureError> {
        let (headers, body) = (request.headers, request.body);
        svix::verify(
            &self.secrets,
            headers.get(svix::ID_HEADER),
            headers.get(svix::TIMESTAMP_HEADER),
            headers.get(svix::SIGNATURE_HEADER),
            body,
            now,
            self.tolerance_secs,
        )
    }

    fn precheck(&self, headers: &dyn Headers, now: i64) -> Result<(), SignatureError> {
        svix::precheck(
            headers.get(svix::ID_HEADER),
            headers.get(svix::TIMESTAMP_HEADER),
            headers.get(svix::SIGNATURE_HEADER),
            now,
            self.tolerance_secs,
        )
    }

    /// The event id travels in `svix-id`, not in the body.
    fn replay_headers(&self, stored: &StoredColumns<'_>) -> Vec<(String, String)> {
        vec![(svix::ID_HEADER.to_owned(), stored.event_id.to_owned())]
    }

    fn envelope(&self, headers: &dyn Headers, body: &[u8]) -> Envelope {
        Envelope {
            event_id: headers
                .get(svix::ID_HEADER)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            event_type: serde_json::from_slice::<EnvelopeBody>(body)
                .ok()
                .and_then(|b| b.kind),
        }
    }

    fn decode(&self, headers: &dyn Headers, body: &[u8]) -> Result<DeliveryEvent, DecodeError> {
        let event_id = headers
            .get(svix::ID_HEADER)
            .filter(|s| !s.is_empty())
            .ok_or(DecodeError::MissingHeader(svix::ID_HEADER))?;
        let body: Body =
            serde_json::from_slice(body).map_err(|e| DecodeError::Shape(e.to_string()))?;
        let kind = kind(&body.kind);
        let (status, engagement) = match kind {
            Some(Kind::Status(s)) => (Some(s), None),
            Some(Kind::Engagement(e)) => (None, Some(e)),
            Some(Kind::NoDelivery) | None => (None, None),
        };
        let message_id = body.data.email_id.clone().unwrap_or_default();
        if (status.is_some() || engagement.is_some()) && message_id.is_empty() {
            return Err(DecodeError::Shape("missing data.email_id".into()));
        }
        let (error_code, error_description) = match (&body.data.bounce, &body.data.failed) {
            (Some(b), _) => (
                match (&b.kind, &b.sub_type) {
                    (Some(t), Some(s)) => Some(format!("{t}/{s}")),
                    (t, s) => t.clone().or_else(|| s.clone()),
                },
                b.message.clone(),
            ),
            (None, Some(f)) => (f.reason.clone(), f.reason.clone()),
            (None, None) => (None, None),
        };
        let failure_class = failure_class(&body.kind, &body.data, error_code.as_deref());
        Ok(DeliveryEvent {
            provider: "resend",
            event_id: event_id.to_owned(),
            message_id,
            provider_status: body.kind.strip_prefix("email.").map(str::to_owned),
            unmapped: kind.is_none(),
            addresses: Vec::new(),
            event_type: body.kind,
            status,
            engagement,
            occurred_at: body.created_at,
            error_code,
            error_description,
            failure_class,
            cost: None,
            parts: None,
        })
    }
}

/// Resend's API writes times as `2026-11-23 10:00:00.000000+00` (PostgreSQL style); webhooks use
/// RFC 3339. Accepts both.
fn parse_api_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%#z")
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Resend `GET /emails/{id}` → an `email.{last_event}` webhook. `opened` and `clicked` imply the
/// email was delivered, so they are reported as `email.delivered`. `Ok(None)`: a last event
/// hookline does not map (e.g. `scheduled`, `canceled`).
fn from_api(response: &[u8], now: DateTime<Utc>) -> Result<Option<Learned>, LearnError> {
    let v: Value =
        serde_json::from_slice(response).map_err(|e| LearnError(format!("not JSON: {e}")))?;
    let id = v["id"].as_str().filter(|s| !s.is_empty()).ok_or("no id")?;
    let last = v["last_event"].as_str().ok_or("no last_event")?;
    let last = match last {
        "opened" | "clicked" => "delivered",
        other => other,
    };
    let event_type = format!("email.{last}");
    let status = match kind_status(&event_type) {
        Some(s) => s,
        None => return Ok(None),
    };
    let event_id = format!("reconcile-{id}-{last}");
    let mut data = json!({ "email_id": id });
    for k in ["created_at", "from", "to", "subject"] {
        if let Some(x) = v.get(k) {
            data[k] = x.clone();
        }
    }
    // The API gives no time for the last event; the email's own creation time is the provider's
    // timestamp closest to it (never later than the real event, unlike the time of the sweep).
    let occurred_at = v["created_at"]
        .as_str()
        .and_then(parse_api_time)
        .unwrap_or(now);
    let body = json!({ "type": event_type, "created_at": rfc3339(occurred_at), "data": data });
    Ok(Some(Learned {
        status,
        headers: vec![(svix::ID_HEADER.to_owned(), event_id.clone())],
        event_id,
        event_type,
        body: body.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(kind: &str, extra: &str) -> String {
        format!(
            r#"{{"type":"{kind}","created_at":"2026-11-20T10:00:00.000Z","data":{{"created_at":"2026-11-20T09:59:59.000Z",
            "email_id":"em-1","from":"Acme <onboarding@resend.dev>","to":["delivered@resend.dev"],"subject":"Hi"{extra}}}}}"#
        )
    }

    fn decode(b: &str) -> Result<DeliveryEvent, DecodeError> {
        let h = [("Svix-Id", "msg_1")];
        Resend::new(Vec::new(), 0).decode(&h, b.as_bytes())
    }

    #[test]
    fn maps_types_to_status_or_engagement() {
        let ev = decode(&body("email.delivered", "")).unwrap();
        assert_eq!(ev.status, Some(DeliveryStatus::Delivered));
        assert_eq!(ev.engagement, None);
        assert_eq!(ev.event_id, "msg_1");
        assert_eq!(ev.message_id, "em-1");
        let ev = decode(&body("email.opened", "")).unwrap();
        assert_eq!(ev.status, None);
        assert_eq!(ev.engagement, Some(Engagement::Opened));
        for (t, s) in [
            ("email.scheduled", DeliveryStatus::Queued),
            ("email.sent", DeliveryStatus::Sent),
            ("email.delivery_delayed", DeliveryStatus::Delayed),
            ("email.delivered", DeliveryStatus::Delivered),
            ("email.complained", DeliveryStatus::Complained),
            ("email.failed", DeliveryStatus::Failed),
            ("email.bounced", DeliveryStatus::Bounced),
            ("email.suppressed", DeliveryStatus::Suppressed),
        ] {
            let ev = decode(&body(t, "")).unwrap();
            assert_eq!(ev.status, Some(s), "{t}");
            assert_eq!(ev.provider_status.as_deref(), t.strip_prefix("email."));
            assert!(!ev.unmapped);
        }
        assert_eq!(
            decode(&body("email.clicked", "")).unwrap().engagement,
            Some(Engagement::Clicked)
        );
    }

    #[test]
    fn bounce_and_failure_details_become_the_error() {
        let ev = decode(&body(
            "email.bounced",
            r#","bounce":{"message":"Mailbox does not exist","subType":"General","type":"Permanent"}"#,
        ))
        .unwrap();
        assert_eq!(ev.status, Some(DeliveryStatus::Bounced));
        assert_eq!(ev.error_code.as_deref(), Some("Permanent/General"));
        assert_eq!(
            ev.error_description.as_deref(),
            Some("Mailbox does not exist")
        );
        let ev = decode(&body(
            "email.failed",
            r#","failed":{"reason":"reached_daily_quota"}"#,
        ))
        .unwrap();
        assert_eq!(ev.error_code.as_deref(), Some("reached_daily_quota"));
    }

    fn bounced(kind: &str, sub_type: &str) -> DeliveryEvent {
        decode(&body(
            "email.bounced",
            &format!(r#","bounce":{{"message":"m","subType":"{sub_type}","type":"{kind}"}}"#),
        ))
        .unwrap()
    }

    fn failed(reason: &str) -> DeliveryEvent {
        decode(&body(
            "email.failed",
            &format!(r#","failed":{{"reason":"{reason}"}}"#),
        ))
        .unwrap()
    }

    #[test]
    fn every_documented_bounce_and_reason_has_a_class_and_others_are_unknown() {
        // What the documentation says each is, spelled out independently of the tables.
        for (kind, sub_type, want) in [
            ("Permanent", "General", FailureClass::Hard),
            ("Permanent", "NoEmail", FailureClass::Hard),
            ("Permanent", "OnAccountSuppressionList", FailureClass::Hard),
            ("Transient", "General", FailureClass::Soft),
            ("Transient", "MailboxFull", FailureClass::Soft),
            ("Transient", "ContentRejected", FailureClass::Policy),
            ("Transient", "MessageTooLarge", FailureClass::Policy),
        ] {
            let ev = bounced(kind, sub_type);
            assert_eq!(ev.failure_class, Some(want), "{kind}/{sub_type}");
        }
        assert_eq!(
            failed("reached_daily_quota").failure_class,
            Some(FailureClass::Policy)
        );
        // Every row reaches an event through a webhook in Resend's shape, once each.
        let mut seen = std::collections::HashSet::new();
        for (code, class) in BOUNCE_CLASSES {
            assert!(seen.insert(code), "{code} listed twice");
            let (kind, sub_type) = code.split_once('/').unwrap();
            let ev = bounced(kind, sub_type);
            assert_eq!(ev.error_code.as_deref(), Some(*code));
            assert_eq!(ev.failure_class, Some(*class), "{code}");
        }
        for (code, class) in FAILED_CLASSES {
            assert!(seen.insert(code), "{code} listed twice");
            let ev = failed(code);
            assert_eq!(ev.error_code.as_deref(), Some(*code));
            assert_eq!(ev.failure_class, Some(*class), "{code}");
        }
        assert_eq!((BOUNCE_CLASSES.len(), FAILED_CLASSES.len()), (9, 1));
        // Undetermined is Resend saying it cannot tell; a subtype under the other type is not the
        // same code.
        for (kind, sub_type) in [
            ("Undetermined", "Undetermined"),
            ("Permanent", "MailboxFull"),
            ("Transient", "NoEmail"),
            ("Permanent", "Teleported"),
        ] {
            let ev = bounced(kind, sub_type);
            assert_eq!(
                ev.failure_class,
                Some(FailureClass::Unknown),
                "{kind}/{sub_type}"
            );
        }
        assert_eq!(
            failed("Permanent/General").failure_class,
            Some(FailureClass::Unknown)
        );
        assert_eq!(
            failed("no_such_reason").failure_class,
            Some(FailureClass::Unknown)
        );
        let only_type = decode(&body("email.bounced", r#","bounce":{"type":"Permanent"}"#));
        assert_eq!(
            only_type.unwrap().failure_class,
            Some(FailureClass::Unknown)
        );
        // A complaint is the recipient saying no; a suppression names nothing documented.
        let ev = decode(&body("email.complained", "")).unwrap();
        assert_eq!(ev.failure_class, Some(FailureClass::OptOut));
        let suppressed = r#","suppressed":{"type":"Bounced","message":"m"}"#;
        let ev = decode(&body("email.suppressed", suppressed)).unwrap();
        assert_eq!((ev.error_code, ev.failure_class), (None, None));
        assert_eq!(
            decode(&body("email.failed", "")).unwrap().failure_class,
            None
        );
    }

    #[test]
    fn event_type_labels_are_bounded() {
        let r = Resend::new(Vec::new(), 0);
        assert_eq!(r.event_type_label("email.opened"), "email.opened");
        assert_eq!(r.event_type_label("email.opened\n{evil}"), "other");
        assert_eq!(r.event_type_label(&"x".repeat(1000)), "other");
    }

    #[test]
    fn keeps_other_and_unknown_types_and_rejects_bad_shapes() {
        for t in [
            "email.received",
            "contact.created",
            "contact.updated",
            "contact.deleted",
            "domain.created",
            "domain.updated",
            "domain.deleted",
        ] {
            let ev = decode(&format!(
                r#"{{"type":"{t}","created_at":"2026-11-20T10:00:00.000Z","data":{{"id":"x-1"}}}}"#
            ))
            .unwrap();
            assert_eq!(
                (ev.status, ev.engagement, ev.unmapped),
                (None, None, false),
                "{t}"
            );
            assert_eq!(ev.message_id, "", "{t}: about no email");
        }
        let ev = decode(&body("email.teleported", "")).unwrap();
        assert_eq!(
            (ev.status, ev.unmapped),
            (None, true),
            "an unknown type is kept"
        );
        assert_eq!(ev.message_id, "em-1");
        assert!(matches!(decode("[1,2"), Err(DecodeError::Shape(_))));
        assert!(matches!(
            decode(r#"{"type":"email.sent","created_at":"2026-11-20T10:00:00.000Z","data":{}}"#),
            Err(DecodeError::Shape(_))
        ));
        assert_eq!(
            Resend::new(Vec::new(), 0)
                .decode(&super::super::NO_HEADERS, body("email.sent", "").as_bytes()),
            Err(DecodeError::MissingHeader("svix-id"))
        );
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn resend_answer_becomes_a_decodable_webhook() {
        let api = br#"{"object":"email","id":"4ef9a417","to":["a@example.com"],"from":"x@y.z",
            "created_at":"2026-11-23 10:00:00.000000+00","subject":"Hi","last_event":"clicked"}"#;
        let l = from_api(api, now()).unwrap().unwrap();
        assert_eq!(
            l.status,
            DeliveryStatus::Delivered,
            "clicked implies delivered"
        );
        let ev = Resend::new(Vec::new(), 0)
            .decode(&l.headers, l.body.as_bytes())
            .unwrap();
        assert_eq!(
            (ev.message_id.as_str(), ev.event_id.as_str()),
            ("4ef9a417", "reconcile-4ef9a417-delivered")
        );
        assert_eq!(ev.status, Some(DeliveryStatus::Delivered));
        assert_eq!(
            ev.occurred_at.to_rfc3339(),
            "2026-11-23T10:00:00+00:00",
            "the email's own time, not the sweep's"
        );
        let bounced = br#"{"id":"e2","last_event":"bounced"}"#;
        assert_eq!(
            from_api(bounced, now()).unwrap().unwrap().status,
            DeliveryStatus::Bounced
        );
        assert_eq!(
            from_api(br#"{"id":"e3","last_event":"canceled"}"#, now()),
            Ok(None)
        );
        assert!(from_api(b"<html>", now()).is_err());
    }
}
