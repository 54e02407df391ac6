//! The instructions of Protocol 2.0 as typed values: their codes, parameter layouts, encoding to
//! a packet and decoding from one. Owns the host-to-device direction; replies are `status.rs`.

use super::packet::{self, PacketError, RawPacket};

/// Instruction codes (ROBOTIS SDK `packet_handler.h`).
pub mod code {
    pub const PING: u8 = 0x01;
    pub const READ: u8 = 0x02;
    pub const WRITE: u8 = 0x03;
    pub const REG_WRITE: u8 = 0x04;
    pub const ACTION: u8 = 0x05;
    pub const FACTORY_RESET: u8 = 0x06;
    pub const REBOOT: u8 = 0x08;
    pub const CLEAR: u8 = 0x10;
    pub const BACKUP: u8 = 0x20;
    pub const SYNC_READ: u8 = 0x82;
    pub const SYNC_WRITE: u8 = 0x83;
    pub const FAST_SYNC_READ: u8 = 0x8A;
    pub const BULK_READ: u8 = 0x92;
    pub const BULK_WRITE: u8 = 0x93;
    pub const FAST_BULK_READ: u8 = 0x9A;
}

/// Factory Reset option byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetScope {
    /// 0xFF: everything.
    All,
    /// 0x01: everything but the ID.
    AllButId,
    /// 0x02: everything but the ID and the baud rate.
    AllButIdAndBaud,
}

impl ResetScope {
    pub fn byte(self) -> u8 {
        match self {
            ResetScope::All => 0xFF,
            ResetScope::AllButId => 0x01,
            ResetScope::AllButIdAndBaud => 0x02,
        }
    }

    pub fn from_byte(byte: u8) -> Option<ResetScope> {
        match byte {
            0xFF => Some(ResetScope::All),
            0x01 => Some(ResetScope::AllButId),
            0x02 => Some(ResetScope::AllButIdAndBaud),
            _ => None,
        }
    }
}

/// The Clear instruction's only documented use: reset the multi-turn count (`01 44 58 4C 22`).
pub const CLEAR_MULTI_TURN: [u8; 5] = [0x01, 0x44, 0x58, 0x4C, 0x22];

/// One device's part of a Sync Write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncWriteEntry {
    pub id: u8,
    pub data: Vec<u8>,
}

/// One device's part of a Bulk Read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkReadEntry {
    pub id: u8,
    pub address: u16,
    pub length: u16,
}

/// One device's part of a Bulk Write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkWriteEntry {
    pub id: u8,
    pub address: u16,
    pub data: Vec<u8>,
}

/// An instruction and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    Ping,
    Read {
        address: u16,
        length: u16,
    },
    Write {
        address: u16,
        data: Vec<u8>,
    },
    RegWrite {
        address: u16,
        data: Vec<u8>,
    },
    Action,
    FactoryReset {
        scope: ResetScope,
    },
    Reboot,
    Clear {
        payload: [u8; 5],
    },
    SyncRead {
        address: u16,
        length: u16,
        ids: Vec<u8>,
    },
    /// Every entry's data has the same length (`length` on the wire).
    SyncWrite {
        address: u16,
        entries: Vec<SyncWriteEntry>,
    },
    FastSyncRead {
        address: u16,
        length: u16,
        ids: Vec<u8>,
    },
    BulkRead {
        entries: Vec<BulkReadEntry>,
    },
    BulkWrite {
        entries: Vec<BulkWriteEntry>,
    },
    FastBulkRead {
        entries: Vec<BulkReadEntry>,
    },
}

/// An instruction addressed to an ID (or the broadcast ID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstructionPacket {
    pub id: u8,
    pub instruction: Instruction,
}

fn le16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn need(params: &[u8], len: usize, what: &'static str) -> Result<(), PacketError> {
    if params.len() < len {
        return Err(PacketError::Truncated {
            what,
            len: params.len(),
        });
    }
    Ok(())
}

fn exact(params: &[u8], len: usize, what: &'static str) -> Result<(), PacketError> {
    if params.len() != len {
        return Err(PacketError::Malformed {
            what,
            detail: format!("expected {len} parameter bytes, got {}", params.len()),
        });
    }
    Ok(())
}

