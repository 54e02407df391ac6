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
//! 4. torque on: the cascade computes the current (following the SS1 ramp while stopping),
//!    from the reference sampled `Cascade::lead_s(dt)` ahead when delay compensation is on;
//!    torque off: the command is zero and `torque_enabled` is false.
//!
//! The supervisor judges the reference at `t_s` against the measured position, and speed
//! (SLS, standstill) on the drive's measured velocity: a safety monitor should not depend on the
//! controller's own model. The observer's estimate stands in only while the feedback is not
//! usable (when the motion monitors are off anyway).
//!
//! Moves are rest-to-rest from the current setpoint; a new move while one runs is refused
//! (`MoveError::Busy`). While SLS is active, moves are planned at `SLS_PLANNING_FRACTION` of the
//! SLS limit so that the estimate's ripple stays below the monitored limit.

use crate::cascade::{
    Cascade, CascadeGains, CascadeTerms, DelayCompensation, Feedback, PlantConstants,
};
use crate::error::{ConfigError, MoveError, RequestRejected};
use crate::supervisor::{
    DriveState, Fault, Observation, SafetyRequest, Supervisor, SupervisorConfig, Transition,
};
use crate::trajectory::{Setpoint, Trajectory, TrajectoryLimits};

/// Under SLS, moves are planned at this fraction of the SLS limit.
pub const SLS_PLANNING_FRACTION: f64 = 0.9;

