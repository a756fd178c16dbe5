//! Test support for hookline: real nats-server and PostgreSQL processes on free loopback ports in
//! temp dirs, signed requests, and `wait_until`. No mocks: every integration test runs against the
//! real servers, and fault tests really kill them.
#![forbid(unsafe_code)]

pub mod flood;
pub mod http;
mod nats;
mod postgres;
mod process;
mod prometheus;
pub mod signing;

pub use http::WebhookClient;
pub use nats::{NatsCluster, NatsServer};
pub use postgres::Postgres;
pub use process::Service;
pub use prometheus::Prometheus;

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `condition` until it returns true or `deadline` passes; panics with `what` on timeout.
/// The only way tests wait: never a bare sleep.
pub async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        if condition().await {
            return;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for: {what}");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// The workspace root (for `.venv/`, `testdata/`, `migrations/`).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}
