//! `meridian status [PLAN]`: the plans, or one plan's regions x services, from the API; with
//! `--wait`, follow the rollout until it is complete, fails, or the timeout passes.
//!
//! Waiting polls `GET /api/v1/plans/{name}` every `--interval` (never a busy loop); a lost
//! connection or a 503 is retried for up to 30 s, so a controller restart does not end the wait.
//! Whether a plan or wave is done, and clean, is the server's `outcome`
//! (`meridian_core::outcome`); what `--until COND` means, and what a rollout is blocked on, is
//! `meridian_core::wait`: this module only maps how a wait ends to an exit code.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use meridian_core::duration::Span;
use meridian_core::outcome::{End, Outcome, overall};
use meridian_core::state::{PlanState, UnitState};
use meridian_core::wait::{self, Scope, Until, WaitEnd};
use meridian_core::{PlanPhase, UnitPhase, WavePhase};
use serde::Deserialize;
use serde_json::Value;

use super::Format;
use crate::client::{self, Client, ClientError, ServerArgs, exit, segment};

const EXIT_CODES: &str = "\
Conditions (--until; each for the plan, or --wave / --region):
  complete                 complete (the default)
  approval-needed[=FLAG]   a unit waits for an approval (for FLAG); the engine's reason
  halted                   the wave (for a plan: any wave; for a region: its wave) halted
  failed                   a region failed or was rolled back and nobody accepted it
                           (for --region: it failed at all)
  paused                   an operator's pause covers it

Exit codes:
  0  shown; with --wait: the plan (or --wave / --region, or every plan) is complete and
     every unit in it is enabled; with --until COND: COND was reached
  1  with --wait: a region failed and nobody accepted it (at once; with --no-fail-fast
     once its wave halts), or the plan halted or was aborted; the message names the
     region, the service, its state and the cause (--until halted and failed end only
     on an abort)
  2  with --wait: --timeout passed first; the message names what the rollout is blocked on
  3  usage error, unknown plan, wave or region, or the server could not be reached
     (while waiting, a lost connection is retried for 30 s first)
  4  with --wait: complete, but not every unit is enabled: failures a promote accepted, or
     aborted regions (0 with --accept-failures)
  5  with --wait --until COND (not complete): it completed first, so COND never comes";

