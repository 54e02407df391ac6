//! Point-to-point trajectories: rest-to-rest moves with a trapezoidal or a jerk-limited
//! (7-segment S-curve) velocity profile, and the constant-deceleration stop ramp that SS1 uses.
//!
//! Owns: the profile arithmetic (segment times in closed form) and sampling a profile at a time.
//! Does not own: when a move starts, which limits apply (the `axis` module decides, e.g. under
//! SLS), or following the profile (the `cascade`).
//!
//! Invariants (checked by property tests in `tests/control.rs`):
//! - `|velocity| <= velocity_rad_per_s_max`, `|acceleration| <= acceleration_rad_per_s2_max` and,
//!   for the S-curve, the jerk between any two samples `<= jerk_rad_per_s3_max`, up to float
//!   rounding. The trapezoid ignores the jerk limit (its acceleration steps).
//! - `sample(t)` is exactly the start before `t = 0` and exactly the target at and after
//!   `duration_s()`; the position is monotonic (no overshoot).
//! - The duration is the closed-form minimum time for the profile:
//!   trapezoid `T = D/v + v/a` (cruise) or `T = 2·sqrt(D/a)` when `D < v²/a` (triangle);
//!   S-curve `T = D/v + v/a + a/j` when both limits are reached, `T = D/v + 2·sqrt(v/j)` when
//!   `v` is reached but not `a` (`v·j < a²`), `T = a/j + sqrt((a/j)² + 4D/a)` when `a` is reached
//!   but not `v`, and `T = 4·cbrt(D/(2j))` when neither is.
//!
//! Moves are symmetric (the deceleration mirrors the acceleration), computed in the positive
//! direction on the distance `D = |target - start|` and mapped back with the sign of the move.

use libm::{cbrt, sqrt};

/// Limits a profile never exceeds. All must be finite and strictly positive.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrajectoryLimits {
    pub velocity_rad_per_s_max: f64,
    pub acceleration_rad_per_s2_max: f64,
    /// Used by the S-curve only.
    pub jerk_rad_per_s3_max: f64,
}

impl TrajectoryLimits {
    /// True when every limit is finite and strictly positive.
    pub fn is_valid(&self) -> bool {
        [
            self.velocity_rad_per_s_max,
            self.acceleration_rad_per_s2_max,
            self.jerk_rad_per_s3_max,
        ]
        .iter()
        .all(|limit| limit.is_finite() && *limit > 0.0)
    }

    fn assert_valid(&self) {
        assert!(
            self.is_valid(),
            "trajectory limits must be finite and > 0, got {self:?}"
        );
    }
}

/// Reference for the cascade at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Setpoint {
    pub position_rad: f64,
    pub velocity_rad_per_s: f64,
    pub acceleration_rad_per_s2: f64,
}

impl Setpoint {
    /// Standing still at `position_rad`.
    pub const fn at_rest(position_rad: f64) -> Setpoint {
        Setpoint {
            position_rad,
            velocity_rad_per_s: 0.0,
            acceleration_rad_per_s2: 0.0,
        }
    }
}

/// A rest-to-rest move from a start to a target position.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Trajectory {
    Trapezoid(Trapezoid),
    SCurve(SCurve),
}

impl Trajectory {
    /// Time-optimal trapezoidal (or triangular) profile. Ignores `jerk_rad_per_s3_max`.
    pub fn trapezoid(start_rad: f64, target_rad: f64, limits: TrajectoryLimits) -> Trajectory {
        Trajectory::Trapezoid(Trapezoid::new(start_rad, target_rad, limits))
    }

    /// Time-optimal symmetric 7-segment jerk-limited profile.
    pub fn s_curve(start_rad: f64, target_rad: f64, limits: TrajectoryLimits) -> Trajectory {
        Trajectory::SCurve(SCurve::new(start_rad, target_rad, limits))
    }

    pub fn duration_s(&self) -> f64 {
        match self {
            Trajectory::Trapezoid(profile) => profile.duration_s(),
            Trajectory::SCurve(profile) => profile.duration_s(),
        }
    }

