//! The safety supervisor: a CiA 402-style drive state machine with safety functions after
//! IEC 61800-5-2.
//!
//! Owns: the drive state, the recorded fault, the SS1 stop ramp, and the monitors (thresholds,
//! timers). Does not own: the trajectory or the loops (`axis`, `cascade`); it decides whether
//! torque is on and which reference applies while stopping, nothing else.
//!
//! # States (a faithful subset of CiA 402)
//!
//! | state | torque | CiA 402 statusword | notes |
//! |---|---|---|---|
//! | `SwitchOnDisabled` | off | `0x0040` | power-on state; after STO, Disable, a finished quick stop, fault reset |
//! | `ReadyToSwitchOn` | off | `0x0021` | CiA 402's *Switched On* is merged into it: there is no separate power stage to switch |
//! | `OperationEnabled` | on | `0x0027` | moves run; every monitor is active |
//! | `QuickStopActive` | on | `0x0007` | SS1 ramp on request (quick stop option code 2: then *Switch On Disabled*) |
//! | `FaultReactionActive` | on | `0x000F` | SS1 ramp after a fault whose reaction is SS1 |
//! | `Fault` | off | `0x0008` | torque off; leaves only on `FaultReset` |
//!
//! *Not Ready To Switch On* (self-test) is left out: the core has nothing to test and starts in
//! `SwitchOnDisabled`.
//!
//! # Transitions (CiA 402 numbers in brackets)
//!
//! | from \ request | Shutdown | Enable | Disable | QuickStop | SafeTorqueOff | FaultReset |
//! |---|---|---|---|---|---|---|
//! | SwitchOnDisabled | Ready (2) | Enabled (2+3+4) | – | – | – | – |
//! | ReadyToSwitchOn | – | Enabled (3+4) | SwitchOnDisabled (7) | SwitchOnDisabled (7) | SwitchOnDisabled | – |
//! | OperationEnabled | Ready (8) | – | SwitchOnDisabled (9) | QuickStopActive (11) | SwitchOnDisabled | – |
//! | QuickStopActive | refused | refused | SwitchOnDisabled (12) | – | SwitchOnDisabled | – |
//! | FaultReactionActive | refused | refused | refused | – | Fault (torque off now) | refused |
//! | Fault | refused | refused | – | – | – | SwitchOnDisabled (15) |
//!
//! "–" means accepted and ignored (state unchanged), as CiA 402 ignores such control words.
//! `Enable` is refused (state unchanged, `RequestRejected`) without valid feedback, over
//! temperature or outside the soft limits, because the axis would fault at once.
//! `LimitSpeed` / `ReleaseSpeedLimit` switch SLS on and off in every state.
//!
//! Automatic transitions, checked every `step`:
//! - `OperationEnabled` → `Fault` (13+14 at once) on a fault with reaction STO, or →
//!   `FaultReactionActive` (13) on a fault with reaction SS1.
//! - `QuickStopActive` / `FaultReactionActive`: when the ramp has ended and the speed is at or
//!   below `standstill_velocity_rad_per_s` → `SwitchOnDisabled` / `Fault` (14), torque off. When
//!   `stop_time_s_max` has passed first → torque off anyway: `Fault` (a quick stop that overruns
//!   records `StopTimeExceeded`). An STO-reaction fault during the ramp → `Fault` at once. The
//!   SS1-reaction monitors are not evaluated while stopping: the stop already answers them.
//!
//! # Safety functions (IEC 61800-5-2)
//!
//! - **STO** (`SafeTorqueOff`): torque off in the same step, from every state.
//! - **SS1** (`QuickStop`, and the reaction to SS1 faults): SS1-t with standstill detection: a
//!   constant-deceleration ramp (`stop_deceleration_rad_per_s2`) from the current setpoint, then
//!   STO at standstill or at `stop_time_s_max` after the start, whichever comes first.
//! - **SLS**: while active, new moves are planned below the limit (`axis`) and a speed estimate
//!   above `safely_limited_speed_rad_per_s` trips a fault. Monitoring starts at once on
//!   activation: activate it at rest or below the limit.
//! - **Soft position limits**, **following-error limit**, **communication-loss watchdog**,
//!   **over-temperature**, and **feedback loss** (encoder dropout longer than allowed).
//!
//! Every threshold is strict: a value exactly at its limit is allowed, anything beyond trips.
//! Durations are compared with a tolerance of `TIME_TOLERANCE_S` (1 ns): callers pass time as
//! `f64` seconds made from integer nanoseconds, and `(t0 + 10 ms) − t0` need not round to exactly
//! 10 ms, so without it a timeout could trip one tick early.
//! Motion monitors (soft limits, following error, SLS) are skipped while the feedback is invalid;
//! the feedback-loss timer covers that time.
//!
//! # Fault codes (stable; grouped after the CiA 301 emergency-code ranges)
//!
//! | code | name | reaction | trips when (strictly beyond) |
//! |---|---|---|---|
//! | `0x4310` | `OverTemperature` | SS1 | winding temperature > `winding_temperature_c_max` |
//! | `0x7320` | `FeedbackLost` | STO | feedback invalid for > `feedback_invalid_s_max` |
//! | `0x7321` | `FeedbackNotFinite` | STO | a valid feedback value is NaN or infinite |
//! | `0x8130` | `CommunicationLoss` | SS1 | no command for > `command_timeout_s` |
//! | `0x8400` | `SafelyLimitedSpeed` | SS1 | SLS active and \|speed\| > `safely_limited_speed_rad_per_s` |
//! | `0x8611` | `FollowingError` | STO | \|setpoint − position\| > `following_error_rad_max` |
//! | `0x8612` | `SoftPositionLimit` | SS1 | position < `position_rad_min` or > `position_rad_max` |
//! | `0x8613` | `StopTimeExceeded` | STO | a quick stop not at standstill after `stop_time_s_max` |
//!
//! STO is the reaction where the loop itself cannot be trusted (no feedback, lost tracking);
//! SS1 where it can, so the axis is braked rather than left to coast. When several monitors trip
//! in one step, the first in the order of the table's reaction priority wins: non-finite
//! feedback, feedback lost, following error, soft limit, SLS, over-temperature, communication.
//! The first fault is kept until `FaultReset`; an escalation is visible as the transition cause.

