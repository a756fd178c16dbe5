//! The durable-acks section: ingest's throughput and p99 with nats-server's default
//! `sync_interval` (the PubAck follows a write to the page cache, fsynced within two minutes) and
//! with `sync_interval: always` (the PubAck follows an fsync: what every config hookline ships
//! sets), at several connection counts, the same kind of pre-signed requests, in the same run,
//! interleaved; and the same for an R3 stream on a three-node cluster on this machine (what the
//! Kubernetes manifest runs), at one connection count.

use std::net::SocketAddr;
use std::time::Duration;

use hookline_testkit::{free_port, NatsCluster, NatsServer};
use serde_json::{json, Value};

use crate::loadgen::{self, Mode};
use crate::report::http;
use crate::servers::spawn_server;
use crate::traffic::build;
use crate::Ctx;

/// Connection counts measured (a smoke run takes the first).
const CONNECTIONS: [usize; 3] = [16, 64, 256];

pub async fn measure(
    ctx: &Ctx,
    duration: Duration,
    requests: usize,
    messages: u64,
    smoke: bool,
) -> anyhow::Result<Value> {
    let conf = ctx.logs.0.join("nats-sync-always.conf");
    std::fs::write(&conf, "jetstream { sync_interval: always }\n")?;
    let always = NatsServer::start_with_args(vec!["-c".into(), conf.display().to_string()]);
    let mut ingests = Vec::new();
    let servers = [
        ("default", "hookline-ingest-sync-default", ctx.nats.url()),
        ("always", "hookline-ingest-sync-always", always.url()),
    ];
    for (name, log, url) in servers {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let mut cmd = ctx.bins.cmd("hookline-ingest");
        ctx.traffic.configure(&mut cmd);
        cmd.env("NATS_URL", url)
            .env("HOOKLINE_LISTEN", addr.to_string())
            .env("HOOKLINE_STREAM", "DURABLE_BENCH")
            .env("HOOKLINE_STREAM_MAX_BYTES", (8u64 << 30).to_string());
        let ingest = spawn_server(cmd, log, &ctx.logs.0, addr, "/readyz").await?;
        ingests.push((name, addr, ingest));
    }
    // The ceiling with `always`: raw publishes, 4,096 PubAcks in flight, no HTTP, no verify.
    let raw_messages = if smoke { 2_000 } else { 100_000 };
    let raw_always = crate::ceilings::broker_publish(&always.url(), raw_messages, 4096).await?;
    eprintln!("      raw publish with sync always, 4096 in flight: {raw_always:.0} msg/s");
    let counts: &[usize] = if smoke {
        &CONNECTIONS[..1]
    } else {
        &CONNECTIONS
    };
    let mut by_connections = serde_json::Map::new();
    for &connections in counts {
        let mut results = Vec::new();
        for (name, addr, _) in &ingests {
            let run = format!("durable-{name}-{connections}");
            let reqs = build(requests, |i| ctx.traffic.request(&run, i, messages));
            let r = loadgen::run(*addr, connections, Mode::Closed { duration }, reqs).await;
            anyhow::ensure!(
                r.failed == 0,
                "{} requests failed with sync {name}",
                r.failed
            );
            results.push(r);
        }
        let (default, always) = (&results[0], &results[1]);
        eprintln!(
            "      {connections} connections: default {:.0} req/s p99 {:.1} ms; always {:.0} req/s p99 {:.1} ms",
            default.rate(),
            default.percentile_ms(0.99),
            always.rate(),
            always.percentile_ms(0.99)
        );
        by_connections.insert(
            connections.to_string(),
            json!({
                "sync_default": http(default),
                "sync_always": http(always),
                "throughput_ratio": always.rate() / default.rate(),
                "p99_ratio": always.percentile_ms(0.99) / default.percentile_ms(0.99),
                "always_ratio_to_raw_publish": always.rate() / raw_always,
            }),
        );
    }
    // R3: two three-node clusters on loopback, default and always, one connection count.
    let r3_connections = if smoke { CONNECTIONS[0] } else { 64 };
    let clusters = [
        (
            "default",
            "hookline-ingest-r3-default",
            NatsCluster::start(3),
        ),
        (
            "always",
            "hookline-ingest-r3-always",
            NatsCluster::start_with_args(3, vec!["-c".into(), conf.display().to_string()]),
        ),
    ];
    let mut r3 = Vec::new();
    for (name, log, cluster) in &clusters {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let mut cmd = ctx.bins.cmd("hookline-ingest");
        ctx.traffic.configure(&mut cmd);
        cmd.env("NATS_URL", cluster.urls())
            .env("HOOKLINE_LISTEN", addr.to_string())
            .env("HOOKLINE_STREAM", "DURABLE_BENCH_R3")
            .env("HOOKLINE_STREAM_REPLICAS", "3")
            .env("HOOKLINE_STREAM_MAX_BYTES", (2u64 << 30).to_string());
        let ingest = spawn_server(cmd, log, &ctx.logs.0, addr, "/readyz").await?;
        let run = format!("durable-r3-{name}");
        let reqs = build(requests, |i| ctx.traffic.request(&run, i, messages));
        let mode = Mode::Closed { duration };
        let r = loadgen::run(addr, r3_connections, mode, reqs).await;
        anyhow::ensure!(
            r.failed == 0,
            "{} requests failed with R3 sync {name}",
            r.failed
        );
        eprintln!(
            "      R3, {r3_connections} connections, sync {name}: {:.0} req/s p99 {:.1} ms",
            r.rate(),
            r.percentile_ms(0.99)
        );
        drop(ingest);
        r3.push(r);
    }
    drop(clusters);
    let r3 = json!({
        "connections": r3_connections,
        "sync_default": http(&r3[0]),
        "sync_always": http(&r3[1]),
        "throughput_ratio": r3[1].rate() / r3[0].rate(),
        "p99_ratio": r3[1].percentile_ms(0.99) / r3[0].percentile_ms(0.99),
    });

    // What an event takes in the log (body, provider headers, hookline's, JetStream's framing),
    // for sizing its byte limit.
    let js = async_nats::jetstream::new(async_nats::connect(ctx.nats.url()).await?);
    let state = js
        .get_stream("DURABLE_BENCH")
        .await?
        .info()
        .await?
        .state
        .clone();
    let _ = js.delete_stream("DURABLE_BENCH").await;
    Ok(json!({
        "stream": "R1, file storage",
        "by_connections": by_connections,
        "r3": r3,
        "raw_publish_always_msg_per_s": raw_always.round(),
        "log_bytes_per_event": state.bytes as f64 / state.messages.max(1) as f64,
    }))
}

