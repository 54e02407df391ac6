//! Helpers shared by the test modules: building plants and running simple command schedules.

use core::time::Duration;
use plant_model::{AxisParams, DriveCommand, Plant};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

pub(crate) fn preset(name: &str) -> AxisParams {
    AxisParams::preset(name).unwrap_or_else(|e| panic!("{e}"))
}

pub(crate) fn plant(params: AxisParams, seed: u64) -> Plant {
    Plant::new(params, ChaCha8Rng::seed_from_u64(seed))
}

/// Advances `plant` by `ms` milliseconds from its current time.
pub(crate) fn run_ms(plant: &mut Plant, ms: u64) {
    let t = plant.now() + Duration::from_millis(ms);
    plant.advance_to(t);
}

/// Friction, backlash and temperature dependence removed: the linear DC-motor model.
pub(crate) fn linear(mut p: AxisParams) -> AxisParams {
    p.friction.breakaway_nm = 0.0;
    p.friction.coulomb_nm = 0.0;
    p.friction.viscous_nm_s_per_rad = 0.0;
    p.backlash.width_rad = 0.0;
    p.motor.resistance_temperature_coefficient_per_k = 0.0;
    p.load.torque_nm = 0.0;
    p
}

/// A move: accelerate forward, brake, reverse, then coast with the bridge off.
pub(crate) fn move_schedule(plant: &mut Plant, amps: f64) {
    plant.command(DriveCommand::Current { amps });
    run_ms(plant, 150);
    plant.command(DriveCommand::Current { amps: -amps });
    run_ms(plant, 250);
    plant.command(DriveCommand::Current { amps: 0.3 * amps });
    run_ms(plant, 100);
    plant.command(DriveCommand::Off);
    run_ms(plant, 200);
}