use crate::error::{ConfigError, RequestRejected};
use crate::trajectory::{Setpoint, StopRamp};

/// Durations within this of their limit count as at the limit (module docs).
pub const TIME_TOLERANCE_S: f64 = 1e-9;

/// Thresholds and timings of the safety functions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SupervisorConfig {
    pub position_rad_min: f64,
    pub position_rad_max: f64,
    pub following_error_rad_max: f64,
    /// SLS limit, monitored while SLS is active.
    pub safely_limited_speed_rad_per_s: f64,
    /// SS1 ramp deceleration.
    pub stop_deceleration_rad_per_s2: f64,
    /// SS1: torque off at the latest this long after the stop started.
    pub stop_time_s_max: f64,
    /// At or below this speed the axis counts as standing still.
    pub standstill_velocity_rad_per_s: f64,
    /// Communication-loss watchdog: longest time without a command.
    pub command_timeout_s: f64,
    pub winding_temperature_c_max: f64,
    /// Longest encoder dropout tolerated.
    pub feedback_invalid_s_max: f64,
}

impl SupervisorConfig {
    /// Checks every field's domain and that SS1 can stop from `velocity_rad_per_s_max` within
    /// its stop time.
    pub fn validate(&self, velocity_rad_per_s_max: f64) -> Result<(), ConfigError> {
        let positive: [(&'static str, f64); 8] = [
            (
                "supervisor.following_error_rad_max",
                self.following_error_rad_max,
            ),
            (
                "supervisor.safely_limited_speed_rad_per_s",
                self.safely_limited_speed_rad_per_s,
            ),
            (
                "supervisor.stop_deceleration_rad_per_s2",
                self.stop_deceleration_rad_per_s2,
            ),
            ("supervisor.stop_time_s_max", self.stop_time_s_max),
            (
                "supervisor.standstill_velocity_rad_per_s",
                self.standstill_velocity_rad_per_s,
            ),
            ("supervisor.command_timeout_s", self.command_timeout_s),
            (
                "supervisor.winding_temperature_c_max",
                self.winding_temperature_c_max,
            ),
            (
                "supervisor.feedback_invalid_s_max",
                self.feedback_invalid_s_max,
            ),
        ];
        for (field, value) in positive {
            if !(value.is_finite() && value > 0.0) {
                return Err(ConfigError {
                    field,
                    problem: "must be finite and > 0",
                });
            }
        }
        if !(self.position_rad_min.is_finite() && self.position_rad_max.is_finite()) {
            return Err(ConfigError {
                field: "supervisor.position_rad_min/max",
                problem: "must be finite",
            });
        }
        if self.position_rad_min >= self.position_rad_max {
            return Err(ConfigError {
                field: "supervisor.position_rad_min",
                problem: "must be below position_rad_max",
            });
        }
        if velocity_rad_per_s_max / self.stop_deceleration_rad_per_s2 > self.stop_time_s_max {
            return Err(ConfigError {
                field: "supervisor.stop_time_s_max",
                problem: "is shorter than the SS1 ramp from the trajectory velocity limit",
            });
        }
        Ok(())
    }
}

/// The drive states (see the module docs for the subset chosen).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DriveState {
    SwitchOnDisabled,
    ReadyToSwitchOn,
    OperationEnabled,
    QuickStopActive,
    FaultReactionActive,
    Fault,
}

