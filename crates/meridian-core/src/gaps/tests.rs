use super::*;
use crate::approval::{ApprovalRecord, ApprovalScopeSet};
use crate::simulate::{SimOptions, simulate};

fn mk_plan(text: &str) -> Plan {
    let bundle = crate::validate::load(&[("p.yaml".into(), text.into())], None);
    assert!(!bundle.report.has_errors(), "{:?}", bundle.report);
    bundle.plans.into_iter().next().unwrap()
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

/// Saturday 2026-06-06 12:00 UTC.
fn saturday_noon() -> DateTime<Utc> {
    at("2026-06-06T12:00:00Z")
}

fn grant(granted_at: DateTime<Utc>) -> ApprovalRecord {
    ApprovalRecord {
        name: "g".into(),
        flag: "jp-go".into(),
        granted_by: "t".into(),
        reference: None,
        granted_at: Some(granted_at),
        expires: None,
        scope: ApprovalScopeSet::default(),
        revoked: None,
        signature: None,
    }
}

const PLAN: &str = "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {name: p}
spec:
  services: [{name: signin}, {name: store, after: [signin]}]
  regions:
    - {name: us}
    - name: jp
      timezone: Asia/Tokyo
      approvals: [jp-go]
      windows: [{days: [Mon, Tue, Wed, Thu, Fri], from: \"09:00\", to: \"18:00\"}]
  waves:
    - {name: canary, regions: [us]}
    - {name: asia, regions: [jp]}
  steps: [50, 100]
  stepBake: 10m
";

#[test]
fn a_weekend_window_is_explained_in_the_regions_local_time_once_per_region() {
    let plan = mk_plan(PLAN);
    let t = simulate(&plan, &[grant(saturday_noon())], &SimOptions::new(saturday_noon()));
    let gaps = region_gaps(&plan, &t.audit, t.ended_at);
    let text: Vec<String> = gaps.iter().map(|g| format!("{}: {}", g.region, g.describe())).collect();
    // jp's window opens on Monday at 09:00 Tokyo time (Monday 00:00 UTC); the canary is done
    // on Saturday at 12:40 UTC. Both services waited: told once. A service waiting for the
    // one it comes after is no gap.
    assert_eq!(text, ["jp: waited 1d 11h for a window: opens Mon 09:00 JST"]);
    assert_eq!(gaps[0].to, Some(at("2026-06-08T00:00:00Z")));
}

#[test]
fn an_approval_is_a_gap_until_it_is_granted_or_to_the_end_when_it_never_is() {
    let no_windows =
        PLAN.replace("      windows: [{days: [Mon, Tue, Wed, Thu, Fri], from: \"09:00\", to: \"18:00\"}]\n", "");
    let plan = mk_plan(&no_windows);
    // Granted on Sunday at 03:00 UTC, noon in Tokyo.
    let t = simulate(&plan, &[grant(at("2026-06-07T03:00:00Z"))], &SimOptions::new(saturday_noon()));
    let text: Vec<String> = region_gaps(&plan, &t.audit, t.ended_at).iter().map(Gap::describe).collect();
    assert_eq!(text, ["waited 14h 20m for approval jp-go: granted Sun 12:00 JST"]);
    let t = simulate(&plan, &[], &SimOptions::new(saturday_noon()));
    let gaps = region_gaps(&plan, &t.audit, t.ended_at);
    assert_eq!(gaps.len(), 1, "{gaps:#?}");
    assert_eq!((gaps[0].region.as_str(), gaps[0].to), ("jp", None));
    assert_eq!(gaps[0].describe(), "waits from 06-06 12:40 UTC for approval jp-go: never granted");
}

#[test]
fn spans_read_in_the_largest_units() {
    assert_eq!(span(TimeDelta::minutes(25)), "25m");
    assert_eq!(span(TimeDelta::minutes(14 * 60 + 20)), "14h 20m");
    assert_eq!(span(TimeDelta::hours(74)), "3d 2h");
}
