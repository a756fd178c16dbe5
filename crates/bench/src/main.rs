//! hookline's benchmark harness. One command (`bench/run.sh`, or this binary next to release
//! builds of hookline-ingest and hookline-worker) starts a real nats-server and a durable
//! PostgreSQL, measures the real stack next to ceilings measured in the same run on the same
//! machine, and prints a table (also written as JSON, so runs can be compared):
//!
//! 0. what verifying one signature costs, per provider (and ed25519-dalek's `verify` beside it);
//! 1. per source (each built-in provider, a generic HMAC source): ingest at saturation and at
//!    10,000 req/s, vs a bare axum endpoint and a minimal publish-and-await-PubAck endpoint, all
//!    sent the same pre-signed requests by the same lean generator (`loadgen`), with the CPU
//!    each process used per request; then signed traffic through an unsigned flood;
//! 2. raw async-nats publish throughput with many PubAcks in flight;
//! 3. 1 and 2 workers into PostgreSQL, vs consume + bulk UPDATE alone and a naive
//!    one-UPDATE-per-event writer;
//! 4. end-to-end lag (accepted → committed) at a sustained 5,000 events/s;
//! 5. peak RSS of ingest and worker.
//!
//! Too long (1,650 lines, one 450-line function): the sections are to become a module each,
//! with the report, database and Prometheus helpers apart (`durable.rs` is the first).
#![forbid(unsafe_code)]

mod ceilings;
mod durable;
mod loadgen;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use bytes::Bytes;
use clap::{Parser, Subcommand};
use futures::StreamExt as _;
use hookline_core::providers::{
    built_in, BuiltIn, Provider as _, Sample, SampleStatus, Signer, Values,
};
use hookline_testkit::{free_port, NatsServer, Postgres, Service};
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use hookline_core::providers::generic::GenericSource;
use loadgen::{LoadResult, Mode, Requests};

#[derive(Parser)]
#[command(
    name = "hookline-bench",
    about = "hookline's benchmark harness (see docs/performance.md)"
)]
struct Cli {
    #[command(subcommand)]
    internal: Option<Internal>,

    /// Tiny counts and durations: checks every part runs (CI), measures nothing.
    #[arg(long)]
    smoke: bool,

    /// Seconds per HTTP measurement.
    #[arg(long, default_value_t = 8)]
    duration_secs: u64,

    /// Interleaved rounds of the saturation measurements; the median is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,

    /// Load generator connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,

    /// Distinct pre-signed requests per provider and round of the HTTP section; a round ends
    /// when they are spent or --duration-secs is up.
    #[arg(long, default_value_t = 150_000)]
    requests: usize,

    /// Events per worker measurement (two per message).
    #[arg(long, default_value_t = 100_000)]
    worker_events: u64,

    /// Rows of history in the event log for the lifecycle section (small bodies: what the
    /// comparison tests is index depth and partition count, not body bytes).
    #[arg(long, default_value_t = 50_000_000)]
    log_rows: u64,

    /// Days of history (one partition each) the lifecycle section's rows spread over.
    #[arg(long, default_value_t = 30)]
    log_days: u32,

    /// Only these sections (comma-separated: verify, http, durable, flood, broker, worker, e2e,
    /// lifecycle); default all but lifecycle (minutes of setup; the smoke run includes it). A partial
    /// run is printed but not written as latest.json.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,

    /// Whose webhooks the HTTP section sends (comma-separated source names); default: every
    /// built-in provider and a generic HMAC source.
    #[arg(long, value_delimiter = ',')]
    http_sources: Vec<String>,

    /// Whose webhooks the other sections send (a built-in provider's name; bench/run.sh says
    /// which by default).
    #[arg(long, env = "HOOKLINE_BENCH_PROVIDER")]
    provider: String,

    /// Where the JSON result goes (`latest.json` and a dated copy).
    #[arg(long, default_value = "bench/results")]
    out_dir: PathBuf,
}

#[derive(Subcommand)]
enum Internal {
    /// (internal) The bare-endpoint ceiling server.
    #[command(hide = true)]
    ServeBare { listen: SocketAddr },
    /// (internal) The minimal publish-endpoint ceiling server.
    #[command(hide = true)]
    ServePublish {
        listen: SocketAddr,
        nats_url: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new()?;
    match &cli.internal {
        Some(Internal::ServeBare { listen }) => rt.block_on(ceilings::serve_bare(*listen)),
        Some(Internal::ServePublish { listen, nats_url }) => {
            rt.block_on(ceilings::serve_publish(*listen, nats_url))
        }
        None => rt.block_on(bench(&cli)),
    }
}

/// One provider's webhooks as every measurement sends them, signed with fresh test keys exactly
/// as the provider signs them.
#[derive(Clone)]
struct Traffic {
    provider: &'static dyn BuiltIn,
    signer: Arc<dyn Signer>,
    /// The signing and verifying keys (ingest is started with these).
    keys: Values,
    /// When the events happened, for every event of the run: the bench's start, as live traffic
    /// is fresh (the dedup probe starts at an event's own time, so an old one would look like a
    /// retry and be looked for in every day of the window).
    at: String,
}

/// The message ids the bench uses are `bm-{n}`, a prefix no event id shares.
const MESSAGE_PREFIX: &str = "bm-";

impl Traffic {
    fn new(name: &str) -> anyhow::Result<Self> {
        let provider =
            built_in(name).with_context(|| format!("--provider {name}: no such provider"))?;
        let keys = provider.keygen();
        let signer = Arc::from(provider.signer(&keys)?);
        Ok(Self {
            provider,
            signer,
            keys,
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        })
    }

    /// Passes the keys to a child (ingest) as the environment variables its provider reads.
    fn configure(&self, cmd: &mut Command) {
        for (var, values) in self.keys.vars() {
            cmd.env(var, values.join(","));
        }
    }

    /// The `i`-th request of run `run`: a `sent` or `delivered` webhook for message
    /// `bm-{(i / 2) % messages}`, with a fresh event id, signed now.
    fn request(&self, run: &str, i: u64, messages: u64) -> Bytes {
        let (path, headers, body) = self.parts(run, i, messages);
        loadgen::raw_request(&path, &headers, &body)
    }

    /// The `i`-th request's path, headers and body.
    fn parts(&self, run: &str, i: u64, messages: u64) -> (String, Vec<(String, String)>, Bytes) {
        let (event_id, message_id, status) = bench_event(run, i, messages);
        let body = self
            .provider
            .sample(&Sample {
                event_id: &event_id,
                message_id: &message_id,
                status,
                at: &self.at,
            })
            .expect("the bench provider has sample bodies");
        let ts = chrono::Utc::now().timestamp();
        let mut headers = vec![
            ("content-type".into(), "application/json".into()),
            (ceilings::EVENT_ID_HEADER.into(), event_id.clone()),
        ];
        headers.extend(self.signer.sign(&event_id, body.as_bytes(), ts));
        (
            format!("/webhooks/{}", self.provider.name()),
            headers,
            Bytes::from(body),
        )
    }
}

/// Event id, message id and status of the `i`-th event of run `run`.
fn bench_event(run: &str, i: u64, messages: u64) -> (String, String, SampleStatus) {
    let status = if i % 2 == 0 {
        SampleStatus::Sent
    } else {
        SampleStatus::Delivered
    };
    (
        format!("be_{run}_{i}"),
        format!("{MESSAGE_PREFIX}{}", (i / 2) % messages.max(1)),
        status,
    )
}

/// A generic HMAC source (the GitHub-style example shipped in `examples/`), as the HTTP section
/// sends it: the generic scheme next to the built-in ones.
struct GenericTraffic {
    source: GenericSource,
    secret: String,
}

const GENERIC_EXAMPLE: &str = include_str!("../../../examples/github-style.toml");

impl GenericTraffic {
    fn new() -> anyhow::Result<Self> {
        let configs = hookline_core::providers::generic::parse_sources(GENERIC_EXAMPLE)
            .map_err(anyhow::Error::msg)?;
        let config = configs.first().context("the example declares a source")?;
        let secret = format!("bench-secret-{}", std::process::id());
        let source = GenericSource::new(config, vec![secret.clone().into_bytes()])
            .map_err(anyhow::Error::msg)?;
        Ok(Self { source, secret })
    }

