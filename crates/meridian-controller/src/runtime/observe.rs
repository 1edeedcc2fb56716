//! Observing: health evaluations for the units the engine watches (`watch::health_requests`)
//! and read-backs of the units Meridian moved, both delivered to the decision loop as events.
//! Must not decide or write state.

use super::*;

impl Controller {
    /// Evaluate every plan's checks on its interval, for the units under watch.
    pub(super) async fn health_loop(self: Arc<Self>) {
        let mut next: HashMap<String, tokio::time::Instant> = HashMap::new();
        loop {
            let snapshot = self.snapshot();
            let now_instant = tokio::time::Instant::now();
            let mut soonest = now_instant + Duration::from_secs(1);
            for (name, entry) in &snapshot.plans {
                if entry.plan.health.checks.is_empty() {
                    continue;
                }
                let interval = Duration::from_millis(entry.plan.health.interval.as_millis().max(100));
                let due = *next.get(name).unwrap_or(&now_instant);
                if due > now_instant {
                    soonest = soonest.min(due);
                    continue;
                }
                next.insert(name.clone(), now_instant + interval);
                soonest = soonest.min(now_instant + interval);
                let requests = meridian_core::watch::health_requests(&entry.plan, &entry.state, self.now());
                if requests.is_empty() {
                    continue;
                }
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
            tokio::time::sleep_until(soonest).await;
        }
    }

    /// Read back the traffic of units that should serve some, to detect drift.
    pub(super) async fn readback_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.settings.readback_interval);
        tick.tick().await;
        loop {
            tick.tick().await;
            let snapshot = self.snapshot();
            for (name, entry) in &snapshot.plans {
                let mut readings = Vec::new();
                for u in meridian_core::watch::readback_units(&entry.state) {
                    let target = Target { plan: name.clone(), region: u.region.clone(), service: u.service.clone() };
                    let read_at = self.now();
                    if let Ok(Some(percent)) = self.adapters.actuator.read_traffic(&entry.plan, &target).await {
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
        }
    }
}
