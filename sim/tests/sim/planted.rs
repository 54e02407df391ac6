//! Goal: every oracle is evidence, because each one has been seen to fail. For each, a scenario
//! plants the violation on purpose (a drive firmware that ignores its watchdog, a load no motor
//! can hold, an encoder that lies at the moment a move completes, a winding cooked from outside,
//! a partition that never heals, a trace value that changes between runs) and the oracle must
//! report it; the same scenario without the plant must pass.
//! Method: one short base scenario; each case adds a few lines and names the oracle that must
//! fail. Seeds are pinned (the scenario's `seed`).

use sim::report::Verdict;
use sim::run::{RunOptions, run};
use sim::scenario::{Scenario, Source};

const BASE: &str = r#"# Goal: a short single-axis run that each case plants one violation into.
name = "planted"
duration_s = 6.0
settle_s = 2.0
seed = 21

[axis.x]
velocity_deg_per_s_max = 180.0
acceleration_deg_per_s2_max = 720.0
jerk_deg_per_s3_max = 7200.0
position_deg_min = -180.0
position_deg_max = 180.0

[axis.x.plant]
preset = "xm430-w350"
"#;

fn scenario(extra: &str) -> Scenario {
    Scenario::from_source(&Source::new("planted.toml", format!("{BASE}\n{extra}")))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `extra` on the base and returns the ids of the oracles that failed.
fn failing(extra: &str) -> Vec<String> {
    let output = run(
        &scenario(extra),
        21,
        RunOptions {
            check_determinism: true,
            record_series: false,
        },
    );
    output
        .report
        .oracles
        .iter()
        .filter(|o| !o.holds)
        .map(|o| o.id.clone())
        .collect()
}

/// The planted case must fail `oracle`; the clean twin must pass everything.
fn check(oracle: &str, clean: &str, planted: &str) {
    let clean_failing = failing(clean);
    assert!(
        clean_failing.is_empty(),
        "the clean twin fails {clean_failing:?}"
    );
    let planted_failing = failing(&format!("{clean}\n{planted}"));
    assert!(
        planted_failing.iter().any(|id| id == oracle),
        "{oracle} missed its planted violation; failing: {planted_failing:?}"
    );
}

const MOVE_THEN_CRASH: &str = r#"
[[workload.move]]
at_s = 0.3
axis = "x"
target_deg = 150.0

[[fault]]
at_s = 0.8
for_s = 1.0
kind = "crash"
host = "motion-1"
"#;

// PH4: the motion host dies mid-move; a drive that ignores its watchdog keeps applying its last
// current and the axis runs on.
#[test]
fn ph4_catches_a_drive_that_ignores_its_watchdog() {
    check(
        "PH4",
        MOVE_THEN_CRASH,
        "[planted]\ndrive_ignores_watchdog = true\n",
    );
}

// PH1: a load torque twice the motor's stall torque shoves the held axis past its soft limit.
#[test]
fn ph1_catches_an_axis_pushed_past_its_soft_limit() {
    let clean = r#"
[[workload.move]]
at_s = 0.3
axis = "x"
target_deg = -170.0

[[fault]]
at_s = 2.5
for_s = 2.0
kind = "load-step"
axis = "x"
torque_nm = 1.0
"#;
    check(
        "PH1",
        clean,
        &clean
            .replace("torque_nm = 1.0", "torque_nm = 8.0")
            .replace("[[fault]]", "[[fault]]\n# planted"),
    );
}

// PH5: the encoder reads 64 counts (5.6°) off from before the controller's first sample, so
// no plausibility monitor can see a step (it has no reference): the motion service believes
// the move is on target, the ground truth says otherwise.
#[test]
fn ph5_catches_a_move_reported_complete_off_target() {
    let clean = r#"
[[workload.move]]
at_s = 0.3
axis = "x"
target_deg = 90.0
"#;
    let planted = r#"
[[fault]]
at_s = 0.0
for_s = 4.0
kind = "encoder-glitch"
axis = "x"
offset_counts = 64
"#;
    check("PH5", clean, planted);
}

// Regression (issue 12, motion-storm seed 1003): an encoder glitch of 13 counts on axis b while
// it settled let the move report complete 1.12° off target. The supervisor's encoder
// plausibility now trips FeedbackImplausible (0x7322) on the step, the move is aborted, and the
// client resets and re-enables once the encoder agrees again.
#[test]
fn encoder_glitch_completing_a_move_off_target_motion_storm_seed_1003() {
    let scenario = Scenario::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/motion-storm.toml"
    )))
    .unwrap();
    let output = run(
        &scenario,
        1003,
        RunOptions {
            check_determinism: false,
            record_series: false,
        },
    );
    let failing: Vec<_> = output
        .report
        .oracles
        .iter()
        .filter(|o| !o.holds)
        .map(|o| o.id.clone())
        .collect();
    assert!(failing.is_empty(), "seed 1003 fails {failing:?}");
    assert_eq!(output.report.verdict, Verdict::Pass);
}

// PH7 and the drive's watchdog timing: a watchdog ten times late (200 ms for 20 ms) still
// stops the axis inside PH4's 0.5 s stop time, so PH4 passes it; PH7, which times the stop by
// the drive's own watchdog and ramp, catches it.
#[test]
fn ph7_catches_a_drive_watchdog_ten_times_late_that_ph4_lets_pass() {
    let clean = scenario(MOVE_THEN_CRASH);
    let mut late = clean.clone();
    late.planted.drive_watchdog_ten_times_late = true;
    let failing = |scenario: &Scenario| -> Vec<String> {
        let output = run(scenario, 21, RunOptions::default());
        output
            .report
            .oracles
            .iter()
            .filter(|o| !o.holds)
            .map(|o| o.id.clone())
            .collect()
    };
    assert_eq!(failing(&clean), Vec::<String>::new());
    assert_eq!(failing(&late), vec!["PH7".to_owned()]);
}

