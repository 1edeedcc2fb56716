//! Editing a running plan: the one rule that re-aligns a rollout's state to an edited plan,
//! and what it changes, in words (`EditSummary`).
//!
//! ```text
//!   state (made under the old plan) + new plan ──> realign ──> state + EditSummary
//!                                                     │ (PlanState::align; every decision
//!                                                     │  aligns first, so the engine applies
//!                                                     │  an edit at its next decision and
//!                                                     v  audits each change, Cause::PlanEdited)
//!   old plan + new plan + state ──> summarize ──> EditSummary (+ waves moved, units held by a
//!                                                 wave order or approvals: `meridian diff`,
//!                                                 the run log, the API's config status)
//! ```
//!
//! The rule needs only the state and the new plan, so an edit made while the controller was
//! down (a restart with edited files, a changed custom resource) goes through it too. The
//! old plan only adds words (`summarize`).
//!
//! | edit | what happens to a rollout in flight |
//! | --- | --- |
//! | steps changed | a unit keeps its traffic; it is placed at the highest new step at or below it, and its next move goes to the first new step above it |
//! | `stepBake`, a wave's `bake` | the hold that runs is measured against the new bake from when it began |
//! | region or service added | its units start pending; a complete wave that gains one re-opens (runs, then bakes again; an earlier promote of it no longer counts) |
//! | region or service removed | its units leave the plan: one with traffic is wound down to 0 % by the next decision (an action, an intent first) and dropped once the target confirmed; its audit records stay |
//! | region moved to another wave | its units keep their traffic and phase; in a pending wave they hold until it starts (still watched: failures act), in a started one they go on; the new wave's flags gate their steps (`disable` takes units with traffic to 0 % while they do not hold, `hold` keeps it); units not started moved into a complete wave re-open it |
//! | waves reordered | each wave keeps its phase; a pending wave starts once every wave now before it is complete; a started one goes on |
//! | `after` changed | orders starts only: units that started keep going |
//! | check added or removed | a new check starts without a verdict, so no unit takes its next step before it reports healthy; a removed one's state is dropped |
//! | a check's limits changed | apply from the next evaluation; a failure streak is kept, so a lower `failureLimit` already reached fails the unit |
//! | a region's approvals changed | judged at every decision: a region flag with no approval on record takes the unit's traffic to 0 % (there is nothing to hold); a flag that stopped holding applies `onApprovalRevoked` |
//!
//! An edit alone never raises traffic: every raise is a step the engine takes with its usual
//! gates (approvals, windows, freezes, bake, health).
//!
//! Must not: read a clock, judge approvals or health (the engine does, at the next decision).

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::approval::needs_wave_flags;
use crate::manifest::OnApprovalRevoked;
use crate::plan::Plan;
use crate::state::{CheckState, PlanState, UnitPhase, UnitState, WavePhase, WaveState};

/// What an edit does to one (region, service).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnitChange {
    /// New in the plan: starts pending.
    New,
    /// Placed at another step or in another wave; its traffic stays.
    Moves,
    /// Keeps its traffic but waits (an earlier wave, a new check, a changed approval).
    Holds,
    /// Gone from the plan: wound down to 0 % (when it has traffic), audit records kept.
    Removed,
}

impl fmt::Display for UnitChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UnitChange::New => "new",
            UnitChange::Moves => "moves",
            UnitChange::Holds => "holds",
            UnitChange::Removed => "removed",
        })
    }
}

/// What an edit does to one wave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WaveChange {
    /// New in the plan: pending.
    New,
    /// Was complete (or baking) and gained a unit not enabled: runs again.
    Reopens,
    /// Now at another place in the order.
    Moves,
    /// Gone from the plan.
    Removed,
}

impl fmt::Display for WaveChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WaveChange::New => "new",
            WaveChange::Reopens => "re-opens",
            WaveChange::Moves => "moves",
            WaveChange::Removed => "removed",
        })
    }
}

