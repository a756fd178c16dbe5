//! Applies hookline's migrations ([`MIGRATOR`]'s files) and records them in a table of its own,
//! `hookline_migrations`, so hookline can share a database with an application that runs its own
//! sqlx migrations: sqlx's `_sqlx_migrations` holds one set per database, and either side would
//! see the other's versions as missing (`VersionMissing`). Runs under an advisory lock, so every
//! replica's migrate step (a Job, an init container) can start at once and only one applies.
//!
//! Not here: what the migrations contain (`migrations/`).

use std::time::Instant;

use sqlx::migrate::Migration;
use sqlx::{Connection as _, PgConnection};
use thiserror::Error;

use crate::MIGRATOR;

/// The table recording which of hookline's migrations are applied.
pub const TABLE: &str = "hookline_migrations";

/// Held while migrating; any 64-bit value no application is likely to pick.
const LOCK_KEY: i64 = 0x686f_6f6b_6c69_6e65; // "hookline"

#[derive(Debug, Error)]
pub enum MigrateError {
    #[error("migration {version} ({description}) failed: {source}")]
    Failed {
        version: i64,
        description: String,
        source: sqlx::Error,
    },
    #[error(
        "migration {version} ({description}) was changed after it was applied: its checksum \
         differs from the one recorded in {TABLE}"
    )]
    Changed { version: i64, description: String },
    #[error(
        "the database has hookline migration {version}, which this release does not know: it was \
         migrated by a newer hookline"
    )]
    Unknown { version: i64 },
    #[error("cannot read or write {TABLE}: {0}")]
    Bookkeeping(#[from] sqlx::Error),
}

/// What a run found or did for one migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Applied before this run.
    AlreadyApplied,
    /// Applied by an earlier release through sqlx's own table, and recorded here now.
    Adopted,
    /// Applied by this run.
    Applied,
}

/// Applies every pending migration on `conn`, calling `progress` once per migration (in order).
pub async fn run(
    conn: &mut PgConnection,
    mut progress: impl FnMut(&Migration, Step),
) -> Result<(), MigrateError> {
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(LOCK_KEY)
        .execute(&mut *conn)
        .await?;
    let result = apply(conn, &mut progress).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(LOCK_KEY)
        .execute(&mut *conn)
        .await;
    result?;
    unlocked?;
    Ok(())
}

/// [`run`] on a connection of its own from `pool`, without progress output (tests and tools).
pub async fn run_on(pool: &sqlx::PgPool) -> Result<(), MigrateError> {
    let mut conn = pool.acquire().await?;
    run(&mut conn, |_, _| {}).await
}

async fn apply(
    conn: &mut PgConnection,
    progress: &mut impl FnMut(&Migration, Step),
) -> Result<(), MigrateError> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS hookline_migrations (
             version      bigint PRIMARY KEY,
             description  text NOT NULL,
             checksum     bytea NOT NULL,
             installed_on timestamptz NOT NULL DEFAULT now(),
             execution_ms bigint NOT NULL
         )",
    )
    .execute(&mut *conn)
    .await?;
    let adopted = adopt_from_sqlx(conn).await?;
    let applied: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT version, checksum FROM hookline_migrations ORDER BY version")
            .fetch_all(&mut *conn)
            .await?;
    if let Some((version, _)) = applied
        .iter()
        .find(|(v, _)| !MIGRATOR.iter().any(|m| m.version == *v))
    {
        return Err(MigrateError::Unknown { version: *version });
    }
    for m in MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
    {
        if let Some((_, checksum)) = applied.iter().find(|(v, _)| *v == m.version) {
            if checksum.as_slice() != &*m.checksum {
                return Err(MigrateError::Changed {
                    version: m.version,
                    description: m.description.to_string(),
                });
            }
            let step = if adopted.contains(&m.version) {
                Step::Adopted
            } else {
                Step::AlreadyApplied
            };
            progress(m, step);
            continue;
        }
        apply_one(conn, m)
            .await
            .map_err(|source| MigrateError::Failed {
                version: m.version,
                description: m.description.to_string(),
                source,
            })?;
        progress(m, Step::Applied);
    }
    Ok(())
}

/// One migration and its record, in one transaction (unless the file says `-- no-transaction`).
async fn apply_one(conn: &mut PgConnection, m: &Migration) -> Result<(), sqlx::Error> {
    let started = Instant::now();
    let record = |elapsed: i64| {
        sqlx::query(
            "INSERT INTO hookline_migrations (version, description, checksum, execution_ms)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(m.version)
        .bind(&*m.description)
        .bind(&*m.checksum)
        .bind(elapsed)
    };
    if m.no_tx {
        sqlx::raw_sql(&m.sql).execute(&mut *conn).await?;
        record(started.elapsed().as_millis() as i64)
            .execute(&mut *conn)
            .await?;
        return Ok(());
    }
    let mut tx = conn.begin().await?;
    sqlx::raw_sql(&m.sql).execute(&mut *tx).await?;
    record(started.elapsed().as_millis() as i64)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// Releases before this one recorded hookline's migrations in sqlx's `_sqlx_migrations`. Those
/// rows (matched by version and checksum) move to `hookline_migrations`, so the application's
/// own sqlx migrator no longer sees versions it does not know. Returns the versions moved.
async fn adopt_from_sqlx(conn: &mut PgConnection) -> Result<Vec<i64>, sqlx::Error> {
    let has_sqlx_table: bool =
        sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
            .fetch_one(&mut *conn)
            .await?;
    if !has_sqlx_table {
        return Ok(Vec::new());
    }
    let ours: Vec<(i64, Vec<u8>)> = MIGRATOR
        .iter()
        .map(|m| (m.version, m.checksum.to_vec()))
        .collect();
    let versions: Vec<i64> = ours.iter().map(|(v, _)| *v).collect();
    let checksums: Vec<Vec<u8>> = ours.into_iter().map(|(_, c)| c).collect();
    let mut tx = conn.begin().await?;
    let moved: Vec<i64> = sqlx::query_scalar(
        "WITH ours AS (
             SELECT * FROM UNNEST($1::bigint[], $2::bytea[]) AS o (version, checksum)
         ), moved AS (
             DELETE FROM _sqlx_migrations s USING ours
             WHERE s.version = ours.version AND s.checksum = ours.checksum AND s.success
             RETURNING s.version, s.description, s.checksum, s.installed_on,
                       s.execution_time / 1000000 AS execution_ms
         )
         INSERT INTO hookline_migrations (version, description, checksum, installed_on, execution_ms)
         SELECT version, description, checksum, installed_on, execution_ms FROM moved
         ON CONFLICT (version) DO NOTHING
         RETURNING version",
    )
    .bind(&versions)
    .bind(&checksums)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(moved)
}
