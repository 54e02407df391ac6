//! Two-node thermal model (winding, housing), maxon style:
//! `C_w·Ṫ_w = P_cu − (T_w − T_h)/R_th1`, `C_h·Ṫ_h = (T_w − T_h)/R_th1 − (T_h − T_a)/R_th2`,
//! and the winding resistance `R(T) = R_25·[1 + α·(T − 25)]`.
//!
//! Owns: the two temperatures and their update. Does not own: the copper loss (the electrical
//! part computes it exactly and hands it in as energy) or the ambient (params, or the
//! over-heating fault).
//!
//! Integrated exactly (zero-order hold) for heat spread evenly over the update interval: the
//! network is linear with constant coefficients, so `[T_w, T_h]⁺ = Φ·[T_w, T_h] + Γ·[P, T_a]`
//! with the matrix exponential of the interval (`discretisation::Zoh`), computed once per
//! interval length. The plant updates it once per sensor sample period (at most 1 ms) with
//! that period's copper heat; the time constants are seconds to minutes, so spreading the heat
//! evenly over a period changes nothing measurable, and the exact update has no step-size
//! error (explicit Euler at the 100 µs plant step had a relative error of h/2τ ≈ 4e-6).

use crate::discretisation::Zoh;
use crate::params;
use nalgebra::{DMatrix, SMatrix, SVector};

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Thermal {
    pub(crate) winding_c: f64,
    pub(crate) housing_c: f64,
    /// `d[T_w, T_h]/dt = a·[T_w, T_h] + b·[P, T_a]`.
    a: SMatrix<f64, 2, 2>,
    b: SMatrix<f64, 2, 2>,
    /// The exact map over `map_h_s`: `[T_w, T_h]⁺ = map·[T_w, T_h, P, T_a]` (0 s: none yet).
    map: SMatrix<f64, 2, 4>,
    map_h_s: f64,
}

impl Thermal {
    pub(crate) fn new(p: &params::Thermal) -> Thermal {
        let (cw, ch) = (p.winding_capacity_j_per_k, p.housing_capacity_j_per_k);
        let (g1, g2) = (
            1.0 / p.winding_to_housing_k_per_w,
            1.0 / p.housing_to_ambient_k_per_w,
        );
        Thermal {
            winding_c: p.ambient_c,
            housing_c: p.ambient_c,
            a: SMatrix::<f64, 2, 2>::new(-g1 / cw, g1 / cw, g1 / ch, -(g1 + g2) / ch),
            b: SMatrix::<f64, 2, 2>::new(1.0 / cw, 0.0, 0.0, g2 / ch),
            map: SMatrix::zeros(),
            map_h_s: 0.0,
        }
    }

    /// As [`Thermal::new`], with the map for updates every `h_s` seconds built now.
    pub(crate) fn with_interval(p: &params::Thermal, h_s: f64) -> Thermal {
        let mut thermal = Thermal::new(p);
        thermal.rediscretise(h_s);
        thermal
    }

    /// The exact map of the current interval, rows `T_w⁺`, `T_h⁺` over `[T_w, T_h, P, T_a]`.
    pub(crate) fn map(&self) -> [[f64; 4]; 2] {
        core::array::from_fn(|r| core::array::from_fn(|c| self.map[(r, c)]))
    }

    /// Advances by `h_s` with `heat_j` put into the winding evenly over the interval.
    pub(crate) fn step(&mut self, heat_j: f64, h_s: f64, ambient_c: f64) {
        if h_s != self.map_h_s {
            self.rediscretise(h_s);
        }
        let x = SVector::<f64, 4>::new(self.winding_c, self.housing_c, heat_j / h_s, ambient_c);
        let next = self.map * x;
        self.winding_c = next[0];
        self.housing_c = next[1];
    }

    #[cold]
    fn rediscretise(&mut self, h_s: f64) {
        assert!(
            h_s > 0.0 && h_s.is_finite(),
            "thermal interval must be positive: {h_s}"
        );
        let b = DMatrix::from_column_slice(2, 2, self.b.as_slice());
        self.map = Zoh::<2, 4, 0>::new(&self.a, &b, &[], h_s).step;
        self.map_h_s = h_s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_update_matches_the_analytic_response_of_one_node() {
        // Goal: the update is the exact solution, not an approximation that improves with
        // smaller intervals. Method: a housing so large it stays at ambient makes the winding
        // a single node, T_w(t) = T_a + P·R1·(1 − e^{−t/(C_w·R1)}); compare after 1 ms steps
        // and after one 30 s interval at the same heat rate.
        let p = params::Thermal {
            ambient_c: 25.0,
            winding_capacity_j_per_k: 1.5,
            housing_capacity_j_per_k: 1e12,
            winding_to_housing_k_per_w: 8.0,
            housing_to_ambient_k_per_w: 20.0,
        };
        let expected = 25.0 + 2.0 * 8.0 * (1.0 - libm::exp(-30.0 / 12.0));
        let mut fine = Thermal::new(&p);
        for _ in 0..30_000 {
            fine.step(2.0 * 1e-3, 1e-3, 25.0);
        }
        let mut coarse = Thermal::new(&p);
        coarse.step(2.0 * 30.0, 30.0, 25.0);
        for (name, t) in [("1 ms", &fine), ("30 s", &coarse)] {
            assert!(
                (t.winding_c - expected).abs() < 1e-9,
                "{name}: {} vs {expected}",
                t.winding_c
            );
        }
    }

    #[test]
    fn steady_state_is_power_times_the_series_resistance() {
        // Goal: the two nodes settle at T_a + P·R_th2 (housing) and + P·(R_th1 + R_th2)
        // (winding). Method: 2 W for 20 housing time constants at a 1 ms step.
        let p = params::Thermal {
            ambient_c: 25.0,
            winding_capacity_j_per_k: 1.5,
            housing_capacity_j_per_k: 3.0,
            winding_to_housing_k_per_w: 8.0,
            housing_to_ambient_k_per_w: 20.0,
        };
        let mut t = Thermal::new(&p);
        let h = 1e-3;
        for _ in 0..(20.0 * 60.0 / h) as usize {
            t.step(2.0 * h, h, 25.0);
        }
        assert!(
            (t.housing_c - (25.0 + 40.0)).abs() < 1e-3,
            "{}",
            t.housing_c
        );
        assert!(
            (t.winding_c - (25.0 + 56.0)).abs() < 1e-3,
            "{}",
            t.winding_c
        );
    }
}
