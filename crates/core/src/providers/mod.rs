//! Provider adapters behind one trait: verify a request's signature, read its routing envelope
//! (event id and type) cheaply for ingest, and decode its payload into a [`DeliveryEvent`] in the
//! worker. Adding a provider is one file here and one folder of signed fixtures in `testdata/`.

pub mod generic;
mod resend;
pub mod samples;
mod telnyx;

pub use generic::{parse_sources, GenericSource, SourceConfig};
pub use resend::{kind_status as resend_kind_status, Resend};
pub use telnyx::{status as telnyx_status, Telnyx};

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

/// For callers that have no headers to offer.
pub const NO_HEADERS: [(&str, &str); 0] = [];

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
    /// A short, bounded name for metrics and dead-letter headers.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Shape(_) => "bad_shape",
            Self::MissingHeader(_) => "missing_header",
            Self::UnknownProvider(_) => "unknown_provider",
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
    fn verify(&self, headers: &dyn Headers, body: &[u8], now: i64) -> Result<(), SignatureError>;

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

    /// Reads the event id and type without decoding the whole payload.
    fn envelope(&self, headers: &dyn Headers, body: &[u8]) -> Envelope;

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

    /// Every built-in provider, without verification keys: enough for decoding in the worker.
    pub fn decoders() -> Self {
        Self::new()
            .with(Telnyx::new(None, 0))
            .with(Resend::new(Vec::new(), 0))
    }

    pub fn get(&self, name: &str) -> Option<&dyn Provider> {
        self.list
            .iter()
            .find(|p| p.name() == name)
            .map(|p| p.as_ref())
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
        self.get(provider)
            .ok_or_else(|| DecodeError::UnknownProvider(provider.to_owned()))?
            .decode(headers, body)
    }
}

/// Serde helper: the first error's code may be a string or a number in providers' JSON.
pub(crate) fn code_to_string(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
