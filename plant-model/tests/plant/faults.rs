//! Every plant fault, shown acting on the axis, and ending with `clear_faults`.

use crate::support::{plant, preset, run_ms};
use plant_model::{DriveCommand, PlantFault};

const TAU: f64 = core::f64::consts::TAU;

#[test]
fn encoder_glitch_offsets_the_reported_position_only() {
    // Goal: a glitch shifts the reported position by its counts while the shaft does not move,
    // and clearing it removes the shift. Method: axis at rest; compare readings and truth.
    let mut plant = plant(preset("xm430-w350"), 1);
    run_ms(&mut plant, 5);
    let before = plant.sensors().position_rad;
    plant.inject(PlantFault::EncoderGlitch { offset_counts: 100 });
    run_ms(&mut plant, 5);
    let during = plant.sensors().position_rad;
    assert!(
        (during - before - 100.0 * TAU / 4096.0).abs() < 1e-12,
        "{before} → {during}"
    );
    assert_eq!(plant.truth().position_rad, 0.0);
    plant.clear_faults();
    run_ms(&mut plant, 5);
    assert_eq!(plant.sensors().position_rad, before);
}

#[test]
fn encoder_dropout_freezes_position_and_invalidates() {
    // Goal: during a dropout the reading is marked invalid and its position frozen while the
    // axis keeps moving; afterwards readings are valid and current again. Method: a moving axis.
    let mut plant = plant(preset("xm430-w350"), 2);
    plant.command(DriveCommand::Current { amps: 1.0 });
    run_ms(&mut plant, 100);
    plant.inject(PlantFault::EncoderDropout);
    run_ms(&mut plant, 1);
    let frozen = plant.sensors();
    assert!(!frozen.valid);
    run_ms(&mut plant, 50);
    let later = plant.sensors();
    assert!(!later.valid);
    assert_eq!(later.position_rad, frozen.position_rad);
    assert!(
        plant.truth().position_rad > frozen.position_rad + 0.05,
        "axis kept moving"
    );
    plant.clear_faults();
    run_ms(&mut plant, 1);
    let back = plant.sensors();
    assert!(back.valid);
    assert!((back.position_rad - plant.truth().position_rad).abs() <= TAU / 4096.0);
}

#[test]
fn load_step_slows_the_axis() {
    // Goal: a load-torque step opposes the motion. Method: two axes at the same current; one
    // gets a 2 N·m load step; its speed must fall well below the other's.
    let mut free = plant(preset("xm430-w350"), 3);
    let mut loaded = plant(preset("xm430-w350"), 3);
    for p in [&mut free, &mut loaded] {
        p.command(DriveCommand::Current { amps: 1.5 });
        run_ms(p, 200);
    }
    loaded.inject(PlantFault::LoadStep { torque_nm: 2.0 });
    run_ms(&mut free, 200);
    run_ms(&mut loaded, 200);
    let (wf, wl) = (
        free.truth().velocity_rad_per_s,
        loaded.truth().velocity_rad_per_s,
    );
    assert!(wl < 0.6 * wf, "loaded {wl} vs free {wf}");
    assert_eq!(loaded.truth().load_torque_nm, 2.0);
}

#[test]
fn torque_loss_scales_the_motor_torque() {
    // Goal: TorqueLoss{0.5} halves the torque at a given current; full loss leaves none.
    // Method: locked output (brake) with a current command; the lock's reaction torque.
    let held = |fault: Option<PlantFault>| {
        let mut p = plant(preset("sgmp-02b"), 4);
        p.inject(PlantFault::Brake { torque_nm: 1e6 });
        if let Some(f) = fault {
            p.inject(f);
        }
        p.command(DriveCommand::Current { amps: 4.0 });
        run_ms(&mut p, 30);
        p.truth().brake_torque_nm
    };
    let full = held(None);
    let half = held(Some(PlantFault::TorqueLoss { fraction: 0.5 }));
    let none = held(Some(PlantFault::TorqueLoss { fraction: 1.0 }));
    assert!((half / full - 0.5).abs() < 1e-3, "{half} vs {full}");
    assert!(none.abs() < 1e-9 * full, "{none}");
}

#[test]
fn torque_loss_ends_with_clear_faults() {
    // Goal: clearing restores the motor. Method: total loss while accelerating stalls the
    // acceleration; after clearing, the axis accelerates again.
    let mut p = plant(preset("xm430-w350"), 5);
    p.command(DriveCommand::Current { amps: 1.0 });
    p.inject(PlantFault::TorqueLoss { fraction: 1.0 });
    run_ms(&mut p, 100);
    assert!(p.truth().velocity_rad_per_s.abs() < 1e-9);
    p.clear_faults();
    run_ms(&mut p, 100);
    assert!(p.truth().velocity_rad_per_s > 1.0);
}

