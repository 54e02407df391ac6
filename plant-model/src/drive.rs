//! The drive's power stage and current loop: what terminal voltage the winding sees.
//!
//! Owns: the command vocabulary ([`DriveCommand`]), the PI current loop, the bus clamp and the
//! freewheel behaviour when the bridge is off. Does not own: the winding's response (that is the
//! exact discretisation in `drivetrain`) or the drive firmware's watchdog and limits beyond the
//! current limit (those are `sim`'s simulated drive and `hil`'s emulator).
//!
//! # Why a simulated PI loop rather than a first-order lag
//!
//! The current loop is simulated: a discrete PI controller running once per plant step (10 kHz
//! at the default 100 µs step, the rate of a PWM-synchronous drive loop) drives a terminal
//! voltage clamped to ±bus into the exactly discretised winding. We chose this over "current =
//! lag(command), limited by the voltage" because:
//!
//! - the voltage limit then acts where it acts in a real drive: at speed the back-EMF eats the
//!   headroom and the current sags; at stall the XM430 reaches only 12 V / 5.2 Ω = 2.3 A, which
//!   is exactly the datasheet's stall point, with no special case;
//! - a lag model needs a rule for switching between "follows the lag" and "voltage-limited",
//!   with a jump in current or energy at each switch; the simulated loop has none;
//! - it costs the same: the winding is discretised exactly, so the loop is stable for any ratio
//!   of τ_e to the step (the XM430's τ_e = 38 µs is shorter than the step), and the PI is four
//!   multiplications.
//!
//! The PI is designed on the drive's nominal model (R at 25 °C, ZOH pole `a = e^{−hR/L}`) by
//! pole-zero cancellation: `C(z) = K·(z − a)/(z − 1)` with `K = (1 − p)/b`, `b = (1 − a)/R`,
//! which makes the nominal closed loop first order with pole `p = e^{−2π·f_c·h}`, f_c the
//! configured bandwidth. Back-EMF feed-forward uses the motor speed the drive measures.
//! Anti-windup: no integration while the voltage is clamped and the error pushes further into
//! the clamp; on the first step after such a clamp the integrator is re-seeded with `R·i`, the
//! value it holds in linear operation under pole-zero cancellation (there `u = K·e + R·i`
//! exactly). Plain conditional integration would leave the integrator inconsistent with the
//! winding after a saturated step, and the cancelled winding pole (τ_e = 6.4 ms for the sgmp-02b)
//! would reappear as a slow tail of ~1 % that takes tens of milliseconds to fade. A warm winding
//! (higher R) is a model mismatch the integrator removes, as in a real drive.

use serde::{Deserialize, Serialize};

/// What the drive is told to do; held until the next command (zero-order hold).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum DriveCommand {
    /// Torque off: the bridge is disabled. The winding current decays through the freewheel
    /// diodes (terminal voltage −sign(i)·bus) to zero and then stays zero; at a speed whose
    /// back-EMF exceeds the bus the diodes conduct and brake the motor, as in a real bridge.
    Off,
    /// Raw terminal voltage, clamped to ±bus; bypasses the current loop.
    Voltage { volts: f64 },
    /// The drive's current loop tracks this, clamped to ±`current_a_max` and limited by the bus.
    Current { amps: f64 },
}

/// The drive's discrete PI current loop.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CurrentLoop {
    resistance_ohm: f64,
    gain_v_per_a: f64,
    integral_gain_v_per_a: f64,
    back_emf_v_s_per_rad: f64,
    current_a_max: f64,
    integral_v: f64,
    saturated: bool,
}

impl CurrentLoop {
    /// Designs the loop for a winding of `resistance_ohm` and `inductance_h` sampled every
    /// `step_s`, with closed-loop bandwidth `bandwidth_hz`.
    pub(crate) fn new(
        resistance_ohm: f64,
        inductance_h: f64,
        back_emf_v_s_per_rad: f64,
        current_a_max: f64,
        bandwidth_hz: f64,
        step_s: f64,
    ) -> CurrentLoop {
        let a = libm::exp(-step_s * resistance_ohm / inductance_h);
        let b = (1.0 - a) / resistance_ohm;
        let p = libm::exp(-2.0 * core::f64::consts::PI * bandwidth_hz * step_s);
        assert!(
            (0.0..1.0).contains(&p),
            "current-loop pole {p} outside (0, 1)"
        );
        let gain = (1.0 - p) / b;
        CurrentLoop {
            resistance_ohm,
            gain_v_per_a: gain,
            integral_gain_v_per_a: gain * (1.0 - a),
            back_emf_v_s_per_rad,
            current_a_max,
            integral_v: 0.0,
            saturated: false,
        }
    }

    /// Forgets the integral (the drive resets its loop when the bridge is switched off or the
    /// mode changes).
    pub(crate) fn reset(&mut self) {
        self.integral_v = 0.0;
        self.saturated = false;
    }

