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
        // As it arrives (some providers sign inside the body, or wrap it).
        let (body, _) = self.signed(body);
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
    let mut other_keys = provider.keygen();
    // SNS: the other key's certificate under the genuine one's (pre-seeded) URL, so the
    // forgery is refused for its signature rather than for a certificate ingest cannot fetch.
    if let Some((_, url)) = keys.vars().find(|(v, _)| *v == "SES_SIGNING_CERT_URL") {
        other_keys.set_var("SES_SIGNING_CERT_URL", url.to_vec());
    }
    let other = provider.signer(&other_keys).unwrap();
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

#[tokio::test]
async fn ses_events_through_sns_with_a_pre_seeded_certificate() {
    signed_samples_become_delivery_state("ses", false).await;
}

/// An HTTPS server standing for SNS: serves signing certificates by path, answers subscription
/// confirmations, and counts what it was asked.
struct FakeSns {
    port: u16,
    certs: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>,
    asked: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl FakeSns {
    async fn start(pki: &hookline_testkit::tls::TestPki) -> Self {
        use rustls_pki_types::pem::PemObject as _;
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(pki.server_cert())
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls_pki_types::PrivateKeyDer::from_pem_file(pki.server_key()).unwrap();
        let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(
            std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider()),
        )
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let served: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, String>>> =
            Default::default();
        let asked: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
        let (s, a) = (served.clone(), asked.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, s, a) = (acceptor.clone(), s.clone(), a.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head);
                    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                    a.lock().unwrap().push(path.clone());
                    let found = if path.starts_with("/?Action=ConfirmSubscription") {
                        Some("<ConfirmSubscriptionResponse/>".to_owned())
                    } else {
                        s.lock().unwrap().get(&path).cloned()
                    };
                    let response = match found {
                        Some(body) => format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        ),
                        None => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                            .to_owned(),
                    };
                    let _ = tls.write_all(response.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Self {
            port,
            certs: served,
            asked,
        }
    }

    fn asked(&self, prefix: &str) -> usize {
        self.asked
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.starts_with(prefix))
            .count()
    }
}

/// SES signing keys whose certificate the fake SNS serves at `path` (instead of pre-seeded).
fn served_keys(sns: &FakeSns, host: &str, path: &str) -> hookline_core::providers::Values {
    use base64::Engine as _;
    let mut keys = built_in("ses").unwrap().keygen();
    let seeded = keys
        .vars()
        .find(|(v, _)| *v == "SES_CERTIFICATES")
        .map(|(_, v)| v[0].clone())
        .unwrap();
    let pem = base64::engine::general_purpose::STANDARD
        .decode(seeded.split_once('=').unwrap().1)
        .unwrap();
    sns.certs
        .lock()
        .unwrap()
        .insert(path.to_owned(), String::from_utf8(pem).unwrap());
    keys.set_var("SES_CERTIFICATES", Vec::new());
    keys.set_var(
        "SES_SIGNING_CERT_URL",
        vec![format!("https://{host}:{}{path}", sns.port)],
    );
    keys
}

/// A SubscriptionConfirmation signed as SNS signs it (SignatureVersion 2), by `keys`.
fn confirmation(keys: &hookline_core::providers::Values, subscribe: &str) -> String {
    use base64::Engine as _;
    use rsa::pkcs8::DecodePrivateKey as _;
    use rsa::signature::{SignatureEncoding as _, Signer as _};
    let get = |name: &str| {
        keys.vars()
            .find(|(v, _)| *v == name)
            .map(|(_, v)| v[0].clone())
            .unwrap()
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let key =
        rsa::RsaPrivateKey::from_pkcs8_der(&b64.decode(get("SES_SIGNING_KEY")).unwrap()).unwrap();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut m = std::collections::BTreeMap::new();
    m.insert("Type", "SubscriptionConfirmation".to_owned());
    m.insert(
        "MessageId",
        "165545c9-2a5c-472c-8df2-7ff2be2b3b1b".to_owned(),
    );
    m.insert("Token", "2336412f37fb687f5d51e6e2425c464de".to_owned());
    m.insert("TopicArn", get("SES_SIGNING_TOPIC_ARN"));
    m.insert(
        "Message",
        "You have chosen to subscribe to the topic.".to_owned(),
    );
    m.insert("SubscribeURL", subscribe.to_owned());
    m.insert("Timestamp", now);
    let text: String = [
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ]
    .iter()
    .map(|k| format!("{k}\n{}\n", m[k]))
    .collect();
    let signature = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key).sign(text.as_bytes());
    m.insert("SignatureVersion", "2".to_owned());
    m.insert("SigningCertURL", get("SES_SIGNING_CERT_URL"));
    m.insert("Signature", b64.encode(signature.to_bytes()));
    serde_json::to_string(&m).unwrap()
}

