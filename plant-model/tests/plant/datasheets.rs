//! The presets against their datasheets, measured by simulated bench experiments.

use crate::support::preset;
use plant_model::{characterize, locked_output_torque_nm};

fn within(measured: f64, datasheet: f64, tolerance: f64) -> bool {
    ((measured - datasheet) / datasheet).abs() <= tolerance
}

#[test]
fn xm430_no_load_speed_and_stall_torque_match_the_datasheet() {
    // Goal: the xm430-w350 preset behaves like the ROBOTIS datasheet at 12 V: 46 rpm no-load
    // and 4.1 N·m stall (at 2.3 A), each within 5 %. Method: `characterize` runs the voltage-step
    // and locked-output experiments on the simulated axis.
    let p = preset("xm430-w350");
    let c = characterize(&p);
    assert!(
        within(c.no_load_speed_rpm, 46.0, 0.05),
        "no-load {} rpm",
        c.no_load_speed_rpm
    );
    assert!(
        within(c.stall_torque_nm, 4.1, 0.05),
        "stall {} N·m",
        c.stall_torque_nm
    );
}

#[test]
fn xm430_stall_is_voltage_limited_at_the_datasheet_current() {
    // Goal: the 4.1 N·m stall happens at the datasheet's 2.3 A, set by the 12 V bus and not by
    // the 3.21 A current limit. Method: a locked output at full current command; the current
    // that flows is read from the ground truth.
    let p = preset("xm430-w350");
    let mut plant = crate::support::plant(p.clone(), 1);
    plant.inject(plant_model::PlantFault::Brake { torque_nm: 1e6 });
    plant.command(plant_model::DriveCommand::Current {
        amps: p.drive.current_a_max,
    });
    crate::support::run_ms(&mut plant, 20);
    let current = plant.truth().current_a;
    assert!(within(current, 2.3, 0.05), "stall current {current} A");
}

#[test]
fn sgmp_peak_and_rated_torque_match_the_datasheet() {
    // Goal: the sgmp-02b preset gives the Yaskawa datasheet's 1.91 N·m at the 8.4 A peak current
    // and 0.637 N·m at the 2.7 A rated current, within 5 %. Method: locked-output experiments
    // with the drive's current loop commanded to each current.
    let p = preset("sgmp-02b");
    let peak = locked_output_torque_nm(&p, 8.4);
    let rated = locked_output_torque_nm(&p, 2.7);
    assert!(within(peak, 1.91, 0.05), "peak {peak} N·m");
    assert!(within(rated, 0.637, 0.05), "rated {rated} N·m");
    // characterize's stall is the current-limited peak for this drive.
    let c = characterize(&p);
    assert!(
        within(c.stall_torque_nm, 1.91, 0.05),
        "stall {}",
        c.stall_torque_nm
    );
    // Its no-load speed clears the 4500 rpm maximum speed (voltage headroom).
    assert!(
        c.no_load_speed_rpm > 4500.0,
        "no-load {} rpm",
        c.no_load_speed_rpm
    );
}
