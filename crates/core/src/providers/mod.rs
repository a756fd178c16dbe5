//! Everything hookline knows about a provider lives in that provider's file here, behind two
//! traits: [`Provider`] (a configured instance: verify a request, read its routing envelope, decode
//! it, say which headers a replay must carry) and [`BuiltIn`] (the provider as a kind: its settings
//! and how they build a [`Provider`], how to sign test requests, sample bodies, and optionally the
//! API reconcile asks). Every other crate iterates over [`BUILT_IN`] and never names a provider.
//!
//! Adding a built-in provider: one file here implementing both traits, one line in [`BUILT_IN`],
//! and one folder of signed fixtures in `testdata/`. Generic HMAC sources (`generic`) are
//! configured from a TOML file instead and need no code.

pub mod api;
pub mod generic;
mod mailgun;
mod postmark;
mod resend;
pub mod samples;
mod sendgrid;
mod ses;
pub mod settings;
mod telnyx;
mod twilio;

pub use generic::{parse_sources, GenericSource, SourceConfig, SourceConfigError};
pub use resend::Resend;
pub use settings::{ConfigError, Setting, Values};
pub use telnyx::Telnyx;

/// Every built-in provider, in the order they are listed in help and metrics.
pub static BUILT_IN: &[&dyn BuiltIn] = &[
    &telnyx::TELNYX,
    &resend::RESEND,
    &postmark::POSTMARK,
    &twilio::TWILIO,
    &sendgrid::SENDGRID,
    &mailgun::MAILGUN,
    &ses::SES,
];

/// The built-in provider named `name`.
pub fn built_in(name: &str) -> Option<&'static dyn BuiltIn> {
    BUILT_IN.iter().copied().find(|b| b.name() == name)
}

use std::sync::Arc;

use thiserror::Error;

use crate::event::DeliveryEvent;
use crate::signature::SignatureError;

/// Read access to request or message headers, whatever carried them (HTTP or NATS).
/// Names are matched case-insensitively by the implementations.
pub trait Headers {
    fn get(&self, name: &str) -> Option<&str>;
}

impl<const N: usize> Headers for [(&str, &str); N] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

impl Headers for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The header on every stored event saying when ingest (or the tool publishing a copy)
/// received it, in unix milliseconds: the event's time for a provider that sends none.
pub const RECEIVED_AT: &str = "Hookline-Received-At-Ms";

/// Set by a replay from the database on an event of a provider that sends no event time: the
/// time it was stored with (the receive time it was first decoded with), in unix milliseconds.
pub const EVENT_TIME: &str = "Hookline-Event-Time-Ms";

/// For callers that have no headers to offer.
pub const NO_HEADERS: [(&str, &str); 0] = [];

/// A webhook request as ingest received it: what a provider verifies.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    pub headers: &'a dyn Headers,
    pub body: &'a [u8],
    /// The URL the provider called, as the provider wrote it: ingest's public base URL
    /// (`HOOKLINE_PUBLIC_URL`) followed by the path and query ingest received. Only providers
    /// that sign the URL read it.
    pub url: &'a str,
    /// The document [`Provider::fetch_url`] named, as ingest fetched it (a signing
    /// certificate); `None` when the provider named none.
    pub fetched: Option<&'a [u8]>,
}

impl<'a> Request<'a> {
    /// A request whose URL does not matter (providers that sign only headers and body).
    pub fn new(headers: &'a dyn Headers, body: &'a [u8]) -> Self {
        Self {
            headers,
            body,
            url: "",
            fetched: None,
        }
    }
}

/// See [`Provider::replay_token`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayToken {
    pub token: String,
    /// What the token may arrive with: the event's id.
    pub vouches_for: String,
}

/// What the database keeps of an event beside its payload: what a replay from the database can
/// hand back to the decoder ([`Provider::replay_headers`]).
#[derive(Debug, Clone, Copy)]
pub struct StoredColumns<'a> {
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub message_id: Option<&'a str>,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
}

