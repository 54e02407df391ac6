//! A simulated drive: the plant model plus the drive firmware's behaviour.
//!
//! The firmware takes current commands off the fieldbus as they arrive, clamps them to its
//! configured limit, sends its sensor sample once per control period, and runs two monitors of
//! its own, so that an axis whose controller is gone stops inside its limits whatever its speed:
//!
//! - a **command watchdog**: no valid command for the watchdog time;
//! - **following-error monitoring** (CiA 402 *following error window* 0x6065 and *time-out*
//!   0x6066) against the position setpoint each command frame carries: the drive's own
//!   encoder further than the window from the last setpoint for longer than the time-out,
//!   checked at each feedback instant. The setpoint it compares with is one period old (it
//!   was the controller's reference when sent), so the window must exceed a period's travel at
//!   full speed; it is the axis's following-error limit.
//!
//! Either trip starts the drive's **own stop** and latches its fault code until the controller
//! acknowledges with a torque-off command (a fault reset), as CiA 402 drives do:
//!
//! 1. a quick stop (CiA 402 quick stop, *quick stop deceleration* 0x6085): the firmware's
//!    position/velocity loop tracks a constant-deceleration ramp from the speed at the trip to
//!    rest (`quick_stop_deceleration_rad_per_s2`, see [`DriveConfig`]);
//! 2. at rest (ramp done and below [`QUICK_STOP_SPEED_RAD_PER_S`]), what holds the axis
//!    against an external load: with a holding brake (`drive.holding_brake_nm` > 0), the brake
//!    is applied and torque cut (STO with the brake: IEC 61800-5-2 SBC); without one, the loop
//!    keeps holding the stop position with torque on (SS2, safe operating stop). A braked axis
//!    that moves all the same (a load above the brake's holding torque) is caught by the
//!    firmware's standstill monitor and held under control (SS2) from then on. The brake is
//!    released only when a torque-on command arrives.
//!
//! A drive is no part of any service host: the world steps it in lockstep with turmoil's clock,
//! so it keeps running, and its monitors keep watching, while its motion host is down. It owns
//! its plant; it does not judge anything (oracles do, on [`SimDrive::truth`]).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use plant_model::{DriveCommand, GroundTruth, Plant, PlantFault};
use services::fieldbus::{DriveCommandFrame, DriveFeedbackFrame, DriveStatus};

use crate::fieldbus::Fieldbus;

/// Fault code the drive reports while its watchdog has tripped.
pub const FAULT_CODE_WATCHDOG: u16 = 0x8130; // CiA 301 "life guard error or heartbeat error"
/// Fault code the drive reports after its following-error monitor tripped.
pub const FAULT_CODE_FOLLOWING_ERROR: u16 = 0x8611; // CiA 402 "following error"
/// Below this speed a quick stop is complete, rad/s at the output.
pub const QUICK_STOP_SPEED_RAD_PER_S: f64 = 0.01;
/// The drive's quick-stop deceleration as a fraction of what its current limit gives the bare
/// axis (`K_t·I_max/J`): the rest is headroom for an external load that pushes the other way
/// (the presets' loads stay below half their peak torque).
pub const QUICK_STOP_TORQUE_FRACTION: f64 = 0.5;
/// Bandwidth of the firmware's stop-and-hold velocity loop, Hz.
pub const STOP_LOOP_BANDWIDTH_HZ: f64 = 20.0;
/// The position loop's gain as a fraction of the velocity loop's bandwidth (rad/s).
const POSITION_GAIN_FRACTION: f64 = 0.25;
/// The velocity integral's gain, as a fraction of the bandwidth squared.
const INTEGRAL_GAIN_FRACTION: f64 = 0.25;
/// How long after its ramp's end the stop loop may take to settle below
/// [`QUICK_STOP_SPEED_RAD_PER_S`]: about three time constants of the triple pole.
pub const STOP_SETTLE_ALLOWANCE: Duration = Duration::from_millis(60);

/// Something the drive did that belongs in the trace.
#[derive(Debug, Clone, PartialEq)]
pub enum DriveEvent {
    WatchdogTripped {
        last_command_at: Option<Duration>,
    },
    FollowingErrorTripped {
        error_rad: f64,
    },
    /// The own stop reached rest; `braked`: the holding brake now holds it, else the loop (SS2).
    QuickStopDone {
        braked: bool,
    },
    /// A braked axis moved: the loop holds it from now on.
    BrakeSlipped,
    WatchdogCleared,
}

