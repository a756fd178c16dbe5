//! Each provider added after Telnyx and Resend, through ingest and real workers: its signed
//! samples end in the right recipient status and batch counters (equal to a recount), a retry is
//! absorbed, and a forged request is refused with 401 and stores nothing.

use std::time::Duration;

use hookline_core::providers::{built_in, BuiltIn, Sample, SampleStatus, Signer, RECEIVED_AT};
use hookline_testkit::wait_until;

use crate::stack::Stack;
use crate::support::*;

/// Where the tests' providers believe they call ingest: behind a proxy that strips `/hookline`.
const PUBLIC_URL: &str = "https://hooks.example.com/hookline";

/// `signed` (a request whose signature sits in the body beside the payload) with `other`'s
/// payload under the same signature; `None` for providers that sign the payload itself.
fn swap_payload(signed: &str, other: &str) -> Option<String> {
    let mut v: serde_json::Value = serde_json::from_str(signed).ok()?;
    let other: serde_json::Value = serde_json::from_str(other).ok()?;
    v.get("signature")?;
    v["event-data"] = other.get("event-data")?.clone();
    Some(v.to_string())
}

struct Sender {
    provider: &'static dyn BuiltIn,
    signer: Box<dyn Signer>,
    /// The route with a query, as the provider is configured to call it.
    route: String,
}

impl Sender {
    fn body(
        &self,
        message: &str,
        event: &str,
        status: SampleStatus,
        second: u32,
    ) -> Option<String> {
        self.provider.sample(&Sample {
            event_id: event,
            message_id: message,
            status,
            at: &format!(
                "{}T10:00:{second:02}.000Z",
                chrono::Utc::now().format("%Y-%m-%d")
            ),
        })
    }

    /// The request as the provider sends it: body (signed inside, for some) and headers.
    fn signed(&self, body: &str) -> (String, Vec<(String, String)>) {
        let url = format!("{PUBLIC_URL}/webhooks/{}", self.route);
        let (body, headers) =
            self.signer
                .request(&url, "", body.as_bytes(), hookline_testkit::signing::now());
        (String::from_utf8(body).unwrap(), headers)
    }

    /// The (first) event the worker will decode `body` to.
    fn decoded(&self, body: &str) -> hookline_core::DeliveryEvent {
        let headers = [(RECEIVED_AT, "1795168800000")];
        let decoder = self.provider.decoder();
        let part = decoder
            .split(body.as_bytes())
            .map_or(body.as_bytes().to_vec(), |parts| parts[0].clone());
        decoder.decode(&headers, &part).unwrap()
    }

    /// The id a recipient of `message` is registered under (the decoded message id).
    fn recipient(&self, message: &str) -> String {
        let body = self
            .body(message, "probe", SampleStatus::Delivered, 0)
            .unwrap();
        self.decoded(&body).message_id
    }
}

