//! The delivery budget (`HOOKLINE_MAX_DELIVER`, counted by the workers): an event past it is
//! dead-lettered unread by whichever worker it reaches next (here and in `faults.rs`), and an
//! event on its last attempt through an outage and a shutdown is re-published with a fresh
//! budget instead. Also: a
//! poison batch dead-letters just its poison, and a worker told to stop while NATS is gone exits
//! by its deadline and loses nothing.

use std::time::{Duration, Instant};

use hookline_ops::dlq::{self, Selection};
use hookline_testkit::wait_until;

use crate::outages::set_read_only;
use crate::stack::Stack;
use crate::support::count;

const DRAIN: Duration = Duration::from_secs(60);

fn short_budget(w: &mut hookline_worker::WorkerConfig) {
    w.consumer.max_deliver = 2;
    w.consumer.ack_wait_secs = 1;
    w.breaker_threshold = 2;
    w.breaker_open_ms = 500;
    w.shutdown_deadline_ms = 1_500;
}

/// A poison event that crashes the worker each time it is processed. Both crashes use up the
/// budget; the next worker it reaches (a healthy one here, with nobody else running) finds it
/// delivered past `HOOKLINE_MAX_DELIVER` and dead-letters it unread. JetStream itself never gives
/// up on it, so it cannot be stranded in the log where no worker looks.
#[tokio::test]
async fn a_crash_poison_reaches_the_dlq_from_the_next_worker() {
    let stack = Stack::start_tuned(0, |_| {}, short_budget).await;
    assert_eq!(
        stack
            .client
            .post_resend("r-crash", "em-crash", "email.delivered")
            .await
            .status(),
        200
    );
    for attempt in 1..=2 {
        let mut w = stack.worker_process(&[("HOOKLINE_FAULT_CRASH", "event:r-crash")]);
        let status = w.wait_exit(Duration::from_secs(30)).await;
        assert!(
            status.is_some_and(|s| !s.success()) && w.log_text().contains("aborting at Event"),
            "attempt {attempt} crashes the worker: {}",
            w.log_text()
        );
    }
    assert_eq!(stack.unprocessed().await, 1, "still waiting for a worker");
    assert_eq!(stack.stream_len("WEBHOOKS_DLQ").await, 0, "nobody moved it");

    let s = &stack;
    let _worker = stack.worker_process(&[]);
    wait_until(
        "the next worker moves it",
        Duration::from_secs(30),
        || async move { s.stream_len("WEBHOOKS_DLQ").await == 1 && s.unprocessed().await == 0 },
    )
    .await;
    let dead = dlq::list(&stack.js, "WEBHOOKS_DLQ", &Selection::All)
        .await
        .unwrap();
    assert_eq!(dead[0].reason(), "max_deliveries");
    assert_eq!(dead[0].header("svix-id"), Some("r-crash"));
    assert_eq!(dead[0].header("Hookline-Dlq-Deliveries"), Some("3"));
    assert_eq!(
        count(
            &stack.pool,
            "SELECT count(*) FROM delivery_events WHERE event_id = 'r-crash'"
        )
        .await,
        0,
        "dead-lettered unread, not stored"
    );
    assert_eq!(stack.stream_len("WEBHOOKS").await, 1, "the log keeps it");
}

/// An event on its last allowed delivery, held through a database outage when the worker is told
/// to stop: the worker re-publishes it with a fresh budget instead of handing it back to be given
/// up on (the event never passes the limit). Once the
/// database is back it is stored once, and nothing was dead-lettered.
#[tokio::test]
async fn an_event_on_its_last_attempt_survives_an_outage_and_a_shutdown() {
    let stack = Stack::start_tuned(0, |_| {}, short_budget).await;
    assert_eq!(
        stack
            .client
            .post_resend("r-last", "em-last", "email.delivered")
            .await
            .status(),
        200
    );
    assert_eq!(
        stack.pull_once(Duration::from_secs(5)).await,
        Some(1),
        "a worker took it and died"
    );
    set_read_only(&stack.pool, true).await;
    let mut worker = stack.worker_process(&[]);
    let w = &worker;
    wait_until(
        "the worker holds it through the outage",
        Duration::from_secs(30),
        || async move { w.log_text().contains("Circuit breaker opened") },
    )
    .await;
    worker.signal("TERM");
    assert!(worker.wait_exit(Duration::from_secs(10)).await.is_some());
    assert!(
        worker
            .log_text()
            .contains("re-published with a fresh budget"),
        "{}",
        worker.log_text()
    );
    assert_eq!(stack.unprocessed().await, 1, "the fresh copy waits");
    set_read_only(&stack.pool, false).await;
    let _next = stack.worker_process(&[]);
    stack.wait_drained(DRAIN).await;
    let pool = &stack.pool;
    wait_until("stored", Duration::from_secs(20), || async move {
        count(
            pool,
            "SELECT count(*) FROM delivery_events WHERE event_id = 'r-last'",
        )
        .await
            == 1
    })
    .await;
    assert_eq!(
        stack.stream_len("WEBHOOKS_DLQ").await,
        0,
        "nothing dead-lettered"
    );
}

