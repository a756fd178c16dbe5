//! The reads and bookkeeping writes of the operator tools: which stored events a replay window
//! holds, which recipients reconcile should look up and what it learned about them, and the
//! counter recount `hookline check` and the tests run.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// Stored events selected by a replay: received in `[from, to)`, of one provider or all.
#[derive(Debug, Clone)]
pub struct EventWindow<'a> {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub provider: Option<&'a str>,
}

/// A stored event as replay re-publishes it: the provider's body exactly as received.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredEvent {
    pub received_at: DateTime<Utc>,
    pub provider: String,
    pub event_id: String,
    pub event_type: String,
    pub provider_message_id: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub payload: String,
}

/// How many events the window holds.
pub async fn count_events(pool: &PgPool, w: &EventWindow<'_>) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM delivery_events WHERE received_at >= $1 AND received_at < $2 \
         AND (received_at AT TIME ZONE 'UTC') >= ($1 AT TIME ZONE 'UTC') \
         AND (received_at AT TIME ZONE 'UTC') < ($2 AT TIME ZONE 'UTC') \
         AND ($3::text IS NULL OR provider = $3)",
    )
    .bind(w.from)
    .bind(w.to)
    .bind(w.provider)
    .fetch_one(pool)
    .await
}

/// Where a page of a replay window ends: events are paged in (received_at, provider, event_id)
/// order, the key a stored event has since the log is partitioned (no id column).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageCursor {
    pub received_at: Option<DateTime<Utc>>,
    pub provider: String,
    pub event_id: String,
}

impl PageCursor {
    /// The cursor just past `e`.
    pub fn after(e: &StoredEvent) -> Self {
        Self {
            received_at: Some(e.received_at),
            provider: e.provider.clone(),
            event_id: e.event_id.clone(),
        }
    }
}

/// The window's events past `after` (from the start when it is the default), in key order, at
/// most `limit`. The window prunes the log to its days' partitions; its UTC form is what the
/// replay index (on `received_at AT TIME ZONE 'UTC'`, an expression no other lookup names) serves.
pub async fn events_page(
    pool: &PgPool,
    w: &EventWindow<'_>,
    after: &PageCursor,
    limit: i64,
) -> sqlx::Result<Vec<StoredEvent>> {
    sqlx::query_as(
        "SELECT received_at, provider, event_id, event_type, provider_message_id, occurred_at, \
                payload::text AS payload \
         FROM delivery_events \
         WHERE received_at >= greatest($1, $2) AND received_at < $3 \
           AND (received_at AT TIME ZONE 'UTC') >= (greatest($1, $2) AT TIME ZONE 'UTC') \
           AND (received_at AT TIME ZONE 'UTC') < ($3 AT TIME ZONE 'UTC') \
           AND ($4::text IS NULL OR provider = $4) \
           AND ($1 IS NULL OR (received_at, provider, event_id) > ($1, $5, $6)) \
         ORDER BY received_at AT TIME ZONE 'UTC', provider, event_id LIMIT $7",
    )
    .bind(after.received_at)
    .bind(w.from)
    .bind(w.to)
    .bind(w.provider)
    .bind(&after.provider)
    .bind(&after.event_id)
    .bind(limit.max(1))
    .fetch_all(pool)
    .await
}

/// A recipient whose status has not reached a final one.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StuckRecipient {
    pub id: i64,
    pub provider_message_id: String,
    pub status: String,
}

