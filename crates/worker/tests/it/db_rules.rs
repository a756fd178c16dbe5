//! The database contract's four rules, each against real PostgreSQL through the worker's own
//! `BatchWriter` — the same two statements a batch runs in production.

use hookline_core::{DeliveryStatus as S, Engagement};
use hookline_store::BatchWriter;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::support::*;

#[tokio::test]
async fn status_order_in_the_database_matches_core() {
    let (_pg, pool) = migrated_db().await;
    let rows: Vec<(String, i16, bool)> =
        sqlx::query_as("SELECT status, rank, is_final FROM delivery_statuses ORDER BY rank")
            .fetch_all(&pool)
            .await
            .unwrap();
    let core: Vec<(String, i16, bool)> = S::ALL
        .iter()
        .map(|s| (s.as_str().to_owned(), s.rank(), s.is_final()))
        .collect();
    assert_eq!(rows, core);
}

/// Rule 1: once or five times, in one batch or across batches — the same state and counters.
#[tokio::test]
async fn a_redelivered_event_changes_state_and_counters_once() {
    let (_pg, pool) = migrated_db().await;
    let w = BatchWriter::new(pool.clone());
    let batch = new_batch(&pool).await;
    for m in ["once", "five-separately", "five-in-one-batch"] {
        add_recipient(&pool, &batch, "telnyx", m).await;
    }
    let ev = |m: &str| status_event("telnyx", &format!("ev-{m}"), m, S::Delivered, 10);

    let first = write(&w, &[ev("once")]).await;
    assert_eq!(
        (first.inserted, first.duplicates, first.recipients_changed),
        (1, 0, 1)
    );
    for i in 0..5 {
        let o = write(&w, &[ev("five-separately")]).await;
        assert_eq!(o.inserted, usize::from(i == 0), "delivery {i}");
    }
    let o = write(&w, &vec![ev("five-in-one-batch"); 5]).await;
    assert_eq!((o.inserted, o.duplicates), (1, 4));

    let once = state(&pool, "telnyx", "once").await;
    assert_eq!(once[0].as_deref(), Some("delivered"));
    assert_eq!(
        state(&pool, "telnyx", "five-separately").await[2..],
        once[2..]
    );
    assert_eq!(
        state(&pool, "telnyx", "five-in-one-batch").await[2..],
        once[2..]
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM delivery_events").await,
        3
    );
    let (delivered, queued, total): (i32, i32, i32) =
        sqlx::query_as("SELECT delivered_count, queued_count, total_count FROM batches")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((delivered, queued, total), (3, 0, 3));
    assert_counters_match_recount(&pool).await;
}

/// Rule 2: a late lower status never overwrites a higher one; timestamps still fill in.
#[tokio::test]
async fn a_late_lower_status_never_regresses() {
    let (_pg, pool) = migrated_db().await;
    let w = BatchWriter::new(pool.clone());
    let batch = new_batch(&pool).await;
    add_recipient(&pool, &batch, "telnyx", "m1").await;
    write(
        &w,
        &[status_event("telnyx", "e-del", "m1", S::Delivered, 20)],
    )
    .await;
    write(&w, &[status_event("telnyx", "e-sent", "m1", S::Sent, 10)]).await;
    write(
        &w,
        &[status_event("telnyx", "e-sending", "m1", S::Sending, 5)],
    )
    .await;
    let st = state(&pool, "telnyx", "m1").await;
    assert_eq!(st[0].as_deref(), Some("delivered"));
    assert_eq!(st[1].as_deref(), Some("e-del"));
    assert!(st[5].is_some(), "sent_at is set by the late sent event");
    // An engagement event never changes the status.
    add_recipient(&pool, &batch, "resend", "m2").await;
    write(&w, &[status_event("resend", "r-sent", "m2", S::Sent, 1)]).await;
    write(
        &w,
        &[engagement_event("r-open", "m2", Engagement::Opened, 9)],
    )
    .await;
    let st = state(&pool, "resend", "m2").await;
    assert_eq!(st[0].as_deref(), Some("sent"));
    assert!(st[9].is_some(), "opened_at is set");
    assert_counters_match_recount(&pool).await;
}

const STATUS_KINDS: usize = S::ALL.len();
const KINDS: usize = STATUS_KINDS + 2; // every status + 2 engagements

