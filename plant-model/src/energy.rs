//! The energy ledger: where every joule that entered the axis went.
//!
//! Owns: the cumulative accounts. The plant fills them from exact per-step integrals (see
//! `discretisation`), so over any run
//!
//! `electrical_in = copper + friction + brake + gear + backlash + load_work
//!                  + kinetic + elastic + magnetic`
//!
//! up to rounding (the plant starts at rest with no current, so every stored term starts at 0).
//! Physics tests check this balance; oracles may use it. Does not own: the physics that produces
//! the numbers.

use serde::Serialize;

/// Cumulative energy accounts since the plant started, J. The `*_j` losses and works only grow
/// (gear loss can dip by rounding at a velocity reversal); `kinetic_j`, `elastic_j` and
/// `magnetic_j` are what is stored now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct EnergyLedger {
    /// ∫ u·i dt: energy drawn from the bus (negative while regenerating).
    pub electrical_in_j: f64,
    /// ∫ R(T)·i² dt in the winding and driver (and the freewheel diodes when off).
    pub copper_loss_j: f64,
    /// Coulomb, Stribeck and viscous friction at the output.
    pub friction_loss_j: f64,
    /// Mesh loss in the gearbox (the 1 − η share of the transmitted power).
    pub gear_loss_j: f64,
    /// Work done on the external load torque (negative when the load drives the axis).
    pub load_work_j: f64,
    /// ½·J·ω² of motor, gear and load now.
    pub kinetic_j: f64,
    /// ½·L·i² now.
    pub magnetic_j: f64,
    /// Dissipated by the holding brake (sliding, and the motion it stops when it sticks).
    pub brake_loss_j: f64,
    /// Backlash contact damping, and the energy the one-step contact detection adds or removes
    /// at a contact change (small; shrinks with the step).
    pub backlash_loss_j: f64,
    /// ½·c·dz(Δθ)² stored in the backlash contact now.
    pub elastic_j: f64,
}

impl EnergyLedger {
    /// Energy dissipated or delivered to the load so far, J.
    pub fn spent_j(&self) -> f64 {
        self.copper_loss_j
            + self.friction_loss_j
            + self.gear_loss_j
            + self.load_work_j
            + self.brake_loss_j
            + self.backlash_loss_j
    }

    /// Energy stored in the axis now, J.
    pub fn stored_j(&self) -> f64 {
        self.kinetic_j + self.magnetic_j + self.elastic_j
    }

    /// `electrical_in − spent − stored`: zero up to rounding for a plant that started at rest.
    pub fn residual_j(&self) -> f64 {
        self.electrical_in_j - self.spent_j() - self.stored_j()
    }
}
