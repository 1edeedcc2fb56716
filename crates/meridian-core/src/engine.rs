//! The decision engine: `decide(plan, state, observations, now) -> Decision`.
//!
//! ```text
//!   observations ──┐   (approvals: the full set; health: new samples; traffic read-backs;
//!   state ─────────┼──> decide ──> new state + actions (SetTraffic) + audit records + wake_at
//!   plan, now ─────┘    operator commands to apply once)
//! ```
//!
//! Pure and deterministic: no I/O, no clock, no randomness; the same inputs give the same
//! outputs. One decision runs these passes in order:
//!
//! 1. commands: pause, resume, abort, promote (once, or `--full`), retry, freeze, unfreeze;
//!    run-time freezes past their `until` end; pauses and aborts cancel full promotions;
//! 2. health: new samples update each check's verdict, failure streak and healthy hold;
//! 3. failures: a streak at `failureLimit` fails the unit and applies `onFailure` (and
//!    cancels the full promotions covering its region);
//! 4. approvals: a unit with traffic whose required flags stopped holding applies
//!    `onApprovalRevoked` (hold: no further step; disable: back to 0 %); then a unit past its
//!    progress deadline under `onProgressDeadline: fail` fails;
//! 5. progress: waves in order; inside a wave, failed regions are first charged to the
//!    failure budgets, then every started region moves (steps,
//!    resumes), then regions start in order under `maxParallel`; inside a region, services
//!    in dependency order; each move needs approvals, no freeze, a window, a baked (or
//!    promoted) step and fresh healthy verdicts, all by the region's effective settings;
//!    then full promotions whose scope completed end;
//! 6. deadlines: progress-deadline clocks start or stop by what each unit now waits for; a
//!    unit past its deadline under `alert` is recorded and marked; the rest set `wake_at`;
//! 7. actions: one `SetTraffic` per unit whose percent changed, or whose read-back drifted.
//!
//! # Semantics
//!
//! - **Approvals.** A unit needs its region's flags at all times and its wave's flags until
//!   the wave is complete, each granted, unexpired, not revoked and in scope for the plan,
//!   region and service at `now`, and as the plan's `approvalPolicies` ask: signed by one of
//!   the flag's keys, from enough distinct grantors (`approval::Judged`). Traffic is never raised without
//!   them. When one stops holding under traffic, `hold` keeps the traffic and takes no
//!   further step (audited once per loss, and once when restored); `disable` sets the unit to
//!   0 % and it restarts from the first step once they hold again (a failed unit becomes
//!   rolled back instead, so its region stays failed). A wave does not complete while a unit
//!   of it with traffic lacks its approvals. Every raise names the approvals that held
//!   (`Cause::Started` / `Cause::Advanced`): that is the evidence trail.
//! - **Health.** A sample older than (or as old as) the verdict already held is ignored; a
//!   sample dated after `now` counts as measured at `now`. Only units under watch (traffic
//!   in a progressing or paused unit, or an enabled unit of an incomplete wave) count
//!   failures. An unhealthy verdict, or no data/error under `noData: fail`, extends the
//!   failure streak; a healthy one resets it; no data under `hold` leaves the streak alone.
//!   Every non-healthy evaluation (except no data under `ignore`) restarts the unit's healthy
//!   hold. A unit advances only when its step has baked (`stepBake` since the hold began, or
//!   an operator's promote) and every check has a healthy verdict measured after the hold
//!   began and at most three health intervals before `now` (`stale_after`). A check with
//!   `noData: ignore` is left out of that, except that its latest verdict must not be
//!   unhealthy. The engine judges the evaluations it is given; a silent health source only
//!   ever holds a rollout, it never fails one (adapters report no data each interval).
//! - **Windows.** A unit starts a step (including its first) only inside one of its
//!   region's windows, read in the region's time zone; reaching `enabled` after the last
//!   step has baked needs no window. Outside, it holds and `wake_at` names the next opening.
//! - **Failures.** `rollback-region` sets every unit of the region that had started to 0 %
//!   (rolled back); `pause` freezes the failed unit at its traffic and holds the rest of the
//!   region. A failed or rolled-back region starts nothing until a retry. The other regions
//!   of the wave go on; once none of them can move any more, the wave halts, and later waves
//!   wait until a retry clears the failure or a promote of the wave accepts it.
//! - **Failure budgets.** Under a budget (`Plan::wave_budget`), each newly failed region of a
//!   running wave is charged, in wave order, to the wave's and the plan's `maxFailures`
//!   (`WaveState::within_budget`, `Cause::BudgetConsumed`). A charged region is out of its
//!   wave: it holds no parallel slot, and the wave completes and bakes without it. The first
//!   region past a budget is not charged: `onBudgetExceeded` applies in the same decision,
//!   before any region could start (`halt`: the wave halts and starts no further region;
//!   `abort`: the plan is aborted), recorded once (`Cause::BudgetExceeded`). A retried region
//!   is released from its charge, so a retry can bring a halted wave back within budget; a
//!   promote of the halted wave accepts every failure as today. Without any budget the rules
//!   above apply unchanged.
//! - **Progress deadlines.** A unit at a step whose region has a `progressDeadline` and that
//!   waits for nothing expected (only a step bake, health, an unconfirmed actuation or a held
//!   drift; its region neither failed, aborted nor paused) has a clock (`progress_at`) from
//!   its last move, or from the first decision that found it so. Any expected wait stops
//!   the clock, and a move restarts it. When it passes: `alert` records
//!   `Cause::ProgressDeadline` once and marks the unit (`UnitState::stalled`) until it moves
//!   or waits for something expected, changing no traffic; `fail` fails the unit at the start
//!   of the decision, as a health failure would. `wake_at` includes every running deadline.
//! - **Parallelism.** A region is in progress while it has started (some unit has traffic,
//!   a step, or is enabled), not every unit is enabled, and it is not aborted. A failed
//!   region that still serves traffic (`onFailure: pause`) stays in progress; a rolled-back
//!   one does not. A region starts only while fewer than `maxParallel` regions of its wave
//!   are in progress, also after the wave completed. A region that had finished and is in
//!   progress again without starting anything (an enabled unit failing under `pause`, or
//!   disabled for a lost approval) may take the count above the limit for a while; no
//!   region starts until it is below again.
//! - **Dependencies.** `after` orders starts: a service starts in a region once the services
//!   it comes after are enabled there. Later changes to those (a lost approval, say) do not
//!   move it; the region's own failure handling does.
//! - **Plans that depend on plans.** A wave does not start, and no unit of it starts, until
//!   every `dependsOn` of the plan and of the wave holds by `Observations::other_plans`
//!   (`crate::dependency`: the other plan's wave, or all of it, complete and not aborted).
//!   A unit that has started goes on when one stops holding; the others wait again
//!   (`WaitReason::PlanDependency`, an expected wait for progress deadlines).
//! - **Commands.** Pause holds units in scope at their traffic; resume lifts a pause of the
//!   same scope (plan-wide resume lifts every pause). Abort rolls back every unit in scope
//!   that is not enabled and nothing in scope starts again, retry included; an aborted region
//!   (or wave) is left out of its wave, which completes without it, so later waves still
//!   run: abort plan-wide to stop everything. Promote skips the current step bake of
//!   progressing units in scope, once; plan-wide or wave-scoped, it also skips the bake of a
//!   baking wave or accepts the failures of a halted wave. A promote never skips approvals,
//!   windows or health, and is not remembered for later phases of a wave (a full promotion,
//!   below, is). A promote that
//!   completes a halted wave records who accepted which failed regions (`WaveState::accepted`,
//!   `Cause::FailuresAccepted`); each failed unit keeps why it failed (`UnitState::failure`)
//!   until a retry. Retry sends failed
//!   units back to progressing at their step (the hold restarts) and rolled-back ones back to
//!   the start.
//! - **Full promotion.** `promote --full` (`Command::full`) of the plan, a wave or a region is
//!   kept in the state (`PlanState::full_promotions`, one per scope) and skips every remaining
//!   step bake in scope, and every remaining wave bake of the plan or of that wave (a region's
//!   covers its own steps only), until the scope completes (every wave, the wave, or every
//!   unit of the region enabled), as Argo Rollouts' `promote --full` does. A promoted step
//!   still needs what a one-shot promote's does: approvals, no freeze, a window, its
//!   dependencies and a parallel slot to start, and a fresh healthy verdict of every check
//!   measured after the step began (none where the plan has no checks); a promoted wave bake
//!   ends as a one-shot promote's does. It takes one step per unit and decision, so each
//!   step is actuated on its own (`wake_at` asks for the next decision at once), and it
//!   never accepts a failure: a halted wave stays halted. One declared on a scope aborted
//!   before ends at once. A pause or an abort of a scope sharing a region with it, or a unit
//!   in scope failing, cancels it; a resume or a retry does not bring it back. Steps and wave bakes taken under it say `promoted: true` and
//!   name it (`full` in `Cause::Advanced`, `Cause::Completed`, `Cause::WaveBaked`); its
//!   declaration is recorded with the command (`Cause::FullPromotionDeclared`), its end as
//!   `AuditEvent::FullPromotionEnded` with why (`Cause::ScopeCompleted`, the pause or abort,
//!   or `Cause::FailedInScope`).
//! - **Waves.** Waves run strictly in order; a wave starts when every earlier one is
//!   complete, and complete is final. It bakes once every region (aborted ones aside) is
//!   enabled: its bake runs from the latest healthy-hold start of its units, and needs fresh
//!   healthy verdicts from all of them at its end. A unit of a baking wave that stops being
//!   enabled sends the wave back to running.
//! - **Freezes.** No step starts (a first step included) while the unit's region is frozen:
//!   by a calendar freeze of the plan or the region (whole local days, or a daily time range
//!   on them, read in the region's time zone), or by a run-time freeze an operator declared
//!   on the plan, the unit's wave or its region. A unit at a step keeps its traffic and
//!   waits (`WaitReason::Frozen`, woken when the stretch of back-to-back freezes ends).
//!   Like windows, a freeze does not keep a unit whose last step has baked from becoming
//!   enabled, and never holds back what lowers traffic: failures, aborts and lost approvals
//!   act during a freeze. A run-time freeze ends when lifted (`unfreeze`) or at its `until`.
//! - **Edits.** A state made under another version of the plan is re-aligned first, by
//!   `crate::edit::realign` (traffic kept; a unit placed at the highest step at or below its
//!   traffic, its next step the first above it; a complete wave that gains units re-opens),
//!   and each change is audited (`Cause::PlanEdited`). Units that left the plan with traffic
//!   (`PlanState::departing`) are set to 0 % at the start of the decision (rolled back,
//!   audited, a `SetTraffic` action) and dropped once no actuation of theirs is unconfirmed
//!   or a read-back shows 0 %; a read-back showing traffic is re-applied (drift).
//!   A required flag with no approval on record at all takes a unit's traffic to 0 % under
//!   either `onApprovalRevoked`: there is no grant to hold.
//! - **Drift.** A read-back that differs from the traffic the state held before this
//!   decision, for a unit this decision did not move, is audited and re-applied.
//! - **`wake_at`** is the earliest moment at which time alone could change a decision: a
//!   step or wave bake ending, a window opening for a unit that waits for it, an approval
//!   becoming valid, expiring or being revoked. Between decisions and before `wake_at`,
//!   deciding again without new observations changes nothing.
//!
//! The engine never raises traffic for a unit whose required approvals do not all hold at
//! `now`, and never advances on missing, stale or failing health.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::approval::{ApprovalProblem, ApprovalRecord, Judged, needs_wave_flags};
use crate::audit::{AuditEvent, AuditRecord, BudgetUse, Cause, CheckEvidence, capped_evidence};
use crate::command::{Command, CommandKind};
use crate::dependency::PlanProgress;
use crate::edit::{EditSummary, UnitChange, WaveChange};
use crate::freeze::{self, FreezeSource, Frozen};
use crate::health::{HealthSample, HealthVerdict};
use crate::manifest::{NoDataPolicy, OnApprovalRevoked, OnBudgetExceeded, OnFailure, OnProgressDeadline};
use crate::plan::{DriftPolicy, Plan};
use crate::relative::Baseline;
use crate::state::{
    AcceptedFailures, BudgetCharge, FullPromotion, PlanState, RuntimeFreeze, Stalled, UnitFailure, UnitPhase,
    WaitReason, WavePhase,
};
use crate::window;

