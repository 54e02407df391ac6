//! The motion service's wire protocol: what clients may ask and what they are told.
//!
//! Owns `AxisName`, `MotionRequest`, `MotionResponse` and the plain-data reasons and views they
//! carry (serde mirrors of the control crate's types, which are `no_std` and serde-free). It does
//! not own any behaviour; `core` decides the answers.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest axis name, bytes.
pub const AXIS_NAME_LENGTH_MAX: usize = 64;

/// Longest lease holder name, bytes.
pub const HOLDER_LENGTH_MAX: usize = 64;

/// The name of an axis, unique within a cell (`"x"`, `"gripper"`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AxisName(String);

impl AxisName {
    /// Panics on an empty name or one above `AXIS_NAME_LENGTH_MAX`: names come from
    /// configuration, where such a name is a bug. (Names decoded from the wire are not checked;
    /// they simply match no axis.)
    pub fn new(name: impl Into<String>) -> AxisName {
        let name = name.into();
        assert!(
            !name.is_empty() && name.len() <= AXIS_NAME_LENGTH_MAX,
            "axis name must be 1..={AXIS_NAME_LENGTH_MAX} bytes, got {name:?}"
        );
        AxisName(name)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AxisName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a client asks the motion service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MotionRequest {
    /// Take (or renew, for the current holder) the axis lease for `ttl_ms`.
    AcquireLease {
        axis: AxisName,
        holder: String,
        ttl_ms: u32,
    },
    /// Give the lease back before it expires.
    ReleaseLease { axis: AxisName, token: u64 },
    /// Move the axis to `target_rad`, at most once per `request_id`. Sending the same request
    /// again is safe and is how a client learns the outcome (`InProgress`, `Completed`, ...).
    Move {
        request_id: u64,
        axis: AxisName,
        target_rad: f64,
        token: u64,
    },
    /// The axis's state, lease and position.
    Status { axis: AxisName },
    /// Switch the drive on and hold position (CiA 402 enable operation).
    Enable { axis: AxisName },
    /// Torque off at once (CiA 402 disable voltage): the axis coasts.
    Disable { axis: AxisName },
    /// Controlled stop, then torque off (SS1).
    QuickStop { axis: AxisName },
    /// Clear a fault so the axis can be enabled again.
    ResetFault { axis: AxisName },
}

impl MotionRequest {
    /// The axis the request is about.
    pub fn axis(&self) -> &AxisName {
        match self {
            MotionRequest::AcquireLease { axis, .. }
            | MotionRequest::ReleaseLease { axis, .. }
            | MotionRequest::Move { axis, .. }
            | MotionRequest::Status { axis }
            | MotionRequest::Enable { axis }
            | MotionRequest::Disable { axis }
            | MotionRequest::QuickStop { axis }
            | MotionRequest::ResetFault { axis } => axis,
        }
    }
}

/// What the motion service answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MotionResponse {
    /// The lease is yours until `ttl_ms` after the service granted it. A renewal by the holder
    /// returns the same token.
    Lease { token: u64, ttl_ms: u32 },
    /// The lease was released.
    Released,
    /// The move was recorded durably and has started.
    Accepted,
    /// A move with this request id is recorded and not finished yet.
    InProgress,
    /// The move with this request id finished in position.
    Completed { final_position_rad: f64 },
    /// The move with this request id started but did not finish in position.
    Aborted { reason: AbortReason },
    /// The service restarted while the move with this request id was running: it did not resume
    /// it, and it will never start it again.
    Interrupted,
    /// The token is older than the newest one issued for the axis: someone else holds (or held)
    /// the lease since. Nothing happened.
    StaleToken { token_current: u64 },
    /// Nothing happened, for the reason given.
    Rejected { reason: RejectReason },
    /// Answer to `Status`.
    Status(AxisStatus),
    /// Answer to `Enable`, `Disable`, `QuickStop`, `ResetFault`: applied (or already so).
    Done,
}

/// Why a request had no effect.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RejectReason {
    /// No axis of that name on this service.
    UnknownAxis,
    /// The holder name is empty or longer than `HOLDER_LENGTH_MAX`.
    HolderInvalid,
    /// `ttl_ms` is 0 or above the service's maximum.
    TtlOutOfRange { ttl_ms_max: u32 },
    /// Another holder has a live lease on the axis.
    LeaseHeld { holder: String, expires_in_ms: u64 },
    /// The token is the newest, but its lease expired or was released.
    LeaseNotHeld,
    /// The token was never issued for this axis.
    TokenNotIssued,
    /// The request id was already used for a different move.
    RequestIdReused,
    /// The target is NaN or infinite.
    TargetNotFinite,
    /// The target lies outside the axis's soft position limits.
    OutsideSoftLimits {
        position_rad_min: f64,
        position_rad_max: f64,
    },
    /// Moves start only when the axis is enabled.
    NotEnabled { state: AxisState },
    /// Another move is running or being recorded on the axis.
    Busy,
    /// The drive's supervisor refused a state request.
    Refused { refusal: Refusal },
    /// Too many answers are waiting for the disk; try again later.
    Overloaded,
}

