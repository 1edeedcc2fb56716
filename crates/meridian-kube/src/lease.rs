//! Leader election on a `coordination.k8s.io/v1` Lease, with a fencing token.
//!
//! ```text
//!   Lease (GET) ──> Observed { spec, since } ──> decide(observed, identity, settings, now, wall)   pure
//!                                                   │ Create / Acquire / Renew / Wait
//!                                                   v
//!   the election task (spawn): written with the resourceVersion read ──> Status ──> Leadership
//!                                  (a 409: read again, never overwrite)      acting(), until_leading(),
//!                                                                            lost(), holder()
//! ```
//!
//! The rules are client-go's, with the leader's side tightened:
//! - Another's lease expires `leaseDurationSeconds` after this replica first saw the record as
//!   it is now, on this replica's monotonic clock; the remote timestamps are written for people
//!   and never compared with the local clock (clocks skew).
//! - Every write carries the `resourceVersion` that was read. A 409 means someone else wrote
//!   first: the Lease is read again and decided again, never overwritten.
//! - The leader's right to act ends at (the instant its last successful write was *sent*) +
//!   renew deadline, checked against [`Instant::now`] whenever it is asked. A replica that was
//!   paused or cut off therefore knows it may not act the moment it asks, before its renew task
//!   runs again. Since the renew deadline is shorter than the lease duration and the others count
//!   the lease duration from after they saw that write, the right ends before anyone else may
//!   take the lease (as long as the clocks run at about the same rate). `Instant` is
//!   `CLOCK_MONOTONIC` on Linux: it runs on while the process is stopped (SIGSTOP), but not
//!   while the whole machine is suspended, which this cannot see.
//! - `leaseTransitions` counts the changes of holder: it is the leader's term, the fencing token
//!   ([`Term`]) that state writes and intents record so that writes from an older term can be
//!   refused.
//!
//! Owns the Lease and nothing else: it must not decide anything about rollouts nor act. Callers
//! ask [`Leadership::acting`] right before they act and record the term with what they write.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// Where the Lease is, who this replica is, and the timing (client-go's names and defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseSettings {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease: one per controller, the same for all its replicas.
    pub name: String,
    /// This replica's identity, unique per process (a pod name plus a random suffix): two
    /// processes with one identity would both believe they lead.
    pub identity: String,
    /// How long the others wait, from when they saw the last renewal, before taking the lease.
    /// A whole number of seconds (the Lease stores seconds).
    pub lease_duration: Duration,
    /// How long after sending its last successful renewal the leader may act; shorter than
    /// `lease_duration`, so that it stops before the others may take over.
    pub renew_deadline: Duration,
    /// The pause between two attempts to acquire or renew; shorter than `renew_deadline`, so
    /// that a leader gets several tries before its right to act lapses.
    pub retry_period: Duration,
}

impl LeaseSettings {
    pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
    pub const DEFAULT_RENEW_DEADLINE: Duration = Duration::from_secs(10);
    pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_secs(2);

