//! The worker's configuration: flags with environment fallbacks, defaults that work for the local
//! run. The database URL may hold a password, so its env value is never shown in `--help`.

use std::time::Duration;

use clap::Parser;
use hookline_jetstream::ConsumerArgs;

use crate::commit::RetrySettings;
use crate::consume::BatchSettings;

#[derive(Parser, Clone)]
#[command(
    name = "hookline-worker",
    version,
    about = "Consumes webhook events from JetStream and stores delivery state in PostgreSQL."
)]
pub struct WorkerConfig {
    /// Address for `/metrics`, `/healthz` and `/readyz` (port 0: any free port).
    #[arg(long, env = "HOOKLINE_WORKER_LISTEN", default_value = "127.0.0.1:9101")]
    pub listen: std::net::SocketAddr,

    #[command(flatten)]
    pub nats: hookline_jetstream::NatsArgs,

    /// PostgreSQL connection URL (`?sslmode=verify-full&sslrootcert=…` for TLS). Required.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,

    /// The stream ingest publishes to.
    #[arg(long, env = "HOOKLINE_STREAM", default_value = "WEBHOOKS")]
    pub stream: String,

    /// A TOML file of generic signed sources (see examples/); the worker decodes their events.
    /// Their secrets are not needed here.
    #[arg(long, env = "HOOKLINE_SOURCES_FILE")]
    pub sources_file: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub dlq: hookline_jetstream::DlqArgs,

    /// How often to read the dead-letter stream's size into the DLQ gauges, in seconds.
    #[arg(long, env = "HOOKLINE_DLQ_REFRESH_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub dlq_refresh_secs: u64,

    /// How often to read the suppression list's size and log into its gauges, in seconds.
    #[arg(long, env = "HOOKLINE_SUPPRESSION_REFRESH_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub suppression_refresh_secs: u64,

    /// Replicas of the dead-letter stream when the worker creates it (3 on a JetStream cluster).
    #[arg(long, env = "HOOKLINE_STREAM_REPLICAS", default_value_t = 1)]
    pub stream_replicas: usize,

    #[command(flatten)]
    pub consumer: ConsumerArgs,

    #[command(flatten)]
    pub feed: hookline_jetstream::FeedArgs,

    /// Relay the change feed from the database's outbox to JetStream (`true`/`false`). Every
    /// worker may; one at a time does. With no worker relaying, the outbox grows.
    #[arg(long, env = "HOOKLINE_FEED_RELAY", default_value_t = true,
          action = clap::ArgAction::Set)]
    pub feed_relay: bool,

    /// How often the relay looks at the outbox for changes other processes committed (an
    /// application's registration, another worker), in milliseconds; this worker's own commits
    /// wake it (it then waits 50 ms for the commits behind to share the round).
    #[arg(long, env = "HOOKLINE_FEED_POLL_MS", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub feed_poll_ms: u64,

    #[command(flatten)]
    pub streams: hookline_jetstream::OwnershipArgs,

    /// Most events per database transaction.
    #[arg(long, env = "WEBHOOK_BATCH_SIZE", default_value_t = 100,
          value_parser = clap::value_parser!(u16).range(1..=10_000))]
    pub batch_size: u16,

    /// Longest wait for a batch to fill after its first event, in milliseconds.
    #[arg(long, env = "WEBHOOK_FLUSH_INTERVAL", default_value_t = 1000)]
    pub flush_interval_ms: u64,

    /// Batches written at once by this worker, each in its own transaction on its own pooled
    /// connection (one fetch at a time feeds them). A batch's latency is mostly waiting on the
    /// database (round trips, the commit's fsync), so a few in flight multiply throughput.
    /// While the database fails, nothing new is fetched: only the batches in hand are retried.
    #[arg(long, env = "HOOKLINE_WRITERS", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub writers: u16,

    /// Database connections in the pool: at least `HOOKLINE_WRITERS` + 1 (one per writer, one
    /// for the canary write that confirms an event's fault); a smaller pool is refused at start.
    /// Replicas × this must stay under PostgreSQL's `max_connections`.
    #[arg(long, env = "HOOKLINE_DB_POOL_SIZE", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(2..))]
    pub db_pool_size: u32,

    /// Longest wait for a pooled connection, in milliseconds.
    #[arg(long, env = "HOOKLINE_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 5_000)]
    pub db_acquire_timeout_ms: u64,

    /// Server-side statement timeout, in milliseconds.
    #[arg(
        long,
        env = "HOOKLINE_DB_STATEMENT_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub db_statement_timeout_ms: u64,

    /// First retry delay after a transient database failure, in milliseconds (doubles each time).
    #[arg(long, env = "HOOKLINE_RETRY_BASE_MS", default_value_t = 200)]
    pub retry_base_ms: u64,

    /// Longest retry delay, in milliseconds.
    #[arg(long, env = "HOOKLINE_RETRY_MAX_MS", default_value_t = 30_000)]
    pub retry_max_ms: u64,

    /// Consecutive transient database failures that open the circuit breaker.
    #[arg(long, env = "HOOKLINE_BREAKER_THRESHOLD", default_value_t = 10)]
    pub breaker_threshold: u32,

    /// Attempts of one write failing with an outage-class error (a statement timeout, say) while
    /// a canary write succeeds, before its events are isolated by bisection; an event that then
    /// fails alone as often is dead-lettered (`db_fails_alone`). A real outage fails the canary
    /// too and is retried for as long as it lasts.
    #[arg(long, env = "HOOKLINE_ISOLATE_AFTER", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub isolate_after: u32,

    /// How long the breaker stays open before probing the database again, in milliseconds.
    #[arg(long, env = "HOOKLINE_BREAKER_OPEN_MS", default_value_t = 60_000)]
    pub breaker_open_ms: u64,

    /// On SIGTERM/SIGINT: longest time to finish the batch in hand before handing it back, in
    /// milliseconds.
    #[arg(long, env = "HOOKLINE_SHUTDOWN_DEADLINE_MS", default_value_t = 20_000)]
    pub shutdown_deadline_ms: u64,

    /// How long a stored event absorbs a redelivery of itself, in hours: an event whose id was
    /// stored longer ago is stored again (replays excepted). Must cover the providers' retry
    /// schedules (the default is twice the longest) and stay within event retention.
    #[arg(long, env = "HOOKLINE_DEDUP_WINDOW_HOURS", default_value_t = 72,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub dedup_window_hours: u64,

    #[command(flatten)]
    pub retention: hookline_store::lifecycle::RetentionArgs,

    /// How often this worker runs the data lifecycle (`hookline maintain`: partitions ahead,
    /// retention), in seconds; 0: never (leave it to a CronJob). One worker at a time does it.
    #[arg(long, env = "HOOKLINE_MAINTAIN_EVERY_SECS", default_value_t = 3600)]
    pub maintain_every_secs: u64,

    /// Test hook: `before_commit:N` or `after_commit:N` aborts the process (as `kill -9` would)
    /// at that point of its Nth database transaction; `event:ID` when it writes event ID;
    /// `feed_published:N` after the change feed relay's Nth round is acknowledged, before its
    /// delete. For fault tests only.
    #[cfg(feature = "fault-injection")]
    #[arg(long, env = "HOOKLINE_FAULT_CRASH", hide = true)]
    pub fault_crash: Option<String>,

    /// Log format: `json` (production) or `text` (readable, for the local run).
    #[arg(long, env = "HOOKLINE_LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: hookline_runtime::LogFormat,
}