/// The plausibility monitor allows this multiple of the acceleration the current limit gives
/// the plant (`K_t·I_max/J`): external loads and the load's own inertia are unknown to the
/// controller, and at a 1 kHz sample rate even four times the XM430's is half a count.
pub const PLAUSIBLE_ACCELERATION_FACTOR: f64 = 4.0;

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
    /// the soft position range. Gains from [`CascadeGains::from_plant`] with delay compensation
    /// on (`actuation_delay_s` 0: set the drive's current-loop lag there if known); S-curve
    /// moves; the supervisor's defaults are:
    /// SS1 deceleration = the move acceleration limit, stop time = 1.5 × the ramp from the
    /// velocity limit + 0.1 s, SLS = ¼ of the velocity limit, standstill = 2 % of it,
    /// following error 0.2 rad, command timeout 50 ms, winding 75 °C (5 °C below the XM430's own
    /// 80 °C shutdown), feedback dropout 10 ms; encoder plausibility with a 1 ms feedback
    /// period, a 4096-count encoder (the coarsest of the presets), the XM430's velocity
    /// resolution (0.229 rpm) and `PLAUSIBLE_ACCELERATION_FACTOR` × the acceleration the
    /// current limit gives the bare plant. Adjust the pub fields as needed (the simulator and
    /// the bench set the plausibility fields from their drive and encoder).
    pub fn from_plant(
        plant: PlantConstants,
        velocity_bandwidth_hz: f64,
        limits: TrajectoryLimits,
        position_rad_min: f64,
        position_rad_max: f64,
    ) -> AxisConfig {
        let v_max = limits.velocity_rad_per_s_max;
        let deceleration = limits.acceleration_rad_per_s2_max;
        let gains = CascadeGains {
            delay_compensation: DelayCompensation::Lead {
                actuation_delay_s: 0.0,
            },
            ..CascadeGains::from_plant(&plant, velocity_bandwidth_hz)
        };
        AxisConfig {
            plant,
            gains,
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
                feedback_period_s: 1e-3,
                position_resolution_rad: core::f64::consts::TAU / 4096.0,
                velocity_resolution_rad_per_s: 0.229 * core::f64::consts::TAU / 60.0,
                plausible_acceleration_rad_per_s2_max: PLAUSIBLE_ACCELERATION_FACTOR
                    * plant.torque_constant_nm_per_a
                    * plant.current_a_max
                    / plant.inertia_kg_m2,
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
        let velocity_rad_per_s = if feedback.is_usable() {
            feedback.velocity_rad_per_s
        } else {
            velocity_estimate
        };
        let observation = Observation {
            setpoint: self.setpoint,
            position_rad: feedback.position_rad,
            velocity_rad_per_s,
            winding_temperature_c: feedback.winding_temperature_c,
            feedback_valid: feedback.valid,
            feedback_sample_index: feedback.sample_index,
            command_link_ok,
        };
        if let Some(transition) = self.supervisor.step(t_s, &observation) {
            self.on_transition(transition);
            self.setpoint = self.reference(t_s);
        }

        self.command = if self.supervisor.state().torque_enabled() {
            let ahead = self.reference_ahead(t_s + self.cascade.lead_s(dt_s));
            AxisCommand {
                current_a: self.cascade.control(dt_s, &ahead),
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

    /// The reference at `t_s` (ahead of the last step) for the cascade; changes nothing.
    fn reference_ahead(&self, t_s: f64) -> Setpoint {
        let state = self.supervisor.state();
        if state.is_stopping() {
            return self
                .supervisor
                .stop_setpoint(t_s)
                .expect("a stopping supervisor has a stop ramp");
        }
        match self.active_move {
            Some(active) => active.trajectory.sample(t_s - active.start_t_s),
            None => self.setpoint,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::FaultCode;

    const PLANT: PlantConstants = PlantConstants {
        inertia_kg_m2: 0.03,
        torque_constant_nm_per_a: 1.8,
        viscous_nm_s_per_rad: 0.0,
        coulomb_nm: 0.0,
        current_a_max: 3.0,
    };
    const LIMITS: TrajectoryLimits = TrajectoryLimits {
        velocity_rad_per_s_max: 3.0,
        acceleration_rad_per_s2_max: 20.0,
        jerk_rad_per_s3_max: 200.0,
    };
    const DT_S: f64 = 1e-3;

    fn config() -> AxisConfig {
        AxisConfig::from_plant(PLANT, 8.0, LIMITS, -1.0, 2.0)
    }

    fn at(position_rad: f64) -> Feedback {
        Feedback {
            position_rad,
            velocity_rad_per_s: 0.0,
            current_a: 0.0,
            winding_temperature_c: 30.0,
            valid: true,
            sample_index: 0,
        }
    }

    /// An axis stepped once at `0.3` rad and enabled there.
    fn enabled() -> AxisController {
        let mut axis = AxisController::new(config());
        axis.step(0.0, &at(0.3), true);
        axis.try_request(0.0, SafetyRequest::Enable)
            .expect("enables");
        axis
    }

    /// Steps with feedback that tracks the setpoint exactly, until `t_end_s`.
    fn run_ideal(axis: &mut AxisController, t_s: &mut f64, t_end_s: f64) {
        while *t_s < t_end_s {
            *t_s += DT_S;
            let setpoint = axis.setpoint();
            let feedback = Feedback {
                position_rad: setpoint.position_rad,
                velocity_rad_per_s: setpoint.velocity_rad_per_s,
                ..at(0.0)
            };
            axis.step(*t_s, &feedback, true);
        }
    }

    #[test]
    fn enabling_holds_the_measured_position_without_a_jump() {
        // Goal: after Enable the setpoint is the measured position at rest and the first
        // command asks for (almost) nothing. Method: enable at 0.3 rad, step once there.
        let mut axis = enabled();
        let command = axis.step(DT_S, &at(0.3), true);
        assert_eq!(axis.setpoint(), Setpoint::at_rest(0.3));
        assert!(command.torque_enabled);
        assert!(
            command.current_a.abs() < 1e-9,
            "current {}",
            command.current_a
        );
    }

    #[test]
    fn start_move_refuses_what_it_cannot_do() {
        // Goal: every MoveError: not enabled, busy, non-finite target, outside the soft limits
        // (and exactly on a limit is allowed).
        let mut axis = AxisController::new(config());
        axis.step(0.0, &at(0.0), true);
        assert_eq!(
            axis.start_move(0.0, 1.0),
            Err(MoveError::NotEnabled {
                state: DriveState::SwitchOnDisabled
            })
        );
        let mut axis = enabled();
        assert_eq!(
            axis.start_move(0.0, f64::NAN),
            Err(MoveError::TargetNotFinite)
        );
        assert!(matches!(
            axis.start_move(0.0, 2.0 + 1e-9),
            Err(MoveError::OutsideSoftLimits { .. })
        ));
        assert!(matches!(
            axis.start_move(0.0, -1.0 - 1e-9),
            Err(MoveError::OutsideSoftLimits { .. })
        ));
        assert_eq!(axis.start_move(0.0, 2.0), Ok(()));
        assert_eq!(axis.start_move(0.0, 1.0), Err(MoveError::Busy));
    }

    #[test]
    fn a_move_ends_exactly_on_target_and_stops_moving() {
        // Goal: the setpoint follows the trajectory from the held position and ends exactly on
        // the target; is_moving is true until then. Method: ideal tracking feedback.
        let mut axis = enabled();
        axis.start_move(0.0, 1.3).unwrap();
        let duration_s = Trajectory::s_curve(0.3, 1.3, LIMITS).duration_s();
        let mut t_s = 0.0;
        run_ideal(&mut axis, &mut t_s, duration_s - 2.0 * DT_S);
        assert!(axis.is_moving());
        run_ideal(&mut axis, &mut t_s, duration_s + 2.0 * DT_S);
        assert!(!axis.is_moving());
        assert_eq!(axis.setpoint(), Setpoint::at_rest(1.3));
        assert_eq!(axis.state(), DriveState::OperationEnabled);
    }

    #[test]
    fn sls_plans_moves_below_the_limit() {
        // Goal: under SLS a new move's peak speed is SLS_PLANNING_FRACTION of the SLS limit and
        // the move completes without a fault. Method: ideal tracking through a long move.
        let mut axis = enabled();
        axis.request(0.0, SafetyRequest::LimitSpeed);
        let sls = config().supervisor.safely_limited_speed_rad_per_s;
        assert_eq!(
            axis.move_limits().velocity_rad_per_s_max,
            SLS_PLANNING_FRACTION * sls
        );
        axis.start_move(0.0, 1.9).unwrap();
        let mut t_s = 0.0;
        let mut peak = 0.0_f64;
        while axis.is_moving() {
            let until_s = t_s + DT_S;
            run_ideal(&mut axis, &mut t_s, until_s);
            peak = peak.max(axis.setpoint().velocity_rad_per_s.abs());
        }
        assert!(
            peak <= SLS_PLANNING_FRACTION * sls * (1.0 + 1e-9) && peak > 0.0,
            "peak {peak}"
        );
        assert_eq!(axis.fault(), None);
    }

    #[test]
    fn torque_off_requests_take_effect_in_the_same_call() {
        // Goal: STO and Disable make command() OFF immediately, before the next step, and the
        // next step keeps it off. Method: request mid-move.
        for request in [SafetyRequest::SafeTorqueOff, SafetyRequest::Disable] {
            let mut axis = enabled();
            axis.start_move(0.0, 1.5).unwrap();
            let mut t_s = 0.0;
            run_ideal(&mut axis, &mut t_s, 0.2);
            assert!(axis.command().torque_enabled);
            axis.request(t_s, request);
            assert_eq!(axis.command(), AxisCommand::OFF);
            assert!(!axis.is_moving());
            assert_eq!(axis.step(t_s + DT_S, &at(0.5), true), AxisCommand::OFF);
            assert_eq!(axis.state(), DriveState::SwitchOnDisabled);
        }
    }

    #[test]
    fn lost_link_mid_move_ramps_down_then_faults() {
        // Goal: the watchdog trips after command_timeout_s without link, the SS1 ramp brings the
        // setpoint to rest, and torque goes off in Fault(CommunicationLoss). Method: ideal
        // tracking, link lost mid-move.
        let mut axis = enabled();
        axis.start_move(0.0, 1.9).unwrap();
        let mut t_s = 0.0;
        run_ideal(&mut axis, &mut t_s, 0.3);
        let v_before = axis.setpoint().velocity_rad_per_s;
        assert!(v_before > 1.0);
        let silent_from = t_s;
        let mut tripped_at = None;
        while axis.state() != DriveState::Fault {
            t_s += DT_S;
            assert!(t_s < 2.0, "stopped in time");
            let setpoint = axis.setpoint();
            let feedback = Feedback {
                position_rad: setpoint.position_rad,
                velocity_rad_per_s: setpoint.velocity_rad_per_s,
                ..at(0.0)
            };
            axis.step(t_s, &feedback, false);
            if tripped_at.is_none() && axis.state() == DriveState::FaultReactionActive {
                tripped_at = Some(t_s);
            }
        }
        let tripped_at = tripped_at.expect("went through the fault reaction");
        let timeout = config().supervisor.command_timeout_s;
        assert!(
            tripped_at - silent_from > timeout && tripped_at - silent_from <= timeout + DT_S + 1e-9
        );
        assert_eq!(
            axis.fault().map(|f| f.code),
            Some(FaultCode::CommunicationLoss)
        );
        let stop_s = t_s - tripped_at;
        let ramp_s = v_before / config().supervisor.stop_deceleration_rad_per_s2;
        assert!(
            stop_s <= ramp_s + 2.0 * DT_S + 1e-9,
            "stopped after {stop_s} s, ramp {ramp_s} s"
        );
        assert_eq!(axis.command(), AxisCommand::OFF);
    }
}
