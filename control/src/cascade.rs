//! The cascaded position/velocity loops that turn a setpoint and feedback into a current command.
//!
//! Owns: the position P loop with velocity feedforward, the velocity PI loop with anti-windup,
//! the acceleration/friction feedforward, the current clamp, and the velocity estimate the loops
//! use. Does not own: the current loop (the drive closes it, in the plant model or in the servo),
//! limits other than the current limit, or any safety decision (`supervisor`).
//!
//! ```text
//!  p_ref ─►(+)─► Kpp ─►(+)─► v_cmd ─►(+)─► Kpv + PI ─►(+)─► clamp ±I_max ─► i_cmd
//!           ▲−            ▲ kv·v_ref    ▲−                ▲ ka·(J·a_ref + b·v_ref + Tc·sgn v_ref)/Kt
//!        p_est                        v_est
//! ```
//!
//! **Anti-windup: conditional integration** (the default, [`AntiWindup::ConditionalIntegration`]).
//! The integrator (kept in amperes) does not integrate while the output is clamped and the
//! velocity error would drive it further into the clamp; it resumes as soon as the error turns
//! or the output leaves the clamp. So after a long saturation (a blocked axis, a move at the
//! current limit) the integrator still holds its value from before the saturation, and the
//! output leaves the clamp before the velocity reaches its command instead of overshooting while
//! an integrator unwinds. [`AntiWindup::BackCalculation`] is available for hand tuning: it
//! integrates `Ki·e_v + (i_sat − i_unsat)/T_t` (step `dt/T_t` capped at 1). Either way the
//! integrator is also bounded to `±current_a_max`.
//!
//! **Velocity estimate.** A quantised encoder differentiated at 1 kHz is too coarse for a velocity
//! loop (4096 counts/rev gives 1.5 rad/s steps). With `VelocityEstimate::Observer` the cascade
//! runs a third-order Luenberger observer on the measured position, driven by the model
//! `J·θ̈ = Kt·i_cmd − b·θ̇ + d` with the disturbance `d` (friction, load) as a third state. It is
//! discrete: each period it predicts with the exact zero-order-hold solution for the last
//! command, then corrects with the new measurement (current-estimator form), with gains that put
//! the three error poles at `z0 = exp(−ω_o·dt)`: `l1 = 1 − z0³`, `l2 = 3(1 − z0)²(1 + z0)/(2dt)`,
//! `l3 = (1 − z0)³/dt²`. Stable at every step length; while `Feedback::valid` is false it
//! predicts without correcting. `VelocityEstimate::Measured` uses `Feedback::velocity_rad_per_s` as is.
//!
//! **Delay compensation** ([`DelayCompensation::Lead`]; off in `CascadeGains::from_plant`, on in
//! `AxisConfig::from_plant`). A current command computed from feedback sampled at `t` is held
//! over `[t, t + dt]` and the drive's current loop follows it with a lag, so its effect is
//! centred about `L = dt/2 + actuation_delay_s` after the sample; uncompensated, that lag shows
//! up as following error growing with `v·L`. With `Lead`, the loops compare the reference at
//! `t + L` (the caller samples it there; [`Cascade::lead_s`]) with the estimate predicted to
//! `t + L` by the observer's model (`p + v·L + α·L²/2`, `v + α·L`, `α` the acceleration of the
//! last command plus the estimated disturbance), and the acceleration feedforward uses the
//! reference acceleration at `t + L`. Measured on the sgmp-02b 90° test move at 1 kHz (peak
//! 67 rad/s): worst following error 26 → 24 mrad and settling after the trajectory 8 ms → 0;
//! the rest of that error is the model mismatch the integrator works off (the plant accelerates
//! about 1/η faster per ampere than `J` and `Kt·N·η` predict, see `tests/control/closed_loop.rs`).
//! It matters more where the delay is larger (a bus round trip on the HIL rig).
//!
//! **Gains from the plant** (`CascadeGains::from_plant`, after the rules in
//! servo-and-dynamixel.md §2): `Kpv = J·ω_v/Kt`, `T_i = 4/ω_v`, `Kpp = ω_v/4`, observer at
//! `4·f_v`, full velocity and acceleration feedforward. The caller picks a velocity bandwidth
//! well below the control rate (at most a tenth of it).

