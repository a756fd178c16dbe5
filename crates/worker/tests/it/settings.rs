//! The real worker binary refuses settings it cannot run with, naming them, before it connects
//! to anything: no silent localhost database, no pool too small for its writers.

use std::process::Command;

fn start(env: &[(&str, &str)]) -> (bool, String) {
    hookline_testkit::output_of(
        Command::new(env!("CARGO_BIN_EXE_hookline-worker"))
            .env_remove("DATABASE_URL")
            .env("NATS_URL", "nats://127.0.0.1:1")
            .env("HOOKLINE_WORKER_LISTEN", "127.0.0.1:0")
            .envs(env.iter().copied()),
    )
}

#[test]
fn settings_that_cannot_work_stop_the_worker_naming_them() {
    let (ok, out) = start(&[]);
    assert!(
        !ok && out.contains("--database-url") && out.contains("DATABASE_URL"),
        "{out}"
    );

    let db = ("DATABASE_URL", "postgres://secret-password@127.0.0.1:1/x");
    let (ok, out) = start(&[
        db,
        ("HOOKLINE_WRITERS", "6"),
        ("HOOKLINE_DB_POOL_SIZE", "6"),
    ]);
    assert!(
        !ok && out.contains("HOOKLINE_DB_POOL_SIZE is 6, but HOOKLINE_WRITERS=6 needs at least 7"),
        "{out}"
    );
    assert!(!out.contains("secret-password"), "{out}");

    let (ok, out) = start(&[db, ("HOOKLINE_LOG_FORMAT", "yaml")]);
    assert!(!ok && out.contains("--log-format"), "{out}");
}
