//! Characterization by simulated bench experiments (placeholder until the physics lands).

use crate::params::AxisParams;
use serde::Serialize;

/// What a test bench measures on an axis, all at the output shaft.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Characterization {
    pub no_load_speed_rpm: f64,
    pub stall_torque_nm: f64,
    pub electrical_time_constant_s: f64,
    pub mechanical_time_constant_s: f64,
}

/// Runs the bench experiments on a fresh plant built from `params`.
pub fn characterize(params: &AxisParams) -> Characterization {
    let _ = params;
    Characterization {
        no_load_speed_rpm: f64::NAN,
        stall_torque_nm: f64::NAN,
        electrical_time_constant_s: f64::NAN,
        mechanical_time_constant_s: f64::NAN,
    }
}
