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
    /// Delivery is being retried by the receiving side (an email's receiving server deferred it).
    Delayed,
    /// The carrier gave no delivery receipt. Final, but the weakest
    /// final outcome: any real outcome outranks it.
    Unconfirmed,
    Delivered,
    /// Could not be sent or was rejected downstream (each provider's file lists its values).
    Failed,
    /// Permanently rejected by the recipient's server; can arrive after `delivered`.
    Bounced,
    /// The recipient marked the message as spam; implies it was delivered.
    Complained,
    /// Never sent: the address is on the provider's suppression list.
    /// Final. Last in the order only because ranks are append-only (the table's rows are landed);
    /// no other outcome can follow it for the same email.
    Suppressed,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 10] = [
        Self::Queued,
        Self::Sending,
        Self::Sent,
        Self::Delayed,
        Self::Unconfirmed,
        Self::Delivered,
        Self::Failed,
        Self::Bounced,
        Self::Complained,
        Self::Suppressed,
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
            Self::Suppressed => "suppressed",
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
    /// The provider's id of the message the event is about; joins to `recipients`. Empty when
    /// the event is about no message (e.g. an account or domain event).
    pub message_id: String,
    /// The provider's own event type, kept for the audit log (e.g. `message.finalized`).
    pub event_type: String,
    /// At most one of `status` and `engagement` is set. Neither: the event carries no delivery
    /// information (an inbound SMS, a domain update) or carries a value hookline does not map
    /// (`unmapped`); it is stored all the same and changes no recipient.
    pub status: Option<DeliveryStatus>,
    pub engagement: Option<Engagement>,
    /// The provider's own status value as sent (each provider's file says which field), so that
    /// e.g. a `failed` can be told apart as expired, cancelled or failed.
    pub provider_status: Option<String>,
    /// The provider sent a type or status hookline does not know yet: kept and counted, applied
    /// once a mapping for it ships and the event is replayed.
    pub unmapped: bool,
    /// For a message to several addresses (a group MMS), each address's own outcome; the
    /// event's `status` is then the highest-ranked of them. Empty for a single address.
    pub addresses: Vec<AddressOutcome>,
    pub occurred_at: DateTime<Utc>,
    pub error_code: Option<String>,
    pub error_description: Option<String>,
}

/// One address of a message sent to several, as the provider reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressOutcome {
    pub address: String,
    /// `None`: a value hookline does not map (kept in `provider_status`).
    pub status: Option<DeliveryStatus>,
    pub provider_status: String,
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
        assert!(DeliveryStatus::Suppressed.is_final());
        assert_eq!(DeliveryStatus::Suppressed.rank(), 100, "append-only ranks");
    }
}