/// The drive's configuration, from the scenario's axis.
#[derive(Debug, Clone)]
pub struct DriveConfig {
    pub current_a_max: f64,
    pub watchdog: Duration,
    /// CiA 402 0x6065: the largest distance between the drive's encoder and the last received
    /// setpoint, rad (the axis's following-error limit).
    pub following_error_window_rad: f64,
    /// CiA 402 0x6066: how long the window may be exceeded before the drive stops the axis.
    pub following_error_time_out: Duration,
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

/// The drive's own stop: a ramp to rest from `start_velocity_rad_per_s`, then holding.
#[derive(Debug, Clone, Copy, PartialEq)]
struct OwnStop {
    started_at: Duration,
    start_position_rad: f64,
    start_velocity_rad_per_s: f64,
    /// Integral of the velocity error, rad (integrates once the ramp is done).
    integral_rad_s: f64,
    /// Where the axis is held once the ramp is done (the measured position then).
    hold_position_rad: Option<f64>,
    /// Reported `QuickStopDone`.
    at_rest: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// Torque off; nothing commanded yet, or commanded off.
    Off,
    /// Following fieldbus commands.
    Commanded { current_a: f64 },
    /// A monitor tripped: the firmware stops the axis by itself, then holds it (SS2).
    OwnStop(OwnStop),
    /// Stopped and held by the holding brake, torque off.
    Braked,
}

#[derive(Debug)]
pub struct SimDrive {
    config: DriveConfig,
    plant: Plant,
    bus: Rc<RefCell<Fieldbus>>,
    mode: Mode,
    last_valid_command_at: Option<Duration>,
    last_command: Option<DriveCommandFrame>,
    /// The latched fault code of the own stop (0: none).
    fault_code: u16,
    /// Since when the encoder has been outside the following-error window.
    following_error_since: Option<Duration>,
    /// The brake is applied (only with a brake).
    brake_applied: bool,
    sequence: u32,
    next_feedback_at: Duration,
    next_sample_at: Duration,
    samples: Vec<DriveSample>,
    /// Output inertia over output torque constant, A per rad/s²: the loop's current scale.
    current_a_per_rad_per_s2: f64,
    quick_stop_deceleration_rad_per_s2: f64,
    holding_brake_nm: f64,
    plant_faults: Vec<(u64, PlantFault)>,
    events: Vec<(Duration, DriveEvent)>,
    corrupted_commands: u64,
}

impl SimDrive {
    pub fn new(config: DriveConfig, plant: Plant, bus: Rc<RefCell<Fieldbus>>) -> SimDrive {
        let shaft = plant.params().output_shaft();
        let holding_brake_nm = plant.params().drive.holding_brake_nm;
        let current_a_per_rad_per_s2 = shaft.inertia_kg_m2 / shaft.torque_constant_nm_per_a;
        let quick_stop_deceleration_rad_per_s2 =
            QUICK_STOP_TORQUE_FRACTION * config.current_a_max / current_a_per_rad_per_s2;
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
            fault_code: 0,
            following_error_since: None,
            brake_applied: false,
            sequence: 0,
            current_a_per_rad_per_s2,
            quick_stop_deceleration_rad_per_s2,
            holding_brake_nm,
            plant_faults: Vec::new(),
            events: Vec::new(),
            corrupted_commands: 0,
        }
    }

    pub fn truth(&self) -> GroundTruth {
        self.plant.truth()
    }

    /// The deceleration of the drive's own stop (CiA 402 0x6085), rad/s².
    pub fn quick_stop_deceleration_rad_per_s2(&self) -> f64 {
        self.quick_stop_deceleration_rad_per_s2
    }

