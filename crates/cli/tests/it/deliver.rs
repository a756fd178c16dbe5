//! `hookline deliver` against a local receiver that fails, times out and answers 429 before it
//! accepts, and refuses one change outright: every change arrives once accepted, in feed order,
//! with one `webhook-id` across its attempts; the refused one is kept and `--redeliver` sends it;
//! every signature is verified by the Standard Webhooks project's own Python library.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use hookline_testkit::{free_port, output_of, wait_until, workspace_root, NatsServer, Service};

const SECRET_NEW: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SECRET_OLD: &str = "whsec_c2VjcmV0LW9mLXRoZS1wcmV2aW91cy1yb3RhdGlvbg==";

#[derive(Debug, Clone)]
struct Received {
    id: String,
    timestamp: String,
    signature: String,
    body: String,
    at: Instant,
    answered: u16,
}

#[derive(Default)]
struct Receiver {
    log: Mutex<Vec<Received>>,
    /// Answers for the first requests, in order; then 200 (400 for `refuse-me` while refusing).
    script: Mutex<std::collections::VecDeque<&'static str>>,
    refusing: std::sync::atomic::AtomicBool,
}

async fn receive(
    axum::extract::State(r): axum::extract::State<Arc<Receiver>>,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    let step = r.script.lock().unwrap().pop_front();
    let refuse = body.contains("refuse-me") && r.refusing.load(std::sync::atomic::Ordering::SeqCst);
    let (status, retry_after) = match step {
        Some("500") => (500, None),
        Some("429") => (429, Some("1")),
        Some("slow") => (200, None),
        _ if refuse => (400, None),
        _ => (200, None),
    };
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    // Logged on arrival: a slow answer is one the deliverer never sees (0).
    r.log.lock().unwrap().push(Received {
        id: h("webhook-id"),
        timestamp: h("webhook-timestamp"),
        signature: h("webhook-signature"),
        body,
        at: Instant::now(),
        answered: if step == Some("slow") { 0 } else { status },
    });
    if step == Some("slow") {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let mut response = StatusCode::from_u16(status).unwrap().into_response();
    if let Some(v) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", v.parse().unwrap());
    }
    response
}

fn change(n: u32, message: &str) -> (String, String, String) {
    let id = format!("change-{n:02}");
    let body = serde_json::json!({
        "schema": "hookline.change.v1", "change_id": id, "kind": "status",
        "batch_id": null,
        "recipient": {"id": n, "provider": "resend", "message_id": message, "address": null},
        "old_status": "sent", "new_status": "delivered", "provider_status": "delivered",
        "event_id": format!("e{n}"), "occurred_at": "2026-12-07T10:00:00.000000Z",
        "stored_at": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        "error": null,
    })
    .to_string();
    (
        id,
        "hookline.changes.none.resend.delivered".to_owned(),
        body,
    )
}

