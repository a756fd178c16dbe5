//! What a sender needs to know (migration 20261207000002): failure classes counted per batch,
//! the suppression list across providers (added once however often an outcome is retried or
//! replayed, a soft streak only when unbroken, never removed by a later delivery), costs that
//! stay equal to a recount, and the batch dashboard's queries against a seeded batch.

use std::time::Duration;

use hookline_core::{Cost, DeliveryEvent, DeliveryStatus, FailureClass};
use hookline_ops::replay::{parse_since, replay, ReplayArgs};
use hookline_store::{BatchWriter, EventRecord};
use hookline_testkit::{wait_until, workspace_root};
use sqlx::PgPool;

use crate::stack::Stack;
use crate::support::*;

/// Registers `(message id, address)` recipients of `provider` in `batch`.
async fn register(pool: &PgPool, batch: &str, provider: &str, rows: &[(&str, &str)]) {
    for (m, a) in rows {
        sqlx::query(
            "INSERT INTO recipients (batch_id, provider, provider_message_id, address) \
             VALUES ($1::uuid, $2, $3, $4)",
        )
        .bind(batch)
        .bind(provider)
        .bind(m)
        .bind(a)
        .execute(pool)
        .await
        .unwrap();
    }
}

fn failed(id: &str, message: &str, class: FailureClass, secs: i64) -> DeliveryEvent {
    let mut e = status_event("telnyx", id, message, DeliveryStatus::Failed, secs);
    e.failure_class = Some(class);
    e
}

fn costed(mut e: DeliveryEvent, amount: &str, parts: i32) -> DeliveryEvent {
    e.cost = Cost::new(amount, "USD");
    e.parts = Some(parts);
    e
}

