//! Twilio Messaging status callbacks (SMS/MMS/WhatsApp), verified as twilio-python's
//! `RequestValidator` does: `X-Twilio-Signature` is the base64 HMAC-SHA1, keyed with the account's
//! auth token, of the **full URL Twilio called** (query included) followed by every POST
//! parameter's name and value, sorted by name (a repeated name once per distinct value, values
//! sorted). The validator accepts the URL with and without its port (`:443`/`:80` added or
//! removed): so does this. The URL is ingest's public base URL (`HOOKLINE_PUBLIC_URL`) followed
//! by the path and query ingest received (`Request::url`).
//!
//! The body is form-encoded: `MessageSid`, `MessageStatus`, `ErrorCode`, `To`, `From`,
//! `AccountSid`, ... (twilio.com/docs/messaging/guides/track-outbound-message-status). The
//! signature has no timestamp and no event id: a callback's identity is its message and status
//! (`{MessageSid}-{MessageStatus}`), so a replayed capture is the same event and is absorbed by
//! dedup; and a callback has no event time (`RawDlrDoneDate` is the carrier's, minute precision,
//! in no stated time zone): its time is when ingest received it (`Hookline-Received-At-Ms`), kept
//! with the event so a replay decodes the same time. The database keeps the form as a JSON
//! object of its fields ([`Provider::stored_payload`]); the decoder reads both.

use std::sync::Arc;

use base64::Engine as _;
use chrono::{DateTime, TimeZone as _, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha1::Sha1;

use super::api::{ApiSettings, LearnError, Learned, ProviderApi};
use super::{
    BuiltIn, ConfigError, DecodeError, Envelope, Headers, Provider, Request, Sample, SampleStatus,
    Setting, Signer, StoredColumns, Values, EVENT_TIME, RECEIVED_AT,
};
use crate::event::{DeliveryEvent, DeliveryStatus, FailureClass};
use crate::signature::SignatureError;

pub static TWILIO: TwilioKind = TwilioKind;

pub struct TwilioKind;

pub const SIGNATURE_HEADER: &str = "x-twilio-signature";

const AUTH_TOKEN: Setting = Setting::new(
    "twilio-auth-token",
    "TWILIO_AUTH_TOKEN",
    "Twilio auth token(s) the status callbacks are signed with, comma-separated: one per \
     account, or the primary and secondary during a rotation. Callbacks are verified against \
     HOOKLINE_PUBLIC_URL. Without one, /webhooks/twilio answers 404.",
)
.secret()
.list();

static API: ApiSettings = ApiSettings {
    url: Setting::new("twilio-api-url", "TWILIO_API_URL", "Twilio API base URL.")
        .default("https://api.twilio.com"),
    key: Setting::new(
        "twilio-api-credentials",
        "TWILIO_API_CREDENTIALS",
        "`{AccountSid}:{AuthToken}` for Twilio's Messages API (HTTP basic auth); without it \
         Twilio recipients are not swept.",
    )
    .secret(),
    rate: Setting::new(
        "reconcile-twilio-rate",
        "HOOKLINE_RECONCILE_TWILIO_RATE",
        "Twilio API requests per second. Twilio limits concurrent requests per account; a 429 \
         is waited out (Retry-After).",
    )
    .default("10"),
};

impl ProviderApi for TwilioKind {
    fn settings(&self) -> &'static ApiSettings {
        &API
    }

    /// `GET /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json`.
    fn lookup_path(&self, escaped_id: &str, key: &str) -> String {
        let account = key.split(':').next().unwrap_or_default();
        format!("/2010-04-01/Accounts/{account}/Messages/{escaped_id}.json")
    }

    fn authorization(&self, key: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(key)
        )
    }

    /// The Message resource's `status` as a status callback would carry it (the same event id
    /// as the real callback: `{sid}-{status}`, so one of them is stored), timed by its
    /// `date_updated` (RFC 2822).
    fn learn(&self, response: &[u8], _now: DateTime<Utc>) -> Result<Option<Learned>, LearnError> {
        let v: Value =
            serde_json::from_slice(response).map_err(|e| LearnError(format!("not JSON: {e}")))?;
        let sid = v["sid"]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or("no sid")?;
        let raw = v["status"].as_str().ok_or("no status")?;
        let Some(Some(status)) = self::status(raw) else {
            return Ok(None);
        };
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("MessageSid", sid)
            .append_pair("MessageStatus", raw);
        if let Some(code) = super::code_to_string(&v["error_code"]) {
            form.append_pair("ErrorCode", &code);
        }
        if let Some(message) = v["error_message"].as_str() {
            form.append_pair("ErrorMessage", message);
        }
        for (field, key) in [
            ("AccountSid", "account_sid"),
            ("To", "to"),
            ("From", "from"),
        ] {
            if let Some(value) = v[key].as_str() {
                form.append_pair(field, value);
            }
        }
        let headers = v["date_updated"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc2822(t).ok())
            .map(|t| vec![(EVENT_TIME.to_owned(), t.timestamp_millis().to_string())])
            .unwrap_or_default();
        Ok(Some(Learned {
            status,
            event_id: format!("{sid}-{raw}"),
            event_type: raw.to_owned(),
            body: form.finish(),
            headers,
        }))
    }
}

