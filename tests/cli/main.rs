//! End-to-end tests of the `meridian` binary: real processes, real files, exit codes and output.

mod approvals;
mod crash;
mod dashboard;
mod demo;
mod outcomes;
mod plan;
mod prometheus;
mod regional;
mod run;
mod support;
mod validate;
