//! Amazon SES event notifications, delivered through Amazon SNS (an SES configuration set's
//! event destination, or an identity's notifications, publishing to an SNS topic with an HTTPS
//! subscription to `/webhooks/ses`). SNS signs each message with RSA (PKCS#1 v1.5;
//! `SignatureVersion` 1 SHA1withRSA, 2 SHA256withRSA) over `Key\nValue\n` of a fixed list of its
//! fields (docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html). The key is in
//! an X.509 certificate fetched from `SigningCertURL`: ingest fetches and caches it
//! ([`Provider::fetch_url`]) from an HTTPS URL on an allowed host (`sns.<region>.amazonaws.com`,
//! as AWS's own validators require), or takes it from the pre-seeded certificates
//! (`SES_CERTIFICATES`) on a network that cannot reach AWS.
//!
//! Any AWS account can make SNS sign messages, so the signature says only that SNS sent it: the
//! topic decides whether it is ours. `SES_TOPIC_ARNS` lists the topics accepted; a message from
//! any other is refused. SNS retries for at most an hour and keeps the message's `Timestamp`
//! (its publication time) on every retry: the tolerance (`SES_TIMESTAMP_TOLERANCE_SECS`, 65
//! minutes) covers that span. A `SubscriptionConfirmation` is verified like any message, then
//! ingest confirms the subscription by fetching its `SubscribeURL` ([`Provider::confirm_url`]).
//! Raw message delivery carries no signature and is refused: turn it off on the subscription.
//!
//! The SES event is the JSON string in the notification's `Message` (`eventType`, or
//! `notificationType` in the older identity notifications). One SES message id covers every
//! recipient of a send, so the recipient row joins on `{mail.messageId}:{address}`. An event
//! about several recipients is split ([`Provider::split`]) into one part per recipient, each
//! the notification kept verbatim with the recipient beside it:
//! `{"recipient": "...", "notification": {...}}`.
//!
//! Over 500 lines on purpose: a provider is one file, and a third of it is its tests.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _};
use rsa::signature::{SignatureEncoding as _, Signer as _, Verifier as _};
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::{
    BuiltIn, ConfigError, DecodeError, Envelope, Headers, Provider, Request, Sample, SampleStatus,
    Setting, Signer, Values,
};
use crate::event::{DeliveryEvent, DeliveryStatus, Engagement, FailureClass};
use crate::signature::SignatureError;

pub static SES: SesKind = SesKind;

pub struct SesKind;

const TOPICS: Setting = Setting::new(
    "ses-topic-arns",
    "SES_TOPIC_ARNS",
    "The SNS topic ARNs SES publishes its events to, comma-separated: a message signed by SNS \
     for any other topic is refused (any AWS account can have SNS sign messages). Without one, \
     /webhooks/ses answers 404.",
)
.list();

const HOSTS: Setting = Setting::new(
    "ses-certificate-hosts",
    "SES_CERTIFICATE_HOSTS",
    "Hosts SNS signing certificates (and subscription confirmations) are fetched from, over \
     HTTPS; `*` stands for one DNS label.",
)
.list()
.default("sns.*.amazonaws.com,sns.*.amazonaws.com.cn");

const TOLERANCE: Setting = Setting::new(
    "ses-timestamp-tolerance-secs",
    "SES_TIMESTAMP_TOLERANCE_SECS",
    "Largest accepted age (or skew) of an SNS message's Timestamp, in seconds: SNS keeps it on \
     every retry and retries for at most an hour.",
)
.default("3900");

const CERTIFICATES: Setting = Setting::new(
    "ses-certificates",
    "SES_CERTIFICATES",
    "Pre-seeded signing certificates, for a network that cannot reach SNS: comma-separated \
     `{SigningCertURL}={base64 of the PEM}`. A listed URL is never fetched.",
)
.list();

const VERIFY: [Setting; 4] = [TOPICS, HOSTS, TOLERANCE, CERTIFICATES];

const SIGNING_KEY: Setting = Setting::new(
    "ses-signing-key",
    "SES_SIGNING_KEY",
    "Test SNS signing key: base64 PKCS#8 DER RSA (from `hookline keygen`).",
)
.secret();

const SIGNING_CERT_URL: Setting = Setting::new(
    "ses-signing-cert-url",
    "SES_SIGNING_CERT_URL",
    "The SigningCertURL test messages name (its certificate pre-seeded or served there).",
);

const SIGNING_TOPIC: Setting = Setting::new(
    "ses-signing-topic-arn",
    "SES_SIGNING_TOPIC_ARN",
    "The TopicArn test messages carry.",
);

const SIGN: [Setting; 3] = [SIGNING_KEY, SIGNING_CERT_URL, SIGNING_TOPIC];

