//! The failure classification against real PostgreSQL faults, each produced the way production
//! meets it (a read-only failover, a revoked grant, a migration not applied, a held lock, a slow
//! statement, a rotated password) and each undone again: every outage is classified as one, and so
//! is its canary write; a value the database refuses is the event's fault, and the canary passes.

use std::time::Duration;

use hookline_core::DeliveryStatus;
use hookline_store::failure::Cause;
use hookline_store::writer::WriteError;
use hookline_store::{BatchWriter, EventRecord};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::support::{migrated_db, status_event};

pub const WORKER_ROLE: &str = "hookline_worker";

/// A login role with just the grants a worker needs, as a production deployment would use.
pub async fn create_worker_role(admin: &PgPool, password: &str) {
    for sql in [
        format!("CREATE ROLE {WORKER_ROLE} LOGIN PASSWORD '{password}'"),
        format!("GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO {WORKER_ROLE}"),
        format!("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {WORKER_ROLE}"),
    ] {
        sqlx::query(&sql).execute(admin).await.unwrap();
    }
}

async fn exec(pool: &PgPool, sqls: &[&str]) {
    for sql in sqls {
        sqlx::query(sql)
            .execute(pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

async fn write_one(writer: &BatchWriter, id: &str, payload: &str) -> Result<(), WriteError> {
    let event = status_event("resend", id, &format!("m-{id}"), DeliveryStatus::Sent, 1);
    let rec = EventRecord {
        event: &event,
        payload,
        replay: false,
    };
    writer.write(&[rec]).await.map(|_| ())
}

/// Writes until the write fails (a configuration reload reaches sessions asynchronously).
async fn first_failure(writer: &BatchWriter, id: &str, payload: &str) -> WriteError {
    let start = std::time::Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        match write_one(writer, &format!("{id}-{n}"), payload).await {
            Err(e) => return e,
            Ok(()) if start.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Ok(()) => panic!("{id}: the fault never reached the worker's session"),
        }
    }
}

fn code(e: &WriteError) -> String {
    match &e.source {
        sqlx::Error::Database(db) => db.code().unwrap_or_default().into_owned(),
        other => format!("not a database error: {other}"),
    }
}

#[tokio::test]
async fn real_outages_are_outages_and_refused_values_are_the_events_fault() {
    let (pg, admin) = migrated_db().await;
    create_worker_role(&admin, "first").await;
    let options: PgConnectOptions = pg.url_as(WORKER_ROLE, "first").parse().unwrap();
    let options = options.options([("statement_timeout", "1000"), ("lock_timeout", "300")]);
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .unwrap();
    let writer = BatchWriter::new(pool.clone());
    write_one(&writer, "baseline", "{}").await.unwrap();

    // (name, SQLSTATE, the fault, its repair)
    let outages: &[(&str, &str, &[&str], &[&str])] = &[
        (
            "read-only (failover)",
            "25006",
            &[
                "ALTER SYSTEM SET default_transaction_read_only = on",
                "SELECT pg_reload_conf()",
            ],
            &[
                "ALTER SYSTEM RESET default_transaction_read_only",
                "SELECT pg_reload_conf()",
            ],
        ),
        (
            "privilege revoked",
            "42501",
            &["REVOKE INSERT ON delivery_events FROM hookline_worker"],
            &["GRANT INSERT ON delivery_events TO hookline_worker"],
        ),
        (
            "column missing (migration not applied)",
            "42703",
            &["ALTER TABLE delivery_events RENAME COLUMN error_code TO error_code_next"],
            &["ALTER TABLE delivery_events RENAME COLUMN error_code_next TO error_code"],
        ),
        (
            "relation missing (migration not applied)",
            "42P01",
            &["ALTER TABLE delivery_events RENAME TO delivery_events_next"],
            &["ALTER TABLE delivery_events_next RENAME TO delivery_events"],
        ),
        (
            "statement timeout",
            "57014",
            &[
                "CREATE FUNCTION test_slow() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN PERFORM pg_sleep(3); RETURN NEW; END $$",
                "CREATE TRIGGER test_slow BEFORE INSERT ON delivery_events \
                 FOR EACH ROW EXECUTE FUNCTION test_slow()",
            ],
            &[
                "DROP TRIGGER test_slow ON delivery_events",
                "DROP FUNCTION test_slow()",
            ],
        ),
    ];
    for (name, sqlstate, fault, repair) in outages {
        exec(&admin, fault).await;
        let e = first_failure(&writer, sqlstate, "{}").await;
        assert_eq!(code(&e), *sqlstate, "{name}: {e}");
        assert_eq!(e.cause, Cause::Outage, "{name}");
        let canary = writer.canary().await.expect_err(name);
        assert_eq!(canary.cause, Cause::Outage, "{name}: canary {canary}");
        exec(&admin, repair).await;
        tokio::time::timeout(Duration::from_secs(10), async {
            while write_one(&writer, &format!("after-{sqlstate}"), "{}")
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{name}: writes work again after the repair"));
    }

    // A lock held by someone else (a long migration): lock timeout.
    let mut holder = admin.begin().await.unwrap();
    sqlx::query("LOCK TABLE delivery_events IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *holder)
        .await
        .unwrap();
    let e = write_one(&writer, "locked", "{}").await.unwrap_err();
    assert_eq!((code(&e).as_str(), e.cause), ("55P03", Cause::Outage));
    assert_eq!(writer.canary().await.unwrap_err().cause, Cause::Outage);
    holder.rollback().await.unwrap();

    // The password is rotated: new connections of the old credentials are refused.
    pg.require_password(WORKER_ROLE);
    exec(
        &admin,
        &[
            "ALTER ROLE hookline_worker PASSWORD 'second'",
            "SELECT pg_reload_conf()",
        ],
    )
    .await;
    let stale = BatchWriter::new(
        PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy(&pg.url_as(WORKER_ROLE, "first"))
            .unwrap(),
    );
    let e = first_failure(&stale, "rotated", "{}").await;
    assert_eq!((code(&e).as_str(), e.cause), ("28P01", Cause::Outage));
    let fresh = BatchWriter::new(
        PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy(&pg.url_as(WORKER_ROLE, "second"))
            .unwrap(),
    );
    write_one(&fresh, "rotated-ok", "{}").await.unwrap();

    // Values the database refuses: the event's fault, and the canary shows the database is fine.
    let e = write_one(&writer, "bad-json", "{not json")
        .await
        .unwrap_err();
    assert_eq!((code(&e).as_str(), e.cause), ("22P02", Cause::Event));
    writer.canary().await.unwrap();
    exec(
        &admin,
        &["ALTER TABLE delivery_events ADD CONSTRAINT test_no_bad CHECK (event_id NOT LIKE 'bad-%')"],
    )
    .await;
    let e = write_one(&writer, "bad-constraint", "{}")
        .await
        .unwrap_err();
    assert_eq!((code(&e).as_str(), e.cause), ("23514", Cause::Event));
    writer.canary().await.unwrap();

    let canaries: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM delivery_events WHERE provider = 'hookline-canary'",
    )
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(canaries, 0, "a canary write is never committed");
}

/// The safety net: a rule that refuses every write (here a trigger raising P0001, which the table
/// attributes to the event) is not taken for a batch of poison. Each event fails alone, but so
/// does the canary write: an outage. Nothing is dead-lettered; once the rule goes, all are stored.
#[tokio::test]
async fn a_database_refusing_every_write_is_an_outage_not_a_batch_of_poison() {
    let mut stack = crate::stack::Stack::start_tuned(
        0,
        |_| {},
        |w| {
            w.breaker_threshold = 2;
            w.breaker_open_ms = 300;
        },
    )
    .await;
    stack.add_worker().await;
    exec(
        &stack.pool,
        &[
            "CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'closed for maintenance'; END $$",
            "CREATE TRIGGER test_refuse BEFORE INSERT ON delivery_events \
             FOR EACH ROW EXECUTE FUNCTION test_refuse()",
        ],
    )
    .await;
    for i in 0..20 {
        let r = stack
            .client
            .post_resend(&format!("r-refused-{i}"), &format!("em-{i}"), "email.sent")
            .await;
        assert_eq!(r.status(), 200);
    }
    let m = stack.workers[0].metrics.clone();
    let metrics = &m;
    hookline_testkit::wait_until(
        "the breaker opens on the refusals",
        Duration::from_secs(30),
        || async move { metrics.breaker_opened.get() >= 1 && metrics.db_retries.get() >= 4 },
    )
    .await;
    assert_eq!(m.dead_lettered_total(), 0, "no event blamed");
    assert_eq!(stack.stream_len("WEBHOOKS_DLQ").await, 0);
    exec(
        &stack.pool,
        &["DROP TRIGGER test_refuse ON delivery_events"],
    )
    .await;
    stack.wait_drained(Duration::from_secs(30)).await;
    assert_eq!(stack.stored_events().await, 20);
    assert_eq!(stack.stream_len("WEBHOOKS_DLQ").await, 0);
}
