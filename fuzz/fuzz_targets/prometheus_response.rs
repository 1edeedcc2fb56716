//! The Prometheus HTTP API answer reader (`meridian_health::prometheus::parse_response`, the
//! body of `/api/v1/query`) and the split of its vector by region.
//!
//! Never panics, for any body. The only way to a value is one series of the region with a
//! value that parses as a number; every series is counted once; a failed reading carries its
//! error and a missing one none.

#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_health::Reading;
use meridian_health::prometheus::{RegionSplit, parse_response};

fuzz_target!(|data: &[u8]| {
    let series = match parse_response("http://prometheus.invalid", None, data) {
        Ok(series) => series,
        Err(e) => {
            assert!(!e.to_string().is_empty() && !e.metric_label().is_empty());
            return;
        }
    };
    let total = series.len();
    let split = match RegionSplit::new(series, "region") {
        Ok(split) => split,
        Err(e) => {
            assert_eq!(e.metric_label(), "missing_region_label", "{e}");
            return;
        }
    };
    assert_eq!(split.total, total);
    assert_eq!(split.by_region.values().map(Vec::len).sum::<usize>(), total);
    let regions: Vec<String> = split.by_region.keys().cloned().chain(["nowhere".to_string()]).collect();
    for region in &regions {
        let series = split.by_region.get(region).map(Vec::as_slice).unwrap_or_default();
        match split.reading(region) {
            (Reading::Value { value, at }, None) => {
                let [one] = series else { panic!("a value from {} series of {region:?}", series.len()) };
                let parsed: f64 = one.raw.trim().parse().unwrap_or_else(|e| panic!("{:?}: {e}", one.raw));
                assert!(parsed == value || (parsed.is_nan() && value.is_nan()));
                assert_eq!(at, one.at);
            }
            (Reading::Missing(why), None) => assert!(series.is_empty() && !why.is_empty()),
            (Reading::Failed(why), Some(e)) => assert!(!series.is_empty() && !why.is_empty(), "{e}"),
            (reading, error) => panic!("{region:?}: {reading:?} with {error:?}"),
        }
    }
});
