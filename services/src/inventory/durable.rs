//! The inventory's durable state and its file: one `record_log` record holding a format byte
//! and the postcard-encoded state, written whole with `Storage::replace`.
//!
//! Owns `DurableState`, `SagaRecord` and their encoding and checks. It does not own when the
//! state is written (`core` decides; the shell replaces the file atomically).
//!
//! The file is replaced atomically, so it is never torn: anything but exactly one valid record
//! is damage, and the inventory refuses to start (guessing stock counts would break
//! conservation).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::protocol::{PartId, SagaId, StockView};
use crate::record_log;

/// The first byte of the payload written by this version.
pub const FORMAT_VERSION: u8 = 1;

/// Where one saga's reservation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordState {
    /// Holding its pieces (the semantic lock).
    Pending,
    Committed,
    Released,
    /// Released by the inventory when its lifetime ran out.
    Expired,
}

impl RecordState {
    pub fn is_finished(self) -> bool {
        self != RecordState::Pending
    }

    /// A stable name for traces.
    pub fn kind(self) -> &'static str {
        match self {
            RecordState::Pending => "pending",
            RecordState::Committed => "committed",
            RecordState::Released => "released",
            RecordState::Expired => "expired",
        }
    }
}

/// One saga's reservation. `part` is `None` for a tombstone: a release of a saga that never
/// reserved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaRecord {
    pub saga: SagaId,
    pub part: Option<PartId>,
    pub quantity: u32,
    pub state: RecordState,
}

/// What must survive a crash of the inventory host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DurableState {
    pub parts: BTreeMap<PartId, StockView>,
    /// Oldest first.
    pub records: Vec<SagaRecord>,
}

/// Why a state file was refused.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Record(#[from] record_log::RecordLogError),
    #[error("state file holds {records} records and {torn_bytes} torn bytes, not one record")]
    NotOneRecord { records: usize, torn_bytes: usize },
    #[error("state format {found} is not supported (this version writes {FORMAT_VERSION})")]
    UnsupportedFormat { found: u8 },
    #[error("state payload: {0}")]
    Payload(String),
    /// The state decodes but breaks an invariant (conservation, reserved = sum of pending).
    #[error("state inconsistent: {0}")]
    Inconsistent(String),
}

/// The bytes of a state file.
pub fn encode(state: &DurableState) -> Vec<u8> {
    let mut payload = vec![FORMAT_VERSION];
    payload.extend(postcard::to_stdvec(state).expect("the state always serializes"));
    record_log::encode_record(&payload)
}

/// Decodes and checks a state file.
pub fn decode(bytes: &[u8]) -> Result<DurableState, StateError> {
    let scan = record_log::scan(bytes)?;
    if scan.records.len() != 1 || scan.torn_length != 0 {
        return Err(StateError::NotOneRecord {
            records: scan.records.len(),
            torn_bytes: scan.torn_length,
        });
    }
    let (&format, body) = scan.records[0]
        .split_first()
        .ok_or(StateError::UnsupportedFormat { found: 0 })?;
    if format != FORMAT_VERSION {
        return Err(StateError::UnsupportedFormat { found: format });
    }
    let state: DurableState =
        crate::framing::decode(body).map_err(|error| StateError::Payload(error.to_string()))?;
    check(&state)?;
    Ok(state)
}

/// The invariants every state must hold.
pub fn check(state: &DurableState) -> Result<(), StateError> {
    let mut pending: BTreeMap<&PartId, u64> = BTreeMap::new();
    for record in &state.records {
        match (&record.part, record.state) {
            (Some(part), RecordState::Pending) => {
                *pending.entry(part).or_default() += u64::from(record.quantity);
            }
            (None, RecordState::Released) | (Some(_), _) => {}
            (None, other) => {
                return Err(StateError::Inconsistent(format!(
                    "saga {} has no part but is {}",
                    record.saga,
                    other.kind()
                )));
            }
        }
        if let Some(part) = &record.part
            && !state.parts.contains_key(part)
        {
            return Err(StateError::Inconsistent(format!(
                "saga {} reserved unknown part {part}",
                record.saga
            )));
        }
    }
    for (part, stock) in &state.parts {
        let total = stock
            .available
            .checked_add(stock.reserved)
            .and_then(|sum| sum.checked_add(stock.consumed));
        if total != Some(stock.initial) {
            return Err(StateError::Inconsistent(format!(
                "part {part}: {stock:?} is not conserved"
            )));
        }
        let held = pending.get(part).copied().unwrap_or(0);
        if held != stock.reserved {
            return Err(StateError::Inconsistent(format!(
                "part {part}: reserved {} but open reservations hold {held}",
                stock.reserved
            )));
        }
    }
    Ok(())
}
