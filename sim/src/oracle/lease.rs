//! Lease oracle (SG4): at most one live lease per axis, and no move under a stale token.
//!
//! Judged on the motion services' own events. The oracle keeps, per axis, the lease it has seen
//! granted and not yet ended, and the newest token:
//! - `lease_granted` starts a lease; another live lease at that moment, or a token that does
//!   not exceed every earlier one, is a violation;
//! - `lease_renewed` must name the live lease; `lease_expired` and `lease_released` end it and
//!   must name it too;
//! - `motion_started` on a host ends every lease of its axes (leases are in memory only: a
//!   restarted service has none, while its tokens survive on disk);
//! - `move_recording` (the service accepted a move and is making it durable) must carry the
//!   live lease's token: a move with an older token, a token whose lease expired, or no lease
//!   at all, runs under a stale fencing token.
//!
//! The planted bug `[planted] motion_skips_fencing` (a motion service that skips the check)
//! breaks the last rule whenever a lease ends (expiry during a partition or hold, a restart)
//! while its holder still has a move to send; the sweep test shows that it is caught.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{FirstViolation, Oracle, Violation};
use crate::scenario::Scenario;
use crate::trace::TraceEvent;

pub(crate) fn for_scenario(scenario: &Scenario) -> Vec<Box<dyn Oracle>> {
    vec![Box::new(LeaseFencing {
        host_of: scenario
            .axes
            .iter()
            .map(|a| (a.name.clone(), a.motion_host.clone()))
            .collect(),
        axes: BTreeMap::new(),
        first: FirstViolation::default(),
    })]
}

/// SG4.
struct LeaseFencing {
    /// Axis name → the motion host that owns it.
    host_of: BTreeMap<String, String>,
    axes: BTreeMap<String, AxisLeases>,
    first: FirstViolation,
}

#[derive(Debug, Default)]
struct AxisLeases {
    /// (holder, token) of the lease seen granted and not yet ended.
    live: Option<(String, u64)>,
    token_max: u64,
}

impl LeaseFencing {
    fn violation(&mut self, t: Duration, detail: impl FnOnce() -> String) {
        self.first.record(t, detail);
    }
}

impl Oracle for LeaseFencing {
    fn id(&self) -> &'static str {
        "SG4"
    }
    fn statement(&self) -> &'static str {
        "at most one live lease per axis, its tokens only grow, and a move never runs under a stale fencing token"
    }
    fn on_event(&mut self, e: &TraceEvent) {
        if e.name == "motion_started" {
            for (axis, host) in &self.host_of {
                if *host == e.host {
                    self.axes.entry(axis.clone()).or_default().live = None;
                }
            }
            return;
        }
        if !matches!(
            e.name.as_str(),
            "lease_granted"
                | "lease_renewed"
                | "lease_expired"
                | "lease_released"
                | "move_recording"
        ) {
            return;
        }
        let (Some(axis), Some(token)) = (e.field("axis"), e.field_u64("token")) else {
            panic!("{} event without axis or token: {e}", e.name);
        };
        let axis = axis.to_owned();
        let state = self.axes.entry(axis.clone()).or_default();
        let live = state.live.clone();
        let token_max = state.token_max;
        match e.name.as_str() {
            "lease_granted" => {
                let holder = e.field("holder").unwrap_or("?").to_owned();
                state.live = Some((holder.clone(), token));
                state.token_max = state.token_max.max(token);
                if let Some((other, other_token)) = live {
                    self.violation(e.t, || {
                        format!(
                            "axis {axis}: token {token} granted to {holder} while token {other_token} of {other} is live"
                        )
                    });
                }
                if token <= token_max {
                    self.violation(e.t, || {
                        format!(
                            "axis {axis}: token {token} granted to {holder}, not above the newest earlier token {token_max}"
                        )
                    });
                }
            }
            "lease_renewed" | "lease_expired" | "lease_released" => {
                if e.name != "lease_renewed" {
                    state.live = None;
                }
                if live.as_ref().map(|(_, t)| *t) != Some(token) {
                    let what = e.name.clone();
                    self.violation(e.t, || {
                        format!(
                            "axis {axis}: {what} names token {token}, but the live lease is {}",
                            describe(live.as_ref())
                        )
                    });
                }
            }
            "move_recording" => {
                if live.as_ref().map(|(_, t)| *t) != Some(token) {
                    let request_id = e.field("request_id").unwrap_or("?").to_owned();
                    self.violation(e.t, || {
                        format!(
                            "axis {axis}: move {request_id} accepted under token {token}, but the live lease is {}",
                            describe(live.as_ref())
                        )
                    });
                }
            }
            _ => unreachable!("filtered above"),
        }
    }
    fn finish(&mut self, _end: Duration) -> Option<Violation> {
        self.first.take()
    }
}

