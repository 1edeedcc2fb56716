//! The durable state of one plan's rollout: a phase, step and traffic percent per
//! (region, service) unit, a phase per wave, and what the operators asked for.
//!
//! Owns the shape that stores persist (a database row, a Kubernetes `status`). Its alignment
//! with an edited plan is `crate::edit`'s rule; decisions about it live in `engine`.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::approval::ApprovalProblem;
use crate::health::HealthVerdict;
use crate::plan::Plan;
use crate::relative::Baseline;

/// Where a (region, service) unit is in its rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnitPhase {
    /// Its wave has not started.
    Pending,
    /// Its wave runs, but it may not start yet; `waiting` says why.
    Blocked,
    /// Serving traffic at `step`, working towards 100 %.
    Progressing,
    /// At 100 % and baked.
    Enabled,
    /// Its health failed and the plan says pause: traffic kept, nothing moves.
    Failed,
    /// Set back to 0 % after a failure or an abort.
    RolledBack,
    /// Held at its current traffic by an operator or a failure elsewhere in its region.
    Paused,
}

impl UnitPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            UnitPhase::Pending => "pending",
            UnitPhase::Blocked => "blocked",
            UnitPhase::Progressing => "progressing",
            UnitPhase::Enabled => "enabled",
            UnitPhase::Failed => "failed",
            UnitPhase::RolledBack => "rolled-back",
            UnitPhase::Paused => "paused",
        }
    }
}

impl fmt::Display for UnitPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a wave is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WavePhase {
    Pending,
    Running,
    /// Every region enabled; holding healthy for the wave's bake.
    Baking,
    Complete,
    /// A region failed or was rolled back; later waves wait for a retry or a promote.
    Halted,
}

impl fmt::Display for WavePhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WavePhase::Pending => "pending",
            WavePhase::Running => "running",
            WavePhase::Baking => "baking",
            WavePhase::Complete => "complete",
            WavePhase::Halted => "halted",
        })
    }
}

/// What a unit (or wave) is waiting for before its next move.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum WaitReason {
    /// An earlier wave has not completed.
    Wave { wave: String },
    /// The wave stopped on failed regions.
    WaveHalted { wave: String, failed_regions: Vec<String> },
    /// A required approval does not hold.
    Approval {
        flag: String,
        #[serde(flatten)]
        problem: ApprovalProblem,
    },
    /// Outside every window; the next opens then (none within 8 days: `None`).
    Window { opens_at: Option<DateTime<Utc>> },
    /// Services in the same region that must be enabled first.
    Dependency { services: Vec<String> },
    /// The wave's `maxParallel` is used up by these regions. One list, shared by every unit
    /// of the wave that waits for a slot (written out as a plain list).
    Parallelism {
        limit: usize,
        #[serde(with = "shared_names")]
        active: Arc<[String]>,
    },
    /// The target has not confirmed the current percent yet.
    Actuation { percent: u32 },
    /// The target serves another percent than the state says, and the plan holds on drift
    /// (`onDrift: hold`) until someone restores it.
    Drift { expected: u32, observed: u32 },
    /// Holding the current step until then.
    StepBake { until: DateTime<Utc> },
    /// Holding the wave's bake until then.
    WaveBake { wave: String, until: DateTime<Utc> },
    /// Not every check has a fresh healthy verdict.
    Health { checks: Vec<String> },
    /// An operator paused this scope.
    Paused { scope: String },
    /// The rollout (or this region) was aborted.
    Aborted,
    /// Another service of this region failed.
    RegionFailed { service: String },
    /// A freeze period holds the region: no step starts until it ends (`None`: until an
    /// operator lifts the run-time freeze `name`).
    Frozen {
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<DateTime<Utc>>,
        /// The run-time freeze that holds it, if that is what does.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// Another plan (`wave: None`), or one of its waves, is not complete yet (`dependsOn`),
    /// or no longer counts as complete because that plan was aborted.
    PlanDependency {
        plan: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wave: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        aborted: bool,
    },
}

