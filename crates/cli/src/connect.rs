//! Connections the commands share, with errors that name the variable to fix.

use anyhow::Context as _;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

/// A small pool for a one-shot command; gives up after 10 s.
pub async fn database(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect(url)
        .await
        .context("cannot connect to PostgreSQL (DATABASE_URL)")
}

/// JetStream with `nats`'s settings; fails at once if NATS is not there.
pub async fn jetstream(
    nats: &hookline_jetstream::NatsArgs,
) -> anyhow::Result<async_nats::jetstream::Context> {
    let client =
        hookline_jetstream::connect("hookline-cli", nats, hookline_jetstream::Reconnect::Never)
            .await?;
    Ok(async_nats::jetstream::new(client))
}