impl DriveState {
    pub const ALL: [DriveState; 6] = [
        DriveState::SwitchOnDisabled,
        DriveState::ReadyToSwitchOn,
        DriveState::OperationEnabled,
        DriveState::QuickStopActive,
        DriveState::FaultReactionActive,
        DriveState::Fault,
    ];

    /// Whether the drive applies torque in this state.
    pub fn torque_enabled(self) -> bool {
        matches!(
            self,
            DriveState::OperationEnabled
                | DriveState::QuickStopActive
                | DriveState::FaultReactionActive
        )
    }

    /// Whether an SS1 ramp is running.
    pub fn is_stopping(self) -> bool {
        matches!(
            self,
            DriveState::QuickStopActive | DriveState::FaultReactionActive
        )
    }

    /// Stable name for reports.
    pub fn name(self) -> &'static str {
        match self {
            DriveState::SwitchOnDisabled => "switch_on_disabled",
            DriveState::ReadyToSwitchOn => "ready_to_switch_on",
            DriveState::OperationEnabled => "operation_enabled",
            DriveState::QuickStopActive => "quick_stop_active",
            DriveState::FaultReactionActive => "fault_reaction_active",
            DriveState::Fault => "fault",
        }
    }

    /// The CiA 402 statusword (0x6041) state bits, with *voltage enabled* set when torque is on.
    pub fn statusword(self) -> u16 {
        match self {
            DriveState::SwitchOnDisabled => 0x0040,
            DriveState::ReadyToSwitchOn => 0x0021,
            DriveState::OperationEnabled => 0x0027,
            DriveState::QuickStopActive => 0x0007,
            DriveState::FaultReactionActive => 0x000F,
            DriveState::Fault => 0x0008,
        }
    }
}

/// What a caller (operator, motion service, HIL runner) asks of the drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SafetyRequest {
    /// CiA 402 *Shutdown*: to `ReadyToSwitchOn`, torque off.
    Shutdown,
    /// *Switch on* + *Enable operation*: to `OperationEnabled`, holding the current position.
    Enable,
    /// *Disable voltage*: to `SwitchOnDisabled`, torque off at once (the axis coasts).
    Disable,
    /// *Quick stop*: SS1.
    QuickStop,
    /// STO: torque off at once, from every state.
    SafeTorqueOff,
    /// *Fault reset*: `Fault` to `SwitchOnDisabled`, clearing the recorded fault.
    FaultReset,
    /// SLS on.
    LimitSpeed,
    /// SLS off.
    ReleaseSpeedLimit,
}

impl SafetyRequest {
    pub const ALL: [SafetyRequest; 8] = [
        SafetyRequest::Shutdown,
        SafetyRequest::Enable,
        SafetyRequest::Disable,
        SafetyRequest::QuickStop,
        SafetyRequest::SafeTorqueOff,
        SafetyRequest::FaultReset,
        SafetyRequest::LimitSpeed,
        SafetyRequest::ReleaseSpeedLimit,
    ];
}

