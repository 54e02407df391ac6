//! One emulated Dynamixel: the control table's semantics over the plant model, as a pure state
//! machine (time passed in, no I/O). Owns what the firmware does: the operating modes (current,
//! velocity, position, extended and current-based position, PWM), torque enable, the goal and
//! present registers, hardware error status and shutdown, the bus watchdog, Reg Write/Action,
//! Reboot, Factory Reset and Clear. Framing, the serial line and wire time are `bus.rs` and
//! `pty.rs`.
//!
//! The firmware's own loops are kept simple but real: a profile (`control::Trajectory`) towards
//! Goal Position, limited by Profile Velocity/Acceleration or the Velocity Limit, tracked by
//! `control::Cascade` at `FIRMWARE_PERIOD_NS`; velocity mode is the same cascade with the
//! position gain at zero. Not modelled: Drive Mode's reverse direction and time-based profile,
//! indirect addressing, the Moving Status bits beyond "in position".

use std::time::Duration;

use control::{Cascade, CascadeGains, Feedback, PlantConstants, Setpoint};
use control::{Trajectory, TrajectoryLimits};
use plant_model::{AxisParams, DriveCommand, Plant};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

use crate::control_table::{ControlTable, Model, address, hardware_error, operating_mode, unit};
use crate::protocol::instruction::{CLEAR_MULTI_TURN, ResetScope};
use crate::protocol::{ErrorByte, ErrorCode};

/// The firmware's control period: its loops and the present registers update at 1 kHz.
pub const FIRMWARE_PERIOD_NS: u64 = 1_000_000;
/// Velocity-loop bandwidth of the firmware's cascade.
pub const FIRMWARE_VELOCITY_BANDWIDTH_HZ: f64 = 15.0;
/// Acceleration used by the position profile when Profile Acceleration is 0 ("infinite"):
/// bounded so that the cascade is not asked for a step.
pub const PROFILE_ACCELERATION_RAD_PER_S2_DEFAULT: f64 = 60.0;
/// Profile Acceleration unit: 214.577 rev/min².
const PROFILE_ACCELERATION_RAD_PER_S2_PER_UNIT: f64 =
    214.577 * 2.0 * core::f64::consts::PI / 3600.0;

/// What the servo answers to one instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub error: ErrorByte,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
struct Profile {
    trajectory: Trajectory,
    start_s: f64,
}

/// One emulated servo.
#[derive(Debug)]
pub struct EmulatedServo {
    table: ControlTable,
    plant: Plant,
    constants: PlantConstants,
    position_cascade: Cascade,
    velocity_cascade: Cascade,
    profile: Option<Profile>,
    /// Time of the next firmware tick.
    tick_ns: u64,
    /// When the host last addressed this servo (bus watchdog).
    last_contact_ns: u64,
    /// Reg Write waiting for Action.
    registered: Option<(u16, Vec<u8>)>,
    /// Counts added to Present Position by Clear (multi-turn reset).
    turn_offset_counts: i64,
    /// Was torque on at the previous tick (to restart the loops on enable).
    torque_was_on: bool,
}

fn plant_constants(params: &AxisParams) -> PlantConstants {
    let shaft = params.output_shaft();
    PlantConstants {
        inertia_kg_m2: shaft.inertia_kg_m2,
        torque_constant_nm_per_a: shaft.torque_constant_nm_per_a,
        viscous_nm_s_per_rad: shaft.viscous_nm_s_per_rad,
        coulomb_nm: shaft.coulomb_nm,
        current_a_max: shaft.current_a_max,
    }
}

