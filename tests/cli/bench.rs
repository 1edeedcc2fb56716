//! `meridian bench fleet`: the real controller on a generated fleet, measured from outside.
//! The figures are checked for presence and sanity, never against timing thresholds.

use crate::support::{meridian, stderr, stdout};

#[test]
fn a_tiny_fleet_gives_every_figure_with_sane_values() {
    let out = meridian(&[
        "bench",
        "fleet",
        "--plans",
        "3",
        "--regions",
        "3",
        "--services",
        "2",
        "--idle-window",
        "1s",
        "--quiet-timeout",
        "60s",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let f: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON on stdout");
    let num = |key: &str| f[key].as_f64().unwrap_or_else(|| panic!("{key} is not a number in {f:#}"));
    assert_eq!((num("plans"), num("regions"), num("services")), (3.0, 3.0, 2.0));
    assert_eq!((num("units"), num("canaryUnits")), (18.0, 6.0));
    assert!(f["controller"].as_str().is_some_and(|c| c.ends_with("meridian")), "{f:#}");
    assert!(num("cpus") >= 1.0);
    assert!(num("readyMs") > 0.0 && num("actuatedMs") >= num("readyMs"), "{f:#}");
    // A tiny fleet with nothing due turns quiet well within the minute allowed.
    assert!(num("quietAfterMs") >= 0.0, "{f:#}");
    for key in ["rssAfterStartMib", "peakRssAfterStartMib", "rssAfterScrapesMib", "peakRssMib"] {
        assert!(num(key) > 1.0 && num(key) < 4096.0, "{key}: {f:#}");
    }
    assert!(num("peakRssMib") >= num("rssAfterScrapesMib"), "{f:#}");
    assert!(num("idleWindowS") >= 1.0, "{f:#}");
    assert!((0.0..=100.0 * num("cpus")).contains(&num("idleCpuPercent")), "{f:#}");
    assert!(num("scrapeMs") > 0.0, "{f:#}");
    // The default set: aggregates, among them each plan's units by wave and phase.
    assert!(num("scrapeSeries") >= 6.0 && num("scrapeBytes") > num("scrapeSeries"), "{f:#}");
    assert!(num("restartReadyMs") > 0.0, "{f:#}");
}

#[test]
fn a_fleet_of_no_plans_is_a_usage_error() {
    let out = meridian(&["bench", "fleet", "--plans", "0"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("--plans"), "{}", stderr(&out));
}
