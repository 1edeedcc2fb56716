//! Observing: health evaluations for the units the engine watches (`watch::health_requests`)
//! and read-backs of the units Meridian moved, both delivered to the decision loop as events.
//! Must not decide or write state.

use super::*;

impl Controller {
    /// Evaluate every plan's checks on its interval, for the units under watch. A plan with
    /// nothing under watch costs nothing until a new snapshot is published.
    ///
    /// Plans with the same interval are evaluated at the same ticks (multiples of the interval
    /// since the loop started; a plan's first evaluation is at once, the next at the first
    /// tick at least half an interval later), all with the tick's `now`: a health source sends
    /// a query that many plans render alike once per tick.
    pub(super) async fn health_loop(self: Arc<Self>) {
        let mut next: HashMap<String, tokio::time::Instant> = HashMap::new();
        let mut published = self.published.subscribe();
        let origin = tokio::time::Instant::now();
        loop {
            published.borrow_and_update();
            let snapshot = self.snapshot();
            let now_instant = tokio::time::Instant::now();
            let now = self.now();
            let mut soonest: Option<tokio::time::Instant> = None;
            next.retain(|name, _| snapshot.plans.contains_key(name));
            for (name, entry) in &snapshot.plans {
                if entry.plan.health.checks.is_empty() {
                    continue;
                }
                let interval = Duration::from_millis(entry.plan.health.interval.as_millis().max(100));
                let due = *next.get(name).unwrap_or(&now_instant);
                if due > now_instant {
                    soonest = soonest.into_iter().chain([due]).min();
                    continue;
                }
                let requests = meridian_core::watch::health_requests(&entry.plan, &entry.state, now);
                if requests.is_empty() {
                    // What is under watch depends on the state alone: nothing until it changes.
                    next.remove(name);
                    continue;
                }
                // The first tick at least half an interval away: consecutive evaluations (which
                // `failureLimit` counts) stay about an interval apart.
                let elapsed = now_instant - origin + interval / 2;
                let ticks = elapsed.as_nanos() / interval.as_nanos().max(1) + 1;
                let due = origin + interval * u32::try_from(ticks).unwrap_or(u32::MAX);
                next.insert(name.clone(), due);
                soonest = soonest.into_iter().chain([due]).min();
                // At most one evaluation per plan in flight: a slow source is not piled onto.
                let free = self.health_inflight.lock().is_ok_and(|mut busy| busy.insert(name.clone()));
                if !free {
                    continue;
                }
                let me = self.clone();
                let plan = entry.plan.clone();
                let problem = format!("health evaluation of plan {name}");
                let clear = problem.clone();
                let done = name.clone();
                let work = async move {
                    let (mut samples, mut faults) = (Vec::new(), Vec::new());
                    for request in &requests {
                        let evaluation = me.adapters.health.evaluate(&plan, request).await;
                        samples.extend(evaluation.samples);
                        faults.extend(evaluation.errors);
                    }
                    let _ = me.events.send(Event::Health { plan: plan.name.clone(), samples, faults });
                };
                self.spawn_watched("health evaluation", problem, work, move |me, panicked| {
                    if let Ok(mut busy) = me.health_inflight.lock() {
                        busy.remove(&done);
                    }
                    if !panicked {
                        me.problems.clear(&clear);
                    }
                });
            }
            let timer = async {
                match soonest {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = timer => {}
                changed = published.changed() => if changed.is_err() { return },
            }
        }
    }

    /// Read back the traffic of units Meridian moved, to detect drift: each plan once per
    /// interval, the plans spread evenly over it (not all at once). Only readings that may
    /// change a decision (`watch::Readback::matters`) wake the decision loop, so a fleet that
    /// serves what it should costs a read per unit and nothing more.
    pub(super) async fn readback_loop(self: Arc<Self>) {
        let interval = self.settings.readback_interval;
        let mut round = tokio::time::Instant::now() + interval;
        loop {
            tokio::time::sleep_until(round).await;
            let names: Vec<String> = self
                .snapshot()
                .plans
                .iter()
                .filter(|(_, e)| meridian_core::watch::readback_units(&e.state).next().is_some())
                .map(|(name, _)| name.clone())
                .collect();
            let gap = interval / u32::try_from(names.len().max(1)).unwrap_or(u32::MAX);
            for (k, name) in names.iter().enumerate() {
                tokio::time::sleep_until(round + gap * u32::try_from(k).unwrap_or(u32::MAX)).await;
                // The state as published now, not at the start of the round.
                let snapshot = self.snapshot();
                let Some(entry) = snapshot.plans.get(name) else { continue };
                let mut readings = Vec::new();
                for read in meridian_core::watch::readback_units(&entry.state) {
                    let u = read.unit;
                    let target = Target { plan: name.clone(), region: u.region.clone(), service: u.service.clone() };
                    // A reading taken while an actuation of its target was in flight (when it
                    // began or when it ended) may show the traffic before that change: not used.
                    let read_at = self.now();
                    let busy_before = self.actuating(&target);
                    if let Ok(Some(percent)) = self.adapters.actuator.read_traffic(&entry.plan, &target).await
                        && !busy_before
                        && !self.actuating(&target)
                        && read.matters(percent)
                    {
                        readings.push((
                            TrafficReading { region: u.region.clone(), service: u.service.clone(), percent },
                            read_at,
                        ));
                    }
                }
                if !readings.is_empty() {
                    let _ = self.events.send(Event::Readings { plan: name.clone(), readings });
                }
            }
            // A round that took longer than the interval (slow targets) starts the next at once.
            round = (round + interval).max(tokio::time::Instant::now());
        }
    }
}
