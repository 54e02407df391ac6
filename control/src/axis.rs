//! One axis's whole control: supervisor + cascade + the active trajectory. The simulated motion
//! service and the HIL runner both drive an axis only through [`AxisController`], so this is the
//! one place where "which reference, which monitors, torque on or off" is decided.
//!
//! Owns: the active move, the current setpoint, the order of operations within a control step.
//! Does not own: time (the caller passes `t_s`), I/O (the caller turns an [`AxisCommand`] into a
//! drive command and a drive's report into a [`Feedback`]), or which moves to make.
//!
//! A step at `t_s`:
//! 1. the cascade's observer takes the feedback (position and speed estimate);
//! 2. the reference for `t_s`: the move's sample, the held position, or (torque off) the
//!    estimated position, so that enabling never jumps;
//! 3. the supervisor runs its monitors and automatic transitions on that;
//! 4. torque on: the cascade computes the current (following the SS1 ramp while stopping);
//!    torque off: the command is zero and `torque_enabled` is false.
//!
//! Moves are rest-to-rest from the current setpoint; a new move while one runs is refused
//! (`MoveError::Busy`). While SLS is active, moves are planned at `SLS_PLANNING_FRACTION` of the
//! SLS limit so that the estimate's ripple stays below the monitored limit.

use crate::cascade::{Cascade, CascadeGains, CascadeTerms, Feedback, PlantConstants};
use crate::error::{ConfigError, MoveError, RequestRejected};
use crate::supervisor::{
    DriveState, Fault, Observation, SafetyRequest, Supervisor, SupervisorConfig, Transition,
};
use crate::trajectory::{Setpoint, Trajectory, TrajectoryLimits};

/// Under SLS, moves are planned at this fraction of the SLS limit.
pub const SLS_PLANNING_FRACTION: f64 = 0.9;

/// Which profile moves use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    Trapezoid,
    SCurve,
}

/// Everything one axis's control needs; plain data.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AxisConfig {
    pub plant: PlantConstants,
    pub gains: CascadeGains,
    pub limits: TrajectoryLimits,
    pub profile: Profile,
    pub supervisor: SupervisorConfig,
}

impl AxisConfig {
    /// A complete configuration from the plant, a velocity-loop bandwidth, the move limits and
    /// the soft position range. Gains from [`CascadeGains::from_plant`]; S-curve moves; the
    /// supervisor's defaults are:
    /// SS1 deceleration = the move acceleration limit, stop time = 1.5 × the ramp from the
    /// velocity limit + 0.1 s, SLS = ¼ of the velocity limit, standstill = 2 % of it,
    /// following error 0.2 rad, command timeout 50 ms, winding 75 °C (5 °C below the XM430's own
    /// 80 °C shutdown), feedback dropout 10 ms. Adjust the pub fields as needed.
    pub fn from_plant(
        plant: PlantConstants,
        velocity_bandwidth_hz: f64,
        limits: TrajectoryLimits,
        position_rad_min: f64,
        position_rad_max: f64,
    ) -> AxisConfig {
        let v_max = limits.velocity_rad_per_s_max;
        let deceleration = limits.acceleration_rad_per_s2_max;
        AxisConfig {
            plant,
            gains: CascadeGains::from_plant(&plant, velocity_bandwidth_hz),
            limits,
            profile: Profile::SCurve,
            supervisor: SupervisorConfig {
                position_rad_min,
                position_rad_max,
                following_error_rad_max: 0.2,
                safely_limited_speed_rad_per_s: 0.25 * v_max,
                stop_deceleration_rad_per_s2: deceleration,
                stop_time_s_max: 1.5 * v_max / deceleration + 0.1,
                standstill_velocity_rad_per_s: 0.02 * v_max,
                command_timeout_s: 0.05,
                winding_temperature_c_max: 75.0,
                feedback_invalid_s_max: 0.01,
            },
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.plant.is_valid() {
            return Err(ConfigError {
                field: "plant",
                problem: "needs finite inertia, torque constant, current limit > 0 and friction >= 0",
            });
        }
        if !self.gains.is_valid() {
            return Err(ConfigError {
                field: "gains",
                problem: "needs finite gains >= 0, tracking time > 0, feedforward in 0..=1",
            });
        }
        if !self.limits.is_valid() {
            return Err(ConfigError {
                field: "limits",
                problem: "must be finite and > 0",
            });
        }
        self.supervisor.validate(self.limits.velocity_rad_per_s_max)
    }
}

/// What the caller sends to the drive this period.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AxisCommand {
    /// Current command, within `±current_a_max`; 0 when torque is off.
    pub current_a: f64,
    /// False: the drive must switch its bridge off (STO), whatever `current_a` says.
    pub torque_enabled: bool,
}

