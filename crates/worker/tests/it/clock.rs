//! Stored once whatever the provider's clock says: an event dated two hours after it arrived (a
//! provider clock running fast), retried after JetStream's dedup window, is one row — for a
//! built-in provider (Resend) and a generic source (unix seconds, as it declares). Before
//! migration 20261204000001 each retry was a second row: the dedup probe started at the event's
//! own time less an hour, after the first copy had been stored.

use std::time::Duration;

use chrono::Utc;
use hookline_testkit::{wait_until, workspace_root};

use crate::sources::{signed, signer};
use crate::stack::Stack;
use crate::support::count;

const RESPONDIO_KEY: &str = "clock-respondio-key";

#[tokio::test]
async fn events_dated_hours_ahead_are_stored_once_however_late_the_retry() {
    let sources = workspace_root().join("examples/respondio-style.toml");
    std::env::set_var("RESPONDIO_SIGNING_KEY", RESPONDIO_KEY);
    let file = sources.clone();
    let stack = Stack::start_tuned(
        1,
        |c| {
            c.sources_file = Some(sources);
            // A short dedup window, so a retry soon gets past it as one days later would.
            c.stream.stream_duplicate_window_ms = 200;
        },
        |w| w.sources_file = Some(file),
    )
    .await;
    let ahead = Utc::now() + chrono::Duration::hours(2);
    let resend_at = ahead.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let rio = signer("respondio-style.toml", RESPONDIO_KEY);
    let rio_body = format!(
        r#"{{"event_type":"message.status","event_id":"rio-ahead","message":{{"messageId":900777,"status":{{"value":"delivered","timestamp":{}}}}}}}"#,
        ahead.timestamp()
    );
    let rio_headers = signed(&rio, RESPONDIO_KEY, Vec::new(), &rio_body);

    let post_both = || async {
        let a = stack
            .client
            .post_resend_at("r-ahead", "em-ahead", "email.delivered", &resend_at)
            .await
            .status();
        let b = stack
            .client
            .post("respondio", &rio_headers, &rio_body)
            .await
            .status();
        assert_eq!((a.as_u16(), b.as_u16()), (200, 200));
    };
    post_both().await;
    let pool = &stack.pool;
    let rows = "SELECT count(*) FROM delivery_events WHERE event_id IN ('r-ahead', 'rio-ahead')";
    wait_until("both stored", Duration::from_secs(20), || async move {
        count(pool, rows).await == 2
    })
    .await;
    assert_eq!(
        count(
            pool,
            "SELECT count(*) FROM delivery_events WHERE occurred_at > now() + interval '1 hour'"
        )
        .await,
        2,
        "both dated ahead, as their providers said"
    );
    // The providers retry until JetStream takes the copies as new (past its dedup window).
    let s = &stack;
    wait_until(
        "the retries pass JetStream's dedup window",
        Duration::from_secs(20),
        || async move {
            post_both().await;
            s.stream_len("WEBHOOKS").await >= 4
        },
    )
    .await;
    stack.wait_drained(Duration::from_secs(20)).await;
    assert_eq!(count(pool, rows).await, 2, "one row each");
    assert!(
        stack.total(|m| m.duplicates.get()) >= 2,
        "the retries absorbed"
    );
}
