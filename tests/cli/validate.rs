//! `meridian validate` end to end, including golden tests of its exact output: see
//! [`output_matches_the_committed_golden_files`]. After an intended change of that output,
//! regenerate the expected files with
//! `UPDATE_GOLDEN=1 cargo test -p meridian-cli --test cli validate::` and review the diff.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::support::{INVALID_PLAN, meridian, repo_root, stderr, stdout};

const NOW: &str = "2026-06-01T00:00:00Z";

/// Fixtures of the golden tests, under tests/fixtures/validate/: each is validated as
/// `meridian validate --now NOW [-o json] FIXTURE` from that directory, so that the paths in
/// the output are relative and the same on every machine, and its whole stdout must equal
/// `FIXTURE.stdout` (text) and `FIXTURE.json` (`-o json`) next to it. The fixtures are
/// shared with meridian-core's validate_golden test (their `.expected` files).
const GOLDEN: [&str; 3] = ["approvals.yaml", "regional_conflicts", "urls.yaml"];

/// `meridian validate`'s whole stdout on the [`GOLDEN`] fixtures, summary line included,
/// against the committed expected files. With `UPDATE_GOLDEN=1` in the environment the
/// expected files are (re)written from the actual output instead of compared.
#[test]
fn output_matches_the_committed_golden_files() {
    let bless = std::env::var("UPDATE_GOLDEN").is_ok_and(|v| !v.is_empty() && v != "0");
    let dir = repo_root().join("tests/fixtures/validate");
    let mut failures = Vec::new();
    for fixture in GOLDEN {
        for (format, extension) in [("text", "stdout"), ("json", "json")] {
            let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
                .args(["validate", "--now", NOW, "-o", format, fixture])
                .current_dir(&dir)
                .output()
                .expect("run meridian");
            // Every golden fixture is broken on purpose: exit 1, everything on stdout.
            assert_eq!(out.status.code(), Some(1), "{fixture} -o {format}: {}", stderr(&out));
            assert_eq!(stderr(&out), "", "{fixture} -o {format}");
            let actual = stdout(&out);
            let expected_path = dir.join(Path::new(fixture).with_extension(extension));
            if bless {
                fs::write(&expected_path, &actual).unwrap();
                continue;
            }
            let expected = fs::read_to_string(&expected_path)
                .unwrap_or_else(|e| panic!("{}: {e}; create it with UPDATE_GOLDEN=1", expected_path.display()));
            if actual != expected {
                failures.push(first_difference(&expected_path, &expected, &actual));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n\nif the new output is intended, rerun with UPDATE_GOLDEN=1 and review the diff",
        failures.join("\n")
    );
}

/// The first line where `actual` departs from the expected file, then the whole output.
fn first_difference(path: &Path, expected: &str, actual: &str) -> String {
    let (mut e, mut a) = (expected.lines(), actual.lines());
    let mut line = 1;
    loop {
        match (e.next(), a.next()) {
            (Some(x), Some(y)) if x == y => line += 1,
            (x, y) => {
                return format!(
                    "{}:{line}: output differs\n  expected: {}\n  actual:   {}\n--- whole actual output:\n{actual}",
                    path.display(),
                    x.unwrap_or("<end of file>"),
                    y.unwrap_or("<end of output>"),
                );
            }
        }
    }
}

#[test]
fn a_file_that_is_not_utf8_is_a_located_error_not_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    // Latin-1 "café" on line 3: byte 0xE9 after 72 bytes, in column 21.
    let latin1 = dir.path().join("latin1.yaml");
    fs::write(&latin1, b"apiVersion: meridian.dev/v1alpha1\nkind: RolloutPlan\nmetadata: {name: caf\xE9}\n").unwrap();
    let utf16 = dir.path().join("utf16.yaml");
    let text: Vec<u8> = "kind: Approval\n".encode_utf16().flat_map(u16::to_le_bytes).collect();
    fs::write(&utf16, [&[0xFF, 0xFE][..], &text].concat()).unwrap();
    fs::write(dir.path().join("good.yaml"), GOOD_PLAN).unwrap();
    let path = dir.path().to_str().unwrap();

    let out = meridian(&["validate", "--now", NOW, path]);
    assert_eq!(out.status.code(), Some(1), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(stderr(&out), "");
    let text = stdout(&out);
    let latin1 = latin1.display();
    let utf16 = utf16.display();
    for expected in [
        format!(
            "{latin1}:1:1: error: the file is not valid UTF-8: the first invalid byte, 0xE9, is at line 3, column 21 \
             (byte offset 72), so nothing in it was checked; save it as UTF-8 (from Latin-1, for example: iconv -f \
             LATIN1 -t UTF-8)\n"
        ),
        format!(
            "{utf16}:1:1: error: the file is not valid UTF-8: the first invalid byte, 0xFF, is at line 1, column 1 \
             (byte offset 0), so nothing in it was checked; it starts with a UTF-16 byte-order mark; save it as UTF-8\n"
        ),
    ] {
        assert!(text.contains(&expected), "missing {expected:?} in:\n{text}");
    }
    // The other file is still checked, and every file is counted.
    assert!(text.ends_with("3 files, 1 valid plan, 0 approvals: 2 errors, 1 warning\n"), "{text}");

    let out = meridian(&["validate", "--now", NOW, "-o", "json", &latin1.to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["files"].as_u64(), v["errors"].as_u64()), (Some(1), Some(1)), "{v}");
    let d = &v["diagnostics"][0];
    assert_eq!((d["code"].as_str(), d["line"].as_u64(), d["column"].as_u64()), (Some("not-utf8"), Some(1), Some(1)));
}

/// A valid plan (one warning: it has no health checks).
const GOOD_PLAN: &str = "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {name: good}
spec:
  services: [{name: signin}]
  regions: [{name: jp}]
  waves: [{name: all, regions: [jp]}]
";

#[test]
fn the_example_configs_are_valid() {
    let out = meridian(&["validate", "--now", NOW, "config/"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    // The demo plan reads health without Prometheus, so its check has no traffic guard: the one
    // warning, explained in config/demo.yaml.
    let text = stdout(&out);
    assert!(text.contains("config/demo.yaml:") && text.contains("has no traffic guard"), "{text}");
    let files = walk(&crate::support::repo_root().join("config")).len();
    let summary = text.lines().last().unwrap_or_default();
    assert!(summary.starts_with(&format!("{files} files, ")), "{summary}");
    assert!(summary.ends_with(" 2 approvals: 0 errors, 1 warning"), "{summary}");
}

#[test]
fn errors_are_located_with_hints_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    fs::write(&file, INVALID_PLAN).unwrap();
    let path = file.to_str().unwrap();
    let out = meridian(&["validate", "--now", NOW, path]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    for expected in [
        format!("{path}:6:34: error: unknown time zone \"Asia/Tokio\" for region \"jp\"; did you mean \"Asia/Tokyo\"?"),
        format!("{path}:9:17: error: unknown region \"jpn\" in wave \"asia\"; did you mean \"jp\"?"),
        format!("{path}:11:18: error: steps end at 50, not 100; append 100: a rollout is done only at full traffic"),
    ] {
        assert!(text.contains(&expected), "missing {expected:?} in:\n{text}");
    }
    // Every line is located in the file and the run ends with its counts.
    for line in text.lines().filter(|l| l.contains(": error: ") || l.contains(": warning: ")) {
        assert!(line.starts_with(&format!("{path}:")), "{line}");
    }
    assert!(
        text.lines().last().is_some_and(|l| l.starts_with("1 file, 0 valid plans, 0 approvals: 3 errors")),
        "{text}"
    );
}

#[test]
fn strict_turns_risk_warnings_into_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("risky.yaml");
    fs::write(
        &file,
        "apiVersion: meridian.dev/v1alpha1
kind: RolloutPlan
metadata: {name: risky}
spec:
  services: [{name: signin}]
  regions: [{name: a}, {name: b}]
  waves: [{name: all, regions: [a, b]}]
",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let relaxed = meridian(&["validate", path]);
    assert_eq!(relaxed.status.code(), Some(0), "{}", stdout(&relaxed));
    assert!(stdout(&relaxed).contains("warning: first wave \"all\" has 2 regions"));
    let strict = meridian(&["validate", "--strict", path]);
    assert_eq!(strict.status.code(), Some(1));
    assert!(stdout(&strict).contains("error: first wave \"all\" has 2 regions"));
}

#[test]
fn json_output_counts_and_locates() {
    let out = meridian(&["validate", "-o", "json", "--now", NOW, "config/"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["errors"], 0);
    assert_eq!(v["warnings"], 1);
    assert_eq!(v["files"], walk(&crate::support::repo_root().join("config")).len());
    let plans: Vec<&str> = v["plans"].as_array().unwrap().iter().filter_map(|p| p.as_str()).collect();
    for plan in ["network-restoration", "demo"] {
        assert!(plans.contains(&plan), "{plans:?}");
    }
    let d = &v["diagnostics"][0];
    assert_eq!((d["file"].as_str(), d["severity"].as_str()), (Some("config/demo.yaml"), Some("warning")));
    assert!(d["line"].as_u64().unwrap() > 1 && d["column"].as_u64().unwrap() >= 1, "{d}");
}

#[test]
fn usage_errors_exit_3_like_every_command() {
    let out = meridian(&["validate", "no/such/dir"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("no/such/dir: no such file or directory"));
    let out = meridian(&["validate"]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn schema_prints_the_committed_schema() {
    let out = meridian(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let committed = fs::read_to_string(crate::support::repo_root().join("deploy/schema/meridian.schema.json")).unwrap();
    assert_eq!(stdout(&out), committed);
}

/// The schema as an editor's validator uses it (Python's `jsonschema`, Draft 7, as
/// `scripts/install-test-deps` installs it): every example document passes, and a mistake is
/// reported where it is (the schema dispatches on `kind`), not as "matches none" at the root.
#[test]
fn the_schema_accepts_every_example_and_locates_a_mistake_at_its_field() {
    let mut documents = Vec::new();
    for entry in walk(&crate::support::repo_root().join("config")) {
        for doc in serde_yaml::Deserializer::from_str(&fs::read_to_string(&entry).unwrap()) {
            let value: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
            if !value.is_null() {
                documents.push(value);
            }
        }
    }
    assert!(documents.len() >= 8, "{documents:?}");
    let typo = serde_yaml::from_str::<serde_json::Value>(
        "apiVersion: meridian.dev/v1alpha1\nkind: RolloutPlan\nmetadata: {name: x}\nspec:\n  services: [{name: s}]\n  \
         regions: [{name: a}]\n  waves: [{name: w, regions: [a], bakee: 5s}]\n  steps: [100]\n",
    )
    .unwrap();
    let script = [
        "import json, sys, jsonschema",
        "v = jsonschema.Draft7Validator(json.load(open(sys.argv[1])))",
        "for doc in json.load(sys.stdin):",
        // The errors as the validator raises them, as an editor shows them (no best_match, which
        // would dig into a oneOf on its own).
        "    errors = [('/'.join(str(p) for p in e.absolute_path) or '(root)') + ': ' + e.message",
        "              for e in v.iter_errors(doc)]",
        "    print(' | '.join(errors) or 'ok')",
    ]
    .join("\n");
    let schema = crate::support::repo_root().join("deploy/schema/meridian.schema.json");
    let mut all = documents.clone();
    all.push(typo);
    let mut child = std::process::Command::new("python3")
        .args(["-c", &script])
        .arg(&schema)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(serde_json::to_string(&all).unwrap().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python3 with jsonschema (scripts/install-test-deps installs Debian's python3-jsonschema): {}",
        stderr(&out)
    );
    let verdicts: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert_eq!(verdicts.len(), all.len(), "{verdicts:?}");
    for (doc, verdict) in documents.iter().zip(&verdicts) {
        assert_eq!(verdict, "ok", "{}: {verdict}", doc["metadata"]["name"]);
    }
    let last = verdicts.last().unwrap();
    assert!(
        last.starts_with("spec/waves/0: ") && last.contains("'bakee' was unexpected") && !last.contains(" | "),
        "{last}"
    );
}

#[test]
fn every_example_config_points_editors_at_the_schema() {
    for entry in walk(&crate::support::repo_root().join("config")) {
        let text = fs::read_to_string(&entry).unwrap();
        let first = text.lines().next().unwrap_or_default();
        let prefix = "# yaml-language-server: $schema=";
        assert!(first.starts_with(prefix), "{} does not start with the schema modeline", entry.display());
        let target = entry.parent().unwrap().join(&first[prefix.len()..]);
        assert!(target.exists(), "{}: modeline points at missing {}", entry.display(), target.display());
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    out
}

/// `meridian validate -o json ... | head -1` and the like: a reader that went away ends the
/// command quietly (SIGPIPE, as Unix tools do), never with a panic and exit 101.
#[test]
fn printing_commands_end_quietly_when_their_reader_goes_away() {
    use std::os::unix::process::ExitStatusExt;
    for args in [&["validate", "-o", "json", "config/"][..], &["plan", "config/"], &["schema"], &["crds"]] {
        // The reader is gone before the command starts: its first write meets a closed pipe.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
            .args(args)
            .current_dir(crate::support::repo_root())
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.signal(), Some(13), "{args:?} ended by SIGPIPE: {:?} {err}", out.status);
    }
}