impl BuiltIn for TwilioKind {
    fn name(&self) -> &'static str {
        "twilio"
    }

    fn scheme(&self) -> &'static str {
        "HMAC-SHA1 over the URL and sorted form fields"
    }

    fn retry_span(&self) -> std::time::Duration {
        // Twilio retries a callback within one connection's total time (`tt`, at most 15 s, up
        // to 5 retries: twilio.com/docs/usage/webhooks/webhooks-connection-overrides). Ten
        // minutes, to be safe.
        std::time::Duration::from_secs(600)
    }

    fn verify_settings(&self) -> &'static [Setting] {
        std::slice::from_ref(&AUTH_TOKEN)
    }

    fn configure(
        &self,
        values: &Values,
        _tolerance_secs: u64,
    ) -> Result<Option<Arc<dyn Provider>>, ConfigError> {
        let tokens: Vec<Vec<u8>> = values
            .list(&AUTH_TOKEN)
            .iter()
            .map(|t| t.as_bytes().to_vec())
            .collect();
        if tokens.is_empty() {
            return Ok(None);
        }
        Ok(Some(Arc::new(Twilio { tokens })))
    }

    fn decoder(&self) -> Arc<dyn Provider> {
        Arc::new(Twilio { tokens: Vec::new() })
    }

    fn sign_settings(&self) -> &'static [Setting] {
        std::slice::from_ref(&AUTH_TOKEN)
    }

    fn signer(&self, values: &Values) -> Result<Box<dyn Signer>, ConfigError> {
        let token = values.one(&AUTH_TOKEN).ok_or(ConfigError::Missing {
            variable: AUTH_TOKEN.env,
            hint: "",
        })?;
        Ok(Box::new(TwilioSigner(token.as_bytes().to_vec())))
    }

    fn keygen(&self) -> Values {
        let token: [u8; 16] = rand::random();
        let hex: String = token.iter().map(|b| format!("{b:02x}")).collect();
        Values::new().with(&AUTH_TOKEN, hex)
    }

    fn sample(&self, s: &Sample<'_>) -> Option<String> {
        let status = match s.status {
            SampleStatus::Sent => "sent",
            SampleStatus::Delivered => "delivered",
            SampleStatus::Undelivered => "undelivered",
            SampleStatus::Opened => return None,
        };
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("AccountSid", "AC00000000000000000000000000000000")
            .append_pair("ApiVersion", "2010-04-01");
        if status == "undelivered" {
            form.append_pair("ErrorCode", "30003");
        }
        form.append_pair("From", "+13125550100")
            .append_pair("MessageSid", s.message_id)
            .append_pair("MessageStatus", status)
            .append_pair("SmsSid", s.message_id)
            .append_pair("SmsStatus", status)
            .append_pair("To", "+13125550123");
        Some(form.finish())
    }

    fn sample_address(&self, n: usize) -> String {
        format!("+1312555{:04}", 223 + n)
    }

    fn api(&self) -> Option<&'static dyn ProviderApi> {
        Some(&TWILIO)
    }
}

struct TwilioSigner(Vec<u8>);

