//! Validation must never panic, and every diagnostic must say where and what.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let bundle = meridian_core::validate::load(&[("fuzz.yaml".to_string(), text)], None);
    for d in &bundle.report.diagnostics {
        assert!(d.line >= 1 && d.column >= 1, "{d}");
        assert!(!d.message.trim().is_empty(), "{d}");
    }
});