use libm::fabs;

use crate::trajectory::Setpoint;

/// Plant constants at the output shaft, as the controller sees them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlantConstants {
    pub inertia_kg_m2: f64,
    pub torque_constant_nm_per_a: f64,
    pub viscous_nm_s_per_rad: f64,
    pub coulomb_nm: f64,
    pub current_a_max: f64,
}

impl PlantConstants {
    /// True when inertia, torque constant and current limit are finite and > 0 and friction is
    /// finite and >= 0.
    pub fn is_valid(&self) -> bool {
        let positive = [
            self.inertia_kg_m2,
            self.torque_constant_nm_per_a,
            self.current_a_max,
        ];
        let non_negative = [self.viscous_nm_s_per_rad, self.coulomb_nm];
        positive.iter().all(|x| x.is_finite() && *x > 0.0)
            && non_negative.iter().all(|x| x.is_finite() && *x >= 0.0)
    }
}

/// Where the velocity loop gets its velocity from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum VelocityEstimate {
    /// `Feedback::velocity_rad_per_s` as measured.
    Measured,
    /// Luenberger observer on the measured position (see the module docs).
    Observer { bandwidth_hz: f64 },
}

/// How the velocity integrator is kept from winding up while the current is clamped.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AntiWindup {
    /// Integrate only when the clamp is not active in the direction of the error.
    ConditionalIntegration,
    /// Back-calculation with tracking time constant `T_t` (typically `T_i/4 … T_i`).
    BackCalculation { tracking_time_s: f64 },
}

/// Whether the loops look ahead over the command's own delay (module docs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DelayCompensation {
    /// The reference passed in is for the feedback's instant.
    Off,
    /// The reference passed in is for `t + dt/2 + actuation_delay_s`: the half-period hold plus
    /// the drive's current-loop lag (`1/(2π·f_current)`) and any transport delay.
    Lead { actuation_delay_s: f64 },
}

/// Loop gains. Derive them with [`CascadeGains::from_plant`] or set the fields by hand.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CascadeGains {
    /// Position P gain: rad/s of velocity command per rad of position error.
    pub position_kp_per_s: f64,
    /// Velocity P gain: A per rad/s of velocity error.
    pub velocity_kp_a_s_per_rad: f64,
    /// Velocity I gain: A per rad of integrated velocity error (A per (rad/s)·s).
    pub velocity_ki_a_per_rad: f64,
    pub anti_windup: AntiWindup,
    /// Fraction (0..=1) of the setpoint velocity fed forward into the velocity command.
    pub velocity_feedforward: f64,
    /// Fraction (0..=1) of `(J·a_ref + friction(v_ref))/Kt` fed forward into the current.
    pub acceleration_feedforward: f64,
    pub velocity_estimate: VelocityEstimate,
    pub delay_compensation: DelayCompensation,
}

impl CascadeGains {
    /// Gains for a velocity-loop bandwidth `velocity_bandwidth_hz` (see the module docs).
    pub fn from_plant(plant: &PlantConstants, velocity_bandwidth_hz: f64) -> CascadeGains {
        assert!(plant.is_valid(), "plant constants must be valid: {plant:?}");
        assert!(
            velocity_bandwidth_hz.is_finite() && velocity_bandwidth_hz > 0.0,
            "velocity bandwidth must be finite and > 0, got {velocity_bandwidth_hz}"
        );
        let omega_v = 2.0 * core::f64::consts::PI * velocity_bandwidth_hz;
        let velocity_kp = plant.inertia_kg_m2 * omega_v / plant.torque_constant_nm_per_a;
        let integral_time_s = 4.0 / omega_v;
        CascadeGains {
            position_kp_per_s: omega_v / 4.0,
            velocity_kp_a_s_per_rad: velocity_kp,
            velocity_ki_a_per_rad: velocity_kp / integral_time_s,
            anti_windup: AntiWindup::ConditionalIntegration,
            velocity_feedforward: 1.0,
            acceleration_feedforward: 1.0,
            velocity_estimate: VelocityEstimate::Observer {
                bandwidth_hz: OBSERVER_BANDWIDTH_RATIO * velocity_bandwidth_hz,
            },
            delay_compensation: DelayCompensation::Off,
        }
    }