    fn request(&self, run: &str, i: u64, messages: u64) -> Bytes {
        let (event_id, message_id, status) = bench_event(run, i, messages);
        let status = match status {
            SampleStatus::Sent => "sent",
            _ => "delivered",
        };
        let body = json!({"message": {"id": message_id, "status": status, "updated_at": "2026-11-23T10:00:00.000Z"}})
            .to_string();
        let mut headers: Vec<(String, String)> = vec![
            ("content-type".into(), "application/json".into()),
            (ceilings::EVENT_ID_HEADER.into(), event_id.clone()),
            ("x-github-delivery".into(), event_id),
            ("x-github-event".into(), "message_status".into()),
        ];
        let (header, _) = self.source.signature_headers();
        let signature = self
            .source
            .sign(self.secret.as_bytes(), &headers, "", body.as_bytes())
            .expect("the example's template names no header");
        headers.push((header.into(), signature));
        loadgen::raw_request(
            &format!("/webhooks/{}", self.source.name()),
            &headers,
            body.as_bytes(),
        )
    }
}

/// Whose webhooks a measurement of the HTTP section sends.
enum Sender {
    BuiltIn(Traffic),
    Generic(Box<GenericTraffic>),
}

impl Sender {
    fn all() -> anyhow::Result<Vec<Sender>> {
        let mut out: Vec<Sender> = hookline_core::providers::BUILT_IN
            .iter()
            .map(|p| Traffic::new(p.name()).map(Sender::BuiltIn))
            .collect::<anyhow::Result<_>>()?;
        out.push(Sender::Generic(Box::new(GenericTraffic::new()?)));
        Ok(out)
    }

    fn name(&self) -> &str {
        match self {
            Sender::BuiltIn(t) => t.provider.name(),
            Sender::Generic(g) => g.source.name(),
        }
    }

    /// What a scheme this is, for the table.
    fn scheme(&self) -> String {
        match self {
            Sender::BuiltIn(t) => t.provider.scheme().to_owned(),
            Sender::Generic(_) => "generic HMAC-SHA256 source".to_owned(),
        }
    }

    /// Gives an ingest process what it needs to verify this sender's webhooks.
    fn configure(&self, cmd: &mut Command, logs: &Path) -> anyhow::Result<()> {
        match self {
            Sender::BuiltIn(t) => t.configure(cmd),
            Sender::Generic(g) => {
                let file = logs.join("generic-sources.toml");
                std::fs::write(&file, GENERIC_EXAMPLE)?;
                cmd.env("HOOKLINE_SOURCES_FILE", file)
                    .env("GITHUB_WEBHOOK_SECRET", &g.secret);
            }
        }
        Ok(())
    }

    /// `count` requests of run `run`, built and signed before they are sent.
    fn build(&self, run: &str, count: usize, messages: u64) -> Requests {
        build(count, |i| match self {
            Sender::BuiltIn(t) => t.request(run, i, messages),
            Sender::Generic(g) => g.request(run, i, messages),
        })
    }
}

/// `count` requests made by `make`, on every core.
fn build(count: usize, make: impl Fn(u64) -> Bytes + Sync) -> Requests {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = count.div_ceil(threads).max(1);
    let make = &make;
    let parts: Vec<Vec<Bytes>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..count)
            .step_by(chunk)
            .map(|from| {
                let to = (from + chunk).min(count);
                scope.spawn(move || (from..to).map(|i| make(i as u64)).collect())
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("request builder"))
            .collect()
    });
    Requests::new(parts.into_iter().flatten().collect())
}

struct Bins {
    dir: PathBuf,
}

impl Bins {
    fn find() -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let dir = exe.parent().context("no parent")?.to_path_buf();
        for b in ["hookline-ingest", "hookline-worker"] {
            anyhow::ensure!(
                dir.join(b).is_file(),
                "{} not found next to hookline-bench: build it first (bench/run.sh does: cargo build --release -p hookline-ingest -p hookline-worker -p hookline-bench)",
                dir.join(b).display()
            );
        }
        Ok(Self { dir })
    }

    fn cmd(&self, name: &str) -> Command {
        let mut c = Command::new(self.dir.join(name));
        c.env("RUST_LOG", "warn");
        c
    }
}

async fn wait_http(addr: SocketAddr, path: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("http://{addr}{path}")).send().await {
            if r.status().is_success() || r.status().as_u16() == 405 {
                return Ok(());
            }
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "http://{addr}{path} never answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A value from a Prometheus text exposition: the sum over all series of `name` (with labels).
async fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
    Ok(reqwest::get(format!("http://{addr}/metrics"))
        .await?
        .text()
        .await?)
}

fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// p-quantile of a Prometheus histogram (linear within the bucket, as `histogram_quantile`).
fn histogram_quantile(text: &str, name: &str, q: f64) -> f64 {
    let mut buckets: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}_bucket")))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last().map_or(0.0, |b| b.1);
    if total == 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for (le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return lower;
            }
            return lower + (le - lower) * (rank - below) / (count - below).max(1e-9);
        }
        lower = le;
        below = count;
    }
    lower
}

/// Starts `serve-bare`/`serve-publish` (this binary) or a hookline binary and waits for it.
async fn spawn_server(
    mut cmd: Command,
    name: &'static str,
    logs: &Path,
    addr: SocketAddr,
    ready: &str,
) -> anyhow::Result<Service> {
    let service = Service::spawn(name, &mut cmd, logs.join(format!("{name}.log")));
    wait_http(addr, ready).await?;
    Ok(service)
}

fn self_cmd(args: &[String]) -> anyhow::Result<Command> {
    let mut c = Command::new(std::env::current_exe()?);
    c.args(args);
    Ok(c)
}

struct Ctx {
    traffic: Traffic,
    cli_connections: usize,
    bins: Bins,
    nats: NatsServer,
    pg: Postgres,
    logs: tempfile_dir::Dir,
}

mod tempfile_dir {
    /// A temp folder for the children's logs, kept if the run fails.
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> Self {
            let p = std::env::temp_dir().join(format!("hookline-bench-{}", std::process::id()));
            std::fs::create_dir_all(&p).expect("log dir");
            Self(p)
        }
    }
}