async fn signed_samples_become_delivery_state(name: &str, signs_url: bool) {
    let provider = built_in(name).unwrap();
    let keys = provider.keygen();
    let stack = Stack::start(1, |cfg| {
        for (var, values) in keys.vars() {
            cfg.provider_keys.values.set_var(var, values.to_vec());
        }
        cfg.public_url = Some(PUBLIC_URL.into());
    })
    .await;
    let s = Sender {
        provider,
        signer: provider.signer(&keys).unwrap(),
        route: format!("{name}?account=acme"),
    };
    let pool = &stack.pool;
    let batch = new_batch(pool).await;
    let m = |n: u32| format!("{name}-m{n}");
    for n in 1..=3 {
        add_recipient(pool, &batch, name, &s.recipient(&m(n))).await;
    }
    let mut posts = Vec::new();
    if let Some(sent) = s.body(&m(1), "e1", SampleStatus::Sent, 1) {
        posts.push(sent);
    }
    let delivered = s.body(&m(1), "e2", SampleStatus::Delivered, 2).unwrap();
    posts.push(delivered.clone());
    posts.push(delivered); // the provider's retry
    let failed = s.body(&m(2), "e3", SampleStatus::Undelivered, 3).unwrap();
    let failed_status = s.decoded(&failed).status.unwrap().as_str().to_owned();
    posts.push(failed);
    // Out of order: the outcome before the progress.
    posts.push(s.body(&m(3), "e4", SampleStatus::Delivered, 5).unwrap());
    if let Some(sent) = s.body(&m(3), "e5", SampleStatus::Sent, 4) {
        posts.push(sent);
    }
    let distinct = posts.len() as i64 - 1;
    let mut last = (String::new(), Vec::new());
    for body in &posts {
        last = s.signed(body);
        let r = stack.client.post(&s.route, &last.1, &last.0).await;
        assert_eq!(r.status(), 200, "{name}: {}", r.text().await.unwrap());
    }
    // The last request again, byte for byte (a retry, or a capture replayed): absorbed.
    let r = stack.client.post(&s.route, &last.1, &last.0).await;
    assert_eq!(r.status(), 200, "{name}: {}", r.text().await.unwrap());

    // Forged requests: signed with other keys (for an unsigned provider, other credentials),
    // with nothing, and — for a provider that signs the URL — signed for the URL without the
    // proxy's prefix. Each 401, nothing stored.
    let forged_body = s.body(&m(2), "e9", SampleStatus::Delivered, 9).unwrap();
    let now = hookline_testkit::signing::now();
    let url = format!("{PUBLIC_URL}/webhooks/{}", s.route);
    let other = provider.signer(&provider.keygen()).unwrap();
    let (unsigned, _) = (forged_body.clone().into_bytes(), ());
    let mut forgeries = vec![
        other.request(&url, "", forged_body.as_bytes(), now),
        (unsigned, Vec::new()),
    ];
    if signs_url {
        let unprefixed = url.replace("/hookline", "");
        forgeries.push(
            s.signer
                .request(&unprefixed, "", forged_body.as_bytes(), now),
        );
    }
    if let Some(replayed) = swap_payload(&last.0, &forged_body) {
        // A genuine signature carrying another event (a signature that covers no payload):
        // the token it came with already vouches for the last event.
        forgeries.push((replayed.into_bytes(), last.1.clone()));
    }
    for (body, headers) in forgeries {
        let body = String::from_utf8(body).unwrap();
        let r = stack.client.post(&s.route, &headers, &body).await;
        assert_eq!(r.status(), 401, "{name}: {headers:?} {body}");
    }

    wait_until(
        &format!("{name}: {distinct} distinct events stored"),
        Duration::from_secs(20),
        || async {
            count(
                pool,
                &format!("SELECT count(*) FROM delivery_events WHERE provider = '{name}'"),
            )
            .await
                == distinct
        },
    )
    .await;
    stack.wait_drained(Duration::from_secs(10)).await;
    let r = |n| s.recipient(&m(n));
    assert_eq!(status(pool, name, &r(1)).await, "delivered", "{name}");
    assert_eq!(status(pool, name, &r(2)).await, failed_status, "{name}");
    assert_eq!(
        status(pool, name, &r(3)).await,
        "delivered",
        "{name}: a late progress event does not regress"
    );
    assert_eq!(
        count(
            pool,
            &format!("SELECT count(*) FROM delivery_events WHERE provider = '{name}'"),
        )
        .await,
        distinct,
        "{name}: the retry absorbed, the forgeries not stored"
    );
    assert_counters_match_recount(pool).await;
}

#[tokio::test]
async fn postmark_credentials_guard_an_unsigned_provider() {
    signed_samples_become_delivery_state("postmark", false).await;
}

#[tokio::test]
async fn twilio_is_verified_against_the_public_url_behind_a_proxy_prefix() {
    signed_samples_become_delivery_state("twilio", true).await;
}

#[tokio::test]
async fn sendgrid_events_in_one_request_each_stored_once() {
    signed_samples_become_delivery_state("sendgrid", false).await;
}

