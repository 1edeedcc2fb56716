//! The state dir lock across processes: a second `meridian run` on the same dir is refused.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and a test may print what it saw"
)]

mod common;

use std::time::Instant;

use common::{DEADLINE, Writer};
use meridian_store::{Store, StoreError};

#[test]
fn a_dir_held_by_another_process_is_refused_naming_its_pid() {
    let tmp = tempfile::tempdir().unwrap();
    let deadline = Instant::now() + DEADLINE;
    let holder = Writer::spawn("hold", tmp.path());
    let line = holder.wait_for("opened", deadline);
    let pid: u32 = line["opened ".len()..].parse().unwrap();
    assert_eq!(pid, holder.child.id());

    let err = Store::open(tmp.path()).unwrap_err();
    match &err {
        StoreError::Locked { dir, pid } => {
            assert_eq!(dir, tmp.path());
            assert_eq!(*pid, Some(holder.child.id()));
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    assert!(err.to_string().contains(&tmp.path().display().to_string()), "{err}");

    let (status, _) = holder.wait_exit(deadline);
    assert!(status.success(), "holder: {status}");
    Store::open(tmp.path()).expect("the lock is free once the holder exits");
}

#[test]
fn a_second_process_is_refused_while_this_one_holds_the_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let deadline = Instant::now() + DEADLINE;
    let store = Store::open(tmp.path()).unwrap();
    let (status, stderr) = Writer::spawn("hold", tmp.path()).wait_exit(deadline);
    assert_eq!(status.code(), Some(3), "stderr: {stderr}");
    assert!(stderr.contains(&tmp.path().display().to_string()), "{stderr}");
    assert!(stderr.contains(&format!("pid {}", std::process::id())), "{stderr}");
    assert!(stderr.contains("in use by another meridian process"), "{stderr}");
    drop(store);
}

#[test]
fn a_killed_holder_leaves_no_stale_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let deadline = Instant::now() + DEADLINE;
    let holder = Writer::spawn("hold", tmp.path());
    holder.wait_for("opened", deadline);
    holder.kill();
    Store::open(tmp.path()).expect("the kernel releases a dead process's flock");
}
