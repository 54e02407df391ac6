//! The motion service's link to its drive: command frames out, feedback frames in.
//!
//! Owns the `DriveLink` trait and the two frame types. It does not own the medium: the simulator
//! (and, on a bench, the HIL runner) decides when a frame arrives, whether it is lost or
//! corrupted. The service only sends a command each control period and takes the newest
//! feedback that has arrived; a corrupted frame reaches it with `valid == false`.

use serde::{Deserialize, Serialize};

/// A drive as seen from its motion service.
pub trait DriveLink: 'static {
    /// Hands a command frame to the medium. Never blocks: delivery is the medium's business.
    fn send(&mut self, frame: DriveCommandFrame);

    /// The newest feedback frame that arrived since the last call, if any. Older frames that
    /// arrived in between are superseded and dropped.
    fn latest_feedback(&mut self) -> Option<DriveFeedbackFrame>;
}

/// One control period's command to the drive (current mode, as the Dynamixel Goal Current).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DriveCommandFrame {
    /// Counts the service's command frames per axis (wrapping), so the drive can spot gaps.
    pub sequence: u32,
    /// Commanded winding current, A, already clamped by the controller.
    pub current_a: f64,
    /// Whether the drive may apply torque at all (false = STO).
    pub torque_enabled: bool,
    /// The controller's position setpoint this period, rad at the output. The drive does not
    /// close a loop on it (current mode); it is there for drive-side monitoring, as CiA 402
    /// drives receive their position demand in cyclic modes, and the simulator's following-error
    /// oracle judges the ground truth against it.
    pub position_setpoint_rad: f64,
    /// Whether a move is in progress (the setpoint is following a trajectory).
    pub moving: bool,
}

/// One sample of the drive's sensors and status, all quantities at the output shaft.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DriveFeedbackFrame {
    /// The drive's own frame counter (wrapping).
    pub sequence: u32,
    /// Measured output position, rad.
    pub position_rad: f64,
    /// Measured output velocity, rad/s.
    pub velocity_rad_per_s: f64,
    /// Measured winding current, A.
    pub current_a: f64,
    /// Winding temperature, °C.
    pub winding_temperature_c: f64,
    /// The drive's own state.
    pub status: DriveStatus,
    /// False when the frame failed its integrity check (CRC) on the medium.
    pub valid: bool,
}

/// The drive firmware's state bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriveStatus {
    /// Torque is being applied.
    pub torque_enabled: bool,
    /// The drive's own command watchdog fired (commands stopped arriving) and cut torque.
    pub watchdog_tripped: bool,
    /// Drive fault code, 0 = none (hardware error status in Dynamixel terms).
    pub fault_code: u16,
}
