//! A real 3-node JetStream cluster on loopback: streams with 3 replicas, ingest and two workers
//! connected to all nodes, a few thousand signed events, and the stream's leader SIGKILLed mid-run.
//! Every event acknowledged to the sender reaches PostgreSQL exactly once; ingest keeps answering
//! (2xx or 503, never a 2xx for a lost event); the workers reconnect on their own.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use hookline_ingest::IngestConfig;
use hookline_testkit::signing;
use hookline_testkit::{wait_until, NatsCluster, WebhookClient};
use hookline_worker::{Worker, WorkerConfig};

use crate::support::migrated_db;
use crate::workload::Workload;

async fn stream_len(js: &jetstream::Context, name: &str) -> Option<u64> {
    let mut s = js.get_stream(name).await.ok()?;
    s.info().await.ok().map(|i| i.state.messages)
}

#[tokio::test]
async fn losing_the_stream_leader_loses_no_acknowledged_event() {
    let mut cluster = NatsCluster::start(3);
    let (_pg, pool) = migrated_db().await;
    let urls = cluster.urls();

    let mut cfg = IngestConfig::for_nats(&urls);
    cfg.provider_keys.values = signing::provider_keys();
    cfg.stream.stream_replicas = 3;
    cfg.publish_timeout_ms = 2_000;
    cfg.answer_deadline_ms = 2_500;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = WebhookClient::new(format!("http://{}", listener.local_addr().unwrap()));
    let (_stop_ingest, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(hookline_ingest::run(cfg, listener, async {
        let _ = stopped.await;
    }));
    let c = &client;
    // The cluster elects its meta leader, then ingest creates the R3 stream.
    wait_until(
        "ingest ready on the cluster",
        Duration::from_secs(60),
        || async move { c.get_status("/readyz").await == 200 },
    )
    .await;

    let js = jetstream::new(
        async_nats::connect(hookline_jetstream::server_addrs(&urls).unwrap())
            .await
            .unwrap(),
    );
    let info = js
        .get_stream("WEBHOOKS")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.config.num_replicas, 3);
    let leader = info
        .cluster
        .and_then(|c| c.leader)
        .expect("the stream has a leader");

    let load = Workload::new(1000);
    load.register(&pool).await;
    let (first, rest) = load.sends.split_at(load.sends.len() / 3);
    let r1 = Workload::post_all(&client, first, 16).await;
    // No worker runs yet: everything accepted so far waits in the stream.
    let before = crate::stack::stream_msg_ids(&js).await;
    assert_eq!(
        before.len() as u64,
        stream_len(&js, "WEBHOOKS").await.unwrap(),
        "ids read back"
    );
    let killed_at = Instant::now();
    cluster.node_mut(&leader).kill();
    let r2 = Workload::post_all(&client, rest, 16).await;
    let answers: Vec<u16> = r1.iter().chain(&r2).map(|(_, st)| *st).collect();
    assert!(
        answers.iter().all(|st| *st == 200 || *st == 503),
        "only 2xx or 503: {:?}",
        answers
            .iter()
            .filter(|s| **s != 200 && **s != 503)
            .collect::<Vec<_>>()
    );
    let refused: Vec<_> = r1
        .iter()
        .chain(&r2)
        .filter(|(_, st)| *st != 200)
        .map(|(s, _)| *s)
        .collect();
    let refused_n = refused.len();
    let retried = Workload::retry_until_accepted(&client, refused, Duration::from_secs(60)).await;
    // The new leader holds everything the old one had acknowledged before it died.
    let after = crate::stack::stream_msg_ids(&js).await;
    let lost: Vec<_> = before.difference(&after).collect();
    assert!(lost.is_empty(), "lost with the leader: {lost:?}");

    let mut stops = Vec::new();
    for _ in 0..2 {
        let mut w = WorkerConfig::for_urls(
            &urls,
            &format!("postgres://postgres@127.0.0.1:{}/postgres", _pg.port),
        );
        w.stream_replicas = 3;
        w.flush_interval_ms = 100;
        w.consumer.ack_wait_secs = 2;
        w.retry_base_ms = 20;
        w.retry_max_ms = 500;
        let worker = Worker::connect(&w).await.unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(worker.run(None, async {
            let _ = stopped.await;
        }));
        stops.push(stop);
    }

    let j = &js;
    wait_until(
        "the surviving nodes' log is all stored",
        Duration::from_secs(90),
        || async move { crate::stack::unprocessed(j).await == Some(0) },
    )
    .await;
    let p = &pool;
    let distinct = load.distinct_events();
    wait_until(
        "every event stored",
        Duration::from_secs(30),
        || async move {
            crate::support::count(p, "SELECT count(*) FROM delivery_events").await == distinct
        },
    )
    .await;
    load.assert_exactly_once(&pool).await;
    let new_leader = js
        .get_stream("WEBHOOKS")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .cluster
        .clone()
        .and_then(|c| c.leader);
    assert!(new_leader.is_some() && new_leader.as_deref() != Some(leader.as_str()));
    println!(
        "figures: nodes=3 replicas=3 killed={leader} (stream leader) new leader={} posts={} \
         accepted first time={} refused with 503={refused_n} re-posted={retried} distinct={distinct} \
         stored={distinct} recovered in {:?}",
        new_leader.unwrap(),
        answers.len(),
        answers.len() - refused_n,
        killed_at.elapsed()
    );
}
