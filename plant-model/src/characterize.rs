//! Characterization: what a test bench measures on an axis, found by simulated experiments on
//! fresh plants (never by evaluating the model's formulas).
//!
//! Owns: the experiments and their read-outs. Does not own: the physics (`plant`). All results
//! are at the output shaft.
//!
//! | quantity | experiment |
//! |---|---|
//! | no-load speed | voltage step to the nominal bus voltage from rest, no load; steady output speed |
//! | stall torque | output locked (brake), current command at the drive's current limit, realised within the bus voltage; the lock's reaction torque once the current has settled |
//! | electrical time constant | output locked, voltage step to 10 % of the bus; time for the current to reach 63.2 % of its final value |
//! | mechanical time constant | the no-load voltage step; time for the output speed to reach 63.2 % of its final value |
//!
//! The stall definition follows the datasheets: the XM430-W350's 4.1 N·m "stall torque" is at
//! 12 V and 2.3 A, which is the locked-rotor current its 12 V bus can push (12 V / 5.2 Ω) and
//! below its 3.21 A current limit, so the drive is voltage-limited there; the SGMP-02B's 1.91 N·m
//! "peak torque" is at its 8.4 A peak current, where the drive is current-limited. "Full drive
//! effort against a locked output" gives both.
//!
//! The two time-constant experiments run at a 1 µs step (a bench's fast oscilloscope): the
//! XM430's electrical time constant (≈ 38 µs) is shorter than the default 100 µs step. Steady
//! results use the configured step. Each experiment has a run-length limit.

use crate::fault::{BRAKE_TORQUE_NM_MAX, PlantFault};
use crate::params::AxisParams;
use crate::plant::{DriveCommand, GroundTruth, Plant};
use core::time::Duration;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use serde::Serialize;

/// What a test bench measures on an axis, all at the output shaft.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Characterization {
    /// Steady output speed with the nominal bus voltage applied and no load, rpm.
    pub no_load_speed_rpm: f64,
    /// Torque on a locked output at full drive effort (see the module docs), N·m.
    pub stall_torque_nm: f64,
    /// Current rise to 63.2 % with the output locked, s.
    pub electrical_time_constant_s: f64,
    /// Output speed rise to 63.2 % after a voltage step, s.
    pub mechanical_time_constant_s: f64,
}

/// Step of the time-constant experiments, ns.
const FINE_STEP_NS: u64 = 1_000;
/// Settling is judged over chunks of this length, ns.
const CHUNK_NS: u64 = 1_000_000;
/// Limit on any one experiment's simulated length, ns.
const EXPERIMENT_NS_MAX: u64 = 20_000_000_000;
/// 1 − e⁻¹.
const RISE_FRACTION: f64 = 0.632_120_558_828_557_7;
/// Fraction of the bus used for the locked-rotor voltage step (keeps heating negligible).
const ELECTRICAL_STEP_BUS_FRACTION: f64 = 0.1;

/// Runs the bench experiments on fresh plants built from `params` (which must validate).
///
/// Panics (naming the experiment) if an experiment finds no steady state within its limit or the
/// axis never leaves zero, e.g. friction above the stall torque: such parameters describe no
/// servo a bench could characterize.
pub fn characterize(params: &AxisParams) -> Characterization {
    let electrical = electrical_time_constant_s(params);
    let (no_load_rad_per_s, mechanical) = voltage_step(params);
    let settle_s = 0.02 + 20.0 * electrical;
    Characterization {
        no_load_speed_rpm: no_load_rad_per_s * 60.0 / core::f64::consts::TAU,
        stall_torque_nm: locked_torque_nm(params, params.drive.current_a_max, settle_s),
        electrical_time_constant_s: electrical,
        mechanical_time_constant_s: mechanical,
    }
}

/// Torque on a locked output with the drive's current loop commanded to `current_a` (clamped
/// to the drive's limit and realised within the bus voltage), measured after the current has
/// settled, N·m. A bench with a torque arm on the output does the same.
pub fn locked_output_torque_nm(params: &AxisParams, current_a: f64) -> f64 {
    let settle_s = 0.02 + 20.0 * electrical_time_constant_s(params);
    locked_torque_nm(params, current_a, settle_s)
}

