//! `hookline deliver`'s metrics, served on `HOOKLINE_DELIVER_LISTEN`.

use prometheus::{exponential_buckets, Histogram, HistogramOpts, IntCounterVec, Opts, Registry};

/// The deliverer's metrics.
#[derive(Clone)]
pub struct OutboundMetrics {
    pub registry: Registry,
    pub attempts: IntCounterVec,
    pub delivered: prometheus::IntCounter,
    pub given_up: IntCounterVec,
    pub attempt_duration: Histogram,
    pub lag: Histogram,
}

impl Default for OutboundMetrics {
    fn default() -> Self {
        let registry = Registry::new();
        let attempts = IntCounterVec::new(
            Opts::new(
                "webhook_outbound_attempts_total",
                "POSTs of a change to the application, by result: an HTTP status, timeout or \
                 connect.",
            ),
            &["result"],
        )
        .unwrap();
        let given_up = IntCounterVec::new(
            Opts::new(
                "webhook_outbound_given_up_total",
                "Changes given up on and kept in the undelivered stream, by reason (refused, \
                 gone, attempts).",
            ),
            &["reason"],
        )
        .unwrap();
        let delivered = prometheus::IntCounter::new(
            "webhook_outbound_delivered_total",
            "Changes the application accepted (2xx).",
        )
        .unwrap();
        let attempt_duration = Histogram::with_opts(
            HistogramOpts::new(
                "webhook_outbound_attempt_duration_seconds",
                "One POST to the application, request to answer.",
            )
            .buckets(exponential_buckets(0.005, 2.0, 14).unwrap()),
        )
        .unwrap();
        let lag = Histogram::with_opts(
            HistogramOpts::new(
                "webhook_outbound_lag_seconds",
                "From a change's commit to the application's 2xx.",
            )
            .buckets(exponential_buckets(0.01, 2.0, 16).unwrap()),
        )
        .unwrap();
        hookline_runtime::register_all(
            &registry,
            vec![
                Box::new(attempts.clone()),
                Box::new(delivered.clone()),
                Box::new(given_up.clone()),
                Box::new(attempt_duration.clone()),
                Box::new(lag.clone()),
            ],
        );
        for r in ["refused", "gone", "attempts"] {
            given_up.with_label_values(&[r]);
        }
        Self {
            registry,
            attempts,
            delivered,
            given_up,
            attempt_duration,
            lag,
        }
    }
}
