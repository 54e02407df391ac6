//! Append-only files of checksummed records, shared by the services that keep a log (the
//! journal, the bus).
//!
//! Owns the on-disk record format and the scan that recovers a file after a crash. It does not
//! own what a record means (each service encodes its own payloads) or when records are written
//! and synced (the service's core and `durable_server`).
//!
//! Format: each record is a 12-byte header, then the payload.
//!
//! ```text
//! [payload length: u32 BE][payload CRC-32C: u32 BE][header CRC-32C of the first 8 bytes: u32 BE][payload]
//! ```
//!
//! The header has its own checksum so that a damaged length is never trusted: without it a bit
//! flip in the length of the last record could make it look incomplete, and recovery would cut a
//! record that was acknowledged.
//!
//! Recovery (`scan`) reads records from the start and stops at the first one that is not whole
//! and valid. What follows is classified:
//! - a **torn tail**: an incomplete header, a valid header whose payload is cut short, or a tail
//!   of zero bytes (a file system that extended the file but never wrote the data). This is what
//!   a crash during an unsynced append leaves; nothing in it was acknowledged (an append is
//!   acknowledged only after its sync), so the caller truncates it.
//! - **corruption**: anything else (a header or payload checksum that fails on a complete
//!   record, an impossible length). Bytes that were once synced have changed; guessing would risk
//!   dropping acknowledged records, so the scan refuses and the service does not start.
//!
//! `Storage` has no truncate: a caller truncates a torn tail by rewriting the file's valid prefix
//! with `Storage::replace` (atomic and durable) before it appends again, since an append after a
//! torn tail would bury garbage in the middle of the file.

/// Longest payload of one record, bytes: far above any batch a service writes (a journal batch
/// is bounded by one RPC frame), while bounding what a damaged length can make a reader expect.
pub const RECORD_PAYLOAD_LENGTH_MAX: usize = 1 << 20;

/// Bytes of a record's header.
pub const RECORD_HEADER_LENGTH: usize = 12;

const _: () = assert!(
    RECORD_PAYLOAD_LENGTH_MAX <= u32::MAX as usize,
    "the length must fit the header's u32"
);

const CHECKSUM: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// Why a file was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordLogError {
    /// A complete record at `offset` fails its checks: the file was damaged after it was written.
    #[error("record log corrupt at byte {offset}: {reason}")]
    Corrupt {
        /// Where the damaged record starts.
        offset: usize,
        /// What failed (a stable phrase).
        reason: &'static str,
    },
}

/// Why a log of versioned, postcard-encoded records was refused (the journal's and the bus's
/// logs: each record's payload is a format byte followed by the postcard body).
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Record(#[from] RecordLogError),
    #[error("record {index}: format {found} is not supported (this version writes {supported})")]
    UnsupportedFormat {
        index: usize,
        found: u8,
        supported: u8,
    },
    #[error("record {index}: {reason}")]
    Payload { index: usize, reason: String },
    /// The records decode but contradict each other: the file was not written by a correct
    /// service.
    #[error("record {index} is inconsistent: {reason}")]
    Inconsistent { index: usize, reason: String },
}

/// Appends `record` to `buffer` as one record: the format byte, then its postcard encoding.
pub fn encode_versioned_into<T: serde::Serialize>(format: u8, record: &T, buffer: &mut Vec<u8>) {
    let mut payload = vec![format];
    payload.extend(postcard::to_stdvec(record).expect("a log record always serializes"));
    encode_record_into(&payload, buffer);
}

/// The records of a log file written by `encode_versioned_into` with `format`, and the length
/// of its torn tail (0 if none).
pub fn decode_versioned<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    format: u8,
) -> Result<(Vec<T>, usize), LogError> {
    let scan = scan(bytes)?;
    let mut records = Vec::with_capacity(scan.records.len());
    for (index, payload) in scan.records.iter().enumerate() {
        let Some((&found, body)) = payload.split_first() else {
            return Err(LogError::Payload {
                index,
                reason: "empty record".to_owned(),
            });
        };
        if found != format {
            return Err(LogError::UnsupportedFormat {
                index,
                found,
                supported: format,
            });
        }
        let record = crate::framing::decode(body).map_err(|error| LogError::Payload {
            index,
            reason: error.to_string(),
        })?;
        records.push(record);
    }
    Ok((records, scan.torn_length))
}

