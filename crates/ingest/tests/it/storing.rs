//! What ingest stores, and when it may say so.

use std::time::Duration;

use hookline_testkit::signing::{self, RESEND_OLD_SECRET};
use hookline_testkit::wait_until;

use crate::harness::Ingest;

#[tokio::test]
async fn signed_webhooks_are_stored_with_their_subject_and_dedup_id() {
    let ingest = Ingest::start().await;
    let r = ingest
        .client
        .post_telnyx("ev-1", "msg-1", "delivered")
        .await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], "accepted");
    assert_eq!(body["duplicate"], false);
    assert_eq!(
        ingest
            .client
            .post_resend("msg_abc", "em-1", "email.delivered")
            .await
            .status(),
        200
    );
    assert_eq!(ingest.stored_messages().await, 2);

    let first = ingest.stored(1).await;
    assert_eq!(first.subject.as_str(), "webhook.telnyx.message.finalized");
    let h = first.headers;
    assert_eq!(h.get("Nats-Msg-Id").unwrap().as_str(), "telnyx:ev-1");
    assert!(
        h.get("telnyx-signature-ed25519").is_some(),
        "signature kept for audit"
    );
    assert!(h.get("Hookline-Received-At-Ms").is_some());
    let second = ingest.stored(2).await;
    assert_eq!(second.subject.as_str(), "webhook.resend.email.delivered");
    assert_eq!(
        second.headers.get("Nats-Msg-Id").unwrap().as_str(),
        "resend:msg_abc"
    );
    // The body is stored byte for byte.
    let sent = signing::resend_body("email.delivered", "em-1", "2026-11-23T10:00:00.000Z");
    assert_eq!(second.payload.as_ref(), sent.as_bytes());
}

#[tokio::test]
async fn a_provider_retry_inside_the_window_is_200_and_stored_once() {
    let ingest = Ingest::start().await;
    for attempt in 0..3 {
        let r = ingest
            .client
            .post_resend("msg_dup", "em-dup", "email.sent")
            .await;
        assert_eq!(r.status(), 200);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["duplicate"], attempt > 0, "attempt {attempt}");
    }
    assert_eq!(ingest.stored_messages().await, 1);
}

#[tokio::test]
async fn a_secret_being_rotated_out_is_still_accepted() {
    let ingest = Ingest::start().await;
    let body = signing::resend_body("email.sent", "em-rot", "2026-11-23T10:00:00Z");
    let h = signing::resend_headers(RESEND_OLD_SECRET, "msg_rot", &body, signing::now());
    assert_eq!(ingest.client.post("resend", &h, &body).await.status(), 200);
    assert_eq!(ingest.stored_messages().await, 1);
}

/// Correctly signed but not the documented shape: kept (the worker dead-letters it), never a 5xx.
#[tokio::test]
async fn a_signed_but_unparseable_event_is_stored_not_refused() {
    let ingest = Ingest::start().await;
    let body = "this is not json {";
    let h = signing::resend_headers(signing::RESEND_SECRET, "msg_garbage", body, signing::now());
    assert_eq!(ingest.client.post("resend", &h, body).await.status(), 200);
    let h = signing::telnyx_headers(body, signing::now());
    assert_eq!(ingest.client.post("telnyx", &h, body).await.status(), 200);
    // A provider retry of the same unparseable Telnyx bytes is deduplicated by the body's hash.
    assert_eq!(ingest.client.post("telnyx", &h, body).await.status(), 200);
    assert_eq!(ingest.stored_messages().await, 2);
    assert_eq!(
        ingest.stored(1).await.subject.as_str(),
        "webhook.resend.unparsed"
    );
    let telnyx = ingest.stored(2).await;
    assert_eq!(telnyx.subject.as_str(), "webhook.telnyx.unparsed");
    assert!(telnyx
        .headers
        .get("Nats-Msg-Id")
        .unwrap()
        .as_str()
        .starts_with("telnyx:sha256:"));
}

