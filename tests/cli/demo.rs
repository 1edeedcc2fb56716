//! `meridian demo --fast`: the README's first command, end to end.

use crate::support::run_demo_fast;

#[test]
fn the_demo_tells_its_whole_story() {
    let out = run_demo_fast(&[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let position = |needle: &str| text.find(needle).unwrap_or_else(|| panic!("{needle:?} missing from:\n{text}"));
    position("dashboard on http://127.0.0.1:");
    // br-south fails and is rolled back; the operator promotes the halted wave.
    position("br-south/store: progressing -> failed");
    let halted = position("wave main: running -> halted: failed regions: br-south");
    assert!(position("promoting wave main") > halted);
    // jp is held until the ministry's grant, and its first step names the approval.
    let granted = position("the ministry grants jp-regulator");
    let jp_started = position("jp/signin: blocked -> progressing (0% -> 10%): started (approvals: jp-regulator-demo)");
    assert!(jp_started > granted, "jp got traffic before its approval");
    position("rollout complete");
    let summary = &text[position("rollout complete")..];
    for (region, state) in [
        ("us-east", "enabled 100%"),
        ("eu-west", "enabled 100%"),
        ("eu-central", "enabled 100%"),
        ("br-south", "rolled-back 0%"),
        ("jp", "enabled 100%"),
        ("kr", "enabled 100%"),
    ] {
        let line = summary.lines().find(|l| l.trim_start().starts_with(&format!("{region} "))).unwrap();
        assert_eq!(line.matches(state).count(), 3, "{line}");
    }
}