/// What `scan` found in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scan<'a> {
    /// The payloads of the valid records, in file order.
    pub records: Vec<&'a [u8]>,
    /// Bytes of the valid prefix (where the next record goes once the tail is cut).
    pub valid_length: usize,
    /// Bytes of the torn tail after the valid prefix (0: the file ends on a record boundary).
    pub torn_length: usize,
}

/// Appends one record holding `payload` to `buffer`. Panics on a payload above
/// `RECORD_PAYLOAD_LENGTH_MAX`: callers bound what they write.
pub fn encode_record_into(payload: &[u8], buffer: &mut Vec<u8>) {
    assert!(
        payload.len() <= RECORD_PAYLOAD_LENGTH_MAX,
        "record payload of {} bytes exceeds {RECORD_PAYLOAD_LENGTH_MAX}",
        payload.len()
    );
    let mut header = [0u8; RECORD_HEADER_LENGTH];
    let length = u32::try_from(payload.len()).expect("bounded by the limit");
    header[0..4].copy_from_slice(&length.to_be_bytes());
    header[4..8].copy_from_slice(&CHECKSUM.checksum(payload).to_be_bytes());
    let header_checksum = CHECKSUM.checksum(&header[0..8]);
    header[8..12].copy_from_slice(&header_checksum.to_be_bytes());
    buffer.extend_from_slice(&header);
    buffer.extend_from_slice(payload);
}

/// One record holding `payload`.
pub fn encode_record(payload: &[u8]) -> Vec<u8> {
    let mut buffer = Vec::with_capacity(RECORD_HEADER_LENGTH + payload.len());
    encode_record_into(payload, &mut buffer);
    buffer
}

