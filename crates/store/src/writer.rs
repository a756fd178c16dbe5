//! The bulk writer: one transaction per batch, a fixed number of statements whatever the batch
//! size. Events are appended to the partitioned `delivery_events` by `store_events` (duplicates
//! within the dedup window absorbed), then the touched recipients get this transaction's events
//! merged in by `refresh_recipients` (migrations/), whose triggers keep the batch counters.
//! Idempotency and ordering live in the schema, so redelivery is always safe here.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hookline_core::DeliveryEvent;
use sqlx::PgPool;
use thiserror::Error;

use crate::failure::Cause;

/// `$1..$15` are parallel arrays, one element per event; `$16` the dedup window in seconds
/// (NULL: every stored event counts). Events about no message (NULL id) are stored and refresh
/// nothing. Idempotency lives in `store_events` (migrations/): an event stored within the window
/// is skipped, whichever day's partition holds it.
const INSERT_EVENTS: &str = r#"
SELECT stored_provider, stored_message_id
FROM store_events(p_provider => $1::text[], p_event_id => $2::text[],
                  p_message_id => $3::text[], p_event_type => $4::text[],
                  p_status => $5::text[], p_engagement => $6::text[],
                  p_occurred_at => $7::timestamptz[], p_error_code => $8::text[],
                  p_error_description => $9::text[], p_payload => $10::text[],
                  p_provider_status => $11::text[], p_failure_class => $12::text[],
                  p_cost_amount => $13::text[]::numeric[], p_cost_currency => $14::text[],
                  p_parts => $15::int4[],
                  p_window => make_interval(secs => $16::float8))
"#;

/// Replayed events (`hookline replay`) that are already stored: their derived columns are
/// re-derived from the payload by today's decoder. Rows that change return both their old and
/// new message, so both recipients are recomputed. Unchanged rows are left alone, so a replay
/// of correct events changes nothing. Parameters as for `INSERT_EVENTS` (the payload is not
/// compared: it is the one stored).
const REDERIVE_EVENTS: &str = r#"
WITH u AS (
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::timestamptz[], $8::text[], $9::text[], $11::text[], $10::text[],
                         $12::text[], $13::text[]::numeric[], $14::text[], $15::int4[])
         AS u (provider, event_id, message_id, event_type, status, engagement,
               occurred_at, error_code, error_description, provider_status, payload,
               failure_class, cost_amount, cost_currency, parts)
), changed AS (
    SELECT DISTINCT ON (d.provider, d.event_id) d.provider, d.event_id, d.received_at,
           d.provider_message_id AS old_message_id,
           u.message_id, u.event_type, u.status, u.engagement, u.occurred_at, u.error_code,
           u.error_description, u.provider_status, u.failure_class, u.cost_amount,
           u.cost_currency, u.parts
    FROM delivery_events d
    JOIN u ON d.provider = u.provider AND d.event_id = u.event_id
    WHERE (d.provider_message_id, d.event_type, d.status, d.engagement, d.occurred_at,
           d.error_code, d.error_description, d.provider_status, d.failure_class,
           d.cost_amount, d.cost_currency, d.parts)
          IS DISTINCT FROM
          (u.message_id, u.event_type, u.status, u.engagement, u.occurred_at, u.error_code,
           u.error_description, u.provider_status, u.failure_class, u.cost_amount,
           u.cost_currency, u.parts)
), updated AS (
    UPDATE delivery_events d
    SET provider_message_id = c.message_id, event_type = c.event_type, status = c.status,
        engagement = c.engagement, occurred_at = c.occurred_at, error_code = c.error_code,
        error_description = c.error_description, provider_status = c.provider_status,
        failure_class = c.failure_class, cost_amount = c.cost_amount,
        cost_currency = c.cost_currency, parts = c.parts
    FROM changed c
    WHERE d.provider = c.provider AND d.event_id = c.event_id AND d.received_at = c.received_at
    RETURNING d.provider, d.provider_message_id, d.received_at
)
SELECT provider, provider_message_id, received_at FROM updated
WHERE provider_message_id IS NOT NULL
UNION
SELECT provider, old_message_id, received_at FROM changed WHERE old_message_id IS NOT NULL
"#;

/// Keys with the received time of the events to merge (NULL: this transaction's own rows).
const REFRESH: &str = "SELECT refresh_recipients($1::text[], $2::text[], false, \
                       $3::timestamptz[], $3::timestamptz[])";

/// Each address of a message sent to several (`$1..$7` parallel arrays, one element per address
/// and event), by the monotonic rule: a higher rank wins, an equal rank takes the later event.
/// One row per key reaches the upsert (the best of the batch), in key order, so two workers never
/// wait on each other's rows in a cycle.
const UPSERT_ADDRESSES: &str = r#"
INSERT INTO message_addresses AS a
    (provider, provider_message_id, address, status, provider_status, status_event_id, status_at)
