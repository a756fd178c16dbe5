//! Section 1b, flood: signed webhooks through an unsigned flood (stalled maximum-size bodies,
//! garbage-signed clients from other addresses), against the same traffic without one. What
//! admission keeps for the real senders; not their throughput at rest (`http`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use hookline_testkit::free_port;
use serde_json::{json, Value};

use crate::loadgen::{self, Mode};
use crate::report::http;
use crate::servers::spawn_server;
use crate::traffic::build;
use crate::Ctx;

pub async fn measure(
    ctx: &Ctx,
    js: &jetstream::Context,
    duration: Duration,
    signed: usize,
    messages: u64,
    smoke: bool,
) -> anyhow::Result<Value> {
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
    let ingest = spawn_server(cmd, "hookline-ingest-flood", &ctx.logs.0, addr, "/readyz").await?;
    let connections = 16;
    let mode = Mode::Closed { duration };
    let calm = loadgen::run(
        addr,
        connections,
        mode,
        build(signed, |i| ctx.traffic.request("calm", i, messages)),
    )
    .await;
    let hostile = hookline_testkit::flood::Flood {
        stalled: if smoke { 40 } else { 5 * cap },
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
        build(signed, |i| ctx.traffic.request("flooded", i, messages)),
    )
    .await;
    let flood_answers = flood.join().expect("the flood thread");
    let flood_rss = ingest.memory_kib().map_or(0, |m| m.1);
    drop(ingest);
    let _ = js.delete_stream("FLOOD_BENCH").await;
    Ok(json!({
        "signed_without_flood": http(&calm),
        "signed_with_flood": http(&flooded),
        "throughput_ratio": flooded.rate() / calm.rate(),
        "p99_ratio": flooded.percentile_ms(0.99) / calm.percentile_ms(0.99),
        "flood_requests": flood_answers.values().sum::<u64>(),
        "flood_answers": flood_answers.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "ingest_peak_rss_kib": flood_rss,
    }))
}