fn event_of(kind: usize, id: &str, message: &str, secs: i64) -> hookline_core::DeliveryEvent {
    match kind {
        k if k < STATUS_KINDS => status_event("resend", id, message, S::ALL[k], secs),
        k if k == STATUS_KINDS => engagement_event(id, message, Engagement::Opened, secs),
        _ => engagement_event(id, message, Engagement::Clicked, secs),
    }
}

/// The row rules 1–2 demand for a message with events `spec` (kind, time) named `e{i}`,
/// computed here from the rules themselves, not by the database: the winner is the status event
/// with the highest rank, then the latest time, then the largest id; each `*_at` is the earliest
/// event of its kind; `last_event_at` the latest of all. Times as seconds after `at(0)`.
fn expected_row(spec: &[(usize, i64)]) -> Vec<Option<String>> {
    let status_events: Vec<(usize, S, i64)> = spec
        .iter()
        .enumerate()
        .filter(|(_, (k, _))| *k < STATUS_KINDS)
        .map(|(i, (k, t))| (i, S::ALL[*k], *t))
        .collect();
    let winner = status_events
        .iter()
        .max_by_key(|(i, s, t)| (s.rank(), *t, format!("e{i}")));
    let earliest =
        |f: &dyn Fn(usize) -> bool| spec.iter().filter(|(k, _)| f(*k)).map(|(_, t)| *t).min();
    let status_is =
        |wanted: &'static [S]| move |k: usize| k < STATUS_KINDS && wanted.contains(&S::ALL[k]);
    let secs = |t: Option<i64>| t.map(|t| t.to_string());
    vec![
        Some(winner.map_or("queued", |(_, s, _)| s.as_str()).to_owned()),
        winner.map(|(i, _, _)| format!("e{i}")),
        secs(winner.map(|(_, _, t)| *t)),
        winner.and_then(|(_, s, _)| s.is_final().then(|| format!("E{}", s.rank()))),
        None,
        secs(earliest(&status_is(&[S::Sent]))),
        secs(earliest(&status_is(&[S::Delivered]))),
        secs(earliest(&status_is(&[S::Failed, S::Bounced]))),
        secs(earliest(&status_is(&[S::Complained]))),
        secs(earliest(&|k| k == STATUS_KINDS)),
        secs(earliest(&|k| k == STATUS_KINDS + 1)),
        secs(spec.iter().map(|(_, t)| *t).max()),
    ]
}

/// Every state column of a recipient, times as seconds after `at(0)`, for comparing with
/// [`expected_row`].
async fn row_in_seconds(pool: &sqlx::PgPool, message: &str) -> Vec<Option<String>> {
    use sqlx::Row as _;
    let t0 = at(0);
    let row = sqlx::query(
        "SELECT status, status_event_id, \
                (extract(epoch FROM status_at - $2)::bigint)::text, last_error_code, \
                last_error_description, \
                (extract(epoch FROM sent_at - $2)::bigint)::text, \
                (extract(epoch FROM delivered_at - $2)::bigint)::text, \
                (extract(epoch FROM failed_at - $2)::bigint)::text, \
                (extract(epoch FROM complained_at - $2)::bigint)::text, \
                (extract(epoch FROM opened_at - $2)::bigint)::text, \
                (extract(epoch FROM clicked_at - $2)::bigint)::text, \
                (extract(epoch FROM last_event_at - $2)::bigint)::text \
         FROM recipients WHERE provider = 'resend' AND provider_message_id = $1",
    )
    .bind(message)
    .bind(t0)
    .fetch_one(pool)
    .await
    .unwrap();
    let mut cols: Vec<Option<String>> = (0..row.len()).map(|i| row.get(i)).collect();
    cols[1] = cols[1]
        .take()
        .map(|id| id.trim_start_matches(&format!("{message}-")).to_owned());
    cols
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for i in 0..=p.len() {
            let mut q = p.clone();
            q.insert(i, n - 1);
            out.push(q);
        }
    }
    out
}

