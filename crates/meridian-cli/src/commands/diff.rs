//! `meridian diff OLD NEW [--server URL | --state-dir DIR]`: what editing the plans in OLD
//! into those in NEW would change for each rollout as it stands, for plan pull requests.
//! The rollout's state comes from a running controller (`--server`), from a state dir read
//! read-only (`--state-dir`), or, with neither, is a rollout not started yet. The rule and
//! its words are `meridian_core::edit::summarize`: the one the engine applies and `meridian
//! run` logs. Exit codes: 0 compared, 1 invalid plans or the server's refusal, 3 usage.

use std::path::PathBuf;

use meridian_core::edit::{EditSummary, summarize};
use meridian_core::{Plan, PlanState};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Format;
use crate::client::{self, Client};
use crate::exit;
use meridian_controller::config::read_sources;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The plans as they are: files or directories, as `meridian plan` takes them.
    pub old: PathBuf,
    /// The plans as edited.
    pub new: PathBuf,
    /// Compare against the live state of the rollouts on this server (e.g.
    /// http://127.0.0.1:7070; a viewer's token will do).
    #[arg(long, value_name = "URL", conflicts_with = "state_dir")]
    pub server: Option<String>,
    /// Compare against the states stored in this state dir (read-only; the controller may run).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Only this plan (default: every plan in OLD or NEW).
    #[arg(long = "plan", value_name = "NAME")]
    pub plan: Option<String>,
    /// Bearer token for --server.
    #[arg(long, env = "MERIDIAN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file holding the bearer token for --server.
    #[arg(long, env = "MERIDIAN_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM certificate to trust for an https --server.
    #[arg(long, env = "MERIDIAN_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub format: Format,
}

/// What happens to one plan.
enum PlanDiff {
    Edited(EditSummary),
    New,
    /// Gone from NEW; `in_flight` units still serve traffic (the controller refuses that).
    Removed {
        in_flight: usize,
    },
}

pub fn run(args: &Args) -> i32 {
    let Some(old) = load("OLD", &args.old) else { return exit::FAILED };
    let Some(new) = load("NEW", &args.new) else { return exit::FAILED };
    let mut names: Vec<&str> = old.iter().chain(&new).map(|p| p.name.as_str()).collect();
    names.sort();
    names.dedup();
    if let Some(only) = &args.plan {
        if !names.contains(&only.as_str()) {
            eprintln!("meridian diff: no plan named {only:?} in OLD or NEW");
            return exit::USAGE;
        }
        names.retain(|n| n == only);
    }
    let with_state: Vec<&Plan> = names.iter().filter_map(|n| old.iter().find(|p| p.name == *n)).collect();
    let (source, states) = match states(args, &with_state) {
        Ok(found) => found,
        Err(code) => return code,
    };
    let mut diffs = Vec::new();
    for name in &names {
        let before = old.iter().find(|p| p.name == *name);
        let after = new.iter().find(|p| p.name == *name);
        let state = |plan: &Plan| {
            let stored = states.iter().find(|s| s.plan == plan.name).cloned();
            stored.unwrap_or_else(|| PlanState::new(plan))
        };
        let diff = match (before, after) {
            (Some(o), Some(n)) => PlanDiff::Edited(summarize(o, n, &state(o))),
            (None, Some(_)) => PlanDiff::New,
            (Some(o), None) => {
                let mut s = state(o);
                s.align(o);
                PlanDiff::Removed { in_flight: s.units_in_flight() }
            }
            (None, None) => continue,
        };
        diffs.push((name.to_string(), diff));
    }
    match args.format {
        Format::Json | Format::Yaml => {
            let plans: Vec<Value> = diffs.iter().map(|(name, d)| diff_json(name, d)).collect();
            crate::output::data(args.format, &json!({ "against": source, "plans": plans }));
        }
        Format::Text | Format::Wide => print!("{}", diff_text(&source, &diffs)),
    }
    exit::OK
}

