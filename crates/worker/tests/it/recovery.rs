//! The promise outlives the ack: PostgreSQL loses committed rows the way production does — a
//! streaming standby promoted while it lags, a restore from a base backup — after the workers
//! acked the events, and `hookline log replay` from before the loss restores every one of them
//! exactly once from the event log. Also the upgrade from a work-queue stream with events queued,
//! and a full log refusing new webhooks instead of dropping one.

use std::time::{Duration, Instant};

use async_nats::jetstream::{consumer, stream};
use chrono::Utc;
use hookline_ops::log_replay::{self, LogReplayArgs, LogReplayReport};
use hookline_testkit::wait_until;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::stack::Stack;
use crate::support::count;
use crate::workload::Workload;

const DRAIN: Duration = Duration::from_secs(90);

fn replay_args(since: chrono::DateTime<Utc>) -> LogReplayArgs {
    LogReplayArgs {
        since: Some(since),
        from_seq: None,
        until: None,
        provider: None,
        dry_run: false,
        force: false,
        wait: true,
        wait_secs: 120,
        consumer: "hookline-worker".to_owned(),
    }
}

async fn replay(stack: &Stack, args: &LogReplayArgs) -> (LogReplayReport, Duration) {
    let started = Instant::now();
    let mut quiet = |_: &LogReplayReport, _: &str| {};
    let report = log_replay::replay(&stack.js, "WEBHOOKS", args, &mut quiet)
        .await
        .unwrap();
    (report, started.elapsed())
}

async fn pool_for(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(4)
        .connect(url)
        .await
        .unwrap()
}

async fn stored(pool: &PgPool) -> i64 {
    count(pool, "SELECT count(*) FROM delivery_events").await
}

/// Posts `sends` and waits until the workers have stored and acked every one.
async fn post_and_drain(stack: &Stack, sends: &[crate::workload::Send]) {
    let answers = Workload::post_all(&stack.client, sends, 16).await;
    assert!(
        answers.iter().all(|(_, s)| *s == 200),
        "every webhook accepted"
    );
    stack.wait_drained(DRAIN).await;
}

/// A failover with lag: a streaming standby's WAL receiver is paused (SIGSTOP) so it falls
/// behind while the workers store and ack more events on the primary; the primary is killed
/// (`-m immediate`), the receiver with it, and the standby promoted. Workers restarted with the
/// new primary's address find it missing acked events; a log replay from before the pause stores
/// every one of them exactly once, and a second replay changes nothing.
#[tokio::test]
async fn a_standby_promoted_while_it_lags_gets_every_acked_event_back_from_the_log() {
    let mut stack = Stack::start_tuned(0, |_| {}, |_| {}).await;
    let load = Workload::new(400);
    load.register(&stack.pool).await;
    let standby = stack.pg.standby();
    let standby_pool = pool_for(&standby.url()).await;
    let sp = &standby_pool;
    wait_until(
        "the standby streams",
        Duration::from_secs(30),
        || async move {
            count(
                sp,
                "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'",
            )
            .await
                == 1
        },
    )
    .await;
    let mut worker = stack.worker_process(&[]);
    let (first, rest) = load.sends.split_at(load.sends.len() / 3);
    post_and_drain(&stack, first).await;
    let sp = &standby_pool;
    let before = stored(&stack.pool).await;
    wait_until("the standby has the first third", DRAIN, || async move {
        stored(sp).await == before
    })
    .await;

    let paused_at = Utc::now();
    let receiver: i32 = sqlx::query_scalar("SELECT pid FROM pg_stat_wal_receiver")
        .fetch_one(&standby_pool)
        .await
        .unwrap();
    signal(receiver, "STOP");
    post_and_drain(&stack, rest).await;
    let on_primary = stored(&stack.pool).await;
    assert_eq!(on_primary, load.distinct_events(), "all stored and acked");

    stack.pg.stop_immediately();
    worker.kill();
    // The receiver dies with what it had not written; the standby restarts its recovery from its
    // own WAL, then is promoted.
    signal(receiver, "KILL");
    drop(standby_pool);
    let standby_url = standby.url();
    let promoted = wait_for_pool(&standby_url).await;
    let done: bool = sqlx::query_scalar("SELECT pg_promote(true, 60)")
        .fetch_one(&promoted)
        .await
        .unwrap();
    assert!(done, "promoted");
    let lacking = load.distinct_events() - stored(&promoted).await;
    assert!(
        lacking > 0,
        "the promoted standby must lack acked events, or this test proves nothing"
    );

    stack.worker_template.database_url = standby_url.clone();
    let _worker = stack.worker_process(&[]);
    let (report, took) = replay(&stack, &replay_args(paused_at)).await;
    load.assert_exactly_once(&promoted).await;
    assert_eq!(
        stack.stream_len("WEBHOOKS_DLQ").await,
        0,
        "nothing dead-lettered"
    );
    assert!(report.published > 0 && report.published < load.sends.len() as u64);

    let (again, _) = replay(&stack, &replay_args(paused_at)).await;
    assert_eq!(
        again.published, report.published,
        "the same window, copies skipped"
    );
    assert_eq!(again.skipped_copies, report.published);
    load.assert_exactly_once(&promoted).await;
    println!(
        "figures: acked={} lacking_after_promotion={lacking} replayed={} replay_took={took:?} \
         stored_after={}",
        load.distinct_events(),
        report.published,
        stored(&promoted).await
    );
    drop(standby);
}

