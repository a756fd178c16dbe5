//! Archive replay: re-publishing every stored event leaves state and counters exactly as they
//! were; after a (simulated) decoder bug corrupted stored events, a replay rebuilds the right
//! state. Includes a generic source whose event id travels in a header.

use std::time::Duration;

use hookline_ops::replay::{parse_since, replay, ReplayArgs};
use hookline_testkit::{wait_until, workspace_root};

use crate::feed::{feed, wait_relayed};
use crate::sources::{signed, signer, GITHUB_SECRET};
use crate::stack::Stack;
use crate::support::*;

/// Everything replay could disturb, as text: recipients' state, batch counters, stored events.
async fn snapshot(pool: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT concat_ws('|', provider, provider_message_id, status, status_event_id, status_at, \
                last_error_code, last_error_description, sent_at, delivered_at, failed_at, \
                opened_at, clicked_at, last_event_at) FROM recipients \
         UNION ALL \
         SELECT concat_ws('|', id, total_count, queued_count, sent_count, delivered_count, \
                failed_count, bounced_count) FROM batches \
         UNION ALL \
         SELECT concat_ws('|', provider, event_id, provider_message_id, event_type, status, \
                engagement, occurred_at, error_code, error_description, md5(payload::text)) \
         FROM delivery_events ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

fn args(from: &str, provider: Option<&str>) -> ReplayArgs {
    ReplayArgs {
        from: parse_since(from).unwrap(),
        to: None,
        provider: provider.map(str::to_owned),
        sources_file: Some(workspace_root().join("examples/github-style.toml")),
        dry_run: false,
        page_size: 4, // several pages even for a handful of events
    }
}

#[tokio::test]
async fn replaying_everything_changes_nothing_and_a_replay_repairs_corrupted_state() {
    std::env::set_var("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET);
    let sources = workspace_root().join("examples/github-style.toml");
    let worker_sources = sources.clone();
    let stack = Stack::start_tuned(
        1,
        |c| c.sources_file = Some(sources),
        |w| w.sources_file = Some(worker_sources),
    )
    .await;
    let pool = &stack.pool;
    let batch = new_batch(pool).await;
    for m in ["sms-1", "sms-2"] {
        add_recipient(pool, &batch, "telnyx", m).await;
    }
    add_recipient(pool, &batch, "resend", "em-1").await;
    add_recipient(pool, &batch, "github", "gh-1").await;
    let c = &stack.client;
    let t = |s: u32| format!("2026-11-23T10:00:{s:02}.000+00:00");
    for r in [
        c.post_telnyx_at("t1", "sms-1", "sent", &t(1)).await,
        c.post_telnyx_at("t2", "sms-1", "delivered", &t(4)).await,
        c.post_telnyx_at("t3", "sms-2", "delivery_failed", &t(6))
            .await,
        c.post_telnyx_at("t4", "sms-2", "sent", &t(2)).await,
        c.post_resend_at("r1", "em-1", "email.delivered", &t(3))
            .await,
        c.post_resend_at("r2", "em-1", "email.opened", &t(8)).await,
        c.post_resend_at("r3", "em-later", "email.bounced", &t(5))
            .await,
    ] {
        assert_eq!(r.status(), 200);
    }
    let gh = signer("github-style.toml", GITHUB_SECRET);
    let body =
        r#"{"message":{"id":"gh-1","status":"delivered","updated_at":"2026-11-23T10:00:07Z"}}"#;
    let headers = vec![
        ("X-GitHub-Delivery".to_owned(), "g1".to_owned()),
        ("X-GitHub-Event".to_owned(), "message_status".to_owned()),
    ];
    let headers = signed(&gh, GITHUB_SECRET, headers, body);
    assert_eq!(c.post("github", &headers, body).await.status(), 200);
    wait_until("8 events stored", Duration::from_secs(20), || async {
        stack.stored_events().await == 8
    })
    .await;
    stack.wait_drained(Duration::from_secs(10)).await;
    let before = snapshot(pool).await;
    wait_relayed(pool, Duration::from_secs(20)).await;
    let on_feed = feed(&stack.js).await.len();

    // 1. Replay everything: every event comes back, is absorbed, and nothing changes.
    let report = replay(&args("1d", None), pool, &stack.js, |_, _| {})
        .await
        .unwrap();
    assert_eq!((report.published, report.duplicates), (8, 0), "{report:?}");
    stack.wait_drained(Duration::from_secs(20)).await;
    wait_until(
        "8 replayed events absorbed",
        Duration::from_secs(10),
        || async { stack.total(|m| m.duplicates.get()) >= 8 },
    )
    .await;
    assert_eq!(stack.total(|m| m.rederived.get()), 0);
    assert_eq!(
        stack.total(|m| m.dead_lettered.with_label_values(&["bad_shape"]).get()),
        0
    );
    assert_eq!(
        snapshot(pool).await,
        before,
        "a replay of correct events changes nothing"
    );
    wait_relayed(pool, Duration::from_secs(20)).await;
    assert_eq!(
        feed(&stack.js).await.len(),
        on_feed,
        "and puts nothing on the change feed"
    );

    // 2. Simulate a past decoder bug: t2 (delivered) was stored as 'sent'.
    sqlx::query("UPDATE delivery_events SET status = 'sent', event_type = 'message.sent' WHERE event_id = 't2'")
        .execute(pool)
        .await
        .unwrap();
    // Its recipient is registered again, as if its events had come first (noted in
    // early_messages), so it carries exactly the state the buggy decoder would have produced
    // (state is monotonic: a later refresh never lowers a status).
    sqlx::query("DELETE FROM recipients WHERE provider_message_id = 'sms-1'")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO early_messages \
         SELECT provider, provider_message_id, min(received_at), max(received_at) \
         FROM delivery_events WHERE provider_message_id = 'sms-1' GROUP BY 1, 2",
    )
    .execute(pool)
    .await
    .unwrap();
    add_recipient(pool, &batch, "telnyx", "sms-1").await;
    assert_eq!(status(pool, "telnyx", "sms-1").await, "sent");
    assert_ne!(snapshot(pool).await, before);

    // The fixed decoder runs in the workers; replaying Telnyx's events repairs the state.
    let report = replay(&args("1d", Some("telnyx")), pool, &stack.js, |_, _| {})
        .await
        .unwrap();
    assert_eq!(report.published, 4, "{report:?}");
    wait_until(
        "the corrupted event re-derived",
        Duration::from_secs(20),
        || async { stack.total(|m| m.rederived.get()) == 1 },
    )
    .await;
    stack.wait_drained(Duration::from_secs(20)).await;
    assert_eq!(status(pool, "telnyx", "sms-1").await, "delivered");
    assert_eq!(snapshot(pool).await, before, "state rebuilt exactly");
    assert_counters_match_recount(pool).await;
    // On the feed: the re-registration applying the corrupted events (queued -> sent), then
    // exactly the repair (sent -> delivered), which completes the batch the registration had
    // reopened.
    wait_relayed(pool, Duration::from_secs(20)).await;
    let changes = feed(&stack.js).await;
    let since: Vec<String> = changes[on_feed..]
        .iter()
        .map(|c| match c.kind() {
            "status" => format!(
                "{} {} -> {}",
                c.body["recipient"]["message_id"].as_str().unwrap(),
                c.body["old_status"].as_str().unwrap(),
                c.body["new_status"].as_str().unwrap()
            ),
            other => other.to_owned(),
        })
        .collect();
    assert_eq!(
        since,
        [
            "sms-1 queued -> sent",
            "sms-1 sent -> delivered",
            "batch_completed"
        ]
    );

    // A dry run counts and publishes nothing.
    let mut seen = 0;
    let mut dry = args("1d", None);
    dry.dry_run = true;
    let report = replay(&dry, pool, &stack.js, |_, total| seen = total)
        .await
        .unwrap();
    assert_eq!((report.published, seen), (0, 8));
}
