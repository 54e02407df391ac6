//! The plant: one servo axis advanced in fixed steps up to the caller's time.
//!
//! Owns: simulated time (integer nanoseconds, a whole number of steps), the held drive command,
//! the external load, the active plant faults, and the orchestration of one step (conditions →
//! drivetrain → energy ledger → thermal → sensors). Does not own: the physics of each part
//! (`drivetrain`, `drive`, `friction`, `thermal`, `sensor`) or what drives it (`sim`'s simulated
//! drive, `hil`'s emulator, tests).
//!
//! `advance_to(t)` integrates lazily: it runs every whole step that ends at or before `t`, so
//! `now()` is the last step boundary at or before `t`; with a step dividing 1 ms, every
//! millisecond tick is a step boundary. Stepping in any chunks gives bit-identical results.

pub use crate::drive::DriveCommand;
pub use crate::energy::EnergyLedger;
pub use crate::sensor::SensorReading;

use crate::drive::CurrentLoop;
use crate::drivetrain::{Drivetrain, StepConditions};
use crate::fault::{ActiveFaults, PlantFault};
use crate::friction::Friction;
use crate::params::{AxisParams, RESISTANCE_REFERENCE_C};
use crate::sensor::{Sample, Sensors};
use crate::thermal::Thermal;
use core::time::Duration;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// The linear model is re-discretised when the winding resistance has drifted this fraction of
/// R₂₅ from the value in its matrices (≈ 2.6 K of copper): the drift is otherwise held as an
/// explicit voltage drop, and an explicit term must stay small next to the stiff electrical pole.
const RESISTANCE_DRIFT_FRACTION_MAX: f64 = 0.01;

/// Longest run a plant accepts, ns (about 584 years would overflow u64; keep a sane bound).
pub const RUN_NS_MAX: u64 = 1_000_000 * 1_000_000_000;

/// The true state, for oracles (never for a controller: it sees [`SensorReading`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct GroundTruth {
    /// Output shaft (load side) angle, rad.
    pub position_rad: f64,
    /// Output shaft (load side) velocity, rad/s.
    pub velocity_rad_per_s: f64,
    /// Motor shaft angle, rad.
    pub motor_position_rad: f64,
    /// Motor shaft velocity, rad/s.
    pub motor_velocity_rad_per_s: f64,
    /// Winding current, A.
    pub current_a: f64,
    /// Electromagnetic torque at the motor shaft, N·m.
    pub motor_torque_nm: f64,
    pub winding_temperature_c: f64,
    pub housing_temperature_c: f64,
    /// Bus voltage available to the bridge, V.
    pub bus_voltage_v: f64,
    pub energy: EnergyLedger,
    /// Torque the holding brake exerted on the output during the last step, N·m (0 when off);
    /// while it holds, the torque a locked-output bench would measure.
    pub brake_torque_nm: f64,
    /// External load torque at the output now (set value + profile + load-step fault), N·m.
    pub load_torque_nm: f64,
    /// Gear twist θ_m/N − θ_L inside the backlash, rad (0 for a rigid gear).
    pub backlash_twist_rad: f64,
}

/// One servo axis.
#[derive(Clone, Debug)]
pub struct Plant {
    params: AxisParams,
    step_ns: u64,
    step_s: f64,
    now_ns: u64,
    steps_per_sample: u64,
    steps_to_sample: u64,
    command: DriveCommand,
    current_loop: CurrentLoop,
    drivetrain: Drivetrain,
    friction: Friction,
    thermal: Thermal,
    sensors: Sensors,
    losses: EnergyLedger,
    faults: ActiveFaults,
    load_torque_nm: f64,
    profile_ns: Vec<u64>,
    profile_next: usize,
    profile_torque_nm: f64,
}

