//! `hookline check`: recounts every batch's recipients and compares with its counters, and
//! recomputes recent recipients' failure class, cost and parts from their stored events. Both
//! are kept by the schema's functions and triggers; a mismatch means someone wrote the rows by
//! hand (or a bug: report it).

#[derive(clap::Args)]
pub struct CheckArgs {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,

    /// Recompute class, cost and parts for recipients changed in the last N days (each costs a
    /// lookup of its events; 0 skips it).
    #[arg(long, env = "HOOKLINE_CHECK_DAYS", default_value_t = 30)]
    days: i32,
}

pub async fn check(args: CheckArgs) -> anyhow::Result<()> {
    let pool = crate::connect::database(&args.database_url, 1).await?;
    let batches: i64 = sqlx::query_scalar("SELECT count(*) FROM batches")
        .fetch_one(&pool)
        .await?;
    let bad = hookline_store::queries::counter_mismatches(&pool).await?;
    let derived = if args.days > 0 {
        hookline_store::queries::derived_mismatches(&pool, args.days).await?
    } else {
        Vec::new()
    };
    if bad.is_empty() {
        println!("All {batches} batches' counters equal a recount of their recipients.");
    }
    if args.days > 0 && derived.is_empty() {
        println!(
            "Recipients changed in the last {} days: failure class, cost and parts equal a \
             recount of their events (batch_costs sums these rows).",
            args.days
        );
    }
    if !bad.is_empty() {
        eprintln!(
            "{} of {batches} batches have counters that differ from a recount: {}",
            bad.len(),
            bad.join(", ")
        );
    }
    for d in &derived {
        eprintln!("recipient {d}");
    }
    match (bad.len(), derived.len()) {
        (0, 0) => Ok(()),
        (b, d) => anyhow::bail!(
            "{b} batches' counters and {d}{} recipients' class, cost or parts differ from a \
             recount",
            if d >= 100 { " (at least)" } else { "" }
        ),
    }
}