/// Broker down: 503 with Retry-After and nothing claimed; back up: accepted again.
#[tokio::test]
async fn nats_down_answers_503_never_2xx() {
    let mut ingest = Ingest::start().await;
    assert_eq!(
        ingest
            .client
            .post_telnyx("before", "m", "sent")
            .await
            .status(),
        200
    );
    ingest.nats.kill();
    for i in 0..5 {
        let r = ingest
            .client
            .post_telnyx(&format!("during-{i}"), "m", "delivered")
            .await;
        assert_eq!(r.status(), 503, "while NATS is down");
        assert_eq!(r.headers()["retry-after"], "7");
    }
    let ready = ingest
        .http
        .get(format!("{}/readyz", ingest.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);

    ingest.nats.restart();
    let ing = &ingest;
    wait_until(
        "ingest accepts again after NATS restarts",
        Duration::from_secs(30),
        || async move {
            ing.client
                .post_telnyx("after", "m", "delivered")
                .await
                .status()
                == 200
        },
    )
    .await;
    // Only the events that got a 200 are in the stream: `before` and `after`.
    assert_eq!(ingest.stored_messages().await, 2);
}

/// A full stream refuses new events: ingest answers 503 rather than 2xx, and does not drop old ones.
#[tokio::test]
async fn a_full_stream_answers_503() {
    let ingest = Ingest::start_with(|c| c.stream.stream_max_bytes = 4 * 1024).await;
    let mut statuses = Vec::new();
    for i in 0..20 {
        statuses.push(
            ingest
                .client
                .post_resend(&format!("msg_full_{i}"), "em", "email.sent")
                .await
                .status()
                .as_u16(),
        );
    }
    let accepted = statuses.iter().filter(|s| **s == 200).count() as u64;
    assert!(
        accepted > 0 && accepted < 20,
        "some fit, then refusals: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().position(|s| *s == 503),
        Some(accepted as usize),
        "refusals only once full"
    );
    let refused = ingest
        .client
        .post_resend("msg_full_more", "em", "email.sent")
        .await;
    assert_eq!(refused.status(), 503);
    assert_eq!(
        refused.headers()["retry-after"],
        "7",
        "the provider is told when to retry"
    );
    assert_eq!(
        ingest.stored_messages().await,
        accepted,
        "every 200 is stored, the first ones kept"
    );

    // The stream's gauges (what WebhookStreamNearlyFull and WebhookBacklogGrowing read) follow
    // it from ingest's readiness check: the accepted events, nearly the whole limit.
    let gauge = |text: &str, name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(f64::NAN)
    };
    let i = &ingest;
    wait_until(
        "the stream gauges",
        Duration::from_secs(10),
        || async move { gauge(&i.metrics().await, "webhook_stream_messages ") == accepted as f64 },
    )
    .await;
    let text = ingest.metrics().await;
    let fullness = gauge(&text, "webhook_stream_fullness_ratio ");
    assert!(fullness > 0.5 && fullness <= 1.0, "{fullness}: {text}");
    assert_eq!(
        gauge(&text, "webhook_stream_bytes ") / (4.0 * 1024.0),
        fullness
    );
}

/// Shutting down under load: requests in flight finish; nothing answered 2xx is missing.
#[tokio::test]
async fn shutdown_under_load_never_acknowledges_an_unstored_event() {
    let mut ingest = Ingest::start().await;
    let client = ingest.client.clone();
    let posting = tokio::spawn(async move {
        let mut handles = Vec::new();
        for i in 0..400 {
            let c = client.clone();
            handles.push(tokio::spawn(async move {
                let body = signing::resend_body("email.sent", "em", "2026-11-23T10:00:00Z");
                let id = format!("msg_sd_{i}");
                let h = signing::resend_headers(signing::RESEND_SECRET, &id, &body, signing::now());
                let mut req = c
                    .http
                    .post(format!("{}/webhooks/resend", c.base))
                    .body(body);
                for (k, v) in &h {
                    req = req.header(k, v);
                }
                req.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
            }));
        }
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    });
    let ing = &ingest;
    wait_until(
        "some requests are stored",
        Duration::from_secs(20),
        || async move { ing.stored_messages().await >= 50 },
    )
    .await;
    ingest.stop().await;
    let statuses = posting.await.unwrap();
    let ok = statuses.iter().filter(|s| **s == 200).count() as u64;
    assert!(ok >= 50);
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 0 || *s == 503),
        "{statuses:?}"
    );
    assert_eq!(
        ingest.stored_messages().await,
        ok,
        "every 200 answer is in the stream, and nothing else"
    );
}

/// The stream deleted under a running ingest (an operator's mistake, a lost JetStream account):
/// 503 with Retry-After, nothing claimed; and a broker that hangs (SIGSTOP: connections open,
/// nothing answered) runs into the PubAck timeout: 503 within it, never 2xx.
#[tokio::test]
async fn a_missing_stream_and_a_hung_broker_answer_503() {
    let mut ingest = Ingest::start().await;
    ingest.js.delete_stream("WEBHOOKS").await.unwrap();
    let r = ingest
        .client
        .post_resend("msg_nostream", "em", "email.sent")
        .await;
    assert_eq!(r.status(), 503, "no stream");
    assert_eq!(r.headers()["retry-after"], "7");
    assert!(
        ingest.js.get_stream("WEBHOOKS").await.is_err(),
        "nothing recreated it behind our back"
    );

    ingest.nats.signal("STOP");
    let started = std::time::Instant::now();
    let r = ingest
        .client
        .post_resend("msg_hung", "em", "email.sent")
        .await;
    let took = started.elapsed();
    ingest.nats.signal("CONT");
    assert_eq!(r.status(), 503, "PubAck timeout");
    assert_eq!(r.headers()["retry-after"], "7");
    let why = r.text().await.unwrap_or_default();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "answered at the 1 s PubAck timeout, not before and not much after: {took:?} ({why})"
    );
}