#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_CODES)]
pub struct Args {
    /// A plan: show its regions x services (default: list every plan).
    pub plan: Option<String>,
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub format: Format,
    /// Wait until the plan (every plan without PLAN) is complete; exit 1 as soon as a region
    /// fails that nobody accepted, or the plan halts or is aborted.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: a completion with accepted failures or aborted regions exits 0, not 4.
    #[arg(long, requires = "wait")]
    pub accept_failures: bool,
    /// With --wait: on a failed region, wait for its wave to halt (then exit 1) instead of
    /// exiting 1 at once; a promote may still accept the failure meanwhile.
    #[arg(long, requires = "wait")]
    pub no_fail_fast: bool,
    /// With --wait: what to wait for: complete, approval-needed, approval-needed=FLAG, halted,
    /// failed or paused (exit 0 once reached; conditions and exit codes below).
    #[arg(long, requires = "wait", default_value = "complete", value_name = "COND")]
    pub until: Until,
    /// Only this wave: show its regions; with --wait, wait until it is complete.
    #[arg(long, requires = "plan", conflicts_with = "region")]
    pub wave: Option<String>,
    /// Only this region: show its services; with --wait, wait until all are enabled.
    #[arg(long, requires = "plan")]
    pub region: Option<String>,
    /// With --wait: give up after this long (exit 2).
    #[arg(long, default_value = "30m")]
    pub timeout: Span,
    /// With --wait or --watch: how often to ask the server.
    #[arg(long, default_value = "2s")]
    pub interval: Span,
    /// A live view until Ctrl-C: with PLAN a grid of regions x services (state, traffic, what
    /// each waits on), redrawn in place on a terminal; off a terminal a frame each time it
    /// changes.
    #[arg(long, conflicts_with_all = ["wait", "format"])]
    pub watch: bool,
    /// With --watch: colour the states (`auto`: on a terminal, unless NO_COLOR is set).
    #[arg(long, value_enum, default_value = "auto", requires = "watch")]
    pub color: super::watch::ColorChoice,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// A plan as `GET /api/v1/plans/{name}` serves it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanView {
    pub name: String,
    pub state: PlanState,
    pub regions: Vec<RegionView>,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegionView {
    pub name: String,
    pub wave: String,
    #[serde(default)]
    pub approvals: Vec<FlagView>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FlagView {
    pub flag: String,
    pub holds: bool,
    pub detail: String,
}

/// A plan as `GET /api/v1/plans` lists it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SummaryView {
    pub name: String,
    pub phase: PlanPhase,
    pub units: usize,
    pub enabled: usize,
    #[serde(default)]
    pub waves: Vec<WaveView>,
    pub updated_at: DateTime<Utc>,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WaveView {
    pub name: String,
    pub phase: WavePhase,
}

#[derive(Deserialize)]
struct PlanList {
    plans: Vec<SummaryView>,
}

/// What `--wait` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    Plan,
    Wave(&'a str),
    Region(&'a str),
}

/// Has the wait for `until` on `target` ended? `Err` for a wave or region the plan does not
/// have. The rule is `meridian_core::wait`; this only finds the scope in the plan.
pub fn check(view: &PlanView, target: Target<'_>, until: &Until, fail_fast: bool) -> Result<Option<WaitEnd>, String> {
    in_scope(view, target, |scope| wait::check(until, &view.outcome, &view.state, scope, fail_fast))
}

/// Run `f` on `target` as a `meridian_core::wait::Scope` of `view`.
fn in_scope<T>(
    view: &PlanView,
    target: Target<'_>,
    f: impl FnOnce(Scope<'_>) -> Result<T, String>,
) -> Result<T, String> {
    match target {
        Target::Plan => f(Scope::Plan),
        Target::Wave(name) => {
            let regions: Vec<&str> = view.regions.iter().filter(|r| r.wave == name).map(|r| r.name.as_str()).collect();
            f(Scope::Wave { name, regions: &regions })
        }
        Target::Region(name) => match view.regions.iter().find(|r| r.name == name) {
            Some(r) => f(Scope::Region { name, wave: &r.wave }),
            None => Err(format!(
                "plan {} has no region {name:?} (regions: {})",
                view.name,
                names(view.regions.iter().map(|r| &r.name))
            )),
        },
    }
}

/// Print why a wait ended and give its exit code.
pub fn finish(target: &str, until: &Until, end: WaitEnd, accept_failures: bool) -> i32 {
    match end {
        WaitEnd::Reached(why) => {
            eprintln!("meridian status: {target} reached {until}: {why}");
            exit::OK
        }
        WaitEnd::Ended(end) if *until == Until::Complete => finish_complete(end, accept_failures),
        WaitEnd::Ended(End::Failed(why)) => {
            eprintln!("meridian status: {why}");
            exit::FAILED
        }
        WaitEnd::Ended(End::Enabled) => {
            eprintln!("meridian status: {target} is complete, so it will never be {until}: exit 5");
            exit::NOT_REACHED
        }
        WaitEnd::Ended(End::CompleteWithExceptions(why)) => {
            eprintln!("meridian status: {why}");
            eprintln!("  {target} is complete, so it will never be {until}: exit 5");
            exit::NOT_REACHED
        }
    }
}

/// How a wait for completion ended, as an exit code.
fn finish_complete(end: End, accept_failures: bool) -> i32 {
    match end {
        End::Enabled => exit::OK,
        End::CompleteWithExceptions(why) if accept_failures => {
            eprintln!("meridian status: {why}");
            exit::OK
        }
        End::CompleteWithExceptions(why) => {
            eprintln!("meridian status: {why}");
            eprintln!("  not every unit is enabled: exit 4 (--accept-failures exits 0)");
            exit::NOT_ALL_ENABLED
        }
        End::Failed(why) => {
            eprintln!("meridian status: {why}");
            exit::FAILED
        }
    }
}

fn names<'a>(names: impl Iterator<Item = &'a String>) -> String {
    names.map(String::as_str).collect::<Vec<_>>().join(", ")
}

pub fn run(args: &Args) -> i32 {
    client::block_on("status", run_async(args)).unwrap_or(exit::USAGE)
}

async fn run_async(args: &Args) -> i32 {
    if args.until != Until::Complete && args.plan.is_none() {
        eprintln!(
            "meridian status: --until {} needs a PLAN (every plan can only be waited for to complete)",
            args.until
        );
        return exit::USAGE;
    }
    let client = match Client::new(&args.server) {
        Ok(c) => c,
        Err(e) => {
            e.report("status");
            return exit::USAGE;
        }
    };
    if args.watch {
        return super::watch::run(&client, args).await;
    }
    let result = match &args.plan {
        Some(plan) => one_plan(&client, args, plan).await,
        None => every_plan(&client, args).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            e.report("status");
            // A refusal here (unknown plan, bad token) is not the rollout failing.
            exit::USAGE
        }
    }
}

/// Poll until `done` gives an exit code or the deadline passes. Transient errors are
/// retried for `RECONNECT_GRACE`.
struct Poller {
    deadline: Instant,
    interval: Duration,
    failing_since: Option<Instant>,
}

const RECONNECT_GRACE: Duration = Duration::from_secs(30);

impl Poller {
    fn new(args: &Args) -> Self {
        Poller {
            deadline: Instant::now() + Duration::from_millis(args.timeout.as_millis()),
            interval: Duration::from_millis(args.interval.as_millis().max(100)),
            failing_since: None,
        }
    }

    /// Ok(true) to poll again, after sleeping; Ok(false) when the time is up.
    async fn next(&mut self, result: Result<(), ClientError>) -> Result<bool, ClientError> {
        match result {
            Ok(()) => self.failing_since = None,
            Err(e) if e.is_transient() => {
                let since = *self.failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= RECONNECT_GRACE {
                    return Err(e);
                }
                eprintln!("meridian status: {e}; retrying");
            }
            Err(e) => return Err(e),
        }
        let now = Instant::now();
        if now >= self.deadline {
            return Ok(false);
        }
        tokio::time::sleep(self.interval.min(self.deadline - now)).await;
        Ok(true)
    }
}

async fn one_plan(client: &Client, args: &Args, name: &str) -> Result<i32, ClientError> {
    let path = format!("/plans/{}", segment(name));
    let target = match (&args.wave, &args.region) {
        (Some(w), _) => Target::Wave(w),
        (None, Some(r)) => Target::Region(r),
        (None, None) => Target::Plan,
    };
    // The first answer decides whether the plan (and wave or region) exist at all.
    let mut raw: Value = client.get(&path).await?;
    let mut view = decode(client, &raw)?;
    if let Err(e) = check(&view, target, &args.until, !args.no_fail_fast) {
        eprintln!("meridian status: {e}");
        return Ok(exit::USAGE);
    }
    if !args.wait {
        show_plan(args, &raw, &view);
        return Ok(exit::OK);
    }
    let mut poller = Poller::new(args);
    let mut last_line = String::new();
    loop {
        let line = progress_line(&view);
        if line != last_line && args.format.is_text() {
            eprintln!("{line}");
            last_line = line;
        }
        match check(&view, target, &args.until, !args.no_fail_fast) {
            Ok(Some(end)) => {
                show_plan(args, &raw, &view);
                return Ok(finish(&describe(target, name), &args.until, end, args.accept_failures));
            }
            Ok(None) => {}
            Err(e) => {
                // The plan was edited while we waited and lost the wave or region.
                eprintln!("meridian status: {e}");
                return Ok(exit::USAGE);
            }
        }
        let mut fetched = Ok(());
        loop {
            if !poller.next(fetched).await? {
                show_plan(args, &raw, &view);
                let until = match &args.until {
                    Until::Complete => String::new(),
                    other => format!(" (until {other})"),
                };
                let waits = blocked_on(&view, target);
                eprintln!(
                    "meridian status: timed out after {} waiting for {}{until}; it is {}{}",
                    args.timeout,
                    describe(target, name),
                    view.outcome.summary,
                    if waits.is_empty() { "" } else { ", waiting for:" }
                );
                for line in waits {
                    eprintln!("  {line}");
                }
                return Ok(exit::TIMED_OUT);
            }
            match client.get::<Value>(&path).await {
                Ok(fresh) => {
                    raw = fresh;
                    view = decode(client, &raw)?;
                    break;
                }
                Err(e) => fetched = Err(e),
            }
        }
    }
}

async fn every_plan(client: &Client, args: &Args) -> Result<i32, ClientError> {
    let mut list: PlanList = client.get("/plans").await?;
    if !args.wait {
        show_list(args, &list.plans);
        return Ok(exit::OK);
    }
    if list.plans.is_empty() {
        eprintln!("meridian status: the server has no plans to wait for");
        return Ok(exit::USAGE);
    }
    let mut poller = Poller::new(args);
    loop {
        if let Some(end) = overall(list.plans.iter().map(|p| &p.outcome), !args.no_fail_fast) {
            show_list(args, &list.plans);
            return Ok(finish_complete(end, args.accept_failures));
        }
        let mut fetched = Ok(());
        loop {
            if !poller.next(fetched).await? {
                show_list(args, &list.plans);
                eprintln!("meridian status: timed out after {} waiting for every plan", args.timeout);
                return Ok(exit::TIMED_OUT);
            }
            match client.get::<PlanList>("/plans").await {
                Ok(fresh) => {
                    list = fresh;
                    break;
                }
                Err(e) => fetched = Err(e),
            }
        }
    }
}

fn decode(client: &Client, raw: &Value) -> Result<PlanView, ClientError> {
    serde_json::from_value(raw.clone())
        .map_err(|e| ClientError::Decode { server: client.server().to_string(), message: format!("plan detail: {e}") })
}

fn describe(target: Target<'_>, plan: &str) -> String {
    match target {
        Target::Plan => format!("plan {plan}"),
        Target::Wave(w) => format!("wave {w} of plan {plan}"),
        Target::Region(r) => format!("region {r} of plan {plan}"),
    }
}

/// What holds the target, a line per reason (at most a few, each naming a few units), for a
/// wait that gives up.
fn blocked_on(view: &PlanView, target: Target<'_>) -> Vec<String> {
    const REASONS: usize = 5;
    const UNITS: usize = 6;
    let groups = in_scope(view, target, |scope| Ok(wait::blocked_on(&view.state, scope))).unwrap_or_default();
    let mut lines: Vec<String> = groups.iter().take(REASONS).map(|b| b.describe(UNITS)).collect();
    if groups.len() > REASONS {
        lines.push(format!("and {} more reasons (meridian status {})", groups.len() - REASONS, view.name));
    }
    lines
}

fn progress_line(view: &PlanView) -> String {
    let enabled = view.state.units.iter().filter(|u| u.phase == UnitPhase::Enabled).count();
    let waves: Vec<String> = view.state.waves.iter().map(|w| format!("{} {}", w.name, w.phase)).collect();
    format!(
        "{}: {} ({enabled}/{} enabled; {})",
        view.name,
        view.outcome.summary,
        view.state.units.len(),
        waves.join(", ")
    )
}

fn show_plan(args: &Args, raw: &Value, view: &PlanView) {
    match args.format {
        Format::Json | Format::Yaml => crate::output::data(args.format, raw),
        Format::Text | Format::Wide => print!("{}", plan_table(view, args.wave.as_deref(), args.region.as_deref())),
    }
}

fn show_list(args: &Args, plans: &[SummaryView]) {
    match args.format {
        Format::Json | Format::Yaml => {
            crate::output::data(args.format, &serde_json::json!({ "plans": plans_json(plans) }))
        }
        Format::Text => print!("{}", list_table(plans, false)),
        Format::Wide => print!("{}", list_table(plans, true)),
    }
}

fn plans_json(plans: &[SummaryView]) -> Vec<Value> {
    plans
        .iter()
        .map(|p| {
            serde_json::json!({
                "name": p.name,
                "phase": p.phase,
                "units": p.units,
                "enabled": p.enabled,
                "waves": p.waves.iter().map(|w| serde_json::json!({"name": w.name, "phase": w.phase})).collect::<Vec<_>>(),
                "updatedAt": p.updated_at,
                "outcome": p.outcome,
            })
        })
        .collect()
}

/// The plan list as a table; `wide` adds the failed and aborted regions by name and the
/// outcome in words.
pub fn list_table(plans: &[SummaryView], wide: bool) -> String {
    if plans.is_empty() {
        return "no plans\n".to_string();
    }
    let mut header = vec!["PLAN", "PHASE", "ENABLED", "WAVES", "UPDATED", "NOT ENABLED"];
    if wide {
        header.extend(["FAILED", "ABORTED", "OUTCOME"]);
    }
    let mut rows = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
    for p in plans {
        let names = |regions: Vec<&str>| if regions.is_empty() { "-".to_string() } else { regions.join(",") };
        let extra = [
            names(p.outcome.failed.iter().map(|f| f.region.as_str()).collect()),
            names(p.outcome.aborted.iter().map(|a| a.region.as_str()).collect()),
            p.outcome.summary.clone(),
        ];
        rows.push(vec![
            p.name.clone(),
            p.phase.to_string(),
            format!("{}/{}", p.enabled, p.units),
            p.waves.iter().map(|w| format!("{}:{}", w.name, w.phase)).collect::<Vec<_>>().join(" "),
            p.updated_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            // Failed (with who accepted them) and aborted regions: complete is not clean.
            p.outcome.exceptions().unwrap_or_default(),
        ]);
        if wide && let Some(row) = rows.last_mut() {
            row.extend(extra);
        }
    }
    crate::output::table(&rows, "")
}

/// One plan: a header, then a row per (region, service) with what each waits for.
pub fn plan_table(view: &PlanView, wave: Option<&str>, region: Option<&str>) -> String {
    let mut out = format!("{}\n", progress_line(view));
    let mut rows = vec![
        ["WAVE", "REGION", "SERVICE", "STATE", "STEP", "TRAFFIC", "HEALTH", "WAITING FOR"].map(String::from).to_vec(),
    ];
    for r in &view.regions {
        if wave.is_some_and(|w| w != r.wave) || region.is_some_and(|x| x != r.name) {
            continue;
        }
        let missing: Vec<String> =
            r.approvals.iter().filter(|a| !a.holds).map(|a| format!("{} ({})", a.flag, a.detail)).collect();
        for u in view.state.units.iter().filter(|u| u.region == r.name) {
            let mut waiting = match (u.waiting_text(), u.phase) {
                (Some(why), _) => why,
                // The engine names the first reason; say which approvals are missing too.
                (None, UnitPhase::Pending | UnitPhase::Blocked) if !missing.is_empty() => missing.join("; "),
                _ => String::new(),
            };
            if let Some(stalled) = &u.stalled {
                let text = stalled.describe(chrono::Utc::now());
                waiting = if waiting.is_empty() { text } else { format!("{waiting}; {text}") };
            }
            rows.push(vec![
                r.wave.clone(),
                r.name.clone(),
                u.service.clone(),
                u.phase.to_string(),
                u.step.map(|s| (s + 1).to_string()).unwrap_or_else(|| "-".into()),
                format!("{}%", u.percent),
                health(u),
                waiting,
            ]);
        }
    }
    // Units an edit removed, until their targets are seen at 0 % (none with a wave filter:
    // they belong to no wave any more).
    for u in view.state.departing.iter().filter(|u| wave.is_none() && region.is_none_or(|x| x == u.region)) {
        let waiting = if u.percent > 0 {
            "left the plan: to be wound down to 0 %"
        } else {
            "left the plan: wound down to 0 %, waiting for the target to confirm"
        };
        rows.push(vec![
            "-".into(),
            u.region.clone(),
            u.service.clone(),
            "departing".into(),
            "-".into(),
            format!("{}%", u.percent),
            "-".into(),
            waiting.into(),
        ]);
    }
    out.push_str(&crate::output::table(&rows, ""));
    out
}

fn health(u: &UnitState) -> String {
    if u.checks.is_empty() {
        return "-".into();
    }
    u.checks
        .iter()
        .map(|c| {
            let verdict = match c.verdict {
                None => "-".to_string(),
                Some(v) => {
                    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
                }
            };
            match (c.value, &c.baseline) {
                (Some(v), Some(baseline)) => format!("{} {verdict} ({})", c.name, baseline.compare(v)),
                (Some(v), None) => format!("{} {verdict} ({})", c.name, trim_float(v)),
                (None, _) => format!("{} {verdict}", c.name),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn trim_float(v: f64) -> String {
    let text = format!("{v:.4}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(yaml_state: impl FnOnce(&mut PlanState)) -> PlanView {
        let bundle = meridian_core::validate::load(
            &[(
                "p.yaml".into(),
                "apiVersion: meridian.dev/v1alpha1\nkind: RolloutPlan\nmetadata: {name: p}\nspec:\n  services: [{name: a}, {name: b}]\n  regions: [{name: r1}, {name: r2}]\n  waves: [{name: w1, regions: [r1]}, {name: w2, regions: [r2]}]\n  actuator: {log: {}}\n".into(),
            )],
            None,
        );
        let plan = &bundle.plans[0];
        let mut state = PlanState::new(plan);
        yaml_state(&mut state);
        PlanView {
            name: "p".into(),
            outcome: meridian_core::outcome::outcome(plan, &state),
            regions: plan
                .regions
                .iter()
                .map(|r| RegionView { name: r.name.clone(), wave: plan.waves[r.wave].name.clone(), approvals: vec![] })
                .collect(),
            state,
        }
    }

    /// How a wait for completion ends.
    fn outcome(view: &PlanView, target: Target<'_>, fail_fast: bool) -> Result<Option<End>, String> {
        Ok(check(view, target, &Until::Complete, fail_fast)?.map(|end| match end {
            WaitEnd::Ended(end) => end,
            WaitEnd::Reached(why) => panic!("complete is never reached, it ends: {why}"),
        }))
    }

    #[test]
    fn outcomes_per_target() {
        let running = view(|s| s.waves[0].phase = WavePhase::Running);
        assert_eq!(outcome(&running, Target::Plan, true), Ok(None));
        assert_eq!(outcome(&running, Target::Wave("w1"), true), Ok(None));
        assert!(outcome(&running, Target::Wave("w9"), true).unwrap_err().contains("waves: w1, w2"));
        assert!(outcome(&running, Target::Region("r9"), true).unwrap_err().contains("regions: r1, r2"));

        let w1_done = view(|s| {
            s.waves[0].phase = WavePhase::Complete;
            s.units.iter_mut().filter(|u| u.region == "r1").for_each(|u| u.phase = UnitPhase::Enabled);
        });
        assert_eq!(outcome(&w1_done, Target::Wave("w1"), true), Ok(Some(End::Enabled)));
        assert_eq!(outcome(&w1_done, Target::Region("r1"), true), Ok(Some(End::Enabled)));
        assert_eq!(outcome(&w1_done, Target::Region("r2"), true), Ok(None));
        assert_eq!(outcome(&w1_done, Target::Plan, true), Ok(None));

        let rolled_back = view(|s| {
            s.waves[0].phase = WavePhase::Complete;
            s.units[0].phase = UnitPhase::Enabled;
            s.units[1].phase = UnitPhase::Enabled;
            s.waves[1].phase = WavePhase::Running;
            s.units[2].phase = UnitPhase::RolledBack;
        });
        // Failing fast: the plan and its wave end at once; without, they wait for the halt.
        assert!(
            matches!(outcome(&rolled_back, Target::Plan, true), Ok(Some(End::Failed(why))) if why.contains("region r2 (wave w2) rolled back: a failed"))
        );
        assert!(matches!(outcome(&rolled_back, Target::Wave("w2"), true), Ok(Some(End::Failed(_)))));
        assert_eq!(outcome(&rolled_back, Target::Plan, false), Ok(None));
        assert!(
            matches!(outcome(&rolled_back, Target::Region("r2"), false), Ok(Some(End::Failed(why))) if why.starts_with("plan p: region r2 (wave w2) rolled back: a failed"))
        );
        assert_eq!(outcome(&rolled_back, Target::Wave("w1"), true), Ok(Some(End::Enabled)));

        let aborted = view(|s| s.aborted = true);
        assert!(matches!(outcome(&aborted, Target::Plan, true), Ok(Some(End::Failed(_)))));
        assert!(matches!(outcome(&aborted, Target::Region("r1"), true), Ok(Some(End::Failed(_)))));
        let region_aborted = view(|s| _ = s.aborted_regions.insert("r2".into()));
        assert!(matches!(outcome(&region_aborted, Target::Region("r2"), true), Ok(Some(End::Failed(_)))));

        let complete = view(|s| {
            s.waves.iter_mut().for_each(|w| w.phase = WavePhase::Complete);
            s.units.iter_mut().for_each(|u| u.phase = UnitPhase::Enabled);
        });
        assert_eq!(outcome(&complete, Target::Plan, true), Ok(Some(End::Enabled)));
        let complete = Until::Complete;
        let ended = |end: End| WaitEnd::Ended(end);
        assert_eq!(finish("p", &complete, ended(End::CompleteWithExceptions("x".into())), false), 4);
        assert_eq!(finish("p", &complete, ended(End::CompleteWithExceptions("x".into())), true), 0);
        assert_eq!(finish("p", &complete, ended(End::Failed("x".into())), true), 1);
        assert_eq!(finish("p", &complete, ended(End::Enabled), true), 0);
        // Another condition: reached is 0, a failure 1, a completion that came first 5.
        let halted = Until::Halted;
        assert_eq!(finish("p", &halted, WaitEnd::Reached("x".into()), false), 0);
        assert_eq!(finish("p", &halted, ended(End::Failed("x".into())), false), 1);
        assert_eq!(finish("p", &halted, ended(End::Enabled), false), 5);
        assert_eq!(finish("p", &halted, ended(End::CompleteWithExceptions("x".into())), true), 5);
    }

    #[test]
    fn tables_align_and_say_what_units_wait_for() {
        let v = view(|s| {
            s.waves[0].phase = WavePhase::Running;
            s.units[0].phase = UnitPhase::Progressing;
            s.units[0].step = Some(1);
            s.units[0].percent = 10;
            s.units[1].phase = UnitPhase::Blocked;
            s.units[1].waiting = Some(meridian_core::WaitReason::Dependency { services: vec!["a".into()] });
        });
        let text = plan_table(&v, None, None);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "p: running (0/4 enabled; w1 running, w2 pending)");
        assert!(
            lines[1].starts_with("WAVE  REGION  SERVICE  STATE        STEP  TRAFFIC  HEALTH  WAITING FOR"),
            "{text}"
        );
        assert!(lines[2].starts_with("w1    r1      a        progressing  2     10%      -"), "{text}");
        assert!(lines[3].ends_with("waiting for a to be enabled first"), "{text}");
        assert_eq!(plan_table(&v, None, Some("r2")).lines().count(), 4);
        assert_eq!(plan_table(&v, Some("w1"), None).lines().count(), 4);
        // A unit an edit removed shows until the target confirmed its 0 %.
        let mut v = v;
        let gone = UnitState { region: "r3".into(), ..v.state.units[0].clone() };
        v.state.departing.push(UnitState { phase: UnitPhase::RolledBack, percent: 0, step: None, ..gone });
        let text = plan_table(&v, None, None);
        let last = text.lines().last().unwrap();
        assert!(last.starts_with("-     r3      a        departing    -     0%       -"), "{text}");
        assert!(last.ends_with("left the plan: wound down to 0 %, waiting for the target to confirm"), "{text}");
        assert!(!plan_table(&v, Some("w1"), None).contains("departing"));
        assert!(plan_table(&v, None, Some("r3")).contains("departing"));
        // `status --watch` shows it too, in a row of its own after the waves.
        let frame = crate::commands::watch::plan_frame(&v, chrono::Utc::now(), false, None);
        let row: Vec<&str> = frame.lines().last().unwrap().split_whitespace().collect();
        assert_eq!(row, ["(removed)", "r3", "departing", "0%", "-"], "{frame}");
    }

    #[test]
    fn a_check_judged_against_the_fleet_says_against_what() {
        use meridian_core::relative::Baseline;
        use meridian_core::state::CheckState;
        let v = view(|s| {
            s.units[0].phase = UnitPhase::Progressing;
            s.units[0].percent = 10;
            s.units[0].waiting = Some(meridian_core::WaitReason::Health { checks: vec!["errors".into()] });
            s.units[0].checks = vec![CheckState {
                name: "errors".into(),
                verdict: Some(meridian_core::HealthVerdict::NoData),
                value: Some(0.002),
                baseline: Some(Baseline {
                    kind: meridian_core::manifest::BaselineKind::Median,
                    regions: vec!["r2".into()],
                    value: None,
                    min_regions: 2,
                    limit: None,
                }),
                ..CheckState::default()
            }];
        });
        let text = plan_table(&v, None, Some("r1"));
        let no_baseline = "0.002 vs no baseline (1 fully enabled region with data: r2; minBaselineRegions 2)";
        assert!(text.contains(&format!("errors no-data ({no_baseline})")), "{text}");
        assert!(
            text.contains(&format!("waiting for fresh healthy data from errors (errors: {no_baseline})")),
            "{text}"
        );
    }
}
