//! The plant (skeleton: API only, physics pending).

use crate::fault::{ActiveFaults, PlantFault};
use crate::params::AxisParams;
use core::time::Duration;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// What the drive is told to do; held until the next command (zero-order hold).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum DriveCommand {
    /// Torque off: bridge disabled, current decays through the freewheel diodes to zero.
    Off,
    /// Raw terminal voltage, clamped to the bus; bypasses the current loop.
    Voltage { volts: f64 },
    /// The drive's current loop tracks this, clamped to the current limit and the bus voltage.
    Current { amps: f64 },
}

/// What a drive reports.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SensorReading {
    pub position_rad: f64,
    pub velocity_rad_per_s: f64,
    pub current_a: f64,
    pub winding_temperature_c: f64,
    pub bus_voltage_v: f64,
    pub valid: bool,
}

/// Cumulative energy accounts since the plant started, J.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct EnergyLedger {
    pub electrical_in_j: f64,
    pub copper_loss_j: f64,
    pub friction_loss_j: f64,
    pub gear_loss_j: f64,
    pub load_work_j: f64,
    pub kinetic_j: f64,
    pub magnetic_j: f64,
}

/// The true state, for oracles.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct GroundTruth {
    pub position_rad: f64,
    pub velocity_rad_per_s: f64,
    pub motor_position_rad: f64,
    pub motor_velocity_rad_per_s: f64,
    pub current_a: f64,
    pub motor_torque_nm: f64,
    pub winding_temperature_c: f64,
    pub housing_temperature_c: f64,
    pub bus_voltage_v: f64,
    pub energy: EnergyLedger,
}

/// One servo axis.
#[derive(Clone, Debug)]
pub struct Plant {
    params: AxisParams,
    noise: ChaCha8Rng,
    command: DriveCommand,
    now_ns: u64,
    faults: ActiveFaults,
    load_torque_nm: f64,
}

impl Plant {
    pub fn new(params: AxisParams, noise: ChaCha8Rng) -> Plant {
        let load_torque_nm = params.load.torque_nm;
        Plant {
            params,
            noise,
            command: DriveCommand::Off,
            now_ns: 0,
            faults: ActiveFaults::default(),
            load_torque_nm,
        }
    }
    pub fn params(&self) -> &AxisParams {
        &self.params
    }
    pub fn command(&mut self, cmd: DriveCommand) {
        self.command = cmd;
    }
    pub fn advance_to(&mut self, t: Duration) {
        let t_ns = u64::try_from(t.as_nanos()).expect("time fits in u64 ns");
        assert!(t_ns >= self.now_ns, "advance_to into the past");
        let step = self.params.integration.step_ns;
        self.now_ns += (t_ns - self.now_ns) / step * step;
        let _ = &mut self.noise;
    }
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.now_ns)
    }
    pub fn sensors(&self) -> SensorReading {
        SensorReading {
            position_rad: 0.0,
            velocity_rad_per_s: 0.0,
            current_a: 0.0,
            winding_temperature_c: self.params.thermal.ambient_c,
            bus_voltage_v: self.params.drive.bus_voltage_v,
            valid: !self.faults.encoder_dropout,
        }
    }
    pub fn truth(&self) -> GroundTruth {
        GroundTruth {
            position_rad: 0.0,
            velocity_rad_per_s: 0.0,
            motor_position_rad: 0.0,
            motor_velocity_rad_per_s: 0.0,
            current_a: 0.0,
            motor_torque_nm: 0.0,
            winding_temperature_c: self.params.thermal.ambient_c,
            housing_temperature_c: self.params.thermal.ambient_c,
            bus_voltage_v: self.params.drive.bus_voltage_v,
            energy: EnergyLedger::default(),
        }
    }
    pub fn inject(&mut self, fault: PlantFault) {
        self.faults.activate(&fault);
    }
    pub fn clear_faults(&mut self) {
        self.faults = ActiveFaults::default();
    }
    pub fn set_load_torque_nm(&mut self, torque_nm: f64) {
        self.load_torque_nm = torque_nm;
    }
}
