//! `hookline log replay`: re-deliver the event log (the `WEBHOOKS` stream) from a time or a
//! sequence to the workers, after the database lost committed rows. See hookline_ops::log_replay
//! and the disaster-recovery runbooks in docs/failure-model.md.

use std::time::Instant;

use hookline_ops::log_replay::{print_progress, replay, LogReplayArgs};

#[derive(clap::Args)]
pub struct LogCmd {
    #[command(subcommand)]
    command: LogCommand,
}

#[derive(clap::Subcommand)]
enum LogCommand {
    /// Re-deliver what the log holds from --since or --from-seq to the workers: the database
    /// stores what it lacks and absorbs the rest, so a window replayed twice changes nothing.
    Replay(ReplayArgs),
}

#[derive(clap::Args)]
struct ReplayArgs {
    #[command(flatten)]
    nats: hookline_jetstream::NatsArgs,

    /// The event log.
    #[arg(long, env = "HOOKLINE_STREAM", default_value = "WEBHOOKS")]
    stream: String,

    #[command(flatten)]
    args: LogReplayArgs,
}

pub async fn log(cmd: LogCmd) -> anyhow::Result<()> {
    let LogCommand::Replay(cmd) = cmd.command;
    let js = crate::connect::jetstream(&cmd.nats).await?;
    let mut progress = print_progress(Instant::now());
    let report = replay(&js, &cmd.stream, &cmd.args, &mut progress).await?;
    if cmd.args.dry_run {
        println!(
            "Dry run: {} events would be replayed (sequences {}..{}), {} earlier copies skipped; \
             nothing published.",
            report.selected,
            report.first_seq.unwrap_or(0),
            report.last_seq.unwrap_or(0),
            report.skipped_copies
        );
    } else {
        println!(
            "Replayed {} events from the log (sequences {}..{}){}. The workers store what the \
             database lacks; check with `hookline check`.",
            report.published,
            report.first_seq.unwrap_or(0),
            report.last_seq.unwrap_or(0),
            if cmd.args.wait { ", all stored" } else { "" }
        );
    }
    Ok(())
}