    /// The Lease `namespace/name` for `identity`, with client-go's default timing (15 s, 10 s, 2 s).
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        LeaseSettings {
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration: Self::DEFAULT_LEASE_DURATION,
            renew_deadline: Self::DEFAULT_RENEW_DEADLINE,
            retry_period: Self::DEFAULT_RETRY_PERIOD,
        }
    }

    /// Every problem with these settings at once.
    pub fn validate(&self) -> Result<(), LeaseError> {
        let mut problems = Vec::new();
        for (field, value) in [("namespace", &self.namespace), ("name", &self.name), ("identity", &self.identity)] {
            if value.is_empty() {
                problems.push(format!("{field} is empty"));
            }
        }
        let seconds = self.lease_duration.as_secs();
        if self.lease_duration.subsec_nanos() != 0 || seconds == 0 || i32::try_from(seconds).is_err() {
            problems.push(format!(
                "lease_duration must be a whole number of seconds, at least 1 (the Lease stores seconds), not {:?}",
                self.lease_duration
            ));
        }
        if self.renew_deadline >= self.lease_duration {
            problems.push(format!(
                "renew_deadline ({:?}) must be shorter than lease_duration ({:?}), or the leader could still act \
                 after another took over",
                self.renew_deadline, self.lease_duration
            ));
        }
        if self.retry_period.is_zero() {
            problems.push("retry_period must be more than zero".to_string());
        } else if self.retry_period >= self.renew_deadline {
            problems.push(format!(
                "retry_period ({:?}) must be shorter than renew_deadline ({:?}), or the leader gets no second try \
                 to renew",
                self.retry_period, self.renew_deadline
            ));
        }
        if problems.is_empty() { Ok(()) } else { Err(LeaseError::InvalidSettings { problems }) }
    }

    fn lease_duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}

/// What can go wrong starting, waiting on, or releasing an election. Failures of the election
/// task itself are retried and reported by [`Leadership::last_error`].
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("invalid lease election settings: {}", problems.join("; "))]
    InvalidSettings { problems: Vec<String> },

    #[error("the lease election needs a tokio runtime: call lease::spawn from within one")]
    NoRuntime,

    #[error("the lease election has stopped (stopped, released, or its task died); spawn a new one to campaign again")]
    Stopped,

    #[error("failed to release Lease {namespace}/{name}")]
    Release {
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },

    #[error("Lease {namespace}/{name} kept changing while it was being released; it will expire on its own")]
    ReleaseContended { namespace: String, name: String },
}

/// A leader's term: who leads and the Lease's `leaseTransitions` when it took the lease. The
/// transitions grow with every change of holder, so a greater term is a later leader: record
/// it with every state write and intent, and refuse writes from an older term.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Term {
    /// The fencing token.
    pub transitions: u64,
    /// The leader's identity.
    pub identity: String,
}

/// The Lease as this replica last read it, and since when it has been unchanged.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// The spec as read.
    pub spec: LeaseSpec,
    /// When (on this replica's monotonic clock) this replica first read this spec unchanged: the
    /// holder's lease is counted from here.
    pub since: Instant,
}

impl Observed {
    /// What `previous` becomes on reading `spec` at `now`: `since` moves only when the spec
    /// changed (a renewal changes `renewTime`, so it counts).
    pub fn next(previous: Option<Observed>, spec: LeaseSpec, now: Instant) -> Observed {
        match previous {
            Some(previous) if previous.spec == spec => previous,
            _ => Observed { spec, since: now },
        }
    }

    /// The holder, if any (a released Lease has none).
    pub fn holder(&self) -> Option<&str> {
        holder(&self.spec)
    }

    /// When, on this replica's clock, the holder's lease runs out: its own `leaseDurationSeconds`
    /// after `since` (`default` when the record has none).
    pub fn expires(&self, default: Duration) -> Instant {
        let duration = match self.spec.lease_duration_seconds.and_then(|s| u64::try_from(s).ok()) {
            Some(seconds) if seconds > 0 => Duration::from_secs(seconds),
            _ => default,
        };
        self.since + duration
    }
}

/// What the election does next.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// There is no Lease: create it, held by this replica (term 0).
    Create(LeaseSpec),
    /// The lease is free or expired: take it (the term grows).
    Acquire(LeaseSpec),
    /// This replica holds the lease: renew it (the same term).
    Renew(LeaseSpec),
    /// Another holds a lease that has not expired: read it again no later than `until`, when it
    /// expires unless renewed.
    Wait { holder: String, until: Instant },
}

