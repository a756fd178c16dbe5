//! The sending application registers recipients however its code happens to: one row per
//! statement in a long transaction, in any order, or rows first and their provider message ids
//! later with one multi-row UPDATE. Meanwhile workers apply events for the very same messages.
//! Neither side may deadlock or wait for a statement timeout, every early event must be applied,
//! and counters must equal a recount.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hookline_core::DeliveryStatus;
use hookline_store::{BatchWriter, EventRecord};
use rand::seq::SliceRandom;
use sqlx::PgPool;

use crate::support::{assert_counters_match_recount, count, migrated_db, new_batch, status_event};

const ROUNDS: usize = 20;
const PER_ROUND: usize = 1_000;

fn is_deadlock(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("40P01"))
}

/// One registration transaction: `ids` inserted one statement each (odd rounds), or inserted
/// without ids and given them by one UPDATE (even rounds), in the order given.
async fn register(
    pool: &PgPool,
    batch: &str,
    ids: &[String],
    round: usize,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    if round % 2 == 1 {
        for id in ids {
            sqlx::query("INSERT INTO recipients (batch_id, provider, provider_message_id) VALUES ($1::uuid, 'resend', $2)")
                .bind(batch)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
    } else {
        sqlx::query(
            "INSERT INTO recipients (batch_id, provider, address)
             SELECT $1::uuid, 'resend', a FROM unnest($2::text[]) AS a",
        )
        .bind(batch)
        .bind(ids)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE recipients r SET provider_message_id = u.id
             FROM unnest($1::text[]) WITH ORDINALITY AS u (id, n)
             WHERE r.batch_id = $2::uuid AND r.address = u.id",
        )
        .bind(ids)
        .bind(batch)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

#[tokio::test]
async fn registering_in_any_order_while_events_stream_in_never_deadlocks() {
    let (_pg, pool) = migrated_db().await;
    sqlx::query("ALTER DATABASE postgres SET deadlock_timeout = '100ms'")
        .execute(&pool)
        .await
        .unwrap();
    let deadlocks = Arc::new(AtomicUsize::new(0));
    let mut app_deadlocks = 0;
    for round in 0..ROUNDS {
        let batch = new_batch(&pool).await;
        let mut ids: Vec<String> = (0..PER_ROUND).map(|i| format!("reg-{round}-{i}")).collect();
        ids.shuffle(&mut rand::rng());
        // Two workers apply `sent` then `delivered` for these messages in batches of 50, in
        // their own orders, while the application registers them.
        let workers: Vec<_> = (0..2)
            .map(|w| {
                let writer = BatchWriter::new(pool.clone());
                let mut mine: Vec<String> = ids.iter().skip(w).step_by(2).cloned().collect();
                mine.shuffle(&mut rand::rng());
                let deadlocks = deadlocks.clone();
                tokio::spawn(async move {
                    for (step, status) in
                        [(0, DeliveryStatus::Sent), (1, DeliveryStatus::Delivered)]
                    {
                        for chunk in mine.chunks(50) {
                            let events: Vec<_> = chunk
                                .iter()
                                .map(|m| {
                                    status_event("resend", &format!("{m}-{step}"), m, status, step)
                                })
                                .collect();
                            let recs: Vec<_> = events
                                .iter()
                                .map(|event| EventRecord {
                                    event,
                                    payload: "{}",
                                    replay: false,
                                })
                                .collect();
                            loop {
                                match writer.write(&recs).await {
                                    Ok(_) => break,
                                    Err(e) if is_deadlock(&e.source) => {
                                        deadlocks.fetch_add(1, Ordering::Relaxed);
                                    }
                                    Err(e) => panic!("worker write failed: {e}"),
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        loop {
            match register(&pool, &batch, &ids, round).await {
                Ok(()) => break,
                Err(e) if is_deadlock(&e) => app_deadlocks += 1,
                Err(e) => panic!("registration failed: {e}"),
            }
        }
        for w in workers {
            tokio::time::timeout(Duration::from_secs(120), w)
                .await
                .expect("workers finish")
                .unwrap();
        }
    }
    let deadlocks = deadlocks.load(Ordering::Relaxed);
    let not_delivered = count(
        &pool,
        "SELECT count(*) FROM recipients WHERE status <> 'delivered' OR delivered_at IS NULL",
    )
    .await;
    println!(
        "figures: {ROUNDS} rounds × {PER_ROUND} recipients; deadlocks: application {app_deadlocks}, \
         workers {deadlocks}; recipients not delivered: {not_delivered}"
    );
    assert_eq!(
        (app_deadlocks, deadlocks),
        (0, 0),
        "deadlocks (application, workers)"
    );
    assert_eq!(not_delivered, 0, "every early event applied");
    assert_eq!(
        count(&pool, "SELECT count(*) FROM recipients").await,
        (ROUNDS * PER_ROUND) as i64
    );
    assert_counters_match_recount(&pool).await;
}

/// At REPEATABLE READ the application's snapshot cannot see events committed after it began, so
/// early events could not be applied: the schema refuses such a registration and says why.
#[tokio::test]
async fn registering_at_repeatable_read_is_refused_with_a_reason() {
    let (_pg, pool) = migrated_db().await;
    let batch = new_batch(&pool).await;
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *tx)
        .await
        .unwrap();
    let e = sqlx::query("INSERT INTO recipients (batch_id, provider, provider_message_id) VALUES ($1::uuid, 'resend', 'rr-1')")
        .bind(&batch)
        .execute(&mut *tx)
        .await
        .expect_err("refused");
    let text = e.to_string();
    assert!(text.contains("READ COMMITTED"), "{text}");
    tx.rollback().await.unwrap();
    // Unchanged at READ COMMITTED.
    crate::support::add_recipient(&pool, &batch, "resend", "rr-1").await;
    assert_counters_match_recount(&pool).await;
}
