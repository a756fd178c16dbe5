//! `hookline migrate` in a database it shares with an application that runs its own sqlx
//! migrations, upgrading a database an earlier release migrated, and several replicas migrating
//! at once.

use std::process::Command;

use hookline_testkit::Postgres;

fn migrate(url: &str) -> (bool, String) {
    hookline_testkit::output_of(
        Command::new(env!("CARGO_BIN_EXE_hookline"))
            .arg("migrate")
            .env("DATABASE_URL", url),
    )
}

/// An application's own migrations folder, as sqlx's `migrate!` or `sqlx migrate run` reads it.
fn app_migrations(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, sql) in files {
        std::fs::write(dir.path().join(name), sql).unwrap();
    }
    dir
}

async fn run_app_migrations(pool: &sqlx::PgPool, dir: &std::path::Path) -> Result<(), String> {
    let m = sqlx::migrate::Migrator::new(dir).await.unwrap();
    m.run(pool).await.map_err(|e| e.to_string())
}

async fn versions(pool: &sqlx::PgPool, table: &str) -> Vec<i64> {
    sqlx::query_scalar(&format!("SELECT version FROM {table} ORDER BY version"))
        .fetch_all(pool)
        .await
        .unwrap()
}

fn ours() -> Vec<i64> {
    hookline_store::MIGRATOR.iter().map(|m| m.version).collect()
}

const APP_1: (&str, &str) = (
    "20240101000000_orders.sql",
    "CREATE TABLE app_orders (id int PRIMARY KEY);",
);
const APP_2: (&str, &str) = (
    "20240301000000_order_notes.sql",
    "ALTER TABLE app_orders ADD COLUMN note text;",
);

#[tokio::test]
async fn migrations_share_a_database_with_an_applications_sqlx_migrations() {
    let pg = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let pool = sqlx::PgPool::connect(&pg.url()).await.unwrap();
    let app = app_migrations(&[APP_1]);
    run_app_migrations(&pool, app.path()).await.unwrap();

    let (ok, out) = migrate(&pg.url());
    assert!(
        ok,
        "hookline migrate next to the application's migrations: {out}"
    );
    assert_eq!(out.matches("applied now").count(), ours().len(), "{out}");
    assert_eq!(versions(&pool, "hookline_migrations").await, ours());
    assert_eq!(
        versions(&pool, "_sqlx_migrations").await,
        vec![20240101000000],
        "sqlx's table keeps the application's migrations only"
    );

    // The application ships a new migration: its migrator sees no version it does not know.
    std::fs::write(app.path().join(APP_2.0), APP_2.1).unwrap();
    run_app_migrations(&pool, app.path()).await.unwrap();
    assert_eq!(
        versions(&pool, "_sqlx_migrations").await,
        vec![20240101000000, 20240301000000]
    );
    let (ok, out) = migrate(&pg.url());
    assert!(
        ok && out.matches("already applied").count() == ours().len(),
        "{out}"
    );
    sqlx::query("INSERT INTO app_orders (id, note) VALUES (1, 'x')")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("SELECT count(*) FROM delivery_events")
        .execute(&pool)
        .await
        .unwrap();
}

/// A database an earlier release migrated through sqlx's own table (with the application's
/// migrations beside them): the records move to hookline's table, nothing is applied twice, and
/// the application's migrator then runs.
#[tokio::test]
async fn a_database_migrated_by_an_earlier_release_is_adopted() {
    let pg = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let pool = sqlx::PgPool::connect(&pg.url()).await.unwrap();
    hookline_store::MIGRATOR.run(&pool).await.unwrap(); // what releases before this one did
    let app = app_migrations(&[APP_1]);
    let mut app_migrator = sqlx::migrate::Migrator::new(app.path()).await.unwrap();
    app_migrator.set_ignore_missing(true); // the application had to, while sharing the table
    app_migrator.run(&pool).await.unwrap();

    let (ok, out) = migrate(&pg.url());
    assert!(ok, "{out}");
    assert_eq!(
        out.matches("record moved from _sqlx_migrations").count(),
        ours().len(),
        "{out}"
    );
    assert!(!out.contains("applied now"), "nothing runs twice: {out}");
    assert_eq!(versions(&pool, "hookline_migrations").await, ours());
    assert_eq!(
        versions(&pool, "_sqlx_migrations").await,
        vec![20240101000000]
    );
    // Without ignore_missing, the application's migrator now finds only its own versions.
    std::fs::write(app.path().join(APP_2.0), APP_2.1).unwrap();
    run_app_migrations(&pool, app.path()).await.unwrap();
    let (ok, out) = migrate(&pg.url());
    assert!(
        ok && out.matches("already applied").count() == ours().len(),
        "{out}"
    );
}

/// Every replica's migrate step may start at once (a Job per release, or an init container):
/// the advisory lock lets one apply and the others find it done.
#[tokio::test]
async fn replicas_migrating_at_once_apply_each_migration_once() {
    let pg = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let url = pg.url();
    let runs: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || migrate(&url))
        })
        .collect();
    let mut applied = 0;
    for r in runs {
        let (ok, out) = r.join().unwrap();
        assert!(ok, "{out}");
        applied += out.matches("applied now").count();
    }
    assert_eq!(
        applied,
        ours().len(),
        "each migration applied by one replica"
    );
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    assert_eq!(versions(&pool, "hookline_migrations").await, ours());
}

/// A recorded checksum that differs (a migration edited after it landed), or a version this
/// release does not know (a newer release migrated), stops migrate with a message saying so.
#[tokio::test]
async fn an_edited_or_unknown_migration_stops_migrate() {
    let pg = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let pool = sqlx::PgPool::connect(&pg.url()).await.unwrap();
    assert!(migrate(&pg.url()).0);
    let first = ours()[0];
    sqlx::query("UPDATE hookline_migrations SET checksum = '\\x00' WHERE version = $1")
        .bind(first)
        .execute(&pool)
        .await
        .unwrap();
    let (ok, out) = migrate(&pg.url());
    assert!(
        !ok && out.contains("was changed after it was applied"),
        "{out}"
    );
    sqlx::query("DELETE FROM hookline_migrations WHERE version = $1")
        .bind(first)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO hookline_migrations (version, description, checksum, execution_ms)
         VALUES (29991231000000, 'from the future', '\\x00', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let (ok, out) = migrate(&pg.url());
    assert!(
        !ok && out.contains("29991231000000") && out.contains("newer hookline"),
        "{out}"
    );
}
