//! Signed traffic first, against the real binary: while unsigned clients flood ingest from other
//! addresses — more than five times the in-flight cap of stalled maximum-size bodies whose heads
//! look genuine (fresh timestamps, well-formed but wrong signatures), plus a stream of small
//! requests with garbage signatures — a provider's correctly signed Telnyx and Resend webhooks
//! from its own address are answered 200 within Telnyx's 2 s, every one of them is in the stream,
//! and ingest's memory stays within its configured body budget plus a fixed overhead.
//!
//! Defaults as shipped, except the in-flight request cap (128 instead of 1,024), so that five
//! times it fits a CI runner's file descriptor limit; the body memory budget is the shipped one.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use hookline_testkit::flood::{self, loopback as ip, Flood};
use hookline_testkit::signing::{self, RESEND_SECRET};
use hookline_testkit::{free_port, wait_until, NatsServer, Service, WebhookClient};

const INFLIGHT_CAP: usize = 128;
const BODY_LIMIT: usize = 256 * 1024;
/// The shipped `HOOKLINE_MAX_INFLIGHT_BODY_BYTES`.
const BODY_BUDGET_KIB: u64 = 64 * 1024;
const FLOOD_FOR: Duration = Duration::from_secs(8);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_webhooks_are_answered_through_an_unsigned_flood() {
    let nats = NatsServer::start();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookline-ingest"));
    cmd.env("NATS_URL", nats.url())
        .env("HOOKLINE_LISTEN", addr.to_string())
        .env("HOOKLINE_MAX_INFLIGHT_REQUESTS", INFLIGHT_CAP.to_string())
        .env("RUST_LOG", "error");
    for (var, values) in signing::provider_keys().vars() {
        cmd.env(var, values.join(","));
    }
    let log = std::env::temp_dir().join(format!("hookline-ingest-signed-flood-{port}.log"));
    let ingest = Service::spawn("hookline-ingest", &mut cmd, log);
    let probe = WebhookClient::new(format!("http://{addr}"));
    let p = &probe;
    wait_until("ingest ready", Duration::from_secs(20), || async move {
        p.get_status("/readyz").await == 200
    })
    .await;
    let (baseline, _) = ingest.memory_kib().expect("ingest's /proc status");

    // The provider, from its own address, as it sends all day: 40 webhooks a second, each
    // answered or not within 2 s.
    let provider = reqwest::Client::builder()
        .local_address(ip(9))
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let base = format!("http://{addr}");
    let signed = tokio::spawn(async move {
        let mut sent = tokio::task::JoinSet::new();
        let mut tick = tokio::time::interval(Duration::from_millis(25));
        let until = Instant::now() + FLOOD_FOR + Duration::from_secs(2);
        let mut n = 0u64;
        while Instant::now() < until {
            tick.tick().await;
            n += 1;
            let (client, base) = (provider.clone(), base.clone());
            sent.spawn(async move {
                let (path, headers, body) = if n % 2 == 0 {
                    let body = signing::telnyx_body(
                        &format!("ev-flood-{n}"),
                        &format!("sms-flood-{n}"),
                        "delivered",
                        "2026-11-23T10:00:00.000Z",
                    );
                    (
                        "telnyx",
                        signing::telnyx_headers(&body, signing::now()),
                        body,
                    )
                } else {
                    let body = signing::resend_body(
                        "email.delivered",
                        &format!("em-flood-{n}"),
                        "2026-11-23T10:00:00.000Z",
                    );
                    let id = format!("msg_signed_{n}");
                    let h = signing::resend_headers(RESEND_SECRET, &id, &body, signing::now());
                    ("resend", h, body)
                };
                let mut req = client.post(format!("{base}/webhooks/{path}")).body(body);
                for (k, v) in &headers {
                    req = req.header(k, v);
                }
                let started = Instant::now();
                let status = req.send().await.map(|r| r.status().as_u16()).unwrap_or(0);
                (status, started.elapsed())
            });
        }
        sent.join_all().await
    });
    // A second of normal traffic, then the flood.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let flood_until = Instant::now() + FLOOD_FOR;
    // 1. Five times the in-flight cap of connections, from six addresses, each sending a
    //    maximum-size head and most of its body, then stalling; again and again.
    // 2. Small requests with garbage signatures, as fast as they go, from two more addresses.
    let hostile = Flood {
        stalled: 5 * INFLIGHT_CAP,
        stalled_from: (2..8).map(ip).collect(),
        garbage: 8,
        garbage_from: vec![ip(20), ip(21)],
        body_limit: BODY_LIMIT,
    };
    let flooded = flood::run(&hostile, addr, flood_until).await;
    println!("flood answers by status: {flooded:?}");
    let outcomes = signed.await.unwrap();
    let (_, peak) = ingest.memory_kib().expect("ingest survived the flood");
    let total = outcomes.len();
    let in_time = outcomes
        .iter()
        .filter(|(status, took)| *status == 200 && *took < Duration::from_secs(2))
        .count();
    let mut by_status = std::collections::BTreeMap::new();
    for (s, _) in &outcomes {
        *by_status.entry(*s).or_insert(0) += 1;
    }
    println!(
        "signed: {in_time}/{total} answered 200 within 2 s {by_status:?}; RSS baseline {baseline} KiB, peak {peak} KiB"
    );
    assert!(total >= 300, "the provider kept sending: {total}");
    assert!(
        in_time * 100 >= total * 99,
        "at least 99 % of signed webhooks answered 200 within 2 s: {in_time}/{total} {by_status:?}"
    );

    // Every one answered 200 is in the stream (the flood never is).
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let stored = js
        .get_stream("WEBHOOKS")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages;
    let accepted = outcomes.iter().filter(|(s, _)| *s == 200).count() as u64;
    assert_eq!(
        stored, accepted,
        "each signed webhook answered 200 is stored"
    );

    // Memory: the body budget plus a fixed overhead for connections and buffers.
    let limit = baseline + BODY_BUDGET_KIB + 48 * 1024;
    assert!(peak < limit, "peak RSS {peak} KiB over {limit} KiB");

    // The flood was turned away cheaply, before its bodies were read.
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let shed = |reason: &str| -> u64 {
        let prefix = format!("webhook_shed_total{{provider=\"resend\",reason=\"{reason}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    println!(
        "shed: source_rejected {}, source_busy {}, memory {}, overloaded {}, body_timeout {}",
        shed("source_rejected"),
        shed("source_busy"),
        shed("memory"),
        shed("overloaded"),
        shed("body_timeout")
    );
    let turned_away: u64 = ["overloaded", "memory", "source_busy", "source_rejected"]
        .iter()
        .map(|r| shed(r))
        .sum();
    assert!(
        turned_away > 1_000,
        "the flood was turned away before its bodies were read: {turned_away}"
    );
    assert!(
        shed("body_timeout") > 0,
        "the stalled bodies that got in were cut off by the body timeout"
    );
}