async fn bench(cli: &Cli) -> anyhow::Result<()> {
    let (duration, worker_events) = if cli.smoke {
        (Duration::from_secs(1), 2_000)
    } else {
        (Duration::from_secs(cli.duration_secs), cli.worker_events)
    };
    let ctx = Ctx {
        traffic: Traffic::new(&cli.provider)?,
        cli_connections: if cli.smoke { 8 } else { cli.connections },
        bins: Bins::find()?,
        nats: NatsServer::start(),
        pg: Postgres::start_durable(),
        logs: tempfile_dir::Dir::new(),
    };
    let started = Instant::now();
    eprintln!(
        "hookline-bench: nats {}, PostgreSQL (durable) on {}, logs in {}",
        ctx.nats.url(),
        ctx.pg.port,
        ctx.logs.0.display()
    );
    let mut results = serde_json::Map::new();

    let want = |section: &str| {
        cli.only.iter().any(|o| o == section)
            || (cli.only.is_empty() && (section != "lifecycle" || cli.smoke))
    };
    let js = jetstream::new(async_nats::connect(ctx.nats.url()).await?);
    let (mut ingest_rss, mut worker_rss, mut e2e_ingest_rss, mut e2e_worker_rss) =
        (0u64, 0u64, 0u64, 0u64);
    if want("verify") {
        // 0. What verifying one signature costs, per provider, on one thread: the part of
        // ingest's work that differs between providers. Next to it, ed25519-dalek's own
        // `verify` on the same Ed25519 requests (what ingest used before it precomputed the
        // key's table; it also accepts an `R` that libsodium rejects). Interleaved rounds, median.
        eprintln!("[0/5] verify: one signature at a time, per provider…");
        let rounds = if cli.smoke { 1 } else { 7 };
        let now = chrono::Utc::now().timestamp();
        let mut costs = serde_json::Map::new();
        for provider in hookline_core::providers::BUILT_IN {
            let t = Traffic::new(provider.name())?;
            let verifier = provider
                .configure(&t.keys, 300)?
                .context("keygen's values configure the provider")?;
            let requests: Vec<_> = (0..1_000).map(|i| t.parts("verify", i, 1_000)).collect();
            // The reference applies where a request carries a timestamp and an Ed25519 signature
            // of "timestamp|body" under the keys keygen made.
            let reference = reference_ed25519(&t.keys, &requests);
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            for _ in 0..rounds {
                let started = Instant::now();
                for (_, headers, body) in &requests {
                    verifier.verify(headers, body, now)?;
                }
                ours.push(started.elapsed().as_secs_f64() * 1e6 / requests.len() as f64);
                if let Some(reference) = &reference {
                    let started = Instant::now();
                    reference()?;
                    theirs.push(started.elapsed().as_secs_f64() * 1e6 / requests.len() as f64);
                }
            }
            costs.insert(
                provider.name().into(),
                json!({"scheme": provider.scheme(), "us_per_verify": median_f64(ours), "dalek_verify_us": if theirs.is_empty() { Value::Null } else { json!(median_f64(theirs)) }}),
            );
        }
        results.insert("verify".into(), Value::Object(costs));
    }

    if want("http") {
        // 1. Ingest and its two ceilings, each a separate process, sent the same pre-signed
        // requests by the same lean generator, per provider, interleaved over several rounds (the
        // median counts: this box is noisy).
        let rounds = if cli.smoke { 1 } else { cli.rounds.max(1) };
        let per_round = if cli.smoke { 2_000 } else { cli.requests };
        let senders: Vec<Sender> = Sender::all()?
            .into_iter()
            .filter(|s| {
                cli.http_sources.is_empty() || cli.http_sources.iter().any(|n| n == s.name())
            })
            .collect();
        anyhow::ensure!(!senders.is_empty(), "--http-sources names no source");
        eprintln!(
            "[1/5] HTTP: bare endpoint, minimal publish endpoint, ingest; {} ({rounds} rounds of up to {per_round} requests or {} s each, {} connections)…",
            senders.iter().map(Sender::name).collect::<Vec<_>>().join(", "),
            duration.as_secs(),
            ctx.cli_connections
        );
        let bare_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let bare_srv = spawn_server(
            self_cmd(&["serve-bare".into(), bare_addr.to_string()])?,
            "bare",
            &ctx.logs.0,
            bare_addr,
            "/webhooks/x",
        )
        .await?;
        let publish_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let publish_srv = spawn_server(
            self_cmd(&[
                "serve-publish".into(),
                publish_addr.to_string(),
                ctx.nats.url(),
            ])?,
            "publish",
            &ctx.logs.0,
            publish_addr,
            "/webhooks/x",
        )
        .await?;
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let mut cmd = ctx.bins.cmd("hookline-ingest");
        for s in &senders {
            s.configure(&mut cmd, &ctx.logs.0)?;
        }
        cmd.env("NATS_URL", ctx.nats.url())
            .env("HOOKLINE_LISTEN", addr.to_string())
            .env("HOOKLINE_STREAM", "INGEST_BENCH")
            .env("HOOKLINE_STREAM_MAX_BYTES", (16u64 << 30).to_string());
        let ingest = spawn_server(cmd, "hookline-ingest", &ctx.logs.0, addr, "/readyz").await?;
        let closed = Mode::Closed { duration };
        let mut runs: Vec<[Vec<LoadResult>; 3]> =
            senders.iter().map(|_| Default::default()).collect();
        for round in 0..rounds {
            for (s, runs) in senders.iter().zip(&mut runs) {
                let requests = s.build(&format!("r{round}"), per_round, worker_events / 2);
                let targets = [
                    (bare_addr, bare_srv.pid()),
                    (publish_addr, publish_srv.pid()),
                    (addr, ingest.pid()),
                ];
                for (i, (target, pid)) in targets.into_iter().enumerate() {
                    let r = loadgen::run_measured(
                        target,
                        pid,
                        ctx.nats.pid(),
                        ctx.cli_connections,
                        closed,
                        requests.clone(),
                    )
                    .await;
                    runs[i].push(r);
                }
            }
        }
        // Open loop over more connections, as many providers' senders would be: a slow answer
        // on one connection must not hold up requests due on others. The publish endpoint at
        // the same rate shows what the box allows.
        let rate = if cli.smoke { 500.0 } else { 10_000.0 };
        let open = Mode::Open { rate, duration };
        let open_connections = ctx.cli_connections.max(if cli.smoke { 8 } else { 256 });
        let open_count = (rate * duration.as_secs_f64()) as usize;
        drop(bare_srv);
        let mut providers = serde_json::Map::new();
        for (s, runs) in senders.iter().zip(runs) {
            let [bare, publish, saturated] = runs.map(median);
            // Interleaved rounds from emptied streams, the median p99 of each: nats-server
            // writes its dirty file-store pages out every two minutes (`sync_interval`), and
            // a single run that meets that write is no comparison.
            let (mut publish_runs, mut ingest_runs) = (Vec::new(), Vec::new());
            for round in 0..rounds {
                for stream in ["CEILING", "INGEST_BENCH"] {
                    js.get_stream(stream).await?.purge().await?;
                }
                let requests = s.build(&format!("open{round}"), open_count, worker_events / 2);
                publish_runs.push(
                    loadgen::run(publish_addr, open_connections, open, requests.clone()).await,
                );
                ingest_runs.push(loadgen::run(addr, open_connections, open, requests).await);
            }
            let (publish_open, ingest_open) = (median_p99(publish_runs), median_p99(ingest_runs));
            providers.insert(
                s.name().to_owned(),
                json!({
                    "scheme": s.scheme(),
                    "bare_endpoint": http(&bare),
                    "publish_endpoint": http(&publish),
                    "ingest_saturated": http(&saturated),
                    "ratio_to_publish_endpoint": saturated.rate() / publish.rate(),
                    "ratio_to_bare_endpoint": saturated.rate() / bare.rate(),
                    "open_rate": rate,
                    "publish_endpoint_open": http(&publish_open),
                    "ingest_open": http(&ingest_open),
                    "open_p99_ratio": ingest_open.percentile_ms(0.99) / publish_open.percentile_ms(0.99),
                }),
            );
        }
        drop(publish_srv);
        ingest_rss = ingest.memory_kib().map_or(0, |m| m.1);
        drop(ingest);
        results.insert(
            "ingest".into(),
            json!({
                "rounds": rounds,
                "requests_per_round": per_round,
                "generator": "in-process, pre-signed raw HTTP/1.1 on one thread (crates/bench/src/loadgen.rs)",
                "providers": providers,
                "peak_rss_kib": ingest_rss,
            }),
        );
        js.delete_stream("INGEST_BENCH").await?;
        let _ = js.delete_stream("CEILING").await;
    }

    if want("durable") {
        eprintln!(
            "[1/5] durable acks: ingest with nats-server's default sync and with sync_interval: always, at several connection counts…"
        );
        let per_run = if cli.smoke { 500 } else { cli.requests };
        results.insert(
            "durable_acks".into(),
            durable::measure(&ctx, duration, per_run, worker_events / 2, cli.smoke).await?,
        );
    }

    if want("flood") {
        // 1b. Signed webhooks through an unsigned flood, against the same traffic without one.
        let cap = 256usize;
        eprintln!(
            "[1/5] flood: signed webhooks for {} s without, then with, {} stalled maximum-size bodies and 8 garbage-signed clients from other addresses…",
            duration.as_secs(),
            5 * cap
        );
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let mut cmd = ctx.bins.cmd("hookline-ingest");
        ctx.traffic.configure(&mut cmd);
        cmd.env("NATS_URL", ctx.nats.url())
            .env("HOOKLINE_LISTEN", addr.to_string())
            .env("HOOKLINE_STREAM", "FLOOD_BENCH")
            .env("HOOKLINE_STREAM_MAX_BYTES", (8u64 << 30).to_string())
            .env("HOOKLINE_MAX_INFLIGHT_REQUESTS", cap.to_string());
        let ingest =
            spawn_server(cmd, "hookline-ingest-flood", &ctx.logs.0, addr, "/readyz").await?;
        let connections = 16;
        let mode = Mode::Closed { duration };
        let signed = if cli.smoke { 2_000 } else { cli.requests };
        let calm = loadgen::run(
            addr,
            connections,
            mode,
            build(signed, |i| {
                ctx.traffic.request("calm", i, worker_events / 2)
            }),
        )
        .await;
        let hostile = hookline_testkit::flood::Flood {
            stalled: if cli.smoke { 40 } else { 5 * cap },
            stalled_from: (2..8).map(hookline_testkit::flood::loopback).collect(),
            garbage: 8,
            garbage_from: vec![
                hookline_testkit::flood::loopback(20),
                hookline_testkit::flood::loopback(21),
            ],
            body_limit: 256 * 1024,
        };
        let until = Instant::now() + duration + Duration::from_secs(1);
        // The flood runs on its own thread and runtime, so it competes with the signed traffic's
        // generator for CPU the way another client would, not inside its task queue.
        let flood = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("flood runtime")
                .block_on(hookline_testkit::flood::run(&hostile, addr, until))
        });
        // Let the flood build up before measuring.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let flooded = loadgen::run(
            addr,
            connections,
            mode,
            build(signed, |i| {
                ctx.traffic.request("flooded", i, worker_events / 2)
            }),
        )
        .await;
        let flood_answers = flood.join().expect("the flood thread");
        let flood_rss = ingest.memory_kib().map_or(0, |m| m.1);
        drop(ingest);
        let _ = js.delete_stream("FLOOD_BENCH").await;
        results.insert(
            "flood".into(),
            json!({
                "signed_without_flood": http(&calm),
                "signed_with_flood": http(&flooded),
                "throughput_ratio": flooded.rate() / calm.rate(),
                "p99_ratio": flooded.percentile_ms(0.99) / calm.percentile_ms(0.99),
                "flood_requests": flood_answers.values().sum::<u64>(),
                "flood_answers": flood_answers.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
                "ingest_peak_rss_kib": flood_rss,
            }),
        );
    }

    if want("broker") {
        // 2. The broker alone.
        eprintln!("[2/5] broker: raw async-nats publish…");
        let broker_msgs = if cli.smoke { 2_000 } else { 200_000 };
        let broker = ceilings::broker_publish(&ctx.nats.url(), broker_msgs, 4096).await?;
        results.insert(
            "broker".into(),
            json!({"publish_msg_per_s": broker.round(), "acks_in_flight": 4096}),
        );
    }

    let admin = pool(&ctx.pg, "postgres", 1).await?;
    if want("worker") || want("e2e") || want("lifecycle") {
        // 3. Workers and their ceilings.
        eprintln!(
            "[3/5] worker: registering {} recipients…",
            worker_events / 2
        );
        sqlx::query("CREATE DATABASE bench_template")
            .execute(&admin)
            .await?;
        {
            let tpl = pool(&ctx.pg, "bench_template", 2).await?;
            hookline_store::migrate::run_on(&tpl).await?;
            register(&tpl, ctx.traffic.provider.name(), worker_events / 2).await?;
            tpl.close().await;
        }
    }
    if want("worker") {
        let mut worker_runs = serde_json::Map::new();
        for workers in [1usize, 2] {
            eprintln!("[3/5] worker: {workers} worker(s) draining {worker_events} events…");
            let db = fresh_db(&admin, &format!("workers_{workers}")).await?;
            prefill(&js, &ctx.traffic, worker_events).await?;
            let (rate, rss) = run_workers(&ctx, &db, workers, worker_events).await?;
            worker_rss = worker_rss.max(rss);
            worker_runs.insert(
                format!("workers_{workers}"),
                json!({"events_per_s": rate.round()}),
            );
        }
        eprintln!("[3/5] ceilings: consume + bulk UPDATE, and one UPDATE per event…");
        let db = fresh_db(&admin, "raw").await?;
        prefill(&js, &ctx.traffic, worker_events).await?;
        let raw_pool = pool(&ctx.pg, &db, 1).await?;
        let raw = ceilings::consume_with(&js, "WEBHOOKS", worker_events, |ids| {
            ceilings::bulk_update(&raw_pool, ctx.traffic.provider.name(), ids)
        })
        .await?;
        let naive_events = worker_events.min(if cli.smoke { 500 } else { 10_000 });
        let db = fresh_db(&admin, "naive").await?;
        prefill(&js, &ctx.traffic, naive_events).await?;
        let naive_pool = pool(&ctx.pg, &db, 1).await?;
        let naive = ceilings::consume_with(&js, "WEBHOOKS", naive_events, |ids| {
            ceilings::one_by_one(&naive_pool, ctx.traffic.provider.name(), ids)
        })
        .await?;
        let one = worker_runs["workers_1"]["events_per_s"]
            .as_f64()
            .unwrap_or(0.0);
        worker_runs.insert("raw_ceiling_events_per_s".into(), json!(raw.round()));
        worker_runs.insert("naive_events_per_s".into(), json!(naive.round()));
        worker_runs.insert("ratio_to_raw".into(), json!(one / raw));
        worker_runs.insert("ratio_to_naive".into(), json!(one / naive));
        results.insert("worker".into(), Value::Object(worker_runs));
    }

    if want("e2e") {
        // 4. End-to-end lag at a sustained rate, ingest and one worker together.
        let rate = if cli.smoke { 200.0 } else { 5_000.0 };
        eprintln!(
            "[4/5] end to end: {rate} events/s for {} s through ingest and one worker…",
            duration.as_secs()
        );
        let db = fresh_db(&admin, "e2e").await?;
        let _ = js.delete_stream("WEBHOOKS").await;
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let mut cmd = ctx.bins.cmd("hookline-ingest");
        ctx.traffic.configure(&mut cmd);
        cmd.env("NATS_URL", ctx.nats.url())
            .env("HOOKLINE_LISTEN", addr.to_string());
        let ingest = spawn_server(cmd, "hookline-ingest-e2e", &ctx.logs.0, addr, "/readyz").await?;
        let (worker, worker_addr) = start_worker(&ctx, &db, 0).await?;
        let load = loadgen::run(
            addr,
            ctx.cli_connections,
            Mode::Open { rate, duration },
            build((rate * duration.as_secs_f64()) as usize + 1, |i| {
                ctx.traffic.request("e2e", i, worker_events / 2)
            }),
        )
        .await;
        let target = load.ok as f64;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut text = scrape(worker_addr).await?;
        while metric_sum(&text, "webhook_processed_total") < target && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            text = scrape(worker_addr).await?;
        }
        e2e_ingest_rss = ingest.memory_kib().map_or(0, |m| m.1);
        e2e_worker_rss = worker.memory_kib().map_or(0, |m| m.1);
        results.insert(
            "end_to_end".into(),
            json!({
                "rate": rate,
                "accepted": load.ok,
                "refused": load.failed,
                "http_p99_ms": load.percentile_ms(0.99),
                "lag_p50_ms": histogram_quantile(&text, "webhook_end_to_end_seconds", 0.5) * 1000.0,
                "lag_p99_ms": histogram_quantile(&text, "webhook_end_to_end_seconds", 0.99) * 1000.0,
                "processed": metric_sum(&text, "webhook_processed_total"),
                "ingest_peak_rss_kib": e2e_ingest_rss,
                "worker_peak_rss_kib": e2e_worker_rss,
            }),
        );
        drop(worker);
        drop(ingest);
    }

    if want("lifecycle") {
        let (rows, days) = if cli.smoke {
            (20_000, 4)
        } else {
            (cli.log_rows, cli.log_days.max(2))
        };
        results.insert(
            "lifecycle".into(),
            lifecycle(&ctx, &admin, &js, worker_events, rows, days).await?,
        );
    }

    // 5. Peak RSS over the whole run.
    results.insert(
        "rss".into(),
        json!({
            "ingest_peak_kib": ingest_rss.max(e2e_ingest_rss),
            "worker_peak_kib": worker_rss.max(e2e_worker_rss),
        }),
    );
    let report = json!({
        "date": chrono::Utc::now().to_rfc3339(),
        "machine": machine(),
        "smoke": cli.smoke,
        "duration_secs": duration.as_secs(),
        "connections": ctx.cli_connections,
        "worker_events": worker_events,
        "took_secs": started.elapsed().as_secs(),
        "results": results,
    });
    print_table(&report);
    std::fs::create_dir_all(&cli.out_dir)?;
    let name = if cli.smoke {
        "smoke.json".to_owned()
    } else {
        format!("{}.json", chrono::Utc::now().format("%Y-%m-%dT%H%M%SZ"))
    };
    let text = serde_json::to_string_pretty(&report)?;
    std::fs::write(cli.out_dir.join(&name), &text)?;
    if !cli.smoke && cli.only.is_empty() {
        std::fs::write(cli.out_dir.join("latest.json"), &text)?;
    }
    eprintln!("Wrote {}", cli.out_dir.join(name).display());
    let _ = std::fs::remove_dir_all(&ctx.logs.0);
    Ok(())
}

