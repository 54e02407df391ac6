//! The motion service's durable state and its on-disk format.
//!
//! Owns `DurableState` (the newest fencing token per axis and the move-id table) and its
//! encoding: `MAGIC`, a format byte, the postcard payload, and a CRC-32C of everything before it.
//! It does not own when the state is written (the core decides, the shell calls
//! `Storage::replace`, which is atomic and durable).
//!
//! The checksum matters because postcard happily decodes many corrupted byte strings into
//! *different valid values*; a corrupted token that decoded lower than before would let the
//! service re-issue tokens. A state that fails its checks is refused, and the service does not
//! start (see `MotionError::CorruptState`): issuing tokens without knowing the old ones would
//! break fencing.
//!
//! Leases themselves are not durable: lease expiry is measured on the service's clock, which
//! restarts with it. After a restart every lease is gone; holders re-acquire and get tokens above
//! every old one, so an old holder's token is stale.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::move_table::MoveRecord;
use super::protocol::AxisName;

/// First bytes of a state file.
pub const MAGIC: [u8; 4] = *b"SCMS";

/// The format written by this version.
pub const FORMAT_VERSION: u8 = 1;

const CHECKSUM: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
const HEADER_LENGTH: usize = MAGIC.len() + 1;
const CHECKSUM_LENGTH: usize = 4;

/// What must survive a crash of the motion host.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DurableState {
    /// The newest fencing token issued per axis.
    pub tokens: BTreeMap<AxisName, u64>,
    /// The move-id table, oldest first.
    pub moves: Vec<MoveRecord>,
}

/// Why a state file was refused.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state file of {length_bytes} bytes is too short")]
    TooShort { length_bytes: usize },
    #[error("state file does not start with the motion state magic")]
    BadMagic,
    #[error("state file format {found} is not supported (this version writes {FORMAT_VERSION})")]
    UnsupportedFormat { found: u8 },
    #[error("state file checksum {stored:#010x} does not match its contents ({computed:#010x})")]
    Checksum { stored: u32, computed: u32 },
    #[error("state file payload: {0}")]
    Payload(String),
}

/// Encodes a state for `Storage::replace`.
pub fn encode(state: &DurableState) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(256);
    bytes.extend_from_slice(&MAGIC);
    bytes.push(FORMAT_VERSION);
    let payload = postcard::to_stdvec(state).expect("the durable state always serializes");
    bytes.extend_from_slice(&payload);
    let checksum = CHECKSUM.checksum(&bytes);
    bytes.extend_from_slice(&checksum.to_le_bytes());
    bytes
}

/// Decodes a state file, refusing anything that is not exactly what `encode` wrote.
pub fn decode(bytes: &[u8]) -> Result<DurableState, StateError> {
    if bytes.len() < HEADER_LENGTH + CHECKSUM_LENGTH {
        return Err(StateError::TooShort {
            length_bytes: bytes.len(),
        });
    }
    let (body, stored) = bytes.split_at(bytes.len() - CHECKSUM_LENGTH);
    let stored = u32::from_le_bytes(stored.try_into().expect("four bytes"));
    let computed = CHECKSUM.checksum(body);
    if stored != computed {
        return Err(StateError::Checksum { stored, computed });
    }
    if body[..MAGIC.len()] != MAGIC {
        return Err(StateError::BadMagic);
    }
    if body[MAGIC.len()] != FORMAT_VERSION {
        return Err(StateError::UnsupportedFormat {
            found: body[MAGIC.len()],
        });
    }
    crate::framing::decode(&body[HEADER_LENGTH..])
        .map_err(|error| StateError::Payload(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::motion::move_table::MoveOutcome;
    use crate::motion::protocol::AbortReason;

    fn sample() -> DurableState {
        DurableState {
            tokens: BTreeMap::from([(AxisName::new("x"), 7), (AxisName::new("y"), 0)]),
            moves: vec![
                MoveRecord {
                    request_id: 1 << 32,
                    axis: AxisName::new("x"),
                    target_rad: 0.5,
                    outcome: MoveOutcome::Completed {
                        final_position_rad: 0.499,
                    },
                },
                MoveRecord {
                    request_id: (1 << 32) + 1,
                    axis: AxisName::new("x"),
                    target_rad: -0.5,
                    outcome: MoveOutcome::Aborted {
                        reason: AbortReason::Fault { code: 0x8611 },
                    },
                },
            ],
        }
    }

    #[test]
    fn state_round_trips() {
        // Goal: what is written is what is read. Method: encode and decode a state with every
        // kind of field.
        let state = sample();
        assert_eq!(decode(&encode(&state)).unwrap(), state);
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        // Goal: corruption never decodes into a different valid state (a lower token would
        // break fencing). Method: flip each bit of an encoded state in turn; every one must be
        // refused.
        let bytes = encode(&sample());
        for bit in 0..bytes.len() * 8 {
            let mut corrupted = bytes.clone();
            corrupted[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&corrupted).is_err(), "bit {bit} flip accepted");
        }
    }

    #[test]
    fn truncated_and_foreign_files_are_refused() {
        // Goal: a torn or unrelated file is refused with the right reason. Method: truncate to
        // every length, and checksum a file with the wrong magic and the wrong format.
        let bytes = encode(&sample());
        for length in 0..bytes.len() {
            assert!(
                decode(&bytes[..length]).is_err(),
                "truncated to {length} accepted"
            );
        }
        let mut foreign = b"JUNK".to_vec();
        foreign.push(FORMAT_VERSION);
        foreign.extend_from_slice(&CHECKSUM.checksum(&foreign).to_le_bytes());
        assert!(matches!(decode(&foreign), Err(StateError::BadMagic)));
        let mut future = MAGIC.to_vec();
        future.push(FORMAT_VERSION + 1);
        future.extend_from_slice(&CHECKSUM.checksum(&future).to_le_bytes());
        assert!(matches!(
            decode(&future),
            Err(StateError::UnsupportedFormat { found }) if found == FORMAT_VERSION + 1
        ));
    }
}
