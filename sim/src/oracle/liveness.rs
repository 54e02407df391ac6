//! Liveness oracles (LV*): once the faults heal, the cell finishes its work.
//!
//! Judged on the workload clients' own events (`move_requested`, `move_succeeded`,
//! `move_failed`), the harness's `fault_healed` events and, for orders, the orders services'
//! `saga_completed`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{FirstViolation, Oracle, Violation};
use crate::scenario::Scenario;
use crate::trace::TraceEvent;

pub(crate) fn for_scenario(scenario: &Scenario) -> Vec<Box<dyn Oracle>> {
    let mut oracles: Vec<Box<dyn Oracle>> = vec![
        Box::new(MovesTerminate {
            settle: scenario.settle,
            requested: BTreeMap::new(),
            last_heal: Duration::ZERO,
            first: FirstViolation::default(),
        }),
        Box::new(CompletedFloor {
            floor: scenario.expect.moves_completed_min,
            completed: 0,
        }),
    ];
    if scenario.services.is_some() {
        oracles.push(Box::new(OrdersFloor {
            floor: scenario.expect.orders_completed_min,
            completed: BTreeSet::new(),
        }));
    }
    oracles
}

/// LV1.
struct MovesTerminate {
    settle: Duration,
    /// Moves requested and not yet terminal: (client, request id) → requested at.
    requested: BTreeMap<(String, u64), Duration>,
    last_heal: Duration,
    first: FirstViolation,
}

fn request_key(e: &TraceEvent) -> (String, u64) {
    let id = e
        .field_u64("request_id")
        .unwrap_or_else(|| panic!("{} event without request_id: {e}", e.name));
    (e.host.clone(), id)
}

impl Oracle for MovesTerminate {
    fn id(&self) -> &'static str {
        "LV1"
    }
    fn statement(&self) -> &'static str {
        "every move ends (done or failed) within the settle time once it is requested and the last fault has healed"
    }
    fn on_event(&mut self, e: &TraceEvent) {
        match e.name.as_str() {
            "move_requested" => {
                self.requested.insert(request_key(e), e.t);
            }
            "move_succeeded" | "move_failed" => {
                self.requested.remove(&request_key(e));
            }
            "fault_healed" => self.last_heal = self.last_heal.max(e.t),
            _ => {}
        }
    }
    fn finish(&mut self, end: Duration) -> Option<Violation> {
        for ((client, id), requested_at) in &self.requested {
            let due = (*requested_at).max(self.last_heal) + self.settle;
            if due <= end {
                self.first.record(due, || {
                    format!(
                        "move {id} of {client}, requested at {:.3} s, still open at the end ({:.3} s)",
                        requested_at.as_secs_f64(),
                        end.as_secs_f64()
                    )
                });
            }
        }
        self.first.take()
    }
}

/// LV2.
struct CompletedFloor {
    floor: u32,
    completed: u32,
}

impl Oracle for CompletedFloor {
    fn id(&self) -> &'static str {
        "LV2"
    }
    fn statement(&self) -> &'static str {
        "at least the scenario's `moves_completed_min` moves succeed"
    }
    fn on_event(&mut self, e: &TraceEvent) {
        if e.name == "move_succeeded" {
            self.completed += 1;
        }
    }
    fn finish(&mut self, end: Duration) -> Option<Violation> {
        (self.completed < self.floor).then(|| Violation {
            t: end,
            detail: format!(
                "{} moves succeeded, the floor is {}",
                self.completed, self.floor
            ),
        })
    }
}

/// LV3.
struct OrdersFloor {
    floor: u32,
    /// Orders whose saga completed (an order is counted once, whichever instance reports it).
    completed: BTreeSet<u64>,
}

impl Oracle for OrdersFloor {
    fn id(&self) -> &'static str {
        "LV3"
    }
    fn statement(&self) -> &'static str {
        "at least the scenario's `orders_completed_min` orders complete their saga"
    }
    fn on_event(&mut self, e: &TraceEvent) {
        if e.name == "saga_completed" {
            let order = e
                .field_u64("order")
                .unwrap_or_else(|| panic!("saga_completed without order: {e}"));
            self.completed.insert(order);
        }
    }
    fn finish(&mut self, end: Duration) -> Option<Violation> {
        let completed = self.completed.len();
        (completed < self.floor as usize).then(|| Violation {
            t: end,
            detail: format!("{completed} orders completed, the floor is {}", self.floor),
        })
    }
}
