//! Telnyx messaging webhooks (SMS/MMS): Ed25519-signed, verified exactly as telnyx-python does
//! (PyNaCl's `VerifyKey.verify`, i.e. libsodium: see `signature::ed25519`); `message.sent` and `message.finalized`
//! carry the recipient's status in `data.payload.to[].status`. Every other type (an inbound
//! `message.received`, a type Telnyx adds later) is decoded too, with no status, and stored.
//!
//! A message has one address in `to` for SMS. A group MMS has several, each with its own status:
//! each is kept as an [`AddressOutcome`], and the message's own status (what its recipient row and
//! batch counters show) is the highest-ranked of them, e.g. `failed` if any address failed.
//!
//! Over 500 lines on purpose: a provider is one file (its settings, verification, decoding,
//! signing, samples and API), and a third of it is the tests of every documented status.

use std::sync::Arc;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::{rfc3339, ApiSettings, LearnError, Learned, ProviderApi};
use super::{
    code_to_string, BuiltIn, ConfigError, DecodeError, Envelope, Headers, Provider, Request,
    Sample, SampleStatus, Setting, Signer, Values,
};
use crate::event::{AddressOutcome, Cost, DeliveryEvent, DeliveryStatus, FailureClass};
use crate::signature::{ed25519, SignatureError};

/// Telnyx's signature headers.
pub const HEADERS: ed25519::HeaderNames = ed25519::HeaderNames {
    signature: "telnyx-signature-ed25519",
    timestamp: "telnyx-timestamp",
};

/// Telnyx as a built-in provider.
pub static TELNYX: TelnyxKind = TelnyxKind;

pub struct TelnyxKind;

const PUBLIC_KEY: Setting = Setting::new(
    "telnyx-public-key",
    "TELNYX_PUBLIC_KEY",
    "Telnyx public keys (base64 Ed25519), comma-separated: one per Telnyx account sending here, \
     or the old and new key during a rotation; a webhook verified by any of them is accepted. \
     Without one, /webhooks/telnyx answers 404.",
)
.secret()
.list();

const SIGNING_KEY: Setting = Setting::new(
    "telnyx-signing-key",
    "TELNYX_SIGNING_KEY",
    "Telnyx test private key: base64 Ed25519 seed (from `hookline keygen`).",
)
.secret();

static API: ApiSettings = ApiSettings {
    url: Setting::new("telnyx-api-url", "TELNYX_API_URL", "Telnyx API base URL.")
        .default("https://api.telnyx.com"),
    key: Setting::new(
        "telnyx-api-key",
        "TELNYX_API_KEY",
        "Telnyx API key; without it Telnyx recipients are not swept.",
    )
    .secret(),
    rate: Setting::new(
        "reconcile-telnyx-rate",
        "HOOKLINE_RECONCILE_TELNYX_RATE",
        "Telnyx API requests per second. Telnyx publishes its limits per endpoint in \
         x-ratelimit-* headers; a 429 is waited out (Retry-After / x-ratelimit-reset).",
    )
    .default("10"),
};

