//! The bus's log file: one `record_log` record per state change.
//!
//! Owns `LogRecord` and its encoding (a format byte, then postcard). It does not own the record
//! framing and torn-tail rules (`record_log`), when records are written or how they are
//! replayed (`core`).
//!
//! Every change that must survive a crash is a record: a publish, a delivery (written before
//! the message is handed out, so a crash never lets a message be delivered more than
//! `max_deliver` times), an ack, a dead-lettering. Compaction rewrites the file with the records
//! that rebuild the current state (`TopicHead` and `Remembered` carry what no retained message
//! does any more).

use serde::{Deserialize, Serialize};

use super::protocol::{DeadReason, GroupName, MessageId, TopicName};
use crate::record_log;

/// The first byte of every record payload written by this version.
pub const FORMAT_VERSION: u8 = 1;

/// One change of the bus's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogRecord {
    /// The topic's next sequence is at least this (written by compaction).
    TopicHead {
        topic: TopicName,
        sequence_next: u64,
    },
    /// A message id in the duplicate window whose message is no longer retained.
    Remembered {
        topic: TopicName,
        msg_id: MessageId,
        sequence: u64,
    },
    Published {
        topic: TopicName,
        sequence: u64,
        msg_id: MessageId,
        payload: Vec<u8>,
    },
    /// The message was handed to the group for the `delivery`-th time.
    Delivered {
        topic: TopicName,
        group: GroupName,
        sequence: u64,
        delivery: u32,
    },
    Acked {
        topic: TopicName,
        group: GroupName,
        sequence: u64,
    },
    DeadLettered {
        topic: TopicName,
        group: GroupName,
        sequence: u64,
        deliveries: u32,
        reason: DeadReason,
    },
}

pub use crate::record_log::LogError;

/// Appends one record to `buffer`.
pub fn encode_into(record: &LogRecord, buffer: &mut Vec<u8>) {
    record_log::encode_versioned_into(FORMAT_VERSION, record, buffer);
}

/// The records of a log file and the length of its torn tail (0 if none).
pub fn decode_log(bytes: &[u8]) -> Result<(Vec<LogRecord>, usize), LogError> {
    record_log::decode_versioned(bytes, FORMAT_VERSION)
}