    /// The setpoint at `t_s` after the start; clamped to the start before 0 and exactly the
    /// target (at rest) at and after the end.
    pub fn sample(&self, t_s: f64) -> Setpoint {
        let shape = match self {
            Trajectory::Trapezoid(profile) => &profile.shape,
            Trajectory::SCurve(profile) => &profile.shape,
        };
        if t_s.is_nan() || t_s <= 0.0 {
            return Setpoint::at_rest(shape.start_rad);
        }
        if t_s >= self.duration_s() {
            return Setpoint::at_rest(shape.target_rad);
        }
        let (p, v, a) = match self {
            Trajectory::Trapezoid(profile) => profile.sample_forward(t_s),
            Trajectory::SCurve(profile) => profile.sample_forward(t_s),
        };
        shape.map(p, v, a)
    }

    pub fn start_rad(&self) -> f64 {
        self.shape().start_rad
    }

    pub fn target_rad(&self) -> f64 {
        self.shape().target_rad
    }

    /// Largest speed the profile reaches (`<= velocity_rad_per_s_max`).
    pub fn velocity_rad_per_s_peak(&self) -> f64 {
        match self {
            Trajectory::Trapezoid(profile) => profile.velocity_rad_per_s_peak,
            Trajectory::SCurve(profile) => profile.velocity_rad_per_s_peak,
        }
    }

    /// Largest acceleration the profile reaches (`<= acceleration_rad_per_s2_max`).
    pub fn acceleration_rad_per_s2_peak(&self) -> f64 {
        match self {
            Trajectory::Trapezoid(profile) => profile.acceleration_rad_per_s2,
            Trajectory::SCurve(profile) => profile.acceleration_rad_per_s2_peak,
        }
    }

    fn shape(&self) -> &Shape {
        match self {
            Trajectory::Trapezoid(profile) => &profile.shape,
            Trajectory::SCurve(profile) => &profile.shape,
        }
    }
}

/// Where a move goes, independent of its profile.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Shape {
    start_rad: f64,
    target_rad: f64,
    /// +1 or -1.
    direction: f64,
    /// `|target - start|`, the distance the profile covers in the positive direction.
    distance_rad: f64,
}

impl Shape {
    fn new(start_rad: f64, target_rad: f64) -> Shape {
        assert!(
            start_rad.is_finite() && target_rad.is_finite(),
            "trajectory endpoints must be finite: start {start_rad}, target {target_rad}"
        );
        let direction = if target_rad >= start_rad { 1.0 } else { -1.0 };
        Shape {
            start_rad,
            target_rad,
            direction,
            distance_rad: (target_rad - start_rad).abs(),
        }
    }

    /// Maps a positive-direction sample (distance covered, speed, acceleration) to a setpoint.
    fn map(&self, p: f64, v: f64, a: f64) -> Setpoint {
        Setpoint {
            position_rad: self.start_rad + self.direction * p,
            velocity_rad_per_s: self.direction * v,
            acceleration_rad_per_s2: self.direction * a,
        }
    }
}

/// Trapezoidal velocity profile: constant acceleration, cruise, constant deceleration. Becomes a
/// triangle when the distance is too short to reach the velocity limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Trapezoid {
    shape: Shape,
    velocity_rad_per_s_peak: f64,
    acceleration_rad_per_s2: f64,
    acceleration_time_s: f64,
    cruise_time_s: f64,
}

impl Trapezoid {
    fn new(start_rad: f64, target_rad: f64, limits: TrajectoryLimits) -> Trapezoid {
        limits.assert_valid();
        let shape = Shape::new(start_rad, target_rad);
        let d = shape.distance_rad;
        let v = limits.velocity_rad_per_s_max;
        let a = limits.acceleration_rad_per_s2_max;
        let (velocity_peak, acceleration_time_s, cruise_time_s) = if d >= v * v / a {
            (v, v / a, (d - v * v / a) / v)
        } else {
            // Triangle: accelerate to the midpoint, decelerate from it.
            let t_acc = sqrt(d / a);
            (a * t_acc, t_acc, 0.0)
        };
        Trapezoid {
            shape,
            velocity_rad_per_s_peak: velocity_peak,
            acceleration_rad_per_s2: if d > 0.0 { a } else { 0.0 },
            acceleration_time_s,
            cruise_time_s,
        }
    }

