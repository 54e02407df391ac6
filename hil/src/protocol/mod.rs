//! Dynamixel Protocol 2.0 (ROBOTIS X series), as pure functions over bytes: no I/O, no clock.
//! `packet` frames, `parser` finds frames in a stream (with the receiver's inter-byte timeout),
//! `instruction` and `status` give them meaning, `crc` checks them, `line_budget` says what
//! they cost on the line. The serial link that carries them is `crate::link`.

pub mod crc;
pub mod instruction;
pub mod line_budget;
pub mod packet;
pub mod parser;
pub mod status;

pub use instruction::{
    BulkReadEntry, BulkWriteEntry, Instruction, InstructionPacket, ResetScope, SyncWriteEntry,
};
pub use packet::{BROADCAST_ID, PacketError, RawPacket};
pub use parser::{ParseError, Parser, ParserStats};
pub use status::{ErrorByte, ErrorCode, FastSyncEntry, StatusPacket};