fn median_f64(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// ed25519-dalek's `verify` over `requests`, if they are Ed25519-signed "timestamp|body" under a
/// public key in `keys` (a 32-byte base64 value the first request's signature checks against).
#[allow(clippy::type_complexity)]
fn reference_ed25519<'a>(
    keys: &Values,
    requests: &'a [(String, Vec<(String, String)>, Bytes)],
) -> Option<Box<dyn Fn() -> anyhow::Result<()> + 'a>> {
    use ed25519_dalek::Verifier as _;
    fn decoded(v: &str) -> Option<Vec<u8>> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.decode(v).ok()
    }
    fn signature_of(headers: &[(String, String)]) -> Option<ed25519_dalek::Signature> {
        headers.iter().find_map(|(_, v)| {
            let raw: [u8; 64] = decoded(v)?.try_into().ok()?;
            Some(ed25519_dalek::Signature::from_bytes(&raw))
        })
    }
    fn timestamp_of(headers: &[(String, String)]) -> Option<&str> {
        headers
            .iter()
            .find(|(_, v)| v.len() == 10 && v.bytes().all(|b| b.is_ascii_digit()))
            .map(|(_, v)| v.as_str())
    }
    fn message(ts: &str, body: &[u8]) -> Vec<u8> {
        [ts.as_bytes(), b"|", body].concat()
    }
    let (_, headers, body) = requests.first()?;
    let key = keys.vars().find_map(|(_, values)| {
        let raw: [u8; 32] = decoded(values.first()?)?.try_into().ok()?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&raw).ok()?;
        let signed = message(timestamp_of(headers)?, body);
        key.verify(&signed, &signature_of(headers)?).ok()?;
        Some(key)
    })?;
    Some(Box::new(move || {
        for (_, headers, body) in requests {
            let ts = timestamp_of(headers).context("a timestamp")?;
            let sig = signature_of(headers).context("a signature")?;
            key.verify(&message(ts, body), &sig)?;
        }
        Ok(())
    }))
}

