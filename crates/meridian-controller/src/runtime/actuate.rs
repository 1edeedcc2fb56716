//! Actuating: one worker per target sends the intents it is handed, newest first, in order,
//! with retries, at most `Settings::max_actuations` sends at a time across all targets;
//! recovery at start resolves open intents by reading targets back; a reconciler re-dispatches
//! intents whose worker is gone. Must not decide: it carries out committed intents only, and
//! is handed them (a burst of thousands does not read every open intent once per send).

use super::*;

impl Controller {
    pub(super) fn plan(&self, name: &str) -> Option<Arc<Plan>> {
        self.plans.read().ok().and_then(|p| p.get(name).cloned())
    }

    /// Hand a committed intent to its target's worker, starting one if none runs. A worker busy
    /// with an older intent sends this one next; one still waiting is replaced (the newer
    /// intent superseded it in the store).
    pub(super) fn dispatch(self: &Arc<Self>, intent: Intent) {
        self.hand_over(intent, true);
    }

    /// Whether an actuation of `target` is in flight (a worker runs for it); a poisoned lock
    /// says yes, so a doubtful reading is not used.
    pub(super) fn actuating(&self, target: &Target) -> bool {
        self.inflight.lock().map(|m| m.contains_key(target)).unwrap_or(true)
    }

    /// Start a worker for `intent` unless one runs for its target (then `replace` says whether
    /// the intent waits as its next); the check and the start are one step, so a reconciler
    /// and the decision loop cannot both start one.
    fn hand_over(self: &Arc<Self>, intent: Intent, replace: bool) {
        let target =
            Target { plan: intent.plan.clone(), region: intent.region.clone(), service: intent.service.clone() };
        let first = match self.inflight.lock() {
            Ok(mut map) => match map.get_mut(&target) {
                Some(next) => {
                    if replace && next.replace(intent).is_none() {
                        self.metrics.open_intents.inc();
                    }
                    None
                }
                None => {
                    map.insert(target.clone(), None);
                    Some(intent)
                }
            },
            Err(_) => None,
        };
        let Some(first) = first else { return };
        self.metrics.open_intents.inc();
        let me = self.clone();
        let work_target = target.clone();
        let problem = format!("actuation worker for {}/{}/{}", target.plan, target.region, target.service);
        let clear = problem.clone();
        // A worker that panics must not leave its target "in flight" forever: it is let go,
        // so the reconciler dispatches its open intent again.
        self.spawn_watched(
            "actuation worker",
            problem,
            async move { me.actuation_worker(work_target, first).await },
            {
                move |me, panicked| {
                    if panicked {
                        if let Ok(mut map) = me.inflight.lock() {
                            map.remove(&target);
                        }
                    } else {
                        me.problems.clear(&clear);
                    }
                }
            },
        );
    }