impl BuiltIn for TelnyxKind {
    fn name(&self) -> &'static str {
        "telnyx"
    }

    fn scheme(&self) -> &'static str {
        "Ed25519 over timestamp and body"
    }

    fn retry_span(&self) -> std::time::Duration {
        // Telnyx documents that it retries a webhook not answered in time, then sends it to the
        // failover URL, without a schedule; its attempts come within minutes. An hour, to be
        // safe.
        std::time::Duration::from_secs(3600)
    }

    fn verify_settings(&self) -> &'static [Setting] {
        std::slice::from_ref(&PUBLIC_KEY)
    }

    fn configure(
        &self,
        values: &Values,
        tolerance_secs: u64,
    ) -> Result<Option<Arc<dyn Provider>>, ConfigError> {
        let keys = values
            .list(&PUBLIC_KEY)
            .iter()
            .enumerate()
            .map(|(i, key)| {
                ed25519::parse_public_key(key).map_err(|e| ConfigError::InvalidEntry {
                    variable: PUBLIC_KEY.env,
                    entry: i + 1,
                    problem: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Ok(None);
        }
        Ok(Some(Arc::new(Telnyx::new(keys, tolerance_secs))))
    }

    fn decoder(&self) -> Arc<dyn Provider> {
        Arc::new(Telnyx::new(Vec::new(), 0))
    }

    fn sign_settings(&self) -> &'static [Setting] {
        std::slice::from_ref(&SIGNING_KEY)
    }

    fn signer(&self, values: &Values) -> Result<Box<dyn Signer>, ConfigError> {
        let seed = values.one(&SIGNING_KEY).ok_or(ConfigError::Missing {
            variable: SIGNING_KEY.env,
            hint: " (make one with `hookline keygen`)",
        })?;
        let key =
            ed25519::parse_signing_key(seed).map_err(|e| ConfigError::invalid(&SIGNING_KEY, e))?;
        Ok(Box::new(TelnyxSigner(key)))
    }

    fn keygen(&self) -> Values {
        let seed: [u8; 32] = rand::random();
        let key = SigningKey::from_bytes(&seed);
        let b64 = base64::engine::general_purpose::STANDARD;
        Values::new()
            .with(&SIGNING_KEY, b64.encode(seed))
            .with(&PUBLIC_KEY, b64.encode(key.verifying_key().to_bytes()))
    }

    fn sample(&self, s: &Sample<'_>) -> Option<String> {
        let status = match s.status {
            SampleStatus::Sent => "sent",
            SampleStatus::Delivered => "delivered",
            SampleStatus::Undelivered => "delivery_failed",
            SampleStatus::Opened => return None,
        };
        Some(super::samples::telnyx_body(
            s.event_id,
            s.message_id,
            status,
            s.at,
        ))
    }

    fn sample_address(&self, n: usize) -> String {
        format!("+1312555{:04}", 123 + n)
    }

    fn api(&self) -> Option<&'static dyn ProviderApi> {
        Some(&TELNYX)
    }
}

struct TelnyxSigner(SigningKey);

impl Signer for TelnyxSigner {
    fn sign(&self, _url: &str, _event_id: &str, body: &[u8], ts: i64) -> Vec<(String, String)> {
        vec![
            (HEADERS.signature.into(), ed25519::sign(&self.0, ts, body)),
            (HEADERS.timestamp.into(), ts.to_string()),
            ("content-type".into(), "application/json".into()),
        ]
    }
}

impl ProviderApi for TelnyxKind {
    fn settings(&self) -> &'static ApiSettings {
        &API
    }

    fn lookup_path(&self, escaped_id: &str, _key: &str) -> String {
        format!("/v2/messages/{escaped_id}")
    }

    fn learn(&self, response: &[u8], now: DateTime<Utc>) -> Result<Option<Learned>, LearnError> {
        from_api(response, now)
    }
}

pub struct Telnyx {
    keys: Vec<ed25519::PublicKey>,
    tolerance_secs: u64,
}

impl Telnyx {
    /// `keys` are the accounts' public keys (several: more than one account, or a rotation);
    /// none builds a decoder that rejects every signature.
    pub fn new(keys: Vec<ed25519::PublicKey>, tolerance_secs: u64) -> Self {
        Self {
            keys,
            tolerance_secs,
        }
    }
}

#[derive(Deserialize)]
struct Body<T> {
    data: T,
}

#[derive(Deserialize)]
struct EnvelopeData {
    id: Option<String>,
    event_type: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    id: String,
    event_type: String,
    occurred_at: DateTime<Utc>,
    payload: Payload,
}

#[derive(Deserialize)]
struct Payload {
    id: Option<String>,
    #[serde(default)]
    to: Vec<To>,
    #[serde(default)]
    errors: Vec<ApiError>,
    /// `{amount, currency}` or null; the amount is a decimal string (a number in some of
    /// Telnyx's examples, so either is read by its text).
    #[serde(default)]
    cost: Option<ApiCost>,
    #[serde(default)]
    parts: Option<i32>,
}

