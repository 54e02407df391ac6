//! Property tests: both profiles stay within their limits, end exactly on target and take the
//! closed-form time, over random limits, starts and distances (including negative and zero).
//!
//! Limits are checked on the sampled signals themselves, not only on the reported values: the
//! position change between samples against the velocity limit, the velocity change against the
//! acceleration limit and (S-curve) the acceleration change against the jerk limit. The only
//! tolerance is float rounding.

use control::{Setpoint, Trajectory, TrajectoryLimits};
use proptest::prelude::*;

/// Samples per trajectory, uniformly spaced over its duration.
const SAMPLE_COUNT: usize = 4000;
/// Relative tolerance for float rounding.
const RELATIVE_TOLERANCE: f64 = 1e-9;

fn limits() -> impl Strategy<Value = TrajectoryLimits> {
    (1e-2..1e2_f64, 1e-1..1e3_f64, 1e0..1e5_f64).prop_map(|(v, a, j)| TrajectoryLimits {
        velocity_rad_per_s_max: v,
        acceleration_rad_per_s2_max: a,
        jerk_rad_per_s3_max: j,
    })
}

/// Signed move lengths spanning every profile case, including zero.
fn distance() -> impl Strategy<Value = f64> {
    let magnitude = prop_oneof![Just(0.0), 1e-6..1e-3_f64, 1e-3..1.0_f64, 1.0..1e3_f64];
    (magnitude, any::<bool>()).prop_map(|(d, negative)| if negative { -d } else { d })
}

/// Trapezoid: `T = D/v + v/a` with a cruise, `2·sqrt(D/a)` as a triangle.
fn trapezoid_time_s(d: f64, l: &TrajectoryLimits) -> f64 {
    let (v, a) = (l.velocity_rad_per_s_max, l.acceleration_rad_per_s2_max);
    if d >= v * v / a {
        d / v + v / a
    } else {
        2.0 * (d / a).sqrt()
    }
}

/// S-curve, written from the four cases of the closed form (not from the implementation's
/// segment times).
fn s_curve_time_s(d: f64, l: &TrajectoryLimits) -> f64 {
    let (v, a, j) = (
        l.velocity_rad_per_s_max,
        l.acceleration_rad_per_s2_max,
        l.jerk_rad_per_s3_max,
    );
    if v * j >= a * a {
        // `a` is reached on the way to `v`.
        if d >= v * (v / a + a / j) {
            d / v + v / a + a / j
        } else if d >= 2.0 * a * a * a / (j * j) {
            // `v` not reached: `D = vp·(a/j + vp/a)`, `T = 2·(a/j + vp/a)`.
            a / j + ((a / j).powi(2) + 4.0 * d / a).sqrt()
        } else {
            4.0 * (d / (2.0 * j)).cbrt()
        }
    } else if d >= 2.0 * v * (v / j).sqrt() {
        // `v` reached, `a` not.
        d / v + 2.0 * (v / j).sqrt()
    } else {
        4.0 * (d / (2.0 * j)).cbrt()
    }
}