impl EmulatedServo {
    /// A servo with factory settings and the given ID. `seed` seeds the plant's sensor noise.
    pub fn new(model: Model, id: u8, params: AxisParams, seed: u64) -> EmulatedServo {
        let constants = plant_constants(&params);
        let gains = CascadeGains::from_plant(&constants, FIRMWARE_VELOCITY_BANDWIDTH_HZ);
        let velocity_gains = CascadeGains {
            position_kp_per_s: 0.0,
            ..gains
        };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(u64::from(id));
        let mut servo = EmulatedServo {
            table: ControlTable::new(model, id),
            plant: Plant::new(params, rng),
            constants,
            position_cascade: Cascade::new(gains, constants),
            velocity_cascade: Cascade::new(velocity_gains, constants),
            profile: None,
            tick_ns: 0,
            last_contact_ns: 0,
            registered: None,
            turn_offset_counts: 0,
            torque_was_on: false,
        };
        servo.update_present(0);
        let present = servo.table.get(address::PRESENT_POSITION);
        servo.table.set(address::GOAL_POSITION, present);
        servo
    }

    pub fn id(&self) -> u8 {
        self.table.get(address::ID) as u8
    }

    pub fn table(&self) -> &ControlTable {
        &self.table
    }

    pub fn plant(&self) -> &Plant {
        &self.plant
    }

    pub fn plant_mut(&mut self) -> &mut Plant {
        &mut self.plant
    }

    /// Device-side register update (configuration at power-on, such as the baud in use).
    pub fn set_register(&mut self, address: u16, value: i64) {
        self.table.set(address, value);
    }

    pub fn torque_enabled(&self) -> bool {
        self.table.get(address::TORQUE_ENABLE) != 0
    }

    pub fn return_delay_ns(&self) -> u64 {
        self.table.get(address::RETURN_DELAY_TIME) as u64 * unit::RETURN_DELAY_NS
    }

    pub fn status_return_level(&self) -> u8 {
        self.table.get(address::STATUS_RETURN_LEVEL) as u8
    }

    fn error_byte(&self, code: Option<ErrorCode>) -> ErrorByte {
        ErrorByte::new(self.table.get(address::HARDWARE_ERROR_STATUS) != 0, code)
    }

    fn answer(&self, result: Result<Vec<u8>, ErrorCode>) -> Answer {
        match result {
            Ok(data) => Answer {
                error: self.error_byte(None),
                data,
            },
            Err(code) => Answer {
                error: self.error_byte(Some(code)),
                data: Vec::new(),
            },
        }
    }

    /// Runs the firmware up to `t`: one tick per `FIRMWARE_PERIOD_NS`.
    pub fn advance_to(&mut self, t: Duration) {
        let t_ns = u64::try_from(t.as_nanos()).expect("time fits in u64 ns");
        while self.tick_ns <= t_ns {
            self.tick(self.tick_ns);
            self.tick_ns += FIRMWARE_PERIOD_NS;
        }
    }

    fn tick(&mut self, now_ns: u64) {
        self.plant.advance_to(Duration::from_nanos(now_ns));
        self.update_present(now_ns);
        self.check_watchdog(now_ns);
        self.check_hardware(now_ns);
        let command = self.firmware_command(now_ns);
        self.plant.command(command);
    }

    fn update_present(&mut self, now_ns: u64) {
        let s = self.plant.sensors();
        let counts = (s.position_rad / unit::POSITION_RAD).floor() as i64;
        let position = unit::POSITION_COUNT_AT_ZERO_RAD
            + counts
            + self.table.get(address::HOMING_OFFSET)
            + self.turn_offset_counts;
        let velocity = (s.velocity_rad_per_s / unit::VELOCITY_RAD_PER_S).round() as i64;
        let current = (s.current_a / unit::CURRENT_A).round() as i64;
        let t = &mut self.table;
        t.set(address::PRESENT_POSITION, position);
        t.set(address::PRESENT_VELOCITY, velocity);
        t.set(address::PRESENT_CURRENT, current.clamp(-32768, 32767));
        t.set(
            address::PRESENT_INPUT_VOLTAGE,
            (s.bus_voltage_v / unit::VOLTAGE_V).round() as i64,
        );
        t.set(
            address::PRESENT_TEMPERATURE,
            s.winding_temperature_c.round() as i64,
        );
        t.set(
            address::REALTIME_TICK,
            ((now_ns / 1_000_000) % 32768) as i64,
        );
        let moving = velocity.abs() > t.get(address::MOVING_THRESHOLD)
            || self
                .profile
                .is_some_and(|p| (now_ns as f64 * 1e-9 - p.start_s) < p.trajectory.duration_s());
        t.set(address::MOVING, i64::from(moving));
        t.set(address::MOVING_STATUS, i64::from(!moving));
    }

