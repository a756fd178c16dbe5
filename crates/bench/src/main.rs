//! hookline's benchmark harness. One command (`bench/run.sh`, or this binary next to release
//! builds of hookline-ingest and hookline-worker) starts a real nats-server and a durable
//! PostgreSQL, measures the real stack next to ceilings measured in the same run on the same
//! machine, and prints a table (also written as JSON, so runs can be compared):
//!
//! 1. ingest at saturation and at 10,000 req/s, vs a bare axum endpoint and a minimal
//!    publish-and-await-PubAck endpoint, all driven by the same in-process load generator;
//! 2. raw async-nats publish throughput with many PubAcks in flight;
//! 3. 1 and 2 workers into PostgreSQL, vs consume + bulk UPDATE alone and a naive
//!    one-UPDATE-per-event writer;
//! 4. end-to-end lag (accepted → committed) at a sustained 5,000 events/s;
//! 5. peak RSS of ingest and worker.
#![forbid(unsafe_code)]

mod ceilings;
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
use hookline_core::providers::{built_in, BuiltIn, Sample, SampleStatus, Signer, Values};
use hookline_testkit::{free_port, NatsServer, Postgres, Service};
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use loadgen::{LoadResult, MakeRequest, Mode};

#[derive(Parser)]
#[command(
    name = "hookline-bench",
    about = "hookline's benchmark harness (see bench/README.md)"
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

    /// Events per worker measurement (two per message).
    #[arg(long, default_value_t = 100_000)]
    worker_events: u64,

    /// Only these sections (comma-separated: http, flood, broker, worker, e2e); default all. A partial
    /// run is printed but not written as latest.json.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,

    /// Whose webhooks to send (a built-in provider's name; bench/run.sh says which by default).
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
        })
    }

    /// Passes the keys to a child (ingest) as the environment variables its provider reads.
    fn configure(&self, cmd: &mut Command) {
        for (var, values) in self.keys.vars() {
            cmd.env(var, values.join(","));
        }
    }

    /// `sent`/`delivered` webhooks for messages `bm-0 … bm-{messages-1}`, each with a fresh
    /// event id.
    fn requests(&self, run: &'static str, messages: u64) -> MakeRequest {
        let t = self.clone();
        Arc::new(move |i| {
            let status = if i % 2 == 0 {
                SampleStatus::Sent
            } else {
                SampleStatus::Delivered
            };
            let event_id = format!("be_{run}_{i}");
            let body = t
                .provider
                .sample(&Sample {
                    event_id: &event_id,
                    message_id: &format!("{MESSAGE_PREFIX}{}", (i / 2) % messages),
                    status,
                    at: "2026-11-23T10:00:00.000Z",
                })
                .expect("the bench provider has sample bodies");
            let ts = chrono::Utc::now().timestamp();
            let mut headers = vec![
                ("content-type".into(), "application/json".into()),
                (ceilings::EVENT_ID_HEADER.into(), event_id.clone()),
            ];
            headers.extend(t.signer.sign(&event_id, body.as_bytes(), ts));
            (
                format!("/webhooks/{}", t.provider.name()),
                headers,
                Bytes::from(body),
            )
        })
    }
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
    duration: Duration,
    worker_events: u64,
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