impl Plant {
    /// A plant at rest (angle 0, no current, at ambient temperature), bridge off. `noise` is the
    /// sensor noise stream (derive it from the run's seed with its own `set_stream`).
    ///
    /// Panics if `params` do not validate: check them with [`AxisParams::validate`] first.
    pub fn new(params: AxisParams, noise: ChaCha8Rng) -> Plant {
        if let Err(e) = params.validate() {
            panic!("Plant::new needs valid parameters: {e}");
        }
        let step_ns = params.integration.step_ns;
        let step_s = step_ns as f64 * 1e-9;
        let drivetrain = Drivetrain::new(&params);
        let thermal = Thermal::new(&params.thermal);
        let first = Sample {
            output_position_rad: 0.0,
            current_a: 0.0,
            winding_temperature_c: thermal.winding_c,
            bus_voltage_v: params.drive.bus_voltage_v,
            encoder_offset_counts: 0,
            encoder_dropout: false,
        };
        let sensors = Sensors::new(&params.sensor, noise, &first);
        let steps_per_sample = params.sensor.sample_period_ns / step_ns;
        let current_loop = CurrentLoop::new(
            params.motor.resistance_ohm,
            params.motor.inductance_h,
            params.motor.torque_constant_nm_per_a,
            params.drive.current_a_max,
            params.drive.current_loop_bandwidth_hz,
            step_s,
        );
        let profile_ns = params
            .load
            .torque_profile
            .iter()
            .map(|p| libm::round(p.at_s * 1e9) as u64)
            .collect();
        Plant {
            step_ns,
            step_s,
            now_ns: 0,
            steps_per_sample,
            steps_to_sample: steps_per_sample,
            command: DriveCommand::Off,
            current_loop,
            drivetrain,
            friction: Friction::new(&params.friction),
            thermal,
            sensors,
            losses: EnergyLedger::default(),
            faults: ActiveFaults::default(),
            load_torque_nm: params.load.torque_nm,
            profile_ns,
            profile_next: 0,
            profile_torque_nm: 0.0,
            params,
        }
    }

    pub fn params(&self) -> &AxisParams {
        &self.params
    }

    /// Sets the drive command from now on (held until the next command). A change of mode
    /// resets the current loop's integrator, as a drive does when it re-enables.
    pub fn command(&mut self, cmd: DriveCommand) {
        match cmd {
            DriveCommand::Off => {}
            DriveCommand::Voltage { volts } => {
                assert!(volts.is_finite(), "voltage command must be finite: {volts}");
            }
            DriveCommand::Current { amps } => {
                assert!(amps.is_finite(), "current command must be finite: {amps}");
            }
        }
        if core::mem::discriminant(&cmd) != core::mem::discriminant(&self.command) {
            self.current_loop.reset();
        }
        self.command = cmd;
    }

    /// Integrates in fixed steps up to `t` (every step that ends at or before `t`).
    /// Panics if `t` is before `now()`.
    pub fn advance_to(&mut self, t: Duration) {
        let t_ns = u64::try_from(t.as_nanos()).unwrap_or(u64::MAX);
        assert!(t_ns <= RUN_NS_MAX, "advance_to {t:?} beyond the run limit");
        assert!(
            t_ns >= self.now_ns,
            "advance_to {t:?} is before now ({:?})",
            self.now()
        );
        while t_ns - self.now_ns >= self.step_ns {
            self.step();
        }
    }

