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
//! A module per section, run in order by `bench` below; the report, db and prom helpers apart.
#![forbid(unsafe_code)]

mod ceilings;
mod db;
mod durable;
mod e2e;
mod flood;
mod http;
mod lifecycle;
mod loadgen;
mod prom;
mod report;
mod servers;
mod traffic;
mod verify;
mod workers;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use clap::{Parser, Subcommand};
use hookline_testkit::{NatsServer, Postgres};
use serde_json::json;

use servers::Bins;
use traffic::Traffic;

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
        results.insert("verify".into(), verify::measure(cli.smoke)?);
    }

    if want("http") {
        let (ingest, rss) = http::measure(&ctx, &js, cli, duration, worker_events).await?;
        ingest_rss = rss;
        results.insert("ingest".into(), ingest);
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
        let signed = if cli.smoke { 2_000 } else { cli.requests };
        results.insert(
            "flood".into(),
            flood::measure(&ctx, &js, duration, signed, worker_events / 2, cli.smoke).await?,
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

    let admin = db::pool(&ctx.pg, "postgres", 1).await?;
    if want("worker") || want("e2e") || want("lifecycle") {
        // 3. Workers and their ceilings.
        eprintln!(
            "[3/5] worker: registering {} recipients…",
            worker_events / 2
        );
        db::create_template(&ctx, &admin, worker_events / 2).await?;
    }
    if want("worker") {
        let (worker, rss) = workers::measure(&ctx, &admin, &js, worker_events, cli.smoke).await?;
        worker_rss = rss;
        results.insert("worker".into(), worker);
    }

    if want("e2e") {
        let (e2e, ingest, worker) =
            e2e::measure(&ctx, &admin, &js, duration, worker_events, cli.smoke).await?;
        (e2e_ingest_rss, e2e_worker_rss) = (ingest, worker);
        results.insert("end_to_end".into(), e2e);
    }

    if want("lifecycle") {
        let (rows, days) = if cli.smoke {
            (20_000, 4)
        } else {
            (cli.log_rows, cli.log_days.max(2))
        };
        results.insert(
            "lifecycle".into(),
            lifecycle::measure(&ctx, &admin, &js, worker_events, rows, days).await?,
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
        "machine": report::machine(),
        "smoke": cli.smoke,
        "duration_secs": duration.as_secs(),
        "connections": ctx.cli_connections,
        "worker_events": worker_events,
        "took_secs": started.elapsed().as_secs(),
        "results": results,
    });
    report::print_table(&report);
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
