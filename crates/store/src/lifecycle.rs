//! The data lifecycle: the event log's daily partitions are created ahead and dropped whole once
//! past retention; early-event bookkeeping is trimmed; finished batches go after their own
//! retention (default: kept), in bounded chunks. Run by `hookline maintain` and by the workers on
//! a schedule (under a session advisory lock, so one maintainer works at a time). Dropping needs
//! the log's owner (the migrate role); creating ahead works for any role (a SECURITY DEFINER
//! function), so workers keep the days ahead whatever they may do.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{Connection, PgPool};

/// How long data is kept, and how far ahead partitions exist. Flags with env fallbacks, shared by
/// the worker and `hookline maintain`.
#[derive(clap::Args, Debug, Clone)]
pub struct RetentionArgs {
    /// Days of stored events (the provider bodies in `delivery_events`) kept, by received day:
    /// older days' partitions are dropped whole. Recipient state is kept regardless.
    #[arg(long, env = "HOOKLINE_EVENT_RETENTION_DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub event_retention_days: u32,

    /// Days after its last change that a finished batch (no recipient left in a non-final
    /// status) is deleted with its recipients. Unset: batches are kept forever.
    #[arg(long, env = "HOOKLINE_BATCH_RETENTION_DAYS",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_retention_days: Option<u32>,

    /// Days ahead of today (UTC) for which the event log's partitions exist.
    #[arg(long, env = "HOOKLINE_PARTITIONS_AHEAD_DAYS", default_value_t = 7,
          value_parser = clap::value_parser!(u32).range(1..=366))]
    pub partitions_ahead_days: u32,

    /// Most batches deleted per transaction by batch retention.
    #[arg(long, env = "HOOKLINE_RETENTION_CHUNK", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub retention_chunk: u32,

    /// Longest wait for a lock while detaching or dropping a partition, in milliseconds; a drop
    /// that cannot get its lock in time is left for the next run.
    #[arg(
        long,
        env = "HOOKLINE_MAINTAIN_LOCK_TIMEOUT_MS",
        default_value_t = 5_000
    )]
    pub maintain_lock_timeout_ms: u64,
}

impl RetentionArgs {
    /// The settings the flags' defaults give, whatever the environment says (tests, and callers
    /// without flags): parsed from no arguments with every env fallback removed, so the defaults
    /// are written once, in the attributes above.
    pub fn defaults() -> Self {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            retention: RetentionArgs,
        }
        let command = <Only as clap::CommandFactory>::command().mut_args(|a| a.env(None));
        let matches = command
            .try_get_matches_from(["defaults"])
            .expect("every retention setting has a default or is optional");
        <Only as clap::FromArgMatches>::from_arg_matches(&matches)
            .expect("the matches come from this struct's own command")
            .retention
    }

    /// Events received before this are past retention.
    pub fn event_cutoff(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - chrono::Duration::days(self.event_retention_days.into())
    }

    /// The event retention must cover the dedup window, or a retry could outlive its original.
    pub fn check_covers(&self, dedup_window: Duration) -> Result<(), String> {
        let kept = Duration::from_secs(u64::from(self.event_retention_days) * 86_400);
        if kept < dedup_window {
            return Err(format!(
                "HOOKLINE_EVENT_RETENTION_DAYS={} keeps events for less than the dedup window \
                 ({} h): a provider retry could arrive after its original was dropped and be \
                 stored twice",
                self.event_retention_days,
                dedup_window.as_secs() / 3600
            ));
        }
        Ok(())
    }
}

/// One day's partition of the event log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Partition {
    pub name: String,
    pub day: NaiveDate,
    /// Rows it holds (the planner's estimate; counted when the table was never analysed).
    pub rows: i64,
}

