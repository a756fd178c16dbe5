//! A secured production setup, as shipped: nats-server with TLS, client certificates required,
//! and `deploy/nats/hookline-accounts.conf` (one user per binary, each with the least it needs);
//! PostgreSQL with `ssl=on` reached with `sslmode=verify-full`. Each real binary works with its
//! own user, and fails clearly with a wrong password, a missing CA, or another binary's user.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hookline_testkit::signing::{self, RESEND_SECRET};
use hookline_testkit::tls::TestPki;
use hookline_testkit::{
    free_port, sibling_binary, wait_until, NatsServer, Postgres, Service, WebhookClient,
};

const PASSWORDS: [(&str, &str); 3] = [
    ("HOOKLINE_INGEST_NATS_PASSWORD", "ingest-pw-7f3a"),
    ("HOOKLINE_WORKER_NATS_PASSWORD", "worker-pw-91c2"),
    ("HOOKLINE_CLI_NATS_PASSWORD", "cli-pw-44de"),
];

/// nats-server with TLS (client certificates verified) and the shipped accounts file.
fn secured_nats(pki: &TestPki, dir: &Path) -> NatsServer {
    let accounts = hookline_testkit::workspace_root().join("deploy/nats/hookline-accounts.conf");
    std::fs::copy(&accounts, dir.join("hookline-accounts.conf")).unwrap();
    let mut conf = format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: true\n  timeout: 2\n}}\n",
        pki.server_cert().display(),
        pki.server_key().display(),
        pki.ca().display()
    );
    conf += "include ./hookline-accounts.conf\n";
    let path = dir.join("nats.conf");
    std::fs::write(&path, conf).unwrap();
    let env = PASSWORDS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    NatsServer::start_with_env(vec!["-c".into(), path.display().to_string()], env)
}

/// The NATS settings of `user` (with its password unless `password` overrides), over TLS.
fn nats_env(
    nats: &NatsServer,
    pki: &TestPki,
    user: &str,
    password: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("NATS_URL", format!("tls://localhost:{}", nats.port)),
        ("NATS_USER", user.to_owned()),
        ("NATS_PASSWORD", password.to_owned()),
        ("NATS_CA", pki.ca().display().to_string()),
        ("NATS_CERT", pki.client_cert().display().to_string()),
        ("NATS_KEY", pki.client_key().display().to_string()),
    ]
}

fn password(var: &str) -> &'static str {
    PASSWORDS.iter().find(|(v, _)| *v == var).unwrap().1
}

fn cli(env: &[(&'static str, String)], args: &[&str]) -> (bool, String) {
    hookline_testkit::output_of(
        Command::new(env!("CARGO_BIN_EXE_hookline"))
            .args(args)
            .env_remove("NATS_URL")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str()))),
    )
}

