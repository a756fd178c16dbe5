//! `hookline check`: recounts every batch's recipients and compares with its counters. They are
//! kept equal by triggers; a mismatch means someone wrote the counters by hand.

#[derive(clap::Args)]
pub struct CheckArgs {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
}

pub async fn check(args: CheckArgs) -> anyhow::Result<()> {
    let pool = crate::connect::database(&args.database_url, 1).await?;
    let batches: i64 = sqlx::query_scalar("SELECT count(*) FROM batches")
        .fetch_one(&pool)
        .await?;
    let bad = hookline_store::queries::counter_mismatches(&pool).await?;
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
