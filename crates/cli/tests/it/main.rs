//! The `hookline` binary against a real nats-server: dead-letter operations and signing.

use std::process::Command;

mod deliver;
mod deploy;
mod migrate;
mod ownership;
mod secure;

use async_nats::jetstream;
use hookline_core::Headers as _;
use hookline_testkit::{output_of, NatsServer};
use hookline_worker::dead_letter::{self, Failure, Letter, Reason};

fn hookline(nats: &NatsServer, args: &[&str]) -> (bool, String) {
    hookline_with(nats, &[], args)
}

/// Runs the `hookline` binary against `nats` with `env` set; returns success and all output.
fn hookline_with(nats: &NatsServer, env: &[(&str, &str)], args: &[&str]) -> (bool, String) {
    output_of(
        Command::new(env!("CARGO_BIN_EXE_hookline"))
            .args(args)
            .env("NATS_URL", nats.url())
            .env_remove("RESEND_WEBHOOK_SECRET")
            .envs(env.iter().copied()),
    )
}

async fn dead_letter(js: &jetstream::Context, seq: u64, reason: Reason) {
    let mut h = async_nats::HeaderMap::new();
    h.insert("svix-id", format!("msg_{seq}").as_str());
    h.insert("Nats-Msg-Id", format!("resend:msg_{seq}").as_str());
    let letter = Letter {
        subject: "webhook.resend.email.sent",
        headers: Some(&h),
        payload: format!("{{\"n\":{seq}}}").into(),
        stream_sequence: seq,
        deliveries: 1,
    };
    dead_letter::publish(
        js,
        "WEBHOOKS",
        &letter,
        &Failure::new(reason, "test".into()),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn dlq_list_show_replay_purge() {
    let nats = NatsServer::start();
    let (ok, out) = hookline(&nats, &["streams"]);
    assert!(ok, "{out}");
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    for seq in 1..=3 {
        dead_letter(&js, seq, Reason::Undecodable("bad_shape")).await;
    }
    dead_letter(&js, 4, Reason::DbRejected).await;
    dead_letter(&js, 4, Reason::DbRejected).await; // the same event twice: deduplicated

    let (ok, out) = hookline(&nats, &["dlq", "list"]);
    assert!(ok, "{out}");
    assert!(out.contains("4 dead letter(s) in WEBHOOKS_DLQ."), "{out}");
    assert_eq!(out.matches("webhook.resend.email.sent").count(), 4, "{out}");
    let (_, out) = hookline(&nats, &["dlq", "list", "--reason", "db_rejected"]);
    assert!(out.contains("1 dead letter(s)"), "{out}");

    let (ok, out) = hookline(&nats, &["dlq", "show", "2"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("Hookline-Dlq-Reason: bad_shape")
            && out.contains("svix-id: msg_2")
            && out.contains("{\"n\":2}"),
        "{out}"
    );
    let (ok, out) = hookline(&nats, &["dlq", "show", "99"]);
    assert!(!ok && out.contains("no dead letter 99"), "{out}");

    let (ok, out) = hookline(&nats, &["dlq", "replay", "--reason", "db_rejected"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("Replayed 1 dead letter(s)") && out.contains("removed 1"),
        "{out}"
    );
    let mut main = js.get_stream("WEBHOOKS").await.unwrap();
    assert_eq!(main.info().await.unwrap().state.messages, 1);
    let replayed = main.get_raw_message(1).await.unwrap();
    assert_eq!(replayed.subject.as_str(), "webhook.resend.email.sent");
    assert_eq!(replayed.headers.get("svix-id").unwrap().as_str(), "msg_4");
    assert!(
        replayed.headers.get("Hookline-Dlq-Reason").is_none(),
        "DLQ headers are stripped"
    );
    assert_eq!(replayed.payload.as_ref(), b"{\"n\":4}");

    let (ok, out) = hookline(&nats, &["dlq", "replay"]);
    assert!(!ok && out.contains("say which"), "{out}");
    let (ok, out) = hookline(&nats, &["dlq", "purge"]);
    assert!(!ok && out.contains("--yes"), "{out}");
    let (ok, out) = hookline(&nats, &["dlq", "purge", "--yes"]);
    assert!(ok && out.contains("Purged 3"), "{out}");
}

#[tokio::test]
async fn sign_prints_headers_that_verify() {
    let nats = NatsServer::start();
    let body =
        hookline_core::providers::samples::resend_body("email.sent", "em", "2026-11-23T10:00:00Z");
    let path = std::env::temp_dir().join(format!("hookline-sign-{}.json", std::process::id()));
    std::fs::write(&path, &body).unwrap();
    let (ok, out) = hookline(
        &nats,
        &[
            "sign",
            "resend",
            "--body",
            path.to_str().unwrap(),
            "--event-id",
            "msg_x",
            "--resend-webhook-secret",
            hookline_testkit::signing::RESEND_SECRET,
        ],
    );
    assert!(ok, "{out}");
    let headers: Vec<(String, String)> = out
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(headers.get("svix-id"), Some("msg_x"));
    let secret =
        hookline_core::signature::svix::SvixSecret::parse(hookline_testkit::signing::RESEND_SECRET)
            .unwrap();
    let r = hookline_core::signature::svix::verify(
        &[secret],
        headers.get("svix-id"),
        headers.get("svix-timestamp"),
        headers.get("svix-signature"),
        body.as_bytes(),
        hookline_testkit::signing::now(),
        300,
    );
    assert_eq!(r, Ok(()));
    let (ok, out) = hookline(&nats, &["sign", "telnyx", "--body", path.to_str().unwrap()]);
    assert!(
        !ok && out.contains("TELNYX_SIGNING_KEY is not set"),
        "{out}"
    );
    std::fs::remove_file(path).ok();
}

/// The counter check is the production query (also `hookline check`); a counter written by hand
/// is caught by both, naming the batch, and `hookline check` exits non-zero.
#[tokio::test]
async fn check_catches_a_corrupted_counter() {
    let nats = NatsServer::start();
    let pg = tokio::task::spawn_blocking(hookline_testkit::Postgres::start)
        .await
        .unwrap();
    let url = pg.url();
    let run = |args: &[&str]| hookline_with(&nats, &[("DATABASE_URL", &url)], args);
    let (ok, out) = run(&["migrate"]);
    assert!(ok, "{out}");
    let pool = sqlx::PgPool::connect(&pg.url()).await.unwrap();
    let batch: String =
        sqlx::query_scalar("INSERT INTO batches (name) VALUES ('b') RETURNING id::text")
            .fetch_one(&pool)
            .await
            .unwrap();
    sqlx::query(
        "INSERT INTO recipients (batch_id, provider, provider_message_id)
         SELECT $1::uuid, 'resend', 'm-' || i FROM generate_series(1, 5) AS i",
    )
    .bind(&batch)
    .execute(&pool)
    .await
    .unwrap();
    let (ok, out) = run(&["check"]);
    assert!(ok && out.contains("All 1 batches"), "{out}");
    let mismatches = || async {
        sqlx::query_scalar::<_, String>(hookline_store::queries::COUNTER_MISMATCHES)
            .fetch_all(&pool)
            .await
            .unwrap()
    };
    assert!(mismatches().await.is_empty());
    for corrupt in [
        "UPDATE batches SET delivered_count = delivered_count + 1",
        "UPDATE batches SET suppressed_count = suppressed_count + 1",
    ] {
        sqlx::query(corrupt).execute(&pool).await.unwrap();
        assert_eq!(mismatches().await, vec![batch.clone()], "{corrupt}");
        let (ok, out) = run(&["check"]);
        assert!(!ok, "non-zero exit after {corrupt}: {out}");
        assert!(
            out.contains(&batch) && out.contains("differ from a recount"),
            "{out}"
        );
        sqlx::query(
            "UPDATE batches SET delivered_count = 0, suppressed_count = 0, queued_count = 5",
        )
        .execute(&pool)
        .await
        .unwrap();
        assert!(mismatches().await.is_empty(), "repaired");
    }
}

/// `hookline suppression`: list and check read the list (an address spelled any way finds its
/// entry), remove takes it off with the note and role in the log, and `hookline check` catches a
/// recipient's cost written by hand.
#[tokio::test]
async fn suppression_list_check_remove_and_a_cost_check() {
    let nats = NatsServer::start();
    let pg = tokio::task::spawn_blocking(hookline_testkit::Postgres::start)
        .await
        .unwrap();
    let url = pg.url();
    let run = |args: &[&str]| hookline_with(&nats, &[("DATABASE_URL", &url)], args);
    let (ok, out) = run(&["migrate"]);
    assert!(ok, "{out}");
    let pool = sqlx::PgPool::connect(&pg.url()).await.unwrap();
    sqlx::query(
        "INSERT INTO suppressions (address, reason, provider, event_id, error_code) VALUES \
         (address_key('Ann@Example.com'), 'hard', 'resend', 'ev-1', 'Permanent/General'), \
         (address_key('+1 (312) 555-0100'), 'opt_out', 'telnyx', 'ev-2', '40300')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let (ok, out) = run(&["suppression", "list"]);
    assert!(
        ok && out.contains("2 of 2 suppressed addresses shown"),
        "{out}"
    );
    assert!(
        out.contains("ann@example.com  hard") && out.contains("code 40300"),
        "{out}"
    );
    let (ok, out) = run(&["suppression", "list", "--reason", "opt_out"]);
    assert!(
        ok && out.contains("1 of 1") && !out.contains("ann@"),
        "{out}"
    );
    let (ok, out) = run(&["suppression", "check", " ANN@example.com", "+13125550199"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("suppressed:  ANN@example.com as ann@example.com  hard"),
        "{out}"
    );
    assert!(
        out.contains("not suppressed: +13125550199 (as +13125550199)"),
        "{out}"
    );
    let (ok, out) = run(&[
        "suppression",
        "check",
        "--fail-if-suppressed",
        "+1 312 555 0100",
    ]);
    assert!(
        !ok && out.contains("1 of 1 addresses are suppressed"),
        "{out}"
    );
    let (ok, out) = run(&[
        "suppression",
        "remove",
        "+13125550100",
        "--note",
        "customer re-subscribed",
    ]);
    assert!(ok && out.contains("1 of 1 addresses removed"), "{out}");
    let (ok, out) = run(&["suppression", "remove", "+13125550100", "--note", "again"]);
    assert!(!ok && out.contains("none of these addresses"), "{out}");
    let (ok, out) = run(&["suppression", "log", "+1 312 555 0100"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("removed +13125550100  opt_out") && out.contains(": customer re-subscribed"),
        "{out}"
    );
    let logged: (String, String) =
        sqlx::query_as("SELECT by_role, note FROM suppression_log WHERE action = 'removed'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        logged,
        ("postgres".to_owned(), "customer re-subscribed".to_owned())
    );

    // A costed event stored through the writer; then the recipient's cost changed by hand.
    sqlx::query("INSERT INTO recipients (provider, provider_message_id) VALUES ('telnyx', 'm1')")
        .execute(&pool)
        .await
        .unwrap();
    let mut event = hookline_core::DeliveryEvent {
        provider: "telnyx",
        event_id: "e1".into(),
        message_id: "m1".into(),
        event_type: "message.sent".into(),
        status: Some(hookline_core::DeliveryStatus::Sent),
        engagement: None,
        provider_status: Some("sent".into()),
        unmapped: false,
        addresses: Vec::new(),
        occurred_at: chrono::Utc::now(),
        error_code: None,
        error_description: None,
        failure_class: None,
        cost: hookline_core::Cost::new("0.0040", "USD"),
        parts: Some(1),
    };
    event.settle_class();
    let writer = hookline_store::BatchWriter::new(pool.clone());
    let rec = hookline_store::EventRecord {
        event: &event,
        payload: "{}",
        replay: false,
    };
    writer.write(&[rec]).await.unwrap();
    let (ok, out) = run(&["check"]);
    assert!(
        ok && out.contains("cost and parts equal a recount"),
        "{out}"
    );
    sqlx::query("UPDATE recipients SET cost_amount = 0.5")
        .execute(&pool)
        .await
        .unwrap();
    let (ok, out) = run(&["check"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("m1: cost 0.5 USD but the latest costed event says 0.0040 USD"),
        "{out}"
    );
}

/// `hookline streams --upgrade` moves a work-queue stream of an earlier release, events queued,
/// to the log; `hookline log replay` then counts (dry run) and re-delivers a window of it,
/// printing its progress.
#[tokio::test]
async fn streams_upgrade_and_log_replay_from_the_command_line() {
    let nats = NatsServer::start();
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    js.create_stream(jetstream::stream::Config {
        name: "WEBHOOKS".into(),
        subjects: vec!["webhook.>".into()],
        retention: jetstream::stream::RetentionPolicy::WorkQueue,
        ..Default::default()
    })
    .await
    .unwrap();
    for n in 0..3 {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", format!("resend:q{n}").as_str());
        js.publish_with_headers(
            "webhook.resend.email.sent",
            h,
            format!("{{\"n\":{n}}}").into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    let (ok, out) = hookline(&nats, &["streams"]);
    assert!(!ok && out.contains("hookline streams --upgrade"), "{out}");
    let (ok, out) = hookline(&nats, &["streams", "--upgrade"]);
    assert!(ok, "{out}");
    assert!(
        out.contains(
            "Upgraded WEBHOOKS to the event log: 3 queued events copied, 3 published back."
        ),
        "{out}"
    );
    let (ok, out) = hookline(&nats, &["streams", "--upgrade"]);
    assert!(ok && out.contains("already a log"), "{out}");

    let (ok, out) = hookline(&nats, &["log", "replay", "--since", "1h", "--dry-run"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("Dry run: 3 events would be replayed (sequences 1..3)"),
        "{out}"
    );
    assert!(
        out.contains("log replay (dry run): 3 selected"),
        "progress on stderr: {out}"
    );
    let (ok, out) = hookline(&nats, &["log", "replay", "--from-seq", "2"]);
    assert!(
        ok && out.contains("Replayed 2 events from the log (sequences 2..3)"),
        "{out}"
    );
    let mut log = js.get_stream("WEBHOOKS").await.unwrap();
    assert_eq!(log.info().await.unwrap().state.messages, 5);
    let copy = log.get_raw_message(4).await.unwrap();
    assert_eq!(
        copy.headers.get("Hookline-Replayed-From").unwrap().as_str(),
        "2"
    );
    assert_eq!(copy.payload.as_ref(), b"{\"n\":1}");
    let (ok, out) = hookline(&nats, &["log", "replay"]);
    assert!(!ok && out.contains("--since"), "a start is required: {out}");
}

/// Every `hookline <command>` the docs name is a command of the binary (its `--help` succeeds),
/// and every command the binary has is named in the docs.
#[test]
fn every_command_the_docs_name_exists_and_every_command_is_documented() {
    let root = hookline_testkit::workspace_root();
    let mut text = std::fs::read_to_string(root.join("README.md")).unwrap();
    for page in std::fs::read_dir(root.join("docs")).unwrap() {
        text += &std::fs::read_to_string(page.unwrap().path()).unwrap();
    }
    // Code only: fenced blocks and `inline spans`, where a command is written as one.
    let mut code = String::new();
    for (i, part) in text.split("```").enumerate() {
        if i % 2 == 1 {
            code += part;
        } else {
            part.split('`').skip(1).step_by(2).for_each(|span| {
                code += span;
                code.push('\n');
            });
        }
    }
    let named: std::collections::BTreeSet<String> = code
        .match_indices("hookline ")
        .filter(|(i, _)| *i == 0 || !code.as_bytes()[i - 1].is_ascii_alphanumeric())
        // "a hookline status" in a comment or an error message is a noun, not a command.
        .filter(|(i, _)| !code[..*i].ends_with("a "))
        .map(|(i, m)| {
            code[i + m.len()..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '-')
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
        .collect();
    let help = output_of(Command::new(env!("CARGO_BIN_EXE_hookline")).arg("--help")).1;
    let commands: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() > 10, "{help}");
    let unknown: Vec<&String> = named.iter().filter(|w| !commands.contains(w)).collect();
    assert!(
        unknown.is_empty(),
        "the docs name commands hookline does not have: {unknown:?}"
    );
    let undocumented: Vec<&String> = commands.iter().filter(|c| !named.contains(*c)).collect();
    assert!(
        undocumented.is_empty(),
        "commands the docs never name: {undocumented:?}"
    );
}

/// Every environment variable the configuration page lists is read by a binary: ingest, the
/// worker, or a `hookline` command (the other direction is `flag_problems`, in each binary).
#[test]
fn every_variable_the_configuration_page_lists_is_read_by_a_binary() {
    use clap::CommandFactory as _;
    let page =
        std::fs::read_to_string(hookline_testkit::workspace_root().join("docs/configuration.md"))
            .unwrap();
    let mut read = String::new();
    for mut command in [
        hookline_ingest::IngestConfig::command(),
        hookline_worker::WorkerConfig::command(),
    ] {
        read += &command.render_long_help().to_string();
    }
    // Every `hookline` command and subcommand's help, found from the top.
    let mut todo = vec![Vec::<String>::new()];
    while let Some(path) = todo.pop() {
        let help = output_of(
            Command::new(env!("CARGO_BIN_EXE_hookline"))
                .args(&path)
                .arg("--help"),
        )
        .1;
        for line in help
            .lines()
            .skip_while(|l| !l.starts_with("Commands:"))
            .skip(1)
        {
            if !line.starts_with("  ") {
                break;
            }
            if let Some(sub) = line.split_whitespace().next().filter(|s| *s != "help") {
                todo.push(path.iter().cloned().chain([sub.to_owned()]).collect());
            }
        }
        read += &help;
    }
    let listed: Vec<&str> = page
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .flat_map(|l| l.split(" |").next().unwrap_or("").split(", "))
        .map(|v| v.trim_matches('`'))
        .filter(|v| {
            v.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .collect();
    assert!(listed.len() > 50, "{listed:?}");
    let unread: Vec<&&str> = listed
        .iter()
        .filter(|v| !read.contains(&format!("[env: {v}")))
        .collect();
    assert!(
        unread.is_empty(),
        "listed in docs/configuration.md, read by no binary: {unread:?}"
    );
}
