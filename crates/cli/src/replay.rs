//! `hookline replay`: re-publish archived events so the workers re-derive state from them (after
//! a decoder fix). Idempotent: replaying correct events changes nothing. See
//! hookline_ops::replay.

use std::time::Instant;

use hookline_ops::replay::{print_progress, replay as run, ReplayArgs};

#[derive(clap::Args)]
pub struct ReplayCmd {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,

    #[command(flatten)]
    nats: hookline_jetstream::NatsArgs,

    #[command(flatten)]
    args: ReplayArgs,
}

pub async fn replay(cmd: ReplayCmd) -> anyhow::Result<()> {
    let pool = crate::connect::database(&cmd.database_url, 1).await?;
    let js = crate::connect::jetstream(&cmd.nats).await?;
    let report = run(&cmd.args, &pool, &js, print_progress(Instant::now())).await?;
    if cmd.args.dry_run {
        println!("Dry run: nothing published.");
    } else {
        println!(
            "Replayed {} events as run {} ({} already in the stream). The workers re-derive them; watch webhook_rederived_events_total or `hookline check`.",
            report.published, report.run_id, report.duplicates
        );
    }
    Ok(())
}
