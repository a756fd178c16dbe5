//! The whole system in one test: nats-server and PostgreSQL processes, ingest and workers
//! in-process on free ports.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use hookline_ingest::IngestConfig;
use hookline_testkit::signing;
use hookline_testkit::{wait_until, NatsServer, Postgres, Service, WebhookClient};
use hookline_worker::metrics::WorkerMetrics;
use hookline_worker::{Worker, WorkerConfig};
use sqlx::PgPool;
use tokio::sync::oneshot;

pub struct RunningWorker {
    pub metrics: Arc<WorkerMetrics>,
    /// Where its `/metrics`, `/healthz` and `/readyz` are served.
    pub http: std::net::SocketAddr,
    _stop: oneshot::Sender<()>,
}

pub struct Stack {
    /// What `add_worker` and `worker_process` start from; tests tune it.
    pub worker_template: WorkerConfig,
    pub logs: tempfile::TempDir,
    pub nats: NatsServer,
    pub pg: Postgres,
    pub pool: PgPool,
    pub client: WebhookClient,
    pub js: jetstream::Context,
    pub workers: Vec<RunningWorker>,
    _ingest_stop: oneshot::Sender<()>,
}

impl Stack {
    pub async fn start(workers: usize, tweak_ingest: impl FnOnce(&mut IngestConfig)) -> Self {
        Self::start_tuned(workers, tweak_ingest, |_| {}).await
    }

    pub async fn start_tuned(
        workers: usize,
        tweak_ingest: impl FnOnce(&mut IngestConfig),
        tweak_worker: impl FnOnce(&mut WorkerConfig),
    ) -> Self {
        let nats = NatsServer::start();
        let (pg, pool) = crate::support::migrated_db().await;
        let mut cfg = IngestConfig::for_nats(&nats.url());
        cfg.provider_keys.values = signing::provider_keys();
        tweak_ingest(&mut cfg);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = WebhookClient::new(format!("http://{}", listener.local_addr().unwrap()));
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(hookline_ingest::run(cfg, listener, async {
            let _ = stopped.await;
        }));
        let c = &client;
        wait_until("ingest ready", Duration::from_secs(20), || async move {
            c.get_status("/readyz").await == 200
        })
        .await;
        let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
        let mut worker_template = WorkerConfig::for_urls(&nats.url(), &pg.url());
        worker_template.flush_interval_ms = 100;
        worker_template.retry_base_ms = 20;
        worker_template.retry_max_ms = 500;
        tweak_worker(&mut worker_template);
        let mut stack = Self {
            worker_template,
            logs: tempfile::tempdir().unwrap(),
            nats,
            pg,
            pool,
            client,
            js,
            workers: Vec::new(),
            _ingest_stop: stop,
        };
        for _ in 0..workers {
            stack.add_worker().await;
        }
        stack
    }

    pub async fn add_worker(&mut self) {
        let worker = Worker::connect(&self.worker_template).await.unwrap();
        let metrics = worker.metrics();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(worker.run(Some(listener), async {
            let _ = stopped.await;
        }));
        self.workers.push(RunningWorker {
            metrics,
            http,
            _stop: stop,
        });
    }

    /// Starts the real `hookline-worker` binary with the template's settings plus `extra` env.
    pub fn worker_process(&self, extra: &[(&str, &str)]) -> Service {
        let c = &self.worker_template;
        let n = std::fs::read_dir(self.logs.path())
            .map(|d| d.count())
            .unwrap_or(0);
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hookline-worker"));
        cmd.env("NATS_URL", &c.nats.nats_url)
            .env("DATABASE_URL", &c.database_url)
            .env("WEBHOOK_BATCH_SIZE", c.batch_size.to_string())
            .env("WEBHOOK_FLUSH_INTERVAL", c.flush_interval_ms.to_string())
            .env(
                "HOOKLINE_ACK_WAIT_SECS",
                c.consumer.ack_wait_secs.to_string(),
            )
            .env("HOOKLINE_MAX_DELIVER", c.consumer.max_deliver.to_string())
            .env("HOOKLINE_RETRY_BASE_MS", c.retry_base_ms.to_string())
            .env("HOOKLINE_RETRY_MAX_MS", c.retry_max_ms.to_string())
            .env(
                "HOOKLINE_BREAKER_THRESHOLD",
                c.breaker_threshold.to_string(),
            )
            .env("HOOKLINE_BREAKER_OPEN_MS", c.breaker_open_ms.to_string())
            .env(
                "HOOKLINE_SHUTDOWN_DEADLINE_MS",
                c.shutdown_deadline_ms.to_string(),
            )
            .env("HOOKLINE_LOG_FORMAT", "json")
            .env("HOOKLINE_WORKER_LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .env_remove("HOOKLINE_FAULT_CRASH");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        Service::spawn(
            "hookline-worker",
            &mut cmd,
            self.logs.path().join(format!("worker-{n}.log")),
        )
    }

