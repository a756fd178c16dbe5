//! A real nats-server with JetStream, on a free port, storing in a temp dir. It can be killed and
//! restarted on the same port and store, as fault tests need.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::{find_binary, Proc};

pub struct NatsServer {
    pub port: u16,
    dir: tempfile::TempDir,
    binary: PathBuf,
    proc: Proc,
    extra_args: Vec<String>,
    env: Vec<(String, String)>,
}

impl NatsServer {
    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    pub fn start() -> Self {
        Self::start_with_args(Vec::new())
    }

    /// Starts with extra command-line arguments (e.g. cluster routes).
    pub fn start_with_args(extra_args: Vec<String>) -> Self {
        Self::start_with_env(extra_args, Vec::new())
    }

    /// With extra arguments and environment variables (a configuration file's `$VARIABLES`).
    pub fn start_with_env(extra_args: Vec<String>, env: Vec<(String, String)>) -> Self {
        Self::start_on(crate::free_port(), extra_args, env)
    }

    /// On client port `port`.
    fn start_on(port: u16, extra_args: Vec<String>, env: Vec<(String, String)>) -> Self {
        let binary = find_binary(
            "nats-server",
            "HOOKLINE_NATS_SERVER",
            &[crate::workspace_root().join(".venv/bin")],
        );
        let dir = tempfile::Builder::new()
            .prefix("hookline-nats-")
            .tempdir()
            .unwrap();
        let proc = Self::spawn(&binary, &dir, port, &extra_args, &env, 0);
        let server = Self {
            port,
            dir,
            binary,
            proc,
            extra_args,
            env,
        };
        server.wait_listening();
        server
    }

    fn spawn(
        binary: &PathBuf,
        dir: &tempfile::TempDir,
        port: u16,
        extra: &[String],
        env: &[(String, String)],
        generation: u32,
    ) -> Proc {
        let mut cmd = Command::new(binary);
        cmd.args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.path().join("store"))
            .args(extra)
            .envs(env.iter().map(|(k, v)| (k, v)));
        Proc::spawn(
            "nats-server",
            &mut cmd,
            &dir.path().join(format!("nats-{generation}.log")),
        )
    }

    fn wait_listening(&self) {
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "nats-server did not listen on {} (log in {:?})",
                self.port,
                self.dir.path()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Sends `STOP` or `CONT`: a server that hangs (its connections stay open, nothing is
    /// answered), as a stalled disk or a GC pause would make it.
    /// Returns once the kernel reports the process stopped (`STOP`) or running again (`CONT`).
    pub fn signal(&mut self, sig: &str) {
        self.proc.signal(sig);
        let want_stopped = match sig {
            "STOP" => true,
            "CONT" => false,
            _ => return,
        };
        let Some(pid) = self.pid() else { return };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while stopped(pid) != Some(want_stopped) {
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server {pid} not {} 10 s after SIG{sig}",
                if want_stopped { "stopped" } else { "running" }
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// SIGKILL: no goodbye to clients, as in a crash.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// Starts again on the same port with the same store.
    pub fn restart(&mut self) {
        self.proc.kill();
        let gen = std::fs::read_dir(self.dir.path())
            .map(|d| d.count())
            .unwrap_or(0) as u32;
        self.proc = Self::spawn(
            &self.binary,
            &self.dir,
            self.port,
            &self.extra_args,
            &self.env,
            gen,
        );
        self.wait_listening();
    }
}

/// Three nats-servers on loopback routed into one JetStream cluster (`hookline`), as in
/// production, each with its own store.
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    pub fn start(size: usize) -> Self {
        Self::start_with_args(size, Vec::new())
    }

    /// With extra command-line arguments on every node (e.g. `-c` a configuration file).
    pub fn start_with_args(size: usize, extra: Vec<String>) -> Self {
        // Every node's route and client port at once, held until all are chosen: ports picked
        // one by one could repeat (a client port handed out again as another node's route).
        let held: Vec<std::net::TcpListener> = (0..2 * size)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
            .collect();
        let ports: Vec<u16> = held
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        drop(held);
        let (cluster_ports, client_ports) = ports.split_at(size);
        let routes: Vec<String> = cluster_ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect();
        let nodes = cluster_ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                let mut args = vec![
                    "--name".into(),
                    format!("n{}", i + 1),
                    "--cluster_name".into(),
                    "hookline".into(),
                    "--cluster".into(),
                    format!("nats://127.0.0.1:{port}"),
                    "--routes".into(),
                    routes.join(","),
                ];
                args.extend(extra.iter().cloned());
                NatsServer::start_on(client_ports[i], args, Vec::new())
            })
            .collect();
        Self { nodes }
    }

    /// Every node's client URL, comma-separated (what NATS_URL takes).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.url())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The node named `name` (`n1`, `n2`, …).
    pub fn node_mut(&mut self, name: &str) -> &mut NatsServer {
        let i: usize = name
            .trim_start_matches('n')
            .parse()
            .expect("a node name like n2");
        &mut self.nodes[i - 1]
    }
}

/// Whether process `pid` is stopped by a signal (state `T` in /proc/PID/stat); `None` if unknown.
fn stopped(pid: u32) -> Option<bool> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "PID (comm) STATE ...": the state follows the last ')' (comm may hold spaces or parens).
    let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
    Some(state == 'T')
}
