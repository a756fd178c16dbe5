//! The normalized delivery event every provider payload is decoded into, and the status order
//! that makes state monotonic: a lower-ranked status never overwrites a higher one.
//!
//! The ranks are mirrored in the `delivery_statuses` table (migrations/); a worker test checks the
//! two agree.

use chrono::{DateTime, Utc};

/// A recipient's delivery status, provider-neutral. Each status has a distinct rank, so "the
/// highest status seen" is a total order and the final state does not depend on arrival order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeliveryStatus {
    Queued,
    Sending,
    Sent,
    /// Delivery is being retried by the receiving side (Resend `email.delivery_delayed`).
    Delayed,
    /// The carrier gave no delivery receipt (Telnyx `delivery_unconfirmed`). Final, but the weakest
    /// final outcome: any real outcome outranks it.
    Unconfirmed,
    Delivered,
    /// Could not be sent or was rejected downstream (Telnyx `sending_failed`/`delivery_failed`,
    /// Resend `email.failed`).
    Failed,
    /// Permanently rejected by the recipient's server; can arrive after `delivered`.
    Bounced,
    /// The recipient marked the message as spam; implies it was delivered.
    Complained,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 9] = [
        Self::Queued,
        Self::Sending,
        Self::Sent,
        Self::Delayed,
        Self::Unconfirmed,
        Self::Delivered,
        Self::Failed,
        Self::Bounced,
        Self::Complained,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Delayed => "delayed",
            Self::Unconfirmed => "unconfirmed",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Bounced => "bounced",
            Self::Complained => "complained",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The status's place in the order; the same numbers are in the `delivery_statuses` table.
    pub fn rank(self) -> i16 {
        (self as i16 + 1) * 10
    }

    /// Whether no further delivery status is expected (the reconciliation sweep skips these).
    pub fn is_final(self) -> bool {
        self >= Self::Unconfirmed
    }
}

/// Engagement events set a timestamp on the recipient; they never change its delivery status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engagement {
    Opened,
    Clicked,
}

impl Engagement {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::Clicked => "clicked",
        }
    }
}

/// What a webhook tells us, in one shape for every provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryEvent {
    pub provider: &'static str,
    /// The provider's id of this event (unique per provider); the idempotency key.
    pub event_id: String,
    /// The provider's id of the message the event is about; joins to `recipients`.
    pub message_id: String,
    /// The provider's own event type, kept for the audit log (e.g. `message.finalized`).
    pub event_type: String,
    /// Exactly one of `status` and `engagement` is set.
    pub status: Option<DeliveryStatus>,
    pub engagement: Option<Engagement>,
    pub occurred_at: DateTime<Utc>,
    pub error_code: Option<String>,
    pub error_description: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_are_distinct_and_follow_declaration_order() {
        let ranks: Vec<i16> = DeliveryStatus::ALL.iter().map(|s| s.rank()).collect();
        assert!(ranks.windows(2).all(|w| w[0] < w[1]), "{ranks:?}");
    }

    #[test]
    fn names_round_trip() {
        for s in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(DeliveryStatus::parse("nope"), None);
    }

    #[test]
    fn outcomes_outrank_progress() {
        assert!(DeliveryStatus::Delivered > DeliveryStatus::Sent);
        assert!(DeliveryStatus::Bounced > DeliveryStatus::Delivered);
        assert!(DeliveryStatus::Delivered > DeliveryStatus::Unconfirmed);
        assert!(!DeliveryStatus::Delayed.is_final());
        assert!(DeliveryStatus::Unconfirmed.is_final());
    }
}
