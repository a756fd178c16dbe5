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
    let pool = crate::connect::database(&args.database_url, 1).await?;
    let migrator = &hookline_store::MIGRATOR;
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
    for m in migrator.iter() {
        let state = if applied.contains(&m.version) {
            "applied"
        } else {
            "pending"
        };
        println!("  {} {:<40} {state}", m.version, m.description);
    }
    migrator.run(&pool).await.context("migration failed")?;
    println!(
        "Database schema is up to date ({} migrations).",
        migrator.iter().count()
    );
    Ok(())
}

#[derive(clap::Args)]
pub struct StreamsArgs {
    /// NATS server URL(s).
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    #[command(flatten)]
    stream: StreamArgs,
    #[command(flatten)]
    dlq: hookline_jetstream::DlqArgs,
}

pub async fn streams(args: StreamsArgs) -> anyhow::Result<()> {
    let js = crate::connect::jetstream(&args.nats_url).await?;
    let info = hookline_jetstream::ensure_stream(&js, &args.stream).await?;
    println!(
        "Stream {}: subjects {:?}, {} messages, replicas {}, dedup window {:?}.",
        info.config.name,
        info.config.subjects,
        info.state.messages,
        info.config.num_replicas,
        info.config.duplicate_window
    );
    let dlq = args.dlq.config(args.stream.stream_replicas);
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
    Ok(())
}
