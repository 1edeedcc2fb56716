//! `meridian bench fleet --plans N --regions R --services S`: how the real controller copes
//! with a large estate, measured from outside as an operator would see it.
//!
//! It writes N plans of R regions x S services into a temporary directory (dry-run `log`
//! actuator, no health checks, a one-region canary wave, hour-long step and wave bakes, so
//! that after the first steps nothing is due for an hour), starts `meridian run` on them as a
//! child process (a temporary state dir, `127.0.0.1:0`, `--no-auth`), and measures:
//!
//! - cold start to `/readyz` 200, and to every canary unit actuated: every canary unit
//!   progressing and as many successful actuations as canary units, read from `/metrics`
//!   (polled every 200 ms; the default set is small, so the poll costs little);
//! - after that burst, the time until the controller is quiet: the first 5 s window in which
//!   it used under 5 % of a core (`utime + stime` of `/proc/PID/stat`, sampled every 200 ms);
//! - its resident memory (`VmRSS`, `VmHWM` of `/proc/PID/status`) once quiet;
//! - its CPU over an idle window, when nothing is due (no request is sent meanwhile);
//! - two scrapes of `/metrics`: the time of the slower one, its size and series, and the
//!   memory after them;
//! - restart to ready: SIGKILL, start again on the same state dir, until `/readyz` is 200.
//!
//! It prints the figures as a table, or as JSON (`-o json`). A measurement, not a test: it
//! judges nothing. Linux only (it reads `/proc`). Exit codes: 0 measured, 1 the controller
//! failed (its last lines are printed), 3 usage.

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use meridian_core::duration::Span;
use serde::Serialize;

use super::Format;

/// A window in which the controller used less than [`QUIET_SHARE`] of a core is quiet.
const QUIET_WINDOW: Duration = Duration::from_secs(5);
const QUIET_SHARE: f64 = 0.05;
/// How often `/proc` is sampled, and `/metrics` polled while the burst runs.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);
const MIB: f64 = 1024.0 * 1024.0;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run `meridian run` on a generated fleet of plans and measure start, burst, quiet,
    /// memory, /metrics, idle CPU and restart (Linux).
    Fleet(FleetArgs),
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Exit codes: 0 measured, 1 the controller failed or timed out, 3 usage")]
pub struct FleetArgs {
    /// How many plans.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub plans: u32,
    /// Regions per plan (the first is the canary wave, the rest one wave after it).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub regions: u32,
    /// Services per plan, independent of each other.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub services: u32,
    /// The `meridian` binary to measure (default: this one), e.g. an older build to compare.
    #[arg(long, value_name = "PATH")]
    pub controller: Option<PathBuf>,
    /// How long the idle CPU is measured, once the controller is quiet.
    #[arg(long, default_value = "20s")]
    pub idle_window: Span,
    /// Give up waiting for the controller to turn quiet after this long (the figure is then
    /// reported as never).
    #[arg(long, default_value = "60s")]
    pub quiet_timeout: Span,
    /// Give up (exit 1) when the controller is not ready, or has not actuated every canary
    /// unit, this long after it started.
    #[arg(long, default_value = "10m")]
    pub timeout: Span,
    /// Keep the temporary directory (plans, state, the controller's log) and say where it is.
    #[arg(long)]
    pub keep: bool,
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub format: Format,
}