impl BuiltIn for SesKind {
    fn name(&self) -> &'static str {
        "ses"
    }

    fn scheme(&self) -> &'static str {
        "RSA (SNS) with a fetched certificate"
    }

    fn retry_span(&self) -> std::time::Duration {
        // "The total policy retry time for an HTTP/S endpoint cannot be greater than 3,600
        // seconds."
        std::time::Duration::from_secs(3600)
    }

    fn verify_settings(&self) -> &'static [Setting] {
        &VERIFY
    }

    fn configure(
        &self,
        values: &Values,
        _tolerance_secs: u64,
    ) -> Result<Option<Arc<dyn Provider>>, ConfigError> {
        let topics: Vec<String> = values.list(&TOPICS).to_vec();
        if topics.is_empty() {
            return Ok(None);
        }
        let hosts: Vec<String> = match values.list(&HOSTS) {
            [] => HOSTS
                .default
                .unwrap_or_default()
                .split(',')
                .map(str::to_owned)
                .collect(),
            h => h.to_vec(),
        };
        let tolerance_secs = values
            .one(&TOLERANCE)
            .or(TOLERANCE.default)
            .unwrap_or("3900")
            .parse()
            .map_err(|_| ConfigError::invalid(&TOLERANCE, "expected whole seconds"))?;
        let mut preseeded = BTreeMap::new();
        for (i, entry) in values.list(&CERTIFICATES).iter().enumerate() {
            let invalid = |problem: &str| ConfigError::InvalidEntry {
                variable: CERTIFICATES.env,
                entry: i + 1,
                problem: problem.into(),
            };
            let (url, pem) = entry
                .split_once('=')
                .ok_or_else(|| invalid("expected {SigningCertURL}={base64 of the PEM}"))?;
            let pem = base64::engine::general_purpose::STANDARD
                .decode(pem.trim())
                .map_err(|_| invalid("the certificate is not base64"))?;
            let key =
                public_key(&pem).map_err(|_| invalid("not a PEM certificate with an RSA key"))?;
            preseeded.insert(url.trim().to_owned(), key);
        }
        Ok(Some(Arc::new(Ses {
            topics,
            hosts,
            tolerance_secs,
            preseeded,
        })))
    }

    fn decoder(&self) -> Arc<dyn Provider> {
        Arc::new(Ses {
            topics: Vec::new(),
            hosts: Vec::new(),
            tolerance_secs: 0,
            preseeded: BTreeMap::new(),
        })
    }

    fn sign_settings(&self) -> &'static [Setting] {
        &SIGN
    }

    fn signer(&self, values: &Values) -> Result<Box<dyn Signer>, ConfigError> {
        let missing = |s: &Setting| ConfigError::Missing {
            variable: s.env,
            hint: " (make them with `hookline keygen`)",
        };
        let der = base64::engine::general_purpose::STANDARD
            .decode(
                values
                    .one(&SIGNING_KEY)
                    .ok_or(missing(&SIGNING_KEY))?
                    .trim(),
            )
            .map_err(|_| ConfigError::invalid(&SIGNING_KEY, "not base64"))?;
        let key = RsaPrivateKey::from_pkcs8_der(&der)
            .map_err(|_| ConfigError::invalid(&SIGNING_KEY, "not a PKCS#8 DER RSA key"))?;
        Ok(Box::new(SesSigner {
            key,
            cert_url: values
                .one(&SIGNING_CERT_URL)
                .ok_or(missing(&SIGNING_CERT_URL))?
                .to_owned(),
            topic: values
                .one(&SIGNING_TOPIC)
                .ok_or(missing(&SIGNING_TOPIC))?
                .to_owned(),
        }))
    }

    /// A fresh RSA key and a self-signed certificate for it, pre-seeded under a URL on an SNS
    /// host, so a local system verifies test messages without reaching AWS.
    fn keygen(&self) -> Values {
        let mut rng = rsa::rand_core::OsRng;
        let key = RsaPrivateKey::new(&mut rng, 2048).expect("an RSA key");
        let pem = key
            .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
            .expect("an RSA key encodes");
        let pair = rcgen::KeyPair::from_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256)
            .expect("rcgen reads the key");
        let cert = rcgen::CertificateParams::new(vec!["sns.amazonaws.com".to_owned()])
            .expect("certificate parameters")
            .self_signed(&pair)
            .expect("a self-signed certificate");
        let suffix: [u8; 8] = rand::random();
        let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
        let url = format!(
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-hookline-test-{suffix}.pem"
        );
        let topic = "arn:aws:sns:us-east-1:000000000000:hookline-test";
        let b64 = base64::engine::general_purpose::STANDARD;
        let der = key.to_pkcs8_der().expect("an RSA key encodes");
        Values::new()
            .with(&TOPICS, topic)
            .with(&CERTIFICATES, format!("{url}={}", b64.encode(cert.pem())))
            .with(&SIGNING_KEY, b64.encode(der.as_bytes()))
            .with(&SIGNING_CERT_URL, url)
            .with(&SIGNING_TOPIC, topic)
    }

    /// The SES event; the signer wraps it in a signed SNS notification.
    fn sample(&self, s: &Sample<'_>) -> Option<String> {
        let address = "ada@example.com";
        let mail = serde_json::json!({"timestamp": s.at, "source": "sender@example.com",
            "messageId": s.message_id, "destination": [address],
            "commonHeaders": {"from": ["sender@example.com"], "to": [address], "subject": "Hi"},
            "tags": {"hookline:event": [s.event_id]}});
        let event = match s.status {
            SampleStatus::Sent => {
                serde_json::json!({"eventType": "Send", "mail": mail, "send": {}})
            }
            SampleStatus::Delivered => serde_json::json!({"eventType": "Delivery", "mail": mail,
                "delivery": {"timestamp": s.at, "processingTimeMillis": 546, "recipients": [address],
                    "smtpResponse": "250 2.6.0 Message received"}}),
            SampleStatus::Undelivered => serde_json::json!({"eventType": "Bounce", "mail": mail,
                "bounce": {"bounceType": "Permanent", "bounceSubType": "General", "timestamp": s.at,
                    "bouncedRecipients": [{"emailAddress": address, "action": "failed", "status": "5.1.1",
                        "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]}}),
            SampleStatus::Opened => serde_json::json!({"eventType": "Open", "mail": mail,
                "open": {"timestamp": s.at, "userAgent": "Mozilla/5.0", "ipAddress": "192.0.2.1"}}),
        };
        Some(event.to_string())
    }

    fn sample_address(&self, _n: usize) -> String {
        "ada@example.com".into()
    }

    /// `{mail.messageId}:{address}`, the address lower-cased.
    fn recipient_id(&self, message_id: &str, address: &str) -> String {
        format!("{message_id}:{}", address.trim().to_lowercase())
    }
}

/// Wraps an SES event in an SNS notification and signs it (SignatureVersion 2).
struct SesSigner {
    key: RsaPrivateKey,
    cert_url: String,
    topic: String,
}

impl Signer for SesSigner {
    fn sign(&self, _url: &str, _event_id: &str, _body: &[u8], _ts: i64) -> Vec<(String, String)> {
        vec![
            ("content-type".into(), "text/plain; charset=UTF-8".into()),
            ("x-amz-sns-message-type".into(), "Notification".into()),
        ]
    }

    fn sign_body(&self, body: &[u8], ts: i64) -> Option<Vec<u8>> {
        let message = std::str::from_utf8(body).ok()?;
        // The same event signed again is the same SNS message (as SNS's own retries are).
        let id = <sha2::Sha256 as sha2::Digest>::digest(body);
        let id = id[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        let mut m: BTreeMap<&str, String> = BTreeMap::new();
        m.insert("Type", "Notification".into());
        m.insert(
            "MessageId",
            format!(
                "{}-{}-{}-{}-{}",
                &id[..8],
                &id[8..12],
                &id[12..16],
                &id[16..20],
                &id[20..]
            ),
        );
        m.insert("TopicArn", self.topic.clone());
        m.insert("Message", message.to_owned());
        let at = DateTime::<Utc>::from_timestamp(ts, 0)?;
        m.insert(
            "Timestamp",
            at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        );
        m.insert("SignatureVersion", "2".into());
        m.insert("SigningCertURL", self.cert_url.clone());
        let text = string_to_sign(|k| m.get(k).map(String::as_str))?;
        let signer = SigningKey::<sha2::Sha256>::new(self.key.clone());
        let signature = signer.sign(text.as_bytes());
        m.insert(
            "Signature",
            base64::engine::general_purpose::STANDARD.encode(signature.to_bytes()),
        );
        serde_json::to_vec(&m).ok()
    }
}

/// The RSA key of a PEM certificate.
fn public_key(pem: &[u8]) -> Result<RsaPublicKey, ()> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).map_err(|_| ())?;
    let cert = pem.parse_x509().map_err(|_| ())?;
    RsaPublicKey::from_public_key_der(cert.public_key().raw).map_err(|_| ())
}

/// The fields signed, by message type, in byte order (AWS's validators use the same lists).
const NOTIFICATION_FIELDS: [&str; 6] = [
    "Message",
    "MessageId",
    "Subject",
    "Timestamp",
    "TopicArn",
    "Type",
];
const CONFIRMATION_FIELDS: [&str; 7] = [
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
];

/// `Key\nValue\n` of each signed field present (`Subject` may be absent); `None` when a
/// required one is missing or the type is unknown.
fn string_to_sign<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Option<String> {
    let fields: &[&str] = match get("Type")? {
        "Notification" => &NOTIFICATION_FIELDS,
        "SubscriptionConfirmation" | "UnsubscribeConfirmation" => &CONFIRMATION_FIELDS,
        _ => return None,
    };
    let mut out = String::new();
    for f in fields {
        match get(f) {
            Some(v) => {
                out.push_str(f);
                out.push('\n');
                out.push_str(v);
                out.push('\n');
            }
            None if *f == "Subject" => {}
            None => return None,
        }
    }
    Some(out)
}

pub struct Ses {
    topics: Vec<String>,
    hosts: Vec<String>,
    tolerance_secs: u64,
    preseeded: BTreeMap<String, RsaPublicKey>,
}

/// An SNS message: every field is text.
type SnsMessage = BTreeMap<String, Value>;

fn field<'a>(m: &'a SnsMessage, name: &str) -> Option<&'a str> {
    m.get(name).and_then(Value::as_str)
}

/// `pattern` (labels, `*` for any one label) against `host`, case-insensitively.
fn host_matches(pattern: &str, host: &str) -> bool {
    let (p, h): (Vec<&str>, Vec<&str>) = (pattern.split('.').collect(), host.split('.').collect());
    p.len() == h.len()
        && p.iter().zip(&h).all(|(p, h)| {
            !h.is_empty()
                && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && (*p == "*" || p.eq_ignore_ascii_case(h))
        })
}

/// What a notification part is: the SNS message, and the recipient it is about when the
/// provider split it (see the module's doc).
#[derive(Deserialize)]
struct Part<'a> {
    recipient: String,
    #[serde(borrow)]
    notification: &'a RawValue,
}