const FAST_AXIS: &str = r#"# Goal: a fast direct-drive axis whose motion host crashes mid-move.
name = "fast-axis"
duration_s = 3.0
settle_s = 1.0
seed = 21

[axis.x]
velocity_deg_per_s_max = 1800.0
acceleration_deg_per_s2_max = 18000.0
jerk_deg_per_s3_max = 360000.0
position_deg_min = -720.0
position_deg_max = 720.0

[axis.x.plant]
preset = "sgmp-02b"

[[workload.move]]
at_s = 0.3
axis = "x"
target_deg = 700.0

[[fault]]
at_s = 0.45
for_s = 1.0
kind = "crash"
host = "motion-1"
"#;

// Regression (issue 12): an sgmp-02b axis at 1800°/s whose motion host crashed mid-move ran
// 15° past its last setpoint before the drive's 20 ms watchdog stopped it (PH3). The drive now
// monitors its following error against the setpoint of each command frame (CiA 402 0x6065,
// 0x6066) and stops the axis itself; with that monitoring off, PH3 fails again.
#[test]
fn fast_axis_losing_its_motion_host_mid_move_stops_within_its_limits() {
    let clean = Scenario::from_source(&Source::new("fast-axis.toml", FAST_AXIS)).unwrap();
    let mut unmonitored = clean.clone();
    unmonitored.planted.drive_ignores_following_error = true;
    let failing = |scenario: &Scenario| -> Vec<String> {
        let output = run(scenario, 21, RunOptions::default());
        output
            .report
            .oracles
            .iter()
            .filter(|o| !o.holds && o.id != "LV2")
            .map(|o| o.id.clone())
            .collect()
    };
    assert_eq!(failing(&clean), Vec::<String>::new());
    assert!(failing(&unmonitored).contains(&"PH3".to_owned()));
}

// PH6: cooling lost with the ambient at 150 °C heats the winding past its 80 °C limit (a motor
// with a small housing, so that it happens within seconds rather than the XM430's minutes).
#[test]
fn ph6_catches_a_winding_over_its_temperature_limit() {
    let clean = r#"
[axis.x.plant.thermal]
winding_capacity_j_per_k = 0.1
housing_capacity_j_per_k = 0.1

[[workload.move]]
at_s = 0.3
axis = "x"
target_deg = 30.0
"#;
    let planted = r#"
[[fault]]
at_s = 0.5
for_s = 3.0
kind = "overheating"
axis = "x"
ambient_c = 150.0
"#;
    check("PH6", clean, planted);
}

// LV1: a partition that never heals, and a client willing to wait longer than the run: the move
// is still open when the run ends.
#[test]
fn lv1_catches_a_move_that_never_ends() {
    let clean = r#"
[[workload.move]]
at_s = 0.5
axis = "x"
target_deg = 45.0

[workload.retry]
attempts_max = 100
deadline_ms = 60000.0
"#;
    let planted = r#"
[[fault]]
at_s = 0.2
kind = "partition"
between = ["client-1", "motion-1"]
"#;
    check("LV1", clean, planted);
}

// LV2: the floor of completed moves is not reached.
#[test]
fn lv2_catches_too_few_completed_moves() {
    let clean = r#"
[[workload.move]]
at_s = 0.5
axis = "x"
target_deg = 45.0
"#;
    check("LV2", clean, "[expect]\nmoves_completed_min = 2\n");
}

// DT1: a value that changes between two runs of the same seed changes the trace hash, and the
// report names the first event that differs.
#[test]
fn dt1_catches_nondeterminism_and_names_the_first_divergent_event() {
    let clean = "[[workload.move]]\nat_s = 0.5\naxis = \"x\"\ntarget_deg = 45.0\n";
    check("DT1", clean, "[planted]\ntrace_nondeterministic = true\n");
    let output = run(
        &scenario(&format!(
            "{clean}\n[planted]\ntrace_nondeterministic = true\n"
        )),
        21,
        RunOptions {
            check_determinism: true,
            record_series: false,
        },
    );
    let dt1 = output
        .report
        .oracles
        .iter()
        .find(|o| o.id == "DT1")
        .unwrap();
    let detail = &dt1.first_violation.as_ref().unwrap().detail;
    assert!(
        detail.contains("event 0") && detail.contains("planted_nondeterminism"),
        "{detail}"
    );
}

// A scenario may declare that it demonstrates a failing oracle: the verdict is then a pass
// exactly when that oracle fails, so a planted scenario can live among the snapshots.
#[test]
fn expected_failures_invert_the_verdict_for_their_oracle() {
    let text = format!(
        "{MOVE_THEN_CRASH}\n[planted]\ndrive_ignores_watchdog = true\n[expect]\nfailing = [\"PH4\"]\noracles = [\"PH4\"]\n"
    );
    let output = run(&scenario(&text), 21, RunOptions::default());
    assert_eq!(output.report.verdict, Verdict::Pass);
    let output = run(
        &scenario(&format!(
            "{MOVE_THEN_CRASH}\n[expect]\nfailing = [\"PH4\"]\n"
        )),
        21,
        RunOptions::default(),
    );
    assert_eq!(
        output.report.verdict,
        Verdict::Fail,
        "PH4 holds, so expecting it to fail must fail"
    );
}
