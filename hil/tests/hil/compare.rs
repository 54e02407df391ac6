//! Goal: `hil compare` takes any two reports of one scenario — here real `sim run --json`
//! reports of `scenarios/bench-xm430.toml` under two seeds, and of the same file with a slower
//! position loop — and prints their tracking side by side with the RMS and maximum position deviation per axis; `--json` prints one object with
//! `position_deviation_deg_rms` and `position_deviation_deg_max` per axis; `--svg` draws an
//! overlay with labelled axes and round ticks. Two reports of different scenarios are refused.
//! Method: make the reports in-process with the code `sim run --json` runs (`sim::run::run`
//! with the series recorded, serialized as it prints them), write them to files, and run the
//! real `hil` binary on them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("servocell-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// `sim run <scenario> --seed <seed> --json`, written to a file.
fn sim_report(scenario: &str, seed: u64) -> PathBuf {
    sim_report_of(&repo().join(scenario), seed, "")
}

/// `sim run <path> --seed <seed> --json`, written to a file named with `tag`.
fn sim_report_of(path: &Path, seed: u64, tag: &str) -> PathBuf {
    let loaded = sim::scenario::Scenario::load(path).unwrap();
    let output = sim::run::run(
        &loaded,
        seed,
        sim::run::RunOptions {
            check_determinism: false,
            record_series: true,
        },
    );
    let path = scratch(&format!("{}{tag}-seed{seed}.json", loaded.name));
    std::fs::write(&path, serde_json::to_string_pretty(&output.report).unwrap()).unwrap();
    path
}

fn hil(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hil"))
        .args(args)
        .output()
        .expect("hil runs")
}

fn compare_json(a: &Path, b: &Path) -> serde_json::Value {
    let out = hil(&[
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

#[test]
fn two_seeds_of_the_bench_scenario_deviate_by_nothing() {
    // The bench scenario draws nothing from its seed (no chaos, no sensor noise): two seeds
    // are one trajectory, and the comparison must say so exactly.
    let json = compare_json(
        &sim_report("scenarios/bench-xm430.toml", 1),
        &sim_report("scenarios/bench-xm430.toml", 2),
    );
    assert_eq!(json["scenario"], "bench-xm430");
    assert_eq!(json["reports"][0], "sim seed 1");
    assert_eq!(json["reports"][1], "sim seed 2");
    let x = &json["axes"][0];
    assert_eq!(x["name"], "x");
    assert_eq!(x["position_deviation_deg_rms"], 0.0);
    assert_eq!(x["position_deviation_deg_max"], 0.0);
    assert!(x["overlap_s"].as_f64().unwrap() > 5.0, "{x}");
}

#[test]
fn a_slower_loop_deviates_and_the_overlay_shows_it() {
    let a = sim_report("scenarios/bench-xm430.toml", 1);
    let slower = scratch("bench-xm430-slower.toml");
    let text = std::fs::read_to_string(repo().join("scenarios/bench-xm430.toml")).unwrap();
    assert!(text.contains("bandwidth_hz = 8.0"));
    std::fs::write(
        &slower,
        text.replace("bandwidth_hz = 8.0", "bandwidth_hz = 3.0"),
    )
    .unwrap();
    let b = sim_report_of(&slower, 1, "-slower");

    let json = compare_json(&a, &b);
    let axes = json["axes"].as_array().unwrap();
    assert_eq!(axes.len(), 1);
    let x = &axes[0];
    let rms = x["position_deviation_deg_rms"].as_f64().expect("an RMS");
    let max = x["position_deviation_deg_max"].as_f64().expect("a max");
    assert!(rms > 0.0 && rms <= max, "rms {rms} max {max}");
    assert_eq!(x["following_error_deg_rms"].as_array().unwrap().len(), 2);

    let svg = scratch("overlay.svg");
    let out = hil(&[
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let table = String::from_utf8(out.stdout).unwrap();
    for fragment in [
        "A = sim seed 1 (A), B = sim seed 1 (B)",
        "following error rms",
        &format!("position deviation (B - A): rms {rms:.3} deg, max {max:.3} deg"),
    ] {
        assert!(table.contains(fragment), "{fragment:?} not in\n{table}");
    }
    let picture = std::fs::read_to_string(&svg).unwrap();
    sim::plot::check_round_ticks(&picture).unwrap_or_else(|e| panic!("{e}"));
    for label in [
        "time (s)",
        "position (deg)",
        "deviation B − A (deg)",
        "A position",
        "B setpoint",
    ] {
        assert!(picture.contains(label), "the overlay lacks {label:?}");
    }
}

#[test]
fn reports_of_two_scenarios_are_refused() {
    let a = sim_report("scenarios/bench-xm430.toml", 1);
    let b = sim_report("scenarios/baseline.toml", 1);
    let out = hil(&["compare", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(
        error.contains("two scenarios") && error.contains("bench-xm430"),
        "{error}"
    );
}
