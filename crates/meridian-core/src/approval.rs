//! Approvals as the engine sees them, and the one rule that says whether a flag holds for a
//! (plan, region, service) at a given moment.
//!
//! Owns validity, and how a plan's approval policies count approvals ([`Judged`]: signed by
//! one of the flag's keys, enough distinct grantors). Recording, revoking and persisting
//! approvals belongs to the shells; what a signature covers is `signing`'s.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::plan::ApprovalPolicy;
use crate::signing::{self, SignatureProblem};
use crate::state::{UnitPhase, WavePhase};

/// A validated approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRecord {
    /// The approval object's name (unique).
    pub name: String,
    pub flag: String,
    pub granted_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<DateTime<Utc>>,
    #[serde(default)]
    pub scope: ApprovalScopeSet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<RevokedInfo>,
    /// An Ed25519 signature over `signing::canonical_content`, for flags that require one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<ApprovalSignature>,
}

/// Which of a flag's keys signed an approval, and the signature (base64 of 64 bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalSignature {
    pub key: String,
    pub value: String,
}

/// Where an approval applies; an empty list means "any".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalScopeSet {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plans: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    /// Set by the source, not by the approval's author: the only plans it may apply to, on top
    /// of `plans` (`meridian kube --all-namespaces` confines an Approval to the plans of its
    /// own namespace). Not part of the signed content, since the author did not write it;
    /// `None`: not confined, `Some([])`: applies to no plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confined_to_plans: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevokedInfo {
    pub at: DateTime<Utc>,
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Why a required flag does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "problem")]
pub enum ApprovalProblem {
    /// No approval grants this flag at all.
    Missing,
    /// Granted, but only from `at`.
    NotYetValid { name: String, at: DateTime<Utc> },
    /// Granted, but expired.
    Expired { name: String, at: DateTime<Utc> },
    /// Granted, then withdrawn.
    Revoked { name: String, at: DateTime<Utc>, by: String },
    /// Granted for other plans, regions or services.
    OutOfScope { name: String },
    /// Granted, but the flag requires a signature by one of its keys and this one's does not
    /// verify (`reason` says how: unsigned, unknown key, altered content).
    Untrusted { name: String, reason: String },
    /// Some approvals hold, from fewer distinct grantors than the flag requires.
    TooFewGrantors {
        required: usize,
        /// Who the holding approvals are from, one per distinct grantor.
        grantors: Vec<String>,
        /// For a flag that requires signatures: its keys no holding approval is signed with.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        unused_keys: Vec<String>,
    },
}

impl ApprovalScopeSet {
    fn admits(&self, plan: &str, region: &str, service: Option<&str>) -> bool {
        fn allows(list: &[String], value: &str) -> bool {
            list.is_empty() || list.iter().any(|v| v == value)
        }
        self.admits_plan(plan) && allows(&self.regions, region) && service.is_none_or(|s| allows(&self.services, s))
    }

    /// Whether the approval may apply to some unit of `plan`: its `plans` (empty: any) and the
    /// source's confinement both allow it.
    pub fn admits_plan(&self, plan: &str) -> bool {
        (self.plans.is_empty() || self.plans.iter().any(|p| p == plan))
            && self.confined_to_plans.as_ref().is_none_or(|c| c.iter().any(|p| p == plan))
    }
}

impl ApprovalRecord {
    /// The approval as an `Approval` document's `spec` would say it, so a shell can write it
    /// as a file or a resource that loads back into this very record (times to the
    /// nanosecond). The source's confinement is left out: the document's place decides it.
    pub fn to_spec(&self) -> crate::manifest::ApprovalSpec {
        use crate::manifest::{ApprovalScope, ApprovalSpec, Revocation, SignatureSpec};
        let time = crate::validate::rfc3339;
        let scope = &self.scope;
        let scoped = !(scope.plans.is_empty() && scope.regions.is_empty() && scope.services.is_empty());
        ApprovalSpec {
            flag: self.flag.clone(),
            granted_by: self.granted_by.clone(),
            reference: self.reference.clone(),
            granted_at: self.granted_at.map(time),
            expires: self.expires.map(time),
            scope: scoped.then(|| ApprovalScope {
                plans: scope.plans.clone(),
                regions: scope.regions.clone(),
                services: scope.services.clone(),
            }),
            revoked: self.revoked.as_ref().map(|r| Revocation {
                at: time(r.at),
                by: r.by.clone(),
                reason: r.reason.clone(),
            }),
            signature: self.signature.as_ref().map(|s| SignatureSpec { key: s.key.clone(), value: s.value.clone() }),
        }
    }

