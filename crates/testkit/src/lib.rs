//! Test support for hookline: real nats-server and PostgreSQL processes on free loopback ports in
//! temp dirs, signed requests, and `wait_until`. No mocks: every integration test runs against the
//! real servers, and fault tests really kill them.
#![forbid(unsafe_code)]

pub mod flood;
pub mod http;
mod nats;
mod postgres;
mod process;
mod prometheus;
pub mod signing;
pub mod tls;

pub use http::WebhookClient;
pub use nats::{NatsCluster, NatsServer};
pub use postgres::Postgres;
pub use process::{output_of, Service};
pub use prometheus::Prometheus;

use std::future::Future;
use std::time::{Duration, Instant};

/// Another workspace package's binary (e.g. `hookline-ingest` from the CLI's tests), built next
/// to this test's own binary by `cargo test --workspace` / `cargo nextest run --workspace`.
pub fn sibling_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is not built: run the tests with --workspace (or cargo build --bin {name})",
        path.display()
    );
    path
}

/// Polls `condition` until it returns true or `deadline` passes; panics with `what` on timeout.
/// The only way tests wait: never a bare sleep.
pub async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        if condition().await {
            return;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for: {what}");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// The workspace root (for `.venv/`, `testdata/`, `migrations/`).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// The page that documents every setting.
pub const CONFIGURATION_PAGE: &str = "docs/configuration.md";

/// What is wrong with a binary's flags as its `--help` and the configuration page show them:
/// every flag has help text, a flag whose name gives a unit (`_ms`, `_secs`, `_bytes`) says that
/// unit in its help, and every environment variable is documented in [`CONFIGURATION_PAGE`].
/// With `require_env` (the services), every flag that takes a value has an environment variable.
/// Subcommands too.
pub fn flag_problems(command: &clap::Command, require_env: bool) -> Vec<String> {
    let readme = std::fs::read_to_string(workspace_root().join(CONFIGURATION_PAGE)).unwrap();
    let mut problems = Vec::new();
    let mut command = command.clone();
    command.build();
    check_flags(
        &command,
        &readme,
        require_env,
        &mut problems,
        command.get_name(),
    );
    problems
}

fn check_flags(
    command: &clap::Command,
    readme: &str,
    require_env: bool,
    problems: &mut Vec<String>,
    path: &str,
) {
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if matches!(id, "help" | "version") || arg.is_positional() || arg.is_hide_set() {
            continue;
        }
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string().to_lowercase())
            .unwrap_or_default();
        let at = format!("{path} --{}", arg.get_long().unwrap_or(id));
        if help.trim().is_empty() {
            problems.push(format!("{at}: no help text"));
        }
        for (suffix, unit) in [
            ("_ms", "millisecond"),
            ("_secs", "second"),
            ("_bytes", "byte"),
        ] {
            if id.ends_with(suffix) && !help.contains(unit) {
                problems.push(format!(
                    "{at}: the name says {unit}s, the help does not: {help:?}"
                ));
            }
        }
        match arg.get_env() {
            None if require_env && arg.get_action().takes_values() => {
                problems.push(format!("{at}: no environment variable"))
            }
            Some(env) if !mentions(readme, &env.to_string_lossy()) => problems.push(format!(
                "{at}: {CONFIGURATION_PAGE} does not document {}",
                env.to_string_lossy()
            )),
            _ => {}
        }
    }
    for sub in command.get_subcommands() {
        check_flags(
            sub,
            readme,
            require_env,
            problems,
            &format!("{path} {}", sub.get_name()),
        );
    }
}

/// Whether `text` names `var` as a whole word (not as part of a longer variable name).
fn mentions(text: &str, var: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(var).any(|(i, _)| {
        !text[..i].chars().next_back().is_some_and(word)
            && !text[i + var.len()..].chars().next().is_some_and(word)
    })
}
