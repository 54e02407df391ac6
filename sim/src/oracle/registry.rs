//! Registry oracles (SR1, SR2) judged on the registry's own events, and SR3, judged on the
//! registry's events and the gateway's calls.
//!
//! The oracles keep, per (registry host, instance id), the instant of its last pass (its
//! `instance_registered` or latest `heartbeat`), its TTL (`ttl_ms` of the registration) and
//! whether its current critical period was reported (`instance_critical`). An
//! `instance_deregistered` forgets it. The registry keeps its catalog in memory: a
//! `registry_started` on the host, or a crash or restart of the host injected by the harness
//! (`fault_injected` kind `crash` | `restart`), forgets every instance of that registry; the
//! agents register again.
//! - SR1: an instance whose last pass is older than TTL + one tick is reported critical by then.
//!   The tick is the scheduler's step, `tick_us` of the host's `registry_started` (0 if none was
//!   seen): the registry's expiry timer fires at the TTL, at most one step late. A registry that
//!   is itself stopped or held by a fault cannot report anything: run SR1 only where the
//!   registry host stays up, or accept that a fault against it is an SR1 violation.
//! - SR2: every instance listed by a `discovery` (its `instances` field) is registered on that
//!   registry and passing at that instant: last pass + TTL strictly later (a registry computes
//!   health from time, so there is no slack here).
//!
//! - SR3: every call the gateway routes to an instance (`backend_call`, field `instance`) is
//!   made while the registry holds that instance passing: before its latest pass + TTL, as the
//!   registry knew it at that instant. The gateway serves discovery answers from a cache, but
//!   each instance in it for no longer than the `expires_in_ms` the registry gave it, counted
//!   from the request's send (`services::registry::cache`), so no cache excuses a later call.
//!   A registry restart does not forget for SR3: a cache filled before it still holds the
//!   instance for no longer than its last pass + TTL, which is what is judged. An instance the
//!   registry never registered may not be called at all.
//!
//! The planted bug `RegistryConfig::planted_discovers_critical` lists critical instances: SR2.
//! The planted bug `DiscoveryConfig::planted_cache_ignores_instance_ttl` serves cached instances
//! past their TTL: SR3.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{FirstViolation, Oracle, Violation};
use crate::trace::{HARNESS_HOST, TraceEvent};

/// Every oracle of this family, unconfigured: their parameters come from the events. `pub`
/// rather than `pub(crate)` until `for_scenario` wires them in (a crate-private function nobody
/// calls yet would be dead code).
pub(crate) fn oracles() -> Vec<Box<dyn Oracle>> {
    vec![
        Box::new(RegistryOracle::new(Rule::CriticalInTime)),
        Box::new(RegistryOracle::new(Rule::DiscoverPassingOnly)),
        Box::new(RoutedPassingOnly::default()),
    ]
}

/// SR3: the gateway calls only instances the registry holds passing at that instant.
#[derive(Debug, Default)]
struct RoutedPassingOnly {
    /// Instance id → its latest pass and TTL, as the registry last knew them (kept across
    /// registry restarts and deregistrations: see the module docs).
    passes: BTreeMap<String, (Duration, Duration)>,
    first: FirstViolation,
}

impl Oracle for RoutedPassingOnly {
    fn id(&self) -> &'static str {
        "SR3"
    }
    fn statement(&self) -> &'static str {
        "the gateway never calls an instance the registry holds critical, its discovery cache included"
    }
    fn on_event(&mut self, e: &TraceEvent) {
        match e.name.as_str() {
            "instance_registered" => {
                let ttl_ms = e
                    .field_u64("ttl_ms")
                    .unwrap_or_else(|| panic!("instance_registered without ttl_ms: {e}"));
                self.passes.insert(
                    e.required("instance").to_owned(),
                    (e.t, Duration::from_millis(ttl_ms)),
                );
            }
            "heartbeat" => {
                if let Some((last_pass, _)) = self.passes.get_mut(e.required("instance")) {
                    *last_pass = e.t;
                }
            }
            "backend_call" => {
                let id = e.required("instance");
                let fault = match self.passes.get(id) {
                    None => Some("never registered".to_owned()),
                    Some(&(last_pass, ttl)) if e.t >= last_pass + ttl => Some(format!(
                        "critical since {:?} (last pass {last_pass:?}, TTL {ttl:?})",
                        last_pass + ttl
                    )),
                    Some(_) => None,
                };
                if let Some(fault) = fault {
                    let upstream = e.required("upstream");
                    self.first.record(e.t, || {
                        format!("{}: called {upstream} instance {id}, {fault}", e.host)
                    });
                }
            }
            _ => {}
        }
    }
    fn finish(&mut self, _end: Duration) -> Option<Violation> {
        self.first.take()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    CriticalInTime,
    DiscoverPassingOnly,
}

