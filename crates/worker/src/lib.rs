//! hookline worker: JetStream in, PostgreSQL out. Run as many copies as the load needs; they share
//! one durable pull consumer, so JetStream spreads events across them and redelivers what a
//! crashed worker had not acknowledged.
#![forbid(unsafe_code)]

pub mod breaker;
pub mod commit;
pub mod config;
pub mod consume;
pub mod dead_letter;
pub mod decode;
pub mod feed;
pub mod http;
pub mod metrics;
pub mod suppression;

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tokio::sync::watch;
use tracing::{info, warn};

pub use config::WorkerConfig;
use hookline_store::writer::BatchWriter;

/// A pool with the worker's timeouts: `connections` of them, named `application_name`.
pub fn connect_db(
    config: &WorkerConfig,
    application_name: &str,
    connections: u32,
) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(&config.database_url)
        .context("DATABASE_URL is not a valid PostgreSQL URL")?
        .application_name(application_name)
        .options([(
            "statement_timeout",
            config.db_statement_timeout_ms.to_string(),
        )]);
    // Lazy: a worker started while PostgreSQL is down waits and retries instead of exiting.
    Ok(PgPoolOptions::new()
        .max_connections(connections)
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
    dlq_stream: String,
    dlq_refresh: Duration,
    suppression_refresh: Duration,
    retention: hookline_store::lifecycle::RetentionArgs,
    maintain_every: Duration,
    /// The change feed's relay; `None`: this worker does not relay.
    feed: Option<feed::Relay>,
    shutdown_deadline: Duration,
}

impl Worker {
    /// Connects to NATS (retrying in the background while it is down), makes sure the
    /// dead-letter stream and the shared consumer exist, and prepares the database pool.
    pub async fn connect(config: &WorkerConfig) -> anyhow::Result<Self> {
        #[cfg(feature = "fault-injection")]
        let crash = crash_plan(config)?;
        let client = hookline_jetstream::connect(
            "hookline-worker",
            &config.nats,
            hookline_jetstream::Reconnect::Always,
        )
        .await?;
        let js = async_nats::jetstream::new(client.clone());
        let consumer =
            hookline_jetstream::connect::wait_until_ready("NATS and the stream", || async {
                let ownership = config.streams.ownership;
                hookline_jetstream::ensure_dlq_stream(
                    &js,
                    &config.dlq,
                    config.stream_replicas,
                    ownership,
                )
                .await?;
                hookline_jetstream::ensure_feed_stream(
                    &js,
                    &config.feed,
                    config.stream_replicas,
                    ownership,
                )
                .await?;
                hookline_jetstream::ensure_consumer(
                    &js,
                    &config.stream,
                    &config.consumer,
                    ownership,
                )
                .await
            })
            .await?;
        let providers = hookline_runtime::sources::decoders(config.sources_file.as_deref())?;
        let pool = connect_db(config, "hookline-worker", config.db_pool_size)?;
        let writer = BatchWriter::new(pool.clone()).with_dedup_window(config.dedup_window());
        #[cfg(feature = "fault-injection")]
        let writer = match crash {
            Some(plan) => writer.with_crash_plan(plan),
            None => writer,
        };
        let settings = config.batch_settings();
        let metrics = Arc::new(metrics::WorkerMetrics::new(&providers.names()));
        let committer = Arc::new(commit::Committer::new(
            writer,
            settings.retry.clone(),
            metrics.clone(),
        ));
        let feed = if config.feed_relay {
            Some(feed::Relay {
                // Its own connection: the relay never takes one from the writers or the canary.
                pool: connect_db(config, "hookline-worker-feed", 1)?,
                js: js.clone(),
                poll: Duration::from_millis(config.feed_poll_ms),
                committer: committer.clone(),
                metrics: metrics.clone(),
                #[cfg(feature = "fault-injection")]
                crash: crash_plan(config)?,
            })
        } else {
            None
        };
        Ok(Self {
            consumer: consume::Consumer {
                js,
                consumer,
                committer,
                metrics,
                providers,
                in_hand: Default::default(),
                handed_back: Default::default(),
                settings,
            },
            client,
            pool,
            stream: config.stream.clone(),
            consumer_name: config.consumer.consumer.clone(),
            dlq_stream: config.dlq.dlq_stream.clone(),
            dlq_refresh: Duration::from_secs(config.dlq_refresh_secs),
            suppression_refresh: Duration::from_secs(config.suppression_refresh_secs),
            retention: config.retention.clone(),
            maintain_every: Duration::from_secs(config.maintain_every_secs),
            feed,
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
                committer: self.consumer.committer.clone(),
                backlog: Default::default(),
            });
            if let Ok(addr) = l.local_addr() {
                info!(%addr, "Worker health and metrics listening.");
            }
            let watcher = tokio::spawn(http::watch_backlog(state.clone(), BACKLOG_EVERY));
            let server = tokio::spawn(async move { axum::serve(l, http::router(state)).await });
            (server, watcher)
        });
        let (tx, rx) = watch::channel(consume::Phase::Running);
        let deadline = self.shutdown_deadline;
        let mut draining = rx.clone();
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
        let state = self.consumer.metrics.clone();
        let dlq_gauges = tokio::spawn(dead_letter::watch_size(
            self.consumer.js.clone(),
            self.dlq_stream.clone(),
            self.dlq_refresh,
            move |messages, bytes| {
                state.dlq_messages.set(messages as i64);
                state.dlq_bytes.set(bytes as i64);
            },
        ));
        let maintenance = (!self.maintain_every.is_zero()).then(|| {
            tokio::spawn(maintain_every(
                self.pool.clone(),
                self.retention.clone(),
                self.maintain_every,
                self.consumer.metrics.clone(),
            ))
        });
        let suppressions = tokio::spawn(suppression::watch(
            self.pool.clone(),
            self.consumer.metrics.clone(),
            self.suppression_refresh,
        ));
        let relay = self.feed.map(|relay| tokio::spawn(relay.run()));
        // The consumer finishes by the shutdown deadline on its own, unless NATS is unreachable
        // (a pull, an ack or a dead letter waiting on it): then it is cut off at the deadline and
        // JetStream redelivers what it held after the ack wait.
        let consuming = self.consumer.run(rx);
        tokio::pin!(consuming);
        let result = tokio::select! {
            result = &mut consuming => Some(result),
            () = past_deadline(&mut draining) => None,
        };
        dlq_gauges.abort();
        suppressions.abort();
        if let Some(m) = maintenance {
            m.abort();
        }
        if let Some(r) = relay {
            r.abort();
        }
        if let Some((server, watcher)) = http_server {
            server.abort();
            watcher.abort();
        }
        // Acks are fire-and-forget publishes: make sure they have left before exiting, but never
        // wait past the deadline for a server that is not there.
        let flushed = tokio::time::timeout(FLUSH_AT_EXIT, self.client.flush()).await;
        if result.is_none() || !matches!(flushed, Ok(Ok(()))) {
            let load =
                |n: &std::sync::atomic::AtomicUsize| n.load(std::sync::atomic::Ordering::Relaxed);
            warn!(
                events_in_hand = load(&self.consumer.in_hand),
                events_handed_back = load(&self.consumer.handed_back),
                nats = %self.client.connection_state(),
                "Exiting without reaching NATS: the events in hand and those handed back were not \
                 confirmed; JetStream redelivers them after the ack wait."
            );
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), self.pool.close()).await;
        result.unwrap_or(Ok(()))
    }
}

