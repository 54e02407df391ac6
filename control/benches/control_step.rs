//! Benchmarks of the control core.
//!
//! - `axis_step`: one `AxisController::step` (observer, supervisor, trajectory sample, cascade)
//!   on an XM430-W350 configuration, mid-move, with feedback that follows the setpoint.
//! - `plant_and_control_1s/<preset>`: one simulated second of one axis, plant plus control at
//!   1 kHz, moving back and forth. Target: < 1 ms wall per simulated second.

use std::hint::black_box;

use control::{Feedback, SafetyRequest};
use criterion::{Criterion, criterion_group, criterion_main};

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

criterion_group!(benches, axis_step, plant_and_control_one_second);
criterion_main!(benches);
