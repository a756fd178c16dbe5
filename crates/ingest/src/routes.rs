//! The HTTP surface: `POST /webhooks/{provider}`, `GET /healthz`, `GET /readyz`, `GET /metrics`.
//!
//! A webhook's path through ingest, in order: known provider (404) → provider rate limit (429)
//! → a slot under the in-flight cap (503) → body within the size limit (413) and the body
//! timeout (408) → signature and timestamp (401) → envelope (event id, type) → publish and await
//! the PubAck (503 on failure) → 200. Nothing here touches a database.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use hookline_core::{subject, Headers, Provider, Providers};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use tracing::{debug, error, warn, Instrument as _};

use crate::error::IngestError;
use crate::metrics::IngestMetrics;
use crate::publish::Publisher;

pub struct AppState {
    pub metrics: IngestMetrics,
    pub providers: Providers,
    pub publisher: Publisher,
    pub stream: String,
    pub max_body_bytes: usize,
    pub body_timeout: Duration,
    /// One permit per webhook request being handled; none left means 503.
    pub inflight: tokio::sync::Semaphore,
    pub rate_limits: crate::limits::RateLimits,
    pub retry_after_secs: u64,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/webhooks/{provider}", post(receive))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Reads the body under the size limit and the body timeout; a chunked body is cut off one
/// frame past the limit.
async fn read_body(state: &AppState, body: Body) -> Result<Bytes, IngestError> {
    let too_large = IngestError::TooLarge {
        limit: state.max_body_bytes,
    };
    let limited = Limited::new(body, state.max_body_bytes);
    match tokio::time::timeout(state.body_timeout, limited.collect()).await {
        Err(_) => Err(IngestError::BodyTimeout {
            timeout_ms: state.body_timeout.as_millis() as u64,
        }),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large),
        Ok(Err(_)) => Err(IngestError::BadBody),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// HTTP headers seen through core's [`Headers`] trait.
struct HttpHeaders<'a>(&'a HeaderMap);

impl Headers for HttpHeaders<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.to_str().ok())
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Records the request's metrics around [`handle`], inside a span carrying its request id.
async fn receive(
    State(state): State<Arc<AppState>>,
    Path(provider_name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> axum::response::Response {
    let started = Instant::now();
    let provider = state.providers.get(&provider_name);
    let provider_label = provider.map_or("unknown", |p| p.name());
    let request_id = request_id(&headers);
    let span = tracing::info_span!("webhook", %request_id, provider = provider_label);
    let response = handle(&state, provider, &request_id, &headers, body, started)
        .instrument(span)
        .await
        .into_response();
    let m = &state.metrics;
    m.received.with_label_values(&[provider_label]).inc();
    m.response_duration
        .with_label_values(&[provider_label, response.status().as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// The caller's `x-request-id` if it is short and printable, else a fresh one.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            use std::sync::atomic::{AtomicU64, Ordering};
            static NEXT: AtomicU64 = AtomicU64::new(0);
            format!(
                "{:x}-{:x}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            )
        })
}

async fn handle(
    state: &AppState,
    provider: Option<&dyn Provider>,
    request_id: &str,
    headers: &HeaderMap,
    body: Body,
    started: Instant,
) -> Result<impl IntoResponse, IngestError> {
    let duration_ms = || started.elapsed().as_millis() as u64;
    let provider = provider.ok_or_else(|| {
        warn!(%request_id, provider = "unknown", stage = "route", failed_at_stage = "route", duration_ms = duration_ms(), "Unknown or unconfigured provider.");
        IngestError::UnknownProvider
    })?;
    let provider_label = provider.name();
    let shed = |reason: &'static str| {
        state
            .metrics
            .shed
            .with_label_values(&[provider_label, reason])
            .inc();
        warn!(%request_id, provider = provider_label, stage = "admit", failed_at_stage = "admit", reason, duration_ms = duration_ms(), "Request shed.");
    };
    if !state.rate_limits.allow(provider_label) {
        shed("rate_limited");
        return Err(IngestError::RateLimited {
            retry_after_secs: 1,
        });
    }
    // A declared oversize costs nothing to refuse, so it is refused before taking a slot.
    if declared_length(headers).is_some_and(|n| n > state.max_body_bytes as u64) {
        warn!(%request_id, provider = provider_label, stage = "read_body", failed_at_stage = "read_body", duration_ms = duration_ms(), "Declared body too large.");
        return Err(IngestError::TooLarge {
            limit: state.max_body_bytes,
        });
    }
    // Bounded work and memory: past the cap, answer 503 now rather than queue without limit.
    let Ok(_slot) = state.inflight.try_acquire() else {
        shed("overloaded");
        return Err(IngestError::Overloaded {
            retry_after_secs: state.retry_after_secs,
        });
    };
    state.metrics.inflight.inc();
    let _inflight = DecOnDrop(&state.metrics.inflight);
    let body = read_body(state, body).await.map_err(|e| {
        if let IngestError::BodyTimeout { .. } = e {
            state.metrics.shed.with_label_values(&[provider_label, "body_timeout"]).inc();
        }
        warn!(%request_id, provider = provider_label, stage = "read_body", failed_at_stage = "read_body", error = %e, duration_ms = duration_ms(), "Request body refused.");
        e
    })?;

    let http_headers = HttpHeaders(headers);
    let verify_started = Instant::now();
    let verified = provider.verify(&http_headers, &body, unix_now());
    state
        .metrics
        .verify_duration
        .observe(verify_started.elapsed().as_secs_f64());
    if let Err(e) = verified {
        state
            .metrics
            .signature_failures
            .with_label_values(&[provider_label, e.reason()])
            .inc();
        warn!(%request_id, provider = provider_label, stage = "verify", failed_at_stage = "verify", reason = e.reason(), duration_ms = duration_ms(), "Signature rejected.");
        return Err(e.into());
    }

    // A correctly signed body that is not the documented shape is still stored: the worker
    // dead-letters it, where an operator can see it. It is never refused for its content.
    let envelope = provider.envelope(&http_headers, &body);
    let event_type = envelope
        .event_type
        .as_deref()
        .unwrap_or(subject::UNPARSED_EVENT_TYPE);
    let subject = subject::subject(provider_label, event_type);
    let message_id = subject::message_id(provider_label, envelope.event_id.as_deref(), &body);

    let mut forward = async_nats::HeaderMap::new();
    for name in provider.forwarded_headers() {
        if let Some(v) = http_headers.get(name) {
            forward.insert(*name, v);
        }
    }
    let received_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    forward.insert(
        subject::RECEIVED_AT_HEADER,
        received_ms.to_string().as_str(),
    );

    forward.insert("Hookline-Request-Id", request_id);
    let publish_started = Instant::now();
    let published = state
        .publisher
        .publish(subject, &message_id, forward, body)
        .await;
    state
        .metrics
        .publish_duration
        .observe(publish_started.elapsed().as_secs_f64());
    match published {
        Ok(stored) => {
            state
                .metrics
                .queued
                .with_label_values(&[
                    provider_label,
                    provider.event_type_label(event_type),
                    if stored.duplicate { "true" } else { "false" },
                ])
                .inc();
            debug!(%request_id, provider = provider_label, stage = "publish", event_id = %message_id, duplicate = stored.duplicate, duration_ms = duration_ms(), "Event stored.");
            // Two possible answers, written once.
            let body = if stored.duplicate {
                r#"{"status":"accepted","duplicate":true}"#
            } else {
                r#"{"status":"accepted","duplicate":false}"#
            };
            Ok(([(header::CONTENT_TYPE, "application/json")], body))
        }
        Err(failure) => {
            state
                .metrics
                .publish_failures
                .with_label_values(&[provider_label, failure.reason()])
                .inc();
            error!(%request_id, provider = provider_label, stage = "publish", failed_at_stage = "publish", reason = failure.reason(), event_id = %message_id, duration_ms = duration_ms(), "Event not stored; answering 503.");
            Err(IngestError::Unavailable {
                reason: failure.reason(),
                retry_after_secs: state.retry_after_secs,
            })
        }
    }
}

/// Decrements the in-flight gauge however the request ends (including a client hanging up).
struct DecOnDrop<'a>(&'a prometheus::IntGauge);

impl Drop for DecOnDrop<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
}

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "alive" }))
}

/// Ready when NATS is connected and the stream answers.
async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let connected = state.publisher.is_connected();
    let stream_ok = connected
        && tokio::time::timeout(
            Duration::from_secs(2),
            state.publisher.context().get_stream(&state.stream),
        )
        .await
        .map(|r| r.is_ok())
        .unwrap_or(false);
    let code = if stream_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(serde_json::json!({
            "ready": stream_ok,
            "nats_connected": connected,
            "stream": state.stream,
            "stream_reachable": stream_ok,
            "providers": state.providers.names(),
        })),
    )
}