#[derive(Deserialize)]
struct ApiCost {
    #[serde(default)]
    amount: serde_json::Value,
    #[serde(default)]
    currency: Option<String>,
}

impl ApiCost {
    fn cost(&self) -> Option<Cost> {
        let amount = match &self.amount {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => return None,
        };
        Cost::new(&amount, self.currency.as_deref()?)
    }
}

#[derive(Deserialize)]
struct To {
    status: String,
    #[serde(default)]
    phone_number: Option<String>,
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    code: serde_json::Value,
    title: Option<String>,
    detail: Option<String>,
}

/// A Telnyx recipient status (`to[].status`) as a hookline status: every value of Telnyx's
/// message schema (scheduled, queued, sending, sent, cancelled, expired, sending_failed,
/// delivery_unconfirmed, delivered, delivery_failed). `expired` (no receipt within the validity
/// period: a phone that stayed off) and `cancelled` (a scheduled message called off) are final
/// failures; the raw value stays on the event and the recipient as `provider_status`.
fn status(s: &str) -> Option<DeliveryStatus> {
    Some(match s {
        "scheduled" | "queued" => DeliveryStatus::Queued,
        "sending" => DeliveryStatus::Sending,
        "sent" => DeliveryStatus::Sent,
        "delivered" => DeliveryStatus::Delivered,
        "sending_failed" | "delivery_failed" | "expired" | "cancelled" => DeliveryStatus::Failed,
        "delivery_unconfirmed" => DeliveryStatus::Unconfirmed,
        _ => return None,
    })
}

/// Telnyx's documented messaging error codes (developers.telnyx.com/docs/messaging/messages/
/// error-codes: delivery errors 400xx, 10DLC and toll-free, number provisioning 401xx, request
/// and configuration 403xx) by class. Codes about our own sender, account, registration or
/// content are `policy`; throughput and carrier outages `soft`, as Telnyx lists them retriable.
/// `errors[].code` is a string of digits. Any other code is `unknown`.
const CLASSES: &[(&str, FailureClass)] = {
    use FailureClass::{Hard, OptOut, Policy, Soft};
    &[
        ("40001", Hard),   // Not routable: a landline or non-routable wireless number
        ("40002", Policy), // Blocked as spam (temporary)
        ("40003", Policy), // Blocked as spam (permanent): the sending number
        ("40004", Soft),   // Rejected by destination, for no given reason: retry after a delay
        ("40005", Soft),   // Message expired during transmission
        ("40006", Soft),   // Recipient server unavailable
        ("40007", Policy), // Loop detected
        ("40008", Soft),   // Undeliverable: Telnyx retries it itself
        ("40009", Policy), // Invalid message body
        ("40010", Policy), // Not 10DLC registered
        ("40011", Soft),   // Too many requests: the carrier's throughput
        ("40012", Hard),   // Invalid destination number
        ("40013", Policy), // Invalid source number
        ("40014", Soft),   // Expired in queue
        ("40015", Policy), // Blocked as spam (internal)
        ("40016", Policy), // T-Mobile 10DLC daily sending limit reached
        ("40017", Policy), // AT&T 10DLC spam message rejected
        ("40018", Soft),   // AT&T 10DLC sending limit (parts per minute)
        ("40019", Policy), // AT&T invalid tag data
        ("40020", Policy), // Artificial traffic inflation
        ("40100", Policy), // Not messaging enabled
        ("40150", Policy), // Not in voice registry
        ("40151", Policy), // Enablement pending elsewhere
        ("40155", Policy), // LOA required
        ("40300", OptOut), // Blocked due to STOP message
        ("40301", Hard),   // Unsupported message type for the 'to' address
        ("40302", Policy), // Message too large
        ("40304", Policy), // Invalid combination of content
        ("40305", Policy), // Invalid 'from' address
        ("40306", Policy), // Alpha sender not configured
        ("40307", Policy), // Alpha sender mismatch
        ("40308", Policy), // Invalid 'from' address for MMS
        ("40309", Policy), // Invalid destination region
        ("40310", Hard),   // Invalid 'to' address
        ("40311", Policy), // Invalid messaging profile secret
        ("40312", Policy), // Messaging profile disabled
        ("40313", Policy), // Missing messaging profile secret
        ("40314", Policy), // Messaging disabled on account
        ("40315", Policy), // Unhealthy 'from' address
        ("40316", Policy), // No content
        ("40317", Policy), // Invalid MMS content
        ("40318", Soft),   // Message queue full
        ("40319", Hard),   // Incompatible message type for the 'to' address
        ("40320", Soft),   // Temporarily unusable 'from' address
        ("40321", Policy), // No usable numbers on the messaging profile
        ("40322", Policy), // Blocked due to content
        ("40323", Policy), // Activation failed
        ("40325", Policy), // Invalid alpha sender ID
        ("40328", Policy), // SMS too large
        ("40329", Policy), // Toll-free not verified
        ("40330", Policy), // Toll-free not provisioned
        ("40331", Policy), // Missing whitelist
        ("40333", Policy), // Spend limit reached
        ("10001", Hard),   // Inactive phone number
        ("10002", Hard),   // Invalid phone number
        ("10016", Hard),   // Phone number must be in E.164
        ("10011", Soft),   // Too many requests
        ("10007", Soft),   // Unexpected error
        ("10003", Policy), // Malformed request (10003–10006, 10015)
        ("10004", Policy),
        ("10005", Policy),
        ("10006", Policy),
        ("10015", Policy),
        ("10009", Policy), // Authentication (10009, 10010, 20002, 20006)
        ("10010", Policy),
        ("20002", Policy),
        ("20006", Policy),
        ("20012", Policy), // Account inactive
        ("20013", Policy), // Account blocked
        ("20014", Policy), // Not verified (20014, 20016, 20017)
        ("20016", Policy),
        ("20017", Policy),
        ("20015", Policy), // Feature not enabled
        ("20100", Policy), // Insufficient funds
    ]
};