/// A list of names shared between units (`Arc<[String]>`), written as a plain list.
mod shared_names {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(names: &Arc<[String]>, serializer: S) -> Result<S::Ok, S::Error> {
        names[..].serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Arc<[String]>, D::Error> {
        Vec::<String>::deserialize(deserializer).map(Arc::from)
    }
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitReason::Wave { wave } => write!(f, "waiting for wave {wave} to complete"),
            WaitReason::WaveHalted { wave, failed_regions } => write!(
                f,
                "wave {wave} halted on failed regions {}; retry them or promote the wave",
                failed_regions.join(", ")
            ),
            WaitReason::Approval { flag, problem } => match problem {
                ApprovalProblem::Missing => write!(f, "approval {flag} not granted"),
                ApprovalProblem::NotYetValid { name, at } => {
                    write!(
                        f,
                        "approval {flag} ({name}) valid only from {}",
                        at.to_rfc3339_opts(SecondsFormat::Secs, true)
                    )
                }
                ApprovalProblem::Expired { name, at } => {
                    write!(f, "approval {flag} ({name}) expired at {}", at.to_rfc3339_opts(SecondsFormat::Secs, true))
                }
                ApprovalProblem::Revoked { name, at, by } => {
                    write!(
                        f,
                        "approval {flag} ({name}) revoked by {by} at {}",
                        at.to_rfc3339_opts(SecondsFormat::Secs, true)
                    )
                }
                ApprovalProblem::OutOfScope { name } => {
                    write!(f, "approval {flag} ({name}) does not cover this region or service")
                }
                ApprovalProblem::Untrusted { name, reason } => {
                    write!(f, "approval {flag} ({name}) does not count: {reason}")
                }
                ApprovalProblem::TooFewGrantors { required, grantors, unused_keys } => {
                    let missing = required.saturating_sub(grantors.len());
                    write!(
                        f,
                        "waiting for approval {flag}: {} of {required} grantors ({}); still needed: {missing} more \
                         distinct grantor{}",
                        grantors.len(),
                        grantors.join(", "),
                        if missing == 1 { "" } else { "s" }
                    )?;
                    if !unused_keys.is_empty() {
                        write!(f, ", signing with {}", unused_keys.join(" or "))?;
                    }
                    Ok(())
                }
            },
            WaitReason::Window { opens_at: Some(at) } => {
                write!(f, "outside its windows; next opens {}", at.to_rfc3339_opts(SecondsFormat::Secs, true))
            }
            WaitReason::Window { opens_at: None } => {
                write!(f, "outside its windows; none opens within 8 days")
            }
            WaitReason::Dependency { services } => {
                write!(f, "waiting for {} to be enabled first", services.join(", "))
            }
            WaitReason::Parallelism { limit, active } => {
                write!(f, "maxParallel {limit} reached ({} in progress)", active.join(", "))
            }
            WaitReason::Actuation { percent } => write!(f, "waiting for the target to confirm {percent}%"),
            WaitReason::Drift { expected, observed } => write!(
                f,
                "the target serves {observed}% instead of {expected}%; held (onDrift: hold) until it is restored"
            ),
            WaitReason::StepBake { until } => {
                write!(f, "baking until {}", until.to_rfc3339_opts(SecondsFormat::Secs, true))
            }
            WaitReason::WaveBake { wave, until } => {
                write!(f, "wave {wave} baking until {}", until.to_rfc3339_opts(SecondsFormat::Secs, true))
            }
            WaitReason::Health { checks } => {
                write!(f, "waiting for fresh healthy data from {}", checks.join(", "))
            }
            WaitReason::Paused { scope } => write!(f, "paused ({scope})"),
            WaitReason::Aborted => f.write_str("aborted"),
            WaitReason::RegionFailed { service } => {
                write!(f, "service {service} failed in this region")
            }
            WaitReason::Frozen { reason, until: Some(until), .. } => {
                write!(f, "frozen ({reason}) until {}", until.to_rfc3339_opts(SecondsFormat::Secs, true))
            }
            WaitReason::Frozen { reason, until: None, name } => match name {
                Some(name) => write!(f, "frozen ({reason}; run-time freeze {name}) until lifted with unfreeze"),
                None => write!(f, "frozen ({reason}) until lifted with unfreeze"),
            },
            WaitReason::PlanDependency { plan, wave, aborted } => {
                match wave {
                    Some(wave) => write!(f, "waits for plan {plan} wave {wave}")?,
                    None => write!(f, "waits for plan {plan} to complete")?,
                }
                if *aborted {
                    f.write_str(" (that plan was aborted)")?;
                }
                Ok(())
            }
        }
    }
}