/// Everything observed since the last decision.
#[derive(Debug, Clone, Copy, Default)]
pub struct Observations<'a> {
    /// Every approval currently on record (level, not delta), including revoked ones.
    pub approvals: &'a [ApprovalRecord],
    /// Health evaluations not yet given to the engine. Older or repeated samples are ignored.
    pub health: &'a [HealthSample],
    /// What the actuators read back from the targets.
    pub traffic: &'a [TrafficReading],
    /// Operator commands to apply in this decision.
    pub commands: &'a [Command],
    /// Units whose latest traffic change the target has not confirmed yet (an actuation in
    /// flight, or one to resolve after a restart). They take no further step until it is.
    pub unconfirmed: &'a [UnitRef],
    /// Targets that confirmed serving a percent, and when. A confirmation of a unit's current
    /// percent restarts its healthy hold at that moment, so a step is held for its full bake
    /// from when traffic really moved, not from when the move was decided.
    pub confirmations: &'a [Confirmation],
    /// Where the other plans stand, for this plan's `dependsOn` (`None`: nothing known, so no
    /// dependency holds).
    pub other_plans: Option<&'a PlanProgress>,
}

/// A (region, service) by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitRef {
    pub region: String,
    pub service: String,
}

/// A target confirmed that it serves `percent` since `at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Confirmation {
    pub region: String,
    pub service: String,
    pub percent: u32,
    pub at: DateTime<Utc>,
}

/// A traffic percent read back from a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficReading {
    pub region: String,
    pub service: String,
    pub percent: u32,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Action {
    /// Make (region, service) serve `percent` % of traffic. Idempotent.
    SetTraffic { region: String, service: String, percent: u32, from: u32 },
}

/// The outcome of one decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub state: PlanState,
    pub actions: Vec<Action>,
    pub audit: Vec<AuditRecord>,
    /// The earliest moment at which time alone could change a decision.
    pub wake_at: Option<DateTime<Utc>>,
}

/// How old a verdict may be before it counts as no data: three health intervals.
pub fn stale_after(plan: &Plan) -> TimeDelta {
    plan.health.interval.to_delta() * 3
}

/// Decide what happens next. A state made under another version of the plan is re-aligned
/// first (`crate::edit::realign`), and what that changed is audited in this decision.
pub fn decide(plan: &Plan, mut state: PlanState, obs: &Observations<'_>, now: DateTime<Utc>) -> Decision {
    let edit = crate::edit::realign(&mut state, plan);
    decide_edited(plan, state, obs, &[], Vec::new(), now, &edit)
}

/// A verdict for check `check` of unit `unit` (indices into the plan, region-major as in
/// `PlanState::units`) measured at the decision's `now`, with no value, detail or baseline:
/// a `HealthSample` as the simulated fleet reports it, without names to look up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FleetVerdict {
    pub unit: usize,
    pub check: usize,
    pub verdict: HealthVerdict,
}

/// `decide` for a state known to be aligned with `plan`: one from `PlanState::new(plan)` or
/// from an earlier decision on the same plan. The simulation feeds every decision's state
/// back into the next one, and checking the names of every unit each time was an eighth
/// of a large simulated rollout.
///
/// `fleet` adds verdicts by index after `obs.health` (the simulation's healthy fleet: no
/// strings built and looked up again per sample and decision). The records of the decision
/// are appended to `audit`, returned as `Decision::audit`: a simulation keeps one growing
/// list instead of copying every decision's records into it.
pub(crate) fn decide_aligned(
    plan: &Plan,
    state: PlanState,
    obs: &Observations<'_>,
    fleet: &[FleetVerdict],
    audit: Vec<AuditRecord>,
    now: DateTime<Utc>,
) -> Decision {
    decide_edited(plan, state, obs, fleet, audit, now, &EditSummary::default())
}

fn decide_edited(
    plan: &Plan,
    state: PlanState,
    obs: &Observations<'_>,
    fleet: &[FleetVerdict],
    audit: Vec<AuditRecord>,
    now: DateTime<Utc>,
    edit: &EditSummary,
) -> Decision {
    debug_assert!(state.is_aligned(plan), "decide_aligned needs a state aligned with its plan");
    // One walk of the units for both (each walk of 5,000 units is felt in a large rollout).
    let mut any_failed = false;
    let before: Vec<u32> = state
        .units
        .iter()
        .map(|u| {
            any_failed |= matches!(u.phase, UnitPhase::Failed | UnitPhase::RolledBack);
            u.percent
        })
        .collect();
    let judged = Judged::new(obs.approvals, &plan.approval_policies);
    let mut engine = Engine {
        plan,
        obs,
        judged,
        now,
        state,
        audit,
        wake_at: None,
        drifted: Vec::new(),
        moved: Vec::new(),
        any_failed,
        waves_done: vec![false; plan.waves.len()],
        shared_active: None,
        list_id: 0,
        windows: vec![None; plan.regions.len()],
        pending_marked: vec![None; plan.waves.len()],
        departed: Vec::new(),
    };
    engine.record_edit(edit);
    engine.wind_down_departing();
    engine.apply_commands();
    engine.expire_freezes();
    engine.apply_health(fleet);
    engine.apply_confirmations();
    engine.apply_failures();
    engine.apply_approvals();
    engine.apply_deadlines();
    engine.check_drift(&before);
    engine.progress();
    engine.end_full_promotions();
    engine.note_deadlines();
    engine.schedule_approval_changes();
    engine.finish(&before)
}

struct Engine<'a> {
    plan: &'a Plan,
    obs: &'a Observations<'a>,
    /// The approvals as the plan's policies count them (signatures verified once).
    judged: Judged<'a, 'a>,
    now: DateTime<Utc>,
    state: PlanState,
    audit: Vec<AuditRecord>,
    wake_at: Option<DateTime<Utc>>,
    drifted: Vec<usize>,
    /// Units `move_unit` moved in this decision, in the order they moved (an action is only
    /// ever for one of them or a drifted unit: no walk of every unit to find them).
    moved: Vec<usize>,
    /// Some unit is failed or rolled back (at the start, or moved so since): while none is,
    /// no region is failed, without a look at its units.
    any_failed: bool,
    /// Waves found with every unit enabled during `progress`. Nothing in `progress` takes a
    /// unit out of `Enabled` (failures, lost approvals and commands act before it), so such a
    /// wave is not walked again in the later passes of the decision.
    waves_done: Vec<bool>,
    /// The last list built by `parallel_names`: the id of the `ActiveRegions` it names, the list.
    shared_active: Option<(u64, Arc<[String]>)>,
    /// The last id given to an `ActiveRegions` list.
    list_id: u64,
    /// Each region's windows at `now`, once asked (`window_at`).
    windows: Vec<Option<WindowAt>>,
    /// What each pending wave's units were last told they wait for, in this decision.
    pending_marked: Vec<Option<WaitReason>>,
    /// Units removed from the plan that this decision winds down to 0 %.
    departed: Vec<Action>,
}

/// The last name looked up, and its index.
#[derive(Default)]
struct NameSeen<'a>(Option<(&'a str, usize)>);

impl<'a> NameSeen<'a> {
    fn index(&mut self, name: &'a str, find: impl FnOnce(&str) -> Option<usize>) -> Option<usize> {
        match self.0 {
            Some((seen, index)) if seen == name => Some(index),
            _ => {
                let index = find(name)?;
                self.0 = Some((name, index));
                Some(index)
            }
        }
    }
}

/// A wave's regions in progress, which count against its `maxParallel`.
struct ActiveRegions {
    /// In wave order, then in the order they started in this pass.
    regions: Vec<usize>,
    /// By region index (of the plan): is it among `regions`?
    member: Vec<bool>,
    /// Names this list as it stands (`Engine::next_list_id`), so that the units waiting for a
    /// slot find their shared names by it rather than by comparing lists.
    id: u64,
}

/// A region's windows at the decision's `now`.
#[derive(Debug, Clone, Copy)]
enum WindowAt {
    Open,
    /// Every window is closed; the next opens then (none within 8 days: `None`).
    Closed {
        opens_at: Option<DateTime<Utc>>,
    },
}