/// Three events violating a constraint among 97 good ones, all in one batch: bisection isolates
/// exactly the three; the canary write confirms the database is healthy; the 97 commit.
#[tokio::test]
async fn three_bad_events_in_a_batch_of_a_hundred_dead_letter_exactly_three() {
    let mut stack = Stack::start_tuned(
        0,
        |_| {},
        |w| {
            w.batch_size = 100;
            w.flush_interval_ms = 2_000;
        },
    )
    .await;
    sqlx::query("ALTER TABLE delivery_events ADD CONSTRAINT test_no_poison CHECK (provider_message_id NOT LIKE 'poison-%')")
        .execute(&stack.pool)
        .await
        .unwrap();
    let mut ids: Vec<String> = (0..97).map(|i| format!("good-{i}")).collect();
    ids.extend((0..3).map(|i| format!("poison-{i}")));
    use rand::seq::SliceRandom;
    ids.shuffle(&mut rand::rng());
    for id in &ids {
        let r = stack
            .client
            .post_resend(&format!("r-{id}"), id, "email.delivered")
            .await;
        assert_eq!(r.status(), 200);
    }
    stack.add_worker().await;
    stack.wait_drained(DRAIN).await;
    let metrics = &stack.workers[0].metrics;
    assert_eq!(metrics.batch_size.get_sample_count(), 1, "one batch of 100");
    assert_eq!(stack.stored_events().await, 97);
    let dead = dlq::list(&stack.js, "WEBHOOKS_DLQ", &Selection::All)
        .await
        .unwrap();
    let mut poison: Vec<_> = dead
        .iter()
        .map(|d| {
            (
                d.reason().to_owned(),
                d.header("svix-id").unwrap().to_owned(),
            )
        })
        .collect();
    poison.sort();
    assert_eq!(
        poison,
        (0..3)
            .map(|i| ("db_rejected".to_owned(), format!("r-poison-{i}")))
            .collect::<Vec<_>>()
    );
    assert_eq!(metrics.db_retries.get(), 0, "a rejection is no outage");
    assert!(metrics.bisections.get() >= 3, "isolated by bisection");
}