/// The latest evaluation of one check for one unit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckState {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<HealthVerdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    /// Failing evaluations in a row.
    #[serde(default)]
    pub consecutive_failures: u32,
    /// What the latest value was compared with, for a check with a `relative` part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,
}

/// One (region, service).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitState {
    pub region: String,
    pub service: String,
    pub phase: UnitPhase,
    /// Index into the region's steps, once started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
    /// Traffic this unit is meant to serve now.
    pub percent: u32,
    /// When the current phase or step began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// Start of the current unbroken healthy hold (reset by any non-healthy evaluation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake_since: Option<DateTime<Utc>>,
    /// What the unit waits for before its next move.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<WaitReason>,
    /// An operator's promote: skip the current step bake once.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub promoted: bool,
    #[serde(default)]
    pub checks: Vec<CheckState>,
    /// What the target serves while a drift is held (`onDrift: hold`); cleared once it
    /// serves `percent` again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<u32>,
    /// Meridian has sent this unit a traffic change at least once (never reset): its target
    /// is read back for drift from then on, at 0 % too, so traffic switched on by hand after a
    /// rollback or a lost approval is undone. Units never moved are left alone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub actuated: bool,
    /// Why this unit failed, while it is failed or rolled back after its own failure;
    /// cleared by a retry. Its region's other units name it in `waiting` (`RegionFailed`).
    /// Boxed, like `stalled`: rare, and inline it would make each of 150,000 units 150 bytes
    /// larger (the JSON is the same).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Box<UnitFailure>>,
    /// Where its `progressDeadline` runs from: its last move, or the first decision that found
    /// it waiting for nothing expected since. `None` while it waits for something expected (or
    /// its region has no deadline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_at: Option<DateTime<Utc>>,
    /// Past its progress deadline under `onProgressDeadline: alert`: shown until it moves or
    /// waits for something expected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stalled: Option<Box<Stalled>>,
}

/// A unit that made no progress for its whole `progressDeadline`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stalled {
    /// Its last progress (or the end of its last expected wait).
    pub since: DateTime<Utc>,
    /// The deadline, as written (`20m`).
    pub deadline: String,
    /// When the deadline passed.
    pub at: DateTime<Utc>,
}

impl Stalled {
    /// `no progress for 30m (deadline 20m)`.
    pub fn describe(&self, now: DateTime<Utc>) -> String {
        let stalled = crate::duration::Span::from_delta((now - self.since).max(chrono::TimeDelta::zero()));
        format!("no progress for {stalled} (deadline {})", self.deadline)
    }
}

/// A unit's health failure as the engine judged it: the check that reached its
/// `failureLimit`, with the verdict and value of its last evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitFailure {
    pub at: DateTime<Utc>,
    pub check: String,
    pub verdict: HealthVerdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Failing evaluations in a row.
    pub failures: u32,
    /// What the last value was compared with, for a check with a `relative` part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,
    /// Set when it failed for making no progress within this `progressDeadline`
    /// (`onProgressDeadline: fail`) rather than by `check`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaveState {
    pub name: String,
    pub phase: WavePhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// An operator's promote: skip the bake, or accept a halt, once.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub promoted: bool,
    /// Who asked for that promote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<WaitReason>,
    /// The failures a promote accepted when it completed this wave while halted. A wave
    /// completes once, so there is at most one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted: Option<AcceptedFailures>,
    /// Failed regions of this wave that its failure budgets (`maxFailures`) took, in the order
    /// they failed, for as long as they stay failed: the wave goes on without them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub within_budget: Vec<BudgetCharge>,
}

impl WaveState {
    /// A wave that has not started.
    pub fn new(name: &str) -> Self {
        WaveState {
            name: name.to_string(),
            phase: WavePhase::Pending,
            since: None,
            promoted: false,
            promoted_by: None,
            waiting: None,
            accepted: None,
            within_budget: Vec::new(),
        }
    }
}

/// A failed region that a failure budget took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BudgetCharge {
    pub region: String,
    /// When the budget took it.
    pub at: DateTime<Utc>,
}

/// A promote that completed a halted wave, accepting its failed regions as they were.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcceptedFailures {
    /// Who promoted.
    pub by: String,
    /// When the wave completed.
    pub at: DateTime<Utc>,
    /// The failed regions of the wave at that moment, in plan order.
    pub regions: Vec<String>,
}

