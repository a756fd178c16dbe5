//! hookline ingest: stateless. Verifies each provider webhook's signature and stores the raw event
//! in JetStream, answering 2xx only once JetStream has acknowledged it. No database work happens
//! in the request path; the workers do that.
#![forbid(unsafe_code)]

pub mod admission;
pub mod config;
pub mod error;
pub mod fetch;
pub mod limits;
pub mod log_throttle;
pub mod metrics;
pub mod network;
pub mod routes;
pub mod serve;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hookline_jetstream::Publisher;
use tokio::net::TcpListener;
use tracing::{info, warn};

pub use config::IngestConfig;

/// How often the stream's reachability is checked for `/readyz`.
const READINESS_EVERY: Duration = Duration::from_secs(1);

/// Longest wait at exit for the NATS client's buffer to drain.
const FLUSH_AT_EXIT: Duration = Duration::from_millis(500);

/// Serves on `listener` until `shutdown` completes; in-flight requests finish (their publishes
/// get their PubAcks) before it returns.
pub async fn run(
    config: IngestConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let providers = config.providers()?;
    if providers.names().is_empty() {
        let vars: Vec<&str> = hookline_core::providers::BUILT_IN
            .iter()
            .flat_map(|b| b.verify_settings())
            .map(|s| s.env)
            .collect();
        // Healthy but routing nothing would answer every provider 404 while looking fine.
        anyhow::bail!(
            "no provider is configured: set one of {} or HOOKLINE_SOURCES_FILE",
            vars.join(", ")
        );
    }
    let client = hookline_jetstream::connect(
        "hookline-ingest",
        &config.nats,
        hookline_jetstream::Reconnect::Always,
    )
    .await?;
    let publisher = Publisher::new(
        client.clone(),
        config.publish_timeout(),
        config.max_ack_inflight,
    );
    // The signal may come while NATS is still unreachable at start-up: waiting is cut short.
    let shutdown = hookline_runtime::Shutdown::new(shutdown);
    let wait_for_stream = hookline_jetstream::connect::wait_until_ready("NATS JetStream", || {
        hookline_jetstream::ensure_stream(
            publisher.context(),
            &config.stream,
            config.streams.ownership,
        )
    });
    tokio::select! {
        info = wait_for_stream => {
            let info = info?;
            info!(stream = %info.config.name, messages = info.state.messages, "Stream ready.");
        }
        () = shutdown.clone().signalled() => {
            warn!("Shut down before NATS JetStream was reachable; nothing was accepted.");
            return Ok(());
        }
    }
    let tokens = match providers.token_window() {
        Some(window) => Some(hookline_jetstream::ensure_tokens(publisher.context(), window).await?),
        None => None,
    };
    let rate_limits = config.rate_limits(&providers)?;
    let allowlist = config.allowlist(&providers)?;
    let metrics = metrics::IngestMetrics::new(&providers.names());
    let state = Arc::new(routes::AppState {
        metrics,
        providers,
        publisher,
        stream: config.stream.stream.clone(),
        consumer: config.consumer.clone(),
        max_body_bytes: config.max_body_bytes,
        body_timeout: config.body_timeout(),
        answer_deadline: Duration::from_millis(config.answer_deadline_ms),
        admission: admission::Admission::new(config.budget()),
        allowlist,
        trusted_proxies: config.trusted_proxies.clone(),
        rate_limits: limits::RateLimits::new(&rate_limits),
        retry_after_secs: config.retry_after_secs,
        // The stream answered just now (the wait above).
        stream_reachable: true.into(),
        refusal_log: log_throttle::LogThrottle::new(Duration::from_secs(1)),
        public_url: config
            .public_url
            .as_deref()
            .map(|u| u.trim_end_matches('/').to_owned()),
        tokens,
        fetcher: config.fetcher()?,
    });
    let readiness = tokio::spawn(routes::watch_readiness(state.clone(), READINESS_EVERY));
    let admin = match config.admin_listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr).await?;
            info!(addr = %listener.local_addr()?, "Admin port (health, readiness, metrics) listening.");
            let app = routes::admin(state.clone());
            let stop = shutdown.clone();
            Some(tokio::spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(stop.signalled())
                    .await;
            }))
        }
        None => None,
    };
    info!(addr = %listener.local_addr()?, providers = ?state.providers.names(), "Ingest listening.");
    let limits = serve::ConnectionLimits {
        max_connections: config.max_connections,
        header_timeout: Duration::from_millis(config.header_timeout_ms),
        max_header_bytes: config.max_header_bytes as usize,
        max_headers: config.max_headers,
        shutdown_deadline: Duration::from_millis(config.shutdown_deadline_ms),
    };
    serve::serve(
        listener,
        routes::router(state, config.admin_listen.is_none()),
        limits,
        shutdown.signalled(),
    )
    .await;
    readiness.abort();
    if let Some(admin) = admin {
        admin.abort();
    }
    // Every request has been answered (a 2xx only after its PubAck, so nothing accepted waits in
    // the client's buffer); never wait for a NATS server that is not there.
    match tokio::time::timeout(FLUSH_AT_EXIT, client.flush()).await {
        Ok(Ok(())) => {}
        _ => warn!(
            nats = %client.connection_state(),
            "NATS unreachable at shutdown; no request was answered 2xx without its PubAck."
        ),
    }
    info!("Ingest stopped.");
    Ok(())
}
