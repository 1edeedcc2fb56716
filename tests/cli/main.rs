//! End-to-end tests of the `meridian` binary: real processes, real files, exit codes and output.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and a test may print what it saw"
)]

mod approvals;
mod audit;
mod bench;
mod browser;
mod completion;
mod crash;
mod dashboard;
mod dashboard_act;
mod demo;
mod dependent;
mod image;
mod kube;
mod log;
mod monitoring;
mod notify;
mod outcomes;
mod output;
mod plan;
mod prometheus;
mod promote;
mod regional;
mod report;
mod run;
mod signed;
mod support;
mod validate;
mod watch;
