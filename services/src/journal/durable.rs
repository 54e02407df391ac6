//! The journal's log file: one `record_log` record per append batch.
//!
//! Owns the batch record (`BatchRecord`) and its encoding: a format byte, then postcard. It does
//! not own the record framing and torn-tail rules (`record_log`) or when batches are written
//! (`core`). One record per batch makes a batch atomic on disk: a crash keeps it whole or drops
//! it whole (oracle ES6: "every batch is atomic").

use serde::{Deserialize, Serialize};

use super::protocol::{EventId, StreamName};
use crate::record_log;

/// The first byte of every batch payload written by this version.
pub const FORMAT_VERSION: u8 = 1;

/// One event inside a batch record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchEvent {
    pub id: EventId,
    pub kind: String,
    pub data: Vec<u8>,
}

/// One append, as written: the stream, where its events start, and the events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRecord {
    pub stream: StreamName,
    pub version_first: u64,
    pub position_first: u64,
    pub events: Vec<BatchEvent>,
}

pub use crate::record_log::LogError;

/// Appends the record of one batch to `buffer`.
pub fn encode_batch_into(batch: &BatchRecord, buffer: &mut Vec<u8>) {
    record_log::encode_versioned_into(FORMAT_VERSION, batch, buffer);
}

/// The batches of a log file and the length of its torn tail (0 if none).
pub fn decode_log(bytes: &[u8]) -> Result<(Vec<BatchRecord>, usize), LogError> {
    record_log::decode_versioned(bytes, FORMAT_VERSION)
}
