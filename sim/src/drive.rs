//! A simulated drive: the plant model plus the drive firmware's behaviour.
//!
//! The firmware takes current commands off the fieldbus as they arrive, clamps them to its
//! configured limit, sends its sensor sample once per control period, and runs a command
//! watchdog: when no valid command has arrived for the watchdog time, it
//! brakes the axis to a stop with its own velocity loop (a quick stop), then cuts torque, and
//! latches `watchdog_tripped` until the controller acknowledges with a torque-off command.
//!
//! A drive is no part of any service host: the world steps it in lockstep with turmoil's clock,
//! so it keeps running, and its watchdog keeps watching, while its motion host is down. It owns
//! its plant; it does not judge anything (oracles do, on [`SimDrive::truth`]).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use plant_model::{DriveCommand, GroundTruth, Plant, PlantFault};
use services::fieldbus::{DriveCommandFrame, DriveFeedbackFrame, DriveStatus};

use crate::fieldbus::Fieldbus;

/// Fault code the drive reports while its watchdog has tripped.
pub const FAULT_CODE_WATCHDOG: u16 = 0x8130; // CiA 301 "life guard error or heartbeat error"
/// Below this speed a quick stop is complete and torque is cut, rad/s at the output.
pub const QUICK_STOP_SPEED_RAD_PER_S: f64 = 0.01;
/// Bandwidth of the firmware's quick-stop velocity loop, Hz.
const QUICK_STOP_BANDWIDTH_HZ: f64 = 20.0;

/// Something the drive did that belongs in the trace.
#[derive(Debug, Clone, PartialEq)]
pub enum DriveEvent {
    WatchdogTripped { last_command_at: Option<Duration> },
    QuickStopDone,
    WatchdogCleared,
}

/// The drive's configuration, from the scenario's axis.
#[derive(Debug, Clone)]
pub struct DriveConfig {
    pub current_a_max: f64,
    pub watchdog: Duration,
    pub feedback_period: Duration,
    /// The world's sampling period for the oracles: the drive records a [`DriveSample`] at
    /// each multiple of it.
    pub sample_period: Duration,
    /// PLANTED BUG when false (`[planted] drive_ignores_watchdog`): the firmware never trips,
    /// and keeps applying its last command when commands stop. For oracle tests only.
    pub watchdog_enabled: bool,
}

/// The drive at one sample instant, as the world hands it to the oracles.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DriveSample {
    pub t: Duration,
    pub truth: GroundTruth,
    pub status: DriveStatus,
    pub last_command: Option<DriveCommandFrame>,
    pub last_valid_command_at: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// Torque off; nothing commanded yet, or stopped after a watchdog trip.
    Off,
    /// Following fieldbus commands.
    Commanded { current_a: f64 },
    /// Watchdog tripped: the firmware brakes the axis by itself.
    QuickStop,
}

#[derive(Debug)]
pub struct SimDrive {
    config: DriveConfig,
    plant: Plant,
    bus: Rc<RefCell<Fieldbus>>,
    mode: Mode,
    last_valid_command_at: Option<Duration>,
    last_command: Option<DriveCommandFrame>,
    tripped: bool,
    sequence: u32,
    next_feedback_at: Duration,
    next_sample_at: Duration,
    samples: Vec<DriveSample>,
    quick_stop_gain_a_per_rad_per_s: f64,
    plant_faults: Vec<(u64, PlantFault)>,
    events: Vec<(Duration, DriveEvent)>,
    corrupted_commands: u64,
}

impl SimDrive {
    pub fn new(config: DriveConfig, plant: Plant, bus: Rc<RefCell<Fieldbus>>) -> SimDrive {
        let shaft = plant.params().output_shaft();
        // P velocity loop: i = -K v with K = J·ω/Kt places the closed-loop pole at ω.
        let omega = 2.0 * std::f64::consts::PI * QUICK_STOP_BANDWIDTH_HZ;
        let quick_stop_gain = shaft.inertia_kg_m2 * omega / shaft.torque_constant_nm_per_a;
        SimDrive {
            next_feedback_at: config.feedback_period,
            next_sample_at: config.sample_period,
            samples: Vec::new(),
            config,
            plant,
            bus,
            mode: Mode::Off,
            last_valid_command_at: None,
            last_command: None,
            tripped: false,
            sequence: 0,
            quick_stop_gain_a_per_rad_per_s: quick_stop_gain,
            plant_faults: Vec::new(),
            events: Vec::new(),
            corrupted_commands: 0,
        }
    }

