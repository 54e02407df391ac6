//! Friction at the output shaft: Stribeck + Coulomb (+ viscous), Simscape's Rotational Friction.
//!
//! `T = √(2e)·(T_brk − T_C)·exp(−(ω/ω_St)²)·ω/ω_St + T_C·tanh(ω/ω_Coul) + f·ω`, with
//! `ω_St = √2·ω_brk` and `ω_Coul = ω_brk/10`.
//!
//! Owns: the nonlinear (Stribeck + Coulomb) part. The viscous part `f·ω` is linear and lives in
//! the exact discretisation (`drivetrain`), so it is integrated exactly and costs no stability.
//! Does not own: the holding brake, which sticks exactly (Karnopp) rather than smoothly (`plant`).
//!
//! Why tanh smoothing rather than a stick band: the tanh form is continuous, needs no state and
//! no event, and is what the reference model (Simscape) uses. Its price is a steep slope at zero
//! speed, `T_C/ω_Coul`, which acts like a stiff damper in an explicit step; validation requires
//! `h < J/slope` so the held friction torque cannot overshoot zero speed. A load below breakaway
//! then creeps at `ω ≈ ω_Coul·atanh(T/T_C)` instead of standing still: for the xm430
//! (ω_Coul = 5 mrad/s) a load of half the Coulomb torque creeps at 2.7 mrad/s, about two
//! encoder counts per second.

use crate::params;

/// Above this |ω/ω_Coul| libm's tanh returns exactly ±1 (its own cut-off is 22).
const TANH_SATURATED: f64 = 22.0;
/// Above this (ω/ω_St)², exp(−y²)·y < 1e-17: the Stribeck term is dropped.
const STRIBECK_NEGLIGIBLE: f64 = 40.0;

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Friction {
    coulomb_nm: f64,
    stribeck_nm: f64,
    inv_coulomb_velocity: f64,
    inv_stribeck_velocity: f64,
}

impl Friction {
    pub(crate) fn new(p: &params::Friction) -> Friction {
        let w_brk = p.breakaway_velocity_rad_per_s;
        Friction {
            coulomb_nm: p.coulomb_nm,
            stribeck_nm: libm::sqrt(2.0 * core::f64::consts::E) * (p.breakaway_nm - p.coulomb_nm),
            inv_coulomb_velocity: 10.0 / w_brk,
            inv_stribeck_velocity: 1.0 / (core::f64::consts::SQRT_2 * w_brk),
        }
    }

    /// Stribeck + Coulomb torque opposing the velocity `w` (same sign as `w`), N·m.
    #[inline]
    pub(crate) fn torque_nm(&self, w: f64) -> f64 {
        let x = w * self.inv_coulomb_velocity;
        let coulomb = if x > TANH_SATURATED {
            self.coulomb_nm
        } else if x < -TANH_SATURATED {
            -self.coulomb_nm
        } else {
            self.coulomb_nm * libm::tanh(x)
        };
        let y = w * self.inv_stribeck_velocity;
        let y2 = y * y;
        let stribeck = if y2 > STRIBECK_NEGLIGIBLE {
            0.0
        } else {
            self.stribeck_nm * libm::exp(-y2) * y
        };
        coulomb + stribeck
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn friction() -> Friction {
        Friction::new(&params::Friction {
            breakaway_nm: 0.06,
            coulomb_nm: 0.04,
            viscous_nm_s_per_rad: 0.0,
            breakaway_velocity_rad_per_s: 0.05,
        })
    }

    #[test]
    fn peak_is_the_breakaway_torque_at_the_breakaway_velocity() {
        // Goal: the Simscape parameterisation puts the peak T_brk at ω_brk. Method: sample
        // around ω_brk and compare the maximum.
        let f = friction();
        let peak = (1..2000)
            .map(|k| f.torque_nm(k as f64 * 1e-4))
            .fold(0.0, f64::max);
        assert!((peak - 0.06).abs() < 0.06 * 0.01, "peak {peak}");
        let at_brk = f.torque_nm(0.05);
        assert!((at_brk - peak).abs() < 0.06 * 0.01, "{at_brk} vs {peak}");
    }

    #[test]
    fn odd_and_saturating() {
        // Goal: friction opposes motion symmetrically and tends to T_C at speed. Method: ±ω
        // and a large ω; the shortcut paths must agree with libm at their thresholds.
        let f = friction();
        for w in [1e-4, 0.01, 0.05, 0.3, 5.0] {
            assert_eq!(f.torque_nm(-w), -f.torque_nm(w));
        }
        assert_eq!(f.torque_nm(0.0), 0.0);
        assert_eq!(f.torque_nm(10.0), 0.04);
        assert_eq!(libm::tanh(TANH_SATURATED), 1.0);
    }
}
