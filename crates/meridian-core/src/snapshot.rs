//! What the controller shows the world: a consistent, read-only view of every plan's state,
//! the approvals on record and the configuration in force, published after every decision.
//!
//! Owns the view types (serialized as the API's JSON) and nothing that mutates state.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::approval::{ApprovalRecord, Judged};
use crate::dependency::PlanProgress;
use crate::outcome::{Outcome, outcome};
use crate::plan::{ChosenBy, EffectiveSettings, Plan};
use crate::state::{PlanPhase, PlanState};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// One plan as currently decided.
#[derive(Debug, Clone)]
pub struct PlanEntry {
    pub plan: Arc<Plan>,
    /// Shared with the decision loop, which replaces it (never changes it in place) when it
    /// commits a new one: a publication copies no unit.
    pub state: Arc<PlanState>,
    pub updated_at: DateTime<Utc>,
    /// The earliest moment time alone changes a decision.
    pub wake_at: Option<DateTime<Utc>>,
}

/// The configuration's status.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigStatus {
    pub generation: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loaded_at: Option<DateTime<Utc>>,
    pub warnings: usize,
    /// The last edit that was rejected (the previous version stays in force), if any since.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected: Option<RejectedEdit>,
    /// The last edit of a plan's definition that was applied, and what it changed for each
    /// edited plan's rollout as it stood (`crate::edit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_edit: Option<AppliedEdit>,
}

/// An applied configuration that changed plan definitions.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppliedEdit {
    pub at: DateTime<Utc>,
    pub generation: u64,
    /// One per plan whose definition changed, in name order.
    pub plans: Vec<crate::edit::EditSummary>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RejectedEdit {
    pub at: DateTime<Utc>,
    pub errors: Vec<String>,
}

/// Everything published.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub plans: BTreeMap<String, PlanEntry>,
    /// File and API approvals, revoked ones included.
    pub approvals: Vec<ApprovalRecord>,
    pub config: ConfigStatus,
    /// How far ahead `PlanDetail::expiring` looks (none: nothing is listed).
    pub expiry_warning: Option<chrono::TimeDelta>,
}

/// A plan in the API's summary list.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanSummary {
    pub name: String,
    pub phase: PlanPhase,
    pub units: usize,
    pub enabled: usize,
    pub waves: Vec<WaveSummary>,
    pub updated_at: DateTime<Utc>,
    /// Done or not, clean or not: failed regions (with who accepted them) and aborted ones.
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WaveSummary {
    pub name: String,
    pub phase: crate::state::WavePhase,
}

/// A plan in full: per region and service, state, step, percent, health, why it waits,
/// and the approvals it needs with whether each holds.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanDetail {
    pub name: String,
    pub phase: PlanPhase,
    pub updated_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wake_at: Option<DateTime<Utc>>,
    pub state: PlanState,
    pub regions: Vec<RegionDetail>,
    /// Every unit that waits, with what it waits for in words (the same text as
    /// `meridian status`), for people and dashboards; `state.units[].waiting` has it typed.
    pub waiting: Vec<UnitWaiting>,
    /// The same for waves.
    pub wave_waiting: Vec<WaveWaiting>,
    /// Done or not, clean or not: failed regions (with who accepted them) and aborted ones.
    pub outcome: Outcome,
    /// Approvals units of the plan depend on that expire within the controller's warning
    /// window (`--expiry-warning`), soonest first (`meridian_core::expiry`).
    pub expiring: Vec<ExpiringApproval>,
    /// What the plan, or a wave of it, waits for in other plans (`dependsOn`), and whether
    /// each holds now.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<DependencyStatus>,
}

/// One `dependsOn` entry and whether it holds now (`crate::dependency`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DependencyStatus {
    /// The wave of this plan that waits (`None`: every wave, the plan's own entry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wave: Option<String>,
    /// The plan waited for, and its wave (`None`: all of it).
    pub plan: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_wave: Option<String>,
    pub holds: bool,
}