/// A SendGrid request carries many events; ingest stores each as its own message and answers
/// 2xx only when all are. The broker killed under a request gets 503; the provider's retry of the
/// whole request after the broker is back stores the rest, and the events an earlier attempt
/// stored are absorbed: every event once, every recipient right.
#[tokio::test]
async fn sendgrid_many_events_survive_the_broker_killed_between_attempts() {
    let provider = built_in("sendgrid").unwrap();
    let keys = provider.keygen();
    let mut stack = Stack::start(1, |cfg| {
        for (var, values) in keys.vars() {
            cfg.provider_keys.values.set_var(var, values.to_vec());
        }
    })
    .await;
    let signer = provider.signer(&keys).unwrap();
    let pool = stack.pool.clone();
    let batch = new_batch(&pool).await;
    let start = chrono::Utc::now().timestamp() - 60;
    let event = |n: usize, status: &str, second: i64| {
        serde_json::json!({"email": format!("r{n}@example.com"),
            "timestamp": start + second,
            "event": status, "sg_event_id": format!("sg-{n}-{status}"),
            "sg_message_id": "Xreq42.filter0001.16648.5515E0B88.0"})
    };
    let n = 40;
    for i in 0..n {
        add_recipient(
            &pool,
            &batch,
            "sendgrid",
            &format!("Xreq42:r{i}@example.com"),
        )
        .await;
    }
    let client = stack.client.clone();
    let post = |events: &[serde_json::Value]| {
        let body = serde_json::Value::Array(events.to_vec()).to_string();
        let headers = signer.sign("", "", body.as_bytes(), hookline_testkit::signing::now());
        let client = client.clone();
        async move { client.post("sendgrid", &headers, &body).await }
    };
    // First attempt: the first half's `processed` and `delivered` are stored.
    let first: Vec<_> = (0..n / 2)
        .flat_map(|i| [event(i, "processed", 1), event(i, "delivered", 2)])
        .collect();
    assert_eq!(post(&first).await.status(), 200);
    let all: Vec<_> = (0..n)
        .flat_map(|i| {
            let last = if i % 4 == 3 { "bounce" } else { "delivered" };
            [event(i, "processed", 1), event(i, last, 2)]
        })
        .collect();
    // The broker dies; the provider's request (now with every event) is refused whole.
    stack.nats.kill();
    let refused = post(&all).await;
    assert_eq!(refused.status(), 503, "{}", refused.text().await.unwrap());
    stack.nats.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let answer = loop {
        let r = post(&all).await;
        if r.status() == 200 || std::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(answer.status(), 200);
    let text = answer.text().await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["events"], 2 * n);
    // The events the first attempt stored are absorbed by their dedup ids.
    let id = |e: &serde_json::Value| e["sg_event_id"].as_str().unwrap().to_owned();
    let first_ids: std::collections::HashSet<String> = first.iter().map(id).collect();
    let again = all.iter().filter(|e| first_ids.contains(&id(e))).count();
    assert_eq!(v["duplicates"], again, "{text}");
    let mut distinct = first_ids.clone();
    distinct.extend(all.iter().map(id));
    let distinct = distinct.len() as i64;
    let p = &pool;
    let stored = || async move {
        let sql = "SELECT count(*) FROM delivery_events WHERE provider = 'sendgrid'";
        count(p, sql).await
    };
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        while stored().await != distinct {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "{} of {distinct} events stored",
        stored().await
    );
    stack.wait_drained(Duration::from_secs(20)).await;
    for i in 0..n {
        let want = if i % 4 == 3 { "bounced" } else { "delivered" };
        let id = format!("Xreq42:r{i}@example.com");
        assert_eq!(status(p, "sendgrid", &id).await, want, "{id}");
    }
    assert_counters_match_recount(p).await;
}

#[tokio::test]
async fn mailgun_tokens_vouch_for_one_event_across_requests() {
    signed_samples_become_delivery_state("mailgun", false).await;
}