SELECT DISTINCT ON (u.provider, u.message_id, u.address)
       u.provider, u.message_id, u.address, u.status, u.provider_status, u.event_id, u.at
FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::timestamptz[]) AS u (provider, message_id, address, status, provider_status,
                                     event_id, at)
LEFT JOIN delivery_statuses s ON s.status = u.status
ORDER BY u.provider, u.message_id, u.address, coalesce(s.rank, 0) DESC, u.at DESC, u.event_id DESC
ON CONFLICT (provider, provider_message_id, address) DO UPDATE
SET status = EXCLUDED.status, provider_status = EXCLUDED.provider_status,
    status_event_id = EXCLUDED.status_event_id, status_at = EXCLUDED.status_at
WHERE (coalesce((SELECT rank FROM delivery_statuses WHERE status = EXCLUDED.status), 0),
       EXCLUDED.status_at, EXCLUDED.status_event_id)
    > (coalesce((SELECT rank FROM delivery_statuses WHERE status = a.status), 0),
       a.status_at, a.status_event_id)
"#;

/// The provider name of the canary write: never a real provider, never committed.
const CANARY_PROVIDER: &str = "hookline-canary";

/// An event and the provider's body it came from (stored verbatim).
pub struct EventRecord<'a> {
    pub event: &'a DeliveryEvent,
    pub payload: &'a str,
    /// Published by `hookline replay`: if already stored, re-derive it instead of skipping it.
    pub replay: bool,
}

/// What one committed batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Events stored for the first time.
    pub inserted: usize,
    /// Events already stored (redeliveries, provider retries past the dedup window).
    pub duplicates: usize,
    /// Recipient rows whose state changed.
    pub recipients_changed: i64,
    /// Replayed events already stored whose derived columns changed.
    pub rederived: usize,
}

#[derive(Debug, Error)]
#[error("{source}")]
pub struct WriteError {
    /// Whose fault it is (see `failure.rs`): decides retry-in-place or isolation.
    pub cause: Cause,
    #[source]
    pub source: sqlx::Error,
}

impl From<sqlx::Error> for WriteError {
    fn from(source: sqlx::Error) -> Self {
        Self {
            cause: crate::failure::cause_of(&source),
            source,
        }
    }
}

/// PostgreSQL text cannot hold NUL; a JSON `\u0000` in a payload must not poison a batch.
fn clean(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s.to_owned()
    }
}

