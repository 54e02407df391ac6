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
//! `Enable` is refused (state unchanged, `RequestRejected`) without valid (and plausible) feedback, over
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
//! - **Encoder plausibility**: each fresh valid sample's position step is compared with the
//!   step its measured velocities predict (trapezoid over the samples' interval); a residual no
//!   motion within the axis's limits can make is a feedback fault (`FeedbackImplausible`). The
//!   bound is `2 q + v_q·Δt + a_max·Δt²` with `q` one encoder count (each of the two readings
//!   may be quantised by up to a count), `v_q` the velocity reading's resolution and `a_max`
//!   the plausible acceleration (`Δt` = sample gap × `feedback_period_s`): the trapezoid's own
//!   error is at most `a·Δt²/2`, and the factor 2 on it covers the velocity reading being a
//!   backward average over its sample period. On the XM430 at 1 kHz the bound is about 2.5
//!   counts (0.22°), so a glitch of 3 counts or more is caught and one below is
//!   indistinguishable from quantisation. Samples are told apart by `Observation::
//!   feedback_sample_index` (the drive's counter): the same index again is the same sample
//!   held by the caller and is not judged; a gap of `n` spans `n` sample periods (lost,
//!   superseded or invalid frames in between). The reference is kept in every state, so
//!   enabling compares against the last sample seen; the monitor trips only while torque is on.
//!   It is a two-channel check: the velocity reading is the second channel (the XM430's comes
//!   from the drive's own estimate, not from the position counts), so the residuals of the
//!   implausible steps add up to the position channel's *discrepancy*. While it is larger than
//!   two counts the feedback is not trusted: `Enable` is refused (`NoValidFeedback`), so a
//!   reset axis is not enabled on an offset encoder; a later step that takes the discrepancy
//!   back within two counts (the glitch reverting) trusts it again. With a velocity formed from
//!   the same counts (encoder difference) half of a step shows as its residual. A controller
//!   started while the position is already offset cannot know (no reference): re-referencing
//!   (homing) is outside the core.
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
//! | `0x7322` | `FeedbackImplausible` | STO | a sample's position step off its velocities' prediction by > the plausibility bound |
//! | `0x8130` | `CommunicationLoss` | SS1 | no command for > `command_timeout_s` |
//! | `0x8400` | `SafelyLimitedSpeed` | SS1 | SLS active and \|speed\| > `safely_limited_speed_rad_per_s` |
//! | `0x8611` | `FollowingError` | STO | \|setpoint − position\| > `following_error_rad_max` |
//! | `0x8612` | `SoftPositionLimit` | SS1 | position < `position_rad_min` or > `position_rad_max` |
//! | `0x8613` | `StopTimeExceeded` | STO | a quick stop not at standstill after `stop_time_s_max` |
//!
//! STO is the reaction where the loop itself cannot be trusted (no feedback, feedback that jumped,
//! lost tracking; IEC 61800-5-2 drives answer an encoder fault with STO, "stop category 0");
//! SS1 where it can, so the axis is braked rather than left to coast. When several monitors trip
//! in one step, the first in the order of the table's reaction priority wins: non-finite
//! feedback, implausible feedback, feedback lost, following error, soft limit, SLS, over-temperature, communication.
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
    /// The drive's feedback sample period (encoder plausibility: a sample gap of `n` is
    /// `n` periods).
    pub feedback_period_s: f64,
    /// One encoder count at the output, rad (encoder plausibility).
    pub position_resolution_rad: f64,
    /// Resolution of the velocity reading, rad/s (encoder plausibility).
    pub velocity_resolution_rad_per_s: f64,
    /// The largest acceleration the axis can plausibly make, rad/s² (encoder plausibility).
    pub plausible_acceleration_rad_per_s2_max: f64,
}