    /// True when every gain is finite and has a sensible sign.
    pub fn is_valid(&self) -> bool {
        let non_negative = [
            self.position_kp_per_s,
            self.velocity_kp_a_s_per_rad,
            self.velocity_ki_a_per_rad,
        ];
        let observer_ok = match self.velocity_estimate {
            VelocityEstimate::Measured => true,
            VelocityEstimate::Observer { bandwidth_hz } => {
                bandwidth_hz.is_finite() && bandwidth_hz > 0.0
            }
        };
        let anti_windup_ok = match self.anti_windup {
            AntiWindup::ConditionalIntegration => true,
            AntiWindup::BackCalculation { tracking_time_s } => {
                tracking_time_s.is_finite() && tracking_time_s > 0.0
            }
        };
        let delay_ok = match self.delay_compensation {
            DelayCompensation::Off => true,
            DelayCompensation::Lead { actuation_delay_s } => {
                actuation_delay_s.is_finite() && actuation_delay_s >= 0.0
            }
        };
        non_negative.iter().all(|x| x.is_finite() && *x >= 0.0)
            && anti_windup_ok
            && delay_ok
            && (0.0..=1.0).contains(&self.velocity_feedforward)
            && (0.0..=1.0).contains(&self.acceleration_feedforward)
            && observer_ok
    }
}

/// Observer bandwidth as a multiple of the velocity-loop bandwidth in `from_plant`.
const OBSERVER_BANDWIDTH_RATIO: f64 = 4.0;

/// What a drive reports about its axis, at the output shaft.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Feedback {
    pub position_rad: f64,
    pub velocity_rad_per_s: f64,
    pub current_a: f64,
    pub winding_temperature_c: f64,
    /// False while the encoder reports nothing usable (dropout).
    pub valid: bool,
    /// The drive's sample counter (wrapping): the same value again is the same sample held
    /// by the caller; a gap of `n` is `n` sample periods (the supervisor's encoder
    /// plausibility monitor needs to know when a sample was taken).
    pub sample_index: u32,
}

impl Feedback {
    /// Valid and with finite position and velocity: usable by the loops.
    pub fn is_usable(&self) -> bool {
        self.valid && self.position_rad.is_finite() && self.velocity_rad_per_s.is_finite()
    }
}

/// The loops' internal signals after the last step, for reports and plots.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct CascadeTerms {
    pub position_estimate_rad: f64,
    pub velocity_estimate_rad_per_s: f64,
    pub velocity_command_rad_per_s: f64,
    pub integral_a: f64,
    pub feedforward_a: f64,
    /// Before the clamp.
    pub current_unclamped_a: f64,
    /// After the clamp: what `step` returned.
    pub current_a: f64,
}

/// Position estimate, velocity estimate and disturbance estimate (as an acceleration).
#[derive(Clone, Copy, Debug, PartialEq)]
struct ObserverState {
    position_rad: f64,
    velocity_rad_per_s: f64,
    disturbance_rad_per_s2: f64,
}

/// The observer's correction gains for one step length (module docs).
#[derive(Clone, Copy, Debug, PartialEq)]
struct ObserverGains {
    dt_s: f64,
    l1: f64,
    l2: f64,
    l3: f64,
}

impl ObserverGains {
    fn new(dt_s: f64, bandwidth_hz: f64) -> ObserverGains {
        let z0 = libm::exp(-2.0 * core::f64::consts::PI * bandwidth_hz * dt_s);
        let one_minus = 1.0 - z0;
        ObserverGains {
            dt_s,
            l1: 1.0 - z0 * z0 * z0,
            l2: 1.5 * one_minus * one_minus * (1.0 + z0) / dt_s,
            l3: one_minus * one_minus * one_minus / (dt_s * dt_s),
        }
    }
}

/// Cascaded position/velocity controller for one axis.
#[derive(Clone, Debug)]
pub struct Cascade {
    gains: CascadeGains,
    plant: PlantConstants,
    integral_a: f64,
    /// Last current command, the observer's model input.
    current_command_a: f64,
    observer: Option<ObserverState>,
    /// Correction gains for the last step length (recomputed only when `dt` changes).
    observer_gains: Option<ObserverGains>,
    terms: CascadeTerms,
}

