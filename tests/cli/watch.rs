//! `meridian status PLAN --watch`: a live grid, a frame per change off a terminal, colour only
//! when asked for there.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use crate::support::{meridian, spawn_run, stderr};

const PLAN: &str = "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {name: watched}
spec:
  services: [{name: web}, {name: api}]
  regions: [{name: us}, {name: eu, approvals: [eu-go]}]
  waves:
    - {name: canary, regions: [us]}
    - {name: rest, regions: [eu]}
  steps: [50, 100]
  stepBake: 1s
  actuator: {log: {}}
";

/// `meridian status watched --watch ...` with its stdout lines on a channel; killed on drop.
struct Watching {
    child: Child,
    lines: Receiver<String>,
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn watch(base: &str, extra: &[&str]) -> Watching {
    let mut child = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["status", "watched", "--watch", "--interval", "200ms", "--server", base])
        .args(extra)
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Watching { child, lines }
}

/// Read lines until one satisfies `ok` (at most `deadline`); every line read, in order.
fn read_until(w: &Watching, what: &str, deadline: Duration, ok: impl Fn(&str) -> bool) -> Vec<String> {
    let until = Instant::now() + deadline;
    let mut seen = Vec::new();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match w.lines.recv_timeout(left) {
            Ok(line) => {
                let done = ok(&line);
                seen.push(line);
                if done {
                    return seen;
                }
            }
            Err(_) => panic!("no line with {what} within {deadline:?}; got:\n{}", seen.join("\n")),
        }
    }
}

/// Every line that arrives within `window`.
fn drain(w: &Watching, window: Duration) -> Vec<String> {
    let until = Instant::now() + window;
    let mut seen = Vec::new();
    while let Ok(line) = w.lines.recv_timeout(until.saturating_duration_since(Instant::now())) {
        seen.push(line);
    }
    seen
}

#[test]
fn the_grid_shows_each_unit_and_what_it_waits_on_a_frame_per_change_and_no_colour_in_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir(&config).unwrap();
    std::fs::write(config.join("plan.yaml"), PLAN).unwrap();
    let run = spawn_run(&config, &dir.path().join("state"), &["--no-auth"]).expect("meridian run starts");
    let w = watch(&run.base, &[]);
    let waiting = read_until(&w, "eu waiting for eu-go", Duration::from_secs(60), |l| {
        l.contains("eu") && l.matches("■ 0% approval eu-go").count() == 2
    });
    let header = waiting.iter().find(|l| l.starts_with("WAVE")).expect("a grid header");
    assert!(header.split_whitespace().eq(["WAVE", "REGION", "WEB", "API"]), "{header}");
    assert!(waiting.iter().any(|l| l.contains("us") && l.matches("✓ 100%").count() == 2), "{waiting:#?}");
    let granted = meridian(&["approve", "eu-go", "--plan", "watched", "--reference", "CHG-1", "--server", &run.base]);
    assert!(granted.status.success(), "{}", stderr(&granted));
    let done = read_until(&w, "eu enabled", Duration::from_secs(60), |l| {
        l.split_whitespace().any(|t| t == "eu") && l.matches("✓ 100%").count() == 2
    });
    // The frame that showed eu enabled may already say the rollout is complete.
    let settled = match done.iter().rev().take(8).any(|l| l.contains("rest complete")) {
        true => Vec::new(),
        false => read_until(&w, "the rollout complete", Duration::from_secs(60), |l| l.contains("rest complete")),
    };
    // The rest of that frame.
    let rest = drain(&w, Duration::from_millis(500));
    let all: Vec<String> = waiting.into_iter().chain(done).chain(settled).chain(rest).collect();
    assert!(all.iter().all(|l| !l.contains('\x1b')), "colour in a pipe: {all:#?}");
    // A frame per change, not per poll: the settled frame is not repeated while nothing moves.
    let more = drain(&w, Duration::from_millis(1500));
    assert!(more.is_empty(), "frames repeated without a change: {more:#?}");
}

#[test]
fn colour_is_used_when_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir(&config).unwrap();
    std::fs::write(config.join("plan.yaml"), PLAN).unwrap();
    let run = spawn_run(&config, &dir.path().join("state"), &["--no-auth"]).expect("meridian run starts");
    let w = watch(&run.base, &["--color", "always"]);
    read_until(&w, "a green enabled cell", Duration::from_secs(60), |l| l.contains("\x1b[32m✓ 100%\x1b[0m"));
}
