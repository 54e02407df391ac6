//! servocell control core (docs/DESIGN.md §4): trajectories, cascaded position/velocity loops
//! and a safety supervisor for one servo axis.
//!
//! Architecture invariants:
//! - `#![no_std]`, no allocation, no clock, no I/O, no randomness: plain data in, plain data
//!   out, time passed in by the caller as `f64` seconds. Transcendental functions come from
//!   `libm`, so results are bit-identical on every platform.
//! - All quantities are at the output shaft, in SI units.
//! - [`AxisController`] is the only place that combines supervisor, cascade and trajectory; the
//!   simulated motion service and the HIL runner both use it, and nothing else decides whether
//!   torque is on.
//!
//! Modules:
//! - [`trajectory`]: trapezoidal and 7-segment S-curve moves (closed-form times), SS1 stop ramp.
//! - [`cascade`]: position P + velocity feedforward → velocity PI with anti-windup (conditional
//!   integration; back-calculation selectable) → current with acceleration/friction feedforward,
//!   clamped to the current limit; a discrete position/velocity/disturbance observer; optional
//!   look-ahead over the command's hold and actuation delay.
//! - [`supervisor`]: CiA 402 state machine (states and transition table), IEC 61800-5-2 safety
//!   functions (STO, SS1, SLS, soft limits, following error, watchdog, over-temperature,
//!   feedback loss), the fault-code table with reactions.
//! - [`axis`]: [`AxisController`], the order of operations in one control step.
//! - [`error`]: the errors a caller can handle.
#![no_std]

pub mod axis;
pub mod cascade;
pub mod error;
pub mod supervisor;
pub mod trajectory;

pub use axis::{
    AxisCommand, AxisConfig, AxisController, PLAUSIBLE_ACCELERATION_FACTOR, Profile,
    SLS_PLANNING_FRACTION,
};
pub use cascade::{
    AntiWindup, Cascade, CascadeGains, CascadeTerms, DelayCompensation, Feedback, PlantConstants,
    VelocityEstimate,
};
pub use error::{ConfigError, MoveError, RequestRejected};
pub use supervisor::{
    DriveState, Fault, FaultCode, FaultReaction, Observation, SafetyRequest, Supervisor,
    SupervisorConfig, TIME_TOLERANCE_S, Transition, TransitionCause,
};
pub use trajectory::{SCurve, Setpoint, StopRamp, Trajectory, TrajectoryLimits, Trapezoid};