/// How the drive reacts to a fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultReaction {
    /// Torque off in the same step.
    SafeTorqueOff,
    /// SS1 ramp, then torque off.
    SafeStop1,
}

/// Stable fault identities. `code()` values never change meaning; new faults get new codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u16)]
pub enum FaultCode {
    OverTemperature = 0x4310,
    FeedbackLost = 0x7320,
    FeedbackNotFinite = 0x7321,
    CommunicationLoss = 0x8130,
    SafelyLimitedSpeed = 0x8400,
    FollowingError = 0x8611,
    SoftPositionLimit = 0x8612,
    StopTimeExceeded = 0x8613,
}

impl FaultCode {
    pub const ALL: [FaultCode; 8] = [
        FaultCode::OverTemperature,
        FaultCode::FeedbackLost,
        FaultCode::FeedbackNotFinite,
        FaultCode::CommunicationLoss,
        FaultCode::SafelyLimitedSpeed,
        FaultCode::FollowingError,
        FaultCode::SoftPositionLimit,
        FaultCode::StopTimeExceeded,
    ];

    pub fn code(self) -> u16 {
        self as u16
    }

    pub fn from_code(code: u16) -> Option<FaultCode> {
        FaultCode::ALL
            .into_iter()
            .find(|fault| fault.code() == code)
    }

    /// Stable short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            FaultCode::OverTemperature => "over_temperature",
            FaultCode::FeedbackLost => "feedback_lost",
            FaultCode::FeedbackNotFinite => "feedback_not_finite",
            FaultCode::CommunicationLoss => "communication_loss",
            FaultCode::SafelyLimitedSpeed => "safely_limited_speed",
            FaultCode::FollowingError => "following_error",
            FaultCode::SoftPositionLimit => "soft_position_limit",
            FaultCode::StopTimeExceeded => "stop_time_exceeded",
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            FaultCode::OverTemperature => "winding temperature above its limit",
            FaultCode::FeedbackLost => "position feedback invalid for longer than allowed",
            FaultCode::FeedbackNotFinite => "feedback value is NaN or infinite",
            FaultCode::CommunicationLoss => "no command received within the watchdog timeout",
            FaultCode::SafelyLimitedSpeed => {
                "speed above the safely limited speed while SLS is active"
            }
            FaultCode::FollowingError => "following error above its limit",
            FaultCode::SoftPositionLimit => "position outside the soft position limits",
            FaultCode::StopTimeExceeded => "axis not at standstill within the SS1 stop time",
        }
    }

    pub fn reaction(self) -> FaultReaction {
        match self {
            FaultCode::FeedbackLost
            | FaultCode::FeedbackNotFinite
            | FaultCode::FollowingError
            | FaultCode::StopTimeExceeded => FaultReaction::SafeTorqueOff,
            FaultCode::OverTemperature
            | FaultCode::CommunicationLoss
            | FaultCode::SafelyLimitedSpeed
            | FaultCode::SoftPositionLimit => FaultReaction::SafeStop1,
        }
    }
}

/// A tripped monitor: which, when, and the value against the limit it crossed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fault {
    pub code: FaultCode,
    pub t_s: f64,
    /// The monitored value that tripped (°C, rad, rad/s or s, by code).
    pub value: f64,
    /// The limit it crossed.
    pub limit: f64,
}

impl Fault {
    pub fn reason(&self) -> &'static str {
        self.code.reason()
    }
}

/// What the supervisor sees each step. Built by `AxisController`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observation {
    /// The reference at this instant.
    pub setpoint: Setpoint,
    /// Measured position.
    pub position_rad: f64,
    /// Best speed estimate (the cascade's observer when it has one).
    pub velocity_rad_per_s: f64,
    pub winding_temperature_c: f64,
    pub feedback_valid: bool,
    /// A command (or heartbeat) arrived this period.
    pub command_link_ok: bool,
}

/// Why the state changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransitionCause {
    Request(SafetyRequest),
    Fault(FaultCode),
    /// SS1 ramp finished at standstill.
    StopComplete,
    /// SS1 stop time elapsed: torque off regardless.
    StopTimeElapsed,
}

