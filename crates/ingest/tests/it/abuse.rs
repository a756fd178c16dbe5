//! Abuse limits, against the real binary where memory is the question: a flood of slow and huge
//! requests leaves ingest's peak RSS bounded and ingest still serving; oversized heads get 431;
//! per-provider rate limits answer 429.

use std::process::Command;
use std::time::Duration;

use hookline_testkit::signing::{self, RESEND_SECRET};
use hookline_testkit::{free_port, wait_until, NatsServer, Service, WebhookClient};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::harness::Ingest;

/// What a raw request got back: a status code, or the connection closed without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Outcome {
    Status(u16),
    Closed,
}

/// Sends `head` and then `body` (ignoring write errors: the server may answer and close early),
/// then reads the status line, waiting at most `deadline`.
async fn raw(addr: &str, head: String, body: Vec<u8>, deadline: Duration) -> Outcome {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return Outcome::Closed;
    };
    let send = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        stream.flush().await
    };
    let _ = tokio::time::timeout(deadline, send).await;
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 1024];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.windows(2).any(|w| w == b"\r\n") {
                        return;
                    }
                }
            }
        }
    };
    let _ = tokio::time::timeout(deadline, read).await;
    let line = String::from_utf8_lossy(&buf);
    line.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .map_or(Outcome::Closed, Outcome::Status)
}

/// A request head that looks genuine to anything but the signature check: the provider's
/// signature headers present, well-formed and fresh, the signature itself wrong. So what is
/// tested is what happens to the body, not an early refusal of the head.
fn head(path: &str, extra: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let id = N.fetch_add(1, Ordering::Relaxed);
    let ts = signing::now();
    format!(
        "POST {path} HTTP/1.1\r\nhost: ingest\r\ncontent-type: application/json\r\n\
         svix-id: msg_fake_{id}\r\nsvix-timestamp: {ts}\r\n\
         svix-signature: v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n{extra}\r\n"
    )
}

fn tally(outcomes: &[Outcome]) -> std::collections::BTreeMap<String, usize> {
    let mut t = std::collections::BTreeMap::new();
    for o in outcomes {
        let key = match o {
            Outcome::Status(c) => c.to_string(),
            Outcome::Closed => "closed".into(),
        };
        *t.entry(key).or_insert(0) += 1;
    }
    t
}

const BODY_LIMIT: usize = 256 * 1024;
const INFLIGHT_CAP: usize = 64;
const STALLED: usize = 400;