impl Instruction {
    pub fn code(&self) -> u8 {
        match self {
            Instruction::Ping => code::PING,
            Instruction::Read { .. } => code::READ,
            Instruction::Write { .. } => code::WRITE,
            Instruction::RegWrite { .. } => code::REG_WRITE,
            Instruction::Action => code::ACTION,
            Instruction::FactoryReset { .. } => code::FACTORY_RESET,
            Instruction::Reboot => code::REBOOT,
            Instruction::Clear { .. } => code::CLEAR,
            Instruction::SyncRead { .. } => code::SYNC_READ,
            Instruction::SyncWrite { .. } => code::SYNC_WRITE,
            Instruction::FastSyncRead { .. } => code::FAST_SYNC_READ,
            Instruction::BulkRead { .. } => code::BULK_READ,
            Instruction::BulkWrite { .. } => code::BULK_WRITE,
            Instruction::FastBulkRead { .. } => code::FAST_BULK_READ,
        }
    }

    /// Parameter bytes, unstuffed. Panics on a Sync Write whose entries differ in length: that
    /// is a caller bug, not a wire condition.
    pub fn params(&self) -> Vec<u8> {
        let mut p = Vec::new();
        match self {
            Instruction::Ping | Instruction::Action | Instruction::Reboot => {}
            Instruction::Read { address, length } => {
                p.extend_from_slice(&address.to_le_bytes());
                p.extend_from_slice(&length.to_le_bytes());
            }
            Instruction::Write { address, data } | Instruction::RegWrite { address, data } => {
                p.extend_from_slice(&address.to_le_bytes());
                p.extend_from_slice(data);
            }
            Instruction::FactoryReset { scope } => p.push(scope.byte()),
            Instruction::Clear { payload } => p.extend_from_slice(payload),
            Instruction::SyncRead {
                address,
                length,
                ids,
            }
            | Instruction::FastSyncRead {
                address,
                length,
                ids,
            } => {
                p.extend_from_slice(&address.to_le_bytes());
                p.extend_from_slice(&length.to_le_bytes());
                p.extend_from_slice(ids);
            }
            Instruction::SyncWrite { address, entries } => {
                let length = entries.first().map_or(0, |e| e.data.len());
                assert!(
                    entries.iter().all(|e| e.data.len() == length),
                    "sync write entries must all carry the same number of bytes"
                );
                p.extend_from_slice(&address.to_le_bytes());
                p.extend_from_slice(&(length as u16).to_le_bytes());
                for e in entries {
                    p.push(e.id);
                    p.extend_from_slice(&e.data);
                }
            }
            Instruction::BulkRead { entries } | Instruction::FastBulkRead { entries } => {
                for e in entries {
                    p.push(e.id);
                    p.extend_from_slice(&e.address.to_le_bytes());
                    p.extend_from_slice(&e.length.to_le_bytes());
                }
            }
            Instruction::BulkWrite { entries } => {
                for e in entries {
                    p.push(e.id);
                    p.extend_from_slice(&e.address.to_le_bytes());
                    p.extend_from_slice(&(e.data.len() as u16).to_le_bytes());
                    p.extend_from_slice(&e.data);
                }
            }
        }
        p
    }