impl AxisCommand {
    pub const OFF: AxisCommand = AxisCommand {
        current_a: 0.0,
        torque_enabled: false,
    };
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct ActiveMove {
    trajectory: Trajectory,
    start_t_s: f64,
}

/// Supervisor + cascade + trajectory for one axis.
#[derive(Clone, Debug)]
pub struct AxisController {
    config: AxisConfig,
    supervisor: Supervisor,
    cascade: Cascade,
    active_move: Option<ActiveMove>,
    setpoint: Setpoint,
    last_t_s: Option<f64>,
    last_transition: Option<Transition>,
    command: AxisCommand,
}

impl AxisController {
    /// Panics when `config.validate()` fails: check it first where the config comes from a file.
    pub fn new(config: AxisConfig) -> AxisController {
        if let Err(error) = config.validate() {
            panic!("{error}");
        }
        AxisController {
            config,
            supervisor: Supervisor::new(config.supervisor),
            cascade: Cascade::new(config.gains, config.plant),
            active_move: None,
            setpoint: Setpoint::default(),
            last_t_s: None,
            last_transition: None,
            command: AxisCommand::OFF,
        }
    }

    /// Starts a move from the current setpoint to `target_rad` at `t_s`.
    pub fn start_move(&mut self, t_s: f64, target_rad: f64) -> Result<(), MoveError> {
        let state = self.supervisor.state();
        if state != DriveState::OperationEnabled {
            return Err(MoveError::NotEnabled { state });
        }
        if self.is_moving() {
            return Err(MoveError::Busy);
        }
        if !target_rad.is_finite() {
            return Err(MoveError::TargetNotFinite);
        }
        let supervisor = &self.config.supervisor;
        if target_rad < supervisor.position_rad_min || target_rad > supervisor.position_rad_max {
            return Err(MoveError::OutsideSoftLimits {
                target_rad,
                position_rad_min: supervisor.position_rad_min,
                position_rad_max: supervisor.position_rad_max,
            });
        }
        assert!(t_s.is_finite(), "move start time must be finite, got {t_s}");
        let limits = self.move_limits();
        let start_rad = self.setpoint.position_rad;
        let trajectory = match self.config.profile {
            Profile::Trapezoid => Trajectory::trapezoid(start_rad, target_rad, limits),
            Profile::SCurve => Trajectory::s_curve(start_rad, target_rad, limits),
        };
        self.active_move = Some(ActiveMove {
            trajectory,
            start_t_s: t_s,
        });
        Ok(())
    }

    /// One control period at `t_s` (non-decreasing). `command_link_ok`: a command or heartbeat
    /// from whoever commands this axis arrived this period (feeds the watchdog).
    pub fn step(&mut self, t_s: f64, feedback: &Feedback, command_link_ok: bool) -> AxisCommand {
        assert!(t_s.is_finite(), "control time must be finite, got {t_s}");
        let dt_s = match self.last_t_s {
            Some(last) => {
                assert!(t_s >= last, "control time went backwards: {t_s} < {last}");
                t_s - last
            }
            None => 0.0,
        };
        self.last_t_s = Some(t_s);

        let (_, velocity_estimate) = self.cascade.observe(dt_s, feedback);
        self.setpoint = self.reference(t_s);
        let observation = Observation {
            setpoint: self.setpoint,
            position_rad: feedback.position_rad,
            velocity_rad_per_s: velocity_estimate,
            winding_temperature_c: feedback.winding_temperature_c,
            feedback_valid: feedback.valid,
            command_link_ok,
        };
        if let Some(transition) = self.supervisor.step(t_s, &observation) {
            self.on_transition(transition);
            self.setpoint = self.reference(t_s);
        }

        self.command = if self.supervisor.state().torque_enabled() {
            AxisCommand {
                current_a: self.cascade.control(dt_s, &self.setpoint),
                torque_enabled: true,
            }
        } else {
            self.cascade.idle();
            AxisCommand::OFF
        };
        self.command
    }

