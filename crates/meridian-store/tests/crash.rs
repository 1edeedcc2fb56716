//! SIGKILL the writer at random moments, many times, and check after each kill that the
//! database opens and every invariant holds: state and log agree, the log has no gaps,
//! intents match the state, each command was applied exactly once. The second test does the
//! same to a writer that group-commits 50 plans' decisions at a time, as the controller's
//! decision loop does, and checks that a pass is on disk whole or not at all, that nothing
//! it acknowledged is lost, and that every intent it actuated was on disk first.
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
use meridian_store::{IntentId, IntentStatus, Store};

const PLAN: &str = "crash";
const KILLS: usize = 30;
/// Plans of the writer's `write-many` mode, and its kills.
const MANY: usize = 50;
const MANY_KILLS: usize = 20;

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
    /// Traffic decisions (one `Unit` record each) in the log.
    decisions: u64,
    open_intents: usize,
    pending_commands: usize,
}

fn check_invariants(dir: &Path) -> Seen {
    let store = Store::open(dir).expect("the database opens after SIGKILL");
    // Every record written before the kill is in the audit chain, and the chain holds.
    if let Err(broken) = store.verify_chain(None).expect("the chain reads") {
        panic!("the audit chain does not hold after SIGKILL: {broken}");
    }
    let raw = rusqlite::Connection::open(dir.join(meridian_store::DB_FILE)).unwrap();
    check_plan(&store, &raw, PLAN)
}

/// One plan's invariants: a gapless log that ends where the state says, every unit's newest
/// intent asking for what the state says, at most one open intent per unit, and each applied
/// command recorded exactly once.
fn check_plan(store: &Store, raw: &rusqlite::Connection, plan: &str) -> Seen {
    let log = store.audit(Some(plan), 0, usize::MAX).unwrap();
    for (i, r) in log.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1, "{plan}: the audit log has a gap or repeat at position {i}");
    }
    let last = log.last().map_or(0, |r| r.seq);
    let Some(state) = store.load_state(plan).unwrap() else {
        assert!(log.is_empty(), "{plan}: audit records without a state");
        return Seen::default();
    };
    assert_eq!(state.audit_seq, last, "{plan}: state.audit_seq must equal the last audit seq");

    // Every unit's newest intent asks for what the state says the unit serves.
    let open: Vec<_> = store.open_intents().unwrap().into_iter().filter(|i| i.plan == plan).collect();
    for unit in &state.units {
        match store.latest_intent(plan, &unit.region, &unit.service).unwrap() {
            Some(intent) => {
                assert_eq!(intent.percent, unit.percent, "{plan}: intent and state disagree for {}", unit.region);
            }
            None => assert_eq!(unit.percent, 0, "{plan}: traffic without an intent for {}", unit.region),
        }
        let open_here = open.iter().filter(|i| i.region == unit.region && i.service == unit.service).count();
        assert!(open_here <= 1, "{plan}: {open_here} open intents for {}", unit.region);
    }
    assert!(open.iter().all(|i| i.status == IntentStatus::Open));

    // Each applied command has exactly one audit record, and no pending one has any.
    let mut recorded: BTreeMap<i64, usize> = BTreeMap::new();
    let mut decisions = 0;
    for r in &log {
        match &r.event {
            AuditEvent::Command { by, .. } => {
                let id: i64 = by.strip_prefix("writer#").and_then(|s| s.parse().ok()).expect("writer#<id>");
                *recorded.entry(id).or_default() += 1;
            }
            AuditEvent::Unit { .. } => decisions += 1,
            _ => {}
        }
    }
    let mut stmt = raw.prepare("SELECT id, applied_at IS NOT NULL FROM commands WHERE plan = ?1").unwrap();
    let commands: Vec<(i64, bool)> =
        stmt.query_map([plan], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().collect::<Result<_, _>>().unwrap();
    for (id, applied) in &commands {
        let times = recorded.get(id).copied().unwrap_or(0);
        assert_eq!(times, usize::from(*applied), "{plan}: command {id} applied={applied} has {times} audit records");
    }
    assert_eq!(recorded.len(), commands.iter().filter(|(_, a)| *a).count(), "{plan}: records for unknown commands");

    Seen {
        log_len: last,
        decisions,
        open_intents: open.len(),
        pending_commands: commands.iter().filter(|(_, a)| !*a).count(),
    }
}

