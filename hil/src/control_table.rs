//! The XM430-W350 control table (ROBOTIS e-manual, `docs/en/dxl/x/xm430-w350.md`): every
//! register's address, size, access, area, initial value, unit and valid range, and a byte
//! image of the table that enforces them on writes. Owns the register semantics a host can see
//! through Read and Write (access, EEPROM lock while torque is on, range checks); what the
//! device *does* with a value (torque, watchdog, motion) is the emulator's.
//!
//! Indirect Address/Data (168–251, 578–661) are plain read-write memory here: the indirection
//! itself is not modelled.

use crate::protocol::ErrorCode;

/// Which memory a register lives in: EEPROM registers can be written only with torque off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    Eeprom,
    Ram,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

/// A register's valid values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// Anything that fits (read-only registers, bit fields).
    Any,
    /// A fixed span; outside it the write answers Data Range.
    Span { min: i64, max: i64 },
    /// One of a list (Operating Mode).
    OneOf(&'static [i64]),
    /// Symmetric about zero, bounded by another register's value (Goal Current by Current
    /// Limit); outside it the write answers Data Limit.
    SymmetricByLimit { limit: u16 },
    /// Between two other registers (Goal Position by Min/Max Position Limit, position mode).
    BetweenLimits { min: u16, max: u16 },
}

/// One register of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Register {
    pub name: &'static str,
    pub address: u16,
    pub size: u8,
    pub signed: bool,
    pub area: Area,
    pub access: Access,
    /// Factory value; `None` where the e-manual gives "-" (set by the device at power-on).
    pub initial: Option<i64>,
    pub range: Range,
    pub unit: &'static str,
}

/// Addresses of the registers that code refers to by name.
pub mod address {
    pub const MODEL_NUMBER: u16 = 0;
    pub const MODEL_INFORMATION: u16 = 2;
    pub const FIRMWARE_VERSION: u16 = 6;
    pub const ID: u16 = 7;
    pub const BAUD_RATE: u16 = 8;
    pub const RETURN_DELAY_TIME: u16 = 9;
    pub const DRIVE_MODE: u16 = 10;
    pub const OPERATING_MODE: u16 = 11;
    pub const SECONDARY_ID: u16 = 12;
    pub const PROTOCOL_TYPE: u16 = 13;
    pub const HOMING_OFFSET: u16 = 20;
    pub const MOVING_THRESHOLD: u16 = 24;
    pub const TEMPERATURE_LIMIT: u16 = 31;
    pub const MAX_VOLTAGE_LIMIT: u16 = 32;
    pub const MIN_VOLTAGE_LIMIT: u16 = 34;
    pub const PWM_LIMIT: u16 = 36;
    pub const CURRENT_LIMIT: u16 = 38;
    pub const ACCELERATION_LIMIT: u16 = 40;
    pub const VELOCITY_LIMIT: u16 = 44;
    pub const MAX_POSITION_LIMIT: u16 = 48;
    pub const MIN_POSITION_LIMIT: u16 = 52;
    pub const SHUTDOWN: u16 = 63;
    pub const TORQUE_ENABLE: u16 = 64;
    pub const LED: u16 = 65;
    pub const STATUS_RETURN_LEVEL: u16 = 68;
    pub const REGISTERED_INSTRUCTION: u16 = 69;
    pub const HARDWARE_ERROR_STATUS: u16 = 70;
    pub const VELOCITY_I_GAIN: u16 = 76;
    pub const VELOCITY_P_GAIN: u16 = 78;
    pub const POSITION_D_GAIN: u16 = 80;
    pub const POSITION_I_GAIN: u16 = 82;
    pub const POSITION_P_GAIN: u16 = 84;
    pub const FEEDFORWARD_2ND_GAIN: u16 = 88;
    pub const FEEDFORWARD_1ST_GAIN: u16 = 90;
    pub const BUS_WATCHDOG: u16 = 98;
    pub const GOAL_PWM: u16 = 100;
    pub const GOAL_CURRENT: u16 = 102;
    pub const GOAL_VELOCITY: u16 = 104;
    pub const PROFILE_ACCELERATION: u16 = 108;
    pub const PROFILE_VELOCITY: u16 = 112;
    pub const GOAL_POSITION: u16 = 116;
    pub const REALTIME_TICK: u16 = 120;
    pub const MOVING: u16 = 122;
    pub const MOVING_STATUS: u16 = 123;
    pub const PRESENT_PWM: u16 = 124;
    pub const PRESENT_CURRENT: u16 = 126;
    pub const PRESENT_VELOCITY: u16 = 128;
    pub const PRESENT_POSITION: u16 = 132;
    pub const VELOCITY_TRAJECTORY: u16 = 136;
    pub const POSITION_TRAJECTORY: u16 = 140;
    pub const PRESENT_INPUT_VOLTAGE: u16 = 144;
    pub const PRESENT_TEMPERATURE: u16 = 146;
    pub const INDIRECT_ADDRESS_1: u16 = 168;
    pub const INDIRECT_DATA_1: u16 = 224;
    pub const INDIRECT_ADDRESS_29: u16 = 578;
    pub const INDIRECT_DATA_29: u16 = 634;
}

