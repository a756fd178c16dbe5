//! Every event a provider signed and hookline answered 2xx is stored: documented statuses land
//! (Telnyx `expired`/`cancelled`, Resend `email.suppressed`), events with no delivery information
//! are kept without touching a recipient, and a type or status hookline does not map yet is kept,
//! counted, and applied by a replay once a mapping ships.

use std::time::Duration;

use hookline_ops::replay::{parse_since, replay, ReplayArgs};
use hookline_testkit::signing::{self, RESEND_SECRET};
use hookline_testkit::{wait_until, workspace_root};

use crate::sources::{signed, signer, GITHUB_SECRET};
use crate::stack::Stack;
use crate::support::*;

async fn provider_status(pool: &sqlx::PgPool, provider: &str, message: &str) -> Option<String> {
    sqlx::query_scalar(
        "SELECT provider_status FROM recipients WHERE provider = $1 AND provider_message_id = $2",
    )
    .bind(provider)
    .bind(message)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn expired_cancelled_and_suppressed_land_and_informational_events_are_kept() {
    let stack = Stack::start(1, |_| {}).await;
    let pool = &stack.pool;
    let batch = new_batch(pool).await;
    for (p, m) in [
        ("telnyx", "sms-expired"),
        ("telnyx", "sms-cancelled"),
        ("resend", "em-suppressed"),
        ("resend", "em-untouched"),
    ] {
        add_recipient(pool, &batch, p, m).await;
    }
    let c = &stack.client;
    let t = |s: u32| format!("2026-11-23T10:00:{s:02}.000+00:00");
    let mut answers = vec![
        c.post_telnyx_at("t-exp-1", "sms-expired", "sent", &t(1))
            .await,
        c.post_telnyx_at("t-exp-2", "sms-expired", "expired", &t(9))
            .await,
        c.post_telnyx_at("t-can-1", "sms-cancelled", "scheduled", &t(1))
            .await,
        c.post_telnyx_at("t-can-2", "sms-cancelled", "cancelled", &t(2))
            .await,
        c.post_resend_at("r-sup", "em-suppressed", "email.suppressed", &t(3))
            .await,
    ];
    // An inbound SMS and a contact update: signed, answered 200, and nothing about a recipient.
    let inbound = r#"{"data":{"event_type":"message.received","id":"t-inbound","occurred_at":"2026-11-23T10:00:05+00:00",
        "payload":{"id":"inbound-1","direction":"inbound","text":"STOP","from":{"phone_number":"+13125550123"},
        "to":[{"phone_number":"+13125550100","status":"webhook_delivered"}]},"record_type":"event"}}"#;
    answers.push(
        c.post(
            "telnyx",
            &signing::telnyx_headers(inbound, signing::now()),
            inbound,
        )
        .await,
    );
    let contact = r#"{"type":"contact.updated","created_at":"2026-11-23T10:00:06.000Z",
        "data":{"id":"c-1","email":"someone@example.com","unsubscribed":true}}"#;
    let h = signing::resend_headers(RESEND_SECRET, "r-contact", contact, signing::now());
    answers.push(c.post("resend", &h, contact).await);
    assert!(answers.iter().all(|r| r.status() == 200));

    wait_until("7 events stored", Duration::from_secs(20), || async {
        stack.stored_events().await == 7
    })
    .await;
    stack.wait_drained(Duration::from_secs(20)).await;
    assert_eq!(status(pool, "telnyx", "sms-expired").await, "failed");
    assert_eq!(
        provider_status(pool, "telnyx", "sms-expired")
            .await
            .as_deref(),
        Some("expired")
    );
    assert_eq!(status(pool, "telnyx", "sms-cancelled").await, "failed");
    assert_eq!(
        provider_status(pool, "telnyx", "sms-cancelled")
            .await
            .as_deref(),
        Some("cancelled")
    );
    assert_eq!(status(pool, "resend", "em-suppressed").await, "suppressed");
    assert_eq!(status(pool, "resend", "em-untouched").await, "queued");
    let (failed, suppressed): (i32, i32) =
        sqlx::query_as("SELECT failed_count, suppressed_count FROM batches WHERE id = $1::uuid")
            .bind(&batch)
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!((failed, suppressed), (2, 1));
    assert_counters_match_recount(pool).await;
    assert_eq!(
        stack.stream_len("WEBHOOKS_DLQ").await,
        0,
        "nothing dead-lettered"
    );
    let kept: i64 = count(
        pool,
        "SELECT count(*) FROM delivery_events WHERE event_id IN ('t-inbound', 'r-contact') \
         AND status IS NULL AND engagement IS NULL",
    )
    .await;
    assert_eq!(kept, 2, "events with no delivery information are stored");
    assert_eq!(stack.total(|m| m.skipped.get()), 2);
    assert_eq!(
        stack.total(|m| m.unmapped.with_label_values(&["telnyx"]).get()),
        0
    );

    // Replaying the window, the events about no message included, re-derives and changes nothing.
    let mut args = ReplayArgs {
        from: parse_since("1h").unwrap(),
        to: None,
        provider: None,
        sources_file: None,
        dry_run: false,
        page_size: 3,
    };
    let report = replay(&args, pool, &stack.js, |_, _| {}).await.unwrap();
    assert_eq!(report.published, 7, "{report:?}");
    stack.wait_drained(Duration::from_secs(20)).await;
    assert_eq!(stack.stored_events().await, 7);
    assert_eq!(stack.stream_len("WEBHOOKS_DLQ").await, 0);
    assert_eq!(status(pool, "resend", "em-suppressed").await, "suppressed");
    assert_counters_match_recount(pool).await;

    // An event whose decoder's headers the replay cannot rebuild stops it, naming its source,
    // before anything of it is published.
    sqlx::query(
        "INSERT INTO delivery_events (provider, event_id, event_type, occurred_at, payload) \
         VALUES ('retired-source', 'x-1', 'x', now(), '{}')",
    )
    .execute(pool)
    .await
    .unwrap();
    args.provider = Some("retired-source".into());
    let err = replay(&args, pool, &stack.js, |_, _| {}).await.unwrap_err();
    assert!(err.to_string().contains("\"retired-source\""), "{err}");
}

