//! Starting the processes a run measures: hookline's binaries (found next to this one) and this
//! binary's ceiling servers, each logging into the run's folder and waited for until it answers.
//! Not what they are sent (`traffic`, `loadgen`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hookline_testkit::Service;

pub struct Bins {
    dir: PathBuf,
}

impl Bins {
    pub fn find() -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let dir = exe.parent().context("no parent")?.to_path_buf();
        for b in ["hookline-ingest", "hookline-worker"] {
            anyhow::ensure!(
                dir.join(b).is_file(),
                "{} not found next to hookline-bench: build it first (bench/run.sh does: cargo build --release -p hookline-ingest -p hookline-worker -p hookline-bench)",
                dir.join(b).display()
            );
        }
        Ok(Self { dir })
    }

    pub fn cmd(&self, name: &str) -> Command {
        let mut c = Command::new(self.dir.join(name));
        c.env("RUST_LOG", "warn");
        c
    }
}

/// Starts `serve-bare`/`serve-publish` (this binary) or a hookline binary and waits for it.
pub async fn spawn_server(
    mut cmd: Command,
    name: &'static str,
    logs: &Path,
    addr: SocketAddr,
    ready: &str,
) -> anyhow::Result<Service> {
    let service = Service::spawn(name, &mut cmd, logs.join(format!("{name}.log")));
    wait_http(addr, ready).await?;
    Ok(service)
}

pub fn self_cmd(args: &[String]) -> anyhow::Result<Command> {
    let mut c = Command::new(std::env::current_exe()?);
    c.args(args);
    Ok(c)
}

async fn wait_http(addr: SocketAddr, path: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("http://{addr}{path}")).send().await {
            if r.status().is_success() || r.status().as_u16() == 405 {
                return Ok(());
            }
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "http://{addr}{path} never answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