/// The run with the median request rate.
/// The run with the median p99 latency.
fn median_p99(mut runs: Vec<LoadResult>) -> LoadResult {
    runs.sort_by(|a, b| a.percentile_ms(0.99).total_cmp(&b.percentile_ms(0.99)));
    runs.swap_remove(runs.len() / 2)
}

fn median(mut runs: Vec<LoadResult>) -> LoadResult {
    runs.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
    runs.swap_remove(runs.len() / 2)
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    json!({"cpus": std::thread::available_parallelism().map_or(0, |n| n.get()), "cpu_model": model})
}

async fn pool(pg: &Postgres, db: &str, size: u32) -> anyhow::Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(size)
        .connect(&format!("postgres://postgres@127.0.0.1:{}/{db}", pg.port))
        .await?)
}

/// A new database copied from the registered template (a file copy: fast).
async fn fresh_db(admin: &PgPool, name: &str) -> anyhow::Result<String> {
    sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE bench_template"))
        .execute(admin)
        .await?;
    Ok(name.to_owned())
}

/// Registers `messages` recipients `bm-0…` of `provider` in one batch, 10,000 per INSERT.
async fn register(pool: &PgPool, provider: &str, messages: u64) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO batches (id, name) VALUES ('00000000-0000-0000-0000-000000000001', 'bench')",
    )
    .execute(pool)
    .await?;
    let mut from = 0;
    while from < messages {
        let to = (from + 10_000).min(messages);
        sqlx::query(
            "INSERT INTO recipients (batch_id, provider, provider_message_id) \
             SELECT '00000000-0000-0000-0000-000000000001', $3, $4 || i FROM generate_series($1::bigint, $2::bigint - 1) i",
        )
        .bind(from as i64)
        .bind(to as i64)
        .bind(provider)
        .bind(MESSAGE_PREFIX)
        .execute(pool)
        .await?;
        from = to;
    }
    Ok(())
}

/// A fresh WEBHOOKS stream holding `events` stored webhooks (two per message), as ingest would
/// have stored them.
async fn prefill(js: &jetstream::Context, traffic: &Traffic, events: u64) -> anyhow::Result<()> {
    prefill_run(js, traffic, events, "prefill").await
}

/// As `prefill`, with the event ids of run `run` (so that a second fill is new events).
async fn prefill_run(
    js: &jetstream::Context,
    traffic: &Traffic,
    events: u64,
    run: &str,
) -> anyhow::Result<()> {
    let _ = js.delete_stream("WEBHOOKS").await;
    let mut args = <StreamOnly as Parser>::parse_from(["x"]).stream;
    args.stream_max_bytes = 8 << 30;
    hookline_jetstream::ensure_stream(js, &args, hookline_jetstream::Ownership::Manage).await?;
    let decoder = traffic.provider.decoder();
    let acks = futures::stream::iter(0..events)
        .map(|i| {
            let (_, headers, body) = traffic.parts(run, i, (events / 2).max(1));
            let envelope = decoder.envelope(&headers, &body);
            let mut h = async_nats::HeaderMap::new();
            for (k, v) in &headers {
                if decoder.forwarded_headers().contains(&k.as_str()) {
                    h.insert(k.as_str(), v.as_str());
                }
            }
            let js = js.clone();
            let name = traffic.provider.name();
            async move {
                let event = hookline_jetstream::Outgoing {
                    provider: name,
                    event_type: envelope.event_type.as_deref(),
                    dedup_key: envelope.event_id.as_deref(),
                    headers: h,
                    body,
                };
                hookline_jetstream::publish_event(&js, event).await?.await
            }
        })
        .buffer_unordered(4096);
    let results: Vec<_> = acks.collect().await;
    anyhow::ensure!(results.iter().all(|r| r.is_ok()), "prefill publish failed");
    Ok(())
}

