//! The suppression list as metrics (migration 20261207000002): how many addresses it holds by
//! reason, and how many were added and removed, cluster-wide, read from the database now and
//! then. The additions are counted from `suppression_log` incrementally (rows past the last id
//! read), so a long log costs one full count when the worker starts.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tracing::debug;

use crate::metrics::WorkerMetrics;

/// Reasons an address is on the list (the `suppressions.reason` check).
pub const REASONS: [&str; 3] = ["hard", "opt_out", "soft_streak"];

/// Reads the list's gauges every `every` until dropped.
pub async fn watch(pool: PgPool, metrics: Arc<WorkerMetrics>, every: Duration) {
    let mut last_id = 0_i64;
    loop {
        if let Err(e) = read(&pool, &metrics, &mut last_id).await {
            // A table that is not there yet (an old schema) or an outage: the next round.
            debug!(error = %e, "Could not read the suppression list's size.");
        }
        tokio::time::sleep(every).await;
    }
}

async fn read(pool: &PgPool, metrics: &WorkerMetrics, last_id: &mut i64) -> sqlx::Result<()> {
    let sizes: Vec<(String, i64)> =
        sqlx::query_as("SELECT reason, count(*) FROM suppressions GROUP BY reason")
            .fetch_all(pool)
            .await?;
    for r in REASONS {
        let n = sizes.iter().find(|(s, _)| s == r).map_or(0, |(_, n)| *n);
        metrics.suppressed.with_label_values(&[r]).set(n);
    }
    let changes: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT action, reason, count(*), max(id) FROM suppression_log WHERE id > $1 \
         GROUP BY action, reason",
    )
    .bind(*last_id)
    .fetch_all(pool)
    .await?;
    for (action, reason, n, max_id) in changes {
        let counter = if action == "added" {
            &metrics.suppressions_added
        } else {
            &metrics.suppressions_removed
        };
        counter
            .with_label_values(&[&reason])
            .inc_by(n.max(0) as u64);
        *last_id = (*last_id).max(max_id);
    }
    Ok(())
}
