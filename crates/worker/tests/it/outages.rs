//! Database outages as production meets them, longer than every timeout: a read-only failover, a
//! revoked grant, a rotated password, PostgreSQL stopped for minutes while workers are killed.
//! Each ends with the same check: nothing dead-lettered, no delivery attempt spent on events
//! nobody was at fault for, every accepted event stored exactly once, counters equal a recount.

use std::time::{Duration, Instant};

use hookline_testkit::wait_until;
use sqlx::PgPool;

use crate::classify::{create_worker_role, WORKER_ROLE};
use crate::stack::Stack;
use crate::workload::Workload;

const DRAIN: Duration = Duration::from_secs(90);

/// `ALTER SYSTEM SET default_transaction_read_only`, as a failover to a standby looks to a client.
/// Run on one connection that is itself writable, so the reset works while the cluster is
/// read-only.
pub async fn set_read_only(pool: &PgPool, on: bool) {
    let mut c = pool.acquire().await.unwrap();
    let set = if on {
        "ALTER SYSTEM SET default_transaction_read_only = on"
    } else {
        "ALTER SYSTEM RESET default_transaction_read_only"
    };
    for sql in [
        "SET default_transaction_read_only = off",
        set,
        "SELECT pg_reload_conf()",
    ] {
        sqlx::query(sql).execute(&mut *c).await.unwrap();
    }
}

