//! Process plumbing shared by hookline's binaries: log output, shutdown signals, the metrics
//! text format and the shared stage histogram, the providers' settings as flags
//! (`provider_args`), and loading the generic sources file (`sources`).
//! Kept out of the libraries so tests can run servers without global side effects.
#![forbid(unsafe_code)]

pub mod provider_args;
pub mod sources;

/// How logs are written: a clap value, so anything else is refused at start naming the flag.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (production).
    Json,
    /// Readable lines (the local run).
    Text,
}

/// Structured logs to stdout in `format`. `RUST_LOG` filters, default `info`.
pub fn init_tracing(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Completes on SIGTERM (Kubernetes, systemd) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// One shutdown signal awaited in several places (waiting for NATS at start-up, then serving):
/// the signal future runs once, in its own task, and every `signalled()` completes after it.
#[derive(Clone)]
pub struct Shutdown(tokio::sync::watch::Receiver<bool>);

impl Shutdown {
    pub fn new(signal: impl std::future::Future<Output = ()> + Send + 'static) -> Self {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            signal.await;
            let _ = tx.send(true);
        });
        Self(rx)
    }

    /// Completes once the signal has come.
    pub async fn signalled(mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// Registers `collectors` in `registry`: each crate's metrics live in a registry of their own.
pub fn register_all(
    registry: &prometheus::Registry,
    collectors: Vec<Box<dyn prometheus::core::Collector>>,
) {
    for c in collectors {
        registry
            .register(c)
            .expect("metric names are unique within a registry");
    }
}

/// The Prometheus text exposition of every metric in `registry`.
pub fn metrics_text(registry: &prometheus::Registry) -> String {
    use prometheus::Encoder as _;
    let mut buf = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&registry.gather(), &mut buf)
        .expect("text encoding cannot fail");
    String::from_utf8(buf).expect("the text format is UTF-8")
}

/// `webhook_stage_duration_seconds{stage}`, defined once: ingest and workers must use the same
/// buckets, since dashboards compute quantiles over both (`sum by (le, stage)`).
pub fn stage_duration_histogram() -> prometheus::HistogramVec {
    prometheus::HistogramVec::new(
        prometheus::HistogramOpts::new(
            "webhook_stage_duration_seconds",
            "Time spent per stage of a webhook's life.",
        )
        .buckets(prometheus::exponential_buckets(0.00005, 2.0, 18).expect("valid buckets")),
        &["stage"],
    )
    .expect("valid histogram")
}