    /// Send `intent`, then each newer one handed over meanwhile, until none is left; in order,
    /// one at a time, each attempt holding one of the `max_actuations` slots.
    pub(super) async fn actuation_worker(self: Arc<Self>, target: Target, intent: Intent) {
        let mut delay = self.settings.intent_retry;
        let mut current = intent;
        loop {
            let retry = match self.actuation_slots.clone().acquire_owned().await {
                Ok(_slot) => matches!(self.send_intent(&current).await, Err(true)),
                Err(_) => return, // closed only when the controller is dropped
            };
            if retry {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(60));
            } else {
                delay = self.settings.intent_retry;
            }
            // A newer intent handed over meanwhile goes next (it superseded this one).
            let Ok(mut map) = self.inflight.lock() else { return };
            match map.get_mut(&target).and_then(Option::take) {
                Some(next) => current = next,
                None if retry => {}
                None => {
                    map.remove(&target);
                    return;
                }
            }
        }
    }

    /// One attempt (with the actuator's own retries). `Err(true)`: try again later.
    pub(super) async fn send_intent(&self, intent: &Intent) -> Result<(), bool> {
        let Some(plan) = self.plan(&intent.plan) else {
            let store = self.store();
            let id = intent.id;
            let now = self.now();
            let written = blocking(move || {
                store.complete(id, IntentOutcome::Failed { error: "plan no longer configured".into() }, now)
            })
            .await;
            if let Err(e) = written {
                self.store_write_failed("complete_intent", &e);
            }
            return Err(false);
        };
        let target =
            Target { plan: intent.plan.clone(), region: intent.region.clone(), service: intent.service.clone() };
        let store = self.store();
        let (id, now) = (intent.id, self.now());
        match blocking(move || store.mark_sending(id, now)).await {
            Ok(true) => {}
            // Superseded or closed since it was handed over (a reconciler's stale read): the
            // newer intent, or none, is what the target must get.
            Ok(false) => {
                self.metrics.open_intents.dec();
                return Err(false);
            }
            // Sending anyway is safe (the key makes it idempotent); the record says open.
            Err(e) => self.store_write_failed("mark_intent_sent", &e),
        }
        let started = std::time::Instant::now();
        let result = self.adapters.actuator.set_traffic(&plan, &target, intent.percent, &intent.idempotency_key).await;
        let elapsed = started.elapsed().as_secs_f64();
        let store = self.store();
        let now = self.now();
        match result {
            Ok(()) => {
                self.metrics.actuation_duration.with_label_values(&["ok"]).observe(elapsed);
                self.metrics.open_intents.dec();
                let percent = intent.percent;
                match blocking(move || store.complete(id, IntentOutcome::Done { observed: percent }, now)).await {
                    Ok(()) => self.problems.clear(key::STORE),
                    // Stays open, so the reconciler sends it again (idempotently) and retries.
                    Err(e) => self.store_write_failed("complete_intent", &e),
                }
                self.confirmed(intent, now);
                Ok(())
            }
            Err(e) => {
                self.metrics.actuation_duration.with_label_values(&["error"]).observe(elapsed);
                self.metrics.actuation_errors.with_label_values(&[e.label]).inc();
                log(
                    Level::Warn,
                    "actuation",
                    &format!(
                        "actuation {}/{}/{} -> {}% failed: {}",
                        target.plan, target.region, target.service, intent.percent, e.message
                    ),
                );
                if e.retryable {
                    return Err(true);
                }
                self.metrics.open_intents.dec();
                let error = e.message.clone();
                if let Err(e) = blocking(move || store.complete(id, IntentOutcome::Failed { error }, now)).await {
                    self.store_write_failed("complete_intent", &e);
                }
                Err(false)
            }
        }
    }

    /// Startup: every open intent is resolved by reading its target back first: already
    /// applied → done; otherwise sent again with the same idempotency key. Never guessed.
    pub(super) async fn recover(self: &Arc<Self>) {
        let store = self.store();
        let open = match blocking(move || store.open_intents()).await {
            Ok(open) => open,
            Err(e) => {
                self.store_write_failed("read_open_intents", &e);
                return;
            }
        };
        for intent in open {
            let Some(plan) = self.plan(&intent.plan) else { continue };
            let target =
                Target { plan: intent.plan.clone(), region: intent.region.clone(), service: intent.service.clone() };
            match self.adapters.actuator.read_traffic(&plan, &target).await {
                Ok(Some(observed)) if observed == intent.percent => {
                    let store = self.store();
                    let (id, now) = (intent.id, self.now());
                    if let Err(e) = blocking(move || store.complete(id, IntentOutcome::Done { observed }, now)).await {
                        self.store_write_failed("complete_intent", &e);
                    }
                    // When it was applied is unknown; the hold restarts now, which never shortens it.
                    self.confirmed(&intent, now);
                    self.record_event(
                        "intent-recovered",
                        "controller",
                        serde_json::json!({"intent": intent.id, "plan": intent.plan, "region": intent.region,
                            "service": intent.service, "percent": intent.percent, "resolution": "already applied"}),
                    );
                }
                other => {
                    let observed = other.as_ref().ok().cloned().flatten();
                    self.record_event(
                        "intent-recovered",
                        "controller",
                        serde_json::json!({"intent": intent.id, "plan": intent.plan, "region": intent.region,
                            "service": intent.service, "percent": intent.percent, "observed": observed,
                            "resolution": "re-sent"}),
                    );
                    self.dispatch(intent);
                }
            }
        }
    }

    /// Re-dispatch open intents whose worker is not running (e.g. after a retryable failure
    /// of the read-back at startup). Its read may be stale by the time it hands an intent
    /// over: the worker sends nothing the store no longer holds open (`mark_sending`).
    pub(super) async fn intent_reconciler(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.settings.intent_retry.max(Duration::from_millis(200)) * 5);
        loop {
            tick.tick().await;
            let store = self.store();
            let Ok(open) = blocking(move || store.open_intents()).await else { continue };
            self.metrics.open_intents.set(open.len() as i64);
            for intent in open {
                self.hand_over(intent, false);
            }
        }
    }

    /// Tell the decision loop a target confirmed an actuation, so the step's hold starts then.
    pub(super) fn confirmed(&self, intent: &Intent, at: DateTime<Utc>) {
        let confirmation = Confirmation {
            region: intent.region.clone(),
            service: intent.service.clone(),
            percent: intent.percent,
            at,
        };
        let _ = self.events.send(Event::Confirmed { plan: intent.plan.clone(), confirmation });
    }
}
