//! hookline ingest: stateless. Verifies each provider webhook's signature and stores the raw event
//! in JetStream, answering 2xx only once JetStream has acknowledged it. No database work happens
//! in the request path; the workers do that.
#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod publish;
pub mod routes;
pub mod serve;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tracing::{info, warn};

pub use config::IngestConfig;

/// Longest wait at exit for the NATS client's buffer to drain.
const FLUSH_AT_EXIT: Duration = Duration::from_millis(500);

/// Serves on `listener` until `shutdown` completes; in-flight requests finish (their publishes
/// get their PubAcks) before it returns.
pub async fn run(
    config: IngestConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let providers = config.providers().map_err(anyhow::Error::msg)?;
    if providers.names().is_empty() {
        warn!("No provider is configured: set TELNYX_PUBLIC_KEY and/or RESEND_WEBHOOK_SECRET.");
    }
    let client = async_nats::ConnectOptions::new()
        .name("hookline-ingest")
        .retry_on_initial_connect()
        .connect(hookline_jetstream::server_addrs(&config.nats_url).map_err(anyhow::Error::msg)?)
        .await
        .with_context(|| format!("cannot connect to NATS at {}", config.nats_url))?;
    let publisher = publish::Publisher::new(
        client.clone(),
        config.publish_timeout(),
        config.max_ack_inflight,
    );
    // The signal may come while NATS is still unreachable at start-up: waiting is cut short.
    let shutdown = hookline_runtime::Shutdown::new(shutdown);
    let mut waited = 0u32;
    let wait_for_stream = async {
        loop {
            match hookline_jetstream::ensure_stream(publisher.context(), &config.stream).await {
                Ok(info) => {
                    info!(stream = %info.config.name, messages = info.state.messages, "Stream ready.");
                    break;
                }
                Err(e) => {
                    waited += 1;
                    warn!(error = %e, attempt = waited, "Waiting for NATS JetStream.");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    };
    tokio::select! {
        () = wait_for_stream => {}
        () = shutdown.clone().signalled() => {
            warn!("Shut down before NATS JetStream was reachable; nothing was accepted.");
            return Ok(());
        }
    }
    let rate_limits = config.rate_limits(&providers).map_err(anyhow::Error::msg)?;
    let metrics = metrics::IngestMetrics::new(&providers.names());
    let state = Arc::new(routes::AppState {
        metrics,
        providers,
        publisher,
        stream: config.stream.stream.clone(),
        max_body_bytes: config.max_body_bytes,
        body_timeout: config.body_timeout(),
        inflight: tokio::sync::Semaphore::new(config.max_inflight_requests),
        rate_limits: limits::RateLimits::new(&rate_limits),
        retry_after_secs: config.retry_after_secs,
    });
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
        routes::router(state),
        limits,
        shutdown.signalled(),
    )
    .await;
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