/// SNS's signing certificate is fetched over HTTPS from an allowed host and cached; a rotated
/// certificate (a new URL) is fetched in turn; one on a host not allowed is never fetched and
/// the message refused; a certificate that cannot be fetched answers 503 (SNS sends it again);
/// a subscription is confirmed by fetching its SubscribeURL before the 2xx.
#[tokio::test]
async fn ses_certificates_are_fetched_cached_rotated_and_only_from_allowed_hosts() {
    let pki = hookline_testkit::tls::TestPki::new();
    let sns = FakeSns::start(&pki).await;
    let first = served_keys(&sns, "localhost", "/SimpleNotificationService-1.pem");
    let rotated = served_keys(&sns, "localhost", "/SimpleNotificationService-2.pem");
    let foreign = served_keys(&sns, "127.0.0.1", "/SimpleNotificationService-3.pem");
    let missing = served_keys(&sns, "localhost", "/SimpleNotificationService-4.pem");
    sns.certs
        .lock()
        .unwrap()
        .remove("/SimpleNotificationService-4.pem");
    let topic = |k: &hookline_core::providers::Values| {
        k.vars()
            .find(|(v, _)| *v == "SES_TOPIC_ARNS")
            .map(|(_, v)| v[0].clone())
            .unwrap()
    };
    let stack = Stack::start(1, |cfg| {
        cfg.provider_keys
            .values
            .set_var("SES_TOPIC_ARNS", vec![topic(&first)]);
        cfg.provider_keys
            .values
            .set_var("SES_CERTIFICATE_HOSTS", vec!["localhost".into()]);
        cfg.fetch_ca_file = Some(pki.ca());
    })
    .await;
    let pool = stack.pool.clone();
    let batch = new_batch(&pool).await;
    let ses = built_in("ses").unwrap();
    let sample = |message: &str, status| {
        ses.sample(&Sample {
            event_id: message,
            message_id: message,
            status,
            at: &chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        })
        .unwrap()
    };
    let send = |keys: &hookline_core::providers::Values, body: String| {
        let signer = ses.signer(keys).unwrap();
        let (body, headers) =
            signer.request("", "", body.as_bytes(), hookline_testkit::signing::now());
        let client = stack.client.clone();
        async move {
            client
                .post("ses", &headers, &String::from_utf8(body).unwrap())
                .await
                .status()
        }
    };
    for m in ["s-1", "s-2", "s-3"] {
        add_recipient(
            &pool,
            &batch,
            "ses",
            &ses.recipient_id(m, "ada@example.com"),
        )
        .await;
    }
    // Every key signs for the one allowed topic.
    let same_topic = |mut k: hookline_core::providers::Values| {
        k.set_var("SES_SIGNING_TOPIC_ARN", vec![topic(&first)]);
        k
    };
    let (rotated, foreign, missing) = (
        same_topic(rotated),
        same_topic(foreign),
        same_topic(missing),
    );

    assert_eq!(send(&first, sample("s-1", SampleStatus::Sent)).await, 200);
    assert_eq!(
        send(&first, sample("s-1", SampleStatus::Delivered)).await,
        200
    );
    assert_eq!(
        sns.asked("/SimpleNotificationService-1.pem"),
        1,
        "fetched once, then cached"
    );
    assert_eq!(
        send(&rotated, sample("s-2", SampleStatus::Delivered)).await,
        200
    );
    assert_eq!(
        sns.asked("/SimpleNotificationService-2.pem"),
        1,
        "a rotated certificate"
    );
    assert_eq!(
        send(&foreign, sample("s-3", SampleStatus::Delivered)).await,
        401
    );
    assert_eq!(
        sns.asked("/SimpleNotificationService-3.pem"),
        0,
        "never fetched"
    );
    assert_eq!(
        send(&missing, sample("s-3", SampleStatus::Delivered)).await,
        503
    );
    assert_eq!(sns.asked("/SimpleNotificationService-4.pem"), 1);

    let subscribe = format!(
        "https://localhost:{}/?Action=ConfirmSubscription&TopicArn=t&Token=2336412f",
        sns.port
    );
    let body = confirmation(&first, &subscribe);
    let headers = vec![
        (
            "content-type".to_owned(),
            "text/plain; charset=UTF-8".to_owned(),
        ),
        (
            "x-amz-sns-message-type".to_owned(),
            "SubscriptionConfirmation".to_owned(),
        ),
    ];
    let r = stack.client.post("ses", &headers, &body).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(
        sns.asked("/?Action=ConfirmSubscription"),
        1,
        "confirmed before the 2xx"
    );

    let p = &pool;
    wait_until(
        "the events and the confirmation stored",
        Duration::from_secs(20),
        || async move {
            count(
                p,
                "SELECT count(*) FROM delivery_events WHERE provider = 'ses'",
            )
            .await
                == 4
        },
    )
    .await;
    stack.wait_drained(Duration::from_secs(10)).await;
    assert_eq!(
        status(p, "ses", &ses.recipient_id("s-1", "ada@example.com")).await,
        "delivered"
    );
    assert_eq!(
        status(p, "ses", &ses.recipient_id("s-2", "ada@example.com")).await,
        "delivered"
    );
    assert_eq!(
        status(p, "ses", &ses.recipient_id("s-3", "ada@example.com")).await,
        "queued"
    );
    assert_counters_match_recount(p).await;
}