/// One unit an edit changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitEdit {
    pub region: String,
    pub service: String,
    pub change: UnitChange,
    /// Its phase as the state stands.
    pub phase: UnitPhase,
    /// Its traffic as the state stands (the edit keeps it; a removed unit goes to 0 %).
    pub percent: u32,
    /// Why, in words.
    pub reason: String,
}

/// One wave an edit changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaveEdit {
    pub wave: String,
    pub change: WaveChange,
    pub reason: String,
}

/// What an edit changes for a rollout as it stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EditSummary {
    pub plan: String,
    /// Units that move, hold, are new or removed; the others go on as they were.
    pub units: Vec<UnitEdit>,
    pub waves: Vec<WaveEdit>,
}

impl EditSummary {
    /// Nothing in flight changes.
    pub fn is_empty(&self) -> bool {
        self.units.is_empty() && self.waves.is_empty()
    }

    /// One line per change: `unit jp/signin moves: ...`, `wave canary re-opens: ...`.
    pub fn lines(&self) -> Vec<String> {
        let waves = self.waves.iter().map(|w| format!("wave {} {}: {}", w.wave, w.change, w.reason));
        let units = self.units.iter().map(|u| format!("unit {}/{} {}: {}", u.region, u.service, u.change, u.reason));
        waves.chain(units).collect()
    }

    /// `1 unit moves, 2 units hold, ...` or `no change in flight`.
    pub fn counts(&self) -> String {
        // "1 unit moves", "2 units move": the verbs lose their s in the plural.
        fn counted(n: usize, noun: &str, change: String) -> String {
            if n == 1 {
                return format!("1 {noun} {change}");
            }
            let verb = change.strip_suffix('s').unwrap_or(&change);
            format!("{n} {noun}s {verb}")
        }
        let mut parts = Vec::new();
        for change in [UnitChange::New, UnitChange::Moves, UnitChange::Holds, UnitChange::Removed] {
            let n = self.units.iter().filter(|u| u.change == change).count();
            if n > 0 {
                parts.push(counted(n, "unit", change.to_string()));
            }
        }
        for change in [WaveChange::New, WaveChange::Reopens, WaveChange::Moves, WaveChange::Removed] {
            let n = self.waves.iter().filter(|w| w.change == change).count();
            if n > 0 {
                parts.push(counted(n, "wave", change.to_string()));
            }
        }
        if parts.is_empty() { "no change in flight".into() } else { parts.join(", ") }
    }

    fn unit(&mut self, u: &UnitState, change: UnitChange, reason: String) {
        self.units.push(UnitEdit {
            region: u.region.clone(),
            service: u.service.clone(),
            change,
            phase: u.phase,
            percent: u.percent,
            reason,
        });
    }

    fn wave(&mut self, wave: &str, change: WaveChange, reason: String) {
        self.waves.push(WaveEdit { wave: wave.to_string(), change, reason });
    }
}

/// Where a unit at `percent` stands on `steps`: the highest step at or below it (the first
/// when it is below every step). Its next move goes to the first step above `percent`.
pub fn place(steps: &[u32], percent: u32) -> usize {
    steps.iter().rposition(|&p| p <= percent).unwrap_or(0)
}

/// The step a unit at `step` and `percent` belongs at on `steps`: `place` while it has
/// traffic, else its own step within the list.
pub(crate) fn fitted_step(steps: &[u32], step: usize, percent: u32) -> usize {
    if percent == 0 { step.min(steps.len().saturating_sub(1)) } else { place(steps, percent) }
}

fn steps_text(steps: &[u32]) -> String {
    let steps: Vec<String> = steps.iter().map(u32::to_string).collect();
    format!("[{}]", steps.join(", "))
}

/// The first step above `percent`, as (index, percent).
fn next_step(steps: &[u32], percent: u32) -> Option<(usize, u32)> {
    steps.iter().position(|&p| p > percent).map(|i| (i, steps[i]))
}

/// What new steps mean for a unit at `percent`: it keeps its traffic, and climbs next to the
/// first step above it.
fn steps_reason(steps: &[u32], percent: u32) -> String {
    let next = match next_step(steps, percent) {
        Some((i, p)) => format!("next step {p} % (step {} of {})", i + 1, steps.len()),
        None => "no step above it".to_string(),
    };
    format!("steps now {}: keeps {percent} %; {next}", steps_text(steps))
}