/// What ingest needs to route a verified event: its id (for dedup) and type (for the subject).
/// Either may be missing when the signed body is not what the provider documents; ingest still
/// stores such an event and the worker dead-letters it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    pub event_id: Option<String>,
    pub event_type: Option<String>,
}

/// Why a signed payload could not become a [`DeliveryEvent`]. Always permanent: retrying the same
/// bytes gives the same answer, so the worker dead-letters these.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("payload is not the documented JSON shape: {0}")]
    Shape(String),
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("no provider named {0:?}")]
    UnknownProvider(String),
}

impl DecodeError {
    /// Every [`reason`](Self::reason), for metrics created at zero.
    pub const REASONS: [&'static str; 3] = ["bad_shape", "missing_header", "unknown_provider"];

    /// A short, bounded name for metrics and dead-letter headers.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Shape(_) => Self::REASONS[0],
            Self::MissingHeader(_) => Self::REASONS[1],
            Self::UnknownProvider(_) => Self::REASONS[2],
        }
    }
}

/// One webhook source.
pub trait Provider: Send + Sync {
    /// The route and subject token: `/webhooks/{name}`, `webhook.{name}.>`.
    fn name(&self) -> &'static str;

    /// Headers worth keeping with the event on the broker (signature headers, for audit).
    fn forwarded_headers(&self) -> &'static [&'static str];

    /// Checks the request's signature and timestamp against `now` (unix seconds).
    fn verify(&self, request: &Request<'_>, now: i64) -> Result<(), SignatureError>;

    /// A document [`verify`](Self::verify) needs from the network, by URL (SNS's signing
    /// certificate): ingest fetches it (over HTTPS, cached) and hands it over in
    /// [`Request::fetched`]. Only a URL the provider allows is named; one it does not is a
    /// rejection. `Ok(None)`, the default: nothing to fetch.
    fn fetch_url(&self, _request: &Request<'_>) -> Result<Option<String>, SignatureError> {
        Ok(None)
    }

    /// A URL ingest must GET once the request verified, before answering (SNS's subscription
    /// confirmation): a failure answers 503 so the provider sends it again.
    fn confirm_url(&self, _request: &Request<'_>) -> Option<String> {
        None
    }

    /// What [`verify`](Self::verify) can tell from the headers alone, before the body is read:
    /// the signature headers present and well-formed, the timestamp inside the tolerance. Ingest
    /// runs it before a request takes any slot, so requests that could never verify cost
    /// nothing. Must never reject what `verify` would accept.
    fn precheck(&self, _headers: &dyn Headers, _now: i64) -> Result<(), SignatureError> {
        Ok(())
    }

    /// The provider's documented event types: the only values used as a metric label (anything
    /// else, from an untrusted body, is counted as `other`).
    fn known_event_types(&self) -> &'static [&'static str];

    /// `event_type` if documented, else `other`: a bounded metric label.
    fn event_type_label(&self, event_type: &str) -> &'static str {
        self.known_event_types()
            .iter()
            .find(|t| **t == event_type)
            .copied()
            .unwrap_or("other")
    }

    /// The events a verified request carries when it carries several (a JSON array of events):
    /// each is published as its own message, with its own dedup id, and the request is answered
    /// 2xx only once every one is stored. `None`, the default: the body is one event. A body this
    /// provider would split but cannot (not the documented shape) is `None` too, and is stored
    /// whole for the worker to dead-letter. A part no longer verifies on its own: its signature
    /// covered the whole request.
    fn split(&self, _body: &[u8]) -> Option<Vec<Vec<u8>>> {
        None
    }

    /// Reads the event id and type without decoding the whole payload.
    fn envelope(&self, headers: &dyn Headers, body: &[u8]) -> Envelope;

    /// Headers a stored event must carry again when it is re-published (replay) for
    /// [`decode`](Self::decode) to read it: whatever the decoder takes from headers rather than
    /// from the body.
    fn replay_headers(&self, _stored: &StoredColumns<'_>) -> Vec<(String, String)> {
        Vec::new()
    }

    /// The payload as the database keeps it (`delivery_events.payload`, a JSON column): `None`,
    /// the default, for a JSON body, kept verbatim. A provider whose body is not JSON (a form)
    /// renders it as a JSON document its [`decode`](Self::decode) also reads, since a replay
    /// from the database publishes that.
    fn stored_payload(&self, _body: &[u8]) -> Option<String> {
        None
    }

    /// A one-time value the provider's signature covers but its payload does not (Mailgun's
    /// token), with the event it vouches for: ingest claims it in a store every replica shares
    /// before it publishes, so a captured signature cannot carry another event. The same token
    /// with the same event passes (a retry, absorbed by dedup); with another event, 401
    /// `replayed`. `None`, the default: the signature covers the payload.
    fn replay_token(&self, _request: &Request<'_>) -> Option<ReplayToken> {
        None
    }

    /// How long [`replay_token`](Self::replay_token)s must be remembered (the timestamp
    /// window, both sides); `None` for providers without tokens.
    fn token_window(&self) -> Option<std::time::Duration> {
        None
    }

    /// Decodes the payload. Every well-formed event decodes, whether or not it carries delivery
    /// information and whether or not hookline knows its type or status (`DeliveryEvent::unmapped`):
    /// whatever a provider signed is stored. An error means the body cannot be read as this
    /// provider's event at all (it goes to the dead-letter stream).
    fn decode(&self, headers: &dyn Headers, body: &[u8]) -> Result<DeliveryEvent, DecodeError>;
}

