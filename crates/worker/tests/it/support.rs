//! Shared helpers: a migrated database, event builders, state snapshots.

use chrono::{DateTime, TimeZone, Utc};
use hookline_core::{DeliveryEvent, DeliveryStatus, Engagement};
use hookline_store::queries::COUNTER_MISMATCHES;
use hookline_store::{BatchWriter, EventRecord};
use hookline_testkit::Postgres;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

pub async fn migrated_db() -> (Postgres, PgPool) {
    let pg = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect(&pg.url())
        .await
        .unwrap();
    hookline_store::migrate::run_on(&pool).await.unwrap();
    (pg, pool)
}

pub fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_795_000_000 + secs, 0).unwrap()
}

pub fn status_event(
    provider: &'static str,
    event_id: &str,
    message_id: &str,
    status: DeliveryStatus,
    secs: i64,
) -> DeliveryEvent {
    DeliveryEvent {
        provider,
        event_id: event_id.to_owned(),
        message_id: message_id.to_owned(),
        event_type: format!("test.{}", status.as_str()),
        status: Some(status),
        engagement: None,
        provider_status: Some(status.as_str().to_owned()),
        unmapped: false,
        addresses: Vec::new(),
        occurred_at: at(secs),
        error_code: status.is_final().then(|| format!("E{}", status.rank())),
        error_description: None,
        failure_class: None,
        cost: None,
        parts: None,
    }
}

pub fn engagement_event(
    event_id: &str,
    message_id: &str,
    g: Engagement,
    secs: i64,
) -> DeliveryEvent {
    DeliveryEvent {
        provider: "resend",
        event_id: event_id.to_owned(),
        message_id: message_id.to_owned(),
        event_type: format!("email.{}", g.as_str()),
        status: None,
        engagement: Some(g),
        provider_status: None,
        unmapped: false,
        addresses: Vec::new(),
        occurred_at: at(secs),
        error_code: None,
        error_description: None,
        failure_class: None,
        cost: None,
        parts: None,
    }
}

pub async fn write(writer: &BatchWriter, events: &[DeliveryEvent]) -> hookline_store::WriteOutcome {
    let recs: Vec<EventRecord<'_>> = events
        .iter()
        .map(|event| EventRecord {
            replay: false,
            event,
            payload: "{}",
        })
        .collect();
    writer.write(&recs).await.unwrap()
}

pub async fn new_batch(pool: &PgPool) -> String {
    sqlx::query_scalar("INSERT INTO batches (name) VALUES ('test') RETURNING id::text")
        .fetch_one(pool)
        .await
        .unwrap()
}

pub async fn add_recipient(pool: &PgPool, batch: &str, provider: &str, message_id: &str) {
    sqlx::query("INSERT INTO recipients (batch_id, provider, provider_message_id) VALUES ($1::uuid, $2, $3)")
        .bind(batch)
        .bind(provider)
        .bind(message_id)
        .execute(pool)
        .await
        .unwrap();
}

/// Registers `n` recipients of `provider` in `batch`, message ids `{prefix}0` to `{prefix}{n-1}`.
pub async fn add_recipients(pool: &PgPool, batch: &str, provider: &str, prefix: &str, n: i32) {
    sqlx::query(
        "INSERT INTO recipients (batch_id, provider, provider_message_id) \
         SELECT $1::uuid, $2, $3 || i FROM generate_series(0, $4 - 1) AS i",
    )
    .bind(batch)
    .bind(provider)
    .bind(prefix)
    .bind(n)
    .execute(pool)
    .await
    .unwrap();
}

/// Every state column of a recipient, as text, for comparing rows.
pub async fn state(pool: &PgPool, provider: &str, message_id: &str) -> Vec<Option<String>> {
    use sqlx::Row as _;
    let row = sqlx::query(
        "SELECT status, status_event_id, status_at::text, last_error_code, last_error_description,
                sent_at::text, delivered_at::text, failed_at::text, complained_at::text,
                opened_at::text, clicked_at::text, last_event_at::text
         FROM recipients WHERE provider = $1 AND provider_message_id = $2",
    )
    .bind(provider)
    .bind(message_id)
    .fetch_one(pool)
    .await
    .unwrap();
    (0..row.len())
        .map(|i| row.get::<Option<String>, _>(i))
        .collect()
}

pub async fn status(pool: &PgPool, provider: &str, message_id: &str) -> String {
    state(pool, provider, message_id).await[0].clone().unwrap()
}

pub async fn assert_counters_match_recount(pool: &PgPool) {
    let bad: Vec<String> = sqlx::query_scalar(COUNTER_MISMATCHES)
        .fetch_all(pool)
        .await
        .unwrap();
    assert!(
        bad.is_empty(),
        "batches whose counters differ from a recount: {bad:?}"
    );
}

pub async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}
