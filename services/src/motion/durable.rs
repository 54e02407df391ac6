//! The motion service's durable state and its on-disk format.
//!
//! Owns `DurableState` (the newest fencing token per axis, the move-id table and, with a bus,
//! the event outbox) and its encoding: `MAGIC`, a format byte, the postcard payload, and a
//! CRC-32C of everything before it.
//!
//! Two formats: 1 holds tokens and moves only; 2 adds the outbox and the event sequences. A
//! state with an empty outbox and no sequences (always the case without a bus) is written in
//! format 1, so a service without a bus writes exactly the bytes it wrote before the outbox
//! existed; both are read.
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
use crate::bus::Outbox;

/// First bytes of a state file.
pub const MAGIC: [u8; 4] = *b"SCMS";

/// The format written by this version when the state has outbox parts.
pub const FORMAT_VERSION: u8 = 2;

/// The format without outbox parts (written when they are empty).
pub const FORMAT_VERSION_NO_OUTBOX: u8 = 1;

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
    /// Messages announced and not yet acknowledged by the bus (`event_outbox`).
    pub outbox: Outbox,
    /// The next event sequence per axis (`event_outbox::message_id`).
    pub event_sequences: BTreeMap<AxisName, u64>,
}

/// Format 1's payload, borrowed for writing.
#[derive(Serialize)]
struct NoOutboxRef<'a> {
    tokens: &'a BTreeMap<AxisName, u64>,
    moves: &'a Vec<MoveRecord>,
}

/// Format 1's payload, for reading.
#[derive(Deserialize)]
struct NoOutbox {
    tokens: BTreeMap<AxisName, u64>,
    moves: Vec<MoveRecord>,
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
    let payload = if state.outbox.is_empty() && state.event_sequences.is_empty() {
        bytes.push(FORMAT_VERSION_NO_OUTBOX);
        postcard::to_stdvec(&NoOutboxRef {
            tokens: &state.tokens,
            moves: &state.moves,
        })
    } else {
        bytes.push(FORMAT_VERSION);
        postcard::to_stdvec(state)
    }
    .expect("the durable state always serializes");
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
    let payload = &body[HEADER_LENGTH..];
    let payload_error = |error: crate::framing::FrameError| StateError::Payload(error.to_string());
    match body[MAGIC.len()] {
        FORMAT_VERSION => crate::framing::decode(payload).map_err(payload_error),
        FORMAT_VERSION_NO_OUTBOX => {
            let NoOutbox { tokens, moves } =
                crate::framing::decode(payload).map_err(payload_error)?;
            Ok(DurableState {
                tokens,
                moves,
                ..DurableState::default()
            })
        }
        found => Err(StateError::UnsupportedFormat { found }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::{MessageId, OutboxEntry, TopicName};
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
            outbox: Outbox::default(),
            event_sequences: BTreeMap::new(),
        }
    }

    /// `sample` with an outbox message and event sequences (format 2).
    fn sample_with_outbox() -> DurableState {
        let mut state = sample();
        state
            .outbox
            .push(OutboxEntry {
                msg_id: MessageId(7),
                topic: TopicName::new("motion.events"),
                payload: vec![1, 2, 3],
            })
            .unwrap();
        state.event_sequences.insert(AxisName::new("x"), 1);
        state
    }

    #[test]
    fn state_round_trips() {
        // Goal: what is written is what is read, in both formats, and a state without outbox
        // parts keeps format 1 (a cell without a bus writes the bytes it always wrote). Method:
        // encode and decode a state with every kind of field, without and with an outbox; check
        // the format byte and that format 1's bytes are the plain (tokens, moves) payload.
        let state = sample();
        let bytes = encode(&state);
        assert_eq!(bytes[MAGIC.len()], FORMAT_VERSION_NO_OUTBOX);
        let old_payload = postcard::to_stdvec(&(&state.tokens, &state.moves)).unwrap();
        assert_eq!(
            &bytes[HEADER_LENGTH..bytes.len() - CHECKSUM_LENGTH],
            &old_payload[..]
        );
        assert_eq!(decode(&bytes).unwrap(), state);
        let state = sample_with_outbox();
        let bytes = encode(&state);
        assert_eq!(bytes[MAGIC.len()], FORMAT_VERSION);
        assert_eq!(decode(&bytes).unwrap(), state);
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        // Goal: corruption never decodes into a different valid state (a lower token would
        // break fencing). Method: flip each bit of an encoded state in turn; every one must be
        // refused.
        for bytes in [encode(&sample()), encode(&sample_with_outbox())] {
            for bit in 0..bytes.len() * 8 {
                let mut corrupted = bytes.clone();
                corrupted[bit / 8] ^= 1 << (bit % 8);
                assert!(decode(&corrupted).is_err(), "bit {bit} flip accepted");
            }
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
