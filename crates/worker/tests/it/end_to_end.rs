//! Signed webhooks in over HTTP, delivery state out in PostgreSQL — the whole path, real parts.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use hookline_testkit::{signing, wait_until};
use rand::seq::SliceRandom;

use crate::stack::Stack;
use crate::support::*;

#[tokio::test]
async fn signed_webhooks_become_delivery_state() {
    let stack = Stack::start(1, |_| {}).await;
    let pool = &stack.pool;
    let batch = new_batch(pool).await;
    for m in ["sms-1", "sms-2", "sms-3"] {
        add_recipient(pool, &batch, "telnyx", m).await;
    }
    for m in ["em-1", "em-2"] {
        add_recipient(pool, &batch, "resend", m).await;
    }
    let c = &stack.client;
    let t = |s: u32| format!("2026-11-23T10:00:{s:02}.000+00:00");
    let posts = [
        c.post_telnyx_at("t1", "sms-1", "sent", &t(1)).await,
        c.post_telnyx_at("t2", "sms-1", "delivered", &t(2)).await,
        c.post_telnyx_at("t2", "sms-1", "delivered", &t(2)).await, // provider retry
        c.post_telnyx_at("t3", "sms-2", "sent", &t(1)).await,
        c.post_telnyx_at("t4", "sms-2", "delivery_failed", &t(5))
            .await,
        c.post_telnyx_at("t6", "sms-3", "delivered", &t(9)).await, // out of order:
        c.post_telnyx_at("t5", "sms-3", "sent", &t(8)).await,      // sent arrives last
        c.post_resend_at("r1", "em-1", "email.sent", &t(1)).await,
        c.post_resend_at("r2", "em-1", "email.delivered", &t(3))
            .await,
        c.post_resend_at("r3", "em-1", "email.opened", &t(7)).await,
        c.post_resend_at("r4", "em-2", "email.bounced", &t(4)).await,
        c.post_resend_at("r5", "em-early", "email.delivered", &t(4))
            .await, // not registered yet
    ];
    for p in posts {
        assert_eq!(p.status(), 200);
    }
    wait_until(
        "11 distinct events stored",
        Duration::from_secs(20),
        || async { count(pool, "SELECT count(*) FROM delivery_events").await == 11 },
    )
    .await;
    stack.wait_drained(Duration::from_secs(10)).await;

    assert_eq!(status(pool, "telnyx", "sms-1").await, "delivered");
    let sms2 = state(pool, "telnyx", "sms-2").await;
    assert_eq!(sms2[0].as_deref(), Some("failed"));
    assert_eq!(sms2[3].as_deref(), Some("40008"), "carrier error code kept");
    assert!(sms2[4].as_deref().unwrap().contains("Carrier rejected"));
    let sms3 = state(pool, "telnyx", "sms-3").await;
    assert_eq!(
        sms3[0].as_deref(),
        Some("delivered"),
        "a late 'sent' does not regress"
    );
    assert!(sms3[5].is_some(), "but it fills sent_at");
    let em1 = state(pool, "resend", "em-1").await;
    assert_eq!(em1[0].as_deref(), Some("delivered"));
    assert!(em1[9].is_some(), "opened_at set by the open event");
    let em2 = state(pool, "resend", "em-2").await;
    assert_eq!(em2[0].as_deref(), Some("bounced"));
    assert_eq!(em2[3].as_deref(), Some("Permanent/General"));

    // The sending app registers em-early after its events arrived.
    add_recipient(pool, &batch, "resend", "em-early").await;
    assert_eq!(status(pool, "resend", "em-early").await, "delivered");

    let counts: (i32, i32, i32, i32, i32) = sqlx::query_as(
        "SELECT total_count, delivered_count, failed_count, bounced_count, queued_count FROM batches",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(counts, (6, 4, 1, 1, 0));
    assert_counters_match_recount(pool).await;
    let payload: String =
        sqlx::query_scalar("SELECT payload::text FROM delivery_events WHERE event_id = 'r4'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(
        payload,
        signing::resend_body("email.bounced", "em-2", &t(4)),
        "raw body kept verbatim"
    );
}

/// Two workers on one durable consumer: every event is stored once, by exactly one of them.
#[tokio::test]
async fn two_workers_share_one_stream_and_store_every_event_once() {
    let stack = Stack::start(2, |_| {}).await;
    let pool = &stack.pool;
    let batch = new_batch(pool).await;
    let messages = 300;
    sqlx::query(
        "INSERT INTO recipients (batch_id, provider, provider_message_id)
         SELECT $1::uuid, CASE WHEN i % 2 = 0 THEN 'telnyx' ELSE 'resend' END, 'm' || i
         FROM generate_series(0, $2 - 1) AS i",
    )
    .bind(&batch)
    .bind(messages)
    .execute(pool)
    .await
    .unwrap();
    // Two events per message, plus a provider retry of every fifth event, shuffled.
    let mut sends: Vec<(i32, &str)> = (0..messages)
        .flat_map(|i| [(i, "sent"), (i, "delivered")])
        .collect();
    let retries: Vec<_> = sends.iter().step_by(5).cloned().collect();
    sends.extend(retries);
    sends.shuffle(&mut rand::rng());
    let distinct = HashSet::<(i32, &str)>::from_iter(sends.iter().cloned()).len();
    let c = &stack.client;
    let statuses: Vec<u16> = futures::stream::iter(sends)
        .map(|(i, st)| async move {
            let m = format!("m{i}");
            let r = if i % 2 == 0 {
                c.post_telnyx(&format!("t-{m}{st}"), &m, st).await
            } else {
                let kind = if st == "sent" {
                    "email.sent"
                } else {
                    "email.delivered"
                };
                c.post_resend(&format!("r-{m}{st}"), &m, kind).await
            };
            r.status().as_u16()
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 200), "every post accepted");

    stack.wait_drained(Duration::from_secs(60)).await;
    assert_eq!(
        count(pool, "SELECT count(*) FROM delivery_events").await as usize,
        distinct
    );
    assert_eq!(
        count(
            pool,
            "SELECT count(*) FROM recipients WHERE status = 'delivered'"
        )
        .await,
        i64::from(messages)
    );
    let delivered: i32 = sqlx::query_scalar("SELECT delivered_count FROM batches")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(delivered, messages);
    assert_counters_match_recount(pool).await;
    // Shared, not duplicated: each worker did part of the work, and none saw an event twice.
    for (i, w) in stack.workers.iter().enumerate() {
        let acked = w.metrics.processed_total();
        assert!(acked > 0, "worker {i} processed nothing");
    }
    assert_eq!(stack.total(|m| m.stored.get()) as usize, distinct);
    assert_eq!(stack.total(|m| m.duplicates.get()), 0);
}

/// A provider retry after JetStream's dedup window reaches the worker and changes nothing.
#[tokio::test]
async fn a_retry_after_the_dedup_window_is_absorbed_by_the_database() {
    let stack = Stack::start(1, |c| c.stream.stream_duplicate_window_ms = 300).await;
    let pool = &stack.pool;
    let batch = new_batch(pool).await;
    add_recipient(pool, &batch, "resend", "em-late").await;
    let c = &stack.client;
    assert_eq!(
        c.post_resend("r-late", "em-late", "email.delivered")
            .await
            .status(),
        200
    );
    stack.wait_drained(Duration::from_secs(20)).await;
    assert_eq!(status(pool, "resend", "em-late").await, "delivered");
    let before = state(pool, "resend", "em-late").await;
    // Retry until JetStream no longer recognises it (the window has passed).
    wait_until(
        "the dedup window passes",
        Duration::from_secs(20),
        || async {
            let r = c.post_resend("r-late", "em-late", "email.delivered").await;
            let body: serde_json::Value = r.json().await.unwrap();
            body["duplicate"] == false
        },
    )
    .await;
    wait_until(
        "the late copy is processed",
        Duration::from_secs(20),
        || async { stack.total(|m| m.duplicates.get()) >= 1 && stack.unprocessed().await == 0 },
    )
    .await;
    assert_eq!(count(pool, "SELECT count(*) FROM delivery_events").await, 1);
    assert_eq!(state(pool, "resend", "em-late").await, before);
    assert_counters_match_recount(pool).await;
}

/// Correctly signed garbage is kept in the dead-letter stream with its reason; batch-mates commit.
#[tokio::test]
async fn an_unparseable_event_is_dead_lettered_with_its_reason() {
    let stack = Stack::start(1, |_| {}).await;
    let c = &stack.client;
    let garbage = "{\"type\": \"email.delivered\", \"data\": 42}";
    let h = signing::resend_headers(signing::RESEND_SECRET, "r-bad", garbage, signing::now());
    assert_eq!(c.post("resend", &h, garbage).await.status(), 200);
    assert_eq!(
        c.post_resend("r-good", "em-good", "email.sent")
            .await
            .status(),
        200
    );
    wait_until("one dead letter", Duration::from_secs(20), || async {
        stack.stream_len("WEBHOOKS_DLQ").await == 1
    })
    .await;
    stack.wait_drained(Duration::from_secs(20)).await;
    assert_eq!(
        count(&stack.pool, "SELECT count(*) FROM delivery_events").await,
        1
    );
    let dlq = stack.js.get_stream("WEBHOOKS_DLQ").await.unwrap();
    let dead = dlq.get_raw_message(1).await.unwrap();
    assert_eq!(dead.subject.as_str(), "dlq.webhook.resend.email.delivered");
    assert_eq!(dead.payload.as_ref(), garbage.as_bytes(), "body kept");
    let h = &dead.headers;
    assert_eq!(h.get("Hookline-Dlq-Reason").unwrap().as_str(), "bad_shape");
    assert_eq!(h.get("Hookline-Dlq-Stage").unwrap().as_str(), "decode");
    assert_eq!(
        h.get("Hookline-Dlq-Original-Subject").unwrap().as_str(),
        "webhook.resend.email.delivered"
    );
    assert_eq!(
        h.get("svix-id").unwrap().as_str(),
        "r-bad",
        "provider headers kept"
    );
    assert_eq!(stack.total(|m| m.dead_lettered_total()), 1);
}
