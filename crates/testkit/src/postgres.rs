//! A real, throwaway PostgreSQL cluster on a free port in a temp dir, tuned for tests (no fsync).
//!
//! `initdb` runs once per machine into a cached template that each test copies (a copy takes
//! milliseconds, initdb a second or two). PostgreSQL refuses to run as root, so when the tests run
//! as root the server runs as the unprivileged user `hookline-pg`, created on first use.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::{find_binary, Proc};

const PG_USER: &str = "hookline-pg";

pub struct Postgres {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    proc: Proc,
    generation: u32,
    durable: bool,
    tls: bool,
}

impl Postgres {
    pub fn start() -> Self {
        Self::start_with(false, None)
    }

    /// With fsync and synchronous commit on, as in production: for benchmarks, not tests.
    pub fn start_durable() -> Self {
        Self::start_with(true, None)
    }

    /// With `ssl=on`, serving `pki`'s server certificate (for `localhost` and `127.0.0.1`).
    pub fn start_with_tls(pki: &crate::tls::TestPki) -> Self {
        Self::start_with(false, Some(pki))
    }

    fn start_with(durable: bool, tls: Option<&crate::tls::TestPki>) -> Self {
        let bin = bin_dir();
        let run_as = running_as_root().then(ensure_pg_user);
        let template = template_dir(&bin, run_as.as_deref());
        let dir = tempfile::Builder::new()
            .prefix("hookline-pg-")
            .tempdir()
            .unwrap();
        chmod(dir.path(), "755");
        let data = dir.path().join("data");
        run(Command::new("cp").arg("-a").arg(&template).arg(&data));
        if let Some(pki) = tls {
            // PostgreSQL wants its key owned by its own user and unreadable by others.
            for (from, to) in [
                (pki.server_cert(), "server.crt"),
                (pki.server_key(), "server.key"),
            ] {
                std::fs::copy(from, data.join(to)).unwrap();
                if let Some(user) = &run_as {
                    run(Command::new("chown").arg(user).arg(data.join(to)));
                }
                chmod(&data.join(to), "600");
            }
        }
        let port = crate::free_port();
        let proc = spawn(&bin, dir.path(), port, 0, durable, tls.is_some());
        let pg = Self {
            port,
            dir,
            bin,
            proc,
            generation: 0,
            durable,
            tls: tls.is_some(),
        };
        pg.wait_ready();
        pg
    }

