//! The electromechanical drivetrain: winding, motor, gearbox, backlash and load inertia, one
//! fixed step at a time.
//!
//! Owns: the continuous state (winding current, motor speed and angle; load speed, angle and
//! gear twist when backlash is modelled), the linear model's exact discretisation, the held
//! nonlinear torques (friction, gear loss, brake, load), and the per-step energy integrals.
//! Does not own: the terminal voltage choice (`drive`), the friction law (`friction`), the
//! temperature (`thermal`), sensors, faults or time (`plant`).
//!
//! # Integration scheme
//!
//! Everything linear — the winding `L·di/dt = u − R₂₅·i − K·ω`, the inertias, the viscous
//! friction, the ideal gear and (when in contact) the backlash spring and damper — is
//! discretised exactly for a zero-order-hold input (`discretisation`). Everything nonlinear is
//! evaluated at the start of the step and held over it as an input: Stribeck + Coulomb friction,
//! the gearbox's efficiency loss, the brake, the external load, the backlash contact state, and
//! the part of the temperature-dependent resistance not yet in the matrices, `(R(T) − R_model)·i`
//! (the plant re-discretises whenever R(T) drifts 1 % of R₂₅ from R_model, so that held part
//! stays small and cannot destabilise the stiff electrical pole). So the stiff parts (an
//! XM430's 38 µs electrical pole, a backlash contact) cost nothing in stability, and the step is
//! limited only by how fast the held nonlinearities change (see `params` validation and lib.rs).
//!
//! # Models
//!
//! Rigid gear (one mass, states `[i, ω_m]` plus `θ_m`), all at the motor shaft:
//! `J·ω̇_m = K·i − (f/N²)·ω_m − τ_h` with `J = J_m + J_L/N²` and held
//! `τ_h = S/N + (S + f·ω_L)/N·(1/k − 1)`, `S = τ_load + τ_friction + τ_brake` the output-side
//! torques. `k = η` while the motor drives (power flows to the output, `(S + f·ω_L)·ω_L ≥ 0`),
//! `k = 1/η` while the load back-drives: the Modelica LossyGear idea. The efficiency acts on the
//! transmitted load torques, not on the load's inertial torque (as in the reference model).
//!
//! Backlash (two masses, states `[i, ω_m, ω_L, δ]` plus both angles, `δ = θ_m/N − θ_L`):
//! `J_m·ω̇_m = K·i − T_s/N − g`, `J_L·ω̇_L = T_s − f·ω_L − τ_load − τ_friction − τ_brake`,
//! `T_s = c·dz(δ, b/2) + d·(ω_m/N − ω_L)` as in Modelica's ElastoBacklash: no torque inside the
//! dead zone, and the contact never pulls (a contact whose damping would pull is treated as
//! open). Contact or not is decided at the start of each step; in contact the spring and damper
//! are part of the exact linear model, so any contact stiffness is stable. `g` is the held gear
//! loss on the transmitted spring torque (η / 1/η as above).

use crate::discretisation::{Zoh, packed_dot, packed_upper, upper_products};
use crate::drive::{CurrentLoop, DriveCommand, clamp_symmetric};
use crate::energy::EnergyLedger;
use crate::friction::Friction;
use crate::params::AxisParams;
use nalgebra::{DMatrix, SMatrix, SVector};

/// Held conditions for one step, computed by the plant.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StepConditions {
    /// External load torque at the output (opposes positive rotation), N·m.
    pub(crate) load_nm: f64,
    /// Brake torque limit when the brake is engaged, N·m.
    pub(crate) brake_nm_max: Option<f64>,
    /// Bus voltage available to the bridge, V.
    pub(crate) bus_v: f64,
    /// R(T) minus the resistance the linear model was discretised with, Ω (held over the step
    /// as a voltage drop; kept small by re-discretising, see `plant`).
    pub(crate) resistance_excess_ohm: f64,
}

/// Bridge modes for the rigid model's specialised step loops (`Rigid::run_loop`).
const BRIDGE_CURRENT: u8 = 0;
const BRIDGE_VOLTAGE: u8 = 1;
const BRIDGE_OFF: u8 = 2;

/// Energy moved during one step, J (exact for the held inputs). The copper loss, and the rigid
/// model's viscous loss, are not here: they are accrued (see [`AccruedLosses`]).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct StepEnergy {
    pub(crate) electrical_in_j: f64,
    pub(crate) friction_j: f64,
    pub(crate) brake_j: f64,
    pub(crate) gear_j: f64,
    pub(crate) load_j: f64,
    pub(crate) backlash_j: f64,
}

