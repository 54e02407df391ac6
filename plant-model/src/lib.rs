//! servocell plant model (docs/DESIGN.md §5): a nalgebra model of one servo axis — motor, the
//! drive's current loop, gearbox, backlash, friction, load, sensors, thermal, plant faults —
//! with datasheet presets, advanced in fixed steps up to the caller's time.
//!
//! No I/O, no clock, no threads; transcendental functions from `libm`; randomness only from the
//! `ChaCha8Rng` the caller hands in. Same parameters, same seed, same command sequence → the same
//! bits on every machine.
//!
//! # Design decisions (for ARCHITECTURE.md)
//!
//! **Current loop: simulated, not a lag.** A discrete PI current loop runs once per plant step
//! (10 kHz at the default step) on the exactly discretised winding, with the terminal voltage
//! clamped to ±bus. The voltage limit then acts as in a real drive (current sags at speed; the
//! XM430 reaches exactly its datasheet stall current of 12 V / 5.2 Ω at stall) without a rule
//! for switching between "lag" and "voltage-limited", and it costs no more than a lag. The PI is
//! designed by pole-zero cancellation on the drive's nominal model so the nominal closed loop is
//! first order at the configured bandwidth; anti-windup by conditional integration. Details in
//! `drive`.
//!
//! **Integrator: exact discretisation of the linear part, nonlinear torques held.** The winding,
//! inertias, viscous friction, ideal gear and (in contact) the backlash spring form a linear
//! system discretised exactly for a zero-order-hold input (matrix exponential, once per
//! parameter set). Friction, gear loss, brake, load and contact state are evaluated at the
//! start of each step and held; the temperature part of the resistance is held over a sample
//! period (it moves by millikelvins in one). So the stiff parts — an
//! XM430's 38 µs electrical pole, a stiff backlash contact — are unconditionally stable and
//! exact, and the energy ledger is exact too: the same exponential gives `∫i`, `∫ω` and, by Van
//! Loan's method, `∫i²` and `∫ω²` for each step, so electrical energy in equals losses plus
//! stored energy to rounding. A small RK4 step would cost 10–50× more steps for less accuracy.
//! Details in `discretisation` and `drivetrain`.
//!
//! **Friction: Simscape Stribeck + Coulomb + viscous, tanh-smoothed.** Viscous friction is in
//! the exact linear part. The Coulomb/Stribeck part is held over a step; near zero speed its
//! slope `T_C/ω_Coul` (ω_Coul = ω_brk/10) acts as a stiff damper, so validation requires
//! `h < J_out/slope` (no overshoot through zero speed). Consequence: a load below breakaway
//! creeps slowly instead of sticking. The holding brake, which must hold exactly, uses a Karnopp
//! stick band instead. Details in `friction`.
//!
//! **Gearbox: LossyGear-style efficiency.** η on transmitted torque while the motor drives the
//! load, 1/η while the load back-drives, decided from the sign of the transmitted power at the
//! start of the step; the efficiency applies to load-side torques, not to the load's inertia.
//!
//! **Step size: 100 µs in both presets.** It must divide 1 ms so 1 kHz control ticks land on
//! steps (validated). It is the current-loop sample time (10 kHz, like a PWM-synchronous drive)
//! and leaves a wide margin to the friction limit (xm430: J/slope ≈ 3.5 ms; sgmp-02b: ≈ 0.4 ms)
//! and the thermal limit. Cost target: one axis (plant + 1 kHz controller) under 1 ms of wall
//! time per simulated second, i.e. well under 100 ns per step at 10 000 steps/s. Measured
//! (BENCHMARKS.md, 2-core shared VM, minimum over interleaved chunks): 23–26 ns per step
//! including the sample and thermal update, within 6 % of a hand-written scalar version of the
//! same step; one axis with its controller 0.30 ms (xm430-w350) and 0.41 ms (sgmp-02b) per
//! simulated second. The hot loop is specialised per bridge mode and brake state, runs on local
//! copies between events (samples, profile points), and leaves the quadratic energy integrals
//! to once per sample period (see **Thermal**). The two-mass (backlash) model costs about
//! 4–5× the rigid step. The alternative, RK4 at 20 µs, needs 4 × 5 = 20
//! derivative evaluations per 100 µs of simulated time, is only stable below 2.8·τ_e ≈ 106 µs for
//! the XM430 anyway, and leaves the energy ledger approximate.
//!
//! **Sensors** are sampled every `sensor.sample_period_ns` (1 ms in the presets) at step
//! boundaries: encoder quantisation (counts per output rev), current with seeded Gaussian noise,
//! quantised, reported one sample late; velocity from the encoder difference or as the drive
//! reports it; temperature and bus voltage quantised.
//!
//! **Thermal** is updated once per sample period, exactly (matrix exponential of the two-node
//! network) for that period's copper heat, which the steps accrue as sums of the products
//! `zᵢ·zⱼ` and the plant evaluates once per period (`drivetrain::AccruedLosses`); R(T) and the
//! 1 % re-discretisation check follow at the same instants. Against a fine RK4 integration of
//! the thermal ODE (test `locked_rotor_heating_matches_the_thermal_ode`) it agrees as closely
//! as the former per-step explicit Euler update did, for about 15 % less work per step.
//!
//! **Energy ledger.** [`EnergyLedger`] accounts every joule: electrical in = copper + friction +
//! brake + gear + backlash + load work + kinetic + elastic + magnetic.

mod discretisation;
mod drive;
mod drivetrain;
mod energy;
mod friction;
mod sensor;
mod thermal;

pub mod characterize;
pub mod fault;
pub mod params;
pub mod plant;

pub use characterize::{Characterization, characterize, locked_output_torque_nm};
pub use fault::PlantFault;
pub use params::{
    AxisParams, AxisParamsDoc, LoadTorquePoint, OutputShaft, PRESET_NAMES, ParamsError,
    VelocitySource,
};
pub use plant::{DriveCommand, EnergyLedger, GroundTruth, Plant, SensorReading};
