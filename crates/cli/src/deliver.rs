//! `hookline deliver`: the change feed as signed outbound webhooks to one URL (Standard
//! Webhooks), for an application without a NATS client. See hookline_ops::outbound.

use hookline_ops::outbound::{DeliverArgs, Deliverer};

#[derive(clap::Args)]
pub struct DeliverCmd {
    #[command(flatten)]
    nats: hookline_jetstream::NatsArgs,

    #[command(flatten)]
    deliver: DeliverArgs,

    /// Send the changes kept in the undelivered stream again (each removed once the application
    /// takes it), then exit.
    #[arg(long)]
    redeliver: bool,

    /// Log format.
    #[arg(long, env = "HOOKLINE_LOG_FORMAT", value_enum, default_value = "json")]
    log_format: hookline_runtime::LogFormat,
}

pub async fn deliver(args: DeliverCmd) -> anyhow::Result<()> {
    hookline_runtime::init_tracing(args.log_format);
    let js = crate::connect::jetstream(&args.nats).await?;
    let deliverer = Deliverer::new(args.deliver, js)?;
    if args.redeliver {
        let (delivered, left) = deliverer.redeliver().await?;
        println!(
            "Redelivered {delivered} changes; {left} still undelivered (kept in {}).",
            deliverer.args.undelivered_stream
        );
        return Ok(());
    }
    deliverer.run(hookline_runtime::shutdown_signal()).await
}