    pub fn duration_s(&self) -> f64 {
        2.0 * self.acceleration_time_s + self.cruise_time_s
    }

    /// Positive-direction sample for `0 < t < duration`.
    fn sample_forward(&self, t_s: f64) -> (f64, f64, f64) {
        let a = self.acceleration_rad_per_s2;
        let t_acc = self.acceleration_time_s;
        if t_s < t_acc {
            return (0.5 * a * t_s * t_s, a * t_s, a);
        }
        if t_s <= t_acc + self.cruise_time_s {
            let p = 0.5 * a * t_acc * t_acc + self.velocity_rad_per_s_peak * (t_s - t_acc);
            return (p, self.velocity_rad_per_s_peak, 0.0);
        }
        // Deceleration is computed backwards from the end so that the target is met exactly.
        let tau = self.duration_s() - t_s;
        (self.shape.distance_rad - 0.5 * a * tau * tau, a * tau, -a)
    }
}

/// Symmetric 7-segment jerk-limited profile: jerk up, constant acceleration, jerk down, cruise,
/// and the mirror image to stop. Segments of zero length drop out when a limit is not reached.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SCurve {
    shape: Shape,
    jerk_rad_per_s3: f64,
    acceleration_rad_per_s2_peak: f64,
    velocity_rad_per_s_peak: f64,
    /// Length of each jerk segment.
    jerk_time_s: f64,
    /// Length of the whole acceleration phase (three segments).
    acceleration_time_s: f64,
    cruise_time_s: f64,
}

impl SCurve {
    fn new(start_rad: f64, target_rad: f64, limits: TrajectoryLimits) -> SCurve {
        limits.assert_valid();
        let shape = Shape::new(start_rad, target_rad);
        let d = shape.distance_rad;
        let v = limits.velocity_rad_per_s_max;
        let a = limits.acceleration_rad_per_s2_max;
        let j = limits.jerk_rad_per_s3_max;

        // The acceleration phase that reaches `v`: with a constant-acceleration segment when
        // `v·j >= a²`, otherwise two jerk segments only.
        let a_reachable = v * j >= a * a;
        let (jerk_time_v, acceleration_time_v) = if a_reachable {
            (a / j, a / j + v / a)
        } else {
            let t_j = sqrt(v / j);
            (t_j, 2.0 * t_j)
        };
        // The acceleration phase's velocity curve is point-symmetric about its middle, so it
        // covers `v·Ta/2`; acceleration and deceleration together cover `v·Ta`.
        let (jerk_time_s, acceleration_time_s, velocity_peak, cruise_time_s) =
            if d >= v * acceleration_time_v {
                (
                    jerk_time_v,
                    acceleration_time_v,
                    v,
                    (d - v * acceleration_time_v) / v,
                )
            } else if a_reachable && d >= 2.0 * a * a * a / (j * j) {
                // `v` not reached, `a` reached: solve `D = vp·(a/j + vp/a)` for the peak
                // speed, in the cancellation-free form of the quadratic's root.
                let b = a * a / j;
                let velocity_peak = 2.0 * d * a / (b + sqrt(b * b + 4.0 * d * a));
                (a / j, a / j + velocity_peak / a, velocity_peak, 0.0)
            } else {
                // Neither limit reached: four jerk segments, `D = 2·j·Tj³`.
                let t_j = cbrt(d / (2.0 * j));
                (t_j, 2.0 * t_j, j * t_j * t_j, 0.0)
            };
        SCurve {
            shape,
            jerk_rad_per_s3: j,
            acceleration_rad_per_s2_peak: j * jerk_time_s,
            velocity_rad_per_s_peak: velocity_peak,
            jerk_time_s,
            acceleration_time_s,
            cruise_time_s,
        }
    }

    pub fn duration_s(&self) -> f64 {
        2.0 * self.acceleration_time_s + self.cruise_time_s
    }