/// Rule 2 as a property: for random event sets (with equal times and repeated statuses), every
/// arrival order — one event per transaction, with a redelivery thrown in, or all in one batch —
/// yields the same row, and that row is, column by column, the one computed independently from
/// the rules (`expected_row`).
#[test]
fn every_permutation_of_a_messages_events_gives_the_same_row() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_pg, pool) = rt.block_on(migrated_db());
    let w = BatchWriter::new(pool.clone());
    let batch = rt.block_on(new_batch(&pool));
    let mut runner = TestRunner::new(Config {
        cases: 16,
        ..Config::default()
    });
    let case_no = std::cell::Cell::new(0);
    let strategy = prop::collection::vec((0..KINDS, 0i64..4), 2..=5);
    runner
        .run(&strategy, |spec| {
            case_no.set(case_no.get() + 1);
            let c = case_no.get();
            rt.block_on(async {
                let mut perms = permutations(spec.len());
                if perms.len() > 24 {
                    perms = perms.into_iter().step_by(5).collect();
                }
                let mut rows = Vec::new();
                for (p, perm) in perms.iter().enumerate() {
                    let m = format!("c{c}-p{p}");
                    add_recipient(&pool, &batch, "resend", &m).await;
                    let evs: Vec<_> = spec
                        .iter()
                        .enumerate()
                        .map(|(i, (k, t))| event_of(*k, &format!("{m}-e{i}"), &m, *t))
                        .collect();
                    for &i in perm {
                        write(&w, &[evs[i].clone()]).await;
                    }
                    if p % 2 == 0 {
                        write(&w, &[evs[perm[0]].clone()]).await; // a redelivery
                    }
                    rows.push((m, state(&pool, "resend", &format!("c{c}-p{p}")).await));
                }
                let m = format!("c{c}-batch");
                add_recipient(&pool, &batch, "resend", &m).await;
                let evs: Vec<_> = spec
                    .iter()
                    .enumerate()
                    .map(|(i, (k, t))| event_of(*k, &format!("{m}-e{i}"), &m, *t))
                    .collect();
                write(&w, &evs).await;
                rows.push((m.clone(), state(&pool, "resend", &m).await));

                // Event ids differ per copy by prefix only; compare their `e{i}` suffix.
                let normalise = |(m, mut row): (String, Vec<Option<String>>)| {
                    row[1] = row[1]
                        .take()
                        .map(|id| id.trim_start_matches(&format!("{m}-")).to_owned());
                    row
                };
                let rows: Vec<_> = rows.into_iter().map(normalise).collect();
                for r in &rows[1..] {
                    prop_assert_eq!(r, &rows[0], "spec {:?}", spec);
                }
                // And that row is the one the rules demand, every column of it.
                prop_assert_eq!(
                    row_in_seconds(&pool, &m).await,
                    expected_row(&spec),
                    "spec {:?}",
                    spec
                );
                Ok::<(), TestCaseError>(())
            })
        })
        .unwrap();
    rt.block_on(assert_counters_match_recount(&pool));
}

/// The batch's counters, in a fixed order.
async fn counters(pool: &sqlx::PgPool, batch: &str) -> Vec<i32> {
    let row: (i32, i32, i32, i32, i32, i32, i32, i32, i32, i32) = sqlx::query_as(
        "SELECT total_count, queued_count, sending_count, sent_count, delayed_count, \
         unconfirmed_count, delivered_count, failed_count, bounced_count, complained_count \
         FROM batches WHERE id = $1::uuid",
    )
    .bind(batch)
    .fetch_one(pool)
    .await
    .unwrap();
    vec![
        row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8, row.9,
    ]
}

