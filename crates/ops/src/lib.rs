//! hookline's operator tools, as a library the CLI calls: dead letters (`dlq`: list, replay,
//! purge), log replay (`log_replay`: the JetStream log re-delivered after a database lost rows), archive replay (`replay`: stored events re-published for today's decoders), and
//! reconciliation (`reconcile`: stuck recipients looked up in the providers' APIs). They work on
//! the same stream and database as the workers, through `hookline-jetstream` and `hookline-store`.
#![forbid(unsafe_code)]

pub mod dlq;
pub mod log_replay;
pub mod outbound;
pub mod reconcile;
pub mod replay;

/// Serves `registry` on `GET /metrics` at `addr` in the background (the long-running tools:
/// `reconcile --every-secs`, `deliver`).
pub async fn serve_metrics(
    addr: std::net::SocketAddr,
    registry: prometheus::Registry,
    what: &str,
) -> anyhow::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let registry = registry.clone();
            async move { hookline_runtime::metrics_text(&registry) }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "Serving {what} metrics.");
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(())
}