/// An approval in use that expires soon, for the page and the API.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpiringApproval {
    pub approval: String,
    pub flag: String,
    pub expires: DateTime<Utc>,
    /// The units ("jp/signin") that depend on it.
    pub units: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WaveWaiting {
    pub wave: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitWaiting {
    pub region: String,
    pub service: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegionDetail {
    pub name: String,
    pub wave: String,
    pub timezone: String,
    pub approvals: Vec<FlagStatus>,
    /// How the region came into its wave: by name, or by the wave's selector.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chosen_by: Option<ChosenBy>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `file:line` of its definition (the plan's file, or its own `Region` document).
    pub defined_at: String,
    /// The settings in force here, each with where it came from (`plan` or `region`).
    pub settings: EffectiveSettings,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlagStatus {
    pub flag: String,
    pub holds: bool,
    /// The approval carrying it, or why it does not hold.
    pub detail: String,
}

impl Snapshot {
    fn expiring(&self, e: &PlanEntry, now: DateTime<Utc>) -> Vec<ExpiringApproval> {
        let Some(window) = self.expiry_warning else { return Vec::new() };
        let mut out: Vec<ExpiringApproval> = crate::expiry::expiring(&e.plan, &e.state, &self.approvals, now, window)
            .into_iter()
            .map(|x| ExpiringApproval {
                approval: x.approval.name.clone(),
                flag: x.approval.flag.clone(),
                expires: x.expires,
                units: x.units,
            })
            .collect();
        out.sort_by(|a, b| (a.expires, &a.approval).cmp(&(b.expires, &b.approval)));
        out
    }

    pub fn summaries(&self) -> Vec<PlanSummary> {
        self.plans
            .values()
            .map(|e| PlanSummary {
                name: e.plan.name.clone(),
                phase: e.state.phase(),
                units: e.state.units.len(),
                enabled: e.state.units.iter().filter(|u| u.phase == crate::state::UnitPhase::Enabled).count(),
                waves: e.state.waves.iter().map(|w| WaveSummary { name: w.name.clone(), phase: w.phase }).collect(),
                updated_at: e.updated_at,
                outcome: outcome(&e.plan, &e.state),
            })
            .collect()
    }

    /// `plan`'s `dependsOn` entries, each judged against the other plans' states.
    fn dependencies(&self, plan: &Plan) -> Vec<DependencyStatus> {
        if !plan.has_dependencies() {
            return Vec::new();
        }
        let progress = PlanProgress::of(self.plans.values().filter(|e| e.plan.name != plan.name).map(|e| &*e.state));
        let own = plan.depends_on.iter().map(|d| (None, d));
        let waves = plan.waves.iter().flat_map(|w| w.depends_on.iter().map(|d| (Some(w.name.clone()), d)));
        own.chain(waves)
            .map(|(wave, d)| DependencyStatus {
                wave,
                plan: d.plan.clone(),
                plan_wave: d.wave.clone(),
                holds: progress.holds(d),
            })
            .collect()
    }

    pub fn detail(&self, name: &str, now: DateTime<Utc>) -> Option<PlanDetail> {
        let e = self.plans.get(name)?;
        let judged = Judged::new(&self.approvals, &e.plan.approval_policies);
        let regions = e
            .plan
            .regions
            .iter()
            .enumerate()
            .map(|(i, r)| RegionDetail {
                name: r.name.clone(),
                wave: e.plan.waves[r.wave].name.clone(),
                timezone: r.timezone.name().to_string(),
                chosen_by: {
                    let wave = &e.plan.waves[r.wave];
                    wave.regions.iter().position(|&x| x == i).and_then(|k| wave.chosen_by.get(k)).cloned()
                },
                labels: r.labels.clone(),
                defined_at: r.defined_at.clone(),
                settings: e.plan.effective_settings(i),
                approvals: r
                    .approvals
                    .iter()
                    .chain(e.plan.waves[r.wave].approvals.iter())
                    .map(|flag| match judged.holds(flag, &e.plan.name, &r.name, None, now) {
                        Ok(held) => FlagStatus {
                            flag: flag.clone(),
                            holds: true,
                            detail: held
                                .iter()
                                .map(|a| {
                                    format!(
                                        "{} by {}{}",
                                        a.name,
                                        a.granted_by,
                                        a.reference.as_ref().map(|r| format!(" ({r})")).unwrap_or_default()
                                    )
                                })
                                .collect::<Vec<_>>()
                                .join("; "),
                        },
                        Err(problem) => FlagStatus {
                            flag: flag.clone(),
                            holds: false,
                            detail: crate::state::WaitReason::Approval { flag: flag.clone(), problem }.to_string(),
                        },
                    })
                    .collect(),
            })
            .collect();
        Some(PlanDetail {
            name: e.plan.name.clone(),
            phase: e.state.phase(),
            updated_at: e.updated_at,
            wake_at: e.wake_at,
            state: PlanState::clone(&e.state),
            regions,
            waiting: e
                .state
                .units
                .iter()
                .filter_map(|u| {
                    // A unit past its progress deadline (`alert`) says so after what it waits for.
                    let reason = match (u.waiting_text(), &u.stalled) {
                        (Some(w), Some(s)) => format!("{w}; {}", s.describe(now)),
                        (None, Some(s)) => s.describe(now),
                        (Some(w), None) => w,
                        (None, None) => return None,
                    };
                    Some(UnitWaiting { region: u.region.clone(), service: u.service.clone(), reason })
                })
                .collect(),
            wave_waiting: e
                .state
                .waves
                .iter()
                .filter_map(|w| w.waiting.as_ref().map(|r| WaveWaiting { wave: w.name.clone(), reason: r.to_string() }))
                .collect(),
            outcome: outcome(&e.plan, &e.state),
            expiring: self.expiring(e, now),
            depends_on: self.dependencies(&e.plan),
        })
    }
}