/// Why a started move did not complete.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AbortReason {
    /// The supervisor tripped a fault (code as in `control::FaultCode`).
    Fault { code: u16 },
    /// The axis left `OperationEnabled` without a fault (disable, quick stop).
    Stopped { state: AxisState },
    /// The trajectory ended but the axis did not reach the in-position window in time.
    NotSettled { error_rad: f64 },
    /// The move could not start once recorded (the axis changed state meanwhile).
    StartRefused { state: AxisState },
}

impl AbortReason {
    /// A stable name for traces.
    pub fn kind(&self) -> &'static str {
        match self {
            AbortReason::Fault { .. } => "fault",
            AbortReason::Stopped { .. } => "stopped",
            AbortReason::NotSettled { .. } => "not_settled",
            AbortReason::StartRefused { .. } => "start_refused",
        }
    }
}

impl RejectReason {
    /// A stable name for traces.
    pub fn kind(&self) -> &'static str {
        match self {
            RejectReason::UnknownAxis => "unknown_axis",
            RejectReason::HolderInvalid => "holder_invalid",
            RejectReason::TtlOutOfRange { .. } => "ttl_out_of_range",
            RejectReason::LeaseHeld { .. } => "lease_held",
            RejectReason::LeaseNotHeld => "lease_not_held",
            RejectReason::TokenNotIssued => "token_not_issued",
            RejectReason::RequestIdReused => "request_id_reused",
            RejectReason::TargetNotFinite => "target_not_finite",
            RejectReason::OutsideSoftLimits { .. } => "outside_soft_limits",
            RejectReason::NotEnabled { .. } => "not_enabled",
            RejectReason::Busy => "busy",
            RejectReason::Refused { .. } => "refused",
            RejectReason::Overloaded => "overloaded",
        }
    }
}

/// Serde mirror of `control::RequestRejected`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    NotAllowedIn { state: AxisState },
    NoValidFeedback,
    OverTemperature,
    OutsideSoftLimits,
}

impl From<control::RequestRejected> for Refusal {
    fn from(rejected: control::RequestRejected) -> Refusal {
        match rejected {
            control::RequestRejected::NotAllowedIn { state } => Refusal::NotAllowedIn {
                state: state.into(),
            },
            control::RequestRejected::NoValidFeedback => Refusal::NoValidFeedback,
            control::RequestRejected::OverTemperature => Refusal::OverTemperature,
            control::RequestRejected::OutsideSoftLimits => Refusal::OutsideSoftLimits,
        }
    }
}

/// Serde mirror of `control::DriveState` (CiA 402 states).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AxisState {
    SwitchOnDisabled,
    ReadyToSwitchOn,
    OperationEnabled,
    QuickStopActive,
    FaultReactionActive,
    Fault,
}