/// Operating Mode (11) values.
pub mod operating_mode {
    pub const CURRENT: u8 = 0;
    pub const VELOCITY: u8 = 1;
    pub const POSITION: u8 = 3;
    pub const EXTENDED_POSITION: u8 = 4;
    pub const CURRENT_BASED_POSITION: u8 = 5;
    pub const PWM: u8 = 16;
}

/// Hardware Error Status (70) and Shutdown (63) bits.
pub mod hardware_error {
    pub const INPUT_VOLTAGE: u8 = 1 << 0;
    pub const OVERHEATING: u8 = 1 << 2;
    pub const MOTOR_ENCODER: u8 = 1 << 3;
    pub const ELECTRICAL_SHOCK: u8 = 1 << 4;
    pub const OVERLOAD: u8 = 1 << 5;
}

/// Scale of the registers, in SI units per register unit.
pub mod unit {
    /// Goal/Present Current and Current Limit: about 2.69 mA.
    pub const CURRENT_A: f64 = 0.00269;
    /// Goal/Present Velocity and Velocity Limit: 0.229 rpm.
    pub const VELOCITY_RAD_PER_S: f64 = 0.229 * 2.0 * core::f64::consts::PI / 60.0;
    /// Positions: 4096 counts per revolution.
    pub const POSITION_RAD: f64 = 2.0 * core::f64::consts::PI / 4096.0;
    /// Present Position at output angle zero: the middle of the 0..4095 span, so that a
    /// scenario's angles are symmetric about the horn's centre.
    pub const POSITION_COUNT_AT_ZERO_RAD: i64 = 2048;
    /// Return Delay Time: 2 µs.
    pub const RETURN_DELAY_NS: u64 = 2_000;
    /// Bus Watchdog: 20 ms.
    pub const BUS_WATCHDOG_NS: u64 = 20_000_000;
    /// Present Input Voltage and voltage limits: 0.1 V.
    pub const VOLTAGE_V: f64 = 0.1;
}

/// Baud Rate (8) register values and the rates they select.
pub const BAUD_RATES: [(u8, u32); 8] = [
    (0, 9_600),
    (1, 57_600),
    (2, 115_200),
    (3, 1_000_000),
    (4, 2_000_000),
    (5, 3_000_000),
    (6, 4_000_000),
    (7, 4_500_000),
];

/// A device model: its number and its register list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Model {
    pub name: &'static str,
    /// Model Number (0). The e-manual gives 1020 for the XM430-W350 (1030 is the XM430-W210,
    /// the device in the protocol page's ping example).
    pub number: u16,
    pub firmware_version: u8,
    pub registers: &'static [Register],
    /// Bytes in the table (one past the last address).
    pub table_bytes: usize,
}

#[allow(clippy::too_many_arguments)] // one positional row per register reads like the e-manual table
const fn reg(
    name: &'static str,
    address: u16,
    size: u8,
    area: Area,
    access: Access,
    initial: Option<i64>,
    range: Range,
    unit: &'static str,
) -> Register {
    Register {
        name,
        address,
        size,
        signed: false,
        area,
        access,
        initial,
        range,
        unit,
    }
}

const fn signed(r: Register) -> Register {
    Register { signed: true, ..r }
}