/// The section's rows in the printed table.
pub fn print_rows(d: &Value, f: impl Fn(&Value) -> String) {
    for connections in CONNECTIONS.map(|c| c.to_string()) {
        let r = &d["by_connections"][&connections];
        if !r.is_object() {
            continue;
        }
        println!(
            "| durable acks (sync_interval: always), {connections} connections | {} req/s, p99 {} ms | default sync: {} req/s, p99 {} ms; raw publish with always: {} msg/s | {} (p99 × {}); {} of raw | the cost of a 200 that survives a power cut |",
            f(&r["sync_always"]["req_per_s"]),
            f(&r["sync_always"]["p99_ms"]),
            f(&r["sync_default"]["req_per_s"]),
            f(&r["sync_default"]["p99_ms"]),
            f(&d["raw_publish_always_msg_per_s"]),
            f(&r["throughput_ratio"]),
            f(&r["p99_ratio"]),
            f(&r["always_ratio_to_raw_publish"])
        );
    }
    let r3 = &d["r3"];
    if r3.is_object() {
        println!(
            "| durable acks, R3 on three local nodes, {} connections | {} req/s, p99 {} ms | default sync: {} req/s, p99 {} ms | {} (p99 × {}) | the Kubernetes manifest's choice |",
            r3["connections"].as_u64().unwrap_or(0),
            f(&r3["sync_always"]["req_per_s"]),
            f(&r3["sync_always"]["p99_ms"]),
            f(&r3["sync_default"]["req_per_s"]),
            f(&r3["sync_default"]["p99_ms"]),
            f(&r3["throughput_ratio"]),
            f(&r3["p99_ratio"])
        );
    }
    if d.is_object() {
        println!(
            "| the log: bytes per event (body, headers, framing) | {} | | | sizing: bytes × rate × retention |",
            f(&d["log_bytes_per_event"])
        );
    }
}
