//! Hostile traffic for tests and the benchmark: connections that send a maximum-size head whose
//! signature headers look genuine (fresh timestamp, well-formed but wrong signature) and most of
//! the body, then stall; and small requests with garbage signatures as fast as they go. Each
//! comes from its own loopback addresses (127.0.0.x), as a flood from elsewhere on the internet
//! would.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpSocket;

/// What to send, from where.
#[derive(Debug, Clone)]
pub struct Flood {
    /// Concurrent connections stalling maximum-size bodies.
    pub stalled: usize,
    pub stalled_from: Vec<IpAddr>,
    /// Concurrent clients sending small garbage-signed requests back to back.
    pub garbage: usize,
    pub garbage_from: Vec<IpAddr>,
    /// The body limit the stalled requests declare.
    pub body_limit: usize,
}

/// `127.0.0.{last}`.
pub fn loopback(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// Sends `head` + `body` from `from` and reads the status code (0: none within `wait`).
pub async fn raw_from(
    from: IpAddr,
    to: SocketAddr,
    head: &str,
    body: &[u8],
    wait: Duration,
) -> u16 {
    let attempt = async {
        let socket = TcpSocket::new_v4().ok()?;
        socket.bind(SocketAddr::new(from, 0)).ok()?;
        let mut stream = socket.connect(to).await.ok()?;
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(body).await;
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).await.ok()?;
        String::from_utf8_lossy(&buf[..n])
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
    };
    tokio::time::timeout(wait, attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(0)
}

/// A Resend-looking head with a fresh timestamp and a well-formed, wrong signature.
pub fn fake_head(n: u64, content_length: usize) -> String {
    format!(
        "POST /webhooks/resend HTTP/1.1\r\nhost: ingest\r\ncontent-type: application/json\r\n\
         svix-id: msg_flood_{n}\r\nsvix-timestamp: {}\r\n\
         svix-signature: v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\
         content-length: {content_length}\r\nconnection: close\r\n\r\n",
        crate::signing::now()
    )
}

/// Runs `flood` against `to` until `until`; returns how many requests got each status (0: none).
pub async fn run(flood: &Flood, to: SocketAddr, until: Instant) -> BTreeMap<u16, u64> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..flood.stalled {
        let from = flood.stalled_from[i % flood.stalled_from.len()];
        let limit = flood.body_limit;
        tasks.spawn(async move {
            let mut codes = Vec::new();
            let mut n = (i as u64) << 20;
            let body = vec![b'x'; limit.saturating_sub(4096)];
            while Instant::now() < until {
                n += 1;
                let head = fake_head(n, limit);
                codes.push(raw_from(from, to, &head, &body, Duration::from_secs(5)).await);
            }
            codes
        });
    }
    for i in 0..flood.garbage {
        let from = flood.garbage_from[i % flood.garbage_from.len()];
        tasks.spawn(async move {
            let mut codes = Vec::new();
            let mut n = (1u64 << 40) + ((i as u64) << 20);
            while Instant::now() < until {
                n += 1;
                codes.push(
                    raw_from(from, to, &fake_head(n, 2), b"{}", Duration::from_secs(5)).await,
                );
            }
            codes
        });
    }
    let mut by_status = BTreeMap::new();
    for codes in tasks.join_all().await {
        for c in codes {
            *by_status.entry(c).or_insert(0) += 1;
        }
    }
    by_status
}
