use clap::Parser;
use hookline_worker::WorkerConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = WorkerConfig::parse();
    hookline_runtime::init_tracing(&config.log_format);
    hookline_worker::run(config, hookline_runtime::shutdown_signal()).await
}