/// Reads every valid record of `bytes` and classifies what follows them (see the module docs).
pub fn scan(bytes: &[u8]) -> Result<Scan<'_>, RecordLogError> {
    let mut records = Vec::new();
    let mut offset = 0;
    loop {
        let rest = &bytes[offset..];
        if rest.is_empty() {
            return Ok(Scan {
                records,
                valid_length: offset,
                torn_length: 0,
            });
        }
        let torn = Scan {
            records: Vec::new(),
            valid_length: offset,
            torn_length: rest.len(),
        };
        if rest.len() < RECORD_HEADER_LENGTH {
            return Ok(Scan { records, ..torn });
        }
        let word = |at: usize| u32::from_be_bytes(rest[at..at + 4].try_into().expect("4 bytes"));
        if CHECKSUM.checksum(&rest[0..8]) != word(8) {
            if rest.iter().all(|&byte| byte == 0) {
                return Ok(Scan { records, ..torn });
            }
            return Err(RecordLogError::Corrupt {
                offset,
                reason: "header checksum mismatch",
            });
        }
        let length = usize::try_from(word(0)).expect("u32 fits usize");
        if length > RECORD_PAYLOAD_LENGTH_MAX {
            return Err(RecordLogError::Corrupt {
                offset,
                reason: "record length above the limit",
            });
        }
        let end = RECORD_HEADER_LENGTH + length;
        if rest.len() < end {
            // The header made it to disk, the payload did not all follow: an unsynced append.
            return Ok(Scan { records, ..torn });
        }
        let payload = &rest[RECORD_HEADER_LENGTH..end];
        if CHECKSUM.checksum(payload) != word(4) {
            return Err(RecordLogError::Corrupt {
                offset,
                reason: "payload checksum mismatch",
            });
        }
        records.push(payload);
        offset += end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn file_of(payloads: &[Vec<u8>]) -> Vec<u8> {
        let mut file = Vec::new();
        for payload in payloads {
            encode_record_into(payload, &mut file);
        }
        file
    }

    proptest! {
        #[test]
        fn records_round_trip(payloads in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..300), 0..12)) {
            // Goal: a file of whole records scans back to exactly its payloads. Method: encode
            // random payloads back to back and scan.
            let file = file_of(&payloads);
            let scan = scan(&file).unwrap();
            let read: Vec<Vec<u8>> = scan.records.iter().map(|r| r.to_vec()).collect();
            prop_assert_eq!(read, payloads);
            prop_assert_eq!(scan.valid_length, file.len());
            prop_assert_eq!(scan.torn_length, 0);
        }

        #[test]
        fn a_cut_file_keeps_every_whole_record(payloads in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..300), 1..8), cut_seed in any::<usize>()) {
            // Goal: a crash that cuts the file anywhere (an unsynced append) loses only the cut
            // record, never an earlier one, and is never mistaken for corruption. Method: cut
            // at a random length and compare with the records that ended before the cut.
            let file = file_of(&payloads);
            let cut = cut_seed % (file.len() + 1);
            let scan = scan(&file[..cut]).unwrap();
            let mut whole = 0;
            let mut end = 0;
            for payload in &payloads {
                if end + RECORD_HEADER_LENGTH + payload.len() > cut {
                    break;
                }
                end += RECORD_HEADER_LENGTH + payload.len();
                whole += 1;
            }
            prop_assert_eq!(scan.records.len(), whole);
            prop_assert_eq!(scan.valid_length, end);
            prop_assert_eq!(scan.torn_length, cut - end);
        }

        #[test]
        fn every_single_bit_flip_is_refused(payloads in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..64), 1..6), bit_seed in any::<usize>()) {
            // Goal: damage to synced bytes is never read back as a different record nor cut
            // away as a torn tail (that would drop acknowledged records). Method: flip one
            // random bit of a whole file; CRC-32C catches every single-bit error, so the scan
            // must refuse, naming the damaged record's offset or an earlier one.
            let mut file = file_of(&payloads);
            let bit = bit_seed % (file.len() * 8);
            file[bit / 8] ^= 1 << (bit % 8);
            match scan(&file) {
                Err(RecordLogError::Corrupt { offset, .. }) => prop_assert!(offset <= bit / 8),
                Ok(scan) => prop_assert!(false, "flip of bit {} accepted: {:?}", bit, scan),
            }
        }
    }

    #[test]
    fn a_flip_inside_a_complete_last_record_is_corruption() {
        // Goal: an acknowledged last record that rots is refused, not cut as if torn (cutting
        // it would lose an acknowledged write). Method: flip a payload bit and a length bit of
        // the last record; both must be errors.
        let file = file_of(&[b"first".to_vec(), b"second".to_vec()]);
        let last = RECORD_HEADER_LENGTH + 5;
        let mut payload_flip = file.clone();
        *payload_flip.last_mut().unwrap() ^= 1;
        assert_eq!(
            scan(&payload_flip),
            Err(RecordLogError::Corrupt {
                offset: last,
                reason: "payload checksum mismatch"
            })
        );
        let mut length_flip = file.clone();
        length_flip[last + 3] ^= 0x40;
        assert_eq!(
            scan(&length_flip),
            Err(RecordLogError::Corrupt {
                offset: last,
                reason: "header checksum mismatch"
            })
        );
    }

    #[test]
    fn a_zero_filled_tail_is_torn() {
        // Goal: a file system that extended the file without writing the data (zeros) reads as
        // a torn tail. Method: append 20 zero bytes after a valid record.
        let mut file = file_of(&[b"kept".to_vec()]);
        let valid = file.len();
        file.extend_from_slice(&[0; 20]);
        let scan = scan(&file).unwrap();
        assert_eq!(scan.records, vec![&b"kept"[..]]);
        assert_eq!((scan.valid_length, scan.torn_length), (valid, 20));
    }

    #[test]
    fn garbage_after_a_damaged_header_is_corruption() {
        // Goal: a non-zero, invalid header followed by more bytes is not a torn tail. Method:
        // append 20 bytes of 0xAA.
        let mut file = file_of(&[b"kept".to_vec()]);
        let valid = file.len();
        file.extend_from_slice(&[0xAA; 20]);
        assert!(
            matches!(scan(&file), Err(RecordLogError::Corrupt { offset, .. }) if offset == valid)
        );
    }
}
