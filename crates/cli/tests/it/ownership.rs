//! Streams owned by their operator (`HOOKLINE_STREAMS=check`): ingest and workers only check the
//! streams and the consumer; an edit made with the JetStream API (as `nats stream edit` makes it)
//! survives their start; incompatible settings stop them with a message naming what differs; and
//! `hookline streams print` gives definitions the JetStream API takes as they are.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use hookline_ingest::IngestConfig;
use hookline_jetstream::Ownership;
use hookline_testkit::{signing, NatsServer, WebhookClient};
use tokio::sync::oneshot;

use super::{hookline, hookline_with};

fn ingest_config(nats: &NatsServer, ownership: Ownership) -> IngestConfig {
    let mut c = IngestConfig::for_nats(&nats.url());
    c.provider_keys.values = signing::provider_keys();
    c.streams.ownership = ownership;
    c
}

/// Runs ingest until it answers a signed webhook 200 (then stops it), or until it exits.
async fn ingest_outcome(cfg: IngestConfig) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = WebhookClient::new(format!("http://{}", listener.local_addr().unwrap()));
    let (stop, stopped) = oneshot::channel::<()>();
    let mut run = tokio::spawn(hookline_ingest::run(cfg, listener, async {
        let _ = stopped.await;
    }));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    loop {
        tokio::select! {
            done = &mut run => {
                return Err(match done.unwrap() {
                    Ok(()) => "ingest exited without an error".into(),
                    Err(e) => format!("{e:#}"),
                });
            }
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        n += 1;
        let answer = client
            .post_telnyx(&format!("own-{n}"), "msg-own", "sent")
            .await;
        if answer.status() == 200 {
            let _ = stop.send(());
            run.await.unwrap().unwrap();
            return Ok(());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ingest neither served nor exited"
        );
    }
}

async fn stream_config(js: &jetstream::Context, name: &str) -> stream::Config {
    js.get_stream(name)
        .await
        .unwrap()
        .cached_info()
        .config
        .clone()
}

#[tokio::test]
async fn checked_streams_keep_their_operators_edits_and_refuse_incompatible_ones() {
    let nats = NatsServer::start();
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());

    // Nothing exists yet: a checking ingest waits (it does not create the stream).
    let waiting = tokio::spawn(ingest_outcome(ingest_config(&nats, Ownership::Check)));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        js.get_stream("WEBHOOKS").await.is_err(),
        "a checking ingest creates nothing"
    );
    assert!(!waiting.is_finished(), "it waits for the stream's operator");

    let (ok, out) = hookline(&nats, &["streams"]);
    assert!(
        ok && out.contains("Consumer hookline-worker on WEBHOOKS"),
        "{out}"
    );
    waiting
        .await
        .unwrap()
        .expect("served once the streams exist");

    // The operator raises the log's retention, as `nats stream edit --max-age 96h` would.
    let mut edited = stream_config(&js, "WEBHOOKS").await;
    edited.max_age = Duration::from_secs(96 * 3600);
    js.update_stream(&edited).await.unwrap();
    ingest_outcome(ingest_config(&nats, Ownership::Check))
        .await
        .unwrap();
    assert_eq!(
        stream_config(&js, "WEBHOOKS").await.max_age,
        Duration::from_secs(96 * 3600),
        "a checking ingest keeps the operator's edit"
    );
    ingest_outcome(ingest_config(&nats, Ownership::Manage))
        .await
        .unwrap();
    assert_eq!(
        stream_config(&js, "WEBHOOKS").await.max_age,
        Duration::from_secs(hookline_jetstream::topology::DEFAULT_RETENTION_SECS),
        "a managing ingest converges to its flags (why check exists)"
    );

    // The workers' consumer edited (a longer ack wait) survives a checking worker, which uses it.
    let s = js.get_stream("WEBHOOKS").await.unwrap();
    let mut args =
        hookline_worker::WorkerConfig::for_urls(&nats.url(), "postgres://unused").consumer;
    args.ack_wait_secs = 45;
    s.update_consumer(args.config()).await.unwrap();
    let mut wcfg = hookline_worker::WorkerConfig::for_urls(&nats.url(), "postgres://unused");
    wcfg.streams.ownership = Ownership::Check;
    hookline_worker::Worker::connect(&wcfg)
        .await
        .expect("a compatible consumer");
    let mut consumer = s
        .get_consumer::<consumer::pull::Config>("hookline-worker")
        .await
        .unwrap();
    assert_eq!(
        consumer.info().await.unwrap().config.ack_wait,
        Duration::from_secs(45)
    );

    // Incompatible: a consumer that sees only Telnyx's events would leave every other one unstored.
    let e = refused_consumer(
        &s,
        &wcfg,
        consumer::pull::Config {
            filter_subject: "webhook.telnyx.>".into(),
            ..worker_consumer()
        },
    )
    .await;
    assert!(
        e.contains("consumer hookline-worker on WEBHOOKS is incompatible")
            && e.contains("filter is \"webhook.telnyx.>\""),
        "{e}"
    );

    // Incompatible: a consumer JetStream would give up on events for (the workers count
    // deliveries themselves; an event JetStream stopped delivering would sit in the log unstored).
    let e = refused_consumer(
        &s,
        &wcfg,
        consumer::pull::Config {
            max_deliver: 4,
            ..worker_consumer()
        },
    )
    .await;
    assert!(
        e.contains("max_deliver is 4, hookline needs it unlimited"),
        "{e}"
    );

    // Incompatible: a work queue of an earlier release (it forgets an event at its ack).
    replace_log(
        &js,
        stream::Config {
            retention: stream::RetentionPolicy::WorkQueue,
            ..bare_log()
        },
    )
    .await;
    for ownership in [Ownership::Check, Ownership::Manage] {
        let e = ingest_outcome(ingest_config(&nats, ownership))
            .await
            .unwrap_err();
        assert!(
            e.contains("stream WEBHOOKS is a work queue")
                && e.contains("hookline streams --upgrade"),
            "{e}"
        );
    }

    // Incompatible: a log that discards the oldest events when full, stored or not.
    replace_log(
        &js,
        stream::Config {
            discard: stream::DiscardPolicy::Old,
            ..bare_log()
        },
    )
    .await;
    let e = ingest_outcome(ingest_config(&nats, Ownership::Check))
        .await
        .unwrap_err();
    assert!(
        e.contains("stream WEBHOOKS is incompatible")
            && !e.contains("retention")
            && e.contains("discard is Old, hookline needs New"),
        "{e}"
    );
}

