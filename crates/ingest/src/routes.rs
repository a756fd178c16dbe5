//! The HTTP surface: `POST /webhooks/{provider}`, `GET /healthz`, `GET /readyz`, `GET /metrics`.
//!
//! A webhook's path through ingest, in order (`accept`): known provider (404) → `admit`: a
//! declared size within the limit (413), the source allowlist (403), the signature headers' cheap
//! precheck (401), a slot under the in-flight caps (503) → the body within the size limit (413)
//! and the body timeout (408) → signature and timestamp (401) → the provider's rate limit, on
//! verified requests only (429) → envelope (event id, type) → publish and await the PubAck (503
//! on failure) → 200. Nothing here touches a database.
//!
//! Just over 500 lines on purpose: the path reads top-down in one file, stage after stage.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use hookline_core::{Headers, Provider, Providers};
use hookline_jetstream::{Outgoing, PublishFailure, Publisher, Stored};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use tracing::{debug, error, info, warn, Instrument as _};

use crate::error::IngestError;
use crate::metrics::IngestMetrics;

pub struct AppState {
    pub metrics: IngestMetrics,
    pub providers: Providers,
    pub publisher: Publisher,
    pub stream: String,
    /// The workers' consumer, whose counts say what is left to store.
    pub consumer: String,
    pub max_body_bytes: usize,
    pub body_timeout: Duration,
    /// Every webhook is answered within this (503 past it).
    pub answer_deadline: Duration,
    /// Request slots and body memory, trusted sources first (see `admission`).
    pub admission: crate::admission::Admission,
    pub allowlist: crate::network::Allowlist,
    pub trusted_proxies: Vec<crate::network::Cidr>,
    pub rate_limits: crate::limits::RateLimits,
    pub retry_after_secs: u64,
    /// Whether the stream answered the last background check (see [`watch_readiness`]).
    pub stream_reachable: std::sync::atomic::AtomicBool,
    /// Refusal log lines, at most one a second per provider and reason.
    pub refusal_log: crate::log_throttle::LogThrottle,
    /// Where providers call ingest, without a trailing `/` (`HOOKLINE_PUBLIC_URL`): the start of
    /// the URL a provider signs (see [`called_url`]).
    pub public_url: Option<String>,
    /// Documents verification needs from the network, and confirmations (see `fetch`).
    pub fetcher: crate::fetch::Fetcher,
    /// The one-time tokens claimed so far, shared by every replica (see [`claim`]); present
    /// when a configured provider uses them.
    pub tokens: Option<async_nats::jetstream::kv::Store>,
}

/// The public port: webhooks, plus health and metrics when `serve_health` (no admin port set).
pub fn router(state: Arc<AppState>, serve_health: bool) -> Router {
    let public = Router::new().route("/webhooks/{provider}", post(receive));
    let public = if serve_health {
        public.merge(admin_router())
    } else {
        public
    };
    public.with_state(state)
}

/// `/healthz`, `/readyz` and `/metrics`: on the admin port when one is set.
pub fn admin(state: Arc<AppState>) -> Router {
    admin_router().with_state(state)
}

