//! `hookline suppression`: the addresses not to send to again (migration 20261207000002). The
//! workers add them as outcomes commit; the application asks `is_suppressed(address)` or
//! `suppressed_among(addresses)` before it sends; this command lists, checks and removes them.
//! A removal is logged in `suppression_log` with the role that did it and the note given.

use anyhow::Context as _;
use chrono::{DateTime, Utc};

#[derive(clap::Args)]
pub struct SuppressionArgs {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    #[command(subcommand)]
    command: SuppressionCommand,
}

#[derive(clap::Subcommand)]
enum SuppressionCommand {
    /// The list, newest first: address, reason, when, the provider and the code that put it
    /// there.
    List {
        /// Only this reason: hard, opt_out or soft_streak.
        #[arg(long, value_parser = ["hard", "opt_out", "soft_streak"])]
        reason: Option<String>,
        /// Show at most this many rows.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Whether each address is on the list (normalized as the list keys it: E.164 for phone
    /// numbers, case-folded email). Exits 0 either way; `--fail-if-suppressed` exits 1.
    Check {
        #[arg(required = true)]
        addresses: Vec<String>,
        /// Exit 1 when any of the addresses is suppressed (for a script's pre-send check).
        #[arg(long)]
        fail_if_suppressed: bool,
    },
    /// Take addresses off the list (the next hard failure, complaint or streak puts them back).
    Remove {
        #[arg(required = true)]
        addresses: Vec<String>,
        /// Why, kept in the log with the database role that removed them.
        #[arg(long)]
        note: String,
    },
    /// What was added and removed, newest first (one address, or all).
    Log {
        address: Option<String>,
        /// Show at most this many entries.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

#[derive(sqlx::FromRow)]
struct Entry {
    address: String,
    reason: String,
    provider: String,
    event_id: Option<String>,
    error_code: Option<String>,
    added_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct LogRow {
    address: String,
    action: String,
    reason: String,
    provider: Option<String>,
    event_id: Option<String>,
    at: DateTime<Utc>,
    by_role: String,
    note: Option<String>,
}

const ENTRY: &str = "SELECT address, reason, provider, event_id, error_code, added_at \
                     FROM suppressions";

fn show(e: &Entry) -> String {
    format!(
        "{}  {}  since {}  {} event {} code {}",
        e.address,
        e.reason,
        e.added_at.format("%Y-%m-%dT%H:%M:%SZ"),
        e.provider,
        e.event_id.as_deref().unwrap_or("-"),
        e.error_code.as_deref().unwrap_or("-"),
    )
}

pub async fn suppression(args: SuppressionArgs) -> anyhow::Result<()> {
    let pool = crate::connect::database(&args.database_url, 1).await?;
    match args.command {
        SuppressionCommand::List { reason, limit } => {
            let rows: Vec<Entry> = sqlx::query_as(&format!(
                "{ENTRY} WHERE $1::text IS NULL OR reason = $1 \
                 ORDER BY added_at DESC, address LIMIT $2"
            ))
            .bind(&reason)
            .bind(limit)
            .fetch_all(&pool)
            .await?;
            let total: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM suppressions WHERE $1::text IS NULL OR reason = $1",
            )
            .bind(&reason)
            .fetch_one(&pool)
            .await?;
            for e in &rows {
                println!("{}", show(e));
            }
            println!("{} of {total} suppressed addresses shown.", rows.len());
        }
        SuppressionCommand::Check {
            addresses,
            fail_if_suppressed,
        } => {
            let mut suppressed = 0;
            for a in &addresses {
                let key: String = sqlx::query_scalar("SELECT address_key($1)")
                    .bind(a)
                    .fetch_one(&pool)
                    .await?;
                let e: Option<Entry> = sqlx::query_as(&format!("{ENTRY} WHERE address = $1"))
                    .bind(&key)
                    .fetch_optional(&pool)
                    .await?;
                match e {
                    Some(e) => {
                        suppressed += 1;
                        println!("suppressed: {a} as {}", show(&e));
                    }
                    None => println!("not suppressed: {a} (as {key})"),
                }
            }
            if fail_if_suppressed && suppressed > 0 {
                anyhow::bail!(
                    "{suppressed} of {} addresses are suppressed",
                    addresses.len()
                );
            }
        }
        SuppressionCommand::Remove { addresses, note } => {
            anyhow::ensure!(!note.trim().is_empty(), "--note must say why");
            let mut tx = pool.begin().await?;
            sqlx::query("SELECT set_config('hookline.note', $1, true)")
                .bind(&note)
                .execute(&mut *tx)
                .await?;
            let removed: Vec<Entry> = sqlx::query_as(
                "DELETE FROM suppressions WHERE address IN \
                     (SELECT address_key(a) FROM unnest($1::text[]) AS a) \
                 RETURNING address, reason, provider, event_id, error_code, added_at",
            )
            .bind(&addresses)
            .fetch_all(&mut *tx)
            .await
            .context("removing suppressions (the role needs DELETE on suppressions)")?;
            tx.commit().await?;
            for e in &removed {
                println!("removed: {}", show(e));
            }
            println!(
                "{} of {} addresses removed (logged in suppression_log).",
                removed.len(),
                addresses.len()
            );
            anyhow::ensure!(
                !removed.is_empty(),
                "none of these addresses is on the suppression list"
            );
        }
        SuppressionCommand::Log { address, limit } => {
            let rows: Vec<LogRow> = sqlx::query_as(
                "SELECT address, action, reason, provider, event_id, at, by_role, note \
                 FROM suppression_log \
                 WHERE $1::text IS NULL OR address = address_key($1) \
                 ORDER BY id DESC LIMIT $2",
            )
            .bind(&address)
            .bind(limit)
            .fetch_all(&pool)
            .await?;
            for r in &rows {
                println!(
                    "{}  {} {}  {}  {} event {}  by {}{}",
                    r.at.format("%Y-%m-%dT%H:%M:%SZ"),
                    r.action,
                    r.address,
                    r.reason,
                    r.provider.as_deref().unwrap_or("-"),
                    r.event_id.as_deref().unwrap_or("-"),
                    r.by_role,
                    r.note
                        .as_deref()
                        .map(|n| format!(": {n}"))
                        .unwrap_or_default(),
                );
            }
        }
    }
    Ok(())
}
