//! Goal: what a person looks at reads right. `sim run --trace-json` writes a Chrome trace that
//! Perfetto and chrome://tracing open (structure checked as their importers read it); `--plot`
//! draws the same bytes for the same run, with round tick values; the text summary says each
//! oracle's result once, against what was expected, and counts the moves sagas made; a cell
//! whose orders all go through the gateway needs no client per motion host.
//! Method: the real binary on shipped scenarios (a chaos storm, the whole cell) and on planted
//! and hand-written ones; the files it writes are parsed back and checked as a viewer would.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sim::run::{RunOptions, run};
use sim::scenario::{Scenario, Source};

fn sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sim"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("sim runs")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("servocell-new-user-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.code() == Some(0),
        "sim failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Runs `scenario` with `--trace-json` and checks the file as a trace viewer reads it; returns
/// the events for scenario-specific checks.
fn trace_json(scenario: &str) -> Vec<serde_json::Value> {
    let file = scratch_dir("trace").join(format!("{}.json", scenario.replace('/', "_")));
    stdout(&sim(&[
        "run",
        scenario,
        "--no-determinism-check",
        "--trace-json",
        file.to_str().unwrap(),
    ]));
    let text = std::fs::read_to_string(&file).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).expect("the file is JSON");
    assert_eq!(json["displayTimeUnit"], "ms");
    let events = json["traceEvents"]
        .as_array()
        .expect("traceEvents is an array")
        .clone();
    assert!(!events.is_empty());

    let mut process_names: BTreeMap<u64, String> = BTreeMap::new();
    let mut thread_names: BTreeMap<(u64, u64), String> = BTreeMap::new();
    // Per track: the time of the last event, and the stack of open spans' ends.
    let mut last_ts: BTreeMap<(u64, u64), f64> = BTreeMap::new();
    let mut open: BTreeMap<(u64, u64), Vec<f64>> = BTreeMap::new();
    for e in &events {
        for key in ["ph", "ts", "pid", "tid", "name"] {
            assert!(e.get(key).is_some(), "event without {key}: {e}");
        }
        let (pid, tid) = (e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap());
        let ts = e["ts"].as_f64().expect("ts is a number");
        match e["ph"].as_str().unwrap() {
            "M" => {
                let name = e["args"]["name"].as_str().map(str::to_owned);
                match e["name"].as_str().unwrap() {
                    "process_name" => {
                        process_names.insert(pid, name.expect("a process name"));
                    }
                    "thread_name" => {
                        thread_names.insert((pid, tid), name.expect("a thread name"));
                    }
                    _ => {}
                }
            }
            ph @ ("X" | "i") => {
                let track = (pid, tid);
                let last = last_ts.entry(track).or_insert(0.0);
                assert!(ts >= *last, "time goes back on track {track:?}: {e}");
                *last = ts;
                let stack = open.entry(track).or_default();
                while stack.last().is_some_and(|end| *end <= ts) {
                    stack.pop();
                }
                if ph == "X" {
                    let dur = e["dur"].as_f64().expect("a span has dur");
                    assert!(dur >= 0.0, "{e}");
                    if let Some(parent_end) = stack.last() {
                        assert!(
                            ts + dur <= *parent_end + 1e-6,
                            "span overlaps its parent on track {track:?}: {e}"
                        );
                    }
                    stack.push(ts + dur);
                } else {
                    assert!(
                        matches!(e["s"].as_str(), Some("t" | "p" | "g")),
                        "instant without a scope: {e}"
                    );
                }
            }
            other => panic!("unexpected phase {other}: {e}"),
        }
    }
    for e in &events {
        let (pid, tid) = (e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap());
        assert!(process_names.contains_key(&pid), "unnamed process: {e}");
        assert!(
            thread_names.contains_key(&(pid, tid)),
            "unnamed thread: {e}"
        );
    }
    let text = std::fs::read_to_string(repo().join(scenario)).unwrap();
    let loaded = Scenario::from_source(&Source::new(scenario, text)).unwrap();
    for host in loaded.hosts() {
        assert!(
            process_names.values().any(|name| *name == host),
            "{scenario}: host {host} has no track; tracks: {process_names:?}"
        );
    }
    events
}

fn count(events: &[serde_json::Value], ph: &str, cat: &str) -> usize {
    events
        .iter()
        .filter(|e| e["ph"] == ph && e["cat"] == cat)
        .count()
}