    /// Applies a state-machine request; a refused request leaves the state as it was. Use
    /// [`AxisController::try_request`] to learn why.
    pub fn request(&mut self, t_s: f64, req: SafetyRequest) {
        // A refusal is an outcome, not a failure: the state says what happened.
        let _refused = self.try_request(t_s, req);
    }

    /// As [`AxisController::request`], saying why a request was refused.
    pub fn try_request(&mut self, t_s: f64, req: SafetyRequest) -> Result<(), RequestRejected> {
        let setpoint = self.reference(t_s);
        if let Some(transition) = self.supervisor.request(t_s, req, &setpoint)? {
            self.on_transition(transition);
            if !transition.to.torque_enabled() {
                // Torque is off from now on, not only from the next step.
                self.cascade.idle();
                self.command = AxisCommand::OFF;
            }
        }
        Ok(())
    }

    pub fn state(&self) -> DriveState {
        self.supervisor.state()
    }

    /// The reference of the last step.
    pub fn setpoint(&self) -> Setpoint {
        self.setpoint
    }

    pub fn fault(&self) -> Option<Fault> {
        self.supervisor.fault()
    }

    /// A move or an SS1 ramp is in progress.
    pub fn is_moving(&self) -> bool {
        self.active_move.is_some() || self.supervisor.state().is_stopping()
    }

    pub fn sls_active(&self) -> bool {
        self.supervisor.sls_active()
    }

    /// The last state change, for traces.
    pub fn last_transition(&self) -> Option<Transition> {
        self.last_transition
    }

    /// The command of the last step (or `OFF` after a torque-off request).
    pub fn command(&self) -> AxisCommand {
        self.command
    }

    /// The loops' signals of the last step.
    pub fn cascade_terms(&self) -> CascadeTerms {
        self.cascade.terms()
    }

    pub fn config(&self) -> &AxisConfig {
        &self.config
    }

    /// The limits the next move is planned with (reduced under SLS).
    pub fn move_limits(&self) -> TrajectoryLimits {
        let mut limits = self.config.limits;
        if self.supervisor.sls_active() {
            let sls = SLS_PLANNING_FRACTION * self.config.supervisor.safely_limited_speed_rad_per_s;
            limits.velocity_rad_per_s_max = limits.velocity_rad_per_s_max.min(sls);
        }
        limits
    }

    /// The reference at `t_s` for the current state; ends a finished move.
    fn reference(&mut self, t_s: f64) -> Setpoint {
        let state = self.supervisor.state();
        if state.is_stopping() {
            return self
                .supervisor
                .stop_setpoint(t_s)
                .expect("a stopping supervisor has a stop ramp");
        }
        if !state.torque_enabled() {
            return Setpoint::at_rest(self.cascade.terms().position_estimate_rad);
        }
        match self.active_move {
            Some(active) => {
                let elapsed_s = t_s - active.start_t_s;
                if elapsed_s >= active.trajectory.duration_s() {
                    self.active_move = None;
                }
                active.trajectory.sample(elapsed_s)
            }
            None => Setpoint::at_rest(self.setpoint.position_rad),
        }
    }

    fn on_transition(&mut self, transition: Transition) {
        self.last_transition = Some(transition);
        if transition.to != DriveState::OperationEnabled {
            self.active_move = None;
        }
        if transition.to == DriveState::OperationEnabled {
            // Hold where the axis is; the loops start from a clean integrator.
            self.setpoint = Setpoint::at_rest(self.cascade.terms().position_estimate_rad);
            self.cascade.idle();
        }
    }
}