    /// Bus watchdog (register 98): armed with 1..127 (× 20 ms); when the host is silent for
    /// longer, torque goes off and the register reads -1 until the host writes 0.
    fn check_watchdog(&mut self, now_ns: u64) {
        let setting = self.table.get(address::BUS_WATCHDOG);
        if setting > 0
            && now_ns.saturating_sub(self.last_contact_ns) > setting as u64 * unit::BUS_WATCHDOG_NS
        {
            self.table.set(address::BUS_WATCHDOG, -1);
            self.torque_off();
        }
    }

    /// Over-temperature against Temperature Limit (31); the Shutdown mask (63) decides whether
    /// it latches torque off. Input voltage against the voltage limits likewise.
    fn check_hardware(&mut self, _now_ns: u64) {
        let temperature = self.table.get(address::PRESENT_TEMPERATURE);
        let voltage = self.table.get(address::PRESENT_INPUT_VOLTAGE);
        let mut bits = 0u8;
        if temperature > self.table.get(address::TEMPERATURE_LIMIT) {
            bits |= hardware_error::OVERHEATING;
        }
        if voltage > self.table.get(address::MAX_VOLTAGE_LIMIT)
            || voltage < self.table.get(address::MIN_VOLTAGE_LIMIT)
        {
            bits |= hardware_error::INPUT_VOLTAGE;
        }
        if bits != 0 {
            let latched = self.table.get(address::HARDWARE_ERROR_STATUS) as u8 | bits;
            self.table
                .set(address::HARDWARE_ERROR_STATUS, i64::from(latched));
            if latched & self.table.get(address::SHUTDOWN) as u8 != 0 {
                self.torque_off();
            }
        }
    }

    fn torque_off(&mut self) {
        self.table.set(address::TORQUE_ENABLE, 0);
        self.profile = None;
    }

    fn current_limit_a(&self) -> f64 {
        (self.table.get(address::CURRENT_LIMIT) as f64 * unit::CURRENT_A)
            .min(self.constants.current_a_max)
    }

    fn feedback(&self) -> Feedback {
        let s = self.plant.sensors();
        Feedback {
            position_rad: s.position_rad,
            velocity_rad_per_s: s.velocity_rad_per_s,
            current_a: s.current_a,
            winding_temperature_c: s.winding_temperature_c,
            valid: s.valid,
            sample_index: 0,
        }
    }

    fn firmware_command(&mut self, now_ns: u64) -> DriveCommand {
        let on = self.torque_enabled();
        if on && !self.torque_was_on {
            self.position_cascade.reset();
            self.velocity_cascade.reset();
        }
        self.torque_was_on = on;
        if !on {
            return DriveCommand::Off;
        }
        let dt_s = FIRMWARE_PERIOD_NS as f64 * 1e-9;
        let now_s = now_ns as f64 * 1e-9;
        let limit_a = self.current_limit_a();
        let feedback = self.feedback();
        let mode = self.table.get(address::OPERATING_MODE) as u8;
        let amps = match mode {
            operating_mode::CURRENT => {
                self.table.get(address::GOAL_CURRENT) as f64 * unit::CURRENT_A
            }
            operating_mode::VELOCITY => {
                let goal = self.table.get(address::GOAL_VELOCITY) as f64 * unit::VELOCITY_RAD_PER_S;
                let setpoint = Setpoint {
                    position_rad: feedback.position_rad,
                    velocity_rad_per_s: goal,
                    acceleration_rad_per_s2: 0.0,
                };
                self.velocity_cascade.step(dt_s, &feedback, &setpoint)
            }
            operating_mode::POSITION
            | operating_mode::EXTENDED_POSITION
            | operating_mode::CURRENT_BASED_POSITION => {
                let setpoint = match self.profile {
                    Some(p) => p.trajectory.sample(now_s - p.start_s),
                    None => Setpoint {
                        position_rad: self.goal_position_rad(),
                        velocity_rad_per_s: 0.0,
                        acceleration_rad_per_s2: 0.0,
                    },
                };
                let counts = (setpoint.position_rad / unit::POSITION_RAD).round() as i64
                    + unit::POSITION_COUNT_AT_ZERO_RAD;
                self.table.set(address::POSITION_TRAJECTORY, counts);
                self.table.set(
                    address::VELOCITY_TRAJECTORY,
                    (setpoint.velocity_rad_per_s / unit::VELOCITY_RAD_PER_S).round() as i64,
                );
                let amps = self.position_cascade.step(dt_s, &feedback, &setpoint);
                if mode == operating_mode::CURRENT_BASED_POSITION {
                    let goal =
                        (self.table.get(address::GOAL_CURRENT) as f64 * unit::CURRENT_A).abs();
                    amps.clamp(-goal, goal)
                } else {
                    amps
                }
            }
            operating_mode::PWM => {
                let duty = self.table.get(address::GOAL_PWM) as f64 / 885.0;
                return DriveCommand::Voltage {
                    volts: duty * self.plant.sensors().bus_voltage_v,
                };
            }
            other => unreachable!("operating mode {other} passed the control table's range check"),
        };
        DriveCommand::Current {
            amps: amps.clamp(-limit_a, limit_a),
        }
    }

