//! Prometheus text exposition (format 0.0.4) of unit snapshots. Pure: snapshots in, text out.
//!
//! Two views. The per-unit page (`/fleet/{region}/{service}/metrics`) is what the `http`
//! health provider reads: the unit's error ratio now and the requests of one window. The
//! fleet page (`/metrics`) is what a real Prometheus scrapes: request counters and a latency
//! histogram per unit that grow with the synthetic traffic, so `rate()` per region is realistic.

use std::fmt::Write;

use crate::model::UnitSnapshot;

/// The `Content-Type` of both pages.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds of the latency histogram and the share of requests at or under each. The
/// shape is fixed (median around 20 ms, a tail to 1 s): faults change rates, not latency.
const LATENCY_BUCKETS: [(&str, f64); 9] = [
    ("0.005", 0.05),
    ("0.01", 0.2),
    ("0.025", 0.55),
    ("0.05", 0.8),
    ("0.1", 0.93),
    ("0.25", 0.98),
    ("0.5", 0.995),
    ("1", 0.999),
    ("2.5", 1.0),
];
/// Mean latency matching the buckets above, for `_sum`.
const MEAN_LATENCY_SECONDS: f64 = 0.032;

/// The page for one unit.
pub fn unit_page(unit: &UnitSnapshot, window_secs: f64) -> String {
    let mut out = String::new();
    gauges(&mut out, std::slice::from_ref(unit), window_secs);
    out
}

/// The page for the whole fleet.
pub fn fleet_page(units: &[UnitSnapshot], window_secs: f64) -> String {
    let mut out = String::new();
    header(&mut out, "http_requests_total", "counter", "Synthetic requests served, by answer code.");
    for u in units {
        let labels = labels(u);
        let _ = writeln!(out, "http_requests_total{{{labels},code=\"200\"}} {}", u.ok_requests.floor());
        let _ = writeln!(out, "http_requests_total{{{labels},code=\"500\"}} {}", u.error_requests.floor());
    }
    header(&mut out, "http_request_duration_seconds", "histogram", "Synthetic request latency.");
    for u in units {
        let labels = labels(u);
        let total = (u.ok_requests + u.error_requests).floor();
        for (le, share) in LATENCY_BUCKETS {
            let _ = writeln!(
                out,
                "http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {}",
                (total * share).floor()
            );
        }
        let _ = writeln!(out, "http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {total}");
        let _ =
            writeln!(out, "http_request_duration_seconds_sum{{{labels}}} {}", fmt_f64(total * MEAN_LATENCY_SECONDS));
        let _ = writeln!(out, "http_request_duration_seconds_count{{{labels}}} {total}");
    }
    gauges(&mut out, units, window_secs);
    out
}

fn gauges(out: &mut String, units: &[UnitSnapshot], window_secs: f64) {
    header(
        out,
        "error_ratio",
        "gauge",
        "Share of requests answered with an error now; NaN while the unit serves no traffic.",
    );
    for u in units {
        let _ = writeln!(out, "error_ratio{{{}}} {}", labels(u), fmt_f64(u.observed_error_ratio()));
    }
    let help = format!("Requests served in the last {}s at the current traffic.", fmt_f64(window_secs));
    header(out, "fleet_requests", "gauge", &help);
    for u in units {
        let _ = writeln!(out, "fleet_requests{{{}}} {}", labels(u), u.window_requests.floor());
    }
    header(out, "fleet_traffic_percent", "gauge", "Traffic percent the unit serves (0 until first set).");
    for u in units {
        let _ = writeln!(out, "fleet_traffic_percent{{{}}} {}", labels(u), u.percent.unwrap_or(0));
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Region and service names are validated to need no escaping (see `FleetConfig::validate`).
fn labels(u: &UnitSnapshot) -> String {
    format!("region=\"{}\",service=\"{}\"", u.region, u.service)
}

fn fmt_f64(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".to_string() } else { "-Inf".to_string() }
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_unit(percent: Option<u32>, ok: f64, errors: f64) -> UnitSnapshot {
        UnitSnapshot {
            region: "jp".into(),
            service: "store".into(),
            percent,
            error_ratio: 0.25,
            ok_requests: ok,
            error_requests: errors,
            window_requests: 12.5,
        }
    }

    #[test]
    fn unit_page_shows_ratio_requests_and_traffic() {
        let page = unit_page(&mk_unit(Some(10), 0.0, 0.0), 10.0);
        assert!(page.contains("error_ratio{region=\"jp\",service=\"store\"} 0.25\n"), "{page}");
        assert!(page.contains("fleet_requests{region=\"jp\",service=\"store\"} 12\n"), "{page}");
        assert!(page.contains("fleet_traffic_percent{region=\"jp\",service=\"store\"} 10\n"), "{page}");
        assert!(page.contains("# HELP fleet_requests Requests served in the last 10s"), "{page}");
        let idle = unit_page(&mk_unit(Some(0), 0.0, 0.0), 10.0);
        assert!(idle.contains("error_ratio{region=\"jp\",service=\"store\"} NaN\n"), "{idle}");
    }

    #[test]
    fn fleet_page_has_counters_and_a_consistent_histogram() {
        let page = fleet_page(&[mk_unit(Some(50), 1000.7, 10.2)], 10.0);
        assert!(page.contains("http_requests_total{region=\"jp\",service=\"store\",code=\"200\"} 1000\n"), "{page}");
        assert!(page.contains("http_requests_total{region=\"jp\",service=\"store\",code=\"500\"} 10\n"), "{page}");
        assert!(
            page.contains("http_request_duration_seconds_bucket{region=\"jp\",service=\"store\",le=\"+Inf\"} 1010\n")
        );
        assert!(page.contains("http_request_duration_seconds_count{region=\"jp\",service=\"store\"} 1010\n"));
        assert!(
            page.contains("http_request_duration_seconds_bucket{region=\"jp\",service=\"store\",le=\"0.005\"} 50\n")
        );
        assert_eq!(page.matches("# TYPE").count(), 5);
    }
}