#[test]
fn brake_holds_when_strong_and_slips_when_weak() {
    // Goal: the brake sticks while the torque it must hold is within its rating and slides
    // against the motion beyond it. Method: xm430 pushing ~2.6 N·m (1.5 A); a 5 N·m brake holds
    // the axis still with the full motor torque on it, a 1 N·m brake only slows it.
    let mut strong = plant(preset("xm430-w350"), 6);
    strong.inject(PlantFault::Brake { torque_nm: 5.0 });
    strong.command(DriveCommand::Current { amps: 1.5 });
    run_ms(&mut strong, 300);
    let t = strong.truth();
    assert_eq!(t.velocity_rad_per_s, 0.0);
    assert!(t.position_rad.abs() < 1e-6, "{t:?}");
    assert!((t.brake_torque_nm - 1.5 * 1.7767).abs() < 0.01, "{t:?}");

    let mut weak = plant(preset("xm430-w350"), 6);
    let mut none = plant(preset("xm430-w350"), 6);
    weak.inject(PlantFault::Brake { torque_nm: 1.0 });
    for p in [&mut weak, &mut none] {
        p.command(DriveCommand::Current { amps: 1.5 });
        run_ms(p, 100);
    }
    let (ww, wn) = (
        weak.truth().velocity_rad_per_s,
        none.truth().velocity_rad_per_s,
    );
    assert!(ww > 0.1 && ww < 0.8 * wn, "weak brake {ww} vs none {wn}");
    assert_eq!(weak.truth().brake_torque_nm, 1.0);
}

#[test]
fn brake_stops_a_moving_axis() {
    // Goal: engaging the brake on a coasting axis stops it and then holds it. Method: spin up,
    // switch the bridge off and engage the brake; the axis must be at rest within 100 ms.
    let mut p = plant(preset("xm430-w350"), 7);
    p.command(DriveCommand::Current { amps: 2.0 });
    run_ms(&mut p, 200);
    p.command(DriveCommand::Off);
    p.inject(PlantFault::Brake { torque_nm: 3.0 });
    run_ms(&mut p, 100);
    assert_eq!(p.truth().velocity_rad_per_s, 0.0);
}

#[test]
fn over_heating_heats_the_winding() {
    // Goal: lost cooling (a hot ambient) drives the winding temperature up towards it, and the
    // reported temperature follows. Method: a gently loaded axis for 600 s (one housing time
    // constant) with and without OverHeating{80 °C}.
    let mut cool = plant(preset("xm430-w350"), 8);
    let mut hot = plant(preset("xm430-w350"), 8);
    hot.inject(PlantFault::OverHeating { ambient_c: 80.0 });
    for p in [&mut cool, &mut hot] {
        p.command(DriveCommand::Current { amps: 0.3 });
        p.set_load_torque_nm(0.4);
        run_ms(p, 600_000);
    }
    let (c, h) = (cool.truth(), hot.truth());
    assert!(
        h.housing_temperature_c > c.housing_temperature_c + 10.0,
        "{h:?} vs {c:?}"
    );
    assert!(h.winding_temperature_c > c.winding_temperature_c + 10.0);
    assert!(hot.sensors().winding_temperature_c > cool.sensors().winding_temperature_c + 10.0);
}

#[test]
fn bus_under_voltage_limits_speed() {
    // Goal: a sagging bus caps the terminal voltage, so the voltage-limited top speed falls and
    // the drive reports the low bus. Method: full current command on the xm430 (voltage
    // limited at speed) at 12 V and at 6 V; the steady speed ratio is about 6/12.
    let mut normal = plant(preset("xm430-w350"), 9);
    let mut sagging = plant(preset("xm430-w350"), 9);
    sagging.inject(PlantFault::BusUnderVoltage { volts: 6.0 });
    for p in [&mut normal, &mut sagging] {
        p.command(DriveCommand::Current { amps: 3.0 });
        run_ms(p, 500);
    }
    let ratio = sagging.truth().velocity_rad_per_s / normal.truth().velocity_rad_per_s;
    assert!((0.35..0.55).contains(&ratio), "speed ratio {ratio}");
    assert_eq!(sagging.sensors().bus_voltage_v, 6.0);
    assert_eq!(sagging.truth().bus_voltage_v, 6.0);
}
