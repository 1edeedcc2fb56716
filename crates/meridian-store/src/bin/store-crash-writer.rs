//! Test helper for meridian-store's crash and lock tests; not part of Meridian's interface.
//!
//! `store-crash-writer write DIR`: opens the store, resolves open intents the way the shell
//! must on restart, then commits decisions for plan `crash` in a loop (state, audit
//! records, intents, applied commands), printing `committed <seq>` after each, until killed.
//!
//! `store-crash-writer hold DIR`: opens the store, prints `opened <pid>`, and holds it until
//! stdin closes.
//!
//! Exit codes: 0 done, 1 any other error, 2 usage, 3 the state dir is locked.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "a test helper binary: it is killed mid-write on purpose, and panics on a broken setup"
)]

use std::error::Error;
use std::io::{BufRead, Write};
use std::process::ExitCode;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use meridian_core::state::{PauseSet, UnitState};
use meridian_core::{Action, AuditEvent, AuditRecord, Cause, Command, CommandKind, PlanState, UnitPhase};
use meridian_store::{IntentOutcome, Store, StoreError};

const PLAN: &str = "crash";
const UNITS: [(&str, &str); 2] = [("eu", "web"), ("us", "web")];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, dir) = match args.as_slice() {
        [mode, dir] if mode == "write" || mode == "hold" => (mode.as_str(), dir.as_str()),
        _ => {
            eprintln!("usage: store-crash-writer write|hold DIR");
            return ExitCode::from(2);
        }
    };
    let store = match Store::open(dir) {
        Ok(store) => store,
        Err(e @ StoreError::Locked { .. }) => {
            eprintln!("error: {e}");
            return ExitCode::from(3);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let result = match mode {
        "hold" => hold(),
        _ => write_forever(store),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn say(line: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

fn hold() -> Result<(), Box<dyn Error>> {
    say(&format!("opened {}", std::process::id()))?;
    for line in std::io::stdin().lock().lines() {
        line?;
    }
    Ok(())
}

fn at(n: u64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).single().unwrap_or_default() + TimeDelta::seconds(n as i64)
}

fn initial_state() -> PlanState {
    PlanState {
        plan: PLAN.into(),
        units: UNITS
            .iter()
            .map(|(region, service)| UnitState {
                region: (*region).into(),
                service: (*service).into(),
                phase: UnitPhase::Pending,
                step: None,
                percent: 0,
                since: None,
                bake_since: None,
                waiting: None,
                promoted: false,
                drift: None,
                actuated: false,
                failure: None,
                progress_at: None,
                stalled: None,
                checks: Vec::new(),
            })
            .collect(),
        waves: Vec::new(),
        paused: PauseSet::default(),
        aborted_regions: Default::default(),
        aborted: false,
        audit_seq: 0,
        freezes: Vec::new(),
        full_promotions: Vec::new(),
        departing: Vec::new(),
    }
}

fn write_forever(mut store: Store) -> Result<(), Box<dyn Error>> {
    // The restart rule: read the target back (here the simulated target always applied it).
    for intent in store.open_intents()? {
        let now = at(store.last_audit_seq(PLAN)?);
        store.complete_intent(intent.id, IntentOutcome::Done { observed_percent: intent.percent }, now)?;
    }
    say(&format!("opened {}", std::process::id()))?;
    loop {
        let mut state = store.load_state(PLAN)?.unwrap_or_else(initial_state);
        let n = state.audit_seq;
        let now = at(n + 1);
        let pending = store.pending_commands(PLAN)?;
        let mut audit = Vec::new();
        let mut record = |state: &mut PlanState, event: AuditEvent, cause: Cause| {
            state.audit_seq += 1;
            audit.push(AuditRecord {
                seq: state.audit_seq,
                at: now,
                plan: PLAN.into(),
                wave: None,
                region: None,
                service: None,
                event,
                cause,
            });
        };
        for p in &pending {
            // `by` carries the command id so the test can match each applied command to its record.
            let by = format!("writer#{}", p.id);
            record(
                &mut state,
                AuditEvent::Command { command: p.command.kind, by: by.clone() },
                Cause::Command { command: p.command.kind, by },
            );
        }
        let u = (n % 2) as usize;
        let from = state.units[u].percent;
        let to = ((n * 7 + 3) % 101) as u32;
        state.units[u].percent = to;
        state.units[u].phase = UnitPhase::Progressing;
        record(
            &mut state,
            AuditEvent::Unit {
                from: UnitPhase::Progressing,
                to: UnitPhase::Progressing,
                step: None,
                from_percent: from,
                to_percent: to,
            },
            Cause::Advanced {
                approvals: Vec::new(),
                promoted: false,
                flags: Vec::new(),
                health: Vec::new(),
                full: None,
            },
        );
        let action = Action::SetTraffic { region: UNITS[u].0.into(), service: UNITS[u].1.into(), percent: to, from };
        let applied: Vec<_> = pending.iter().map(|p| p.id).collect();
        let intents = store.commit_decision(PLAN, &state, &audit, &[action], &applied, now)?;
        for intent in intents {
            // Leave some open and some merely sent, as a crash would.
            if n % 4 != 0 {
                store.mark_intent_sent(intent.id, now)?;
            }
            if n % 4 == 1 || n % 4 == 2 {
                store.complete_intent(intent.id, IntentOutcome::Done { observed_percent: intent.percent }, now)?;
            }
        }
        // Commands arrive between decisions, so a kill can leave some pending.
        if n % 3 == 0 {
            let kind = if n % 2 == 0 { CommandKind::Pause } else { CommandKind::Resume };
            store.enqueue_command(PLAN, &Command::plan_wide(kind, "writer", now))?;
        }
        say(&format!("committed {}", state.audit_seq))?;
    }
}