/// A restore from a backup: a base backup at T, more events stored and acked, the data
/// directory destroyed and the backup restored; a log replay from T stores every acked event
/// exactly once.
#[tokio::test]
async fn a_restore_from_a_backup_gets_every_acked_event_back_from_the_log() {
    let mut stack = Stack::start_tuned(0, |_| {}, |_| {}).await;
    let load = Workload::new(400);
    load.register(&stack.pool).await;
    let mut worker = stack.worker_process(&[]);
    let (first, rest) = load.sends.split_at(load.sends.len() / 3);
    post_and_drain(&stack, first).await;
    let backup_at = Utc::now();
    let backup = stack.pg.backup_dir("backup");
    stack.pg.base_backup(&backup, false);
    post_and_drain(&stack, rest).await;
    assert_eq!(stored(&stack.pool).await, load.distinct_events());

    worker.kill();
    stack.pg.stop_immediately();
    stack.pg.restore_from(&backup);
    stack.pg.start_again();
    let restored = wait_for_pool(&stack.pg.url()).await;
    let lacking = load.distinct_events() - stored(&restored).await;
    assert!(lacking > 0, "the restore lost acked events");

    let _worker = stack.worker_process(&[]);
    let (report, took) = replay(&stack, &replay_args(backup_at)).await;
    load.assert_exactly_once(&restored).await;
    assert_eq!(
        stack.stream_len("WEBHOOKS_DLQ").await,
        0,
        "nothing dead-lettered"
    );
    println!(
        "figures: acked={} lacking_after_restore={lacking} replayed={} replay_took={took:?}",
        load.distinct_events(),
        report.published
    );
}