/// The election's one decision, from the Lease as observed (`None`: there is none), at `now` on
/// this replica's clock; `wall` is only written into the record (`acquireTime`, `renewTime`).
pub fn decide(
    observed: Option<&Observed>,
    identity: &str,
    settings: &LeaseSettings,
    now: Instant,
    wall: Timestamp,
) -> Step {
    let held = |transitions: i32, acquire_time: Option<MicroTime>| LeaseSpec {
        holder_identity: Some(identity.to_string()),
        lease_duration_seconds: Some(settings.lease_duration_seconds()),
        acquire_time,
        renew_time: Some(MicroTime(wall)),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    };
    let Some(observed) = observed else {
        return Step::Create(held(0, Some(MicroTime(wall))));
    };
    let transitions = observed.spec.lease_transitions.unwrap_or(0).max(0);
    match observed.holder() {
        Some(holder) if holder == identity => {
            let acquired = observed.spec.acquire_time.clone().or(Some(MicroTime(wall)));
            Step::Renew(held(transitions, acquired))
        }
        Some(holder) if now < observed.expires(settings.lease_duration) => {
            Step::Wait { holder: holder.to_string(), until: observed.expires(settings.lease_duration) }
        }
        _ => Step::Acquire(held(transitions.saturating_add(1), Some(MicroTime(wall)))),
    }
}

/// The spec that gives the lease up, if `identity` holds it: no holder, so the others take it at
/// once; the transitions stay (the next holder increments them).
pub fn released(spec: &LeaseSpec, identity: &str, wall: Timestamp) -> Option<LeaseSpec> {
    (holder(spec) == Some(identity)).then(|| LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        renew_time: Some(MicroTime(wall)),
        ..spec.clone()
    })
}

/// This replica's hold on the lease, from one successful write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lead {
    pub term: Term,
    /// The end of the right to act: when the write was sent, plus the renew deadline.
    pub acting_until: Instant,
}

impl Lead {
    /// The hold a write sent at `sent` (and answered with success) gives.
    pub fn new(term: Term, sent: Instant, settings: &LeaseSettings) -> Lead {
        Lead { term, acting_until: sent + settings.renew_deadline }
    }

    /// The term, if this replica may still act at `now`.
    pub fn acting(&self, now: Instant) -> Option<&Term> {
        (now < self.acting_until).then_some(&self.term)
    }
}

fn holder(spec: &LeaseSpec) -> Option<&str> {
    spec.holder_identity.as_deref().filter(|h| !h.is_empty())
}

fn transitions(spec: &LeaseSpec) -> u64 {
    spec.lease_transitions.and_then(|t| u64::try_from(t).ok()).unwrap_or(0)
}

/// What the election task reports to the [`Leadership`] handles.
#[derive(Clone, Debug, Default)]
struct Status {
    /// Set by this replica's last successful write, cleared when it sees another holder or stops.
    lead: Option<Lead>,
    /// The holder as last observed.
    holder: Option<String>,
    /// The last failure to read or write the Lease, cleared by the next success.
    last_error: Option<String>,
    /// The task stopped (stopped, released, or died): nothing will change any more.
    stopped: bool,
}

/// Campaign for the lease on the current tokio runtime: acquire it when free or expired, renew
/// it while held, every `retry_period`. Fails on invalid settings or outside a runtime.
pub fn spawn(client: Client, settings: LeaseSettings) -> Result<Leadership, LeaseError> {
    settings.validate()?;
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| LeaseError::NoRuntime)?;
    let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
    let status = Arc::new(watch::Sender::new(Status::default()));
    let task = runtime.spawn(campaign(api.clone(), settings.clone(), Arc::clone(&status)));
    Ok(Leadership { inner: Arc::new(Inner { status, task: task.abort_handle(), api, settings }) })
}

/// A handle on this replica's election; clones share it. Dropping the last one stops the
/// election without releasing the lease (it expires).
#[derive(Clone)]
pub struct Leadership {
    inner: Arc<Inner>,
}