impl Engine<'_> {
    // ----- bookkeeping -----

    fn wake(&mut self, at: DateTime<Utc>) {
        if at > self.now {
            self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
        }
    }

    fn record(&mut self, wave: Option<usize>, unit: Option<usize>, event: AuditEvent, cause: Cause) {
        self.state.audit_seq += 1;
        let (region, service) = match unit {
            Some(i) => (Some(self.state.units[i].region.clone()), Some(self.state.units[i].service.clone())),
            None => (None, None),
        };
        let wave = wave
            .or_else(|| unit.map(|i| self.plan.regions[i / self.plan.services.len()].wave))
            .map(|w| self.plan.waves[w].name.clone());
        self.audit.push(AuditRecord {
            seq: self.state.audit_seq,
            at: self.now,
            plan: self.plan.name.clone(),
            wave,
            region,
            service,
            event,
            cause,
        });
    }

    /// A record naming its wave, region and service as given (a removed unit or wave is no
    /// longer in the plan to look them up).
    fn record_named(&mut self, wave: Option<String>, unit: Option<(&str, &str)>, event: AuditEvent, cause: Cause) {
        self.state.audit_seq += 1;
        self.audit.push(AuditRecord {
            seq: self.state.audit_seq,
            at: self.now,
            plan: self.plan.name.clone(),
            wave,
            region: unit.map(|u| u.0.to_string()),
            service: unit.map(|u| u.1.to_string()),
            event,
            cause,
        });
    }

    /// Audit what re-aligning the state to an edited plan changed (`crate::edit::realign`):
    /// units placed at another step or holding for a new check, units that left the plan
    /// without traffic (those with traffic are recorded as they are wound down), re-opened
    /// and removed waves.
    fn record_edit(&mut self, edit: &EditSummary) {
        for change in &edit.waves {
            let cause =
                Cause::PlanEdited { change: format!("wave {} {}: {}", change.wave, change.change, change.reason) };
            match (change.change, self.plan.wave_index(&change.wave)) {
                (WaveChange::Reopens, Some(w)) => {
                    let event = AuditEvent::Wave { from: WavePhase::Complete, to: WavePhase::Running };
                    self.state.waves[w].since = Some(self.now);
                    self.record(Some(w), None, event, cause);
                }
                (WaveChange::Removed, _) => {
                    let event = AuditEvent::Wave { from: WavePhase::Pending, to: WavePhase::Pending };
                    self.record_named(Some(change.wave.clone()), None, event, cause);
                }
                _ => {}
            }
        }
        for change in &edit.units {
            let cause = Cause::PlanEdited { change: change.reason.clone() };
            match change.change {
                UnitChange::Moves | UnitChange::Holds => {
                    let Some(i) = self
                        .plan
                        .region_index(&change.region)
                        .and_then(|r| self.plan.service_index(&change.service).map(|s| self.plan.unit_index(r, s)))
                    else {
                        continue;
                    };
                    let event = unchanged(&self.state.units[i]);
                    self.record(None, Some(i), event, cause);
                }
                UnitChange::Removed if change.percent == 0 => {
                    let event = AuditEvent::Unit {
                        from: change.phase,
                        to: change.phase,
                        step: None,
                        from_percent: 0,
                        to_percent: 0,
                    };
                    self.record_named(None, Some((&change.region, &change.service)), event, cause);
                }
                UnitChange::Removed | UnitChange::New => {}
            }
        }
    }

    /// Units an edit removed from the plan: one with traffic is set to 0 % (rolled back,
    /// audited, an action the shell records as an intent before sending); one at 0 % is
    /// dropped once the target confirmed its last change, or a read-back shows it serves 0 %.
    /// A read-back that shows traffic (the 0 % failed for good, or someone switched it back on)
    /// is drift, re-applied whatever `onDrift` says: the unit left the plan, nothing holds it.
    fn wind_down_departing(&mut self) {
        if self.state.departing.is_empty() {
            return;
        }
        for mut u in std::mem::take(&mut self.state.departing) {
            if u.percent > 0 {
                let from = u.percent;
                let event = AuditEvent::Unit {
                    from: u.phase,
                    to: UnitPhase::RolledBack,
                    step: u.step,
                    from_percent: from,
                    to_percent: 0,
                };
                let change = format!("{}/{} left the plan: wound down from {from} % to 0 %", u.region, u.service);
                self.record_named(None, Some((&u.region, &u.service)), event, Cause::PlanEdited { change });
                u.phase = UnitPhase::RolledBack;
                u.percent = 0;
                u.step = None;
                u.waiting = None;
                u.drift = None;
                u.actuated = true;
                self.send_departing_to_zero(u, from);
                continue;
            }
            // What its target serves: the latest read-back, or else a drift held under
            // `onDrift: hold` before the edit (traffic switched on by hand at a unit at 0 %).
            let read = self.obs.traffic.iter().rev().find(|r| r.region == u.region && r.service == u.service);
            let observed = read.map(|r| r.percent).or(u.drift.take());
            match observed {
                Some(0) => {}
                Some(observed) => {
                    let event = AuditEvent::Drift { expected: 0, observed };
                    self.record_named(None, Some((&u.region, &u.service)), event, Cause::Drift);
                    self.send_departing_to_zero(u, observed);
                }
                None if self.obs.unconfirmed.iter().any(|x| x.region == u.region && x.service == u.service) => {
                    self.state.departing.push(u);
                }
                None => {}
            }
        }
    }

    /// Send a departing unit serving `from` % to 0 % (an action, its hold from now) and keep
    /// it until its target is seen there.
    fn send_departing_to_zero(&mut self, mut u: crate::state::UnitState, from: u32) {
        u.since = Some(self.now);
        let (region, service) = (u.region.clone(), u.service.clone());
        self.departed.push(Action::SetTraffic { region, service, percent: 0, from });
        self.state.departing.push(u);
    }

    /// Move a unit; records an audit entry when phase, step or traffic changes.
    fn move_unit(&mut self, i: usize, phase: UnitPhase, step: Option<usize>, percent: u32, cause: Cause) {
        let u = &self.state.units[i];
        let (from, from_percent, from_step) = (u.phase, u.percent, u.step);
        if from == phase && from_percent == percent && from_step == step {
            return;
        }
        debug_assert!(
            !(from == UnitPhase::Enabled && phase != UnitPhase::Enabled && self.waves_done[self.wave_of(i)]),
            "a unit of a wave `progress` found all enabled left Enabled"
        );
        self.moved.push(i);
        self.any_failed |= matches!(phase, UnitPhase::Failed | UnitPhase::RolledBack);
        let u = &mut self.state.units[i];
        u.phase = phase;
        u.step = step;
        u.percent = percent;
        u.since = Some(self.now);
        // A raise on the same step (a unit an edit placed below its first step) holds anew too.
        if from_step != step || percent > from_percent {
            u.bake_since = Some(self.now);
            u.promoted = false;
        }
        if u.progress_at.is_some() || u.stalled.is_some() {
            // A move is progress: the deadline runs afresh (`note_deadlines` sets it again).
            u.progress_at = None;
            u.stalled = None;
        }
        self.record(
            None,
            Some(i),
            AuditEvent::Unit { from, to: phase, step, from_percent, to_percent: percent },
            cause,
        );
    }

    /// Record what a unit waits for; entering `Blocked`, or a new kind of block, is audited.
    /// A unit held at its traffic for a lost approval keeps saying so: that outranks any
    /// other reason, and keeping it is what audits the loss only once.
    fn block(&mut self, i: usize, phase: UnitPhase, reason: WaitReason) {
        let u = &self.state.units[i];
        let held_for_approval = u.percent > 0 && matches!(u.waiting, Some(WaitReason::Approval { .. }));
        let new_kind = !u.waiting.as_ref().is_some_and(|w| same_kind(w, &reason));
        let (from, step, percent) = (u.phase, u.step, u.percent);
        // The cause is built only for a record: most calls find the unit waiting as before.
        if from != phase {
            self.move_unit(i, phase, step, percent, Cause::Blocked { waiting: reason.clone() });
        } else if new_kind && !held_for_approval && phase != UnitPhase::Pending {
            let event = AuditEvent::Unit { from, to: phase, step, from_percent: percent, to_percent: percent };
            self.record(None, Some(i), event, Cause::Blocked { waiting: reason.clone() });
        }
        if !held_for_approval {
            self.state.units[i].waiting = Some(reason);
        }
    }

    fn region_units(&self, r: usize) -> std::ops::Range<usize> {
        let n = self.plan.services.len();
        r * n..(r + 1) * n
    }

    fn region_of(&self, i: usize) -> usize {
        i / self.plan.services.len()
    }

    fn wave_of(&self, i: usize) -> usize {
        self.plan.regions[self.region_of(i)].wave
    }

    /// Flags unit `i` needs now: its region's always, its wave's as `needs_wave_flags` says.
    fn required_flags(&self, i: usize) -> impl Iterator<Item = &String> {
        let region = &self.plan.regions[self.region_of(i)];
        let wave_gated = needs_wave_flags(self.state.waves[region.wave].phase, self.state.units[i].phase);
        let wave_flags: &[String] = if wave_gated { &self.plan.waves[region.wave].approvals } else { &[] };
        region.approvals.iter().chain(wave_flags.iter())
    }

    /// The flags unit `i` needs now, sorted (the record of a raise keeps them as evidence).
    fn required_flag_names(&self, i: usize) -> Vec<String> {
        let mut flags: Vec<String> = self.required_flags(i).cloned().collect();
        flags.sort();
        flags.dedup();
        flags
    }

    /// What each check of unit `i` shows now, against the region's limits: the evidence a
    /// record that ends a bake carries. `unit` names the unit (for a wave's record).
    fn health_evidence(&self, i: usize, unit: bool) -> Vec<CheckEvidence> {
        let u = &self.state.units[i];
        let settings = &self.plan.regions[self.region_of(i)].settings;
        u.checks
            .iter()
            .zip(&settings.checks)
            .map(|(check, limits)| CheckEvidence {
                region: unit.then(|| u.region.clone()),
                service: unit.then(|| u.service.clone()),
                check: check.name.clone(),
                verdict: check.verdict,
                value: check.value,
                at: check.at,
                min: limits.min,
                max: limits.max,
                baseline: check.baseline.clone(),
            })
            .collect()
    }

    /// `Ok(evidence)` when every required flag holds, else the first failing flag.
    fn approvals_hold(&self, i: usize) -> Result<Vec<String>, (String, ApprovalProblem)> {
        let u = &self.state.units[i];
        let mut evidence = Vec::new();
        for flag in self.required_flags(i) {
            match self.judged.holds(flag, &self.plan.name, &u.region, Some(&u.service), self.now) {
                Ok(held) => evidence.extend(held.into_iter().map(|a| a.name.clone())),
                Err(problem) => return Err((flag.clone(), problem)),
            }
        }
        evidence.sort();
        evidence.dedup();
        Ok(evidence)
    }

    fn in_scope(&self, cmd: &Command, r: usize) -> bool {
        let region = &self.plan.regions[r];
        cmd.region.as_ref().is_none_or(|n| *n == region.name)
            && cmd.wave.as_ref().is_none_or(|w| *w == self.plan.waves[region.wave].name)
    }

    /// Is unit `i` serving traffic under watch (health failures count)? The one rule in
    /// `watch`, which the shells ask too.
    fn watched(&self, i: usize) -> bool {
        crate::watch::under_watch(self.plan, &self.state, i)
    }

    // ----- 1. commands -----

    fn apply_commands(&mut self) {
        for cmd in self.obs.commands {
            let cause = self.command_cause(cmd);
            let wave_idx = cmd.wave.as_ref().and_then(|w| self.plan.wave_index(w));
            self.record(wave_idx, None, AuditEvent::Command { command: cmd.kind, by: cmd.by.clone() }, cause.clone());
            if let Some(last) = self.audit.last_mut() {
                last.region.clone_from(&cmd.region);
            }
            let regions: Vec<usize> = (0..self.plan.regions.len()).filter(|&r| self.in_scope(cmd, r)).collect();
            match cmd.kind {
                CommandKind::Pause => {
                    match (&cmd.region, &cmd.wave) {
                        (Some(r), _) => _ = self.state.paused.regions.insert(r.clone()),
                        (None, Some(w)) => _ = self.state.paused.waves.insert(w.clone()),
                        (None, None) => self.state.paused.plan = true,
                    }
                    self.cancel_full_promotions(&regions, Cause::Command { command: cmd.kind, by: cmd.by.clone() });
                }
                CommandKind::Resume => match (&cmd.region, &cmd.wave) {
                    (Some(r), _) => _ = self.state.paused.regions.remove(r),
                    (None, Some(w)) => _ = self.state.paused.waves.remove(w),
                    (None, None) => self.state.paused = Default::default(),
                },
                CommandKind::Abort => {
                    match (&cmd.region, &cmd.wave) {
                        (None, None) => self.state.aborted = true,
                        _ => {
                            for &r in &regions {
                                self.state.aborted_regions.insert(self.plan.regions[r].name.clone());
                            }
                        }
                    }
                    self.cancel_full_promotions(&regions, Cause::Command { command: cmd.kind, by: cmd.by.clone() });
                }
                CommandKind::Promote if cmd.full => {
                    // Kept, not applied once: `try_advance` and `settle_wave` ask for it. It
                    // accepts no failure, so a halted wave stays halted.
                    let promotion = FullPromotion {
                        wave: if cmd.region.is_none() { cmd.wave.clone() } else { None },
                        region: cmd.region.clone(),
                        by: cmd.by.clone(),
                        at: cmd.at,
                    };
                    self.state.full_promotions.retain(|p| (&p.wave, &p.region) != (&promotion.wave, &promotion.region));
                    self.state.full_promotions.push(promotion);
                }
                CommandKind::Promote => {
                    for &r in &regions {
                        for i in self.region_units(r) {
                            if self.state.units[i].phase == UnitPhase::Progressing {
                                self.state.units[i].promoted = true;
                            }
                        }
                    }
                    // Only a wave's current gate, and only from a command about the wave: a
                    // promote of one region, or of a running wave, must not later skip a
                    // wave bake or accept a halt nobody has seen yet.
                    if cmd.region.is_none() {
                        for wave in &mut self.state.waves {
                            let named = cmd.wave.as_ref().is_none_or(|n| *n == wave.name);
                            if named && matches!(wave.phase, WavePhase::Baking | WavePhase::Halted) {
                                wave.promoted = true;
                                wave.promoted_by = Some(cmd.by.clone());
                            }
                        }
                    }
                }
                CommandKind::Freeze => {
                    if let Some(request) = &cmd.freeze {
                        self.state.freezes.retain(|f| f.name != request.name);
                        self.state.freezes.push(RuntimeFreeze {
                            name: request.name.clone(),
                            reason: request.reason.clone(),
                            by: cmd.by.clone(),
                            at: cmd.at,
                            until: request.until,
                            wave: if cmd.region.is_none() { cmd.wave.clone() } else { None },
                            region: cmd.region.clone(),
                        });
                    }
                }
                CommandKind::Unfreeze => {
                    self.state.freezes.retain(|f| cmd.unfreeze.as_ref().is_some_and(|n| *n != f.name));
                }
                CommandKind::Retry => {
                    let live: Vec<usize> = regions.iter().copied().filter(|&r| !self.region_aborted(r)).collect();
                    for r in live {
                        for i in self.region_units(r) {
                            let u = &self.state.units[i];
                            let (phase, step, percent) = (u.phase, u.step, u.percent);
                            match phase {
                                UnitPhase::Failed => {
                                    self.reset_checks(i);
                                    self.move_unit(i, UnitPhase::Progressing, step, percent, cause.clone());
                                    self.state.units[i].bake_since = Some(self.now);
                                    self.state.units[i].failure = None;
                                }
                                UnitPhase::RolledBack => {
                                    self.reset_checks(i);
                                    self.move_unit(i, UnitPhase::Blocked, None, 0, cause.clone());
                                    self.state.units[i].waiting = None;
                                    self.state.units[i].failure = None;
                                }
                                _ => {}
                            }
                        }
                    }
                }
            }
        }
    }

    /// The cause a command is recorded with; a freeze or unfreeze says what it does.
    fn command_cause(&self, cmd: &Command) -> Cause {
        let by = cmd.by.clone();
        match (cmd.kind, &cmd.freeze) {
            (CommandKind::Freeze, Some(request)) => Cause::FreezeDeclared {
                name: request.name.clone(),
                why: request.reason.clone(),
                until: request.until,
                scope: match (&cmd.region, &cmd.wave) {
                    (Some(r), _) => format!("region {r}"),
                    (None, Some(w)) => format!("wave {w}"),
                    (None, None) => "plan".into(),
                },
                by,
            },
            (CommandKind::Unfreeze, _) => Cause::FreezeLifted {
                lifted: self
                    .state
                    .freezes
                    .iter()
                    .filter(|f| cmd.unfreeze.as_ref().is_none_or(|n| *n == f.name))
                    .map(|f| f.name.clone())
                    .collect(),
                by,
            },
            (CommandKind::Promote, _) if cmd.full => Cause::FullPromotionDeclared {
                scope: match (&cmd.region, &cmd.wave) {
                    (Some(r), _) => format!("region {r}"),
                    (None, Some(w)) => format!("wave {w}"),
                    (None, None) => "plan".into(),
                },
                by,
            },
            _ => Cause::Command { command: cmd.kind, by },
        }
    }

    // ----- full promotions -----

    /// The full promotion that covers region `r`'s step bakes, if one does.
    fn full_promotion(&self, r: usize) -> Option<&FullPromotion> {
        let region = &self.plan.regions[r];
        let wave = &self.plan.waves[region.wave].name;
        self.state.full_promotions.iter().find(|p| p.covers(wave, &region.name))
    }

    /// The full promotion that covers wave `w`'s bake (of the plan or of that wave; one of a
    /// region covers that region's steps only), if one does.
    fn full_promotion_of_wave(&self, w: usize) -> Option<&FullPromotion> {
        let wave = &self.plan.waves[w].name;
        self.state.full_promotions.iter().find(|p| p.region.is_none() && p.wave.as_ref().is_none_or(|n| n == wave))
    }

    /// Do full promotion `p` and the regions `regions` share a region?
    fn overlaps(&self, p: &FullPromotion, regions: &[usize]) -> bool {
        regions.iter().any(|&r| {
            let region = &self.plan.regions[r];
            p.covers(&self.plan.waves[region.wave].name, &region.name)
        })
    }

    /// End the full promotions that share a region with `regions`, each audited with `cause`.
    /// A resume or a retry does not bring one back: it is the operator's to ask again.
    fn cancel_full_promotions(&mut self, regions: &[usize], cause: Cause) {
        let (ended, kept): (Vec<FullPromotion>, Vec<FullPromotion>) =
            std::mem::take(&mut self.state.full_promotions).into_iter().partition(|p| self.overlaps(p, regions));
        self.state.full_promotions = kept;
        for p in ended {
            self.record_full_promotion_end(&p, cause.clone());
        }
    }

    fn record_full_promotion_end(&mut self, p: &FullPromotion, cause: Cause) {
        let wave = match (&p.region, &p.wave) {
            (Some(r), _) => self.plan.region_index(r).map(|r| self.plan.regions[r].wave),
            (None, Some(w)) => self.plan.wave_index(w),
            (None, None) => None,
        };
        let event = AuditEvent::FullPromotionEnded { scope: p.scope(), by: p.by.clone() };
        self.record(wave, None, event, cause);
        if let Some(last) = self.audit.last_mut() {
            last.region.clone_from(&p.region);
        }
    }

    /// After this decision's moves: a full promotion whose scope completed (every wave of the
    /// plan, its wave, or every unit of its region enabled; a scope no longer in the plan has
    /// nothing left either), or was aborted before it was declared, has nothing left to skip.
    fn end_full_promotions(&mut self) {
        if self.state.full_promotions.is_empty() {
            return;
        }
        let promotions = std::mem::take(&mut self.state.full_promotions);
        let mut kept = Vec::with_capacity(promotions.len());
        let mut ended = Vec::new();
        for p in promotions {
            let complete = match (&p.region, &p.wave) {
                (Some(r), _) => self.plan.region_index(r).is_none_or(|r| self.region_enabled(r)),
                (None, Some(w)) => {
                    self.plan.wave_index(w).is_none_or(|w| self.state.waves[w].phase == WavePhase::Complete)
                }
                (None, None) => self.state.waves.iter().all(|w| w.phase == WavePhase::Complete),
            };
            // Declared on a scope aborted before: nothing there moves again.
            let aborted = self.state.aborted
                || p.region.as_ref().and_then(|r| self.plan.region_index(r)).is_some_and(|r| self.region_aborted(r));
            match (complete, aborted) {
                (true, _) => ended.push((p, Cause::ScopeCompleted)),
                (false, true) => ended.push((p, Cause::Blocked { waiting: WaitReason::Aborted })),
                (false, false) => kept.push(p),
            }
        }
        self.state.full_promotions = kept;
        for (p, cause) in ended {
            self.record_full_promotion_end(&p, cause);
        }
    }

    /// Run-time freezes whose `until` has passed are over.
    fn expire_freezes(&mut self) {
        let now = self.now;
        self.state.freezes.retain(|f| f.until.is_none_or(|u| u > now));
    }

    /// What freezes region `r` now, if anything: run-time freezes in scope first, then the
    /// calendar freezes of its settings.
    fn frozen(&self, r: usize) -> Option<Frozen> {
        let region = &self.plan.regions[r];
        if self.state.freezes.is_empty() && region.settings.freezes.is_empty() {
            return None;
        }
        let wave = &self.plan.waves[region.wave].name;
        let mut sources: Vec<&dyn FreezeSource> = Vec::new();
        for f in &self.state.freezes {
            let in_scope = match (&f.region, &f.wave) {
                (Some(name), _) => *name == region.name,
                (None, Some(w)) => w == wave,
                (None, None) => true,
            };
            if in_scope {
                sources.push(f);
            }
        }
        sources.extend(region.settings.freezes.iter().map(|f| f as &dyn FreezeSource));
        freeze::frozen_at(&sources, region.timezone, self.now)
    }

    /// `Some(reason)` when region `r` is frozen; schedules the wake-up at its end.
    fn freeze_wait(&mut self, r: usize) -> Option<WaitReason> {
        let f = self.frozen(r)?;
        if let Some(until) = f.until {
            self.wake(until);
        }
        Some(WaitReason::Frozen { reason: f.reason, until: f.until, name: f.name })
    }

    fn reset_checks(&mut self, i: usize) {
        for c in &mut self.state.units[i].checks {
            c.consecutive_failures = 0;
        }
    }

    // ----- 2. health -----

    /// Confirmed actuations restart the hold of the step they applied.
    fn apply_confirmations(&mut self) {
        for c in self.obs.confirmations {
            let (Some(r), Some(s)) = (self.plan.region_index(&c.region), self.plan.service_index(&c.service)) else {
                continue;
            };
            let i = self.plan.unit_index(r, s);
            let at = c.at.min(self.now);
            let u = &mut self.state.units[i];
            if u.percent == c.percent && u.bake_since.is_none_or(|b| b < at) {
                u.bake_since = Some(at);
            }
        }
    }

    fn unconfirmed(&self, i: usize) -> bool {
        let u = &self.state.units[i];
        self.obs.unconfirmed.iter().any(|x| x.region == u.region && x.service == u.service)
    }

    fn apply_health(&mut self, fleet: &[FleetVerdict]) {
        let plan = self.plan;
        // Samples come grouped, by region (the simulator) or by service (one health request
        // per service): a name that repeats the last sample's is not looked up again.
        let (mut region, mut service, mut check) = (NameSeen::default(), NameSeen::default(), NameSeen::default());
        for sample in self.obs.health {
            let (Some(r), Some(s)) = (
                region.index(&sample.region, |n| plan.region_index(n)),
                service.index(&sample.service, |n| plan.service_index(n)),
            ) else {
                continue;
            };
            let Some(c) = check.index(&sample.check, |n| plan.health.checks.iter().position(|c| c.name == n)) else {
                continue;
            };
            let i = self.plan.unit_index(r, s);
            self.apply_verdict(i, c, sample.verdict, sample.value, sample.at, sample.baseline.as_ref());
        }
        for f in fleet {
            self.apply_verdict(f.unit, f.check, f.verdict, None, self.now, None);
        }
    }

    /// One evaluation of check `c` of unit `i`, measured `at`.
    fn apply_verdict(
        &mut self,
        i: usize,
        c: usize,
        verdict: HealthVerdict,
        value: Option<f64>,
        at: DateTime<Utc>,
        baseline: Option<&Baseline>,
    ) {
        let watched = self.watched(i);
        let policy = self.plan.regions[self.region_of(i)].settings.checks[c].no_data;
        // A clock ahead of ours must not make a sample count as taken after a hold that
        // begins now: it counts as measured now.
        let at = at.min(self.now);
        let check = &mut self.state.units[i].checks[c];
        if check.at.is_some_and(|t| at <= t) {
            return; // not newer than what we hold
        }
        check.verdict = Some(verdict);
        check.value = value;
        check.at = Some(at);
        check.baseline = baseline.cloned();
        if !watched {
            return;
        }
        let missing = matches!(verdict, HealthVerdict::NoData | HealthVerdict::Error);
        let failing = verdict == HealthVerdict::Unhealthy || (missing && policy == NoDataPolicy::Fail);
        if failing {
            check.consecutive_failures += 1;
        } else if verdict == HealthVerdict::Healthy {
            check.consecutive_failures = 0;
        }
        let breaks_hold = failing || (missing && policy == NoDataPolicy::Hold);
        if breaks_hold {
            let u = &mut self.state.units[i];
            u.bake_since = Some(u.bake_since.map_or(at, |b| b.max(at)));
        }
    }

    // ----- 3. failures -----

    fn apply_failures(&mut self) {
        for i in 0..self.state.units.len() {
            if !self.watched(i) {
                continue;
            }
            let r = self.region_of(i);
            let settings = &self.plan.regions[r].settings;
            let failed = self.state.units[i]
                .checks
                .iter()
                .enumerate()
                .find(|(c, check)| check.consecutive_failures >= settings.checks[*c].failure_limit.max(1));
            let Some((_, check)) = failed else { continue };
            let failure = UnitFailure {
                at: self.now,
                check: check.name.clone(),
                verdict: check.verdict.unwrap_or(HealthVerdict::NoData),
                value: check.value,
                failures: check.consecutive_failures,
                baseline: check.baseline.clone(),
                progress_deadline: None,
            };
            let cause = Cause::HealthFailed {
                check: failure.check.clone(),
                verdict: failure.verdict,
                value: failure.value,
                failures: failure.failures,
                baseline: failure.baseline.clone(),
            };
            self.fail_unit(i, failure, cause);
        }
    }

    /// Unit `i` failed: it keeps why, and its region's `onFailure` applies.
    fn fail_unit(&mut self, i: usize, failure: UnitFailure, cause: Cause) {
        let r = self.region_of(i);
        let policy = self.plan.regions[r].settings.on_failure;
        let (step, percent) = (self.state.units[i].step, self.state.units[i].percent);
        self.move_unit(i, UnitPhase::Failed, step, percent, cause);
        self.state.units[i].failure = Some(Box::new(failure));
        let service = self.state.units[i].service.clone();
        if !self.state.full_promotions.is_empty() {
            let region = self.state.units[i].region.clone();
            self.cancel_full_promotions(&[r], Cause::FailedInScope { region, service: service.clone() });
        }
        if policy == OnFailure::RollbackRegion {
            for j in self.region_units(r) {
                let u = &self.state.units[j];
                if u.percent > 0 || u.phase == UnitPhase::Failed || u.step.is_some() {
                    self.move_unit(
                        j,
                        UnitPhase::RolledBack,
                        None,
                        0,
                        Cause::RegionFailed { service: service.clone(), policy },
                    );
                    self.state.units[j].waiting = Some(WaitReason::RegionFailed { service: service.clone() });
                }
            }
        }
    }

    // ----- 3b. progress deadlines -----

    /// Is unit `i` stepping while it waits for nothing expected, so that its progress
    /// deadline runs? Expected: an approval, a window, a freeze, a dependency, parallelism, a
    /// pause, an earlier wave (none of which a progressing unit waits for but the first three),
    /// and anything of a failed or aborted region. Not expected: a step bake and health (data
    /// that never arrives), an unconfirmed actuation, a held drift.
    fn deadline_runs(&self, i: usize) -> bool {
        let u = &self.state.units[i];
        let r = self.region_of(i);
        u.phase == UnitPhase::Progressing
            && u.step.is_some()
            && matches!(
                u.waiting,
                None | Some(
                    WaitReason::StepBake { .. }
                        | WaitReason::Health { .. }
                        | WaitReason::Actuation { .. }
                        | WaitReason::Drift { .. }
                )
            )
            && !self.region_aborted(r)
            && !self.region_failed(r)
            && self.pause_scope(r).is_none()
    }

    /// Units past their deadline at the start of this decision under `onProgressDeadline:
    /// fail` fail as a health failure would, before anything else moves.
    fn apply_deadlines(&mut self) {
        if self.plan.on_progress_deadline != OnProgressDeadline::Fail
            || self.plan.regions.iter().all(|r| r.settings.progress_deadline.is_none())
        {
            return;
        }
        for i in 0..self.state.units.len() {
            let Some(deadline) = self.plan.regions[self.region_of(i)].settings.progress_deadline else { continue };
            let u = &self.state.units[i];
            let Some(since) = u.progress_at else { continue };
            if self.now < since + deadline.to_delta() || !self.deadline_runs(i) {
                continue;
            }
            let policy = OnProgressDeadline::Fail;
            let cause =
                Cause::ProgressDeadline { since, deadline: deadline.to_string(), waiting: u.waiting.clone(), policy };
            let failure = UnitFailure {
                at: self.now,
                check: String::new(),
                verdict: HealthVerdict::NoData,
                value: None,
                failures: 0,
                baseline: None,
                progress_deadline: Some(deadline.to_string()),
            };
            self.fail_unit(i, failure, cause);
        }
    }

    /// After this decision's moves: start the clock of units whose deadline now runs, stop it
    /// for the others; a unit past its deadline under `alert` is recorded and marked once (it
    /// did not move in this decision either), the others wake the engine when it would pass.
    fn note_deadlines(&mut self) {
        if self.plan.regions.iter().all(|r| r.settings.progress_deadline.is_none()) {
            return;
        }
        for i in 0..self.state.units.len() {
            let Some(deadline) = self.plan.regions[self.region_of(i)].settings.progress_deadline else { continue };
            if !self.deadline_runs(i) {
                let u = &mut self.state.units[i];
                u.progress_at = None;
                u.stalled = None;
                continue;
            }
            let now = self.now;
            let u = &mut self.state.units[i];
            let since = *u.progress_at.get_or_insert(now);
            if u.stalled.is_some() {
                continue;
            }
            let due = since + deadline.to_delta();
            if now < due {
                self.wake(due);
                continue;
            }
            let event = unchanged(u);
            let policy = self.plan.on_progress_deadline;
            let cause =
                Cause::ProgressDeadline { since, deadline: deadline.to_string(), waiting: u.waiting.clone(), policy };
            u.stalled = Some(Box::new(Stalled { since, deadline: deadline.to_string(), at: now }));
            self.record(None, Some(i), event, cause);
        }
    }

    // ----- 4. approvals of units that serve traffic -----

    fn apply_approvals(&mut self) {
        let policy = self.plan.on_approval_revoked;
        if self.plan.regions.iter().all(|r| r.approvals.is_empty())
            && self.plan.waves.iter().all(|w| w.approvals.is_empty())
        {
            return;
        }
        for i in 0..self.state.units.len() {
            let u = &self.state.units[i];
            if u.percent == 0 {
                continue;
            }
            let held = matches!(u.waiting, Some(WaitReason::Approval { .. }));
            let (flag, problem) = match self.approvals_hold(i) {
                Ok(evidence) => {
                    if held {
                        // The loss was audited; so is its end, with the approvals now in force.
                        let u = &self.state.units[i];
                        let event = unchanged(u);
                        self.record(None, Some(i), event, Cause::ApprovalRestored { approvals: evidence });
                        self.state.units[i].waiting = None;
                    }
                    continue;
                }
                Err(lost) => lost,
            };
            let reason = WaitReason::Approval { flag: flag.clone(), problem: problem.clone() };
            // `hold` keeps traffic granted under an approval that stopped holding. A region flag
            // with no approval on record at all (one an edit added) never allowed this traffic:
            // there is nothing to hold, so it goes as under `disable`. A wave's flags gate its
            // steps: a region an edit moved into a wave whose gate is not granted yet keeps
            // what it has under `hold`.
            let region_flag = self.plan.regions[self.region_of(i)].approvals.contains(&flag);
            let policy =
                if problem == ApprovalProblem::Missing && region_flag { OnApprovalRevoked::Disable } else { policy };
            let cause = Cause::ApprovalLost { flag, problem, policy };
            match policy {
                OnApprovalRevoked::Disable => {
                    // A failed unit stays failed (rolled back), so its region still needs a retry.
                    let to = if u.phase == UnitPhase::Failed { UnitPhase::RolledBack } else { UnitPhase::Blocked };
                    self.move_unit(i, to, None, 0, cause);
                }
                OnApprovalRevoked::Hold if !held => {
                    let event = unchanged(u);
                    self.record(None, Some(i), event, cause);
                }
                OnApprovalRevoked::Hold => {}
            }
            self.state.units[i].waiting = Some(reason);
        }
    }

    // ----- 5. progress -----

    /// One move can unlock another at the same instant (an enabled region frees a parallel
    /// slot for a region visited earlier, a completed wave starts the next), so repeat the
    /// pass until nothing moves. Bounded, though a pass without a move ends it.
    fn progress(&mut self) {
        const MAX_ROUNDS: usize = 64;
        self.release_budget_charges();
        for _ in 0..MAX_ROUNDS {
            let before = self.state.audit_seq;
            self.progress_once();
            if self.state.audit_seq == before {
                break;
            }
        }
    }

    fn progress_once(&mut self) {
        for w in 0..self.plan.waves.len() {
            let earlier_done = self.state.waves[..w].iter().all(|s| s.phase == WavePhase::Complete);
            if self.state.waves[w].phase == WavePhase::Pending {
                let waits = if !earlier_done || self.state.aborted {
                    Some(match self.state.waves[..w].iter().rposition(|s| s.phase != WavePhase::Complete) {
                        Some(p) => WaitReason::Wave { wave: self.plan.waves[p].name.clone() },
                        None => WaitReason::Aborted,
                    })
                } else {
                    self.plan_wait(w)
                };
                if let Some(reason) = waits {
                    // Nothing else in `progress` touches a pending wave's units: once they say
                    // so in this decision, a later pass has nothing to do for them.
                    if self.pending_marked[w].as_ref() != Some(&reason) {
                        for &r in &self.plan.waves[w].regions {
                            for i in self.region_units(r) {
                                if self.state.units[i].waiting.as_ref() != Some(&reason) {
                                    self.state.units[i].waiting = Some(reason.clone());
                                }
                            }
                        }
                        self.pending_marked[w] = Some(reason.clone());
                    }
                    self.state.waves[w].waiting = Some(reason);
                    continue;
                }
                self.move_wave(w, WavePhase::Running, Cause::WaveStarted);
            }
            self.charge_budgets(w);
            self.progress_wave(w);
            self.settle_wave(w);
        }
    }

    // ----- failure budgets -----

    /// A retried region is no longer failed: its charge goes back to the budgets.
    fn release_budget_charges(&mut self) {
        if self.state.waves.iter().all(|w| w.within_budget.is_empty()) {
            return;
        }
        for w in 0..self.state.waves.len() {
            let mut charges = std::mem::take(&mut self.state.waves[w].within_budget);
            charges.retain(|c| self.plan.region_index(&c.region).is_some_and(|r| self.region_failed(r)));
            self.state.waves[w].within_budget = charges;
        }
    }

    fn charged(&self, w: usize, r: usize) -> bool {
        let name = &self.plan.regions[r].name;
        self.state.waves[w].within_budget.iter().any(|c| c.region == *name)
    }

    /// Charge wave `w`'s newly failed regions to its failure budgets, in wave order. One past
    /// a budget applies `onBudgetExceeded` at once (before any region could start in this
    /// decision) and is not charged: the wave stays stopped until a retry makes room or a
    /// promote accepts the failures.
    fn charge_budgets(&mut self, w: usize) {
        let plan = self.plan;
        let Some(wave_allowed) = plan.wave_budget(w) else { return };
        let phase = self.state.waves[w].phase;
        if matches!(phase, WavePhase::Pending | WavePhase::Complete) || self.state.aborted {
            return;
        }
        let wave = &plan.waves[w];
        for &r in &wave.regions {
            if !self.region_failed(r) || self.charged(w, r) {
                continue;
            }
            let region = plan.regions[r].name.clone();
            let wave_use = wave.max_failures.map(|b| BudgetUse {
                budget: format!("wave {}", wave.name),
                max_failures: b.to_string(),
                allowed: wave_allowed,
                used: self.state.waves[w].within_budget.len() + 1,
            });
            let plan_use = plan.max_failures.map(|b| BudgetUse {
                budget: "plan".into(),
                max_failures: b.to_string(),
                allowed: plan.plan_budget(),
                used: self.state.waves.iter().map(|x| x.within_budget.len()).sum::<usize>() + 1,
            });
            let budgets: Vec<BudgetUse> = wave_use.into_iter().chain(plan_use).collect();
            if let Some(past) = budgets.iter().find(|b| b.used > b.allowed).cloned() {
                if phase == WavePhase::Halted {
                    return; // stopped already, and recorded then
                }
                let policy = plan.on_budget_exceeded;
                let cause = Cause::BudgetExceeded { region: region.clone(), budget: past, policy };
                match policy {
                    OnBudgetExceeded::Halt => self.move_wave(w, WavePhase::Halted, cause),
                    OnBudgetExceeded::Abort => {
                        self.record(Some(w), None, AuditEvent::Wave { from: phase, to: phase }, cause);
                        self.state.aborted = true;
                    }
                }
                if let Some(last) = self.audit.last_mut() {
                    last.region = Some(region);
                }
                return;
            }
            self.state.waves[w].within_budget.push(BudgetCharge { region: region.clone(), at: self.now });
            let cause = Cause::BudgetConsumed { region: region.clone(), budgets };
            self.record(Some(w), None, AuditEvent::Wave { from: phase, to: phase }, cause);
            if let Some(last) = self.audit.last_mut() {
                last.region = Some(region);
            }
        }
    }

    fn move_wave(&mut self, w: usize, to: WavePhase, cause: Cause) {
        let from = self.state.waves[w].phase;
        if from == to {
            return;
        }
        let wave = &mut self.state.waves[w];
        wave.phase = to;
        wave.since = Some(self.now);
        wave.waiting = None;
        // A promote is for the gate in front of the operator, never for a later one.
        wave.promoted = false;
        wave.promoted_by = None;
        self.record(Some(w), None, AuditEvent::Wave { from, to }, cause);
    }

    fn region_started(&self, r: usize) -> bool {
        self.region_units(r).any(|i| {
            let u = &self.state.units[i];
            u.percent > 0 || u.step.is_some() || u.phase == UnitPhase::Enabled
        })
    }

    fn region_enabled(&self, r: usize) -> bool {
        self.region_units(r).all(|i| self.state.units[i].phase == UnitPhase::Enabled)
    }

    /// Failed or rolled back after a failure; an aborted region is not failed, it is gone.
    fn region_failed(&self, r: usize) -> bool {
        self.any_failed
            && !self.region_aborted(r)
            && self
                .region_units(r)
                .any(|i| matches!(self.state.units[i].phase, UnitPhase::Failed | UnitPhase::RolledBack))
    }

    /// Counts against `maxParallel`: started, not fully enabled, not aborted. A failed region
    /// still serving traffic counts; a rolled-back one has no step and no traffic left.
    fn region_in_progress(&self, r: usize) -> bool {
        !self.region_aborted(r) && self.region_started(r) && !self.region_enabled(r)
    }

    fn region_aborted(&self, r: usize) -> bool {
        self.state.aborted || self.state.aborted_regions.contains(&self.plan.regions[r].name)
    }

    fn pause_scope(&self, r: usize) -> Option<String> {
        let region = &self.plan.regions[r];
        let wave = &self.plan.waves[region.wave].name;
        if self.state.paused.plan {
            Some("plan".into())
        } else if self.state.paused.waves.contains(wave) {
            Some(format!("wave {wave}"))
        } else if self.state.paused.regions.contains(&region.name) {
            Some(format!("region {}", region.name))
        } else {
            None
        }
    }

    /// Started regions move first (so a region that finishes frees its slot), then regions
    /// start in order while slots are free.
    fn progress_wave(&mut self, w: usize) {
        let plan = self.plan;
        let wave = &plan.waves[w];
        // A wave whose every unit is enabled has nothing to move, start, block or abort here
        // (most of a large plan late in its rollout): skip the walk below, in this pass and,
        // known so, in the later ones.
        if self.waves_done[w] {
            return;
        }
        if wave.regions.iter().all(|&r| self.region_enabled(r)) {
            self.waves_done[w] = true;
            return;
        }
        let mut free = Vec::with_capacity(wave.regions.len());
        for &r in &wave.regions {
            if self.region_aborted(r) {
                self.abort_region(r);
                continue;
            }
            if let Some(service) = self.failed_service(r) {
                for i in self.region_units(r) {
                    let u = &self.state.units[i];
                    if matches!(u.phase, UnitPhase::Progressing | UnitPhase::Blocked | UnitPhase::Pending) {
                        let phase = if u.percent > 0 { UnitPhase::Paused } else { UnitPhase::Blocked };
                        self.block(i, phase, WaitReason::RegionFailed { service: service.clone() });
                    }
                }
                continue;
            }
            if let Some(scope) = self.pause_scope(r) {
                for i in self.region_units(r) {
                    let u = &self.state.units[i];
                    match u.phase {
                        UnitPhase::Progressing => {
                            self.block(i, UnitPhase::Paused, WaitReason::Paused { scope: scope.clone() })
                        }
                        UnitPhase::Pending | UnitPhase::Blocked => {
                            self.block(i, UnitPhase::Blocked, WaitReason::Paused { scope: scope.clone() })
                        }
                        _ => {}
                    }
                }
                continue;
            }
            free.push(r);
            for &s in &plan.service_order {
                let i = plan.unit_index(r, s);
                let u = &self.state.units[i];
                match (u.phase, u.step) {
                    (UnitPhase::Paused, Some(step)) => {
                        let percent = u.percent;
                        self.move_unit(i, UnitPhase::Progressing, Some(step), percent, Cause::Resumed);
                        if !matches!(self.state.units[i].waiting, Some(WaitReason::Approval { .. })) {
                            self.state.units[i].waiting = None;
                        }
                        self.try_advance(i);
                    }
                    (UnitPhase::Progressing, Some(_)) => self.try_advance(i),
                    _ => {}
                }
            }
        }
        // A failed region a budget took is out of the wave: it holds no parallel slot.
        let mut active = ActiveRegions { regions: Vec::new(), member: vec![false; plan.regions.len()], id: 0 };
        for &r in &wave.regions {
            if self.region_in_progress(r) && !self.charged(w, r) {
                active.regions.push(r);
                active.member[r] = true;
            }
        }
        active.id = self.next_list_id();
        // A wave stopped by a failure past its budget starts no further region.
        let budget_halt = plan.wave_budget(w).is_some() && self.state.waves[w].phase == WavePhase::Halted;
        for r in free {
            if budget_halt && !self.region_started(r) {
                let failed_regions: Vec<String> = wave
                    .regions
                    .iter()
                    .filter(|&&x| self.region_failed(x))
                    .map(|&x| plan.regions[x].name.clone())
                    .collect();
                let reason = WaitReason::WaveHalted { wave: wave.name.clone(), failed_regions };
                for i in self.region_units(r) {
                    if self.state.units[i].waiting.as_ref() != Some(&reason) {
                        self.block(i, UnitPhase::Blocked, reason.clone());
                    }
                }
                continue;
            }
            for &s in &plan.service_order {
                let i = plan.unit_index(r, s);
                let u = &self.state.units[i];
                let waiting_to_start = match u.phase {
                    UnitPhase::Enabled | UnitPhase::Failed | UnitPhase::RolledBack => false,
                    UnitPhase::Pending | UnitPhase::Blocked => true,
                    UnitPhase::Progressing | UnitPhase::Paused => u.step.is_none(),
                };
                if waiting_to_start {
                    self.try_start(i, w, &mut active);
                }
            }
        }
    }

    /// The service whose failure holds region `r`, if it is failed or rolled back.
    fn failed_service(&self, r: usize) -> Option<String> {
        if !self.region_failed(r) {
            return None;
        }
        let units = &self.state.units[self.region_units(r)];
        let failed = units.iter().find(|u| u.phase == UnitPhase::Failed).map(|u| u.service.clone());
        let rolled_back = || {
            units.iter().find_map(|u| match &u.waiting {
                Some(WaitReason::RegionFailed { service }) if u.phase == UnitPhase::RolledBack => Some(service.clone()),
                _ => None,
            })
        };
        let any = || units.iter().find(|u| u.phase == UnitPhase::RolledBack).map(|u| u.service.clone());
        failed.or_else(rolled_back).or_else(any)
    }

    fn abort_region(&mut self, r: usize) {
        for i in self.region_units(r) {
            let u = &self.state.units[i];
            match u.phase {
                UnitPhase::Enabled => {}
                UnitPhase::RolledBack if u.waiting == Some(WaitReason::Aborted) => {}
                _ if u.percent > 0 || u.step.is_some() => {
                    self.move_unit(i, UnitPhase::RolledBack, None, 0, Cause::Blocked { waiting: WaitReason::Aborted });
                    self.state.units[i].waiting = Some(WaitReason::Aborted);
                }
                UnitPhase::RolledBack => self.state.units[i].waiting = Some(WaitReason::Aborted),
                _ => self.block(i, UnitPhase::Blocked, WaitReason::Aborted),
            }
        }
    }

    /// The first `dependsOn` of wave `w` (the plan's, then the wave's own) that does not
    /// hold: what its units wait for before they start (`crate::dependency`).
    fn plan_wait(&self, w: usize) -> Option<WaitReason> {
        static NOTHING_KNOWN: PlanProgress = PlanProgress { plans: std::collections::BTreeMap::new() };
        let (own, wave) = (&self.plan.depends_on, &self.plan.waves[w].depends_on);
        if own.is_empty() && wave.is_empty() {
            return None;
        }
        self.obs.other_plans.unwrap_or(&NOTHING_KNOWN).unmet(own.iter().chain(wave))
    }

    fn try_start(&mut self, i: usize, w: usize, active: &mut ActiveRegions) {
        let plan = self.plan;
        if let Some(reason) = self.plan_wait(w) {
            // Only starts wait: a unit that started goes on (see `crate::dependency`).
            let u = &self.state.units[i];
            if u.phase == UnitPhase::Blocked && u.waiting.as_ref() == Some(&reason) {
                return;
            }
            return self.block(i, UnitPhase::Blocked, reason);
        }
        let r = self.region_of(i);
        let s = i % plan.services.len();
        let units = &self.state.units;
        let waiting_on = || {
            let pending = |d: &&usize| units[plan.unit_index(r, **d)].phase != UnitPhase::Enabled;
            plan.services[s].after.iter().filter(pending).map(|&d| &plan.services[d].name)
        };
        if waiting_on().next().is_some() {
            // Most units of a big wave wait here at every decision: an unchanged wait is left
            // as it is rather than rebuilt (`block` would change nothing else).
            let u = &units[i];
            let unchanged =
                matches!(&u.waiting, Some(WaitReason::Dependency { services }) if services.iter().eq(waiting_on()));
            if unchanged && u.phase == UnitPhase::Blocked {
                return;
            }
            let services = waiting_on().cloned().collect();
            return self.block(i, UnitPhase::Blocked, WaitReason::Dependency { services });
        }
        let limit = plan.waves[w].max_parallel;
        if !active.member[r] && active.regions.len() >= limit {
            let names = self.parallel_names(active, i);
            let u = &mut self.state.units[i];
            if u.phase == UnitPhase::Blocked
                && let Some(WaitReason::Parallelism { limit: l, active: held }) = &mut u.waiting
                && *l == limit
                && (Arc::ptr_eq(held, &names) || *held == names)
            {
                // Unchanged; from now on it shares the one list, compared by pointer.
                *held = names;
                return;
            }
            return self.block(i, UnitPhase::Blocked, WaitReason::Parallelism { limit, active: names });
        }
        let evidence = match self.approvals_hold(i) {
            Ok(evidence) => evidence,
            Err((flag, problem)) => return self.block(i, UnitPhase::Blocked, WaitReason::Approval { flag, problem }),
        };
        if let Some(reason) = self.freeze_wait(r) {
            return self.block(i, UnitPhase::Blocked, reason);
        }
        if let WindowAt::Closed { opens_at } = self.window_at(r) {
            return self.block(i, UnitPhase::Blocked, WaitReason::Window { opens_at });
        }
        let percent = self.plan.regions[r].settings.steps[0];
        self.reset_checks(i);
        let flags = self.required_flag_names(i);
        self.move_unit(i, UnitPhase::Progressing, Some(0), percent, Cause::Started { approvals: evidence, flags });
        self.state.units[i].waiting = None;
        if !active.member[r] {
            active.regions.push(r);
            active.member[r] = true;
            active.id = self.next_list_id();
        }
        self.note_step_wait(i);
    }

    /// Whether region `r` may start a step now, by its windows; when not, schedules the
    /// wake-up at the next opening. Worked out once per region and decision: a region waiting
    /// for its window is asked again in every pass, and the answer depends on `now` alone.
    fn window_at(&mut self, r: usize) -> WindowAt {
        let known = match self.windows[r] {
            Some(known) => known,
            None => {
                let region = &self.plan.regions[r];
                let (windows, tz) = (&region.settings.windows, region.timezone);
                let known = if window::any_open(windows, tz, self.now) {
                    WindowAt::Open
                } else {
                    WindowAt::Closed { opens_at: window::next_open(windows, tz, self.now) }
                };
                self.windows[r] = Some(known);
                known
            }
        };
        if let WindowAt::Closed { opens_at: Some(at) } = known {
            self.wake(at);
        }
        known
    }

    /// A fresh id for an `ActiveRegions` list that was built or changed.
    fn next_list_id(&mut self) -> u64 {
        self.list_id += 1;
        self.list_id
    }

    /// The names of a wave's regions in progress (`active`), as one list that every unit
    /// waiting for a slot shares: with hundreds of regions in progress and hundreds waiting,
    /// a list per unit was most of a large rollout's time and memory. Built once per change of
    /// `active` in a decision (known by its id, so the lists are not compared per unit); when
    /// unit `i` already holds a list naming the same regions (it waited the same way in the
    /// last decision), that one is kept, so the other units' copies compare equal by pointer.
    fn parallel_names(&mut self, active: &ActiveRegions, i: usize) -> Arc<[String]> {
        if let Some((id, names)) = &self.shared_active
            && *id == active.id
        {
            return Arc::clone(names);
        }
        let plan = self.plan;
        let regions = &active.regions;
        let names = match &self.state.units[i].waiting {
            Some(WaitReason::Parallelism { active: held, .. })
                if held.len() == regions.len()
                    && held.iter().zip(regions).all(|(n, &a)| *n == plan.regions[a].name) =>
            {
                Arc::clone(held)
            }
            _ => regions.iter().map(|&a| plan.regions[a].name.clone()).collect(),
        };
        self.shared_active = Some((active.id, Arc::clone(&names)));
        names
    }

    /// Checks of unit `i` that do not vouch for it: for each check, a healthy verdict
    /// measured after `since` and within `stale_after` of now, or (with `noData: ignore`)
    /// at least not an unhealthy latest verdict.
    fn unvouched_checks(&self, i: usize, since: DateTime<Utc>) -> impl Iterator<Item = &str> {
        let u = &self.state.units[i];
        let settings = &self.plan.regions[self.region_of(i)].settings;
        let stale = stale_after(self.plan);
        u.checks
            .iter()
            .zip(&settings.checks)
            .filter(move |(check, limits)| {
                if limits.no_data == NoDataPolicy::Ignore {
                    return check.verdict == Some(HealthVerdict::Unhealthy);
                }
                let fresh_healthy = check.verdict == Some(HealthVerdict::Healthy)
                    && check.at.is_some_and(|at| at > since && self.now - at <= stale);
                !fresh_healthy
            })
            .map(|(check, _)| check.name.as_str())
    }

    /// Which checks lack a fresh healthy verdict for the current hold.
    fn unhealthy_checks(&self, i: usize) -> Vec<String> {
        let since = self.state.units[i].bake_since.unwrap_or(self.now);
        self.unvouched_checks(i, since).map(str::to_string).collect()
    }

    /// Checks whose latest verdict broke the hold (what a unit that keeps re-baking waits for).
    fn failing_checks(&self, i: usize) -> Vec<String> {
        let u = &self.state.units[i];
        let settings = &self.plan.regions[self.region_of(i)].settings;
        u.checks
            .iter()
            .zip(&settings.checks)
            .filter(|(check, limits)| match check.verdict {
                None | Some(HealthVerdict::Healthy) => false,
                Some(HealthVerdict::Unhealthy) => true,
                Some(HealthVerdict::NoData | HealthVerdict::Error) => limits.no_data != NoDataPolicy::Ignore,
            })
            .map(|(check, _)| check.name.clone())
            .collect()
    }

    /// Set the "baking until" wait and its wake-up for a unit that just moved.
    fn note_step_wait(&mut self, i: usize) {
        let bake = self.plan.regions[self.region_of(i)].settings.step_bake.to_delta();
        let since = self.state.units[i].bake_since.unwrap_or(self.now);
        let until = since + bake;
        self.wake(until);
        self.state.units[i].waiting = Some(WaitReason::StepBake { until });
    }

    fn try_advance(&mut self, i: usize) {
        if let Err((flag, problem)) = self.approvals_hold(i) {
            self.state.units[i].waiting = Some(WaitReason::Approval { flag, problem });
            return;
        }
        if self.unconfirmed(i) {
            let percent = self.state.units[i].percent;
            self.state.units[i].waiting = Some(WaitReason::Actuation { percent });
            return;
        }
        if let Some(observed) = self.state.units[i].drift {
            let expected = self.state.units[i].percent;
            self.state.units[i].waiting = Some(WaitReason::Drift { expected, observed });
            return;
        }
        let r = self.region_of(i);
        let region = &self.plan.regions[r];
        let u = &self.state.units[i];
        let step = u.step.unwrap_or(0);
        let until = u.bake_since.unwrap_or(self.now) + region.settings.step_bake.to_delta();
        let full = self.full_promotion(r).cloned();
        let promoted = u.promoted || full.is_some();
        if full.is_some() && !u.promoted && self.now < until && u.since == Some(self.now) {
            // One step per decision under a full promotion, so that every step is sent (and,
            // by the shell, confirmed) on its own rather than 1 % -> 100 % at once; the next
            // decision may come at once.
            self.wake(self.now + TimeDelta::nanoseconds(1));
            return;
        }
        if !promoted && self.now < until {
            self.wake(until);
            let failing = self.failing_checks(i);
            self.state.units[i].waiting = Some(if failing.is_empty() {
                WaitReason::StepBake { until }
            } else {
                WaitReason::Health { checks: failing }
            });
            return;
        }
        let unhealthy = self.unhealthy_checks(i);
        if !unhealthy.is_empty() {
            self.state.units[i].waiting = Some(WaitReason::Health { checks: unhealthy });
            return;
        }
        // The next step is the first above the unit's traffic: after an edit of the steps, a
        // unit may sit between two of them (`crate::edit::place`).
        let Some(next) = region.settings.steps.iter().position(|&p| p > u.percent) else {
            let percent = self.state.units[i].percent;
            let health = self.health_evidence(i, false);
            self.move_unit(i, UnitPhase::Enabled, Some(step), percent, Cause::Completed { promoted, health, full });
            self.state.units[i].waiting = None;
            return;
        };
        if let Some(reason) = self.freeze_wait(r) {
            self.state.units[i].waiting = Some(reason);
            return;
        }
        if let WindowAt::Closed { opens_at } = self.window_at(r) {
            self.state.units[i].waiting = Some(WaitReason::Window { opens_at });
            return;
        }
        let steps = &self.plan.regions[r].settings.steps;
        let evidence = self.approvals_hold(i).unwrap_or_default();
        let percent = steps[next];
        let (flags, health) = (self.required_flag_names(i), self.health_evidence(i, false));
        self.move_unit(
            i,
            UnitPhase::Progressing,
            Some(next),
            percent,
            Cause::Advanced { approvals: evidence, promoted, flags, health, full },
        );
        self.note_step_wait(i);
    }

    /// Wave-level transitions after its units moved.
    fn settle_wave(&mut self, w: usize) {
        let plan = self.plan;
        let wave = &plan.waves[w];
        let phase = self.state.waves[w].phase;
        if phase == WavePhase::Complete {
            return;
        }
        // Aborted regions are out of the wave; it completes without them.
        let mut live: Vec<usize> = wave.regions.iter().copied().filter(|&r| !self.region_aborted(r)).collect();
        let budgeted = plan.wave_budget(w).is_some();
        if budgeted && live.iter().all(|&r| !self.region_failed(r) || self.charged(w, r)) {
            // Every failure is within budget: the wave goes on, and completes, without them.
            live.retain(|&r| !self.region_failed(r));
        }
        let failed: Vec<String> =
            live.iter().filter(|&&r| self.region_failed(r)).map(|&r| plan.regions[r].name.clone()).collect();
        if !failed.is_empty() {
            // Halt once nothing else in the wave can move: every region is enabled or failed,
            // or may not start because failed regions hold every parallel slot (or, past a
            // budget, because the wave starts no further region).
            let in_progress: Vec<usize> = live.iter().copied().filter(|&r| self.region_in_progress(r)).collect();
            let slots_held =
                in_progress.len() >= wave.max_parallel && in_progress.iter().all(|&r| self.region_failed(r));
            let settled = live.iter().all(|&r| {
                self.region_enabled(r)
                    || self.region_failed(r)
                    || ((slots_held || budgeted) && !self.region_in_progress(r))
            });
            if settled && self.state.waves[w].promoted {
                if let Some(reason) = self.wave_approval_problem(&live) {
                    self.state.waves[w].waiting = Some(reason);
                    return;
                }
                // Who accepted what is kept with the wave: a completion with failures must
                // never read as a clean one.
                let by = self.state.waves[w].promoted_by.clone().unwrap_or_else(|| "unknown".into());
                let cause = Cause::FailuresAccepted { by: by.clone(), regions: failed.clone() };
                self.move_wave(w, WavePhase::Complete, cause);
                self.state.waves[w].accepted = Some(AcceptedFailures { by, at: self.now, regions: failed });
                return;
            }
            if settled && phase != WavePhase::Halted {
                self.move_wave(w, WavePhase::Halted, Cause::WaveHalted { failed_regions: failed.clone() });
            } else if !settled && phase == WavePhase::Baking {
                self.move_wave(w, WavePhase::Running, Cause::WaveHalted { failed_regions: failed.clone() });
            }
            if self.state.waves[w].phase == WavePhase::Halted {
                self.state.waves[w].waiting =
                    Some(WaitReason::WaveHalted { wave: wave.name.clone(), failed_regions: failed });
            }
            return;
        }
        if phase == WavePhase::Halted {
            self.move_wave(w, WavePhase::Running, Cause::WaveResumed);
        }
        if self.state.aborted {
            return;
        }
        if !live.iter().all(|&r| self.region_enabled(r)) {
            if self.state.waves[w].phase == WavePhase::Baking {
                let regions =
                    live.iter().filter(|&&r| !self.region_enabled(r)).map(|&r| plan.regions[r].name.clone()).collect();
                self.move_wave(w, WavePhase::Running, Cause::WaveReopened { regions });
            }
            return;
        }
        if self.state.waves[w].phase == WavePhase::Running {
            self.move_wave(w, WavePhase::Baking, Cause::WaveEnabled);
        }
        if let Some(reason) = self.wave_approval_problem(&live) {
            self.state.waves[w].waiting = Some(reason);
            return;
        }
        // Baking: hold healthy for the wave's bake, measured from the latest healthy-hold start.
        let bake = wave.bake.to_delta();
        let units: Vec<usize> = live.iter().flat_map(|&r| self.region_units(r)).collect();
        let since = units
            .iter()
            .filter_map(|&i| self.state.units[i].bake_since)
            .chain(self.state.waves[w].since)
            .max()
            .unwrap_or(self.now);
        let until = since + bake;
        let full = self.full_promotion_of_wave(w).cloned();
        let promoted = self.state.waves[w].promoted || full.is_some();
        let health =
            |engine: &Self| capped_evidence(units.iter().flat_map(|&i| engine.health_evidence(i, true)).collect());
        if bake.is_zero() || promoted {
            let (health, health_omitted) = health(self);
            return self.move_wave(w, WavePhase::Complete, Cause::WaveBaked { promoted, health, health_omitted, full });
        }
        if self.now < until {
            self.wake(until);
            self.state.waves[w].waiting = Some(WaitReason::WaveBake { wave: wave.name.clone(), until });
            return;
        }
        let mut checks: Vec<String> = units
            .iter()
            .flat_map(|&i| {
                let u = &self.state.units[i];
                self.unvouched_checks(i, since).map(move |c| format!("{}/{}: {c}", u.region, u.service))
            })
            .collect();
        if checks.is_empty() {
            let (health, health_omitted) = health(self);
            let cause = Cause::WaveBaked { promoted: false, health, health_omitted, full: None };
            self.move_wave(w, WavePhase::Complete, cause);
        } else {
            checks.sort();
            checks.dedup();
            self.state.waves[w].waiting = Some(WaitReason::Health { checks });
        }
    }

    /// A wave does not complete while a unit of it serves traffic without its approvals
    /// (held there by `onApprovalRevoked: hold`).
    fn wave_approval_problem(&self, regions: &[usize]) -> Option<WaitReason> {
        regions
            .iter()
            .flat_map(|&r| self.region_units(r))
            .filter(|&i| self.state.units[i].percent > 0)
            .find_map(|i| self.approvals_hold(i).err().map(|(flag, problem)| WaitReason::Approval { flag, problem }))
    }

    // ----- 6. drift and actions -----

    /// Read-backs that differ from the state: re-applied, or under `onDrift: hold` recorded
    /// once and the unit held until the target serves what the state says again.
    fn check_drift(&mut self, before: &[u32]) {
        for reading in self.obs.traffic {
            let (Some(r), Some(s)) =
                (self.plan.region_index(&reading.region), self.plan.service_index(&reading.service))
            else {
                continue;
            };
            let i = self.plan.unit_index(r, s);
            let expected = before[i];
            let observed = reading.percent;
            if self.state.units[i].percent != expected {
                continue; // moved in this decision; the reading is about the old percent
            }
            let hold = self.plan.regions[r].settings.on_drift() == DriftPolicy::Hold;
            let event = AuditEvent::Drift { expected, observed };
            match (observed == expected, self.state.units[i].drift) {
                (true, Some(_)) => {
                    self.state.units[i].drift = None;
                    self.record(None, Some(i), event, Cause::DriftResolved);
                }
                (true, None) => {}
                (false, held) if hold => {
                    if held != Some(observed) {
                        self.state.units[i].drift = Some(observed);
                        self.record(None, Some(i), event, Cause::DriftHeld);
                    }
                }
                (false, _) => {
                    self.state.units[i].drift = None;
                    self.record(None, Some(i), event, Cause::Drift);
                    self.drifted.push(i);
                }
            }
        }
    }

    fn schedule_approval_changes(&mut self) {
        let flags = self.plan.flags();
        if flags.is_empty() {
            return;
        }
        let changes: Vec<DateTime<Utc>> = self
            .obs
            .approvals
            .iter()
            .filter(|a| flags.binary_search(&a.flag).is_ok())
            .flat_map(|a| a.changes_after(self.now))
            .collect();
        for at in changes {
            self.wake(at);
        }
    }

    fn finish(mut self, before: &[u32]) -> Decision {
        let mut actions = Vec::new();
        // In unit order, as a walk of every unit would find them.
        let mut touched = std::mem::take(&mut self.moved);
        touched.extend(&self.drifted);
        touched.sort_unstable();
        touched.dedup();
        for i in touched {
            let u = &mut self.state.units[i];
            if u.percent != before[i] || self.drifted.contains(&i) {
                u.actuated = true;
                actions.push(Action::SetTraffic {
                    region: u.region.clone(),
                    service: u.service.clone(),
                    percent: u.percent,
                    from: before[i],
                });
            }
        }
        actions.append(&mut self.departed);
        Decision { state: self.state, actions, audit: self.audit, wake_at: self.wake_at }
    }
}

/// Two waits of the same kind (and, for approvals, the same flag) are one continued block.
fn same_kind(a: &WaitReason, b: &WaitReason) -> bool {
    match (a, b) {
        (WaitReason::Approval { flag: x, .. }, WaitReason::Approval { flag: y, .. }) => x == y,
        _ => std::mem::discriminant(a) == std::mem::discriminant(b),
    }
}

/// A record about a unit whose phase, step and traffic stay as they are (a held approval,
/// its restoration, a missed progress deadline).
fn unchanged(u: &crate::state::UnitState) -> AuditEvent {
    AuditEvent::Unit { from: u.phase, to: u.phase, step: u.step, from_percent: u.percent, to_percent: u.percent }
}
