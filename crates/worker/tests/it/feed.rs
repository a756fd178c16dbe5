//! The change feed: each real change of a recipient's delivery state, and each batch completion,
//! is one message on WEBHOOK_CHANGES, in order per message, whatever is retried, shuffled,
//! killed or unreachable; a change that changes nothing is no message.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_nats::jetstream;
use hookline_testkit::wait_until;
use serde_json::Value;
use sqlx::PgPool;

use crate::stack::Stack;
use crate::support::*;
use crate::workload::Workload;

const DRAIN: Duration = Duration::from_secs(90);

/// One message of the feed.
#[derive(Debug, Clone)]
pub struct Change {
    pub subject: String,
    pub msg_id: String,
    pub body: Value,
}

impl Change {
    pub fn kind(&self) -> &str {
        self.body["kind"].as_str().unwrap()
    }

    fn recipient(&self) -> (String, String) {
        let r = &self.body["recipient"];
        (
            r["provider"].as_str().unwrap().to_owned(),
            r["message_id"].as_str().unwrap().to_owned(),
        )
    }

    fn status(&self, which: &str) -> String {
        self.body[which].as_str().unwrap().to_owned()
    }
}

/// Every message on the feed, in stream order.
pub async fn feed(js: &jetstream::Context) -> Vec<Change> {
    let Ok(stream) = js.get_stream("WEBHOOK_CHANGES").await else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut next = 1;
    while let Ok(m) = stream
        .raw_message_builder()
        .sequence(next)
        .next_by_subject(hookline_jetstream::FEED_SUBJECTS.to_owned())
        .send()
        .await
    {
        out.push(Change {
            subject: m.subject.to_string(),
            msg_id: m
                .headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default(),
            body: serde_json::from_slice(&m.payload).unwrap(),
        });
        next = m.sequence + 1;
    }
    out
}

/// Awaits a webhook's answer and checks it was accepted.
async fn accepted(answer: impl std::future::Future<Output = reqwest::Response>) {
    assert_eq!(answer.await.status(), 200);
}

pub async fn outbox_rows(pool: &PgPool) -> i64 {
    count(pool, "SELECT count(*) FROM change_outbox").await
}

/// Waits until the outbox is empty: every committed change is on the feed.
pub async fn wait_relayed(pool: &PgPool, deadline: Duration) {
    wait_until("the outbox relayed", deadline, || async {
        outbox_rows(pool).await == 0
    })
    .await;
}

