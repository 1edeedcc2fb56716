//! Meridian's standalone controller: the thin, effectful shell around the pure engine.

pub mod config;
pub mod control;
pub mod memory;
pub mod metrics;
pub mod nohealth;
pub mod runtime;
pub mod snapshot;
pub mod sqlite;
pub mod store;