fn spawn(
    binary: &str,
    logs: &Path,
    label: &str,
    env: &[(&'static str, String)],
    extra: &[(&str, String)],
) -> Service {
    let mut cmd = Command::new(sibling_binary(binary));
    cmd.env("HOOKLINE_STREAMS", "check")
        .env("HOOKLINE_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .envs(extra.iter().map(|(k, v)| (*k, v.as_str())));
    Service::spawn("hookline", &mut cmd, logs.join(format!("{label}.log")))
}

fn ingest_extra(port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("HOOKLINE_LISTEN", format!("127.0.0.1:{port}")),
        ("TELNYX_PUBLIC_KEY", signing::telnyx_public_key_b64()),
        ("RESEND_WEBHOOK_SECRET", RESEND_SECRET.to_owned()),
    ]
}

async fn exits_saying(service: &mut Service, what: &[&str], secret: &str) {
    let status = service
        .wait_exit(Duration::from_secs(20))
        .await
        .unwrap_or_else(|| panic!("did not exit: {}", service.log_text()));
    assert!(!status.success());
    let log = service.log_text();
    for w in what {
        assert!(log.contains(w), "{w:?} in {log}");
    }
    assert!(!log.contains(secret), "no secret in the log: {log}");
}

#[tokio::test]
async fn each_binary_works_with_its_own_nats_user_over_tls_and_fails_clearly_with_a_wrong_one() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let nats = secured_nats(&pki, dir.path());
    let pg = Postgres::start_with_tls(&pki);
    // verify-full: the server's certificate must chain to our CA and name the host we dial.
    let db = format!(
        "postgres://postgres@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}",
        pg.port,
        pki.ca().display()
    );
    let cli_env = nats_env(
        &nats,
        &pki,
        "hookline-cli",
        password("HOOKLINE_CLI_NATS_PASSWORD"),
    );

    // The operator creates the topology as the cli user; the binaries only check it.
    let (ok, out) = cli(&cli_env, &["streams"]);
    assert!(ok, "hookline streams as hookline-cli: {out}");
    let (ok, out) = cli(&[("DATABASE_URL", db.clone())], &["migrate"]);
    assert!(ok, "hookline migrate over verify-full TLS: {out}");
    let stranger = TestPki::new();
    let (ok, out) = cli(
        &[(
            "DATABASE_URL",
            db.replace(
                &pki.ca().display().to_string(),
                &stranger.ca().display().to_string(),
            ),
        )],
        &["migrate"],
    );
    assert!(
        !ok && out.contains("cannot connect to PostgreSQL (DATABASE_URL)"),
        "a server certificate from another CA is refused: {out}"
    );

    let port = free_port();
    let ingest_env = nats_env(
        &nats,
        &pki,
        "hookline-ingest",
        password("HOOKLINE_INGEST_NATS_PASSWORD"),
    );
    let mut ingest = spawn(
        "hookline-ingest",
        dir.path(),
        "ingest",
        &ingest_env,
        &ingest_extra(port),
    );
    let client = WebhookClient::new(format!("http://127.0.0.1:{port}"));
    let c = &client;
    wait_until("ingest ready", Duration::from_secs(20), || async move {
        c.get_status("/readyz").await == 200
    })
    .await;
    for n in 0..3 {
        let answer = client
            .post_telnyx(&format!("sec-{n}"), &format!("sec-msg-{n}"), "delivered")
            .await;
        assert_eq!(answer.status(), 200, "{}", ingest.log_text());
    }

    let worker_env = nats_env(
        &nats,
        &pki,
        "hookline-worker",
        password("HOOKLINE_WORKER_NATS_PASSWORD"),
    );
    let mut worker = spawn(
        "hookline-worker",
        dir.path(),
        "worker",
        &worker_env,
        &[
            ("DATABASE_URL", db.clone()),
            ("HOOKLINE_WORKER_LISTEN", "127.0.0.1:0".into()),
            ("WEBHOOK_FLUSH_INTERVAL", "100".into()),
        ],
    );
    let pool = sqlx::PgPool::connect(&db).await.unwrap();
    let p = &pool;
    wait_until("3 events stored", Duration::from_secs(30), || async move {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM delivery_events")
            .fetch_one(p)
            .await
            .unwrap()
            == 3
    })
    .await;
    let tls_in_use: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(tls_in_use, "the database connection is encrypted");
    // The cli user replays the log to the workers (its own reading consumer, copies published,
    // the workers' ack floor watched); the three events are absorbed as duplicates.
    let (ok, out) = cli(
        &cli_env,
        &[
            "log",
            "replay",
            "--since",
            "1h",
            "--wait",
            "--wait-secs",
            "30",
        ],
    );
    assert!(
        ok && out.contains("Replayed 3 events from the log"),
        "{out}"
    );
    // A signed but unparseable event: the worker dead-letters it (its own DLQ permissions); the
    // cli user lists it, replays it (the worker dead-letters it again), and replays the archive.
    let garbage = "{\"type\": 1}";
    let headers = signing::resend_headers(RESEND_SECRET, "sec-garbage", garbage, signing::now());
    assert_eq!(client.post("resend", &headers, garbage).await.status(), 200);
    let env = &cli_env;
    wait_until(
        "the dead letter listed",
        Duration::from_secs(30),
        || async move {
            let (ok, out) = cli(env, &["dlq", "list"]);
            ok && out.contains("bad_shape")
        },
    )
    .await;
    let (ok, out) = cli(&cli_env, &["dlq", "replay", "--all"]);
    assert!(ok, "hookline dlq replay as hookline-cli: {out}");
    wait_until(
        "dead-lettered again",
        Duration::from_secs(30),
        || async move {
            let (ok, out) = cli(env, &["dlq", "list"]);
            ok && out.contains("bad_shape")
        },
    )
    .await;
    let mut replay_env = cli_env.clone();
    replay_env.push(("DATABASE_URL", db.clone()));
    let (ok, out) = cli(&replay_env, &["replay", "--from", "1h"]);
    assert!(ok, "hookline replay as hookline-cli: {out}");
    for log in [ingest.log_text(), worker.log_text()] {
        assert!(!log.contains("Permissions Violation"), "{log}");
    }
    ingest.signal("TERM");
    worker.signal("TERM");
    assert!(ingest.wait_exit(Duration::from_secs(15)).await.is_some());
    assert!(worker.wait_exit(Duration::from_secs(25)).await.is_some());

    // A wrong password: refused at once, naming the settings, never echoing the password.
    let wrong = nats_env(&nats, &pki, "hookline-ingest", "not-the-password");
    let mut bad = spawn(
        "hookline-ingest",
        dir.path(),
        "bad-pw",
        &wrong,
        &ingest_extra(free_port()),
    );
    exits_saying(
        &mut bad,
        &["refused this client", "NATS_USER/NATS_PASSWORD"],
        "not-the-password",
    )
    .await;

    // No CA: the server's certificate cannot be verified.
    let no_ca: Vec<_> = worker_env
        .iter()
        .filter(|(k, _)| *k != "NATS_CA")
        .cloned()
        .collect();
    let mut bad = spawn(
        "hookline-worker",
        dir.path(),
        "no-ca",
        &no_ca,
        &[
            ("DATABASE_URL", db.clone()),
            ("HOOKLINE_WORKER_LISTEN", "127.0.0.1:0".into()),
        ],
    );
    exits_saying(
        &mut bad,
        &["TLS with NATS", "NATS_CA"],
        password("HOOKLINE_WORKER_NATS_PASSWORD"),
    )
    .await;

    // Another binary's user: connected, but every call it needs is denied, and the log says so.
    let mut bad = spawn(
        "hookline-worker",
        dir.path(),
        "as-ingest",
        &ingest_env,
        &[
            ("DATABASE_URL", db.clone()),
            ("HOOKLINE_WORKER_LISTEN", "127.0.0.1:0".into()),
        ],
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !bad.log_text().contains("NATS denied a permission") {
        assert!(
            std::time::Instant::now() < deadline,
            "no denial logged: {}",
            bad.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = bad.log_text();
    assert!(
        log.contains("Permissions Violation for Publish to")
            && log.contains("$JS.API.STREAM.INFO.WEBHOOKS_DLQ"),
        "{log}"
    );
    bad.kill();
    let (ok, out) = cli(&ingest_env, &["dlq", "purge", "--yes"]);
    assert!(!ok, "ingest's user cannot purge dead letters: {out}");
    let (ok, out) = cli(&cli_env, &["dlq", "purge", "--yes"]);
    assert!(ok, "the cli user can: {out}");
}
