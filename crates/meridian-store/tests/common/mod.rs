//! Spawning `store-crash-writer` and waiting on what it prints, always with a deadline.

#![allow(dead_code)] // each test binary uses a part

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

pub const DEADLINE: Duration = Duration::from_secs(60);

pub struct Writer {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Receiver<String>,
}

impl Writer {
    pub fn spawn(mode: &str, dir: &Path) -> Writer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_store-crash-writer"))
            .arg(mode)
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn store-crash-writer");
        let stdout = child.stdout.take().unwrap();
        let mut stderr_pipe = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (etx, stderr) = mpsc::channel();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr_pipe.read_to_string(&mut s);
            let _ = etx.send(s);
        });
        let stdin = child.stdin.take();
        Writer { child, stdin, lines, stderr }
    }

    /// The next stdout line, or `None` at end of output; panics past the deadline.
    pub fn next_line(&self, deadline: Instant) -> Option<String> {
        match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => panic!("store-crash-writer printed nothing before the deadline"),
        }
    }

    /// Read lines until one starts with `prefix`; panics at end of output or past the deadline.
    pub fn wait_for(&self, prefix: &str, deadline: Instant) -> String {
        loop {
            match self.next_line(deadline) {
                Some(line) if line.starts_with(prefix) => return line,
                Some(_) => continue,
                None => panic!(
                    "store-crash-writer exited before printing {prefix:?}; stderr: {}",
                    self.stderr_text(deadline)
                ),
            }
        }
    }

    /// Everything the child wrote to stderr (available once it has exited).
    pub fn stderr_text(&self, deadline: Instant) -> String {
        self.stderr.recv_timeout(deadline.saturating_duration_since(Instant::now())).unwrap_or_default()
    }

    /// SIGKILL and reap.
    pub fn kill(mut self) -> ExitStatus {
        self.child.kill().expect("kill store-crash-writer");
        self.child.wait().expect("reap store-crash-writer")
    }

    /// SIGKILL and reap, then every line it printed before it died that was not read yet.
    pub fn kill_and_drain(mut self, deadline: Instant) -> (ExitStatus, Vec<String>) {
        self.child.kill().expect("kill store-crash-writer");
        let status = self.child.wait().expect("reap store-crash-writer");
        let mut rest = Vec::new();
        while let Some(line) = self.next_line(deadline) {
            rest.push(line);
        }
        (status, rest)
    }

    /// Wait for the child to exit on its own: its stdout closing is the signal, bounded.
    pub fn wait_exit(mut self, deadline: Instant) -> (ExitStatus, String) {
        drop(self.stdin.take());
        while self.next_line(deadline).is_some() {}
        let status = self.child.wait().expect("reap store-crash-writer");
        let stderr = self.stderr_text(deadline);
        (status, stderr)
    }
}
