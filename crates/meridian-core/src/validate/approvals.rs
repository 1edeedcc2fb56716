//! `Approval` documents: flag, grantor, timestamps, revocation, and a scope checked against
//! the plans read with them.
//!
//! Owns an approval's validity as written. Whether a flag holds at a moment is the core's
//! `approval` module's; an approval never makes a plan invalid.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, SecondsFormat, Utc};

use super::RegionDocument;
use crate::approval::{ApprovalRecord, ApprovalScopeSet, ApprovalSignature, RevokedInfo, signature_refusal};
use crate::diagnostics::{Report, did_you_mean};
use crate::manifest::{Approval, RolloutPlan};
use crate::plan::Plan;
use crate::signing::decode_signature;
use crate::source::Document;

/// A time as documents write it: RFC 3339, UTC, as many fractional digits as it has.
pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

pub(super) fn timestamp(
    doc: &Document,
    path: &str,
    label: &str,
    text: Option<&str>,
    report: &mut Report,
    errors: &mut usize,
) -> Option<DateTime<Utc>> {
    let text = text?;
    match DateTime::parse_from_rfc3339(text.trim()) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(_) => {
            *errors += 1;
            let hint = if text.len() == 10 && text.as_bytes().get(4) == Some(&b'-') {
                format!("add a time and zone, e.g. {text}T00:00:00Z")
            } else {
                "use RFC 3339 with a zone, e.g. 2026-12-31T00:00:00Z".into()
            };
            report.push(doc.error(
                path,
                "invalid-timestamp",
                format!("{label} {text:?} is not a valid time"),
                Some(hint),
            ));
            None
        }
    }
}

