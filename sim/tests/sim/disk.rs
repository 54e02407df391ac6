//! Goal: the disk faults reach the services and are survived: I/O errors make the motion service
//! fail its durable writes (so it grants no lease it has not written) until the fault heals, and a
//! corrupted durable state keeps a restarting motion service down rather than trusting it, while
//! the drive stops the axis on its own.
//! Method: short single-axis scenarios with the disk fault on the motion host; the trace shows the
//! service saw the fault, the oracles judge the rest.

use sim::report::Verdict;
use sim::run::{RunOptions, run};
use sim::scenario::{Scenario, Source};

const BASE: &str = r#"# Goal: one axis whose motion host's disk misbehaves.
name = "disk"
duration_s = 8.0
settle_s = 3.0
seed = 31

[axis.x]
velocity_deg_per_s_max = 180.0
acceleration_deg_per_s2_max = 720.0
jerk_deg_per_s3_max = 7200.0
position_deg_min = -180.0
position_deg_max = 180.0

[axis.x.plant]
preset = "xm430-w350"

[workload.retry]
attempts_max = 20
backoff_ms_initial = 100.0
deadline_ms = 4000.0
"#;

fn run_text(extra: &str) -> sim::run::RunOutput {
    let scenario = Scenario::from_source(&Source::new("disk.toml", format!("{BASE}\n{extra}")))
        .unwrap_or_else(|e| panic!("{e}"));
    run(
        &scenario,
        scenario.seed,
        RunOptions {
            check_determinism: true,
            record_series: false,
        },
    )
}

fn count(output: &sim::run::RunOutput, event: &str) -> usize {
    output
        .trace
        .events()
        .iter()
        .filter(|e| e.name == event)
        .count()
}

#[test]
fn io_errors_fail_durable_writes_until_they_heal_and_the_move_then_completes() {
    let output = run_text(
        r#"
[[workload.move]]
at_s = 0.5
axis = "x"
target_deg = 60.0

[[fault]]
at_s = 0.2
for_s = 1.0
kind = "disk-io-error"
host = "motion-1"

[expect]
moves_completed_min = 1
"#,
    );
    assert!(
        count(&output, "state_write_failed") > 0,
        "the motion service never saw the I/O errors"
    );
    assert_eq!(
        output.report.verdict,
        Verdict::Pass,
        "{:#?}",
        output.report.oracles
    );
    let granted = output
        .trace
        .events()
        .iter()
        .find(|e| e.name == "lease_granted")
        .expect("a lease once the disk healed");
    assert!(
        granted.t.as_secs_f64() >= 1.2,
        "a lease was granted at {:?}, while its write could not be durable",
        granted.t
    );
}

#[test]
fn a_corrupted_state_keeps_the_restarting_motion_service_down_and_the_drive_stops_the_axis() {
    let output = run_text(
        r#"
[[workload.move]]
at_s = 0.3
axis = "x"
target_deg = 150.0

[[fault]]
at_s = 0.7
for_s = 3.0
kind = "disk-corruption"
host = "motion-1"

[[fault]]
at_s = 0.8
for_s = 0.5
kind = "crash"
host = "motion-1"

[expect]
oracles = ["PH1", "PH2", "PH3", "PH4", "PH5", "PH6", "SG4", "DT1"]
"#,
    );
    let exited = output
        .trace
        .events()
        .iter()
        .find(|e| e.name == "service_exited")
        .expect("motion refused its state");
    assert!(
        exited
            .field("error")
            .is_some_and(|e| e.contains("durable state refused")),
        "{exited}"
    );
    assert_eq!(
        output.report.verdict,
        Verdict::Pass,
        "{:#?}",
        output.report.oracles
    );
    assert!(
        output.report.axes[0].watchdog_trips >= 1,
        "the drive never stopped the axis on its own"
    );
    // The report names the service that stayed down, and why.
    let down = &output.report.services_down;
    assert_eq!(down.len(), 1, "{down:?}");
    assert_eq!(
        (down[0].host.as_str(), down[0].service.as_str()),
        ("motion-1", "motion")
    );
    assert!(down[0].reason.contains("durable state refused"), "{down:?}");
}
