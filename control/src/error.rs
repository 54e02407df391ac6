//! Errors a caller of the control core can handle: a bad configuration, a move that cannot
//! start, a state-machine request that the current state refuses.
//!
//! Hand-written `Display` and `core::error::Error` instead of `thiserror`: the workspace's
//! `thiserror` has its `std` feature on, which would pull `std` into this `no_std` crate.
//! Broken invariants are not errors here: they are `assert!`s where they happen.

use core::fmt;

use crate::supervisor::DriveState;

/// A configuration value that is out of its domain (`AxisConfig::validate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The offending field, as a path (`supervisor.stop_time_s_max`).
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid axis configuration: `{}` {}",
            self.field, self.problem
        )
    }
}

impl core::error::Error for ConfigError {}

/// Why `AxisController::start_move` refused a move.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MoveError {
    /// Moves start only in `OperationEnabled`.
    NotEnabled { state: DriveState },
    /// A move is still running; moves are rest-to-rest and do not blend.
    Busy,
    /// The target is NaN or infinite.
    TargetNotFinite,
    /// The target lies outside the soft position limits.
    OutsideSoftLimits {
        target_rad: f64,
        position_rad_min: f64,
        position_rad_max: f64,
    },
}

impl fmt::Display for MoveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MoveError::NotEnabled { state } => {
                write!(f, "axis is not enabled (state {})", state.name())
            }
            MoveError::Busy => write!(f, "axis is still moving"),
            MoveError::TargetNotFinite => write!(f, "move target is not a finite number"),
            MoveError::OutsideSoftLimits {
                target_rad,
                position_rad_min,
                position_rad_max,
            } => write!(
                f,
                "move target {target_rad} rad outside soft limits [{position_rad_min}, {position_rad_max}] rad"
            ),
        }
    }
}

impl core::error::Error for MoveError {}

/// Why the supervisor refused a `SafetyRequest`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestRejected {
    /// The request has no transition from this state (e.g. `Enable` in `Fault`).
    NotAllowedIn { state: DriveState },
    /// `Enable` refused: no usable feedback has been seen yet, or it is invalid or implausible
    /// now (the encoder disagrees with the velocity reading).
    NoValidFeedback,
    /// `Enable` refused: the winding is above its temperature limit.
    OverTemperature,
    /// `Enable` refused: the axis is outside its soft position limits.
    OutsideSoftLimits,
}

impl fmt::Display for RequestRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestRejected::NotAllowedIn { state } => {
                write!(f, "request not allowed in state {}", state.name())
            }
            RequestRejected::NoValidFeedback => write!(f, "cannot enable without valid feedback"),
            RequestRejected::OverTemperature => {
                write!(f, "cannot enable while the winding is over temperature")
            }
            RequestRejected::OutsideSoftLimits => {
                write!(f, "cannot enable outside the soft position limits")
            }
        }
    }
}

impl core::error::Error for RequestRejected {}
