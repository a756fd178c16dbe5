//! Section 4, end to end: the lag from accepted to committed at a sustained rate, ingest and one
//! worker together, as the worker's histogram records it. Not either part's ceiling (`http`,
//! `workers`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use hookline_testkit::free_port;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::db::fresh_db;
use crate::loadgen::{self, Mode};
use crate::prom::{histogram_quantile, metric_sum, scrape};
use crate::servers::spawn_server;
use crate::traffic::build;
use crate::workers::start_worker;
use crate::Ctx;

/// The section's results, and ingest's and the worker's peak RSS.
pub async fn measure(
    ctx: &Ctx,
    admin: &PgPool,
    js: &jetstream::Context,
    duration: Duration,
    worker_events: u64,
    smoke: bool,
) -> anyhow::Result<(Value, u64, u64)> {
    // 4. End-to-end lag at a sustained rate, ingest and one worker together.
    let rate = if smoke { 200.0 } else { 5_000.0 };
    eprintln!(
        "[4/5] end to end: {rate} events/s for {} s through ingest and one worker…",
        duration.as_secs()
    );
    let db = fresh_db(admin, "e2e").await?;
    let _ = js.delete_stream("WEBHOOKS").await;
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
    let mut cmd = ctx.bins.cmd("hookline-ingest");
    ctx.traffic.configure(&mut cmd);
    cmd.env("NATS_URL", ctx.nats.url())
        .env("HOOKLINE_LISTEN", addr.to_string());
    let ingest = spawn_server(cmd, "hookline-ingest-e2e", &ctx.logs.0, addr, "/readyz").await?;
    let (worker, worker_addr) = start_worker(ctx, &db, 0).await?;
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
    let e2e_ingest_rss = ingest.memory_kib().map_or(0, |m| m.1);
    let e2e_worker_rss = worker.memory_kib().map_or(0, |m| m.1);
    let results = json!({
        "rate": rate,
        "accepted": load.ok,
        "refused": load.failed,
        "http_p99_ms": load.percentile_ms(0.99),
        "lag_p50_ms": histogram_quantile(&text, "webhook_end_to_end_seconds", 0.5) * 1000.0,
        "lag_p99_ms": histogram_quantile(&text, "webhook_end_to_end_seconds", 0.99) * 1000.0,
        "processed": metric_sum(&text, "webhook_processed_total"),
        "changes_on_the_feed": metric_sum(&text, "webhook_changes_published_total"),
        "feed_lag_p50_ms": histogram_quantile(&text, "webhook_change_feed_lag_seconds", 0.5) * 1000.0,
        "feed_lag_p99_ms": histogram_quantile(&text, "webhook_change_feed_lag_seconds", 0.99) * 1000.0,
        "ingest_peak_rss_kib": e2e_ingest_rss,
        "worker_peak_rss_kib": e2e_worker_rss,
    });
    drop(worker);
    drop(ingest);
    Ok((results, e2e_ingest_rss, e2e_worker_rss))
}
