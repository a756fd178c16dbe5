//! From a JetStream message to a [`DeliveryEvent`]: the provider comes from the subject
//! (`webhook.{provider}.…`), the headers and body are what ingest stored, unchanged.

use async_nats::HeaderMap;
use hookline_core::{DecodeError, DeliveryEvent, Headers, Providers};

/// NATS headers seen through core's [`Headers`] trait.
pub struct NatsHeaders<'a>(pub Option<&'a HeaderMap>);

impl Headers for NatsHeaders<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0?
            .iter()
            .find(|(k, _)| AsRef::<str>::as_ref(*k).eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.first())
            .map(|v| v.as_str())
    }
}

/// `webhook.{provider}.{event_type}` → `provider`.
pub fn provider_of(subject: &str) -> Option<&str> {
    let mut parts = subject.splitn(3, '.');
    match (parts.next(), parts.next()) {
        (Some(hookline_core::subject::SUBJECT_PREFIX), Some(p)) if !p.is_empty() => Some(p),
        _ => None,
    }
}

/// A stored event decoded, with the body it came from (kept verbatim in the database).
pub struct Decoded<'a> {
    pub event: DeliveryEvent,
    /// The body, or the JSON document a provider whose body is not JSON renders it as.
    pub payload: std::borrow::Cow<'a, str>,
}

pub fn decode<'a>(
    providers: &Providers,
    subject: &str,
    headers: Option<&HeaderMap>,
    body: &'a [u8],
) -> Result<Decoded<'a>, DecodeError> {
    let provider =
        provider_of(subject).ok_or_else(|| DecodeError::UnknownProvider(subject.to_owned()))?;
    let event = providers.decode(provider, &NatsHeaders(headers), body)?;
    let payload = match providers.get(provider).and_then(|p| p.stored_payload(body)) {
        Some(json) => json.into(),
        None => std::str::from_utf8(body)
            .map_err(|_| DecodeError::Shape("body is not UTF-8".to_owned()))?
            .into(),
    };
    Ok(Decoded { event, payload })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_from_subject() {
        assert_eq!(
            provider_of("webhook.telnyx.message.finalized"),
            Some("telnyx")
        );
        assert_eq!(provider_of("webhook.resend"), Some("resend"));
        assert_eq!(provider_of("other.telnyx.x"), None);
        assert_eq!(provider_of("webhook"), None);
    }

    #[test]
    fn unknown_provider_and_non_utf8_are_permanent_errors() {
        let p = Providers::decoders();
        assert!(matches!(
            decode(&p, "webhook.nope.x", None, b"{}"),
            Err(DecodeError::UnknownProvider(_))
        ));
        assert!(matches!(
            decode(&p, "webhook.telnyx.x", None, b"\xff"),
            Err(DecodeError::Shape(_))
        ));
    }
}
