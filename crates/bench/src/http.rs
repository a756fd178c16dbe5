//! Section 1, HTTP: per source (each built-in provider, a generic HMAC source), ingest at
//! saturation and in an open loop, next to a bare axum endpoint and a minimal publish endpoint,
//! all sent the same pre-signed requests. Not the other sections' traffic (`traffic`).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use bytes::Bytes;
use hookline_core::providers::generic::GenericSource;
use hookline_core::providers::{Provider as _, SampleStatus};
use hookline_testkit::free_port;
use serde_json::{json, Value};

use crate::loadgen::{self, LoadResult, Mode, Requests};
use crate::report::{http, median, median_p99};
use crate::servers::{self_cmd, spawn_server};
use crate::traffic::{bench_event, build, Traffic};
use crate::{ceilings, Cli, Ctx};

/// The section's results, and ingest's peak RSS.
pub async fn measure(
    ctx: &Ctx,
    js: &jetstream::Context,
    cli: &Cli,
    duration: Duration,
    worker_events: u64,
) -> anyhow::Result<(Value, u64)> {
    // 1. Ingest and its two ceilings, each a separate process, sent the same pre-signed
    // requests by the same lean generator, per provider, interleaved over several rounds (the
    // median counts: this box is noisy).
    let rounds = if cli.smoke { 1 } else { cli.rounds.max(1) };
    let per_round = if cli.smoke { 2_000 } else { cli.requests };
    let senders: Vec<Sender> = Sender::all()?
        .into_iter()
        .filter(|s| cli.http_sources.is_empty() || cli.http_sources.iter().any(|n| n == s.name()))
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
    let mut runs: Vec<[Vec<LoadResult>; 3]> = senders.iter().map(|_| Default::default()).collect();
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
            publish_runs
                .push(loadgen::run(publish_addr, open_connections, open, requests.clone()).await);
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
    let ingest_rss = ingest.memory_kib().map_or(0, |m| m.1);
    drop(ingest);
    let results = json!({
            "rounds": rounds,
            "requests_per_round": per_round,
            "generator": "in-process, pre-signed raw HTTP/1.1 on one thread (crates/bench/src/loadgen.rs)",
            "providers": providers,
            "peak_rss_kib": ingest_rss,
    });
    js.delete_stream("INGEST_BENCH").await?;
    let _ = js.delete_stream("CEILING").await;
    Ok((results, ingest_rss))
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