pub(super) fn check_approval(
    doc: &Document,
    raw: &Approval,
    plans: &[(&Document, &RolloutPlan)],
    region_documents: &HashMap<&str, Vec<RegionDocument<'_>>>,
    now: Option<DateTime<Utc>>,
    report: &mut Report,
) -> Option<ApprovalRecord> {
    let spec = &raw.spec;
    let name = &raw.metadata.name;
    let mut errors = 0;
    if spec.flag.trim().is_empty() {
        errors += 1;
        report.push(doc.error(
            "spec.flag",
            "empty-flag",
            "approval flag is empty".into(),
            Some("name the flag a region or wave lists under approvals, e.g. jp-regulator".into()),
        ));
    }
    if spec.granted_by.trim().is_empty() {
        errors += 1;
        report.push(doc.error(
            "spec.grantedBy",
            "empty-granted-by",
            "grantedBy is empty".into(),
            Some("name the person or body that granted it".into()),
        ));
    }
    let granted_at = timestamp(doc, "spec.grantedAt", "grantedAt", spec.granted_at.as_deref(), report, &mut errors);
    let expires = timestamp(doc, "spec.expires", "expires", spec.expires.as_deref(), report, &mut errors);
    let revoked_at = spec
        .revoked
        .as_ref()
        .and_then(|r| timestamp(doc, "spec.revoked.at", "revoked.at", Some(r.at.as_str()), report, &mut errors));
    if let Some(r) = &spec.revoked
        && r.by.trim().is_empty()
    {
        errors += 1;
        report.push(doc.error(
            "spec.revoked.by",
            "empty-revoked-by",
            "revoked.by is empty".into(),
            Some("name who withdrew the approval".into()),
        ));
    }
    let mut never_valid = false;
    if let (Some(g), Some(e)) = (granted_at, expires)
        && e <= g
    {
        never_valid = true;
        report.push(doc.warning(
            "spec.expires",
            "expires-before-grant",
            format!("approval {name:?} expires at {}, before it is granted at {}", rfc3339(e), rfc3339(g)),
            Some("it can never be valid; fix expires or grantedAt".into()),
        ));
    }
    if let (Some(e), Some(now)) = (expires, now)
        && e <= now
        && !never_valid
    {
        report.push(doc.warning(
            "spec.expires",
            "approval-expired",
            format!("approval {name:?} expired at {}", rfc3339(e)),
            Some("it grants nothing; record a new approval with a later expires, or delete this one".into()),
        ));
    }
    let scope = spec.scope.clone().unwrap_or_default();
    let known: BTreeMap<&str, &RolloutPlan> = plans.iter().map(|(_, p)| (p.metadata.name.as_str(), *p)).collect();
    if !known.is_empty() {
        for (j, plan) in scope.plans.iter().enumerate() {
            if !known.contains_key(plan.as_str()) {
                report.push(doc.warning(
                    &format!("spec.scope.plans[{j}]"),
                    "unknown-scope-plan",
                    format!("scope names unknown plan {plan:?}"),
                    did_you_mean(plan, known.keys().copied()).or_else(|| Some("this entry matches nothing".into())),
                ));
            }
        }
        let in_scope: Vec<&RolloutPlan> = known
            .iter()
            .filter(|(n, _)| scope.plans.is_empty() || scope.plans.iter().any(|p| p == *n))
            .map(|(_, p)| *p)
            .collect();
        // Regions of a plan in their own documents count as its regions.
        let merged = |p: &RolloutPlan| {
            region_documents.get(p.metadata.name.as_str()).map(Vec::as_slice).unwrap_or_default().to_vec()
        };
        let regions: HashSet<&str> = in_scope
            .iter()
            .flat_map(|p| {
                p.spec
                    .regions
                    .iter()
                    .map(|r| r.name.as_str())
                    .chain(merged(p).into_iter().map(|m| m.raw.metadata.name.as_str()))
            })
            .collect();
        let services: HashSet<&str> =
            in_scope.iter().flat_map(|p| p.spec.services.iter().map(|s| s.name.as_str())).collect();
        let flags: HashSet<&str> = in_scope
            .iter()
            .flat_map(|p| {
                p.spec
                    .regions
                    .iter()
                    .flat_map(|r| r.approvals.iter())
                    .chain(merged(p).into_iter().flat_map(|m| m.raw.spec.approvals.iter()))
                    .chain(p.spec.waves.iter().flat_map(|w| w.approvals.iter()))
                    .map(String::as_str)
            })
            .collect();
        if !in_scope.is_empty() && !spec.flag.trim().is_empty() && !flags.contains(spec.flag.as_str()) {
            report.push(
                doc.warning(
                    "spec.flag",
                    "unused-flag",
                    format!("no region or wave in scope requires flag {:?}", spec.flag),
                    did_you_mean(&spec.flag, flags.iter().copied())
                        .or_else(|| Some("check the flag against the approvals lists of the plan".into())),
                ),
            );
        }
        for (j, r) in scope.regions.iter().enumerate() {
            if !in_scope.is_empty() && !regions.contains(r.as_str()) {
                report.push(doc.warning(
                    &format!("spec.scope.regions[{j}]"),
                    "unknown-scope-region",
                    format!("scope names region {r:?} that no plan in scope has"),
                    did_you_mean(r, regions.iter().copied()).or_else(|| Some("this entry matches nothing".into())),
                ));
            }
        }
        for (j, s) in scope.services.iter().enumerate() {
            if !in_scope.is_empty() && !services.contains(s.as_str()) {
                report.push(doc.warning(
                    &format!("spec.scope.services[{j}]"),
                    "unknown-scope-service",
                    format!("scope names service {s:?} that no plan in scope has"),
                    did_you_mean(s, services.iter().copied()).or_else(|| Some("this entry matches nothing".into())),
                ));
            }
        }
    }
    if let Some(signature) = &spec.signature {
        if signature.key.trim().is_empty() {
            errors += 1;
            report.push(doc.error(
                "spec.signature.key",
                "empty-signing-key",
                "signature.key is empty".into(),
                Some("name the key as the plan's approvalPolicies[].signedBy lists it".into()),
            ));
        }
        if decode_signature(&signature.value).is_none() {
            errors += 1;
            report.push(doc.error(
                "spec.signature.value",
                "bad-signature",
                "signature.value is not base64 of a 64-byte Ed25519 signature".into(),
                Some("sign the approval with meridian approval sign --key FILE APPROVAL.yaml".into()),
            ));
        }
    }
    if errors > 0 {
        return None;
    }
    Some(ApprovalRecord {
        name: raw.metadata.name.clone(),
        flag: spec.flag.clone(),
        granted_by: spec.granted_by.clone(),
        reference: spec.reference.clone(),
        granted_at,
        expires,
        scope: ApprovalScopeSet {
            plans: scope.plans,
            regions: scope.regions,
            services: scope.services,
            confined_to_plans: None,
        },
        revoked: spec.revoked.as_ref().zip(revoked_at).map(|(r, at)| RevokedInfo {
            at,
            by: r.by.clone(),
            reason: r.reason.clone(),
        }),
        signature: spec.signature.as_ref().map(|s| ApprovalSignature { key: s.key.clone(), value: s.value.clone() }),
    })
}

/// An approval whose flag a plan read with it requires signed, and that is not signed by one
/// of that flag's keys, is an error: it is refused, the way the API refuses it.
pub(super) fn check_signature(doc: &Document, record: &ApprovalRecord, plans: &[Plan], report: &mut Report) -> bool {
    let Some((plan, problem)) = signature_refusal(plans, record) else { return true };
    report.push(doc.error(
        problem.path(),
        problem.code(),
        format!("approval {:?} is refused by plan {plan:?}: {problem}", record.name),
        Some(problem.hint()),
    ));
    false
}
