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
/// Checked once per sample period, after the thermal update.
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
    /// When the next profile point applies, ns (`u64::MAX` after the last): one comparison per
    /// burst instead of a bounds check and an index.
    profile_next_ns: u64,
    profile_torque_nm: f64,
    /// The held conditions of the next step: everything but `resistance_excess_ohm` changes
    /// only on a command, fault, load or profile event (`refresh_conditions`), so it is not
    /// recomputed every step; the excess changes with the temperature, once per sample period.
    conditions: StepConditions,
    /// Sample period, s: the interval of the thermal update.
    sample_period_s: f64,
    /// Copper loss of the current sample period drained early (before a re-discretisation),
    /// J: it heats the winding at the period's end with the rest.
    period_heat_j: f64,
    /// Ambient the housing sheds heat to now (params or the over-heating fault), °C.
    ambient_c: f64,
    /// Re-discretise when |R(T) − R_model| exceeds this, Ω.
    resistance_drift_ohm_max: f64,
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
        let sample_period_s = params.sensor.sample_period_ns as f64 * 1e-9;
        let thermal = Thermal::with_interval(&params.thermal, sample_period_s);
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
        let profile_ns: Vec<u64> = params
            .load
            .torque_profile
            .iter()
            .map(|p| libm::round(p.at_s * 1e9) as u64)
            .collect();
        let profile_next_ns = profile_ns.first().copied().unwrap_or(u64::MAX);
        let mut plant = Plant {
            step_ns,
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
            profile_next_ns,
            profile_torque_nm: 0.0,
            conditions: StepConditions {
                load_nm: 0.0,
                brake_nm_max: None,
                bus_v: 0.0,
                resistance_excess_ohm: 0.0,
            },
            sample_period_s,
            period_heat_j: 0.0,
            ambient_c: params.thermal.ambient_c,
            resistance_drift_ohm_max: RESISTANCE_DRIFT_FRACTION_MAX * params.motor.resistance_ohm,
            params,
        };
        plant.refresh_conditions();
        plant.refresh_resistance_excess();
        // An ambient far from 25 °C: start with the matrices for the actual resistance.
        if plant.conditions.resistance_excess_ohm.abs() > plant.resistance_drift_ohm_max {
            plant.rediscretise();
        }
        plant
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
            self.run_burst(t_ns);
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

    /// The true state now, for oracles. The temperatures are those of the last sample instant
    /// (the thermal model is updated once per sample period, see `thermal`); the energy ledger
    /// is exact at every step.
    pub fn truth(&self) -> GroundTruth {
        let d = &self.drivetrain;
        let current = d.current_a();
        let accrued = d.accrued_losses(self.conditions.resistance_excess_ohm);
        let energy = EnergyLedger {
            kinetic_j: d.kinetic_j(),
            magnetic_j: 0.5 * self.params.motor.inductance_h * current * current,
            elastic_j: d.elastic_j(),
            copper_loss_j: self.losses.copper_loss_j + accrued.copper_j,
            friction_loss_j: self.losses.friction_loss_j + accrued.friction_j,
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
        self.refresh_conditions();
    }

    /// Ends every plant fault.
    pub fn clear_faults(&mut self) {
        let had_torque_loss = self.faults.torque_loss_fraction != 0.0;
        self.faults = ActiveFaults::default();
        if had_torque_loss {
            self.rediscretise();
        }
        self.refresh_conditions();
    }

    /// Sets the external load torque at the output (a positive torque opposes positive
    /// rotation), replacing `load.torque_nm`; the params' profile and a load-step fault add to it.
    pub fn set_load_torque_nm(&mut self, torque_nm: f64) {
        assert!(
            torque_nm.is_finite(),
            "load torque must be finite: {torque_nm}"
        );
        self.load_torque_nm = torque_nm;
        self.refresh_conditions();
    }

    /// Winding resistance at the current winding temperature, Ω.
    fn winding_resistance_ohm(&self) -> f64 {
        let m = &self.params.motor;
        winding_resistance_ohm(
            m.resistance_ohm,
            m.resistance_temperature_coefficient_per_k,
            self.thermal.winding_c,
        )
    }

    /// Re-discretises the drivetrain for the present resistance and torque constant.
    fn rediscretise(&mut self) {
        // The losses accrued so far belong to the old maps.
        self.period_heat_j += self.drain_losses();
        let kt =
            self.params.motor.torque_constant_nm_per_a * (1.0 - self.faults.torque_loss_fraction);
        self.drivetrain.set_motor(self.winding_resistance_ohm(), kt);
        self.refresh_resistance_excess();
    }

    /// Books the drivetrain's accrued losses into the ledger; returns their copper part, J.
    fn drain_losses(&mut self) -> f64 {
        let accrued = self
            .drivetrain
            .drain_losses(self.conditions.resistance_excess_ohm);
        self.losses.copper_loss_j += accrued.copper_j;
        self.losses.friction_loss_j += accrued.friction_j;
        accrued.copper_j
    }

    /// At each sample instant: the period's copper heat goes into the thermal model, and the
    /// linear model follows the winding's resistance when it has drifted too far.
    fn end_sample_period(&mut self) {
        let heat_j = core::mem::take(&mut self.period_heat_j) + self.drain_losses();
        self.thermal
            .step(heat_j, self.sample_period_s, self.ambient_c);
        self.refresh_resistance_excess();
        if self.conditions.resistance_excess_ohm.abs() > self.resistance_drift_ohm_max {
            self.rediscretise();
        }
    }

    /// Recomputes the held conditions that change only on events (load, profile, faults).
    fn refresh_conditions(&mut self) {
        self.conditions.load_nm = self.total_load_nm();
        self.conditions.brake_nm_max = self.faults.brake_nm;
        self.conditions.bus_v = self.bus_voltage_v();
        self.ambient_c = self
            .faults
            .ambient_c
            .unwrap_or(self.params.thermal.ambient_c);
    }

    /// R(T) − R_model for the next steps: after every thermal update and re-discretisation.
    fn refresh_resistance_excess(&mut self) {
        self.conditions.resistance_excess_ohm =
            self.winding_resistance_ohm() - self.drivetrain.model_resistance_ohm();
    }

    fn bus_voltage_v(&self) -> f64 {
        self.faults
            .bus_voltage_v
            .unwrap_or(self.params.drive.bus_voltage_v)
    }

    fn total_load_nm(&self) -> f64 {
        self.load_torque_nm + self.profile_torque_nm + self.faults.load_step_nm
    }

    /// Applies every profile point due by now.
    #[cold]
    fn advance_profile(&mut self) {
        while self.profile_next < self.profile_ns.len()
            && self.profile_ns[self.profile_next] <= self.now_ns
        {
            self.profile_torque_nm = self.params.load.torque_profile[self.profile_next].torque_nm;
            self.profile_next += 1;
        }
        self.profile_next_ns = self
            .profile_ns
            .get(self.profile_next)
            .copied()
            .unwrap_or(u64::MAX);
        self.refresh_conditions();
    }

    /// Runs the steps up to the next event: the end of the steps before `t_ns`, a sample
    /// instant or a load-profile point (at least one step). The events are at fixed instants,
    /// so the step sequence, and every result, does not depend on where `advance_to` calls end.
    #[inline]
    fn run_burst(&mut self, t_ns: u64) {
        if self.profile_next_ns <= self.now_ns {
            self.advance_profile();
        }
        // Up to the next sample instant, unless `t_ns` or a profile point comes first. The
        // integer divisions (tens of cycles each) are only needed in those rarer cases.
        let mut burst = self.steps_to_sample;
        let span_ns = burst * self.step_ns;
        if t_ns - self.now_ns < span_ns {
            burst = (t_ns - self.now_ns) / self.step_ns;
        }
        if self.profile_next_ns - self.now_ns < span_ns {
            // Steps that start before the profile point (at least one: it is after now).
            burst = burst.min((self.profile_next_ns - self.now_ns).div_ceil(self.step_ns));
        }
        debug_assert!(burst >= 1, "a burst runs at least one step");

        self.drivetrain.run(
            burst,
            &self.conditions,
            self.command,
            &mut self.current_loop,
            &self.friction,
            &mut self.losses,
        );
        self.now_ns += burst * self.step_ns;
        self.steps_to_sample -= burst;
        if self.steps_to_sample == 0 {
            self.steps_to_sample = self.steps_per_sample;
            self.end_sample_period();
            self.sample();
        }
    }

    /// Takes a sensor sample of the state now.
    fn sample(&mut self) {
        let sample = Sample {
            output_position_rad: self.drivetrain.output_position_rad(),
            current_a: self.drivetrain.current_a(),
            winding_temperature_c: self.thermal.winding_c,
            bus_voltage_v: self.conditions.bus_v,
            encoder_offset_counts: self.faults.encoder_offset_counts,
            encoder_dropout: self.faults.encoder_dropout,
        };
        self.sensors.sample(&sample);
    }

    /// The rigid model's exact step maps as plain arrays, for the scalar reference in the
    /// benchmark (which must run the same arithmetic). `None` with backlash.
    #[doc(hidden)]
    pub fn rigid_step_maps(&self) -> Option<RigidStepMaps> {
        let (maps, inertia) = self.drivetrain.rigid_maps()?;
        Some(RigidStepMaps {
            linear: core::array::from_fn(|r| core::array::from_fn(|c| maps.linear[(r, c)])),
            copper: core::array::from_fn(|k| maps.copper[k]),
            viscous: core::array::from_fn(|k| maps.viscous[k]),
            inertia_kg_m2: inertia,
            thermal: self.thermal.map(),
        })
    }
}