    pub async fn consumer_info(&self) -> async_nats::jetstream::consumer::Info {
        let s = self.js.get_stream("WEBHOOKS").await.unwrap();
        s.consumer_info("hookline-worker").await.unwrap()
    }

    pub async fn stored_events(&self) -> i64 {
        crate::support::count(&self.pool, "SELECT count(*) FROM delivery_events").await
    }

    /// Events the workers have not stored yet: the consumer's pending and ack-pending counts (the
    /// main stream is a log: a stored event stays in it).
    pub async fn unprocessed(&self) -> u64 {
        unprocessed(&self.js).await.unwrap_or(u64::MAX)
    }

    /// Messages in a stream (the main one keeps stored events too; see [`Self::unprocessed`]).
    pub async fn stream_len(&self, name: &str) -> u64 {
        match self.js.get_stream(name).await {
            Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(u64::MAX),
            Err(_) => u64::MAX,
        }
    }

    /// Waits until every accepted event has been consumed and acknowledged.
    pub async fn wait_drained(&self, deadline: Duration) {
        wait_until("every event is stored", deadline, || async {
            all_acked(&self.js).await
        })
        .await;
    }

    /// Pulls one event from the workers' consumer without acknowledging it (as a worker that then
    /// dies would, or one that just started); returns its delivery count, if any came.
    pub async fn pull_once(&self, wait: Duration) -> Option<i64> {
        use futures::StreamExt as _;
        let consumer = hookline_jetstream::ensure_consumer(
            &self.js,
            "WEBHOOKS",
            &self.worker_template.consumer,
            hookline_jetstream::Ownership::Manage,
        )
        .await
        .unwrap();
        let mut batch = consumer
            .batch()
            .max_messages(1)
            .expires(wait)
            .messages()
            .await
            .unwrap();
        let m = batch.next().await?.unwrap();
        Some(m.info().unwrap().delivered)
    }

    /// The `Nats-Msg-Id` of every event in the main stream (see [`stream_msg_ids`]).
    pub async fn stream_msg_ids(&self) -> std::collections::BTreeSet<String> {
        stream_msg_ids(&self.js).await
    }

    /// The sum of `f` over the in-process workers' metrics.
    pub fn total(&self, f: impl Fn(&WorkerMetrics) -> u64) -> u64 {
        self.workers.iter().map(|w| f(&w.metrics)).sum()
    }
}

/// Events the workers' consumer has not had acknowledged (`None`: no stream or consumer yet).
pub async fn unprocessed(js: &jetstream::Context) -> Option<u64> {
    let s = js.get_stream_no_info("WEBHOOKS").await.ok()?;
    let c = s.consumer_info("hookline-worker").await.ok()?;
    Some(c.num_pending + c.num_ack_pending as u64)
}

/// Whether the workers' consumer has acknowledged every event in the log: nothing pending or
/// unacknowledged, and its ack floor at the stream's last sequence (a message just published may
/// not be in the consumer's pending count yet; the stream's last sequence has it as soon as its
/// PubAck came).
pub async fn all_acked(js: &jetstream::Context) -> bool {
    let Ok(mut s) = js.get_stream("WEBHOOKS").await else {
        return false;
    };
    let Ok(info) = s.info().await else {
        return false;
    };
    let last = info.state.last_sequence;
    match s.consumer_info("hookline-worker").await {
        Ok(c) => {
            c.num_pending == 0 && c.num_ack_pending == 0 && c.ack_floor.stream_sequence >= last
        }
        Err(_) => false,
    }
}

/// The `Nats-Msg-Id` of every event in the main stream: what JetStream holds, for comparing its
/// contents across a restart or a leader change.
pub async fn stream_msg_ids(js: &jetstream::Context) -> std::collections::BTreeSet<String> {
    let stream = js.get_stream("WEBHOOKS").await.unwrap();
    let mut ids = std::collections::BTreeSet::new();
    let mut next = 1;
    while let Ok(m) = stream
        .raw_message_builder()
        .sequence(next)
        .next_by_subject(hookline_jetstream::SUBJECTS.to_owned())
        .send()
        .await
    {
        if let Some(id) = m.headers.get(async_nats::header::NATS_MESSAGE_ID) {
            ids.insert(id.as_str().to_owned());
        }
        next = m.sequence + 1;
    }
    ids
}
