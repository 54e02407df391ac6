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

/// Why a log file was refused.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Record(#[from] record_log::RecordLogError),
    #[error(
        "batch record {index}: format {found} is not supported (this version writes {FORMAT_VERSION})"
    )]
    UnsupportedFormat { index: usize, found: u8 },
    #[error("batch record {index}: {reason}")]
    Payload { index: usize, reason: String },
    /// The records decode but contradict each other (a gap in positions or versions, an event
    /// id twice): the file was not written by a correct journal.
    #[error("batch record {index} is inconsistent: {reason}")]
    Inconsistent { index: usize, reason: String },
}

/// Appends the record of one batch to `buffer`.
pub fn encode_batch_into(batch: &BatchRecord, buffer: &mut Vec<u8>) {
    let mut payload = vec![FORMAT_VERSION];
    payload.extend(postcard::to_stdvec(batch).expect("a batch always serializes"));
    record_log::encode_record_into(&payload, buffer);
}

/// The batches of a log file and the length of its torn tail (0 if none).
pub fn decode_log(bytes: &[u8]) -> Result<(Vec<BatchRecord>, usize), LogError> {
    let scan = record_log::scan(bytes)?;
    let mut batches = Vec::with_capacity(scan.records.len());
    for (index, payload) in scan.records.iter().enumerate() {
        let Some((&format, body)) = payload.split_first() else {
            return Err(LogError::Payload {
                index,
                reason: "empty record".to_owned(),
            });
        };
        if format != FORMAT_VERSION {
            return Err(LogError::UnsupportedFormat {
                index,
                found: format,
            });
        }
        let batch = crate::framing::decode(body).map_err(|error| LogError::Payload {
            index,
            reason: error.to_string(),
        })?;
        batches.push(batch);
    }
    Ok((batches, scan.torn_length))
}