/// Applies the per-address outcomes of `records` (see `UPSERT_ADDRESSES`).
async fn upsert_addresses(
    tx: &mut sqlx::PgConnection,
    records: &[EventRecord<'_>],
) -> Result<(), sqlx::Error> {
    let mut cols: [Vec<Option<String>>; 6] = Default::default();
    let mut at = Vec::new();
    for r in records {
        let e = r.event;
        for a in &e.addresses {
            let values = [
                Some(e.provider.to_owned()),
                Some(clean(&e.message_id)),
                Some(clean(&a.address)),
                a.status.map(|s| s.as_str().to_owned()),
                Some(clean(&a.provider_status)),
                Some(clean(&e.event_id)),
            ];
            for (col, v) in cols.iter_mut().zip(values) {
                col.push(v);
            }
            at.push(e.occurred_at);
        }
    }
    let [provider, message, address, status, provider_status, event_id] = cols;
    sqlx::query(UPSERT_ADDRESSES)
        .bind(provider)
        .bind(message)
        .bind(address)
        .bind(status)
        .bind(provider_status)
        .bind(event_id)
        .bind(at)
        .execute(tx)
        .await?;
    Ok(())
}

/// How long a stored event still absorbs its provider's retries by default: more than twice the
/// longest documented retry span of a built-in provider (`BuiltIn::retry_span`, tested below),
/// so that a retry schedule started during an outage of ours is still covered.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(72 * 3600);

#[derive(Clone)]
pub struct BatchWriter {
    pool: PgPool,
    #[cfg(feature = "fault-injection")]
    crash: Option<std::sync::Arc<crate::fault::CrashPlan>>,
    dedup_window: Duration,
}

impl BatchWriter {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            #[cfg(feature = "fault-injection")]
            crash: None,
            dedup_window: DEFAULT_DEDUP_WINDOW,
        }
    }

    /// Events stored longer ago than `window` no longer absorb a redelivery (replays aside).
    pub fn with_dedup_window(mut self, window: Duration) -> Self {
        self.dedup_window = window;
        self
    }

    /// The crash test hook (`HOOKLINE_FAULT_CRASH`); compiled only for the tests.
    #[cfg(feature = "fault-injection")]
    pub fn with_crash_plan(mut self, plan: crate::fault::CrashPlan) -> Self {
        self.crash = Some(std::sync::Arc::new(plan));
        self
    }

    /// Proves the database accepts writes right now: the same two statements as a batch, for a
    /// harmless event of a provider no recipient has, rolled back. It exercises what an outage
    /// breaks (read-only, privileges, credentials, schema, locks) and nothing an event carries,
    /// so an event is dead-lettered only when this succeeds right after the event alone failed.
    pub async fn canary(&self) -> Result<(), WriteError> {
        let canary = Columns {
            provider: vec![Some(CANARY_PROVIDER.to_owned())],
            event_id: vec![Some("canary".to_owned())],
            message_id: vec![Some("canary".to_owned())],
            event_type: vec![Some("hookline.canary".to_owned())],
            status: vec![Some("sent".to_owned())],
            engagement: vec![None],
            occurred_at: vec![chrono::Utc::now()],
            error_code: vec![None],
            error_description: vec![None],
            payload: vec![Some("{}".to_owned())],
            provider_status: vec![Some("canary".to_owned())],
            failure_class: vec![None],
            cost_amount: vec![Some("0.0001".to_owned())],
            cost_currency: vec![Some("USD".to_owned())],
            parts: vec![Some(1)],
        };
        let mut tx = self.pool.begin().await?;
        let (_, keys) = insert_events(&mut tx, &canary, Some(self.dedup_window)).await?;
        refresh(&mut tx, keys).await?;
        tx.rollback().await?;
        Ok(())
    }

    /// Stores `records` and updates state in one transaction: append the events, re-derive the
    /// replayed ones already stored, keep group addresses, refresh the touched recipients, commit.
    pub async fn write(&self, records: &[EventRecord<'_>]) -> Result<WriteOutcome, WriteError> {
        if records.is_empty() {
            return Ok(WriteOutcome::default());
        }
        let mut tx = self.pool.begin().await?;
        // A replayed event may be older than the window: it must be found wherever it is.
        let window = (!records.iter().any(|r| r.replay)).then_some(self.dedup_window);
        let (inserted_count, mut keys) =
            insert_events(&mut tx, &Columns::of(records.iter()), window).await?;
        let rederived = rederive(&mut tx, records).await?;
        let rederived_count = rederived.len();
        keys.extend(rederived);
        if records.iter().any(|r| !r.event.addresses.is_empty()) {
            upsert_addresses(&mut tx, records).await?;
        }
        let changed = refresh(&mut tx, keys).await?;
        self.commit(tx, records).await?;
        Ok(WriteOutcome {
            inserted: inserted_count,
            duplicates: records.len() - inserted_count,
            recipients_changed: changed.into(),
            rederived: rederived_count,
        })
    }

    /// Commits; in a test build, with the crash test hook on either side when set.
    async fn commit(
        &self,
        tx: sqlx::Transaction<'_, sqlx::Postgres>,
        records: &[EventRecord<'_>],
    ) -> Result<(), sqlx::Error> {
        #[cfg(feature = "fault-injection")]
        if let Some(plan) = &self.crash {
            return plan.commit(tx, records).await;
        }
        let _ = records;
        tx.commit().await
    }
}

/// Events as parallel arrays, one per column: what `UNNEST` takes.
struct Columns {
    provider: Vec<Option<String>>,
    event_id: Vec<Option<String>>,
    message_id: Vec<Option<String>>,
    event_type: Vec<Option<String>>,
    status: Vec<Option<String>>,
    engagement: Vec<Option<String>>,
    occurred_at: Vec<chrono::DateTime<chrono::Utc>>,
    error_code: Vec<Option<String>>,
    error_description: Vec<Option<String>>,
    payload: Vec<Option<String>>,
    provider_status: Vec<Option<String>>,
    failure_class: Vec<Option<&'static str>>,
    /// The provider's decimal text, cast to numeric by the statement.
    cost_amount: Vec<Option<String>>,
    cost_currency: Vec<Option<String>>,
    parts: Vec<Option<i32>>,
}

impl Columns {
    fn of<'a, 'r: 'a>(records: impl Iterator<Item = &'a EventRecord<'r>>) -> Self {
        let mut c = Self {
            provider: Vec::new(),
            event_id: Vec::new(),
            message_id: Vec::new(),
            event_type: Vec::new(),
            status: Vec::new(),
            engagement: Vec::new(),
            occurred_at: Vec::new(),
            error_code: Vec::new(),
            error_description: Vec::new(),
            payload: Vec::new(),
            provider_status: Vec::new(),
            failure_class: Vec::new(),
            cost_amount: Vec::new(),
            cost_currency: Vec::new(),
            parts: Vec::new(),
        };
        for r in records {
            let e = r.event;
            c.provider.push(Some(e.provider.to_owned()));
            c.event_id.push(Some(clean(&e.event_id)));
            c.message_id
                .push((!e.message_id.is_empty()).then(|| clean(&e.message_id)));
            c.event_type.push(Some(clean(&e.event_type)));
            c.status.push(e.status.map(|s| s.as_str().to_owned()));
            c.engagement
                .push(e.engagement.map(|g| g.as_str().to_owned()));
            c.occurred_at.push(e.occurred_at);
            c.error_code.push(e.error_code.as_deref().map(clean));
            c.error_description
                .push(e.error_description.as_deref().map(clean));
            c.payload.push(Some(clean(r.payload)));
            c.provider_status
                .push(e.provider_status.as_deref().map(clean));
            c.failure_class.push(e.failure_class.map(|f| f.as_str()));
            c.cost_amount
                .push(e.cost.as_ref().map(|k| clean(&k.amount)));
            c.cost_currency
                .push(e.cost.as_ref().map(|k| clean(&k.currency)));
            c.parts.push(e.parts);
        }
        c
    }
}