impl Cascade {
    pub fn new(gains: CascadeGains, plant: PlantConstants) -> Cascade {
        assert!(gains.is_valid(), "cascade gains must be valid: {gains:?}");
        assert!(plant.is_valid(), "plant constants must be valid: {plant:?}");
        Cascade {
            gains,
            plant,
            integral_a: 0.0,
            current_command_a: 0.0,
            observer: None,
            observer_gains: None,
            terms: CascadeTerms::default(),
        }
    }

    pub fn gains(&self) -> &CascadeGains {
        &self.gains
    }

    pub fn plant(&self) -> &PlantConstants {
        &self.plant
    }

    /// How far after the feedback's instant the reference passed to `step` must be taken:
    /// 0 without delay compensation, `dt/2 + actuation_delay_s` with it.
    pub fn lead_s(&self, dt_s: f64) -> f64 {
        match self.gains.delay_compensation {
            DelayCompensation::Off => 0.0,
            DelayCompensation::Lead { actuation_delay_s } => 0.5 * dt_s + actuation_delay_s,
        }
    }

    /// One control period: returns the current command in A, within `±current_a_max`.
    /// `setpoint` is the reference at the feedback's instant plus [`Cascade::lead_s`].
    pub fn step(&mut self, dt_s: f64, feedback: &Feedback, setpoint: &Setpoint) -> f64 {
        self.observe(dt_s, feedback);
        self.control(dt_s, setpoint)
    }

    /// Forgets the integrator, the observer and the last command (after torque off).
    pub fn reset(&mut self) {
        self.integral_a = 0.0;
        self.current_command_a = 0.0;
        self.observer = None;
        self.terms = CascadeTerms::default();
    }

    /// The loops' signals after the last step.
    pub fn terms(&self) -> CascadeTerms {
        self.terms
    }

    /// Updates the position and velocity estimate from the feedback; returns them.
    pub(crate) fn observe(&mut self, dt_s: f64, feedback: &Feedback) -> (f64, f64) {
        assert!(
            dt_s.is_finite() && dt_s >= 0.0,
            "control step must be finite and >= 0, got {dt_s}"
        );
        let usable = feedback.is_usable();
        let (position_rad, velocity_rad_per_s) = match self.gains.velocity_estimate {
            VelocityEstimate::Measured => {
                if usable {
                    (feedback.position_rad, feedback.velocity_rad_per_s)
                } else {
                    // Hold the last estimate: nothing better is known.
                    (
                        self.terms.position_estimate_rad,
                        self.terms.velocity_estimate_rad_per_s,
                    )
                }
            }
            VelocityEstimate::Observer { bandwidth_hz } => {
                let state = self.observe_with_model(dt_s, feedback, usable, bandwidth_hz);
                (state.position_rad, state.velocity_rad_per_s)
            }
        };
        self.terms.position_estimate_rad = position_rad;
        self.terms.velocity_estimate_rad_per_s = velocity_rad_per_s;
        (position_rad, velocity_rad_per_s)
    }

    fn observe_with_model(
        &mut self,
        dt_s: f64,
        feedback: &Feedback,
        usable: bool,
        bandwidth_hz: f64,
    ) -> ObserverState {
        let Some(state) = self.observer else {
            if !usable {
                // No usable measurement yet: nothing to estimate from.
                return ObserverState {
                    position_rad: self.terms.position_estimate_rad,
                    velocity_rad_per_s: 0.0,
                    disturbance_rad_per_s2: 0.0,
                };
            }
            let state = ObserverState {
                position_rad: feedback.position_rad,
                velocity_rad_per_s: feedback.velocity_rad_per_s,
                disturbance_rad_per_s2: 0.0,
            };
            self.observer = Some(state);
            return state;
        };
        if dt_s == 0.0 {
            return state;
        }
        // Predict over the period with the exact zero-order-hold model of the last command.
        let t = dt_s;
        let acceleration = self.model_acceleration_rad_per_s2(state.velocity_rad_per_s)
            + state.disturbance_rad_per_s2;
        let mut next = ObserverState {
            position_rad: state.position_rad
                + t * state.velocity_rad_per_s
                + 0.5 * t * t * acceleration,
            velocity_rad_per_s: state.velocity_rad_per_s + t * acceleration,
            disturbance_rad_per_s2: state.disturbance_rad_per_s2,
        };
        if usable {
            // Correct with this period's measurement; error poles at z0 = exp(−ω_o·dt), triple.
            let gains = match self.observer_gains {
                // Steps made from float times differ in their last bits: reuse within 1 ppb.
                Some(gains) if (gains.dt_s - t).abs() <= 1e-9 * t => gains,
                _ => ObserverGains::new(t, bandwidth_hz),
            };
            self.observer_gains = Some(gains);
            let ObserverGains { l1, l2, l3, .. } = gains;
            let error_rad = feedback.position_rad - next.position_rad;
            next.position_rad += l1 * error_rad;
            next.velocity_rad_per_s += l2 * error_rad;
            next.disturbance_rad_per_s2 += l3 * error_rad;
        }
        self.observer = Some(next);
        next
    }

