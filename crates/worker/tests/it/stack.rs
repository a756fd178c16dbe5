//! The whole system in one test: nats-server and PostgreSQL processes, ingest and workers
//! in-process on free ports.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use hookline_ingest::IngestConfig;
use hookline_testkit::signing::{self, RESEND_OLD_SECRET, RESEND_SECRET};
use hookline_testkit::{wait_until, NatsServer, Postgres, WebhookClient};
use hookline_worker::consume::WorkerStats;
use hookline_worker::{Worker, WorkerConfig};
use sqlx::PgPool;
use tokio::sync::oneshot;

pub struct RunningWorker {
    pub stats: Arc<WorkerStats>,
    _stop: oneshot::Sender<()>,
}

pub struct Stack {
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
        let nats = NatsServer::start();
        let (pg, pool) = crate::support::migrated_db().await;
        let mut cfg = IngestConfig::for_nats(&nats.url());
        cfg.telnyx_public_key = Some(signing::telnyx_public_key_b64());
        cfg.resend_webhook_secret = vec![RESEND_SECRET.into(), RESEND_OLD_SECRET.into()];
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
        let mut stack = Self {
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

    pub fn worker_config(&self) -> WorkerConfig {
        let mut c = WorkerConfig::for_urls(&self.nats.url(), &self.pg.url());
        c.flush_interval_ms = 100;
        c.retry_base_ms = 20;
        c.retry_max_ms = 500;
        c
    }

    pub async fn add_worker(&mut self) {
        let worker = Worker::connect(&self.worker_config()).await.unwrap();
        let stats = worker.stats();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(worker.run(async {
            let _ = stopped.await;
        }));
        self.workers.push(RunningWorker { stats, _stop: stop });
    }

    /// Messages still in a stream (the main one is a work queue: acked events leave it).
    pub async fn stream_len(&self, name: &str) -> u64 {
        match self.js.get_stream(name).await {
            Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(u64::MAX),
            Err(_) => u64::MAX,
        }
    }

    /// Waits until every accepted event has been consumed and acknowledged.
    pub async fn wait_drained(&self, deadline: Duration) {
        wait_until("the stream is drained", deadline, || async {
            self.stream_len("WEBHOOKS").await == 0
        })
        .await;
    }

    pub fn total(&self, f: impl Fn(&WorkerStats) -> &std::sync::atomic::AtomicU64) -> u64 {
        self.workers
            .iter()
            .map(|w| f(&w.stats).load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    }
}
