//! What a wait on a rollout waits for (`meridian status PLAN --wait --until COND`), whether a
//! plan's state has reached it, ended without it, or is still on its way, and, for a wait that
//! gives up, what the rollout is blocked on.
//!
//! ```text
//!   Until (complete | approval-needed[=FLAG] | halted | failed | paused)
//!   Outcome + PlanState (as the API serves them) + Scope ──> check() ──> Reached | Ended(End) | open
//!                                                       └──> blocked_on() (for a timeout message)
//! ```
//!
//! Owns the meaning of each condition for a plan, a wave and a region, and the rule for when
//! a wait on a region ends. Pure: it reads the outcome and the state and decides nothing
//! about them; the CLI maps the result to exit codes.

use std::fmt;
use std::str::FromStr;

use crate::outcome::{End, Outcome};
use crate::state::{PlanState, UnitPhase, WaitReason, WavePhase};

/// The condition a wait ends on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Until {
    /// The scope is complete (how cleanly is the [`End`]).
    #[default]
    Complete,
    /// A unit (or wave) in scope waits for an approval, for this flag if one is named: the
    /// engine's reason for holding it is that approval (missing, expired, revoked, ...).
    ApprovalNeeded { flag: Option<String> },
    /// The scope's wave halted on failed regions (for a plan: any wave; for a region: its wave).
    Halted,
    /// A region in scope failed or was rolled back and nobody accepted it (for a region: it
    /// failed at all): what ends a fail-fast wait for `complete` with a failure.
    Failed,
    /// An operator's pause covers the scope (the plan's, the wave's, or for a region its own
    /// or its wave's).
    Paused,
}

impl FromStr for Until {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "complete" => Ok(Until::Complete),
            "approval-needed" => Ok(Until::ApprovalNeeded { flag: None }),
            "halted" => Ok(Until::Halted),
            "failed" => Ok(Until::Failed),
            "paused" => Ok(Until::Paused),
            _ => match text.strip_prefix("approval-needed=") {
                Some(flag) if !flag.trim().is_empty() => Ok(Until::ApprovalNeeded { flag: Some(flag.to_string()) }),
                Some(_) => Err("approval-needed= needs a flag name (approval-needed=ops-go)".into()),
                None => Err(format!(
                    "unknown condition {text:?}; use complete, approval-needed, approval-needed=FLAG, halted, failed \
                     or paused"
                )),
            },
        }
    }
}

impl fmt::Display for Until {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Until::Complete => f.write_str("complete"),
            Until::ApprovalNeeded { flag: None } => f.write_str("approval-needed"),
            Until::ApprovalNeeded { flag: Some(flag) } => write!(f, "approval-needed={flag}"),
            Until::Halted => f.write_str("halted"),
            Until::Failed => f.write_str("failed"),
            Until::Paused => f.write_str("paused"),
        }
    }
}

/// The part of a plan a wait looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    Plan,
    /// A wave, with its regions.
    Wave {
        name: &'a str,
        regions: &'a [&'a str],
    },
    /// A region, with the wave it belongs to.
    Region {
        name: &'a str,
        wave: &'a str,
    },
}

/// How a wait ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitEnd {
    /// The condition holds; the text says where (`jp/signin, jp/store: approval jp-regulator
    /// not granted`). Never for [`Until::Complete`], which ends as [`WaitEnd::Ended`].
    Reached(String),
    /// The scope ended (completed, failed or was aborted): for `complete` that is the answer;
    /// for any other condition it came first, and the condition can no longer be reached the
    /// way the wait meant it.
    Ended(End),
}