impl StepEnergy {
    /// Adds this step's energy to the ledger.
    #[inline]
    fn book(&self, ledger: &mut EnergyLedger) {
        ledger.electrical_in_j += self.electrical_in_j;
        ledger.friction_loss_j += self.friction_j;
        ledger.brake_loss_j += self.brake_j;
        ledger.gear_loss_j += self.gear_j;
        ledger.load_work_j += self.load_j;
        ledger.backlash_loss_j += self.backlash_j;
    }
}

/// Losses that the steps accrue as sums and that are evaluated only when someone needs them:
/// the plant drains them once per sensor sample period (the copper loss heats the winding
/// then) and before the maps change; the ground truth reads them in between.
///
/// Why: the copper loss `R·∫i²` and the viscous loss `f·∫ω²` are quadratic forms of the step's
/// `z`. Summing `upper_products(z)` over the steps and taking the dot products once per
/// period gives the same sums (in another order) for a tenth of the work; the copper loss is
/// needed only by the thermal model, which is updated once per period.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct AccruedLosses {
    pub(crate) copper_j: f64,
    /// Friction loss left out of [`StepEnergy`] (the rigid model's viscous loss).
    pub(crate) friction_j: f64,
}

/// Constants both models share.
#[derive(Clone, Debug, PartialEq)]
struct Common {
    step_s: f64,
    /// Resistance the linear model was discretised with (R(T) at the last re-discretisation).
    resistance_ohm: f64,
    inductance_h: f64,
    torque_constant_nm_per_a: f64,
    inverse_ratio: f64,
    ratio: f64,
    efficiency: f64,
    inverse_efficiency: f64,
    viscous_nm_s_per_rad: f64,
}

impl Common {
    /// `1/k`: `1/η` while the motor drives (`power ≥ 0`), `η` while the load back-drives.
    #[inline]
    fn inverse_gear_factor(&self, power_w: f64) -> f64 {
        if power_w >= 0.0 {
            self.inverse_efficiency
        } else {
            self.efficiency
        }
    }

    /// Terminal voltage for the step. `current_row` returns the end-of-step current with zero
    /// voltage and its sensitivity to the voltage (used only when the bridge is off).
    #[inline]
    fn terminal_voltage(
        &self,
        command: DriveCommand,
        current_loop: &mut CurrentLoop,
        c: &StepConditions,
        current_a: f64,
        motor_velocity: f64,
        current_row: impl Fn() -> (f64, f64),
    ) -> f64 {
        match command {
            DriveCommand::Voltage { volts } => clamp_symmetric(volts, c.bus_v),
            DriveCommand::Current { amps } => {
                current_loop.voltage(amps, current_a, motor_velocity, c.bus_v)
            }
            DriveCommand::Off => {
                // Open bridge: the terminal voltage is whatever keeps the current at zero
                // (back-EMF), limited by the freewheel diodes to ±bus. `current_row` gives the
                // end-of-step current without voltage and its sensitivity to the voltage.
                let (without_u, per_volt) = current_row();
                let u_eff = -without_u / per_volt;
                clamp_symmetric(u_eff + c.resistance_excess_ohm * current_a, c.bus_v)
            }
        }
    }

    /// The brake's torque this step and whether it sticks (Karnopp): it sticks when the body is
    /// slow enough for the brake to stop it within a step and the torque needed to hold it is
    /// within the limit; otherwise it slides against the motion (or the pending motion).
    #[inline]
    fn brake(
        &self,
        brake_nm_max: Option<f64>,
        velocity: f64,
        hold_nm: impl Fn() -> f64,
        inertia_kg_m2: f64,
    ) -> (f64, bool) {
        let Some(max) = brake_nm_max else {
            return (0.0, false);
        };
        let hold_nm = hold_nm();
        let stop_velocity = max * self.step_s / inertia_kg_m2;
        if velocity.abs() <= stop_velocity && hold_nm.abs() <= max {
            (hold_nm, true)
        } else if velocity != 0.0 {
            (max.copysign(velocity), false)
        } else {
            (max.copysign(hold_nm), false)
        }
    }
}