/// The outbound types whose `to[].status` is a delivery status.
const STATUS_TYPES: [&str; 2] = ["message.sent", "message.finalized"];

impl Provider for Telnyx {
    fn name(&self) -> &'static str {
        "telnyx"
    }

    fn forwarded_headers(&self) -> &'static [&'static str] {
        &[HEADERS.signature, HEADERS.timestamp]
    }

    fn known_event_types(&self) -> &'static [&'static str] {
        &["message.sent", "message.finalized", "message.received"]
    }

    fn verify(&self, request: &Request<'_>, now: i64) -> Result<(), SignatureError> {
        let (headers, body) = (request.headers, request.body);
        ed25519::verify_any(
            &HEADERS,
            &self.keys,
            headers.get(HEADERS.signature),
            headers.get(HEADERS.timestamp),
            body,
            now,
            self.tolerance_secs,
        )
    }

    fn precheck(&self, headers: &dyn Headers, now: i64) -> Result<(), SignatureError> {
        ed25519::precheck(
            &HEADERS,
            headers.get(HEADERS.signature),
            headers.get(HEADERS.timestamp),
            now,
            self.tolerance_secs,
        )
    }

    fn envelope(&self, _headers: &dyn Headers, body: &[u8]) -> Envelope {
        match serde_json::from_slice::<Body<EnvelopeData>>(body) {
            Ok(b) => Envelope {
                event_id: b.data.id.filter(|s| !s.is_empty()),
                event_type: b.data.event_type,
            },
            Err(_) => Envelope::default(),
        }
    }

    fn decode(&self, _headers: &dyn Headers, body: &[u8]) -> Result<DeliveryEvent, DecodeError> {
        let data = serde_json::from_slice::<Body<Data>>(body)
            .map_err(|e| DecodeError::Shape(e.to_string()))?
            .data;
        let error = data.payload.errors.first();
        let mut event = DeliveryEvent {
            provider: "telnyx",
            event_id: data.id,
            message_id: data.payload.id.unwrap_or_default(),
            event_type: data.event_type,
            status: None,
            engagement: None,
            provider_status: None,
            unmapped: false,
            addresses: Vec::new(),
            occurred_at: data.occurred_at,
            error_code: error.and_then(|e| code_to_string(&e.code)),
            error_description: error.and_then(|e| e.detail.clone().or_else(|| e.title.clone())),
            failure_class: error
                .and_then(|e| code_to_string(&e.code))
                .map(|c| super::class_of(CLASSES, &c)),
            cost: data.payload.cost.as_ref().and_then(ApiCost::cost),
            parts: data.payload.parts.filter(|p| *p > 0),
        };
        if !STATUS_TYPES.contains(&event.event_type.as_str()) {
            // No delivery status (an inbound message), or a type Telnyx added since.
            event.unmapped = !self
                .known_event_types()
                .contains(&event.event_type.as_str());
            return Ok(event);
        }
        if event.message_id.is_empty() {
            return Err(DecodeError::Shape("missing data.payload.id".into()));
        }
        if data.payload.to.is_empty() {
            return Err(DecodeError::Shape("data.payload.to is empty".into()));
        }
        // The message's status: the highest-ranked mapped status of its addresses (the first
        // entry's raw value when none maps).
        let top = data
            .payload
            .to
            .iter()
            .filter_map(|t| status(&t.status).map(|s| (s, t)))
            .max_by_key(|(s, _)| *s);
        event.status = top.map(|(s, _)| s);
        event.unmapped = event.status.is_none();
        event.provider_status = Some(top.map_or(&data.payload.to[0], |(_, t)| t).status.clone());
        if data.payload.to.len() > 1 {
            event.addresses = data
                .payload
                .to
                .iter()
                .map(|t| AddressOutcome {
                    address: t.phone_number.clone().unwrap_or_default(),
                    status: status(&t.status),
                    provider_status: t.status.clone(),
                })
                .collect();
        }
        Ok(event)
    }
}