#[tokio::test]
async fn every_change_arrives_signed_in_order_through_failures_and_a_refusal_is_redelivered() {
    let nats = NatsServer::start();
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    js.get_or_create_stream(hookline_jetstream::FeedArgs::named("WEBHOOK_CHANGES").config(1))
        .await
        .unwrap();
    let changes: Vec<_> = (1..=5)
        .map(|n| change(n, if n == 3 { "refuse-me" } else { "m" }))
        .collect();
    for (id, subject, body) in &changes {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", id.as_str());
        js.publish_with_headers(subject.clone(), h, body.clone().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    let receiver = Arc::new(Receiver::default());
    receiver
        .refusing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    receiver
        .script
        .lock()
        .unwrap()
        .extend(["500", "slow", "429"]);
    let app = axum::Router::new()
        .route("/hooks", axum::routing::post(receive))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let logs = tempfile::tempdir().unwrap();
    let metrics = format!("127.0.0.1:{}", free_port());
    let secrets = format!("{SECRET_NEW},{SECRET_OLD}");
    let env = [
        ("NATS_URL", nats.url()),
        ("HOOKLINE_DELIVER_URL", url.clone()),
        ("HOOKLINE_DELIVER_SECRETS", secrets),
        ("HOOKLINE_DELIVER_TIMEOUT_MS", "500".to_owned()),
        ("HOOKLINE_DELIVER_RETRY_BASE_MS", "50".to_owned()),
        ("HOOKLINE_DELIVER_LISTEN", metrics.clone()),
    ];
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hookline"));
    cmd.arg("deliver")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let mut deliverer = Service::spawn(
        "hookline-deliver",
        &mut cmd,
        logs.path().join("deliver.log"),
    );

    let accepted = |r: &Receiver| {
        r.log
            .lock()
            .unwrap()
            .iter()
            .filter(|x| x.answered == 200)
            .map(|x| x.id.clone())
            .collect::<Vec<_>>()
    };
    let undelivered = || async {
        match js.get_stream("WEBHOOK_CHANGES_UNDELIVERED").await {
            Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
            Err(_) => 0,
        }
    };
    let r = &receiver;
    wait_until(
        "four changes accepted, one kept undelivered",
        Duration::from_secs(60),
        || async { accepted(r).len() == 4 && undelivered().await == 1 },
    )
    .await;
    assert_eq!(
        accepted(r),
        ["change-01", "change-02", "change-04", "change-05"],
        "in feed order: {}",
        deliverer.log_text()
    );
    let log = receiver.log.lock().unwrap().clone();
    // change-01: a 500, a timeout, a 429 with Retry-After: 1, then accepted; one webhook-id.
    let first: Vec<&Received> = log.iter().filter(|x| x.id == "change-01").collect();
    assert_eq!(
        first.iter().map(|x| x.answered).collect::<Vec<_>>(),
        [500, 0, 429, 200]
    );
    assert!(
        first[3].at.duration_since(first[2].at) >= Duration::from_millis(950),
        "the 429's Retry-After was honoured"
    );
    let refused: Vec<&Received> = log.iter().filter(|x| x.id == "change-03").collect();
    assert_eq!(refused.len(), 1, "a 400 is not retried");

    // What was given up on, and why.
    let kept = js
        .get_stream("WEBHOOK_CHANGES_UNDELIVERED")
        .await
        .unwrap()
        .get_raw_message(1)
        .await
        .unwrap();
    let h = |n: &str| kept.headers.get(n).map(|v| v.as_str().to_owned());
    assert_eq!(h("Nats-Msg-Id").as_deref(), Some("change-03"));
    assert_eq!(h("Hookline-Undelivered-Reason").as_deref(), Some("refused"));
    assert_eq!(
        h("Hookline-Undelivered-Last-Result").as_deref(),
        Some("400")
    );
    assert_eq!(h("Hookline-Undelivered-Attempts").as_deref(), Some("1"));
    assert_eq!(h("Hookline-Undelivered-Url").as_deref(), Some(url.as_str()));
    assert_eq!(
        kept.subject.as_str(),
        "undelivered.hookline.changes.none.resend.delivered"
    );

    let text = reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "webhook_outbound_attempts_total{result=\"500\"} 1",
        "webhook_outbound_attempts_total{result=\"timeout\"} 1",
        "webhook_outbound_attempts_total{result=\"429\"} 1",
        "webhook_outbound_attempts_total{result=\"400\"} 1",
        "webhook_outbound_given_up_total{reason=\"refused\"} 1",
        "webhook_outbound_delivered_total 4",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    deliverer.kill();

    // The receiver is fixed; the operator redelivers what was kept.
    receiver
        .refusing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    // Off the runtime's thread: the receiver answers on it meanwhile.
    let redeliver_env = env.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        output_of(
            std::process::Command::new(env!("CARGO_BIN_EXE_hookline"))
                .args(["deliver", "--redeliver"])
                .envs(redeliver_env.iter().map(|(k, v)| (*k, v.as_str()))),
        )
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    assert!(
        out.contains("Redelivered 1 changes; 0 still undelivered"),
        "{out}"
    );
    assert_eq!(undelivered().await, 0);
    assert_eq!(accepted(r).last().map(String::as_str), Some("change-03"));

    // Every request's signature, verified by the standardwebhooks library with each secret of
    // the rotation; a tampered body is refused (the check can fail).
    let requests: Vec<serde_json::Value> = receiver
        .log
        .lock()
        .unwrap()
        .iter()
        .map(|x| {
            serde_json::json!({"id": x.id, "timestamp": x.timestamp, "signature": x.signature,
                               "body": x.body})
        })
        .collect();
    let file = logs.path().join("requests.json");
    std::fs::write(&file, serde_json::to_vec(&requests).unwrap()).unwrap();
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
requests = json.load(open(sys.argv[1]))
for secret in sys.argv[2:]:
    wh = Webhook(secret)
    for r in requests:
        h = {"webhook-id": r["id"], "webhook-timestamp": r["timestamp"], "webhook-signature": r["signature"]}
        wh.verify(r["body"], h)
        try:
            wh.verify(r["body"] + " ", h)
        except Exception:
            pass
        else:
            sys.exit("a tampered body verified")
print("verified", len(requests), "requests with", len(sys.argv) - 2, "secrets")
"#;
    let (ok, out) = output_of(
        std::process::Command::new(workspace_root().join(".venv/bin/python"))
            .args(["-c", script])
            .arg(&file)
            .args([SECRET_NEW, SECRET_OLD]),
    );
    assert!(ok, "standardwebhooks (scripts/test.sh installs it): {out}");
    assert!(
        out.contains(&format!(
            "verified {} requests with 2 secrets",
            requests.len()
        )),
        "{out}"
    );
}