    /// Terminal voltage for this step: PI on the current error plus back-EMF feed-forward,
    /// clamped to ±`bus_v`.
    #[inline(always)]
    pub(crate) fn voltage(
        &mut self,
        current_a_setpoint: f64,
        current_a: f64,
        motor_velocity_rad_per_s: f64,
        bus_v: f64,
    ) -> f64 {
        if self.saturated {
            self.integral_v = self.resistance_ohm * current_a;
        }
        let setpoint = clamp_symmetric(current_a_setpoint, self.current_a_max);
        let error = setpoint - current_a;
        let unclamped = self.gain_v_per_a * error
            + self.integral_v
            + self.back_emf_v_s_per_rad * motor_velocity_rad_per_s;
        let volts = clamp_symmetric(unclamped, bus_v);
        self.saturated = (unclamped > bus_v && error > 0.0) || (unclamped < -bus_v && error < 0.0);
        if !self.saturated {
            self.integral_v += self.integral_gain_v_per_a * error;
        }
        volts
    }
}

/// `value` limited to `±limit` (`limit ≥ 0`); a NaN stays NaN. The same result as
/// `f64::clamp`, without its panic path for `min > max`: a panic inside the step loop would
/// keep the compiler from holding the loop's running sums in registers.
#[inline(always)]
pub(crate) fn clamp_symmetric(value: f64, limit: f64) -> f64 {
    if value > limit {
        limit
    } else if value < -limit {
        -limit
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nominal_closed_loop_is_first_order_with_the_design_pole() {
        // Goal: pole-zero cancellation gives i_k = (1 − p^k)·i_ref on the nominal ZOH winding
        // (no back-EMF). Method: iterate the loop against i⁺ = a·i + b·u and compare each sample.
        let (r, l, h, f) = (2.2, 14e-3, 1e-4, 1000.0);
        let mut pi = CurrentLoop::new(r, l, 0.0, 10.0, f, h);
        let a = libm::exp(-h * r / l);
        let b = (1.0 - a) / r;
        let p = libm::exp(-2.0 * core::f64::consts::PI * f * h);
        let mut i = 0.0;
        for k in 1..50 {
            let u = pi.voltage(1.0, i, 0.0, 1e6);
            i = a * i + b * u;
            let expected = 1.0 - libm::pow(p, k as f64);
            assert!((i - expected).abs() < 1e-12, "k={k}: {i} vs {expected}");
        }
    }

    #[test]
    fn leaves_saturation_without_a_slow_tail() {
        // Goal: after the bus clamps a large step, the current settles at the loop's speed, not
        // at the winding's (the cancelled pole must not reappear). Method: sgmp-02b winding,
        // a 3 A step that saturates 140 V for the first step; within 1e-6 A after 4 ms (the
        // 1 kHz loop alone leaves 3·0.53^38 ≈ 1e-10 A; the old tail left 2e-2 A).
        let (r, l, h) = (2.2, 14e-3, 1e-4);
        let mut pi = CurrentLoop::new(r, l, 0.0, 10.0, 1000.0, h);
        let a = libm::exp(-h * r / l);
        let b = (1.0 - a) / r;
        let mut i = 0.0;
        let mut clamped = false;
        for _ in 0..40 {
            let u = pi.voltage(3.0, i, 0.0, 140.0);
            clamped |= u == 140.0;
            i = a * i + b * u;
        }
        assert!(
            clamped,
            "the step must saturate for this test to mean anything"
        );
        assert!((i - 3.0).abs() < 1e-6, "{i}");
    }

    #[test]
    fn clamp_symmetric_is_f64_clamp() {
        // Goal: the panic-free clamp gives f64::clamp's result bit for bit. Method: values
        // inside, on and beyond the limits, signed zeros, infinities and NaN.
        for limit in [0.0, 2.5, 140.0] {
            for value in [
                0.0,
                -0.0,
                1.0,
                -1.0,
                2.5,
                -2.5,
                2.5000000000000004,
                1e300,
                -1e300,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::NAN,
            ] {
                let expected = value.clamp(-limit, limit);
                let got = clamp_symmetric(value, limit);
                assert!(
                    got.to_bits() == expected.to_bits() || (got.is_nan() && expected.is_nan()),
                    "clamp({value}, ±{limit}): {got} vs {expected}"
                );
            }
        }
    }

    #[test]
    fn clamps_to_the_bus_and_does_not_wind_up() {
        // Goal: the voltage never leaves ±bus and the integral does not grow while clamped.
        // Method: demand far more current than the bus can push for a while, then release.
        let mut pi = CurrentLoop::new(5.2, 2e-4, 0.0, 3.0, 1000.0, 1e-4);
        for _ in 0..1000 {
            let u = pi.voltage(3.0, 0.0, 0.0, 12.0);
            assert!(u <= 12.0);
        }
        assert!(
            pi.integral_v.abs() < 12.0 * 2.0,
            "wound up to {}",
            pi.integral_v
        );
    }
}
