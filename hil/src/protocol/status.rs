//! Status packets (device to host): the error byte with its alert bit and error codes, the
//! ordinary status packet, and the single combined reply to Fast Sync Read. Owns the
//! device-to-host direction; instructions are `instruction.rs`.

use super::crc::crc16;
use super::packet::{self, BROADCAST_ID, PREFIX_BYTES, PacketError, RawPacket, STATUS_INSTRUCTION};

/// The error codes of the low seven bits of a status packet's error byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 1: the instruction failed.
    ResultFail,
    /// 2: undefined instruction, or Action without a Reg Write.
    Instruction,
    /// 3: the CRC of the instruction packet did not match.
    Crc,
    /// 4: the value is outside the register's range (also: goal writes after the bus
    /// watchdog expired).
    DataRange,
    /// 5: the data is shorter than the register.
    DataLength,
    /// 6: the value is outside a limit register's range.
    DataLimit,
    /// 7: read-only register written, write-only read, or EEPROM written with torque on.
    Access,
}

impl ErrorCode {
    pub fn value(self) -> u8 {
        match self {
            ErrorCode::ResultFail => 1,
            ErrorCode::Instruction => 2,
            ErrorCode::Crc => 3,
            ErrorCode::DataRange => 4,
            ErrorCode::DataLength => 5,
            ErrorCode::DataLimit => 6,
            ErrorCode::Access => 7,
        }
    }

    pub fn from_value(value: u8) -> Option<ErrorCode> {
        Some(match value {
            1 => ErrorCode::ResultFail,
            2 => ErrorCode::Instruction,
            3 => ErrorCode::Crc,
            4 => ErrorCode::DataRange,
            5 => ErrorCode::DataLength,
            6 => ErrorCode::DataLimit,
            7 => ErrorCode::Access,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::ResultFail => "result fail",
            ErrorCode::Instruction => "instruction error",
            ErrorCode::Crc => "CRC error",
            ErrorCode::DataRange => "data range error",
            ErrorCode::DataLength => "data length error",
            ErrorCode::DataLimit => "data limit error",
            ErrorCode::Access => "access error",
        }
    }
}

/// A status packet's error byte: bit 7 is the alert (a hardware error is latched; read Hardware
/// Error Status, register 70), bits 0..6 the error code of this instruction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorByte(pub u8);

impl ErrorByte {
    pub const ALERT: u8 = 0x80;

    pub fn new(alert: bool, code: Option<ErrorCode>) -> ErrorByte {
        ErrorByte(if alert { Self::ALERT } else { 0 } | code.map_or(0, ErrorCode::value))
    }

    pub fn alert(self) -> bool {
        self.0 & Self::ALERT != 0
    }

    /// The error code; `Err(value)` for a value the protocol does not define.
    pub fn code(self) -> Result<Option<ErrorCode>, u8> {
        match self.0 & 0x7F {
            0 => Ok(None),
            v => ErrorCode::from_value(v).map(Some).ok_or(v),
        }
    }
}

impl core::fmt::Display for ErrorByte {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.code() {
            Ok(None) => write!(f, "no error")?,
            Ok(Some(c)) => write!(f, "{}", c.name())?,
            Err(v) => write!(f, "unknown error {v}")?,
        }
        if self.alert() {
            write!(f, " (alert: hardware error latched)")?;
        }
        Ok(())
    }
}

/// A status packet: the answering ID, its error byte and the data (a read's bytes, a ping's
/// model number and firmware version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusPacket {
    pub id: u8,
    pub error: ErrorByte,
    pub data: Vec<u8>,
}

impl StatusPacket {
    pub fn encode(&self) -> Result<Vec<u8>, PacketError> {
        let mut params = Vec::with_capacity(self.data.len() + 1);
        params.push(self.error.0);
        params.extend_from_slice(&self.data);
        packet::encode(self.id, STATUS_INSTRUCTION, &params)
    }

    pub fn decode(raw: &RawPacket) -> Result<StatusPacket, PacketError> {
        if raw.instruction != STATUS_INSTRUCTION {
            return Err(PacketError::Malformed {
                what: "status",
                detail: format!("instruction byte {:#04x}, not 0x55", raw.instruction),
            });
        }
        let params = raw.params()?;
        if params.is_empty() {
            return Err(PacketError::Truncated {
                what: "status",
                len: 0,
            });
        }
        Ok(StatusPacket {
            id: raw.id,
            error: ErrorByte(params[0]),
            data: params[1..].to_vec(),
        })
    }
}