/// One state change.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Transition {
    pub t_s: f64,
    pub from: DriveState,
    pub to: DriveState,
    pub cause: TransitionCause,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Stop {
    ramp: StopRamp,
    started_t_s: f64,
}

/// The state machine and monitors of one axis.
#[derive(Clone, Debug)]
pub struct Supervisor {
    config: SupervisorConfig,
    state: DriveState,
    fault: Option<Fault>,
    sls_active: bool,
    stop: Option<Stop>,
    last_t_s: Option<f64>,
    last_command_t_s: Option<f64>,
    invalid_since_t_s: Option<f64>,
    last_observation: Option<Observation>,
}

impl Supervisor {
    /// Starts in `SwitchOnDisabled`, SLS off, no fault.
    pub fn new(config: SupervisorConfig) -> Supervisor {
        assert!(
            config.validate(0.0).is_ok(),
            "supervisor config invalid: {:?}",
            config.validate(0.0)
        );
        Supervisor {
            config,
            state: DriveState::SwitchOnDisabled,
            fault: None,
            sls_active: false,
            stop: None,
            last_t_s: None,
            last_command_t_s: None,
            invalid_since_t_s: None,
            last_observation: None,
        }
    }

    pub fn config(&self) -> &SupervisorConfig {
        &self.config
    }

    pub fn state(&self) -> DriveState {
        self.state
    }

    /// The first fault since the last `FaultReset`.
    pub fn fault(&self) -> Option<Fault> {
        self.fault
    }

    pub fn sls_active(&self) -> bool {
        self.sls_active
    }

    /// The SS1 reference while stopping; `None` otherwise.
    pub fn stop_setpoint(&self, t_s: f64) -> Option<Setpoint> {
        self.stop.map(|stop| stop.ramp.sample(t_s))
    }

    /// Runs the monitors and automatic transitions for the instant `t_s`.
    pub fn step(&mut self, t_s: f64, observation: &Observation) -> Option<Transition> {
        assert!(t_s.is_finite(), "supervisor time must be finite, got {t_s}");
        if let Some(last) = self.last_t_s {
            assert!(
                t_s >= last,
                "supervisor time went backwards: {t_s} < {last}"
            );
        }
        self.last_t_s = Some(t_s);
        if observation.command_link_ok || self.last_command_t_s.is_none() {
            self.last_command_t_s = Some(t_s);
        }
        if observation.feedback_valid {
            self.invalid_since_t_s = None;
        } else if self.invalid_since_t_s.is_none() {
            self.invalid_since_t_s = Some(t_s);
        }
        self.last_observation = Some(*observation);

        match self.state {
            DriveState::OperationEnabled => {
                let fault = self.detect(t_s, observation, Monitors::All)?;
                Some(self.trip(t_s, fault, &observation.setpoint))
            }
            DriveState::QuickStopActive | DriveState::FaultReactionActive => {
                if let Some(fault) = self.detect(t_s, observation, Monitors::WhileStopping) {
                    return Some(self.trip(t_s, fault, &observation.setpoint));
                }
                self.check_stop(t_s, observation)
            }
            DriveState::SwitchOnDisabled | DriveState::ReadyToSwitchOn | DriveState::Fault => None,
        }
    }

