//! Controller configuration for the `plant-model` presets, shared by the closed-loop tests and
//! the benchmark (included there with `#[path]`).
//!
//! The gains come from the plant's output-shaft constants (`AxisParams::output_shaft()`) and a
//! velocity-loop bandwidth through `AxisConfig::from_plant`; only the bandwidth, the move limits
//! and the soft limits are chosen here, per preset, with the reason beside each.

use control::{AxisConfig, DelayCompensation, PlantConstants, TrajectoryLimits};
use plant_model::AxisParams;

/// Control period: both presets' sensors sample at 1 kHz, so the loops run at 1 kHz.
pub(crate) const CONTROL_PERIOD_NS: u64 = 1_000_000;
pub(crate) const CONTROL_PERIOD_S: f64 = CONTROL_PERIOD_NS as f64 * 1e-9;

/// The controller's view of the plant, from the output-shaft constants.
pub(crate) fn plant_constants(params: &AxisParams) -> PlantConstants {
    let shaft = params.output_shaft();
    PlantConstants {
        inertia_kg_m2: shaft.inertia_kg_m2,
        torque_constant_nm_per_a: shaft.torque_constant_nm_per_a,
        viscous_nm_s_per_rad: shaft.viscous_nm_s_per_rad,
        coulomb_nm: shaft.coulomb_nm,
        current_a_max: shaft.current_a_max,
    }
}

/// Per-preset choices.
pub(crate) struct Tuning {
    pub(crate) velocity_bandwidth_hz: f64,
    pub(crate) limits: TrajectoryLimits,
}

pub(crate) fn tuning(preset: &str) -> Tuning {
    match preset {
        // Output: J = 0.030 kg·m², Kt = 1.78 N·m/A, 3.21 A, 4.8 rad/s no-load at 12 V.
        // Speed 3 rad/s leaves 12 − 2.42·3 ≈ 4.7 V of headroom (≈ 0.9 A) against back-EMF;
        // 20 rad/s² needs J·a/Kt ≈ 0.34 A plus friction. Bandwidth: a tenth of what the 1 kHz
        // loop could carry, because the 4096-count encoder makes the velocity estimate coarse.
        "xm430-w350" => Tuning {
            velocity_bandwidth_hz: 8.0,
            limits: TrajectoryLimits {
                velocity_rad_per_s_max: 3.0,
                acceleration_rad_per_s2_max: 20.0,
                jerk_rad_per_s3_max: 200.0,
            },
        },
        // Output (direct drive, 3× load inertia): J = 8.4e-5 kg·m², Kt = 0.232 N·m/A, 8.4 A,
        // 4500 rpm maximum. 5000 rad/s² needs ≈ 1.8 A; 200 rad/s is 40 % of the maximum speed.
        // A 20-bit encoder allows a stiffer loop: 40 Hz, still a 25th of the control rate.
        "sgmp-02b" => Tuning {
            velocity_bandwidth_hz: 40.0,
            limits: TrajectoryLimits {
                velocity_rad_per_s_max: 200.0,
                acceleration_rad_per_s2_max: 5000.0,
                jerk_rad_per_s3_max: 5.0e5,
            },
        },
        other => panic!("no tuning for preset {other}"),
    }
}

/// Plant parameters and a complete axis configuration for `preset`, soft limits ±2π, other
/// supervisor settings at the `AxisConfig::from_plant` defaults.
pub(crate) fn axis(preset: &str) -> (AxisParams, AxisConfig) {
    let params = AxisParams::preset(preset).expect("known preset");
    let tuning = tuning(preset);
    let mut config = AxisConfig::from_plant(
        plant_constants(&params),
        tuning.velocity_bandwidth_hz,
        tuning.limits,
        -2.0 * core::f64::consts::PI,
        2.0 * core::f64::consts::PI,
    );
    // The drive's current loop lags its command by about 1/(2π·f): compensated as actuation
    // delay on top of the half-period hold.
    let current_loop_lag_s =
        1.0 / (2.0 * core::f64::consts::PI * params.drive.current_loop_bandwidth_hz);
    config.gains.delay_compensation = DelayCompensation::Lead {
        actuation_delay_s: current_loop_lag_s,
    };
    config.validate().expect("preset configuration is valid");
    (params, config)
}
