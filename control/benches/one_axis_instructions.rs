//! A fixed, deterministic workload for instruction counting (`valgrind --tool=callgrind`): the
//! same loop as `control_step`'s `plant_and_control_1s`, but a fixed number of simulated
//! seconds, so the count does not depend on how loaded the machine is. Wall-clock figures come
//! from the criterion benchmark; this one is the noise-free supporting evidence (BENCHMARKS.md).
//!
//! `cargo bench -p control --bench one_axis_instructions -- [seconds] [preset]` runs `preset`
//! (default: every preset) for `seconds` simulated seconds (default 10) after a 1 s warm-up and
//! prints a checksum of the final state (so the work cannot be optimised away, and a change of
//! results shows). Under callgrind, count only the measured part:
//!
//! ```text
//! valgrind --tool=callgrind --toggle-collect='*simulate_seconds*' \
//!     target/release/deps/one_axis_instructions-<hash> 10 sgmp-02b
//! ```

use std::hint::black_box;

use control::SafetyRequest;

// The shared test module also holds what only the tests use.
#[allow(dead_code)]
#[path = "../tests/control/preset.rs"]
mod preset;
#[path = "../tests/control/rig.rs"]
mod rig;

/// Alternating move targets, rad (as in `control_step`).
const TARGETS_RAD: [f64; 2] = [core::f64::consts::FRAC_PI_2, 0.0];
/// Upper bound on the simulated seconds a run accepts.
const SECONDS_MAX: u64 = 3600;

struct Workload {
    rig: rig::Rig,
    next_target: usize,
}

impl Workload {
    fn new(preset_name: &str) -> Workload {
        let (params, config) = preset::axis(preset_name);
        let mut rig = rig::Rig::new(params, config, preset::CONTROL_PERIOD_NS, 1);
        rig.axis.request(rig.t_s(), SafetyRequest::Enable);
        Workload {
            rig,
            next_target: 0,
        }
    }

    /// One control tick: a new move when the last one ended, then plant and controller.
    fn tick(&mut self) {
        if !self.rig.axis.is_moving() {
            let t_s = self.rig.t_s();
            self.rig
                .axis
                .start_move(t_s, TARGETS_RAD[self.next_target])
                .expect("move starts");
            self.next_target = 1 - self.next_target;
        }
        black_box(self.rig.advance());
    }
}

/// The measured part: `seconds` simulated seconds of one axis.
#[inline(never)]
fn simulate_seconds(workload: &mut Workload, seconds: u64) {
    let ticks = seconds * (1_000_000_000 / preset::CONTROL_PERIOD_NS);
    for _ in 0..ticks {
        workload.tick();
    }
}

fn main() {
    // Criterion-style arguments (`--bench`, filters) are ignored; a bare number is the duration,
    // a preset's name selects that preset.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds = args
        .iter()
        .find_map(|a| a.parse::<u64>().ok())
        .unwrap_or(10);
    let selected: Vec<&str> = plant_model::PRESET_NAMES
        .iter()
        .copied()
        .filter(|name| args.iter().any(|a| a == name))
        .collect();
    let presets = if selected.is_empty() {
        plant_model::PRESET_NAMES.to_vec()
    } else {
        selected
    };
    assert!(
        (1..=SECONDS_MAX).contains(&seconds),
        "seconds must be in 1..={SECONDS_MAX}, got {seconds}"
    );
    for name in presets {
        let mut workload = Workload::new(name);
        // Warm-up: one simulated second, not counted under --toggle-collect.
        for _ in 0..1_000_000_000 / preset::CONTROL_PERIOD_NS {
            workload.tick();
        }
        simulate_seconds(&mut workload, seconds);
        let truth = workload.rig.plant.truth();
        println!(
            "{name}: {seconds} s simulated, position {:.9} rad, winding {:.6} °C, fault {:?}",
            truth.position_rad,
            truth.winding_temperature_c,
            workload.rig.axis.fault().map(|f| f.code)
        );
    }
}