    /// Decodes an instruction from its code and unstuffed parameters.
    pub fn decode(code_byte: u8, params: &[u8]) -> Result<Instruction, PacketError> {
        Ok(match code_byte {
            code::PING => {
                exact(params, 0, "ping")?;
                Instruction::Ping
            }
            code::READ => {
                exact(params, 4, "read")?;
                Instruction::Read {
                    address: le16(params, 0),
                    length: le16(params, 2),
                }
            }
            code::WRITE | code::REG_WRITE => {
                need(params, 3, "write")?;
                let address = le16(params, 0);
                let data = params[2..].to_vec();
                if code_byte == code::WRITE {
                    Instruction::Write { address, data }
                } else {
                    Instruction::RegWrite { address, data }
                }
            }
            code::ACTION => {
                exact(params, 0, "action")?;
                Instruction::Action
            }
            code::FACTORY_RESET => {
                exact(params, 1, "factory reset")?;
                let scope = ResetScope::from_byte(params[0]).ok_or(PacketError::Malformed {
                    what: "factory reset",
                    detail: format!("unknown option {:#04x}", params[0]),
                })?;
                Instruction::FactoryReset { scope }
            }
            code::REBOOT => {
                exact(params, 0, "reboot")?;
                Instruction::Reboot
            }
            code::CLEAR => {
                exact(params, 5, "clear")?;
                let mut payload = [0u8; 5];
                payload.copy_from_slice(params);
                Instruction::Clear { payload }
            }
            code::SYNC_READ | code::FAST_SYNC_READ => {
                need(params, 5, "sync read")?;
                let address = le16(params, 0);
                let length = le16(params, 2);
                let ids = params[4..].to_vec();
                if code_byte == code::SYNC_READ {
                    Instruction::SyncRead {
                        address,
                        length,
                        ids,
                    }
                } else {
                    Instruction::FastSyncRead {
                        address,
                        length,
                        ids,
                    }
                }
            }
            code::SYNC_WRITE => {
                need(params, 4, "sync write")?;
                let address = le16(params, 0);
                let length = usize::from(le16(params, 2));
                let rest = &params[4..];
                let stride = length + 1;
                if length == 0 || rest.is_empty() || !rest.len().is_multiple_of(stride) {
                    return Err(PacketError::Malformed {
                        what: "sync write",
                        detail: format!(
                            "{} bytes do not split into entries of {stride}",
                            rest.len()
                        ),
                    });
                }
                let entries = rest
                    .chunks(stride)
                    .map(|c| SyncWriteEntry {
                        id: c[0],
                        data: c[1..].to_vec(),
                    })
                    .collect();
                Instruction::SyncWrite { address, entries }
            }
            code::BULK_READ | code::FAST_BULK_READ => {
                if params.is_empty() || !params.len().is_multiple_of(5) {
                    return Err(PacketError::Malformed {
                        what: "bulk read",
                        detail: format!("{} bytes do not split into entries of 5", params.len()),
                    });
                }
                let entries = params
                    .chunks(5)
                    .map(|c| BulkReadEntry {
                        id: c[0],
                        address: le16(c, 1),
                        length: le16(c, 3),
                    })
                    .collect();
                if code_byte == code::BULK_READ {
                    Instruction::BulkRead { entries }
                } else {
                    Instruction::FastBulkRead { entries }
                }
            }
            code::BULK_WRITE => {
                let mut entries = Vec::new();
                let mut rest = params;
                while !rest.is_empty() {
                    need(rest, 5, "bulk write entry")?;
                    let length = usize::from(le16(rest, 3));
                    need(rest, 5 + length, "bulk write data")?;
                    entries.push(BulkWriteEntry {
                        id: rest[0],
                        address: le16(rest, 1),
                        data: rest[5..5 + length].to_vec(),
                    });
                    rest = &rest[5 + length..];
                }
                if entries.is_empty() {
                    return Err(PacketError::Truncated {
                        what: "bulk write",
                        len: 0,
                    });
                }
                Instruction::BulkWrite { entries }
            }
            other => {
                return Err(PacketError::Malformed {
                    what: "instruction",
                    detail: format!("unknown instruction code {other:#04x}"),
                });
            }
        })
    }
}

impl InstructionPacket {
    pub fn new(id: u8, instruction: Instruction) -> InstructionPacket {
        InstructionPacket { id, instruction }
    }

    /// The bytes on the wire, stuffed, with length and CRC.
    pub fn encode(&self) -> Result<Vec<u8>, PacketError> {
        packet::encode(self.id, self.instruction.code(), &self.instruction.params())
    }

    pub fn decode(raw: &RawPacket) -> Result<InstructionPacket, PacketError> {
        let params = raw.params()?;
        Ok(InstructionPacket {
            id: raw.id,
            instruction: Instruction::decode(raw.instruction, &params)?,
        })
    }

    /// Whether a device that holds `id` is expected to send a status packet back (it is for
    /// unicast instructions except Action; for broadcast only ping answers, and the reads that
    /// name it).
    pub fn expects_status_from(&self, id: u8) -> bool {
        match &self.instruction {
            Instruction::Ping => self.id == id || self.id == packet::BROADCAST_ID,
            Instruction::SyncRead { ids, .. } | Instruction::FastSyncRead { ids, .. } => {
                ids.contains(&id)
            }
            Instruction::BulkRead { entries } | Instruction::FastBulkRead { entries } => {
                entries.iter().any(|e| e.id == id)
            }
            Instruction::SyncWrite { .. } | Instruction::BulkWrite { .. } => false,
            _ => self.id == id,
        }
    }
}