#[derive(Parser)]
struct StreamOnly {
    #[command(flatten)]
    stream: hookline_jetstream::StreamArgs,
}

async fn start_worker(ctx: &Ctx, db: &str, n: usize) -> anyhow::Result<(Service, SocketAddr)> {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
    let mut cmd = ctx.bins.cmd("hookline-worker");
    cmd.env("NATS_URL", ctx.nats.url())
        .env(
            "DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:{}/{db}", ctx.pg.port),
        )
        .env("HOOKLINE_WORKER_LISTEN", addr.to_string());
    let name: &'static str = ["hookline-worker-0", "hookline-worker-1"][n.min(1)];
    let s = spawn_server(cmd, name, &ctx.logs.0, addr, "/healthz").await?;
    Ok((s, addr))
}

/// Starts `n` workers on a prefilled stream; events/s between 5 % and 95 % stored, peak RSS.
async fn run_workers(ctx: &Ctx, db: &str, n: usize, events: u64) -> anyhow::Result<(f64, u64)> {
    let pool = pool(&ctx.pg, db, 1).await?;
    // Rows received from now on: the log may hold history (the lifecycle section).
    let since: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT now()").fetch_one(&pool).await?;
    let mut workers = Vec::new();
    for i in 0..n {
        workers.push(start_worker(ctx, db, i).await?);
    }
    let (lo, hi) = (events as f64 * 0.05, events as f64 * 0.95);
    let (mut t_lo, mut t_hi) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(600);
    while t_hi.is_none() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "workers did not drain within 10 minutes"
        );
        let mut stored = 0.0;
        for (_, addr) in &workers {
            stored += metric_sum(&scrape(*addr).await?, "webhook_processed_total");
        }
        if stored >= lo && t_lo.is_none() {
            t_lo = Some(Instant::now());
        }
        if stored >= hi {
            t_hi = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rate = (hi - lo) / t_hi.unwrap().duration_since(t_lo.unwrap()).as_secs_f64();
    let rss = workers
        .iter()
        .filter_map(|(w, _)| w.memory_kib())
        .map(|m| m.1)
        .max()
        .unwrap_or(0);
    let text = scrape(workers[0].1).await?;
    let stages: Vec<String> = ["fetch", "decode", "db_write", "ack"]
        .iter()
        .map(|stage| {
            let sum = format!("webhook_stage_duration_seconds_sum{{stage=\"{stage}\"}}");
            let n = format!("webhook_stage_duration_seconds_count{{stage=\"{stage}\"}}");
            let mean = metric_sum(&text, &sum) / metric_sum(&text, &n).max(1.0);
            format!("{stage} {:.2} ms", 1000.0 * mean)
        })
        .collect();
    eprintln!("      worker 0, mean per batch: {}", stages.join(", "));
    // Let them finish, then check the result is right, not just fast.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stored: i64 =
            sqlx::query_scalar("SELECT count(*) FROM delivery_events WHERE received_at >= $1")
                .bind(since)
                .fetch_one(&pool)
                .await?;
        if stored as u64 >= events {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {stored} of {events} events stored"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bad = hookline_store::queries::counter_mismatches(&pool).await?;
    anyhow::ensure!(bad.is_empty(), "counters differ from a recount in {bad:?}");
    let delivered: i64 = sqlx::query_scalar("SELECT delivered_count::bigint FROM batches")
        .fetch_one(&pool)
        .await?;
    anyhow::ensure!(
        delivered as u64 == events / 2,
        "{delivered} delivered, expected {}",
        events / 2
    );
    Ok((rate, rss))
}

/// Recipients registered in one transaction by the registration measurement, half of them with
/// an early event waiting.
const REGISTERED: i64 = 20_000;

/// Seconds to register `REGISTERED` recipients of a new batch in one transaction, half of whose
/// messages already have a `delivered` event stored, noted in `early_messages` as a worker leaves
/// it: registration's commit pass looks those up in the log and applies them. Checked: exactly
/// that half is delivered and the counters equal a recount.
async fn registration(ctx: &Ctx, db: &str, tag: &str) -> anyhow::Result<f64> {
    let pool = pool(&ctx.pg, db, 1).await?;
    let provider = ctx.traffic.provider.name();
    let early = REGISTERED / 2;
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO delivery_events (occurred_at, provider, event_id, provider_message_id, \
             event_type, status, provider_status, payload) \
         SELECT now(), $1, 'early-' || $2 || '-' || i, 'reg-' || $2 || '-' || i, \
                'message.delivered', 'delivered', 'delivered', '{\"early\": true}' \
         FROM generate_series(0, $3 - 1) AS i",
    )
    .bind(provider)
    .bind(tag)
    .bind(early)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO early_messages (provider, provider_message_id, first_received_at, \
             last_received_at) \
         SELECT $1, 'reg-' || $2 || '-' || i, now(), now() FROM generate_series(0, $3 - 1) AS i",
    )
    .bind(provider)
    .bind(tag)
    .bind(early)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let started = Instant::now();
    let mut tx = pool.begin().await?;
    let batch: String =
        sqlx::query_scalar("INSERT INTO batches (name) VALUES ($1) RETURNING id::text")
            .bind(tag)
            .fetch_one(&mut *tx)
            .await?;
    sqlx::query(
        "INSERT INTO recipients (batch_id, provider, provider_message_id) \
         SELECT $1::uuid, $2, 'reg-' || $3 || '-' || i FROM generate_series(0, $4 - 1) AS i",
    )
    .bind(&batch)
    .bind(provider)
    .bind(tag)
    .bind(REGISTERED)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let took = started.elapsed().as_secs_f64();
    let delivered: i64 =
        sqlx::query_scalar("SELECT delivered_count::bigint FROM batches WHERE id = $1::uuid")
            .bind(batch)
            .fetch_one(&pool)
            .await?;
    anyhow::ensure!(
        delivered == early,
        "{delivered} of {REGISTERED} registered recipients delivered, expected {early}"
    );
    let bad = hookline_store::queries::counter_mismatches(&pool).await?;
    anyhow::ensure!(bad.is_empty(), "counters differ from a recount in {bad:?}");
    pool.close().await;
    Ok(took)
}

/// `VACUUM ANALYZE` of a fresh copy: hint bits set, visibility map and statistics as a table
/// that has lived a while has them.
async fn settle(ctx: &Ctx, db: &str) -> anyhow::Result<()> {
    let pool = pool(&ctx.pg, db, 1).await?;
    sqlx::query("VACUUM ANALYZE").execute(&pool).await?;
    pool.close().await;
    Ok(())
}