    /// Acceleration the model expects from the last command at `velocity_rad_per_s`.
    fn model_acceleration_rad_per_s2(&self, velocity_rad_per_s: f64) -> f64 {
        (self.plant.torque_constant_nm_per_a * self.current_command_a
            - self.plant.viscous_nm_s_per_rad * velocity_rad_per_s)
            / self.plant.inertia_kg_m2
    }

    /// Position and velocity loops on the current estimate; returns the clamped current.
    pub(crate) fn control(&mut self, dt_s: f64, setpoint: &Setpoint) -> f64 {
        let g = self.gains;
        let plant = self.plant;
        // The estimate predicted to the reference's instant (module docs, delay compensation).
        let lead_s = self.lead_s(dt_s);
        let acceleration_rad_per_s2 = self.acceleration_estimate_rad_per_s2();
        let position_rad =
            self.terms.position_estimate_rad + lead_s * self.terms.velocity_estimate_rad_per_s;
        let velocity_rad_per_s =
            self.terms.velocity_estimate_rad_per_s + lead_s * acceleration_rad_per_s2;
        let position_error_rad = setpoint.position_rad - position_rad;
        let velocity_command = g.velocity_feedforward * setpoint.velocity_rad_per_s
            + g.position_kp_per_s * position_error_rad;
        let velocity_error = velocity_command - velocity_rad_per_s;

        let friction_nm = plant.viscous_nm_s_per_rad * setpoint.velocity_rad_per_s
            + plant.coulomb_nm * sign(setpoint.velocity_rad_per_s);
        let feedforward_a = g.acceleration_feedforward
            * (plant.inertia_kg_m2 * setpoint.acceleration_rad_per_s2 + friction_nm)
            / plant.torque_constant_nm_per_a;

        let current_max = plant.current_a_max;
        let unclamped =
            g.velocity_kp_a_s_per_rad * velocity_error + self.integral_a + feedforward_a;
        let clamped = if unclamped.is_nan() {
            0.0
        } else {
            unclamped.clamp(-current_max, current_max)
        };

        // Anti-windup (module docs).
        let integrate = dt_s * g.velocity_ki_a_per_rad * velocity_error;
        let integral = match g.anti_windup {
            AntiWindup::ConditionalIntegration => {
                let pushing_further = (unclamped > clamped && velocity_error > 0.0)
                    || (unclamped < clamped && velocity_error < 0.0);
                if pushing_further {
                    self.integral_a
                } else {
                    self.integral_a + integrate
                }
            }
            AntiWindup::BackCalculation { tracking_time_s } => {
                let tracking = (dt_s / tracking_time_s).min(1.0);
                self.integral_a + integrate + tracking * (clamped - unclamped)
            }
        };
        self.integral_a = if integral.is_finite() {
            integral.clamp(-current_max, current_max)
        } else {
            0.0
        };

        assert!(
            fabs(clamped) <= current_max,
            "current command {clamped} A outside ±{current_max} A"
        );
        self.current_command_a = clamped;
        self.terms.velocity_command_rad_per_s = velocity_command;
        self.terms.integral_a = self.integral_a;
        self.terms.feedforward_a = feedforward_a;
        self.terms.current_unclamped_a = unclamped;
        self.terms.current_a = clamped;
        clamped
    }