/// Re-align `state` to `plan`: the rule. Units and waves are matched by name. Returns what
/// changed for the rollout in flight (`summarize` adds what only the old plan can tell).
/// A no-op (and an empty summary) when already aligned.
pub fn realign(state: &mut PlanState, plan: &Plan) -> EditSummary {
    let mut summary = EditSummary { plan: plan.name.clone(), ..EditSummary::default() };
    if state.is_aligned(plan) {
        return summary;
    }
    let fresh = state.units.is_empty() && state.waves.is_empty() && state.departing.is_empty();
    let wound_down: BTreeSet<(String, String)> =
        state.departing.iter().filter(|u| u.percent == 0).map(|u| (u.region.clone(), u.service.clone())).collect();
    let mut old: HashMap<(String, String), UnitState> = state
        .units
        .drain(..)
        .chain(state.departing.drain(..))
        .map(|u| ((u.region.clone(), u.service.clone()), u))
        .collect();
    let mut gained: Vec<BTreeSet<String>> = vec![BTreeSet::new(); plan.waves.len()];
    // Regions with units not started, by their wave in the new plan: in a complete wave they
    // are units moved there by this edit (the engine never completes a wave that leaves one
    // of its regions unstarted, bar an aborted one), and they would never start.
    let mut unstarted: Vec<BTreeSet<String>> = vec![BTreeSet::new(); plan.waves.len()];
    for (r, region) in plan.regions.iter().enumerate() {
        let steps = &region.settings.steps;
        for (s, service) in plan.services.iter().enumerate() {
            let key = (region.name.clone(), service.name.clone());
            let back = wound_down.contains(&key);
            let Some(mut unit) = old.remove(&key).filter(|_| !back) else {
                // New, or back before the target confirmed the wind-down of its removal: that
                // one starts afresh too (it did not fail; its first step supersedes the 0 %).
                let mut unit = UnitState::new(plan, r, s);
                unit.actuated = back;
                if !fresh {
                    gained[region.wave].insert(region.name.clone());
                    let wave = &plan.waves[region.wave].name;
                    let why = if back { "back in the plan, wound down to 0 %" } else { "new in the plan" };
                    summary.unit(&unit, UnitChange::New, format!("{why}; starts pending in wave {wave}"));
                }
                state.units.push(unit);
                continue;
            };
            if unit.phase == UnitPhase::Pending && unit.percent == 0 && !state.aborted_regions.contains(&region.name) {
                unstarted[region.wave].insert(region.name.clone());
            }
            if let Some(step) = unit.step
                && let placed = fitted_step(steps, step, unit.percent)
                && placed != step
            {
                unit.step = Some(placed);
                // An enabled unit is done: its step is bookkeeping, not worth a word.
                if unit.percent > 0 && unit.phase != UnitPhase::Enabled {
                    summary.unit(&unit, UnitChange::Moves, steps_reason(steps, unit.percent));
                }
            }
            let mut checks = Vec::with_capacity(plan.health.checks.len());
            let mut added = Vec::new();
            for check in &plan.health.checks {
                match unit.checks.iter().find(|c| c.name == check.name) {
                    Some(kept) => checks.push(kept.clone()),
                    None => {
                        added.push(check.name.clone());
                        checks.push(CheckState { name: check.name.clone(), ..CheckState::default() });
                    }
                }
            }
            if !added.is_empty() && unit.percent > 0 && unit.phase != UnitPhase::Enabled {
                let reason = format!("new check {}: takes no further step before it reports healthy", added.join(", "));
                summary.unit(&unit, UnitChange::Holds, reason);
            }
            unit.checks = checks;
            state.units.push(unit);
        }
    }
    // What is left of the old units left the plan. One with traffic, or whose last traffic
    // change may not be confirmed yet, stays until the engine wound it down.
    let mut removed: Vec<UnitState> = old.into_values().collect();
    removed.sort_by(|a, b| (&a.region, &a.service).cmp(&(&b.region, &b.service)));
    let regions: BTreeSet<&str> = plan.regions.iter().map(|r| r.name.as_str()).collect();
    for unit in removed {
        let what = if regions.contains(unit.region.as_str()) {
            format!("service {} removed from the plan", unit.service)
        } else {
            format!("region {} removed from the plan", unit.region)
        };
        let reason = if unit.percent > 0 {
            format!("{what}: wound down from {} % to 0 % by the next decision; its audit records stay", unit.percent)
        } else {
            format!("{what}: no traffic; its audit records stay")
        };
        summary.unit(&unit, UnitChange::Removed, reason);
        if unit.percent > 0 || unit.actuated {
            state.departing.push(unit);
        }
    }
    let mut old_waves: HashMap<String, WaveState> = state.waves.drain(..).map(|w| (w.name.clone(), w)).collect();
    for (w, wave) in plan.waves.iter().enumerate() {
        let Some(mut kept) = old_waves.remove(&wave.name) else {
            if !fresh {
                summary.wave(&wave.name, WaveChange::New, "new in the plan; pending".into());
            }
            state.waves.push(WaveState::new(&wave.name));
            continue;
        };
        if kept.phase == WavePhase::Complete && (!gained[w].is_empty() || !unstarted[w].is_empty()) {
            // Complete is final for the engine; an edit that gives the wave new units, or
            // moves units not started into it, re-opens it, so they start and later pending
            // waves wait for it again (its bake included).
            let mut why = Vec::new();
            if !gained[w].is_empty() {
                why.push(format!("new units in {}", gained[w].iter().cloned().collect::<Vec<_>>().join(", ")));
            }
            let moved: Vec<String> = unstarted[w].difference(&gained[w]).cloned().collect();
            if !moved.is_empty() {
                why.push(format!("units not started moved in: {}", moved.join(", ")));
            }
            summary.wave(&wave.name, WaveChange::Reopens, why.join("; "));
            kept.phase = WavePhase::Running;
            kept.promoted = false;
            kept.waiting = None;
        }
        state.waves.push(kept);
    }
    let mut gone: Vec<String> = old_waves.into_keys().collect();
    gone.sort();
    for wave in gone {
        summary.wave(&wave, WaveChange::Removed, "removed from the plan".into());
    }
    state.plan = plan.name.clone();
    summary
}