/// The lifecycle section: one worker's throughput on an empty event log and on one holding
/// `rows` events over `days` past days' partitions (same run, same recipients); then, on the
/// full log, the longest stall of a worker writing at full speed while one day's partition is
/// dropped (`hookline_store::lifecycle::maintain`, as `hookline maintain` runs it).
async fn lifecycle(
    ctx: &Ctx,
    admin: &PgPool,
    js: &jetstream::Context,
    events: u64,
    rows: u64,
    days: u32,
) -> anyhow::Result<Value> {
    // The empty log is measured before the history is built and again after the full log's run,
    // each on its own copy of the template, vacuumed and analysed as autovacuum would have left
    // it, and the ratio is taken against the faster of the two: run order and a copy's state
    // then cannot favour either log.
    let empty_run = |name: &'static str| async move {
        eprintln!("[lifecycle] one worker, empty event log ({name}): {events} events…");
        let empty = fresh_db(admin, name).await?;
        settle(ctx, &empty).await?;
        prefill(js, &ctx.traffic, events).await?;
        let rate = run_workers(ctx, &empty, 1, events).await?.0;
        let took = registration(ctx, &empty, name).await?;
        Ok::<_, anyhow::Error>((rate, took))
    };
    let (rate_empty_before, reg_empty_before) = empty_run("log_empty_before").await?;

    let full = fresh_db(admin, "log_full").await?;
    let db = pool(&ctx.pg, &full, 2).await?;
    let provider = ctx.traffic.provider.name();
    let filled = Instant::now();
    // Each past day's partition is loaded bare, indexed in bulk, then attached (its indexes
    // become the log's): what days of traffic leave behind, built in minutes instead of hours
    // of row-by-row index inserts. Two events per message, as traffic is; never today.
    let mut conn = db.acquire().await?;
    sqlx::query("SET maintenance_work_mem = '512MB'")
        .execute(&mut *conn)
        .await?;
    // The log's own index definitions (`… USING hash (event_id)` and so on), so that each day is
    // indexed as the migrations index the log and ATTACH finds every index already there.
    let index_methods: Vec<String> = sqlx::query_scalar(
        "SELECT substring(pg_get_indexdef(indexrelid) FROM ' USING .*$') \
         FROM pg_index WHERE indrelid = 'delivery_events'::regclass ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await?;
    anyhow::ensure!(!index_methods.is_empty(), "the event log has no index");
    let per_day = rows.div_ceil(u64::from(days));
    for d in 1..=days {
        let (from, to) = (
            per_day * u64::from(d - 1),
            (per_day * u64::from(d)).min(rows),
        );
        let day: (String, chrono::DateTime<chrono::Utc>) = sqlx::query_as(
            "SELECT event_partition_name(x), x::timestamp AT TIME ZONE 'UTC' \
             FROM (SELECT (now() AT TIME ZONE 'UTC')::date - $1 AS x) AS y",
        )
        .bind(d as i32)
        .fetch_one(&mut *conn)
        .await?;
        let (name, start) = day;
        let mut steps = vec![
            format!(
                "CREATE TABLE {name} (LIKE delivery_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
            ),
            format!(
                "INSERT INTO {name} (received_at, occurred_at, provider, event_id, \
                     provider_message_id, event_type, status, provider_status, payload) \
                 SELECT t, t, '{provider}', 'fill-' || i, 'fm-' || (i / 2), 'message.sent', \
                        'sent', 'sent', '{{\"fill\": true}}' \
                 FROM generate_series({from}::bigint, {to}::bigint - 1) AS i, \
                      LATERAL (SELECT '{start}'::timestamptz \
                                      + make_interval(secs => (i * 7919) % 86400) AS t) AS x"
            ),
        ];
        steps.extend(
            index_methods
                .iter()
                .map(|m| format!("CREATE INDEX ON {name}{m}")),
        );
        steps.extend([
            format!(
                "ALTER TABLE delivery_events ATTACH PARTITION {name} \
                 FOR VALUES FROM ('{start}') TO ('{start}'::timestamptz + interval '1 day')"
            ),
            format!("VACUUM ANALYZE {name}"),
        ]);
        for sql in &steps {
            sqlx::query(sql).execute(&mut *conn).await?;
        }
        eprintln!(
            "[lifecycle] history: {to} of {rows} rows, {d} of {days} days ({:.0} s)",
            filled.elapsed().as_secs_f64()
        );
    }
    // History is old data, already on disk: its dirty pages are written out now, not by the
    // checkpointer during the measurement.
    sqlx::query("CHECKPOINT").execute(&mut *conn).await?;
    drop(conn);
    let fill_secs = filled.elapsed().as_secs_f64();
    let log_bytes: i64 = sqlx::query_scalar(
        "SELECT sum(pg_total_relation_size(relid))::bigint FROM pg_partition_tree('delivery_events')",
    )
    .fetch_one(&db)
    .await?;
    settle(ctx, &full).await?;
    eprintln!("[lifecycle] one worker, {rows}-row log over {days} partitions: {events} events…");
    prefill(js, &ctx.traffic, events).await?;
    let (rate_full, _) = run_workers(ctx, &full, 1, events).await?;
    eprintln!("[lifecycle] registering {REGISTERED} recipients, half with early events…");
    let reg_full = registration(ctx, &full, "log_full").await?;
    let (rate_empty_after, reg_empty_after) = empty_run("log_empty_after").await?;
    let rate_empty = rate_empty_before.max(rate_empty_after);
    let reg_empty = reg_empty_before.min(reg_empty_after);

    // A drop while a worker writes at full speed: new events (another run's ids) for the same
    // recipients, and retention set so that exactly the oldest day is past it.
    eprintln!("[lifecycle] dropping the oldest day's partition while a worker writes…");
    prefill_run(js, &ctx.traffic, events, "drop").await?;
    let (worker, addr) = start_worker(ctx, &full, 0).await?;
    let processed = || async {
        Ok::<_, anyhow::Error>(metric_sum(&scrape(addr).await?, "webhook_processed_total"))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while processed().await? < events as f64 * 0.2 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the worker did not start writing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut settings = hookline_store::lifecycle::RetentionArgs::defaults();
    settings.event_retention_days = days - 1;
    let drop_pool = db.clone();
    let mut dropping = Some(tokio::spawn(async move {
        let started = Instant::now();
        let report = hookline_store::lifecycle::maintain(&drop_pool, &settings, false).await;
        (started.elapsed(), report)
    }));
    // Sample progress until the drop is over and a second more: the longest time without a
    // commit is the stall.
    let (mut last, mut last_change, mut stall) =
        (processed().await?, Instant::now(), Duration::ZERO);
    let mut drop_result = None;
    let mut over_at = None;
    loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = processed().await?;
        if now > last {
            stall = stall.max(last_change.elapsed());
            last = now;
            last_change = Instant::now();
        }
        if let Some(d) = dropping.take_if(|d| d.is_finished()) {
            drop_result = Some(d.await?);
            over_at = Some(Instant::now());
        }
        let finished = last >= events as f64;
        if finished || over_at.is_some_and(|t| t.elapsed() > Duration::from_secs(1)) {
            if !finished {
                stall = stall.max(last_change.elapsed());
            }
            break;
        }
    }
    let drop_result = match (drop_result, dropping) {
        (Some(r), _) => r,
        (None, Some(d)) => d.await?,
        (None, None) => unreachable!("the drop is either awaited or still running"),
    };
    drop(worker);
    let (drop_took, report) = drop_result;
    let report = report?.ok_or_else(|| anyhow::anyhow!("another maintainer held the lock"))?;
    anyhow::ensure!(
        report.dropped.len() == 1,
        "expected the oldest day dropped, got {report:?}"
    );
    let drop_during_writes = last < events as f64;
    Ok(json!({
        "log_rows": rows,
        "log_days": days,
        "log_bytes": log_bytes,
        "fill_secs": fill_secs.round(),
        "empty_log_events_per_s": rate_empty.round(),
        "empty_log_before_events_per_s": rate_empty_before.round(),
        "empty_log_after_events_per_s": rate_empty_after.round(),
        "full_log_events_per_s": rate_full.round(),
        "ratio_full_to_empty": rate_full / rate_empty,
        "registered": REGISTERED,
        "registration_empty_log_ms": (reg_empty * 1000.0).round(),
        "registration_empty_log_before_ms": (reg_empty_before * 1000.0).round(),
        "registration_empty_log_after_ms": (reg_empty_after * 1000.0).round(),
        "registration_full_log_ms": (reg_full * 1000.0).round(),
        "registration_ratio_empty_to_full": reg_empty / reg_full,
        "drop_partition_ms": drop_took.as_millis() as u64,
        "drop_rows": report.rows_dropped(),
        "drop_while_writing": drop_during_writes,
        "max_worker_stall_ms": stall.as_millis() as u64,
    }))
}