/// The rigid model's exact step maps in the form the step evaluates them, for `z = [i, ω_m,
/// u_eff, τ_h]` (the state and the held inputs).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RigidMaps {
    /// Rows: `i(h)`, `ω_m(h)`, `∫i`, `∫ω_m` — the ZOH step and first integral stacked, so one
    /// 4×4 product gives all four.
    pub(crate) linear: SMatrix<f64, 4, 4>,
    /// `R_model·∫i²`, the copper loss at the model's resistance, as a packed quadratic form
    /// (`discretisation::packed_upper`), to be dotted with Σ `upper_products(z)`.
    pub(crate) copper: SVector<f64, 10>,
    /// `f/N²·∫ω_m²`, the viscous loss, in the same form.
    pub(crate) viscous: SVector<f64, 10>,
}

impl RigidMaps {
    fn new(zoh: &Zoh<2, 4, 2>, resistance_ohm: f64, viscous_motor_nm_s_per_rad: f64) -> RigidMaps {
        let linear = SMatrix::<f64, 4, 4>::from_fn(|r, c| {
            if r < 2 {
                zoh.step[(r, c)]
            } else {
                zoh.integral[(r - 2, c)]
            }
        });
        RigidMaps {
            linear,
            copper: packed_upper::<4, 10>(&zoh.quadratic[0]) * resistance_ohm,
            viscous: packed_upper::<4, 10>(&zoh.quadratic[1]) * viscous_motor_nm_s_per_rad,
        }
    }
}

/// Rigid gear: one mass at the motor shaft.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Rigid {
    common: Common,
    /// Total inertia at the motor shaft, J_m + J_L/N².
    inertia_kg_m2: f64,
    maps: RigidMaps,
    state: RigidState,
}

/// What the rigid model's steps change.
#[derive(Clone, Copy, Debug, PartialEq)]
struct RigidState {
    /// `[i, ω_m]`.
    x: SVector<f64, 2>,
    motor_angle_rad: f64,
    brake_nm: f64,
    /// Σ `upper_products(z)` over the steps since the last drain: with `maps.copper` and
    /// `maps.viscous`, their copper and viscous loss.
    products_sum: SVector<f64, 10>,
    /// Σ `i₀·∫i` over the same steps: times the resistance excess, the rest of the copper loss.
    current_sum: f64,
}

/// Two masses coupled through the backlash.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TwoMass {
    common: Common,
    motor_inertia_kg_m2: f64,
    load_inertia_kg_m2: f64,
    half_width_rad: f64,
    stiffness_nm_per_rad: f64,
    damping_nm_s_per_rad: f64,
    contact: Zoh<4, 8, 3>,
    free: Zoh<4, 8, 3>,
    /// `[i, ω_m, ω_L, δ]`.
    x: SVector<f64, 4>,
    motor_angle_rad: f64,
    load_angle_rad: f64,
    brake_nm: f64,
    /// `R_model·∫i²` over the steps since the last drain, J.
    copper_model_sum_j: f64,
    /// Σ `i₀·∫i` over the same steps (see `Rigid::current_sum`).
    current_sum: f64,
}

/// The drivetrain of one axis.
#[derive(Clone, Debug, PartialEq)]
// The rigid variant stays inline: it is the presets' hot path, read every step.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Drivetrain {
    Rigid(Rigid),
    /// Boxed: its two 8×8 discretisations would make every rigid plant carry 4 kB.
    TwoMass(Box<TwoMass>),
}

impl Drivetrain {
    /// A drivetrain at rest with no current, discretised with R₂₅.
    pub(crate) fn new(p: &AxisParams) -> Drivetrain {
        let torque_scale = 1.0;
        let common = Common {
            step_s: p.integration.step_ns as f64 * 1e-9,
            resistance_ohm: p.motor.resistance_ohm,
            inductance_h: p.motor.inductance_h,
            torque_constant_nm_per_a: p.motor.torque_constant_nm_per_a * torque_scale,
            inverse_ratio: 1.0 / p.gear.ratio,
            ratio: p.gear.ratio,
            efficiency: p.gear.efficiency,
            inverse_efficiency: 1.0 / p.gear.efficiency,
            viscous_nm_s_per_rad: p.friction.viscous_nm_s_per_rad,
        };
        if p.has_backlash() {
            let mut t = TwoMass {
                common,
                motor_inertia_kg_m2: p.motor.inertia_kg_m2,
                load_inertia_kg_m2: p.load.inertia_kg_m2,
                half_width_rad: 0.5 * p.backlash.width_rad,
                stiffness_nm_per_rad: p.backlash.stiffness_nm_per_rad,
                damping_nm_s_per_rad: p.backlash.damping_nm_s_per_rad,
                contact: placeholder_zoh(),
                free: placeholder_zoh(),
                x: SVector::zeros(),
                motor_angle_rad: 0.0,
                load_angle_rad: 0.0,
                brake_nm: 0.0,
                copper_model_sum_j: 0.0,
                current_sum: 0.0,
            };
            t.discretise();
            Drivetrain::TwoMass(Box::new(t))
        } else {
            let n = p.gear.ratio;
            let mut r = Rigid {
                common,
                inertia_kg_m2: p.motor.inertia_kg_m2 + p.load.inertia_kg_m2 / (n * n),
                maps: RigidMaps {
                    linear: SMatrix::zeros(),
                    copper: SVector::zeros(),
                    viscous: SVector::zeros(),
                },
                state: RigidState {
                    x: SVector::zeros(),
                    motor_angle_rad: 0.0,
                    brake_nm: 0.0,
                    products_sum: SVector::zeros(),
                    current_sum: 0.0,
                },
            };
            r.discretise();
            Drivetrain::Rigid(r)
        }
    }