/// What editing `old` into `new` changes for the rollout as `state` stands: the rule's
/// summary (`realign`), plus what only the old plan tells: regions moved to another wave,
/// waves moved in the order, units with traffic whose wave now waits for an earlier one, and
/// units whose required approvals changed. `state` itself is left as it is.
pub fn summarize<'a>(old: &'a Plan, new: &'a Plan, state: &PlanState) -> EditSummary {
    let mut before = state.clone();
    before.align(old);
    let mut after = before.clone();
    let mut summary = realign(&mut after, new);
    let mut extra = Vec::new();
    for (r, region) in new.regions.iter().enumerate() {
        let Some(o) = old.region_index(&region.name) else { continue };
        let (from, to) = (&old.waves[old.regions[o].wave].name, &new.waves[region.wave].name);
        let (old_wave, new_wave) = (old.regions[o].wave, region.wave);
        let earlier_open = new.waves[..region.wave]
            .iter()
            .zip(&after.waves)
            .rfind(|(_, s)| s.phase != WavePhase::Complete)
            .map(|(w, _)| w.name.clone());
        for s in 0..new.services.len() {
            let u = &after.units[new.unit_index(r, s)];
            if summary.units.iter().any(|e| e.region == u.region && e.service == u.service) {
                continue;
            }
            let wave_phase = after.waves[region.wave].phase;
            // The flags this unit needs now, before and after (an edit keeps its phase).
            let needed = |plan: &'a Plan, r: usize, w: usize, phase: WavePhase| -> BTreeSet<&'a String> {
                let wave: &[String] = if needs_wave_flags(phase, u.phase) { &plan.waves[w].approvals } else { &[] };
                plan.regions[r].approvals.iter().chain(wave).collect()
            };
            let old_flags = needed(old, o, old_wave, before.waves[old_wave].phase);
            let new_flags = needed(new, r, new_wave, wave_phase);
            let said = if from != to {
                let mut reason = format!("moved from wave {from} to wave {to}; keeps {} %", u.percent);
                if u.percent > 0
                    && wave_phase == WavePhase::Pending
                    && let Some(w) = &earlier_open
                {
                    reason.push_str(&format!("; holds until wave {w} completes"));
                }
                let gate: Vec<&str> = new_flags
                    .difference(&old_flags)
                    .map(|f| f.as_str())
                    .filter(|f| !region.approvals.iter().any(|a| a == f))
                    .collect();
                if u.percent > 0 && !gate.is_empty() && new.on_approval_revoked == OnApprovalRevoked::Disable {
                    reason.push_str(&format!(
                        "; its steps now need {} (onApprovalRevoked: disable takes it to 0 % while they do not hold)",
                        gate.join(", ")
                    ));
                }
                Some((UnitChange::Moves, reason))
            } else if u.percent > 0 && new_flags != old_flags {
                let added: Vec<&str> = new_flags.difference(&old_flags).map(|f| f.as_str()).collect();
                let removed: Vec<&str> = old_flags.difference(&new_flags).map(|f| f.as_str()).collect();
                let mut words = Vec::new();
                if !added.is_empty() {
                    words.push(format!("now needs {}", added.join(", ")));
                }
                if !removed.is_empty() {
                    words.push(format!("no longer needs {}", removed.join(", ")));
                }
                let reason = format!(
                    "approvals changed: {}; judged at the next decision: a region flag with no approval on \
                     record takes it to 0 %, a flag that does not hold applies onApprovalRevoked",
                    words.join(", ")
                );
                Some((UnitChange::Holds, reason))
            } else if u.percent > 0
                && wave_phase == WavePhase::Pending
                && let Some(w) = &earlier_open
            {
                Some((UnitChange::Holds, format!("holds at {} % until wave {w} completes", u.percent)))
            } else {
                None
            };
            // Its step may stay (the realignment said nothing) while where it climbs next moves.
            let climbing = u.percent > 0 && u.phase != UnitPhase::Enabled;
            let (old_steps, new_steps) = (&old.regions[o].settings.steps, &region.settings.steps);
            let steps = (climbing && next_step(old_steps, u.percent) != next_step(new_steps, u.percent))
                .then(|| steps_reason(new_steps, u.percent));
            match (said, steps) {
                (Some((change, reason)), Some(steps)) => extra.push((u.clone(), change, format!("{reason}; {steps}"))),
                (Some((change, reason)), None) => extra.push((u.clone(), change, reason)),
                (None, Some(steps)) => extra.push((u.clone(), UnitChange::Moves, steps)),
                (None, None) => {}
            }
        }
    }
    for (u, change, reason) in extra {
        summary.unit(&u, change, reason);
    }
    let common_old: Vec<&str> =
        old.waves.iter().map(|w| w.name.as_str()).filter(|n| new.wave_index(n).is_some()).collect();
    let common_new: Vec<&str> =
        new.waves.iter().map(|w| w.name.as_str()).filter(|n| old.wave_index(n).is_some()).collect();
    for (i, name) in common_new.iter().enumerate() {
        if common_old.get(i) != Some(name) && !summary.waves.iter().any(|w| w.wave == *name) {
            let before = common_old.iter().position(|n| n == name).map_or(0, |p| p + 1);
            summary.wave(
                name,
                WaveChange::Moves,
                format!("was wave {} of {}, now {}", before, old.waves.len(), { i + 1 }),
            );
        }
    }
    let order = |region: &str, service: &str| {
        let r = new.region_index(region).or_else(|| old.region_index(region).map(|r| r + new.regions.len()));
        (r.unwrap_or(usize::MAX), service.to_string())
    };
    summary.units.sort_by_key(|u| order(&u.region, &u.service));
    summary
}