fn locked_torque_nm(params: &AxisParams, current_a: f64, settle_s: f64) -> f64 {
    let mut plant = fresh_plant(params.clone());
    plant.inject(PlantFault::Brake {
        torque_nm: BRAKE_TORQUE_NM_MAX,
    });
    plant.command(DriveCommand::Current { amps: current_a });
    let settle_ns = (settle_s * 1e9) as u64;
    plant.advance_to(Duration::from_nanos(settle_ns.min(EXPERIMENT_NS_MAX)));
    plant.truth().brake_torque_nm
}

/// Output locked, a voltage step; the time the current takes to reach 63.2 % of its final value.
fn electrical_time_constant_s(params: &AxisParams) -> f64 {
    let fine = with_step(params, FINE_STEP_NS);
    let setup = || {
        let mut plant = fresh_plant(fine.clone());
        plant.inject(PlantFault::Brake {
            torque_nm: BRAKE_TORQUE_NM_MAX,
        });
        plant.command(DriveCommand::Voltage {
            volts: ELECTRICAL_STEP_BUS_FRACTION * fine.drive.bus_voltage_v,
        });
        plant
    };
    rise_time_s(setup, |t| t.current_a, 1e-5)
}

/// From rest, the nominal bus voltage applied, no load: (steady output speed, time to 63.2 %).
fn voltage_step(params: &AxisParams) -> (f64, f64) {
    let fine = with_step(params, FINE_STEP_NS);
    let mut fine_no_load = fine.clone();
    fine_no_load.load.torque_nm = 0.0;
    fine_no_load.load.torque_profile.clear();
    let setup = || {
        let mut plant = fresh_plant(fine_no_load.clone());
        plant.command(DriveCommand::Voltage {
            volts: fine_no_load.drive.bus_voltage_v,
        });
        plant
    };
    let final_speed = settle(&mut setup(), |t| t.velocity_rad_per_s, 1e-6);
    let rise = rise_time_to(&mut setup(), |t| t.velocity_rad_per_s, final_speed);
    (final_speed, rise)
}

/// Runs `setup()` twice: once to find the settled value of `read`, once to find when it first
/// reaches 63.2 % of it (interpolated between steps).
fn rise_time_s(
    setup: impl Fn() -> Plant,
    read: impl Fn(&GroundTruth) -> f64,
    settle_relative: f64,
) -> f64 {
    let final_value = settle(&mut setup(), &read, settle_relative);
    rise_time_to(&mut setup(), read, final_value)
}

/// Advances in chunks until `read` changes by less than `relative` (of its value) over a chunk.
fn settle(plant: &mut Plant, read: impl Fn(&GroundTruth) -> f64, relative: f64) -> f64 {
    let mut previous = read(&plant.truth());
    let mut t_ns = 0;
    loop {
        t_ns += CHUNK_NS;
        assert!(
            t_ns <= EXPERIMENT_NS_MAX,
            "characterize: no steady state within {} s",
            EXPERIMENT_NS_MAX as f64 * 1e-9
        );
        plant.advance_to(Duration::from_nanos(t_ns));
        let value = read(&plant.truth());
        if t_ns >= 2 * CHUNK_NS && (value - previous).abs() <= relative * value.abs() {
            return value;
        }
        previous = value;
    }
}

/// Steps until `read` reaches `RISE_FRACTION · final_value`; the crossing time, interpolated.
fn rise_time_to(plant: &mut Plant, read: impl Fn(&GroundTruth) -> f64, final_value: f64) -> f64 {
    assert!(
        final_value != 0.0,
        "characterize: the response never left zero"
    );
    let target = RISE_FRACTION * final_value;
    let step_ns = plant.params().integration.step_ns;
    let mut previous = (0.0, read(&plant.truth()));
    loop {
        let t_ns = plant.now().as_nanos() as u64 + step_ns;
        assert!(t_ns <= EXPERIMENT_NS_MAX, "characterize: no 63 % crossing");
        plant.advance_to(Duration::from_nanos(t_ns));
        let value = read(&plant.truth());
        let t_s = t_ns as f64 * 1e-9;
        if (value - target) * final_value.signum() >= 0.0 {
            let (t0, v0) = previous;
            return t0 + (t_s - t0) * (target - v0) / (value - v0);
        }
        previous = (t_s, value);
    }
}

fn with_step(params: &AxisParams, step_ns: u64) -> AxisParams {
    let mut p = params.clone();
    p.integration.step_ns = step_ns;
    p
}

fn fresh_plant(params: AxisParams) -> Plant {
    // The experiments read the ground truth; the noise stream only feeds the sensors.
    Plant::new(params, ChaCha8Rng::seed_from_u64(0))
}