    /// Applies a request. `setpoint` is the reference at `t_s` (the SS1 ramp starts from it).
    /// Ignored requests return `Ok(None)`.
    pub fn request(
        &mut self,
        t_s: f64,
        request: SafetyRequest,
        setpoint: &Setpoint,
    ) -> Result<Option<Transition>, RequestRejected> {
        use DriveState as S;
        use SafetyRequest as R;
        let refuse = Err(RequestRejected::NotAllowedIn { state: self.state });
        let to = match (request, self.state) {
            (R::LimitSpeed, _) => {
                self.sls_active = true;
                return Ok(None);
            }
            (R::ReleaseSpeedLimit, _) => {
                self.sls_active = false;
                return Ok(None);
            }
            (R::Shutdown, S::SwitchOnDisabled | S::OperationEnabled) => S::ReadyToSwitchOn,
            (R::Shutdown, S::ReadyToSwitchOn) => return Ok(None),
            (R::Shutdown, _) => return refuse,
            (R::Enable, S::SwitchOnDisabled | S::ReadyToSwitchOn) => {
                self.check_enable()?;
                S::OperationEnabled
            }
            (R::Enable, S::OperationEnabled) => return Ok(None),
            (R::Enable, _) => return refuse,
            (R::Disable, S::ReadyToSwitchOn | S::OperationEnabled | S::QuickStopActive) => {
                S::SwitchOnDisabled
            }
            (R::Disable, S::SwitchOnDisabled | S::Fault) => return Ok(None),
            (R::Disable, S::FaultReactionActive) => return refuse,
            (R::QuickStop, S::ReadyToSwitchOn) => S::SwitchOnDisabled,
            (R::QuickStop, S::OperationEnabled) => S::QuickStopActive,
            (R::QuickStop, _) => return Ok(None),
            (R::SafeTorqueOff, S::FaultReactionActive) => S::Fault,
            (R::SafeTorqueOff, S::SwitchOnDisabled | S::Fault) => return Ok(None),
            (R::SafeTorqueOff, _) => S::SwitchOnDisabled,
            (R::FaultReset, S::Fault) => S::SwitchOnDisabled,
            (R::FaultReset, S::FaultReactionActive) => return refuse,
            (R::FaultReset, _) => return Ok(None),
        };
        match to {
            S::QuickStopActive => {
                self.stop = Some(Stop {
                    ramp: StopRamp::new(t_s, *setpoint, self.config.stop_deceleration_rad_per_s2),
                    started_t_s: t_s,
                });
            }
            S::OperationEnabled => {
                // The watchdog starts afresh: time spent disabled is not a lost link.
                self.last_command_t_s = Some(t_s);
            }
            _ => self.stop = None,
        }
        if request == R::FaultReset {
            self.fault = None;
        }
        Ok(Some(self.transition(
            t_s,
            to,
            TransitionCause::Request(request),
        )))
    }

    fn check_enable(&self) -> Result<(), RequestRejected> {
        let Some(observation) = self.last_observation else {
            return Err(RequestRejected::NoValidFeedback);
        };
        if !observation.feedback_valid
            || !observation.position_rad.is_finite()
            || !observation.velocity_rad_per_s.is_finite()
        {
            return Err(RequestRejected::NoValidFeedback);
        }
        if observation.winding_temperature_c.is_nan()
            || observation.winding_temperature_c > self.config.winding_temperature_c_max
        {
            return Err(RequestRejected::OverTemperature);
        }
        if observation.position_rad < self.config.position_rad_min
            || observation.position_rad > self.config.position_rad_max
        {
            return Err(RequestRejected::OutsideSoftLimits);
        }
        Ok(())
    }

    /// The first monitor that trips, in priority order (module docs).
    fn detect(&self, t_s: f64, o: &Observation, monitors: Monitors) -> Option<Fault> {
        let c = &self.config;
        let fault = |code, value, limit| {
            Some(Fault {
                code,
                t_s,
                value,
                limit,
            })
        };
        if o.feedback_valid
            && !(o.position_rad.is_finite()
                && o.velocity_rad_per_s.is_finite()
                && o.setpoint.position_rad.is_finite())
        {
            return fault(FaultCode::FeedbackNotFinite, f64::NAN, 0.0);
        }
        if o.winding_temperature_c.is_nan() {
            return fault(FaultCode::FeedbackNotFinite, f64::NAN, 0.0);
        }
        if let Some(since) = self.invalid_since_t_s {
            let invalid_s = t_s - since;
            if invalid_s > c.feedback_invalid_s_max + TIME_TOLERANCE_S {
                return fault(FaultCode::FeedbackLost, invalid_s, c.feedback_invalid_s_max);
            }
        }
        if o.feedback_valid {
            let following_error = (o.setpoint.position_rad - o.position_rad).abs();
            if following_error > c.following_error_rad_max {
                return fault(
                    FaultCode::FollowingError,
                    following_error,
                    c.following_error_rad_max,
                );
            }
        }
        if monitors == Monitors::WhileStopping {
            return None;
        }
        if o.feedback_valid {
            if o.position_rad < c.position_rad_min {
                return fault(
                    FaultCode::SoftPositionLimit,
                    o.position_rad,
                    c.position_rad_min,
                );
            }
            if o.position_rad > c.position_rad_max {
                return fault(
                    FaultCode::SoftPositionLimit,
                    o.position_rad,
                    c.position_rad_max,
                );
            }
            let speed = o.velocity_rad_per_s.abs();
            if self.sls_active && speed > c.safely_limited_speed_rad_per_s {
                return fault(
                    FaultCode::SafelyLimitedSpeed,
                    speed,
                    c.safely_limited_speed_rad_per_s,
                );
            }
        }
        if o.winding_temperature_c > c.winding_temperature_c_max {
            return fault(
                FaultCode::OverTemperature,
                o.winding_temperature_c,
                c.winding_temperature_c_max,
            );
        }
        if let Some(last) = self.last_command_t_s {
            let silent_s = t_s - last;
            if silent_s > c.command_timeout_s + TIME_TOLERANCE_S {
                return fault(FaultCode::CommunicationLoss, silent_s, c.command_timeout_s);
            }
        }
        None
    }

