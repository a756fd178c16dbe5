//! Sample webhook bodies in each provider's documented shape: for `hookline demo`, `hookline
//! send` and the tests. Real providers send more fields; these carry every field hookline reads.

/// A Telnyx messaging webhook: `message.sent` for progress statuses, `message.finalized` for
/// outcomes. Failed statuses carry a carrier error, as Telnyx sends them.
pub fn telnyx_body(event_id: &str, message_id: &str, status: &str, occurred_at: &str) -> String {
    let event_type = match status {
        "queued" | "sending" | "sent" => "message.sent",
        _ => "message.finalized",
    };
    let errors = if status.ends_with("failed") {
        serde_json::json!([{"code": "40008", "title": "Undeliverable", "detail": "Carrier rejected the message."}])
    } else {
        serde_json::json!([])
    };
    serde_json::json!({
        "data": {
            "event_type": event_type,
            "id": event_id,
            "occurred_at": occurred_at,
            "payload": {
                "direction": "outbound",
                "errors": errors,
                "from": {"phone_number": "+13125550100", "carrier": "Telnyx"},
                "id": message_id,
                "to": [{"phone_number": "+13125550123", "status": status, "carrier": "T-MOBILE USA, INC.", "line_type": "Wireless"}],
                "type": "SMS",
                "parts": 1,
                "cost": {"amount": "0.0040", "currency": "USD"}
            },
            "record_type": "event"
        },
        "meta": {"attempt": 1, "delivered_to": "http://127.0.0.1:8080/webhooks/telnyx"}
    })
    .to_string()
}

/// A Resend webhook of type `kind` (e.g. `email.delivered`); bounces carry Resend's bounce block.
pub fn resend_body(kind: &str, email_id: &str, created_at: &str) -> String {
    let mut data = serde_json::json!({
        "created_at": created_at,
        "email_id": email_id,
        "from": "Acme <onboarding@resend.dev>",
        "to": ["someone@example.com"],
        "subject": "Your order has shipped"
    });
    if kind == "email.bounced" {
        data["bounce"] = serde_json::json!({"message": "Mailbox does not exist", "subType": "General", "type": "Permanent"});
    }
    serde_json::json!({"type": kind, "created_at": created_at, "data": data}).to_string()
}
