//! The status list has one home, `DeliveryStatus::ALL` (crates/core/src/event.rs): every status
//! has its row in `delivery_statuses` with the same rank and finality, its counter column on
//! `batches`, its place in the recount query, and — while it is not final — its place in the
//! open-status index predicates. Adding a status cannot miss one of them.

use hookline_core::DeliveryStatus;
use hookline_store::queries::COUNTER_MISMATCHES;

#[tokio::test]
async fn every_status_has_its_row_counter_recount_and_index_place() {
    let (_pg, pool) = crate::support::migrated_db().await;
    let rows: Vec<(String, i16, bool)> =
        sqlx::query_as("SELECT status, rank, is_final FROM delivery_statuses ORDER BY rank")
            .fetch_all(&pool)
            .await
            .unwrap();
    let expected: Vec<(String, i16, bool)> = DeliveryStatus::ALL
        .iter()
        .map(|s| (s.as_str().to_owned(), s.rank(), s.is_final()))
        .collect();
    assert_eq!(
        rows, expected,
        "delivery_statuses against DeliveryStatus::ALL"
    );

    let counters: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns
         WHERE table_name = 'batches' AND column_name LIKE '%\\_count' AND column_name <> 'total_count'
         ORDER BY ordinal_position",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let wanted: Vec<String> = DeliveryStatus::ALL
        .iter()
        .map(|s| format!("{}_count", s.as_str()))
        .collect();
    assert_eq!(
        counters, wanted,
        "one counter column per status, in rank order"
    );

    for s in DeliveryStatus::ALL {
        let (name, column) = (
            format!("'{}'", s.as_str()),
            format!("b.{}_count", s.as_str()),
        );
        assert!(
            COUNTER_MISMATCHES.contains(&name) && COUNTER_MISMATCHES.contains(&column),
            "the recount query (COUNTER_MISMATCHES) misses {}",
            s.as_str()
        );
    }

    let predicates: Vec<(String, String)> = sqlx::query_as(
        "SELECT indexname::text, indexdef FROM pg_indexes
         WHERE tablename = 'recipients' AND indexdef LIKE '% WHERE %' ORDER BY indexname",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(predicates.len() >= 2, "{predicates:?}");
    for (index, def) in &predicates {
        // The suppression list's streak index holds confirmed outcomes (final, and not merely
        // unconfirmed); every other partial index the open statuses.
        let outcomes = index == "recipients_outcomes_by_address";
        for s in DeliveryStatus::ALL {
            let named = def.contains(&format!("'{}'::text", s.as_str()));
            let want = if outcomes {
                s.is_final() && s != DeliveryStatus::Unconfirmed
            } else {
                !s.is_final()
            };
            assert_eq!(
                named,
                want,
                "{index} must name exactly the {}; {} is {}: {def}",
                if outcomes {
                    "confirmed outcomes"
                } else {
                    "open statuses"
                },
                s.as_str(),
                if s.is_final() { "final" } else { "open" }
            );
        }
    }
}