    /// Whether this approval, by itself, makes its flag hold here and now.
    pub fn check(
        &self,
        plan: &str,
        region: &str,
        service: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), ApprovalProblem> {
        let name = self.name.clone();
        if let Some(revoked) = &self.revoked
            && revoked.at <= now
        {
            return Err(ApprovalProblem::Revoked { name, at: revoked.at, by: revoked.by.clone() });
        }
        if let Some(at) = self.granted_at
            && at > now
        {
            return Err(ApprovalProblem::NotYetValid { name, at });
        }
        if let Some(at) = self.expires
            && at <= now
        {
            return Err(ApprovalProblem::Expired { name, at });
        }
        if !self.scope.admits(plan, region, service) {
            return Err(ApprovalProblem::OutOfScope { name });
        }
        Ok(())
    }

    /// Future moments at which this approval's validity changes on its own.
    pub fn changes_after(&self, now: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> {
        [self.granted_at, self.expires, self.revoked.as_ref().map(|r| r.at)]
            .into_iter()
            .flatten()
            .filter(move |t| *t > now)
    }
}

/// Does a unit in `unit` phase need its wave's flags (its region's it always needs)? While
/// the wave is open, yes. Once it completes, a wave's flags gate only the steps still to take:
/// a unit that starts or climbs in a wave that completed without it (a region never started
/// when a promote accepted a failure, a region retried later) needs the wave's approval; an
/// enabled unit, and a failed or paused one that takes no step, does not.
pub fn needs_wave_flags(wave: WavePhase, unit: UnitPhase) -> bool {
    wave != WavePhase::Complete || matches!(unit, UnitPhase::Pending | UnitPhase::Blocked | UnitPhase::Progressing)
}

/// Does `flag` hold for (plan, region, service) at `now`? `Ok` names the approval that
/// carries it; `Err` gives the most telling reason it does not.
pub fn flag_holds<'a>(
    approvals: &'a [ApprovalRecord],
    flag: &str,
    plan: &str,
    region: &str,
    service: Option<&str>,
    now: DateTime<Utc>,
) -> Result<&'a ApprovalRecord, ApprovalProblem> {
    let mut problem = ApprovalProblem::Missing;
    for approval in approvals.iter().filter(|a| a.flag == flag) {
        match approval.check(plan, region, service, now) {
            Ok(()) => return Ok(approval),
            // Prefer the reason a person most needs to see: revoked, then expired, then the rest.
            Err(p) => {
                if rank(&p) > rank(&problem) {
                    problem = p;
                }
            }
        }
    }
    Err(problem)
}

fn rank(problem: &ApprovalProblem) -> u8 {
    match problem {
        ApprovalProblem::Missing => 0,
        ApprovalProblem::OutOfScope { .. } => 1,
        ApprovalProblem::Untrusted { .. } => 2,
        ApprovalProblem::NotYetValid { .. } => 3,
        ApprovalProblem::Expired { .. } => 4,
        ApprovalProblem::Revoked { .. } => 5,
        ApprovalProblem::TooFewGrantors { .. } => 6,
    }
}

/// Who an unsigned approval counts as for the two-person rule: its `grantedBy`, without the
/// ` (via TOKEN)` the API adds when a token records it for someone else (the same ministry
/// entered by two tokens is one grantor), trimmed and case-folded.
fn grantor_of(granted_by: &str) -> String {
    let name = match granted_by.trim_end().strip_suffix(')').and_then(|s| s.rsplit_once(" (via ")) {
        Some((name, _token)) => name,
        None => granted_by,
    };
    name.trim().to_lowercase()
}

/// The approvals on record as one plan's approval policies count them. Each signature is
/// verified once, here, so deciding over many units costs one verification per approval.
///
/// A flag without a policy needs one holding approval. A policy's `signers` (when any) make
/// only approvals signed by one of them count; its `requires` asks for that many distinct
/// grantors among the holding approvals: distinct keys for a flag with signers (a key is a
/// person or a body, whatever `grantedBy` says), else distinct `grantedBy`.
#[derive(Debug, Clone)]
pub struct Judged<'a, 'p> {
    policies: &'p [ApprovalPolicy],
    /// Every approval, with the grantor it counts as or why it counts for nothing.
    entries: Vec<(&'a ApprovalRecord, Result<String, SignatureProblem>)>,
}

impl<'a, 'p> Judged<'a, 'p> {
    pub fn new(approvals: &'a [ApprovalRecord], policies: &'p [ApprovalPolicy]) -> Self {
        let entries = approvals
            .iter()
            .map(|a| {
                let judged = match policies.iter().find(|p| p.flag == a.flag).filter(|p| !p.signers.is_empty()) {
                    Some(policy) => signing::verify(a, &policy.signers).map(|s| format!("key:{}", s.name)),
                    None => Ok(grantor_of(&a.granted_by)),
                };
                (a, judged)
            })
            .collect();
        Judged { policies, entries }
    }

