//! Approvals as the engine sees them, and the one rule that says whether a flag holds for a
//! (plan, region, service) at a given moment.
//!
//! Owns validity only. Recording, revoking and persisting approvals belongs to the shells.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
}

impl ApprovalScopeSet {
    fn admits(&self, plan: &str, region: &str, service: Option<&str>) -> bool {
        fn allows(list: &[String], value: &str) -> bool {
            list.is_empty() || list.iter().any(|v| v == value)
        }
        allows(&self.plans, plan) && allows(&self.regions, region) && service.is_none_or(|s| allows(&self.services, s))
    }
}

impl ApprovalRecord {
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
        ApprovalProblem::NotYetValid { .. } => 2,
        ApprovalProblem::Expired { .. } => 3,
        ApprovalProblem::Revoked { .. } => 4,
    }
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    let without_revocation = |r: &ApprovalRecord| ApprovalRecord { revoked: None, ..r.clone() };
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
        }
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
}