    /// Re-discretises for a new winding resistance (the winding warmed or cooled) and motor
    /// torque constant (a torque-loss fault started or ended), keeping the state. The accrued
    /// losses belong to the old maps: drain them first.
    pub(crate) fn set_motor(&mut self, resistance_ohm: f64, torque_constant_nm_per_a: f64) {
        assert!(
            self.is_drained(),
            "drain the accrued losses before re-discretising"
        );
        let common = match self {
            Drivetrain::Rigid(r) => &mut r.common,
            Drivetrain::TwoMass(t) => &mut t.common,
        };
        common.resistance_ohm = resistance_ohm;
        common.torque_constant_nm_per_a = torque_constant_nm_per_a;
        match self {
            Drivetrain::Rigid(r) => r.discretise(),
            Drivetrain::TwoMass(t) => t.discretise(),
        }
    }

    /// The resistance the linear model currently uses, Ω.
    pub(crate) fn model_resistance_ohm(&self) -> f64 {
        match self {
            Drivetrain::Rigid(r) => r.common.resistance_ohm,
            Drivetrain::TwoMass(t) => t.common.resistance_ohm,
        }
    }

    /// Runs `steps` steps under the same held conditions and command, adding each step's
    /// energy to `ledger` (all but the accrued losses) in step order.
    ///
    /// One call runs a whole burst between events (samples, profile points), so the step loop
    /// has no calls in it.
    #[inline]
    pub(crate) fn run(
        &mut self,
        steps: u64,
        conditions: &StepConditions,
        command: DriveCommand,
        current_loop: &mut CurrentLoop,
        friction: &Friction,
        ledger: &mut EnergyLedger,
    ) {
        match self {
            Drivetrain::Rigid(r) => {
                r.run(steps, conditions, command, current_loop, friction, ledger)
            }
            Drivetrain::TwoMass(t) => {
                for _ in 0..steps {
                    t.step(conditions, command, current_loop, friction)
                        .book(ledger);
                }
            }
        }
    }

    /// The losses accrued since the last drain, for a resistance excess (R(T) − R_model) of
    /// `resistance_excess_ohm` over those steps.
    pub(crate) fn accrued_losses(&self, resistance_excess_ohm: f64) -> AccruedLosses {
        match self {
            Drivetrain::Rigid(r) => AccruedLosses {
                copper_j: packed_dot(&r.maps.copper, &r.state.products_sum)
                    + resistance_excess_ohm * r.state.current_sum,
                friction_j: packed_dot(&r.maps.viscous, &r.state.products_sum),
            },
            Drivetrain::TwoMass(t) => AccruedLosses {
                copper_j: t.copper_model_sum_j + resistance_excess_ohm * t.current_sum,
                friction_j: 0.0,
            },
        }
    }

    /// [`Drivetrain::accrued_losses`], then starts the sums afresh.
    pub(crate) fn drain_losses(&mut self, resistance_excess_ohm: f64) -> AccruedLosses {
        let losses = self.accrued_losses(resistance_excess_ohm);
        match self {
            Drivetrain::Rigid(r) => {
                r.state.products_sum = SVector::zeros();
                r.state.current_sum = 0.0;
            }
            Drivetrain::TwoMass(t) => {
                t.copper_model_sum_j = 0.0;
                t.current_sum = 0.0;
            }
        }
        losses
    }