/// Scopes an operator paused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PauseSet {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub plan: bool,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub waves: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub regions: BTreeSet<String>,
}

/// A freeze an operator declared at run time (`freeze` command), in force until it is
/// lifted (`unfreeze`) or its `until` passes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeFreeze {
    pub name: String,
    pub reason: String,
    pub by: String,
    /// When it was declared.
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    /// Its scope: one wave, one region, or (neither) the whole plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

impl RuntimeFreeze {
    /// `plan`, `wave asia`, `region jp`.
    pub fn scope(&self) -> String {
        match (&self.region, &self.wave) {
            (Some(r), _) => format!("region {r}"),
            (None, Some(w)) => format!("wave {w}"),
            (None, None) => "plan".into(),
        }
    }
}

/// An operator's `promote --full` of the plan, a wave or a region, remembered until its scope
/// completes: every remaining step bake and wave bake in scope is skipped. Approvals, windows,
/// freezes, dependencies, parallelism and health still gate, and failures are never accepted.
/// A pause or an abort of an overlapping scope, or a region in scope failing, cancels it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FullPromotion {
    /// Its scope: one wave, one region, or (neither) the whole plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Who promoted.
    pub by: String,
    /// When the promote was applied.
    pub at: DateTime<Utc>,
}

impl FullPromotion {
    /// `plan`, `wave asia`, `region jp`.
    pub fn scope(&self) -> String {
        match (&self.region, &self.wave) {
            (Some(r), _) => format!("region {r}"),
            (None, Some(w)) => format!("wave {w}"),
            (None, None) => "plan".into(),
        }
    }

    /// Does it cover region `region` of wave `wave`?
    pub fn covers(&self, wave: &str, region: &str) -> bool {
        match (&self.region, &self.wave) {
            (Some(r), _) => r == region,
            (None, Some(w)) => w == wave,
            (None, None) => true,
        }
    }
}

impl fmt::Display for FullPromotion {
    /// `promote --full of wave asia by alice`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "promote --full of {} by {}", self.scope(), self.by)
    }
}

/// The whole rollout's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanState {
    pub plan: String,
    /// Region-major, aligned with the plan (`Plan::unit_index`).
    pub units: Vec<UnitState>,
    pub waves: Vec<WaveState>,
    #[serde(default)]
    pub paused: PauseSet,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub aborted_regions: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub aborted: bool,
    /// Sequence number of the last audit record issued.
    #[serde(default)]
    pub audit_seq: u64,
    /// Run-time freezes in force, in the order declared.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub freezes: Vec<RuntimeFreeze>,
    /// Full promotions in force (`promote --full`), one per scope, in the order applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub full_promotions: Vec<FullPromotion>,
    /// Units an edit removed from the plan while they served traffic (or before the target
    /// confirmed their last change): the engine winds them down to 0 % and drops them once
    /// confirmed or read back at 0 % (`crate::edit`). Not in `units`, which stays aligned
    /// with the plan.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub departing: Vec<UnitState>,
}

/// The rollout as a whole, for status displays and `status --wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlanPhase {
    Pending,
    Running,
    Paused,
    Halted,
    Complete,
    Aborted,
}

impl fmt::Display for PlanPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PlanPhase::Pending => "pending",
            PlanPhase::Running => "running",
            PlanPhase::Paused => "paused",
            PlanPhase::Halted => "halted",
            PlanPhase::Complete => "complete",
            PlanPhase::Aborted => "aborted",
        })
    }
}

impl UnitState {
    /// What the unit waits for, in words (`meridian status`, the API's `waiting`, the
    /// dashboard): a health wait adds, for each awaited check judged against the fleet, what
    /// its latest value was compared with ("... from error-rate (error-rate: 0.031 vs
    /// baseline 0.009 (median of us-east, eu-west), limit 0.018)").
    pub fn waiting_text(&self) -> Option<String> {
        let waiting = self.waiting.as_ref()?;
        let WaitReason::Health { checks } = waiting else { return Some(waiting.to_string()) };
        let compared: Vec<String> = self
            .checks
            .iter()
            .filter(|c| checks.contains(&c.name))
            .filter_map(|c| Some(format!("{}: {}", c.name, c.baseline.as_ref()?.compare(c.value?))))
            .collect();
        Some(if compared.is_empty() { waiting.to_string() } else { format!("{waiting} ({})", compared.join("; ")) })
    }