/// Any interleaving of several messages' events, each duplicated up to three times, reordered
/// and cut into batches of random sizes, gives the same rows and the same batch counters as
/// applying each distinct event once in order — and the counters equal a recount.
#[test]
fn interleaved_duplicated_reordered_batches_converge() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_pg, pool) = rt.block_on(migrated_db());
    let w = BatchWriter::new(pool.clone());
    let mut runner = TestRunner::new(Config {
        cases: 24,
        ..Config::default()
    });
    let case_no = std::cell::Cell::new(0);
    // Per message (3 of them) 1-4 events of any kind and time; then, per event, 1-3 copies.
    let spec = prop::collection::vec(
        prop::collection::vec((0..KINDS, 0i64..4, 1usize..=3), 1..=4),
        3,
    );
    let strategy = (
        spec,
        any::<u64>(),
        prop::collection::vec(1usize..=7, 1..=12),
    );
    runner
        .run(&strategy, |(spec, shuffle_seed, cuts)| {
            case_no.set(case_no.get() + 1);
            let c = case_no.get();
            rt.block_on(async {
                let mut outcome = Vec::new();
                for mode in ["reference", "stormy"] {
                    let batch = new_batch(&pool).await;
                    let message = |m: usize| format!("i{c}-{mode}-m{m}");
                    let mut deliveries = Vec::new();
                    for (m, events) in spec.iter().enumerate() {
                        add_recipient(&pool, &batch, "resend", &message(m)).await;
                        for (i, (kind, t, copies)) in events.iter().enumerate() {
                            let ev =
                                event_of(*kind, &format!("{}-e{i}", message(m)), &message(m), *t);
                            let copies = if mode == "reference" { 1 } else { *copies };
                            deliveries.extend(std::iter::repeat_n(ev, copies));
                        }
                    }
                    if mode == "reference" {
                        write(&w, &deliveries).await;
                    } else {
                        // A deterministic shuffle from the case's seed, then random batch sizes.
                        let mut seed = shuffle_seed | 1;
                        for i in (1..deliveries.len()).rev() {
                            seed ^= seed << 13;
                            seed ^= seed >> 7;
                            seed ^= seed << 17;
                            deliveries.swap(i, (seed % (i as u64 + 1)) as usize);
                        }
                        let mut rest = &deliveries[..];
                        for size in cuts.iter().cycle() {
                            if rest.is_empty() {
                                break;
                            }
                            let (now, later) = rest.split_at((*size).min(rest.len()));
                            write(&w, now).await;
                            rest = later;
                        }
                    }
                    let mut rows = Vec::new();
                    for m in 0..spec.len() {
                        let mut row = state(&pool, "resend", &message(m)).await;
                        // The winning event's id differs between modes by prefix only.
                        row[1] = row[1].take().map(|id| {
                            id.trim_start_matches(&format!("{}-", message(m)))
                                .to_owned()
                        });
                        rows.push(row);
                    }
                    outcome.push((rows, counters(&pool, &batch).await));
                }
                prop_assert_eq!(&outcome[0], &outcome[1], "spec {:?} cuts {:?}", spec, cuts);
                Ok::<(), TestCaseError>(())
            })
        })
        .unwrap();
    rt.block_on(assert_counters_match_recount(&pool));
}

/// Rule 3: events that arrive before the sending app registers the message are applied when it
/// does — on insert, or when the provider message id is filled in later.
#[tokio::test]
async fn events_for_unregistered_messages_apply_when_the_recipient_appears() {
    let (_pg, pool) = migrated_db().await;
    let w = BatchWriter::new(pool.clone());
    write(
        &w,
        &[
            status_event("telnyx", "a1", "early-1", S::Sent, 1),
            status_event("telnyx", "a2", "early-1", S::Delivered, 2),
            status_event("telnyx", "b1", "early-2", S::Failed, 3),
        ],
    )
    .await;
    let batch = new_batch(&pool).await;
    // A bulk insert, as a sending app does it.
    sqlx::query(
        "INSERT INTO recipients (batch_id, provider, provider_message_id)
         SELECT $1::uuid, 'telnyx', m FROM unnest(ARRAY['early-1', 'fresh']) AS m",
    )
    .bind(&batch)
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(status(&pool, "telnyx", "early-1").await, "delivered");
    assert_eq!(status(&pool, "telnyx", "fresh").await, "queued");
    // Registered before the send API answered, id filled in afterwards.
    sqlx::query("INSERT INTO recipients (batch_id, provider) VALUES ($1::uuid, 'telnyx')")
        .bind(&batch)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE recipients SET provider_message_id = 'early-2' WHERE provider_message_id IS NULL",
    )
    .execute(&pool)
    .await
    .unwrap();
    let st = state(&pool, "telnyx", "early-2").await;
    assert_eq!(st[0].as_deref(), Some("failed"));
    assert_eq!(st[3].as_deref(), Some("E70"), "the error comes along");
    let (delivered, failed, queued): (i32, i32, i32) =
        sqlx::query_as("SELECT delivered_count, failed_count, queued_count FROM batches")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((delivered, failed, queued), (1, 1, 1));
    assert_counters_match_recount(&pool).await;
}

