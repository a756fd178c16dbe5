//! The reconciliation sweep's pure half: turn a provider API's answer about one message into a
//! synthetic webhook, in the provider's own webhook shape, so it travels the same path as real
//! ones (JetStream dedup, the decoder, the database's ordering rules and counters).
//!
//! Synthetic event ids are `reconcile-{message}-{status}`: sweeping the same answer twice gives
//! the same id, so it is stored once however often the sweep runs.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::event::DeliveryStatus;
use crate::signature::svix;

/// What a provider's API said, as a webhook ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Learned {
    pub status: DeliveryStatus,
    pub event_id: String,
    pub event_type: String,
    pub body: String,
    /// Headers the decoder needs (Resend's event id lives in `svix-id`).
    pub headers: Vec<(String, String)>,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Telnyx `GET /v2/messages/{id}` → a `message.sent`/`message.finalized` webhook whose payload is
/// the message object itself (a Telnyx webhook's payload has the same shape). `Ok(None)`: the
/// API knows the message but not in a status hookline maps.
pub fn telnyx_from_api(response: &[u8], now: DateTime<Utc>) -> Result<Option<Learned>, String> {
    let v: Value = serde_json::from_slice(response).map_err(|e| format!("not JSON: {e}"))?;
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
        .filter_map(|r| crate::providers::telnyx_status(r).map(|s| (s, *r)))
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

/// Resend's API writes times as `2026-11-23 10:00:00.000000+00` (PostgreSQL style); webhooks use
/// RFC 3339. Accepts both.
fn parse_resend_time(s: &str) -> Option<DateTime<Utc>> {
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
pub fn resend_from_api(response: &[u8], now: DateTime<Utc>) -> Result<Option<Learned>, String> {
    let v: Value = serde_json::from_slice(response).map_err(|e| format!("not JSON: {e}"))?;
    let id = v["id"].as_str().filter(|s| !s.is_empty()).ok_or("no id")?;
    let last = v["last_event"].as_str().ok_or("no last_event")?;
    let last = match last {
        "opened" | "clicked" => "delivered",
        other => other,
    };
    let event_type = format!("email.{last}");
    let status = match crate::providers::resend_kind_status(&event_type) {
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
        .and_then(parse_resend_time)
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
    use crate::providers::{Provider, Resend, Telnyx};

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
        let l = telnyx_from_api(api, now()).unwrap().unwrap();
        assert_eq!(l.status, DeliveryStatus::Failed);
        assert_eq!(l.event_id, "reconcile-40317f0e-aaaa-delivery_failed");
        let ev = Telnyx::new(None, 0)
            .decode(&crate::providers::NO_HEADERS, l.body.as_bytes())
            .unwrap();
        assert_eq!(ev.status, Some(DeliveryStatus::Failed));
        assert_eq!(ev.message_id, "40317f0e-aaaa");
        assert_eq!(ev.event_id, l.event_id);
        assert_eq!(ev.error_code.as_deref(), Some("40008"));
        assert_eq!(ev.occurred_at.to_rfc3339(), "2026-11-23T10:00:05+00:00");
        let env = Telnyx::new(None, 0).envelope(&crate::providers::NO_HEADERS, l.body.as_bytes());
        assert_eq!(env.event_type.as_deref(), Some("message.finalized"));
        assert_eq!(
            telnyx_from_api(api, now()).unwrap().unwrap().body,
            l.body,
            "deterministic"
        );
    }

    #[test]
    fn resend_answer_becomes_a_decodable_webhook() {
        let api = br#"{"object":"email","id":"4ef9a417","to":["a@example.com"],"from":"x@y.z",
            "created_at":"2026-11-23 10:00:00.000000+00","subject":"Hi","last_event":"clicked"}"#;
        let l = resend_from_api(api, now()).unwrap().unwrap();
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
            resend_from_api(bounced, now()).unwrap().unwrap().status,
            DeliveryStatus::Bounced
        );
        assert_eq!(
            resend_from_api(br#"{"id":"e3","last_event":"canceled"}"#, now()),
            Ok(None)
        );
        assert!(resend_from_api(b"<html>", now()).is_err());
        assert!(telnyx_from_api(br#"{"errors":[]}"#, now()).is_err());
    }
}