#[derive(Debug, Clone)]
struct Instance {
    service: String,
    last_pass: Duration,
    ttl: Duration,
    reported_critical: bool,
}

impl Instance {
    fn critical_since(&self) -> Duration {
        self.last_pass + self.ttl
    }
}

struct RegistryOracle {
    rule: Rule,
    /// (registry host, instance id) → state.
    instances: BTreeMap<(String, String), Instance>,
    /// Registry host → its tick.
    ticks: BTreeMap<String, Duration>,
    first: FirstViolation,
}

impl RegistryOracle {
    fn new(rule: Rule) -> RegistryOracle {
        RegistryOracle {
            rule,
            instances: BTreeMap::new(),
            ticks: BTreeMap::new(),
            first: FirstViolation::default(),
        }
    }

    fn forget_host(&mut self, host: &str) {
        self.instances.retain(|(h, _), _| h != host);
    }

    /// SR1 at `now`: the earliest unreported instance past its TTL + tick.
    fn check_deadlines(&mut self, now: Duration) {
        if self.rule != Rule::CriticalInTime {
            return;
        }
        let late = self
            .instances
            .iter()
            .filter(|(_, i)| !i.reported_critical)
            .map(|((host, id), i)| {
                let tick = self.ticks.get(host).copied().unwrap_or_default();
                (i.critical_since() + tick, host, id, i)
            })
            .filter(|(deadline, ..)| *deadline < now)
            .min_by_key(|(deadline, ..)| *deadline);
        if let Some((deadline, host, id, instance)) = late {
            let detail = format!(
                "{host}: instance {id} of {} last passed at {:?} (TTL {:?}) and was not reported critical by {deadline:?}",
                instance.service, instance.last_pass, instance.ttl
            );
            self.first.record(deadline, || detail);
        }
    }
}