/// Telnyx `GET /v2/messages/{id}` → a `message.sent`/`message.finalized` webhook whose payload is
/// the message object itself (a Telnyx webhook's payload has the same shape). `Ok(None)`: the
/// API knows the message but not in a status hookline maps.
fn from_api(response: &[u8], now: DateTime<Utc>) -> Result<Option<Learned>, LearnError> {
    let v: Value =
        serde_json::from_slice(response).map_err(|e| LearnError(format!("not JSON: {e}")))?;
    let data = v
        .get("data")
        .filter(|d| d.is_object())
        .ok_or("no data object")?;
    let id = data["id"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or("no data.id")?;
    let raws: Vec<&str> = data["to"]
        .as_array()
        .map(|to| to.iter().filter_map(|t| t["status"].as_str()).collect())
        .unwrap_or_default();
    if raws.is_empty() {
        return Err("no data.to[].status".into());
    }
    // As the webhook decoder does: the message's status is the highest-ranked of its addresses.
    let Some((status, raw)) = raws
        .iter()
        .filter_map(|r| status(r).map(|s| (s, *r)))
        .max_by_key(|(s, _)| *s)
    else {
        return Ok(None);
    };
    let event_type = if status.is_final() || status == DeliveryStatus::Delivered {
        "message.finalized"
    } else {
        "message.sent"
    };
    let occurred_at = ["completed_at", "sent_at"]
        .iter()
        .find_map(|k| data[*k].as_str())
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map_or(now, |t| t.with_timezone(&Utc));
    let event_id = format!("reconcile-{id}-{raw}");
    let body = json!({
        "data": {
            "event_type": event_type,
            "id": event_id,
            "occurred_at": rfc3339(occurred_at),
            "payload": data,
            "record_type": "event",
        },
        "meta": {"source": "hookline-reconcile"},
    });
    Ok(Some(Learned {
        status,
        event_id,
        event_type: event_type.to_owned(),
        body: body.to_string(),
        headers: Vec::new(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finalized(status: &str, errors: &str) -> String {
        format!(
            r#"{{"data":{{"event_type":"message.finalized","id":"ev-1","occurred_at":"2026-11-20T10:00:00.123+00:00",
            "payload":{{"id":"msg-1","direction":"outbound","type":"SMS","errors":{errors},
            "to":[{{"carrier":"T-MOBILE USA, INC.","line_type":"Wireless","phone_number":"+13125550000","status":"{status}"}}]}},
            "record_type":"event"}},"meta":{{"attempt":1,"delivered_to":"https://example.com/webhooks"}}}}"#
        )
    }

    fn decode(body: &str) -> Result<DeliveryEvent, DecodeError> {
        Telnyx::new(Vec::new(), 0).decode(&super::super::NO_HEADERS, body.as_bytes())
    }

    #[test]
    fn decodes_every_documented_status() {
        for (raw, want) in [
            ("scheduled", DeliveryStatus::Queued),
            ("queued", DeliveryStatus::Queued),
            ("sending", DeliveryStatus::Sending),
            ("sent", DeliveryStatus::Sent),
            ("delivered", DeliveryStatus::Delivered),
            ("sending_failed", DeliveryStatus::Failed),
            ("delivery_failed", DeliveryStatus::Failed),
            ("expired", DeliveryStatus::Failed),
            ("cancelled", DeliveryStatus::Failed),
            ("delivery_unconfirmed", DeliveryStatus::Unconfirmed),
        ] {
            let ev = decode(&finalized(raw, "[]")).unwrap();
            assert_eq!(ev.status, Some(want), "{raw}");
            assert_eq!(ev.provider_status.as_deref(), Some(raw));
            assert!(!ev.unmapped);
            assert_eq!(ev.event_id, "ev-1");
            assert_eq!(ev.message_id, "msg-1");
            assert_eq!(ev.occurred_at.timestamp_millis(), 1_795_168_800_123);
        }
    }

    #[test]
    fn keeps_the_first_error() {
        let ev = decode(&finalized(
            "delivery_failed",
            r#"[{"code":"40008","title":"Undeliverable","detail":"The destination is unreachable."}]"#,
        ))
        .unwrap();
        assert_eq!(ev.error_code.as_deref(), Some("40008"));
        assert_eq!(
            ev.error_description.as_deref(),
            Some("The destination is unreachable.")
        );
    }

    fn failed_with(code: &str) -> DeliveryEvent {
        decode(&finalized(
            "delivery_failed",
            &format!(r#"[{{"code":"{code}","title":"t","detail":"d"}}]"#),
        ))
        .unwrap()
    }

    #[test]
    fn every_documented_error_code_has_a_class_and_others_are_unknown() {
        // What the documentation says each group is, spelled out independently of the table.
        for (code, want) in [
            ("40001", FailureClass::Hard),
            ("40012", FailureClass::Hard),
            ("40310", FailureClass::Hard),
            ("40006", FailureClass::Soft),
            ("40008", FailureClass::Soft),
            ("40018", FailureClass::Soft),
            ("40002", FailureClass::Policy),
            ("40010", FailureClass::Policy),
            ("40322", FailureClass::Policy),
            ("40333", FailureClass::Policy),
            ("40300", FailureClass::OptOut),
        ] {
            assert_eq!(failed_with(code).failure_class, Some(want), "{code}");
        }
        // Every row reaches an event through a fixture in Telnyx's shape, once each.
        let mut seen = std::collections::HashSet::new();
        for (code, class) in CLASSES {
            assert!(seen.insert(code), "{code} listed twice");
            let ev = failed_with(code);
            assert_eq!(ev.error_code.as_deref(), Some(*code));
            assert_eq!(ev.failure_class, Some(*class), "{code}");
        }
        assert_eq!(CLASSES.len(), 74);
        for code in ["49999", "", "40000"] {
            assert_eq!(failed_with(code).failure_class, Some(FailureClass::Unknown));
        }
        // A number where Telnyx documents a string is the same code.
        let ev = decode(&finalized(
            "delivery_failed",
            r#"[{"code":40300,"title":"STOP"}]"#,
        ))
        .unwrap();
        assert_eq!(ev.failure_class, Some(FailureClass::OptOut));
        // No code at all: none from the table; the registry settles it as unknown.
        assert_eq!(
            decode(&finalized("expired", "[]")).unwrap().failure_class,
            None
        );
    }

    #[test]
    fn cost_and_parts_as_telnyx_sends_them() {
        let with = |extra: &str| {
            let body = finalized("delivered", "[]")
                .replace(r#""type":"SMS","#, &format!(r#""type":"SMS",{extra}"#));
            decode(&body).unwrap()
        };
        let ev = with(r#""cost":{"amount":"0.0051","currency":"USD"},"parts":2,"#);
        assert_eq!(
            ev.cost,
            Some(Cost {
                amount: "0.0051".into(),
                currency: "USD".into()
            })
        );
        assert_eq!(ev.parts, Some(2));
        // One of Telnyx's examples has the amount as a JSON number.
        let ev = with(r#""cost":{"amount":0.0051,"currency":"USD"},"#);
        assert_eq!(ev.cost.unwrap().amount, "0.0051");
        for none in [
            r#""cost":null,"#,
            r#""cost":{"amount":null,"currency":"USD"},"#,
            r#""cost":{"amount":"n/a","currency":"USD"},"#,
            "",
        ] {
            let ev = with(none);
            assert_eq!(ev.cost, None, "{none}");
            assert_eq!(ev.parts, None);
        }
    }

    #[test]
    fn keeps_events_without_a_status_and_unknown_values_and_rejects_bad_shapes() {
        let inbound = r#"{"data":{"event_type":"message.received","id":"in-1","occurred_at":"2026-11-20T10:00:00Z",
            "payload":{"id":"inbound-msg","direction":"inbound","to":[{"phone_number":"+13125550001","status":"webhook_delivered"}]}}}"#;
        let ev = decode(inbound).unwrap();
        assert_eq!(
            (ev.status, ev.unmapped),
            (None, false),
            "inbound: stored, no status"
        );
        assert_eq!(ev.message_id, "inbound-msg");
        let novel = r#"{"data":{"event_type":"message.teleported","id":"n-1","occurred_at":"2026-11-20T10:00:00Z","payload":{}}}"#;
        let ev = decode(novel).unwrap();
        assert_eq!(
            (ev.status, ev.unmapped, ev.message_id.as_str()),
            (None, true, "")
        );
        let ev = decode(&finalized("teleported", "[]")).unwrap();
        assert_eq!(
            (ev.status, ev.unmapped),
            (None, true),
            "an unknown status is kept"
        );
        assert_eq!(ev.provider_status.as_deref(), Some("teleported"));
        assert!(matches!(decode("not json"), Err(DecodeError::Shape(_))));
        let no_to = r#"{"data":{"event_type":"message.sent","id":"x","occurred_at":"2026-11-20T10:00:00Z","payload":{"id":"m","to":[]}}}"#;
        assert!(matches!(decode(no_to), Err(DecodeError::Shape(_))));
    }

    #[test]
    fn a_group_mms_keeps_every_address_and_reports_the_highest_status() {
        let body = r#"{"data":{"event_type":"message.finalized","id":"ev-g","occurred_at":"2026-11-20T10:00:00Z",
            "payload":{"id":"mms-1","type":"MMS","errors":[],"to":[
                {"phone_number":"+13125550001","status":"delivered"},
                {"phone_number":"+13125550002","status":"delivery_failed"},
                {"phone_number":"+13125550003","status":"expired"}]}}}"#;
        let ev = decode(body).unwrap();
        assert_eq!(ev.status, Some(DeliveryStatus::Failed));
        let got: Vec<_> = ev
            .addresses
            .iter()
            .map(|a| (a.address.as_str(), a.status, a.provider_status.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("+13125550001", Some(DeliveryStatus::Delivered), "delivered"),
                (
                    "+13125550002",
                    Some(DeliveryStatus::Failed),
                    "delivery_failed"
                ),
                ("+13125550003", Some(DeliveryStatus::Failed), "expired"),
            ]
        );
        assert!(
            decode(&finalized("sent", "[]"))
                .unwrap()
                .addresses
                .is_empty(),
            "one address: the message is the address"
        );
    }

    #[test]
    fn several_public_keys_each_verify_their_own_webhooks() {
        let (a, b, stranger) = (TELNYX.keygen(), TELNYX.keygen(), TELNYX.keygen());
        let mut both = Values::new();
        both.set(
            &PUBLIC_KEY,
            vec![
                a.one(&PUBLIC_KEY).unwrap().to_owned(),
                b.one(&PUBLIC_KEY).unwrap().to_owned(),
            ],
        );
        let telnyx = TELNYX.configure(&both, 300).unwrap().unwrap();
        let body = finalized("delivered", "[]");
        let now = 1_800_000_000;
        let verdict = |keys: &Values| {
            let headers = TELNYX
                .signer(keys)
                .unwrap()
                .sign("", "ev-1", body.as_bytes(), now);
            telnyx.verify(&Request::new(&headers, body.as_bytes()), now)
        };
        assert_eq!(verdict(&a), Ok(()), "the first account's key");
        assert_eq!(
            verdict(&b),
            Ok(()),
            "the second account's (or the rotated) key"
        );
        assert_eq!(verdict(&stranger), Err(SignatureError::Mismatch));

        let mut bad = both.clone();
        bad.set(
            &PUBLIC_KEY,
            vec![a.one(&PUBLIC_KEY).unwrap().to_owned(), "AAAA".into()],
        );
        let e = TELNYX.configure(&bad, 300).err().unwrap().to_string();
        assert!(
            e.starts_with("TELNYX_PUBLIC_KEY (entry 2) is invalid"),
            "{e}"
        );
    }

    #[test]
    fn envelope_tolerates_garbage() {
        let t = Telnyx::new(Vec::new(), 0);
        assert_eq!(
            t.envelope(&super::super::NO_HEADERS, b"\xff\x00"),
            Envelope::default()
        );
        let env = t.envelope(
            &super::super::NO_HEADERS,
            finalized("sent", "[]").as_bytes(),
        );
        assert_eq!(env.event_id.as_deref(), Some("ev-1"));
        assert_eq!(env.event_type.as_deref(), Some("message.finalized"));
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn telnyx_answer_becomes_a_decodable_webhook() {
        let api = br#"{"data":{"record_type":"message","id":"40317f0e-aaaa","direction":"outbound",
            "to":[{"phone_number":"+13125550123","status":"delivery_failed"}],
            "errors":[{"code":"40008","title":"Undeliverable"}],"completed_at":"2026-11-23T10:00:05.000+00:00"}}"#;
        let l = from_api(api, now()).unwrap().unwrap();
        assert_eq!(l.status, DeliveryStatus::Failed);
        assert_eq!(l.event_id, "reconcile-40317f0e-aaaa-delivery_failed");
        let ev = Telnyx::new(Vec::new(), 0)
            .decode(&crate::providers::NO_HEADERS, l.body.as_bytes())
            .unwrap();
        assert_eq!(ev.status, Some(DeliveryStatus::Failed));
        assert_eq!(ev.message_id, "40317f0e-aaaa");
        assert_eq!(ev.event_id, l.event_id);
        assert_eq!(ev.error_code.as_deref(), Some("40008"));
        assert_eq!(ev.occurred_at.to_rfc3339(), "2026-11-23T10:00:05+00:00");
        let env =
            Telnyx::new(Vec::new(), 0).envelope(&crate::providers::NO_HEADERS, l.body.as_bytes());
        assert_eq!(env.event_type.as_deref(), Some("message.finalized"));
        assert_eq!(
            from_api(api, now()).unwrap().unwrap().body,
            l.body,
            "deterministic"
        );
        assert!(from_api(br#"{"errors":[]}"#, now()).is_err());
    }
}