    pub(crate) fn new(plan: &Plan, region: usize, service: usize) -> Self {
        UnitState {
            region: plan.regions[region].name.clone(),
            service: plan.services[service].name.clone(),
            phase: UnitPhase::Pending,
            step: None,
            percent: 0,
            since: None,
            bake_since: None,
            waiting: None,
            promoted: false,
            drift: None,
            actuated: false,
            failure: None,
            progress_at: None,
            stalled: None,
            checks: plan
                .health
                .checks
                .iter()
                .map(|c| CheckState { name: c.name.clone(), ..CheckState::default() })
                .collect(),
        }
    }
}

impl PlanState {
    /// A fresh state: every unit pending at 0 %.
    pub fn new(plan: &Plan) -> Self {
        let mut state = PlanState {
            plan: plan.name.clone(),
            units: Vec::new(),
            waves: Vec::new(),
            paused: PauseSet::default(),
            aborted_regions: BTreeSet::new(),
            aborted: false,
            audit_seq: 0,
            freezes: Vec::new(),
            full_promotions: Vec::new(),
            departing: Vec::new(),
        };
        state.align(plan);
        state
    }

    /// Reshape to match `plan` after an edit, by `crate::edit::realign` (the one rule: traffic
    /// kept, steps placed at or below it, removed units with traffic kept in `departing` for
    /// the engine to wind down). A no-op when already aligned.
    pub fn align(&mut self, plan: &Plan) {
        crate::edit::realign(self, plan);
    }

    /// What `align` would add or drop to fit this state to `plan`: the regions, services and
    /// waves one has and the other lacks, in words ("region eu-west only in the state"). Empty
    /// when the two name the same ones (in any order). `meridian plan --from-server` refuses
    /// to project a live state with a plan that differs from the one that made it.
    pub fn differences(&self, plan: &Plan) -> Vec<String> {
        fn compare(what: &str, state: Vec<&str>, plan: Vec<&str>, out: &mut Vec<String>) {
            let mut seen = BTreeSet::new();
            for name in &state {
                if !plan.contains(name) && seen.insert(*name) {
                    out.push(format!("{what} {name} only in the state"));
                }
            }
            for name in &plan {
                if !state.contains(name) && seen.insert(*name) {
                    out.push(format!("{what} {name} only in the plan"));
                }
            }
        }
        let mut out = Vec::new();
        let regions = self.units.iter().map(|u| u.region.as_str()).collect();
        compare("region", regions, plan.regions.iter().map(|r| r.name.as_str()).collect(), &mut out);
        let services = self.units.iter().map(|u| u.service.as_str()).collect();
        compare("service", services, plan.services.iter().map(|s| s.name.as_str()).collect(), &mut out);
        let waves = self.waves.iter().map(|w| w.name.as_str()).collect();
        compare("wave", waves, plan.waves.iter().map(|w| w.name.as_str()).collect(), &mut out);
        out
    }

    /// Units and waves named as in `plan`, every unit at the step its traffic fits on its
    /// region's steps (`crate::edit::fitted_step`), and no complete wave holding a unit not
    /// started (one an edit moved there: the wave must re-open for it to start).
    pub(crate) fn is_aligned(&self, plan: &Plan) -> bool {
        self.units.len() == plan.unit_count()
            && self.waves.len() == plan.waves.len()
            && self.waves.iter().zip(&plan.waves).all(|(s, w)| s.name == w.name)
            && plan.regions.iter().enumerate().all(|(r, region)| {
                plan.services.iter().enumerate().all(|(s, service)| {
                    let u = &self.units[plan.unit_index(r, s)];
                    u.region == region.name
                        && u.service == service.name
                        && u.step.is_none_or(|k| crate::edit::fitted_step(&region.settings.steps, k, u.percent) == k)
                        && u.checks.len() == plan.health.checks.len()
                        && u.checks.iter().zip(&plan.health.checks).all(|(c, k)| c.name == k.name)
                        && !(u.phase == UnitPhase::Pending
                            && u.percent == 0
                            && self.waves[region.wave].phase == WavePhase::Complete
                            && !self.aborted_regions.contains(&region.name))
                })
            })
    }

    pub fn unit(&self, region: &str, service: &str) -> Option<&UnitState> {
        self.units.iter().find(|u| u.region == region && u.service == service)
    }