/// `hookline streams print` needs no NATS, and what it prints is what the JetStream API's create
/// requests take (`nats stream add --config` and `nats consumer add --config` send that file).
#[tokio::test]
async fn printed_definitions_create_the_topology_through_the_jetstream_api() {
    let nats = NatsServer::start();
    let print = |what: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookline"))
            .args(["streams", "print", what])
            .env_remove("NATS_URL")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let client = async_nats::connect(nats.url()).await.unwrap();
    for (what, name) in [
        ("stream", "WEBHOOKS"),
        ("dlq", "WEBHOOKS_DLQ"),
        ("feed", "WEBHOOK_CHANGES"),
    ] {
        let def = print(what);
        assert_eq!(def["name"], name);
        let answer = client
            .request(
                format!("$JS.API.STREAM.CREATE.{name}"),
                def.to_string().into(),
            )
            .await
            .unwrap();
        let answer: serde_json::Value = serde_json::from_slice(&answer.payload).unwrap();
        assert!(answer.get("error").is_none(), "{answer}");
    }
    let def = print("consumer");
    let answer = client
        .request(
            "$JS.API.CONSUMER.CREATE.WEBHOOKS.hookline-worker",
            serde_json::json!({"stream_name": "WEBHOOKS", "config": def})
                .to_string()
                .into(),
        )
        .await
        .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&answer.payload).unwrap();
    assert!(answer.get("error").is_none(), "{answer}");

    // Made from the printed files, the topology passes a checking ingest and worker.
    ingest_outcome(ingest_config(&nats, Ownership::Check))
        .await
        .unwrap();
    let mut wcfg = hookline_worker::WorkerConfig::for_urls(&nats.url(), "postgres://unused");
    wcfg.streams.ownership = Ownership::Check;
    hookline_worker::Worker::connect(&wcfg).await.unwrap();
    let (ok, out) = hookline_with(&nats, &[], &["streams", "print", "nonsense"]);
    assert!(!ok && out.contains("possible values"), "{out}");
}

/// The workers' consumer as an operator might create it by hand: durable, explicit acks.
fn worker_consumer() -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some("hookline-worker".into()),
        ack_policy: consumer::AckPolicy::Explicit,
        ..Default::default()
    }
}

/// Puts `config` in place of the workers' consumer; returns why a checking worker refuses it.
async fn refused_consumer(
    s: &jetstream::stream::Stream,
    wcfg: &hookline_worker::WorkerConfig,
    config: consumer::pull::Config,
) -> String {
    s.delete_consumer("hookline-worker").await.unwrap();
    s.create_consumer(config).await.unwrap();
    hookline_worker::Worker::connect(wcfg)
        .await
        .err()
        .expect("refused")
        .to_string()
}

/// A stream named like the log over every webhook subject, all else JetStream's defaults.
fn bare_log() -> stream::Config {
    stream::Config {
        name: "WEBHOOKS".into(),
        subjects: vec!["webhook.>".into()],
        ..Default::default()
    }
}

async fn replace_log(js: &jetstream::Context, config: stream::Config) {
    js.delete_stream("WEBHOOKS").await.unwrap();
    js.create_stream(config).await.unwrap();
}
