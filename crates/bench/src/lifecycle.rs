//! The lifecycle section: what a long event log costs a worker and a registration, against an
//! empty log in the same run, and whether dropping a day's partition stalls a worker writing at
//! full speed. Minutes of setup: a full run includes it only when asked (`--only lifecycle`).

use std::time::{Duration, Instant};

use async_nats::jetstream;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::db::{fresh_db, pool, settle};
use crate::prom::{metric_sum, scrape};
use crate::workers::{prefill, prefill_run, run_workers, start_worker};
use crate::Ctx;

/// The lifecycle section: one worker's throughput on an empty event log and on one holding
/// `rows` events over `days` past days' partitions (same run, same recipients); then, on the
/// full log, the longest stall of a worker writing at full speed while one day's partition is
/// dropped (`hookline_store::lifecycle::maintain`, as `hookline maintain` runs it).
pub async fn measure(
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