    /// The rollout's overall phase.
    /// Units serving traffic that are not done with: every unit with traffic, unless the
    /// plan is aborted, or complete with that unit enabled. A plan with any of these must not
    /// leave control (its definition vanishing from the configuration): its traffic would
    /// stay where it is, unwatched and beyond `pause` or `abort`.
    pub fn units_in_flight(&self) -> usize {
        if self.aborted {
            return 0;
        }
        let complete = self.phase() == PlanPhase::Complete;
        // A unit that left the plan stays departing until the target confirmed its 0 % or was
        // read back at 0 %; until then (its wind-down may have failed) it may serve traffic.
        let departing = self.departing.len();
        self.units.iter().filter(|u| u.percent > 0 && !(complete && u.phase == UnitPhase::Enabled)).count() + departing
    }

    /// Does a region have units still to start or climb: progressing, or blocked, pending or
    /// paused in a region none of whose units failed (a failed region a promote accepted is
    /// done with until it is retried) and that was not aborted? Or does a unit an edit removed
    /// still wind down?
    fn units_to_finish(&self) -> bool {
        !self.departing.is_empty()
            || self.units.chunk_by(|a, b| a.region == b.region).any(|region| {
                let failed = region.iter().any(|u| matches!(u.phase, UnitPhase::Failed | UnitPhase::RolledBack));
                let to_start = region
                    .iter()
                    .any(|u| matches!(u.phase, UnitPhase::Pending | UnitPhase::Blocked | UnitPhase::Paused));
                !self.aborted_regions.contains(&region[0].region)
                    && (region.iter().any(|u| u.phase == UnitPhase::Progressing) || (to_start && !failed))
            })
    }