    /// The acceleration the last command produces: the observer's model plus its disturbance
    /// estimate, or the bare model without an observer.
    fn acceleration_estimate_rad_per_s2(&self) -> f64 {
        let disturbance = self.observer.map_or(0.0, |o| o.disturbance_rad_per_s2);
        self.model_acceleration_rad_per_s2(self.terms.velocity_estimate_rad_per_s) + disturbance
    }

    /// Torque is off: the command is zero and the integrator empties, but the observer keeps
    /// tracking the (coasting) axis so the estimate is current when torque comes back.
    pub(crate) fn idle(&mut self) {
        self.integral_a = 0.0;
        self.current_command_a = 0.0;
        self.terms.integral_a = 0.0;
        self.terms.feedforward_a = 0.0;
        self.terms.velocity_command_rad_per_s = 0.0;
        self.terms.current_unclamped_a = 0.0;
        self.terms.current_a = 0.0;
    }
}

/// Sign with `sign(0) = 0`, so that a setpoint at rest asks for no Coulomb feedforward.
fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLANT: PlantConstants = PlantConstants {
        inertia_kg_m2: 0.01,
        torque_constant_nm_per_a: 1.0,
        viscous_nm_s_per_rad: 0.0,
        coulomb_nm: 0.0,
        current_a_max: 2.0,
    };

    fn feedback(position_rad: f64, velocity_rad_per_s: f64) -> Feedback {
        Feedback {
            position_rad,
            velocity_rad_per_s,
            current_a: 0.0,
            winding_temperature_c: 25.0,
            valid: true,
            sample_index: 0,
        }
    }

    #[test]
    fn from_plant_follows_the_tuning_rules() {
        // Goal: from_plant gives Kpv = J·ω/Kt, Ti = 4/ω, Kpp = ω/4. Method: 10 Hz on PLANT.
        let g = CascadeGains::from_plant(&PLANT, 10.0);
        let omega = 2.0 * core::f64::consts::PI * 10.0;
        assert!((g.velocity_kp_a_s_per_rad - 0.01 * omega).abs() < 1e-12);
        assert!((g.velocity_kp_a_s_per_rad / g.velocity_ki_a_per_rad - 4.0 / omega).abs() < 1e-12);
        assert!((g.position_kp_per_s - omega / 4.0).abs() < 1e-12);
        assert!(g.is_valid());
    }

    /// Velocity step response of the velocity loop alone on a frictionless inertia at 1 kHz
    /// (exact integration) to a step of `step_rad_per_s`; returns the relative overshoot and
    /// the integrator at the end of the saturation.
    fn velocity_step(anti_windup: AntiWindup, step_rad_per_s: f64) -> (f64, f64) {
        let mut gains = CascadeGains::from_plant(&PLANT, 20.0);
        gains.velocity_estimate = VelocityEstimate::Measured;
        gains.position_kp_per_s = 0.0;
        gains.anti_windup = anti_windup;
        let mut cascade = Cascade::new(gains, PLANT);
        let command = Setpoint {
            position_rad: 0.0,
            velocity_rad_per_s: step_rad_per_s,
            acceleration_rad_per_s2: 0.0,
        };
        let (mut position, mut velocity, mut peak, mut integral_saturated) = (0.0, 0.0, 0.0, 0.0);
        for _ in 0..1000 {
            let i = cascade.step(1e-3, &feedback(position, velocity), &command);
            assert!(i.abs() <= PLANT.current_a_max);
            if i == PLANT.current_a_max {
                integral_saturated = cascade.terms().integral_a;
            }
            let acceleration = PLANT.torque_constant_nm_per_a * i / PLANT.inertia_kg_m2;
            position += velocity * 1e-3 + 0.5 * acceleration * 1e-6;
            velocity += acceleration * 1e-3;
            peak = f64::max(peak, velocity);
        }
        let settled = (velocity - step_rad_per_s).abs() / step_rad_per_s;
        assert!(settled < 1e-3, "settles on the command, got {velocity}");
        (peak / step_rad_per_s - 1.0, integral_saturated)
    }

    /// A step that holds the current at its 2 A clamp for about 0.1 s.
    const SATURATING_STEP_RAD_PER_S: f64 = 20.0;

    #[test]
    fn conditional_integration_prevents_windup_overshoot() {
        // Goal: with conditional integration the integrator is frozen while the current is
        // clamped, so after a long saturation the speed overshoots less than a third of what a
        // wound-up integrator gives (back-calculation with T_t = 1e6 s, i.e. off; it still has
        // the ±I_max bound), and under 2 %. Method: relative overshoot of a 20 rad/s step
        // (0.1 s at the clamp), same loop and plant, only the anti-windup differs.
        let (overshoot, integral) = velocity_step(
            AntiWindup::ConditionalIntegration,
            SATURATING_STEP_RAD_PER_S,
        );
        assert_eq!(
            integral, 0.0,
            "integrator frozen while pushing into the clamp"
        );
        let off = AntiWindup::BackCalculation {
            tracking_time_s: 1e6,
        };
        let (wound, integral_wound) = velocity_step(off, SATURATING_STEP_RAD_PER_S);
        assert!(
            integral_wound > 1.0,
            "the control case does wind up: {integral_wound}"
        );
        assert!(overshoot < 0.02, "overshoot {overshoot}");
        assert!(
            overshoot < wound / 3.0,
            "conditional {overshoot} vs wound up {wound}"
        );
    }

    #[test]
    fn back_calculation_limits_windup() {
        // Goal: back-calculation (T_t = T_i/4) overshoots less than no anti-windup after a
        // saturation. Method: as above, relative overshoot of the saturating step.
        let integral_time_s = 4.0 / (2.0 * core::f64::consts::PI * 20.0);
        let back_calculation = AntiWindup::BackCalculation {
            tracking_time_s: integral_time_s / 4.0,
        };
        let (overshoot, _) = velocity_step(back_calculation, SATURATING_STEP_RAD_PER_S);
        let off = AntiWindup::BackCalculation {
            tracking_time_s: 1e6,
        };
        let (wound, _) = velocity_step(off, SATURATING_STEP_RAD_PER_S);
        assert!(
            overshoot < wound - 0.01,
            "back-calculation {overshoot} vs none {wound}"
        );
    }

    #[test]
    fn acceleration_feedforward_is_j_a_over_kt() {
        // Goal: at zero error the command is exactly the feedforward (J·a + Tc)/Kt.
        let plant = PlantConstants {
            coulomb_nm: 0.1,
            ..PLANT
        };
        let mut gains = CascadeGains::from_plant(&plant, 20.0);
        gains.velocity_estimate = VelocityEstimate::Measured;
        let mut cascade = Cascade::new(gains, plant);
        let setpoint = Setpoint {
            position_rad: 0.0,
            velocity_rad_per_s: 0.5,
            acceleration_rad_per_s2: 30.0,
        };
        let i = cascade.step(0.0, &feedback(0.0, 0.5), &setpoint);
        assert!((i - (0.01 * 30.0 + 0.1)).abs() < 1e-12, "i = {i}");
    }

    #[test]
    fn observer_converges_to_a_ramp() {
        // Goal: the observer's velocity converges on a constant-velocity axis seen through a
        // 4096-count encoder, with bounded quantisation ripple. Method: 1 rad/s, 1 kHz, 1 s;
        // the mean over the last 0.5 s within 1 %, every sample within 0.5 rad/s.
        let gains = CascadeGains::from_plant(&PLANT, 10.0);
        let mut cascade = Cascade::new(gains, PLANT);
        let counts_per_rad = 4096.0 / (2.0 * core::f64::consts::PI);
        let (mut sum, mut worst) = (0.0, 0.0_f64);
        for k in 0..1000 {
            let position = libm::floor(k as f64 * 1e-3 * counts_per_rad) / counts_per_rad;
            let (_, velocity) = cascade.observe(1e-3, &feedback(position, 0.0));
            if k >= 500 {
                sum += velocity;
                worst = worst.max((velocity - 1.0).abs());
            }
        }
        let mean = sum / 500.0;
        assert!((mean - 1.0).abs() < 0.01, "mean velocity estimate {mean}");
        assert!(worst < 0.5, "worst ripple {worst}");
    }
}