    fn is_drained(&self) -> bool {
        match self {
            Drivetrain::Rigid(r) => {
                r.state.products_sum.iter().all(|p| *p == 0.0) && r.state.current_sum == 0.0
            }
            Drivetrain::TwoMass(t) => t.copper_model_sum_j == 0.0 && t.current_sum == 0.0,
        }
    }

    pub(crate) fn current_a(&self) -> f64 {
        match self {
            Drivetrain::Rigid(r) => r.state.x[0],
            Drivetrain::TwoMass(t) => t.x[0],
        }
    }

    pub(crate) fn motor_velocity_rad_per_s(&self) -> f64 {
        match self {
            Drivetrain::Rigid(r) => r.state.x[1],
            Drivetrain::TwoMass(t) => t.x[1],
        }
    }

    pub(crate) fn motor_position_rad(&self) -> f64 {
        match self {
            Drivetrain::Rigid(r) => r.state.motor_angle_rad,
            Drivetrain::TwoMass(t) => t.motor_angle_rad,
        }
    }

    pub(crate) fn output_velocity_rad_per_s(&self) -> f64 {
        match self {
            Drivetrain::Rigid(r) => r.state.x[1] * r.common.inverse_ratio,
            Drivetrain::TwoMass(t) => t.x[2],
        }
    }

    pub(crate) fn output_position_rad(&self) -> f64 {
        match self {
            Drivetrain::Rigid(r) => r.state.motor_angle_rad * r.common.inverse_ratio,
            Drivetrain::TwoMass(t) => t.load_angle_rad,
        }
    }

    /// Electromagnetic torque at the motor shaft, N·m.
    pub(crate) fn motor_torque_nm(&self) -> f64 {
        match self {
            Drivetrain::Rigid(r) => r.common.torque_constant_nm_per_a * r.state.x[0],
            Drivetrain::TwoMass(t) => t.common.torque_constant_nm_per_a * t.x[0],
        }
    }

    /// Torque the brake exerted on the output during the last step, N·m (0 when disengaged).
    pub(crate) fn brake_torque_nm(&self) -> f64 {
        match self {
            Drivetrain::Rigid(r) => r.state.brake_nm,
            Drivetrain::TwoMass(t) => t.brake_nm,
        }
    }

    pub(crate) fn kinetic_j(&self) -> f64 {
        match self {
            Drivetrain::Rigid(r) => 0.5 * r.inertia_kg_m2 * r.state.x[1] * r.state.x[1],
            Drivetrain::TwoMass(t) => {
                0.5 * t.motor_inertia_kg_m2 * t.x[1] * t.x[1]
                    + 0.5 * t.load_inertia_kg_m2 * t.x[2] * t.x[2]
            }
        }
    }

    pub(crate) fn elastic_j(&self) -> f64 {
        match self {
            Drivetrain::Rigid(_) => 0.0,
            Drivetrain::TwoMass(t) => t.reported_elastic_j(t.x[3]),
        }
    }

    /// Gear twist at the output (θ_m/N − θ_L), rad; 0 for a rigid gear.
    pub(crate) fn twist_rad(&self) -> f64 {
        match self {
            Drivetrain::Rigid(_) => 0.0,
            Drivetrain::TwoMass(t) => t.x[3],
        }
    }

    /// The rigid model's exact step maps, for the scalar reference benchmark.
    pub(crate) fn rigid_maps(&self) -> Option<(&RigidMaps, f64)> {
        match self {
            Drivetrain::Rigid(r) => Some((&r.maps, r.inertia_kg_m2)),
            Drivetrain::TwoMass(_) => None,
        }
    }
}

fn placeholder_zoh<const N: usize, const Z: usize, const Q: usize>() -> Zoh<N, Z, Q> {
    Zoh {
        step: SMatrix::zeros(),
        integral: SMatrix::zeros(),
        quadratic: [SMatrix::zeros(); Q],
    }
}

impl Rigid {
    fn discretise(&mut self) {
        let c = &self.common;
        let (r, l, k, j) = (
            c.resistance_ohm,
            c.inductance_h,
            c.torque_constant_nm_per_a,
            self.inertia_kg_m2,
        );
        let b_motor = c.viscous_nm_s_per_rad * c.inverse_ratio * c.inverse_ratio;
        let a = SMatrix::<f64, 2, 2>::new(-r / l, -k / l, k / j, -b_motor / j);
        // Inputs: [u_eff, τ_h].
        let b = DMatrix::from_row_slice(2, 2, &[1.0 / l, 0.0, 0.0, -1.0 / j]);
        let outputs = [
            SVector::<f64, 2>::new(1.0, 0.0),
            SVector::<f64, 2>::new(0.0, 1.0),
        ];
        self.maps = RigidMaps::new(&Zoh::new(&a, &b, &outputs, c.step_s), r, b_motor);
    }

