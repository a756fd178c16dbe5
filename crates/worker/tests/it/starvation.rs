//! Reconciliation cannot starve: 12,000 stuck recipients, 11,000 of which the provider's API can
//! never resolve (still `queued`), all older than the 1,000 it can. With a page of 10,000, the old
//! sweep took the same 10,000 unresolvable rows every time; now the second sweep reaches the 1,000,
//! and rows looked up too often are given up on.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::Router;
use hookline_ops::reconcile::{ReconcileArgs, Reconciler};
use hookline_testkit::wait_until;

use crate::stack::Stack;
use crate::support::*;

/// Resend's `GET /emails/{id}`: `*-ok` ids were delivered, every other one is still `queued`.
async fn email(State(hits): State<Arc<AtomicUsize>>, Path(id): Path<String>) -> String {
    hits.fetch_add(1, Ordering::Relaxed);
    let last = if id.ends_with("-ok") {
        "delivered"
    } else {
        "queued"
    };
    serde_json::json!({
        "object": "email", "id": id, "to": ["someone@example.com"],
        "created_at": "2026-11-23 10:00:00.000000+00", "last_event": last
    })
    .to_string()
}

#[tokio::test]
async fn unresolvable_recipients_never_starve_resolvable_ones() {
    let stack = Stack::start(1, |_| {}).await;
    let pool = &stack.pool;
    let batch = new_batch(pool).await;
    sqlx::query(
        "INSERT INTO recipients (batch_id, provider, provider_message_id)
         SELECT $1::uuid, 'resend', 'stuck-' || i FROM generate_series(1, 11000) AS i
         UNION ALL
         SELECT $1::uuid, 'resend', 'late-' || i || '-ok' FROM generate_series(1, 1000) AS i",
    )
    .bind(&batch)
    .execute(pool)
    .await
    .unwrap();
    // The unresolvable ones are the oldest: an oldest-first page of 10,000 holds only them.
    sqlx::query(
        "UPDATE recipients SET updated_at = CASE WHEN provider_message_id LIKE 'stuck-%'
             THEN now() - interval '3 hours' ELSE now() - interval '2 hours' END",
    )
    .execute(pool)
    .await
    .unwrap();

    let hits = Arc::new(AtomicUsize::new(0));
    let api = Router::new()
        .route("/emails/{id}", get(email))
        .with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, api).await });

    let mut args = ReconcileArgs::for_api(&base);
    args.set("RESEND_API_KEY", "test-api-key");
    args.older_than_secs = 3600;
    args.limit = 10_000;
    args.concurrency = 32;
    args.set("HOOKLINE_RECONCILE_RESEND_RATE", "100000");
    args.max_attempts = 2;
    let reconciler = Reconciler::new(args, pool.clone(), stack.js.clone()).unwrap();

    let first = reconciler.sweep().await.unwrap();
    assert_eq!(
        (first.swept, first.corrected, first.gave_up),
        (10_000, 0, 0),
        "{first:?}"
    );
    let second = reconciler.sweep().await.unwrap();
    assert_eq!(second.swept, 10_000, "{second:?}");
    assert_eq!(
        second.corrected, 1_000,
        "the resolvable ones are reached: {second:?}"
    );
    assert_eq!(
        second.gave_up, 8_000,
        "looked up twice without an answer: {second:?}"
    );
    assert_eq!(hits.load(Ordering::Relaxed), 20_000);

    wait_until("the corrections are applied", Duration::from_secs(60), || async {
        count(pool, "SELECT count(*) FROM recipients WHERE provider_message_id LIKE 'late-%' AND status = 'delivered'").await
            == 1_000
    })
    .await;
    assert_eq!(
        count(
            pool,
            "SELECT count(*) FROM recipients WHERE reconcile_gave_up_at IS NOT NULL"
        )
        .await,
        8_000,
        "given up on, and queryable"
    );
    assert_eq!(
        reconciler
            .metrics
            .gave_up
            .with_label_values(&["resend"])
            .get(),
        8_000
    );
    // The rest are still swept: 3,000 unresolvable rows not yet given up on.
    let third = reconciler.sweep().await.unwrap();
    assert_eq!((third.swept, third.corrected), (3_000, 0), "{third:?}");
    let synthetic: String = sqlx::query_scalar(
        "SELECT occurred_at::text FROM delivery_events WHERE provider_message_id = 'late-1-ok'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(
        synthetic, "2026-11-23 10:00:00+00",
        "the provider's own time"
    );
    assert_counters_match_recount(pool).await;
}
