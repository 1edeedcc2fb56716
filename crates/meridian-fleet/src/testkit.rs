//! A real Prometheus server for tests (feature `testkit`): Debian's `prometheus` binary on a
//! free 127.0.0.1 port with its own temporary storage, scraping the targets a test names every
//! second, plus `eventually` to wait on conditions with deadlines.
//!
//! ```text
//!  test ──ScrapeTarget──> Prometheus::start ──spawn──> /usr/bin/prometheus (127.0.0.1:PORT)
//!    │                         │ waits for /-/ready             │ scrapes every 1 s
//!    │ query / wait_scraping   v                                v
//!    └────────────────> Prometheus (handle) ── stop / start_again / kill on drop
//! ```
//!
//! Test support, not production code: a harness that cannot do its job panics with the
//! reason, so the test fails loudly. It never skips: without the binary it panics and says to
//! run `scripts/test`, which installs it. It owns the process it starts and nothing else.
//!
//! Timing, measured with Prometheus 2.42: the server is ready about 0.1 s after the start, but
//! the first scrape comes 5 to 6 s after it, whatever the configuration. Prometheus hands
//! discovered targets (static ones too) to the scrape manager on a fixed 5 s tick, and the
//! hidden `--scrape.discovery-reload-interval` flag is clamped to at least 5 s; the scrape
//! offset inside the interval adds up to one interval. A 1 s interval keeps that last part
//! short; `wait_scraping` waits for the rest explicitly, and a test can start Prometheus
//! first and do its other setup meanwhile. `--storage.tsdb.min-block-duration` is left at its
//! default: a test's data never outlives the in-memory head block, and a short block would
//! only add compactions.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test support: a harness that cannot set up panics the test that uses it"
)]

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::FleetHandle;

/// How often every target is scraped and rules are evaluated.
pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);
/// How long `start` waits for `/-/ready`.
const READY_DEADLINE: Duration = Duration::from_secs(30);
/// How long `stop` waits for a graceful exit before it kills.
const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// The `prometheus` binary: on PATH, or Debian's /usr/bin/prometheus. Panics (never skips)
/// when there is none.
pub fn prometheus_binary() -> PathBuf {
    find_binary("prometheus")
}

/// `promtool`, from the same package.
pub fn promtool_binary() -> PathBuf {
    find_binary("promtool")
}

