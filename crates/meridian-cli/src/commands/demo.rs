//! `meridian demo`: a complete rollout against a built-in simulated fleet, on embedded
//! defaults, with nothing else installed.
//!
//! The story, scripted against real parts (the controller, its database file, HTTP
//! actuators, HTTP health checks, a fleet of endpoints on 127.0.0.1):
//! - the canary region, then the main wave two regions at a time;
//! - br-south's store turns unhealthy once it reaches 50 %, and the region is rolled back, which halts
//!   the wave; the demo says what on-call does about it (and how, with the CLI), holds the halt
//!   long enough to look at it, then accepts the rollback and promotes the wave (unless the
//!   user's own `meridian promote` did already);
//! - jp waits for its regulator's approval, which the ministry grants part-way;
//! - everything else finishes. About a minute and a half (`--fast`: a few seconds). The
//!   dashboard then stays up until Ctrl-C (`--exit`: the demo ends with the rollout).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use meridian_controller::control::ControlPlane;
use meridian_controller::control::FeedItem;
use meridian_controller::runtime::{Controller, Settings, start};
use meridian_core::approval::{ApprovalRecord, ApprovalScopeSet};
use meridian_core::state::{UnitPhase, WavePhase};
use meridian_core::{Command, CommandKind, PlanPhase, WaitReason};
use meridian_fleet::{Fleet, FleetConfig, ScriptedFault};

use super::run::{adapters, health_source, start_error};

/// The demo plan, embedded so the demo needs no files.
pub const DEMO_PLAN: &str = include_str!("../../../../config/demo.yaml");
/// The fleet address the demo plan is written against; replaced by the real one.
const PLAN_FLEET: &str = "http://127.0.0.1:9464";
const FAILING_REGION: &str = "br-south";
const GATED_REGION: &str = "jp";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Short bakes and intervals: the whole story in a few seconds (for tests).
    #[arg(long)]
    pub fast: bool,
    /// Address of the dashboard, the API and /metrics.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: String,
    /// Keep the state database here instead of a temporary directory.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Give up after this long.
    #[arg(long, default_value = "5m")]
    pub timeout: meridian_core::Span,
    /// End when the rollout does (for scripts), instead of keeping the dashboard up until
    /// Ctrl-C.
    #[arg(long)]
    pub exit: bool,
}

/// How long the halted wave is left halted before the demo's on-call promotes it: long
/// enough to open the dashboard and see why.
fn halt_hold(fast: bool) -> Duration {
    Duration::from_millis(if fast { 300 } else { 10_000 })
}

pub fn run(args: &Args) -> i32 {
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt.block_on(demo(args)),
        Err(e) => {
            eprintln!("meridian demo: failed to start the async runtime: {e}");
            1
        }
    }
}

/// The demo plan with the fleet's real address, and short timings under `--fast`.
pub fn demo_plan_text(fleet_url: &str, fast: bool) -> String {
    let mut text = DEMO_PLAN.replace(PLAN_FLEET, fleet_url);
    if fast {
        text = text
            .replace("stepBake: 3s", "stepBake: 300ms")
            .replace("bake: 5s", "bake: 300ms")
            .replace("interval: 1s", "interval: 100ms");
    }
    text
}

