//! Starts nats-server and an in-process ingest on port 0; posts signed requests.

use std::time::Duration;

use async_nats::jetstream;
use hookline_ingest::IngestConfig;
use hookline_testkit::signing;
use hookline_testkit::{NatsServer, WebhookClient};
use tokio::sync::oneshot;

pub struct Ingest {
    pub nats: NatsServer,
    pub base: String,
    pub js: jetstream::Context,
    pub http: reqwest::Client,
    pub client: WebhookClient,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub fn config(nats: &NatsServer) -> IngestConfig {
    let mut c = IngestConfig::for_nats(&nats.url());
    c.provider_keys.values = signing::provider_keys();
    c.max_body_bytes = 64 * 1024;
    c.publish_timeout_ms = 1_000;
    c.retry_after_secs = 7;
    c
}

impl Ingest {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut IngestConfig)) -> Self {
        let nats = NatsServer::start();
        let mut cfg = config(&nats);
        tweak(&mut cfg);
        let admin = cfg.admin_listen;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(hookline_ingest::run(cfg, listener, async {
            let _ = stopped.await;
        }));
        let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
        let client = WebhookClient::new(&base);
        let ingest = Self {
            nats,
            base,
            js,
            http: client.http.clone(),
            client,
            stop: Some(stop),
            done: Some(done),
        };
        // Readiness is on the admin port when one is set.
        let health = WebhookClient::new(match admin {
            Some(a) => format!("http://{a}"),
            None => ingest.base.clone(),
        });
        let c = &health;
        hookline_testkit::wait_until("ingest ready", Duration::from_secs(20), || async move {
            c.get_status("/readyz").await == 200
        })
        .await;
        ingest
    }

    /// Signals shutdown and waits for ingest to return (within its deadline).
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            tokio::time::timeout(Duration::from_secs(15), done)
                .await
                .expect("ingest stops within its deadline")
                .unwrap()
                .unwrap();
        }
    }

    pub async fn stored_messages(&self) -> u64 {
        let mut s = self.js.get_stream("WEBHOOKS").await.unwrap();
        s.info().await.unwrap().state.messages
    }

    /// Ingest's `/metrics` text (on the public port: the harness sets no admin port).
    pub async fn metrics(&self) -> String {
        let url = format!("{}/metrics", self.base);
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The stored message at `seq`.
    pub async fn stored(&self, seq: u64) -> async_nats::jetstream::message::StreamMessage {
        let s = self.js.get_stream("WEBHOOKS").await.unwrap();
        s.get_raw_message(seq).await.unwrap()
    }
}