impl SupervisorConfig {
    /// Checks every field's domain and that SS1 can stop from `velocity_rad_per_s_max` within
    /// its stop time.
    pub fn validate(&self, velocity_rad_per_s_max: f64) -> Result<(), ConfigError> {
        let positive: [(&'static str, f64); 11] = [
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
            ("supervisor.feedback_period_s", self.feedback_period_s),
            (
                "supervisor.position_resolution_rad",
                self.position_resolution_rad,
            ),
            (
                "supervisor.plausible_acceleration_rad_per_s2_max",
                self.plausible_acceleration_rad_per_s2_max,
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
        if !(self.velocity_resolution_rad_per_s.is_finite()
            && self.velocity_resolution_rad_per_s >= 0.0)
        {
            return Err(ConfigError {
                field: "supervisor.velocity_resolution_rad_per_s",
                problem: "must be finite and >= 0",
            });
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
    FeedbackImplausible = 0x7322,
    CommunicationLoss = 0x8130,
    SafelyLimitedSpeed = 0x8400,
    FollowingError = 0x8611,
    SoftPositionLimit = 0x8612,
    StopTimeExceeded = 0x8613,
}

impl FaultCode {
    pub const ALL: [FaultCode; 9] = [
        FaultCode::OverTemperature,
        FaultCode::FeedbackLost,
        FaultCode::FeedbackNotFinite,
        FaultCode::FeedbackImplausible,
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
            FaultCode::FeedbackImplausible => "feedback_implausible",
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
            FaultCode::FeedbackImplausible => {
                "position step that no motion within the axis's limits can make (encoder fault)"
            }
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
            | FaultCode::FeedbackImplausible
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
    /// The drive's sample counter of this feedback (wrapping): the same value as the last
    /// step's means the same sample held, a gap of `n` means `n` sample periods.
    pub feedback_sample_index: u32,
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

/// The last fresh valid sample, the reference of the plausibility monitor.
#[derive(Clone, Copy, Debug, PartialEq)]
struct PlausibilityReference {
    sample_index: u32,
    position_rad: f64,
    velocity_rad_per_s: f64,
}

/// A position step off its prediction: the residual and the bound it crossed, rad.
#[derive(Clone, Copy, Debug, PartialEq)]
struct ImplausibleStep {
    residual_rad: f64,
    bound_rad: f64,
}

/// The encoder plausibility monitor's state (module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Plausibility {
    reference: Option<PlausibilityReference>,
    /// Sum of the implausible steps' signed residuals: how far the position channel is off
    /// the velocity channel, rad.
    discrepancy_rad: f64,
    /// This step's implausible step, if the sample made one.
    step: Option<ImplausibleStep>,
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
    plausibility: Plausibility,
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
            plausibility: Plausibility::default(),
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
        self.plausibility.step = self.judge_plausibility(observation);

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
            || self.feedback_implausible()
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

    /// Encoder plausibility (module docs): compares a fresh valid sample with the reference,
    /// makes it the new reference and keeps the discrepancy. A held sample (same index) or an
    /// invalid one is not judged.
    fn judge_plausibility(&mut self, o: &Observation) -> Option<ImplausibleStep> {
        if !(o.feedback_valid && o.position_rad.is_finite() && o.velocity_rad_per_s.is_finite()) {
            return None;
        }
        let previous = self.plausibility.reference;
        if previous.is_some_and(|r| r.sample_index == o.feedback_sample_index) {
            return None;
        }
        self.plausibility.reference = Some(PlausibilityReference {
            sample_index: o.feedback_sample_index,
            position_rad: o.position_rad,
            velocity_rad_per_s: o.velocity_rad_per_s,
        });
        let previous = previous?;
        let c = &self.config;
        let gap = o.feedback_sample_index.wrapping_sub(previous.sample_index);
        let dt_s = f64::from(gap) * c.feedback_period_s;
        let predicted_rad = 0.5 * (previous.velocity_rad_per_s + o.velocity_rad_per_s) * dt_s;
        let residual_rad = o.position_rad - previous.position_rad - predicted_rad;
        let bound_rad = 2.0 * c.position_resolution_rad
            + c.velocity_resolution_rad_per_s * dt_s
            + c.plausible_acceleration_rad_per_s2_max * dt_s * dt_s;
        if residual_rad.abs() <= bound_rad {
            return None;
        }
        let discrepancy_rad = self.plausibility.discrepancy_rad + residual_rad;
        // Back within two counts: the step undid the earlier ones (the glitch reverted).
        self.plausibility.discrepancy_rad =
            if discrepancy_rad.abs() <= 2.0 * c.position_resolution_rad {
                0.0
            } else {
                discrepancy_rad
            };
        Some(ImplausibleStep {
            residual_rad: residual_rad.abs(),
            bound_rad,
        })
    }

    /// Whether the position channel disagrees with the velocity channel (module docs).
    pub fn feedback_implausible(&self) -> bool {
        self.plausibility.discrepancy_rad != 0.0
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
        if let Some(step) = self.plausibility.step {
            return fault(
                FaultCode::FeedbackImplausible,
                step.residual_rad,
                step.bound_rad,
            );
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
