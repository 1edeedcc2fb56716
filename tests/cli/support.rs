//! Running the built binary from the repository root.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root")
}

/// A plan with an unknown time zone, an unknown region in a wave and steps not ending at 100.
pub const INVALID_PLAN: &str = "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {name: bad}
spec:
  services: [{name: signin}]
  regions: [{name: jp, timezone: Asia/Tokio}]
  waves:
    - name: asia
      regions: [jpn]
      bake: 10m
  steps: [1, 10, 50]
";

/// Run `meridian ARGS` in the repository root.
pub fn meridian(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meridian")).args(args).current_dir(repo_root()).output().expect("run meridian")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A `meridian run` process; SIGKILLed on drop. `base` is its API's `http://ADDR`.
pub struct RunningMeridian {
    pub child: std::process::Child,
    pub base: String,
    /// What it printed to stderr up to and including its start line.
    pub stderr_head: String,
    /// The lines it prints to stderr after that.
    pub stderr_rest: std::sync::mpsc::Receiver<String>,
}

impl RunningMeridian {
    /// Wait (at most `deadline`) for it to exit by itself: its exit code and what it printed
    /// to stderr after its start line. Fails the test when it is still running.
    pub fn wait_exit(&mut self, deadline: std::time::Duration) -> (Option<i32>, String) {
        let until = std::time::Instant::now() + deadline;
        let mut printed = String::new();
        loop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            match self.stderr_rest.recv_timeout(left) {
                Ok(line) => {
                    printed.push_str(&line);
                    printed.push('\n');
                }
                // Its stderr closed: it is exiting.
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    panic!("meridian run did not exit within {deadline:?}; it printed:\n{printed}")
                }
            }
        }
        (self.child.wait().ok().and_then(|s| s.code()), printed)
    }
}

impl Drop for RunningMeridian {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `meridian run CONFIG --state-dir STATE --listen 127.0.0.1:0 EXTRA...` and wait (up to
/// 30 s) for the line that names the API's address. `Err` carries what it printed when it
/// exited instead.
pub fn spawn_run(config: &Path, state: &Path, extra: &[&str]) -> Result<RunningMeridian, (Option<i32>, String)> {
    spawn_run_on("127.0.0.1:0", config, state, extra)
}

/// [`spawn_run`] with `--listen LISTEN`.
pub fn spawn_run_on(
    listen: &str,
    config: &Path,
    state: &Path,
    extra: &[&str],
) -> Result<RunningMeridian, (Option<i32>, String)> {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .arg("run")
        .arg(config)
        .arg("--state-dir")
        .arg(state)
        .args(["--listen", listen])
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn meridian run");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Keep draining after the start line too: a closed pipe would make its later
        // messages fail.
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut head = String::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                head.push_str(&line);
                head.push('\n');
                // With --log-format json the start line is a JSON object; its message says it.
                let text = serde_json::from_str::<serde_json::Value>(&line)
                    .ok()
                    .and_then(|v| v["message"].as_str().map(str::to_string))
                    .unwrap_or_else(|| line.clone());
                if let Some(addr) = text.split(" API on ").nth(1) {
                    let base = addr.trim().to_string();
                    return Ok(RunningMeridian { child, base, stderr_head: head, stderr_rest: rx });
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                // Its stderr closed: it is exiting.
                let code = child.wait().ok().and_then(|s| s.code());
                return Err((code, head));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err((None, head));
            }
        }
    }
}

/// Run `meridian demo --fast --exit --listen 127.0.0.1:0 --timeout 2m EXTRA...` to its end (at
/// most 150 s, else the test fails): its output, stdout and stderr captured.
pub fn run_demo_fast(extra: &[&std::ffi::OsStr]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["demo", "--fast", "--exit", "--listen", "127.0.0.1:0", "--timeout", "2m"])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn meridian demo");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(150);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().ok();
            panic!("meridian demo --fast did not finish within 150 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}