    fn goal_position_rad(&self) -> f64 {
        let counts = self.table.get(address::GOAL_POSITION)
            - unit::POSITION_COUNT_AT_ZERO_RAD
            - self.table.get(address::HOMING_OFFSET)
            - self.turn_offset_counts;
        counts as f64 * unit::POSITION_RAD
    }

    /// A new profile from where the axis is (or is being led) to Goal Position.
    fn start_profile(&mut self, now_ns: u64) {
        let now_s = now_ns as f64 * 1e-9;
        let start = match self.profile {
            Some(p) => p.trajectory.sample(now_s - p.start_s).position_rad,
            None => self.plant.sensors().position_rad,
        };
        let velocity_units = match self.table.get(address::PROFILE_VELOCITY) {
            0 => self.table.get(address::VELOCITY_LIMIT),
            v => v.min(self.table.get(address::VELOCITY_LIMIT)),
        };
        let velocity = (velocity_units.max(1) as f64) * unit::VELOCITY_RAD_PER_S;
        let acceleration = match self.table.get(address::PROFILE_ACCELERATION) {
            0 => PROFILE_ACCELERATION_RAD_PER_S2_DEFAULT,
            a => a as f64 * PROFILE_ACCELERATION_RAD_PER_S2_PER_UNIT,
        };
        let limits = TrajectoryLimits {
            velocity_rad_per_s_max: velocity,
            acceleration_rad_per_s2_max: acceleration,
            jerk_rad_per_s3_max: acceleration * 100.0,
        };
        let trajectory = Trajectory::trapezoid(start, self.goal_position_rad(), limits);
        self.profile = Some(Profile {
            trajectory,
            start_s: now_s,
        });
    }

    /// Marks host contact (bus watchdog). Called for every instruction that names this servo.
    pub fn contact(&mut self, now_ns: u64) {
        self.last_contact_ns = now_ns;
    }

    pub fn ping(&self) -> Answer {
        let mut data = self.table.model().number.to_le_bytes().to_vec();
        data.push(self.table.model().firmware_version);
        Answer {
            error: self.error_byte(None),
            data,
        }
    }

    pub fn read(&self, address: u16, length: u16) -> Answer {
        self.answer(self.table.read(address, length))
    }

    /// A host write, with the device's rules on top of the table's: goal registers refuse
    /// writes (Data Range) while the bus watchdog has expired; torque cannot be enabled while a
    /// shutdown error is latched; a new Goal Position starts a profile.
    pub fn write(&mut self, now_ns: u64, address: u16, data: &[u8]) -> Answer {
        let result = self.apply_write(now_ns, address, data);
        self.answer(result.map(|()| Vec::new()))
    }

