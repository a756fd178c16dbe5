//! `hookline maintain`: one pass of the data lifecycle (hookline_store::lifecycle): partitions
//! created ahead, days past event retention dropped, early-event notes trimmed, finished batches
//! past their retention deleted. `--dry-run` prints what would go and changes nothing. Run it
//! as the role that owns the schema (the migrate role), e.g. from a daily CronJob; workers also
//! run it on a schedule, and without ownership they only create ahead.

use hookline_store::lifecycle::{self, MaintainReport, RetentionArgs};

#[derive(clap::Args)]
pub struct MaintainArgs {
    /// PostgreSQL connection URL (the schema owner's, to drop partitions).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,

    #[command(flatten)]
    retention: RetentionArgs,

    /// Print what would be created, dropped and deleted; change nothing.
    #[arg(long)]
    dry_run: bool,

    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn maintain(args: MaintainArgs) -> anyhow::Result<()> {
    args.retention
        .check_covers(hookline_store::writer::DEFAULT_DEDUP_WINDOW)
        .map_err(anyhow::Error::msg)?;
    let pool = crate::connect::database(&args.database_url, 2).await?;
    eprintln!(
        "Keeping {} days of events{}, partitions {} days ahead{}…",
        args.retention.event_retention_days,
        match args.retention.batch_retention_days {
            Some(d) => format!(", finished batches for {d} days"),
            None => ", every batch".to_owned(),
        },
        args.retention.partitions_ahead_days,
        if args.dry_run { " (dry run)" } else { "" }
    );
    let Some(report) = lifecycle::maintain(&pool, &args.retention, args.dry_run).await? else {
        anyhow::bail!("another maintainer (a worker or a CronJob) is running; try again later");
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", describe(&report));
    }
    if let Some(why) = &report.refused {
        anyhow::bail!(
            "retention could not be applied: {why} (run as the role that owns the schema, on the \
             primary)"
        );
    }
    Ok(())
}

fn describe(r: &MaintainReport) -> String {
    let (create, drop) = if r.dry_run {
        ("would be created", "would be dropped")
    } else {
        ("created", "dropped")
    };
    let mut out = String::new();
    if r.created.is_empty() {
        out += "No partition ahead is missing.\n";
    }
    for name in &r.created {
        out += &format!("Partition {name} {create}.\n");
    }
    for p in &r.dropped {
        out += &format!(
            "Partition {} ({}, {} rows) {drop}.\n",
            p.name, p.day, p.rows
        );
    }
    if r.dropped.is_empty() {
        out += "No partition is past event retention.\n";
    }
    for name in &r.deferred {
        out += &format!("Partition {name} is past retention and left for the next run.\n");
    }
    out += &format!(
        "Oldest day kept: {}. Event rows {drop}: {}.\n",
        r.oldest_day.map_or("none".to_owned(), |d| d.to_string()),
        r.rows_dropped()
    );
    out += &format!(
        "Early-event notes trimmed: {}; messages whose events wait for their recipient: {}.\n",
        r.early_trimmed, r.early_waiting
    );
    out += &format!("Finished batches deleted: {}.\n", r.batches_deleted);
    out
}
