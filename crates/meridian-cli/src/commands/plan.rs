//! `meridian plan PATH...`: the projected timeline, computed by running the real engine on a
//! virtual clock (see `meridian_core::simulate`); with `--from-server`, from a running
//! rollout's live state (`plan_live`). Exit codes (the table in `main.rs`): 0 projected, 1
//! invalid input or the server's refusal, 3 usage (a local plan not the server's included).

use std::path::PathBuf;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use meridian_core::approval::{ApprovalRecord, ApprovalScopeSet};
use meridian_core::duration::Span;
use meridian_core::plan::{EffectiveSettings, Origin};
use meridian_core::simulate::{SimFailure, SimOptions, Timeline, simulate_together, simulate_together_from};
use meridian_core::{Cause, Plan, UnitPhase};
use serde_json::{Value, json};

use super::Format;
use meridian_controller::config::read_sources;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Plan and approval files or directories.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Further approval files or directories to take into account.
    #[arg(long = "approvals", value_name = "PATH")]
    pub approvals: Vec<PathBuf>,
    /// Simulated start (RFC 3339). Default: now, to the minute.
    #[arg(long, value_parser = super::parse_time)]
    pub start: Option<DateTime<Utc>>,
    /// Feed healthy verdicts for every check. Without it no health data arrives and units
    /// with checks hold at their first step, as the controller would.
    #[arg(long)]
    pub assume_healthy: bool,
    /// Simulate a grant of FLAG at TIME (default: the start), e.g. jp-regulator@2026-06-03T10:00:00Z.
    /// It stands for every grantor and signature the flag's approvalPolicies entry asks for.
    #[arg(long = "grant", value_name = "FLAG[@TIME]")]
    pub grants: Vec<String>,
    /// Simulate REGION failing from TIME on (default: the start): every check there reads
    /// unhealthy, so its failureLimit, onFailure and the failure budgets apply; repeatable.
    #[arg(long = "fail", value_name = "REGION[@TIME]")]
    pub failures: Vec<String>,
    /// Only this plan (default: every plan found).
    #[arg(long = "plan", value_name = "NAME")]
    pub plan: Option<String>,
    /// Stop projecting this long after the start.
    #[arg(long, default_value = "90d")]
    pub horizon: Span,
    /// The full table: a row per region and service with every step's time (also `-o
    /// wide`). Default: a line per region (first traffic, enabled, and why it waited).
    #[arg(long)]
    pub full: bool,
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub format: Format,
    #[command(flatten)]
    pub live: super::plan_live::LiveArgs,
}