fn load(what: &str, path: &PathBuf) -> Option<Vec<Plan>> {
    let sources = match read_sources(std::slice::from_ref(path)) {
        Ok(sources) => sources,
        Err(e) => {
            eprintln!("meridian diff: {what}: {e:#}");
            return None;
        }
    };
    let bundle = sources.load(None);
    for d in bundle.report.diagnostics.iter().filter(|d| d.severity == meridian_core::Severity::Error) {
        eprintln!("{d}");
    }
    if bundle.report.has_errors() {
        eprintln!("meridian diff: fix the errors in {what} ({}) first (see `meridian validate`)", path.display());
        return None;
    }
    Some(bundle.plans)
}

#[derive(Deserialize)]
struct PlanDetail {
    state: PlanState,
}

/// Where the states come from, in words, and the states found (a plan without one has not
/// started). `Err` holds the exit code once the reason is printed.
fn states(args: &Args, plans: &[&Plan]) -> Result<(String, Vec<PlanState>), i32> {
    if let Some(dir) = &args.state_dir {
        let reader = meridian_store::StoreReader::open(dir).map_err(|e| {
            eprintln!("meridian diff: cannot read the state dir {}: {}", dir.display(), meridian_core::error_chain(&e));
            exit::USAGE
        })?;
        let mut states = Vec::new();
        for plan in plans {
            match reader.state(&plan.name) {
                Ok(Some(state)) => states.push(state),
                Ok(None) => {}
                Err(e) => {
                    eprintln!(
                        "meridian diff: cannot read the state of plan {}: {}",
                        plan.name,
                        meridian_core::error_chain(&e)
                    );
                    return Err(exit::FAILED);
                }
            }
        }
        return Ok((format!("the state in {}", dir.display()), states));
    }
    let Some(url) = &args.server else { return Ok(("rollouts not started".into(), Vec::new())) };
    let client = Client::for_url("diff", url, args.token.clone(), args.token_file.clone(), args.ca_cert.clone())?;
    let fetched = client::block_on("diff", async {
        let mut states = Vec::with_capacity(plans.len());
        for plan in plans {
            match client.get::<PlanDetail>(&format!("/plans/{}", client::segment(&plan.name))).await {
                Ok(detail) => states.push(detail.state),
                // A plan the server does not run has not started there.
                Err(client::ClientError::Api { status: 404, .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(states)
    })
    .ok_or(exit::FAILED)?;
    let states = fetched.map_err(|e| {
        e.report("diff");
        e.exit_code()
    })?;
    Ok((format!("the live state on {}", client.server()), states))
}

fn diff_text(source: &str, diffs: &[(String, PlanDiff)]) -> String {
    let mut out = format!("against {source}:\n");
    for (name, diff) in diffs {
        match diff {
            PlanDiff::New => out.push_str(&format!("plan {name}: new; starts pending\n")),
            PlanDiff::Removed { in_flight: 0 } => {
                out.push_str(&format!("plan {name}: removed; it leaves control, its state and records stay\n"))
            }
            PlanDiff::Removed { in_flight } => out.push_str(&format!(
                "plan {name}: removed while {in_flight} of its units serve traffic: the controller refuses this edit; \
                 abort the plan or let it complete first\n"
            )),
            PlanDiff::Edited(summary) => {
                out.push_str(&format!("plan {name}: {}\n", summary.counts()));
                for line in summary.lines() {
                    out.push_str(&format!("  {line}\n"));
                }
            }
        }
    }
    out
}

fn diff_json(name: &str, diff: &PlanDiff) -> Value {
    match diff {
        PlanDiff::New => json!({ "plan": name, "change": "new" }),
        PlanDiff::Removed { in_flight } => {
            json!({ "plan": name, "change": "removed", "unitsInFlight": in_flight, "refused": *in_flight > 0 })
        }
        PlanDiff::Edited(summary) => {
            let mut v = serde_json::to_value(summary).unwrap_or(Value::Null);
            if let Some(o) = v.as_object_mut() {
                o.insert("change".into(), json!("edited"));
            }
            v
        }
    }
}