impl Signer for TwilioSigner {
    fn sign(&self, url: &str, _event_id: &str, body: &[u8], _ts: i64) -> Vec<(String, String)> {
        let mut mac = Hmac::<Sha1>::new_from_slice(&self.0).expect("HMAC takes any key");
        mac.update(&signed_content(url, &fields(body)));
        let tag = mac.finalize().into_bytes();
        vec![
            (
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            ),
            (
                SIGNATURE_HEADER.into(),
                base64::engine::general_purpose::STANDARD.encode(tag),
            ),
        ]
    }
}

/// The form's fields, in order, decoded (`+` and `%XX`).
fn fields(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// `url` as given, with its default port added, and without its port: the validator accepts a
/// signature over any of them (Twilio signs the URL as configured, which may or may not name
/// the port).
fn url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_owned()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return out;
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => authority.split_at(i + 1),
        None => ("", authority),
    };
    // A port is the digits after the last ':' outside an IPv6 literal's brackets.
    let port_at = hostport
        .rfind(':')
        .filter(|i| !hostport[*i..].contains(']'))
        .filter(|i| {
            let p = &hostport[i + 1..];
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())
        });
    let variant = match port_at {
        Some(i) => format!("{scheme}://{userinfo}{}{tail}", &hostport[..i]),
        None => {
            let port = if scheme.eq_ignore_ascii_case("https") {
                443
            } else {
                80
            };
            format!("{scheme}://{userinfo}{hostport}:{port}{tail}")
        }
    };
    out.push(variant);
    out
}

pub struct Twilio {
    tokens: Vec<Vec<u8>>,
}

/// Every `MessageStatus` of twilio-python's `MessageInstance.Status`.
const STATUSES: [&str; 13] = [
    "queued",
    "sending",
    "sent",
    "failed",
    "delivered",
    "undelivered",
    "receiving",
    "received",
    "accepted",
    "scheduled",
    "read",
    "partially_delivered",
    "canceled",
];

/// A `MessageStatus` as a hookline status. `Some(None)`: inbound (`receiving`, `received`), no
/// delivery status. `read` (a read receipt, WhatsApp and other channels that have them) implies
/// delivered. `partially_delivered` (not every part reached the handset), `undelivered` (the
/// carrier said no), `failed` (never sent) and `canceled` (a scheduled message called off) are
/// failures, told apart by the raw value kept as `provider_status`.
fn status(s: &str) -> Option<Option<DeliveryStatus>> {
    use DeliveryStatus::*;
    Some(Some(match s {
        "queued" | "accepted" | "scheduled" => Queued,
        "sending" => Sending,
        "sent" => Sent,
        "delivered" | "read" => Delivered,
        "undelivered" | "failed" | "canceled" | "partially_delivered" => Failed,
        "receiving" | "received" => return Some(None),
        _ => return None,
    }))
}