impl Oracle for RegistryOracle {
    fn id(&self) -> &'static str {
        match self.rule {
            Rule::CriticalInTime => "SR1",
            Rule::DiscoverPassingOnly => "SR2",
        }
    }
    fn statement(&self) -> &'static str {
        match self.rule {
            Rule::CriticalInTime => {
                "an instance whose heartbeats stop turns critical within TTL plus one tick"
            }
            Rule::DiscoverPassingOnly => {
                "discovery never returns a critical or deregistered instance"
            }
        }
    }
    fn on_event(&mut self, e: &TraceEvent) {
        self.check_deadlines(e.t);
        let host = e.host.clone();
        match e.name.as_str() {
            "registry_started" => {
                self.forget_host(&host);
                let tick_us = e.field_u64("tick_us").unwrap_or(0);
                self.ticks.insert(host, Duration::from_micros(tick_us));
            }
            "fault_injected" if e.host == HARNESS_HOST => {
                if matches!(e.field("kind"), Some("crash" | "restart"))
                    && let Some(target) = e.field("target")
                {
                    self.forget_host(target);
                }
            }
            "instance_registered" => {
                let ttl_ms = e
                    .field_u64("ttl_ms")
                    .unwrap_or_else(|| panic!("instance_registered without ttl_ms: {e}"));
                self.instances.insert(
                    (host, e.required("instance").to_owned()),
                    Instance {
                        service: e.required("service").to_owned(),
                        last_pass: e.t,
                        ttl: Duration::from_millis(ttl_ms),
                        reported_critical: false,
                    },
                );
            }
            "heartbeat" | "instance_critical" => {
                let key = (host, e.required("instance").to_owned());
                if let Some(instance) = self.instances.get_mut(&key) {
                    if e.name == "heartbeat" {
                        instance.last_pass = e.t;
                        instance.reported_critical = false;
                    } else {
                        instance.reported_critical = true;
                    }
                }
            }
            "instance_deregistered" => {
                self.instances
                    .remove(&(host, e.required("instance").to_owned()));
            }
            "discovery" if self.rule == Rule::DiscoverPassingOnly => {
                let service = e.required("service").to_owned();
                for id in e.required("instances").split(',').filter(|s| !s.is_empty()) {
                    let fault = match self.instances.get(&(host.clone(), id.to_owned())) {
                        None => Some("not registered (never, or deregistered)".to_owned()),
                        Some(i) if e.t >= i.critical_since() => Some(format!(
                            "critical since {:?} (last pass {:?}, TTL {:?})",
                            i.critical_since(),
                            i.last_pass,
                            i.ttl
                        )),
                        Some(_) => None,
                    };
                    if let Some(fault) = fault {
                        self.first.record(e.t, || {
                            format!("{host}: discovery of {service} returned {id}, {fault}")
                        });
                    }
                }
            }
            _ => {}
        }
    }
    fn finish(&mut self, end: Duration) -> Option<Violation> {
        self.check_deadlines(end);
        self.first.take()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use services::registry::{InstanceSpec, RegistryConfig, RegistryCore, RegistryRequest};

    use super::*;
    use crate::trace::{Trace, TraceSubscriber};

    fn event(t_ms: u64, name: &str, fields: &[(&str, &str)]) -> TraceEvent {
        TraceEvent {
            t: Duration::from_millis(t_ms),
            host: "registry".to_owned(),
            name: name.to_owned(),
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn judge(id: &str, events: &[TraceEvent], end_ms: u64) -> Option<Violation> {
        let mut oracle = oracles()
            .into_iter()
            .find(|o| o.id() == id)
            .expect("known id");
        events.iter().for_each(|e| oracle.on_event(e));
        oracle.finish(Duration::from_millis(end_ms))
    }

    fn started(t: u64) -> TraceEvent {
        event(
            t,
            "registry_started",
            &[("port", "8500"), ("tick_us", "1000")],
        )
    }

    fn registered(t: u64, id: &str) -> TraceEvent {
        event(
            t,
            "instance_registered",
            &[("service", "orders"), ("instance", id), ("ttl_ms", "300")],
        )
    }

    fn named(t: u64, name: &str, id: &str) -> TraceEvent {
        event(t, name, &[("service", "orders"), ("instance", id)])
    }

    fn discovery(t: u64, instances: &str) -> TraceEvent {
        event(
            t,
            "discovery",
            &[("service", "orders"), ("instances", instances)],
        )
    }

    fn correct_history() -> Vec<TraceEvent> {
        vec![
            started(0),
            registered(0, "a"),
            registered(0, "b"),
            named(100, "heartbeat", "a"),
            named(200, "heartbeat", "a"),
            discovery(299, "a,b"),
            // b stops: critical at 300, reported one tick late at the latest.
            named(301, "instance_critical", "b"),
            discovery(302, "a"),
            named(350, "heartbeat", "b"),
            discovery(400, "a,b"),
            named(450, "instance_deregistered", "a"),
            named(500, "heartbeat", "b"),
            // A registry restart forgets everything; b registers again.
            started(600),
            discovery(601, ""),
            registered(700, "b"),
            named(950, "heartbeat", "b"),
        ]
    }

    // Goal: SR1 and SR2 hold on a correct registry history (heartbeats, a late-but-in-tick
    // critical report, a come-back, a deregistration, a restart) and fail on their violations
    // at the right time (positive and negative space). Method: hand-written events.
    fn call(t: u64, instance: &str) -> TraceEvent {
        TraceEvent {
            host: "gateway".to_owned(),
            ..event(
                t,
                "backend_call",
                &[("upstream", "orders"), ("instance", instance)],
            )
        }
    }

    // Goal: SR3 holds while every call goes to an instance before its last pass + TTL, across
    // a registry restart, and fails on a call at or after it, or to an instance never
    // registered (positive and negative space). Method: hand-written events, TTL 300 ms.
    #[test]
    fn sr3_judges_calls_against_each_instances_last_pass() {
        let passing = vec![
            started(0),
            registered(0, "a"),
            call(299, "a"),
            named(250, "heartbeat", "a"),
            call(549, "a"),
            // The registry restarts and forgets a; a cache filled before may still hold it.
            started(560),
            call(560, "a"),
        ];
        assert_eq!(judge("SR3", &passing, 1000), None);
        let late = vec![started(0), registered(0, "a"), call(300, "a")];
        let violation = judge("SR3", &late, 1000).expect("caught");
        assert_eq!(violation.t, Duration::from_millis(300));
        assert!(
            violation
                .detail
                .contains("called orders instance a, critical since 300ms"),
            "{}",
            violation.detail
        );
        let ghost = judge("SR3", &[started(0), call(5, "ghost")], 1000).expect("caught");
        assert!(
            ghost.detail.contains("never registered"),
            "{}",
            ghost.detail
        );
    }

    #[test]
    fn judges_each_rule() {
        for id in ["SR1", "SR2", "SR3"] {
            assert_eq!(judge(id, &correct_history(), 1000), None, "{id}");
        }
        // SR1: b's TTL runs out at 300 and nothing is reported by 301 (300 + the tick).
        let silent = vec![started(0), registered(0, "b"), discovery(400, "")];
        let violation = judge("SR1", &silent, 1000).expect("caught");
        assert_eq!(violation.t, Duration::from_millis(301));
        assert!(
            violation.detail.contains("instance b"),
            "{}",
            violation.detail
        );
        // Also at the end of the run, with no later event.
        let violation = judge("SR1", &[started(0), registered(0, "b")], 1000).expect("caught");
        assert_eq!(violation.t, Duration::from_millis(301));
        // A crash of the registry host forgets its instances: no report is owed.
        let crashed = vec![
            started(0),
            registered(0, "b"),
            TraceEvent {
                t: Duration::from_millis(100),
                host: HARNESS_HOST.to_owned(),
                name: "fault_injected".to_owned(),
                fields: vec![
                    ("kind".to_owned(), "crash".to_owned()),
                    ("target".to_owned(), "registry".to_owned()),
                ],
            },
        ];
        assert_eq!(judge("SR1", &crashed, 1000), None);

        let cases: [(Vec<TraceEvent>, &str); 3] = [
            (
                vec![started(0), registered(0, "b"), discovery(300, "b")],
                "critical since",
            ),
            (
                vec![
                    started(0),
                    registered(0, "b"),
                    named(10, "instance_deregistered", "b"),
                    discovery(20, "b"),
                ],
                "not registered",
            ),
            (vec![started(0), discovery(20, "ghost")], "not registered"),
        ];
        for (events, expected) in cases {
            let violation = judge("SR2", &events, 1000).expect(expected);
            assert!(violation.detail.contains(expected), "{}", violation.detail);
            assert_eq!(violation.t, events.last().expect("events").t);
        }
    }

    // Goal: SR2 catches the real planted registry on the events it emits. Method: drive a
    // `RegistryCore` (planted and correct) under the simulator's trace subscriber: register two
    // instances with a 3 s TTL, heartbeat one, tick at the other's expiry as the shell does,
    // discover at 4 s; the recorded events are
    // re-stamped with the core's times (the core takes time as an argument) and judged.
    #[test]
    fn catches_the_planted_registry_on_its_real_trace() {
        let run = |planted: bool| {
            let trace = Arc::new(Mutex::new(Trace::default()));
            let mut stamps = Vec::new();
            tracing::subscriber::with_default(TraceSubscriber::new(trace.clone()), || {
                let mut core = RegistryCore::new(RegistryConfig {
                    planted_discovers_critical: planted,
                    ..RegistryConfig::default()
                });
                let s = Duration::from_secs(1);
                for id in ["a", "b"] {
                    core.handle(
                        Duration::ZERO,
                        RegistryRequest::Register {
                            instance: InstanceSpec {
                                service: "orders".into(),
                                instance_id: id.into(),
                                host: id.into(),
                                port: 9000,
                            },
                            ttl_ms: 3000,
                            deregister_critical_after_ms: 60_000,
                        },
                    );
                }
                stamps.push((trace.lock().expect("trace").events().len(), Duration::ZERO));
                core.handle(
                    2 * s,
                    RegistryRequest::Heartbeat {
                        instance_id: "a".into(),
                    },
                );
                stamps.push((trace.lock().expect("trace").events().len(), 2 * s));
                // The shell's expiry timer, at b's TTL.
                core.tick(3 * s);
                stamps.push((trace.lock().expect("trace").events().len(), 3 * s));
                core.discover(4 * s, "orders");
                stamps.push((trace.lock().expect("trace").events().len(), 4 * s));
            });
            let mut events = trace.lock().expect("trace").events().to_vec();
            let mut from = 0;
            for (upto, t) in stamps {
                for event in &mut events[from..upto] {
                    event.t = t;
                    event.host = "registry".to_owned();
                }
                from = upto;
            }
            events
        };
        for id in ["SR1", "SR2"] {
            assert_eq!(judge(id, &run(false), 4000), None, "{id}");
        }
        let violation = judge("SR2", &run(true), 4000).expect("the planted registry is caught");
        assert!(
            violation.detail.contains("returned b, critical since 3s"),
            "{}",
            violation.detail
        );
    }
}
