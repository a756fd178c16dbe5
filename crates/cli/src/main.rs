//! `hookline`: the operator's tool. Applies migrations, sets up streams, signs and sends test
//! webhooks, checks counters, and drives the local demo. One file per command.
#![forbid(unsafe_code)]

mod check;
mod connect;
mod deliver;
mod demo;
mod dlq;
mod log;
mod maintain;
mod probe;
mod reconcile;
mod replay;
mod setup;
mod sign;
mod suppression;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "hookline",
    version,
    about = "Operate hookline: migrations, streams, test webhooks, checks."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply database migrations (idempotent).
    Migrate(setup::MigrateArgs),
    /// Create or update the WEBHOOKS, WEBHOOKS_DLQ and WEBHOOK_CHANGES streams and the workers'
    /// consumer, or print their definitions (`streams print`).
    #[command(subcommand_negates_reqs = true, args_conflicts_with_subcommands = true)]
    Streams(setup::StreamsArgs),
    /// Print the headers that sign a webhook body, as the provider would send them.
    Sign(sign::SignArgs),
    /// Sign a webhook body and POST it to ingest.
    Send(sign::SendArgs),
    /// Write N correctly signed requests as JSON (k6 fixtures; see docs/performance.md, "k6").
    Fixtures(sign::FixturesArgs),
    /// Generate test signing keys for every provider (key pairs, shared secrets) as env lines.
    Keygen,
    /// Verify that every batch's counters equal a recount of its recipients.
    Check(check::CheckArgs),
    /// The suppression list across providers: `list`, `check ADDRESS`, `remove ADDRESS --note`,
    /// `log` (who removed what).
    Suppression(suppression::SuppressionArgs),
    /// Inspect, replay or purge dead letters (WEBHOOKS_DLQ).
    Dlq(dlq::DlqArgs),
    /// Look up recipients stuck in a non-final status in the providers' APIs and publish what is
    /// newer as synthetic webhooks (once, or on a schedule with --every-secs).
    Reconcile(reconcile::ReconcileCmd),
    /// The event log (the WEBHOOKS stream): `log replay` re-delivers a window of it to the
    /// workers after the database lost committed rows (a failover that lagged, a restore).
    Log(log::LogCmd),
    /// Re-publish archived events (delivery_events) received in a time range, so the workers
    /// re-derive state from their payloads (after a decoder fix). Dead letters: `hookline dlq replay`.
    Replay(replay::ReplayCmd),
    /// Keep the data lifecycle: create the event log's partitions ahead, drop days past event
    /// retention, delete finished batches past theirs (`--dry-run` shows what would go).
    Maintain(maintain::MaintainArgs),
    /// Exit 0 if a URL answers 2xx (healthchecks in images without curl).
    Probe(probe::ProbeArgs),
    /// Register a sample batch, send signed webhooks for every provider, show the resulting rows.
    Demo(demo::DemoArgs),
    /// POST every change of the change feed to a URL, signed per Standard Webhooks, with retries;
    /// `--redeliver` sends those given up on again.
    Deliver(deliver::DeliverCmd),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Migrate(a) => setup::migrate(a).await,
        Command::Streams(a) => setup::streams(a).await,
        Command::Sign(a) => sign::sign(a),
        Command::Fixtures(a) => sign::fixtures(a),
        Command::Send(a) => sign::send(a).await,
        Command::Keygen => {
            sign::keygen();
            Ok(())
        }
        Command::Check(a) => check::check(a).await,
        Command::Suppression(a) => suppression::suppression(a).await,
        Command::Demo(a) => demo::demo(a).await,
        Command::Deliver(a) => deliver::deliver(a).await,
        Command::Dlq(a) => dlq::dlq(a).await,
        Command::Log(a) => log::log(a).await,
        Command::Maintain(a) => maintain::maintain(a).await,
        Command::Probe(a) => probe::probe(a).await,
        Command::Reconcile(a) => reconcile::reconcile(a).await,
        Command::Replay(a) => replay::replay(a).await,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_flag_says_what_it_means_and_is_documented() {
        use clap::CommandFactory as _;
        let problems = hookline_testkit::flag_problems(&super::Cli::command(), false);
        assert!(problems.is_empty(), "{problems:#?}");
    }
}