#[test]
fn trace_json_of_a_chaos_storm_has_host_tracks_moves_and_fault_instants() {
    let events = trace_json("scenarios/motion-storm.toml");
    assert!(count(&events, "i", "fault") > 0, "no fault instant");
    assert!(count(&events, "X", "move") > 0, "no move span");
    assert!(count(&events, "X", "fault") > 0, "no fault span");
    let global_fault = events
        .iter()
        .find(|e| e["ph"] == "i" && e["cat"] == "fault")
        .unwrap();
    assert_eq!(
        global_fault["s"], "g",
        "a fault is drawn across every track"
    );
    // A move span carries its begin and end events' fields.
    let moved = events
        .iter()
        .find(|e| e["ph"] == "X" && e["cat"] == "move")
        .unwrap();
    assert_eq!(moved["args"]["begin"], "move_accepted");
    assert!(moved["args"]["axis"].is_string() && moved["args"]["end"].is_string());
}

#[test]
fn trace_json_of_the_whole_cell_nests_saga_steps_in_sagas() {
    let events = trace_json("scenarios/cell-baseline.toml");
    let sagas = count(&events, "X", "saga");
    assert!(sagas >= 20, "{sagas} saga spans for 20 orders");
    assert!(
        count(&events, "X", "step") >= 5 * 20,
        "every saga has its steps"
    );
    assert!(count(&events, "X", "rpc") > 0, "no request span");
    let move_step = events
        .iter()
        .find(|e| e["ph"] == "X" && e["cat"] == "step" && e["name"] == "move")
        .expect("a saga's move step");
    let saga = events
        .iter()
        .find(|e| {
            e["ph"] == "X"
                && e["cat"] == "saga"
                && e["pid"] == move_step["pid"]
                && e["tid"] == move_step["tid"]
                && e["args"]["order"] == move_step["args"]["order"]
        })
        .expect("the step's saga on the same track");
    let (ts, dur) = (saga["ts"].as_f64().unwrap(), saga["dur"].as_f64().unwrap());
    let step_ts = move_step["ts"].as_f64().unwrap();
    assert!(ts <= step_ts && step_ts <= ts + dur);
}

fn assert_round_ticks(svg: &str) {
    if let Err(e) = sim::plot::check_round_ticks(svg) {
        panic!("{e}");
    }
}

#[test]
fn plots_are_the_same_bytes_for_the_same_run_and_their_ticks_are_round() {
    let path = repo().join("scenarios/motion-storm.toml");
    let scenario = Scenario::load(&path).unwrap();
    let options = RunOptions {
        check_determinism: false,
        record_series: true,
    };
    let plots = |seed| {
        let output = run(&scenario, seed, options);
        output
            .series
            .iter()
            .map(|series| {
                sim::plot::axis_svg(
                    &scenario.name,
                    seed,
                    series,
                    &output.schedule,
                    scenario.duration.as_secs_f64(),
                )
            })
            .collect::<Vec<_>>()
    };
    let first = plots(scenario.seed);
    assert_eq!(first.len(), 2);
    assert_eq!(first, plots(scenario.seed), "same run, same bytes");
    for svg in &first {
        assert_round_ticks(svg);
        for label in [
            "position (deg)",
            "winding current (A)",
            "time (s)",
            "setpoint",
            "position (ground truth)",
            "fault",
        ] {
            assert!(svg.contains(label), "the plot lacks {label:?}");
        }
    }
}

#[test]
fn the_summary_says_each_oracle_once_and_counts_saga_moves() {
    let text = stdout(&sim(&[
        "run",
        "scenarios/cell-baseline.toml",
        "--no-determinism-check",
    ]));
    let json: serde_json::Value = serde_json::from_slice(
        &sim(&[
            "run",
            "scenarios/cell-baseline.toml",
            "--no-determinism-check",
            "--json",
        ])
        .stdout,
    )
    .unwrap();
    assert!(!text.contains("[Holds]"), "{text}");
    let completed = json["orders"]["completed"].as_u64().unwrap();
    assert!(completed > 0);
    // No fault: every completed order's saga moved its axis once.
    let moves = format!("moves: {completed} by sagas, {completed} succeeded, 0 failed");
    assert!(text.contains(&moves), "{moves:?} not in\n{text}");
    for oracle in json["oracles"].as_array().unwrap() {
        let id = oracle["id"].as_str().unwrap();
        let statement = oracle["statement"].as_str().unwrap();
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{id} ")))
            .unwrap_or_else(|| panic!("no line for {id} in\n{text}"));
        // Every oracle holds here, so the result column is five wide: said once, then the
        // statement.
        assert_eq!(line, format!("  {id:<4} holds  {statement}"));
    }
    assert!(text.contains("verdict: pass"), "{text}");
}