struct Inner {
    status: Arc<watch::Sender<Status>>,
    task: AbortHandle,
    api: Api<Lease>,
    settings: LeaseSettings,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Leadership {
    /// `Some(term)` only while this replica leads and its right to act has not lapsed, checked
    /// against [`Instant::now`] at this call. Ask right before acting.
    pub fn acting(&self) -> Option<Term> {
        self.inner.status.borrow().lead.as_ref().and_then(|lead| lead.acting(Instant::now())).cloned()
    }

    /// Wait until this replica may act, and return its term; fails once the election stopped.
    pub async fn until_leading(&self) -> Result<Term, LeaseError> {
        let mut status = self.inner.status.subscribe();
        loop {
            {
                let now = status.borrow_and_update();
                if let Some(term) = now.lead.as_ref().and_then(|lead| lead.acting(Instant::now())) {
                    return Ok(term.clone());
                }
                if now.stopped {
                    return Err(LeaseError::Stopped);
                }
            }
            // A lapsed lead comes back only with a new write, which is a change.
            if status.changed().await.is_err() {
                return Err(LeaseError::Stopped);
            }
        }
    }

    /// Resolves once this replica may no longer act in `term`: its right lapsed, another took
    /// the lease, or the election stopped. At once if that is already so.
    ///
    /// Takes the term (where client-go's callback has none) so that a loss between
    /// `until_leading` and this call is not missed.
    pub async fn lost(&self, term: &Term) {
        let mut status = self.inner.status.subscribe();
        loop {
            let until = {
                let now = status.borrow_and_update();
                match &now.lead {
                    Some(lead) if lead.acting(Instant::now()) == Some(term) => lead.acting_until,
                    _ => return,
                }
            };
            tokio::select! {
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(until)) => {}
                changed = status.changed() => if changed.is_err() { return },
            }
        }
    }

    /// Who holds the lease as last observed (identity), for "say who leads"; `None` when there is
    /// no Lease or it was released. It may have expired since.
    pub fn holder(&self) -> Option<String> {
        self.inner.status.borrow().holder.clone()
    }

    /// The last failure to read or write the Lease (the API server unreachable, forbidden by
    /// RBAC, ...), cleared by the next success: for readiness and logs.
    pub fn last_error(&self) -> Option<String> {
        self.inner.status.borrow().last_error.clone()
    }

    /// Stop campaigning and renewing at once, without releasing the lease: this replica may no
    /// longer act from this call on, and the others take over once the lease expires.
    pub fn stop(&self) {
        stop(&self.inner.status);
        self.inner.task.abort();
    }

    /// Stop (as [`Leadership::stop`]), then give the lease up if this replica still holds it, so
    /// that another takes over at once. `Ok(true)` if it was released, `Ok(false)` if another
    /// held it. Optional: a replica that dies without releasing is taken over after expiry.
    pub async fn release(&self) -> Result<bool, LeaseError> {
        self.stop();
        let Inner { api, settings, .. } = &*self.inner;
        let failed = |source: kube::Error| LeaseError::Release {
            namespace: settings.namespace.clone(),
            name: settings.name.clone(),
            source: Box::new(source),
        };
        // A conflict is the stopped task's last renewal landing, or another replica: read again.
        for _ in 0..3 {
            let Some(lease) = api.get_opt(&settings.name).await.map_err(failed)? else { return Ok(false) };
            let spec = lease.spec.clone().unwrap_or_default();
            let Some(spec) = released(&spec, &settings.identity, Timestamp::now()) else { return Ok(false) };
            match api.replace(&settings.name, &PostParams::default(), &Lease { spec: Some(spec), ..lease }).await {
                Ok(_) => return Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => continue,
                Err(e) => return Err(failed(e)),
            }
        }
        Err(LeaseError::ReleaseContended { namespace: settings.namespace.clone(), name: settings.name.clone() })
    }
}

fn stop(status: &watch::Sender<Status>) {
    status.send_modify(|s| {
        s.lead = None;
        s.stopped = true;
    });
}

