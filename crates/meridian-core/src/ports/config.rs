//! Where plans and approvals come from: files and directories in standalone mode, custom
//! resources in the Kubernetes mode. The runtime reads its configuration only through
//! [`ConfigSource`] and cannot tell which one it has.
//!
//! Owns the validated [`Config`] a source yields, why one could not be applied
//! ([`ConfigError`]), and the two pure rules every source shares: a plan in flight never
//! leaves control by an edit ([`vanished_in_flight`]), and the source's approvals are
//! mirrored into the store by one diff ([`sync_source_approvals`]).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::BoxFuture;
use crate::approval::{ApprovalRecord, revoked_by_file_removal};
use crate::diagnostics::{Report, Severity};
use crate::plan::Plan;
use crate::state::PlanState;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Increases by one with every applied edit.
    pub generation: u64,
    pub plans: Vec<Arc<Plan>>,
    /// Approvals the source holds (the API's live in the store only).
    pub approvals: Vec<ApprovalRecord>,
    /// Where each of `approvals` comes from, by name (`file:PATH`, ...): the `source` it is
    /// stored with.
    pub approval_sources: HashMap<String, String>,
    /// Warnings of the applied version.
    pub warnings: Report,
    pub loaded_at: DateTime<Utc>,
    /// Hash of what the source holds, to tell a real change from a touch.
    pub fingerprint: u64,
}

/// Why a configuration could not be applied.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("configuration has {} errors; first: {}", .0.errors(), first_error(.0))]
    Invalid(Report),
    #[error("no RolloutPlan found in {0}")]
    NoPlans(String),
    /// Plans in flight that the edit would drop; each entry is one whole message.
    #[error("{}", .0.join("; "))]
    PlansVanished(Vec<String>),
}

impl ConfigError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            ConfigError::Read { .. } => "read",
            ConfigError::Invalid(_) => "invalid",
            ConfigError::NoPlans(_) => "no_plans",
            ConfigError::PlansVanished(_) => "plan_vanished",
        }
    }

    /// One message per problem, for the rejected-edit status and the log.
    pub fn messages(&self) -> Vec<String> {
        match self {
            ConfigError::Invalid(report) => {
                report.diagnostics.iter().filter(|d| d.severity == Severity::Error).map(ToString::to_string).collect()
            }
            ConfigError::PlansVanished(messages) => messages.clone(),
            other => vec![other.to_string()],
        }
    }
}

fn first_error(report: &Report) -> String {
    report.diagnostics.iter().find(|d| d.severity == Severity::Error).map(ToString::to_string).unwrap_or_default()
}

/// What a source last saw: a fingerprint of what it holds, or the error reading it. Only a
/// difference from it is a change, so an unreadable source is reported once (not on every
/// poll or event), and its repair is noticed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LastSeen(Option<Result<u64, String>>);

impl LastSeen {
    /// Remember `seen`; whether it differs from what was seen before.
    pub fn record(&mut self, seen: Result<u64, String>) -> bool {
        if self.0.as_ref() == Some(&seen) {
            return false;
        }
        self.0 = Some(seen);
        true
    }
}

/// A source of plans and approvals.
pub trait ConfigSource: Send + Sync + 'static {
    /// Read and validate everything the source holds now. `Err` leaves the configuration in
    /// force as it is.
    fn load(&self, now: DateTime<Utc>) -> BoxFuture<'_, Result<Config, ConfigError>>;
    /// Resolves once what the source holds may differ from what `load` last returned (never
    /// for a mere touch). A reader error resolves it too, to be reported by the next `load`.
    fn changed(&self) -> BoxFuture<'_, ()>;
    /// Whether an approval stored from `source` belongs to this source, so one the source no
    /// longer holds was removed from it (and is revoked), rather than granted from somewhere
    /// this controller does not read (and is kept).
    fn owns(&self, source: &str) -> bool;
    /// What this source reads, in words ("the watched paths config/, approvals/").
    fn describe(&self) -> String;
}

/// Plans in force with traffic in flight (`PlanState::units_in_flight`) that `next` no longer
/// defines, one message each: an edit that drops them is rejected whole, so a file emptied or
/// deleted by mistake never takes a live rollout out of control. A settled plan (complete,
/// aborted, or without traffic) may leave.
pub fn vanished_in_flight<'a>(
    in_force: impl IntoIterator<Item = (&'a str, &'a PlanState)>,
    next: &Config,
) -> Vec<String> {
    in_force
        .into_iter()
        .filter(|(name, _)| !next.plans.iter().any(|p| p.name == *name))
        .filter_map(|(name, state)| {
            let units = state.units_in_flight();
            (units > 0).then(|| {
                format!(
                    "plan {name:?} vanished from the files while {units} of its units serve traffic (phase {}); it \
                     stays in force; restore its file, or abort it (`meridian abort {name}`) or let it complete \
                     before removing it",
                    state.phase()
                )
            })
        })
        .collect()
}