/// Twilio's messaging error codes (twilio.com/docs/api/errors, one page per code at
/// twilio.com/docs/api/errors/{code}) by class, as `ErrorCode` carries them: a string of digits.
/// Codes about our own sender, account, registration or content are `policy`; queueing and rate
/// limits `soft`. Rows marked "unverified" have their titles from a copy of Twilio's dictionary,
/// not its own page: kept, to be checked against the page. The 21xxx are mostly REST errors
/// (answered to the send request), listed in case one reaches a callback. Codes whose meaning
/// does not say (30009, an inbound segment; 30485, "couldn't be delivered") and any other code
/// are `unknown`, as are the codes Twilio split out of 21211/21606/21614 in 2024 until looked up.
const CLASSES: &[(&str, FailureClass)] = {
    use FailureClass::{Hard, OptOut, Policy, Soft};
    &[
        ("30001", Soft),   // Queue overflow: more queued than the sender's rate drains
        ("30002", Policy), // Account suspended
        ("30003", Soft),   // Unreachable destination handset: off, no signal; retry advised
        ("30004", Policy), // Message blocked (unverified)
        ("30005", Hard),   // Unknown destination handset: no longer active (unverified)
        ("30006", Hard),   // Landline or unreachable carrier: do not retry
        ("30007", Policy), // Message filtered: spam, phishing, fraud (Twilio or the carrier)
        ("30008", Soft),   // Unknown error from the carrier (unverified)
        ("30010", Policy), // Message price exceeds max price (obsolete since 2024-06)
        ("30011", Hard),   // MMS not supported by the receiving number (unverified)
        ("30019", Policy), // Content size exceeds carrier limit (unverified)
        ("30020", Soft),   // Internal failure with message scheduling (unverified)
        ("30021", Soft),   // Internal failure with the messaging service (unverified)
        ("30022", Soft),   // US A2P 10DLC rate limits exceeded
        ("30023", Policy), // US A2P 10DLC daily message cap reached (unverified)
        ("30024", Policy), // Numeric sender ID not provisioned on carrier (unverified)
        ("30026", Policy), // 70% of the T-Mobile daily limit consumed (unverified)
        ("30027", Policy), // T-Mobile daily message limit reached (unverified)
        ("30031", Policy), // Invalid MaxRate
        ("30032", Policy), // Toll-free number not verified (unverified)
        ("30034", Policy), // US A2P 10DLC: message from an unregistered number (unverified)
        ("30036", Soft),   // Validity period expired (unverified)
        ("30037", Policy), // Outbound messaging disabled (unverified)
        ("30038", Policy), // OTP message body filtered (unverified)
        ("30039", Policy), // Filtered to prevent message loops
        ("30040", Policy), // Carrier requires sender ID pre-registration (unverified)
        ("30041", Policy), // Unregistered number sending to the UK (unverified)
        ("30043", Policy), // International SMS via domestic gateway (unverified)
        ("30450", Policy), // Blocked by SMS pumping protection (unverified)
        ("30454", Policy), // Account exceeded the messages limit (unverified)
        ("14107", Soft),   // Send rate between two numbers exceeded: clears after 30 s
        ("63017", Soft),   // Account rate limit exceeded
        ("63038", Policy), // Account exceeded the daily messages limit
        ("21610", OptOut), // Recipient unsubscribed: replied STOP, until START
        ("21211", Hard),   // Invalid 'To' phone number (unverified)
        ("21408", Policy), // Region of the 'To' number not enabled (unverified)
        ("21606", Policy), // 'From' not a message-capable number of the account (unverified)
        ("21611", Soft),   // 'From' number exceeded its queued messages (unverified)
        ("21612", Hard),   // 'To'/'From' combination cannot be sent (unverified)
        ("21614", Hard),   // 'To' number is not a valid mobile number (unverified)
    ]
};

/// The callback's fields, from the form ingest received or the JSON object the database keeps.
fn callback(body: &[u8]) -> Result<Vec<(String, String)>, DecodeError> {
    if body.first() != Some(&b'{') {
        return Ok(fields(body));
    }
    let object: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| DecodeError::Shape(e.to_string()))?;
    let mut out = Vec::new();
    for (k, v) in object {
        match v {
            Value::String(s) => out.push((k, s)),
            Value::Array(values) => out.extend(values.into_iter().filter_map(|v| match v {
                Value::String(s) => Some((k.clone(), s)),
                _ => None,
            })),
            _ => return Err(DecodeError::Shape(format!("field {k} is not text"))),
        }
    }
    Ok(out)
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// The event time: the stored one on a replay from the database, else when ingest received it.
fn event_time(headers: &dyn Headers) -> Result<DateTime<Utc>, DecodeError> {
    let ms = headers
        .get(EVENT_TIME)
        .or_else(|| headers.get(RECEIVED_AT))
        .ok_or(DecodeError::MissingHeader(RECEIVED_AT))?;
    ms.trim()
        .parse::<i64>()
        .ok()
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
        .ok_or_else(|| DecodeError::Shape(format!("{RECEIVED_AT} is not unix milliseconds")))
}