pub fn run(args: &Args) -> i32 {
    let mut paths = args.paths.clone();
    paths.extend(args.approvals.iter().cloned());
    let sources = match read_sources(&paths) {
        Ok(sources) => sources,
        Err(e) => {
            eprintln!("meridian plan: {e:#}");
            return crate::exit::USAGE;
        }
    };
    // A live rollout is projected from now, rounded up to the second (never before what its
    // state records); a plan from now, to the minute.
    let start = args.start.unwrap_or_else(|| match args.live.from_server {
        Some(_) => Utc::now().duration_round_up(TimeDelta::seconds(1)).unwrap_or_else(|_| Utc::now()),
        None => Utc::now().duration_trunc(TimeDelta::minutes(1)).unwrap_or_else(|_| Utc::now()),
    });
    let bundle = sources.load(Some(start));
    for d in &bundle.report.diagnostics {
        eprintln!("{d}");
    }
    if bundle.report.has_errors() {
        eprintln!("meridian plan: fix the errors above first (see `meridian validate`)");
        return crate::exit::FAILED;
    }
    let mut approvals = bundle.approvals.clone();
    let mut granted: Vec<String> = Vec::new();
    for (i, grant) in args.grants.iter().enumerate() {
        match parse_grant(grant, start, i) {
            Ok(a) => {
                granted.push(a.flag.clone());
                approvals.push(a);
            }
            Err(e) => {
                eprintln!("meridian plan: {e}");
                return crate::exit::USAGE;
            }
        }
    }
    let plans: Vec<&Plan> = bundle.plans.iter().filter(|p| args.plan.as_ref().is_none_or(|n| *n == p.name)).collect();
    if plans.is_empty() {
        match &args.plan {
            Some(name) => eprintln!("meridian plan: no plan named {name:?} in the given paths"),
            None => eprintln!("meridian plan: no RolloutPlan found in the given paths"),
        }
        return crate::exit::USAGE;
    }
    let mut opts = SimOptions::new(start);
    opts.assume_healthy = args.assume_healthy;
    opts.horizon = args.horizon;
    for text in &args.failures {
        match parse_failure(text, start, &plans) {
            Ok(f) => opts.failures.push(f),
            Err(e) => {
                eprintln!("meridian plan: {e}");
                return crate::exit::USAGE;
            }
        }
    }
    for p in &plans {
        let fails_here = opts.failures.iter().any(|f| p.region_index(&f.region).is_some());
        if fails_here && p.health.checks.is_empty() {
            eprintln!("meridian plan: plan {} has no health checks, so --fail cannot fail its regions", p.name);
        }
    }
    // The plans these wait for (`dependsOn`, transitively) are projected with them, on one
    // clock, so a dependent wave starts when its dependency would complete.
    let mut projected: Vec<&Plan> = plans.clone();
    let mut k = 0;
    while let Some(p) = projected.get(k).copied() {
        for name in p.dependency_plans() {
            if let Some(dep) = bundle.plan(name)
                && !projected.iter().any(|q| q.name == dep.name)
            {
                projected.push(dep);
            }
        }
        k += 1;
    }
    // A simulated grant is unsigned and from one grantor: for its flag, the policy is taken as met.
    let projected: Vec<Plan> = projected
        .iter()
        .map(|p| {
            let mut p = (*p).clone();
            p.approval_policies.retain(|policy| !granted.contains(&policy.flag));
            p
        })
        .collect();
    let live = match &args.live.from_server {
        Some(url) => match super::plan_live::fetch(&args.live, url, &projected) {
            Ok(live) => Some(live),
            Err(code) => return code,
        },
        None => None,
    };
    let refs: Vec<&Plan> = projected.iter().collect();
    let (mut timelines, projected_from): (Vec<Timeline>, _) = match live {
        Some(live) => {
            let approvals = super::plan_live::merge_approvals(live.approvals, approvals);
            (simulate_together_from(&refs, live.states, &approvals, &opts), Some((live.server, start)))
        }
        None => (simulate_together(&refs, &approvals, &opts), None),
    };
    // Only the plans asked for are shown (the first ones projected).
    timelines.truncate(plans.len());
    match args.format {
        Format::Json | Format::Yaml => {
            let with_regions = |plan: &Plan, t: &Timeline| {
                serde_json::to_value(t).map(|mut v| {
                    v["regions"] = regions_json(plan);
                    // What holds a rollout that does not finish: the roots, and how many
                    // units wait only on them.
                    v["blockers"] = json!(meridian_core::blockers::blockers(&t.state));
                    if let Some((server, at)) = &projected_from {
                        v["projectedFrom"] = json!({ "server": server, "at": at });
                    }
                    // Why its regions paused beyond their bakes, in their local time.
                    v["gaps"] = json!(meridian_core::gaps::region_gaps(plan, &t.audit, t.ended_at));
                    v
                })
            };
            let value = if timelines.len() == 1 {
                with_regions(plans[0], &timelines[0])
            } else {
                plans
                    .iter()
                    .zip(&timelines)
                    .map(|(p, t)| with_regions(p, t))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Value::from)
            };
            crate::output::data(args.format, &value.unwrap_or_default());
        }
        Format::Text | Format::Wide => {
            if let Some((server, at)) = &projected_from {
                println!("projected from the live state of {server} at {} UTC\n", at.format("%Y-%m-%d %H:%M:%S"));
            }
            for (plan, timeline) in plans.iter().zip(&timelines) {
                let full = args.full || args.format == Format::Wide;
                let width = if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                    crate::output::terminal_width()
                } else {
                    None
                };
                print!("{}", crate::output::fit(&render(plan, timeline, full), width));
            }
        }
    }
    0
}

