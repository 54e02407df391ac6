//! Regressions of services that must outlive transient faults.
//!
//! The bug: a motion host restarted while its disk returned I/O errors read its durable state
//! once, failed, exited (`service_exited`: "cannot read the durable state: injected disk I/O
//! error") and stayed down after the disk had healed; the saga holding its axis could neither
//! finish nor compensate (SG1), and in the flagship's storm with disk faults a third of the
//! orders never completed. `sim shrink` cut that storm to two faults: an I/O error on the motion
//! host, then its restart. The fix: a service reads its state at start-up through
//! `services::storage::read_durable`, which retries a failing disk with backoff within a named
//! limit, so the service starts once the disk heals.
//!
//! Goal: the shrunk schedule, pinned, passes every oracle, and the motion service started again
//! within one backoff step of the disk healing. Method: the planted-cell base (one axis, four
//! orders, seed 7) with the motion host's disk failing from 2.0 s to 3.0 s and a restart of
//! `motion-1` at 2.2 s, inside the fault. Before the fix, SG1 failed here: "saga
//! 281479271677952 still open after 2 steps at the end", and `motion-1` never started again.

use std::time::Duration;

use sim::run::{RunOptions, run};
use sim::scenario::{Scenario, Source};

use super::planted_cell::BASE;

/// The shrunk schedule: the motion host's disk fails, and the host restarts inside the fault.
const FAULTS: &str = r#"
[[fault]]
at_s = 2.0
kind = "disk-io-error"
host = "motion-1"
for_s = 1.0

[[fault]]
at_s = 2.2
kind = "restart"
host = "motion-1"
"#;

#[test]
fn a_motion_host_restarted_during_disk_io_errors_serves_once_the_disk_heals() {
    let scenario = Scenario::from_source(&Source::new(
        "restart-during-disk-errors.toml",
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
    // First the verdict: with the fix reverted, SG1 fails here (a saga stays open).
    let failing = super::failing(&output.report);
    assert!(failing.is_empty(), "failing oracles: {failing:?}");
    assert!(
        output.report.services_down.is_empty(),
        "{:?}",
        output.report.services_down
    );
    let events = output.trace.events();
    let on_motion = |name: &str| {
        events
            .iter()
            .filter(|e| e.host == "motion-1" && e.name == name)
            .collect::<Vec<_>>()
    };

    // The schedule reaches the path: the restarted service's reads failed while the disk did.
    let read_failed = on_motion("durable_read_failed");
    assert!(
        !read_failed.is_empty(),
        "the restart never met the I/O error"
    );
    // Faults due by a tick's end start at the tick's start: the restart lands at 2.199 s.
    let (healed, restarted) = (Duration::from_secs(3), Duration::from_millis(2199));
    assert!(
        read_failed.iter().all(|e| e.t >= restarted && e.t < healed),
        "{read_failed:?}"
    );
    assert!(on_motion("service_exited").is_empty());

    // It started again once the disk healed, within the longest backoff (1 s).
    let started = on_motion("motion_started");
    assert_eq!(
        started.len(),
        2,
        "the first start and the one after the restart"
    );
    assert!(
        started[1].t >= healed && started[1].t <= healed + Duration::from_secs(1),
        "restarted service started at {:?}",
        started[1].t
    );

    // Every order's saga ended.
    let order = output.report.orders.as_ref().expect("the order path runs");
    assert_eq!(order.completed + order.compensated, order.started);
    assert_eq!(order.started, 4);
}