    /// The plan's phase from its waves'. A plan whose every wave is complete while a region
    /// still has units to start or climb (one retried after its wave completed, one a promote
    /// past a failure left unstarted, one set to 0 % by a lost approval) is running, not
    /// complete: it is complete once that region is enabled (or fails again). So is one with
    /// a unit an edit removed whose 0 % is not confirmed yet (its target may serve traffic).
    pub fn phase(&self) -> PlanPhase {
        if self.aborted {
            PlanPhase::Aborted
        } else if self.waves.iter().all(|w| w.phase == WavePhase::Complete) {
            if self.units_to_finish() { PlanPhase::Running } else { PlanPhase::Complete }
        } else if self.waves.iter().any(|w| w.phase == WavePhase::Halted) {
            PlanPhase::Halted
        } else if self.paused.plan {
            PlanPhase::Paused
        } else if self.waves.iter().all(|w| w.phase == WavePhase::Pending) {
            PlanPhase::Pending
        } else {
            PlanPhase::Running
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::load;

    fn plan(regions: &str, waves: &str) -> Plan {
        let yaml = format!(
            "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {{name: p}}
spec:
  services: [{{name: signin}}, {{name: store, after: [signin]}}]
  regions: {regions}
  waves: {waves}
  steps: [100]
"
        );
        let bundle = load(&[("p.yaml".into(), yaml)], None);
        assert!(!bundle.report.has_errors(), "{:#?}", bundle.report);
        bundle.plans.into_iter().next().unwrap()
    }

    #[test]
    fn a_plan_with_every_wave_complete_is_complete_only_once_no_region_still_has_to_start_or_climb() {
        let p = plan("[{name: a}, {name: b}]", "[{name: one, regions: [a, b]}]");
        let mut state = PlanState::new(&p);
        state.waves[0].phase = WavePhase::Complete;
        let set = |state: &mut PlanState, region: &str, phases: [UnitPhase; 2]| {
            for (u, phase) in state.units.iter_mut().filter(|u| u.region == region).zip(phases) {
                u.phase = phase;
            }
        };
        set(&mut state, "a", [UnitPhase::Enabled; 2]);
        for (b, phase) in [
            ([UnitPhase::Enabled; 2], PlanPhase::Complete),
            // A promote accepted b's failure: done with until retried.
            ([UnitPhase::Failed, UnitPhase::Paused], PlanPhase::Complete),
            ([UnitPhase::RolledBack, UnitPhase::Blocked], PlanPhase::Complete),
            // Retried: climbing, waiting to start, or paused by an operator on the way.
            ([UnitPhase::Progressing, UnitPhase::Blocked], PlanPhase::Running),
            ([UnitPhase::Blocked, UnitPhase::Blocked], PlanPhase::Running),
            ([UnitPhase::Enabled, UnitPhase::Paused], PlanPhase::Running),
        ] {
            set(&mut state, "b", b);
            assert_eq!(state.phase(), phase, "{b:?}");
        }
        state.aborted_regions.insert("b".into());
        assert_eq!(state.phase(), PlanPhase::Complete, "an aborted region is done with");
        // A unit an edit removed still winds down (its target may serve traffic): not done.
        let mut gone = state.units[0].clone();
        (gone.region, gone.phase, gone.percent) = ("c".into(), UnitPhase::RolledBack, 0);
        state.departing.push(gone);
        assert_eq!(state.phase(), PlanPhase::Running, "until its target is seen at 0 %");
        assert_eq!(state.units_in_flight(), 1, "and it keeps the plan in control");
    }

    #[test]
    fn differences_name_what_only_one_side_has() {
        let live = plan("[{name: a}, {name: b}]", "[{name: one, regions: [a]}, {name: two, regions: [b]}]");
        let state = PlanState::new(&live);
        assert_eq!(state.differences(&live), Vec::<String>::new());
        // The same names in another order and wave are no difference.
        let reordered = plan("[{name: b}, {name: a}]", "[{name: one, regions: [b]}, {name: two, regions: [a]}]");
        assert_eq!(state.differences(&reordered), Vec::<String>::new());
        let edited = plan("[{name: a}, {name: c}]", "[{name: one, regions: [a]}, {name: three, regions: [c]}]");
        assert_eq!(
            state.differences(&edited),
            [
                "region b only in the state",
                "region c only in the plan",
                "wave two only in the state",
                "wave three only in the plan"
            ]
        );
    }

    #[test]
    fn a_unit_with_a_failure_and_a_stall_reads_and_writes_the_json_stored_before_they_were_boxed() {
        // As a state was stored before `failure` and `stalled` moved out of line.
        let stored = serde_json::json!({
            "region": "jp", "service": "signin", "phase": "failed", "step": 1, "percent": 10,
            "checks": [],
            "failure": {"at": "2026-06-01T10:00:00Z", "check": "errors", "verdict": "unhealthy",
                        "value": 0.31, "failures": 2},
            "stalled": {"since": "2026-06-01T09:00:00Z", "deadline": "20m", "at": "2026-06-01T09:20:00Z"},
        });
        let unit: UnitState = serde_json::from_value(stored.clone()).expect("the stored unit loads");
        let failure = unit.failure.as_deref().expect("its failure");
        assert_eq!(
            (failure.check.as_str(), failure.verdict, failure.failures),
            ("errors", HealthVerdict::Unhealthy, 2)
        );
        assert_eq!(unit.stalled.as_ref().map(|s| s.deadline.as_str()), Some("20m"));
        assert_eq!(serde_json::to_value(&unit).unwrap(), stored, "written back the same");
        assert!(std::mem::size_of::<UnitState>() < 300, "a unit stays small: {}", std::mem::size_of::<UnitState>());
    }

    #[test]
    fn state_written_before_full_promotions_still_loads_and_one_in_force_round_trips() {
        let old = r#"{"plan":"p","units":[],"waves":[],"paused":{},"auditSeq":4}"#;
        let state: PlanState = serde_json::from_str(old).expect("old state loads");
        assert!(state.full_promotions.is_empty());
        assert!(!serde_json::to_string(&state).unwrap().contains("fullPromotions"), "nothing written when none");

        let at = DateTime::parse_from_rfc3339("2026-06-01T09:00:00Z").unwrap().with_timezone(&Utc);
        let promotion = FullPromotion { wave: Some("asia".into()), region: None, by: "alice".into(), at };
        let state = PlanState { full_promotions: vec![promotion.clone()], ..state };
        let json = serde_json::to_value(&state).unwrap();
        assert_eq!(
            json["fullPromotions"],
            serde_json::json!([{"wave": "asia", "by": "alice", "at": "2026-06-01T09:00:00Z"}])
        );
        assert_eq!(serde_json::from_value::<PlanState>(json).unwrap(), state);
        assert_eq!(promotion.to_string(), "promote --full of wave asia by alice");
        assert!(promotion.covers("asia", "jp") && !promotion.covers("canary", "us-east"));
    }
}