fn parse_grant(text: &str, start: DateTime<Utc>, i: usize) -> Result<ApprovalRecord, String> {
    let (flag, at) = match text.split_once('@') {
        Some((flag, at)) => (flag, super::parse_time(at)?),
        None => (text, start),
    };
    if flag.is_empty() {
        return Err(format!("--grant {text:?} names no flag; write FLAG or FLAG@TIME"));
    }
    Ok(ApprovalRecord {
        name: format!("simulated-grant-{}-{flag}", i + 1),
        flag: flag.to_string(),
        granted_by: "meridian plan --grant".into(),
        reference: None,
        granted_at: Some(at),
        expires: None,
        scope: ApprovalScopeSet::default(),
        revoked: None,
        signature: None,
    })
}

/// `REGION[@TIME]`: a region of one of the plans, failing from TIME (default: the start).
fn parse_failure(text: &str, start: DateTime<Utc>, plans: &[&Plan]) -> Result<SimFailure, String> {
    let (region, from) = match text.split_once('@') {
        Some((region, at)) => (region, super::parse_time(at)?),
        None => (text, start),
    };
    if region.is_empty() {
        return Err(format!("--fail {text:?} names no region; write REGION or REGION@TIME"));
    }
    if !plans.iter().any(|p| p.region_index(region).is_some()) {
        let names = plans.iter().flat_map(|p| p.regions.iter().map(|r| r.name.as_str()));
        let hint = meridian_core::diagnostics::did_you_mean(region, names)
            .unwrap_or_else(|| "name a region of the plan, as in its spec.regions".into());
        return Err(format!("--fail {text:?}: no region {region:?} in the plans projected; {hint}"));
    }
    Ok(SimFailure { region: region.to_string(), from })
}