/// A generic source with a status hookline was not told about: stored, recipient unchanged,
/// counted. The operator adds the mapping, restarts the worker and replays: it applies.
#[tokio::test]
async fn an_unmapped_status_is_kept_counted_and_applied_by_a_replay_once_mapped() {
    std::env::set_var("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET);
    let example = workspace_root().join("examples/github-style.toml");
    let dir = tempfile::tempdir().unwrap();
    let sources = dir.path().join("sources.toml");
    std::fs::copy(&example, &sources).unwrap();
    let (ingest_sources, worker_sources) = (sources.clone(), sources.clone());
    let mut stack = Stack::start_tuned(
        1,
        |c| c.sources_file = Some(ingest_sources),
        |w| w.sources_file = Some(worker_sources),
    )
    .await;
    let pool = stack.pool.clone();
    let batch = new_batch(&pool).await;
    add_recipient(&pool, &batch, "github", "gh-1").await;
    let gh = signer("github-style.toml", GITHUB_SECRET);
    let post = |id: &'static str, status: &'static str, at: &'static str| {
        let body =
            format!(r#"{{"message":{{"id":"gh-1","status":"{status}","updated_at":"{at}"}}}}"#);
        let headers = vec![
            ("X-GitHub-Delivery".to_owned(), id.to_owned()),
            ("X-GitHub-Event".to_owned(), "message_status".to_owned()),
        ];
        let headers = signed(&gh, GITHUB_SECRET, headers, &body);
        let c = stack.client.clone();
        async move { c.post("github", &headers, &body).await.status() }
    };
    assert_eq!(post("g-1", "sent", "2026-11-23T10:00:01Z").await, 200);
    assert_eq!(
        post("g-2", "undeliverable", "2026-11-23T10:00:02Z").await,
        200
    );
    wait_until("both stored", Duration::from_secs(20), || async {
        count(&pool, "SELECT count(*) FROM delivery_events").await == 2
    })
    .await;
    stack.wait_drained(Duration::from_secs(20)).await;
    assert_eq!(
        status(&pool, "github", "gh-1").await,
        "sent",
        "unchanged by it"
    );
    assert_eq!(
        stack.total(|m| m.unmapped.with_label_values(&["github"]).get()),
        1,
        "counted"
    );
    assert_eq!(
        stack.stream_len("WEBHOOKS_DLQ").await,
        0,
        "not dead-lettered"
    );
    let stored: (Option<String>, Option<String>) = sqlx::query_as(
        "SELECT status, provider_status FROM delivery_events WHERE event_id = 'g-2'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(stored, (None, Some("undeliverable".to_owned())));

    // The mapping ships: the operator adds it and restarts the workers, then replays.
    let text = std::fs::read_to_string(&sources).unwrap();
    std::fs::write(
        &sources,
        text.replace(
            "[source.statuses]\n",
            "[source.statuses]\nundeliverable = \"failed\"\n",
        ),
    )
    .unwrap();
    let old = stack.workers[0].http;
    stack.workers.clear();
    wait_until(
        "the old worker has stopped",
        Duration::from_secs(20),
        || async move { tokio::net::TcpStream::connect(old).await.is_err() },
    )
    .await;
    stack.worker_template.sources_file = Some(sources.clone());
    stack.add_worker().await;
    let args = ReplayArgs {
        from: parse_since("1d").unwrap(),
        to: None,
        provider: Some("github".into()),
        sources_file: Some(sources.clone()),
        dry_run: false,
        page_size: 10,
    };
    let report = replay(&args, &pool, &stack.js, |_, _| {}).await.unwrap();
    assert_eq!(report.published, 2, "{report:?}");
    let p = &pool;
    wait_until(
        "the replay applies the new mapping",
        Duration::from_secs(30),
        || async move { status(p, "github", "gh-1").await == "failed" },
    )
    .await;
    assert_eq!(
        provider_status(&pool, "github", "gh-1").await.as_deref(),
        Some("undeliverable")
    );
    assert_counters_match_recount(&pool).await;
}

/// A group MMS whose three addresses end differently: each address's outcome is kept, the message
/// counts as failed (the highest rank), and a late `message.sent` regresses none of them.
#[tokio::test]
async fn a_group_mms_keeps_each_addresss_outcome() {
    let stack = Stack::start(1, |_| {}).await;
    let pool = &stack.pool;
    let batch = new_batch(pool).await;
    add_recipient(pool, &batch, "telnyx", "mms-group").await;
    let group = |id: &str, kind: &str, at: &str, statuses: [&str; 3]| {
        let to: Vec<_> = statuses
            .iter()
            .enumerate()
            .map(|(i, s)| serde_json::json!({"phone_number": format!("+1312555000{i}"), "status": s}))
            .collect();
        serde_json::json!({"data": {"event_type": kind, "id": id, "occurred_at": at,
            "payload": {"id": "mms-group", "type": "MMS", "direction": "outbound", "errors": [], "to": to},
            "record_type": "event"}})
        .to_string()
    };
    let c = &stack.client;
    for body in [
        group(
            "g-final",
            "message.finalized",
            "2026-11-23T10:00:09+00:00",
            ["delivered", "delivery_failed", "expired"],
        ),
        group(
            "g-sent",
            "message.sent",
            "2026-11-23T10:00:01+00:00",
            ["sent", "sent", "sent"],
        ),
    ] {
        let r = c
            .post(
                "telnyx",
                &signing::telnyx_headers(&body, signing::now()),
                &body,
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    wait_until("both stored", Duration::from_secs(20), || async {
        stack.stored_events().await == 2
    })
    .await;
    stack.wait_drained(Duration::from_secs(20)).await;
    let rows: Vec<(String, Option<String>, String, String)> = sqlx::query_as(
        "SELECT address, status, provider_status, status_event_id FROM message_addresses
         WHERE provider = 'telnyx' AND provider_message_id = 'mms-group' ORDER BY address",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let expected = [
        ("+13125550000", "delivered", "delivered"),
        ("+13125550001", "failed", "delivery_failed"),
        ("+13125550002", "failed", "expired"),
    ];
    assert_eq!(rows.len(), 3, "{rows:?}");
    for (row, (address, st, raw)) in rows.iter().zip(expected) {
        assert_eq!(
            (
                row.0.as_str(),
                row.1.as_deref(),
                row.2.as_str(),
                row.3.as_str()
            ),
            (address, Some(st), raw, "g-final"),
            "the late message.sent regresses no address"
        );
    }
    assert_eq!(status(pool, "telnyx", "mms-group").await, "failed");
    assert_counters_match_recount(pool).await;
}