fn admin_router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// Refreshes [`AppState::stream_reachable`] every `every`, so `/readyz` answers from memory and
/// a flood of probes costs the broker nothing. Runs until the task is dropped.
pub async fn watch_readiness(state: Arc<AppState>, every: Duration) {
    use std::sync::atomic::Ordering;
    loop {
        let stream = if state.publisher.is_connected() {
            tokio::time::timeout(
                Duration::from_secs(2),
                state.publisher.context().get_stream(&state.stream),
            )
            .await
            .ok()
            .and_then(Result::ok)
        } else {
            None
        };
        if let Some(s) = &stream {
            let consumer =
                tokio::time::timeout(Duration::from_secs(2), s.consumer_info(&state.consumer))
                    .await;
            let unprocessed = match consumer {
                Ok(Ok(c)) => Some(c.num_pending + c.num_ack_pending as u64),
                Ok(Err(e))
                    if e.kind()
                        == async_nats::jetstream::context::ConsumerInfoErrorKind::NotFound =>
                {
                    None
                }
                // Unknown this time (a permission missing, a timeout): keep the last figure.
                _ => Some(state.metrics.stream_unprocessed.get().max(0) as u64),
            };
            state.metrics.observe_stream(s.cached_info(), unprocessed);
        }
        let reachable = stream.is_some();
        state.stream_reachable.store(reachable, Ordering::Relaxed);
        tokio::time::sleep(every).await;
    }
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
    peer: Option<axum::Extension<crate::serve::Peer>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Body,
) -> axum::response::Response {
    let started = Instant::now();
    let provider = state.providers.get(&provider_name);
    let provider_label = provider.map_or("unknown", |p| p.name());
    let request_id = request_id(&headers);
    let peer = peer.map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |p| p.0 .0.ip());
    let ip = crate::network::client_ip(peer, &headers, &state.trusted_proxies);
    let span = tracing::info_span!("webhook", %request_id, provider = provider_label);
    let url = called_url(state.public_url.as_deref(), &uri, &headers);
    let request = Request {
        request_id: &request_id,
        ip,
        headers: &headers,
        url: &url,
    };
    let response = handle(&state, provider, &request, body, started)
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

/// The URL the provider called, as it wrote it (what a URL-signing provider signs): the public
/// base URL followed by the path and query as received, so a proxy that strips a path prefix is
/// covered by naming the prefix in the base. Without a base, the `Host` header's, with `https`
/// when `X-Forwarded-Proto` says so.
fn called_url(public_url: Option<&str>, uri: &axum::http::Uri, headers: &HeaderMap) -> String {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    match public_url {
        Some(base) => format!("{base}{path}"),
        None => {
            let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
            let scheme = match text("x-forwarded-proto") {
                Some(p) if p.eq_ignore_ascii_case("https") => "https",
                _ => "http",
            };
            format!("{scheme}://{}{path}", text("host").unwrap_or("localhost"))
        }
    }
}

/// Who sent a webhook request, and its head.
struct Request<'a> {
    request_id: &'a str,
    /// The client's address (see `network::client_ip`).
    ip: std::net::IpAddr,
    headers: &'a HeaderMap,
    /// See [`called_url`].
    url: &'a str,
}

/// The webhook path, stage by stage; its outcome is logged and counted once, in [`record`].
async fn handle(
    state: &AppState,
    provider: Option<&dyn Provider>,
    request: &Request<'_>,
    body: Body,
    started: Instant,
) -> Result<impl IntoResponse, axum::response::Response> {
    let outcome = tokio::time::timeout(
        state.answer_deadline,
        accept(state, provider, request, body),
    )
    .await
    .unwrap_or(Err(Refusal {
        stage: "deadline",
        error: IngestError::Unavailable {
            failure: PublishFailure::Timeout,
            retry_after_secs: state.retry_after_secs,
        },
        msg_id: None,
    }));
    record(state, provider, request, started, &outcome);
    let accepted = outcome.map_err(|r| {
        let before_body = r.before_body();
        let mut response = r.error.into_response();
        if before_body {
            // The body was never read: the connection cannot be reused, and a client that sends
            // bodies nobody reads should pay for a new connection.
            response.headers_mut().insert(
                header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        response
    })?;
    // Two possible answers for one event, written once.
    let duplicate = accepted.events.iter().all(|e| e.stored.duplicate);
    let body = match (accepted.events.len(), duplicate) {
        (1, true) => r#"{"status":"accepted","duplicate":true}"#.into(),
        (1, false) => r#"{"status":"accepted","duplicate":false}"#.into(),
        (n, _) => {
            let new = accepted
                .events
                .iter()
                .filter(|e| !e.stored.duplicate)
                .count();
            format!(
                r#"{{"status":"accepted","events":{n},"duplicates":{}}}"#,
                n - new
            )
        }
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], body))
}