    /// The acceleration phase, `0 <= t <= Ta`: distance, speed and acceleration.
    fn acceleration_phase(&self, t_s: f64) -> (f64, f64, f64) {
        let j = self.jerk_rad_per_s3;
        let t_j = self.jerk_time_s;
        let t_a = self.acceleration_time_s;
        let a_p = self.acceleration_rad_per_s2_peak;
        let v_p = self.velocity_rad_per_s_peak;
        if t_s <= t_j {
            return (j * t_s * t_s * t_s / 6.0, 0.5 * j * t_s * t_s, j * t_s);
        }
        if t_s <= t_a - t_j {
            let tau = t_s - t_j;
            let v_1 = 0.5 * a_p * t_j;
            let p_1 = a_p * t_j * t_j / 6.0;
            return (
                p_1 + v_1 * tau + 0.5 * a_p * tau * tau,
                v_1 + a_p * tau,
                a_p,
            );
        }
        // Last jerk segment, computed backwards from the end of the phase (where the distance
        // is exactly `vp·Ta/2`) so that the phase joins the cruise without a seam.
        let tau = t_a - t_s;
        (
            0.5 * v_p * t_a - v_p * tau + j * tau * tau * tau / 6.0,
            v_p - 0.5 * j * tau * tau,
            j * tau,
        )
    }

    /// Positive-direction sample for `0 < t < duration`.
    fn sample_forward(&self, t_s: f64) -> (f64, f64, f64) {
        let t_a = self.acceleration_time_s;
        if t_s <= t_a {
            return self.acceleration_phase(t_s);
        }
        if t_s <= t_a + self.cruise_time_s {
            let v_p = self.velocity_rad_per_s_peak;
            return (0.5 * v_p * t_a + v_p * (t_s - t_a), v_p, 0.0);
        }
        // Deceleration mirrors acceleration; computed from the end so the target is exact.
        let (p, v, a) = self.acceleration_phase(self.duration_s() - t_s);
        (self.shape.distance_rad - p, v, -a)
    }
}

/// Constant-deceleration ramp from a moving setpoint to rest: the reference SS1 follows.
/// Keeps the position continuous; the acceleration steps to `-deceleration` at the start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StopRamp {
    start_t_s: f64,
    start_position_rad: f64,
    start_velocity_rad_per_s: f64,
    deceleration_rad_per_s2: f64,
}

impl StopRamp {
    pub fn new(start_t_s: f64, from: Setpoint, deceleration_rad_per_s2: f64) -> StopRamp {
        assert!(
            deceleration_rad_per_s2.is_finite() && deceleration_rad_per_s2 > 0.0,
            "stop deceleration must be finite and > 0, got {deceleration_rad_per_s2}"
        );
        assert!(
            start_t_s.is_finite()
                && from.position_rad.is_finite()
                && from.velocity_rad_per_s.is_finite(),
            "stop ramp must start from a finite setpoint at a finite time: {from:?} at {start_t_s}"
        );
        StopRamp {
            start_t_s,
            start_position_rad: from.position_rad,
            start_velocity_rad_per_s: from.velocity_rad_per_s,
            deceleration_rad_per_s2,
        }
    }

    /// Time from the ramp's start until the setpoint is at rest.
    pub fn duration_s(&self) -> f64 {
        self.start_velocity_rad_per_s.abs() / self.deceleration_rad_per_s2
    }

    /// Time at which the setpoint comes to rest.
    pub fn end_t_s(&self) -> f64 {
        self.start_t_s + self.duration_s()
    }

    /// Position at which the setpoint comes to rest.
    pub fn stop_position_rad(&self) -> f64 {
        let v0 = self.start_velocity_rad_per_s;
        self.start_position_rad + 0.5 * v0 * v0.abs() / self.deceleration_rad_per_s2
    }

