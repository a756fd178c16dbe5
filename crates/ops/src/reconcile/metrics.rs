//! The sweep's metrics and why a lookup corrected nothing.

use hookline_core::providers::BUILT_IN;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

/// The sweep's counters, exported on `/metrics` when it runs on a schedule.
#[derive(Clone)]
pub struct ReconcileMetrics {
    pub registry: Registry,
    pub swept: IntCounterVec,
    pub corrected: IntCounterVec,
    pub unknown: IntCounterVec,
    /// Recipients given up on (looked up too often or too long without an answer).
    pub gave_up: IntCounterVec,
    /// Lookups left in the sweep running now.
    pub remaining: IntGaugeVec,
}

/// Why a lookup did not correct anything; [`Unknown::reason`] is the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknown {
    /// The API's status is not newer than the recipient's.
    NotFinal,
    NotFound,
    RateLimited,
    Timeout,
    HttpError,
    /// The API answered something the provider does not document.
    BadResponse,
    /// JetStream did not store the correction.
    PublishFailed,
}

impl Unknown {
    pub const ALL: [Self; 7] = [
        Self::NotFinal,
        Self::NotFound,
        Self::RateLimited,
        Self::Timeout,
        Self::HttpError,
        Self::BadResponse,
        Self::PublishFailed,
    ];

    pub fn reason(self) -> &'static str {
        match self {
            Self::NotFinal => "not_final",
            Self::NotFound => "not_found",
            Self::RateLimited => "rate_limited",
            Self::Timeout => "timeout",
            Self::HttpError => "http_error",
            Self::BadResponse => "bad_response",
            Self::PublishFailed => "publish_failed",
        }
    }
}

impl ReconcileMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let swept = IntCounterVec::new(
            Opts::new(
                "webhook_reconcile_swept_total",
                "Stuck recipients looked up in the provider's API.",
            ),
            &["provider"],
        )
        .unwrap();
        let corrected = IntCounterVec::new(
            Opts::new(
                "webhook_reconcile_corrected_total",
                "Lookups that found a newer status and published it, by that status.",
            ),
            &["provider", "status"],
        )
        .unwrap();
        let unknown = IntCounterVec::new(
            Opts::new(
                "webhook_reconcile_still_unknown_total",
                "Lookups that left the recipient as it was, by reason.",
            ),
            &["provider", "reason"],
        )
        .unwrap();
        let gave_up = IntCounterVec::new(
            Opts::new(
                "webhook_reconcile_gave_up_total",
                "Recipients no longer swept: looked up too often or too long without an answer.",
            ),
            &["provider"],
        )
        .unwrap();
        let remaining = IntGaugeVec::new(
            Opts::new(
                "webhook_reconcile_remaining",
                "Lookups left in the sweep running now.",
            ),
            &["provider"],
        )
        .unwrap();
        hookline_runtime::register_all(
            &registry,
            vec![
                Box::new(swept.clone()),
                Box::new(corrected.clone()),
                Box::new(unknown.clone()),
                Box::new(gave_up.clone()),
                Box::new(remaining.clone()),
            ],
        );
        for p in BUILT_IN
            .iter()
            .filter(|b| b.api().is_some())
            .map(|b| b.name())
        {
            swept.with_label_values(&[p]);
            gave_up.with_label_values(&[p]);
            remaining.with_label_values(&[p]);
            for r in Unknown::ALL {
                unknown.with_label_values(&[p, r.reason()]);
            }
        }
        Self {
            registry,
            swept,
            corrected,
            unknown,
            gave_up,
            remaining,
        }
    }
}

impl Default for ReconcileMetrics {
    fn default() -> Self {
        Self::new()
    }
}