/// A webhook JetStream acknowledged: its events (one, unless the provider sends several per
/// request).
struct Accepted {
    events: Vec<StoredEvent>,
}

struct StoredEvent {
    stored: Stored,
    msg_id: String,
    event_type_label: &'static str,
}

/// A webhook refused, and the stage that refused it.
struct Refusal {
    stage: &'static str,
    error: IngestError,
    /// The dedup id, once known (a publish failure).
    msg_id: Option<String>,
}

impl Refusal {
    /// Refused before the body was read.
    fn before_body(&self) -> bool {
        matches!(self.stage, "route" | "admit")
    }
}

fn at(stage: &'static str) -> impl FnOnce(IngestError) -> Refusal {
    move |error| Refusal {
        stage,
        error,
        msg_id: None,
    }
}

async fn accept(
    state: &AppState,
    provider: Option<&dyn Provider>,
    request: &Request<'_>,
    body: Body,
) -> Result<Accepted, Refusal> {
    let provider = provider
        .ok_or(IngestError::UnknownProvider)
        .map_err(at("route"))?;
    let headers = HttpHeaders(request.headers);
    let admitted = admit(state, provider, request, &headers).map_err(at("admit"))?;
    let body = read_body(state, body).await.map_err(|e| {
        state.admission.failed(request.ip);
        at("read_body")(e)
    })?;
    let refused = |e: IngestError| {
        state.admission.failed(request.ip);
        at("verify")(e)
    };
    // A document the verification needs (a signing certificate), fetched and cached.
    let wanted = provider.fetch_url(&hookline_core::Request {
        headers: &headers,
        body: &body,
        url: request.url,
        fetched: None,
    });
    let fetched = match wanted.map_err(|e| refused(e.into()))? {
        Some(url) => Some(state.fetcher.get(&url).await.map_err(|e| {
            warn!(provider = provider.name(), url, error = %e, "Cannot fetch a document the verification needs.");
            at("fetch")(IngestError::Fetch {
                what: "fetch the signing certificate",
                retry_after_secs: state.retry_after_secs,
            })
        })?),
        None => None,
    };
    let (verified, token, confirm) = {
        let signed = hookline_core::Request {
            headers: &headers,
            body: &body,
            url: request.url,
            fetched: fetched.as_deref(),
        };
        let verified = verify(state, provider, &signed);
        (
            verified,
            provider.replay_token(&signed),
            provider.confirm_url(&signed),
        )
    };
    verified.map_err(refused)?;
    if let Some(url) = confirm {
        // The provider waits for this before it sends anything else: confirm, then store.
        state.fetcher.confirm(&url).await.map_err(|e| {
            warn!(provider = provider.name(), url, error = %e, "Cannot confirm the subscription.");
            at("confirm")(IngestError::Fetch {
                what: "confirm the subscription",
                retry_after_secs: state.retry_after_secs,
            })
        })?;
        info!(provider = provider.name(), "Subscription confirmed.");
    }
    if let Some(token) = token {
        claim(state, provider.name(), token)
            .await
            .map_err(at("token"))?;
    }
    state.admission.verified(request.ip);
    // The provider's own rate limit counts verified webhooks only.
    if !state.rate_limits.allow(provider.name()) {
        return Err(at("rate_limit")(IngestError::RateLimited {
            retry_after_secs: 1,
        }));
    }
    let accepted = publish(state, provider, request.request_id, &headers, body).await;
    drop(admitted);
    accepted
}

