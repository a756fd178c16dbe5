//! The same-run ceilings: servers that do less than ingest (run as child processes of this
//! binary, like ingest is one), and the broker and database doing only their part.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use futures::StreamExt as _;

/// The header every bench request carries its event id in, for the publish ceiling's dedup id
/// (ingest ignores it).
pub const EVENT_ID_HEADER: &str = "x-bench-event-id";

/// A bare axum endpoint: reads the body, answers 200. What HTTP alone costs here.
pub async fn serve_bare(listen: SocketAddr) -> anyhow::Result<()> {
    let app = Router::new().route("/webhooks/{provider}", post(|_body: Bytes| async { "ok" }));
    axum::serve(tokio::net::TcpListener::bind(listen).await?, app).await?;
    Ok(())
}

/// A minimal axum endpoint that publishes each body to JetStream (file storage) with a
/// `Nats-Msg-Id` and awaits the PubAck: no verification, no parsing.
pub async fn serve_publish(listen: SocketAddr, nats_url: &str) -> anyhow::Result<()> {
    let client = async_nats::connect(nats_url).await?;
    let js = jetstream::ContextBuilder::new()
        .max_ack_inflight(4096)
        .backpressure_on_inflight(true)
        .build(client);
    js.create_or_update_stream(jetstream::stream::Config {
        name: "CEILING".into(),
        subjects: vec!["ceiling.>".into()],
        max_bytes: 4 << 30,
        ..Default::default()
    })
    .await?;
    let js = Arc::new(js);
    let app = Router::new().route(
        "/webhooks/{provider}",
        post(move |headers: HeaderMap, body: Bytes| {
            let js = js.clone();
            async move {
                let mut h = async_nats::HeaderMap::new();
                if let Some(id) = headers.get(EVENT_ID_HEADER).and_then(|v| v.to_str().ok()) {
                    h.insert(async_nats::header::NATS_MESSAGE_ID, id);
                }
                match js.publish_with_headers("ceiling.events", h, body).await {
                    Ok(ack) => match ack.await {
                        Ok(_) => StatusCode::OK,
                        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
                    },
                    Err(_) => StatusCode::SERVICE_UNAVAILABLE,
                }
            }
        }),
    );
    axum::serve(tokio::net::TcpListener::bind(listen).await?, app).await?;
    Ok(())
}

/// Raw async-nats publish throughput with up to `inflight` PubAcks outstanding.
pub async fn broker_publish(nats_url: &str, messages: u64, inflight: usize) -> anyhow::Result<f64> {
    let js = jetstream::new(async_nats::connect(nats_url).await?);
    let _ = js.delete_stream("BROKER").await;
    js.create_stream(jetstream::stream::Config {
        name: "BROKER".into(),
        subjects: vec!["broker.>".into()],
        ..Default::default()
    })
    .await?;
    let body = Bytes::from(vec![b'x'; 600]);
    let started = Instant::now();
    let acks = futures::stream::iter(0..messages)
        .map(|_| {
            let (js, body) = (js.clone(), body.clone());
            async move { js.publish("broker.events", body).await?.await }
        })
        .buffer_unordered(inflight);
    let results: Vec<_> = acks.collect().await;
    let elapsed = started.elapsed();
    anyhow::ensure!(results.iter().all(|r| r.is_ok()), "a broker publish failed");
    js.delete_stream("BROKER").await?;
    Ok(messages as f64 / elapsed.as_secs_f64())
}

/// Pull-consumes the main stream in batches of 100 and applies each batch with `apply`, acking
/// after it; returns events per second once `total` are done.
pub async fn consume_with<F, Fut>(
    js: &jetstream::Context,
    stream: &str,
    total: u64,
    mut apply: F,
) -> anyhow::Result<f64>
where
    F: FnMut(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let consumer = js
        .get_stream(stream)
        .await?
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("ceiling".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            max_ack_pending: 10_000,
            ..Default::default()
        })
        .await?;
    let started = Instant::now();
    let mut done = 0u64;
    while done < total {
        let mut batch = consumer
            .batch()
            .max_messages(100)
            .expires(Duration::from_millis(500))
            .messages()
            .await?;
        let mut messages = Vec::with_capacity(100);
        while let Some(m) = batch.next().await {
            messages.push(m.map_err(|e| anyhow::anyhow!(e))?);
        }
        let ids: Vec<String> = messages
            .iter()
            .map(|m| message_of(&m.payload))
            .collect::<anyhow::Result<_>>()?;
        apply(ids).await?;
        for m in &messages {
            m.ack().await.map_err(|e| anyhow::anyhow!(e))?;
        }
        done += messages.len() as u64;
    }
    Ok(done as f64 / started.elapsed().as_secs_f64())
}

/// The message id of a bench body (the one string value starting with the bench's message
/// prefix), found without a JSON parse (the ceiling's point is to do as little as possible
/// besides the database write).
fn message_of(body: &[u8]) -> anyhow::Result<String> {
    let s = std::str::from_utf8(body)?;
    let key = format!("\"{}", crate::traffic::MESSAGE_PREFIX);
    let start = s
        .find(&key)
        .ok_or_else(|| anyhow::anyhow!("no message id"))?
        + 1;
    let end = s[start..]
        .find('"')
        .ok_or_else(|| anyhow::anyhow!("unterminated"))?
        + start;
    Ok(s[start..end].to_owned())
}

/// The raw ceiling's write: one bulk UPDATE via UNNEST, one transaction per batch.
pub async fn bulk_update(
    pool: &sqlx::PgPool,
    provider: &str,
    ids: Vec<String>,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE recipients r SET status = 'delivered', updated_at = now() \
         FROM UNNEST($1::text[]) AS u (m) WHERE r.provider = $2 AND r.provider_message_id = u.m",
    )
    .bind(ids)
    .bind(provider)
    .execute(pool)
    .await?;
    Ok(())
}

/// The naive writer: one UPDATE, one transaction, per event.
pub async fn one_by_one(
    pool: &sqlx::PgPool,
    provider: &str,
    ids: Vec<String>,
) -> anyhow::Result<()> {
    for id in ids {
        sqlx::query(
            "UPDATE recipients SET status = 'delivered', updated_at = now() \
             WHERE provider = $2 AND provider_message_id = $1",
        )
        .bind(id)
        .bind(provider)
        .execute(pool)
        .await?;
    }
    Ok(())
}
