//! SIGKILL the writer at random moments, many times, and check after each kill that the
//! database opens and every invariant holds: state and log agree, the log has no gaps,
//! intents match the state, each command was applied exactly once.
//!
//! Seeded from the clock; set MERIDIAN_CRASH_SEED to replay a run.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and a test may print what it saw"
)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use common::{DEADLINE, Writer};
use meridian_core::AuditEvent;
use meridian_store::{IntentStatus, Store};

const PLAN: &str = "crash";
const KILLS: usize = 30;

/// xorshift64*: enough randomness for kill timing, reproducible from the seed.
struct Rng(u64);

impl Rng {
    /// Spread a clock-derived seed over all 64 bits (splitmix64), never zero.
    fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

#[derive(Debug, Default)]
struct Seen {
    log_len: u64,
    open_intents: usize,
    pending_commands: usize,
}

fn check_invariants(dir: &Path) -> Seen {
    let store = Store::open(dir).expect("the database opens after SIGKILL");
    let log = store.audit(Some(PLAN), 0, usize::MAX).unwrap();
    for (i, r) in log.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1, "the audit log has a gap or repeat at position {i}");
    }
    let last = log.last().map_or(0, |r| r.seq);
    let Some(state) = store.load_state(PLAN).unwrap() else {
        assert!(log.is_empty(), "audit records without a state");
        return Seen::default();
    };
    assert_eq!(state.audit_seq, last, "state.audit_seq must equal the last audit seq");

    // Every unit's newest intent asks for what the state says the unit serves.
    let open = store.open_intents().unwrap();
    for unit in &state.units {
        match store.latest_intent(PLAN, &unit.region, &unit.service).unwrap() {
            Some(intent) => assert_eq!(intent.percent, unit.percent, "intent and state disagree for {}", unit.region),
            None => assert_eq!(unit.percent, 0, "traffic without an intent for {}", unit.region),
        }
        let open_here = open.iter().filter(|i| i.region == unit.region && i.service == unit.service).count();
        assert!(open_here <= 1, "{open_here} open intents for {}", unit.region);
    }
    assert!(open.iter().all(|i| i.status == IntentStatus::Open));
    // Every record written before the kill is in the audit chain, and the chain holds.
    if let Err(broken) = store.verify_chain(None).expect("the chain reads") {
        panic!("the audit chain does not hold after SIGKILL: {broken}");
    }

    // Each applied command has exactly one audit record, and no pending one has any.
    let mut recorded: BTreeMap<i64, usize> = BTreeMap::new();
    for r in &log {
        if let AuditEvent::Command { by, .. } = &r.event {
            let id: i64 = by.strip_prefix("writer#").and_then(|s| s.parse().ok()).expect("writer#<id>");
            *recorded.entry(id).or_default() += 1;
        }
    }
    let raw = rusqlite::Connection::open(dir.join(meridian_store::DB_FILE)).unwrap();
    let mut stmt = raw.prepare("SELECT id, applied_at IS NOT NULL FROM commands WHERE plan = ?1").unwrap();
    let commands: Vec<(i64, bool)> =
        stmt.query_map([PLAN], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().collect::<Result<_, _>>().unwrap();
    for (id, applied) in &commands {
        let times = recorded.get(id).copied().unwrap_or(0);
        assert_eq!(times, usize::from(*applied), "command {id} applied={applied} has {times} audit records");
    }
    assert_eq!(recorded.len(), commands.iter().filter(|(_, a)| *a).count(), "records for unknown commands");

    Seen { log_len: last, open_intents: open.len(), pending_commands: commands.iter().filter(|(_, a)| !*a).count() }
}

#[test]
fn sigkill_at_random_moments_never_breaks_the_store() {
    let seed = std::env::var("MERIDIAN_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("MERIDIAN_CRASH_SEED={seed}");
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let mut last_len = 0;
    let (mut with_open_intents, mut with_pending_commands, mut during_startup) = (0, 0, 0);

    for kill in 0..KILLS {
        let deadline = Instant::now() + DEADLINE;
        let writer = Writer::spawn("write", &dir);
        // Mostly mid-loop after a random number of commits; sometimes during startup
        // (opening, migrating, resolving intents), before the writer says anything.
        let commits = rng.below(14);
        if kill % 6 == 5 {
            during_startup += 1;
        } else {
            writer.wait_for("opened", deadline);
            for _ in 0..commits {
                writer.wait_for("committed", deadline);
            }
            // The crash moment itself, not a wait for anything: without this jitter the kill
            // would land at the same point of the writer's loop (just after it printed) every
            // time. A loop iteration takes about a millisecond here; this spans several.
            std::thread::sleep(std::time::Duration::from_micros(rng.below(5_000)));
        }
        let status = writer.kill();
        assert!(
            status.code().is_none(),
            "kill {kill}: the writer exited on its own ({status}) instead of being killed"
        );

        let seen = check_invariants(&dir);
        assert!(seen.log_len >= last_len, "kill {kill}: the log shrank from {last_len} to {}", seen.log_len);
        last_len = seen.log_len;
        with_open_intents += usize::from(seen.open_intents > 0);
        with_pending_commands += usize::from(seen.pending_commands > 0);
    }
    eprintln!(
        "{KILLS} kills ({during_startup} during startup); log reached {last_len} records; \
         {with_open_intents} kills left open intents, {with_pending_commands} left pending commands"
    );
    assert!(last_len >= 20, "the writer made too little progress to mean anything: {last_len}");
}