    /// `steps` steps (see [`Drivetrain::run`]). The command's kind and whether the brake is
    /// engaged do not change within a burst, so the loop is specialised for them here rather
    /// than deciding them again at every step.
    #[inline]
    fn run(
        &mut self,
        steps: u64,
        cond: &StepConditions,
        command: DriveCommand,
        current_loop: &mut CurrentLoop,
        friction: &Friction,
        ledger: &mut EnergyLedger,
    ) {
        let braking = cond.brake_nm_max.is_some();
        match (command, braking) {
            (DriveCommand::Current { amps }, false) => {
                self.run_loop::<BRIDGE_CURRENT, false>(
                    steps,
                    cond,
                    amps,
                    current_loop,
                    friction,
                    ledger,
                );
            }
            (DriveCommand::Current { amps }, true) => {
                self.run_loop::<BRIDGE_CURRENT, true>(
                    steps,
                    cond,
                    amps,
                    current_loop,
                    friction,
                    ledger,
                );
            }
            (DriveCommand::Voltage { volts }, false) => {
                self.run_loop::<BRIDGE_VOLTAGE, false>(
                    steps,
                    cond,
                    volts,
                    current_loop,
                    friction,
                    ledger,
                );
            }
            (DriveCommand::Voltage { volts }, true) => {
                self.run_loop::<BRIDGE_VOLTAGE, true>(
                    steps,
                    cond,
                    volts,
                    current_loop,
                    friction,
                    ledger,
                );
            }
            (DriveCommand::Off, false) => {
                self.run_loop::<BRIDGE_OFF, false>(
                    steps,
                    cond,
                    0.0,
                    current_loop,
                    friction,
                    ledger,
                );
            }
            (DriveCommand::Off, true) => {
                self.run_loop::<BRIDGE_OFF, true>(steps, cond, 0.0, current_loop, friction, ledger);
            }
        }
    }

    /// The step loop for one bridge mode (`BRIDGE_*`, with its command value) and brake state.
    #[inline]
    fn run_loop<const BRIDGE: u8, const BRAKE: bool>(
        &mut self,
        steps: u64,
        cond: &StepConditions,
        command_value: f64,
        current_loop: &mut CurrentLoop,
        friction: &Friction,
        ledger: &mut EnergyLedger,
    ) {
        // Local copies of everything the loop updates, written back once.
        let mut pi = current_loop.clone();
        let mut book = *ledger;
        let mut state = self.state;
        for _ in 0..steps {
            let e = self.step::<BRIDGE, BRAKE>(&mut state, cond, command_value, &mut pi, friction);
            book.electrical_in_j += e.electrical_in_j;
            book.friction_loss_j += e.friction_j;
            book.gear_loss_j += e.gear_j;
            book.load_work_j += e.load_j;
            // Without the brake its term is 0, and a rigid gear has no backlash.
            if BRAKE {
                book.brake_loss_j += e.brake_j;
            }
        }
        self.state = state;
        *current_loop = pi;
        *ledger = book;
    }