/// Before the body is read, cheapest first: the declared size, the provider's allowed source
/// ranges, what the signature headers alone can tell, then a slot and body memory from the
/// source's share (see `admission`).
fn admit<'a>(
    state: &'a AppState,
    provider: &dyn Provider,
    request: &Request<'_>,
    headers: &HttpHeaders<'_>,
) -> Result<(crate::admission::Admitted<'a>, InFlight<'a>), IngestError> {
    let declared = declared_length(request.headers);
    // A declared oversize costs nothing to refuse.
    if declared.is_some_and(|n| n > state.max_body_bytes as u64) {
        return Err(IngestError::TooLarge {
            limit: state.max_body_bytes,
        });
    }
    if !state.allowlist.allows(provider.name(), request.ip) {
        return Err(IngestError::NotAllowed);
    }
    if let Err(e) = provider.precheck(headers, unix_now()) {
        state.admission.failed(request.ip);
        return Err(e.into());
    }
    let body_bytes = declared.map_or(state.max_body_bytes, |n| n as usize);
    let admitted = state.admission.admit(request.ip, body_bytes)?;
    state.metrics.inflight.inc();
    Ok((
        admitted,
        InFlight {
            gauge: &state.metrics.inflight,
        },
    ))
}

fn verify(
    state: &AppState,
    provider: &dyn Provider,
    request: &hookline_core::Request<'_>,
) -> Result<(), IngestError> {
    let started = Instant::now();
    let verified = provider.verify(request, unix_now());
    state
        .metrics
        .verify_duration
        .observe(started.elapsed().as_secs_f64());
    Ok(verified?)
}

/// Claims a one-time token for the event it came with, in the bucket every replica shares: the
/// first claim stores the event's id under the token; a later one passes only with the same
/// event (a retry), and is refused as `replayed` with another. The bucket forgets a token after
/// the provider's timestamp window, when the timestamp check refuses it anyway.
async fn claim(
    state: &AppState,
    provider: &str,
    token: hookline_core::providers::ReplayToken,
) -> Result<(), IngestError> {
    use async_nats::jetstream::kv::CreateErrorKind;
    use sha2::Digest as _;
    let unavailable = || IngestError::Unavailable {
        failure: PublishFailure::NoStream,
        retry_after_secs: state.retry_after_secs,
    };
    let kv = state.tokens.as_ref().ok_or_else(unavailable)?;
    let digest = sha2::Sha256::digest(format!("{provider}:{}", token.token));
    let key: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let vouches = Bytes::from(token.vouches_for.into_bytes());
    match kv.create(&key, vouches.clone()).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == CreateErrorKind::AlreadyExists => match kv.get(&key).await {
            Ok(Some(claimed)) if claimed == vouches => Ok(()),
            Ok(Some(_)) => Err(IngestError::Signature(
                hookline_core::SignatureError::Replayed,
            )),
            // Gone between the two calls (it just expired): the provider's retry decides.
            Ok(None) | Err(_) => Err(unavailable()),
        },
        Err(_) => Err(unavailable()),
    }
}

/// Publishes the verified request's events (one, or each of the several the provider sent in it:
/// [`Provider::split`]) with their routing envelopes, and waits for every PubAck. A correctly
/// signed body that is not the documented shape is still stored: the worker dead-letters it,
/// where an operator can see it. It is never refused for its content. If any event of a request
/// fails to publish, the request is answered 503: the provider's retry carries the same events,
/// and those already stored are absorbed by their dedup ids.
async fn publish(
    state: &AppState,
    provider: &dyn Provider,
    request_id: &str,
    headers: &HttpHeaders<'_>,
    body: Bytes,
) -> Result<Accepted, Refusal> {
    let parts: Vec<(Bytes, Option<String>)> = match provider.split(&body) {
        None => vec![(body, None)],
        Some(parts) => {
            let n = parts.len();
            parts
                .into_iter()
                .enumerate()
                .map(|(i, p)| (Bytes::from(p), Some(format!("{}/{n}", i + 1))))
                .collect()
        }
    };
    let started = Instant::now();
    let published = futures::future::join_all(
        parts
            .into_iter()
            .map(|(body, part)| publish_one(state, provider, request_id, headers, body, part)),
    )
    .await;
    state
        .metrics
        .publish_duration
        .observe(started.elapsed().as_secs_f64());
    let mut events = Vec::with_capacity(published.len());
    for p in published {
        events.push(p?);
    }
    Ok(Accepted { events })
}