/// The suppression list as `address|reason|event`, sorted.
async fn suppressions(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT address || '|' || reason || '|' || coalesce(event_id, '') FROM suppressions \
         ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn log_lines(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT action || '|' || address || '|' || reason FROM suppression_log ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn addresses_normalize_and_soft_failures_suppress_only_in_an_unbroken_streak() {
    let (pg, pool) = migrated_db().await;
    for (raw, key) in [
        (" Ann@Example.COM ", "ann@example.com"),
        ("+1 (312) 555-0100", "+13125550100"),
        ("0044 20 7946 0958", "+442079460958"),
        ("+1.312.555.0100", "+13125550100"),
        ("12345", "12345"),
        ("Some Name", "some name"),
    ] {
        let got: String = sqlx::query_scalar("SELECT address_key($1)")
            .bind(raw)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(got, key, "{raw}");
    }
    let writer = BatchWriter::new(pool.clone());
    let batch = new_batch(&pool).await;
    let (a, b, c) = ("+1 312 555 0100", "+13125550200", "+13125550300");
    register(
        &pool,
        &batch,
        "telnyx",
        &[
            ("a1", a),
            ("a2", "+1-312-555-0100"),
            ("a3", a),
            ("b1", b),
            ("b2", b),
            ("c1", c),
            ("c2", c),
            ("c3", c),
            ("c4", c),
        ],
    )
    .await;
    use FailureClass::Soft;
    // a: three soft failures in a row, written out of order and in separate batches.
    write(&writer, &[failed("a3-f", "a3", Soft, 30)]).await;
    write(&writer, &[failed("a1-f", "a1", Soft, 10)]).await;
    assert!(suppressions(&pool).await.is_empty(), "two are not a streak");
    // b: only two.
    write(
        &writer,
        &[
            failed("b1-f", "b1", Soft, 10),
            failed("b2-f", "b2", Soft, 20),
        ],
    )
    .await;
    // c: soft, delivered, soft, soft: the delivery breaks the streak.
    write(
        &writer,
        &[
            failed("c1-f", "c1", Soft, 10),
            status_event("telnyx", "c2-d", "c2", DeliveryStatus::Delivered, 20),
            failed("c3-f", "c3", Soft, 30),
            failed("c4-f", "c4", Soft, 40),
        ],
    )
    .await;
    assert!(suppressions(&pool).await.is_empty());
    write(&writer, &[failed("a2-f", "a2", Soft, 20)]).await;
    assert_eq!(suppressions(&pool).await, ["+13125550100|soft_streak|a3-f"]);

    // Retried and duplicated: nothing changes, nothing is logged twice.
    for _ in 0..3 {
        write(
            &writer,
            &[
                failed("a2-f", "a2", Soft, 20),
                failed("a3-f", "a3", Soft, 30),
            ],
        )
        .await;
    }
    assert_eq!(log_lines(&pool).await, ["added|+13125550100|soft_streak"]);

    // The streak length is the database's setting: 2 makes b's two enough (for failures
    // committed from then on), 0 turns the rule off.
    let db: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&pool)
        .await
        .unwrap();
    // A writer on new connections, which read the setting as it is now.
    let streak_of = |n: i32| {
        let (pool, db, url) = (pool.clone(), db.clone(), pg.url());
        async move {
            let sql = format!("ALTER DATABASE \"{db}\" SET hookline.suppress_after_soft = {n}");
            sqlx::query(&sql).execute(&pool).await.unwrap();
            let fresh = sqlx::PgPool::connect(&url).await.unwrap();
            (BatchWriter::new(fresh.clone()), fresh)
        }
    };
    let (writer2, two) = streak_of(2).await;
    register(
        &two,
        &batch,
        "telnyx",
        &[
            ("b3", b),
            ("b4", b),
            ("x1", "+13125550400"),
            ("x2", "+13125550400"),
        ],
    )
    .await;
    write(&writer2, &[failed("b3-f", "b3", Soft, 30)]).await;
    assert!(suppressions(&two)
        .await
        .contains(&"+13125550200|soft_streak|b3-f".to_owned()));
    let (writer0, off) = streak_of(0).await;
    write(
        &writer0,
        &[
            failed("x1-f", "x1", Soft, 10),
            failed("x2-f", "x2", Soft, 20),
        ],
    )
    .await;
    assert_eq!(suppressions(&off).await.len(), 2, "no streak rule at 0");
    assert_counters_match_recount(&pool).await;
}

#[tokio::test]
async fn cost_totals_equal_a_recount_after_shuffled_duplicated_events_and_a_replay() {
    let (_pg, pool) = migrated_db().await;
    let writer = BatchWriter::new(pool.clone());
    let batch = new_batch(&pool).await;
    add_recipients(&pool, &batch, "telnyx", "m", 20).await;
    // Telnyx reports a cost with the send and the final figure with the outcome; even messages
    // are delivered in two parts at 0.0051, odd ones fail and keep the send's 0.0040.
    let mut events = Vec::new();
    for i in 0..20 {
        let m = format!("m{i}");
        let s = i64::from(i) * 10;
        events.push(costed(
            status_event("telnyx", &format!("{m}-s"), &m, DeliveryStatus::Sent, s),
            "0.0040",
            1,
        ));
        if i % 2 == 0 {
            events.push(costed(
                status_event(
                    "telnyx",
                    &format!("{m}-d"),
                    &m,
                    DeliveryStatus::Delivered,
                    s + 5,
                ),
                "0.0051",
                2,
            ));
        } else {
            events.push(failed(&format!("{m}-f"), &m, FailureClass::Hard, s + 5));
        }
    }
    // Shuffled (a fixed permutation), half of them twice, in batches of 7.
    let mut order: Vec<usize> = (0..events.len())
        .map(|i| (i * 17 + 5) % events.len())
        .collect();
    order.extend((0..events.len()).step_by(2));
    let shuffled: Vec<DeliveryEvent> = order.iter().map(|&i| events[i].clone()).collect();
    for chunk in shuffled.chunks(7) {
        write(&writer, chunk).await;
    }
    let totals = || async {
        sqlx::query_as::<_, (String, String, i64, i64)>(
            "SELECT currency, amount::text, parts, recipients FROM batch_costs \
             WHERE batch_id = $1::uuid",
        )
        .bind(&batch)
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    let want = vec![("USD".to_owned(), "0.0910".to_owned(), 30_i64, 20_i64)];
    assert_eq!(totals().await, want);
    // The recount, from the events alone: each message's latest costed event.
    let recount: String = sqlx::query_scalar(
        "SELECT sum(cost_amount)::text FROM (SELECT DISTINCT ON (provider_message_id) cost_amount \
         FROM delivery_events WHERE cost_amount IS NOT NULL \
         ORDER BY provider_message_id, occurred_at DESC, event_id DESC) AS latest",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(recount, "0.0910");
    assert!(hookline_store::queries::derived_mismatches(&pool, 1)
        .await
        .unwrap()
        .is_empty());

    // A replay of every event: re-derived from the same decoded values, nothing changes.
    let recs: Vec<EventRecord<'_>> = events
        .iter()
        .map(|event| EventRecord {
            event,
            payload: "{}",
            replay: true,
        })
        .collect();
    let outcome = writer.write(&recs).await.unwrap();
    assert_eq!(
        (
            outcome.inserted,
            outcome.rederived,
            outcome.recipients_changed
        ),
        (0, 0, 0)
    );
    assert_eq!(totals().await, want);
    // A recipient's cost written by hand is what `hookline check` catches.
    sqlx::query("UPDATE recipients SET cost_amount = 1 WHERE provider_message_id = 'm3'")
        .execute(&pool)
        .await
        .unwrap();
    let bad = hookline_store::queries::derived_mismatches(&pool, 1)
        .await
        .unwrap();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(
        bad[0].contains("m3: cost 1 USD but the latest costed event says 0.0040 USD"),
        "{bad:?}"
    );
    // Classes per batch: a recount.
    let classes: Vec<(String, i64)> = sqlx::query_as(
        "SELECT failure_class, recipients FROM batch_failure_classes WHERE batch_id = $1::uuid",
    )
    .bind(&batch)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(classes, [("hard".to_owned(), 10)]);
    assert_counters_match_recount(&pool).await;
}

/// Through ingest and workers, as providers send them: a hard bounce (Resend, retried), a
/// complaint, three soft Telnyx failures to one number written three ways, two to another; then
/// a replay of everything, and a later delivery to the bounced address.
#[tokio::test]
async fn outcomes_put_addresses_on_the_suppression_list_once_through_ingest_and_workers() {
    let stack = Stack::start_tuned(2, |_| {}, |w| w.suppression_refresh_secs = 1).await;
    let pool = &stack.pool;
    let batch = new_batch(pool).await;
    register(
        pool,
        &batch,
        "resend",
        &[
            ("em-hard", "Hard@Example.com"),
            ("em-comp", "comp@example.com"),
            ("em-later", "hard@example.com "),
        ],
    )
    .await;
    register(
        pool,
        &batch,
        "telnyx",
        &[
            ("s1", "+1 312 555 0100"),
            ("s2", "+13125550100"),
            ("s3", "0013125550100"),
            ("t1", "+13125550200"),
            ("t2", "+13125550200"),
            ("u1", "+13125550300"),
        ],
    )
    .await;
    let c = &stack.client;
    let t = |s: u32| format!("2026-11-23T10:00:{s:02}.000+00:00");
    for _ in 0..3 {
        // The provider's retries: one event, the same id each time.
        let r = c
            .post_resend_at("r-hard", "em-hard", "email.bounced", &t(1))
            .await;
        assert_eq!(r.status(), 200);
    }
    for r in [
        c.post_resend_at("r-comp", "em-comp", "email.complained", &t(2))
            .await,
        c.post_telnyx_at("f1", "s1", "delivery_failed", &t(3)).await,
        c.post_telnyx_at("f2", "s2", "delivery_failed", &t(4)).await,
        c.post_telnyx_at("f3", "s3", "delivery_failed", &t(5)).await,
        c.post_telnyx_at("g1", "t1", "delivery_failed", &t(6)).await,
        c.post_telnyx_at("g2", "t2", "delivery_failed", &t(7)).await,
    ] {
        assert_eq!(r.status(), 200);
    }
    // A code Telnyx does not document (yet): kept, classed unknown, counted, and no reason
    // to suppress anyone.
    let body = hookline_testkit::signing::telnyx_body("u-1", "u1", "delivery_failed", &t(8))
        .replace("40008", "49999");
    let headers =
        hookline_testkit::signing::telnyx_headers(&body, hookline_testkit::signing::now());
    assert_eq!(c.post("telnyx", &headers, &body).await.status(), 200);
    wait_until("8 events stored", Duration::from_secs(20), || async {
        stack.stored_events().await == 8
    })
    .await;
    stack.wait_drained(Duration::from_secs(10)).await;
    let want = [
        "+13125550100|soft_streak|f3",
        "comp@example.com|opt_out|r-comp",
        "hard@example.com|hard|r-hard",
    ];
    assert_eq!(suppressions(pool).await, want);
    let classes: Vec<(String, i64)> = sqlx::query_as(
        "SELECT failure_class, recipients FROM batch_failure_classes WHERE batch_id = $1::uuid \
         ORDER BY 1",
    )
    .bind(&batch)
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(
        classes,
        [
            ("hard".to_owned(), 1),
            ("opt_out".to_owned(), 1),
            ("soft".to_owned(), 5),
            ("unknown".to_owned(), 1),
        ]
    );
    let counted = |class: &'static str| {
        stack.total(move |m| {
            m.failure_classes
                .with_label_values(&["telnyx", class])
                .get()
        })
    };
    assert_eq!((counted("soft"), counted("unknown")), (5, 1));
    let code: String = sqlx::query_scalar(
        "SELECT last_error_code FROM recipients WHERE provider_message_id = 'u1'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(code, "49999", "the raw code kept");

    // A replay of every stored event: absorbed, and the list is as it was.
    let args = ReplayArgs {
        from: parse_since("1d").unwrap(),
        to: None,
        provider: None,
        sources_file: Some(workspace_root().join("examples/github-style.toml")),
        dry_run: false,
        page_size: 3,
    };
    std::env::set_var("GITHUB_WEBHOOK_SECRET", crate::sources::GITHUB_SECRET);
    let report = replay(&args, pool, &stack.js, |_, _| {}).await.unwrap();
    assert_eq!(report.published, 8, "{report:?}");
    wait_until("the replay absorbed", Duration::from_secs(20), || async {
        stack.total(|m| m.duplicates.get()) >= 8
    })
    .await;
    stack.wait_drained(Duration::from_secs(10)).await;
    // A later delivery to the bounced address (another message, the address spelled
    // differently) does not take it off the list.
    let r = c
        .post_resend_at("r-later", "em-later", "email.delivered", &t(9))
        .await;
    assert_eq!(r.status(), 200);
    wait_until("the delivery stored", Duration::from_secs(20), || async {
        status(pool, "resend", "em-later").await == "delivered"
    })
    .await;
    assert_eq!(suppressions(pool).await, want);
    let log = log_lines(pool).await;
    assert_eq!(log.len(), 3, "each added once, none removed: {log:?}");
    assert!(log.iter().all(|l| l.starts_with("added|")), "{log:?}");
    let suppressed: bool = sqlx::query_scalar("SELECT is_suppressed(' HARD@example.com')")
        .fetch_one(pool)
        .await
        .unwrap();
    assert!(suppressed);
    let among: Vec<String> = sqlx::query_scalar(
        "SELECT address FROM suppressed_among(ARRAY['+1 (312) 555-0100', '+13125550200', \
         'comp@example.com']) ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(among, ["+1 (312) 555-0100", "comp@example.com"]);
    // The gauges read the list.
    wait_until("suppression gauges", Duration::from_secs(40), || async {
        stack.total(|m| m.suppressed.with_label_values(&["hard"]).get() as u64) >= 1
            && stack.total(|m| {
                m.suppressions_added
                    .with_label_values(&["soft_streak"])
                    .get()
            }) >= 1
    })
    .await;
    assert_counters_match_recount(pool).await;
}

/// `sql` with Grafana's PostgreSQL macros filled in as Grafana does for a time range of the
/// last two days, a 1-minute interval and `$batch` set to `batches`.
fn grafana_sql(sql: &str, batches: &[&str]) -> String {
    fn expand(sql: &str, name: &str, with: impl Fn(&str) -> String) -> String {
        let mut out = String::new();
        let mut rest = sql;
        while let Some(i) = rest.find(name) {
            out.push_str(&rest[..i]);
            let args = &rest[i + name.len()..];
            let close = args.find(')').expect("macro arguments close");
            out.push_str(&with(args[..close].split(',').next().unwrap().trim()));
            rest = &args[close + 1..];
        }
        out + rest
    }
    let (from, to) = ("now() - interval '2 days'", "now() + interval '1 day'");
    let sql = expand(sql, "$__timeFilter(", |c| {
        format!("{c} BETWEEN {from} AND {to}")
    });
    let sql = expand(&sql, "$__timeGroupAlias(", |c| {
        format!("floor(extract(epoch FROM {c}) / 60) * 60 AS \"time\"")
    });
    let list: Vec<String> = batches.iter().map(|b| format!("'{b}'")).collect();
    assert!(
        !sql.contains("$__"),
        "a macro the test does not know: {sql}"
    );
    sql.replace("$batch", &list.join(","))
}

/// Runs `sql` and returns its rows as text, columns in order joined by `|` (NULL as `·`).
async fn rows(pool: &PgPool, sql: &str) -> Vec<String> {
    let wrapped = format!(
        "SELECT (SELECT string_agg(coalesce(j.value, '·'), '|' ORDER BY j.n) \
                 FROM json_each_text(row_to_json(q)) WITH ORDINALITY AS j (key, value, n)) \
         FROM ({sql}) AS q"
    );
    sqlx::query_scalar(&wrapped)
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("{e}: {sql}"))
}

/// Every panel of the batch dashboard reads the datasource variable and its query returns
/// the right rows for a seeded batch (and nothing of another batch it was not asked about).
#[tokio::test]
async fn the_batch_dashboards_queries_return_the_seeded_batch() {
    let path = workspace_root().join("grafana/dashboards/hookline-batches.json");
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let vars = dash["templating"]["list"].as_array().unwrap();
    assert_eq!(
        (
            vars[0]["name"].as_str(),
            vars[0]["type"].as_str(),
            vars[0]["query"].as_str()
        ),
        (
            Some("datasource"),
            Some("datasource"),
            Some("grafana-postgresql-datasource")
        )
    );
    let provisioned = std::fs::read_to_string(
        workspace_root().join("grafana/provisioning/datasources/postgres.yml"),
    )
    .unwrap();
    assert!(provisioned.contains("type: grafana-postgresql-datasource"));

    let (_pg, pool) = migrated_db().await;
    let writer = BatchWriter::new(pool.clone());
    let batch = new_batch(&pool).await;
    let other = new_batch(&pool).await;
    register(
        &pool,
        &batch,
        "telnyx",
        &[
            ("d1", "+13125550001"),
            ("d2", "+13125550002"),
            ("h1", "+13125550003"),
            ("p1", "+13125550004"),
            ("q1", "+13125550005"),
        ],
    )
    .await;
    register(&pool, &other, "telnyx", &[("o1", "+13125550009")]).await;
    // Sent 60 s ago; delivered after 10 s and 30 s; a hard and a policy failure after 20 s;
    // one still in flight. Times relative to now, so the time-range panels see them.
    let now = chrono::Utc::now().timestamp() - 1_795_000_000;
    let mut events = Vec::new();
    for m in ["d1", "d2", "h1", "p1", "q1", "o1"] {
        events.push(costed(
            status_event(
                "telnyx",
                &format!("{m}-s"),
                m,
                DeliveryStatus::Sent,
                now - 60,
            ),
            "0.0040",
            1,
        ));
    }
    events.push(costed(
        status_event("telnyx", "d1-d", "d1", DeliveryStatus::Delivered, now - 50),
        "0.0050",
        1,
    ));
    events.push(costed(
        status_event("telnyx", "d2-d", "d2", DeliveryStatus::Delivered, now - 30),
        "0.0100",
        2,
    ));
    let mut h = failed("h1-f", "h1", FailureClass::Hard, now - 40);
    h.error_code = Some("40001".into());
    let mut p = failed("p1-f", "p1", FailureClass::Policy, now - 40);
    p.error_code = Some("40002".into());
    events.extend([h, p]);
    events.push(status_event(
        "telnyx",
        "o1-d",
        "o1",
        DeliveryStatus::Delivered,
        now - 55,
    ));
    write(&writer, &events).await;

    let panels = dash["panels"].as_array().unwrap();
    let mut seen = Vec::new();
    for p in panels {
        let title = p["title"].as_str().unwrap();
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let targets = p["targets"].as_array().unwrap();
        assert_eq!(targets.len(), 1, "{title}");
        assert_eq!(targets[0]["datasource"]["uid"], "${datasource}", "{title}");
        let sql = grafana_sql(targets[0]["rawSql"].as_str().unwrap(), &[&batch]);
        let got = rows(&pool, &sql).await;
        // What each panel must show for the seeded batch.
        let want: Vec<String> = match title {
            "Recent batches" => {
                // Newest first: `other`, then `batch`; columns from recipients to completed.
                let mine = got
                    .iter()
                    .find(|r| r.contains(&batch))
                    .expect("the batch")
                    .clone();
                assert_eq!(got.len(), 2, "{got:?}");
                let cols: Vec<&str> = mine.split('|').collect();
                assert_eq!(
                    &cols[3..10],
                    ["5", "2", "2", "0", "0", "1", "80.0"],
                    "{mine}"
                );
                vec![]
            }
            "Deliveries and failures over time" => {
                let kinds: Vec<String> = got
                    .iter()
                    .map(|r| r.split('|').nth(1).unwrap().to_owned())
                    .collect();
                let (d, f) = (
                    kinds.iter().filter(|k| *k == "delivered").count(),
                    kinds.iter().filter(|k| *k == "failed or bounced").count(),
                );
                let sum: i64 = got
                    .iter()
                    .map(|r| r.split('|').nth(2).unwrap().parse::<i64>().unwrap())
                    .sum();
                assert!(
                    d >= 1 && f >= 1 && sum == 4,
                    "two deliveries and two failures of the batch only: {got:?}"
                );
                vec![]
            }
            "Time to final status" => vec![format!("{batch}|4|20.0|27.0|29.7")],
            "Failures by class and code" => vec![
                "hard|telnyx|40001|failed|1".into(),
                "policy|telnyx|40002|failed|1".into(),
            ],
            "Failures by class" => vec!["hard|1".into(), "policy|1".into()],
            "Cost" => vec![format!("{batch}|USD|0.0270|6|5")],
            "Suppression list additions" => {
                let sum: i64 = got
                    .iter()
                    .map(|r| r.split('|').nth(2).unwrap().parse::<i64>().unwrap())
                    .sum();
                assert_eq!(sum, 1, "the hard failure's address: {got:?}");
                assert!(got[0].contains("|hard|"), "{got:?}");
                vec![]
            }
            "Suppressed addresses" => vec!["hard|1".into()],
            other => panic!("a panel this test does not check: {other}"),
        };
        if !want.is_empty() {
            assert_eq!(got, want, "{title}");
        }
        seen.push(title.to_owned());
    }
    assert_eq!(seen.len(), 8);
    // The batch variable's query lists both batches, newest first.
    let q = grafana_sql(vars[1]["query"].as_str().unwrap(), &[]);
    let options = rows(&pool, &q).await;
    assert_eq!(options.len(), 2);
    assert!(
        options[0].ends_with(&other) && options[1].ends_with(&batch),
        "{options:?}"
    );
}

/// Two workers committing soft and hard failures of the same addresses at once, in opposite
/// orders: no deadlock (each write would fail on one), and every streak is seen, because the
/// second of two concurrent commits reads the first's outcome.
#[tokio::test]
async fn concurrent_writers_see_each_others_soft_failures_and_never_deadlock() {
    let (_pg, pool) = migrated_db().await;
    let batch = new_batch(&pool).await;
    let mut rows = Vec::new();
    for a in 0..30 {
        for k in 0..3 {
            rows.push((format!("m{a}-{k}"), format!("+1312555{a:04}")));
        }
    }
    let refs: Vec<(&str, &str)> = rows.iter().map(|(m, a)| (m.as_str(), a.as_str())).collect();
    register(&pool, &batch, "telnyx", &refs).await;
    // Addresses 0–19: three soft failures each, split across the writers; 20–29: a hard one
    // among two soft.
    let events: Vec<DeliveryEvent> = rows
        .iter()
        .enumerate()
        .map(|(i, (m, _))| {
            let a = i / 3;
            let class = if a >= 20 && i % 3 == 1 {
                FailureClass::Hard
            } else {
                FailureClass::Soft
            };
            failed(&format!("{m}-f"), m, class, i as i64)
        })
        .collect();
    let (mut one, mut two): (Vec<_>, Vec<_>) = events
        .into_iter()
        .enumerate()
        .partition(|(i, _)| i % 2 == 0);
    two.reverse();
    one.rotate_left(7);
    let run = |half: Vec<(usize, DeliveryEvent)>| {
        let writer = BatchWriter::new(pool.clone());
        async move {
            for chunk in half.chunks(4) {
                let events: Vec<DeliveryEvent> = chunk.iter().map(|(_, e)| e.clone()).collect();
                // Panics on a failed write: a deadlock would be one.
                write(&writer, &events).await;
            }
        }
    };
    tokio::join!(run(one), run(two));
    let reasons: Vec<(String, i64)> =
        sqlx::query_as("SELECT reason, count(*) FROM suppressions GROUP BY 1 ORDER BY 1")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        reasons,
        [("hard".to_owned(), 10), ("soft_streak".to_owned(), 20)]
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM suppression_log").await,
        30
    );
}