fn parse(body: &[u8]) -> Option<(SnsMessage, Option<String>)> {
    if let Ok(part) = serde_json::from_slice::<Part<'_>>(body) {
        let m = serde_json::from_str(part.notification.get()).ok()?;
        return Some((m, Some(part.recipient)));
    }
    Some((serde_json::from_slice(body).ok()?, None))
}

impl Ses {
    /// An HTTPS URL on an allowed host (`SigningCertURL` must also end in `.pem`).
    fn allowed(&self, url: &str, pem: bool) -> bool {
        let Some(rest) = url.strip_prefix("https://") else {
            return false;
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if authority.contains('@') {
            return false;
        }
        // A port is allowed (as AWS's validators allow it): the host decides.
        let host = match authority.rsplit_once(':') {
            Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
                host
            }
            Some(_) => return false,
            None => authority,
        };
        let path = path.split(['?', '#']).next().unwrap_or_default();
        self.hosts.iter().any(|h| host_matches(h.trim(), host)) && (!pem || path.ends_with(".pem"))
    }

    fn cert_url(m: &SnsMessage) -> Option<&str> {
        field(m, "SigningCertURL").or_else(|| field(m, "SigningCertUrl"))
    }

    fn message(request: &Request<'_>) -> Result<SnsMessage, SignatureError> {
        if request.headers.get("x-amz-sns-rawdelivery").is_some() {
            // Raw message delivery: SNS sends the bare message, unsigned.
            return Err(SignatureError::MissingHeader("Signature"));
        }
        let (m, _) = parse(request.body).ok_or(SignatureError::MalformedHeader("Signature"))?;
        Ok(m)
    }
}