/// The configured providers, looked up by route name.
#[derive(Clone, Default)]
pub struct Providers {
    list: Vec<Arc<dyn Provider>>,
}

impl Providers {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, provider: impl Provider + 'static) -> Self {
        self.list.push(Arc::new(provider));
        self
    }

    pub fn with_arc(mut self, provider: Arc<dyn Provider>) -> Self {
        self.list.push(provider);
        self
    }

    /// Every built-in provider, without verification keys: enough for decoding in the worker.
    pub fn decoders() -> Self {
        BUILT_IN
            .iter()
            .fold(Self::new(), |p, b| p.with_arc(b.decoder()))
    }

    /// The built-in providers whose verification settings are in `values`.
    pub fn configured(values: &Values, tolerance_secs: u64) -> Result<Self, ConfigError> {
        let mut providers = Self::new();
        for b in BUILT_IN {
            if let Some(p) = b.configure(values, tolerance_secs)? {
                providers = providers.with_arc(p);
            }
        }
        Ok(providers)
    }

    pub fn get(&self, name: &str) -> Option<&dyn Provider> {
        self.list
            .iter()
            .find(|p| p.name() == name)
            .map(|p| p.as_ref())
    }

    /// The longest [`Provider::token_window`] of the configured providers: how long ingest's
    /// token bucket must remember, if any provider uses one.
    pub fn token_window(&self) -> Option<std::time::Duration> {
        self.list.iter().filter_map(|p| p.token_window()).max()
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.list.iter().map(|p| p.name()).collect()
    }

    /// Decodes a stored event by provider name.
    pub fn decode(
        &self,
        provider: &str,
        headers: &dyn Headers,
        body: &[u8],
    ) -> Result<DeliveryEvent, DecodeError> {
        let mut event = self
            .get(provider)
            .ok_or_else(|| DecodeError::UnknownProvider(provider.to_owned()))?
            .decode(headers, body)?;
        event.settle_class();
        Ok(event)
    }
}

/// A provider as a kind: what configures it, signs for it and speaks its API. One static value per
/// built-in provider, listed in [`BUILT_IN`].
pub trait BuiltIn: Sync {
    /// The route and subject token, as [`Provider::name`].
    fn name(&self) -> &'static str;

    /// How its webhooks are signed, in a few words (benchmark tables, docs).
    fn scheme(&self) -> &'static str;

    /// How long after the first attempt the provider may still retry an unanswered webhook, by
    /// its documented schedule: the event log's dedup window must cover it.
    fn retry_span(&self) -> std::time::Duration;