/// One change that brings the store's record of a source's approvals in line with it.
#[derive(Debug, Clone, PartialEq)]
pub enum ApprovalSync {
    /// Grant or update `approval`, stored with `source`.
    Put { approval: Box<ApprovalRecord>, source: String },
    /// The source no longer holds it: revoke it ("approval file removed").
    Revoke { name: String },
    /// Granted from a source this controller does not read: kept, to be reported.
    KeepForeign { name: String, source: String },
}

/// The diff between what a source holds and what the store holds from sources: new ones are
/// granted, changed ones updated, vanished ones revoked. "Vanished" is judged against the
/// store, not the last load, so an approval removed while the controller was stopped is
/// revoked at the next start; but only one the source `owns` can vanish. A revocation is
/// never undone by the source, except the one its own removal caused: putting it back grants
/// it again.
///
/// `stored` is every approval on record; `stored_from_sources` the unrevoked ones last
/// granted by a source, as (name, source).
pub fn sync_source_approvals(
    config: &Config,
    stored: &[ApprovalRecord],
    stored_from_sources: &[(String, String)],
    owns: impl Fn(&str) -> bool,
) -> Vec<ApprovalSync> {
    let by_name: HashMap<&str, &ApprovalRecord> = stored.iter().map(|a| (a.name.as_str(), a)).collect();
    let mut changes = Vec::new();
    for a in &config.approvals {
        let source = config.approval_sources.get(&a.name).cloned().unwrap_or_else(|| "file".to_string());
        match by_name.get(a.name.as_str()) {
            Some(s) if s.revoked.is_some() && !revoked_by_file_removal(s) => {}
            Some(s) if s.revoked.is_none() && same_grant(s, a) => {}
            _ => changes.push(ApprovalSync::Put { approval: Box::new(a.clone()), source }),
        }
    }
    for (name, source) in stored_from_sources {
        if config.approvals.iter().any(|c| c.name == *name) {
            continue;
        }
        if owns(source) {
            changes.push(ApprovalSync::Revoke { name: name.clone() });
        } else {
            changes.push(ApprovalSync::KeepForeign { name: name.clone(), source: source.clone() });
        }
    }
    changes
}