    #[inline]
    fn step<const BRIDGE: u8, const BRAKE: bool>(
        &self,
        s: &mut RigidState,
        cond: &StepConditions,
        command_value: f64,
        current_loop: &mut CurrentLoop,
        friction: &Friction,
    ) -> StepEnergy {
        let c = &self.common;
        let (i0, w0) = (s.x[0], s.x[1]);
        let wl0 = w0 * c.inverse_ratio;
        let friction_nm = friction.torque_nm(wl0);
        let viscous_nm = c.viscous_nm_s_per_rad * wl0;

        // Held output-side torques. The brake's holding torque is what zeroes the acceleration
        // with the motor driving through η.
        let hold_nm = || {
            c.ratio * c.efficiency * c.torque_constant_nm_per_a * i0
                - cond.load_nm
                - friction_nm
                - viscous_nm
        };
        let output_inertia = self.inertia_kg_m2 * c.ratio * c.ratio;
        let (brake_nm, stuck) = if BRAKE {
            c.brake(cond.brake_nm_max, wl0, hold_nm, output_inertia)
        } else {
            (0.0, false)
        };
        let held_out_nm = cond.load_nm + friction_nm + brake_nm;
        let transmitted_nm = held_out_nm + viscous_nm;
        let inverse_k = if stuck {
            c.inverse_efficiency
        } else {
            c.inverse_gear_factor(transmitted_nm * wl0)
        };
        let gear_loss_nm = transmitted_nm * c.inverse_ratio * (inverse_k - 1.0);
        let held_motor_nm = held_out_nm * c.inverse_ratio + gear_loss_nm;

        let linear = &self.maps.linear;
        let command = match BRIDGE {
            BRIDGE_CURRENT => DriveCommand::Current {
                amps: command_value,
            },
            BRIDGE_VOLTAGE => DriveCommand::Voltage {
                volts: command_value,
            },
            _ => DriveCommand::Off,
        };
        let u = c.terminal_voltage(command, current_loop, cond, i0, w0, || {
            (
                linear[(0, 0)] * i0 + linear[(0, 1)] * w0 + linear[(0, 3)] * held_motor_nm,
                linear[(0, 2)],
            )
        });
        let u_eff = u - cond.resistance_excess_ohm * i0;
        let z = SVector::<f64, 4>::new(i0, w0, u_eff, held_motor_nm);
        // [i(h), ω_m(h), ∫i, ∫ω_m].
        let ends = linear * z;
        let (current_int, motor_angle) = (ends[2], ends[3]);
        s.products_sum += upper_products::<4, 10>(&z);
        s.current_sum += i0 * current_int;

        let output_angle = motor_angle * c.inverse_ratio;
        let mut energy = StepEnergy {
            electrical_in_j: u * current_int,
            // Coulomb and Stribeck; the viscous loss is accrued.
            friction_j: friction_nm * output_angle,
            brake_j: brake_nm * output_angle,
            gear_j: gear_loss_nm * motor_angle,
            load_j: cond.load_nm * output_angle,
            backlash_j: 0.0,
        };
        s.motor_angle_rad += motor_angle;
        s.x = SVector::<f64, 2>::new(ends[0], ends[1]);
        s.brake_nm = brake_nm;
        if stuck {
            // Stiction: the brake holds; the residual motion the held torques let through is
            // stopped, and its kinetic energy is the brake's.
            energy.brake_j += 0.5 * self.inertia_kg_m2 * s.x[1] * s.x[1];
            s.x[1] = 0.0;
        }
        energy
    }
}

impl TwoMass {
    fn discretise(&mut self) {
        self.contact = self.build(self.stiffness_nm_per_rad, self.damping_nm_s_per_rad);
        self.free = self.build(0.0, 0.0);
    }

    fn build(&self, c: f64, d: f64) -> Zoh<4, 8, 3> {
        let cm = &self.common;
        let (r, l, k, n, f) = (
            cm.resistance_ohm,
            cm.inductance_h,
            cm.torque_constant_nm_per_a,
            cm.ratio,
            cm.viscous_nm_s_per_rad,
        );
        let (jm, jl) = (self.motor_inertia_kg_m2, self.load_inertia_kg_m2);
        #[rustfmt::skip]
        let a = SMatrix::<f64, 4, 4>::from_row_slice(&[
            -r / l,  -k / l,                0.0,             0.0,
            k / jm,  -d / (n * n * jm),     d / (n * jm),    -c / (n * jm),
            0.0,     d / (n * jl),          -(d + f) / jl,   c / jl,
            0.0,     1.0 / n,               -1.0,            0.0,
        ]);
        // Inputs: [u_eff, g (motor side), τ_load + τ_friction + τ_brake (load side), σ].
        #[rustfmt::skip]
        let b = DMatrix::from_row_slice(4, 4, &[
            1.0 / l, 0.0,        0.0,        0.0,
            0.0,     -1.0 / jm,  0.0,        c / (n * jm),
            0.0,     0.0,        -1.0 / jl,  -c / jl,
            0.0,     0.0,        0.0,        0.0,
        ]);
        let outputs = [
            SVector::<f64, 4>::new(1.0, 0.0, 0.0, 0.0),
            SVector::<f64, 4>::new(0.0, 0.0, 1.0, 0.0),
            SVector::<f64, 4>::new(0.0, 1.0 / n, -1.0, 0.0),
        ];
        Zoh::new(&a, &b, &outputs, cm.step_s)
    }

    /// ½·c·dz(δ)²: the elastic energy the ElastoBacklash law stores at twist `delta`.
    fn reported_elastic_j(&self, delta: f64) -> f64 {
        let penetration = (delta.abs() - self.half_width_rad).max(0.0);
        0.5 * self.stiffness_nm_per_rad * penetration * penetration
    }