async fn demo(args: &Args) -> i32 {
    let started = Instant::now();
    let say = |text: &str| println!("[{:>5.1}s] {text}", started.elapsed().as_secs_f64());
    let temp = match tempfile::tempdir() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("meridian demo: cannot create a temporary directory: {e}");
            return crate::exit::FAILED;
        }
    };
    let state_dir = args.state_dir.clone().unwrap_or_else(|| temp.path().join("state"));
    let config_dir = temp.path().join("config");

    let plan_for_fleet =
        match meridian_core::validate::load(&[("demo.yaml".into(), DEMO_PLAN.into())], None).plans.pop() {
            Some(plan) => plan,
            None => {
                eprintln!(
                    "meridian demo: the embedded demo plan does not validate; run `meridian validate config/demo.yaml`"
                );
                return crate::exit::FAILED;
            }
        };
    let fleet_config = FleetConfig::from_plan(&plan_for_fleet).with_scripted_fault(ScriptedFault {
        region: FAILING_REGION.into(),
        trigger_service: "store".into(),
        at_percent: 50,
        error_ratio: 0.3,
        // Only the store: which service fails first is then the same on every run.
        service: Some("store".into()),
    });
    let fleet = match Fleet::start(fleet_config).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("meridian demo: cannot start the simulated fleet: {e}");
            return crate::exit::FAILED;
        }
    };
    let plan_path = config_dir.join("demo.yaml");
    let written = std::fs::create_dir_all(&config_dir)
        .and_then(|_| std::fs::write(&plan_path, demo_plan_text(&fleet.base_url(), args.fast)));
    if let Err(e) = written {
        eprintln!("meridian demo: cannot write the demo plan to {}: {e}", plan_path.display());
        return crate::exit::FAILED;
    }
    let adapters = match adapters(&state_dir, health_source(None)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("meridian demo: {e}");
            return crate::exit::FAILED;
        }
    };
    let listener = match super::run::bind_api(&args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("meridian demo: {e}; pass --listen 127.0.0.1:0 for any free port");
            return crate::exit::FAILED;
        }
    };
    let mut settings = Settings::new(vec![config_dir.clone()]);
    settings.readback_interval = Duration::from_secs(5);
    let running = match start(settings, adapters).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("meridian demo: {}", start_error(&e));
            return crate::exit::FAILED;
        }
    };
    let controller = running.controller.clone();
    say(&format!("simulated fleet of 6 regions x 3 services on {}", fleet.base_url()));
    say(&format!("state in {}", state_dir.display()));
    // The demo's API takes no token: it listens on loopback and lives as long as the demo.
    let api = match super::run::serve_api(controller.clone(), listener, meridian_api::Auth::disabled(), None).await {
        Ok(api) => api,
        Err(e) => {
            eprintln!("meridian demo: {e}");
            running.shutdown();
            return crate::exit::FAILED;
        }
    };
    let addr = api.addr;
    say(&format!(
        "dashboard on http://{addr}/ (API under /api/v1, metrics on /metrics); try `meridian status demo --server http://{addr}`"
    ));

    let mut audit = controller.subscribe();
    let printer = tokio::spawn(async move {
        loop {
            match audit.next().await {
                FeedItem::Record(record) => println!(
                    "          {}",
                    record.summary().split_once(' ').map_or(record.summary(), |(_, rest)| rest.to_string())
                ),
                FeedItem::Lagged(_) => continue,
                FeedItem::Closed => break,
            }
        }
    });

    let deadline = started + Duration::from_millis(args.timeout.as_millis());
    let mut promoted = false;
    let mut granted = false;
    let outcome = loop {
        if Instant::now() > deadline {
            break Err(format!("the demo did not finish within {}", args.timeout));
        }
        let snapshot = controller.snapshot();
        let Some(entry) = snapshot.plans.get("demo") else {
            break Err("the demo plan is not loaded".to_string());
        };
        let state = &entry.state;
        match state.phase() {
            PlanPhase::Complete => break Ok(()),
            PlanPhase::Aborted => break Err("the rollout was aborted".to_string()),
            _ => {}
        }
        if main_halted(state) && !promoted {
            promoted = true;
            let hold = halt_hold(args.fast);
            say(&format!(
                "wave main is halted: {FAILING_REGION}'s store failed its health check and the region was rolled back"
            ));
            say(&format!(
                "on-call now: see why on the dashboard (http://{addr}/) or with `meridian status demo --server \
                 http://{addr}`"
            ));
            say(&format!(
                "then accept the rollback and let the wave go on: `meridian promote demo --wave main --server \
                 http://{addr}` (the demo does it in {:.1} s)",
                hold.as_secs_f64()
            ));
            tokio::time::sleep(hold).await;
            if controller.snapshot().plans.get("demo").is_some_and(|e| main_halted(&e.state)) {
                say(&format!("on-call: accepting {FAILING_REGION}'s rollback and promoting wave main"));
                let command = Command {
                    wave: Some("main".into()),
                    ..Command::plan_wide(CommandKind::Promote, "demo on-call", Utc::now())
                };
                if let Err(e) = controller.command("demo", command).await {
                    break Err(format!("promote failed: {e}"));
                }
            } else {
                say("your promote went through: wave main goes on without br-south");
            }
            continue;
        }
        let jp_waits = state
            .unit(GATED_REGION, "signin")
            .is_some_and(|u| u.phase == UnitPhase::Blocked && matches!(u.waiting, Some(WaitReason::Approval { .. })));
        if jp_waits && !granted {
            granted = true;
            say("jp is held: its regulator has not signed off yet");
            tokio::time::sleep(Duration::from_millis(if args.fast { 300 } else { 4000 })).await;
            say("the ministry grants jp-regulator (letter DEMO-0528-17)");
            if let Err(e) = controller.grant(regulator_approval(), "demo").await {
                break Err(format!("grant failed: {e}"));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    printer.abort();
    let snapshot = controller.snapshot();
    let code = match outcome {
        Ok(()) => {
            say("rollout complete");
            print!("{}", summary(&controller, &snapshot));
            0
        }
        Err(e) => {
            eprintln!("meridian demo: {e}");
            1
        }
    };
    if code == 0 && !args.exit {
        say(&format!(
            "the dashboard stays up on http://{addr}/ (and the API: try `meridian report --plan demo --server \
             http://{addr}`); Ctrl-C ends the demo (--exit ends it with the rollout)"
        ));
        super::run::shutdown_signal().await;
    }
    running.shutdown();
    api.task.abort();
    let _ = fleet.shutdown().await;
    code
}

/// Whether the demo's wave main stands halted (by the failed region).
fn main_halted(state: &meridian_core::PlanState) -> bool {
    state.waves.iter().any(|w| w.name == "main" && w.phase == WavePhase::Halted)
}

fn regulator_approval() -> ApprovalRecord {
    ApprovalRecord {
        name: "jp-regulator-demo".into(),
        flag: "jp-regulator".into(),
        granted_by: "Ministry liaison office".into(),
        reference: Some("letter DEMO-0528-17".into()),
        granted_at: None,
        expires: Some(Utc::now() + chrono::TimeDelta::days(30)),
        scope: ApprovalScopeSet {
            plans: vec!["demo".into()],
            regions: vec!["jp".into()],
            services: vec![],
            confined_to_plans: None,
        },
        revoked: None,
        signature: None,
    }
}

fn summary(_controller: &Arc<Controller>, snapshot: &meridian_controller::snapshot::Snapshot) -> String {
    let Some(entry) = snapshot.plans.get("demo") else { return String::new() };
    let mut rows = vec![vec!["REGION".to_string()]];
    rows[0].extend(entry.plan.service_order.iter().map(|&s| entry.plan.services[s].name.to_uppercase()));
    for region in &entry.plan.regions {
        let mut row = vec![region.name.clone()];
        for &s in &entry.plan.service_order {
            let u = entry.state.unit(&region.name, &entry.plan.services[s].name);
            row.push(u.map(|u| format!("{} {}%", u.phase, u.percent)).unwrap_or_default());
        }
        rows.push(row);
    }
    crate::output::table(&rows, "  ")
}