#[tokio::test]
async fn a_flood_of_slow_and_huge_requests_keeps_rss_bounded() {
    let nats = NatsServer::start();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookline-ingest"));
    cmd.env("NATS_URL", nats.url())
        .env("HOOKLINE_LISTEN", &addr)
        .env("RESEND_WEBHOOK_SECRET", RESEND_SECRET)
        .env("HOOKLINE_MAX_BODY_BYTES", BODY_LIMIT.to_string())
        .env(
            "HOOKLINE_MAX_INFLIGHT_REQUESTS",
            std::env::var("FLOOD_TEST_INFLIGHT_CAP").unwrap_or(INFLIGHT_CAP.to_string()),
        )
        .env("HOOKLINE_BODY_TIMEOUT_MS", "1500")
        .env("HOOKLINE_ANSWER_DEADLINE_MS", "5000")
        .env("HOOKLINE_HEADER_TIMEOUT_MS", "1500")
        .env("RUST_LOG", "error");
    let log = std::env::temp_dir().join(format!("hookline-ingest-flood-{port}.log"));
    let ingest = Service::spawn("hookline-ingest", &mut cmd, log);
    let client = WebhookClient::new(format!("http://{addr}"));
    let c = &client;
    wait_until("ingest ready", Duration::from_secs(20), || async move {
        c.get_status("/readyz").await == 200
    })
    .await;
    let (baseline, _) = ingest.memory_kib().expect("ingest's /proc status");

    let deadline = Duration::from_secs(15);
    let mut tasks = tokio::task::JoinSet::new();
    // 1. Bodies that stop just short of the limit and stall: each admitted one pins ~250 KiB
    //    until the body timeout. Without the in-flight cap, 400 of them would pin ~100 MB.
    for _ in 0..STALLED {
        let (addr, h) = (
            addr.clone(),
            head(
                "/webhooks/resend",
                &format!("content-length: {BODY_LIMIT}\r\n"),
            ),
        );
        tasks.spawn(async move {
            (
                "stalled",
                raw(&addr, h, vec![b'x'; BODY_LIMIT - 4096], deadline).await,
            )
        });
    }
    // 2. Heads that never finish (slow-loris): closed by the header timeout.
    for _ in 0..200 {
        let addr = addr.clone();
        let partial = "POST /webhooks/resend HTTP/1.1\r\nhost: ingest\r\nx-slow: ".to_owned();
        tasks.spawn(async move {
            // Cut off by ingest well before our own deadline; still open at 5 s (the header
            // timeout is 1.5 s) counts as not cut off (status 0).
            let started = std::time::Instant::now();
            let outcome = raw(&addr, partial, Vec::new(), deadline).await;
            let cut_off = started.elapsed() < Duration::from_secs(5);
            (
                "slow_head",
                if cut_off { outcome } else { Outcome::Status(0) },
            )
        });
    }
    // 3. Declared huge: refused before a byte of body is read.
    for _ in 0..100 {
        let (addr, h) = (
            addr.clone(),
            head("/webhooks/resend", "content-length: 104857600\r\n"),
        );
        tasks.spawn(async move {
            (
                "declared_huge",
                raw(&addr, h, vec![b'x'; 64 * 1024], deadline).await,
            )
        });
    }
    let mut by_kind: std::collections::BTreeMap<&str, Vec<Outcome>> = Default::default();
    while let Some(done) = tasks.join_next().await {
        let (kind, outcome) = done.unwrap();
        by_kind.entry(kind).or_default().push(outcome);
    }
    // 4. Then, with slots free again, chunked and endless bodies: cut off one frame past the limit.
    for _ in 0..40 {
        let addr = addr.clone();
        let h = head("/webhooks/resend", "transfer-encoding: chunked\r\n");
        let mut body = Vec::new();
        for _ in 0..24 {
            body.extend_from_slice(format!("{:x}\r\n", 64 * 1024).as_bytes());
            body.extend(std::iter::repeat_n(b'y', 64 * 1024));
            body.extend_from_slice(b"\r\n");
        }
        tasks.spawn(async move { ("chunked_huge", raw(&addr, h, body, deadline).await) });
    }
    while let Some(done) = tasks.join_next().await {
        let (kind, outcome) = done.unwrap();
        by_kind.entry(kind).or_default().push(outcome);
    }
    let (after, peak) = ingest.memory_kib().expect("ingest survived the flood");
    let summary: Vec<_> = by_kind.iter().map(|(k, v)| (k, tally(v))).collect();
    println!("baseline {baseline} KiB, peak {peak} KiB, after {after} KiB; outcomes {summary:?}");

    let stalled = tally(&by_kind["stalled"]);
    let shed = stalled.get("503").copied().unwrap_or(0);
    let timed_out = stalled.get("408").copied().unwrap_or(0);
    assert!(
        shed >= STALLED - 2 * INFLIGHT_CAP,
        "most stalled bodies were shed with 503: {stalled:?}"
    );
    assert!(
        (1..=INFLIGHT_CAP).contains(&timed_out),
        "admitted ones ran into the body timeout: {stalled:?}"
    );
    assert_eq!(shed + timed_out, STALLED, "{stalled:?}");
    assert!(
        by_kind["slow_head"]
            .iter()
            .all(|o| matches!(o, Outcome::Closed | Outcome::Status(408))),
        "slow heads are cut off: {:?}",
        tally(&by_kind["slow_head"])
    );
    assert!(
        by_kind["declared_huge"]
            .iter()
            .all(|o| *o == Outcome::Status(413)),
        "a declared oversize is refused even when every slot is taken: {:?}",
        tally(&by_kind["declared_huge"])
    );
    // Mostly 413; a few may find the cap still taken by their neighbours and get 503.
    let chunked = tally(&by_kind["chunked_huge"]);
    assert!(chunked.get("413").copied().unwrap_or(0) >= 1, "{chunked:?}");
    assert!(
        chunked.keys().all(|k| k == "413" || k == "503"),
        "{chunked:?}"
    );
    // The bound: 64 slots × 256 KiB is 16 MiB of bodies; allow as much again for buffers.
    let limit_kib = baseline + 40 * 1024;
    assert!(
        peak < limit_kib,
        "peak RSS {peak} KiB exceeds {limit_kib} KiB (baseline {baseline} KiB)"
    );

    // Still serving, and the sheds are on /metrics.
    let body = signing::resend_body("email.delivered", "em-flood", "2026-11-23T10:00:00Z");
    let headers = signing::resend_headers(RESEND_SECRET, "msg_after_flood", &body, signing::now());
    assert_eq!(client.post("resend", &headers, &body).await.status(), 200);
    let metrics = client
        .http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = |reason: &str| {
        let prefix = format!("webhook_shed_total{{provider=\"resend\",reason=\"{reason}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or_else(|| panic!("no {prefix} in metrics"))
    };
    assert!(line("overloaded") >= shed, "{metrics}");
    assert_eq!(line("body_timeout"), timed_out);
}

#[tokio::test]
async fn oversized_heads_get_431() {
    let ingest = Ingest::start().await;
    let addr = ingest.base.trim_start_matches("http://").to_owned();
    let wait = Duration::from_secs(10);
    let big = head(
        "/webhooks/resend",
        &format!("x-big: {}\r\ncontent-length: 0\r\n", "a".repeat(20 * 1024)),
    );
    assert_eq!(
        raw(&addr, big, Vec::new(), wait).await,
        Outcome::Status(431)
    );
    let many: String = (0..100).map(|i| format!("x-h{i}: v\r\n")).collect();
    let many = head("/webhooks/resend", &format!("{many}content-length: 0\r\n"));
    assert_eq!(
        raw(&addr, many, Vec::new(), wait).await,
        Outcome::Status(431)
    );
    // Within the limits the same shape is answered normally (401: it is not signed).
    let fine = head("/webhooks/resend", "x-small: a\r\ncontent-length: 2\r\n");
    assert_eq!(
        raw(&addr, fine, b"{}".to_vec(), wait).await,
        Outcome::Status(401)
    );
}

#[tokio::test]
async fn per_provider_rate_limit_answers_429_with_retry_after() {
    let ingest = Ingest::start_with(|c| c.rate_limits = vec!["resend=5".into()]).await;
    let mut codes = Vec::new();
    for i in 0..20 {
        let body = signing::resend_body(
            "email.delivered",
            &format!("em-rl-{i}"),
            "2026-11-23T10:00:00Z",
        );
        let headers =
            signing::resend_headers(RESEND_SECRET, &format!("msg_rl_{i}"), &body, signing::now());
        let r = ingest.client.post("resend", &headers, &body).await;
        if r.status() == 429 {
            assert_eq!(r.headers()["retry-after"], "1");
        }
        codes.push(r.status().as_u16());
    }
    let accepted = codes.iter().filter(|c| **c == 200).count();
    let limited = codes.iter().filter(|c| **c == 429).count();
    assert_eq!(accepted + limited, 20, "{codes:?}");
    assert!(
        (5..=8).contains(&accepted),
        "a burst of 5 plus refill: {codes:?}"
    );
    assert_eq!(
        ingest.stored_messages().await,
        accepted as u64,
        "429s are not stored"
    );
    // Telnyx has no limit configured.
    for i in 0..20 {
        let r = ingest
            .client
            .post_telnyx(&format!("ev-rl-{i}"), "msg-rl", "delivered")
            .await;
        assert_eq!(r.status(), 200);
    }
}

/// `HOOKLINE_MAX_CONNECTIONS`: with two connections open, a third is not served until one closes.
#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let ingest = Ingest::start_with(|c| c.max_connections = 2).await;
    let addr = ingest.base.trim_start_matches("http://").to_owned();
    // (The readiness probe's idle keep-alive connection may hold one of the two slots too; the
    // third request waits either way, and freeing ours frees a slot either way.)
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(&addr).await.unwrap());
    }
    let unsigned = || head("/webhooks/resend", "content-length: 2\r\n");
    // A third connection's request waits in the backlog: no answer, and no close, while both
    // slots are taken ...
    let mut third = TcpStream::connect(&addr).await.unwrap();
    third.write_all(unsigned().as_bytes()).await.unwrap();
    third.write_all(b"{}").await.unwrap();
    let mut buf = [0u8; 256];
    let early = tokio::time::timeout(Duration::from_millis(800), third.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "not served, and not closed, while both slots are taken: {early:?}"
    );
    // ... and the same connection is served once a slot frees up.
    held.clear();
    let n = tokio::time::timeout(Duration::from_secs(10), third.read(&mut buf))
        .await
        .expect("served once a slot is free")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
}

