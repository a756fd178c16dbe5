//! hookline worker: JetStream in, PostgreSQL out. Run as many copies as the load needs; they share
//! one durable pull consumer, so JetStream spreads events across them and redelivers what a
//! crashed worker had not acknowledged.
#![forbid(unsafe_code)]

pub mod breaker;
pub mod config;
pub mod consume;
pub mod dead_letter;
pub mod decode;
pub mod dlq;
pub mod http;
pub mod metrics;
pub mod reconcile;
pub mod replay;
mod store;
pub mod writer;

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tokio::sync::watch;
use tracing::info;

pub use config::WorkerConfig;
pub use writer::{BatchWriter, EventRecord, WriteOutcome};

/// The schema, embedded at build time from `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// A pool with the worker's timeouts.
pub async fn connect_db(config: &WorkerConfig) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(&config.database_url)
        .context("DATABASE_URL is not a valid PostgreSQL URL")?
        .application_name("hookline-worker")
        .options([(
            "statement_timeout",
            config.db_statement_timeout_ms.to_string(),
        )]);
    // Lazy: a worker started while PostgreSQL is down waits and retries instead of exiting.
    Ok(PgPoolOptions::new()
        .max_connections(config.db_pool_size)
        .acquire_timeout(Duration::from_millis(config.db_acquire_timeout_ms))
        .connect_lazy_with(options))
}

/// A connected worker, ready to consume.
pub struct Worker {
    consumer: consume::Consumer,
    client: async_nats::Client,
    pool: PgPool,
    stream: String,
    consumer_name: String,
    shutdown_deadline: Duration,
}

impl Worker {
    /// Connects to NATS (retrying in the background while it is down), makes sure the
    /// dead-letter stream and the shared consumer exist, and prepares the database pool.
    pub async fn connect(config: &WorkerConfig) -> anyhow::Result<Self> {
        let crash = config
            .fault_crash
            .as_deref()
            .map(writer::CrashPlan::parse)
            .transpose()
            .map_err(|e| anyhow::anyhow!("HOOKLINE_FAULT_CRASH is invalid: {e}"))?;
        let client = async_nats::ConnectOptions::new()
            .name("hookline-worker")
            .retry_on_initial_connect()
            .connect(
                hookline_jetstream::server_addrs(&config.nats_url).map_err(anyhow::Error::msg)?,
            )
            .await
            .with_context(|| format!("cannot connect to NATS at {}", config.nats_url))?;
        let js = async_nats::jetstream::new(client.clone());
        let consumer = loop {
            let ready = async {
                js.get_or_create_stream(dead_letter::stream_config(
                    &config.dlq_stream,
                    config.stream_replicas,
                ))
                .await
                .map_err(|e| anyhow::anyhow!("dead-letter stream {}: {e}", config.dlq_stream))?;
                hookline_jetstream::ensure_consumer(&js, &config.stream, &config.consumer)
                    .await
                    .map_err(anyhow::Error::from)
            };
            match ready.await {
                Ok(c) => break c,
                Err(e) => {
                    info!(error = %e, "Waiting for NATS and the stream.");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        let providers = hookline_runtime::sources::decoders(config.sources_file.as_deref())
            .map_err(anyhow::Error::msg)?;
        let pool = connect_db(config).await?;
        let mut writer = BatchWriter::new(pool.clone());
        if let Some(plan) = crash {
            writer = writer.with_crash_plan(plan);
        }
        let settings = config.batch_settings();
        Ok(Self {
            consumer: consume::Consumer {
                js,
                consumer,
                writer,
                metrics: Arc::new(metrics::WorkerMetrics::new(&providers.names())),
                providers,
                breaker: std::sync::Mutex::new(breaker::Breaker::new(
                    settings.breaker_threshold,
                    settings.breaker_open_for,
                )),
                settings,
            },
            client,
            pool,
            stream: config.stream.clone(),
            consumer_name: config.consumer.consumer.clone(),
            shutdown_deadline: Duration::from_millis(config.shutdown_deadline_ms),
        })
    }

    pub fn metrics(&self) -> Arc<metrics::WorkerMetrics> {
        self.consumer.metrics.clone()
    }

    /// Consumes until `shutdown` completes; then the batch in hand is committed and acked, or,
    /// if the database is still failing at the shutdown deadline, handed back to the stream.
    /// With a `listener`, serves `/metrics`, `/healthz` and `/readyz` on it meanwhile.
    pub async fn run(
        self,
        listener: Option<tokio::net::TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let http_server = listener.map(|l| {
            let state = Arc::new(http::HealthState {
                client: self.client.clone(),
                js: self.consumer.js.clone(),
                stream: self.stream.clone(),
                consumer: self.consumer_name.clone(),
                metrics: self.consumer.metrics.clone(),
            });
            if let Ok(addr) = l.local_addr() {
                info!(%addr, "Worker health and metrics listening.");
            }
            tokio::spawn(async move { axum::serve(l, http::router(state)).await })
        });
        let (tx, rx) = watch::channel(consume::Phase::Running);
        let deadline = self.shutdown_deadline;
        tokio::spawn(async move {
            shutdown.await;
            info!(
                deadline_ms = deadline.as_millis() as u64,
                "Shutting down: finishing the batch in hand."
            );
            let _ = tx.send(consume::Phase::Draining {
                deadline: tokio::time::Instant::now() + deadline,
            });
        });
        let metrics = self.consumer.metrics.clone();
        let advisories = tokio::spawn(dead_letter::watch_max_deliveries(
            self.client.clone(),
            self.consumer.js.clone(),
            self.stream.clone(),
            self.consumer_name.clone(),
            move || {
                metrics
                    .dead_lettered
                    .with_label_values(&["max_deliveries"])
                    .inc()
            },
        ));
        let result = self.consumer.run(rx).await;
        advisories.abort();
        if let Some(server) = http_server {
            server.abort();
        }
        // Acks are fire-and-forget publishes: make sure they have left before exiting.
        let _ = self.client.flush().await;
        self.pool.close().await;
        result
    }
}

/// Connects and runs a worker until `shutdown` completes, serving health and metrics on
/// `config.listen`.
pub async fn run(
    config: WorkerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (HOOKLINE_WORKER_LISTEN)",
                config.listen
            )
        })?;
    Worker::connect(&config)
        .await?
        .run(Some(listener), shutdown)
        .await
}
