//! The ingest binary's JSON logs: each line about a webhook names its request, provider and stage
//! (and on failure the stage it failed at) with its duration, and no line holds a secret or a
//! signature.

use std::process::Command;
use std::time::Duration;

use hookline_testkit::signing::{self, RESEND_SECRET};
use hookline_testkit::{free_port, wait_until, NatsServer, Service, WebhookClient};
use serde_json::Value;

#[tokio::test]
async fn json_logs_carry_stage_fields_and_never_secrets() {
    let nats = NatsServer::start();
    let port = free_port();
    let logs = tempfile_path("ingest-log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookline-ingest"));
    cmd.env("NATS_URL", nats.url())
        .env("HOOKLINE_LISTEN", format!("127.0.0.1:{port}"))
        .env("TELNYX_PUBLIC_KEY", signing::telnyx_public_key_b64())
        .env("RESEND_WEBHOOK_SECRET", RESEND_SECRET)
        .env("HOOKLINE_LOG_FORMAT", "json")
        .env("RUST_LOG", "debug");
    let mut ingest = Service::spawn("hookline-ingest", &mut cmd, logs.clone());
    let client = WebhookClient::new(format!("http://127.0.0.1:{port}"));
    let c = &client;
    wait_until("ingest ready", Duration::from_secs(20), || async move {
        c.get_status("/readyz").await == 200
    })
    .await;

    let body = signing::resend_body("email.delivered", "em-log", "2026-11-23T10:00:00Z");
    let good = signing::resend_headers(RESEND_SECRET, "msg_logged", &body, signing::now());
    let mut bad = good.clone();
    bad[2].1 = "v1,bm90LXRoZS1zaWduYXR1cmU=".into();
    bad.push(("x-request-id".into(), "req-from-provider".into()));
    assert_eq!(client.post("resend", &bad, &body).await.status(), 401);
    assert_eq!(client.post("resend", &good, &body).await.status(), 200);
    assert_eq!(client.post("nope", &good, &body).await.status(), 404);
    // Telnyx too: a good and a tampered Ed25519 signature.
    let t_body = signing::telnyx_body(
        "t-log",
        "sms-log",
        "delivered",
        "2026-11-23T10:00:00.000+00:00",
    );
    let t_good = signing::telnyx_headers(&t_body, signing::now());
    let mut t_bad = t_good.clone();
    t_bad[0].1 = signing::telnyx_headers("another body", signing::now())[0]
        .1
        .clone();
    assert_eq!(client.post("telnyx", &t_bad, &t_body).await.status(), 401);
    assert_eq!(client.post("telnyx", &t_good, &t_body).await.status(), 200);
    ingest.signal("TERM");
    assert!(ingest
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("exits on SIGTERM")
        .success());

    let text = ingest.log_text();
    let lines: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(!lines.is_empty(), "JSON lines: {text}");
    let find = |msg: &str| {
        lines
            .iter()
            .find(|l| l["message"] == msg)
            .unwrap_or_else(|| panic!("no {msg:?} line in {text}"))
            .clone()
    };
    let rejected = find("Signature rejected.");
    assert_eq!(rejected["request_id"], "req-from-provider");
    assert_eq!(rejected["provider"], "resend");
    assert_eq!(rejected["stage"], "verify");
    assert_eq!(rejected["failed_at_stage"], "verify");
    assert_eq!(rejected["reason"], "mismatch");
    assert!(rejected["duration_ms"].is_u64(), "{rejected}");
    let stored = find("Event stored.");
    assert_eq!(stored["event_id"], "resend:msg_logged");
    assert_eq!(stored["stage"], "publish");
    assert!(
        stored["request_id"].is_string() && stored["duration_ms"].is_u64(),
        "{stored}"
    );
    let unknown = find("Unknown or unconfigured provider.");
    assert_eq!(unknown["failed_at_stage"], "route");
    find("Ingest stopped.");

    let secret_part = RESEND_SECRET.trim_start_matches("whsec_");
    for needle in [
        secret_part,
        &good[2].1[3..],
        &bad[2].1[3..],
        &t_good[0].1,
        &t_bad[0].1,
        signing::TELNYX_SEED_B64,
    ] {
        assert!(
            !text.contains(needle),
            "the log contains a secret or signature: {needle}"
        );
    }
    std::fs::remove_file(logs).ok();
}

fn tempfile_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "hookline-{name}-{}-{}.log",
        std::process::id(),
        free_port()
    ))
}

