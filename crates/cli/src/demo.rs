//! `hookline demo`: shows hookline working. Registers a batch with two recipients per built-in
//! provider the way a sending application would, sends correctly signed webhooks for each
//! (including a provider retry and an out-of-order event) through ingest, waits for the workers,
//! and prints the resulting rows.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hookline_core::providers::{BuiltIn, Sample, SampleStatus, BUILT_IN, RECEIVED_AT};
use rand::Rng as _;
use sqlx::Row as _;

use crate::sign::{now, post, SigningKeys};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// Ingest base URL.
    #[arg(
        long,
        env = "HOOKLINE_INGEST_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    url: String,
    /// How long to wait for the workers, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
    #[command(flatten)]
    keys: SigningKeys,
}

/// One webhook of the demo.
struct Send {
    provider: &'static dyn BuiltIn,
    event_id: String,
    body: String,
    status: SampleStatus,
    what: String,
}

/// Per provider: message 1 is sent, delivered, delivered again (the provider retrying), and
/// opened where the provider reports opens; message 2 fails, then its earlier `sent` arrives late.
fn script(
    provider: &'static dyn BuiltIn,
    id: &dyn Fn(&str) -> String,
) -> anyhow::Result<Vec<Send>> {
    let name = provider.name();
    let steps = [
        ("m1", "ev-1", SampleStatus::Sent, 1, ""),
        ("m1", "ev-2", SampleStatus::Delivered, 3, ""),
        (
            "m1",
            "ev-2",
            SampleStatus::Delivered,
            3,
            " (provider retry)",
        ),
        ("m2", "ev-4", SampleStatus::Undelivered, 5, ""),
        ("m2", "ev-3", SampleStatus::Sent, 2, " (late, out of order)"),
        ("m1", "ev-5", SampleStatus::Opened, 9, ""),
    ];
    let mut sends = Vec::new();
    for (message, event, status, second, note) in steps {
        let event_id = id(&format!("{name}-{event}"));
        let sample = Sample {
            event_id: &event_id,
            message_id: &id(&format!("{name}-{message}")),
            status,
            at: &format!("2026-11-23T10:00:{second:02}.000Z"),
        };
        let Some(body) = provider.sample(&sample) else {
            continue;
        };
        sends.push(Send {
            provider,
            what: format!("{name} {message} {status:?}{note}"),
            status,
            event_id,
            body,
        });
    }
    anyhow::ensure!(!sends.is_empty(), "{name} has no sample bodies");
    Ok(sends)
}

