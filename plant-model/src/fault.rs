//! Plant faults: disturbances of the axis itself (sensor, load, motor, brake, thermal, supply),
//! as opposed to network, host and disk faults, which `sim` owns.
//!
//! Owns: the fault vocabulary and the set of faults active on one plant. Does not own: when a
//! fault starts or ends (the caller injects and clears them at its simulated time).

use serde::{Deserialize, Serialize};

/// One plant fault. It starts when injected and lasts until `Plant::clear_faults`. Injecting a
/// fault of a kind that is already active replaces it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PlantFault {
    /// The reported position jumps by `offset_counts` for as long as the fault is active.
    EncoderGlitch { offset_counts: i32 },
    /// `sensors().valid == false`; position and velocity stay frozen at their last values.
    EncoderDropout,
    /// Extra external torque at the output, N·m (a positive torque opposes positive rotation).
    LoadStep { torque_nm: f64 },
    /// Motor torque scaled by (1 − fraction); 1.0 is total loss. Modelled as a loss of magnet
    /// flux (or of a phase), so the back-EMF constant shrinks with it and energy stays conserved.
    TorqueLoss { fraction: f64 },
    /// A holding brake on the output engages: a friction torque up to `torque_nm` that holds the
    /// shaft (stick) or slips against the motion (slide).
    Brake { torque_nm: f64 },
    /// Cooling lost: the ambient the housing sheds heat to rises to `ambient_c`.
    OverHeating { ambient_c: f64 },
    /// The DC bus sags to `volts`; the drive can apply no more than that.
    BusUnderVoltage { volts: f64 },
}

/// Largest brake torque accepted, N·m (limits on everything; far above any servo's torque).
pub const BRAKE_TORQUE_NM_MAX: f64 = 1.0e7;

/// The faults active on one plant, one slot per kind.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ActiveFaults {
    pub(crate) encoder_offset_counts: i32,
    pub(crate) encoder_dropout: bool,
    pub(crate) load_step_nm: f64,
    pub(crate) torque_loss_fraction: f64,
    pub(crate) brake_nm: Option<f64>,
    pub(crate) ambient_c: Option<f64>,
    pub(crate) bus_voltage_v: Option<f64>,
}

impl ActiveFaults {
    /// Activates `fault`, replacing an active fault of the same kind. Panics on values outside
    /// physics (a negative brake torque, a fraction outside [0, 1], ...): a scenario loader must
    /// reject those before they reach the plant.
    pub(crate) fn activate(&mut self, fault: &PlantFault) {
        match *fault {
            PlantFault::EncoderGlitch { offset_counts } => {
                self.encoder_offset_counts = offset_counts;
            }
            PlantFault::EncoderDropout => self.encoder_dropout = true,
            PlantFault::LoadStep { torque_nm } => {
                assert!(
                    torque_nm.is_finite(),
                    "load step torque must be finite: {torque_nm}"
                );
                self.load_step_nm = torque_nm;
            }
            PlantFault::TorqueLoss { fraction } => {
                assert!(
                    (0.0..=1.0).contains(&fraction),
                    "torque loss fraction must lie in [0, 1]: {fraction}"
                );
                self.torque_loss_fraction = fraction;
            }
            PlantFault::Brake { torque_nm } => {
                assert!(
                    (0.0..=BRAKE_TORQUE_NM_MAX).contains(&torque_nm),
                    "brake torque must lie in [0, {BRAKE_TORQUE_NM_MAX}] N·m: {torque_nm}"
                );
                self.brake_nm = Some(torque_nm);
            }
            PlantFault::OverHeating { ambient_c } => {
                assert!(
                    (-60.0..=500.0).contains(&ambient_c),
                    "over-heating ambient must lie in [-60, 500] °C: {ambient_c}"
                );
                self.ambient_c = Some(ambient_c);
            }
            PlantFault::BusUnderVoltage { volts } => {
                assert!(
                    volts.is_finite() && volts >= 0.0,
                    "bus under-voltage must be finite and >= 0: {volts}"
                );
                self.bus_voltage_v = Some(volts);
            }
        }
    }
}