/// What one maintenance run did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MaintainReport {
    pub dry_run: bool,
    /// Partitions created ahead.
    pub created: Vec<String>,
    /// Partitions dropped, past event retention.
    pub dropped: Vec<Partition>,
    /// Partitions past retention left for the next run (their lock was not granted in time).
    pub deferred: Vec<String>,
    /// The oldest day still in the log.
    pub oldest_day: Option<NaiveDate>,
    /// Early-event notes removed (their message has a recipient now, or their events are gone).
    pub early_trimmed: u64,
    /// Messages whose events came and whose recipient is not registered yet (kept until their
    /// events' retention).
    pub early_waiting: i64,
    /// Finished batches deleted (with their recipients) past batch retention.
    pub batches_deleted: u64,
    /// Set when the role may not drop partitions or delete (it does not own the log, lacks
    /// DELETE, or the database is read-only): what PostgreSQL said. The rest of the run went on.
    pub refused: Option<String>,
}

impl MaintainReport {
    /// Rows that left the event log in this run.
    pub fn rows_dropped(&self) -> i64 {
        self.dropped.iter().map(|p| p.rows).sum()
    }
}

/// Class and key of the session advisory lock one maintainer holds while it works.
const MAINTAIN_LOCK: (i32, i32) = (1_751_870_318, 2);

/// The day a partition name `delivery_events_YYYYMMDD` is for: the inverse of the SQL function
/// `event_partition_name` (the lifecycle test checks a dropped partition's day against it).
fn day_of(name: &str) -> Option<NaiveDate> {
    let digits = name.strip_prefix("delivery_events_")?;
    NaiveDate::parse_from_str(digits, "%Y%m%d").ok()
}