/// The SG4 line of `sim run` on the planted fencing bug with `[expect] failing = ["SG4"]` and a
/// restart of the motion host that exposes it (`planted`: the switch on or off), and the exit code.
fn planted_sg4_line(planted: bool) -> (Option<i32>, String) {
    let file = scratch_dir("planted").join(format!("planted-{planted}.toml"));
    let text = std::fs::read_to_string(repo().join("sim/tests/data/planted-fencing.toml"))
        .unwrap()
        .replace(
            "[workload.retry]",
            "[[fault]]\nat_s = 1.0\nkind = \"restart\"\nhost = \"motion-1\"\n\n[workload.retry]",
        )
        .replace(
            "motion_skips_fencing = true",
            &format!("motion_skips_fencing = {planted}"),
        );
    std::fs::write(&file, format!("{text}\n[expect]\nfailing = [\"SG4\"]\n")).unwrap();
    let out = sim(&["run", file.to_str().unwrap(), "--no-determinism-check"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("SG4 "))
        .unwrap_or_else(|| panic!("no SG4 line in\n{text}"))
        .to_owned();
    (out.status.code(), line)
}

#[test]
fn the_summary_says_what_a_planted_violation_was_expected_to_do() {
    let (code, line) = planted_sg4_line(true);
    assert!(
        line.contains("SG4  fails as expected  at most one live lease"),
        "{line}"
    );
    assert_eq!(code, Some(0), "{line}");
    let (code, line) = planted_sg4_line(false);
    assert!(
        line.contains("SG4  HOLDS, expected to fail  at most one"),
        "{line}"
    );
    assert_eq!(code, Some(1), "{line}");
}

/// A cell of three motion hosts with two axes each, orders through the gateway; `workload` is
/// appended.
fn three_motion_hosts(clients: u32, workload: &str) -> String {
    let mut text = format!(
        "# Goal: a cell of three motion hosts (test only).\nname = \"three\"\nduration_s = 4.0\n\
         settle_s = 1.0\nseed = 1\n\n[cell]\nclients = {clients}\nmotion_hosts = 3\n\n"
    );
    for (k, axis) in ["a", "b", "c", "d", "e", "f"].iter().enumerate() {
        text.push_str(&format!(
            "[axis.{axis}]\nmotion_host = \"motion-{}\"\nvelocity_deg_per_s_max = 180.0\n\
             acceleration_deg_per_s2_max = 720.0\njerk_deg_per_s3_max = 7200.0\n\
             position_deg_min = -180.0\nposition_deg_max = 180.0\n\n[axis.{axis}.plant]\n\
             preset = \"xm430-w350\"\n\n",
            k / 2 + 1
        ));
    }
    text.push_str(
        "[services]\norders_instances = 1\n\n[[services.gateway.key]]\nkey = \"op\"\n\
         consumer = \"line-1\"\nrole = \"operator\"\n\n[[services.inventory.part]]\n\
         name = \"bracket\"\nstock = 100\n\n",
    );
    text.push_str(workload);
    text
}

const ORDERS: &str = "[workload.orders]\ncount = 2\nfrom_s = 0.5\ninterval_ms = 500\n\
                      parts = [\"bracket\"]\ntargets_deg = [30.0]\napi_key = \"op\"\n";

#[test]
fn orders_through_the_gateway_need_no_client_per_motion_host() {
    let text = three_motion_hosts(1, ORDERS);
    let scenario =
        Scenario::from_source(&Source::new("three.toml", text)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(scenario.clients, 1);
    // Direct moves still go to one motion host per client: axes a (motion-1) and b (motion-1)
    // share one, a and c (motion-2) do not.
    let direct = |axes: &[&str]| {
        axes.iter()
            .map(|axis| {
                format!("[[workload.move]]\nat_s = 0.5\naxis = \"{axis}\"\ntarget_deg = 10.0\n")
            })
            .collect::<String>()
    };
    let fine = three_motion_hosts(1, &format!("{ORDERS}{}", direct(&["a", "b"])));
    Scenario::from_source(&Source::new("three.toml", fine)).unwrap_or_else(|e| panic!("{e}"));
    let refused = three_motion_hosts(1, &format!("{ORDERS}{}", direct(&["a", "c"])));
    let error = match Scenario::from_source(&Source::new("three.toml", refused)) {
        Ok(_) => panic!("one client cannot move axes of two motion hosts directly"),
        Err(e) => e.to_string(),
    };
    assert!(
        error.contains("a client talks to one motion host") && error.contains("cell.clients"),
        "{error}"
    );
}