/// Rule 3 under concurrency: a worker storing events and the app inserting the recipient at the
/// same moment never miss each other's uncommitted rows.
#[tokio::test]
async fn concurrent_event_and_recipient_insert_never_miss_each_other() {
    let (_pg, pool) = migrated_db().await;
    let w = BatchWriter::new(pool.clone());
    let batch = new_batch(&pool).await;
    let n = 150;
    let mut tasks = Vec::new();
    for i in 0..n {
        let (w, pool, batch) = (w.clone(), pool.clone(), batch.clone());
        tasks.push(tokio::spawn(async move {
            let m = format!("race-{i}");
            let ev = [status_event(
                "telnyx",
                &format!("ev-{i}"),
                &m,
                S::Delivered,
                1,
            )];
            tokio::join!(write(&w, &ev), add_recipient(&pool, &batch, "telnyx", &m));
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let delivered = count(
        &pool,
        "SELECT count(*) FROM recipients WHERE status = 'delivered'",
    )
    .await;
    assert_eq!(delivered, n);
    assert_counters_match_recount(&pool).await;
}

/// Rule 3 at bulk-send scale: one INSERT of 20,000 recipients whose events are already stored
/// (more than PostgreSQL's default lock table holds, were there one lock per message).
#[tokio::test]
async fn a_bulk_insert_of_many_recipients_applies_their_early_events() {
    let (_pg, pool) = migrated_db().await;
    let w = BatchWriter::new(pool.clone());
    let n = 20_000;
    let events: Vec<_> = (0..n)
        .map(|i| {
            status_event(
                "resend",
                &format!("bulk-ev-{i}"),
                &format!("bulk-{i}"),
                S::Delivered,
                1,
            )
        })
        .collect();
    for chunk in events.chunks(1_000) {
        write(&w, chunk).await;
    }
    let batch = new_batch(&pool).await;
    sqlx::query(
        "INSERT INTO recipients (batch_id, provider, provider_message_id)
         SELECT $1::uuid, 'resend', 'bulk-' || i FROM generate_series(0, $2 - 1) AS i",
    )
    .bind(&batch)
    .bind(n)
    .execute(&pool)
    .await
    .expect("a bulk insert succeeds");
    let delivered: i32 = sqlx::query_scalar("SELECT delivered_count FROM batches")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(delivered, n);
    assert_counters_match_recount(&pool).await;
}

/// Rule 4: counters equal a recount through inserts, events, moves between batches and deletes.
#[tokio::test]
async fn counters_always_equal_a_recount() {
    let (_pg, pool) = migrated_db().await;
    let w = BatchWriter::new(pool.clone());
    let b1 = new_batch(&pool).await;
    let b2 = new_batch(&pool).await;
    for i in 0..40 {
        add_recipient(
            &pool,
            if i % 2 == 0 { &b1 } else { &b2 },
            "resend",
            &format!("m{i}"),
        )
        .await;
    }
    let events: Vec<_> = (0..40)
        .flat_map(|i| {
            let m = format!("m{i}");
            [
                status_event("resend", &format!("{m}-a"), &m, S::ALL[i % 9], 1),
                status_event("resend", &format!("{m}-b"), &m, S::ALL[(i * 7) % 9], 2),
            ]
        })
        .collect();
    for chunk in events.chunks(13) {
        write(&w, chunk).await;
    }
    assert_counters_match_recount(&pool).await;
    sqlx::query(
        "UPDATE recipients SET batch_id = $1::uuid WHERE provider_message_id IN ('m1', 'm3', 'm5')",
    )
    .bind(&b1)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("DELETE FROM recipients WHERE provider_message_id IN ('m0', 'm8', 'm9')")
        .execute(&pool)
        .await
        .unwrap();
    assert_counters_match_recount(&pool).await;
    let total: i64 = count(&pool, "SELECT sum(total_count)::bigint FROM batches").await;
    assert_eq!(total, 37);
    let delivered = count(&pool, "SELECT sum(delivered_count)::bigint FROM batches").await;
    assert!(delivered > 0);
}
