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

/// Why an outcome failed, in the terms a sender acts on: whether mailing or texting the address
/// again can succeed. Each provider's file holds the table from its documented codes to these;
/// a code it does not list is [`FailureClass::Unknown`], counted and never guessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// Will not succeed: the mailbox or number does not exist, a landline, a bad address.
    Hard,
    /// May succeed later: mailbox full, carrier congestion, a receiving server deferring.
    Soft,
    /// Refused for what was sent or who sent it: spam filtering, blocked content or sender.
    Policy,
    /// The recipient does not want it: STOP, an unsubscribe, a spam complaint.
    OptOut,
    /// A failure whose code the provider's table does not list.
    Unknown,
}

impl FailureClass {
    pub const ALL: [FailureClass; 5] = [
        Self::Hard,
        Self::Soft,
        Self::Policy,
        Self::OptOut,
        Self::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hard => "hard",
            Self::Soft => "soft",
            Self::Policy => "policy",
            Self::OptOut => "opt_out",
            Self::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The outcomes that get a class: the message did not reach, or must not reach, the address.
    pub fn applies_to(status: DeliveryStatus) -> bool {
        matches!(
            status,
            DeliveryStatus::Failed
                | DeliveryStatus::Bounced
                | DeliveryStatus::Complained
                | DeliveryStatus::Suppressed
        )
    }
}

/// What the provider charged for a message, as it reported it: the amount is the provider's
/// decimal text (kept exact, stored as `numeric`), the currency its ISO 4217 code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cost {
    pub amount: String,
    pub currency: String,
}

impl Cost {
    /// A cost as a provider reported it, if the amount is a plain decimal (`0.0075`, `-1`,
    /// `12`): anything else is left out rather than failing the batch that stores it (the
    /// payload keeps it). A number in the JSON is taken by its text, so no float rounding.
    pub fn new(amount: &str, currency: &str) -> Option<Cost> {
        let amount = amount.trim();
        let digits = amount.strip_prefix('-').unwrap_or(amount);
        let (int, frac) = digits.split_once('.').unwrap_or((digits, "0"));
        let decimal =
            |s: &str| !s.is_empty() && s.len() <= 30 && s.bytes().all(|b| b.is_ascii_digit());
        let currency = currency.trim();
        (decimal(int) && decimal(frac) && !currency.is_empty() && currency.len() <= 16).then(|| {
            Cost {
                amount: amount.to_owned(),
                currency: currency.to_ascii_uppercase(),
            }
        })
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
    /// Set exactly when `status` is failed, bounced, complained or suppressed (the registry's
    /// decode sees to it: a provider that names no class gets [`FailureClass::Unknown`]).
    pub failure_class: Option<FailureClass>,
    /// What the message cost and in how many parts it went, where the provider says so.
    pub cost: Option<Cost>,
    pub parts: Option<i32>,
}

impl DeliveryEvent {
    /// Holds the rule on `failure_class`: a failure outcome always has one (`Unknown` when the
    /// provider's table had none), any other event none. The registry's decode applies it.
    pub fn settle_class(&mut self) {
        self.failure_class = match self.status {
            // A complaint is the recipient saying no, whatever the provider calls it.
            Some(DeliveryStatus::Complained) => {
                Some(self.failure_class.unwrap_or(FailureClass::OptOut))
            }
            Some(s) if FailureClass::applies_to(s) => {
                Some(self.failure_class.unwrap_or(FailureClass::Unknown))
            }
            _ => None,
        };
    }
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
    fn failure_classes_round_trip_and_apply_to_failures_only() {
        for c in FailureClass::ALL {
            assert_eq!(FailureClass::parse(c.as_str()), Some(c));
        }
        let failures: Vec<_> = DeliveryStatus::ALL
            .into_iter()
            .filter(|s| FailureClass::applies_to(*s))
            .map(DeliveryStatus::as_str)
            .collect();
        assert_eq!(failures, ["failed", "bounced", "complained", "suppressed"]);
    }

    #[test]
    fn a_cost_is_a_plain_decimal_or_nothing() {
        let c = Cost::new(" 0.0075 ", "usd").unwrap();
        assert_eq!((c.amount.as_str(), c.currency.as_str()), ("0.0075", "USD"));
        assert!(Cost::new("-1", "EUR").is_some());
        assert!(Cost::new("12", "EUR").is_some());
        for bad in ["", ".5", "1.", "1e3", "NaN", "1,5", "--1", "0x10"] {
            assert_eq!(Cost::new(bad, "USD"), None, "{bad}");
        }
        assert_eq!(Cost::new("1", ""), None);
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