use Access::{ReadOnly as R, ReadWrite as RW};
use Area::{Eeprom as E, Ram as M};

const fn span(min: i64, max: i64) -> Range {
    Range::Span { min, max }
}

/// The XM430-W350 registers (firmware 38 and later), in address order.
pub const XM430_W350_REGISTERS: &[Register] = &[
    reg("Model Number", 0, 2, E, R, Some(1020), Range::Any, ""),
    reg("Model Information", 2, 4, E, R, Some(0), Range::Any, ""),
    reg("Firmware Version", 6, 1, E, R, Some(48), Range::Any, ""),
    reg("ID", 7, 1, E, RW, Some(1), span(0, 252), ""),
    reg("Baud Rate", 8, 1, E, RW, Some(1), span(0, 7), ""),
    reg(
        "Return Delay Time",
        9,
        1,
        E,
        RW,
        Some(250),
        span(0, 254),
        "2 us",
    ),
    reg("Drive Mode", 10, 1, E, RW, Some(0), span(0, 13), "bits"),
    reg(
        "Operating Mode",
        11,
        1,
        E,
        RW,
        Some(3),
        Range::OneOf(&[0, 1, 3, 4, 5, 16]),
        "",
    ),
    reg(
        "Secondary(Shadow) ID",
        12,
        1,
        E,
        RW,
        Some(255),
        span(0, 255),
        "",
    ),
    reg("Protocol Type", 13, 1, E, RW, Some(2), span(1, 2), ""),
    signed(reg(
        "Homing Offset",
        20,
        4,
        E,
        RW,
        Some(0),
        span(-1_044_479, 1_044_479),
        "1 pulse",
    )),
    reg(
        "Moving Threshold",
        24,
        4,
        E,
        RW,
        Some(10),
        span(0, 1023),
        "0.229 rpm",
    ),
    reg(
        "Temperature Limit",
        31,
        1,
        E,
        RW,
        Some(80),
        span(0, 100),
        "1 degC",
    ),
    reg(
        "Max Voltage Limit",
        32,
        2,
        E,
        RW,
        Some(160),
        span(95, 160),
        "0.1 V",
    ),
    reg(
        "Min Voltage Limit",
        34,
        2,
        E,
        RW,
        Some(95),
        span(95, 160),
        "0.1 V",
    ),
    reg(
        "PWM Limit",
        36,
        2,
        E,
        RW,
        Some(885),
        span(0, 885),
        "0.113 %",
    ),
    reg(
        "Current Limit",
        38,
        2,
        E,
        RW,
        Some(1193),
        span(0, 1193),
        "2.69 mA",
    ),
    reg(
        "Acceleration Limit",
        40,
        4,
        E,
        RW,
        Some(32767),
        span(0, 32767),
        "214.577 rev/min2",
    ),
    reg(
        "Velocity Limit",
        44,
        4,
        E,
        RW,
        Some(350),
        span(0, 1023),
        "0.229 rpm",
    ),
    reg(
        "Max Position Limit",
        48,
        4,
        E,
        RW,
        Some(4095),
        span(0, 4095),
        "1 pulse",
    ),
    reg(
        "Min Position Limit",
        52,
        4,
        E,
        RW,
        Some(0),
        span(0, 4095),
        "1 pulse",
    ),
    reg("Shutdown", 63, 1, E, RW, Some(52), Range::Any, "bits"),
    reg("Torque Enable", 64, 1, M, RW, Some(0), span(0, 1), ""),
    reg("LED", 65, 1, M, RW, Some(0), span(0, 1), ""),
    reg("Status Return Level", 68, 1, M, RW, Some(2), span(0, 2), ""),
    reg(
        "Registered Instruction",
        69,
        1,
        M,
        R,
        Some(0),
        Range::Any,
        "",
    ),
    reg(
        "Hardware Error Status",
        70,
        1,
        M,
        R,
        Some(0),
        Range::Any,
        "bits",
    ),
    reg(
        "Velocity I Gain",
        76,
        2,
        M,
        RW,
        Some(1920),
        span(0, 16383),
        "/65536",
    ),
    reg(
        "Velocity P Gain",
        78,
        2,
        M,
        RW,
        Some(100),
        span(0, 16383),
        "/128",
    ),
    reg(
        "Position D Gain",
        80,
        2,
        M,
        RW,
        Some(0),
        span(0, 16383),
        "/16",
    ),
    reg(
        "Position I Gain",
        82,
        2,
        M,
        RW,
        Some(0),
        span(0, 16383),
        "/65536",
    ),
    reg(
        "Position P Gain",
        84,
        2,
        M,
        RW,
        Some(800),
        span(0, 16383),
        "/128",
    ),
    reg(
        "Feedforward 2nd Gain",
        88,
        2,
        M,
        RW,
        Some(0),
        span(0, 16383),
        "/4",
    ),
    reg(
        "Feedforward 1st Gain",
        90,
        2,
        M,
        RW,
        Some(0),
        span(0, 16383),
        "/4",
    ),
    // Reads -1 after it expired; the host clears that by writing 0.
    signed(reg(
        "Bus Watchdog",
        98,
        1,
        M,
        RW,
        Some(0),
        span(0, 127),
        "20 ms",
    )),
    signed(reg(
        "Goal PWM",
        100,
        2,
        M,
        RW,
        Some(0),
        Range::SymmetricByLimit { limit: 36 },
        "0.113 %",
    )),
    signed(reg(
        "Goal Current",
        102,
        2,
        M,
        RW,
        Some(0),
        Range::SymmetricByLimit { limit: 38 },
        "2.69 mA",
    )),
    signed(reg(
        "Goal Velocity",
        104,
        4,
        M,
        RW,
        Some(0),
        Range::SymmetricByLimit { limit: 44 },
        "0.229 rpm",
    )),
    reg(
        "Profile Acceleration",
        108,
        4,
        M,
        RW,
        Some(0),
        span(0, 32767),
        "214.577 rev/min2",
    ),
    reg(
        "Profile Velocity",
        112,
        4,
        M,
        RW,
        Some(0),
        span(0, 32767),
        "0.229 rpm",
    ),
    signed(reg(
        "Goal Position",
        116,
        4,
        M,
        RW,
        None,
        Range::BetweenLimits { min: 52, max: 48 },
        "1 pulse",
    )),
    reg("Realtime Tick", 120, 2, M, R, Some(0), Range::Any, "1 ms"),
    reg("Moving", 122, 1, M, R, Some(0), Range::Any, ""),
    reg("Moving Status", 123, 1, M, R, Some(0), Range::Any, "bits"),
    signed(reg(
        "Present PWM",
        124,
        2,
        M,
        R,
        Some(0),
        Range::Any,
        "0.113 %",
    )),
    signed(reg(
        "Present Current",
        126,
        2,
        M,
        R,
        Some(0),
        Range::Any,
        "2.69 mA",
    )),
    signed(reg(
        "Present Velocity",
        128,
        4,
        M,
        R,
        Some(0),
        Range::Any,
        "0.229 rpm",
    )),
    signed(reg(
        "Present Position",
        132,
        4,
        M,
        R,
        None,
        Range::Any,
        "1 pulse",
    )),
    signed(reg(
        "Velocity Trajectory",
        136,
        4,
        M,
        R,
        Some(0),
        Range::Any,
        "0.229 rpm",
    )),
    signed(reg(
        "Position Trajectory",
        140,
        4,
        M,
        R,
        None,
        Range::Any,
        "1 pulse",
    )),
    reg(
        "Present Input Voltage",
        144,
        2,
        M,
        R,
        Some(120),
        Range::Any,
        "0.1 V",
    ),
    reg(
        "Present Temperature",
        146,
        1,
        M,
        R,
        Some(25),
        Range::Any,
        "1 degC",
    ),
];

