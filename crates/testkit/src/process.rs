//! Child processes that die with the test: spawned with `kill_on_drop`-like cleanup, and killed
//! for real (SIGKILL) or stopped politely (SIGTERM/SIGINT) by fault tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub(crate) struct Proc {
    pub child: Option<Child>,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Self {
        let out = std::fs::File::create(log).expect("create log file");
        let err = out.try_clone().expect("clone log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Self { child: Some(child) }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Sends a signal (`KILL`, `TERM`, `INT`) and reaps the process if it is KILL.
    pub fn signal(&mut self, sig: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args([format!("-{sig}"), pid.to_string()])
                .status();
        }
    }

    /// Waits for the process to exit (after a signal) and forgets it.
    pub fn reap(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    pub fn kill(&mut self) {
        self.signal("KILL");
        self.reap();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Finds an executable: `$ENV_VAR`, then `PATH`, then the given fallback directories.
pub(crate) fn find_binary(name: &str, env_var: &str, fallbacks: &[PathBuf]) -> PathBuf {
    if let Ok(p) = std::env::var(env_var) {
        // Tests run in their crate's directory; a relative path means the workspace's.
        return crate::workspace_root().join(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(fallbacks.iter().cloned())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} not found: set {env_var}, put it on PATH, or run scripts/test.sh, which installs it"
            )
        })
}

/// Runs `cmd` to its end; returns success and all its output (stdout, then stderr): what tests of
/// a binary's one-shot runs and refusals read.
pub fn output_of(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A server process under test: spawned with its output in a log file, signalled or killed for
/// real, and waited on with a deadline.
pub struct Service {
    proc: Proc,
    pub log: PathBuf,
    exited: Option<std::process::ExitStatus>,
}

impl Service {
    pub fn spawn(name: &'static str, cmd: &mut Command, log: PathBuf) -> Self {
        Self {
            proc: Proc::spawn(name, cmd, &log),
            log,
            exited: None,
        }
    }

    /// Sends `KILL`, `TERM` or `INT` without waiting.
    pub fn signal(&mut self, sig: &str) {
        self.proc.signal(sig);
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// The exit status, if the process has exited. Once it has, its pid is forgotten: the
    /// kernel may give it to another process (another test's server), which a later signal or
    /// the kill on drop must not reach.
    pub fn try_exit(&mut self) -> Option<std::process::ExitStatus> {
        if self.exited.is_none() {
            let status = self
                .proc
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())?;
            self.exited = Some(status);
            self.proc.child = None;
        }
        self.exited
    }

    /// Waits up to `deadline` for the process to exit.
    pub async fn wait_exit(
        &mut self,
        deadline: std::time::Duration,
    ) -> Option<std::process::ExitStatus> {
        let start = std::time::Instant::now();
        loop {
            if let Some(s) = self.try_exit() {
                return Some(s);
            }
            if start.elapsed() > deadline {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    /// Resident memory now and its peak so far (`VmRSS`, `VmHWM` from /proc), in KiB.
    pub fn memory_kib(&self) -> Option<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.proc.pid()?)).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        };
        Some((field("VmRSS:")?, field("VmHWM:")?))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
