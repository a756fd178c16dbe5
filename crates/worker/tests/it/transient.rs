//! Transient database failures of every kind the classification calls an outage, injected into
//! the worker's own writes by a trigger: serialization failures (40001) and deadlocks (40P01) for
//! the first attempts, then statement timeouts (57014). Retried in place, never bisected, nothing
//! dead-lettered, every event stored exactly once.

use std::time::Duration;

use crate::stack::Stack;
use crate::workload::Workload;

#[tokio::test]
async fn serialization_failures_deadlocks_and_timeouts_are_retried_not_dead_lettered() {
    let mut stack = Stack::start_tuned(
        0,
        |_| {},
        |w| {
            w.db_statement_timeout_ms = 300;
            w.breaker_threshold = 100;
        },
    )
    .await;
    for sql in [
        "CREATE SEQUENCE test_failures",
        // Each INSERT statement into delivery_events: the first 4 fail with 40001/40P01 in turn,
        // the next 3 sleep past the worker's statement timeout, the rest pass.
        "CREATE FUNCTION test_inject() RETURNS trigger LANGUAGE plpgsql AS $$
         DECLARE n bigint := nextval('test_failures');
         BEGIN
             IF n <= 4 THEN
                 RAISE EXCEPTION 'injected failure %', n
                     USING ERRCODE = CASE WHEN n % 2 = 1 THEN '40001' ELSE '40P01' END;
             ELSIF n <= 7 THEN
                 PERFORM pg_sleep(1);
             END IF;
             RETURN NULL;
         END $$",
        "CREATE TRIGGER test_inject BEFORE INSERT ON delivery_events
         FOR EACH STATEMENT EXECUTE FUNCTION test_inject()",
    ] {
        sqlx::query(sql).execute(&stack.pool).await.unwrap();
    }
    let load = Workload::new(300);
    load.register(&stack.pool).await;
    assert!(Workload::post_all(&stack.client, &load.sends, 16)
        .await
        .iter()
        .all(|(_, st)| *st == 200));
    stack.add_worker().await;
    stack.add_worker().await;
    stack.wait_drained(Duration::from_secs(60)).await;
    load.assert_exactly_once(&stack.pool).await;
    let injected: i64 = sqlx::query_scalar("SELECT last_value FROM test_failures")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert!(injected > 7, "every injected failure was met");
    assert!(stack.total(|m| m.db_retries.get()) >= 7, "each one retried");
    assert_eq!(
        stack.total(|m| m.bisections.get()),
        0,
        "no event was suspected"
    );
    assert_eq!(stack.total(|m| m.dead_lettered_total()), 0);
    assert_eq!(stack.stream_len("WEBHOOKS_DLQ").await, 0);
}
