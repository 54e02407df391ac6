//! Benchmarks of the control core, and every figure of BENCHMARKS.md in one run (the machine
//! is shared and noisy: ratios are only meaningful between figures of the same run).
//!
//! - `plant_step/<preset>/{nalgebra,scalar}`: the plant's 1 ms of stepping against the
//!   hand-written scalar baseline (the group is `plant-model`'s, included from
//!   `plant-model/benches/shared/plant_step.rs`). Target: nalgebra within 1.2× of scalar.
//! - `axis_step`: one `AxisController::step` (observer, supervisor, trajectory sample, cascade)
//!   on an XM430-W350 configuration, mid-move, with feedback that follows the setpoint.
//! - `plant_and_control_1s/<preset>`: one simulated second of one axis, plant plus control at
//!   1 kHz, moving back and forth. Target: < 1 ms wall per simulated second (≥ 1000× real time).
//! - `plant_step_interleaved` and `one_axis_interleaved`: the same work timed in short
//!   alternating chunks, minimum and median (see `plant-model/benches/shared/plant_step.rs`
//!   for why): the figures that hold up on a shared, loaded machine.
//!
//! Run: `cargo bench -p control --bench control_step`. Instruction counts of the same workload,
//! free of machine noise: `one_axis_instructions`.

use std::hint::black_box;

use control::{Feedback, SafetyRequest};
use criterion::{Criterion, criterion_group, criterion_main};

#[path = "../../plant-model/benches/shared/plant_step.rs"]
mod plant_step;
#[path = "../tests/control/preset.rs"]
mod preset;
#[path = "../tests/control/rig.rs"]
mod rig;

/// Alternating move targets, rad.
const TARGETS_RAD: [f64; 2] = [core::f64::consts::FRAC_PI_2, 0.0];

fn axis_step(c: &mut Criterion) {
    let (_, config) = preset::axis("xm430-w350");
    let mut axis = control::AxisController::new(config);
    let mut t_s = 0.0;
    let mut feedback = Feedback {
        position_rad: 0.0,
        velocity_rad_per_s: 0.0,
        current_a: 0.0,
        winding_temperature_c: 30.0,
        valid: true,
        sample_index: 0,
    };
    axis.step(t_s, &feedback, true);
    axis.request(t_s, SafetyRequest::Enable);
    let mut next_target = 0;
    c.bench_function("axis_step", |b| {
        b.iter(|| {
            t_s += preset::CONTROL_PERIOD_S;
            if !axis.is_moving() {
                axis.start_move(t_s, TARGETS_RAD[next_target])
                    .expect("move starts");
                next_target = 1 - next_target;
            }
            let command = axis.step(t_s, black_box(&feedback), true);
            // Ideal tracking: the next feedback is this step's setpoint.
            let setpoint = axis.setpoint();
            feedback.position_rad = setpoint.position_rad;
            feedback.velocity_rad_per_s = setpoint.velocity_rad_per_s;
            black_box(command)
        })
    });
}

fn plant_and_control_one_second(c: &mut Criterion) {
    let mut group = c.benchmark_group("plant_and_control_1s");
    for name in plant_model::PRESET_NAMES {
        let (params, config) = preset::axis(name);
        let mut rig = rig::Rig::new(params, config, preset::CONTROL_PERIOD_NS, 1);
        rig.axis.request(rig.t_s(), SafetyRequest::Enable);
        let mut next_target = 0;
        group.bench_function(*name, |b| {
            b.iter(|| {
                let ticks_per_second = 1_000_000_000 / preset::CONTROL_PERIOD_NS;
                for _ in 0..ticks_per_second {
                    if !rig.axis.is_moving() {
                        let t_s = rig.t_s();
                        rig.axis
                            .start_move(t_s, TARGETS_RAD[next_target])
                            .expect("move starts");
                        next_target = 1 - next_target;
                    }
                    black_box(rig.advance());
                }
            })
        });
    }
    group.finish();
}

/// One axis, both presets alternating in chunks of `INTERLEAVED_TICKS` control ticks; prints
/// wall time per simulated second (min and median over the chunks) and the real-time factor.
fn one_axis_interleaved(_: &mut Criterion) {
    use plant_step::{ChunkTimes, INTERLEAVED_CHUNKS, INTERLEAVED_TICKS, wall_s};
    let mut axes: Vec<(&str, rig::Rig, usize, Vec<f64>)> = plant_model::PRESET_NAMES
        .iter()
        .map(|name| {
            let (params, config) = preset::axis(name);
            let mut rig = rig::Rig::new(params, config, preset::CONTROL_PERIOD_NS, 1);
            rig.axis.request(rig.t_s(), SafetyRequest::Enable);
            (*name, rig, 0, Vec::new())
        })
        .collect();
    for _ in 0..INTERLEAVED_CHUNKS {
        for (_, rig, next_target, times) in &mut axes {
            times.push(wall_s(|| {
                for _ in 0..INTERLEAVED_TICKS {
                    if !rig.axis.is_moving() {
                        let t_s = rig.t_s();
                        rig.axis
                            .start_move(t_s, TARGETS_RAD[*next_target])
                            .expect("move starts");
                        *next_target = 1 - *next_target;
                    }
                    black_box(rig.advance());
                }
            }));
        }
    }
    let simulated_s = INTERLEAVED_TICKS as f64 * preset::CONTROL_PERIOD_S;
    println!(
        "one_axis_interleaved: {INTERLEAVED_CHUNKS} alternating chunks of {INTERLEAVED_TICKS} \
         ticks per preset, wall time per simulated second"
    );
    for (name, _, _, times) in axes {
        let t = ChunkTimes::of(times);
        let (min_ms, median_ms) = (t.min_s / simulated_s * 1e3, t.median_s / simulated_s * 1e3);
        println!(
            "  {name}: min {min_ms:.3} ms ({:.0}× real time), median {median_ms:.3} ms \
             ({:.0}× real time)",
            1e3 / min_ms,
            1e3 / median_ms
        );
    }
}

criterion_group!(
    benches,
    plant_step::plant_step,
    plant_step::plant_step_interleaved,
    axis_step,
    plant_and_control_one_second,
    one_axis_interleaved
);
criterion_main!(benches);
