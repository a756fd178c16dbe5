//! The HTTP surface: `POST /webhooks/{provider}`, `GET /healthz`, `GET /readyz`, `GET /metrics`.
//!
//! A webhook's path through ingest, in order: known provider (404) → body within the limit (413)
//! → signature and timestamp (401) → envelope (event id, type) → publish and await the PubAck
//! (503 on failure) → 200. Nothing here touches a database.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use hookline_core::{subject, Headers, Provider, Providers};
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
    pub retry_after_secs: u64,
}

pub fn router(state: Arc<AppState>) -> Router {
    // One byte over the limit is enough to know it is too large.
    let limit = state.max_body_bytes;
    Router::new()
        .route("/webhooks/{provider}", post(receive))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
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
    body: Result<Bytes, BytesRejection>,
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
    body: Result<Bytes, BytesRejection>,
    started: Instant,
) -> Result<impl IntoResponse, IngestError> {
    let duration_ms = || started.elapsed().as_millis() as u64;
    let provider = provider.ok_or_else(|| {
        warn!(%request_id, provider = "unknown", stage = "route", failed_at_stage = "route", duration_ms = duration_ms(), "Unknown or unconfigured provider.");
        IngestError::UnknownProvider
    })?;
    let provider_label = provider.name();
    let body = body.map_err(|e| {
        warn!(%request_id, provider = provider_label, stage = "read_body", failed_at_stage = "read_body", duration_ms = duration_ms(), "Request body refused.");
        match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => IngestError::TooLarge {
                limit: state.max_body_bytes,
            },
            _ => IngestError::BadBody,
        }
    })?;

    let http_headers = HttpHeaders(headers);
    let verify_started = Instant::now();
    let verified = provider.verify(&http_headers, &body, unix_now());
    state
        .metrics
        .stage_duration
        .with_label_values(&["verify"])
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
        .stage_duration
        .with_label_values(&["publish"])
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
            Ok(Json(serde_json::json!({
                "status": "accepted",
                "duplicate": stored.duplicate,
            })))
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