/// With nats-server gone (SIGKILL, no goodbye), SIGTERM still stops the ingest binary within its
/// shutdown deadline + 1 s, and its log says NATS could not be reached. Before, it reconnected
/// forever and needed a SIGKILL.
#[tokio::test]
async fn sigterm_with_nats_gone_exits_within_the_deadline() {
    let mut nats = NatsServer::start();
    let port = free_port();
    let logs = tempfile_path("ingest-nats-gone");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookline-ingest"));
    cmd.env("NATS_URL", nats.url())
        .env("HOOKLINE_LISTEN", format!("127.0.0.1:{port}"))
        .env("RESEND_WEBHOOK_SECRET", RESEND_SECRET)
        .env("HOOKLINE_SHUTDOWN_DEADLINE_MS", "2000")
        .env("HOOKLINE_LOG_FORMAT", "json")
        .env("RUST_LOG", "info");
    let mut ingest = Service::spawn("hookline-ingest", &mut cmd, logs);
    let client = WebhookClient::new(format!("http://127.0.0.1:{port}"));
    let c = &client;
    wait_until("ingest ready", Duration::from_secs(20), || async move {
        c.get_status("/readyz").await == 200
    })
    .await;
    assert_eq!(
        client
            .post_resend("r-before", "em-1", "email.sent")
            .await
            .status(),
        200
    );
    nats.kill();
    // Answered 503 now: nothing accepted that was not stored.
    assert_eq!(
        client
            .post_resend("r-during", "em-1", "email.sent")
            .await
            .status(),
        503
    );
    let term = std::time::Instant::now();
    ingest.signal("TERM");
    let status = ingest.wait_exit(Duration::from_secs(10)).await;
    let took = term.elapsed();
    assert!(
        status.is_some(),
        "still running 10 s after SIGTERM: {}",
        ingest.log_text()
    );
    assert!(
        took < Duration::from_millis(3_000),
        "exit within the 2 s deadline + 1 s: {took:?}"
    );
    let text = ingest.log_text();
    assert!(text.contains("NATS unreachable at shutdown"), "{text}");
    assert!(text.contains("Ingest stopped."), "{text}");
    println!("figures: ingest exit after SIGTERM with NATS gone: {took:?} (deadline 2 s)");
}

/// A key in the wrong format stops the real binary at start-up, with a message naming the
/// variable (and not echoing the value).
#[tokio::test]
async fn a_bad_key_stops_the_binary_naming_the_variable() {
    let nats = NatsServer::start();
    for (var, value) in [
        ("TELNYX_PUBLIC_KEY", "not-a-key-c2VjcmV0"),
        ("TELNYX_PUBLIC_KEY", "AAAA,c2VjcmV0LWtleQ=="),
        ("RESEND_WEBHOOK_SECRET", "whsec_%%%not-base64"),
        // Nothing to route: healthy but 404 to every provider is refused at start.
        ("RESEND_WEBHOOK_SECRET", ""),
        ("HOOKLINE_LOG_FORMAT", "xml"),
    ] {
        let (ok, text) = hookline_testkit::output_of(
            Command::new(env!("CARGO_BIN_EXE_hookline-ingest"))
                .env("NATS_URL", nats.url())
                .env("HOOKLINE_LISTEN", format!("127.0.0.1:{}", free_port()))
                .env_remove("TELNYX_PUBLIC_KEY")
                .env_remove("RESEND_WEBHOOK_SECRET")
                .env(var, value),
        );
        assert!(!ok, "{var}={value}: started anyway: {text}");
        let named = if value.is_empty() {
            text.contains("no provider is configured") && text.contains("TELNYX_PUBLIC_KEY")
        } else {
            text.contains(var) || text.contains("--log-format")
        };
        assert!(named, "{var} is named: {text}");
        if var != "HOOKLINE_LOG_FORMAT" && !value.is_empty() {
            assert!(!text.contains(value), "{var}'s value is not echoed: {text}");
        }
    }
}

/// A flood of refused webhooks is counted in full but logged once a second per provider and
/// reason, the next line saying how many similar ones it left out: the log does not become a
/// second flood.
#[tokio::test]
async fn a_flood_of_refusals_is_counted_in_full_and_logged_once_a_second() {
    let nats = NatsServer::start();
    let port = free_port();
    let logs = tempfile_path("ingest-flood-log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookline-ingest"));
    cmd.env("NATS_URL", nats.url())
        .env("HOOKLINE_LISTEN", format!("127.0.0.1:{port}"))
        .env("RESEND_WEBHOOK_SECRET", RESEND_SECRET)
        // Every refused request may be an attacker's: no failure budget shuts it out here.
        .env("HOOKLINE_SOURCE_FAILURE_BURST", "100000")
        .env("HOOKLINE_LOG_FORMAT", "json");
    let mut ingest = Service::spawn("hookline-ingest", &mut cmd, logs.clone());
    let client = WebhookClient::new(format!("http://127.0.0.1:{port}"));
    let c = &client;
    wait_until("ingest ready", Duration::from_secs(20), || async move {
        c.get_status("/readyz").await == 200
    })
    .await;
    let body = signing::resend_body("email.delivered", "em-flood", "2026-11-23T10:00:00Z");
    let mut bad = signing::resend_headers(RESEND_SECRET, "msg_flood", &body, signing::now());
    bad[2].1 = "v1,bm90LXRoZS1zaWduYXR1cmU=".into();
    let floods = 300;
    for _ in 0..floods {
        assert_eq!(client.post("resend", &bad, &body).await.status(), 401);
    }
    let metrics = client.get_text("/metrics").await;
    assert!(
        metrics.contains(&format!(
            "webhook_signature_failures_total{{provider=\"resend\",reason=\"mismatch\"}} {floods}"
        )),
        "every refusal counted: {metrics}"
    );
    ingest.signal("TERM");
    assert!(ingest.wait_exit(Duration::from_secs(15)).await.is_some());
    let text = std::fs::read_to_string(&logs).unwrap();
    let refusals: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["reason"] == "mismatch" || v["reason"] == "mismatch")
        .collect();
    assert!(!refusals.is_empty(), "the first refusal is logged: {text}");
    assert!(
        refusals.len() < floods / 10,
        "{} lines for {floods} refusals",
        refusals.len()
    );
}