/// Every figure, with its unit in its name.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    pub plans: u32,
    pub regions: u32,
    pub services: u32,
    pub units: u64,
    pub canary_units: u64,
    /// The binary measured.
    pub controller: String,
    /// CPUs this machine offers.
    pub cpus: usize,
    /// Start of the process until `/readyz` answered 200.
    pub ready_ms: f64,
    /// Start of the process until every canary unit was actuated.
    pub actuated_ms: f64,
    /// After every canary unit was actuated, until the start of the first 5 s window under
    /// 5 % of a core; `None`: not within `--quiet-timeout`.
    pub quiet_after_ms: Option<f64>,
    pub quiet_timeout_s: f64,
    /// Resident memory once quiet (or at the quiet timeout).
    pub rss_after_start_mib: f64,
    /// The highest resident memory until then.
    pub peak_rss_after_start_mib: f64,
    /// CPU used over the idle window, in percent of one core.
    pub idle_cpu_percent: f64,
    pub idle_window_s: f64,
    /// The slower of two scrapes of `/metrics`.
    pub scrape_ms: f64,
    pub scrape_bytes: usize,
    pub scrape_series: usize,
    /// Resident memory after the two scrapes.
    pub rss_after_scrapes_mib: f64,
    /// The highest resident memory of the whole first run.
    pub peak_rss_mib: f64,
    /// SIGKILL, then a start on the same state dir until `/readyz` answered 200.
    pub restart_ready_ms: f64,
}

pub fn run(command: &Command) -> i32 {
    match command {
        Command::Fleet(args) => fleet(args),
    }
}

fn fleet(args: &FleetArgs) -> i32 {
    if !Path::new("/proc/self/stat").exists() {
        eprintln!("meridian bench fleet: needs Linux's /proc to read the controller's CPU and memory");
        return crate::exit::USAGE;
    }
    let controller = match &args.controller {
        Some(path) => path.clone(),
        None => match std::env::current_exe() {
            Ok(path) => path,
            Err(e) => {
                eprintln!("meridian bench fleet: cannot find this binary ({e}); give --controller PATH");
                return crate::exit::USAGE;
            }
        },
    };
    if !controller.is_file() {
        eprintln!("meridian bench fleet: --controller {}: no such file", controller.display());
        return crate::exit::USAGE;
    }
    let dir = match tempfile::Builder::new().prefix("meridian-bench-").tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("meridian bench fleet: cannot make a temporary directory: {e}");
            return crate::exit::FAILED;
        }
    };
    let result = measure(args, &controller, dir.path());
    if args.keep {
        let kept = dir.keep();
        eprintln!("meridian bench fleet: plans, state and the controller's log kept in {}", kept.display());
    }
    match result {
        Ok(figures) => {
            match args.format {
                Format::Json | Format::Yaml => crate::output::data(args.format, &figures),
                Format::Text | Format::Wide => print!("{}", table(&figures)),
            }
            crate::exit::OK
        }
        Err(e) => {
            eprintln!("meridian bench fleet: {e}");
            crate::exit::FAILED
        }
    }
}