/// One provider's recipients in a non-final status, unchanged for `older_than_secs` and not
/// given up on: the least recently checked first (never checked before all), at most `limit`.
pub async fn stuck_recipients(
    pool: &PgPool,
    provider: &str,
    older_than_secs: u64,
    limit: i64,
) -> sqlx::Result<Vec<StuckRecipient>> {
    sqlx::query_as(
        "SELECT id, provider_message_id, status FROM recipients \
         WHERE status IN ('queued', 'sending', 'sent', 'delayed') \
           AND reconcile_gave_up_at IS NULL \
           AND updated_at < now() - make_interval(secs => $1) \
           AND provider = $2 AND provider_message_id IS NOT NULL \
         ORDER BY reconcile_checked_at NULLS FIRST, updated_at LIMIT $3",
    )
    .bind(older_than_secs as f64)
    .bind(provider)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// When reconcile gives up on a recipient its lookups cannot resolve.
#[derive(Debug, Clone, Copy)]
pub struct GiveUp {
    pub max_attempts: i32,
    pub after_secs: u64,
}

/// Stamps looked-up recipients (`(id, resolved)`), and gives up on the unresolved ones looked up
/// `max_attempts` times or unchanged for `after_secs`. Returns the message ids given up on.
pub async fn record_lookups(
    pool: &PgPool,
    done: &[(i64, bool)],
    give_up: GiveUp,
) -> sqlx::Result<Vec<String>> {
    if done.is_empty() {
        return Ok(Vec::new());
    }
    let (ids, resolved): (Vec<i64>, Vec<bool>) = done.iter().copied().unzip();
    Ok(sqlx::query_scalar::<_, Option<String>>(
        "UPDATE recipients r \
         SET reconcile_checked_at = now(), \
             reconcile_attempts = r.reconcile_attempts + 1, \
             reconcile_gave_up_at = CASE \
                 WHEN NOT u.resolved \
                  AND (r.reconcile_attempts + 1 >= $3 \
                       OR r.updated_at < now() - make_interval(secs => $4)) \
                 THEN now() END \
         FROM unnest($1::bigint[], $2::boolean[]) AS u (id, resolved) \
         WHERE r.id = u.id \
         RETURNING CASE WHEN r.reconcile_gave_up_at IS NOT NULL THEN r.provider_message_id END",
    )
    .bind(&ids)
    .bind(&resolved)
    .bind(give_up.max_attempts)
    .bind(give_up.after_secs as f64)
    .fetch_all(pool)
    .await?
    .into_iter()
    .flatten()
    .collect())
}

/// Batches whose counters differ from a recount of their recipients: always empty (rule 4).
/// Used by the tests and by `hookline check`.
pub const COUNTER_MISMATCHES: &str = r#"
SELECT b.id::text
FROM batches b
LEFT JOIN LATERAL (
    SELECT count(*)                                          AS total,
           count(*) FILTER (WHERE r.status = 'queued')      AS queued,
           count(*) FILTER (WHERE r.status = 'sending')     AS sending,
           count(*) FILTER (WHERE r.status = 'sent')        AS sent,
           count(*) FILTER (WHERE r.status = 'delayed')     AS delayed,
           count(*) FILTER (WHERE r.status = 'unconfirmed') AS unconfirmed,
           count(*) FILTER (WHERE r.status = 'delivered')   AS delivered,
           count(*) FILTER (WHERE r.status = 'failed')      AS failed,
           count(*) FILTER (WHERE r.status = 'bounced')     AS bounced,
           count(*) FILTER (WHERE r.status = 'complained')  AS complained,
           count(*) FILTER (WHERE r.status = 'suppressed')  AS suppressed
    FROM recipients r WHERE r.batch_id = b.id
) c ON true
WHERE (b.total_count, b.queued_count, b.sending_count, b.sent_count, b.delayed_count,
       b.unconfirmed_count, b.delivered_count, b.failed_count, b.bounced_count, b.complained_count,
       b.suppressed_count)
      IS DISTINCT FROM
      (c.total, c.queued, c.sending, c.sent, c.delayed, c.unconfirmed, c.delivered, c.failed,
       c.bounced, c.complained, c.suppressed)
ORDER BY 1
"#;

/// Batches whose counters differ from a recount of their recipients: always empty (rule 4).
pub async fn counter_mismatches(pool: &PgPool) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(COUNTER_MISMATCHES).fetch_all(pool).await
}

/// Recipients changed in the last `$1` days whose failure class, cost or parts differ from what
/// their stored events say (migration 20261207000002): the class is the status event's, the
/// cost the latest costed event's, the parts at least the largest reported. Events past
/// retention are gone, so only what the log still holds is compared.
const DERIVED_MISMATCHES: &str = r#"
SELECT m.id::text || ' (' || m.provider || ' ' || m.provider_message_id || ': ' ||
       concat_ws(', ',
           CASE WHEN m.class_differs
                THEN 'class ' || coalesce(m.failure_class, 'none') || ' but its event says '
                     || coalesce(m.event_class, 'none') END,
           CASE WHEN m.cost_differs
                THEN 'cost ' || coalesce(m.cost_amount::text || ' ' || m.cost_currency, 'none')
                     || ' but the latest costed event says '
                     || coalesce(m.event_cost::text || ' ' || m.event_currency, 'none') END,
           CASE WHEN m.parts_differ
                THEN 'parts ' || coalesce(m.parts::text, 'none') || ' but an event says '
                     || m.event_parts END) || ')'
FROM (
    SELECT r.id, r.provider, r.provider_message_id, r.failure_class, r.cost_amount,
           r.cost_currency, r.parts, e.*,
           e.status_found AND r.failure_class IS DISTINCT FROM e.event_class AS class_differs,
           e.costed AND (r.cost_amount, r.cost_currency)
                        IS DISTINCT FROM (e.event_cost, e.event_currency) AS cost_differs,
           e.event_parts > coalesce(r.parts, 0) AS parts_differ
    FROM recipients r
    -- One look at the message's events for all three.
    CROSS JOIN LATERAL (
        SELECT count(*) FILTER (WHERE d.event_id = r.status_event_id) > 0 AS status_found,
               min(d.failure_class) FILTER (WHERE d.event_id = r.status_event_id)
                   AS event_class,
               count(*) FILTER (WHERE d.cost_amount IS NOT NULL) > 0 AS costed,
               (array_agg(d.cost_amount ORDER BY d.occurred_at DESC, d.event_id DESC)
                   FILTER (WHERE d.cost_amount IS NOT NULL))[1] AS event_cost,
               (array_agg(d.cost_currency ORDER BY d.occurred_at DESC, d.event_id DESC)
                   FILTER (WHERE d.cost_amount IS NOT NULL))[1] AS event_currency,
               max(d.parts) AS event_parts
        FROM delivery_events d
        WHERE d.provider = r.provider AND d.provider_message_id = r.provider_message_id
    ) AS e
    WHERE r.provider_message_id IS NOT NULL
      AND r.updated_at >= now() - make_interval(days => $1)
) AS m
WHERE m.class_differs OR m.cost_differs OR m.parts_differ
ORDER BY m.id
LIMIT 100
"#;

/// Recipients whose class, cost or parts differ from a recount of their events (at most 100,
/// described): always empty.
pub async fn derived_mismatches(pool: &PgPool, days: i32) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(DERIVED_MISMATCHES)
        .bind(days)
        .fetch_all(pool)
        .await
}