    /// Records `fault` (the first one is kept) and applies its reaction.
    fn trip(&mut self, t_s: f64, fault: Fault, setpoint: &Setpoint) -> Transition {
        assert!(
            self.state.torque_enabled(),
            "monitors trip only while torque is on, not in {:?}",
            self.state
        );
        if self.fault.is_none() {
            self.fault = Some(fault);
        }
        let cause = TransitionCause::Fault(fault.code);
        match fault.code.reaction() {
            FaultReaction::SafeTorqueOff => {
                self.stop = None;
                self.transition(t_s, DriveState::Fault, cause)
            }
            FaultReaction::SafeStop1 => {
                if self.stop.is_none() {
                    self.stop = Some(Stop {
                        ramp: StopRamp::new(
                            t_s,
                            *setpoint,
                            self.config.stop_deceleration_rad_per_s2,
                        ),
                        started_t_s: t_s,
                    });
                }
                self.transition(t_s, DriveState::FaultReactionActive, cause)
            }
        }
    }

    /// SS1 progress: torque off at standstill after the ramp, or when the stop time is up.
    fn check_stop(&mut self, t_s: f64, o: &Observation) -> Option<Transition> {
        let stop = self.stop.expect("a stopping state always has a stop ramp");
        let ramp_done = t_s + TIME_TOLERANCE_S >= stop.ramp.end_t_s();
        let at_standstill = o.velocity_rad_per_s.abs() <= self.config.standstill_velocity_rad_per_s;
        let quick_stop = self.state == DriveState::QuickStopActive;
        if ramp_done && at_standstill {
            self.stop = None;
            let to = if quick_stop {
                DriveState::SwitchOnDisabled
            } else {
                DriveState::Fault
            };
            return Some(self.transition(t_s, to, TransitionCause::StopComplete));
        }
        let elapsed_s = t_s - stop.started_t_s;
        if elapsed_s > self.config.stop_time_s_max + TIME_TOLERANCE_S {
            self.stop = None;
            if quick_stop {
                self.fault = Some(Fault {
                    code: FaultCode::StopTimeExceeded,
                    t_s,
                    value: elapsed_s,
                    limit: self.config.stop_time_s_max,
                });
            }
            return Some(self.transition(t_s, DriveState::Fault, TransitionCause::StopTimeElapsed));
        }
        None
    }

    fn transition(&mut self, t_s: f64, to: DriveState, cause: TransitionCause) -> Transition {
        let from = self.state;
        assert!(from != to, "a transition changes the state ({from:?})");
        self.state = to;
        // Positive and negative space: a ramp exists exactly while stopping, a fault is
        // recorded in every fault state.
        assert_eq!(
            self.stop.is_some(),
            to.is_stopping(),
            "stop ramp vs state {to:?}"
        );
        assert!(
            !matches!(to, DriveState::Fault | DriveState::FaultReactionActive)
                || self.fault.is_some(),
            "fault state {to:?} without a recorded fault"
        );
        Transition {
            t_s,
            from,
            to,
            cause,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Monitors {
    All,
    /// During SS1 only the monitors whose reaction is STO: stopping already answers the rest.
    WhileStopping,
}