    fn apply_write(&mut self, now_ns: u64, addr: u16, data: &[u8]) -> Result<(), ErrorCode> {
        let written = self.table.check_write(addr, data)?;
        let watchdog_expired = self.table.get(address::BUS_WATCHDOG) < 0;
        for w in &written {
            let a = w.register.address;
            let goal = matches!(
                a,
                address::GOAL_PWM
                    | address::GOAL_CURRENT
                    | address::GOAL_VELOCITY
                    | address::GOAL_POSITION
            );
            if goal && watchdog_expired {
                return Err(ErrorCode::DataRange);
            }
            if a == address::TORQUE_ENABLE && w.value == 1 {
                let latched = self.table.get(address::HARDWARE_ERROR_STATUS)
                    & self.table.get(address::SHUTDOWN);
                if latched != 0 {
                    return Err(ErrorCode::ResultFail);
                }
            }
        }
        let torque_before = self.torque_enabled();
        self.table.write(addr, data)?;
        for w in &written {
            match w.register.address {
                address::GOAL_POSITION if self.torque_enabled() => self.start_profile(now_ns),
                address::TORQUE_ENABLE if w.value == 1 && !torque_before => {
                    // Enabling holds the present position, as the firmware does.
                    let present = self.table.get(address::PRESENT_POSITION);
                    self.table.set(address::GOAL_POSITION, present);
                    self.profile = None;
                }
                address::TORQUE_ENABLE if w.value == 0 => self.torque_off(),
                address::OPERATING_MODE => self.profile = None,
                _ => {}
            }
        }
        Ok(())
    }

    pub fn reg_write(&mut self, address: u16, data: &[u8]) -> Answer {
        let result = self.table.check_write(address, data).map(|_| {
            self.registered = Some((address, data.to_vec()));
            self.table.set(address::REGISTERED_INSTRUCTION, 1);
            Vec::new()
        });
        self.answer(result)
    }

    pub fn action(&mut self, now_ns: u64) -> Answer {
        match self.registered.take() {
            Some((addr, data)) => {
                self.table.set(address::REGISTERED_INSTRUCTION, 0);
                self.write(now_ns, addr, &data)
            }
            None => self.answer(Err(ErrorCode::Instruction)),
        }
    }

    pub fn reboot(&mut self) -> Answer {
        let keep: Vec<u16> = self
            .table
            .model()
            .registers
            .iter()
            .filter(|r| r.area == crate::control_table::Area::Eeprom)
            .map(|r| r.address)
            .collect();
        self.table.factory_reset(Some(&keep));
        self.table.set(address::HARDWARE_ERROR_STATUS, 0);
        self.registered = None;
        self.torque_off();
        let present = self.table.get(address::PRESENT_POSITION);
        self.table.set(address::GOAL_POSITION, present);
        Answer {
            error: ErrorByte(0),
            data: Vec::new(),
        }
    }

    pub fn factory_reset(&mut self, scope: ResetScope) -> Answer {
        if self.torque_enabled() {
            return self.answer(Err(ErrorCode::Access));
        }
        let keep: &[u16] = match scope {
            ResetScope::All => &[],
            ResetScope::AllButId => &[address::ID],
            ResetScope::AllButIdAndBaud => &[address::ID, address::BAUD_RATE],
        };
        self.table.factory_reset(Some(keep));
        self.answer(Ok(Vec::new()))
    }

    /// Clear (multi-turn reset): only at standstill, else Result Fail.
    pub fn clear(&mut self, payload: [u8; 5]) -> Answer {
        if payload != CLEAR_MULTI_TURN {
            return self.answer(Err(ErrorCode::DataRange));
        }
        if self.table.get(address::MOVING) != 0 {
            return self.answer(Err(ErrorCode::ResultFail));
        }
        let present = self.table.get(address::PRESENT_POSITION);
        let wrapped = present.rem_euclid(4096);
        self.turn_offset_counts += wrapped - present;
        self.table.set(address::PRESENT_POSITION, wrapped);
        self.answer(Ok(Vec::new()))
    }
}