    /// `postgres://postgres@127.0.0.1:{port}/postgres` (trust auth on loopback).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The URL for `user` with `password`, on the same server and database.
    pub fn url_as(&self, user: &str, password: &str) -> String {
        format!(
            "postgres://{user}:{password}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// From now on `role` must log in over TCP with its password (SCRAM), as in production; other
    /// roles keep trust. Takes effect at the next `SELECT pg_reload_conf()`.
    pub fn require_password(&self, role: &str) {
        let hba = self.dir.path().join("data").join("pg_hba.conf");
        let rest = std::fs::read_to_string(&hba).unwrap();
        let line = format!("host all {role} 127.0.0.1/32 scram-sha-256\n");
        std::fs::write(&hba, line + &rest).unwrap();
    }

    fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            let ok = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "postgres did not become ready on port {} (log in {:?})",
                self.port,
                self.dir.path()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Fast shutdown (SIGINT): connections are closed, as in an orderly outage.
    pub fn stop(&mut self) {
        self.proc.signal("INT");
        self.proc.reap();
    }

    /// Immediate shutdown (SIGQUIT, `pg_ctl stop -m immediate`): no checkpoint, the way a
    /// crashed or fenced-off primary stops.
    pub fn stop_immediately(&mut self) {
        self.proc.signal("QUIT");
        self.proc.reap();
    }

    /// A base backup of this server into `into` (a new directory): `pg_basebackup -X stream`,
    /// with `-R` for a streaming standby's data directory.
    pub fn base_backup(&self, into: &Path, standby: bool) {
        let mut cmd = as_pg_user(&self.bin.join("pg_basebackup"));
        cmd.arg("-D")
            .arg(into)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-X", "stream", "--checkpoint=fast", "--no-sync"]);
        if standby {
            cmd.arg("-R");
        }
        run(&mut cmd);
    }

    /// A streaming standby of this server (`pg_basebackup -R`), hot, on its own free port.
    pub fn standby(&self) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("hookline-pg-standby-")
            .tempdir()
            .unwrap();
        chmod(dir.path(), "777");
        self.base_backup(&dir.path().join("data"), true);
        chmod(dir.path(), "755");
        let port = crate::free_port();
        let proc = spawn(&self.bin, dir.path(), port, 0, self.durable, self.tls);
        let pg = Self {
            port,
            dir,
            bin: self.bin.clone(),
            proc,
            generation: 0,
            durable: self.durable,
            tls: self.tls,
        };
        pg.wait_ready();
        pg
    }

    /// A directory the server's user may write a base backup into (kept with this server).
    pub fn backup_dir(&self, name: &str) -> PathBuf {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        chmod(&dir, "777");
        dir.join("data")
    }

    /// Destroys the data directory of a stopped server and puts `backup` (a `base_backup`) in its
    /// place: the restore of a lost disk. Start it with [`Self::start_again`].
    pub fn restore_from(&mut self, backup: &Path) {
        let data = self.dir.path().join("data");
        std::fs::remove_dir_all(&data).unwrap();
        run(Command::new("cp").arg("-a").arg(backup).arg(&data));
    }

    /// Starts again on the same port and data.
    pub fn start_again(&mut self) {
        self.proc.kill();
        self.generation += 1;
        self.proc = spawn(
            &self.bin,
            self.dir.path(),
            self.port,
            self.generation,
            self.durable,
            self.tls,
        );
        self.wait_ready();
    }
}

fn spawn(bin: &Path, dir: &Path, port: u16, generation: u32, durable: bool, tls: bool) -> Proc {
    let mut cmd = as_pg_user(&bin.join("postgres"));
    cmd.arg("-D")
        .arg(dir.join("data"))
        .args(["-p", &port.to_string()])
        .args(["-c", "listen_addresses=127.0.0.1"])
        .arg("-c")
        .arg(format!(
            "unix_socket_directories={}",
            dir.join("data").display()
        ))
        .args(["-c", "max_connections=100"]);
    if tls {
        cmd.args(["-c", "ssl=on", "-c", "ssl_cert_file=server.crt"])
            .args(["-c", "ssl_key_file=server.key"]);
    }
    if !durable {
        cmd.args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"]);
    }
    Proc::spawn(
        "postgres",
        &mut cmd,
        &dir.join(format!("postgres-{generation}.log")),
    )
}

/// PostgreSQL's binaries: `$HOOKLINE_PG_BIN`, Debian's newest `/usr/lib/postgresql/*/bin`, or PATH.
fn bin_dir() -> PathBuf {
    if let Ok(p) = std::env::var("HOOKLINE_PG_BIN") {
        return PathBuf::from(p);
    }
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    debian.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(d) = debian
        .into_iter()
        .rev()
        .find(|d| d.join("initdb").is_file())
    {
        return d;
    }
    find_binary("initdb", "HOOKLINE_PG_BIN", &[])
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A cluster made by initdb once and copied by every test. Built in a scratch dir and renamed into
/// place, so concurrent test processes never see a half-made template.
fn template_dir(bin: &Path, run_as: Option<&str>) -> PathBuf {
    let version = bin
        .parent()
        .and_then(|p| p.file_name())
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pg".into());
    static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time_in_this_process = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    let root = std::env::temp_dir().join(format!("hookline-pg-template-{version}"));
    let template = root.join("data");
    if template.join("PG_VERSION").is_file() {
        return template;
    }
    std::fs::create_dir_all(&root).unwrap();
    chmod(&root, "755");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let scratch = root.join(format!("scratch-{}-{nanos}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    if let Some(user) = run_as {
        run(Command::new("chown").arg(user).arg(&scratch));
    }
    chmod(&scratch, "700");
    run(as_pg_user(&bin.join("initdb"))
        .arg("-D")
        .arg(&scratch)
        .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
        .args(["--locale=C", "--no-instructions"]));
    if std::fs::rename(&scratch, &template).is_err() {
        // Another process won the race; theirs is as good as ours.
        let _ = std::fs::remove_dir_all(&scratch);
    }
    template
}

fn as_pg_user(program: &Path) -> Command {
    if running_as_root() {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid",
            PG_USER,
            "--regid",
            PG_USER,
            "--clear-groups",
            "--",
        ])
        .arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

fn ensure_pg_user() -> String {
    let exists = || {
        Command::new("id")
            .arg(PG_USER)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if !exists() {
        // May race with another test process; only the outcome matters.
        let _ = Command::new("useradd")
            .args(["--system", "--user-group", "--no-create-home"])
            .args(["--shell", "/usr/sbin/nologin", PG_USER])
            .output();
        assert!(exists(), "could not create the unprivileged user {PG_USER}");
    }
    PG_USER.to_owned()
}

fn chmod(path: &Path, mode: &str) {
    run(Command::new("chmod").arg(mode).arg(path));
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
