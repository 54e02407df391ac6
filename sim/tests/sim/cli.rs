//! Goal: the `sim` command's exit codes and messages are what scripts and people rely on:
//! 0 for a pass, 1 for a failed oracle (with the seed and a command that reproduces it), 2 for
//! usage errors and bad scenarios (with file, line and column).
//! Method: run the real binary on small scenarios written to a temporary directory.

use std::path::PathBuf;
use std::process::{Command, Output};

fn sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sim"))
        .args(args)
        .output()
        .expect("sim runs")
}

fn scratch(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("servocell-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const SHORT: &str = r#"# Goal: a short run for the command-line tests.
name = "short"
duration_s = 3.0
settle_s = 1.0
seed = 9

[axis.x]
velocity_deg_per_s_max = 180.0
acceleration_deg_per_s2_max = 720.0
jerk_deg_per_s3_max = 7200.0
position_deg_min = -180.0
position_deg_max = 180.0

[axis.x.plant]
preset = "xm430-w350"

[[workload.move]]
at_s = 0.2
axis = "x"
target_deg = 45.0
"#;

#[test]
fn a_passing_run_exits_0_and_json_has_the_report_keys() {
    let path = scratch("short.toml", SHORT);
    let out = sim(&["run", path.to_str().unwrap(), "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    for key in [
        "scenario",
        "seed",
        "version",
        "verdict",
        "simulated_s",
        "trace_hash",
        "oracles",
        "faults",
        "axes",
    ] {
        assert!(report.get(key).is_some(), "missing {key}");
    }
    assert_eq!(report["verdict"], "pass");
    assert_eq!(report["seed"], 9);
    let oracle = &report["oracles"][0];
    for key in ["id", "statement", "holds", "first_violation"] {
        assert!(oracle.get(key).is_some(), "oracle lacks {key}");
    }
}

#[test]
fn a_failing_run_exits_1_with_its_seed_and_a_reproduction_command() {
    let text = format!("{SHORT}\n[expect]\nmoves_completed_min = 5\n");
    let path = scratch("unmet.toml", &text);
    let out = sim(&[
        "run",
        path.to_str().unwrap(),
        "--seed",
        "11",
        "--no-determinism-check",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("seed 11"), "{stderr}");
    assert!(
        stderr.contains(&format!("run {} --seed 11", path.display())),
        "{stderr}"
    );
}

#[test]
fn a_bad_scenario_exits_2_naming_file_line_and_column() {
    let path = scratch("bad.toml", &SHORT.replace("seed = 9", "seed = 9\nsed = 3"));
    let out = sim(&["run", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:6:1:", path.display())),
        "{stderr}"
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(sim(&["run"]).status.code(), Some(2));
    assert_eq!(sim(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(
        sim(&["plant", "characterize", "--preset", "nope"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn plant_characterize_prints_the_four_measurements_as_json() {
    let out = sim(&["plant", "characterize", "--preset", "xm430-w350", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rpm = c["no_load_speed_rpm"].as_f64().unwrap();
    let stall = c["stall_torque_nm"].as_f64().unwrap();
    assert!((rpm / 46.0 - 1.0).abs() < 0.05, "{rpm} rpm");
    assert!((stall / 4.1 - 1.0).abs() < 0.05, "{stall} N·m");
    assert!(c["electrical_time_constant_s"].as_f64().unwrap() > 0.0);
    assert!(c["mechanical_time_constant_s"].as_f64().unwrap() > 0.0);
}