pub async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let pool = crate::connect::database(&args.database_url, 2).await?;
    let tag: u32 = rand::rng().random();
    let id = |name: &str| format!("demo-{tag:08x}-{name}");
    let batch: String =
        sqlx::query_scalar("INSERT INTO batches (name) VALUES ($1) RETURNING id::text")
            .bind(format!("demo {tag:08x}"))
            .fetch_one(&pool)
            .await?;
    let (mut providers, mut messages, mut addresses) = (Vec::new(), Vec::new(), Vec::new());
    for b in BUILT_IN {
        for m in ["m1", "m2"] {
            providers.push(b.name());
            let address = b.sample_address(addresses.len());
            messages.push(b.recipient_id(&id(&format!("{}-{m}", b.name())), &address));
            addresses.push(address);
        }
    }
    sqlx::query(
        "INSERT INTO recipients (batch_id, provider, provider_message_id, address)
         SELECT $1::uuid, p, m, a FROM unnest($2::text[], $3::text[], $4::text[]) AS u (p, m, a)",
    )
    .bind(&batch)
    .bind(&providers)
    .bind(&messages)
    .bind(&addresses)
    .execute(&pool)
    .await?;
    println!(
        "Registered batch {batch} with {} recipients ({} each for {}).",
        messages.len(),
        2,
        BUILT_IN
            .iter()
            .map(|b| b.name())
            .collect::<Vec<_>>()
            .join(", ")
    );

    // What the recipients must end as: message 1 delivered; message 2 whatever its provider's
    // failure decodes to.
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    let mut sent = 0;
    for b in BUILT_IN {
        let sends = script(*b, &id)?;
        for s in &sends {
            let url = crate::sign::webhook_url(&args.url, s.provider.name());
            let (body, headers) = args.keys.request(
                s.provider,
                &url,
                s.body.as_bytes(),
                Some(&s.event_id),
                now(),
            )?;
            if s.status == SampleStatus::Undelivered {
                // Decoded as the worker will: with the time ingest received it, one event of
                // the request (a provider may send several per request).
                let mut stored = headers.clone();
                stored.push((
                    RECEIVED_AT.into(),
                    chrono::Utc::now().timestamp_millis().to_string(),
                ));
                let decoder = s.provider.decoder();
                let first = decoder
                    .split(&body)
                    .and_then(|parts| parts.into_iter().next())
                    .unwrap_or_else(|| body.clone());
                let event = decoder.decode(&stored, &first)?;
                let status = event.status.context("a failure sample has a status")?;
                *expected.entry(status.as_str().to_owned()).or_default() += 1;
            }
            let (status, answer) = post(&args.url, s.provider.name(), &headers, body).await?;
            println!("  POST {:<44} -> {status} {answer}", s.what);
            anyhow::ensure!(status == 200, "ingest refused a correctly signed webhook");
            sent += 1;
        }
        *expected.entry("delivered".to_owned()).or_default() += 1;
    }

    let started = Instant::now();
    loop {
        let got: BTreeMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
            "SELECT status, count(*) FROM recipients WHERE batch_id = $1::uuid GROUP BY status",
        )
        .bind(&batch)
        .fetch_all(&pool)
        .await?
        .into_iter()
        .collect();
        if got == expected {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(args.timeout_secs),
            "workers did not reach the expected state within {}s: {got:?}, expected {expected:?}",
            args.timeout_secs
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "Workers stored it all in {} ms.\n",
        started.elapsed().as_millis()
    );
    print_rows(&pool, &batch).await?;
    let events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM delivery_events WHERE provider_message_id LIKE $1",
    )
    .bind(format!("demo-{tag:08x}-%"))
    .fetch_one(&pool)
    .await?;
    println!(
        "\n{sent} webhooks sent, {events} distinct events stored (the provider retries were absorbed)."
    );
    Ok(())
}

async fn print_rows(pool: &sqlx::PgPool, batch: &str) -> anyhow::Result<()> {
    let b = sqlx::query(
        "SELECT total_count, queued_count, sent_count, delivered_count, failed_count, bounced_count
         FROM batches WHERE id = $1::uuid",
    )
    .bind(batch)
    .fetch_one(pool)
    .await?;
    println!(
        "batches: total={} queued={} sent={} delivered={} failed={} bounced={}",
        b.get::<i32, _>(0),
        b.get::<i32, _>(1),
        b.get::<i32, _>(2),
        b.get::<i32, _>(3),
        b.get::<i32, _>(4),
        b.get::<i32, _>(5)
    );
    println!(
        "\n{:<8} {:<34} {:<10} {:<22} {:<22} {:<22} error",
        "provider", "provider_message_id", "status", "sent_at", "delivered_at", "opened_at"
    );
    let rows = sqlx::query(
        "SELECT provider, provider_message_id, status,
                coalesce(to_char(sent_at, 'YYYY-MM-DD HH24:MI:SS'), '-'),
                coalesce(to_char(delivered_at, 'YYYY-MM-DD HH24:MI:SS'), '-'),
                coalesce(to_char(opened_at, 'YYYY-MM-DD HH24:MI:SS'), '-'),
                coalesce(last_error_code || ' ' || coalesce(last_error_description, ''), '-')
         FROM recipients WHERE batch_id = $1::uuid ORDER BY provider_message_id",
    )
    .bind(batch)
    .fetch_all(pool)
    .await?;
    for r in rows {
        println!(
            "{:<8} {:<34} {:<10} {:<22} {:<22} {:<22} {}",
            r.get::<String, _>(0),
            r.get::<String, _>(1),
            r.get::<String, _>(2),
            r.get::<String, _>(3),
            r.get::<String, _>(4),
            r.get::<String, _>(5),
            r.get::<String, _>(6)
        );
    }
    Ok(())
}