/// Every day table of the log, attached or left detached by an interrupted drop.
async fn day_tables(conn: &mut sqlx::PgConnection) -> sqlx::Result<Vec<(String, bool, bool, f32)>> {
    sqlx::query_as(
        "SELECT c.relname::text, i.inhrelid IS NOT NULL, coalesce(i.inhdetachpending, false), \
                c.reltuples \
         FROM pg_class c \
         LEFT JOIN pg_inherits i ON i.inhrelid = c.oid \
              AND i.inhparent = 'delivery_events'::regclass \
         WHERE c.relkind = 'r' AND c.relname ~ '^delivery_events_[0-9]{8}$' \
           AND c.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = 'delivery_events'::regclass) \
         ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await
}

/// One maintenance pass; `None` when another maintainer holds the lock (nothing done).
pub async fn maintain(
    pool: &PgPool,
    settings: &RetentionArgs,
    dry_run: bool,
) -> anyhow::Result<Option<MaintainReport>> {
    // A connection of its own, outside the pool (the writers keep theirs): the session lock
    // lives as long as it, and it is closed, so that an error cannot leave the lock held.
    let mut conn = sqlx::PgConnection::connect_with(&pool.connect_options()).await?;
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
        .bind(MAINTAIN_LOCK.0)
        .bind(MAINTAIN_LOCK.1)
        .fetch_one(&mut conn)
        .await?;
    if !got {
        conn.close().await.ok();
        return Ok(None);
    }
    let report = run(&mut conn, settings, dry_run).await;
    conn.close().await.ok();
    report.map(Some)
}

async fn run(
    conn: &mut sqlx::PgConnection,
    settings: &RetentionArgs,
    dry_run: bool,
) -> anyhow::Result<MaintainReport> {
    let mut report = MaintainReport {
        dry_run,
        ..Default::default()
    };
    let ahead = i32::try_from(settings.partitions_ahead_days)?;
    report.created = if dry_run {
        sqlx::query_scalar(
            "SELECT event_partition_name(d) FROM event_partition_days_missing($1) AS d",
        )
        .bind(ahead)
        .fetch_all(&mut *conn)
        .await?
    } else {
        sqlx::query_scalar("SELECT create_event_partitions($1)")
            .bind(ahead)
            .fetch_all(&mut *conn)
            .await?
    };

    let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&mut *conn)
        .await?;
    let cutoff = settings.event_cutoff(now);
    sqlx::query(&format!(
        "SET lock_timeout = {}",
        settings.maintain_lock_timeout_ms
    ))
    .execute(&mut *conn)
    .await?;
    for (name, attached, pending, reltuples) in day_tables(conn).await? {
        let Some(day) = day_of(&name) else { continue };
        let end = day
            .succ_opt()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc());
        if end.is_none_or(|end| end > cutoff) {
            if attached {
                report.oldest_day = Some(report.oldest_day.map_or(day, |d| d.min(day)));
            }
            continue;
        }
        let rows = if reltuples >= 0.0 {
            reltuples as i64
        } else if attached {
            // Through the log (a worker's role has no privilege on the partitions themselves),
            // pruned to the day.
            let start = day.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
            sqlx::query_scalar(
                "SELECT count(*) FROM delivery_events WHERE received_at >= $1 AND received_at < $2",
            )
            .bind(start)
            .bind(end)
            .fetch_one(&mut *conn)
            .await?
        } else {
            0 // detached by an interrupted run: its rows were counted then
        };
        let partition = Partition { name, day, rows };
        if dry_run {
            report.dropped.push(partition);
            continue;
        }
        match drop_partition(conn, &partition.name, attached, pending).await {
            Ok(()) => report.dropped.push(partition),
            Err(e) if is_lock_timeout(&e) => report.deferred.push(partition.name),
            Err(e) if is_refused(&e) => {
                report.refused = Some(e.to_string());
                report.deferred.push(partition.name);
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }

    match trim_early(conn, cutoff, dry_run, settings.retention_chunk).await {
        Ok(n) => report.early_trimmed = n,
        Err(e) if is_refused(&e) => report.refused = report.refused.or(Some(e.to_string())),
        Err(e) => return Err(e.into()),
    }
    if !dry_run {
        // Notes of future-dated events go with the days their events were stored on.
        let trimmed = sqlx::query("DELETE FROM future_dated_events WHERE received_at < $1")
            .bind(cutoff)
            .execute(&mut *conn)
            .await;
        match trimmed {
            Ok(_) => {}
            Err(e) if is_refused(&e) => report.refused = report.refused.or(Some(e.to_string())),
            Err(e) => return Err(e.into()),
        }
    }
    report.early_waiting = sqlx::query_scalar(
        "SELECT count(*) FROM early_messages e WHERE NOT EXISTS (SELECT 1 FROM recipients r \
         WHERE r.provider = e.provider AND r.provider_message_id = e.provider_message_id)",
    )
    .fetch_one(&mut *conn)
    .await?;
    if let Some(days) = settings.batch_retention_days {
        match delete_batches(conn, days, dry_run, settings.retention_chunk).await {
            Ok(n) => report.batches_deleted = n,
            Err(e) if is_refused(&e) => report.refused = report.refused.or(Some(e.to_string())),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(report)
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Detaches a partition without blocking writers (CONCURRENTLY: outside a transaction, waiting
/// only for transactions already using it), then drops it. A detach interrupted earlier is
/// finished first.
async fn drop_partition(
    conn: &mut sqlx::PgConnection,
    name: &str,
    attached: bool,
    pending: bool,
) -> sqlx::Result<()> {
    let table = quote(name);
    if attached && pending {
        sqlx::query(&format!(
            "ALTER TABLE delivery_events DETACH PARTITION {table} FINALIZE"
        ))
        .execute(&mut *conn)
        .await?;
    } else if attached {
        sqlx::query(&format!(
            "ALTER TABLE delivery_events DETACH PARTITION {table} CONCURRENTLY"
        ))
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query(&format!("DROP TABLE {table}"))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

fn code_of(e: &sqlx::Error) -> Option<String> {
    e.as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned())
}

/// lock_timeout (55P03), or a deadlock the server broke (40P01).
fn is_lock_timeout(e: &sqlx::Error) -> bool {
    matches!(code_of(e).as_deref(), Some("55P03" | "40P01"))
}

/// Not the owner / no privilege (42501), or read-only (25006): the role cannot drop here.
fn is_refused(e: &sqlx::Error) -> bool {
    matches!(code_of(e).as_deref(), Some("42501" | "25006"))
}

/// Removes early-event notes no longer needed, in chunks; returns how many (would) go.
async fn trim_early(
    conn: &mut sqlx::PgConnection,
    cutoff: DateTime<Utc>,
    dry_run: bool,
    chunk: u32,
) -> sqlx::Result<u64> {
    const DONE: &str = "(e.last_received_at < $1 OR EXISTS (SELECT 1 FROM recipients r \
                        WHERE r.provider = e.provider AND r.provider_message_id = e.provider_message_id))";
    if dry_run {
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM early_messages e WHERE {DONE}"
        ))
        .bind(cutoff)
        .fetch_one(&mut *conn)
        .await?;
        return Ok(n as u64);
    }
    let mut total = 0;
    loop {
        let n = sqlx::query(&format!(
            "DELETE FROM early_messages x USING (SELECT e.provider, e.provider_message_id \
             FROM early_messages e WHERE {DONE} LIMIT $2) AS d \
             WHERE x.provider = d.provider AND x.provider_message_id = d.provider_message_id"
        ))
        .bind(cutoff)
        .bind(i64::from(chunk) * 100)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        total += n;
        if n == 0 {
            return Ok(total);
        }
    }
}

/// Deletes finished batches unchanged for `days`, `chunk` per transaction, with their recipients
/// and the recipients' per-address rows; returns how many (would) go.
async fn delete_batches(
    conn: &mut sqlx::PgConnection,
    days: u32,
    dry_run: bool,
    chunk: u32,
) -> sqlx::Result<u64> {
    const FINISHED: &str = "b.updated_at < now() - make_interval(days => $1) \
        AND NOT EXISTS (SELECT 1 FROM recipients r JOIN delivery_statuses s ON s.status = r.status \
                        WHERE r.batch_id = b.id AND NOT s.is_final)";
    let days = i32::try_from(days).unwrap_or(i32::MAX);
    if dry_run {
        let n: i64 =
            sqlx::query_scalar(&format!("SELECT count(*) FROM batches b WHERE {FINISHED}"))
                .bind(days)
                .fetch_one(&mut *conn)
                .await?;
        return Ok(n as u64);
    }
    let mut total = 0;
    loop {
        let mut tx = conn.begin().await?;
        let ids: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT b.id::text FROM batches b WHERE {FINISHED} ORDER BY b.id LIMIT $2 \
             FOR UPDATE SKIP LOCKED"
        ))
        .bind(days)
        .bind(i64::from(chunk))
        .fetch_all(&mut *tx)
        .await?;
        if ids.is_empty() {
            return Ok(total);
        }
        sqlx::query(
            "WITH gone AS (DELETE FROM recipients WHERE batch_id = ANY ($1::uuid[]) \
                           RETURNING provider, provider_message_id) \
             DELETE FROM message_addresses a USING gone g \
             WHERE a.provider = g.provider AND a.provider_message_id = g.provider_message_id",
        )
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM batches WHERE id = ANY ($1::uuid[])")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        total += ids.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_give_their_day_and_nothing_else_does() {
        assert_eq!(
            day_of("delivery_events_20261202"),
            NaiveDate::from_ymd_opt(2026, 12, 2)
        );
        assert_eq!(day_of("delivery_events_2026120"), None);
        assert_eq!(day_of("delivery_events_20261399"), None);
        assert_eq!(day_of("recipients"), None);
    }

    #[test]
    fn defaults_are_the_flags_defaults_and_ignore_the_environment() {
        // A variable set in this process must not leak into "the defaults" (the test runner
        // gives each test its own process).
        std::env::set_var("HOOKLINE_EVENT_RETENTION_DAYS", "3");
        let d = RetentionArgs::defaults();
        assert_eq!(d.event_retention_days, 30);
        assert_eq!(d.batch_retention_days, None);
        assert_eq!(d.partitions_ahead_days, 7);
        assert_eq!(d.retention_chunk, 100);
        assert_eq!(d.maintain_lock_timeout_ms, 5_000);
    }

    #[test]
    fn retention_shorter_than_the_dedup_window_is_refused() {
        let mut r = RetentionArgs::defaults();
        r.check_covers(crate::writer::DEFAULT_DEDUP_WINDOW).unwrap();
        r.event_retention_days = 2;
        let e = r
            .check_covers(crate::writer::DEFAULT_DEDUP_WINDOW)
            .unwrap_err();
        assert!(e.contains("HOOKLINE_EVENT_RETENTION_DAYS=2"), "{e}");
    }
}
