//! The ingest binary stopped by a signal: a request in flight when SIGTERM arrives is still
//! answered 200 and stored, and the process exits within its shutdown deadline; SIGINT does the
//! same as SIGTERM.

use std::process::Command;
use std::time::{Duration, Instant};

use hookline_testkit::signing::{self, RESEND_SECRET};
use hookline_testkit::{free_port, wait_until, NatsServer, Service, WebhookClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn start(nats: &NatsServer, deadline_ms: u64) -> (Service, u16) {
    let port = free_port();
    let log = std::env::temp_dir().join(format!(
        "hookline-ingest-sd-{}-{port}.log",
        std::process::id()
    ));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookline-ingest"));
    cmd.env("NATS_URL", nats.url())
        .env("HOOKLINE_LISTEN", format!("127.0.0.1:{port}"))
        .env("RESEND_WEBHOOK_SECRET", RESEND_SECRET)
        .env("HOOKLINE_SHUTDOWN_DEADLINE_MS", deadline_ms.to_string())
        // The request in flight is held half-sent across the signal on purpose: the body
        // timeout and the answer deadline must not be what ends it.
        .env("HOOKLINE_BODY_TIMEOUT_MS", "20000")
        .env("HOOKLINE_ANSWER_DEADLINE_MS", "20000")
        .env("HOOKLINE_LOG_FORMAT", "json")
        .env("RUST_LOG", "info");
    let ingest = Service::spawn("hookline-ingest", &mut cmd, log);
    let client = WebhookClient::new(format!("http://127.0.0.1:{port}"));
    let c = &client;
    wait_until("ingest ready", Duration::from_secs(20), || async move {
        c.get_status("/readyz").await == 200
    })
    .await;
    (ingest, port)
}

async fn stored(nats: &NatsServer) -> u64 {
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let mut s = js.get_stream("WEBHOOKS").await.unwrap();
    s.info().await.unwrap().state.messages
}

#[tokio::test]
async fn sigterm_answers_the_request_in_flight_stores_it_and_exits_by_the_deadline() {
    let nats = NatsServer::start();
    let (mut ingest, port) = start(&nats, 3_000).await;
    let body = signing::resend_body("email.delivered", "em-sd", "2026-11-23T10:00:00.000Z");
    let headers = signing::resend_headers(RESEND_SECRET, "msg_in_flight", &body, signing::now());
    let mut head = format!(
        "POST /webhooks/resend HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in &headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    let (half, rest) = body.as_bytes().split_at(body.len() / 2);
    conn.write_all(half).await.unwrap();
    // The request is in flight once ingest has read its head and taken a slot for it (a signal
    // before that would find an idle connection, which a graceful shutdown rightly closes).
    let metrics = WebhookClient::new(format!("http://127.0.0.1:{port}"));
    let m = &metrics;
    wait_until(
        "the request in flight",
        Duration::from_secs(5),
        || async move {
            let text = m
                .http
                .get(format!("{}/metrics", m.base))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            text.lines().any(|l| l == "webhook_inflight_requests 1")
        },
    )
    .await;
    let term = Instant::now();
    ingest.signal("TERM");
    wait_until(
        "ingest stops accepting",
        Duration::from_secs(5),
        || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
        },
    )
    .await;
    conn.write_all(rest).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut answer))
        .await
        .expect("answered before the deadline")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let status = ingest.wait_exit(Duration::from_secs(10)).await;
    let took = term.elapsed();
    assert!(status.is_some_and(|s| s.success()), "{}", ingest.log_text());
    assert!(
        took < Duration::from_millis(3_500),
        "exit within the 3 s deadline: {took:?}"
    );
    assert_eq!(stored(&nats).await, 1, "the answered request is stored");
    assert!(ingest.log_text().contains("Ingest stopped."));
}

#[tokio::test]
async fn sigint_stops_ingest_as_sigterm_does() {
    let nats = NatsServer::start();
    let (mut ingest, port) = start(&nats, 2_000).await;
    let client = WebhookClient::new(format!("http://127.0.0.1:{port}"));
    assert_eq!(
        client
            .post_resend("msg_before", "em-1", "email.sent")
            .await
            .status(),
        200
    );
    ingest.signal("INT");
    let status = ingest.wait_exit(Duration::from_secs(5)).await;
    assert!(status.is_some_and(|s| s.success()), "{}", ingest.log_text());
    assert!(ingest.log_text().contains("Ingest stopped."));
    assert_eq!(stored(&nats).await, 1);
}