impl Provider for Twilio {
    fn name(&self) -> &'static str {
        "twilio"
    }

    fn forwarded_headers(&self) -> &'static [&'static str] {
        &[SIGNATURE_HEADER]
    }

    fn known_event_types(&self) -> &'static [&'static str] {
        &STATUSES
    }

    fn precheck(&self, headers: &dyn Headers, _now: i64) -> Result<(), SignatureError> {
        self.tag(headers).map(|_| ())
    }

    fn verify(&self, request: &Request<'_>, _now: i64) -> Result<(), SignatureError> {
        let tag = self.tag(request.headers)?;
        let fields = fields(request.body);
        for url in url_variants(request.url) {
            for token in &self.tokens {
                let mut mac = Hmac::<Sha1>::new_from_slice(token).expect("HMAC takes any key");
                mac.update(&signed_content(&url, &fields));
                if mac.verify_slice(&tag).is_ok() {
                    return Ok(());
                }
            }
        }
        Err(SignatureError::Mismatch)
    }

    fn envelope(&self, _headers: &dyn Headers, body: &[u8]) -> Envelope {
        let Ok(fields) = callback(body) else {
            return Envelope::default();
        };
        let status = field(&fields, "MessageStatus");
        Envelope {
            event_id: field(&fields, "MessageSid")
                .zip(status)
                .map(|(sid, status)| format!("{sid}-{status}")),
            event_type: status.map(str::to_owned),
        }
    }

    fn replay_headers(&self, stored: &StoredColumns<'_>) -> Vec<(String, String)> {
        vec![(
            EVENT_TIME.to_owned(),
            stored.occurred_at.timestamp_millis().to_string(),
        )]
    }

    fn stored_payload(&self, body: &[u8]) -> Option<String> {
        if body.first() == Some(&b'{') {
            return None;
        }
        let mut object = Map::new();
        for (k, v) in fields(body) {
            match object.get_mut(&k) {
                None => {
                    object.insert(k, Value::String(v));
                }
                Some(Value::Array(values)) => values.push(Value::String(v)),
                Some(first) => {
                    let first = first.take();
                    object.insert(k, Value::Array(vec![first, Value::String(v)]));
                }
            }
        }
        Some(Value::Object(object).to_string())
    }

    fn decode(&self, headers: &dyn Headers, body: &[u8]) -> Result<DeliveryEvent, DecodeError> {
        let fields = callback(body)?;
        let sid = field(&fields, "MessageSid")
            .ok_or_else(|| DecodeError::Shape("missing MessageSid".into()))?;
        let raw = field(&fields, "MessageStatus")
            .ok_or_else(|| DecodeError::Shape("missing MessageStatus".into()))?;
        let mapped = status(raw);
        Ok(DeliveryEvent {
            provider: "twilio",
            event_id: format!("{sid}-{raw}"),
            message_id: sid.to_owned(),
            event_type: raw.to_owned(),
            status: mapped.flatten(),
            engagement: None,
            provider_status: Some(raw.to_owned()),
            unmapped: mapped.is_none(),
            addresses: Vec::new(),
            occurred_at: event_time(headers)?,
            error_code: field(&fields, "ErrorCode").map(str::to_owned),
            error_description: field(&fields, "ErrorMessage").map(str::to_owned),
            failure_class: field(&fields, "ErrorCode").map(|c| super::class_of(CLASSES, c)),
            cost: None,
            parts: None,
        })
    }
}

