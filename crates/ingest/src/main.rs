use anyhow::Context as _;
use clap::Parser;
use hookline_ingest::IngestConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = IngestConfig::parse();
    hookline_runtime::init_tracing(&config.log_format);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (HOOKLINE_LISTEN)", config.listen))?;
    hookline_ingest::run(config, listener, hookline_runtime::shutdown_signal()).await
}