/// Goal Position span in extended position mode (4): ±256 turns.
pub const EXTENDED_POSITION_SPAN: i64 = 1_048_575;

pub const XM430_W350: Model = Model {
    name: "XM430-W350",
    number: 1020,
    firmware_version: 48,
    registers: XM430_W350_REGISTERS,
    table_bytes: 662,
};

/// Indirect Address/Data blocks: (first address, bytes).
const INDIRECT_BLOCKS: [(u16, u16); 4] = [(168, 56), (224, 28), (578, 56), (634, 28)];

/// The models this crate knows, for the preflight model check.
pub const MODELS: &[Model] = &[XM430_W350];

impl Model {
    pub fn register(&self, address: u16) -> Option<&'static Register> {
        self.registers.iter().find(|r| r.address == address)
    }

    /// The register that holds byte `address`, if any.
    fn register_at(&self, address: u16) -> Option<&'static Register> {
        self.registers
            .iter()
            .find(|r| address >= r.address && address < r.address + u16::from(r.size))
    }

    fn is_indirect(address: u16) -> bool {
        INDIRECT_BLOCKS
            .iter()
            .any(|&(start, len)| address >= start && address < start + len)
    }
}

/// What a write changed: each whole register written, with its new value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrittenRegister {
    pub register: &'static Register,
    pub value: i64,
}

