//! `hookline reconcile`: one sweep of stuck recipients against the providers' APIs (or, with
//! `--every`, a sweep on a schedule with `/metrics`). See hookline_ops::reconcile.

use std::net::SocketAddr;
use std::time::Duration;

use hookline_ops::reconcile::{ReconcileArgs, Reconciler};

#[derive(clap::Args)]
pub struct ReconcileCmd {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,

    #[command(flatten)]
    nats: hookline_jetstream::NatsArgs,

    #[command(flatten)]
    sweep: ReconcileArgs,

    /// Sweep again every this many seconds instead of once (a long-running reconciler).
    #[arg(long, env = "HOOKLINE_RECONCILE_EVERY_SECS")]
    every_secs: Option<u64>,

    /// With --every-secs: serve /metrics here.
    #[arg(long, env = "HOOKLINE_RECONCILE_LISTEN")]
    listen: Option<SocketAddr>,

    /// Print the one-shot report as JSON.
    #[arg(long)]
    json: bool,

    /// Log format for the per-correction log lines.
    #[arg(long, env = "HOOKLINE_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: hookline_runtime::LogFormat,
}

pub async fn reconcile(args: ReconcileCmd) -> anyhow::Result<()> {
    hookline_runtime::init_tracing(args.log_format);
    let pool = crate::connect::database(&args.database_url, 2).await?;
    let js = crate::connect::jetstream(&args.nats).await?;
    let reconciler = Reconciler::new(args.sweep.clone(), pool, js)?;
    if let Some(every) = args.every_secs {
        return reconciler
            .run_every(
                Duration::from_secs(every.max(1)),
                args.listen,
                hookline_runtime::shutdown_signal(),
            )
            .await;
    }
    let paces: Vec<String> = reconciler
        .paces()
        .map(|(provider, rate)| format!("{provider} {rate}/s"))
        .collect();
    eprintln!(
        "Looking up recipients not final after {} s, least recently checked first (at most {}, \
         {} at a time, {}); progress every 5 s in the log…",
        args.sweep.older_than_secs,
        args.sweep.limit,
        args.sweep.concurrency,
        if paces.is_empty() {
            "no provider API key set".to_owned()
        } else {
            paces.join(", ")
        }
    );
    let report = reconciler.sweep().await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        let unknown: u64 = report.still_unknown.values().sum();
        println!(
            "Swept {}: {} corrected (published as synthetic webhooks), {} still unknown {:?}, \
             {} given up on (recipients.reconcile_gave_up_at).",
            report.swept, report.corrected, unknown, report.still_unknown, report.gave_up
        );
    }
    Ok(())
}