fn measure(args: &FleetArgs, controller: &Path, dir: &Path) -> Result<Figures, String> {
    let plans = dir.join("plans");
    write_fleet(&plans, args.plans, args.regions, args.services)
        .map_err(|e| format!("cannot write the plans into {}: {e}", plans.display()))?;
    let state = dir.join("state");
    let log = dir.join("controller.log");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    // A connection per request: between requests nobody drives this runtime, so a pooled
    // connection would not notice the server closing it.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let timeout = Duration::from_millis(args.timeout.as_millis());
    let canary_units = u64::from(args.plans) * u64::from(args.services);

    // Cold start, ready, and the burst of first steps.
    let started = Instant::now();
    let mut first = Controller::start(controller, &plans, &state, &log)?;
    first.wait_ready(&runtime, &http, started, timeout)?;
    let ready = started.elapsed();
    let mut usage = Usage::new(first.pid())?;
    loop {
        let page = first.get(&runtime, &http, "/metrics")?;
        if all_actuated(&page, canary_units) {
            break;
        }
        if started.elapsed() > timeout {
            return Err(format!("not every canary unit was actuated within {}; see {}", args.timeout, log.display()));
        }
        first.check_alive()?;
        usage.sample()?;
        std::thread::sleep(SAMPLE_EVERY);
    }
    let actuated_at = Instant::now();
    let actuated = started.elapsed();

    // Quiet: the first 5 s window under 5 % of a core, measured without asking anything.
    let quiet_timeout = Duration::from_millis(args.quiet_timeout.as_millis());
    let quiet_after = loop {
        let now = usage.sample()?;
        if let Some(start) = usage.quiet_since(actuated_at) {
            break Some(start.saturating_duration_since(actuated_at));
        }
        if now.duration_since(actuated_at) > quiet_timeout + QUIET_WINDOW {
            break None;
        }
        first.check_alive()?;
        std::thread::sleep(SAMPLE_EVERY);
    };
    let (rss_after_start, peak_after_start) = memory(first.pid())?;

    // Idle: nothing due, nothing asked.
    let idle_window = Duration::from_millis(args.idle_window.as_millis()).max(SAMPLE_EVERY);
    let idle_from = usage.sample()?;
    let idle_ticks = usage.ticks_at(idle_from);
    std::thread::sleep(idle_window);
    first.check_alive()?;
    let idle_to = usage.sample()?;
    let idle_cpu = usage.share(idle_ticks, usage.ticks_at(idle_to), idle_to.duration_since(idle_from));

    // Two scrapes of /metrics.
    let mut scrape = Duration::ZERO;
    let mut page = String::new();
    for _ in 0..2 {
        let at = Instant::now();
        page = first.get(&runtime, &http, "/metrics")?;
        scrape = scrape.max(at.elapsed());
    }
    let (rss_after_scrapes, peak) = memory(first.pid())?;

    // Restart to ready after SIGKILL.
    first.kill();
    let restarted = Instant::now();
    let mut second = Controller::start(controller, &plans, &state, &log)?;
    second.wait_ready(&runtime, &http, restarted, timeout)?;
    let restart_ready = restarted.elapsed();
    second.stop();

    Ok(Figures {
        plans: args.plans,
        regions: args.regions,
        services: args.services,
        units: canary_units * u64::from(args.regions),
        canary_units,
        controller: controller.display().to_string(),
        cpus: std::thread::available_parallelism().map_or(1, usize::from),
        ready_ms: millis(ready),
        actuated_ms: millis(actuated),
        quiet_after_ms: quiet_after.map(millis),
        quiet_timeout_s: quiet_timeout.as_secs_f64(),
        rss_after_start_mib: rss_after_start,
        peak_rss_after_start_mib: peak_after_start,
        idle_cpu_percent: idle_cpu * 100.0,
        idle_window_s: idle_to.duration_since(idle_from).as_secs_f64(),
        scrape_ms: millis(scrape),
        scrape_bytes: page.len(),
        scrape_series: series(&page),
        rss_after_scrapes_mib: rss_after_scrapes,
        peak_rss_mib: peak,
        restart_ready_ms: millis(restart_ready),
    })
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// The fleet's plan files: `fleet-NNNN.yaml` under `dir`.
pub fn write_fleet(dir: &Path, plans: u32, regions: u32, services: u32) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for p in 0..plans {
        let name = format!("fleet-{p:04}");
        std::fs::write(dir.join(format!("{name}.yaml")), fleet_plan(&name, regions, services))?;
    }
    Ok(())
}

/// One plan of the fleet: `regions` regions x `services` independent services; the first
/// region is the canary wave, the others one wave after it; steps held an hour each.
pub fn fleet_plan(name: &str, regions: u32, services: u32) -> String {
    let region_names: Vec<String> = (0..regions).map(|r| format!("region-{r:02}")).collect();
    let services: Vec<String> = (0..services).map(|s| format!("{{name: svc-{s}}}")).collect();
    let regions_list: Vec<String> = region_names.iter().map(|r| format!("{{name: {r}}}")).collect();
    let mut waves = format!("    - {{name: canary, regions: [{}], bake: 1h}}\n", region_names[0]);
    if region_names.len() > 1 {
        waves.push_str(&format!("    - {{name: rest, regions: [{}], bake: 1h}}\n", region_names[1..].join(", ")));
    }
    format!(
        "apiVersion: meridian.dev/v1alpha1\nkind: RolloutPlan\nmetadata: {{name: {name}}}\nspec:\n  services: [{}]\n  \
         regions: [{}]\n  waves:\n{waves}  steps: [10, 50, 100]\n  stepBake: 1h\n  actuator: {{log: {{}}}}\n",
        services.join(", "),
        regions_list.join(", ")
    )
}

