//! A lean HTTP/1.1 load generator over keep-alive connections, in-process, cheap enough that the
//! server under test, not the generator, is what a measurement shows:
//!
//! - every request is built (signed, serialized to the bytes on the wire) before the run starts,
//!   so the hot path is one `write` and one `read` per request: no signing, no JSON, no HTTP
//!   client library;
//! - each request is sent once (distinct event ids: the broker stores every one, nothing is
//!   absorbed as a duplicate); a run ends when its duration is up or its requests are spent;
//! - it runs on one thread of its own and reports that thread's CPU time, so the report can show
//!   how much of a core the generator needed at the rate it measured.
//!
//! Closed loop: each connection sends its next request when the last one is answered
//! (saturation). Open loop: requests are due at a fixed rate and latency counts from when each was
//! due, so a stalled server cannot hide its queueing (no coordinated omission).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut as _, Bytes, BytesMut};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Requests as raw HTTP/1.1 bytes, each sent at most once per run.
#[derive(Clone, Default)]
pub struct Requests(Arc<Vec<Bytes>>);

impl Requests {
    pub fn new(requests: Vec<Bytes>) -> Self {
        Self(Arc::new(requests))
    }
}

/// One POST request as it goes on the wire.
pub fn raw_request(path: &str, headers: &[(String, String)], body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(body.len() + 512);
    out.put_slice(b"POST ");
    out.put_slice(path.as_bytes());
    out.put_slice(b" HTTP/1.1\r\nhost: bench\r\ncontent-length: ");
    out.put_slice(body.len().to_string().as_bytes());
    out.put_slice(b"\r\n");
    for (k, v) in headers {
        out.put_slice(k.as_bytes());
        out.put_slice(b": ");
        out.put_slice(v.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
    out.put_slice(body);
    out.freeze()
}

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
    /// CPU time the generator's thread used during the run.
    pub generator_cpu: Duration,
    /// True if the run ended because its requests were spent (not its duration).
    pub exhausted: bool,
    /// CPU time the server under test and nats-server used during the run, if measured.
    pub server_cpu: Option<Duration>,
    pub nats_cpu: Option<Duration>,
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

    /// CPU microseconds per answered request: server, nats-server, generator.
    pub fn cpu_us_per_request(&self) -> [Option<f64>; 3] {
        let per = |d: Duration| d.as_secs_f64() * 1e6 / (self.ok + self.failed).max(1) as f64;
        [
            self.server_cpu.map(per),
            self.nats_cpu.map(per),
            Some(per(self.generator_cpu)),
        ]
    }

    /// The share of one core the generator used while it ran.
    pub fn generator_cores(&self) -> f64 {
        self.generator_cpu.as_secs_f64() / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// [`run`], also measuring the CPU time of the server (`server_pid`) and nats-server.
pub async fn run_measured(
    addr: SocketAddr,
    server_pid: Option<u32>,
    nats_pid: Option<u32>,
    connections: usize,
    mode: Mode,
    requests: Requests,
) -> LoadResult {
    let (server, nats) = (server_pid.map(process_cpu), nats_pid.map(process_cpu));
    let mut result = run(addr, connections, mode, requests).await;
    result.server_cpu = server
        .zip(server_pid)
        .map(|(b, p)| process_cpu(p).saturating_sub(b));
    result.nats_cpu = nats
        .zip(nats_pid)
        .map(|(b, p)| process_cpu(p).saturating_sub(b));
    result
}

/// Sends `requests` to `addr` over `connections` keep-alive connections, on a thread of its own.
pub async fn run(
    addr: SocketAddr,
    connections: usize,
    mode: Mode,
    requests: Requests,
) -> LoadResult {
    tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("load generator runtime");
        let cpu_before = thread_cpu();
        let mut result = rt.block_on(drive(addr, connections, mode, requests));
        result.generator_cpu = thread_cpu().saturating_sub(cpu_before);
        result
    })
    .await
    .expect("load generator thread")
}

async fn drive(addr: SocketAddr, connections: usize, mode: Mode, requests: Requests) -> LoadResult {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let (duration, interval) = match mode {
        Mode::Closed { duration } => (duration, None),
        Mode::Open { rate, duration } => (duration, Some(Duration::from_secs_f64(1.0 / rate))),
    };
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (next, requests) = (next.clone(), requests.clone());
        tasks.spawn(async move {
            let mut out = LoadResult::default();
            let mut conn = connect(addr).await;
            let mut buf = BytesMut::with_capacity(4096);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(request) = requests.0.get(i) else {
                    out.exhausted = true;
                    break;
                };
                let due = match interval {
                    Some(iv) => start + iv.mul_f64(i as f64),
                    None => Instant::now(),
                };
                if due.duration_since(start) >= duration || start.elapsed() >= duration {
                    break;
                }
                if interval.is_some() {
                    tokio::time::sleep_until(due.into()).await;
                }
                let Some(stream) = conn.as_mut() else {
                    out.failed += 1;
                    break;
                };
                let answer = match stream.write_all(request).await {
                    Ok(()) => read_response(stream, &mut buf).await,
                    Err(e) => Err(e),
                };
                match answer {
                    Ok((status, keep_alive)) => {
                        if (200..300).contains(&status) {
                            out.ok += 1;
                            out.latencies_us
                                .push(due.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        } else {
                            out.failed += 1;
                        }
                        if !keep_alive {
                            conn = connect(addr).await;
                        }
                    }
                    Err(_) => {
                        out.failed += 1;
                        buf.clear();
                        conn = connect(addr).await;
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
        total.exhausted |= r.exhausted;
        total.latencies_us.extend(r.latencies_us);
    }
    total.elapsed = start.elapsed();
    total.latencies_us.sort_unstable();
    total
}

async fn connect(addr: SocketAddr) -> Option<TcpStream> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let _ = stream.set_nodelay(true);
    Some(stream)
}

/// Reads one response: its status, and whether the connection stays open. The body is read by
/// its `content-length` and dropped.
async fn read_response(stream: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<(u16, bool)> {
    loop {
        if let Some(head_end) = find(buf, b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..head_end]).map_err(invalid)?;
            let status: u16 = head
                .get(9..12)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| invalid("no status"))?;
            let (mut length, mut keep_alive) = (0usize, true);
            for line in head.split("\r\n").skip(1) {
                let Some((name, value)) = line.split_once(':') else {
                    continue;
                };
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().map_err(invalid)?;
                } else if name.eq_ignore_ascii_case("connection") {
                    keep_alive = !value.trim().eq_ignore_ascii_case("close");
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    return Err(invalid("chunked answers are not expected here"));
                }
            }
            let total = head_end + 4 + length;
            while buf.len() < total {
                if stream.read_buf(buf).await? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            }
            let _ = buf.split_to(total);
            return Ok((status, keep_alive));
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn invalid(e: impl ToString) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

/// CPU time (user + system) of the calling thread.
fn thread_cpu() -> Duration {
    stat_cpu("/proc/thread-self/stat")
}

/// CPU time (user + system) of process `pid`, all its threads.
pub fn process_cpu(pid: u32) -> Duration {
    stat_cpu(&format!("/proc/{pid}/stat"))
}

/// User + system time from a `/proc/…/stat` file (clock ticks, 100 per second on Linux). Zero
/// where that file does not exist.
fn stat_cpu(path: &str) -> Duration {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return Duration::ZERO;
    };
    // Fields after the command name (which is in parentheses and may hold spaces): state is
    // the first, utime the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_what_a_server_reads() {
        let raw = raw_request("/webhooks/x", &[("a".into(), "b".into())], b"{}");
        assert_eq!(
            &raw[..],
            b"POST /webhooks/x HTTP/1.1\r\nhost: bench\r\ncontent-length: 2\r\na: b\r\n\r\n{}"
        );
    }

    #[test]
    fn thread_cpu_grows_with_work() {
        let before = thread_cpu();
        let mut x = 0u64;
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(60) {
            x = x.wrapping_mul(31).wrapping_add(1);
        }
        std::hint::black_box(x);
        assert!(thread_cpu() > before);
    }
}
