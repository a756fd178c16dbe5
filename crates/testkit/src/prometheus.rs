//! A real Prometheus (Debian's package) scraping the given targets every 500 ms, on a free port
//! with its TSDB in a temp dir, queried over its HTTP API like Grafana does.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::process::{find_binary, Proc};

pub struct Prometheus {
    pub port: u16,
    _dir: tempfile::TempDir,
    _proc: Proc,
    http: reqwest::Client,
}

impl Prometheus {
    /// `jobs`: (job name, `host:port` targets); `rule_files` are loaded as they are.
    pub async fn start(jobs: &[(&str, Vec<String>)], rule_files: &[PathBuf]) -> Self {
        let binary = find_binary(
            "prometheus",
            "HOOKLINE_PROMETHEUS",
            &[PathBuf::from("/usr/bin")],
        );
        let dir = tempfile::Builder::new()
            .prefix("hookline-prom-")
            .tempdir()
            .unwrap();
        let mut yaml =
            String::from("global:\n  scrape_interval: 500ms\n  evaluation_interval: 1s\n");
        yaml.push_str("rule_files:\n");
        for f in rule_files {
            yaml.push_str(&format!("  - {}\n", f.display()));
        }
        yaml.push_str("scrape_configs:\n");
        for (job, targets) in jobs {
            let list: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
            yaml.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n",
                list.join(", ")
            ));
        }
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, yaml).unwrap();
        let port = crate::free_port();
        let mut cmd = Command::new(binary);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        let proc = Proc::spawn("prometheus", &mut cmd, &dir.path().join("prometheus.log"));
        let prom = Self {
            port,
            _dir: dir,
            _proc: proc,
            http: reqwest::Client::new(),
        };
        let p = &prom;
        crate::wait_until("prometheus ready", Duration::from_secs(30), || async move {
            matches!(p.http.get(p.url("/-/ready")).send().await, Ok(r) if r.status() == 200)
        })
        .await;
        prom
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// An instant query's `data.result` (an empty array when the query has no data).
    pub async fn query(&self, expr: &str) -> serde_json::Value {
        let r: serde_json::Value = self
            .http
            .get(self.url("/api/v1/query"))
            .query(&[("query", expr)])
            .send()
            .await
            .expect("prometheus answers")
            .json()
            .await
            .expect("prometheus answers JSON");
        assert_eq!(r["status"], "success", "query {expr:?} failed: {r}");
        r["data"]["result"].clone()
    }

    /// GET a JSON API path (e.g. `/api/v1/rules`).
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}
