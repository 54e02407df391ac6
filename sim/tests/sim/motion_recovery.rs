//! Regression: a move that completed, whose outcome the motion host had not yet written when it
//! crashed, was recovered `Interrupted`; the saga polling it failed its pivot and compensated a
//! move that physically happened (axis at the order's target, part released), which SG2 (a saga
//! whose move a motion host traced `move_completed` never compensates) reports. The fix decides
//! such a move from the axis after the restart: at rest in position, it is `Completed`.
//!
//! Goal: the pinned fault schedule that reproduces the bug in the whole cell passes every
//! oracle, and the saga of the crashed move completes. Method: the planted-cell base (one axis,
//! four orders, seed 7) with the motion host's disk failing from 2.3 s (so the completion of
//! the first order's move at 2.440 s cannot be written) and a crash of `motion-1` at 2.445 s,
//! before the saga's next poll. Before the fix, SG2 failed here: "saga 281479271677952: journal
//! records step_failed:move after its move completed on motion-1 at 2.440 s".

use sim::run::{RunOptions, run};
use sim::scenario::{Scenario, Source};

use super::planted_cell::BASE;

/// The fault schedule: the completion's write fails, then the host crashes before it retries.
const FAULTS: &str = r#"
[[fault]]
at_s = 2.3
kind = "disk-io-error"
host = "motion-1"
for_s = 0.3

[[fault]]
at_s = 2.445
kind = "crash"
host = "motion-1"
for_s = 0.5
"#;

/// The first order's id, which is its move's request id.
const ORDER: &str = "281479271677952";

#[test]
fn a_move_completed_but_unwritten_at_a_motion_crash_is_not_compensated() {
    let scenario = Scenario::from_source(&Source::new(
        "motion-recovery.toml",
        format!("{BASE}\n{FAULTS}"),
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let output = run(
        &scenario,
        7,
        RunOptions {
            check_determinism: true,
            record_series: false,
        },
    );
    // First the verdict: with the fix reverted, SG2 fails here (the saga compensates).
    let failing = super::failing(&output.report);
    assert!(failing.is_empty(), "failing oracles: {failing:?}");
    let events = output.trace.events();
    let of_order = |name: &str| {
        events
            .iter()
            .filter(|e| e.name == name && e.field("request_id") == Some(ORDER))
            .collect::<Vec<_>>()
    };

    // The schedule reaches the window: the move completed, its write failed, and the host
    // restarted before writing it (so the restarted host found it in progress and recovered it).
    let completed = of_order("move_completed");
    assert_eq!(
        completed
            .iter()
            .map(|e| (e.host.as_str(), e.field("recovered")))
            .collect::<Vec<_>>(),
        [("motion-1", Some("false")), ("motion-1", Some("true"))],
        "completed before the crash, recovered completed after it"
    );
    assert!(
        events.iter().any(|e| e.host == "motion-1"
            && e.name == "state_write_failed"
            && e.t >= completed[0].t
            && e.t < completed[1].t),
        "the completion's write failed before the crash"
    );
    assert!(of_order("move_interrupted").is_empty());

    assert!(
        events
            .iter()
            .any(|e| e.name == "saga_completed" && e.field("order") == Some(ORDER)),
        "the saga of the crashed move completed"
    );
}