    #[inline]
    fn step(
        &mut self,
        cond: &StepConditions,
        command: DriveCommand,
        current_loop: &mut CurrentLoop,
        friction: &Friction,
    ) -> StepEnergy {
        let c = &self.common;
        let (i0, wm0, wl0, delta0) = (self.x[0], self.x[1], self.x[2], self.x[3]);
        let relative_velocity = wm0 * c.inverse_ratio - wl0;

        // Contact decided at the step start: outside the dead zone and not pulling.
        let (contact, offset_rad, spring_nm) = if delta0 > self.half_width_rad {
            let t = self.stiffness_nm_per_rad * (delta0 - self.half_width_rad)
                + self.damping_nm_s_per_rad * relative_velocity;
            (t > 0.0, self.half_width_rad, t.max(0.0))
        } else if delta0 < -self.half_width_rad {
            let t = self.stiffness_nm_per_rad * (delta0 + self.half_width_rad)
                + self.damping_nm_s_per_rad * relative_velocity;
            (t < 0.0, -self.half_width_rad, t.min(0.0))
        } else {
            (false, 0.0, 0.0)
        };
        let zoh = if contact { &self.contact } else { &self.free };

        let friction_nm = friction.torque_nm(wl0);
        let viscous_nm = c.viscous_nm_s_per_rad * wl0;
        let hold_nm = || spring_nm - cond.load_nm - friction_nm - viscous_nm;
        let (brake_nm, stuck) = c.brake(cond.brake_nm_max, wl0, hold_nm, self.load_inertia_kg_m2);
        let inverse_k = c.inverse_gear_factor(spring_nm * wm0);
        let gear_loss_nm = spring_nm * c.inverse_ratio * (inverse_k - 1.0);
        let held_load_nm = cond.load_nm + friction_nm + brake_nm;

        let step = &zoh.step;
        let u = c.terminal_voltage(command, current_loop, cond, i0, wm0, || {
            (
                step[(0, 0)] * i0
                    + step[(0, 1)] * wm0
                    + step[(0, 2)] * wl0
                    + step[(0, 3)] * delta0
                    + step[(0, 5)] * gear_loss_nm
                    + step[(0, 6)] * held_load_nm
                    + step[(0, 7)] * offset_rad,
                step[(0, 4)],
            )
        });
        let u_eff = u - cond.resistance_excess_ohm * i0;
        let z = SVector::<f64, 8>::from_column_slice(&[
            i0,
            wm0,
            wl0,
            delta0,
            u_eff,
            gear_loss_nm,
            held_load_nm,
            offset_rad,
        ]);
        let x1 = step * z;
        let integral = zoh.integral * z;
        let current_sq = z.dot(&(zoh.quadratic[0] * z));
        let load_velocity_sq = z.dot(&(zoh.quadratic[1] * z));

        // Backlash: damping loss in contact, plus the difference between the energy the
        // step's linear model stored in the spring and what the dead-zone law reports (a contact
        // detected one step late or left within a step).
        let delta1 = x1[3];
        let model_spring_change_j = if contact {
            let relative_sq = z.dot(&(zoh.quadratic[2] * z));
            let s0 = delta0 - offset_rad;
            let s1 = delta1 - offset_rad;
            self.damping_nm_s_per_rad * relative_sq
                + 0.5 * self.stiffness_nm_per_rad * (s1 * s1 - s0 * s0)
        } else {
            0.0
        };
        let reported_change_j = self.reported_elastic_j(delta1) - self.reported_elastic_j(delta0);

        self.copper_model_sum_j += c.resistance_ohm * current_sq;
        self.current_sum += i0 * integral[0];
        let mut energy = StepEnergy {
            electrical_in_j: u * integral[0],
            friction_j: friction_nm * integral[2] + c.viscous_nm_s_per_rad * load_velocity_sq,
            brake_j: brake_nm * integral[2],
            gear_j: gear_loss_nm * integral[1],
            load_j: cond.load_nm * integral[2],
            backlash_j: model_spring_change_j - reported_change_j,
        };
        self.motor_angle_rad += integral[1];
        self.load_angle_rad += integral[2];
        self.x = x1;
        self.brake_nm = brake_nm;
        if stuck {
            energy.brake_j += 0.5 * self.load_inertia_kg_m2 * self.x[2] * self.x[2];
            self.x[2] = 0.0;
        }
        energy
    }
}