/// Same grant, ignoring the revocation (which the source never carries).
fn same_grant(stored: &ApprovalRecord, from_source: &ApprovalRecord) -> bool {
    let mut from_source = from_source.clone();
    from_source.revoked.clone_from(&stored.revoked);
    *stored == from_source
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approval::{ApprovalScopeSet, RevokedInfo};
    use crate::state::{UnitPhase, WavePhase};
    use crate::validate::load;

    fn mk_plan(name: &str) -> Plan {
        let text = format!(
            "apiVersion: meridian.dev/v1alpha1\nkind: RolloutPlan\nmetadata: {{name: {name}}}\nspec:\n  services: \
             [{{name: s}}]\n  regions: [{{name: a}}, {{name: b}}]\n  waves: [{{name: w, regions: [a, b]}}]\n  steps: \
             [50, 100]\n"
        );
        let bundle = load(&[(format!("{name}.yaml"), text)], None);
        assert!(!bundle.report.has_errors(), "{:?}", bundle.report);
        bundle.plans.into_iter().next().unwrap()
    }

    fn mk_config(plans: &[&Plan]) -> Config {
        Config {
            generation: 2,
            plans: plans.iter().map(|p| Arc::new((*p).clone())).collect(),
            approvals: Vec::new(),
            approval_sources: Default::default(),
            warnings: Report::default(),
            loaded_at: DateTime::<Utc>::UNIX_EPOCH,
            fingerprint: 0,
        }
    }

    #[test]
    fn an_unreadable_source_is_a_change_once_and_its_repair_is_one_too() {
        let mut seen = LastSeen::default();
        assert!(seen.record(Ok(7)), "the first look is a change");
        assert!(!seen.record(Ok(7)), "a touch is not");
        let dangling = Err("failed to read config/x.yaml: no such file or directory".to_string());
        assert!(seen.record(dangling.clone()), "the file turning unreadable is reported");
        assert!(!seen.record(dangling.clone()), "once, not on every poll: no reload storm");
        assert!(seen.record(Ok(7)), "its repair is noticed, even back to what was in force");
    }

    #[test]
    fn only_plans_with_traffic_in_flight_may_not_vanish() {
        let (keep, gone) = (mk_plan("keep"), mk_plan("gone"));
        let next = mk_config(&[&keep]);
        let fresh = PlanState::new(&gone);
        assert!(vanished_in_flight([("gone", &fresh)], &next).is_empty(), "no traffic yet: may leave");

        let mut flying = PlanState::new(&gone);
        flying.units[0].percent = 50;
        flying.units[0].phase = UnitPhase::Progressing;
        let messages = vanished_in_flight([("gone", &flying), ("keep", &PlanState::new(&keep))], &next);
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert!(messages[0].starts_with("plan \"gone\" vanished from the files while 1 of its units serve traffic"));

        let mut aborted = flying.clone();
        aborted.aborted = true;
        assert!(vanished_in_flight([("gone", &aborted)], &next).is_empty(), "aborted: may leave");

        let mut complete = flying;
        for u in &mut complete.units {
            (u.percent, u.phase) = (100, UnitPhase::Enabled);
        }
        for w in &mut complete.waves {
            w.phase = WavePhase::Complete;
        }
        assert!(vanished_in_flight([("gone", &complete)], &next).is_empty(), "complete: may leave");
    }

    fn mk_approval(name: &str) -> ApprovalRecord {
        ApprovalRecord {
            name: name.into(),
            flag: "go".into(),
            granted_by: "ops".into(),
            reference: None,
            granted_at: None,
            expires: None,
            scope: ApprovalScopeSet::default(),
            revoked: None,
            signature: None,
        }
    }

    #[test]
    fn source_approvals_are_granted_updated_and_revoked_by_one_diff() {
        let keep = mk_plan("keep");
        let mut config = mk_config(&[&keep]);
        let changed = ApprovalRecord { reference: Some("new letter".into()), ..mk_approval("changed") };
        config.approvals = vec![mk_approval("new"), mk_approval("same"), changed.clone(), mk_approval("revoked")];
        config.approval_sources =
            config.approvals.iter().map(|a| (a.name.clone(), format!("file:/c/{}.yaml", a.name))).collect();
        let revoked = |reason: &str| {
            Some(RevokedInfo { at: DateTime::<Utc>::UNIX_EPOCH, by: "someone".into(), reason: Some(reason.into()) })
        };
        let stored = vec![
            mk_approval("same"),
            mk_approval("changed"),
            ApprovalRecord { revoked: revoked("withdrawn"), ..mk_approval("revoked") },
            mk_approval("gone"),
            mk_approval("elsewhere"),
        ];
        let from_sources = vec![
            ("same".to_string(), "file:/c/same.yaml".to_string()),
            ("changed".to_string(), "file:/c/changed.yaml".to_string()),
            ("gone".to_string(), "file:/c/gone.yaml".to_string()),
            ("elsewhere".to_string(), "file:/other/elsewhere.yaml".to_string()),
        ];
        let changes = sync_source_approvals(&config, &stored, &from_sources, |s| s.starts_with("file:/c/"));
        assert_eq!(
            changes,
            vec![
                ApprovalSync::Put { approval: Box::new(mk_approval("new")), source: "file:/c/new.yaml".into() },
                ApprovalSync::Put { approval: Box::new(changed), source: "file:/c/changed.yaml".into() },
                ApprovalSync::Revoke { name: "gone".into() },
                ApprovalSync::KeepForeign { name: "elsewhere".into(), source: "file:/other/elsewhere.yaml".into() },
            ],
            "a revocation by someone is never undone by the file"
        );
        // Revoked because its file was removed, then put back: granted again.
        let removed = ApprovalRecord {
            revoked: Some(RevokedInfo {
                at: DateTime::<Utc>::UNIX_EPOCH,
                by: crate::approval::FILE_REMOVED_BY.into(),
                reason: Some(crate::approval::FILE_REMOVED_REASON.into()),
            }),
            ..mk_approval("revoked")
        };
        let changes = sync_source_approvals(&config, &[removed], &[], |_| true);
        assert!(changes.contains(&ApprovalSync::Put {
            approval: Box::new(mk_approval("revoked")),
            source: "file:/c/revoked.yaml".into()
        }));
    }
}