impl From<control::DriveState> for AxisState {
    fn from(state: control::DriveState) -> AxisState {
        match state {
            control::DriveState::SwitchOnDisabled => AxisState::SwitchOnDisabled,
            control::DriveState::ReadyToSwitchOn => AxisState::ReadyToSwitchOn,
            control::DriveState::OperationEnabled => AxisState::OperationEnabled,
            control::DriveState::QuickStopActive => AxisState::QuickStopActive,
            control::DriveState::FaultReactionActive => AxisState::FaultReactionActive,
            control::DriveState::Fault => AxisState::Fault,
        }
    }
}

/// A snapshot of one axis, for `Status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AxisStatus {
    pub state: AxisState,
    /// Position of the newest valid feedback, if any arrived.
    pub position_rad: Option<f64>,
    /// The controller's current reference.
    pub setpoint_rad: f64,
    /// A move is running, being recorded, or settling.
    pub moving: bool,
    /// The request id of that move.
    pub active_request_id: Option<u64>,
    /// The live lease, if any.
    pub lease: Option<LeaseView>,
    /// The newest fencing token issued for the axis (0: none yet).
    pub token_issued_max: u64,
    /// The recorded fault, if the supervisor tripped one.
    pub fault_code: Option<u16>,
}

/// A live lease as `Status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseView {
    pub holder: String,
    pub token: u64,
    pub expires_in_ms: u64,
}

/// The bus topic the motion service publishes its events on (when it has a bus).
pub const MOTION_EVENTS_TOPIC: &str = "motion.events";

/// A state change of the motion service, as published on `MOTION_EVENTS_TOPIC` (the payload,
/// postcard). Each is announced once it is durable (the outbox entry is written together with
/// the change); a consumer may receive it more than once and de-duplicates by message id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MotionEvent {
    /// A move ended in position. `recovered`: the service restarted while the move was in
    /// progress, and found the axis at rest in position on its first valid feedback after the
    /// restart (the move had completed before the crash, or ended there while the host was
    /// down).
    MoveCompleted {
        axis: AxisName,
        request_id: u64,
        target_rad: f64,
        final_position_rad: f64,
        recovered: bool,
    },
    /// A recorded move did not end in position (or never started).
    MoveAborted {
        axis: AxisName,
        request_id: u64,
        target_rad: f64,
        reason: AbortReason,
    },
    /// The service restarted while the move was in progress and did not find the axis at rest
    /// in position after the restart; it is never resumed.
    MoveInterrupted {
        axis: AxisName,
        request_id: u64,
        target_rad: f64,
    },
    /// A lease was granted with a new fencing token.
    LeaseGranted {
        axis: AxisName,
        holder: String,
        token: u64,
        ttl_ms: u32,
    },
    /// The holder released its lease.
    LeaseReleased {
        axis: AxisName,
        holder: String,
        token: u64,
    },
    /// A lease ran out without renewal.
    LeaseExpired {
        axis: AxisName,
        holder: String,
        token: u64,
    },
}

impl MotionEvent {
    /// The axis the event is about.
    pub fn axis(&self) -> &AxisName {
        match self {
            MotionEvent::MoveCompleted { axis, .. }
            | MotionEvent::MoveAborted { axis, .. }
            | MotionEvent::MoveInterrupted { axis, .. }
            | MotionEvent::LeaseGranted { axis, .. }
            | MotionEvent::LeaseReleased { axis, .. }
            | MotionEvent::LeaseExpired { axis, .. } => axis,
        }
    }

    /// A stable name for traces and journal event kinds.
    pub fn kind(&self) -> &'static str {
        match self {
            MotionEvent::MoveCompleted { .. } => "move_completed",
            MotionEvent::MoveAborted { .. } => "move_aborted",
            MotionEvent::MoveInterrupted { .. } => "move_interrupted",
            MotionEvent::LeaseGranted { .. } => "lease_granted",
            MotionEvent::LeaseReleased { .. } => "lease_released",
            MotionEvent::LeaseExpired { .. } => "lease_expired",
        }
    }
}