/// A deployment of an earlier release: `WEBHOOKS` a work queue with events queued, some of them
/// delivered to a worker that died holding them, and webhooks still arriving during the upgrade.
/// Workers of this release refuse the old stream, naming the command; `hookline streams
/// --upgrade` makes it a log and every event answered 200 — before or during — is stored once.
#[tokio::test]
async fn the_upgrade_from_a_work_queue_loses_no_queued_event() {
    let stack = Stack::start_tuned(0, |_| {}, |_| {}).await;
    // The earlier release's topology, in place of the log ingest created.
    stack.js.delete_stream("WEBHOOKS").await.unwrap();
    let mut old = stream_args().config();
    old.retention = stream::RetentionPolicy::WorkQueue;
    old.max_age = Duration::from_secs(24 * 3600);
    stack.js.create_stream(old).await.unwrap();
    let mut old_consumer = stack.worker_template.consumer.config();
    old_consumer.max_deliver = 4;
    let wq = stack.js.get_stream("WEBHOOKS").await.unwrap();
    let held: consumer::PullConsumer = wq.create_consumer(old_consumer).await.unwrap();

    let load = Workload::new(300);
    load.register(&stack.pool).await;
    let (before, during) = load.sends.split_at(load.sends.len() * 2 / 3);
    let answers = Workload::post_all(&stack.client, before, 16).await;
    assert!(answers.iter().all(|(_, s)| *s == 200));
    {
        // An old worker took 20 and died without acking.
        use futures::StreamExt as _;
        let mut batch = held.batch().max_messages(20).messages().await.unwrap();
        let mut n = 0;
        while let Some(m) = batch.next().await {
            m.unwrap();
            n += 1;
        }
        assert_eq!(n, 20);
    }

    let queued = stack.stream_len("WEBHOOKS").await;
    let mut refused = stack.worker_process(&[]);
    let status = refused.wait_exit(Duration::from_secs(30)).await;
    assert!(
        status.is_some_and(|s| !s.success())
            && refused.log_text().contains("hookline streams --upgrade"),
        "a worker refuses the work queue: {}",
        refused.log_text()
    );

    // Webhooks keep arriving while the upgrade runs; a provider retries what got a 503.
    let client = stack.client.clone();
    let during = during.to_vec();
    let arriving = tokio::spawn(async move {
        Workload::retry_until_accepted(&client, during, Duration::from_secs(60)).await
    });
    let report = hookline_jetstream::upgrade::upgrade_to_log(
        &stack.js,
        &stream_args(),
        &stack.worker_template.consumer,
        |line| println!("upgrade: {line}"),
    )
    .await
    .unwrap();
    let retried = arriving.await.unwrap();
    assert!(
        report.copied >= queued,
        "every queued event copied: {report:?}"
    );
    assert_eq!(report.restored, report.copied);
    let mut log = stack.js.get_stream("WEBHOOKS").await.unwrap();
    assert_eq!(
        log.info().await.unwrap().config.retention,
        stream::RetentionPolicy::Limits
    );
    assert!(
        stack.js.get_stream("WEBHOOKS_UPGRADE").await.is_err(),
        "holding stream gone"
    );
    let again = hookline_jetstream::upgrade::upgrade_to_log(
        &stack.js,
        &stream_args(),
        &stack.worker_template.consumer,
        |_| {},
    )
    .await
    .unwrap();
    assert!(again.already_a_log);

    let _worker = stack.worker_process(&[]);
    stack.wait_drained(DRAIN).await;
    let pool = &stack.pool;
    let distinct = load.distinct_events();
    wait_until("every event stored", DRAIN, || async move {
        stored(pool).await == distinct
    })
    .await;
    load.assert_exactly_once(&stack.pool).await;
    assert_eq!(stack.stream_len("WEBHOOKS_DLQ").await, 0);
    println!(
        "figures: queued={} copied={} restored={} arriving_during={} refused_then_retried={}",
        before.len(),
        report.copied,
        report.restored,
        load.sends.len() - before.len(),
        retried - (load.sends.len() - before.len())
    );
}

