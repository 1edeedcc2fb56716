//! Test helper for meridian-store's crash and lock tests; not part of Meridian's interface.
//!
//! `store-crash-writer write DIR`: opens the store, resolves open intents the way the shell
//! must on restart, then commits decisions for plan `crash` in a loop (state, audit
//! records, intents, applied commands), printing `committed <seq>` after each, until killed.
//!
//! `store-crash-writer write-many DIR`: the same for 50 plans at once, as the controller's
//! decision loop does a pass: every plan's next decision in ONE group commit
//! (`commit_decisions`), printing `committed <round>` once it returned; then each new intent
//! is "actuated" (printed as `sent <intent id>` just before, only after the commit), and the
//! sent and closed marks of all of them are written in shared transactions (`write_intents`).
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
use meridian_store::{CommandId, IntentOutcome, IntentWrite, NewDecision, Store, StoreError};

const PLAN: &str = "crash";
/// Plans of `write-many`: `many-00` to `many-49`.
const MANY: usize = 50;
const UNITS: [(&str, &str); 2] = [("eu", "web"), ("us", "web")];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, dir) = match args.as_slice() {
        [mode, dir] if ["write", "write-many", "hold"].contains(&mode.as_str()) => (mode.as_str(), dir.as_str()),
        _ => {
            eprintln!("usage: store-crash-writer write|write-many|hold DIR");
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
        "write-many" => write_many_forever(store),
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
    initial_state_of(PLAN)
}

fn initial_state_of(plan: &str) -> PlanState {
    PlanState {
        plan: plan.into(),
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

/// A plan's new state, its records, its one traffic change and the commands it applied.
type NextDecision = (PlanState, Vec<AuditRecord>, Action, Vec<CommandId>);

/// One plan's next decision in `write-many`: a traffic change on one of its units, and a record
/// for each pending command (applied).
fn next_decision(store: &Store, plan: &str) -> Result<NextDecision, Box<dyn Error>> {
    let mut state = store.load_state(plan)?.unwrap_or_else(|| initial_state_of(plan));
    let n = state.audit_seq;
    let now = at(n + 1);
    let pending = store.pending_commands(plan)?;
    let mut audit = Vec::new();
    for p in &pending {
        state.audit_seq += 1;
        let by = format!("writer#{}", p.id);
        audit.push(AuditRecord {
            seq: state.audit_seq,
            at: now,
            plan: plan.into(),
            wave: None,
            region: None,
            service: None,
            event: AuditEvent::Command { command: p.command.kind, by: by.clone() },
            cause: Cause::Command { command: p.command.kind, by },
        });
    }
    let u = (n % 2) as usize;
    let from = state.units[u].percent;
    let to = ((n * 7 + 3) % 101) as u32;
    state.units[u].percent = to;
    state.units[u].phase = UnitPhase::Progressing;
    state.audit_seq += 1;
    audit.push(AuditRecord {
        seq: state.audit_seq,
        at: now,
        plan: plan.into(),
        wave: None,
        region: None,
        service: None,
        event: AuditEvent::Unit {
            from: UnitPhase::Progressing,
            to: UnitPhase::Progressing,
            step: None,
            from_percent: from,
            to_percent: to,
        },
        cause: Cause::Advanced {
            approvals: Vec::new(),
            promoted: false,
            flags: Vec::new(),
            health: Vec::new(),
            full: None,
        },
    });
    let action = Action::SetTraffic { region: UNITS[u].0.into(), service: UNITS[u].1.into(), percent: to, from };
    Ok((state, audit, action, pending.iter().map(|p| p.id).collect()))
}

fn write_many_forever(mut store: Store) -> Result<(), Box<dyn Error>> {
    let plans: Vec<String> = (0..MANY).map(|i| format!("many-{i:02}")).collect();
    // The restart rule, as in `write`: every open intent read back (applied) and closed.
    let open: Vec<IntentWrite> = store
        .open_intents()?
        .into_iter()
        .map(|i| IntentWrite::Complete {
            id: i.id,
            outcome: IntentOutcome::Done { observed_percent: i.percent },
            at: at(0),
        })
        .collect();
    for written in store.write_intents(&open)? {
        written?;
    }
    say(&format!("opened {}", std::process::id()))?;
    for round in 1.. {
        let decided = plans.iter().map(|p| next_decision(&store, p)).collect::<Result<Vec<_>, _>>()?;
        let now = at(round);
        let batch: Vec<NewDecision<'_>> = plans
            .iter()
            .zip(&decided)
            .map(|(plan, (state, audit, action, applied))| NewDecision {
                plan,
                state,
                audit,
                actions: std::slice::from_ref(action),
                applied_commands: applied,
            })
            .collect();
        let intents: Vec<_> = store.commit_decisions(&batch, now)?.into_iter().flatten().collect();
        say(&format!("committed {round}"))?;
        // Actuate only what is on disk: announce each send, then mark them all sent together,
        // and close most (a kill leaves the rest open, or merely sent).
        let mut writes = Vec::new();
        for (k, intent) in intents.iter().enumerate() {
            say(&format!("sent {}", intent.id))?;
            writes.push(IntentWrite::Sent { id: intent.id, at: now });
            if !(round + k as u64).is_multiple_of(3) {
                let outcome = IntentOutcome::Done { observed_percent: intent.percent };
                writes.push(IntentWrite::Complete { id: intent.id, outcome, at: now });
            }
        }
        for written in store.write_intents(&writes)? {
            written?;
        }
        // Commands arrive between passes, so a kill can leave some pending.
        if round % 3 == 0 {
            let kind = if round % 2 == 0 { CommandKind::Pause } else { CommandKind::Resume };
            let plan = &plans[(round as usize / 3) % MANY];
            store.enqueue_command(plan, &Command::plan_wide(kind, "writer", now))?;
        }
    }
    Ok(())
}