/// Every canary unit progressing, and at least as many successful actuations as canary units
/// (each one's first step; nothing else moves at the start), as `/metrics` says.
fn all_actuated(page: &str, canary_units: u64) -> bool {
    let mut progressing = 0.0;
    let mut actuated = 0.0;
    for line in page.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let value: f64 = value.parse().unwrap_or(0.0);
        if series.starts_with("meridian_units{")
            && series.contains(r#"wave="canary""#)
            && series.contains(r#"phase="progressing""#)
        {
            progressing += value;
        } else if series.starts_with("meridian_actuation_duration_seconds_count{") && series.contains(r#"result="ok""#)
        {
            actuated += value;
        }
    }
    progressing >= canary_units as f64 && actuated >= canary_units as f64
}

/// Series on a `/metrics` page: lines that are neither comments nor blank.
fn series(page: &str) -> usize {
    page.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).count()
}

/// `VmRSS` and `VmHWM` of `pid`, in MiB.
fn memory(pid: u32) -> Result<(f64, f64), String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|kib| (kib * 1024.0 / MIB * 10.0).round() / 10.0)
            .ok_or_else(|| format!("/proc/{pid}/status has no {name}"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU time of a process (user + system, every thread), sampled over time.
struct Usage {
    pid: u32,
    ticks_per_second: f64,
    samples: VecDeque<(Instant, u64)>,
}

impl Usage {
    fn new(pid: u32) -> Result<Self, String> {
        // SAFETY: sysconf only reads a configuration value.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let mut usage =
            Usage { pid, ticks_per_second: if ticks > 0 { ticks as f64 } else { 100.0 }, samples: VecDeque::new() };
        usage.sample()?;
        Ok(usage)
    }

    /// Take a sample now; returns its time.
    fn sample(&mut self) -> Result<Instant, String> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .map_err(|e| format!("cannot read /proc/{}/stat: {e}", self.pid))?;
        let ticks = cpu_ticks(&stat).ok_or_else(|| format!("cannot read the CPU times in /proc/{}/stat", self.pid))?;
        let now = Instant::now();
        self.samples.push_back((now, ticks));
        Ok(now)
    }

    fn ticks_at(&self, at: Instant) -> u64 {
        self.samples.iter().rev().find(|(t, _)| *t <= at).map_or(0, |(_, ticks)| *ticks)
    }

    /// The share of one core used between two readings `over` apart.
    fn share(&self, from: u64, to: u64, over: Duration) -> f64 {
        to.saturating_sub(from) as f64 / self.ticks_per_second / over.as_secs_f64().max(1e-9)
    }

    /// The start of the first window of [`QUIET_WINDOW`] after `after` in which the process
    /// used less than [`QUIET_SHARE`] of a core, if the samples show one yet.
    fn quiet_since(&self, after: Instant) -> Option<Instant> {
        let samples: Vec<&(Instant, u64)> = self.samples.iter().filter(|(t, _)| *t >= after).collect();
        for (i, (start, start_ticks)) in samples.iter().enumerate() {
            let end = samples[i..].iter().find(|(t, _)| t.duration_since(*start) >= QUIET_WINDOW)?;
            if self.share(*start_ticks, end.1, end.0.duration_since(*start)) < QUIET_SHARE {
                return Some(*start);
            }
        }
        None
    }
}

/// `utime + stime` from a `/proc/PID/stat` line (fields 14 and 15; the name in parentheses
/// may hold spaces, so fields are counted after its closing one).
fn cpu_ticks(stat: &str) -> Option<u64> {
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// A `meridian run` child: its stderr goes to the log file; its API address is read from its
/// start line. Killed on drop.
struct Controller {
    child: Child,
    base: String,
    /// Its last lines, for the error when it fails.
    tail: std::sync::Arc<std::sync::Mutex<VecDeque<String>>>,
}

impl Controller {
    fn start(binary: &Path, plans: &Path, state: &Path, log: &Path) -> Result<Self, String> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("cannot write {}: {e}", log.display()))?;
        let mut child = std::process::Command::new(binary)
            .arg("run")
            .arg(plans)
            .arg("--state-dir")
            .arg(state)
            .args(["--listen", "127.0.0.1:0", "--no-auth"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {} run: {e}", binary.display()))?;
        let stderr = child.stderr.take().ok_or("the controller's stderr is missing")?;
        let tail = std::sync::Arc::new(std::sync::Mutex::new(VecDeque::new()));
        let (tx, rx) = mpsc::channel();
        let kept = tail.clone();
        std::thread::spawn(move || {
            // Drain to the end: a closed pipe would make the controller's later lines fail.
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(file, "{line}");
                if let Some(addr) = line.split(" API on ").nth(1) {
                    let _ = tx.send(addr.trim().to_string());
                }
                if let Ok(mut tail) = kept.lock() {
                    if tail.len() == 20 {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            }
        });
        let mut controller = Controller { child, base: String::new(), tail };
        match rx.recv_timeout(Duration::from_secs(600)) {
            Ok(base) => controller.base = base,
            Err(_) => return Err(controller.failure("did not say where its API listens")),
        }
        Ok(controller)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn failure(&mut self, what: &str) -> String {
        let status = match self.child.try_wait() {
            Ok(Some(status)) => format!(" (it exited: {status})"),
            _ => String::new(),
        };
        let tail: Vec<String> = self.tail.lock().map(|t| t.iter().cloned().collect()).unwrap_or_default();
        format!("the controller {what}{status}; its last lines:\n{}", tail.join("\n"))
    }

    fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            _ => Err(self.failure("stopped")),
        }
    }

    fn get(&mut self, runtime: &tokio::runtime::Runtime, http: &reqwest::Client, path: &str) -> Result<String, String> {
        let url = format!("{}{path}", self.base);
        let answer = runtime.block_on(async {
            let response = http.get(&url).send().await?;
            let status = response.status();
            response.text().await.map(|body| (status, body))
        });
        match answer {
            Ok((status, body)) if status.is_success() => Ok(body),
            Ok((status, body)) => Err(format!("GET {url} answered {status}: {body}")),
            Err(e) => {
                Err(self.failure(&format!("did not answer GET {url}: {}", crate::commands::run::error_chain(&e))))
            }
        }
    }

    fn wait_ready(
        &mut self,
        runtime: &tokio::runtime::Runtime,
        http: &reqwest::Client,
        since: Instant,
        timeout: Duration,
    ) -> Result<(), String> {
        let url = format!("{}/readyz", self.base);
        loop {
            let ready = runtime.block_on(async { http.get(&url).send().await.map(|r| r.status().is_success()) });
            if ready.unwrap_or(false) {
                return Ok(());
            }
            self.check_alive()?;
            if since.elapsed() > timeout {
                return Err(self.failure("was not ready in time"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL, and wait for it.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and wait for it (SIGKILL after 15 s).
    fn stop(&mut self) {
        // SAFETY: sending a signal to our own child, which has not been waited for.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let until = Instant::now() + Duration::from_secs(15);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// The figures as a table, with their units.
fn table(f: &Figures) -> String {
    let secs = |ms: f64| format!("{:.2} s", ms / 1000.0);
    let rows = vec![
        vec!["measure".to_string(), "value".to_string()],
        vec!["cold start to ready (/readyz 200)".into(), secs(f.ready_ms)],
        vec![format!("cold start to every canary unit actuated ({} first steps)", f.canary_units), secs(f.actuated_ms)],
        vec![
            "after that, time until quiet (a 5 s window under 5 % of a core)".into(),
            f.quiet_after_ms.map_or_else(|| format!("never within {} s", f.quiet_timeout_s), secs),
        ],
        vec![
            "resident memory after start (peak)".into(),
            format!("{:.1} MiB ({:.1} MiB)", f.rss_after_start_mib, f.peak_rss_after_start_mib),
        ],
        vec![
            "resident memory after two scrapes of /metrics (peak)".into(),
            format!("{:.1} MiB ({:.1} MiB)", f.rss_after_scrapes_mib, f.peak_rss_mib),
        ],
        vec![
            "one scrape of /metrics (slower of two)".into(),
            format!("{:.1} ms, {:.2} MB, {} series", f.scrape_ms, f.scrape_bytes as f64 / 1e6, f.scrape_series),
        ],
        vec![
            format!("CPU while nothing is due ({:.0} s window)", f.idle_window_s),
            format!("{:.2} % of a core", f.idle_cpu_percent),
        ],
        vec!["restart to ready (SIGKILL, then start)".into(), secs(f.restart_ready_ms)],
    ];
    format!(
        "fleet: {} plans x {} regions x {} services = {} units; {} CPUs; controller {}\n{}",
        f.plans,
        f.regions,
        f.services,
        f.units,
        f.cpus,
        f.controller,
        crate::output::table(&rows, "")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_counted_after_the_name_even_with_spaces_in_it() {
        let stat = "4242 (meridian (x) y) S 1 4242 4242 0 -1 4194560 900 0 0 0 37 12 0 0 20 0 9 0 100 0 0";
        assert_eq!(cpu_ticks(stat), Some(49));
        assert_eq!(cpu_ticks("4242 (meridian) S 1"), None);
    }

    #[test]
    fn actuation_needs_every_canary_unit_progressing_and_as_many_actuations() {
        let page = "# HELP x\nmeridian_units{phase=\"progressing\",plan=\"a\",wave=\"canary\"} 3\n\
                    meridian_units{phase=\"pending\",plan=\"a\",wave=\"rest\"} 27\n\
                    meridian_actuation_duration_seconds_count{result=\"ok\"} 2\n";
        assert!(!all_actuated(page, 3));
        assert!(all_actuated(&page.replace("} 2\n", "} 3\n"), 3));
        assert!(!all_actuated(&page.replace("} 2\n", "} 3\n"), 6));
    }

    #[test]
    fn a_fleet_plan_validates_with_a_canary_wave_and_hour_long_bakes() {
        for regions in [1, 3] {
            let text = fleet_plan("fleet-0001", regions, 2);
            let bundle = meridian_core::validate::load(&[("fleet-0001.yaml".to_string(), text)], None);
            assert!(!bundle.report.has_errors(), "{:?}", bundle.report);
            let plan = &bundle.plans[0];
            assert_eq!((plan.regions.len(), plan.services.len()), (regions as usize, 2));
            assert_eq!(plan.waves[0].regions.len(), 1);
        }
    }

    #[test]
    fn a_quiet_window_starts_at_the_first_calm_five_seconds() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // 100 ticks a second: busy for 2 s (one core), then 1 tick a second (1 %).
        let ticks = [0, 100, 200, 201, 202, 203, 204, 205, 206, 207];
        let usage = Usage {
            pid: 0,
            ticks_per_second: 100.0,
            samples: ticks.iter().enumerate().map(|(s, t)| (at(s as u64), *t)).collect(),
        };
        assert_eq!(usage.quiet_since(t0), Some(at(2)));
        let busy = Usage { samples: usage.samples.iter().take(6).copied().collect(), ..usage };
        assert_eq!(busy.quiet_since(t0), None);
    }
}
