//! The worker's own small HTTP surface: `GET /metrics` (Prometheus), `GET /healthz` (alive) and
//! `GET /readyz` (JSON: NATS connection, breaker, the consumer's pending and ack-pending counts,
//! the last committed batch, the processing lag). Both answer from a snapshot a background task
//! refreshes every second (`watch_backlog`), so a flood of probes or scrapes costs JetStream
//! nothing; the breaker's state comes from the committer itself.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use crate::metrics::WorkerMetrics;

pub struct HealthState {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub stream: String,
    pub consumer: String,
    pub metrics: Arc<WorkerMetrics>,
    pub committer: Arc<crate::commit::Committer>,
    /// The last backlog read, if the last attempt succeeded.
    pub backlog: std::sync::Mutex<Option<Backlog>>,
}

pub fn router(state: Arc<HealthState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({ "status": "alive" })) }),
        )
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// What JetStream says about the backlog.
#[derive(Debug, Clone, Copy)]
pub struct Backlog {
    pending: u64,
    ack_pending: u64,
    lag_seconds: f64,
}

impl HealthState {
    /// Reads the consumer's counts and the oldest unprocessed event's age, and updates the gauges.
    async fn refresh(&self) -> Option<Backlog> {
        let work = async {
            let stream = self.js.get_stream_no_info(&self.stream).await.ok()?;
            let info = stream.consumer_info(&self.consumer).await.ok()?;
            // The log keeps what was stored too: the oldest unprocessed event is the first one
            // past the consumer's ack floor.
            let unprocessed = info.num_pending + info.num_ack_pending as u64;
            let lag_seconds = if unprocessed == 0 {
                0.0
            } else {
                let oldest = stream
                    .raw_message_builder()
                    .sequence(info.ack_floor.stream_sequence + 1)
                    .next_by_subject(hookline_jetstream::SUBJECTS.to_owned())
                    .send()
                    .await
                    .ok()?;
                let then_ns = oldest.time.unix_timestamp_nanos();
                let now_ns = i128::from(chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0));
                ((now_ns - then_ns).max(0) as f64) / 1e9
            };
            Some(Backlog {
                pending: info.num_pending,
                ack_pending: info.num_ack_pending as u64,
                lag_seconds,
            })
        };
        let backlog = tokio::time::timeout(Duration::from_secs(2), work)
            .await
            .ok()??;
        self.metrics.queue_depth.set(backlog.pending as i64);
        self.metrics.ack_pending.set(backlog.ack_pending as i64);
        self.metrics.processing_lag.set(backlog.lag_seconds);
        Some(backlog)
    }
}

/// Refreshes the backlog snapshot every `every`. Runs until aborted.
pub async fn watch_backlog(state: Arc<HealthState>, every: Duration) {
    loop {
        let connected = state.client.connection_state() == async_nats::connection::State::Connected;
        let backlog = if connected {
            state.refresh().await
        } else {
            None
        };
        *state.backlog.lock().unwrap_or_else(|p| p.into_inner()) = backlog;
        tokio::time::sleep(every).await;
    }
}

async fn metrics(State(state): State<Arc<HealthState>>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
}

/// Ready when connected to NATS with the breaker closed.
async fn readyz(State(state): State<Arc<HealthState>>) -> impl IntoResponse {
    let connected = state.client.connection_state() == async_nats::connection::State::Connected;
    let backlog = if connected {
        *state.backlog.lock().unwrap_or_else(|p| p.into_inner())
    } else {
        None
    };
    let breaker_open = state.committer.breaker_open();
    let last_batch = state.metrics.last_batch.get();
    let ready = connected && backlog.is_some() && !breaker_open;
    let body = serde_json::json!({
        "ready": ready,
        "nats_connected": connected,
        "breaker": if breaker_open { "open" } else { "closed" },
        "pending": backlog.as_ref().map(|b| b.pending),
        "ack_pending": backlog.as_ref().map(|b| b.ack_pending),
        "processing_lag_seconds": backlog.as_ref().map(|b| b.lag_seconds),
        "last_batch_at": (last_batch > 0.0).then(|| {
            chrono::DateTime::from_timestamp_millis((last_batch * 1000.0) as i64)
                .map(|t| t.to_rfc3339())
        }).flatten(),
        "stored_events": state.metrics.stored.get(),
    });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}
