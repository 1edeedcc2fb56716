//! An approval file, read the way `meridian validate` and the file watcher read it (the
//! core's `validate::load`), next to a plan whose `jp-regulator` flag must be signed by the
//! liaison's key and whose `ops-go` flag needs two grantors.
//!
//! Never panics; every diagnostic says where and what; and every approval the validator
//! accepts is one the engine trusts for the plans in its scope (the file path and the
//! engine's `Judged` agree on signatures), survives the JSON round trip the stores make
//! unchanged, and has a canonical content that is JSON.

#![no_main]

use chrono::{DateTime, TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use meridian_core::approval::{ApprovalRecord, Judged, flag_holds};
use meridian_core::signing::canonical_content;

/// The plan of `tests/fixtures/validate/signed_approvals.yaml` (its seeds are signed for
/// it), with a two-person flag added.
const PLAN: &str = r#"apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata:
  name: signed
spec:
  services: [{name: signin}, {name: store}]
  regions:
    - name: jp
      approvals: [jp-regulator]
    - name: kr
  waves:
    - {name: all, regions: [jp, kr], approvals: [ops-go]}
  approvalPolicies:
    - flag: jp-regulator
      signedBy:
        - {name: liaison, publicKey: "ed25519:ND2/rjd3fUtzGPWALRLaazm+m4mD3hyzOrPEkzRpqEM="}
    - flag: ops-go
      requires: 2
"#;

fn moments() -> [DateTime<Utc>; 3] {
    [
        DateTime::<Utc>::MIN_UTC,
        Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).single().unwrap_or_default(),
        DateTime::<Utc>::MAX_UTC,
    ]
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let files = [("plan.yaml".to_string(), PLAN.to_string()), ("approval.yaml".to_string(), text)];
    let bundle = meridian_core::validate::load(&files, Some(moments()[1]));
    for d in &bundle.report.diagnostics {
        assert!(d.line >= 1 && d.column >= 1, "{d}");
        assert!(!d.message.trim().is_empty(), "{d}");
    }
    for a in &bundle.approvals {
        assert!(!a.name.trim().is_empty() && !a.flag.trim().is_empty() && !a.granted_by.trim().is_empty(), "{a:?}");
        let json = serde_json::to_string(a).unwrap_or_default();
        let back: ApprovalRecord = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
        assert_eq!(&back, a, "{json}");
        let canonical = canonical_content(a);
        assert!(serde_json::from_str::<serde_json::Value>(&canonical).is_ok(), "{canonical}");
        for plan in bundle.plans.iter().filter(|p| a.scope.plans.is_empty() || a.scope.plans.contains(&p.name)) {
            let judged = Judged::new(std::slice::from_ref(a), &plan.approval_policies);
            assert_eq!(judged.untrusted(&a.name), None, "accepted {:?}, untrusted by plan {}", a.name, plan.name);
        }
    }
    for plan in &bundle.plans {
        let judged = Judged::new(&bundle.approvals, &plan.approval_policies);
        for flag in plan.flags() {
            for now in moments() {
                for region in ["jp", "kr", ""] {
                    let held = judged.holds(&flag, &plan.name, region, Some("signin"), now);
                    let _ = flag_holds(&bundle.approvals, &flag, &plan.name, region, None, now);
                    if let Ok(by) = held {
                        assert!(
                            by.iter()
                                .all(|a| a.flag == flag && a.check(&plan.name, region, Some("signin"), now).is_ok())
                        );
                    }
                }
            }
        }
    }
});