/// A device's control table: the byte image and the rules of its model.
#[derive(Debug, Clone)]
pub struct ControlTable {
    model: Model,
    bytes: Vec<u8>,
}

fn decode_value(bytes: &[u8], signed: bool) -> i64 {
    let mut raw = [0u8; 8];
    raw[..bytes.len()].copy_from_slice(bytes);
    let unsigned = u64::from_le_bytes(raw);
    if signed {
        let shift = 64 - 8 * bytes.len() as u32;
        ((unsigned << shift) as i64) >> shift
    } else {
        unsigned as i64
    }
}

impl ControlTable {
    /// A table with every register at its factory value and the given ID.
    pub fn new(model: Model, id: u8) -> ControlTable {
        let mut table = ControlTable {
            model,
            bytes: vec![0; model.table_bytes],
        };
        table.factory_reset(None);
        table.set(address::ID, i64::from(id));
        for (k, start) in [
            (0u16, address::INDIRECT_ADDRESS_1),
            (28, address::INDIRECT_ADDRESS_29),
        ] {
            // Indirect Address n defaults to its own Indirect Data byte.
            let data = if k == 0 {
                address::INDIRECT_DATA_1
            } else {
                address::INDIRECT_DATA_29
            };
            for n in 0..28u16 {
                let at = usize::from(start + 2 * n);
                table.bytes[at..at + 2].copy_from_slice(&(data + n).to_le_bytes());
            }
        }
        table
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Factory values; `keep` lists registers whose value survives (Factory Reset options).
    pub fn factory_reset(&mut self, keep: Option<&[u16]>) {
        for r in self.model.registers {
            if keep.is_some_and(|k| k.contains(&r.address)) {
                continue;
            }
            if let Some(v) = r.initial {
                self.store(r, v);
            }
        }
        let model_number = i64::from(self.model.number);
        let firmware = i64::from(self.model.firmware_version);
        self.set(address::MODEL_NUMBER, model_number);
        self.set(address::FIRMWARE_VERSION, firmware);
    }

    /// A register's value by address. Panics on an address that is not a register's first byte:
    /// callers name registers from `address`.
    pub fn get(&self, address: u16) -> i64 {
        let r = self
            .model
            .register(address)
            .expect("get: not a register address");
        let at = usize::from(r.address);
        decode_value(&self.bytes[at..at + usize::from(r.size)], r.signed)
    }

    /// Device-side update of any register (present values, error status), bypassing the host
    /// rules. Values are truncated to the register's size, as the firmware's would be.
    pub fn set(&mut self, address: u16, value: i64) {
        let r = self
            .model
            .register(address)
            .expect("set: not a register address");
        self.store(r, value);
    }

    fn store(&mut self, r: &Register, value: i64) {
        let at = usize::from(r.address);
        let bytes = value.to_le_bytes();
        self.bytes[at..at + usize::from(r.size)].copy_from_slice(&bytes[..usize::from(r.size)]);
    }

    /// A host Read: bytes `address..address+length`. Bytes between registers read as 0;
    /// reading past the end of the table is an Access error.
    pub fn read(&self, address: u16, length: u16) -> Result<Vec<u8>, ErrorCode> {
        let end = usize::from(address) + usize::from(length);
        if length == 0 || end > self.bytes.len() {
            return Err(ErrorCode::Access);
        }
        Ok(self.bytes[usize::from(address)..end].to_vec())
    }

    /// Checks a host Write without applying it: every byte must fall in a writable register
    /// (or an indirect block) and cover whole registers; EEPROM needs torque off; values must
    /// be in range. Returns the registers the write would set, with their new values.
    pub fn check_write(
        &self,
        address: u16,
        data: &[u8],
    ) -> Result<Vec<WrittenRegister>, ErrorCode> {
        let end = usize::from(address) + data.len();
        if data.is_empty() || end > self.bytes.len() {
            return Err(ErrorCode::Access);
        }
        let torque_on = self.get(address::TORQUE_ENABLE) != 0;
        let mut written = Vec::new();
        let mut at = usize::from(address);
        while at < end {
            let a = at as u16;
            if Model::is_indirect(a) {
                at += 1;
                continue;
            }
            let Some(r) = self.model.register_at(a) else {
                return Err(ErrorCode::Access);
            };
            if r.access == Access::ReadOnly {
                return Err(ErrorCode::Access);
            }
            let size = usize::from(r.size);
            if usize::from(r.address) != at || at + size > end {
                return Err(ErrorCode::DataLength);
            }
            if r.area == Area::Eeprom && torque_on {
                return Err(ErrorCode::Access);
            }
            let offset = at - usize::from(address);
            let value = decode_value(&data[offset..offset + size], r.signed);
            self.check_range(r, value)?;
            written.push(WrittenRegister { register: r, value });
            at += size;
        }
        Ok(written)
    }

    fn check_range(&self, r: &Register, value: i64) -> Result<(), ErrorCode> {
        let ok = match r.range {
            Range::Any => true,
            Range::Span { min, max } => (min..=max).contains(&value),
            Range::OneOf(values) => values.contains(&value),
            Range::SymmetricByLimit { limit } => {
                let limit = self.get(limit);
                if !(-limit..=limit).contains(&value) {
                    return Err(ErrorCode::DataLimit);
                }
                true
            }
            Range::BetweenLimits { min, max } => {
                let mode = self.get(address::OPERATING_MODE) as u8;
                if mode == operating_mode::EXTENDED_POSITION {
                    (-EXTENDED_POSITION_SPAN..=EXTENDED_POSITION_SPAN).contains(&value)
                } else {
                    if !(self.get(min)..=self.get(max)).contains(&value) {
                        return Err(ErrorCode::DataLimit);
                    }
                    true
                }
            }
        };
        if ok {
            Ok(())
        } else {
            Err(ErrorCode::DataRange)
        }
    }

    /// A host Write: checked as [`ControlTable::check_write`], then applied all at once.
    pub fn write(&mut self, address: u16, data: &[u8]) -> Result<Vec<WrittenRegister>, ErrorCode> {
        let written = self.check_write(address, data)?;
        let start = usize::from(address);
        self.bytes[start..start + data.len()].copy_from_slice(data);
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> ControlTable {
        ControlTable::new(XM430_W350, 1)
    }

    #[test]
    fn registers_do_not_overlap_and_fit_the_table() {
        // Goal: the register list is consistent. Method: pairwise overlap and bounds check.
        let regs = XM430_W350.registers;
        for (i, a) in regs.iter().enumerate() {
            assert!(usize::from(a.address) + usize::from(a.size) <= XM430_W350.table_bytes);
            for b in &regs[i + 1..] {
                assert!(
                    a.address + u16::from(a.size) <= b.address,
                    "{} overlaps {}",
                    a.name,
                    b.name
                );
            }
        }
    }

    #[test]
    fn factory_values() {
        // Goal: the power-on image matches the e-manual. Method: spot registers.
        let t = table();
        assert_eq!(t.get(address::MODEL_NUMBER), 1020);
        assert_eq!(
            t.get(address::OPERATING_MODE),
            i64::from(operating_mode::POSITION)
        );
        assert_eq!(t.get(address::RETURN_DELAY_TIME), 250);
        assert_eq!(t.get(address::CURRENT_LIMIT), 1193);
        assert_eq!(t.get(address::SHUTDOWN), 52);
        assert_eq!(t.read(address::MODEL_NUMBER, 2).unwrap(), vec![0xFC, 0x03]);
        assert_eq!(
            t.read(address::INDIRECT_ADDRESS_29, 2).unwrap(),
            634u16.to_le_bytes()
        );
    }

    #[test]
    fn eeprom_is_locked_while_torque_is_on() {
        // Goal: EEPROM writes answer Access with torque on and succeed with it off.
        let mut t = table();
        t.write(address::TORQUE_ENABLE, &[1]).unwrap();
        assert_eq!(
            t.write(address::OPERATING_MODE, &[0]),
            Err(ErrorCode::Access)
        );
        assert_eq!(t.get(address::OPERATING_MODE), 3);
        t.write(address::TORQUE_ENABLE, &[0]).unwrap();
        t.write(address::OPERATING_MODE, &[0]).unwrap();
        assert_eq!(t.get(address::OPERATING_MODE), 0);
    }

    #[test]
    fn read_only_and_undefined_addresses_refuse_writes() {
        // Goal: Access error for read-only registers and for bytes no register holds.
        let mut t = table();
        assert_eq!(
            t.write(address::PRESENT_POSITION, &[0; 4]),
            Err(ErrorCode::Access)
        );
        assert_eq!(
            t.write(address::MODEL_NUMBER, &[0; 2]),
            Err(ErrorCode::Access)
        );
        assert_eq!(t.write(14, &[0]), Err(ErrorCode::Access));
        assert_eq!(t.read(660, 3), Err(ErrorCode::Access));
    }

    #[test]
    fn partial_registers_answer_data_length() {
        // Goal: a write that cuts a register in two is refused, not half applied.
        let mut t = table();
        assert_eq!(
            t.write(address::GOAL_POSITION, &[0; 2]),
            Err(ErrorCode::DataLength)
        );
        assert_eq!(
            t.write(address::GOAL_POSITION + 1, &[0; 3]),
            Err(ErrorCode::DataLength)
        );
    }

    #[test]
    fn ranges_answer_data_range_and_limits_data_limit() {
        // Goal: fixed spans give Data Range; bounds set by limit registers give Data Limit;
        // nothing is applied on error. Method: out-of-range values and a multi-register write
        // whose second register is bad.
        let mut t = table();
        assert_eq!(
            t.write(address::OPERATING_MODE, &[2]),
            Err(ErrorCode::DataRange)
        );
        assert_eq!(
            t.write(address::RETURN_DELAY_TIME, &[255]),
            Err(ErrorCode::DataRange)
        );
        assert_eq!(
            t.write(address::BUS_WATCHDOG, &[128]),
            Err(ErrorCode::DataRange)
        );
        assert_eq!(
            t.write(address::GOAL_CURRENT, &1194i16.to_le_bytes()),
            Err(ErrorCode::DataLimit)
        );
        t.write(address::GOAL_CURRENT, &(-1193i16).to_le_bytes())
            .unwrap();
        assert_eq!(t.get(address::GOAL_CURRENT), -1193);
        assert_eq!(
            t.write(address::GOAL_POSITION, &4096i32.to_le_bytes()),
            Err(ErrorCode::DataLimit)
        );
        // Goal Velocity (104) fine, Profile Acceleration (108) out of span: nothing applied.
        let mut data = 10i32.to_le_bytes().to_vec();
        data.extend_from_slice(&40000i32.to_le_bytes());
        assert_eq!(
            t.write(address::GOAL_VELOCITY, &data),
            Err(ErrorCode::DataRange)
        );
        assert_eq!(t.get(address::GOAL_VELOCITY), 0);
        // Extended position mode widens Goal Position.
        t.write(address::OPERATING_MODE, &[4]).unwrap();
        t.write(address::GOAL_POSITION, &100_000i32.to_le_bytes())
            .unwrap();
    }

    #[test]
    fn signed_registers_read_back_negative() {
        // Goal: signed registers sign-extend. Method: device-side set of -1 and -300.
        let mut t = table();
        t.set(address::BUS_WATCHDOG, -1);
        assert_eq!(t.get(address::BUS_WATCHDOG), -1);
        assert_eq!(t.read(address::BUS_WATCHDOG, 1).unwrap(), vec![0xFF]);
        t.set(address::PRESENT_CURRENT, -300);
        assert_eq!(t.get(address::PRESENT_CURRENT), -300);
    }
}