/// One device's part of a Fast Sync Read or Fast Bulk Read reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastSyncEntry {
    pub id: u8,
    pub error: ErrorByte,
    pub data: Vec<u8>,
}

/// The Fast Sync Read (and Fast Bulk Read) reply: one packet from ID 0xFE, not stuffed,
/// `55 {ERR ID DATA CRC}…` where each CRC is the running CRC of the packet up to that point and
/// the last one is the packet's own CRC. Entries may differ in length (Fast Bulk Read).
pub fn encode_fast_reply(entries: &[FastSyncEntry]) -> Result<Vec<u8>, PacketError> {
    assert!(!entries.is_empty(), "a fast reply has at least one entry");
    // Lay the packet out with zeroed CRC slots, then fill the running CRCs in order: each
    // covers everything before it, including the earlier CRCs.
    let mut params = Vec::new();
    let mut crc_slots = Vec::new();
    for (k, e) in entries.iter().enumerate() {
        params.push(e.error.0);
        params.push(e.id);
        params.extend_from_slice(&e.data);
        if k + 1 < entries.len() {
            crc_slots.push(params.len());
            params.extend_from_slice(&[0, 0]);
        }
    }
    let mut frame = packet::encode_unstuffed(BROADCAST_ID, STATUS_INSTRUCTION, &params)?;
    for slot in crc_slots {
        let at = PREFIX_BYTES + 1 + slot;
        let crc = crc16(&frame[..at]);
        frame[at..at + 2].copy_from_slice(&crc.to_le_bytes());
    }
    let end = frame.len() - 2;
    let crc = crc16(&frame[..end]);
    frame[end..].copy_from_slice(&crc.to_le_bytes());
    Ok(frame)
}

/// Decodes a Fast Sync Read reply (every entry `length` data bytes), checking every embedded CRC.
pub fn decode_fast_sync_reply(
    raw: &RawPacket,
    length: usize,
) -> Result<Vec<FastSyncEntry>, PacketError> {
    let count = (raw.stuffed_params().len() + 2) / (length + 4);
    decode_fast_reply(raw, &vec![length; count.max(1)])
}

/// Decodes a Fast Sync or Fast Bulk Read reply whose entries carry `lengths[k]` data bytes,
/// checking every embedded CRC.
pub fn decode_fast_reply(
    raw: &RawPacket,
    lengths: &[usize],
) -> Result<Vec<FastSyncEntry>, PacketError> {
    if raw.id != BROADCAST_ID || raw.instruction != STATUS_INSTRUCTION {
        return Err(PacketError::Malformed {
            what: "fast read reply",
            detail: format!("ID {:#04x} instruction {:#04x}", raw.id, raw.instruction),
        });
    }
    let params = raw.stuffed_params();
    let expected: usize = lengths
        .iter()
        .map(|l| l + 4)
        .sum::<usize>()
        .saturating_sub(2);
    if lengths.is_empty() || params.len() != expected {
        return Err(PacketError::Malformed {
            what: "fast read reply",
            detail: format!(
                "{} parameter bytes, expected {expected} for {} entries",
                params.len(),
                lengths.len()
            ),
        });
    }
    let mut entries = Vec::with_capacity(lengths.len());
    let mut at = 0;
    for (k, &length) in lengths.iter().enumerate() {
        if k + 1 < lengths.len() {
            let crc_at = at + 2 + length;
            let computed = crc16(&raw.frame[..PREFIX_BYTES + 1 + crc_at]);
            let received = u16::from_le_bytes([params[crc_at], params[crc_at + 1]]);
            if computed != received {
                return Err(PacketError::Malformed {
                    what: "fast read reply",
                    detail: format!(
                        "embedded CRC of entry {k}: {computed:#06x} != {received:#06x}"
                    ),
                });
            }
        }
        entries.push(FastSyncEntry {
            error: ErrorByte(params[at]),
            id: params[at + 1],
            data: params[at + 2..at + 2 + length].to_vec(),
        });
        at += length + 4;
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_byte_splits_alert_and_code() {
        // Goal: alert bit and code are independent. Method: 0x84 is alert + data range.
        let e = ErrorByte(0x84);
        assert!(e.alert());
        assert_eq!(e.code(), Ok(Some(ErrorCode::DataRange)));
        assert_eq!(ErrorByte::new(true, Some(ErrorCode::DataRange)), e);
        assert_eq!(ErrorByte(0x09).code(), Err(9));
        assert_eq!(ErrorByte(0x80).code(), Ok(None));
    }
}