fn describe(live: Option<&(String, u64)>) -> String {
    match live {
        Some((holder, token)) => format!("token {token} of {holder}"),
        None => "none".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::test_event as event;

    fn oracle() -> LeaseFencing {
        LeaseFencing {
            host_of: [("x".to_owned(), "motion-1".to_owned())].into(),
            axes: BTreeMap::new(),
            first: FirstViolation::default(),
        }
    }

    fn judge(events: &[TraceEvent]) -> Option<Violation> {
        let mut o = oracle();
        events.iter().for_each(|e| o.on_event(e));
        o.finish(Duration::from_secs(10))
    }

    fn granted(t: u64, holder: &str, token: &str) -> TraceEvent {
        event(
            t,
            "motion-1",
            "lease_granted",
            &[("axis", "x"), ("holder", holder), ("token", token)],
        )
    }

    fn recording(t: u64, token: &str) -> TraceEvent {
        event(
            t,
            "motion-1",
            "move_recording",
            &[("axis", "x"), ("request_id", "7"), ("token", token)],
        )
    }

    fn ended(t: u64, name: &str, token: &str) -> TraceEvent {
        event(t, "motion-1", name, &[("axis", "x"), ("token", token)])
    }

    // Goal: the oracle holds on a correct lease history and fails on each way fencing breaks
    // (positive and negative space). Method: hand-written event sequences, one per rule.
    #[test]
    fn judges_each_rule() {
        let started = event(0, "motion-1", "motion_started", &[]);
        // Correct: grant, move, expire, grant a higher token, move, restart, grant, move.
        assert_eq!(
            judge(&[
                started.clone(),
                granted(1, "a", "1"),
                recording(2, "1"),
                ended(3, "lease_expired", "1"),
                granted(4, "b", "2"),
                ended(5, "lease_renewed", "2"),
                recording(6, "2"),
                started.clone(),
                granted(8, "a", "3"),
                recording(9, "3"),
                ended(10, "lease_released", "3"),
            ]),
            None
        );
        let cases: [(&str, Vec<TraceEvent>); 6] = [
            (
                "after expiry",
                vec![
                    granted(1, "a", "1"),
                    ended(2, "lease_expired", "1"),
                    recording(3, "1"),
                ],
            ),
            (
                "stale token",
                vec![
                    granted(1, "a", "1"),
                    ended(2, "lease_expired", "1"),
                    granted(3, "b", "2"),
                    recording(4, "1"),
                ],
            ),
            (
                "after restart",
                vec![granted(1, "a", "1"), started.clone(), recording(3, "1")],
            ),
            (
                "two live leases",
                vec![granted(1, "a", "1"), granted(2, "b", "2")],
            ),
            (
                "token did not grow",
                vec![
                    granted(1, "a", "2"),
                    ended(2, "lease_released", "2"),
                    granted(3, "b", "2"),
                ],
            ),
            (
                "renewal of a dead lease",
                vec![
                    granted(1, "a", "1"),
                    ended(2, "lease_expired", "1"),
                    ended(3, "lease_renewed", "1"),
                ],
            ),
        ];
        for (name, events) in cases {
            let violation = judge(&events).unwrap_or_else(|| panic!("{name}: not caught"));
            assert_eq!(violation.t, events.last().expect("events").t, "{name}");
        }
    }
}