    pub fn truth(&self) -> GroundTruth {
        self.plant.truth()
    }

    pub fn status(&self) -> DriveStatus {
        DriveStatus {
            torque_enabled: !matches!(self.mode, Mode::Off),
            watchdog_tripped: self.tripped,
            fault_code: if self.tripped { FAULT_CODE_WATCHDOG } else { 0 },
        }
    }

    pub fn corrupted_commands(&self) -> u64 {
        self.corrupted_commands
    }

    /// Events since the last call, oldest first.
    pub fn drain_events(&mut self) -> Vec<(Duration, DriveEvent)> {
        std::mem::take(&mut self.events)
    }

    /// The samples due at or before the drive's time, oldest first, those not yet taken
    /// included: the world calls it at the end of its tick, once every host has run to it (see
    /// [`SimDrive::advance_to`]).
    pub fn drain_samples(&mut self) -> std::vec::Drain<'_, DriveSample> {
        self.take_samples_through(self.plant.now());
        self.samples.drain(..)
    }

    fn take_samples_through(&mut self, now: Duration) {
        while self.ceil_to_grid(self.next_sample_at) <= now {
            let sample = DriveSample {
                t: self.next_sample_at,
                truth: self.plant.truth(),
                status: self.status(),
                last_command: self.last_command,
                last_valid_command_at: self.last_valid_command_at,
            };
            self.samples.push(sample);
            self.next_sample_at += self.config.sample_period;
        }
    }

    /// Runs the drive over every instant strictly before `t`: what a controller reading its
    /// feedback at `t` may have received by then was sent before `t` (one period of transport
    /// delay, as on a real cyclic fieldbus, whatever the medium's latency). The link calls it at
    /// each read, so a drive keeps pace with its controller inside a coarse turmoil tick.
    pub fn advance_before(&mut self, t: Duration) {
        let step = Duration::from_nanos(self.step_ns());
        let before = self.ceil_to_grid(t).saturating_sub(step);
        if before >= self.plant.now() {
            self.advance_to(before);
        }
    }

    /// Starts a plant fault; `id` names it for [`SimDrive::end_fault`].
    pub fn start_fault(&mut self, id: u64, fault: PlantFault) {
        self.plant.inject(fault.clone());
        self.plant_faults.push((id, fault));
    }

    /// Ends one plant fault; the others stay active.
    pub fn end_fault(&mut self, id: u64) {
        self.plant_faults.retain(|(k, _)| *k != id);
        self.plant.clear_faults();
        for (_, fault) in &self.plant_faults {
            self.plant.inject(fault.clone());
        }
    }

    /// Runs the drive up to `t`: commands applied when they arrive, feedback sampled on its
    /// period, the watchdog checked at each of those instants.
    ///
    /// The plant lives on its integration grid (`integration.step_ns`), so an event at `τ` takes
    /// effect at the first grid point at or after `τ`: never before it arrives, at most one step
    /// late (100 µs for the presets, a tenth of a 1 kHz control period).
    ///
    /// The drive stops at every sample instant; a sample is recorded when the drive leaves its
    /// instant (or at [`SimDrive::drain_samples`]), so that it holds whatever arrived at that
    /// instant, even a command sent at it with no latency after the drive first got there.
    pub fn advance_to(&mut self, t: Duration) {
        let end = self.floor_to_grid(t);
        loop {
            let now = self.plant.now();
            let watchdog_at = match (self.mode, self.last_valid_command_at) {
                (Mode::Commanded { .. }, Some(at)) if self.config.watchdog_enabled => {
                    Some(at + self.config.watchdog)
                }
                _ => None,
            };
            let command_at = self.bus.borrow().peek_command_at();
            let mut next = end.min(self.ceil_to_grid(self.next_feedback_at).max(now));
            for at in [watchdog_at, command_at].into_iter().flatten() {
                next = next.min(self.ceil_to_grid(at).max(now));
            }
            // A sample due now waits for the drive to leave `now`; one still ahead is a stop.
            let sample_at = self.ceil_to_grid(self.next_sample_at);
            if sample_at > now {
                next = next.min(sample_at);
            }
            if next > now {
                self.take_samples_through(now);
            }
            self.integrate_to(next);
            let now = self.plant.now();
            if watchdog_at.is_some_and(|at| at <= now)
                && matches!(self.mode, Mode::Commanded { .. })
            {
                self.trip(now);
            }
            loop {
                let due = self.bus.borrow_mut().next_command(now);
                let Some((at, frame, corrupted)) = due else {
                    break;
                };
                debug_assert!(at <= now, "a command applied before it arrived");
                self.apply(now, frame, corrupted);
            }
            if self.next_feedback_at <= now {
                self.send_feedback(now);
                self.next_feedback_at += self.config.feedback_period;
            }
            if now >= end {
                return;
            }
        }
    }

    fn step_ns(&self) -> u64 {
        self.plant.params().integration.step_ns
    }

    fn floor_to_grid(&self, t: Duration) -> Duration {
        let step = self.step_ns();
        Duration::from_nanos(t.as_nanos() as u64 / step * step)
    }

    fn ceil_to_grid(&self, t: Duration) -> Duration {
        let step = self.step_ns();
        Duration::from_nanos((t.as_nanos() as u64).div_ceil(step) * step)
    }

    /// Integrates the plant to `t`; in quick stop the firmware's velocity loop updates on the
    /// plant's own step so that the brake is as fast as the drive's current loop allows.
    fn integrate_to(&mut self, t: Duration) {
        if self.mode != Mode::QuickStop {
            self.plant.advance_to(t);
            return;
        }
        let step = Duration::from_nanos(self.plant.params().integration.step_ns);
        while self.plant.now() < t && self.mode == Mode::QuickStop {
            let velocity = self.plant.truth().velocity_rad_per_s;
            if velocity.abs() < QUICK_STOP_SPEED_RAD_PER_S {
                self.mode = Mode::Off;
                self.plant.command(DriveCommand::Off);
                self.events
                    .push((self.plant.now(), DriveEvent::QuickStopDone));
                break;
            }
            // The firmware uses its own velocity estimate; the plant's sensor is what it has.
            let measured = self.plant.sensors().velocity_rad_per_s;
            let current = (-self.quick_stop_gain_a_per_rad_per_s * measured)
                .clamp(-self.config.current_a_max, self.config.current_a_max);
            self.plant.command(DriveCommand::Current { amps: current });
            self.plant.advance_to((self.plant.now() + step).min(t));
        }
        self.plant.advance_to(t);
    }

    fn trip(&mut self, now: Duration) {
        self.tripped = true;
        self.mode = Mode::QuickStop;
        self.events.push((
            now,
            DriveEvent::WatchdogTripped {
                last_command_at: self.last_valid_command_at,
            },
        ));
    }

    fn apply(&mut self, now: Duration, frame: DriveCommandFrame, corrupted: bool) {
        if corrupted {
            // A frame that fails its CRC is discarded; it does not feed the watchdog.
            self.corrupted_commands += 1;
            return;
        }
        self.last_valid_command_at = Some(now);
        self.last_command = Some(frame);
        if self.tripped {
            // Latched until the controller acknowledges with torque off (fault reset).
            if !frame.torque_enabled {
                self.tripped = false;
                self.events.push((now, DriveEvent::WatchdogCleared));
                if self.mode == Mode::QuickStop {
                    self.mode = Mode::Off;
                    self.plant.command(DriveCommand::Off);
                }
            }
            return;
        }
        if frame.torque_enabled {
            let current_a = frame
                .current_a
                .clamp(-self.config.current_a_max, self.config.current_a_max);
            self.mode = Mode::Commanded { current_a };
            self.plant
                .command(DriveCommand::Current { amps: current_a });
        } else {
            self.mode = Mode::Off;
            self.plant.command(DriveCommand::Off);
        }
    }

    fn send_feedback(&mut self, now: Duration) {
        let sensors = self.plant.sensors();
        self.sequence = self.sequence.wrapping_add(1);
        let frame = DriveFeedbackFrame {
            sequence: self.sequence,
            position_rad: sensors.position_rad,
            velocity_rad_per_s: sensors.velocity_rad_per_s,
            current_a: sensors.current_a,
            winding_temperature_c: sensors.winding_temperature_c,
            status: self.status(),
            valid: sensors.valid,
        };
        self.bus.borrow_mut().send_feedback(now, frame);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plant_model::AxisParams;
    use rand_core::SeedableRng;

    const PERIOD: Duration = Duration::from_millis(1);

    /// A P position loop on the fieldbus for `periods` control periods, the world's tick being
    /// `tick_periods` of them: per period the controller reads its feedback and sends a command
    /// (as the motion host does inside a turmoil step); the world runs the drive to the tick's
    /// end only at the end of each tick. Returns what the controller read and what the world
    /// sampled. Without `run_at_reads`, only the world runs the drive.
    fn run(
        tick_periods: u64,
        run_at_reads: bool,
    ) -> (Vec<Option<DriveFeedbackFrame>>, Vec<DriveSample>) {
        let mut medium = Fieldbus::new(
            Duration::from_micros(50),
            0.05,
            0.05,
            rand_chacha::ChaCha8Rng::seed_from_u64(11),
        );
        medium.faults.latency_extra = Duration::from_micros(120);
        let bus = Rc::new(RefCell::new(medium));
        let plant = Plant::new(
            AxisParams::preset("xm430-w350").expect("preset"),
            rand_chacha::ChaCha8Rng::seed_from_u64(12),
        );
        let config = DriveConfig {
            current_a_max: 1.0,
            watchdog: Duration::from_millis(20),
            feedback_period: PERIOD,
            sample_period: PERIOD,
            watchdog_enabled: true,
        };
        let mut drive = SimDrive::new(config, plant, bus.clone());
        let (mut read, mut samples) = (Vec::new(), Vec::new());
        let mut position_rad = 0.0;
        for k in 1..=400u32 {
            let now = PERIOD * k;
            if run_at_reads {
                drive.advance_before(now);
            }
            let feedback = bus.borrow_mut().latest_feedback(now);
            if let Some(f) = feedback.filter(|f| f.valid) {
                position_rad = f.position_rad;
            }
            read.push(feedback);
            // Silence between 150 and 200 ms trips the watchdog; torque off clears it.
            if !(150..200).contains(&k) {
                let command = DriveCommandFrame {
                    sequence: k,
                    current_a: (4.0 * (0.5 - position_rad)).clamp(-1.0, 1.0),
                    torque_enabled: k != 200,
                    position_setpoint_rad: 0.5,
                    moving: true,
                };
                bus.borrow_mut().send_command(now, command);
            }
            if u64::from(k).is_multiple_of(tick_periods) {
                drive.advance_to(now);
                samples.extend(drive.drain_samples());
            }
        }
        (read, samples)
    }

    // Goal: a drive read at every control instant inside a coarse tick, and run to the tick's
    // end only then, behaves exactly as one the world runs at every control period: the same
    // feedback reaches the controller, the world samples the same states at the same instants,
    // and the medium draws its losses and corruptions in the same order.
    #[test]
    fn a_coarse_tick_changes_nothing_between_controller_and_drive() {
        let (read, samples) = run(1, true);
        assert_eq!(samples.len(), 400);
        assert!(samples.iter().any(|s| s.status.watchdog_tripped));
        assert!(read.iter().filter(|f| f.is_some()).count() > 300);
        for tick_periods in [2, 4, 5] {
            assert_eq!(
                run(tick_periods, true),
                (read.clone(), samples.clone()),
                "tick of {tick_periods}"
            );
        }
    }

    // Goal: the check above can fail: with the drive run only at the tick's end (as before
    // reads ran it), a coarse tick feeds the controller stale feedback and the runs differ.
    #[test]
    fn without_runs_at_reads_a_coarse_tick_is_seen() {
        let (read, _) = run(1, true);
        let (stale, _) = run(5, false);
        assert_ne!(stale, read);
        let fresh = |r: &[Option<DriveFeedbackFrame>]| r.iter().filter(|f| f.is_some()).count();
        assert!(
            fresh(&stale) < fresh(&read) / 3,
            "{} against {}",
            fresh(&stale),
            fresh(&read)
        );
    }
}