/// The projection as text: its summary, then each wave (a line per region, or with `full` a
/// row per unit and step) with the gaps of its regions explained.
fn render(plan: &Plan, t: &Timeline, full: bool) -> String {
    let with_seconds = t.audit.iter().any(|r| r.at.timestamp() % 60 != 0);
    let time = |at: DateTime<Utc>| {
        if with_seconds { at.format("%m-%d %H:%M:%S").to_string() } else { at.format("%m-%d %H:%M").to_string() }
    };
    let mut blockers = meridian_core::blockers::blockers(&t.state);
    // The projection's own words for a unit (a missed progress deadline included).
    for root in &mut blockers.roots {
        if let Some(text) = t
            .units
            .iter()
            .find(|u| format!("{}/{}", u.region, u.service) == root.unit)
            .and_then(|u| u.waiting_text.clone())
        {
            root.reason = text;
        }
    }
    let mut out = String::new();
    out.push_str(&format!("plan {}\n", t.plan));
    out.push_str(&format!("  start    {} UTC\n", t.start.format("%Y-%m-%d %H:%M")));
    match t.finished_at {
        Some(end) => out.push_str(&format!(
            "  finish   {} UTC ({} after start)\n",
            end.format("%Y-%m-%d %H:%M"),
            Span::from_delta(end - t.start)
        )),
        None if !blockers.roots.is_empty() => {
            let first = &blockers.roots[0];
            let more = match blockers.roots.len() {
                1 => String::new(),
                n => format!(" (and {} more, below)", n - 1),
            };
            out.push_str(&format!("  finish   never without action: {}: {}{more}\n", first.unit, first.reason));
            if let Some(hint) = never_hint(&blockers) {
                out.push_str(&format!("           {hint}\n"));
            }
        }
        None => out.push_str(&format!(
            "  finish   not within the projection (ends {} UTC, rollout {})\n",
            t.ended_at.format("%Y-%m-%d %H:%M"),
            t.phase
        )),
    }
    let health = if plan.health.checks.is_empty() {
        "no checks: steps advance on time alone"
    } else if t.assume_healthy {
        "assumed healthy (--assume-healthy)"
    } else {
        "no data (pass --assume-healthy to project a healthy rollout)"
    };
    out.push_str(&format!("  health   {health}\n"));
    if !plan.depends_on.is_empty() {
        out.push_str(&format!("  after    {} (dependsOn, projected together)\n", dependencies(&plan.depends_on)));
    }
    for f in &t.failures {
        out.push_str(&format!("  failing  {} from {} (--fail)\n", f.region, time(f.from)));
    }
    if let Some(b) = plan.max_failures {
        out.push_str(&format!(
            "  budget   maxFailures {b} of the plan, onBudgetExceeded {}\n",
            wire(&plan.on_budget_exceeded)
        ));
    }
    out.push_str(&region_settings(plan));
    for (w, wave) in plan.waves.iter().enumerate() {
        let wt = &t.waves[w];
        let span = match (wt.started_at, wt.completed_at) {
            (Some(s), Some(c)) => format!("{} -> {}", time(s), time(c)),
            (Some(s), None) => format!("{} -> {}", time(s), wt.final_phase),
            _ => wt.final_phase.to_string(),
        };
        let mut approvals = if wave.approvals.is_empty() {
            String::new()
        } else {
            format!(", approvals {}", wave.approvals.join(", "))
        };
        if let Some(b) = wave.max_failures {
            approvals.push_str(&format!(", maxFailures {b}"));
        }
        if !wave.depends_on.is_empty() {
            approvals.push_str(&format!(", after {}", dependencies(&wave.depends_on)));
        }
        out.push_str(&format!(
            "\nwave {} (maxParallel {}, bake {}{approvals}): {span}\n",
            wave.name, wave.max_parallel, wave.bake
        ));
        let chosen: Vec<String> = wave
            .regions
            .iter()
            .zip(&wave.chosen_by)
            .map(|(&r, by)| format!("{} ({by})", plan.regions[r].name))
            .collect();
        if !full {
            // How the regions were chosen, when a selector did (by name is the table itself).
            if wave.chosen_by.iter().any(|by| !matches!(by, meridian_core::plan::ChosenBy::Name)) {
                out.push_str(&format!("  regions: {}\n", chosen.join(", ")));
            }
            out.push_str(&condensed(plan, t, w, &time));
            out.push_str(&wave_gaps(plan, t, w));
            continue;
        }
        out.push_str(&format!("  regions: {}\n", if chosen.is_empty() { "none".into() } else { chosen.join(", ") }));
        let mut rows: Vec<Vec<String>> = Vec::new();
        let steps = wave.regions.iter().map(|&r| plan.regions[r].settings.steps.len()).max().unwrap_or(0);
        let mut header = vec!["REGION".to_string(), "SERVICE".to_string()];
        header.extend((1..=steps).map(|i| format!("STEP {i}")));
        header.push("ENABLED".into());
        rows.push(header);
        for &r in &wave.regions {
            for &s in &plan.service_order {
                let unit = &t.units[plan.unit_index(r, s)];
                let mut row = vec![unit.region.clone(), unit.service.clone()];
                for i in 0..steps {
                    row.push(
                        unit.steps.get(i).map(|st| format!("{}% {}", st.percent, time(st.at))).unwrap_or_default(),
                    );
                }
                row.push(match unit.enabled_at {
                    Some(at) if unit.final_phase == UnitPhase::Enabled => time(at),
                    _ => unit.final_phase.to_string(),
                });
                rows.push(row);
            }
        }
        out.push_str(&crate::output::table(&rows, "  "));
        out.push_str(&wave_gaps(plan, t, w));
    }
    // The roots one per unit; what waits only on them, summarised.
    if !blockers.roots.is_empty() || blockers.downstream > 0 {
        out.push_str("\nheld when the projection ends:\n");
        for root in &blockers.roots {
            out.push_str(&format!("  {}: {}\n", root.unit, root.reason));
        }
        if blockers.downstream > 0 {
            let whom = if blockers.roots.is_empty() { "their turn" } else { "these" };
            out.push_str(&format!(
                "  {} more unit{} wait{} on {whom} (an earlier wave, a service enabled first, parallelism, a bake)\n",
                blockers.downstream,
                if blockers.downstream == 1 { "" } else { "s" },
                if blockers.downstream == 1 { "s" } else { "" },
            ));
        }
    }
    let budgets: Vec<String> = t
        .audit
        .iter()
        .filter(|r| matches!(r.cause, Cause::BudgetConsumed { .. } | Cause::BudgetExceeded { .. }))
        .map(|r| format!("  {} {}", time(r.at), r.cause))
        .collect();
    if !budgets.is_empty() {
        out.push_str("\nfailure budgets:\n");
        for line in budgets {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out.push('\n');
    out
}

/// `plan a wave canary, plan b` for `dependsOn` entries.
fn dependencies(deps: &[meridian_core::plan::PlanDependency]) -> String {
    let named: Vec<String> = deps
        .iter()
        .map(|d| match &d.wave {
            Some(w) => format!("plan {} wave {w}", d.plan),
            None => format!("plan {}", d.plan),
        })
        .collect();
    named.join(", ")
}

/// Wave `w` a line per region: when it first gets traffic, when it is enabled (or how it
/// ends), readable at 50 regions.
fn condensed(plan: &Plan, t: &Timeline, w: usize, time: &dyn Fn(DateTime<Utc>) -> String) -> String {
    let mut rows = vec![["REGION", "FIRST TRAFFIC", "ENABLED"].map(String::from).to_vec()];
    for &r in &plan.waves[w].regions {
        let units: Vec<&meridian_core::simulate::UnitTimeline> =
            plan.service_order.iter().map(|&s| &t.units[plan.unit_index(r, s)]).collect();
        let first = units.iter().filter_map(|u| u.steps.first().map(|st| st.at)).min();
        let enabled = if units.iter().all(|u| u.final_phase == UnitPhase::Enabled) {
            units.iter().filter_map(|u| u.enabled_at).max().map_or_else(|| "enabled".into(), time)
        } else {
            // The first unit that is not enabled says how the region ends.
            let u = units.iter().find(|u| u.final_phase != UnitPhase::Enabled).copied();
            u.map(|u| match &u.waiting_text {
                // Still waiting for its wave's turn: nothing more to say.
                Some(why) if u.final_phase != UnitPhase::Pending => format!("{}: {}: {why}", u.final_phase, u.service),
                _ => u.final_phase.to_string(),
            })
            .unwrap_or_default()
        };
        rows.push(vec![plan.regions[r].name.clone(), first.map(time).unwrap_or_else(|| "-".into()), enabled]);
    }
    crate::output::table(&rows, "  ")
}

/// Why wave `w`'s regions paused beyond their bakes (a window, a freeze, an approval, another
/// plan), a line each, in the region's local time (`meridian_core::gaps`).
fn wave_gaps(plan: &Plan, t: &Timeline, w: usize) -> String {
    let mut out = String::new();
    for gap in meridian_core::gaps::region_gaps(plan, &t.audit, t.ended_at) {
        if plan.region_index(&gap.region).is_some_and(|r| plan.regions[r].wave == w) {
            out.push_str(&format!("  {} {}\n", gap.region, gap.describe()));
        }
    }
    out
}

/// What would let a rollout that never finishes go on, from what holds it.
fn never_hint(blockers: &meridian_core::blockers::Blockers) -> Option<String> {
    let flags = blockers.flags();
    if !flags.is_empty() {
        let grants: Vec<String> = flags.iter().map(|f| format!("--grant {f}")).collect();
        let whose = if flags.len() == 1 { "its Approval" } else { "their Approvals" };
        return Some(format!("try {}, or --approvals PATH with {whose}", grants.join(" ")));
    }
    let kinds: Vec<&str> = blockers.roots.iter().map(|r| r.kind).collect();
    if kinds.contains(&"health") {
        return Some("no health data arrives in a projection: pass --assume-healthy".into());
    }
    if kinds.contains(&"halted") || kinds.contains(&"failed") {
        return Some(
            "a failed region halted its wave (--fail): a live rollout goes on after `meridian promote`".into(),
        );
    }
    if kinds.contains(&"window") {
        return Some("no window of the region opens within 8 days: check its windows".into());
    }
    if kinds.contains(&"plan") {
        return Some("a plan it depends on does not get that far: see that plan's projection".into());
    }
    None
}

/// Per region that overrides anything: its effective settings and where each came from.
fn region_settings(plan: &Plan) -> String {
    let mut out = String::new();
    for (r, region) in plan.regions.iter().enumerate() {
        let s = &region.settings;
        let own_freezes = s.freezes.iter().any(|f| f.origin == Origin::Region);
        if !s.origins.any_region() && !own_freezes {
            continue;
        }
        if out.is_empty() {
            out.push_str(
                "\nregion settings (where a region differs from the plan; FROM says whose value is in force):\n",
            );
        }
        out.push_str(&format!("  {} ({})\n", region.name, region.defined_at));
        let e: EffectiveSettings = plan.effective_settings(r);
        let mut rows = vec![["SETTING".to_string(), "VALUE".into(), "FROM".into()]];
        let steps: Vec<String> = e.steps.value.iter().map(u32::to_string).collect();
        rows.push(["steps".into(), steps.join(", "), e.steps.origin.to_string()]);
        rows.push(["stepBake".into(), e.step_bake.value.clone(), e.step_bake.origin.to_string()]);
        if let Some(deadline) = &e.progress_deadline.value {
            rows.push(["progressDeadline".into(), deadline.clone(), e.progress_deadline.origin.to_string()]);
        }
        let windows = if e.windows.value.is_empty() { "any time".into() } else { e.windows.value.join("; ") };
        rows.push(["windows".into(), windows, e.windows.origin.to_string()]);
        rows.push(["onFailure".into(), wire(&e.on_failure.value), e.on_failure.origin.to_string()]);
        rows.push(["actuator".into(), e.actuator.value.clone(), e.actuator.origin.to_string()]);
        let number = |v: Option<f64>| v.map_or("-".to_string(), |v| v.to_string());
        for c in &e.checks {
            rows.push([format!("{} min", c.name), number(c.min.value), c.min.origin.to_string()]);
            rows.push([format!("{} max", c.name), number(c.max.value), c.max.origin.to_string()]);
            rows.push([
                format!("{} failureLimit", c.name),
                c.failure_limit.value.to_string(),
                c.failure_limit.origin.to_string(),
            ]);
            rows.push([format!("{} noData", c.name), wire(&c.no_data.value), c.no_data.origin.to_string()]);
        }
        for f in &e.freezes {
            rows.push(["freeze".into(), f.to_string(), f.origin.to_string()]);
        }
        let rows: Vec<Vec<String>> = rows.into_iter().map(Vec::from).collect();
        out.push_str(&crate::output::table(&rows, "    "));
    }
    out
}

/// A value as it is written in YAML (`rollback-region`, `hold`).
fn wire<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        _ => String::new(),
    }
}

/// Every region of the plan with its wave, how it was chosen, its labels and its effective
/// settings with their origins: the `regions` of `-o json`.
fn regions_json(plan: &Plan) -> Value {
    let regions: Vec<Value> = plan
        .regions
        .iter()
        .enumerate()
        .map(|(r, region)| {
            let wave = &plan.waves[region.wave];
            let chosen_by = wave.regions.iter().position(|&x| x == r).and_then(|k| wave.chosen_by.get(k));
            json!({
                "name": region.name,
                "wave": wave.name,
                "chosenBy": chosen_by,
                "labels": region.labels,
                "definedAt": region.defined_at,
                "settings": plan.effective_settings(r),
            })
        })
        .collect();
    Value::from(regions)
}
