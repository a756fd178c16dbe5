use anyhow::Context as _;
use clap::Parser;
use hookline_ingest::IngestConfig;

/// mimalloc instead of glibc's malloc: a request allocates a few dozen small objects across
/// threads, where glibc's arenas showed up as ~12 % of ingest's CPU profile under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = IngestConfig::parse();
    hookline_runtime::init_tracing(config.log_format);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (HOOKLINE_LISTEN)", config.listen))?;
    hookline_ingest::run(config, listener, hookline_runtime::shutdown_signal()).await
}
