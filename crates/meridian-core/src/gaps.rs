//! Why a projected timeline pauses: the gaps in a region's path that something other than a
//! bake made (a window, a freeze, an approval, a service or plan it comes after), each with
//! how long it lasted and, for the times people plan around, the weekday and the region's
//! local time.
//!
//! ```text
//!   simulate ──> Timeline.audit ──> region_gaps(plan, audit, end) ──> Vec<Gap>
//!                                     (meridian plan: "waited 2d 0h for a window: opens Mon 09:00 JST")
//! ```
//!
//! Pure: it reads the audit records the engine issued in the projection. A unit's wait starts
//! with the `Blocked` record that names it (the engine records a new kind of wait once) and
//! ends with the unit's next record (a step, a new kind of wait), or not within the
//! projection. Waits shorter than a minute, and the waits every rollout has (an earlier
//! wave, a service that comes first, a bake, health data, parallelism, confirmation), are not
//! gaps.

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;

use crate::audit::{AuditRecord, Cause};
use crate::plan::Plan;
use crate::state::WaitReason;

/// One pause in a region's path.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Gap {
    pub region: String,
    pub from: DateTime<Utc>,
    /// `None`: still waiting when the projection ends.
    pub to: Option<DateTime<Utc>>,
    /// Why, in words, times as `Tue 09:00 JST` in the region's zone.
    pub why: String,
}

impl Gap {
    /// `waited 14h 20m for a window: opens Mon 09:00 JST`, or for one that does not end
    /// within the projection, `waits from 06-06 12:20 UTC for approval jp-go: never granted`.
    pub fn describe(&self) -> String {
        match self.to {
            Some(to) => format!("waited {} for {}", span(to - self.from), self.why),
            None => format!("waits from {} for {}", self.from.format("%m-%d %H:%M UTC"), self.why),
        }
    }
}

/// `3d 2h`, `14h 20m`, `25m`.
fn span(d: TimeDelta) -> String {
    let m = d.num_minutes().max(0);
    match m {
        m if m < 60 => format!("{m}m"),
        m if m < 24 * 60 => format!("{}h {:02}m", m / 60, m % 60),
        m => format!("{}d {}h", m / (24 * 60), m % (24 * 60) / 60),
    }
}

/// `Tue 09:00 JST` in `zone`.
fn local(at: DateTime<Utc>, zone: Tz) -> String {
    at.with_timezone(&zone).format("%a %H:%M %Z").to_string()
}

/// Why a wait is a gap worth explaining, in words; `None` for the waits every rollout has.
fn explain(waiting: &WaitReason, zone: Tz, until: Option<DateTime<Utc>>) -> Option<String> {
    Some(match waiting {
        WaitReason::Window { opens_at: Some(at) } => format!("a window: opens {}", local(*at, zone)),
        WaitReason::Window { opens_at: None } => "a window: none opens within 8 days".into(),
        WaitReason::Frozen { reason, until: Some(at), .. } => format!("a freeze ({reason}) until {}", local(*at, zone)),
        WaitReason::Frozen { reason, until: None, .. } => format!("a freeze ({reason})"),
        WaitReason::Approval { flag, .. } => match until {
            Some(at) => format!("approval {flag}: granted {}", local(at, zone)),
            None => format!("approval {flag}: never granted"),
        },
        WaitReason::Paused { scope } => format!("a pause of {scope}"),
        WaitReason::WaveHalted { wave, .. } => format!("wave {wave} halted on failed regions"),
        WaitReason::Wave { .. }
        | WaitReason::Dependency { .. }
        | WaitReason::Parallelism { .. }
        | WaitReason::Actuation { .. }
        | WaitReason::StepBake { .. }
        | WaitReason::WaveBake { .. }
        | WaitReason::Health { .. } => return None,
        // Anything else (another plan, a drift, an abort): the engine's own words.
        other => other.to_string(),
    })
}

/// The gaps of every region of `plan` in a projection that issued `audit` and ended at
/// `end`, in the order they began; one per region and reason (the region's services wait
/// together).
pub fn region_gaps(plan: &Plan, audit: &[AuditRecord], end: DateTime<Utc>) -> Vec<Gap> {
    let mut gaps: Vec<Gap> = Vec::new();
    for (i, record) in audit.iter().enumerate() {
        let (Some(region), Some(service)) = (&record.region, &record.service) else { continue };
        let Cause::Blocked { waiting } = &record.cause else { continue };
        let zone = plan.region_index(region).map_or(chrono_tz::UTC, |r| plan.regions[r].timezone);
        let next = audit[i + 1..]
            .iter()
            .find(|r| r.region.as_ref() == Some(region) && r.service.as_ref() == Some(service))
            .map(|r| r.at);
        let short = |to: DateTime<Utc>| to - record.at < TimeDelta::minutes(1);
        if next.map_or(short(end) && end > record.at, short) {
            continue;
        }
        let Some(why) = explain(waiting, zone, next) else { continue };
        // The same wait of the same region (several services, or a wait broken by another
        // one and taken up again) is one gap, from its first start to its last end.
        let same = gaps.iter_mut().find(|g| g.region == *region && g.why == why);
        match same {
            Some(g) => {
                g.to = match (g.to, next) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                }
            }
            None => gaps.push(Gap { region: region.clone(), from: record.at, to: next, why }),
        }
    }
    gaps
}

#[cfg(test)]
mod tests;
