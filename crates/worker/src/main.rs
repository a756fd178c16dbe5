use clap::Parser;
use hookline_worker::WorkerConfig;

/// mimalloc instead of glibc's malloc, as in ingest (many small allocations across threads).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = WorkerConfig::parse();
    hookline_runtime::init_tracing(config.log_format);
    hookline_worker::run(config, hookline_runtime::shutdown_signal()).await
}
