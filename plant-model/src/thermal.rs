//! Two-node thermal model (winding, housing), maxon style:
//! `C_w·Ṫ_w = P_cu − (T_w − T_h)/R_th1`, `C_h·Ṫ_h = (T_w − T_h)/R_th1 − (T_h − T_a)/R_th2`,
//! and the winding resistance `R(T) = R_25·[1 + α·(T − 25)]`.
//!
//! Owns: the two temperatures and their update. Does not own: the copper loss (the electrical
//! part computes it exactly per step and hands it in as energy) or the ambient (params, or the
//! over-heating fault). Integrated with explicit Euler at the plant step: the thermal time
//! constants are seconds to minutes, validation keeps the step below 1 % of the fastest one.

use crate::params;

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Thermal {
    pub(crate) winding_c: f64,
    pub(crate) housing_c: f64,
    inv_winding_capacity: f64,
    inv_housing_capacity: f64,
    inv_winding_to_housing: f64,
    inv_housing_to_ambient: f64,
}

impl Thermal {
    pub(crate) fn new(p: &params::Thermal) -> Thermal {
        Thermal {
            winding_c: p.ambient_c,
            housing_c: p.ambient_c,
            inv_winding_capacity: 1.0 / p.winding_capacity_j_per_k,
            inv_housing_capacity: 1.0 / p.housing_capacity_j_per_k,
            inv_winding_to_housing: 1.0 / p.winding_to_housing_k_per_w,
            inv_housing_to_ambient: 1.0 / p.housing_to_ambient_k_per_w,
        }
    }

    /// Advances by `h_s` with `copper_j` of heat put into the winding during the step.
    #[inline]
    pub(crate) fn step(&mut self, copper_j: f64, h_s: f64, ambient_c: f64) {
        let to_housing_w = (self.winding_c - self.housing_c) * self.inv_winding_to_housing;
        let to_ambient_w = (self.housing_c - ambient_c) * self.inv_housing_to_ambient;
        self.winding_c += (copper_j - to_housing_w * h_s) * self.inv_winding_capacity;
        self.housing_c += (to_housing_w - to_ambient_w) * h_s * self.inv_housing_capacity;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