/// Marks the election stopped when its task ends, however it ends (aborted, or a panic), so that
/// no handle goes on believing it may act.
struct StopOnDrop(Arc<watch::Sender<Status>>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        stop(&self.0);
    }
}

/// The election task: read, decide, write, sleep; forever, until aborted.
async fn campaign(api: Api<Lease>, settings: LeaseSettings, status: Arc<watch::Sender<Status>>) {
    let _stopped = StopOnDrop(Arc::clone(&status));
    let mut observed = None;
    loop {
        // A request that hangs must not hold the loop: the leader's right lapses on its own, but
        // a follower would never take over.
        let attempt = tokio::time::timeout(settings.renew_deadline, attempt(&api, &settings, &mut observed, &status));
        let next = match attempt.await {
            Ok(Ok(next)) => {
                status.send_if_modified(|s| s.last_error.take().is_some());
                next
            }
            Ok(Err(e)) => {
                let error = format!("Lease {}/{}: {e}", settings.namespace, settings.name);
                status.send_modify(|s| s.last_error = Some(error));
                Instant::now() + settings.retry_period
            }
            Err(_) => {
                let error = format!(
                    "Lease {}/{}: no answer from the API server in {:?}",
                    settings.namespace, settings.name, settings.renew_deadline
                );
                status.send_modify(|s| s.last_error = Some(error));
                Instant::now()
            }
        };
        tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
    }
}

