//! What the drive reports: quantisation, delay, velocity estimates, load profile in params.

use crate::support::{plant, preset, run_ms};
use core::time::Duration;
use plant_model::{DriveCommand, LoadTorquePoint, VelocitySource};

const TAU: f64 = core::f64::consts::TAU;

#[test]
fn position_is_the_floor_of_the_encoder_count() {
    // Goal: the reported position is the true output angle quantised down to whole counts.
    // Method: sample a moving xm430 every millisecond; each reading equals floor(θ·4096/2π)
    // counts of the truth at the same instant.
    let mut plant = plant(preset("xm430-w350"), 1);
    plant.command(DriveCommand::Current { amps: 0.8 });
    for _ in 0..300 {
        run_ms(&mut plant, 1);
        let counts = (plant.truth().position_rad * 4096.0 / TAU).floor();
        assert_eq!(plant.sensors().position_rad, counts * TAU / 4096.0);
    }
    assert!(plant.truth().position_rad > 0.5, "the axis must have moved");
}

#[test]
fn current_reading_is_one_sample_late_and_on_the_lsb() {
    // Goal: the current measurement is quantised to 2.69 mA and reported one sample (1 ms)
    // late. Method: noise off; a current step at t = 10 ms shows in the reading at 12 ms (sampled
    // at 11 ms), not at 11 ms; every reading is a whole number of LSBs.
    let mut p = preset("xm430-w350");
    p.sensor.current_noise_a = 0.0;
    let mut plant = plant(p, 2);
    run_ms(&mut plant, 10);
    plant.command(DriveCommand::Current { amps: 1.0 });
    run_ms(&mut plant, 1);
    assert_eq!(plant.sensors().current_a, 0.0, "the step must not show yet");
    let at_11ms = plant.truth().current_a;
    run_ms(&mut plant, 1);
    let reading = plant.sensors().current_a;
    assert_eq!(reading, (at_11ms / 2.69e-3).round() * 2.69e-3);
    assert!((reading - 1.0).abs() < 0.01, "{reading}");
}

#[test]
fn current_noise_has_the_configured_spread() {
    // Goal: the seeded Gaussian noise has the configured standard deviation. Method: axis at
    // rest with no current, noise 20 mA; 2000 readings' standard deviation within 10 %.
    let mut p = preset("sgmp-02b");
    p.sensor.current_noise_a = 0.02;
    p.sensor.current_lsb_a = 0.0;
    let mut plant = plant(p, 3);
    let mut readings = Vec::new();
    for _ in 0..2000 {
        run_ms(&mut plant, 1);
        readings.push(plant.sensors().current_a);
    }
    let n = readings.len() as f64;
    let mean = readings.iter().sum::<f64>() / n;
    let sd = (readings
        .iter()
        .map(|r| (r - mean) * (r - mean))
        .sum::<f64>()
        / n)
        .sqrt();
    assert!((sd - 0.02).abs() < 0.002, "sd {sd}");
}

#[test]
fn velocity_from_the_encoder_difference() {
    // Goal: with velocity = "encoder_difference" the reported velocity is the count change over
    // the sample period. Method: consecutive readings of a moving sgmp-02b.
    let p = preset("sgmp-02b");
    assert_eq!(p.sensor.velocity, VelocitySource::EncoderDifference);
    let mut plant = plant(p, 4);
    plant.command(DriveCommand::Current { amps: 2.0 });
    run_ms(&mut plant, 20);
    for _ in 0..20 {
        let before = plant.sensors().position_rad;
        run_ms(&mut plant, 1);
        let r = plant.sensors();
        assert!(((r.position_rad - before) / 1e-3 - r.velocity_rad_per_s).abs() < 1e-6);
    }
    assert!(plant.sensors().velocity_rad_per_s > 10.0);
}

#[test]
fn velocity_as_the_drive_reports_it() {
    // Goal: with velocity = "drive" the reading is the mean true velocity over the sample,
    // quantised to the XM430's 0.229 rpm LSB. Method: compare with the true angle change.
    let p = preset("xm430-w350");
    let lsb = p.sensor.velocity_lsb_rad_per_s;
    let mut plant = plant(p, 5);
    plant.command(DriveCommand::Current { amps: 1.0 });
    run_ms(&mut plant, 50);
    for _ in 0..20 {
        let before = plant.truth().position_rad;
        run_ms(&mut plant, 1);
        let mean = (plant.truth().position_rad - before) / 1e-3;
        let reported = plant.sensors().velocity_rad_per_s;
        assert_eq!(reported, (mean / lsb).round() * lsb);
    }
}

#[test]
fn load_profile_from_params_applies_at_its_times() {
    // Goal: a piecewise-constant load profile in the parameters adds to the load at its times.
    // Method: a 1.5 N·m step at 0.2 s and its removal at 0.4 s, read from the ground truth, and
    // its effect on speed.
    let mut p = preset("xm430-w350");
    p.load.torque_profile = vec![
        LoadTorquePoint {
            at_s: 0.2,
            torque_nm: 1.5,
        },
        LoadTorquePoint {
            at_s: 0.4,
            torque_nm: 0.0,
        },
    ];
    let mut plant = plant(p, 6);
    plant.command(DriveCommand::Current { amps: 1.5 });
    plant.advance_to(Duration::from_millis(199));
    assert_eq!(plant.truth().load_torque_nm, 0.0);
    let before = plant.truth().velocity_rad_per_s;
    plant.advance_to(Duration::from_millis(300));
    assert_eq!(plant.truth().load_torque_nm, 1.5);
    assert!(plant.truth().velocity_rad_per_s < 0.8 * before);
    plant.advance_to(Duration::from_millis(401));
    assert_eq!(plant.truth().load_torque_nm, 0.0);
}