/// Checks one trajectory sampled densely; `jerk_limited` also checks the jerk.
fn check(
    trajectory: &Trajectory,
    start: f64,
    target: f64,
    l: &TrajectoryLimits,
    expected_duration_s: f64,
    jerk_limited: bool,
) -> Result<(), TestCaseError> {
    let duration_s = trajectory.duration_s();
    prop_assert!(
        (duration_s - expected_duration_s).abs()
            <= RELATIVE_TOLERANCE * expected_duration_s.max(1e-300),
        "duration {duration_s} vs closed form {expected_duration_s}"
    );
    prop_assert_eq!(trajectory.sample(0.0), Setpoint::at_rest(start));
    prop_assert_eq!(trajectory.sample(-1.0), Setpoint::at_rest(start));
    prop_assert_eq!(trajectory.sample(duration_s), Setpoint::at_rest(target));
    prop_assert_eq!(
        trajectory.sample(duration_s + 1.0),
        Setpoint::at_rest(target)
    );
    if duration_s == 0.0 {
        prop_assert_eq!(start, target);
        return Ok(());
    }

    let (v_max, a_max, j_max) = (
        l.velocity_rad_per_s_max,
        l.acceleration_rad_per_s2_max,
        l.jerk_rad_per_s3_max,
    );
    let direction = (target - start).signum();
    let distance = (target - start).abs();
    // Absolute rounding of positions is relative to the largest coordinate involved.
    let position_rounding = 8.0 * f64::EPSILON * start.abs().max(target.abs()).max(distance);
    let dt = duration_s / SAMPLE_COUNT as f64;
    let mut previous = trajectory.sample(0.0);
    for k in 1..=SAMPLE_COUNT {
        let t = if k == SAMPLE_COUNT {
            duration_s
        } else {
            k as f64 * dt
        };
        let dt_k = t - (k - 1) as f64 * dt;
        let s = trajectory.sample(t);
        prop_assert!(
            s.velocity_rad_per_s.abs() <= v_max * (1.0 + RELATIVE_TOLERANCE),
            "v {} at {t}",
            s.velocity_rad_per_s
        );
        prop_assert!(
            s.acceleration_rad_per_s2.abs() <= a_max * (1.0 + RELATIVE_TOLERANCE),
            "a {} at {t}",
            s.acceleration_rad_per_s2
        );
        prop_assert!(
            direction * s.velocity_rad_per_s >= 0.0,
            "velocity against the move at {t}"
        );

        let dp = s.position_rad - previous.position_rad;
        prop_assert!(
            direction * dp >= -position_rounding,
            "position goes back at {t}: {dp}"
        );
        prop_assert!(
            dp.abs() <= v_max * dt_k * (1.0 + RELATIVE_TOLERANCE) + position_rounding,
            "position jumps at {t}: {dp}"
        );
        let dv = s.velocity_rad_per_s - previous.velocity_rad_per_s;
        prop_assert!(
            dv.abs() <= a_max * dt_k * (1.0 + 1e-6) + 1e-12 * v_max,
            "velocity jumps at {t}: {dv}"
        );
        if jerk_limited {
            let da = s.acceleration_rad_per_s2 - previous.acceleration_rad_per_s2;
            prop_assert!(
                da.abs() <= j_max * dt_k * (1.0 + 1e-6) + 1e-12 * a_max,
                "acceleration jumps at {t}: {da}"
            );
        }
        let overshoot = direction * (s.position_rad - target);
        prop_assert!(
            overshoot <= position_rounding,
            "overshoot {overshoot} at {t}"
        );
        previous = s;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn trapezoid_respects_limits_ends_on_target_in_closed_form_time(
        start in -100.0..100.0_f64, d in distance(), l in limits()
    ) {
        // Goal and method: module docs; the trapezoid's acceleration steps, so no jerk check.
        let target = start + d;
        let trajectory = Trajectory::trapezoid(start, target, l);
        check(&trajectory, start, target, &l, trapezoid_time_s((target - start).abs(), &l), false)?;
    }

    #[test]
    fn s_curve_respects_limits_ends_on_target_in_closed_form_time(
        start in -100.0..100.0_f64, d in distance(), l in limits()
    ) {
        // Goal and method: module docs, including the jerk limit.
        let target = start + d;
        let trajectory = Trajectory::s_curve(start, target, l);
        check(&trajectory, start, target, &l, s_curve_time_s((target - start).abs(), &l), true)?;
    }

    #[test]
    fn s_curve_reaches_the_limits_the_closed_form_says(
        d in 1e-3..1e3_f64, l in limits()
    ) {
        // Goal: no slack: the profile's peak velocity is the velocity limit exactly when the
        // closed form has a cruise, and its peak acceleration is the acceleration limit exactly
        // when the closed form has a constant-acceleration segment. Method: compare the reported
        // peaks with the case conditions.
        let (v, a, j) = (l.velocity_rad_per_s_max, l.acceleration_rad_per_s2_max, l.jerk_rad_per_s3_max);
        let trajectory = Trajectory::s_curve(0.0, d, l);
        let cruise = if v * j >= a * a { d >= v * (v / a + a / j) } else { d >= 2.0 * v * (v / j).sqrt() };
        let full_acceleration = v * j >= a * a && d >= 2.0 * a * a * a / (j * j);
        let v_peak = trajectory.velocity_rad_per_s_peak();
        let a_peak = trajectory.acceleration_rad_per_s2_peak();
        if cruise {
            prop_assert!((v_peak - v).abs() <= RELATIVE_TOLERANCE * v, "cruise at {v_peak}, limit {v}");
        } else {
            prop_assert!(v_peak < v * (1.0 + RELATIVE_TOLERANCE));
        }
        if full_acceleration {
            prop_assert!((a_peak - a).abs() <= RELATIVE_TOLERANCE * a, "peak accel {a_peak}, limit {a}");
        } else {
            prop_assert!(a_peak < a * (1.0 + RELATIVE_TOLERANCE));
        }
    }
}

#[test]
fn s_curve_degenerate_cases_take_their_closed_form_times() {
    // Goal: each of the four S-curve cases, hand-picked, takes its own closed form. Method:
    // limits and distances chosen so that exactly one case applies each time.
    let l = |v, a, j| TrajectoryLimits {
        velocity_rad_per_s_max: v,
        acceleration_rad_per_s2_max: a,
        jerk_rad_per_s3_max: j,
    };
    // Both limits reached: v·j = 400 >= a² = 100, D = 3 >= v·(v/a + a/j) = 0.5.
    let t = Trajectory::s_curve(0.0, 3.0, l(2.0, 10.0, 200.0));
    assert!((t.duration_s() - (1.5 + 0.2 + 0.05)).abs() < 1e-12);
    // v reached, a not: v·j = 2 < a² = 100, D = 10 >= 2v·sqrt(v/j) = 5.66 (negative move).
    let t = Trajectory::s_curve(0.0, -10.0, l(2.0, 10.0, 1.0));
    assert!((t.duration_s() - (5.0 + 2.0 * 2.0_f64.sqrt())).abs() < 1e-12);
    assert!(t.acceleration_rad_per_s2_peak() < 10.0);
    // a reached, v not: v = 100, a = 10, j = 200: 2a³/j² = 0.05 <= D = 1 < v·(v/a + a/j).
    let t = Trajectory::s_curve(0.0, 1.0, l(100.0, 10.0, 200.0));
    assert!((t.duration_s() - (0.05 + (0.05_f64.powi(2) + 0.4).sqrt())).abs() < 1e-12);
    assert!((t.acceleration_rad_per_s2_peak() - 10.0).abs() < 1e-12);
    // Neither reached: D = 0.001 < 2a³/j² = 0.05: T = 4·cbrt(D/2j).
    let t = Trajectory::s_curve(0.0, 0.001, l(100.0, 10.0, 200.0));
    assert!((t.duration_s() - 4.0 * (0.001_f64 / 400.0).cbrt()).abs() < 1e-12);
}
