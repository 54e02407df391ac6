//! One axis in closed loop: a `plant-model` plant driven by an `AxisController` at the control
//! rate, in lockstep on integer nanoseconds. Shared by the closed-loop tests and the benchmark.
//!
//! Each tick at `t`: advance the plant to `t`, read its sensors (what the controller sees),
//! step the controller, and hold its command until the next tick. Oracles read
//! `plant.truth()`, never the sensors.

use core::time::Duration;

use control::{AxisCommand, AxisConfig, AxisController, Feedback};
use plant_model::{AxisParams, DriveCommand, Plant};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

pub(crate) struct Rig {
    pub(crate) plant: Plant,
    pub(crate) axis: AxisController,
    pub(crate) period_ns: u64,
    pub(crate) now_ns: u64,
    /// Whether the commanding side's link delivers: fed to the watchdog.
    pub(crate) command_link_ok: bool,
    pub(crate) last_command: AxisCommand,
}

impl Rig {
    pub(crate) fn new(params: AxisParams, config: AxisConfig, period_ns: u64, seed: u64) -> Rig {
        let mut noise = ChaCha8Rng::seed_from_u64(seed);
        noise.set_stream(1);
        let mut rig = Rig {
            plant: Plant::new(params, noise),
            axis: AxisController::new(config),
            period_ns,
            now_ns: 0,
            command_link_ok: true,
            last_command: AxisCommand::OFF,
        };
        // One tick with torque off so the controller has feedback before it is enabled.
        rig.tick();
        rig
    }

    pub(crate) fn t_s(&self) -> f64 {
        self.now_ns as f64 * 1e-9
    }

    pub(crate) fn feedback(&self) -> Feedback {
        let s = self.plant.sensors();
        Feedback {
            position_rad: s.position_rad,
            velocity_rad_per_s: s.velocity_rad_per_s,
            current_a: s.current_a,
            winding_temperature_c: s.winding_temperature_c,
            valid: s.valid,
            // The sensors sample on their own period: the index of the sample read now.
            sample_index: (self.now_ns / self.plant.params().sensor.sample_period_ns) as u32,
        }
    }

    /// Steps the controller at the current time and applies its command.
    pub(crate) fn tick(&mut self) -> AxisCommand {
        self.plant.advance_to(Duration::from_nanos(self.now_ns));
        let feedback = self.feedback();
        let command = self.axis.step(self.t_s(), &feedback, self.command_link_ok);
        self.apply(command);
        command
    }

    /// Sends `command` to the drive (torque off unless enabled).
    pub(crate) fn apply(&mut self, command: AxisCommand) {
        self.last_command = command;
        self.plant.command(if command.torque_enabled {
            DriveCommand::Current {
                amps: command.current_a,
            }
        } else {
            DriveCommand::Off
        });
    }

    /// Advances one period and ticks.
    pub(crate) fn advance(&mut self) -> AxisCommand {
        self.now_ns += self.period_ns;
        self.tick()
    }
}
