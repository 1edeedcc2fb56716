//! End-to-end tests of the `meridian` binary: real processes, real files, exit codes and output.

mod plan;
mod support;
mod validate;