    /// The plant's time: the last step boundary reached.
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.now_ns)
    }

    /// What the drive reports (the latest sample).
    pub fn sensors(&self) -> SensorReading {
        self.sensors.reading()
    }

    /// The true state now, for oracles.
    pub fn truth(&self) -> GroundTruth {
        let d = &self.drivetrain;
        let current = d.current_a();
        let energy = EnergyLedger {
            kinetic_j: d.kinetic_j(),
            magnetic_j: 0.5 * self.params.motor.inductance_h * current * current,
            elastic_j: d.elastic_j(),
            ..self.losses
        };
        GroundTruth {
            position_rad: d.output_position_rad(),
            velocity_rad_per_s: d.output_velocity_rad_per_s(),
            motor_position_rad: d.motor_position_rad(),
            motor_velocity_rad_per_s: d.motor_velocity_rad_per_s(),
            current_a: current,
            motor_torque_nm: d.motor_torque_nm(),
            winding_temperature_c: self.thermal.winding_c,
            housing_temperature_c: self.thermal.housing_c,
            bus_voltage_v: self.bus_voltage_v(),
            energy,
            brake_torque_nm: d.brake_torque_nm(),
            load_torque_nm: self.total_load_nm(),
            backlash_twist_rad: d.twist_rad(),
        }
    }

    /// Starts a plant fault now; it lasts until [`Plant::clear_faults`]. A fault of a kind that
    /// is already active replaces it.
    pub fn inject(&mut self, fault: PlantFault) {
        let before = self.faults.torque_loss_fraction;
        self.faults.activate(&fault);
        if self.faults.torque_loss_fraction != before {
            self.rediscretise();
        }
    }

    /// Ends every plant fault.
    pub fn clear_faults(&mut self) {
        let had_torque_loss = self.faults.torque_loss_fraction != 0.0;
        self.faults = ActiveFaults::default();
        if had_torque_loss {
            self.rediscretise();
        }
    }

    /// Sets the external load torque at the output (a positive torque opposes positive
    /// rotation), replacing `load.torque_nm`; the params' profile and a load-step fault add to it.
    pub fn set_load_torque_nm(&mut self, torque_nm: f64) {
        assert!(
            torque_nm.is_finite(),
            "load torque must be finite: {torque_nm}"
        );
        self.load_torque_nm = torque_nm;
    }

    /// Winding resistance at the current winding temperature, Ω.
    fn winding_resistance_ohm(&self) -> f64 {
        let m = &self.params.motor;
        m.resistance_ohm
            * (1.0
                + m.resistance_temperature_coefficient_per_k
                    * (self.thermal.winding_c - RESISTANCE_REFERENCE_C))
    }

    /// Re-discretises the drivetrain for the present resistance and torque constant.
    fn rediscretise(&mut self) {
        let kt =
            self.params.motor.torque_constant_nm_per_a * (1.0 - self.faults.torque_loss_fraction);
        self.drivetrain.set_motor(self.winding_resistance_ohm(), kt);
    }

    fn bus_voltage_v(&self) -> f64 {
        self.faults
            .bus_voltage_v
            .unwrap_or(self.params.drive.bus_voltage_v)
    }

    fn total_load_nm(&self) -> f64 {
        self.load_torque_nm + self.profile_torque_nm + self.faults.load_step_nm
    }

    fn step(&mut self) {
        while self.profile_next < self.profile_ns.len()
            && self.profile_ns[self.profile_next] <= self.now_ns
        {
            self.profile_torque_nm = self.params.load.torque_profile[self.profile_next].torque_nm;
            self.profile_next += 1;
        }
        let model_resistance_ohm = self.drivetrain.model_resistance_ohm();
        let conditions = StepConditions {
            load_nm: self.total_load_nm(),
            brake_nm_max: self.faults.brake_nm,
            bus_v: self.bus_voltage_v(),
            resistance_excess_ohm: self.winding_resistance_ohm() - model_resistance_ohm,
        };
        let e = self.drivetrain.step(
            &conditions,
            self.command,
            &mut self.current_loop,
            &self.friction,
        );
        let l = &mut self.losses;
        l.electrical_in_j += e.electrical_in_j;
        l.copper_loss_j += e.copper_j;
        l.friction_loss_j += e.friction_j;
        l.brake_loss_j += e.brake_j;
        l.gear_loss_j += e.gear_j;
        l.load_work_j += e.load_j;
        l.backlash_loss_j += e.backlash_j;
        let ambient_c = self
            .faults
            .ambient_c
            .unwrap_or(self.params.thermal.ambient_c);
        self.thermal.step(e.copper_j, self.step_s, ambient_c);
        self.now_ns += self.step_ns;
        let drift_ohm = self.winding_resistance_ohm() - model_resistance_ohm;
        if drift_ohm.abs() > RESISTANCE_DRIFT_FRACTION_MAX * self.params.motor.resistance_ohm {
            self.rediscretise();
        }

        self.steps_to_sample -= 1;
        if self.steps_to_sample == 0 {
            self.steps_to_sample = self.steps_per_sample;
            let sample = Sample {
                output_position_rad: self.drivetrain.output_position_rad(),
                current_a: self.drivetrain.current_a(),
                winding_temperature_c: self.thermal.winding_c,
                bus_voltage_v: conditions.bus_v,
                encoder_offset_counts: self.faults.encoder_offset_counts,
                encoder_dropout: self.faults.encoder_dropout,
            };
            self.sensors.sample(&sample);
        }
    }

    /// The rigid model's exact step maps as plain arrays, for the scalar reference in the
    /// benchmark (which must run the same arithmetic). `None` with backlash.
    #[doc(hidden)]
    pub fn rigid_step_maps(&self) -> Option<RigidStepMaps> {
        let (zoh, inertia) = self.drivetrain.rigid_maps()?;
        let mat = |m: &nalgebra::SMatrix<f64, 2, 4>| {
            core::array::from_fn(|r| core::array::from_fn(|c| m[(r, c)]))
        };
        let quad = |m: &nalgebra::SMatrix<f64, 4, 4>| {
            core::array::from_fn(|r| core::array::from_fn(|c| m[(r, c)]))
        };
        Some(RigidStepMaps {
            step: mat(&zoh.step),
            integral: mat(&zoh.integral),
            current_sq: quad(&zoh.quadratic[0]),
            velocity_sq: quad(&zoh.quadratic[1]),
            inertia_kg_m2: inertia,
        })
    }
}

/// The rigid model's exact step maps (see [`Plant::rigid_step_maps`]); `z = [i, ω_m, u, τ_h]`.
#[doc(hidden)]
#[derive(Clone, Debug, PartialEq)]
pub struct RigidStepMaps {
    pub step: [[f64; 4]; 2],
    pub integral: [[f64; 4]; 2],
    pub current_sq: [[f64; 4]; 4],
    pub velocity_sq: [[f64; 4]; 4],
    pub inertia_kg_m2: f64,
}