    /// Why `a` does not count for its flag under these policies, whatever the moment.
    pub fn untrusted(&self, name: &str) -> Option<&SignatureProblem> {
        self.entries.iter().find(|(a, _)| a.name == name).and_then(|(_, j)| j.as_ref().err())
    }

    /// Does `flag` hold for (plan, region, service) at `now`? `Ok` lists the approvals that
    /// carry it, one per distinct grantor; `Err` gives the most telling reason it does not.
    pub fn holds(
        &self,
        flag: &str,
        plan: &str,
        region: &str,
        service: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Vec<&'a ApprovalRecord>, ApprovalProblem> {
        let policy = self.policies.iter().find(|p| p.flag == flag);
        let required = policy.map_or(1, |p| p.requires.max(1));
        let mut problem = ApprovalProblem::Missing;
        let mut holding: Vec<(&'a ApprovalRecord, &str)> = Vec::new();
        for (approval, judged) in self.entries.iter().filter(|(a, _)| a.flag == flag) {
            let checked = approval.check(plan, region, service, now).and_then(|()| {
                judged.as_deref().map_err(|reason| ApprovalProblem::Untrusted {
                    name: approval.name.clone(),
                    reason: reason.to_string(),
                })
            });
            match checked {
                Ok(grantor) => {
                    if !holding.iter().any(|(_, g)| *g == grantor) {
                        holding.push((approval, grantor));
                    }
                }
                // Prefer the reason a person most needs to see: revoked, then expired, then the rest.
                Err(p) => {
                    if rank(&p) > rank(&problem) {
                        problem = p;
                    }
                }
            }
        }
        if holding.len() >= required {
            return Ok(holding.into_iter().map(|(a, _)| a).collect());
        }
        if holding.is_empty() {
            return Err(problem);
        }
        let used: Vec<&str> = holding.iter().filter_map(|(_, g)| g.strip_prefix("key:")).collect();
        Err(ApprovalProblem::TooFewGrantors {
            required,
            grantors: holding.iter().map(|(a, _)| a.granted_by.clone()).collect(),
            unused_keys: policy
                .into_iter()
                .flat_map(|p| p.signers.iter())
                .filter(|s| !used.contains(&s.name.as_str()))
                .map(|s| s.name.clone())
                .collect(),
        })
    }
}

/// Why `a` is refused where it arrives (a file, a resource, the API): the first plan in its
/// scope among `plans` whose policy for its flag lists keys that did not sign it, and how.
/// One rule for every path in; the engine counts such an approval for nothing regardless.
pub fn signature_refusal<'p>(
    plans: impl IntoIterator<Item = &'p crate::plan::Plan>,
    a: &ApprovalRecord,
) -> Option<(&'p str, SignatureProblem)> {
    plans
        .into_iter()
        .filter(|p| a.scope.admits_plan(&p.name))
        .filter_map(|p| {
            p.approval_policy(&a.flag).filter(|policy| !policy.signers.is_empty()).map(|policy| (p, policy))
        })
        .find_map(|(p, policy)| signing::verify(a, &policy.signers).err().map(|e| (p.name.as_str(), e)))
}

/// Who revokes an approval whose file (or resource) was removed, and why: such a revocation,
/// and only such, is undone when its source grants the approval again.
pub const FILE_REMOVED_BY: &str = "config";
pub const FILE_REMOVED_REASON: &str = "approval file removed";

/// Whether `record` was revoked because its file was removed.
pub fn revoked_by_file_removal(record: &ApprovalRecord) -> bool {
    record.revoked.as_ref().is_some_and(|r| r.by == FILE_REMOVED_BY && r.reason.as_deref() == Some(FILE_REMOVED_REASON))
}

/// What recording an approval changes, for the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApprovalChange {
    /// A new approval.
    Granted,
    /// An existing approval changed (expiry, scope, reference...).
    Updated,
    /// The put record carried a revocation the stored one did not have.
    Revoked,
    /// Identical to what is stored (or a revoked approval put again unchanged).
    Unchanged,
}