/// Drives `addr` with the shared request maker, closed loop.
async fn saturate(ctx: &Ctx, addr: SocketAddr, run: &'static str) -> LoadResult {
    let mode = Mode::Closed {
        duration: ctx.duration,
    };
    loadgen::run(
        addr,
        ctx.cli_connections,
        mode,
        ctx.traffic.requests(run, ctx.worker_events / 2),
    )
    .await
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
        duration,
        worker_events,
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

    let want = |section: &str| cli.only.is_empty() || cli.only.iter().any(|o| o == section);
    let js = jetstream::new(async_nats::connect(ctx.nats.url()).await?);
    let (mut ingest_rss, mut worker_rss, mut e2e_ingest_rss, mut e2e_worker_rss) =
        (0u64, 0u64, 0u64, 0u64);
    if want("http") {
        // 1. Ingest and its two ceilings, each a separate process, same generator, same requests,
        // interleaved over several rounds (the median counts: this box is noisy).
        let rounds = if cli.smoke { 1 } else { cli.rounds.max(1) };
        eprintln!(
            "[1/5] HTTP: bare endpoint, minimal publish endpoint, ingest ({rounds} rounds of {} s each, {} connections)…",
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
        ctx.traffic.configure(&mut cmd);
        cmd.env("NATS_URL", ctx.nats.url())
            .env("HOOKLINE_LISTEN", addr.to_string())
            .env("HOOKLINE_STREAM", "INGEST_BENCH")
            .env("HOOKLINE_STREAM_MAX_BYTES", (8u64 << 30).to_string());
        let ingest = spawn_server(cmd, "hookline-ingest", &ctx.logs.0, addr, "/readyz").await?;
        let (mut bares, mut publishes, mut ingests) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            bares.push(saturate(&ctx, bare_addr, "bare").await);
            publishes.push(saturate(&ctx, publish_addr, "publish").await);
            ingests.push(saturate(&ctx, addr, "ingest").await);
        }
        let (bare, publish, saturated) = (median(bares), median(publishes), median(ingests));
        drop(bare_srv);
        // Open loop over more connections, as many providers' senders would be: a slow answer
        // on one connection must not hold up requests due on others. The publish endpoint at
        // the same rate shows what the box allows.
        let open = Mode::Open {
            rate: if cli.smoke { 500.0 } else { 10_000.0 },
            duration,
        };
        let open_connections = ctx.cli_connections.max(if cli.smoke { 8 } else { 256 });
        let publish_at_10k = loadgen::run(
            publish_addr,
            open_connections,
            open,
            ctx.traffic.requests("publish10k", worker_events / 2),
        )
        .await;
        drop(publish_srv);
        let at_10k = loadgen::run(
            addr,
            open_connections,
            open,
            ctx.traffic.requests("ingest10k", worker_events / 2),
        )
        .await;
        ingest_rss = ingest.memory_kib().map_or(0, |m| m.1);
        drop(ingest);
        results.insert(
            "ingest".into(),
            json!({
                "rounds": rounds,
                "bare_endpoint": http(&bare),
                "publish_endpoint": http(&publish),
                "ingest_saturated": http(&saturated),
                "publish_endpoint_at_10k": http(&publish_at_10k),
                "ingest_at_10k": http(&at_10k),
                "ratio_to_publish_endpoint": saturated.rate() / publish.rate(),
                "ratio_to_bare_endpoint": saturated.rate() / bare.rate(),
                "peak_rss_kib": ingest_rss,
            }),
        );

        js.delete_stream("INGEST_BENCH").await?;
        let _ = js.delete_stream("CEILING").await;
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
        let calm = loadgen::run(
            addr,
            connections,
            mode,
            ctx.traffic.requests("calm", worker_events / 2),
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
            ctx.traffic.requests("flooded", worker_events / 2),
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
    if want("worker") || want("e2e") {
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
            hookline_store::MIGRATOR.run(&tpl).await?;
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
            ctx.traffic.requests("e2e", worker_events / 2),
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

/// The run with the median request rate.
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
    let _ = js.delete_stream("WEBHOOKS").await;
    let mut args = <StreamOnly as Parser>::parse_from(["x"]).stream;
    args.stream_max_bytes = 8 << 30;
    hookline_jetstream::ensure_stream(js, &args).await?;
    let make = traffic.requests("prefill", (events / 2).max(1));
    let decoder = traffic.provider.decoder();
    let acks = futures::stream::iter(0..events)
        .map(|i| {
            let (_, headers, body) = make(i);
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
    let pool = pool(&ctx.pg, db, 1).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM delivery_events")
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
    json!({"req_per_s": r.rate().round(), "p50_ms": r.percentile_ms(0.5), "p99_ms": r.percentile_ms(0.99), "ok": r.ok, "failed": r.failed})
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
    println!(
        "| bare axum endpoint | {} | | | |",
        row(&i["bare_endpoint"])
    );
    println!(
        "| minimal publish endpoint (PubAck) | {} | | | |",
        row(&i["publish_endpoint"])
    );
    println!(
        "| ingest, saturated (verify + publish + PubAck) | {} | publish endpoint | {} | ≥ 0.90 |",
        row(&i["ingest_saturated"]),
        f(&i["ratio_to_publish_endpoint"])
    );
    println!(
        "| | | bare endpoint | {} | |",
        f(&i["ratio_to_bare_endpoint"])
    );
    println!(
        "| ingest at 10,000 req/s (open loop) | {} | publish endpoint at 10,000 req/s: p99 {} ms | | p99 < 10 ms |",
        row(&i["ingest_at_10k"]),
        f(&i["publish_endpoint_at_10k"]["p99_ms"])
    );
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