/// The bytes signed: `url`, then each name and value, names sorted, each name once per distinct
/// value, values sorted (twilio-python's `compute_signature`).
fn signed_content(url: &str, fields: &[(String, String)]) -> Vec<u8> {
    let mut sorted: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = url.as_bytes().to_vec();
    for (k, v) in sorted {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

impl Twilio {
    /// The signature header's 20 bytes.
    fn tag(&self, headers: &dyn Headers) -> Result<Vec<u8>, SignatureError> {
        let value = headers
            .get(SIGNATURE_HEADER)
            .ok_or(SignatureError::MissingHeader(SIGNATURE_HEADER))?;
        base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .ok()
            .filter(|t| t.len() == 20)
            .ok_or(SignatureError::MalformedHeader(SIGNATURE_HEADER))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECEIVED: [(&str, &str); 1] = [(RECEIVED_AT, "1795168800123")];

    fn decode(form: &str) -> DeliveryEvent {
        TWILIO.decoder().decode(&RECEIVED, form.as_bytes()).unwrap()
    }

    #[test]
    fn every_documented_status_decodes() {
        use DeliveryStatus::*;
        let want = [
            ("queued", Some(Queued)),
            ("sending", Some(Sending)),
            ("sent", Some(Sent)),
            ("failed", Some(Failed)),
            ("delivered", Some(Delivered)),
            ("undelivered", Some(Failed)),
            ("receiving", None),
            ("received", None),
            ("accepted", Some(Queued)),
            ("scheduled", Some(Queued)),
            ("read", Some(Delivered)),
            ("partially_delivered", Some(Failed)),
            ("canceled", Some(Failed)),
        ];
        assert_eq!(want.len(), STATUSES.len());
        for (raw, status) in want {
            let e = decode(&format!(
                "MessageSid=SM1&MessageStatus={raw}&ErrorCode=30003&To=%2B13125550123"
            ));
            assert_eq!(e.status, status, "{raw}");
            assert!(!e.unmapped, "{raw}");
            assert_eq!(e.provider_status.as_deref(), Some(raw));
            assert_eq!(e.event_id, format!("SM1-{raw}"));
            assert_eq!(e.event_type, raw);
            assert_eq!(e.error_code.as_deref(), Some("30003"));
            assert_eq!(e.occurred_at.timestamp_millis(), 1_795_168_800_123);
        }
        let new = decode("MessageSid=SM1&MessageStatus=teleported");
        assert!(new.unmapped && new.status.is_none());
        assert!(TWILIO
            .decoder()
            .decode(&RECEIVED, b"MessageStatus=sent")
            .is_err());
        assert_eq!(
            TWILIO.decoder().decode(
                &super::super::NO_HEADERS,
                b"MessageSid=SM1&MessageStatus=sent"
            ),
            Err(DecodeError::MissingHeader(RECEIVED_AT))
        );
    }

    fn undelivered_with(code: &str) -> DeliveryEvent {
        decode(&format!(
            "MessageSid=SM1&MessageStatus=undelivered&ErrorCode={code}&To=%2B13125550123"
        ))
    }

    #[test]
    fn every_documented_error_code_has_a_class_and_others_are_unknown() {
        // What the documentation says each group is, spelled out independently of the table.
        for (code, want) in [
            ("30005", FailureClass::Hard),
            ("30006", FailureClass::Hard),
            ("21614", FailureClass::Hard),
            ("30001", FailureClass::Soft),
            ("30003", FailureClass::Soft),
            ("30022", FailureClass::Soft),
            ("63017", FailureClass::Soft),
            ("30002", FailureClass::Policy),
            ("30007", FailureClass::Policy),
            ("30034", FailureClass::Policy),
            ("63038", FailureClass::Policy),
            ("21610", FailureClass::OptOut),
        ] {
            assert_eq!(undelivered_with(code).failure_class, Some(want), "{code}");
        }
        // Every row reaches an event through a callback in Twilio's shape, once each.
        let mut seen = std::collections::HashSet::new();
        for (code, class) in CLASSES {
            assert!(seen.insert(code), "{code} listed twice");
            let e = undelivered_with(code);
            assert_eq!(e.error_code.as_deref(), Some(*code));
            assert_eq!(e.failure_class, Some(*class), "{code}");
        }
        assert_eq!(CLASSES.len(), 40);
        // Documented but saying nothing about the address (30009 is inbound-only), and made up.
        for code in ["30009", "30485", "39999", "0"] {
            assert_eq!(
                undelivered_with(code).failure_class,
                Some(FailureClass::Unknown)
            );
        }
        // No code at all (an empty field is none): none from the table.
        let e = decode("MessageSid=SM1&MessageStatus=failed&ErrorCode=");
        assert_eq!((e.error_code, e.failure_class), (None, None));
        // The stored JSON form classes the same.
        let stored = r#"{"MessageSid":"SM1","MessageStatus":"undelivered","ErrorCode":"21610"}"#;
        assert_eq!(decode(stored).failure_class, Some(FailureClass::OptOut));
    }

    #[test]
    fn the_stored_json_decodes_as_the_form_did_and_a_replay_keeps_the_time() {
        let p = TWILIO.decoder();
        let form =
            b"MessageSid=SM9&MessageStatus=undelivered&ErrorCode=30005&To=%2B1555&Tag=a&Tag=b";
        let stored = p.stored_payload(form).unwrap();
        let v: Value = serde_json::from_str(&stored).unwrap();
        assert_eq!(v["To"], "+1555");
        assert_eq!(v["Tag"], serde_json::json!(["a", "b"]));
        let first = p.decode(&RECEIVED, form).unwrap();
        let replay = p.replay_headers(&StoredColumns {
            event_id: &first.event_id,
            event_type: &first.event_type,
            message_id: Some(&first.message_id),
            occurred_at: first.occurred_at,
        });
        let again = p.decode(&replay, stored.as_bytes()).unwrap();
        assert_eq!(again, first);
        assert_eq!(p.stored_payload(stored.as_bytes()), None);
    }

    #[test]
    fn the_messages_api_answer_becomes_a_callback_with_its_time() {
        let api = TWILIO.api().unwrap();
        assert_eq!(
            api.lookup_path("SM1", "AC123:token"),
            "/2010-04-01/Accounts/AC123/Messages/SM1.json"
        );
        assert_eq!(api.authorization("AC123:token"), "Basic QUMxMjM6dG9rZW4=");
        let answer = br#"{"sid": "SM1", "account_sid": "AC123", "status": "undelivered",
            "error_code": 30003, "error_message": "Unreachable destination handset",
            "to": "+13125550123", "from": "+13125550100",
            "date_updated": "Fri, 20 Nov 2026 10:00:05 +0000"}"#;
        let learned = api.learn(answer, Utc::now()).unwrap().unwrap();
        assert_eq!(learned.event_id, "SM1-undelivered");
        let e = TWILIO
            .decoder()
            .decode(&learned.headers, learned.body.as_bytes())
            .unwrap();
        assert_eq!(e.status, Some(DeliveryStatus::Failed));
        assert_eq!(e.event_id, learned.event_id);
        assert_eq!(e.error_code.as_deref(), Some("30003"));
        assert_eq!(
            e.failure_class,
            Some(FailureClass::Soft),
            "a number in the API answer"
        );
        assert_eq!(e.occurred_at.timestamp(), 1_795_168_805);
        let receiving = br#"{"sid": "SM1", "status": "receiving"}"#;
        assert_eq!(api.learn(receiving, Utc::now()), Ok(None));
        assert!(api.learn(b"{}", Utc::now()).is_err());
    }

    #[test]
    fn url_variants_add_or_remove_the_port() {
        assert_eq!(
            url_variants("https://h.example/webhooks/twilio?a=1"),
            [
                "https://h.example/webhooks/twilio?a=1",
                "https://h.example:443/webhooks/twilio?a=1"
            ]
        );
        assert_eq!(
            url_variants("http://u:p@h.example:8080/x"),
            ["http://u:p@h.example:8080/x", "http://u:p@h.example/x"]
        );
        assert_eq!(
            url_variants("http://[::1]/x"),
            ["http://[::1]/x", "http://[::1]:80/x"]
        );
    }

    #[test]
    fn signer_and_verifier_agree_and_any_change_breaks_it() {
        let keys = TWILIO.keygen();
        let p = TWILIO.configure(&keys, 300).unwrap().unwrap();
        let signer = TWILIO.signer(&keys).unwrap();
        let url = "https://hooks.example.com/hookline/webhooks/twilio?acct=1";
        let body = b"MessageSid=SM1&MessageStatus=delivered&To=%2B13125550123";
        let headers = signer.sign(url, "", body, 0);
        assert_eq!(
            p.verify(
                &Request {
                    headers: &headers,
                    body,
                    url,
                    fetched: None
                },
                0
            ),
            Ok(())
        );
        // Signed without the port, called with it (and the other way round).
        let with_port = "https://hooks.example.com:443/hookline/webhooks/twilio?acct=1";
        assert_eq!(
            p.verify(
                &Request {
                    headers: &headers,
                    body,
                    url: with_port,
                    fetched: None
                },
                0
            ),
            Ok(())
        );
        for (url, body) in [
            (
                "https://hooks.example.com/webhooks/twilio?acct=1",
                &body[..],
            ),
            (
                "https://hooks.example.com/hookline/webhooks/twilio?acct=2",
                &body[..],
            ),
            (
                url,
                b"MessageSid=SM1&MessageStatus=undelivered&To=%2B13125550123",
            ),
        ] {
            assert_eq!(
                p.verify(
                    &Request {
                        headers: &headers,
                        body,
                        url,
                        fetched: None
                    },
                    0
                ),
                Err(SignatureError::Mismatch),
                "{url}"
            );
        }
        assert_eq!(
            p.verify(&Request::new(&super::super::NO_HEADERS, body), 0),
            Err(SignatureError::MissingHeader(SIGNATURE_HEADER))
        );
    }
}