/// The one rule every store applies when `record` is put (from `source`: `api`, `file:PATH`,
/// `kube:NS/NAME`) over what it holds: a revoked approval stays revoked (the error is its
/// revocation) unless its file was removed and its source grants it again.
pub fn approval_change(
    stored: Option<&ApprovalRecord>,
    record: &ApprovalRecord,
    source: &str,
) -> Result<ApprovalChange, RevokedInfo> {
    // A revoked approval never holds again, so where its source confines it does not matter.
    let without_revocation = |r: &ApprovalRecord| {
        let mut r = ApprovalRecord { revoked: None, ..r.clone() };
        r.scope.confined_to_plans = None;
        r
    };
    Ok(match stored {
        None => ApprovalChange::Granted,
        // A file (or resource) put back after its removal revoked the approval grants it again.
        Some(stored) if source != "api" && record.revoked.is_none() && revoked_by_file_removal(stored) => {
            ApprovalChange::Granted
        }
        Some(stored) => match &stored.revoked {
            Some(_) if without_revocation(stored) == without_revocation(record) => ApprovalChange::Unchanged,
            Some(revoked) => return Err(revoked.clone()),
            None if stored == record => ApprovalChange::Unchanged,
            None if record.revoked.is_some() => ApprovalChange::Revoked,
            None => ApprovalChange::Updated,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, h, 0, 0).unwrap()
    }

    fn approval(flag: &str) -> ApprovalRecord {
        ApprovalRecord {
            name: format!("{flag}-1"),
            flag: flag.into(),
            granted_by: "ministry".into(),
            reference: None,
            granted_at: Some(t(1)),
            expires: Some(t(10)),
            scope: ApprovalScopeSet::default(),
            revoked: None,
            signature: None,
        }
    }

    #[test]
    fn an_approval_written_as_a_document_loads_back_into_the_same_record() {
        let mut a = approval("jp");
        a.granted_at = Some(t(1) + chrono::TimeDelta::nanoseconds(123_456_789));
        a.reference = Some("letter 7".into());
        a.scope.regions = vec!["jp".into()];
        a.signature = Some(ApprovalSignature { key: "k".into(), value: "A".repeat(86) + "==" });
        let document = serde_json::json!({
            "apiVersion": "meridian.dev/v1alpha1",
            "kind": "Approval",
            "metadata": {"name": a.name},
            "spec": a.to_spec(),
        });
        let text = serde_json::to_string_pretty(&document).unwrap();
        let bundle = crate::validate::load(&[("a.yaml".to_string(), text)], None);
        assert!(!bundle.report.has_errors(), "{:?}", bundle.report);
        assert_eq!(bundle.approvals, vec![a.clone()]);
        // Without scope or optional fields the spec says nothing of them.
        let bare =
            ApprovalRecord { reference: None, granted_at: None, expires: None, signature: None, ..approval("kr") };
        let spec = serde_json::to_value(bare.to_spec()).unwrap();
        assert_eq!(spec, serde_json::json!({"flag": "kr", "grantedBy": "ministry"}));
    }

    #[test]
    fn holds_only_between_grant_and_expiry() {
        let a = [approval("jp")];
        assert!(matches!(flag_holds(&a, "jp", "p", "jp", None, t(0)), Err(ApprovalProblem::NotYetValid { .. })));
        assert!(flag_holds(&a, "jp", "p", "jp", None, t(5)).is_ok());
        assert!(matches!(flag_holds(&a, "jp", "p", "jp", None, t(10)), Err(ApprovalProblem::Expired { .. })));
        assert_eq!(flag_holds(&a, "kr", "p", "jp", None, t(5)).unwrap_err(), ApprovalProblem::Missing);
    }

    #[test]
    fn scope_and_revocation_are_respected() {
        let mut a = approval("jp");
        a.scope.services = vec!["signin".into()];
        assert!(a.check("p", "jp", Some("signin"), t(5)).is_ok());
        assert!(matches!(a.check("p", "jp", Some("music"), t(5)), Err(ApprovalProblem::OutOfScope { .. })));
        a.revoked = Some(RevokedInfo { at: t(4), by: "ministry".into(), reason: None });
        assert!(a.check("p", "jp", Some("signin"), t(3)).is_ok());
        assert!(matches!(a.check("p", "jp", Some("signin"), t(4)), Err(ApprovalProblem::Revoked { .. })));
    }

    #[test]
    fn a_confined_approval_holds_for_the_plans_its_source_allows_only() {
        let mut a = approval("jp");
        a.scope.confined_to_plans = Some(vec!["p".into()]);
        assert!(a.check("p", "jp", None, t(5)).is_ok());
        assert!(matches!(a.check("q", "jp", None, t(5)), Err(ApprovalProblem::OutOfScope { .. })));
        // Confined to no plan (a namespace without plans): it holds nowhere, not everywhere.
        a.scope.confined_to_plans = Some(vec![]);
        assert!(matches!(a.check("p", "jp", None, t(5)), Err(ApprovalProblem::OutOfScope { .. })));
        // The author's own scope still applies inside the confinement.
        a.scope = ApprovalScopeSet { plans: vec!["q".into()], confined_to_plans: Some(vec!["p".into()]), ..a.scope };
        assert!(!a.scope.admits_plan("p") && !a.scope.admits_plan("q"));
    }

    #[test]
    fn confinement_is_not_signed_content_and_a_revoked_approval_ignores_it() {
        let a = approval("jp");
        let mut b = a.clone();
        b.scope.confined_to_plans = Some(vec!["p".into()]);
        assert_eq!(crate::signing::canonical_content(&a), crate::signing::canonical_content(&b));
        let mut stored = a.clone();
        stored.revoked = Some(RevokedInfo { at: t(4), by: "ministry".into(), reason: None });
        assert_eq!(approval_change(Some(&stored), &b, "kube:ns/jp-1"), Ok(ApprovalChange::Unchanged));
    }

    fn by(name: &str, who: &str) -> ApprovalRecord {
        ApprovalRecord { name: name.into(), granted_by: who.into(), ..approval("jp") }
    }

    fn policy(requires: usize, signers: Vec<crate::signing::Signer>) -> Vec<ApprovalPolicy> {
        vec![ApprovalPolicy { flag: "jp".into(), requires, signers }]
    }

    #[test]
    fn without_a_policy_one_holding_approval_is_enough() {
        let a = [by("a", "ministry")];
        let held = Judged::new(&a, &[]).holds("jp", "p", "jp", None, t(5)).unwrap();
        assert_eq!(held.len(), 1);
    }

    #[test]
    fn the_two_person_rule_counts_distinct_grantors_once_each() {
        let policies = policy(2, vec![]);
        let a = [by("a", "ministry"), by("b", " Ministry (via alice)"), by("c", "MINISTRY")];
        let err = Judged::new(&a, &policies).holds("jp", "p", "jp", None, t(5)).unwrap_err();
        assert_eq!(
            err,
            ApprovalProblem::TooFewGrantors { required: 2, grantors: vec!["ministry".into()], unused_keys: vec![] }
        );
        let a = [by("a", "ministry"), by("b", "compliance")];
        let held = Judged::new(&a, &policies).holds("jp", "p", "jp", None, t(5)).unwrap();
        assert_eq!(held.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        // Only approvals that hold now count: an expired second grantor leaves one.
        let mut late = by("b", "compliance");
        late.expires = Some(t(3));
        let a = [by("a", "ministry"), late];
        assert!(matches!(
            Judged::new(&a, &policies).holds("jp", "p", "jp", None, t(5)),
            Err(ApprovalProblem::TooFewGrantors { .. })
        ));
        // None at all: the most telling individual reason, as without a policy.
        assert!(matches!(
            Judged::new(&a, &policies).holds("jp", "p", "jp", None, t(0)),
            Err(ApprovalProblem::NotYetValid { .. })
        ));
    }

    #[test]
    fn a_signed_flag_counts_only_verified_approvals() {
        let key = crate::signing::SecretKey::from_seed([9; 32]);
        let policies = policy(1, vec![crate::signing::Signer { name: "liaison".into(), key: key.public_key() }]);
        let mut signed = by("a", "ministry");
        signed.signature = Some(crate::signing::sign(&signed, "liaison", &key));
        let unsigned = by("b", "ministry");
        let a = [unsigned.clone()];
        let judged = Judged::new(&a, &policies);
        assert!(matches!(judged.holds("jp", "p", "jp", None, t(5)), Err(ApprovalProblem::Untrusted { .. })));
        assert!(matches!(judged.untrusted("b"), Some(SignatureProblem::Unsigned { .. })));
        let a = [unsigned, signed];
        let held = Judged::new(&a, &policies).holds("jp", "p", "jp", None, t(5)).unwrap();
        assert_eq!(held[0].name, "a");
    }
}