/// The feed against the database: per recipient its status changes form one chain from
/// `queued` up to its row's status (so none is missing, repeated or out of order), a first open
/// or click at most once, each change id once and equal to the message's `Nats-Msg-Id`, subjects
/// as documented; every completed batch once, with its counters. Returns the status changes.
pub async fn assert_feed_matches_rows(pool: &PgPool, changes: &[Change]) -> usize {
    let mut ids = BTreeSet::new();
    let mut at: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut engaged = BTreeSet::new();
    let mut status_changes = 0;
    let mut completions = BTreeMap::new();
    for c in changes {
        assert_eq!(c.body["schema"], "hookline.change.v1", "{c:?}");
        assert_eq!(c.body["change_id"].as_str(), Some(c.msg_id.as_str()));
        assert!(
            ids.insert(c.msg_id.clone()),
            "change twice on the feed: {c:?}"
        );
        let batch = c.body["batch_id"].as_str().unwrap_or("none").to_owned();
        match c.kind() {
            "status" => {
                let key = c.recipient();
                let current = at.get(&key).cloned().unwrap_or_else(|| "queued".to_owned());
                assert_eq!(c.status("old_status"), current, "a gap or a repeat: {c:?}");
                assert_ne!(c.status("new_status"), current, "{c:?}");
                assert_eq!(
                    c.subject,
                    format!(
                        "hookline.changes.{batch}.{}.{}",
                        key.0,
                        c.status("new_status")
                    )
                );
                at.insert(key, c.status("new_status"));
                status_changes += 1;
            }
            kind @ ("opened" | "clicked") => {
                let key = c.recipient();
                assert_eq!(
                    c.subject,
                    format!("hookline.changes.{batch}.{}.{kind}", key.0)
                );
                assert!(engaged.insert((key, kind.to_owned())), "{c:?}");
            }
            "batch_completed" => {
                assert_eq!(
                    c.subject,
                    format!("hookline.changes.{batch}._batch.completed")
                );
                *completions.entry(batch).or_insert(0) += 1;
            }
            other => panic!("unknown kind {other}: {c:?}"),
        }
    }
    for ((provider, message), status) in &at {
        assert_eq!(
            &crate::support::status(pool, provider, message).await,
            status,
            "the last change of {provider}/{message} is its row"
        );
    }
    let completed: Vec<(String, i32, i32)> = sqlx::query_as(
        "SELECT id::text, total_count, delivered_count FROM batches WHERE completed_at IS NOT NULL",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for (id, total, delivered) in &completed {
        assert_eq!(completions.get(id), Some(&1), "batch {id} completed once");
        let last = changes
            .iter()
            .rev()
            .find(|c| c.kind() == "batch_completed" && c.body["batch_id"] == id.as_str())
            .unwrap();
        assert_eq!(last.body["batch"]["counts"]["total"], *total);
        assert_eq!(last.body["batch"]["counts"]["delivered"], *delivered);
    }
    assert_eq!(completions.len(), completed.len(), "{completions:?}");
    status_changes
}

/// Every recipient with a status above queued has at least one change on the feed.
async fn assert_every_changed_row_is_on_the_feed(pool: &PgPool, changes: &[Change]) {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT provider, provider_message_id FROM recipients WHERE status <> 'queued'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let on_feed: BTreeSet<(String, String)> = changes
        .iter()
        .filter(|c| c.kind() == "status")
        .map(Change::recipient)
        .collect();
    for r in rows {
        assert!(on_feed.contains(&r), "{r:?} changed but is not on the feed");
    }
}

/// Once the workers drained a workload and the relay its changes: every event stored once, and
/// the feed checked against the rows (see [`assert_feed_matches_rows`]); the feed and its number
/// of status changes.
async fn drained_feed(stack: &Stack, load: &Workload) -> (Vec<Change>, usize) {
    stack.wait_drained(DRAIN).await;
    load.assert_exactly_once(&stack.pool).await;
    wait_relayed(&stack.pool, DRAIN).await;
    let changes = feed(&stack.js).await;
    let n = assert_feed_matches_rows(&stack.pool, &changes).await;
    assert_every_changed_row_is_on_the_feed(&stack.pool, &changes).await;
    (changes, n)
}

#[tokio::test]
async fn shuffled_and_retried_events_put_each_real_change_on_the_feed_once_in_order() {
    let stack = Stack::start(2, |_| {}).await;
    let load = Workload::new(400);
    load.register(&stack.pool).await;
    let posted = Workload::post_all(&stack.client, &load.sends, 16).await;
    assert!(posted.iter().all(|(_, st)| *st == 200));
    let (changes, n) = drained_feed(&stack, &load).await;
    // Each recipient went up once (final first) or twice (sent, then final); 1 batch change.
    assert!((400..=800).contains(&n), "{n}");
    assert_eq!(changes.len(), n + 1);
    assert_eq!(changes.last().unwrap().kind(), "batch_completed");
    let published = stack.total(|m| {
        ["status", "batch_completed"]
            .iter()
            .map(|k| m.changes_published.with_label_values(&[k]).get())
            .sum()
    });
    assert_eq!(published as usize, changes.len());
    let info = stack
        .js
        .get_stream("WEBHOOK_CHANGES")
        .await
        .unwrap()
        .cached_info()
        .clone();
    println!(
        "figures: posts={} distinct events={} changes on the feed={} (status {n}), {} bytes per \
         change on the feed",
        posted.len(),
        load.distinct_events(),
        changes.len(),
        info.state.bytes / info.state.messages.max(1)
    );
}

#[tokio::test]
async fn early_events_duplicates_and_batch_completion_on_the_feed() {
    let stack = Stack::start(1, |_| {}).await;
    let (pool, c) = (&stack.pool, &stack.client);
    let t = |s: u32| format!("2026-11-23T10:00:{s:02}.000+00:00");
    // Events before their recipients exist: kept, no change yet (no recipient to change).
    accepted(c.post_telnyx_at("e1-d", "e1", "delivered", &t(2))).await;
    accepted(c.post_resend_at("e2-s", "e2", "email.sent", &t(1))).await;
    wait_until("2 events stored", DRAIN, || async {
        stack.stored_events().await == 2
    })
    .await;
    stack.wait_drained(DRAIN).await;
    assert_eq!(
        outbox_rows(pool).await + feed(&stack.js).await.len() as i64,
        0
    );

    // The registration's commit pass applies them: two changes, in that transaction.
    let batch = new_batch(pool).await;
    let mut tx = pool.begin().await.unwrap();
    for (p, m) in [("telnyx", "e1"), ("resend", "e2")] {
        sqlx::query("INSERT INTO recipients (batch_id, provider, provider_message_id, address) VALUES ($1::uuid, $2, $3, $4)")
            .bind(&batch)
            .bind(p)
            .bind(m)
            .bind(format!("{m}@example.com"))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    wait_relayed(pool, DRAIN).await;
    let changes = feed(&stack.js).await;
    assert_eq!(changes.len(), 2, "{changes:#?}");
    let e1 = changes
        .iter()
        .find(|c| c.body["recipient"]["message_id"] == "e1")
        .unwrap();
    assert_eq!(
        (e1.status("old_status"), e1.status("new_status")),
        ("queued".into(), "delivered".into())
    );
    assert_eq!(e1.body["occurred_at"], "2026-11-23T10:00:02.000000Z");
    assert_eq!(e1.body["event_id"], "e1-d");
    assert_eq!(e1.body["recipient"]["address"], "e1@example.com");
    assert_eq!(e1.body["provider_status"], "delivered");
    assert!(e1.body["stored_at"].as_str().unwrap().ends_with('Z'));
    let open: (i32, Option<i64>) = sqlx::query_as(
        "SELECT open_count, (SELECT count(*) FROM unfinished_batches) FROM unfinished_batches WHERE batch_id = $1::uuid",
    )
    .bind(&batch)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(open, (1, Some(1)), "e2 (sent) keeps the batch unfinished");

    // e2 delivered: its change, then the batch's completion, in that order.
    accepted(c.post_resend_at("e2-d", "e2", "email.delivered", &t(3))).await;
    let s = &stack;
    wait_until("e2's change and the completion", DRAIN, || async move {
        feed(&s.js).await.len() == 4
    })
    .await;
    let changes = feed(&stack.js).await;
    assert_eq!(changes[2].kind(), "status");
    assert_eq!(changes[2].status("old_status"), "sent");
    assert_eq!(changes[3].kind(), "batch_completed");
    let b = &changes[3].body["batch"];
    assert_eq!(b["counts"]["total"], 2);
    assert_eq!(b["counts"]["delivered"], 2);
    assert_eq!(b["first_sent_at"], "2026-11-23T10:00:01.000000Z");
    assert_eq!(b["last_final_at"], "2026-11-23T10:00:03.000000Z");
    let completed: bool =
        sqlx::query_scalar("SELECT completed_at IS NOT NULL FROM batches WHERE id = $1::uuid")
            .bind(&batch)
            .fetch_one(pool)
            .await
            .unwrap();
    assert!(completed);
    assert_eq!(
        stack.workers[0]
            .metrics
            .batch_time_to_final
            .get_sample_count(),
        1
    );

    // A provider's retry (absorbed by JetStream's dedup window, or the database past it) and an
    // older event change nothing: no message.
    accepted(c.post_resend_at("e2-d", "e2", "email.delivered", &t(3))).await;
    accepted(c.post_telnyx_at("e1-s", "e1", "sent", &t(1))).await;
    wait_until("the older event stored", DRAIN, || async move {
        s.stored_events().await == 4
    })
    .await;
    stack.wait_drained(DRAIN).await;
    wait_relayed(pool, DRAIN).await;
    assert_eq!(
        feed(&stack.js).await.len(),
        4,
        "nothing changed, nothing on the feed"
    );

    // A recipient added reopens the batch; its final status completes it again: a new change.
    add_recipient(pool, &batch, "telnyx", "e3").await;
    accepted(c.post_telnyx_at("e3-d", "e3", "delivered", &t(5))).await;
    wait_until("the second completion", DRAIN, || async move {
        feed(&s.js).await.len() == 6
    })
    .await;
    let changes = feed(&stack.js).await;
    assert_eq!(changes[5].kind(), "batch_completed");
    assert_eq!(changes[5].body["batch"]["counts"]["total"], 3);
    assert_ne!(changes[5].msg_id, changes[3].msg_id);
    let completions = changes
        .iter()
        .filter(|c| c.kind() == "batch_completed")
        .count();
    assert_eq!(completions, 2);

    // The example consumer reads the same six changes with a durable consumer of its own.
    let root = hookline_testkit::workspace_root();
    let (ok, out) = hookline_testkit::output_of(
        std::process::Command::new("timeout")
            .arg("60")
            .arg(root.join(".venv/bin/python"))
            .arg(root.join("examples/feed_consumer.py"))
            .args(["--server", &stack.nats.url(), "--count", "6"]),
    );
    assert!(
        ok,
        "examples/feed_consumer.py failed (scripts/test.sh installs nats-py): {out}"
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "{out}");
    assert!(
        lines.contains(&"status telnyx/e1 queued -> delivered at 2026-11-23T10:00:02.000000Z"),
        "{out}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with(&format!("batch {batch} complete")))
            .count(),
        2,
        "{out}"
    );
}

/// Workers SIGKILLed before and after COMMIT, and the relay killed between its publish and its
/// delete: no change lost, none twice on the feed.
#[tokio::test]
async fn killed_workers_and_a_killed_relay_lose_no_change_and_repeat_none() {
    let stack = Stack::start_tuned(0, |_| {}, |w| w.consumer.ack_wait_secs = 2).await;
    let load = Workload::new(1200);
    load.register(&stack.pool).await;
    let no_relay = ("HOOKLINE_FEED_RELAY", "false");
    let mut after = stack.worker_process(&[("HOOKLINE_FAULT_CRASH", "after_commit:3"), no_relay]);
    let mut before = stack.worker_process(&[("HOOKLINE_FAULT_CRASH", "before_commit:4"), no_relay]);
    // The only relay at first: it dies after its second round's PubAcks, before its delete.
    let mut relay = stack.worker_process(&[("HOOKLINE_FAULT_CRASH", "feed_published:2")]);
    let posted = Workload::post_all(&stack.client, &load.sends, 16).await;
    assert!(posted.iter().all(|(_, st)| *st == 200));
    for (w, point) in [
        (&mut after, "AfterCommit"),
        (&mut before, "BeforeCommit"),
        (&mut relay, "FeedPublished"),
    ] {
        let status = w.wait_exit(DRAIN).await.expect("the worker crashed");
        assert!(!status.success(), "{point}: {status:?}");
        assert!(
            w.log_text().contains(&format!("aborting at {point}")),
            "{point}: {}",
            w.log_text()
        );
    }
    let relayed_before_the_crash = feed(&stack.js).await.len();
    let waiting = outbox_rows(&stack.pool).await;
    let _finish_a = stack.worker_process(&[]);
    let _finish_b = stack.worker_process(&[]);
    let (changes, n) = drained_feed(&stack, &load).await;
    assert_eq!(
        changes.len(),
        n + 1,
        "every status change and the batch's completion"
    );
    println!(
        "figures: changes={} on the feed when the relay died={relayed_before_the_crash} \
         left in the outbox then={waiting}",
        changes.len()
    );
}

/// NATS down: committed changes wait in the outbox (an application's registration applies early
/// events without NATS), the gauge shows them, and they drain once NATS is back.
#[tokio::test]
async fn with_nats_down_the_outbox_grows_then_drains_and_loses_nothing() {
    let mut stack = Stack::start(1, |_| {}).await;
    let t = "2026-11-23T10:00:02.000+00:00";
    for i in 0..50 {
        let m = format!("n{i}");
        let r = stack
            .client
            .post_telnyx_at(&format!("{m}-d"), &m, "delivered", t)
            .await;
        assert_eq!(r.status(), 200);
    }
    let s = &stack;
    wait_until("50 stored", DRAIN, || async move {
        s.stored_events().await == 50
    })
    .await;
    stack.wait_drained(DRAIN).await;

    stack.nats.kill();
    let batch = new_batch(&stack.pool).await;
    add_recipients(&stack.pool, &batch, "telnyx", "n", 50).await;
    assert_eq!(
        outbox_rows(&stack.pool).await,
        51,
        "50 changes and the batch's completion"
    );
    let m = stack.workers[0].metrics.clone();
    wait_until("the gauge shows the outbox", DRAIN, || {
        let m = m.clone();
        async move { m.outbox_rows.get() == 51 && m.feed_relay_failures.get() > 0 }
    })
    .await;

    stack.nats.restart();
    wait_relayed(&stack.pool, DRAIN).await;
    let changes = feed(&stack.js).await;
    assert_eq!(changes.len(), 51);
    assert_feed_matches_rows(&stack.pool, &changes).await;
    wait_until("the gauge drained", DRAIN, || {
        let m = m.clone();
        async move { m.outbox_rows.get() == 0 }
    })
    .await;
}

/// The feed turned off for the database (`hookline.feed = off`): state and completion as ever,
/// nothing in the outbox, nothing on the feed.
#[tokio::test]
async fn with_the_feed_off_nothing_is_written_and_batches_still_complete() {
    let mut stack = Stack::start_tuned(0, |_| {}, |w| w.feed_relay = false).await;
    sqlx::query(
        "DO $$ BEGIN \
         EXECUTE format('ALTER DATABASE %I SET hookline.feed = off', current_database()); END $$",
    )
    .execute(&stack.pool)
    .await
    .unwrap();
    // Sessions opened from now on see it: the worker's, and the registration's own.
    stack.add_worker().await;
    let app = sqlx::PgPool::connect(&stack.pg.url()).await.unwrap();
    let batch = new_batch(&app).await;
    add_recipient(&app, &batch, "telnyx", "off-1").await;
    let t = "2026-11-23T10:00:02.000+00:00";
    accepted(
        stack
            .client
            .post_telnyx_at("off-1-d", "off-1", "delivered", t),
    )
    .await;
    let pool = &stack.pool;
    wait_until("delivered", DRAIN, || async move {
        status(pool, "telnyx", "off-1").await == "delivered"
    })
    .await;
    let completed: bool =
        sqlx::query_scalar("SELECT completed_at IS NOT NULL FROM batches WHERE id = $1::uuid")
            .bind(&batch)
            .fetch_one(&app)
            .await
            .unwrap();
    assert!(completed, "completion is recorded with the feed off");
    assert_eq!(outbox_rows(&app).await, 0);
    assert!(feed(&stack.js).await.is_empty());
}
