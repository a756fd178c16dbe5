//! A provider's message-status API, as the reconciliation sweep uses it (`hookline_ops::reconcile`):
//! asked about one message, it answers with something the provider turns into a synthetic webhook
//! in its own webhook shape ([`ProviderApi::learn`]), so it travels the same path as real ones
//! (JetStream dedup, the decoder, the database's ordering rules and counters).
//!
//! Synthetic event ids are `reconcile-{message}-{status}`: sweeping the same answer twice gives
//! the same id, so it is stored once however often the sweep runs.

use chrono::{DateTime, SecondsFormat, Utc};
use thiserror::Error;

use super::Setting;
use crate::event::DeliveryStatus;

/// What a provider's API said, as a webhook ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Learned {
    pub status: DeliveryStatus,
    pub event_id: String,
    pub event_type: String,
    pub body: String,
    /// Headers the decoder needs (where the provider sends the event id in a header).
    pub headers: Vec<(String, String)>,
}

/// The API's answer is not what the provider documents.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("unexpected API answer: {0}")]
pub struct LearnError(pub String);

impl From<&str> for LearnError {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

/// The settings of a provider's API: base URL, key, and how fast to ask it.
pub struct ApiSettings {
    pub url: Setting,
    /// Without it, this provider's recipients are not swept.
    pub key: Setting,
    /// Requests per second.
    pub rate: Setting,
}

/// A provider's message-status API, as reconcile uses it: `GET {url}{path}` with the key as a
/// bearer token (or as the provider's [`authorization`](Self::authorization) says).
pub trait ProviderApi: Sync {
    fn settings(&self) -> &'static ApiSettings;

    /// The request path for one message; `escaped_id` is already percent-encoded. `key` is the
    /// API key, for an API whose paths name the account it belongs to.
    fn lookup_path(&self, escaped_id: &str, key: &str) -> String;

    /// The `Authorization` header's value for `key`.
    fn authorization(&self, key: &str) -> String {
        format!("Bearer {key}")
    }

    /// The answer as a webhook; `Ok(None)`: the API knows the message but not in a status
    /// hookline maps (or not a final one).
    fn learn(&self, response: &[u8], now: DateTime<Utc>) -> Result<Option<Learned>, LearnError>;
}

/// Times in synthetic webhooks: RFC 3339 with milliseconds, as the providers write them.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}