    /// Ingest's settings: the keys that verify this provider's signatures.
    fn verify_settings(&self) -> &'static [Setting];

    /// A verifying provider from `values`; `None` when none of its settings is set (its route
    /// answers 404).
    fn configure(
        &self,
        values: &Values,
        tolerance_secs: u64,
    ) -> Result<Option<Arc<dyn Provider>>, ConfigError>;

    /// A provider without keys (it rejects every signature): enough for decoding.
    fn decoder(&self) -> Arc<dyn Provider>;

    /// Settings of the signing side (`hookline sign`/`send`/`demo`): the provider's private key
    /// or shared secret, for testing a deployment as the provider would call it.
    fn sign_settings(&self) -> &'static [Setting];

    /// A signer from `values`.
    fn signer(&self, values: &Values) -> Result<Box<dyn Signer>, ConfigError>;

    /// Fresh test keys: values for both [`sign_settings`](Self::sign_settings) and
    /// [`verify_settings`](Self::verify_settings), matching each other.
    fn keygen(&self) -> Values;

    /// A body in the provider's documented shape for `sample`, or `None` if it has no such event.
    fn sample(&self, sample: &Sample<'_>) -> Option<String>;

    /// The `n`th sample recipient address (a phone number, an email address).
    fn sample_address(&self, n: usize) -> String;

    /// The id an application registers a recipient under (`recipients.provider_message_id`):
    /// the provider's message id, unless one message id covers several recipients (one send
    /// request to many addresses), when the address tells them apart.
    fn recipient_id(&self, message_id: &str, _address: &str) -> String {
        message_id.to_owned()
    }

    /// The API reconcile asks about a message's status, if the provider has one.
    fn api(&self) -> Option<&'static dyn api::ProviderApi> {
        None
    }
}

/// A request as a provider sends it: the body and the headers.
pub type SignedRequest = (Vec<u8>, Vec<(String, String)>);

/// Signs request bodies as the provider does.
pub trait Signer: Send + Sync {
    /// The headers of a request carrying `body` to `url` (the full URL, as the provider would
    /// call it), signed at `ts` (unix seconds), `content-type` included. `event_id` is used
    /// where the provider sends the event id in a header rather than in the body.
    fn sign(&self, url: &str, event_id: &str, body: &[u8], ts: i64) -> Vec<(String, String)>;

    /// For a provider that puts its signature inside the body (Mailgun): the body with it, signed
    /// at `ts`. `None`, the default: the body is sent as it is.
    fn sign_body(&self, _body: &[u8], _ts: i64) -> Option<Vec<u8>> {
        None
    }

    /// The request as the provider sends it: its body (signed inside, where the provider does
    /// that) and its headers.
    fn request(&self, url: &str, event_id: &str, body: &[u8], ts: i64) -> SignedRequest {
        let body = self.sign_body(body, ts).unwrap_or_else(|| body.to_vec());
        let headers = self.sign(url, event_id, &body, ts);
        (body, headers)
    }
}

/// The outcomes a sample body can say (see [`BuiltIn::sample`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleStatus {
    /// Handed on by the provider.
    Sent,
    Delivered,
    /// The provider's usual failure (an SMS not delivered, an email bounced).
    Undelivered,
    /// The recipient opened it (email only).
    Opened,
}

/// What a sample body is about.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    pub event_id: &'a str,
    pub message_id: &'a str,
    pub status: SampleStatus,
    /// RFC 3339.
    pub at: &'a str,
}

/// A provider's failure-class table: its documented codes (in whatever form its file keys them)
/// and their classes. A code the table does not list is `Unknown`, never a guess.
pub(crate) fn class_of(table: &[(&str, crate::FailureClass)], code: &str) -> crate::FailureClass {
    table
        .iter()
        .find(|(c, _)| *c == code)
        .map_or(crate::FailureClass::Unknown, |(_, class)| *class)
}

/// Serde helper: the first error's code may be a string or a number in providers' JSON.
pub(crate) fn code_to_string(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
