//! Golden tests of validation: every `tests/fixtures/validate/NAME.yaml` is loaded on its
//! own with a fixed clock, and its diagnostics, one `Display` line each, must equal
//! `NAME.expected` exactly. A directory `NAME/` is one fixture of several files (a plan
//! split across files), read together in path order as `meridian validate NAME/` would.
//!
//! After an intended change, regenerate with
//! `UPDATE_GOLDEN=1 cargo test -p meridian-core --test validate_golden`
//! and read the diff: every line must be correct and helpful.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and a test may print what it saw"
)]

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use meridian_core::validate::load;

/// Fixture paths as users would pass them, relative to the repository root.
const FIXTURES: &str = "tests/fixtures/validate";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap()
}

fn is_yaml(p: &Path) -> bool {
    p.extension().is_some_and(|x| x == "yaml" || x == "yml")
}

fn fixtures() -> Vec<PathBuf> {
    let dir = repo_root().join(FIXTURES);
    let mut out: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| is_yaml(p) || p.is_dir())
        .collect();
    out.sort();
    out
}

/// Every YAML file under `dir`, recursively.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, out);
        } else if is_yaml(&path) {
            out.push(path);
        }
    }
}

fn expected_path(fixture: &Path) -> PathBuf {
    fixture.with_extension("expected")
}

fn render(path: &Path) -> String {
    let root = repo_root();
    let mut paths = Vec::new();
    if path.is_dir() {
        walk(path, &mut paths);
    } else {
        paths.push(path.to_path_buf());
    }
    let mut files: Vec<(String, String)> = paths
        .iter()
        .map(|p| {
            let name = p.strip_prefix(&root).unwrap_or(p).to_string_lossy().replace('\\', "/");
            (name, fs::read_to_string(p).unwrap())
        })
        .collect();
    files.sort();
    let bundle = load(&files, Some(now()));
    let mut out = String::new();
    for d in &bundle.report.diagnostics {
        out.push_str(&d.to_string());
        out.push('\n');
    }
    out
}

#[test]
fn validation_output_matches_the_expected_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let fixtures = fixtures();
    assert!(fixtures.len() >= 10, "expected the validation fixtures under {FIXTURES}");
    let mut failures = Vec::new();
    for fixture in &fixtures {
        let expected_path = expected_path(fixture);
        let actual = render(fixture);
        if update {
            fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if actual != expected {
            failures.push(format!(
                "{}:\n--- expected\n{expected}+++ actual\n{actual}",
                fixture.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    // An .expected file without its fixture is a leftover.
    for entry in fs::read_dir(repo_root().join(FIXTURES)).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "expected")
            && !fixtures.contains(&path.with_extension("yaml"))
            && !fixtures.contains(&path.with_extension(""))
        {
            failures.push(format!("{} has no fixture", path.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n\nrerun with UPDATE_GOLDEN=1 to accept the new output, then review the diff",
        failures.join("\n")
    );
}

#[test]
fn every_fixture_except_the_valid_ones_has_errors() {
    for fixture in fixtures() {
        let name = fixture.file_name().unwrap().to_string_lossy().to_string();
        let out = render(&fixture);
        if name.starts_with("valid") {
            assert!(!out.contains(": error: "), "{name} should yield no errors:\n{out}");
        } else {
            assert!(out.contains(": error: "), "{name} should yield errors:\n{out}");
        }
    }
}

#[test]
fn diagnostics_are_plain_words_not_rust_debug_output() {
    for fixture in fixtures() {
        for line in render(&fixture).lines() {
            for noise in ["Some(", "None", "struct ", "enum ", "Value::", "u32", "i64", "f64", "`", "\\n"] {
                assert!(!line.contains(noise), "{line:?} contains {noise:?}");
            }
            let message = line.split(": ").nth(2).unwrap_or_default();
            assert!(
                message.starts_with(|c: char| !c.is_ascii_uppercase()),
                "message should start in lowercase: {line}"
            );
        }
    }
}