/// Beyond the in-flight cap the answer is 503 with Retry-After (the provider is told when to come
/// back); a body slower than the body timeout gets 408 and its connection is closed, so a slow
/// client cannot keep it.
#[tokio::test]
async fn overload_answers_503_with_retry_after_and_a_408_closes_the_connection() {
    let ingest = crate::harness::Ingest::start_with(|c| {
        c.max_inflight_requests = 1;
        c.body_timeout_ms = 500;
    })
    .await;
    let addr = ingest.base.trim_start_matches("http://").to_owned();
    // Takes the only slot: its head promises a body that never comes.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    let body = hookline_testkit::signing::resend_body("email.sent", "em", "2026-11-23T10:00:00Z");
    let h = hookline_testkit::signing::resend_headers(
        hookline_testkit::signing::RESEND_SECRET,
        "msg_slow",
        &body,
        hookline_testkit::signing::now(),
    );
    let extra: String = h.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    let slow_head = head(
        "/webhooks/resend",
        &format!("content-length: {}\r\n{extra}", body.len()),
    );
    slow.write_all(slow_head.as_bytes()).await.unwrap();
    // Wait until it holds the slot: a second request is shed.
    let c = &ingest.client;
    let mut shed = None;
    let start = std::time::Instant::now();
    while shed.is_none() && start.elapsed() < Duration::from_secs(5) {
        let r = c.post_resend("msg_second", "em", "email.sent").await;
        if r.status() == 503 {
            shed = Some(r);
        }
    }
    let shed = shed.expect("a request beyond the cap is shed");
    assert!(
        shed.headers().get("retry-after").is_some(),
        "503 carries Retry-After: {:?}",
        shed.headers()
    );
    // The slow body runs into its timeout: 408, then the connection is closed.
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection after the 408")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // The slot is free again.
    assert_eq!(
        c.post_resend("msg_third", "em", "email.sent")
            .await
            .status(),
        200
    );
}

/// Chunked bodies (no declared length) that run past the body limit: each one is refused with 413
/// once it passes the limit, when no flood holds the in-flight slots (under a flood, 503 is the
/// right answer for those that find the cap taken).
#[tokio::test]
async fn every_chunked_body_past_the_limit_is_413() {
    let ingest = Ingest::start().await; // body limit 64 KiB (harness)
    let addr = ingest.base.trim_start_matches("http://").to_owned();
    let mut chunked = Vec::new();
    for _ in 0..20 {
        let chunk = vec![b'x'; 8 * 1024];
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(&chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let (addr, body) = (addr.clone(), chunked.clone());
        tasks.spawn(async move {
            raw(
                &addr,
                head("/webhooks/resend", "transfer-encoding: chunked\r\n"),
                body,
                Duration::from_secs(10),
            )
            .await
        });
    }
    let outcomes: Vec<Outcome> = tasks.join_all().await;
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Status(413)),
        "{:?}",
        tally(&outcomes)
    );
    assert_eq!(ingest.stored_messages().await, 0);
}