/// Watches a fault for `hold`: the DLQ stays empty and no event is redelivered meanwhile. With
/// every accepted event in a worker's hands, a newcomer pulling (a restarted or scaled-out worker)
/// must get nothing: the holders' in-progress acks keep their events theirs.
async fn hold_and_watch(stack: &Stack, hold: Duration) {
    let start = Instant::now();
    while start.elapsed() < hold {
        assert_eq!(
            stack.stream_len("WEBHOOKS_DLQ").await,
            0,
            "dead-lettered during the outage"
        );
        let info = stack.consumer_info().await;
        assert_eq!(
            info.num_redelivered, 0,
            "a delivery attempt was spent during the outage"
        );
        if info.num_pending == 0 {
            assert_eq!(
                stack.pull_once(Duration::from_millis(500)).await,
                None,
                "an event held through the outage was handed to a newcomer"
            );
        } else {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// 1. The database turns read-only for a minute (20 × the ack wait) while events arrive; a second
/// worker keeps pulling meanwhile. Every event of the outage stays with the worker holding it
/// (in-progress acks), nothing is dead-lettered, the breaker opens and closes, all stored once.
#[tokio::test]
async fn a_read_only_database_for_a_minute_dead_letters_nothing() {
    let mut stack = Stack::start_tuned(
        0,
        |_| {},
        |w| {
            w.consumer.ack_wait_secs = 3;
            w.breaker_threshold = 3;
            // Probes further apart than the ack wait: the events must be kept alive in between.
            w.breaker_open_ms = 8_000;
            w.retry_base_ms = 20;
            w.retry_max_ms = 200;
        },
    )
    .await;
    stack.add_worker().await;
    stack.add_worker().await;
    let load = Workload::new(400);
    load.register(&stack.pool).await;
    let (before, during) = load.sends.split_at(load.sends.len() - 40);
    assert!(Workload::post_all(&stack.client, before, 16)
        .await
        .iter()
        .all(|(_, st)| *st == 200));
    stack.wait_drained(DRAIN).await;

    set_read_only(&stack.pool, true).await;
    let outage = Instant::now();
    assert!(
        Workload::post_all(&stack.client, during, 8)
            .await
            .iter()
            .all(|(_, st)| *st == 200),
        "ingest answers as usual"
    );
    let s = &stack;
    wait_until(
        "a worker holds the events with its breaker open",
        Duration::from_secs(30),
        || async move {
            let info = s.consumer_info().await;
            info.num_pending == 0
                && info.num_ack_pending > 0
                && s.workers.iter().any(|w| w.metrics.breaker_open.get() == 1)
        },
    )
    .await;
    let held = stack.consumer_info().await.num_ack_pending;
    hold_and_watch(
        &stack,
        Duration::from_secs(60).saturating_sub(outage.elapsed()),
    )
    .await;
    let failed_writes = stack.total(|m| m.db_retries.get());
    set_read_only(&stack.pool, false).await;
    let outage = outage.elapsed();

    stack.wait_drained(DRAIN).await;
    load.assert_exactly_once(&stack.pool).await;
    let info = stack.consumer_info().await;
    assert_eq!(info.num_redelivered, 0, "no delivery attempt spent");
    assert_eq!(stack.total(|m| m.dead_lettered_total()), 0);
    assert_eq!(stack.stream_len("WEBHOOKS_DLQ").await, 0);
    assert!(
        stack.total(|m| m.breaker_opened.get()) >= 1,
        "the breaker opened"
    );
    assert!(
        stack
            .workers
            .iter()
            .all(|w| w.metrics.breaker_open.get() == 0),
        "and closed again"
    );
    println!(
        "figures: read-only for {outage:?}; events held through it={held}; failed writes={failed_writes}; \
         breaker opened={}; redelivered=0; dead-lettered=0; stored={} of {} distinct",
        stack.total(|m| m.breaker_opened.get()),
        stack.stored_events().await,
        load.distinct_events()
    );
}

/// 2. The worker's role loses INSERT and gets it back; then its password is rotated (existing
/// sessions end, as at a pooler or server restart) and the worker is restarted with the new one.
/// Nothing is dead-lettered at any point; every event is stored once.
#[tokio::test]
async fn a_revoked_grant_and_a_rotated_password_dead_letter_nothing() {
    let mut stack = Stack::start_tuned(
        0,
        |_| {},
        |w| {
            w.consumer.ack_wait_secs = 2;
            w.breaker_threshold = 3;
            w.breaker_open_ms = 1_000;
            w.retry_base_ms = 20;
            w.retry_max_ms = 200;
            w.shutdown_deadline_ms = 2_000;
        },
    )
    .await;
    create_worker_role(&stack.pool, "first").await;
    stack.pg.require_password(WORKER_ROLE);
    sqlx::query("SELECT pg_reload_conf()")
        .execute(&stack.pool)
        .await
        .unwrap();
    stack.worker_template.database_url = stack.pg.url_as(WORKER_ROLE, "first");
    let mut worker = stack.worker_process(&[]);
    let load = Workload::new(300);
    load.register(&stack.pool).await;
    let third = load.sends.len() / 3;
    let parts: Vec<_> = load.sends.chunks(third + 1).collect();
    let post = |sends| Workload::post_all(&stack.client, sends, 16);
    assert!(post(parts[0]).await.iter().all(|(_, st)| *st == 200));
    stack.wait_drained(DRAIN).await;

    // The grant goes.
    sqlx::query("REVOKE INSERT ON delivery_events FROM hookline_worker")
        .execute(&stack.pool)
        .await
        .unwrap();
    assert!(post(parts[1]).await.iter().all(|(_, st)| *st == 200));
    let w = &worker;
    wait_until(
        "the breaker opens",
        Duration::from_secs(30),
        || async move { w.log_text().contains("Circuit breaker opened") },
    )
    .await;
    hold_and_watch(&stack, Duration::from_secs(6)).await;
    sqlx::query("GRANT INSERT ON delivery_events TO hookline_worker")
        .execute(&stack.pool)
        .await
        .unwrap();
    stack.wait_drained(DRAIN).await;
    assert!(worker.log_text().contains("Circuit breaker closed"));

    // The password is rotated; the worker's sessions end and cannot come back.
    for sql in [
        "ALTER ROLE hookline_worker PASSWORD 'second'",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'hookline_worker'",
    ] {
        sqlx::query(sql).execute(&stack.pool).await.unwrap();
    }
    assert!(post(parts[2]).await.iter().all(|(_, st)| *st == 200));
    let w = &worker;
    wait_until(
        "the worker fails to log in",
        Duration::from_secs(30),
        || async move { w.log_text().contains("password authentication failed") },
    )
    .await;
    hold_and_watch(&stack, Duration::from_secs(6)).await;
    // Restarted with the new secret: the old process hands its batch back at SIGTERM.
    worker.signal("TERM");
    let status = worker.wait_exit(Duration::from_secs(10)).await;
    assert!(status.is_some_and(|s| s.success()), "{}", worker.log_text());
    stack.worker_template.database_url = stack.pg.url_as(WORKER_ROLE, "second");
    let _successor = stack.worker_process(&[]);
    stack.wait_drained(DRAIN).await;
    load.assert_exactly_once(&stack.pool).await;
    assert_eq!(
        stack.stream_len("WEBHOOKS_DLQ").await,
        0,
        "nothing dead-lettered"
    );
    println!(
        "figures: revoke→grant and password rotation→restart; posts={}; stored={} of {} distinct; \
         redelivered after the restart={}; dead-lettered=0",
        load.sends.len(),
        stack.stored_events().await,
        load.distinct_events(),
        stack.consumer_info().await.num_redelivered
    );
}

/// 3. PostgreSQL is stopped for three minutes — longer than the ack wait, the breaker interval and
/// max_deliver × ack wait together — while one worker lives through it and another is SIGKILLed
/// and restarted twice (max_deliver 3: an event held by both killed workers is on its last
/// delivery when PostgreSQL returns). Nothing reaches the DLQ as max_deliveries; every event is
/// stored once.
#[tokio::test]
async fn a_three_minute_postgres_outage_with_killed_workers_spends_no_budget() {
    let mut stack = Stack::start_tuned(
        0,
        |_| {},
        |w| {
            w.consumer.ack_wait_secs = 2;
            w.consumer.max_deliver = 3;
            w.batch_size = 50;
            w.writers = 1;
            w.breaker_threshold = 3;
            w.breaker_open_ms = 10_000;
            w.db_acquire_timeout_ms = 300;
            w.retry_base_ms = 20;
            w.retry_max_ms = 200;
        },
    )
    .await;
    stack.add_worker().await;
    let load = Workload::new(600);
    load.register(&stack.pool).await;
    let parts: Vec<_> = load.sends.chunks(load.sends.len() / 4 + 1).collect();
    let post = |sends| Workload::post_all(&stack.client, sends, 16);
    assert!(post(parts[0]).await.iter().all(|(_, st)| *st == 200));
    stack.wait_drained(DRAIN).await;

    let outage = Instant::now();
    stack.pg.stop();
    let mut kills = 0;
    for part in &parts[1..3] {
        assert!(post(part).await.iter().all(|(_, st)| *st == 200));
        let mut victim = stack.worker_process(&[]);
        let v = &victim;
        wait_until(
            "the new worker holds a batch and fails on it",
            Duration::from_secs(30),
            || async move { v.log_text().contains("Circuit breaker opened") },
        )
        .await;
        victim.kill();
        kills += 1;
    }
    assert!(post(parts[3]).await.iter().all(|(_, st)| *st == 200));
    let _survivor = stack.worker_process(&[]);
    hold_and_watch_budget(
        &stack,
        Duration::from_secs(180).saturating_sub(outage.elapsed()),
    )
    .await;
    stack.pg.start_again();
    let outage = outage.elapsed();

    stack.wait_drained(DRAIN).await;
    load.assert_exactly_once(&stack.pool).await;
    assert_eq!(
        stack.stream_len("WEBHOOKS_DLQ").await,
        0,
        "nothing dead-lettered"
    );
    assert_eq!(stack.total(|m| m.dead_lettered_total()), 0);
    println!(
        "figures: PostgreSQL down {outage:?}; workers SIGKILLed={kills}; dead-lettered=0; \
         stored={} of {} distinct",
        stack.stored_events().await,
        load.distinct_events()
    );
}

/// Like `hold_and_watch`, for an outage with killed workers: their batches may come back, but
/// nothing reaches the DLQ.
async fn hold_and_watch_budget(stack: &Stack, hold: Duration) {
    let start = Instant::now();
    while start.elapsed() < hold {
        assert_eq!(
            stack.stream_len("WEBHOOKS_DLQ").await,
            0,
            "dead-lettered during the outage"
        );
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
}