/// Has the wait for `until` on `scope` ended? `Ok(None)` while it goes on; `Err` for a wave or
/// region the plan does not have. `fail_fast`: a failure nobody accepted ends a wait for
/// `complete`, `approval-needed` or `paused` at once (waits for `halted` and `failed` look for
/// failures, so they never end on one).
pub fn check(
    until: &Until,
    outcome: &Outcome,
    state: &PlanState,
    scope: Scope<'_>,
    fail_fast: bool,
) -> Result<Option<WaitEnd>, String> {
    // Validates the scope too.
    let ended = end(outcome, state, scope, fail_fast)?;
    let plan = &outcome.plan;
    let reached = match until {
        Until::Complete => return Ok(ended.map(WaitEnd::Ended)),
        Until::ApprovalNeeded { flag } => {
            let wanted = |reason: &WaitReason| match reason {
                WaitReason::Approval { flag: f, .. } => flag.as_ref().is_none_or(|want| want == f),
                _ => false,
            };
            let blocked = blocked_on_where(state, scope, wanted);
            (!blocked.is_empty()).then(|| Blocked::describe_all(&blocked, usize::MAX))
        }
        Until::Halted => {
            let halted: Vec<&str> = outcome
                .waves
                .iter()
                .filter(|w| w.phase == WavePhase::Halted && wave_in_scope(scope, &w.name))
                .map(|w| w.name.as_str())
                .collect();
            (!halted.is_empty()).then(|| {
                let regions: Vec<&str> = outcome
                    .unaccepted()
                    .filter(|f| halted.contains(&f.wave.as_str()))
                    .map(|f| f.region.as_str())
                    .collect();
                format!(
                    "plan {plan}: wave {} halted on failed regions {}",
                    halted.join(", "),
                    if regions.is_empty() { "(not recorded)".to_string() } else { regions.join(", ") }
                )
            })
        }
        Until::Failed => {
            let failed: Vec<String> = outcome
                .failed
                .iter()
                .filter(|f| match scope {
                    Scope::Plan => f.accepted.is_none(),
                    Scope::Wave { name, .. } => f.accepted.is_none() && f.wave == name,
                    Scope::Region { name, .. } => f.region == name,
                })
                .map(|f| f.describe())
                .collect();
            (!failed.is_empty()).then(|| format!("plan {plan}: {}", failed.join("; ")))
        }
        Until::Paused => {
            let by = match scope {
                _ if state.paused.plan => Some(format!("plan {plan} is paused")),
                Scope::Wave { name: w, .. } | Scope::Region { wave: w, .. } if state.paused.waves.contains(w) => {
                    Some(format!("wave {w} of plan {plan} is paused"))
                }
                Scope::Region { name, .. } if state.paused.regions.contains(name) => {
                    Some(format!("region {name} of plan {plan} is paused"))
                }
                _ => None,
            };
            // A pause of something already complete or aborted holds nothing.
            let done = matches!(ended, Some(End::Enabled | End::CompleteWithExceptions(_)))
                || state.aborted
                || matches!(scope, Scope::Region { name, .. } if state.aborted_regions.contains(name));
            by.filter(|_| !done)
        }
    };
    if let Some(text) = reached {
        return Ok(Some(WaitEnd::Reached(text)));
    }
    let ended = match until {
        // Failures are what these wait for: only an abort or a completion ends them. A region
        // waiting for its wave to halt follows the wave.
        Until::Halted | Until::Failed => {
            let scope = match (until, scope) {
                (Until::Halted, Scope::Region { name, wave }) => {
                    if state.aborted || state.aborted_regions.contains(name) {
                        return Ok(Some(WaitEnd::Ended(End::Failed(format!(
                            "region {name} of plan {plan} was aborted"
                        )))));
                    }
                    Scope::Wave { name: wave, regions: &[] }
                }
                _ => scope,
            };
            end(outcome, state, scope, false)?
        }
        _ => ended,
    };
    Ok(ended.map(WaitEnd::Ended))
}

/// How a wait for `complete` on `scope` ends, if it has. Plans and waves end by the outcome
/// ([`Outcome::end`]); a region ends when all its units are enabled, or as soon as one of
/// them failed or was rolled back (accepted or not), or it was aborted.
pub fn end(outcome: &Outcome, state: &PlanState, scope: Scope<'_>, fail_fast: bool) -> Result<Option<End>, String> {
    let plan = &outcome.plan;
    let name = match scope {
        Scope::Plan => return outcome.end(None, fail_fast),
        Scope::Wave { name, .. } => return outcome.end(Some(name), fail_fast),
        Scope::Region { name, .. } => name,
    };
    let units: Vec<_> = state.units.iter().filter(|u| u.region == name).collect();
    if units.is_empty() {
        let mut regions: Vec<&str> = state.units.iter().map(|u| u.region.as_str()).collect();
        regions.dedup();
        return Err(format!("plan {plan} has no region {name:?} (regions: {})", regions.join(", ")));
    }
    if state.aborted || state.aborted_regions.contains(name) {
        return Ok(Some(End::Failed(format!("region {name} of plan {plan} was aborted"))));
    }
    if let Some(f) = outcome.failed.iter().find(|f| f.region == name) {
        return Ok(Some(End::Failed(format!("plan {plan}: {}", f.describe()))));
    }
    if let Some(u) = units.iter().find(|u| matches!(u.phase, UnitPhase::Failed | UnitPhase::RolledBack)) {
        return Ok(Some(End::Failed(format!("{}/{} is {}", u.region, u.service, u.phase))));
    }
    Ok(units.iter().all(|u| u.phase == UnitPhase::Enabled).then_some(End::Enabled))
}