/// The event's recipients, by type: those the event is about.
fn recipients(event: &Value) -> Vec<String> {
    let list = |v: &Value, key: &str| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| {
                if key.is_empty() {
                    r.as_str()
                } else {
                    r[key].as_str()
                }
            })
            .map(str::to_owned)
            .collect()
    };
    let kind = kind(event).unwrap_or_default();
    let found = match kind {
        "Bounce" => list(&event["bounce"]["bouncedRecipients"], "emailAddress"),
        "Complaint" => list(&event["complaint"]["complainedRecipients"], "emailAddress"),
        "Delivery" => list(&event["delivery"]["recipients"], ""),
        "DeliveryDelay" => list(&event["deliveryDelay"]["delayedRecipients"], "emailAddress"),
        _ => Vec::new(),
    };
    if found.is_empty() {
        list(&event["mail"]["destination"], "")
    } else {
        found
    }
}

fn kind(event: &Value) -> Option<&str> {
    event["eventType"]
        .as_str()
        .or_else(|| event["notificationType"].as_str())
}

const EVENT_TYPES: [&str; 12] = [
    "Send",
    "Reject",
    "Bounce",
    "Complaint",
    "Delivery",
    "Open",
    "Click",
    "Rendering Failure",
    "DeliveryDelay",
    "Subscription",
    "SubscriptionConfirmation",
    "UnsubscribeConfirmation",
];

/// A bounce as a status: a permanent bounce is a bounce, unless SES never sent it (the address
/// on a suppression list); a transient one is a failure SES gave up on; undetermined, a failure.
fn bounce_status(kind: &str, sub: &str) -> DeliveryStatus {
    match (kind, sub) {
        ("Permanent", "Suppressed" | "OnAccountSuppressionList") => DeliveryStatus::Suppressed,
        ("Permanent", _) => DeliveryStatus::Bounced,
        _ => DeliveryStatus::Failed,
    }
}

/// SES's bounce types and subtypes (docs.aws.amazon.com/ses/latest/dg/notification-contents.html,
/// "Bounce types") by class, keyed `{bounceType}/{bounceSubType}` as `provider_status` spells
/// them after `Bounce/`: `General` is both a permanent and a transient subtype. (`error_code` is
/// the recipient's enhanced status code, which SES does not class.) A transient bounce about the
/// message itself (its size, content or attachment) is `policy`: the same message will not do
/// better. `Undetermined` (SES could not tell) and any other pair are `unknown`.
const BOUNCE_CLASSES: &[(&str, FailureClass)] = {
    use FailureClass::{Hard, Policy, Soft};
    &[
        ("Permanent/General", Hard),    // Hard bounce: remove the address
        ("Permanent/NoEmail", Hard),    // The address does not exist
        ("Permanent/Suppressed", Hard), // On SES's global list: a history of hard bounces
        // On our account's suppression list, not attempted. The list holds bounces and
        // complaints alike and the bounce does not say which: hard, as SES files it permanent.
        ("Permanent/OnAccountSuppressionList", Hard),
        ("Transient/General", Soft), // May succeed later (auto-replies land here too)
        ("Transient/MailboxFull", Soft), // Inbox full
        ("Transient/MessageTooLarge", Policy), // Message too large
        ("Transient/ContentRejected", Policy), // Content the receiver does not allow
        ("Transient/AttachmentRejected", Policy), // Attachment not acceptable
    ]
};

/// A complaint's `complaintFeedbackType` (the ARF Feedback-Type values SES lists on the same
/// page) by class. A complaint is the recipient (or their provider, for them) saying no, except
/// for the reports about what we sent. `not-spam` (a report taking a complaint back) and any
/// other value are `unknown`.
const COMPLAINT_CLASSES: &[(&str, FailureClass)] = {
    use FailureClass::{OptOut, Policy};
    &[
        ("abuse", OptOut),        // Unsolicited email or other abuse
        ("auth-failure", Policy), // An authentication failure report: our SPF/DKIM/DMARC
        ("fraud", OptOut),        // Fraud or phishing reported
        ("other", OptOut),        // Any other feedback: still counted as a complaint
        ("virus", Policy),        // A virus found in what we sent
    ]
};

/// A `Reject`'s `reject.reason` (docs.aws.amazon.com/ses/latest/dg/
/// event-publishing-retrieving-sns-contents.html) by class: SES found a virus and did not send.
/// The only documented reason; any other is `unknown`.
const REJECT_CLASSES: &[(&str, FailureClass)] = &[("Bad content", FailureClass::Policy)];

/// A complaint's class. Without a feedback report (SES attaches one only when the reporter sent
/// one), or on a complaint SES records for an address on our account's suppression list
/// (`complaintSubType`), it is the complaint it is reported as.
fn complaint_class(complaint: &Value) -> FailureClass {
    match complaint["complaintFeedbackType"].as_str() {
        Some(t) => super::class_of(COMPLAINT_CLASSES, t),
        None => FailureClass::OptOut,
    }
}