/// Binds `c` as the fifteen parameters `INSERT_EVENTS` and `REDERIVE_EVENTS` share.
fn bind_columns<'q, O>(
    q: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    c: &'q Columns,
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    q.bind(&c.provider)
        .bind(&c.event_id)
        .bind(&c.message_id)
        .bind(&c.event_type)
        .bind(&c.status)
        .bind(&c.engagement)
        .bind(&c.occurred_at)
        .bind(&c.error_code)
        .bind(&c.error_description)
        .bind(&c.payload)
        .bind(&c.provider_status)
        .bind(&c.failure_class)
        .bind(&c.cost_amount)
        .bind(&c.cost_currency)
        .bind(&c.parts)
}

/// A message to refresh, and when the events to merge into it were received (None: in this
/// transaction).
type RefreshKey = (String, String, Option<DateTime<Utc>>);

/// Appends the events not stored within `dedup_window` (None: ever); returns how many were
/// stored now, and the messages to refresh for them.
async fn insert_events(
    tx: &mut sqlx::PgConnection,
    c: &Columns,
    dedup_window: Option<Duration>,
) -> Result<(usize, Vec<RefreshKey>), sqlx::Error> {
    let stored: Vec<(String, Option<String>)> = bind_columns(sqlx::query_as(INSERT_EVENTS), c)
        .bind(dedup_window.map(|w| w.as_secs_f64()))
        .fetch_all(&mut *tx)
        .await?;
    let count = stored.len();
    let keys = stored
        .into_iter()
        .filter_map(|(p, m)| Some((p, m?, None)))
        .collect();
    Ok((count, keys))
}

/// Replayed events already stored get their derived columns recomputed; returns the (old and
/// new) messages of those that changed, with the rows' received times.
async fn rederive(
    tx: &mut sqlx::PgConnection,
    records: &[EventRecord<'_>],
) -> Result<Vec<RefreshKey>, sqlx::Error> {
    if !records.iter().any(|r| r.replay) {
        return Ok(Vec::new());
    }
    let c = Columns::of(records.iter().filter(|r| r.replay));
    let rows: Vec<(String, String, DateTime<Utc>)> =
        bind_columns(sqlx::query_as(REDERIVE_EVENTS), &c)
            .fetch_all(&mut *tx)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(p, m, at)| (p, m, Some(at)))
        .collect())
}

/// Merges the given events into their messages' recipients; returns how many rows changed.
async fn refresh(tx: &mut sqlx::PgConnection, keys: Vec<RefreshKey>) -> Result<i32, sqlx::Error> {
    if keys.is_empty() {
        return Ok(0);
    }
    let mut providers = Vec::with_capacity(keys.len());
    let mut messages = Vec::with_capacity(keys.len());
    let mut received = Vec::with_capacity(keys.len());
    for (p, m, at) in keys {
        providers.push(p);
        messages.push(m);
        received.push(at);
    }
    sqlx::query_scalar(REFRESH)
        .bind(providers)
        .bind(messages)
        .bind(received)
        .fetch_one(&mut *tx)
        .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_dedup_window_covers_twice_every_providers_retry_span() {
        for b in hookline_core::providers::BUILT_IN {
            assert!(
                super::DEFAULT_DEDUP_WINDOW >= 2 * b.retry_span(),
                "{}: retries for {:?}, the window is {:?}",
                b.name(),
                b.retry_span(),
                super::DEFAULT_DEDUP_WINDOW
            );
        }
    }
}