    pub fn sample(&self, t_s: f64) -> Setpoint {
        let elapsed_s = t_s - self.start_t_s;
        if elapsed_s.is_nan() || elapsed_s <= 0.0 {
            return Setpoint {
                position_rad: self.start_position_rad,
                velocity_rad_per_s: self.start_velocity_rad_per_s,
                acceleration_rad_per_s2: 0.0,
            };
        }
        let duration_s = self.duration_s();
        if elapsed_s >= duration_s {
            return Setpoint::at_rest(self.stop_position_rad());
        }
        let v0 = self.start_velocity_rad_per_s;
        let a = -v0.signum() * self.deceleration_rad_per_s2;
        Setpoint {
            position_rad: self.start_position_rad
                + v0 * elapsed_s
                + 0.5 * a * elapsed_s * elapsed_s,
            velocity_rad_per_s: v0 + a * elapsed_s,
            acceleration_rad_per_s2: a,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: TrajectoryLimits = TrajectoryLimits {
        velocity_rad_per_s_max: 2.0,
        acceleration_rad_per_s2_max: 10.0,
        jerk_rad_per_s3_max: 200.0,
    };

    #[test]
    fn trapezoid_with_cruise_takes_closed_form_time() {
        // Goal: the cruise case uses T = D/v + v/a. Method: D = 3 rad > v²/a = 0.4 rad.
        let t = Trajectory::trapezoid(1.0, 4.0, LIMITS);
        assert!((t.duration_s() - (3.0 / 2.0 + 2.0 / 10.0)).abs() < 1e-12);
        assert_eq!(t.velocity_rad_per_s_peak(), 2.0);
    }

    #[test]
    fn trapezoid_triangle_takes_closed_form_time() {
        // Goal: the triangular case uses T = 2·sqrt(D/a). Method: D = 0.1 rad < v²/a, negative.
        let t = Trajectory::trapezoid(0.0, -0.1, LIMITS);
        assert!((t.duration_s() - 2.0 * sqrt(0.1 / 10.0)).abs() < 1e-12);
        assert!(t.sample(t.duration_s() / 2.0).velocity_rad_per_s < 0.0);
    }

    #[test]
    fn s_curve_with_both_limits_takes_closed_form_time() {
        // Goal: T = D/v + v/a + a/j when both limits are reached. Method: v·j = 400 >= a² = 100
        // and D = 3 rad >= v·(a/j + v/a) = 0.5 rad.
        let t = Trajectory::s_curve(0.0, 3.0, LIMITS);
        assert!((t.duration_s() - (3.0 / 2.0 + 2.0 / 10.0 + 10.0 / 200.0)).abs() < 1e-12);
    }

    #[test]
    fn zero_length_moves_are_at_rest_on_target() {
        // Goal: a zero-length move has zero duration and samples exactly the target.
        for t in [
            Trajectory::trapezoid(0.5, 0.5, LIMITS),
            Trajectory::s_curve(0.5, 0.5, LIMITS),
        ] {
            assert_eq!(t.duration_s(), 0.0);
            assert_eq!(t.sample(0.0), Setpoint::at_rest(0.5));
            assert_eq!(t.sample(1.0), Setpoint::at_rest(0.5));
        }
    }

    #[test]
    fn stop_ramp_comes_to_rest_at_the_closed_form_point() {
        // Goal: the SS1 ramp stops after v0/d at p0 + v0²/(2d), from either direction.
        for v0 in [3.0, -3.0] {
            let ramp = StopRamp::new(
                1.0,
                Setpoint {
                    position_rad: 2.0,
                    velocity_rad_per_s: v0,
                    acceleration_rad_per_s2: 0.0,
                },
                6.0,
            );
            assert!((ramp.duration_s() - 0.5).abs() < 1e-12);
            let end = ramp.sample(1.5);
            assert_eq!(end.velocity_rad_per_s, 0.0);
            assert!((end.position_rad - (2.0 + v0.signum() * 0.75)).abs() < 1e-12);
            let mid = ramp.sample(1.25);
            assert!((mid.velocity_rad_per_s - v0 / 2.0).abs() < 1e-12);
            let just_before = ramp.sample(1.5 - 1e-9);
            assert!((just_before.position_rad - end.position_rad).abs() < 1e-8);
        }
    }
}
