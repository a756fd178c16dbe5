//! `hookline migrate` and `hookline streams`: bring a database and a NATS account to the shape
//! hookline expects. Both are safe to run again.

use anyhow::Context as _;
use hookline_jetstream::StreamArgs;

#[derive(clap::Args)]
pub struct MigrateArgs {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
}

pub async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    use hookline_store::migrate::{self, Step};
    let pool = crate::connect::database(&args.database_url, 1).await?;
    let mut conn = pool.acquire().await?;
    println!("Waiting for the migration lock (another replica may be migrating)...");
    migrate::run(&mut conn, |m, step| {
        let state = match step {
            Step::AlreadyApplied => "already applied",
            Step::Adopted => "already applied (record moved from _sqlx_migrations)",
            Step::Applied => "applied now",
        };
        println!("  {} {:<40} {state}", m.version, m.description);
    })
    .await
    .context("migration failed")?;
    println!(
        "Database schema is up to date ({} migrations, recorded in {}).",
        hookline_store::MIGRATOR.iter().count(),
        migrate::TABLE
    );
    Ok(())
}

#[derive(clap::Args)]
pub struct StreamsArgs {
    /// Required unless printing.
    #[command(flatten)]
    nats: Option<hookline_jetstream::NatsArgs>,
    #[command(flatten)]
    stream: StreamArgs,
    #[command(flatten)]
    dlq: hookline_jetstream::DlqArgs,
    #[command(flatten)]
    feed: hookline_jetstream::FeedArgs,
    #[command(flatten)]
    consumer: hookline_jetstream::ConsumerArgs,
    /// First move a work-queue stream of an earlier release to the event log, keeping every
    /// event still queued (stop the workers first; ingest may run and answers 503 for a moment).
    #[arg(long)]
    upgrade: bool,
    #[command(subcommand)]
    print: Option<StreamsCommand>,
}

#[derive(clap::Subcommand)]
enum StreamsCommand {
    /// Print a definition as JSON, in the form `nats stream add --config FILE` (streams) and
    /// `nats consumer add WEBHOOKS --config FILE` (the consumer) take; connects to nothing.
    Print {
        #[arg(value_enum)]
        what: Definition,
    },
}

#[derive(clap::ValueEnum, Clone, Copy)]
enum Definition {
    /// The main stream (`HOOKLINE_STREAM`).
    Stream,
    /// The dead-letter stream (`HOOKLINE_DLQ_STREAM`).
    Dlq,
    /// The change feed stream (`HOOKLINE_FEED_STREAM`).
    Feed,
    /// The workers' shared durable consumer (`HOOKLINE_CONSUMER`).
    Consumer,
}

/// Creates or updates the streams and the workers' consumer to the flags (what binaries running
/// with `HOOKLINE_STREAMS=check` then only check), or prints one definition.
pub async fn streams(args: StreamsArgs) -> anyhow::Result<()> {
    use hookline_jetstream::Ownership;
    let replicas = args.stream.stream_replicas;
    if let Some(StreamsCommand::Print { what }) = args.print {
        let json = match what {
            Definition::Stream => serde_json::to_string_pretty(&args.stream.config()),
            Definition::Dlq => serde_json::to_string_pretty(&args.dlq.config(replicas)),
            Definition::Feed => serde_json::to_string_pretty(&args.feed.config(replicas)),
            Definition::Consumer => serde_json::to_string_pretty(&args.consumer.config()),
        }?;
        println!("{json}");
        return Ok(());
    }
    let nats = args
        .nats
        .context("NATS_URL is not set (the NATS server whose streams to create or update)")?;
    let js = crate::connect::jetstream(&nats).await?;
    if args.upgrade {
        let report = hookline_jetstream::upgrade::upgrade_to_log(
            &js,
            &args.stream,
            &args.consumer,
            |line| println!("{line}"),
        )
        .await?;
        if report.already_a_log {
            println!(
                "Stream {} is already a log; nothing to upgrade.",
                args.stream.stream
            );
        } else {
            println!(
                "Upgraded {} to the event log: {} queued events copied, {} published back.",
                args.stream.stream, report.copied, report.restored
            );
        }
    }
    let info = hookline_jetstream::ensure_stream(&js, &args.stream, Ownership::Manage).await?;
    println!(
        "Stream {} (the event log): subjects {:?}, {} messages, retention {:?}, {} bytes of {}, \
         replicas {}, dedup window {:?}.",
        info.config.name,
        info.config.subjects,
        info.state.messages,
        info.config.max_age,
        info.state.bytes,
        info.config.max_bytes,
        info.config.num_replicas,
        info.config.duplicate_window
    );
    let dlq = args.dlq.config(replicas);
    let info = js.create_or_update_stream(dlq).await.with_context(|| {
        format!(
            "cannot create the dead-letter stream {}",
            args.dlq.dlq_stream
        )
    })?;
    println!(
        "Stream {}: subjects {:?}, {} messages, max age {}.",
        info.config.name,
        info.config.subjects,
        info.state.messages,
        if info.config.max_age.is_zero() {
            "none (kept until replayed or purged)".to_owned()
        } else {
            format!("{:?}", info.config.max_age)
        }
    );
    let info = js
        .create_or_update_stream(args.feed.config(replicas))
        .await
        .with_context(|| {
            format!(
                "cannot create the change feed stream {}",
                args.feed.feed_stream
            )
        })?;
    println!(
        "Stream {} (the change feed): subjects {:?}, {} messages, retention {:?}.",
        info.config.name, info.config.subjects, info.state.messages, info.config.max_age
    );
    let mut consumer = hookline_jetstream::ensure_consumer(
        &js,
        &args.stream.stream,
        &args.consumer,
        Ownership::Manage,
    )
    .await?;
    let info = consumer.info().await?;
    println!(
        "Consumer {} on {}: ack wait {:?}, {} pending, {} unacknowledged.",
        info.name, info.stream_name, info.config.ack_wait, info.num_pending, info.num_ack_pending
    );
    Ok(())
}