/// The two tests run one at a time: run side by side, a writer one of them spawned was seen to
/// keep the other's state dir locked for a while (a descriptor inherited while the other test
/// held its store open), failing that test's next writer with "in use".
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn seed() -> u64 {
    let seed = std::env::var("MERIDIAN_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("MERIDIAN_CRASH_SEED={seed}");
    seed
}

#[test]
fn sigkill_at_random_moments_never_breaks_the_store() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut rng = Rng::new(seed());
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

#[test]
fn sigkill_during_group_commits_of_many_plans_never_breaks_the_store() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut rng = Rng::new(seed());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let plans: Vec<String> = (0..MANY).map(|i| format!("many-{i:02}")).collect();
    let mut passes = 0; // on disk after the previous kill
    let (mut with_open_intents, mut sends) = (0, 0);

    for kill in 0..MANY_KILLS {
        let deadline = Instant::now() + DEADLINE;
        let writer = Writer::spawn("write-many", &dir);
        // Every line it printed, and the passes it acknowledged (printed `committed` for).
        let mut lines = Vec::new();
        let mut acknowledged = 0;
        if kill % 5 != 4 {
            writer.wait_for("opened", deadline);
            let wanted = rng.below(6);
            while acknowledged < wanted {
                let line = writer.next_line(deadline).expect("the writer runs until killed");
                acknowledged += u64::from(line.starts_with("committed "));
                lines.push(line);
            }
            // The crash moment: anywhere in the next pass (its commit, its sends, its marks).
            std::thread::sleep(std::time::Duration::from_micros(rng.below(20_000)));
        }
        // What it printed before it died is still in the pipe.
        let (status, rest) = writer.kill_and_drain(deadline);
        assert!(status.code().is_none(), "kill {kill}: the writer exited on its own ({status})");
        lines.extend(rest);
        acknowledged = acknowledged.max(lines.iter().filter(|l| l.starts_with("committed ")).count() as u64);

        let store = Store::open(&dir).expect("the database opens after SIGKILL");
        if let Err(broken) = store.verify_chain(None).expect("the chain reads") {
            panic!("kill {kill}: the audit chain does not hold after SIGKILL: {broken}");
        }
        let raw = rusqlite::Connection::open(dir.join(meridian_store::DB_FILE)).unwrap();
        let seen: Vec<Seen> = plans.iter().map(|p| check_plan(&store, &raw, p)).collect();
        // A pass is on disk whole or not at all: every plan has made as many decisions.
        let now = seen[0].decisions;
        assert!(seen.iter().all(|s| s.decisions == now), "kill {kill}: a pass is on disk in part: {seen:?}");
        // Nothing acknowledged is lost, and nothing went back.
        assert!(
            now >= passes + acknowledged,
            "kill {kill}: {now} passes on disk, {passes} + {acknowledged} acknowledged"
        );
        passes = now;
        // Every intent actuated (announced as sent) was on disk before it was sent.
        for line in &lines {
            if let Some(id) = line.strip_prefix("sent ") {
                let id: i64 = id.parse().expect("sent <id>");
                assert!(store.intent(IntentId(id)).unwrap().is_some(), "kill {kill}: intent {id} sent, not on disk");
                sends += 1;
            }
        }
        with_open_intents += usize::from(seen.iter().any(|s| s.open_intents > 0));
        drop(store); // lets go of the state dir for the next writer
    }
    eprintln!(
        "{MANY_KILLS} kills of a writer of {MANY} plans; {passes} passes on disk; {sends} sends checked; \
         {with_open_intents} kills left open intents"
    );
    assert!(passes >= 20, "the writer made too little progress to mean anything: {passes} passes");
    assert!(with_open_intents > 0, "no kill left an intent open; recovery at start went untested");
}
