//! The admin port: health, readiness and metrics off the public port, and readiness answered from
//! a background check of the broker rather than a JetStream call per probe.

use std::time::Duration;

use hookline_testkit::{free_port, wait_until, WebhookClient};

use crate::harness::Ingest;

#[tokio::test]
async fn health_and_metrics_move_to_the_admin_port_and_readiness_follows_the_broker() {
    let admin_addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut ingest = Ingest::start_with(|c| c.admin_listen = Some(admin_addr)).await;
    let admin = WebhookClient::new(format!("http://{admin_addr}"));

    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(ingest.client.get_status(path).await, 404, "public {path}");
        assert_eq!(admin.get_status(path).await, 200, "admin {path}");
    }
    let answer = ingest
        .client
        .post_resend("msg_admin_1", "em-admin", "email.delivered")
        .await;
    assert_eq!(answer.status(), 200, "webhooks stay on the public port");
    let metrics = admin
        .http
        .get(format!("http://{admin_addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("webhook_queued_total{duplicate=\"false\",event_type=\"email.delivered\",provider=\"resend\"} 1"),
        "{metrics}"
    );

    // The broker goes away: readiness says so within a few background checks, without a probe
    // ever waiting on JetStream.
    ingest.nats.kill();
    let a = &admin;
    wait_until(
        "readyz says not ready",
        Duration::from_secs(10),
        || async move { a.get_status("/readyz").await == 503 },
    )
    .await;
    let started = std::time::Instant::now();
    assert_eq!(admin.get_status("/readyz").await, 503);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "readiness is answered from memory"
    );
    ingest.nats.restart();
    wait_until("ready again", Duration::from_secs(20), || async move {
        a.get_status("/readyz").await == 200
    })
    .await;
    ingest.stop().await;
}