fn f(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x.is_nan() => "n/a".into(),
        Some(x) if x >= 100.0 => format!("{:.0}", x),
        Some(x) => format!("{x:.2}"),
        None if v.is_null() => "—".into(),
        None => v.to_string(),
    }
}

/// A load result as the JSON report shows it.
fn http(r: &LoadResult) -> Value {
    let [server, nats, generator] = r.cpu_us_per_request();
    json!({"req_per_s": r.rate().round(), "p50_ms": r.percentile_ms(0.5), "p99_ms": r.percentile_ms(0.99), "ok": r.ok, "failed": r.failed, "generator_cores": r.generator_cores(), "spent_all_requests": r.exhausted,
        "cpu_us_per_request": {"server": server, "nats_server": nats, "generator": generator}})
}

fn print_table(report: &Value) {
    let r = &report["results"];
    let i = &r["ingest"];
    let w = &r["worker"];
    let e = &r["end_to_end"];
    println!();
    println!(
        "hookline-bench {} — {} CPUs ({}){}",
        report["date"].as_str().unwrap_or(""),
        report["machine"]["cpus"],
        report["machine"]["cpu_model"].as_str().unwrap_or(""),
        if report["smoke"] == true {
            " — SMOKE, not a measurement"
        } else {
            ""
        }
    );
    println!("| measurement | value | ceiling / reference (same run) | ratio | target |");
    println!("|---|---|---|---|---|");
    let row = |v: &Value| {
        format!(
            "{} req/s, p50 {} ms, p99 {} ms",
            f(&v["req_per_s"]),
            f(&v["p50_ms"]),
            f(&v["p99_ms"])
        )
    };
    for (name, v) in r["verify"].as_object().into_iter().flatten() {
        let (reference, ratio) = match v["dalek_verify_us"].as_f64() {
            Some(d) => (
                format!("ed25519-dalek `verify` {d:.2} µs"),
                f(&json!(v["us_per_verify"].as_f64().unwrap_or(0.0) / d)),
            ),
            None => (String::new(), String::new()),
        };
        println!(
            "| {name}: verify one signature ({}) | {} µs | {reference} | {ratio} | |",
            v["scheme"].as_str().unwrap_or(""),
            f(&v["us_per_verify"])
        );
    }
    let mut generator = 0.0f64;
    for (name, p) in i["providers"].as_object().into_iter().flatten() {
        let scheme = p["scheme"].as_str().unwrap_or("");
        for k in [
            "bare_endpoint",
            "publish_endpoint",
            "ingest_saturated",
            "publish_endpoint_open",
            "ingest_open",
        ] {
            generator = generator.max(p[k]["generator_cores"].as_f64().unwrap_or(0.0));
        }
        println!(
            "| **{name}** ({scheme}): bare axum endpoint | {} | | | |",
            row(&p["bare_endpoint"])
        );
        println!(
            "| {name}: minimal publish endpoint (PubAck) | {} | | | |",
            row(&p["publish_endpoint"])
        );
        println!(
            "| {name}: ingest, saturated (verify + publish + PubAck) | {}, generator {} core | publish endpoint | {} | ≥ 0.90 |",
            row(&p["ingest_saturated"]),
            f(&p["ingest_saturated"]["generator_cores"]),
            f(&p["ratio_to_publish_endpoint"])
        );
        println!(
            "| | | bare endpoint | {} | |",
            f(&p["ratio_to_bare_endpoint"])
        );
        let cpu = |k: &str| {
            let c = &p[k]["cpu_us_per_request"];
            format!(
                "server {} + nats-server {} + generator {}",
                f(&c["server"]),
                f(&c["nats_server"]),
                f(&c["generator"])
            )
        };
        println!(
            "| {name}: CPU µs per request, saturated | ingest: {} | publish endpoint: {} | | |",
            cpu("ingest_saturated"),
            cpu("publish_endpoint")
        );
        println!(
            "| {name}: ingest at {} req/s (open loop) | {} | publish endpoint at that rate: p99 {} ms | p99 × {} | p99 ≤ 1.2 × |",
            f(&p["open_rate"]),
            row(&p["ingest_open"]),
            f(&p["publish_endpoint_open"]["p99_ms"]),
            f(&p["open_p99_ratio"])
        );
    }
    println!(
        "| load generator (one thread, pre-signed requests) | at most {} of one core in any HTTP run | | | < 1 (idle CPU left) |",
        f(&json!(generator))
    );
    durable::print_rows(&r["durable_acks"], f);
    let fl = &r["flood"];
    if fl.is_object() {
        println!(
            "| signed webhooks, no flood (closed loop, 16 connections) | {} | | | |",
            row(&fl["signed_without_flood"])
        );
        println!(
            "| signed webhooks through an unsigned flood ({} flood requests) | {}, {} failed | without the flood | {} (p99 × {}) | no failures, p99 < 2000 ms |",
            f(&fl["flood_requests"]),
            row(&fl["signed_with_flood"]),
            f(&fl["signed_with_flood"]["failed"]),
            f(&fl["throughput_ratio"]),
            f(&fl["p99_ratio"])
        );
    }
    println!(
        "| broker: raw publish, 4096 PubAcks in flight | {} msg/s | | | |",
        f(&r["broker"]["publish_msg_per_s"])
    );
    println!("| 1 worker into PostgreSQL | {} events/s | consume + bulk UPDATE {} | {} | ≥ 10,000; ≥ 0.40 |", f(&w["workers_1"]["events_per_s"]), f(&w["raw_ceiling_events_per_s"]), f(&w["ratio_to_raw"]));
    println!(
        "| | | one UPDATE per event {} | {} | ≥ 10 |",
        f(&w["naive_events_per_s"]),
        f(&w["ratio_to_naive"])
    );
    println!(
        "| 2 workers into PostgreSQL | {} events/s | | | ≥ 20,000 |",
        f(&w["workers_2"]["events_per_s"])
    );
    let l = &r["lifecycle"];
    if l.is_object() {
        println!(
            "| 1 worker, event log holding {} rows over {} days ({} bytes) | {} events/s | empty log, the faster of {} (before) and {} (after) | {} | ≥ 0.90 |",
            f(&l["log_rows"]),
            f(&l["log_days"]),
            f(&l["log_bytes"]),
            f(&l["full_log_events_per_s"]),
            f(&l["empty_log_before_events_per_s"]),
            f(&l["empty_log_after_events_per_s"]),
            f(&l["ratio_full_to_empty"])
        );
        println!(
            "| register {} recipients in one transaction, half with an early event, on that log | {} ms | empty log, the faster of {} and {} ms | {} | ≥ 0.90 |",
            f(&l["registered"]),
            f(&l["registration_full_log_ms"]),
            f(&l["registration_empty_log_before_ms"]),
            f(&l["registration_empty_log_after_ms"]),
            f(&l["registration_ratio_empty_to_full"])
        );
        println!(
            "| drop one day's partition ({} rows) while a worker writes | {} ms; longest worker stall {} ms | | | stall ≤ 1000 ms |",
            f(&l["drop_rows"]),
            f(&l["drop_partition_ms"]),
            f(&l["max_worker_stall_ms"])
        );
    }
    println!(
        "| end-to-end lag at {} events/s | p50 {} ms, p99 {} ms | | | p99 < 2000 ms |",
        f(&e["rate"]),
        f(&e["lag_p50_ms"]),
        f(&e["lag_p99_ms"])
    );
    println!(
        "| peak RSS | ingest {} MiB, worker {} MiB | | | < 50 MiB |",
        r["rss"]["ingest_peak_kib"].as_u64().unwrap_or(0) / 1024,
        r["rss"]["worker_peak_kib"].as_u64().unwrap_or(0) / 1024
    );
}
