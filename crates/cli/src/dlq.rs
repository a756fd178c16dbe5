//! `hookline dlq`: look into the dead-letter stream and act on it. (`nats stream view
//! WEBHOOKS_DLQ` shows the same entries with the standard NATS CLI.)

use anyhow::Context as _;
use hookline_ops::dlq::{self, Selection};

#[derive(clap::Args)]
pub struct DlqArgs {
    #[command(flatten)]
    nats: hookline_jetstream::NatsArgs,
    /// The dead-letter stream.
    #[arg(long, env = "HOOKLINE_DLQ_STREAM", default_value = "WEBHOOKS_DLQ")]
    dlq_stream: String,
    #[command(subcommand)]
    command: DlqCommand,
}

#[derive(clap::Subcommand)]
enum DlqCommand {
    /// One line per dead letter: sequence, time, reason, stage, original subject.
    List {
        /// Only entries with this reason (e.g. bad_shape, db_rejected, max_deliveries).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Headers and body of one dead letter.
    Show { sequence: u64 },
    /// Republish dead letters to their original subject (then remove them, unless --keep).
    Replay {
        /// The entry to replay.
        sequence: Option<u64>,
        /// Replay every entry.
        #[arg(long, conflicts_with_all = ["sequence", "reason"])]
        all: bool,
        /// Replay entries with this reason.
        #[arg(long, conflicts_with = "sequence")]
        reason: Option<String>,
        /// Keep the entries in the DLQ after replaying.
        #[arg(long)]
        keep: bool,
    },
    /// Delete dead letters (all, or those with --reason).
    Purge {
        /// Only entries with this reason.
        #[arg(long)]
        reason: Option<String>,
        /// Required: purging cannot be undone.
        #[arg(long)]
        yes: bool,
    },
}

pub async fn dlq(args: DlqArgs) -> anyhow::Result<()> {
    let js = crate::connect::jetstream(&args.nats).await?;
    let name = args.dlq_stream.as_str();
    let err = |e: async_nats::Error| anyhow::anyhow!("{name}: {e}");
    match args.command {
        DlqCommand::List { reason } => {
            let sel = reason.map(Selection::Reason).unwrap_or(Selection::All);
            let entries = dlq::list(&js, name, &sel).await.map_err(err)?;
            println!(
                "{:>8}  {:<36} {:<16} {:<10} original subject",
                "seq", "stored at", "reason", "stage"
            );
            for d in &entries {
                println!(
                    "{:>8}  {:<36} {:<16} {:<10} {}",
                    d.sequence,
                    d.stored_at,
                    d.reason(),
                    d.header(hookline_jetstream::headers::dlq::STAGE)
                        .unwrap_or("-"),
                    d.original_subject()
                );
            }
            println!("{} dead letter(s) in {name}.", entries.len());
        }
        DlqCommand::Show { sequence } => {
            let entries = dlq::list(&js, name, &Selection::One(sequence))
                .await
                .map_err(err)?;
            let d = entries
                .first()
                .with_context(|| format!("no dead letter {sequence} in {name}"))?;
            println!(
                "sequence: {}\nstored at: {}\nsubject: {}",
                d.sequence, d.stored_at, d.subject
            );
            for (k, values) in d.headers.iter() {
                for v in values {
                    println!("{k}: {v}");
                }
            }
            println!("\n{}", String::from_utf8_lossy(&d.payload));
        }
        DlqCommand::Replay {
            sequence,
            all,
            reason,
            keep,
        } => {
            let sel = match (sequence, all, reason) {
                (Some(seq), _, _) => Selection::One(seq),
                (None, true, _) => Selection::All,
                (None, false, Some(r)) => Selection::Reason(r),
                (None, false, None) => {
                    anyhow::bail!("say which: a SEQUENCE, --all or --reason REASON")
                }
            };
            let mut n = 0usize;
            let report = dlq::replay(&js, name, &sel, keep, |d| {
                n += 1;
                if n % 500 == 0 {
                    eprintln!("  replayed {n} (last: {})", d.sequence);
                }
            })
            .await
            .map_err(err)?;
            println!(
                "Replayed {} dead letter(s) to their original subjects; removed {} from {name}.",
                report.replayed, report.removed
            );
        }
        DlqCommand::Purge { reason, yes } => {
            anyhow::ensure!(yes, "purging cannot be undone: add --yes");
            let sel = reason.map(Selection::Reason).unwrap_or(Selection::All);
            let n = dlq::purge(&js, name, &sel).await.map_err(err)?;
            println!("Purged {n} dead letter(s) from {name}.");
        }
    }
    Ok(())
}
