//! Observability, proven against a real Prometheus: it scrapes ingest and a worker while signed
//! traffic (with bad signatures and a dead letter) flows, then every PromQL expression of the
//! Grafana dashboard must return data, the alert rules must load, and promtool must pass.

use std::time::Duration;

use hookline_testkit::{signing, workspace_root, Prometheus};

use crate::stack::Stack;

/// Every query of the dashboard, with `$__rate_interval` as Grafana would fill it in at a 5 s
/// scrape interval (four intervals, at least a minute). Checks on the way that every panel and
/// query reads the `datasource` variable, so the dashboard imports into any Grafana.
fn dashboard_queries() -> Vec<String> {
    let path = workspace_root().join("grafana/dashboards/hookline.json");
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let variable = &dash["templating"]["list"][0];
    assert_eq!(
        (variable["name"].as_str(), variable["type"].as_str()),
        (Some("datasource"), Some("datasource"))
    );
    let panels = dash["panels"].as_array().unwrap();
    for p in panels {
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
    }
    panels
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{t}");
            let expr = t["expr"].as_str().unwrap();
            assert!(
                !expr.contains("[1m]") && !expr.contains("[5m]"),
                "a fixed range instead of $__rate_interval: {expr}"
            );
            expr.replace("$__rate_interval", "1m")
        })
        .collect()
}

/// Runs `hookline deliver`'s deliverer in-process against a local receiver answering 200;
/// returns where its metrics are served.
async fn deliver_to_a_receiver(js: &async_nats::jetstream::Context) -> String {
    use clap::Parser as _;
    #[derive(clap::Parser)]
    struct Args {
        #[command(flatten)]
        deliver: hookline_ops::outbound::DeliverArgs,
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/hooks", axum::routing::post(|| async { "ok" }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let metrics = format!("127.0.0.1:{}", hookline_testkit::free_port());
    let args = Args::parse_from([
        "deliver",
        "--url",
        &url,
        "--secrets",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "--listen",
        &metrics,
    ]);
    let deliverer = hookline_ops::outbound::Deliverer::new(args.deliver, js.clone()).unwrap();
    tokio::spawn(deliverer.run(std::future::pending::<()>()));
    metrics
}

#[tokio::test]
async fn every_dashboard_query_returns_data_from_real_prometheus() {
    let stack = Stack::start(1, |_| {}).await;
    let ingest = stack.client.base.trim_start_matches("http://").to_owned();
    let worker = stack.workers[0].http.to_string();
    // Recipients for some of the traffic's messages, so changes reach the feed, and `hookline
    // deliver` sending them to a receiver that takes them.
    let batch = crate::support::new_batch(&stack.pool).await;
    crate::support::add_recipients(&stack.pool, &batch, "telnyx", "m-", 200).await;
    let deliver = deliver_to_a_receiver(&stack.js).await;
    let rules = workspace_root().join("deploy/prometheus/alerts.yml");
    let prom = Prometheus::start(
        &[
            ("hookline-ingest", vec![ingest]),
            ("hookline-worker", vec![worker.clone()]),
            ("hookline-deliver", vec![deliver]),
        ],
        &[rules],
    )
    .await;

    // Traffic until the checks are done: good events, provider retries, bad signatures, and one
    // signed but unparseable event (a dead letter).
    let client = stack.client.clone();
    let traffic = tokio::spawn(async move {
        let garbage = "{\"type\": 1}";
        let h =
            signing::resend_headers(signing::RESEND_SECRET, "r-garbage", garbage, signing::now());
        client.post("resend", &h, garbage).await;
        for i in 0u32.. {
            client
                .post_telnyx(&format!("t-{i}"), &format!("m-{i}"), "delivered")
                .await;
            client
                .post_resend(&format!("r-{i}"), &format!("e-{i}"), "email.delivered")
                .await;
            client
                .post_resend(
                    &format!("r-{}", i / 2),
                    &format!("e-{}", i / 2),
                    "email.delivered",
                )
                .await;
            if i % 3 == 0 {
                let body = signing::resend_body("email.sent", "x", "2026-11-23T10:00:00Z");
                let mut h =
                    signing::resend_headers(signing::RESEND_SECRET, "bad", &body, signing::now());
                h[2].1 = "v1,AAAA".into();
                client.post("resend", &h, &body).await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });

    let queries = dashboard_queries();
    assert!(queries.len() >= 20, "the dashboard has its panels");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut empty: Vec<String>;
    loop {
        empty = Vec::new();
        for q in &queries {
            if prom.query(q).await.as_array().is_none_or(|a| a.is_empty()) {
                empty.push(q.clone());
            }
        }
        if empty.is_empty() || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    traffic.abort();
    assert!(
        empty.is_empty(),
        "dashboard queries without data: {empty:#?}"
    );

    // Real values, not just series.
    let value = |r: serde_json::Value| -> f64 {
        r[0]["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    assert!(value(prom.query("sum(webhook_queued_total)").await) > 10.0);
    assert!(value(prom.query("sum(webhook_processed_total)").await) > 10.0);
    // Changes on the feed, and delivered by `hookline deliver` (scraped a moment later).
    let (p, v) = (&prom, &value);
    hookline_testkit::wait_until(
        "changes relayed and delivered",
        Duration::from_secs(30),
        || async move {
            v(p.query("sum(webhook_changes_published_total)").await) >= 1.0
                && v(p.query("sum(webhook_outbound_delivered_total)").await) >= 1.0
        },
    )
    .await;
    assert!(
        value(
            prom.query("sum(webhook_signature_failures_total{reason=\"mismatch\"})")
                .await
        ) >= 1.0
    );
    assert!(
        value(
            prom.query("sum(webhook_dead_lettered_total{reason=\"bad_shape\"})")
                .await
        ) >= 1.0
    );
    assert!(
        value(
            prom.query(
                "sum(webhook_duplicates_total) + sum(webhook_queued_total{duplicate=\"true\"})"
            )
            .await
        ) >= 1.0
    );
    assert_eq!(value(prom.query("max(webhook_breaker_open)").await), 0.0);

    let rules = prom.get_json("/api/v1/rules").await;
    let names: Vec<&str> = rules["data"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 12, "{names:?}");

    // The worker's readiness JSON (seed 004's health shape).
    let ready: serde_json::Value = reqwest::get(format!("http://{worker}/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(ready["breaker"], "closed");
    assert!(
        ready["pending"].is_u64()
            && ready["ack_pending"].is_u64()
            && ready["last_batch_at"].is_string(),
        "{ready}"
    );
}

/// The shipped Prometheus config and alert rules pass promtool, including the rules' unit tests.
#[test]
fn promtool_checks_config_rules_and_rule_tests() {
    let dir = workspace_root().join("deploy/prometheus");
    for args in [
        vec!["check", "config", "prometheus.yml"],
        vec!["check", "rules", "alerts.yml"],
        vec!["test", "rules", "alerts_test.yml"],
    ] {
        let out = std::process::Command::new("promtool")
            .args(&args)
            .current_dir(&dir)
            .output()
            .expect("promtool is installed (scripts/test.sh installs Debian's prometheus)");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