/// The settings that tell a worker apart, with `DATABASE_URL`'s password masked (hide_env_values
/// keeps it out of `--help`; this keeps it out of every log line that prints the config).
impl std::fmt::Debug for WorkerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerConfig")
            .field("database_url", &masked(&self.database_url))
            .field("nats", &self.nats)
            .field("stream", &self.stream)
            .field("consumer", &self.consumer)
            .field("batch_size", &self.batch_size)
            .field("writers", &self.writers)
            .field("db_pool_size", &self.db_pool_size)
            .finish_non_exhaustive()
    }
}

/// `url` with the password of its user part, if any, replaced by `***`.
fn masked(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "***".to_owned();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some((auth, host)) => (auth, host),
        None => return url.to_owned(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

impl WorkerConfig {
    /// Settings that are each valid but do not fit together; the error names the variables.
    pub fn validate(&self) -> anyhow::Result<()> {
        let needed = u32::from(self.writers) + 1;
        anyhow::ensure!(
            self.db_pool_size >= needed,
            "HOOKLINE_DB_POOL_SIZE is {}, but HOOKLINE_WRITERS={} needs at least {needed}: one \
             connection per writer and one for the canary write",
            self.db_pool_size,
            self.writers
        );
        self.retention
            .check_covers(self.dedup_window())
            .map_err(anyhow::Error::msg)?;
        anyhow::ensure!(
            self.retry_base_ms <= self.retry_max_ms,
            "HOOKLINE_RETRY_BASE_MS ({}) is above HOOKLINE_RETRY_MAX_MS ({})",
            self.retry_base_ms,
            self.retry_max_ms
        );
        Ok(())
    }

    pub fn dedup_window(&self) -> Duration {
        Duration::from_secs(self.dedup_window_hours * 3600)
    }

    pub fn batch_settings(&self) -> BatchSettings {
        BatchSettings {
            batch_size: self.batch_size.into(),
            writers: self.writers.into(),
            flush_interval: Duration::from_millis(self.flush_interval_ms),
            retry: RetrySettings {
                retry_base: Duration::from_millis(self.retry_base_ms),
                retry_max: Duration::from_millis(self.retry_max_ms),
                breaker_threshold: self.breaker_threshold,
                breaker_open_for: Duration::from_millis(self.breaker_open_ms),
                isolate_after: self.isolate_after,
            },
            max_deliver: self.consumer.max_deliver,
        }
    }

    /// Defaults with the given endpoints: what tests and the CLI start from.
    pub fn for_urls(nats_url: &str, database_url: &str) -> Self {
        Self::parse_from([
            "hookline-worker",
            "--nats-url",
            nats_url,
            "--database-url",
            database_url,
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_says_what_it_means_and_is_documented() {
        use clap::CommandFactory as _;
        let problems = hookline_testkit::flag_problems(&WorkerConfig::command(), true);
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn a_pool_too_small_for_the_writers_is_refused_naming_both() {
        let mut c = WorkerConfig::for_urls("nats://x", "postgres://x");
        c.writers = 4;
        c.db_pool_size = 4;
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("HOOKLINE_DB_POOL_SIZE") && e.contains("HOOKLINE_WRITERS=4"),
            "{e}"
        );
        c.db_pool_size = 5;
        c.validate().unwrap();
        assert!(WorkerConfig::try_parse_from([
            "w",
            "--nats-url",
            "n",
            "--database-url",
            "d",
            "--log-format",
            "xml"
        ])
        .is_err());
    }

    #[test]
    fn debug_never_prints_the_database_password() {
        let c = WorkerConfig::for_urls("nats://n:4222", "postgres://hook:s3cr%40t@db:5432/h");
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cr"), "{shown}");
        assert!(shown.contains("postgres://hook:***@db:5432/h"), "{shown}");
        assert_eq!(masked("postgres://db/h"), "postgres://db/h");
        assert_eq!(masked("not a url"), "***");
    }
}
