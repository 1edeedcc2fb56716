//! `meridian plan PATH...`: the projected timeline, computed by running the real engine on a
//! virtual clock (see `meridian_core::simulate`). Exit codes: 0 projected, 1 invalid input,
//! 2 usage.

use std::path::PathBuf;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use meridian_core::approval::{ApprovalRecord, ApprovalScopeSet};
use meridian_core::duration::Span;
use meridian_core::simulate::{SimOptions, Timeline, simulate};
use meridian_core::validate::load;
use meridian_core::{Plan, UnitPhase};

use super::Format;
use crate::input::read_manifests;

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
    #[arg(long = "grant", value_name = "FLAG[@TIME]")]
    pub grants: Vec<String>,
    /// Only this plan (default: every plan found).
    #[arg(long = "plan", value_name = "NAME")]
    pub plan: Option<String>,
    /// Stop projecting this long after the start.
    #[arg(long, default_value = "90d")]
    pub horizon: Span,
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub format: Format,
}

pub fn run(args: &Args) -> i32 {
    let mut paths = args.paths.clone();
    paths.extend(args.approvals.iter().cloned());
    let files = match read_manifests(&paths) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("meridian plan: {e:#}");
            return 2;
        }
    };
    let start =
        args.start.unwrap_or_else(|| Utc::now().duration_trunc(TimeDelta::minutes(1)).unwrap_or_else(|_| Utc::now()));
    let bundle = load(&files, Some(start));
    for d in &bundle.report.diagnostics {
        eprintln!("{d}");
    }
    if bundle.report.has_errors() {
        eprintln!("meridian plan: fix the errors above first (see `meridian validate`)");
        return 1;
    }
    let mut approvals = bundle.approvals.clone();
    for (i, grant) in args.grants.iter().enumerate() {
        match parse_grant(grant, start, i) {
            Ok(a) => approvals.push(a),
            Err(e) => {
                eprintln!("meridian plan: {e}");
                return 2;
            }
        }
    }
    let plans: Vec<&Plan> = bundle.plans.iter().filter(|p| args.plan.as_ref().is_none_or(|n| *n == p.name)).collect();
    if plans.is_empty() {
        match &args.plan {
            Some(name) => eprintln!("meridian plan: no plan named {name:?} in the given paths"),
            None => eprintln!("meridian plan: no RolloutPlan found in the given paths"),
        }
        return 2;
    }
    let mut opts = SimOptions::new(start);
    opts.assume_healthy = args.assume_healthy;
    opts.horizon = args.horizon;
    let timelines: Vec<Timeline> = plans.iter().map(|p| simulate(p, &approvals, &opts)).collect();
    match args.format {
        Format::Json => {
            let value = if timelines.len() == 1 {
                serde_json::to_value(&timelines[0])
            } else {
                serde_json::to_value(&timelines)
            };
            println!("{}", value.and_then(|v| serde_json::to_string_pretty(&v)).unwrap_or_default());
        }
        Format::Text => {
            for (plan, timeline) in plans.iter().zip(&timelines) {
                print!("{}", render(plan, timeline));
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
    })
}

fn render(plan: &Plan, t: &Timeline) -> String {
    let with_seconds = t.audit.iter().any(|r| r.at.timestamp() % 60 != 0);
    let time = |at: DateTime<Utc>| {
        if with_seconds { at.format("%m-%d %H:%M:%S").to_string() } else { at.format("%m-%d %H:%M").to_string() }
    };
    let mut out = String::new();
    out.push_str(&format!("plan {}\n", t.plan));
    out.push_str(&format!("  start    {} UTC\n", t.start.format("%Y-%m-%d %H:%M")));
    match t.finished_at {
        Some(end) => out.push_str(&format!(
            "  finish   {} UTC ({} after start)\n",
            end.format("%Y-%m-%d %H:%M"),
            Span::from_delta(end - t.start)
        )),
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
    for (w, wave) in plan.waves.iter().enumerate() {
        let wt = &t.waves[w];
        let span = match (wt.started_at, wt.completed_at) {
            (Some(s), Some(c)) => format!("{} -> {}", time(s), time(c)),
            (Some(s), None) => format!("{} -> {}", time(s), wt.final_phase),
            _ => wt.final_phase.to_string(),
        };
        let approvals = if wave.approvals.is_empty() {
            String::new()
        } else {
            format!(", approvals {}", wave.approvals.join(", "))
        };
        out.push_str(&format!(
            "\nwave {} (maxParallel {}, bake {}{approvals}): {span}\n",
            wave.name, wave.max_parallel, wave.bake
        ));
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
        out.push_str(&table(&rows, "  "));
    }
    let held: Vec<String> = t
        .units
        .iter()
        .filter(|u| u.final_phase != UnitPhase::Enabled)
        .map(|u| format!("  {}/{}: {}", u.region, u.service, u.waiting_text.as_deref().unwrap_or("not started")))
        .collect();
    if !held.is_empty() {
        out.push_str("\nheld when the projection ends:\n");
        for line in held {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out.push('\n');
    out
}

/// Left-aligned columns separated by two spaces.
pub fn table(rows: &[Vec<String>], indent: &str) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r.get(c).map_or(0, |s| s.chars().count())).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::from(indent);
        for (c, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < row.len() {
                line.push_str(&" ".repeat(widths[c] - cell.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
