//! The answer deadline: however slow the broker, every webhook is answered within
//! `HOOKLINE_ANSWER_DEADLINE_MS` (503 + Retry-After past it), below Telnyx's 2 s. A PubAck that
//! arrives after the 503 is absorbed when the provider retries: one copy in the stream.

use std::time::{Duration, Instant};

use hookline_testkit::signing::{self, RESEND_SECRET};

use crate::harness::Ingest;

#[tokio::test]
async fn a_hung_broker_gets_a_503_within_the_deadline_and_the_retry_is_stored_once() {
    let mut ingest = Ingest::start_with(|c| {
        // The PubAck wait alone would exceed the deadline: the deadline must win.
        c.publish_timeout_ms = 5_000;
        c.answer_deadline_ms = 800;
    })
    .await;
    let body = signing::resend_body("email.delivered", "em-hung", "2026-11-23T10:00:00Z");
    let headers = signing::resend_headers(RESEND_SECRET, "msg_hung", &body, signing::now());

    // A hung broker (a stalled disk, a GC pause): connected, answering nothing.
    ingest.nats.signal("STOP");
    let started = Instant::now();
    let answer = ingest.client.post("resend", &headers, &body).await;
    let took = started.elapsed();
    ingest.nats.signal("CONT");
    assert_eq!(answer.status(), 503);
    assert!(answer.headers().get("retry-after").is_some());
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_millis(1_900),
        "answered at the deadline, before Telnyx's 2 s: {took:?}"
    );

    // The provider retries the same event: stored, and only once however the first publish
    // ended (its PubAck may have come after the 503).
    let c = &ingest.client;
    let (h, b) = (&headers, &body);
    hookline_testkit::wait_until(
        "the retry is accepted",
        Duration::from_secs(20),
        || async move { c.post("resend", h, b).await.status() == 200 },
    )
    .await;
    assert_eq!(ingest.stored_messages().await, 1);
    ingest.stop().await;
}
