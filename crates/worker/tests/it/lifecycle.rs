//! The data lifecycle on the partitioned event log, end to end: events received over several
//! days (written through ingest and a worker, then aged into older days' partitions), a provider
//! retry across a day boundary, `hookline maintain` (dry run, then for real, then batch
//! retention), an early event registered later, and a replay of a window.

use std::process::Command;
use std::time::Duration;

use hookline_ops::replay::{parse_since, replay, ReplayArgs};
use hookline_testkit::{output_of, sibling_binary, wait_until};

use crate::stack::Stack;
use crate::support::*;

/// Moves the events of `message` to `received_at = <sql>`, into that day's partition (created,
/// as `hookline maintain` would have on that day), and their early-event note with them.
async fn age(pool: &sqlx::PgPool, message: &str, received_at: &str) {
    sqlx::query(&format!(
        "SELECT create_event_partition((({received_at}) AT TIME ZONE 'UTC')::date)"
    ))
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(&format!(
        "UPDATE delivery_events SET received_at = {received_at} WHERE provider_message_id = $1"
    ))
    .bind(message)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE early_messages e SET first_received_at = x.first, last_received_at = x.last \
         FROM (SELECT min(received_at) AS first, max(received_at) AS last FROM delivery_events \
               WHERE provider_message_id = $1) AS x \
         WHERE e.provider_message_id = $1",
    )
    .bind(message)
    .execute(pool)
    .await
    .unwrap();
}

