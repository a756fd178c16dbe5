//! `hookline check`: recounts every batch's recipients and compares with its counters. They are
//! kept equal by triggers; a mismatch means someone wrote the counters by hand.

use anyhow::Context as _;
use sqlx::postgres::PgPoolOptions;

#[derive(clap::Args)]
pub struct CheckArgs {
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
}

pub async fn check(args: CheckArgs) -> anyhow::Result<()> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&args.database_url)
        .await
        .context("cannot connect to PostgreSQL (DATABASE_URL)")?;
    let batches: i64 = sqlx::query_scalar("SELECT count(*) FROM batches")
        .fetch_one(&pool)
        .await?;
    let bad: Vec<String> = sqlx::query_scalar(hookline_worker::writer::COUNTER_MISMATCHES)
        .fetch_all(&pool)
        .await?;
    if bad.is_empty() {
        println!("All {batches} batches' counters equal a recount of their recipients.");
        Ok(())
    } else {
        anyhow::bail!(
            "{} of {batches} batches have counters that differ from a recount: {}",
            bad.len(),
            bad.join(", ")
        )
    }
}
