//! The worker's metrics, in one place, in its own registry (several workers can share a process in
//! tests). Label values are bounded: provider names, dead-letter reasons, stage names. Known
//! combinations start at zero so dashboards and alerts always have a series.

use prometheus::{
    exponential_buckets, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry,
};

pub struct WorkerMetrics {
    registry: Registry,
    /// Events acknowledged after their batch committed, by provider.
    pub processed: IntCounterVec,
    /// Events stored for the first time.
    pub stored: IntCounter,
    /// Events already stored (redeliveries, retries past the dedup window): absorbed.
    pub duplicates: IntCounter,
    /// Events stored that carry no delivery information (inbound messages, contact updates).
    pub skipped: IntCounter,
    /// Events stored with a type or status hookline does not map yet, by provider.
    pub unmapped: IntCounterVec,
    /// Replayed events whose stored fields changed when decoded again (`hookline replay`).
    pub rederived: IntCounter,
    pub dead_lettered: IntCounterVec,
    /// Events re-published with a fresh delivery budget at their last attempt (an outage).
    pub requeued: IntCounter,
    /// What the dead-letter stream holds, read by the periodic sweep.
    pub dlq_messages: IntGauge,
    pub dlq_bytes: IntGauge,
    pub db_retries: IntCounter,
    /// Writes the database rejected for their data, split to isolate the event at fault.
    pub bisections: IntCounter,
    pub breaker_open: IntGauge,
    pub breaker_opened: IntCounter,
    pub batch_size: Histogram,
    pub stage_duration: HistogramVec,
    /// From ingest's receipt of the event to its commit here.
    pub end_to_end: Histogram,
    pub queue_depth: IntGauge,
    pub ack_pending: IntGauge,
    pub processing_lag: Gauge,
    pub last_batch: Gauge,
    /// The data lifecycle (`hookline_store::lifecycle`) as this worker last ran it.
    pub oldest_event_day: IntGauge,
    pub event_rows_dropped: IntCounter,
    pub early_waiting: IntGauge,
    /// The change feed (`feed.rs`): what this worker's relay published, and the outbox.
    pub changes_published: IntCounterVec,
    pub feed_lag: Histogram,
    pub feed_relay_failures: IntCounter,
    pub outbox_rows: IntGauge,
    pub outbox_oldest: Gauge,
    pub batch_time_to_final: Histogram,
    /// Failure outcomes decoded, by provider and class (`unknown`: a code the provider's table
    /// does not list); redeliveries included, like `unmapped`.
    pub failure_classes: IntCounterVec,
    /// The suppression list (`suppression.rs`), cluster-wide: addresses by reason, and the
    /// additions and removals the log holds.
    pub suppressed: IntGaugeVec,
    pub suppressions_added: IntCounterVec,
    pub suppressions_removed: IntCounterVec,
}

