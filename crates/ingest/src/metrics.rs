//! Ingest's metrics, in one place. Label values are bounded: provider names ingest is configured
//! with (or `unknown`), documented event types (or `other`), fixed reason and stage names.
//! Known label combinations are created at zero on start-up, so dashboards and alerts always have
//! a series to read.

use prometheus::{
    exponential_buckets, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
};

pub struct IngestMetrics {
    registry: Registry,
    /// Requests to `/webhooks/{provider}`, whatever their outcome.
    pub received: IntCounterVec,
    /// Events JetStream acknowledged (`duplicate`: inside the dedup window).
    pub queued: IntCounterVec,
    pub response_duration: HistogramVec,
    pub signature_failures: IntCounterVec,
    pub publish_failures: IntCounterVec,
    /// `stage_duration{stage="verify"}` and `{stage="publish"}`, resolved once: they are observed
    /// on every request.
    pub verify_duration: prometheus::Histogram,
    pub publish_duration: prometheus::Histogram,
    /// Requests refused before verification to protect the process: `overloaded` (in-flight
    /// cap, 503), `rate_limited` (429), `body_timeout` (408).
    pub shed: IntCounterVec,
    /// Webhook requests being handled right now (body read, verify, publish).
    pub inflight: IntGauge,
    /// The stream as the readiness check last saw it: events not yet stored by a worker, their
    /// bytes, and bytes ÷ the stream's limit (0 without one). From ingest, not the workers, so
    /// a backlog shows while every worker is down.
    pub stream_messages: IntGauge,
    pub stream_bytes: IntGauge,
    pub stream_fullness: prometheus::Gauge,
    /// Events no worker has stored yet (the workers' consumer: pending + ack pending).
    pub stream_unprocessed: IntGauge,
    /// The log's retention (`max_age`), for alerts on unprocessed events nearing it.
    pub stream_max_age: IntGauge,
}

pub use crate::error::SHED_REASONS;
use hookline_core::SignatureError;
use hookline_jetstream::PublishFailure;

impl IngestMetrics {
    pub fn new(providers: &[&'static str]) -> Self {
        let registry = Registry::new();
        let received = IntCounterVec::new(
            Opts::new(
                "webhook_received_total",
                "Webhook requests received, by provider route.",
            ),
            &["provider"],
        )
        .unwrap();
        let queued = IntCounterVec::new(
            Opts::new(
                "webhook_queued_total",
                "Webhooks stored in JetStream (PubAck received).",
            ),
            &["provider", "event_type", "duplicate"],
        )
        .unwrap();
        let response_duration = HistogramVec::new(
            HistogramOpts::new(
                "webhook_response_duration_seconds",
                "Time from request to response, by provider and HTTP status code.",
            )
            .buckets(exponential_buckets(0.0001, 2.0, 16).unwrap()),
            &["provider", "code"],
        )
        .unwrap();
        let signature_failures = IntCounterVec::new(
            Opts::new(
                "webhook_signature_failures_total",
                "Requests refused with 401, by reason.",
            ),
            &["provider", "reason"],
        )
        .unwrap();
        let publish_failures = IntCounterVec::new(
            Opts::new(
                "webhook_publish_failures_total",
                "Verified webhooks answered 503 because JetStream did not store them.",
            ),
            &["provider", "reason"],
        )
        .unwrap();
        let stage_duration = hookline_runtime::stage_duration_histogram();
        let shed = IntCounterVec::new(
            Opts::new(
                "webhook_shed_total",
                "Webhook requests refused by ingest's abuse limits, by reason.",
            ),
            &["provider", "reason"],
        )
        .unwrap();
        let inflight = IntGauge::new(
            "webhook_inflight_requests",
            "Webhook requests being handled now (reading body, verifying, publishing).",
        )
        .unwrap();
        let stream_messages = IntGauge::new(
            "webhook_stream_messages",
            "Events in the log (accepted, stored or not, within its retention), as last checked.",
        )
        .unwrap();
        let stream_bytes = IntGauge::new(
            "webhook_stream_bytes",
            "Bytes held by the stream, as last checked.",
        )
        .unwrap();
        let stream_fullness = prometheus::Gauge::new(
            "webhook_stream_fullness_ratio",
            "Stream bytes divided by its byte limit (0 without a limit); at 1 ingest answers 503.",
        )
        .unwrap();
        let stream_unprocessed = IntGauge::new(
            "webhook_stream_unprocessed_messages",
            "Events in the log no worker has stored yet (the workers' consumer's pending and \
             ack-pending counts; every event in the log while the consumer does not exist).",
        )
        .unwrap();
        let stream_max_age = IntGauge::new(
            "webhook_stream_max_age_seconds",
            "The log's retention: an event older than this is dropped, stored or not.",
        )
        .unwrap();
        hookline_runtime::register_all(
            &registry,
            vec![
                Box::new(stream_messages.clone()),
                Box::new(stream_unprocessed.clone()),
                Box::new(stream_max_age.clone()),
                Box::new(stream_bytes.clone()),
                Box::new(stream_fullness.clone()),
                Box::new(received.clone()),
                Box::new(queued.clone()),
                Box::new(response_duration.clone()),
                Box::new(signature_failures.clone()),
                Box::new(publish_failures.clone()),
                Box::new(stage_duration.clone()),
                Box::new(shed.clone()),
                Box::new(inflight.clone()),
            ],
        );
        for p in providers {
            received.with_label_values(&[p]);
            for r in SignatureError::REASONS {
                signature_failures.with_label_values(&[p, r]);
            }
            for f in PublishFailure::ALL {
                publish_failures.with_label_values(&[p, f.reason()]);
            }
            for r in SHED_REASONS {
                shed.with_label_values(&[p, r]);
            }
        }
        for stage in ["verify", "publish"] {
            stage_duration.with_label_values(&[stage]);
        }
        Self {
            verify_duration: stage_duration.with_label_values(&["verify"]),
            publish_duration: stage_duration.with_label_values(&["publish"]),
            registry,
            received,
            queued,
            response_duration,
            signature_failures,
            publish_failures,
            shed,
            inflight,
            stream_messages,
            stream_bytes,
            stream_fullness,
            stream_unprocessed,
            stream_max_age,
        }
    }

    /// Records what a stream lookup said of the stream's size, and what the workers' consumer
    /// said of what is left to store (`None`: no consumer yet, so nothing is stored).
    pub fn observe_stream(
        &self,
        info: &async_nats::jetstream::stream::Info,
        unprocessed: Option<u64>,
    ) {
        let unprocessed = unprocessed.unwrap_or(info.state.messages);
        self.stream_unprocessed
            .set(i64::try_from(unprocessed).unwrap_or(i64::MAX));
        self.stream_max_age
            .set(i64::try_from(info.config.max_age.as_secs()).unwrap_or(i64::MAX));
        let bytes = info.state.bytes;
        self.stream_messages
            .set(i64::try_from(info.state.messages).unwrap_or(i64::MAX));
        self.stream_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        let limit = info.config.max_bytes;
        self.stream_fullness.set(if limit > 0 {
            bytes as f64 / limit as f64
        } else {
            0.0
        });
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        hookline_runtime::metrics_text(&self.registry)
    }
}
