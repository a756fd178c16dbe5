//! The run's PostgreSQL databases: pools, the registered template each measurement copies, and
//! the state a copy is measured in. Not the queries a section measures (they stay with it).

use hookline_testkit::Postgres;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::traffic::MESSAGE_PREFIX;
use crate::Ctx;

pub async fn pool(pg: &Postgres, db: &str, size: u32) -> anyhow::Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(size)
        .connect(&format!("postgres://postgres@127.0.0.1:{}/{db}", pg.port))
        .await?)
}

/// The template every measurement's database is copied from: migrated, with `messages`
/// recipients of the bench's provider registered.
pub async fn create_template(ctx: &Ctx, admin: &PgPool, messages: u64) -> anyhow::Result<()> {
    sqlx::query("CREATE DATABASE bench_template")
        .execute(admin)
        .await?;
    let tpl = pool(&ctx.pg, "bench_template", 2).await?;
    hookline_store::migrate::run_on(&tpl).await?;
    register(&tpl, ctx.traffic.provider.name(), messages).await?;
    tpl.close().await;
    Ok(())
}

/// A new database copied from the registered template (a file copy: fast).
pub async fn fresh_db(admin: &PgPool, name: &str) -> anyhow::Result<String> {
    sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE bench_template"))
        .execute(admin)
        .await?;
    Ok(name.to_owned())
}

/// Registers `messages` recipients `bm-0…` of `provider` in one batch, 10,000 per INSERT, each
/// with an address as an application registers it (a phone number where the provider's sample
/// address is one, an email otherwise), so outcomes maintain the suppression list's index as in
/// production.
async fn register(pool: &PgPool, provider: &str, messages: u64) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO batches (id, name) VALUES ('00000000-0000-0000-0000-000000000001', 'bench')",
    )
    .execute(pool)
    .await?;
    let phone = hookline_core::providers::built_in(provider)
        .is_some_and(|p| p.sample_address(0).starts_with('+'));
    let mut from = 0;
    while from < messages {
        let to = (from + 10_000).min(messages);
        sqlx::query(
            "INSERT INTO recipients (batch_id, provider, provider_message_id, address) \
             SELECT '00000000-0000-0000-0000-000000000001', $3, $4 || i, \
                    CASE WHEN $5 THEN '+1 312 ' || lpad(i::text, 7, '0') \
                         ELSE 'Bench-' || i || '@Example.com' END \
             FROM generate_series($1::bigint, $2::bigint - 1) i",
        )
        .bind(from as i64)
        .bind(to as i64)
        .bind(provider)
        .bind(MESSAGE_PREFIX)
        .bind(phone)
        .execute(pool)
        .await?;
        from = to;
    }
    Ok(())
}

/// `VACUUM ANALYZE` of a fresh copy: hint bits set, visibility map and statistics as a table
/// that has lived a while has them.
pub async fn settle(ctx: &Ctx, db: &str) -> anyhow::Result<()> {
    let pool = pool(&ctx.pg, db, 1).await?;
    sqlx::query("VACUUM ANALYZE").execute(&pool).await?;
    pool.close().await;
    Ok(())
}