impl WorkerMetrics {
    pub fn new(providers: &[&'static str]) -> Self {
        let registry = Registry::new();
        let processed = IntCounterVec::new(
            Opts::new(
                "webhook_processed_total",
                "Events stored in PostgreSQL and acknowledged, by provider.",
            ),
            &["provider"],
        )
        .unwrap();
        let dead_lettered = IntCounterVec::new(
            Opts::new(
                "webhook_dead_lettered_total",
                "Events moved to the dead-letter stream, by reason.",
            ),
            &["reason"],
        )
        .unwrap();
        let unmapped = IntCounterVec::new(
            Opts::new(
                "webhook_unmapped_total",
                "Events stored with a type or status hookline does not map yet, by provider.",
            ),
            &["provider"],
        )
        .unwrap();
        let changes_published = IntCounterVec::new(
            Opts::new(
                "webhook_changes_published_total",
                "Changes relayed from the outbox to the change feed, by kind (status, opened, \
                 clicked, batch_completed).",
            ),
            &["kind"],
        )
        .unwrap();
        let failure_classes = IntCounterVec::new(
            Opts::new(
                "webhook_failure_classes_total",
                "Failed, bounced, complained or suppressed events decoded, by provider and \
                 failure class (unknown: a code the provider's table does not list).",
            ),
            &["provider", "class"],
        )
        .unwrap();
        let by_reason = |name: &str, help: &str| {
            IntCounterVec::new(Opts::new(name, help), &["reason"]).unwrap()
        };
        let suppressed = IntGaugeVec::new(
            Opts::new(
                "webhook_suppressed_addresses",
                "Addresses on the suppression list, by reason (cluster-wide).",
            ),
            &["reason"],
        )
        .unwrap();
        let stage_duration = hookline_runtime::stage_duration_histogram();
        let counter = |name: &str, help: &str| IntCounter::new(name, help).unwrap();
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).unwrap();
        let m = Self {
            processed,
            stored: counter(
                "webhook_stored_events_total",
                "Events stored for the first time.",
            ),
            duplicates: counter(
                "webhook_duplicates_total",
                "Events already stored, absorbed without effect.",
            ),
            rederived: counter(
                "webhook_rederived_events_total",
                "Replayed events already stored whose fields changed when decoded again.",
            ),
            skipped: counter(
                "webhook_skipped_total",
                "Events carrying no delivery information, stored without changing any recipient.",
            ),
            unmapped,
            dead_lettered,
            requeued: counter(
                "webhook_requeued_total",
                "Events at their last delivery attempt re-published with a fresh budget because \
                 the database was out at shutdown.",
            ),
            dlq_messages: gauge(
                "webhook_dlq_messages",
                "Dead letters waiting in the dead-letter stream for replay or purge.",
            ),
            dlq_bytes: gauge("webhook_dlq_bytes", "Bytes held by the dead-letter stream."),
            oldest_event_day: gauge(
                "webhook_event_log_oldest_day_timestamp_seconds",
                "Start (Unix time) of the oldest day the event log keeps, as of the last maintenance run.",
            ),
            event_rows_dropped: counter(
                "webhook_event_rows_dropped_total",
                "Stored events dropped with their day's partition, past event retention.",
            ),
            early_waiting: gauge(
                "webhook_early_messages_waiting",
                "Messages whose events came before their recipient was registered, still waiting.",
            ),
            bisections: counter(
                "webhook_db_bisections_total",
                "Batches the database rejected for their data, split in two to isolate the event.",
            ),
            db_retries: counter(
                "webhook_db_retries_total",
                "Database writes retried after a transient failure.",
            ),
            breaker_open: gauge(
                "webhook_breaker_open",
                "1 while the database circuit breaker is open.",
            ),
            breaker_opened: counter(
                "webhook_breaker_opened_total",
                "Times the database circuit breaker opened.",
            ),
            batch_size: Histogram::with_opts(
                HistogramOpts::new("webhook_batch_size", "Events per database transaction.")
                    .buckets(vec![
                        1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0,
                    ]),
            )
            .unwrap(),
            stage_duration,
            end_to_end: Histogram::with_opts(
                HistogramOpts::new(
                    "webhook_end_to_end_seconds",
                    "From ingest's receipt of an event to its commit in PostgreSQL.",
                )
                .buckets(exponential_buckets(0.005, 2.0, 14).unwrap()),
            )
            .unwrap(),
            queue_depth: gauge(
                "webhook_queue_depth",
                "Events in the stream not yet delivered to a worker.",
            ),
            ack_pending: gauge(
                "webhook_ack_pending",
                "Events delivered to workers and not yet acknowledged.",
            ),
            processing_lag: Gauge::new(
                "webhook_processing_lag_seconds",
                "Age of the oldest event not yet processed (0 when none).",
            )
            .unwrap(),
            last_batch: Gauge::new(
                "webhook_last_batch_timestamp_seconds",
                "Unix time of this worker's last committed batch.",
            )
            .unwrap(),
            changes_published,
            feed_lag: Histogram::with_opts(
                HistogramOpts::new(
                    "webhook_change_feed_lag_seconds",
                    "From the transaction that made a change to its PubAck on the change feed.",
                )
                .buckets(exponential_buckets(0.005, 2.0, 14).unwrap()),
            )
            .unwrap(),
            feed_relay_failures: counter(
                "webhook_change_relay_failures_total",
                "Relay rounds that failed (NATS, the feed stream or the database); retried.",
            ),
            outbox_rows: gauge(
                "webhook_change_outbox_rows",
                "Changes in the outbox not yet on the change feed (cluster-wide).",
            ),
            outbox_oldest: Gauge::new(
                "webhook_change_outbox_oldest_seconds",
                "Age of the oldest change not yet on the change feed, 0 when none (cluster-wide).",
            )
            .unwrap(),
            batch_time_to_final: Histogram::with_opts(
                HistogramOpts::new(
                    "webhook_batch_time_to_final_seconds",
                    "Per completed batch: from its first send to its last final status, as the \
                     providers date them.",
                )
                .buckets(exponential_buckets(1.0, 2.0, 18).unwrap()),
            )
            .unwrap(),
            failure_classes,
            suppressed,
            suppressions_added: by_reason(
                "webhook_suppressions_added_total",
                "Addresses put on the suppression list, by reason (cluster-wide, from its log).",
            ),
            suppressions_removed: by_reason(
                "webhook_suppressions_removed_total",
                "Addresses removed from the suppression list, by the reason they were on it \
                 (cluster-wide, from its log).",
            ),
            registry,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.processed.clone()),
            Box::new(m.stored.clone()),
            Box::new(m.duplicates.clone()),
            Box::new(m.skipped.clone()),
            Box::new(m.unmapped.clone()),
            Box::new(m.rederived.clone()),
            Box::new(m.dead_lettered.clone()),
            Box::new(m.requeued.clone()),
            Box::new(m.dlq_messages.clone()),
            Box::new(m.oldest_event_day.clone()),
            Box::new(m.event_rows_dropped.clone()),
            Box::new(m.early_waiting.clone()),
            Box::new(m.dlq_bytes.clone()),
            Box::new(m.db_retries.clone()),
            Box::new(m.bisections.clone()),
            Box::new(m.breaker_open.clone()),
            Box::new(m.breaker_opened.clone()),
            Box::new(m.batch_size.clone()),
            Box::new(m.stage_duration.clone()),
            Box::new(m.end_to_end.clone()),
            Box::new(m.queue_depth.clone()),
            Box::new(m.ack_pending.clone()),
            Box::new(m.processing_lag.clone()),
            Box::new(m.last_batch.clone()),
            Box::new(m.changes_published.clone()),
            Box::new(m.feed_lag.clone()),
            Box::new(m.feed_relay_failures.clone()),
            Box::new(m.outbox_rows.clone()),
            Box::new(m.outbox_oldest.clone()),
            Box::new(m.batch_time_to_final.clone()),
            Box::new(m.failure_classes.clone()),
            Box::new(m.suppressed.clone()),
            Box::new(m.suppressions_added.clone()),
            Box::new(m.suppressions_removed.clone()),
        ];
        hookline_runtime::register_all(&m.registry, collectors);
        for p in providers {
            m.processed.with_label_values(&[p]);
            m.unmapped.with_label_values(&[p]);
            for c in hookline_core::FailureClass::ALL {
                m.failure_classes.with_label_values(&[p, c.as_str()]);
            }
        }
        for r in crate::suppression::REASONS {
            m.suppressed.with_label_values(&[r]);
            m.suppressions_added.with_label_values(&[r]);
            m.suppressions_removed.with_label_values(&[r]);
        }
        for r in crate::dead_letter::Reason::all() {
            m.dead_lettered.with_label_values(&[r.label()]);
        }
        for k in ["status", "opened", "clicked", "batch_completed"] {
            m.changes_published.with_label_values(&[k]);
        }
        for s in ["fetch", "decode", "db_write", "ack"] {
            m.stage_duration.with_label_values(&[s]);
        }
        m
    }

    pub fn processed_total(&self) -> u64 {
        sum(&self.processed)
    }

    pub fn dead_lettered_total(&self) -> u64 {
        sum(&self.dead_lettered)
    }

    pub fn render(&self) -> String {
        hookline_runtime::metrics_text(&self.registry)
    }
}

/// The sum over every label combination of a counter vector.
fn sum(vec: &IntCounterVec) -> u64 {
    use prometheus::core::Collector as _;
    vec.collect()
        .iter()
        .flat_map(|f| {
            f.get_metric()
                .iter()
                .map(|m| m.get_counter().get_value() as u64)
        })
        .sum()
}