/// NATS is gone and a worker holding a batch through a database outage is told to stop: it exits
/// within its deadline + 1 s, saying what it could not hand back. Once NATS and the database are
/// back, every event it held is redelivered and stored once.
#[tokio::test]
async fn a_worker_stopped_while_nats_is_gone_exits_by_its_deadline() {
    let mut stack = Stack::start_tuned(
        0,
        |_| {},
        |w| {
            w.consumer.ack_wait_secs = 2;
            w.breaker_threshold = 2;
            w.breaker_open_ms = 500;
            w.shutdown_deadline_ms = 3_000;
        },
    )
    .await;
    set_read_only(&stack.pool, true).await;
    let mut worker = stack.worker_process(&[]);
    for i in 0..30 {
        let r = stack
            .client
            .post_resend(
                &format!("r-held-{i}"),
                &format!("em-held-{i}"),
                "email.sent",
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    let s = &stack;
    let w = &worker;
    wait_until(
        "the worker holds the events",
        Duration::from_secs(30),
        || async move {
            w.log_text().contains("Circuit breaker opened")
                && s.consumer_info().await.num_ack_pending == 30
        },
    )
    .await;
    stack.nats.kill();
    let term = Instant::now();
    worker.signal("TERM");
    let status = worker.wait_exit(Duration::from_secs(10)).await;
    let took = term.elapsed();
    assert!(status.is_some(), "still running 10 s after SIGTERM");
    assert!(
        took < Duration::from_millis(4_000),
        "exit within the 3 s deadline + 1 s: {took:?}"
    );
    assert!(
        worker.log_text().contains("Exiting without reaching NATS"),
        "{}",
        worker.log_text()
    );

    stack.nats.restart();
    set_read_only(&stack.pool, false).await;
    let _next = stack.worker_process(&[]);
    let pool = &stack.pool;
    wait_until(
        "every held event stored",
        Duration::from_secs(60),
        || async move {
            count(
                pool,
                "SELECT count(*) FROM delivery_events WHERE event_id LIKE 'r-held-%'",
            )
            .await
                == 30
        },
    )
    .await;
    stack.wait_drained(DRAIN).await;
    assert_eq!(stack.stream_len("WEBHOOKS_DLQ").await, 0);
    println!("figures: worker exit after SIGTERM with NATS gone: {took:?} (deadline 3 s)");
}

/// The DLQ is full (its byte limit, as an account quota would be): an unparseable event cannot be
/// dead-lettered, so the worker does not acknowledge it and it stays in the main stream; ingest
/// keeps answering and good events are stored. Once the DLQ has room, the event lands there.
#[tokio::test]
async fn a_full_dlq_keeps_the_event_in_the_stream_until_there_is_room() {
    let mut stack = Stack::start_tuned(
        0,
        |_| {},
        |w| {
            w.dlq.dlq_max_bytes = 1;
            w.dlq_refresh_secs = 1;
            w.consumer.ack_wait_secs = 1;
        },
    )
    .await;
    stack.add_worker().await;
    let garbage = r#"{"type":"email.sent","oops":true}"#;
    let h = hookline_testkit::signing::resend_headers(
        hookline_testkit::signing::RESEND_SECRET,
        "r-garbage-full",
        garbage,
        hookline_testkit::signing::now(),
    );
    assert_eq!(stack.client.post("resend", &h, garbage).await.status(), 200);
    for i in 0..20 {
        let r = stack
            .client
            .post_resend(&format!("r-ok-{i}"), &format!("em-ok-{i}"), "email.sent")
            .await;
        assert_eq!(r.status(), 200, "ingest answers while the DLQ is full");
    }
    let s = &stack;
    wait_until("the good events are stored", DRAIN, || async move {
        s.stored_events().await == 20
    })
    .await;
    // Several delivery rounds pass: the event is kept, never acked away.
    let metrics = stack.workers[0].metrics.clone();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        assert_eq!(stack.unprocessed().await, 1, "kept for a worker");
        assert_eq!(stack.stream_len("WEBHOOKS_DLQ").await, 0);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(metrics.dead_lettered_total(), 0);

    let mut roomy = stack.worker_template.dlq.clone();
    roomy.dlq_max_bytes = -1;
    stack.js.update_stream(roomy.config(1)).await.unwrap();
    wait_until("it lands in the DLQ", DRAIN, || async move {
        s.stream_len("WEBHOOKS_DLQ").await == 1 && s.unprocessed().await == 0
    })
    .await;
    let dead = dlq::list(&stack.js, "WEBHOOKS_DLQ", &Selection::All)
        .await
        .unwrap();
    assert_eq!(dead[0].header("svix-id"), Some("r-garbage-full"));
    let m = &metrics;
    wait_until("the DLQ gauge shows it", DRAIN, || async move {
        m.dlq_messages.get() == 1 && m.dlq_bytes.get() > 0
    })
    .await;
}

/// SIGINT to a worker holding a batch while the database is read-only: at its shutdown deadline it
/// hands the batch back (NAK), so it is free at once rather than after the ack wait (30 s here),
/// and exits cleanly; the next worker stores every event once.
#[tokio::test]
async fn a_worker_stopped_during_an_outage_hands_its_batch_back() {
    let stack = Stack::start_tuned(
        0,
        |_| {},
        |w| {
            w.consumer.ack_wait_secs = 30;
            w.breaker_threshold = 2;
            w.breaker_open_ms = 500;
            w.shutdown_deadline_ms = 1_500;
        },
    )
    .await;
    set_read_only(&stack.pool, true).await;
    let mut worker = stack.worker_process(&[]);
    for i in 0..20 {
        let r = stack
            .client
            .post_resend(
                &format!("r-back-{i}"),
                &format!("em-back-{i}"),
                "email.sent",
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    let (s, w) = (&stack, &worker);
    wait_until(
        "the worker holds the events",
        Duration::from_secs(30),
        || async move {
            w.log_text().contains("Circuit breaker opened")
                && s.consumer_info().await.num_ack_pending == 20
        },
    )
    .await;
    worker.signal("INT");
    let status = worker.wait_exit(Duration::from_secs(10)).await;
    assert!(status.is_some_and(|s| s.success()), "{}", worker.log_text());
    assert!(
        worker.log_text().contains("batch returned to the stream"),
        "{}",
        worker.log_text()
    );
    set_read_only(&stack.pool, false).await;
    let _next = stack.worker_process(&[]);
    let pool = &stack.pool;
    // Handed back: the next worker gets them at once. Had they been left to expire, they would
    // come back only after the 30 s ack wait, past this deadline.
    wait_until(
        "every event stored, long before the ack wait",
        Duration::from_secs(20),
        || async move {
            count(
                pool,
                "SELECT count(*) FROM delivery_events WHERE event_id LIKE 'r-back-%'",
            )
            .await
                == 20
        },
    )
    .await;
    stack.wait_drained(DRAIN).await;
    assert_eq!(stack.stream_len("WEBHOOKS_DLQ").await, 0);
}