/// The crash test hook's plan, if `HOOKLINE_FAULT_CRASH` is set: each caller gets its own
/// (the writer counts transactions, the feed's relay its rounds).
#[cfg(feature = "fault-injection")]
fn crash_plan(config: &WorkerConfig) -> anyhow::Result<Option<hookline_store::fault::CrashPlan>> {
    config
        .fault_crash
        .as_deref()
        .map(hookline_store::fault::CrashPlan::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("HOOKLINE_FAULT_CRASH is invalid: {e}"))
}

/// Runs the data lifecycle now and then every `every`: partitions ahead, retention. Without
/// ownership of the log it still creates ahead, and says once why it cannot drop.
async fn maintain_every(
    pool: sqlx::PgPool,
    settings: hookline_store::lifecycle::RetentionArgs,
    every: Duration,
    metrics: Arc<metrics::WorkerMetrics>,
) {
    let mut refused_before = false;
    loop {
        match hookline_store::lifecycle::maintain(&pool, &settings, false).await {
            Ok(Some(report)) => {
                if let Some(day) = report.oldest_day.and_then(|d| d.and_hms_opt(0, 0, 0)) {
                    metrics.oldest_event_day.set(day.and_utc().timestamp());
                }
                metrics
                    .event_rows_dropped
                    .inc_by(report.rows_dropped().max(0) as u64);
                metrics.early_waiting.set(report.early_waiting);
                if !report.created.is_empty() || !report.dropped.is_empty() {
                    info!(
                        created = ?report.created,
                        dropped = ?report.dropped.iter().map(|p| &p.name).collect::<Vec<_>>(),
                        rows_dropped = report.rows_dropped(),
                        "Event log maintained."
                    );
                }
                if let (Some(why), false) = (&report.refused, refused_before) {
                    warn!(
                        error = %why,
                        deferred = ?report.deferred,
                        "This worker's role cannot apply retention (drop partitions, delete); \
                         run `hookline maintain` as the schema owner (e.g. a CronJob)."
                    );
                }
                refused_before = report.refused.is_some();
            }
            Ok(None) => {}
            Err(e) => warn!(error = %e, "Event log maintenance failed; it runs again later."),
        }
        tokio::time::sleep(every).await;
    }
}

/// How often the health surface reads the backlog from JetStream.
const BACKLOG_EVERY: Duration = Duration::from_secs(1);

/// Longest wait at exit for buffered acks to reach NATS.
const FLUSH_AT_EXIT: Duration = Duration::from_millis(300);

/// Completes once the phase is draining and its deadline has passed.
async fn past_deadline(phase: &mut watch::Receiver<consume::Phase>) {
    loop {
        let current = *phase.borrow_and_update();
        if let consume::Phase::Draining { deadline } = current {
            // A moment past the deadline, for the consumer's own hand-back at the deadline.
            tokio::time::sleep_until(deadline + Duration::from_millis(200)).await;
            return;
        }
        if phase.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Connects and runs a worker until `shutdown` completes, serving health and metrics on
/// `config.listen`.
pub async fn run(
    config: WorkerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.validate()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (HOOKLINE_WORKER_LISTEN)",
                config.listen
            )
        })?;
    // The signal may come while NATS is still unreachable at start-up: connecting is cut short.
    let shutdown = hookline_runtime::Shutdown::new(shutdown);
    let worker = tokio::select! {
        worker = Worker::connect(&config) => worker?,
        () = shutdown.clone().signalled() => {
            warn!("Shut down before NATS and the stream were reachable; nothing was consumed.");
            return Ok(());
        }
    };
    worker.run(Some(listener), shutdown.signalled()).await
}