async fn partitions(pool: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'delivery_events'::regclass ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

fn maintain(stack: &Stack, extra: &[&str]) -> String {
    let (ok, out) = output_of(
        Command::new(sibling_binary("hookline"))
            .arg("maintain")
            .args(extra)
            .env("DATABASE_URL", stack.pg.url()),
    );
    assert!(ok, "hookline maintain {extra:?} failed:\n{out}");
    out
}

/// The JSON report in a run's output (stdout; the progress line is on stderr).
fn json_line(out: &str) -> serde_json::Value {
    let line = out.lines().find(|l| l.starts_with('{'));
    serde_json::from_str(line.unwrap_or_else(|| panic!("no JSON report in:\n{out}"))).unwrap()
}

/// The stored events, as replay could change them.
async fn events(pool: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT concat_ws('|', provider, event_id, provider_message_id, event_type, status, \
                occurred_at, received_at, md5(payload::text)) FROM delivery_events ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn old_days_go_whole_while_retries_early_events_replay_and_counters_hold() {
    // A short NATS duplicate window, so that a retry reaches the database as it would hours later.
    let stack = Stack::start(1, |c| c.stream.stream_duplicate_window_ms = 300).await;
    let pool = &stack.pool;
    let c = &stack.client;
    let old_batch = new_batch(pool).await;
    let kept_batch = new_batch(pool).await;
    for m in ["old-1", "old-2"] {
        add_recipient(pool, &old_batch, "telnyx", m).await;
    }
    for m in ["kept-1", "kept-2"] {
        add_recipient(pool, &kept_batch, "telnyx", m).await;
    }
    let t = |s: u32| format!("2026-11-20T10:00:{s:02}.000+00:00");
    for r in [
        c.post_telnyx_at("o1", "old-1", "sent", &t(1)).await,
        c.post_telnyx_at("o2", "old-1", "delivered", &t(2)).await,
        c.post_telnyx_at("o3", "old-2", "delivery_failed", &t(3))
            .await,
        c.post_telnyx_at("k1", "kept-1", "sent", &t(4)).await,
        c.post_telnyx_at("k2", "kept-2", "delivered", &t(5)).await,
        // Before its recipient exists: kept, noted, applied at registration.
        c.post_telnyx_at("e1", "early-1", "delivered", &t(6)).await,
    ] {
        assert_eq!(r.status(), 200);
    }
    wait_until("6 events stored", Duration::from_secs(20), || async {
        stack.stored_events().await == 6
    })
    .await;
    stack.wait_drained(Duration::from_secs(10)).await;

    // History: the old batch's events 40 days back (past the 30-day retention), kept-1's a
    // second before today's partition begins (yesterday, the boundary), kept-2's and the
    // early event's two days back.
    for m in ["old-1", "old-2"] {
        age(pool, m, "now() - interval '40 days'").await;
    }
    age(
        pool,
        "kept-1",
        "date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '1 second'",
    )
    .await;
    for m in ["kept-2", "early-1"] {
        age(pool, m, "now() - interval '2 days'").await;
    }
    let (old_day, old_date): (String, chrono::NaiveDate) = sqlx::query_as(
        "SELECT event_partition_name(d), d \
         FROM (SELECT ((now() - interval '40 days') AT TIME ZONE 'UTC')::date AS d) AS x",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert!(partitions(pool).await.contains(&old_day));

    // Telnyx retries k1 today: it is found in yesterday's partition and absorbed. (Sent until
    // one gets past JetStream's duplicate window to the worker.)
    let duplicates = stack.total(|m| m.duplicates.get());
    wait_until("the retry absorbed", Duration::from_secs(20), || async {
        let r = c.post_telnyx_at("k1", "kept-1", "sent", &t(4)).await;
        assert_eq!(r.status(), 200);
        stack.wait_drained(Duration::from_secs(10)).await;
        stack.total(|m| m.duplicates.get()) > duplicates
    })
    .await;
    assert_eq!(
        count(
            pool,
            "SELECT count(*) FROM delivery_events WHERE event_id = 'k1'"
        )
        .await,
        1,
        "a retry across the day boundary is stored once"
    );

    // A dry run names the old day and changes nothing.
    let out = maintain(&stack, &["--dry-run"]);
    assert!(
        out.contains(&format!("Partition {old_day}")) && out.contains("would be dropped"),
        "{out}"
    );
    assert!(partitions(pool).await.contains(&old_day));
    assert_eq!(stack.stored_events().await, 6);

    // The real run drops the old day whole; recipient state and counters stay.
    let out = maintain(&stack, &["--json"]);
    let report: serde_json::Value = json_line(&out);
    assert_eq!(report["dropped"][0]["name"], old_day.as_str(), "{out}");
    // The day read back from the name (Rust) is the day the name was made for (SQL).
    assert_eq!(report["dropped"][0]["day"], old_date.to_string(), "{out}");
    assert_eq!(report["dropped"][0]["rows"], 3, "{out}");
    assert_eq!(report["early_waiting"], 1, "{out}");
    assert!(!partitions(pool).await.contains(&old_day));
    assert_eq!(stack.stored_events().await, 3);
    assert_eq!(status(pool, "telnyx", "old-1").await, "delivered");
    assert_eq!(status(pool, "telnyx", "old-2").await, "failed");
    assert_counters_match_recount(pool).await;

    // The early event, two days old, applies when its recipient is registered now.
    add_recipient(pool, &kept_batch, "telnyx", "early-1").await;
    assert_eq!(status(pool, "telnyx", "early-1").await, "delivered");
    assert_counters_match_recount(pool).await;

    // Replay of the last three days re-derives exactly: a (simulated) decoder bug stored k2
    // as sent; replaying restores the event as it was, and touches nothing else.
    let before = events(pool).await;
    sqlx::query(
        "UPDATE delivery_events SET status = 'sent', event_type = 'message.sent' \
         WHERE event_id = 'k2'",
    )
    .execute(pool)
    .await
    .unwrap();
    let args = ReplayArgs {
        from: parse_since("3d").unwrap(),
        to: None,
        provider: Some("telnyx".to_owned()),
        sources_file: None,
        dry_run: false,
        page_size: 2,
    };
    let report = replay(&args, pool, &stack.js, |_, _| {}).await.unwrap();
    assert_eq!(report.published, 3, "{report:?}");
    wait_until("k2 re-derived", Duration::from_secs(20), || async {
        stack.total(|m| m.rederived.get()) == 1
    })
    .await;
    stack.wait_drained(Duration::from_secs(20)).await;
    assert_eq!(events(pool).await, before, "the window re-derived exactly");
    assert_eq!(status(pool, "telnyx", "kept-2").await, "delivered");
    assert_counters_match_recount(pool).await;

    // Batch retention: the old batch (every recipient final) goes once it is 90 days
    // unchanged; the kept batch (kept-1 only sent) stays whatever its age.
    sqlx::query("UPDATE batches SET updated_at = now() - interval '100 days'")
        .execute(pool)
        .await
        .unwrap();
    let out = maintain(&stack, &["--batch-retention-days", "90", "--json"]);
    let report: serde_json::Value = json_line(&out);
    assert_eq!(report["batches_deleted"], 1, "{out}");
    let left: Vec<String> = sqlx::query_scalar("SELECT id::text FROM batches")
        .fetch_all(pool)
        .await
        .unwrap();
    assert_eq!(left, vec![kept_batch.clone()]);
    assert_eq!(
        count(
            pool,
            "SELECT count(*) FROM recipients WHERE provider_message_id LIKE 'old-%'"
        )
        .await,
        0
    );
    assert_counters_match_recount(pool).await;
}

/// A worker's role (no DDL, not the owner) keeps the days ahead through the SECURITY DEFINER
/// function, and is refused the drop, which it reports instead of failing: the partition past
/// retention stays for `hookline maintain` as the owner, which then drops it.
#[tokio::test]
async fn a_worker_role_creates_ahead_but_leaves_dropping_to_the_owner() {
    let (pg, admin) = migrated_db().await;
    crate::classify::create_worker_role(&admin, "w-secret").await;
    let old: String = sqlx::query_scalar(
        "SELECT create_event_partition(((now() - interval '40 days') AT TIME ZONE 'UTC')::date)",
    )
    .fetch_one(&admin)
    .await
    .unwrap();
    let worker = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&pg.url_as(crate::classify::WORKER_ROLE, "w-secret"))
        .await
        .unwrap();
    let mut settings = hookline_store::lifecycle::RetentionArgs::defaults();
    settings.partitions_ahead_days = 9;
    let report = hookline_store::lifecycle::maintain(&worker, &settings, false)
        .await
        .unwrap()
        .expect("no other maintainer");
    assert_eq!(report.created.len(), 2, "days 8 and 9 ahead: {report:?}");
    assert!(report.dropped.is_empty(), "{report:?}");
    assert_eq!(report.deferred, vec![old.clone()]);
    let why = report.refused.expect("the drop is refused");
    assert!(why.contains("owner"), "{why}");
    assert!(partitions(&admin).await.contains(&old));

    let report = hookline_store::lifecycle::maintain(&admin, &settings, false)
        .await
        .unwrap()
        .expect("no other maintainer");
    assert_eq!(report.dropped.len(), 1, "{report:?}");
    assert!(report.refused.is_none());
    assert!(!partitions(&admin).await.contains(&old));
}

/// A day's partition made by another tool (pg_partman names them `delivery_events_pYYYYMMDD`)
/// counts as there: the dry run does not list the day, and the real run neither creates an
/// overlapping partition (PostgreSQL would refuse the ATTACH, failing the run) nor touches it.
#[tokio::test]
async fn a_day_another_tool_partitioned_is_not_created_again() {
    let (_pg, admin) = migrated_db().await;
    let (ours, theirs, day): (String, String, chrono::NaiveDate) = sqlx::query_as(
        "SELECT event_partition_name(d), 'delivery_events_p' || to_char(d, 'YYYYMMDD'), d \
         FROM (SELECT (now() AT TIME ZONE 'UTC')::date + 3 AS d) AS x",
    )
    .fetch_one(&admin)
    .await
    .unwrap();
    for sql in [
        format!("ALTER TABLE delivery_events DETACH PARTITION {ours}"),
        format!("DROP TABLE {ours}"),
        format!(
            "CREATE TABLE {theirs} PARTITION OF delivery_events FOR VALUES \
             FROM ('{day} 00:00:00+00') TO ('{day} 00:00:00+00'::timestamptz + interval '1 day')"
        ),
    ] {
        sqlx::query(&sql).execute(&admin).await.unwrap();
    }
    let settings = hookline_store::lifecycle::RetentionArgs::defaults();
    for dry_run in [true, false] {
        let report = hookline_store::lifecycle::maintain(&admin, &settings, dry_run)
            .await
            .unwrap()
            .expect("no other maintainer");
        assert!(report.created.is_empty(), "dry run {dry_run}: {report:?}");
    }
    let now = partitions(&admin).await;
    assert!(now.contains(&theirs) && !now.contains(&ours), "{now:?}");

    // A day nobody covers is still created, under hookline's name.
    sqlx::query(&format!(
        "ALTER TABLE delivery_events DETACH PARTITION {theirs}"
    ))
    .execute(&admin)
    .await
    .unwrap();
    let report = hookline_store::lifecycle::maintain(&admin, &settings, false)
        .await
        .unwrap()
        .expect("no other maintainer");
    assert_eq!(report.created, vec![ours]);
}

/// The log's lookups go through its hash indexes whatever the partitions' statistics say. Today's
/// partition here was vacuumed while empty (as `vacuumdb --all` leaves the days ahead), so the
/// planner takes it for empty: it would scan it whole for every batch (the dedup probe as an
/// anti-join), or read a key's whole received window through the received_at index. One
/// transaction does what workers and a registration do — store events for messages nobody
/// registered, merge them, register their recipients (the commit pass run early) — and
/// PostgreSQL's own counts for it say: no sequential scan of the log, the replay index unused, one
/// event-id lookup per event and message lookups per key.
#[tokio::test]
async fn lookups_use_the_hash_indexes_even_on_a_partition_without_statistics() {
    let (_pg, admin) = migrated_db().await;
    let yesterday: String = sqlx::query_scalar(
        "SELECT create_event_partition(((now() AT TIME ZONE 'UTC') - interval '1 day')::date)",
    )
    .fetch_one(&admin)
    .await
    .unwrap();
    sqlx::query("VACUUM delivery_events")
        .execute(&admin)
        .await
        .unwrap();
    let mut tx = admin.begin().await.unwrap();
    let today: String =
        sqlx::query_scalar("SELECT event_partition_name((now() AT TIME ZONE 'UTC')::date)")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    // Fresh events, dated at least an hour into today: in the first hour after midnight (UTC) an
    // event dated now is rightly looked for in yesterday's partition too (an hour of skew).
    let fresh: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "SELECT greatest(now(), ((now() AT TIME ZONE 'UTC')::date + interval '1 hour') \
         AT TIME ZONE 'UTC')",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    // The counts so far of this connection not yet reported (pg_stat_xact_* includes them): what
    // this transaction adds is measured from here.
    let counts = Counts::of(&mut tx, &today).await;
    let yesterday_counts = Counts::of(&mut tx, &yesterday).await;
    let (batches, per_batch) = (5i64, 100usize);
    for b in 0..batches {
        let ids: Vec<String> = (0..per_batch).map(|i| format!("probe-{b}-{i}")).collect();
        let n = ids.len();
        let (providers, messages): (Vec<String>, Vec<String>) = sqlx::query_as(
            "SELECT array_agg(stored_provider), array_agg(stored_message_id) \
             FROM store_events($1, $2, $2, $3, $4, $5, $6, $5, $5, $4, $7, interval '72 hours')",
        )
        .bind(vec!["resend"; n])
        .bind(&ids)
        .bind(vec!["email.delivered"; n])
        .bind(vec!["delivered"; n])
        .bind(vec![None::<String>; n])
        .bind(vec![fresh; n])
        .bind(vec!["{}"; n])
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        assert_eq!(messages.len(), per_batch);
        sqlx::query("SELECT refresh_recipients($1, $2)")
            .bind(&providers)
            .bind(&messages)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    let events = batches * per_batch as i64;
    sqlx::query(
        "WITH b AS (INSERT INTO batches (name) VALUES ('probe') RETURNING id) \
         INSERT INTO recipients (batch_id, provider, provider_message_id) \
         SELECT b.id, 'resend', 'probe-' || i / $1 || '-' || i % $1 \
         FROM b, generate_series(0, $2 - 1) AS i",
    )
    .bind(per_batch as i64)
    .bind(events)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query("SET CONSTRAINTS ALL IMMEDIATE")
        .execute(&mut *tx)
        .await
        .unwrap();
    let delivered: i64 =
        sqlx::query_scalar("SELECT count(*) FROM recipients WHERE status = 'delivered'")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    assert_eq!(
        delivered, events,
        "every early event applied at registration"
    );

    let now = Counts::of(&mut tx, &today).await;
    assert_eq!(
        now.seq, counts.seq,
        "sequential scans of {today} in this transaction"
    );
    let scans = |column: &str| now.scans(column) - counts.scans(column);
    assert!(scans("(event_id)") >= events, "{:?}", now.by_index);
    // A lookup per key when the worker merges, and again at registration.
    assert!(
        scans("(provider_message_id)") >= 2 * events,
        "{:?}",
        now.by_index
    );
    assert_eq!(scans("received_at"), 0, "{:?}", now.by_index);

    // Fresh events were not looked for in yesterday's partition; an event from two days ago is.
    let probed = |c: Counts| c.scans("(event_id)") - yesterday_counts.scans("(event_id)");
    assert_eq!(probed(Counts::of(&mut tx, &yesterday).await), 0);
    sqlx::query(
        "SELECT * FROM store_events(array['resend'], array['old-1'], array['old-1'], \
             array['email.delivered'], array['delivered'], array[NULL], \
             array[now() - interval '2 days'], array[NULL], array[NULL], array['delivered'], \
             array['{}'], interval '72 hours')",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    assert_eq!(probed(Counts::of(&mut tx, &yesterday).await), 1);
    tx.rollback().await.unwrap();
}

/// A partition's scans counted by this connection and not yet reported, whole and per index.
struct Counts {
    seq: i64,
    by_index: Vec<(String, i64)>,
}

impl Counts {
    async fn of(conn: &mut sqlx::PgConnection, table: &str) -> Self {
        let seq = sqlx::query_scalar(
            "SELECT coalesce(seq_scan, 0) FROM pg_stat_xact_user_tables WHERE relname = $1",
        )
        .bind(table)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        let by_index = sqlx::query_as(
            "SELECT pg_get_indexdef(indexrelid), pg_stat_get_xact_numscans(indexrelid) \
             FROM pg_index WHERE indrelid = $1::regclass ORDER BY 1",
        )
        .bind(table)
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        Self { seq, by_index }
    }

    /// Scans of the indexes whose definition contains `column`.
    fn scans(&self, column: &str) -> i64 {
        self.by_index
            .iter()
            .filter(|(def, _)| def.contains(column))
            .map(|(_, n)| n)
            .sum()
    }
}