fn wave_in_scope(scope: Scope<'_>, wave: &str) -> bool {
    match scope {
        Scope::Plan => true,
        Scope::Wave { name: w, .. } | Scope::Region { wave: w, .. } => w == wave,
    }
}

/// Units (or a wave) held for the same reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// The reason in words, as `meridian status` shows it.
    pub reason: String,
    /// What it holds: `jp/signin`, `jp/store`, or `wave asia`.
    pub what: Vec<String>,
}

impl Blocked {
    /// `jp/signin, jp/store: approval jp-regulator not granted`, at most `most` names.
    pub fn describe(&self, most: usize) -> String {
        let names: Vec<&str> = self.what.iter().take(most).map(String::as_str).collect();
        let more = match self.what.len().saturating_sub(most) {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        format!("{}{more}: {}", names.join(", "), self.reason)
    }

    fn describe_all(blocked: &[Blocked], most: usize) -> String {
        blocked.iter().map(|b| b.describe(most)).collect::<Vec<_>>().join("; ")
    }
}

/// What holds the scope, grouped by reason, in plan order within each rank: first what only
/// someone can lift (an approval, a pause, a freeze, a halt or failure), then what passes by
/// itself (a window, a bake, health data, a dependency), last "an earlier wave has not
/// completed" (which follows from the others). Empty when nothing in scope waits.
pub fn blocked_on(state: &PlanState, scope: Scope<'_>) -> Vec<Blocked> {
    let rank = |r: &WaitReason| match r {
        WaitReason::Approval { .. }
        | WaitReason::Paused { .. }
        | WaitReason::Frozen { .. }
        | WaitReason::WaveHalted { .. }
        | WaitReason::RegionFailed { .. }
        | WaitReason::Drift { .. } => 0,
        WaitReason::Wave { .. } => 2,
        _ => 1,
    };
    (0..3).flat_map(|n| blocked_on_where(state, scope, |r| rank(r) == n)).collect()
}

fn blocked_on_where(state: &PlanState, scope: Scope<'_>, keep: impl Fn(&WaitReason) -> bool) -> Vec<Blocked> {
    let mut groups: Vec<Blocked> = Vec::new();
    let mut add = |reason: &WaitReason, what: String| {
        let reason = reason.to_string();
        match groups.iter_mut().find(|g| g.reason == reason) {
            Some(g) => g.what.push(what),
            None => groups.push(Blocked { reason, what: vec![what] }),
        }
    };
    for w in &state.waves {
        if let Some(reason) = w.waiting.as_ref().filter(|r| keep(r))
            && matches!(scope, Scope::Plan | Scope::Wave { .. })
            && wave_in_scope(scope, &w.name)
        {
            add(reason, format!("wave {}", w.name));
        }
    }
    for u in &state.units {
        let in_scope = match scope {
            Scope::Plan => true,
            Scope::Wave { regions, .. } => regions.contains(&u.region.as_str()),
            Scope::Region { name, .. } => u.region == name,
        };
        if let Some(reason) = u.waiting.as_ref().filter(|r| keep(r))
            && in_scope
        {
            add(reason, format!("{}/{}", u.region, u.service));
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approval::ApprovalProblem;
    use crate::outcome::outcome;
    use crate::plan::Plan;
    use crate::state::AcceptedFailures;

    fn mk_plan() -> Plan {
        let text = "apiVersion: meridian.dev/v1alpha1\nkind: RolloutPlan\nmetadata: {name: p}\nspec:\n  services: \
                    [{name: signin}, {name: store}]\n  regions: [{name: us}, {name: jp, approvals: [jp-reg]}, {name: \
                    kr}]\n  waves:\n    - {name: canary, regions: [us]}\n    - {name: asia, regions: [jp, kr]}\n  \
                    steps: [10, 100]\n  actuator: {log: {}}\n";
        let bundle = crate::validate::load(&[("p.yaml".into(), text.into())], None);
        assert!(!bundle.report.has_errors(), "{:?}", bundle.report);
        bundle.plans.into_iter().next().unwrap()
    }

    fn enable(state: &mut PlanState, region: &str) {
        for u in state.units.iter_mut().filter(|u| u.region == region) {
            (u.phase, u.percent) = (UnitPhase::Enabled, 100);
        }
    }

    /// us enabled and canary complete; asia runs: jp waits for jp-reg, kr for nothing yet.
    fn jp_needs_approval() -> (Plan, PlanState) {
        let plan = mk_plan();
        let mut state = PlanState::new(&plan);
        enable(&mut state, "us");
        state.waves[0].phase = WavePhase::Complete;
        state.waves[1].phase = WavePhase::Running;
        for u in state.units.iter_mut().filter(|u| u.region == "jp") {
            u.phase = UnitPhase::Blocked;
            u.waiting = Some(WaitReason::Approval { flag: "jp-reg".into(), problem: ApprovalProblem::Missing });
        }
        (plan, state)
    }

    const ASIA: Scope<'static> = Scope::Wave { name: "asia", regions: &["jp", "kr"] };
    const CANARY: Scope<'static> = Scope::Wave { name: "canary", regions: &["us"] };
    const JP: Scope<'static> = Scope::Region { name: "jp", wave: "asia" };
    const KR: Scope<'static> = Scope::Region { name: "kr", wave: "asia" };

    fn check_all(until: &str, plan: &Plan, state: &PlanState, scope: Scope<'_>) -> Option<WaitEnd> {
        check(&until.parse().unwrap(), &outcome(plan, state), state, scope, true).unwrap()
    }

    fn reached(end: Option<WaitEnd>) -> String {
        match end {
            Some(WaitEnd::Reached(text)) => text,
            other => panic!("not reached: {other:?}"),
        }
    }

    #[test]
    fn conditions_parse_and_print_as_written() {
        for text in ["complete", "approval-needed", "approval-needed=ops-go", "halted", "failed", "paused"] {
            assert_eq!(text.parse::<Until>().unwrap().to_string(), text);
        }
        assert_eq!(
            "approval-needed=".parse::<Until>(),
            Err("approval-needed= needs a flag name (approval-needed=ops-go)".into())
        );
        assert!("done".parse::<Until>().unwrap_err().starts_with("unknown condition \"done\"; use complete,"));
    }

    #[test]
    fn an_approval_is_needed_where_the_engine_holds_a_unit_for_one() {
        let (plan, state) = jp_needs_approval();
        let why = reached(check_all("approval-needed", &plan, &state, Scope::Plan));
        assert_eq!(why, "jp/signin, jp/store: approval jp-reg not granted");
        assert!(matches!(check_all("approval-needed=jp-reg", &plan, &state, ASIA), Some(WaitEnd::Reached(_))));
        assert!(matches!(check_all("approval-needed", &plan, &state, JP), Some(WaitEnd::Reached(_))));
        assert_eq!(check_all("approval-needed=ops-go", &plan, &state, Scope::Plan), None, "another flag");
        assert_eq!(check_all("approval-needed", &plan, &state, KR), None, "kr needs none");
        // The canary is complete: it will never need one.
        assert_eq!(check_all("approval-needed", &plan, &state, CANARY), Some(WaitEnd::Ended(End::Enabled)));
        // A unit that waits for an earlier wave does not need its approval yet.
        let mut waiting = PlanState::new(&plan);
        waiting.units.iter_mut().filter(|u| u.region == "jp").for_each(|u| {
            u.waiting = Some(WaitReason::Wave { wave: "canary".into() });
        });
        assert_eq!(check_all("approval-needed", &plan, &waiting, Scope::Plan), None);
    }

    #[test]
    fn a_failure_ends_a_wait_for_an_approval_or_a_pause_and_reaches_one_for_failed() {
        let (plan, mut state) = jp_needs_approval();
        for u in state.units.iter_mut().filter(|u| u.region == "kr") {
            u.phase = UnitPhase::RolledBack;
        }
        let o = outcome(&plan, &state);
        // jp still waits for its approval: that is reached before the failure counts.
        assert!(matches!(check_all("approval-needed", &plan, &state, Scope::Plan), Some(WaitEnd::Reached(_))));
        assert!(matches!(check_all("paused", &plan, &state, Scope::Plan), Some(WaitEnd::Ended(End::Failed(_)))));
        assert_eq!(check(&Until::Paused, &o, &state, Scope::Plan, false), Ok(None), "without fail-fast");
        let why = reached(check_all("failed", &plan, &state, Scope::Plan));
        assert!(why.starts_with("plan p: region kr (wave asia) rolled back: signin failed"), "{why}");
        assert!(matches!(check_all("failed", &plan, &state, KR), Some(WaitEnd::Reached(_))));
        assert_eq!(check_all("failed", &plan, &state, JP), None);
        assert_eq!(check_all("halted", &plan, &state, Scope::Plan), None, "the wave has not halted yet");
        assert_eq!(check_all("halted", &plan, &state, KR), None);

        state.waves[1].phase = WavePhase::Halted;
        let why = reached(check_all("halted", &plan, &state, Scope::Plan));
        assert_eq!(why, "plan p: wave asia halted on failed regions kr");
        assert!(matches!(check_all("halted", &plan, &state, JP), Some(WaitEnd::Reached(_))), "jp's wave");
        assert_eq!(
            check_all("halted", &plan, &state, CANARY),
            Some(WaitEnd::Ended(End::Enabled)),
            "the canary completed: it never halts"
        );

        // A promote accepts kr: the plan has no failure left to wait for, and it is complete.
        state.waves[1].phase = WavePhase::Complete;
        state.waves[1].accepted = Some(AcceptedFailures {
            by: "alice".into(),
            at: chrono::DateTime::from_timestamp(1_780_000_000, 0).unwrap(),
            regions: vec!["kr".into()],
        });
        enable(&mut state, "jp");
        assert!(matches!(
            check_all("failed", &plan, &state, Scope::Plan),
            Some(WaitEnd::Ended(End::CompleteWithExceptions(_)))
        ));
        assert!(
            matches!(check_all("failed", &plan, &state, KR), Some(WaitEnd::Reached(_))),
            "a region's failure counts"
        );
    }

    #[test]
    fn a_pause_covers_its_scope_and_what_is_inside_it() {
        let (plan, mut state) = jp_needs_approval();
        assert_eq!(check_all("paused", &plan, &state, Scope::Plan), None);
        state.paused.regions.insert("kr".into());
        assert_eq!(reached(check_all("paused", &plan, &state, KR)), "region kr of plan p is paused");
        assert_eq!(check_all("paused", &plan, &state, ASIA), None, "one region is not the wave");
        state.paused.waves.insert("asia".into());
        assert_eq!(reached(check_all("paused", &plan, &state, JP)), "wave asia of plan p is paused");
        assert_eq!(check_all("paused", &plan, &state, Scope::Plan), None);
        state.paused.plan = true;
        assert_eq!(reached(check_all("paused", &plan, &state, Scope::Plan)), "plan p is paused");
        // The canary completed before the pause: it holds nothing there.
        assert_eq!(check_all("paused", &plan, &state, CANARY), Some(WaitEnd::Ended(End::Enabled)));
        state.aborted = true;
        assert!(matches!(check_all("paused", &plan, &state, Scope::Plan), Some(WaitEnd::Ended(End::Failed(_)))));
        assert!(matches!(check_all("halted", &plan, &state, JP), Some(WaitEnd::Ended(End::Failed(_)))));
    }

    #[test]
    fn region_waits_end_on_enabled_failed_or_aborted() {
        let (plan, mut state) = jp_needs_approval();
        let o = outcome(&plan, &state);
        assert_eq!(end(&o, &state, Scope::Region { name: "us", wave: "canary" }, true), Ok(Some(End::Enabled)));
        assert_eq!(end(&o, &state, JP, true), Ok(None));
        assert_eq!(
            end(&o, &state, Scope::Region { name: "cn", wave: "asia" }, true),
            Err("plan p has no region \"cn\" (regions: us, jp, kr)".into())
        );
        state.aborted_regions.insert("jp".into());
        assert_eq!(end(&o, &state, JP, true), Ok(Some(End::Failed("region jp of plan p was aborted".into()))));
        state.units[4].phase = UnitPhase::Failed;
        let o = outcome(&plan, &state);
        assert!(
            matches!(end(&o, &state, KR, false), Ok(Some(End::Failed(why))) if why.contains("region kr (wave asia) failed"))
        );
    }

    #[test]
    fn blocked_on_groups_units_by_reason_with_downstream_waits_last() {
        let (plan, mut state) = jp_needs_approval();
        for u in state.units.iter_mut().filter(|u| u.region == "kr") {
            u.waiting = Some(WaitReason::Dependency { services: vec!["x".into()] });
        }
        state.units[0].waiting = Some(WaitReason::Wave { wave: "w0".into() });
        state.units[1].waiting = Some(WaitReason::Paused { scope: "region us".into() });
        let groups = blocked_on(&state, Scope::Plan);
        let texts: Vec<String> = groups.iter().map(|b| b.describe(1)).collect();
        assert_eq!(
            texts,
            [
                "us/store: paused (region us)",
                "jp/signin and 1 more: approval jp-reg not granted",
                "kr/signin and 1 more: waiting for x to be enabled first",
                "us/signin: waiting for wave w0 to complete"
            ]
        );
        assert_eq!(blocked_on(&state, KR).len(), 1);
        assert_eq!(blocked_on(&PlanState::new(&plan), Scope::Plan), []);
    }
}
