//! An HTTP/1.1 load generator over keep-alive connections, in-process: closed loop (each
//! connection sends its next request when the last one is answered: saturation) or open loop
//! (requests are due at a fixed rate and latency counts from when each was due, so a stalled
//! server cannot hide its queueing: no coordinated omission).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;

/// Builds the `i`-th request: path, headers, body. Called on the generator's hot path.
pub type MakeRequest = Arc<dyn Fn(u64) -> (String, Vec<(String, String)>, Bytes) + Send + Sync>;

#[derive(Debug, Clone, Copy)]
pub enum Mode {
    Closed { duration: Duration },
    Open { rate: f64, duration: Duration },
}

#[derive(Debug, Default, Clone)]
pub struct LoadResult {
    pub ok: u64,
    pub failed: u64,
    pub elapsed: Duration,
    /// Microseconds, sorted.
    pub latencies_us: Vec<u32>,
}

impl LoadResult {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * p).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }
}

pub async fn run(
    addr: SocketAddr,
    connections: usize,
    mode: Mode,
    make: MakeRequest,
) -> LoadResult {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let (duration, interval) = match mode {
        Mode::Closed { duration } => (duration, None),
        Mode::Open { rate, duration } => (duration, Some(Duration::from_secs_f64(1.0 / rate))),
    };
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (next, make) = (next.clone(), make.clone());
        tasks.spawn(async move {
            let mut out = LoadResult::default();
            let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
                return out;
            };
            let _ = stream.set_nodelay(true);
            let Ok((mut sender, conn)) =
                hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream)).await
            else {
                return out;
            };
            tokio::spawn(conn);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let due = match interval {
                    Some(iv) => start + iv.mul_f64(i as f64),
                    None => Instant::now(),
                };
                if due.duration_since(start) >= duration || start.elapsed() >= duration {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                let (path, headers, body) = make(i);
                let mut req = hyper::Request::post(path).header("host", "bench");
                for (k, v) in headers {
                    req = req.header(k, v);
                }
                let req = req.body(Full::new(body)).expect("valid request");
                if sender.ready().await.is_err() {
                    out.failed += 1;
                    break;
                }
                match sender.send_request(req).await {
                    Ok(resp) => {
                        let ok = resp.status().is_success();
                        let _ = resp.into_body().collect().await;
                        if ok {
                            out.ok += 1;
                            out.latencies_us
                                .push(due.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        } else {
                            out.failed += 1;
                        }
                    }
                    Err(_) => {
                        out.failed += 1;
                        break;
                    }
                }
            }
            out
        });
    }
    let mut total = LoadResult::default();
    while let Some(r) = tasks.join_next().await {
        let r = r.expect("load task");
        total.ok += r.ok;
        total.failed += r.failed;
        total.latencies_us.extend(r.latencies_us);
    }
    total.elapsed = start.elapsed();
    total.latencies_us.sort_unstable();
    total
}