fn find_binary(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed (looked on PATH and in /usr/bin); run scripts/test, which installs \
                 Debian's prometheus package when it is missing (or scripts/install-test-deps alone)"
            )
        })
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// Poll `attempt` every 100 ms until it returns `Ok`, at most `deadline` from now; then fail
/// the test with `what` and the last reason.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let until = Instant::now() + deadline;
    loop {
        match attempt().await {
            Ok(t) => return t,
            Err(last) if Instant::now() >= until => {
                panic!("timed out after {deadline:?} waiting for {what}; last: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// One scrape job: an address, a path, and labels added to every series scraped from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeTarget {
    /// The job name; unique within one server.
    pub job: String,
    /// `host:port`.
    pub address: String,
    pub metrics_path: String,
    pub labels: BTreeMap<String, String>,
}

impl ScrapeTarget {
    /// `http://{address}/metrics` as job `job`.
    pub fn new(job: impl Into<String>, address: impl ToString) -> Self {
        ScrapeTarget {
            job: job.into(),
            address: address.to_string(),
            metrics_path: "/metrics".into(),
            labels: BTreeMap::new(),
        }
    }

    /// A simulated fleet's `/metrics` (every unit, labelled `region` and `service`), as job `fleet`.
    pub fn fleet(fleet: &FleetHandle) -> Self {
        ScrapeTarget::new("fleet", fleet.addr())
    }

    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        self.metrics_path = path.into();
        self
    }

    pub fn with_label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(name.into(), value.into());
        self
    }
}

/// One series of an instant-vector query result.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A Prometheus server this test started. Killed (SIGKILL) when dropped; its storage goes
/// with it.
pub struct Prometheus {
    child: Option<Child>,
    port: u16,
    /// Holds `prometheus.yml`, `prometheus.log` and the `data` storage; removed on drop.
    dir: tempfile::TempDir,
    jobs: Vec<String>,
    client: reqwest::Client,
    /// When the current process was started, for `wait_scraping`.
    started_at: DateTime<Utc>,
}

impl Prometheus {
    /// Start a server scraping `targets` every second and wait until it is ready.
    pub async fn start(targets: Vec<ScrapeTarget>) -> Prometheus {
        let dir = tempfile::Builder::new().prefix("meridian-prometheus-").tempdir().expect("create a temp dir");
        std::fs::write(dir.path().join("prometheus.yml"), config(&targets)).expect("write prometheus.yml");
        let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().expect("client");
        let jobs = targets.iter().map(|t| t.job.clone()).collect();
        let mut prometheus = Prometheus { child: None, port: 0, dir, jobs, client, started_at: Utc::now() };
        let mut last_failure = String::new();
        // A port found free can be taken before Prometheus binds it: try a few.
        for _ in 0..3 {
            prometheus.port = free_port();
            match prometheus.spawn_and_wait_ready().await {
                Ok(()) => return prometheus,
                Err(e) => last_failure = e,
            }
        }
        panic!("prometheus did not start: {last_failure}");
    }

    /// Start it again after `stop` or `kill`: same port, configuration and storage, so the
    /// series scraped before are still there and clients keep their URL.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "prometheus is still running; stop it first");
        if let Err(e) = self.spawn_and_wait_ready().await {
            panic!("prometheus did not start again on port {}: {e}", self.port);
        }
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The storage directory (`--storage.tsdb.path`).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Shut down gracefully (`POST /-/quit`, as an operator would), killing it if it has not
    /// exited within 10 s. Returns once the process is gone and the port is closed.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let quit = self.client.post(format!("{}/-/quit", self.url())).send().await;
        let until = Instant::now() + STOP_DEADLINE;
        while quit.is_ok() && Instant::now() < until {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Kill it now (SIGKILL), as a crash would, and reap it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Wait until every target has been scraped by the current process (an `up` sample stamped
    /// after its start): 5 to 6 s after a start, see the module docs.
    pub async fn wait_scraping(&self, deadline: Duration) {
        let since = self.started_at.timestamp_millis() as f64 / 1000.0;
        eventually("prometheus to scrape every target", deadline, || async {
            let series = self.query("timestamp(up)").await?;
            let fresh: Vec<&str> = series
                .iter()
                .filter(|s| s.value >= since)
                .filter_map(|s| s.labels.get("job").map(String::as_str))
                .collect();
            match self.jobs.iter().find(|job| !fresh.contains(&job.as_str())) {
                None => Ok(()),
                Some(job) => Err(format!("job {job} not scraped yet: {series:?}")),
            }
        })
        .await
    }

    /// Run an instant query now; `Err` with the reason when it fails or is not a vector.
    pub async fn query(&self, promql: &str) -> Result<Vec<Series>, String> {
        let resp = self
            .client
            .post(format!("{}/api/v1/query", self.url()))
            .form(&[("query", promql)])
            .send()
            .await
            .map_err(|e| format!("query {promql:?}: {e}"))?;
        let status = resp.status();
        let body: Value = resp.json().await.map_err(|e| format!("query {promql:?}: {status}: {e}"))?;
        if body["status"] != "success" || body["data"]["resultType"] != "vector" {
            return Err(format!("query {promql:?}: {status}: {body}"));
        }
        let result = body["data"]["result"].as_array().cloned().unwrap_or_default();
        result
            .iter()
            .map(|s| {
                let labels = s["metric"]
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
                    .unwrap_or_default();
                let value = s["value"][1].as_str().and_then(|v| v.parse().ok()).ok_or(format!("bad sample {s}"))?;
                Ok(Series { labels, value })
            })
            .collect()
    }

    /// The last lines of its log (both runs, after a `start_again`), for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    async fn spawn_and_wait_ready(&mut self) -> Result<(), String> {
        let binary = prometheus_binary();
        let dir = self.dir.path();
        let log = append(&dir.join("prometheus.log"));
        self.started_at = Utc::now();
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", self.storage_dir().display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            // `stop` asks it to quit over HTTP, the way a service manager's stop would.
            .arg("--web.enable-lifecycle")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start {}: {e}", binary.display()));
        self.child = Some(child);
        let ready = format!("{}/-/ready", self.url());
        let until = Instant::now() + READY_DEADLINE;
        while Instant::now() < until {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                return Err(format!("prometheus exited with {status}; log:\n{}", self.log_tail()));
            }
            if let Ok(r) = self.client.get(&ready).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill();
        Err(format!("not ready after {READY_DEADLINE:?}; log:\n{}", self.log_tail()))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `prometheus.yml` as JSON (a subset of YAML), so no label value needs YAML quoting.
fn config(targets: &[ScrapeTarget]) -> String {
    let interval = format!("{}ms", SCRAPE_INTERVAL.as_millis());
    let jobs: Vec<Value> = targets
        .iter()
        .map(|t| {
            json!({
                "job_name": t.job,
                "metrics_path": t.metrics_path,
                "static_configs": [{ "targets": [t.address], "labels": t.labels }],
            })
        })
        .collect();
    let config = json!({
        "global": { "scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval },
        "scrape_configs": jobs,
    });
    config.to_string()
}

fn append(path: &Path) -> File {
    OpenOptions::new().create(true).append(true).open(path).expect("open prometheus.log")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_scrapes_every_target_every_second_with_its_labels() {
        let config: Value = serde_json::from_str(&config(&[
            ScrapeTarget::new("fleet", "127.0.0.1:9"),
            ScrapeTarget::new("jp", "127.0.0.1:8").with_path("/metrics/jp").with_label("region", "jp'\""),
        ]))
        .unwrap();
        assert_eq!(config["global"]["scrape_interval"], "1000ms");
        assert_eq!(config["global"]["evaluation_interval"], "1000ms");
        assert_eq!(config["scrape_configs"][0]["metrics_path"], "/metrics");
        assert_eq!(config["scrape_configs"][1]["static_configs"][0]["targets"][0], "127.0.0.1:8");
        assert_eq!(config["scrape_configs"][1]["static_configs"][0]["labels"]["region"], "jp'\"");
    }
}