/// `R(T) = R₂₅·[1 + α·(T − 25 °C)]`, Ω.
#[inline]
fn winding_resistance_ohm(resistance_ohm: f64, alpha_per_k: f64, winding_c: f64) -> f64 {
    resistance_ohm * (1.0 + alpha_per_k * (winding_c - RESISTANCE_REFERENCE_C))
}

/// The rigid model's exact step maps (see [`Plant::rigid_step_maps`]), for
/// `z = [i, ω_m, u_eff, τ_h]`.
#[doc(hidden)]
#[derive(Clone, Debug, PartialEq)]
pub struct RigidStepMaps {
    /// Rows: `i(h)`, `ω_m(h)`, `∫i`, `∫ω_m` as linear maps of `z`.
    pub linear: [[f64; 4]; 4],
    /// `R_model·∫i²` (copper loss at the model's resistance) as a dot product with the
    /// products `zᵢ·zⱼ`, i ≤ j, in the order `z₀z₀, z₀z₁, z₀z₂, z₀z₃, z₁z₁, z₁z₂, z₁z₃, z₂z₂,
    /// z₂z₃, z₃z₃`.
    pub copper: [f64; 10],
    /// `f/N²·∫ω_m²` (viscous loss) in the same form. The plant sums the products over a
    /// sample period and takes both dot products once per period.
    pub viscous: [f64; 10],
    /// The thermal update over one sample period: `[T_w, T_h]⁺ = thermal·[T_w, T_h, P, T_a]`.
    pub thermal: [[f64; 4]; 2],
    pub inertia_kg_m2: f64,
}