impl Provider for Ses {
    fn name(&self) -> &'static str {
        "ses"
    }

    fn forwarded_headers(&self) -> &'static [&'static str] {
        &[
            "x-amz-sns-message-type",
            "x-amz-sns-message-id",
            "x-amz-sns-topic-arn",
        ]
    }

    fn known_event_types(&self) -> &'static [&'static str] {
        &EVENT_TYPES
    }

    fn fetch_url(&self, request: &Request<'_>) -> Result<Option<String>, SignatureError> {
        let m = Self::message(request)?;
        let url = Self::cert_url(&m).ok_or(SignatureError::MissingHeader("SigningCertURL"))?;
        if self.preseeded.contains_key(url) {
            return Ok(None);
        }
        if !self.allowed(url, true) {
            return Err(SignatureError::MalformedHeader("SigningCertURL"));
        }
        Ok(Some(url.to_owned()))
    }

    fn verify(&self, request: &Request<'_>, now: i64) -> Result<(), SignatureError> {
        let m = Self::message(request)?;
        let url = Self::cert_url(&m).ok_or(SignatureError::MissingHeader("SigningCertURL"))?;
        if !self.preseeded.contains_key(url) && !self.allowed(url, true) {
            return Err(SignatureError::MalformedHeader("SigningCertURL"));
        }
        let text =
            string_to_sign(|k| field(&m, k)).ok_or(SignatureError::MalformedHeader("Type"))?;
        let timestamp = field(&m, "Timestamp")
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .ok_or(SignatureError::MalformedHeader("Timestamp"))?;
        if now.abs_diff(timestamp.timestamp()) > self.tolerance_secs {
            return Err(SignatureError::StaleTimestamp);
        }
        let signature = field(&m, "Signature")
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            .and_then(|s| Signature::try_from(s.as_slice()).ok())
            .ok_or(SignatureError::MalformedHeader("Signature"))?;
        let key = match self.preseeded.get(url) {
            Some(key) => key.clone(),
            None => request
                .fetched
                .and_then(|pem| public_key(pem).ok())
                .ok_or(SignatureError::MalformedHeader("SigningCertURL"))?,
        };
        let verified = match field(&m, "SignatureVersion") {
            Some("1") => VerifyingKey::<sha1::Sha1>::new(key).verify(text.as_bytes(), &signature),
            Some("2") => VerifyingKey::<sha2::Sha256>::new(key).verify(text.as_bytes(), &signature),
            _ => return Err(SignatureError::MalformedHeader("SignatureVersion")),
        };
        verified.map_err(|_| SignatureError::Mismatch)?;
        // Signed by SNS, for someone: ours only if it is one of our topics.
        let topic = field(&m, "TopicArn").unwrap_or_default();
        if !self.topics.iter().any(|t| t == topic) {
            return Err(SignatureError::Mismatch);
        }
        Ok(())
    }

    fn confirm_url(&self, request: &Request<'_>) -> Option<String> {
        let m = Self::message(request).ok()?;
        if field(&m, "Type") != Some("SubscriptionConfirmation") {
            return None;
        }
        field(&m, "SubscribeURL")
            .filter(|u| self.allowed(u, false))
            .map(str::to_owned)
    }

    fn split(&self, body: &[u8]) -> Option<Vec<Vec<u8>>> {
        let (m, _) = parse(body)?;
        let event: Value = serde_json::from_str(field(&m, "Message")?).ok()?;
        let who = recipients(&event);
        if who.len() < 2 {
            return None;
        }
        let raw = std::str::from_utf8(body).ok()?;
        Some(
            who.into_iter()
                .map(|r| {
                    let recipient = serde_json::to_string(&r).expect("a string serializes");
                    format!(r#"{{"recipient":{recipient},"notification":{raw}}}"#).into_bytes()
                })
                .collect(),
        )
    }

    fn envelope(&self, _headers: &dyn Headers, body: &[u8]) -> Envelope {
        let Some((m, recipient)) = parse(body) else {
            return Envelope::default();
        };
        let event: Option<Value> = field(&m, "Message").and_then(|s| serde_json::from_str(s).ok());
        let event_type = match field(&m, "Type") {
            Some("Notification") => event.as_ref().and_then(kind).map(str::to_owned),
            other => other.map(str::to_owned),
        };
        Envelope {
            event_id: field(&m, "MessageId").map(|id| match &recipient {
                Some(r) => format!("{id}:{}", r.to_lowercase()),
                None => id.to_owned(),
            }),
            event_type,
        }
    }

    fn decode(&self, headers: &dyn Headers, body: &[u8]) -> Result<DeliveryEvent, DecodeError> {
        let (m, recipient) =
            parse(body).ok_or_else(|| DecodeError::Shape("not an SNS message".into()))?;
        let envelope = self.envelope(headers, body);
        let event_id = envelope
            .event_id
            .ok_or_else(|| DecodeError::Shape("missing MessageId".into()))?;
        let sns_time = field(&m, "Timestamp")
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| DecodeError::Shape("missing Timestamp".into()))?;
        let mut event = DeliveryEvent {
            provider: "ses",
            event_id,
            message_id: String::new(),
            event_type: envelope.event_type.clone().unwrap_or_default(),
            status: None,
            engagement: None,
            provider_status: None,
            unmapped: false,
            addresses: Vec::new(),
            occurred_at: sns_time,
            error_code: None,
            error_description: None,
            failure_class: None,
            cost: None,
            parts: None,
        };
        if field(&m, "Type") != Some("Notification") {
            // A subscription confirmed or ended: stored, about no message.
            event.unmapped = !EVENT_TYPES.contains(&event.event_type.as_str());
            return Ok(event);
        }
        let ses: Value = serde_json::from_str(field(&m, "Message").unwrap_or_default())
            .map_err(|e| DecodeError::Shape(format!("Message is not SES's JSON: {e}")))?;
        let kind = kind(&ses)
            .ok_or_else(|| DecodeError::Shape("Message has no eventType".into()))?
            .to_owned();
        let address = recipient.or_else(|| recipients(&ses).into_iter().next());
        if let (Some(id), Some(address)) = (ses["mail"]["messageId"].as_str(), &address) {
            event.message_id = SES.recipient_id(id, address);
        }
        let block = |name: &str| &ses[name];
        let time_of = |name: &str| {
            block(name)["timestamp"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        let of_recipient = |list: &Value| -> Value {
            list.as_array()
                .into_iter()
                .flatten()
                .find(|r| {
                    address.as_deref().is_some_and(|a| {
                        r["emailAddress"]
                            .as_str()
                            .is_some_and(|e| e.eq_ignore_ascii_case(a))
                    })
                })
                .cloned()
                .unwrap_or(Value::Null)
        };
        use DeliveryStatus::*;
        let (status, engagement, at) = match kind.as_str() {
            "Send" => (Some(Sent), None, None),
            "Reject" => {
                event.error_description = block("reject")["reason"].as_str().map(str::to_owned);
                event.failure_class = event
                    .error_description
                    .as_deref()
                    .map(|r| super::class_of(REJECT_CLASSES, r));
                (Some(Failed), None, None)
            }
            "Bounce" => {
                let b = block("bounce");
                let (t, sub) = (
                    b["bounceType"].as_str().unwrap_or("Undetermined"),
                    b["bounceSubType"].as_str().unwrap_or("Undetermined"),
                );
                event.provider_status = Some(format!("Bounce/{t}/{sub}"));
                // The notification's, so every recipient split from it gets the same.
                event.failure_class = Some(super::class_of(BOUNCE_CLASSES, &format!("{t}/{sub}")));
                let r = of_recipient(&b["bouncedRecipients"]);
                event.error_code = r["status"].as_str().map(str::to_owned);
                event.error_description = r["diagnosticCode"].as_str().map(str::to_owned);
                (Some(bounce_status(t, sub)), None, time_of("bounce"))
            }
            "Complaint" => {
                event.failure_class = Some(complaint_class(block("complaint")));
                (Some(Complained), None, time_of("complaint"))
            }
            "Delivery" => {
                event.error_description = block("delivery")["smtpResponse"]
                    .as_str()
                    .map(str::to_owned);
                (Some(Delivered), None, time_of("delivery"))
            }
            "DeliveryDelay" => {
                let d = block("deliveryDelay");
                event.provider_status = d["delayType"]
                    .as_str()
                    .map(|t| format!("DeliveryDelay/{t}"));
                let r = of_recipient(&d["delayedRecipients"]);
                event.error_code = r["status"].as_str().map(str::to_owned);
                event.error_description = r["diagnosticCode"].as_str().map(str::to_owned);
                (Some(Delayed), None, time_of("deliveryDelay"))
            }
            "Rendering Failure" => {
                event.error_description =
                    block("failure")["errorMessage"].as_str().map(str::to_owned);
                // Our template and its data did not agree: refused for what we sent.
                event.failure_class = Some(FailureClass::Policy);
                (Some(Failed), None, None)
            }
            "Open" => (None, Some(Engagement::Opened), time_of("open")),
            "Click" => (None, Some(Engagement::Clicked), time_of("click")),
            "Subscription" => (None, None, time_of("subscription")),
            _ => {
                event.unmapped = true;
                (None, None, None)
            }
        };
        event.status = status;
        event.engagement = engagement;
        event.provider_status = event.provider_status.take().or(Some(kind));
        event.occurred_at = at
            .or_else(|| {
                ses["mail"]["timestamp"]
                    .as_str()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc))
            })
            .unwrap_or(sns_time);
        if event.message_id.is_empty() && (event.status.is_some() || event.engagement.is_some()) {
            return Err(DecodeError::Shape(
                "missing mail.messageId or a recipient".into(),
            ));
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_match_label_by_label() {
        assert!(host_matches(
            "sns.*.amazonaws.com",
            "sns.us-east-1.amazonaws.com"
        ));
        assert!(host_matches(
            "sns.*.amazonaws.com",
            "SNS.eu-west-3.AmazonAWS.com"
        ));
        assert!(!host_matches(
            "sns.*.amazonaws.com",
            "sns.us-east-1.amazonaws.com.evil.example"
        ));
        assert!(!host_matches(
            "sns.*.amazonaws.com",
            "s3.us-east-1.amazonaws.com"
        ));
        assert!(!host_matches(
            "sns.*.amazonaws.com",
            "sns.a.b.amazonaws.com"
        ));
        assert!(!host_matches("sns.*.amazonaws.com", "sns..amazonaws.com"));
        let ses = Ses {
            topics: Vec::new(),
            hosts: vec!["sns.*.amazonaws.com".into()],
            tolerance_secs: 0,
            preseeded: BTreeMap::new(),
        };
        assert!(ses.allowed(
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
            true
        ));
        assert!(!ses.allowed(
            "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
            true
        ));
        assert!(!ses.allowed("https://sns.us-east-1.amazonaws.com/cert.txt", true));
        assert!(!ses.allowed(
            "https://sns.us-east-1.amazonaws.com@evil.example/x.pem",
            true
        ));
        assert!(ses.allowed("https://sns.us-east-1.amazonaws.com:8443/x.pem", true));
        assert!(!ses.allowed("https://sns.us-east-1.amazonaws.com:x/x.pem", true));
        assert!(ses.allowed(
            "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
            false
        ));
    }

    #[test]
    fn an_event_about_several_recipients_splits_into_one_part_each() {
        let ses = serde_json::json!({"eventType": "Bounce", "mail": {"messageId": "m-1",
            "timestamp": "2026-11-20T10:00:00.000Z", "destination": ["a@x.test", "b@x.test", "c@x.test"]},
            "bounce": {"bounceType": "Permanent", "bounceSubType": "General", "timestamp": "2026-11-20T10:00:01.000Z",
                "bouncedRecipients": [{"emailAddress": "A@x.test", "status": "5.1.1"}, {"emailAddress": "b@x.test", "status": "5.1.2"}]}});
        let sns = serde_json::json!({"Type": "Notification", "MessageId": "sns-1", "TopicArn": "t",
            "Message": ses.to_string(), "Timestamp": "2026-11-20T10:00:02.000Z"});
        let body = sns.to_string();
        let p = SES.decoder();
        let parts = p.split(body.as_bytes()).unwrap();
        assert_eq!(parts.len(), 2, "the two bounced recipients, not the third");
        let events: Vec<DeliveryEvent> = parts
            .iter()
            .map(|part| p.decode(&super::super::NO_HEADERS, part).unwrap())
            .collect();
        assert_eq!(events[0].message_id, "m-1:a@x.test");
        assert_eq!(events[0].event_id, "sns-1:a@x.test");
        assert_eq!(events[0].error_code.as_deref(), Some("5.1.1"));
        assert_eq!(events[1].message_id, "m-1:b@x.test");
        assert_eq!(events[1].error_code.as_deref(), Some("5.1.2"));
        assert!(events
            .iter()
            .all(|e| e.status == Some(DeliveryStatus::Bounced)));
        assert!(
            events
                .iter()
                .all(|e| e.failure_class == Some(FailureClass::Hard)),
            "each recipient gets the notification's class"
        );
        assert_eq!(events[0].occurred_at.timestamp(), 1_795_168_801);
        // Each part keeps the notification verbatim.
        let part: serde_json::Value = serde_json::from_slice(&parts[0]).unwrap();
        assert_eq!(part["notification"], sns);
        // One recipient: not split.
        let one = serde_json::json!({"Type": "Notification", "MessageId": "sns-2", "TopicArn": "t",
            "Message": serde_json::json!({"eventType": "Send", "mail": {"messageId": "m-2", "destination": ["a@x.test"]}}).to_string(),
            "Timestamp": "2026-11-20T10:00:02.000Z"});
        assert_eq!(p.split(one.to_string().as_bytes()), None);
        let e = p
            .decode(&super::super::NO_HEADERS, one.to_string().as_bytes())
            .unwrap();
        assert_eq!(
            (e.status, e.message_id.as_str(), e.event_id.as_str()),
            (Some(DeliveryStatus::Sent), "m-2:a@x.test", "sns-2")
        );
    }

    /// An SES event about one recipient, as SNS delivers it.
    fn notification(ses: Value) -> DeliveryEvent {
        let sns = serde_json::json!({"Type": "Notification", "MessageId": "sns-1", "TopicArn": "t",
            "Message": ses.to_string(), "Timestamp": "2026-11-20T10:00:02.000Z"});
        SES.decoder()
            .decode(&super::super::NO_HEADERS, sns.to_string().as_bytes())
            .unwrap()
    }

    fn mail() -> Value {
        serde_json::json!({"messageId": "m-1", "timestamp": "2026-11-20T10:00:00.000Z",
            "source": "sender@example.com", "destination": ["a@x.test"]})
    }

    fn bounce(kind: &str, sub: &str) -> DeliveryEvent {
        notification(serde_json::json!({"eventType": "Bounce", "mail": mail(),
            "bounce": {"bounceType": kind, "bounceSubType": sub,
                "timestamp": "2026-11-20T10:00:01.000Z", "feedbackId": "f-1",
                "bouncedRecipients": [{"emailAddress": "a@x.test",
                    "action": "failed", "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1"}]}}))
    }

    fn complaint(feedback: Option<&str>, sub: Option<&str>) -> DeliveryEvent {
        let mut c = serde_json::json!({"complainedRecipients": [{"emailAddress": "a@x.test"}],
            "timestamp": "2026-11-20T10:00:01.000Z", "feedbackId": "f-1",
            "complaintSubType": sub});
        if let Some(f) = feedback {
            c["complaintFeedbackType"] = f.into();
            c["userAgent"] = "ExampleCorp Feedback Loop (V0.01)".into();
        }
        notification(
            serde_json::json!({"notificationType": "Complaint", "mail": mail(),
            "complaint": c}),
        )
    }

    #[test]
    fn every_documented_bounce_and_complaint_has_a_class_and_others_are_unknown() {
        // What the documentation says each is, spelled out independently of the tables.
        for (kind, sub, want) in [
            ("Permanent", "General", FailureClass::Hard),
            ("Permanent", "NoEmail", FailureClass::Hard),
            ("Permanent", "Suppressed", FailureClass::Hard),
            ("Transient", "General", FailureClass::Soft),
            ("Transient", "MailboxFull", FailureClass::Soft),
            ("Transient", "ContentRejected", FailureClass::Policy),
            ("Transient", "AttachmentRejected", FailureClass::Policy),
        ] {
            assert_eq!(bounce(kind, sub).failure_class, Some(want), "{kind}/{sub}");
        }
        for (feedback, sub, want) in [
            (Some("abuse"), None, FailureClass::OptOut),
            (Some("fraud"), None, FailureClass::OptOut),
            (Some("virus"), None, FailureClass::Policy),
            (Some("auth-failure"), None, FailureClass::Policy),
            (None, None, FailureClass::OptOut),
            (None, Some("OnAccountSuppressionList"), FailureClass::OptOut),
        ] {
            let e = complaint(feedback, sub);
            assert_eq!(e.status, Some(DeliveryStatus::Complained));
            assert_eq!(e.failure_class, Some(want), "{feedback:?} {sub:?}");
        }
        let reject = serde_json::json!({"eventType": "Reject", "mail": mail(),
            "reject": {"reason": "Bad content"}});
        assert_eq!(
            notification(reject).failure_class,
            Some(FailureClass::Policy)
        );
        let rendering = serde_json::json!({"eventType": "Rendering Failure", "mail": mail(),
            "failure": {"templateName": "Welcome",
                "errorMessage": "Attribute 'name' is not present in the rendering data."}});
        assert_eq!(
            notification(rendering).failure_class,
            Some(FailureClass::Policy)
        );
        // Every row reaches an event through a notification in SES's shape, once each.
        let mut seen = std::collections::HashSet::new();
        for (code, class) in BOUNCE_CLASSES {
            assert!(seen.insert(code), "{code} listed twice");
            let (kind, sub) = code.split_once('/').unwrap();
            let e = bounce(kind, sub);
            assert_eq!(e.provider_status, Some(format!("Bounce/{code}")));
            assert_eq!(
                e.error_code.as_deref(),
                Some("5.1.1"),
                "the recipient's code, kept"
            );
            assert_eq!(e.failure_class, Some(*class), "{code}");
        }
        for (code, class) in COMPLAINT_CLASSES {
            assert!(seen.insert(code), "{code} listed twice");
            assert_eq!(
                complaint(Some(*code), None).failure_class,
                Some(*class),
                "{code}"
            );
        }
        for (code, class) in REJECT_CLASSES {
            assert!(seen.insert(code), "{code} listed twice");
            let e = notification(serde_json::json!({"eventType": "Reject", "mail": mail(),
                "reject": {"reason": code}}));
            assert_eq!(e.error_description.as_deref(), Some(*code));
            assert_eq!(e.failure_class, Some(*class), "{code}");
        }
        assert_eq!(
            (
                BOUNCE_CLASSES.len(),
                COMPLAINT_CLASSES.len(),
                REJECT_CLASSES.len()
            ),
            (9, 5, 1)
        );
        // SES saying it cannot tell, a subtype under the other type, a value SES does not list.
        for (kind, sub) in [
            ("Undetermined", "Undetermined"),
            ("Permanent", "MailboxFull"),
            ("Transient", "NoEmail"),
            ("Permanent", "Teleported"),
        ] {
            let e = bounce(kind, sub);
            assert_eq!(e.failure_class, Some(FailureClass::Unknown), "{kind}/{sub}");
        }
        let untyped = notification(serde_json::json!({"eventType": "Bounce", "mail": mail(),
            "bounce": {"bouncedRecipients": [{"emailAddress": "a@x.test"}]}}));
        assert_eq!(untyped.failure_class, Some(FailureClass::Unknown));
        for feedback in ["not-spam", "teleported"] {
            let e = complaint(Some(feedback), None);
            assert_eq!(e.failure_class, Some(FailureClass::Unknown), "{feedback}");
        }
        let other = notification(serde_json::json!({"eventType": "Reject", "mail": mail(),
            "reject": {"reason": "Something else"}}));
        assert_eq!(other.failure_class, Some(FailureClass::Unknown));
        // Not failures: no class.
        let delay = serde_json::json!({"eventType": "DeliveryDelay", "mail": mail(),
            "deliveryDelay": {"delayType": "MailboxFull", "timestamp": "2026-11-20T10:00:01.000Z",
                "delayedRecipients": [{"emailAddress": "a@x.test", "status": "4.2.2"}]}});
        assert_eq!(notification(delay).failure_class, None);
        let delivery = serde_json::json!({"eventType": "Delivery", "mail": mail(),
            "delivery": {"timestamp": "2026-11-20T10:00:01.000Z", "recipients": ["a@x.test"]}});
        assert_eq!(notification(delivery).failure_class, None);
    }

    #[test]
    fn signer_and_verifier_agree_and_the_topic_decides() {
        let keys = SES.keygen();
        let p = SES.configure(&keys, 300).unwrap().unwrap();
        let signer = SES.signer(&keys).unwrap();
        let body = SES
            .sample(&Sample {
                event_id: "e",
                message_id: "m-1",
                status: SampleStatus::Delivered,
                at: "2026-11-20T10:00:00.000Z",
            })
            .unwrap();
        let now = 1_795_168_800;
        let (signed, headers) = signer.request("", "", body.as_bytes(), now);
        let req = Request::new(&headers, &signed);
        assert_eq!(p.fetch_url(&req), Ok(None), "pre-seeded: nothing to fetch");
        assert_eq!(p.verify(&req, now + 3900), Ok(()));
        assert_eq!(
            p.verify(&req, now + 3901),
            Err(SignatureError::StaleTimestamp)
        );
        let mut other = keys.clone();
        other.set_var(
            "SES_TOPIC_ARNS",
            vec!["arn:aws:sns:us-east-1:000000000000:another".into()],
        );
        let other = SES.configure(&other, 300).unwrap().unwrap();
        assert_eq!(other.verify(&req, now), Err(SignatureError::Mismatch));
    }
}
