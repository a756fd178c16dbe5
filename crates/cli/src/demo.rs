//! `hookline demo`: shows hookline working. Registers a batch of four recipients the way a
//! sending application would, sends correctly signed webhooks for both providers (including a
//! provider retry and an out-of-order event) through ingest, waits for the workers, and prints the
//! resulting rows.

use std::time::{Duration, Instant};

use rand::Rng as _;
use sqlx::Row as _;

use crate::sign::{now, post, ProviderName, SigningKeys};
use hookline_core::providers::samples::{resend_body, telnyx_body};

#[derive(clap::Args)]
pub struct DemoArgs {
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

pub async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let pool = crate::connect::database(&args.database_url, 2).await?;
    let tag: u32 = rand::rng().random();
    let id = |name: &str| format!("demo-{tag:08x}-{name}");
    let batch: String =
        sqlx::query_scalar("INSERT INTO batches (name) VALUES ($1) RETURNING id::text")
            .bind(format!("demo {tag:08x}"))
            .fetch_one(&pool)
            .await?;
    sqlx::query(
        "INSERT INTO recipients (batch_id, provider, provider_message_id, address)
         SELECT $1::uuid, p, m, a FROM unnest($2::text[], $3::text[], $4::text[]) AS u (p, m, a)",
    )
    .bind(&batch)
    .bind(vec!["telnyx", "telnyx", "resend", "resend"])
    .bind(vec![id("sms-1"), id("sms-2"), id("email-1"), id("email-2")])
    .bind(vec![
        "+13125550123",
        "+13125550124",
        "ada@example.com",
        "bob@example.com",
    ])
    .execute(&pool)
    .await?;
    println!("Registered batch {batch} with 2 SMS and 2 email recipients.");

    let at = |s: u32| format!("2026-11-23T10:00:{s:02}.000Z");
    let sends: Vec<(ProviderName, String, String, &str)> = vec![
        (
            ProviderName::Telnyx,
            id("ev-1"),
            telnyx_body(&id("ev-1"), &id("sms-1"), "sent", &at(1)),
            "sms-1 sent",
        ),
        (
            ProviderName::Telnyx,
            id("ev-2"),
            telnyx_body(&id("ev-2"), &id("sms-1"), "delivered", &at(3)),
            "sms-1 delivered",
        ),
        (
            ProviderName::Telnyx,
            id("ev-2"),
            telnyx_body(&id("ev-2"), &id("sms-1"), "delivered", &at(3)),
            "sms-1 delivered (provider retry)",
        ),
        (
            ProviderName::Telnyx,
            id("ev-4"),
            telnyx_body(&id("ev-4"), &id("sms-2"), "delivery_failed", &at(5)),
            "sms-2 delivery_failed",
        ),
        (
            ProviderName::Telnyx,
            id("ev-3"),
            telnyx_body(&id("ev-3"), &id("sms-2"), "sent", &at(2)),
            "sms-2 sent (late, out of order)",
        ),
        (
            ProviderName::Resend,
            id("ev-5"),
            resend_body("email.sent", &id("email-1"), &at(1)),
            "email-1 email.sent",
        ),
        (
            ProviderName::Resend,
            id("ev-6"),
            resend_body("email.delivered", &id("email-1"), &at(2)),
            "email-1 email.delivered",
        ),
        (
            ProviderName::Resend,
            id("ev-7"),
            resend_body("email.opened", &id("email-1"), &at(9)),
            "email-1 email.opened",
        ),
        (
            ProviderName::Resend,
            id("ev-8"),
            resend_body("email.bounced", &id("email-2"), &at(4)),
            "email-2 email.bounced",
        ),
    ];
    for (provider, event_id, body, what) in sends {
        let headers = args
            .keys
            .headers(provider, body.as_bytes(), Some(&event_id), now())?;
        let (status, answer) = post(&args.url, provider, &headers, body.into_bytes()).await?;
        println!("  POST {:<34} -> {status} {answer}", what);
        anyhow::ensure!(status == 200, "ingest refused a correctly signed webhook");
    }

    let started = Instant::now();
    let expected = (2, 1, 1, 0);
    loop {
        let row = sqlx::query(
            "SELECT delivered_count, failed_count, bounced_count, sent_count FROM batches WHERE id = $1::uuid",
        )
        .bind(&batch)
        .fetch_one(&pool)
        .await?;
        let got: (i32, i32, i32, i32) = (row.get(0), row.get(1), row.get(2), row.get(3));
        if got == expected {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(args.timeout_secs),
            "workers did not reach the expected state within {}s (delivered, failed, bounced, sent) = {got:?}",
            args.timeout_secs
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "Workers stored it all in {} ms.\n",
        started.elapsed().as_millis()
    );

    let b = sqlx::query(
        "SELECT total_count, queued_count, sent_count, delivered_count, failed_count, bounced_count
         FROM batches WHERE id = $1::uuid",
    )
    .bind(&batch)
    .fetch_one(&pool)
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
        "\n{:<8} {:<26} {:<10} {:<22} {:<22} {:<22} error",
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
    .bind(&batch)
    .fetch_all(&pool)
    .await?;
    for r in rows {
        println!(
            "{:<8} {:<26} {:<10} {:<22} {:<22} {:<22} {}",
            r.get::<String, _>(0),
            r.get::<String, _>(1),
            r.get::<String, _>(2),
            r.get::<String, _>(3),
            r.get::<String, _>(4),
            r.get::<String, _>(5),
            r.get::<String, _>(6)
        );
    }
    let events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM delivery_events WHERE provider_message_id LIKE $1",
    )
    .bind(format!("demo-{tag:08x}-%"))
    .fetch_one(&pool)
    .await?;
    println!(
        "\n9 webhooks sent, {events} distinct events stored (the provider retry was absorbed)."
    );
    Ok(())
}
