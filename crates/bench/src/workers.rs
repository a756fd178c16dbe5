//! Section 3, workers: 1 and 2 hookline workers draining a prefilled stream into PostgreSQL,
//! next to consume + bulk UPDATE alone and a one-UPDATE-per-event writer; and the worker
//! helpers the end-to-end and lifecycle sections share (prefill, start, drain and check).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use clap::Parser;
use futures::StreamExt as _;
use hookline_testkit::{free_port, Service};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::db::{fresh_db, pool};
use crate::prom::{metric_sum, scrape};
use crate::servers::spawn_server;
use crate::traffic::Traffic;
use crate::{ceilings, Ctx};

/// The section's results, and the workers' peak RSS.
pub async fn measure(
    ctx: &Ctx,
    admin: &PgPool,
    js: &jetstream::Context,
    worker_events: u64,
    smoke: bool,
) -> anyhow::Result<(Value, u64)> {
    let mut worker_rss = 0u64;
    let mut worker_runs = serde_json::Map::new();
    for workers in [1usize, 2] {
        eprintln!("[3/5] worker: {workers} worker(s) draining {worker_events} events…");
        let db = fresh_db(admin, &format!("workers_{workers}")).await?;
        prefill(js, &ctx.traffic, worker_events).await?;
        let (rate, rss) = run_workers(ctx, &db, workers, worker_events).await?;
        worker_rss = worker_rss.max(rss);
        worker_runs.insert(
            format!("workers_{workers}"),
            json!({"events_per_s": rate.round()}),
        );
    }
    // The change feed's cost: one worker again, the feed off (hookline.feed) and no relay; and where the
    // cost is: the triggers writing the outbox, without the relay draining it.
    let off = feed_run(ctx, admin, js, worker_events, "workers_1_feed_off", true).await?;
    let no_relay = feed_run(
        ctx,
        admin,
        js,
        worker_events,
        "workers_1_outbox_no_relay",
        false,
    )
    .await?;
    for (name, rate) in [
        ("workers_1_feed_off", off),
        ("workers_1_outbox_no_relay", no_relay),
    ] {
        worker_runs.insert(name.into(), json!({"events_per_s": rate.round()}));
    }
    eprintln!("[3/5] ceilings: consume + bulk UPDATE, and one UPDATE per event…");
    let db = fresh_db(admin, "raw").await?;
    prefill(js, &ctx.traffic, worker_events).await?;
    let raw_pool = pool(&ctx.pg, &db, 1).await?;
    let raw = ceilings::consume_with(js, "WEBHOOKS", worker_events, |ids| {
        ceilings::bulk_update(&raw_pool, ctx.traffic.provider.name(), ids)
    })
    .await?;
    let naive_events = worker_events.min(if smoke { 500 } else { 10_000 });
    let db = fresh_db(admin, "naive").await?;
    prefill(js, &ctx.traffic, naive_events).await?;
    let naive_pool = pool(&ctx.pg, &db, 1).await?;
    let naive = ceilings::consume_with(js, "WEBHOOKS", naive_events, |ids| {
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
    worker_runs.insert("feed_on_to_off".into(), json!(one / off));
    worker_runs.insert("outbox_no_relay_to_off".into(), json!(no_relay / off));
    Ok((Value::Object(worker_runs), worker_rss))
}

/// One worker without the feed's relay, on a fresh database `name` (the feed off altogether
/// when `feed_off`); events/s.
async fn feed_run(
    ctx: &Ctx,
    admin: &PgPool,
    js: &jetstream::Context,
    worker_events: u64,
    name: &str,
    feed_off: bool,
) -> anyhow::Result<f64> {
    eprintln!("[3/5] worker: 1 worker draining {worker_events} events, {name}…");
    let db = fresh_db(admin, name).await?;
    if feed_off {
        // As an operator turns the feed off (docs/feed.md): the workers' sessions see it.
        sqlx::query(&format!("ALTER DATABASE {db} SET hookline.feed = off"))
            .execute(admin)
            .await?;
    }
    prefill(js, &ctx.traffic, worker_events).await?;
    let relay_off = [("HOOKLINE_FEED_RELAY", "false")];
    Ok(run_workers_with(ctx, &db, 1, worker_events, &relay_off)
        .await?
        .0)
}

/// A fresh WEBHOOKS stream holding `events` stored webhooks (two per message), as ingest would
/// have stored them.
pub async fn prefill(
    js: &jetstream::Context,
    traffic: &Traffic,
    events: u64,
) -> anyhow::Result<()> {
    prefill_run(js, traffic, events, "prefill").await
}

/// As `prefill`, with the event ids of run `run` (so that a second fill is new events).
pub async fn prefill_run(
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

pub async fn start_worker(ctx: &Ctx, db: &str, n: usize) -> anyhow::Result<(Service, SocketAddr)> {
    start_worker_with(ctx, db, n, &[]).await
}

/// [`start_worker`] with `extra` environment variables.
pub async fn start_worker_with(
    ctx: &Ctx,
    db: &str,
    n: usize,
    extra: &[(&str, &str)],
) -> anyhow::Result<(Service, SocketAddr)> {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
    let mut cmd = ctx.bins.cmd("hookline-worker");
    cmd.env("NATS_URL", ctx.nats.url())
        .env(
            "DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:{}/{db}", ctx.pg.port),
        )
        .env("HOOKLINE_WORKER_LISTEN", addr.to_string())
        // The harness runs the data lifecycle itself (the lifecycle section's timed drop): a
        // worker's own run at start-up would hold its lock at that moment now and then.
        .env("HOOKLINE_MAINTAIN_EVERY_SECS", "0");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let name: &'static str = ["hookline-worker-0", "hookline-worker-1"][n.min(1)];
    let s = spawn_server(cmd, name, &ctx.logs.0, addr, "/healthz").await?;
    Ok((s, addr))
}

/// Starts `n` workers on a prefilled stream; events/s between 5 % and 95 % stored, peak RSS.
pub async fn run_workers(ctx: &Ctx, db: &str, n: usize, events: u64) -> anyhow::Result<(f64, u64)> {
    run_workers_with(ctx, db, n, events, &[]).await
}

/// [`run_workers`] with `extra` environment variables for the workers.
pub async fn run_workers_with(
    ctx: &Ctx,
    db: &str,
    n: usize,
    events: u64,
    extra: &[(&str, &str)],
) -> anyhow::Result<(f64, u64)> {
    let pool = pool(&ctx.pg, db, 1).await?;
    // Rows received from now on: the log may hold history (the lifecycle section).
    let since: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT now()").fetch_one(&pool).await?;
    let mut workers = Vec::new();
    for i in 0..n {
        workers.push(start_worker_with(ctx, db, i, extra).await?);
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
    eprintln!(
        "      worker 0, mean per batch: {}; peak RSS {} MiB",
        stages.join(", "),
        rss / 1024
    );
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
