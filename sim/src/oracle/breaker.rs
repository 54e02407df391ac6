//! Circuit-breaker oracles (CB1–CB3), judged on the breakers' own events.
//!
//! Several breakers can live on one host (one per upstream), so every breaker is keyed by
//! (host, `breaker` name). The oracles track each breaker's state from its `breaker_transition`
//! events alone — never from the `state` an admission claims — starting closed (a breaker is
//! built closed) and again closed when the gateway on that host restarts (`gateway_started`:
//! breakers live in its memory; the gateway is the only owner of breakers).
//! - CB1: in one half-open period, the `breaker_admitted` events number at most the
//!   `half_open_permitted` (N) they carry; an `ignored` `breaker_outcome` gives a permit back
//!   (resilience4j's `releasePermission`).
//! - CB2: no `breaker_admitted` while the breaker is open.
//! - CB3: every `breaker_transition` is one of closed → open, open → half-open, half-open →
//!   open, half-open → closed, and starts from the state the breaker is in.
//!
//! The planted bug `BreakerConfig::planted_admits_while_open` admits calls while open: CB2.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{FirstViolation, Oracle, Violation};
use crate::trace::TraceEvent;

/// Every oracle of this family, unconfigured: their parameters come from the events. `pub`
/// rather than `pub(crate)` until `for_scenario` wires them in (a crate-private function nobody
/// calls yet would be dead code).
pub(crate) fn oracles() -> Vec<Box<dyn Oracle>> {
    vec![
        Box::new(BreakerOracle::new(Rule::HalfOpenPermits)),
        Box::new(BreakerOracle::new(Rule::NothingWhileOpen)),
        Box::new(BreakerOracle::new(Rule::LegalTransitions)),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    HalfOpenPermits,
    NothingWhileOpen,
    LegalTransitions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    fn parse(text: &str) -> Option<State> {
        match text {
            "closed" => Some(State::Closed),
            "open" => Some(State::Open),
            "half_open" => Some(State::HalfOpen),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Breaker {
    state: State,
    /// Calls admitted in the current half-open period, net of permits given back.
    half_open_admitted: u64,
}

impl Default for Breaker {
    fn default() -> Breaker {
        Breaker {
            state: State::Closed,
            half_open_admitted: 0,
        }
    }
}

/// One of CB1–CB3 (they share the state tracking).
struct BreakerOracle {
    rule: Rule,
    breakers: BTreeMap<(String, String), Breaker>,
    first: FirstViolation,
}

impl BreakerOracle {
    fn new(rule: Rule) -> BreakerOracle {
        BreakerOracle {
            rule,
            breakers: BTreeMap::new(),
            first: FirstViolation::default(),
        }
    }

    fn violation(&mut self, rule: Rule, t: Duration, detail: impl FnOnce() -> String) {
        if rule == self.rule {
            self.first.record(t, detail);
        }
    }
}

impl Oracle for BreakerOracle {
    fn id(&self) -> &'static str {
        match self.rule {
            Rule::HalfOpenPermits => "CB1",
            Rule::NothingWhileOpen => "CB2",
            Rule::LegalTransitions => "CB3",
        }
    }
    fn statement(&self) -> &'static str {
        match self.rule {
            Rule::HalfOpenPermits => "at most N calls admitted in half-open",
            Rule::NothingWhileOpen => "no call through while open",
            Rule::LegalTransitions => "only legal state transitions",
        }
    }
    fn on_event(&mut self, e: &TraceEvent) {
        if e.name == "gateway_started" {
            // The gateway (re)started: its breakers are new, closed.
            let host = e.host.clone();
            self.breakers.retain(|(h, _), _| *h != host);
            return;
        }
        if !matches!(
            e.name.as_str(),
            "breaker_transition" | "breaker_admitted" | "breaker_outcome"
        ) {
            return;
        }
        let Some(name) = e.field("breaker") else {
            panic!("{} event without breaker: {e}", e.name);
        };
        let label = format!("{}/{name}", e.host);
        let key = (e.host.clone(), name.to_owned());
        let breaker = *self.breakers.entry(key.clone()).or_default();
        match e.name.as_str() {
            "breaker_transition" => {
                let (Some(from), Some(to)) = (
                    e.field("from").and_then(State::parse),
                    e.field("to").and_then(State::parse),
                ) else {
                    panic!("breaker_transition without a known from or to: {e}");
                };
                let legal = matches!(
                    (from, to),
                    (State::Closed, State::Open)
                        | (State::Open, State::HalfOpen)
                        | (State::HalfOpen, State::Open)
                        | (State::HalfOpen, State::Closed)
                );
                if !legal {
                    self.violation(Rule::LegalTransitions, e.t, || {
                        format!("breaker {label}: illegal transition {from:?} -> {to:?}")
                    });
                }
                if from != breaker.state {
                    self.violation(Rule::LegalTransitions, e.t, || {
                        format!(
                            "breaker {label}: transition from {from:?} while it was {:?}",
                            breaker.state
                        )
                    });
                }
                self.breakers.insert(
                    key,
                    Breaker {
                        state: to,
                        half_open_admitted: 0,
                    },
                );
            }
            "breaker_admitted" => match breaker.state {
                State::Closed => {}
                State::Open => self.violation(Rule::NothingWhileOpen, e.t, || {
                    format!("breaker {label}: a call admitted while open")
                }),
                State::HalfOpen => {
                    let Some(permitted) = e.field_u64("half_open_permitted") else {
                        panic!("breaker_admitted without half_open_permitted: {e}");
                    };
                    let admitted = breaker.half_open_admitted + 1;
                    self.breakers
                        .get_mut(&key)
                        .expect("inserted above")
                        .half_open_admitted = admitted;
                    if admitted > permitted {
                        self.violation(Rule::HalfOpenPermits, e.t, || {
                            format!(
                                "breaker {label}: {admitted} calls admitted in one half-open period, {permitted} permitted"
                            )
                        });
                    }
                }
            },
            "breaker_outcome" => {
                if breaker.state == State::HalfOpen && e.field("outcome") == Some("ignored") {
                    let tracked = self.breakers.get_mut(&key).expect("inserted above");
                    tracked.half_open_admitted = tracked.half_open_admitted.saturating_sub(1);
                }
            }
            _ => unreachable!("filtered above"),
        }
    }
    fn finish(&mut self, _end: Duration) -> Option<Violation> {
        self.first.take()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use services::resilience::{BreakerConfig, CallResult, CircuitBreaker};

    use super::*;
    use crate::trace::test_event as event;
    use crate::trace::{Trace, TraceSubscriber};

    fn judge(id: &str, events: &[TraceEvent]) -> Option<Violation> {
        let mut oracle = oracles()
            .into_iter()
            .find(|o| o.id() == id)
            .expect("known id");
        events.iter().for_each(|e| oracle.on_event(e));
        oracle.finish(Duration::from_secs(100))
    }

    fn transition(t: u64, breaker: &str, from: &str, to: &str) -> TraceEvent {
        event(
            t,
            "gateway",
            "breaker_transition",
            &[("breaker", breaker), ("from", from), ("to", to)],
        )
    }

    fn admitted(t: u64, breaker: &str) -> TraceEvent {
        event(
            t,
            "gateway",
            "breaker_admitted",
            &[
                ("breaker", breaker),
                ("state", "whatever"),
                ("half_open_permitted", "2"),
            ],
        )
    }

    fn correct_history() -> Vec<TraceEvent> {
        vec![
            admitted(0, "orders"),
            transition(1, "orders", "closed", "open"),
            // Another upstream's breaker on the same host is independent.
            admitted(2, "motion"),
            transition(10, "orders", "open", "half_open"),
            admitted(10, "orders"),
            admitted(11, "orders"),
            event(
                12,
                "gateway",
                "breaker_outcome",
                &[("breaker", "orders"), ("outcome", "ignored")],
            ),
            admitted(13, "orders"),
            transition(14, "orders", "half_open", "open"),
            transition(30, "orders", "open", "half_open"),
            admitted(30, "orders"),
            transition(31, "orders", "half_open", "closed"),
            admitted(32, "orders"),
            // A restart: the breaker is closed again.
            transition(40, "orders", "closed", "open"),
            event(41, "gateway", "gateway_started", &[]),
            admitted(42, "orders"),
        ]
    }

    // Goal: CB1–CB3 hold on a correct history (two breakers on a host, a permit given back, a
    // restart) and each fails on its own violation (positive and negative space). Method:
    // hand-written event sequences.
    #[test]
    fn judges_each_rule() {
        for id in ["CB1", "CB2", "CB3"] {
            assert_eq!(judge(id, &correct_history()), None, "{id}");
        }
        let third_probe = vec![
            transition(1, "orders", "closed", "open"),
            transition(10, "orders", "open", "half_open"),
            admitted(10, "orders"),
            admitted(11, "orders"),
            admitted(12, "orders"),
        ];
        let violation = judge("CB1", &third_probe).expect("CB1 caught");
        assert_eq!(violation.t, Duration::from_millis(12));
        assert!(violation.detail.contains("3 calls"), "{}", violation.detail);
        let while_open = vec![
            transition(1, "orders", "closed", "open"),
            admitted(5, "orders"),
        ];
        let violation = judge("CB2", &while_open).expect("CB2 caught");
        assert_eq!(violation.t, Duration::from_millis(5));
        assert!(violation.detail.contains("gateway/orders"));
        let skipped = vec![transition(1, "orders", "closed", "half_open")];
        assert!(judge("CB3", &skipped).is_some(), "closed -> half_open");
        let wrong_origin = vec![transition(1, "orders", "open", "half_open")];
        let violation = judge("CB3", &wrong_origin).expect("CB3 caught: it was closed");
        assert!(violation.detail.contains("while it was Closed"));
    }

    // Goal: CB2 catches the real planted breaker, on the events the service emits. Method: run
    // a `CircuitBreaker` with `planted_admits_while_open` under the simulator's trace
    // subscriber, open it, make a call during the open wait, and judge the recorded events; the
    // same script on a correct breaker passes every breaker oracle.
    #[test]
    fn catches_the_planted_breaker_on_its_real_trace() {
        let run = |planted: bool| {
            let trace = Arc::new(Mutex::new(Trace::default()));
            tracing::subscriber::with_default(TraceSubscriber::new(trace.clone()), || {
                let ms = Duration::from_millis(1);
                let mut breaker = CircuitBreaker::new(
                    "orders",
                    BreakerConfig {
                        calls_min: 2,
                        window_size_calls: 2,
                        wait_in_open: 1000 * ms,
                        half_open_calls_permitted: 1,
                        planted_admits_while_open: planted,
                        ..BreakerConfig::default()
                    },
                );
                for _ in 0..2 {
                    let permit = breaker.try_acquire(Duration::ZERO).expect("closed");
                    breaker.record(Duration::ZERO, permit, CallResult::Failure);
                }
                if let Ok(permit) = breaker.try_acquire(10 * ms) {
                    breaker.record(10 * ms, permit, CallResult::Success);
                }
                let probe = breaker.try_acquire(1001 * ms).expect("half-open probe");
                breaker.record(1001 * ms, probe, CallResult::Success);
            });
            trace.lock().expect("trace").events().to_vec()
        };
        let correct = run(false);
        for mut oracle in oracles() {
            correct.iter().for_each(|e| oracle.on_event(e));
            assert_eq!(
                oracle.finish(Duration::from_secs(2)),
                None,
                "{}",
                oracle.id()
            );
        }
        let planted = run(true);
        let violation = judge("CB2", &planted).expect("the planted breaker is caught");
        assert!(violation.detail.contains("admitted while open"));
        assert_eq!(judge("CB3", &planted), None);
    }
}