async fn publish_one(
    state: &AppState,
    provider: &dyn Provider,
    request_id: &str,
    headers: &HttpHeaders<'_>,
    body: Bytes,
    part: Option<String>,
) -> Result<StoredEvent, Refusal> {
    let envelope = provider.envelope(headers, &body);
    let mut forward = async_nats::HeaderMap::new();
    for name in provider.forwarded_headers() {
        if let Some(v) = headers.get(name) {
            forward.insert(*name, v);
        }
    }
    forward.insert(hookline_jetstream::headers::REQUEST_ID, request_id);
    if let Some(part) = &part {
        forward.insert(hookline_jetstream::headers::PART, part.as_str());
    }
    let event = Outgoing {
        provider: provider.name(),
        event_type: envelope.event_type.as_deref(),
        dedup_key: envelope.event_id.as_deref(),
        headers: forward,
        body,
    };
    let msg_id = event.msg_id();
    let event_type_label =
        provider.event_type_label(envelope.event_type.as_deref().unwrap_or_default());
    match state.publisher.publish(event).await {
        Ok(stored) => Ok(StoredEvent {
            stored,
            msg_id,
            event_type_label,
        }),
        Err(failure) => Err(Refusal {
            stage: "publish",
            error: IngestError::Unavailable {
                failure,
                retry_after_secs: state.retry_after_secs,
            },
            msg_id: Some(msg_id),
        }),
    }
}

/// The one place a webhook's outcome becomes metrics and a stage log line.
fn record(
    state: &AppState,
    provider: Option<&dyn Provider>,
    request: &Request<'_>,
    started: Instant,
    outcome: &Result<Accepted, Refusal>,
) {
    let m = &state.metrics;
    let request_id = request.request_id;
    let provider = provider.map_or("unknown", |p| p.name());
    let duration_ms = started.elapsed().as_millis() as u64;
    let refusal = match outcome {
        Ok(a) => {
            for e in &a.events {
                let duplicate = if e.stored.duplicate { "true" } else { "false" };
                m.queued
                    .with_label_values(&[provider, e.event_type_label, duplicate])
                    .inc();
                debug!(%request_id, provider, stage = "publish", event_id = %e.msg_id, duplicate = e.stored.duplicate, duration_ms, "Event stored.");
            }
            return;
        }
        Err(r) => r,
    };
    let (stage, reason) = (refusal.stage, refusal.error.reason());
    let counter = match &refusal.error {
        IngestError::Signature(_) => Some(&m.signature_failures),
        IngestError::Unavailable { .. } => Some(&m.publish_failures),
        e if e.is_shed() => Some(&m.shed),
        _ => None,
    };
    if let Some(counter) = counter {
        counter.with_label_values(&[provider, reason]).inc();
    }
    // Counted above every time; logged once a second per provider and reason at most.
    let Some(left_out) = state.refusal_log.admit((provider, reason), Instant::now()) else {
        return;
    };
    let message = refusal.error.log_message();
    let event_id = refusal.msg_id.as_deref().unwrap_or_default();
    if let IngestError::Unavailable { .. } = refusal.error {
        error!(%request_id, provider, stage, failed_at_stage = stage, reason, event_id, duration_ms, similar_not_logged = left_out, "{message}");
    } else {
        warn!(%request_id, provider, source = %request.ip, stage, failed_at_stage = stage, reason, error = %refusal.error, duration_ms, similar_not_logged = left_out, "{message}");
    }
}

/// The in-flight gauge's share of a request, given back however the request ends (including a
/// client hanging up).
struct InFlight<'a> {
    gauge: &'a prometheus::IntGauge,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.gauge.dec();
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

/// Ready when NATS is connected and the stream answered the last background check.
async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let connected = state.publisher.is_connected();
    let stream_ok = connected
        && state
            .stream_reachable
            .load(std::sync::atomic::Ordering::Relaxed);
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