    pub fn status(&self) -> DriveStatus {
        DriveStatus {
            torque_enabled: matches!(self.mode, Mode::Commanded { .. } | Mode::OwnStop(_)),
            watchdog_tripped: self.fault_code == FAULT_CODE_WATCHDOG,
            fault_code: self.fault_code,
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

    /// Ends one plant fault; the others (and an applied brake) stay active.
    pub fn end_fault(&mut self, id: u64) {
        self.plant_faults.retain(|(k, _)| *k != id);
        self.plant.clear_faults();
        for (_, fault) in &self.plant_faults {
            self.plant.inject(fault.clone());
        }
        if self.brake_applied {
            self.apply_brake();
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
                self.events.push((
                    now,
                    DriveEvent::WatchdogTripped {
                        last_command_at: self.last_valid_command_at,
                    },
                ));
                self.start_own_stop(now, FAULT_CODE_WATCHDOG);
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
                self.monitor_following_error(now);
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

    /// Integrates the plant to `t`; during its own stop the firmware's loop updates on the
    /// plant's own step (as fast as the drive's current loop allows), and a braked axis is
    /// watched for slipping on the same step.
    fn integrate_to(&mut self, t: Duration) {
        if !matches!(self.mode, Mode::OwnStop(_) | Mode::Braked) {
            self.plant.advance_to(t);
            return;
        }
        let step = Duration::from_nanos(self.plant.params().integration.step_ns);
        while self.plant.now() < t {
            let now = self.plant.now();
            match self.mode {
                Mode::OwnStop(stop) => self.stop_loop(now, stop),
                Mode::Braked => {
                    // The firmware's standstill monitor: a braked axis must not move.
                    if self.plant.sensors().velocity_rad_per_s.abs() >= QUICK_STOP_SPEED_RAD_PER_S {
                        self.release_brake();
                        self.events.push((now, DriveEvent::BrakeSlipped));
                        self.mode = Mode::OwnStop(OwnStop {
                            started_at: now,
                            start_position_rad: self.plant.sensors().position_rad,
                            start_velocity_rad_per_s: 0.0,
                            integral_rad_s: 0.0,
                            hold_position_rad: Some(self.plant.sensors().position_rad),
                            at_rest: true,
                        });
                        continue;
                    }
                }
                _ => break,
            }
            self.plant.advance_to((now + step).min(t));
        }
        self.plant.advance_to(t);
    }

    /// One step of the stop-and-hold loop on the drive's own sensors, tracking the ramp; at
    /// rest, the brake if the axis has one.
    fn stop_loop(&mut self, now: Duration, mut stop: OwnStop) {
        let d = self.quick_stop_deceleration_rad_per_s2;
        let v0 = stop.start_velocity_rad_per_s;
        let ramp_s = v0.abs() / d;
        let tau_s = (now - stop.started_at).as_secs_f64();
        let (position_ref, velocity_ref, acceleration_ref) = if tau_s < ramp_s {
            let a = -d * v0.signum();
            (
                stop.start_position_rad + v0 * tau_s + 0.5 * a * tau_s * tau_s,
                v0 + a * tau_s,
                a,
            )
        } else {
            (stop.start_position_rad + 0.5 * v0 * ramp_s, 0.0, 0.0)
        };
        let sensors = self.plant.sensors();
        let velocity = sensors.velocity_rad_per_s;
        let ramp_done = tau_s >= ramp_s;
        if ramp_done && stop.hold_position_rad.is_none() {
            // Hold where the ramp left the axis, not where an ideal ramp would have: no
            // creeping back over its tracking lag.
            stop.hold_position_rad = Some(sensors.position_rad);
        }
        let position_ref = stop.hold_position_rad.unwrap_or(position_ref);
        // One count of deadband: the true position lies between counts, and correcting the
        // quantisation would make the hold limit-cycle between two of them.
        let count_rad =
            std::f64::consts::TAU / f64::from(self.plant.params().sensor.encoder_counts_per_rev);
        let raw_error_rad = position_ref - sensors.position_rad;
        let error_rad = if ramp_done {
            raw_error_rad.signum() * (raw_error_rad.abs() - count_rad).max(0.0)
        } else {
            raw_error_rad
        };
        if ramp_done && !stop.at_rest && velocity.abs() < QUICK_STOP_SPEED_RAD_PER_S {
            stop.at_rest = true;
            let braked = self.holding_brake_nm > 0.0;
            self.events
                .push((now, DriveEvent::QuickStopDone { braked }));
            if braked {
                self.brake_applied = true;
                self.apply_brake();
                self.plant.command(DriveCommand::Off);
                self.mode = Mode::Braked;
                return;
            }
        }
        // Cascade: position P into a velocity PI, with the ramp's velocity and acceleration fed
        // forward; gains low enough that one encoder count of error asks for less torque than
        // the axis's own friction, so holding does not limit-cycle on the quantisation.
        let omega = 2.0 * std::f64::consts::PI * STOP_LOOP_BANDWIDTH_HZ;
        let velocity_command = velocity_ref + POSITION_GAIN_FRACTION * omega * error_rad;
        let velocity_error = velocity_command - velocity;
        if ramp_done {
            stop.integral_rad_s +=
                velocity_error * self.plant.params().integration.step_ns as f64 * 1e-9;
        }
        let acceleration = acceleration_ref
            + omega * velocity_error
            + INTEGRAL_GAIN_FRACTION * omega * omega * stop.integral_rad_s;
        let current = (self.current_a_per_rad_per_s2 * acceleration)
            .clamp(-self.config.current_a_max, self.config.current_a_max);
        self.plant.command(DriveCommand::Current { amps: current });
        self.mode = Mode::OwnStop(stop);
    }

    fn apply_brake(&mut self) {
        self.plant.inject(PlantFault::Brake {
            torque_nm: self.holding_brake_nm,
        });
    }

    fn release_brake(&mut self) {
        if !self.brake_applied {
            return;
        }
        self.brake_applied = false;
        self.plant.clear_faults();
        for (_, fault) in &self.plant_faults {
            self.plant.inject(fault.clone());
        }
    }

    /// A monitor tripped at `now`: latch `fault_code` and stop the axis from where it is.
    fn start_own_stop(&mut self, now: Duration, fault_code: u16) {
        self.fault_code = fault_code;
        let sensors = self.plant.sensors();
        self.mode = Mode::OwnStop(OwnStop {
            started_at: now,
            start_position_rad: sensors.position_rad,
            start_velocity_rad_per_s: sensors.velocity_rad_per_s,
            integral_rad_s: 0.0,
            hold_position_rad: None,
            at_rest: false,
        });
    }

    /// CiA 402 following-error monitoring (module docs), while the drive follows commands.
    fn monitor_following_error(&mut self, now: Duration) {
        let setpoint = match (self.mode, self.last_command) {
            (Mode::Commanded { .. }, Some(frame)) if frame.torque_enabled => {
                frame.position_setpoint_rad
            }
            _ => {
                self.following_error_since = None;
                return;
            }
        };
        let error_rad = self.plant.sensors().position_rad - setpoint;
        if error_rad.abs() <= self.config.following_error_window_rad {
            self.following_error_since = None;
            return;
        }
        let since = *self.following_error_since.get_or_insert(now);
        if now - since >= self.config.following_error_time_out {
            self.following_error_since = None;
            self.events
                .push((now, DriveEvent::FollowingErrorTripped { error_rad }));
            self.start_own_stop(now, FAULT_CODE_FOLLOWING_ERROR);
        }
    }

    fn apply(&mut self, now: Duration, frame: DriveCommandFrame, corrupted: bool) {
        if corrupted {
            // A frame that fails its CRC is discarded; it does not feed the watchdog.
            self.corrupted_commands += 1;
            return;
        }
        self.last_valid_command_at = Some(now);
        self.last_command = Some(frame);
        if self.fault_code != 0 {
            // Latched until the controller acknowledges with torque off (fault reset).
            if !frame.torque_enabled {
                self.fault_code = 0;
                self.events.push((now, DriveEvent::WatchdogCleared));
                if matches!(self.mode, Mode::OwnStop(_)) {
                    self.mode = Mode::Off;
                    self.plant.command(DriveCommand::Off);
                }
                // A braked axis stays braked until torque is commanded on.
                if self.mode == Mode::Braked {
                    self.mode = Mode::Off;
                }
            }
            return;
        }
        if frame.torque_enabled {
            self.release_brake();
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
            // The loop starts 0.5 rad from its setpoint: a window that lets the watchdog trip.
            following_error_window_rad: 10.0,
            following_error_time_out: Duration::ZERO,
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