/// A log at its byte limit refuses new webhooks with 503 (discard new): nothing in it, stored or
/// not, is dropped to make room, and what it held is stored once a worker runs. Ingest's gauges
/// say so meanwhile.
#[tokio::test]
async fn a_full_log_refuses_new_webhooks_and_drops_nothing() {
    let stack = Stack::start_tuned(0, |_| {}, |_| {}).await;
    let mut small = stream_args().config();
    small.max_bytes = 64 * 1024;
    stack.js.update_stream(small).await.unwrap();
    let (mut accepted, mut refused) = (Vec::new(), 0);
    for i in 0..400 {
        let id = format!("r-full-{i}");
        let r = stack
            .client
            .post_resend(&id, &format!("em-full-{i}"), "email.delivered")
            .await;
        match r.status().as_u16() {
            200 => accepted.push(id),
            503 => {
                refused += 1;
                assert!(r.headers().contains_key("retry-after"));
                if refused >= 5 {
                    break;
                }
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        refused >= 5 && accepted.len() > 10,
        "{} accepted",
        accepted.len()
    );
    assert_eq!(
        stack.stream_len("WEBHOOKS").await,
        accepted.len() as u64,
        "none dropped"
    );
    let c = &stack.client;
    let waiting = format!("webhook_stream_unprocessed_messages {}", accepted.len());
    let w = &waiting;
    wait_until(
        "ingest reports the log full and unstored",
        DRAIN,
        || async move {
            let m = c.get_text("/metrics").await;
            m.contains(w.as_str()) && m.contains("webhook_stream_max_age_seconds 259200")
        },
    )
    .await;
    let _worker = stack.worker_process(&[]);
    stack.wait_drained(DRAIN).await;
    let pool = &stack.pool;
    let n = accepted.len() as i64;
    wait_until("every accepted event stored", DRAIN, || async move {
        stored(pool).await == n
    })
    .await;
}

/// Waits until `url` accepts connections (a server in crash recovery or just started).
async fn wait_for_pool(url: &str) -> PgPool {
    let start = Instant::now();
    loop {
        if let Ok(pool) = PgPoolOptions::new().max_connections(4).connect(url).await {
            if sqlx::query("SELECT 1").execute(&pool).await.is_ok() {
                return pool;
            }
        }
        assert!(start.elapsed() < DRAIN, "{url} never accepted connections");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The log's settings as ingest has them by default.
fn stream_args() -> hookline_jetstream::StreamArgs {
    hookline_ingest::IngestConfig::for_nats("nats://127.0.0.1:4222").stream
}

fn signal(pid: i32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// What a log replay selects: by receive time (`--since`, `--until`), by stream sequence, by
/// provider; a dry run publishes nothing; copies of an earlier replay are skipped.
#[tokio::test]
async fn a_log_replay_selects_by_time_sequence_and_provider() {
    let stack = Stack::start_tuned(0, |_| {}, |_| {}).await;
    let start = Utc::now() - chrono::Duration::seconds(1);
    for i in 0..6 {
        assert_eq!(
            stack
                .client
                .post_resend(&format!("r-sel-{i}"), &format!("em-sel-{i}"), "email.sent")
                .await
                .status(),
            200
        );
        assert_eq!(
            stack
                .client
                .post_telnyx(&format!("t-sel-{i}"), &format!("tm-sel-{i}"), "sent")
                .await
                .status(),
            200
        );
    }
    let dry = |since, from_seq, provider: Option<&str>| LogReplayArgs {
        since,
        from_seq,
        provider: provider.map(str::to_owned),
        dry_run: true,
        wait: false,
        ..replay_args(start)
    };
    let (all, _) = replay(&stack, &dry(Some(start), None, None)).await;
    assert_eq!(
        (all.selected, all.published),
        (12, 0),
        "a dry run publishes nothing"
    );
    assert_eq!(stack.stream_len("WEBHOOKS").await, 12);
    let (resend, _) = replay(&stack, &dry(Some(start), None, Some("resend"))).await;
    assert_eq!(resend.selected, 6);
    let (tail, _) = replay(&stack, &dry(None, Some(9), None)).await;
    assert_eq!((tail.selected, tail.first_seq), (4, Some(9)));
    let (future, _) = replay(
        &stack,
        &dry(Some(Utc::now() + chrono::Duration::hours(1)), None, None),
    )
    .await;
    assert_eq!(future.selected, 0);
    let until = LogReplayArgs {
        until: Some(start - chrono::Duration::hours(1)),
        ..dry(Some(start - chrono::Duration::hours(2)), None, None)
    };
    assert_eq!(replay(&stack, &until).await.0.selected, 0);

    let real = LogReplayArgs {
        wait: false,
        dry_run: false,
        ..dry(None, Some(1), Some("telnyx"))
    };
    let (done, _) = replay(&stack, &real).await;
    assert_eq!(done.published, 6);
    assert_eq!(stack.stream_len("WEBHOOKS").await, 18);
    let (again, _) = replay(&stack, &dry(Some(start), None, None)).await;
    assert_eq!(
        (again.selected, again.skipped_copies),
        (12, 6),
        "copies skipped"
    );
}