/// One read, decision and (maybe) write; returns when to try next.
async fn attempt(
    api: &Api<Lease>,
    settings: &LeaseSettings,
    observed: &mut Option<Observed>,
    status: &watch::Sender<Status>,
) -> Result<Instant, kube::Error> {
    let read = api.get_opt(&settings.name).await?;
    let now = Instant::now();
    let metadata = match read {
        Some(lease) => {
            *observed = Some(Observed::next(observed.take(), lease.spec.unwrap_or_default(), now));
            lease.metadata
        }
        None => {
            *observed = None;
            ObjectMeta {
                name: Some(settings.name.clone()),
                namespace: Some(settings.namespace.clone()),
                ..ObjectMeta::default()
            }
        }
    };
    let seen_holder = observed.as_ref().and_then(Observed::holder).map(str::to_string);
    status.send_if_modified(|s| {
        let mut changed = s.holder != seen_holder;
        s.holder.clone_from(&seen_holder);
        // Another holds it, or nobody: deposed, if this replica led (its right has lapsed
        // already if the others kept to the rules; this ends it even if they did not).
        if seen_holder.as_deref() != Some(settings.identity.as_str()) {
            changed |= s.lead.take().is_some();
        }
        changed
    });
    let (spec, create) = match decide(observed.as_ref(), &settings.identity, settings, now, Timestamp::now()) {
        Step::Wait { until, .. } => return Ok(until.min(now + settings.retry_period)),
        Step::Create(spec) => (spec, true),
        Step::Acquire(spec) | Step::Renew(spec) => (spec, false),
    };
    // `metadata` carries the resourceVersion read: the server refuses the write if it changed.
    let lease = Lease { metadata, spec: Some(spec) };
    let sent = Instant::now();
    let written = if create {
        api.create(&PostParams::default(), &lease).await
    } else {
        api.replace(&settings.name, &PostParams::default(), &lease).await
    };
    match written {
        Ok(written) => {
            let spec = written.spec.unwrap_or_default();
            let term = Term { transitions: transitions(&spec), identity: settings.identity.clone() };
            *observed = Some(Observed::next(observed.take(), spec, Instant::now()));
            let lead = Lead::new(term, sent, settings);
            status.send_modify(|s| {
                // A stop that came while the write was in flight wins.
                if !s.stopped {
                    s.lead = Some(lead);
                    s.holder = Some(settings.identity.clone());
                }
            });
            Ok(sent + settings.retry_period)
        }
        // Someone else wrote (or created it) first: read again at once and decide again.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(Instant::now()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "replica-a";
    const OTHER: &str = "replica-b";

    fn mk_settings() -> LeaseSettings {
        LeaseSettings::new("default", "meridian", ME)
    }

    fn wall(second: i64) -> Timestamp {
        Timestamp::from_second(1_770_000_000 + second).unwrap()
    }

    fn mk_spec(holder: Option<&str>, transitions: i32, duration_seconds: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_string),
            lease_duration_seconds: Some(duration_seconds),
            acquire_time: Some(MicroTime(wall(0))),
            renew_time: Some(MicroTime(wall(0))),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn the_defaults_are_client_gos_and_valid() {
        let settings = mk_settings();
        assert_eq!(
            (settings.lease_duration, settings.renew_deadline, settings.retry_period),
            (secs(15), secs(10), secs(2))
        );
        settings.validate().unwrap();
    }

    #[test]
    fn invalid_settings_report_every_problem_at_once() {
        let settings = LeaseSettings {
            identity: String::new(),
            lease_duration: Duration::from_millis(2500),
            renew_deadline: secs(3),
            retry_period: secs(3),
            ..mk_settings()
        };
        let message = settings.validate().unwrap_err().to_string();
        for problem in [
            "identity is empty",
            "lease_duration must be a whole number of seconds, at least 1 (the Lease stores seconds), not 2.5s",
            "renew_deadline (3s) must be shorter than lease_duration (2.5s)",
            "retry_period (3s) must be shorter than renew_deadline (3s)",
        ] {
            assert!(message.contains(problem), "{problem:?} missing from {message:?}");
        }
        let zero = LeaseSettings { retry_period: Duration::ZERO, ..mk_settings() };
        assert!(zero.validate().unwrap_err().to_string().contains("retry_period must be more than zero"));
    }

    #[test]
    fn an_absent_lease_is_created_held_by_me_in_term_zero() {
        let now = Instant::now();
        let step = decide(None, ME, &mk_settings(), now, wall(5));
        let expected = LeaseSpec {
            holder_identity: Some(ME.to_string()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(MicroTime(wall(5))),
            renew_time: Some(MicroTime(wall(5))),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        };
        assert_eq!(step, Step::Create(expected));
    }

    #[test]
    fn another_holders_unexpired_lease_is_waited_for_until_it_expires() {
        let since = Instant::now();
        let observed = Observed { spec: mk_spec(Some(OTHER), 4, 15), since };
        for after in [secs(0), secs(14), secs(15) - Duration::from_millis(1)] {
            let step = decide(Some(&observed), ME, &mk_settings(), since + after, wall(100));
            assert_eq!(step, Step::Wait { holder: OTHER.to_string(), until: since + secs(15) }, "after {after:?}");
        }
    }

    #[test]
    fn an_expired_lease_is_taken_over_in_a_new_term() {
        let since = Instant::now();
        let observed = Observed { spec: mk_spec(Some(OTHER), 4, 15), since };
        let Step::Acquire(spec) = decide(Some(&observed), ME, &mk_settings(), since + secs(15), wall(100)) else {
            panic!("not acquired");
        };
        assert_eq!(spec.holder_identity.as_deref(), Some(ME));
        assert_eq!(spec.lease_transitions, Some(5));
        assert_eq!(spec.acquire_time, Some(MicroTime(wall(100))));
        assert_eq!(spec.renew_time, Some(MicroTime(wall(100))));
        assert_eq!(spec.lease_duration_seconds, Some(15));
    }

    #[test]
    fn expiry_counts_the_holders_duration_from_when_i_saw_the_record_not_its_timestamps() {
        let since = Instant::now();
        // renewTime an hour before `wall`: a skewed or stale remote clock means nothing here.
        let mut spec = mk_spec(Some(OTHER), 1, 60);
        spec.renew_time = Some(MicroTime(wall(-3600)));
        let observed = Observed { spec: spec.clone(), since };
        // The holder's 60 s, not my 15 s.
        let step = decide(Some(&observed), ME, &mk_settings(), since + secs(20), wall(0));
        assert_eq!(step, Step::Wait { holder: OTHER.to_string(), until: since + secs(60) });

        // Reading the same record again keeps `since`; a renewal moves it.
        let later = Observed::next(Some(observed.clone()), spec.clone(), since + secs(30));
        assert_eq!(later.since, since);
        spec.renew_time = Some(MicroTime(wall(1)));
        let renewed = Observed::next(Some(later), spec, since + secs(40));
        assert_eq!(renewed.since, since + secs(40));
    }

    #[test]
    fn my_own_lease_is_renewed_in_the_same_term() {
        let since = Instant::now();
        let observed = Observed { spec: mk_spec(Some(ME), 7, 15), since };
        // Even long after it expired: nobody took it in between, or the holder would differ.
        for after in [secs(1), secs(100)] {
            let Step::Renew(spec) = decide(Some(&observed), ME, &mk_settings(), since + after, wall(9)) else {
                panic!("not renewed");
            };
            assert_eq!(spec.lease_transitions, Some(7));
            assert_eq!(spec.acquire_time, Some(MicroTime(wall(0))));
            assert_eq!(spec.renew_time, Some(MicroTime(wall(9))));
        }
    }

    #[test]
    fn transitions_grow_only_when_the_holder_changes() {
        let since = Instant::now();
        let settings = mk_settings();
        let mut observed: Option<Observed> = None;
        let mut terms = Vec::new();
        // Create, renew, renew, then replica-b takes it over after expiry, then I take it back
        // after it was released.
        for (step, who, at) in [(0, ME, 0), (1, ME, 2), (2, ME, 4), (3, OTHER, 40), (4, ME, 41)] {
            let now = since + secs(at);
            let spec = match decide(observed.as_ref(), who, &settings, now, wall(at as i64)) {
                Step::Create(spec) | Step::Acquire(spec) | Step::Renew(spec) => spec,
                wait => panic!("step {step}: {wait:?}"),
            };
            terms.push(spec.lease_transitions);
            let spec = if step == 3 { released(&spec, OTHER, wall(at as i64)).unwrap() } else { spec };
            observed = Some(Observed::next(observed, spec, now));
        }
        assert_eq!(terms, [Some(0), Some(0), Some(0), Some(1), Some(2)]);
    }

    #[test]
    fn a_released_lease_is_taken_at_once_and_only_its_holder_releases_it() {
        let since = Instant::now();
        let held = mk_spec(Some(OTHER), 3, 15);
        assert_eq!(released(&held, ME, wall(1)), None);
        let free = released(&held, OTHER, wall(1)).unwrap();
        assert_eq!((free.holder_identity.as_deref(), free.lease_transitions), (None, Some(3)));
        let observed = Observed { spec: free, since };
        let Step::Acquire(spec) = decide(Some(&observed), ME, &mk_settings(), since, wall(2)) else {
            panic!("not acquired");
        };
        assert_eq!(spec.lease_transitions, Some(4));
    }

    #[test]
    fn the_right_to_act_lapses_at_the_last_renewal_sent_plus_the_renew_deadline() {
        let sent = Instant::now();
        let term = Term { transitions: 3, identity: ME.to_string() };
        let lead = Lead::new(term.clone(), sent, &mk_settings());
        assert_eq!(lead.acting(sent), Some(&term));
        assert_eq!(lead.acting(sent + secs(10) - Duration::from_millis(1)), Some(&term));
        assert_eq!(lead.acting(sent + secs(10)), None);
        // Before the lease (15 s, counted by the others from after they saw the write) expires.
        assert!(lead.acting_until < sent + mk_settings().lease_duration);
    }
}
