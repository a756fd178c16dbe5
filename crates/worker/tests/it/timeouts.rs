//! A poison event disguised as an outage: its write always runs past `statement_timeout` (an
//! application's trigger sleeps on it), an outage-class error. With canary writes succeeding it
//! is isolated by bisection and dead-lettered as `db_fails_alone` after `HOOKLINE_ISOLATE_AFTER`
//! attempts, and the 99 events beside it are stored. A database that times out every write fails
//! the canary too: still an outage, retried, nothing dead-lettered.

use std::time::{Duration, Instant};

use hookline_ops::dlq::{self, Selection};
use hookline_testkit::wait_until;

use crate::stack::Stack;
use crate::support::count;

fn quick(w: &mut hookline_worker::WorkerConfig) {
    w.db_statement_timeout_ms = 300;
    w.isolate_after = 2;
    w.retry_base_ms = 20;
    w.retry_max_ms = 200;
    w.breaker_threshold = 1000;
    w.batch_size = 100;
    w.flush_interval_ms = 1000;
}

async fn sleep_on_insert(stack: &Stack, condition: &str) {
    for sql in [
        format!(
            "CREATE FUNCTION test_slow() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN IF {condition} THEN PERFORM pg_sleep(3); END IF; RETURN NEW; END $$"
        ),
        "CREATE TRIGGER test_slow BEFORE INSERT ON delivery_events
         FOR EACH ROW EXECUTE FUNCTION test_slow()"
            .to_owned(),
    ] {
        sqlx::query(&sql).execute(&stack.pool).await.unwrap();
    }
}

async fn post(stack: &Stack, id: &str) {
    let r = stack
        .client
        .post_resend(id, &format!("em-{id}"), "email.delivered")
        .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn an_event_that_always_times_out_is_dead_lettered_and_its_batch_stored() {
    let mut stack = Stack::start_tuned(0, |_| {}, quick).await;
    sleep_on_insert(&stack, "NEW.event_id = 'r-slow'").await;
    for i in 0..50 {
        post(&stack, &format!("r-good-{i}")).await;
    }
    post(&stack, "r-slow").await;
    for i in 50..99 {
        post(&stack, &format!("r-good-{i}")).await;
    }
    let started = Instant::now();
    stack.add_worker().await;
    // The documented bound: (2 x HOOKLINE_ISOLATE_AFTER + log2(batch)) statement timeouts, plus
    // backoff; here (4 + 7) x 0.3 s. Waited for with room to spare on a loaded machine.
    let s = &stack;
    wait_until(
        "the slow event dead-lettered",
        Duration::from_secs(60),
        || async move { s.stream_len("WEBHOOKS_DLQ").await == 1 },
    )
    .await;
    let took = started.elapsed();
    stack.wait_drained(Duration::from_secs(30)).await;
    let stored = count(&stack.pool, "SELECT count(*) FROM delivery_events").await;
    assert_eq!(stored, 99, "the 99 beside it stored");
    let dead = dlq::list(&stack.js, "WEBHOOKS_DLQ", &Selection::All)
        .await
        .unwrap();
    assert_eq!(dead[0].reason(), "db_fails_alone");
    assert_eq!(dead[0].header("svix-id"), Some("r-slow"));
    let detail = dead[0].header("Hookline-Dlq-Detail").unwrap_or_default();
    assert!(
        detail.contains("failed alone 2 times") && detail.contains("canary"),
        "{detail}"
    );
    assert!(
        stack.total(|m| m.bisections.get()) >= 1,
        "isolated by bisection"
    );
    println!("figures: dead-lettered after {took:?}, 99 stored");
}

#[tokio::test]
async fn a_database_that_times_out_every_write_is_still_an_outage() {
    let mut stack = Stack::start_tuned(0, |_| {}, quick).await;
    sleep_on_insert(&stack, "true").await;
    for i in 0..20 {
        post(&stack, &format!("r-all-{i}")).await;
    }
    stack.add_worker().await;
    let s = &stack;
    wait_until(
        "many attempts, each timing out, canary too",
        Duration::from_secs(60),
        || async move { s.total(|m| m.db_retries.get()) >= 8 },
    )
    .await;
    assert_eq!(
        stack.stream_len("WEBHOOKS_DLQ").await,
        0,
        "nothing dead-lettered"
    );
    assert_eq!(
        count(&stack.pool, "SELECT count(*) FROM delivery_events").await,
        0
    );
    // While every write times out, the canary does too: nothing is isolated. (Once the trigger
    // is gone a canary may succeed right after a last timed-out attempt; the halves then commit.)
    assert_eq!(stack.total(|m| m.bisections.get()), 0, "never bisected");
    sqlx::query("DROP TRIGGER test_slow ON delivery_events")
        .execute(&stack.pool)
        .await
        .unwrap();
    stack.wait_drained(Duration::from_secs(60)).await;
    assert_eq!(
        count(&stack.pool, "SELECT count(*) FROM delivery_events").await,
        20
    );
    assert_eq!(
        stack.stream_len("WEBHOOKS_DLQ").await,
        0,
        "nothing dead-lettered after"
    );
}
