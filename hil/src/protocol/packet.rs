//! Packet framing of Dynamixel Protocol 2.0: header, ID, length, byte stuffing and CRC.
//!
//! `FF FF FD 00 | ID | LEN_L LEN_H | INST | params | CRC_L CRC_H`, where LEN counts the stuffed
//! bytes from INST to the CRC and the CRC covers the stuffed bytes from the header to the last
//! parameter. Owns the byte layout only; what an instruction's parameters mean is
//! `instruction.rs` and `status.rs`, finding packets in a byte stream is `parser.rs`.

use super::crc::crc16;

/// The four bytes that open every packet (the last one is reserved and always 0).
pub const HEADER: [u8; 4] = [0xFF, 0xFF, 0xFD, 0x00];
/// Addresses every device; devices do not answer it except where an instruction says so.
pub const BROADCAST_ID: u8 = 0xFE;
/// Highest ID a device can have.
pub const DEVICE_ID_MAX: u8 = 252;
/// Largest whole packet on the wire, header to CRC, as in the ROBOTIS SDK (TX/RXPACKET_MAX_LEN).
pub const PACKET_BYTES_MAX: usize = 1024;
/// Bytes before the instruction: header, ID, two length bytes.
pub const PREFIX_BYTES: usize = 7;
/// Smallest LEN field: instruction byte and CRC.
pub const LENGTH_FIELD_MIN: usize = 3;
/// Largest LEN field that fits in `PACKET_BYTES_MAX`.
pub const LENGTH_FIELD_MAX: usize = PACKET_BYTES_MAX - PREFIX_BYTES;

/// Instruction byte of a status packet.
pub const STATUS_INSTRUCTION: u8 = 0x55;

/// Errors building or decoding a packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("packet of {bytes} bytes exceeds the {max} byte limit", max = PACKET_BYTES_MAX)]
    TooLong { bytes: usize },
    #[error("byte stuffing broken: FF FF FD followed by {next:#04x} inside the packet body")]
    Stuffing { next: u8 },
    #[error("parameters too short for {what}: {len} bytes")]
    Truncated { what: &'static str, len: usize },
    #[error("{what}: {detail}")]
    Malformed { what: &'static str, detail: String },
}

/// One packet as it arrived: its ID, instruction byte, and body (instruction byte onwards,
/// without the CRC) still stuffed, plus the whole raw frame for checks that need it (the
/// running CRCs inside a Fast Sync Read reply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPacket {
    pub id: u8,
    pub instruction: u8,
    /// The whole frame, header to CRC, as received.
    pub frame: Vec<u8>,
}

impl RawPacket {
    /// The parameter bytes with the stuffing removed.
    pub fn params(&self) -> Result<Vec<u8>, PacketError> {
        unstuff(self.stuffed_params())
    }

    /// The parameter bytes exactly as on the wire (Fast Sync Read replies are not stuffed).
    pub fn stuffed_params(&self) -> &[u8] {
        &self.frame[PREFIX_BYTES + 1..self.frame.len() - 2]
    }
}

/// Appends `FD` after every `FF FF FD` in `body` (instruction byte and parameters).
pub fn stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 3);
    for (i, &b) in body.iter().enumerate() {
        out.push(b);
        if i >= 2 && body[i - 2] == 0xFF && body[i - 1] == 0xFF && b == 0xFD {
            out.push(0xFD);
        }
    }
    out
}

/// Inverse of [`stuff`]: drops the `FD` that follows every `FF FF FD`. A `FF FF FD` followed by
/// anything else cannot come from a stuffing sender and is an error.
pub fn unstuff(stuffed: &[u8]) -> Result<Vec<u8>, PacketError> {
    let mut out: Vec<u8> = Vec::with_capacity(stuffed.len());
    let mut i = 0;
    while i < stuffed.len() {
        out.push(stuffed[i]);
        i += 1;
        if out.len() >= 3 && out[out.len() - 3..] == [0xFF, 0xFF, 0xFD] {
            match stuffed.get(i) {
                Some(0xFD) => i += 1,
                Some(&next) => return Err(PacketError::Stuffing { next }),
                None => return Err(PacketError::Stuffing { next: 0 }),
            }
        }
    }
    Ok(out)
}

/// Builds a packet with byte stuffing: the form every instruction and every status packet
/// takes, except a Fast Sync Read reply.
pub fn encode(id: u8, instruction: u8, params: &[u8]) -> Result<Vec<u8>, PacketError> {
    let mut body = Vec::with_capacity(params.len() + 1);
    body.push(instruction);
    body.extend_from_slice(params);
    frame(id, &stuff(&body))
}

/// Builds a packet around a body that is sent as it is, without stuffing.
pub fn encode_unstuffed(id: u8, instruction: u8, params: &[u8]) -> Result<Vec<u8>, PacketError> {
    let mut body = Vec::with_capacity(params.len() + 1);
    body.push(instruction);
    body.extend_from_slice(params);
    frame(id, &body)
}

fn frame(id: u8, body: &[u8]) -> Result<Vec<u8>, PacketError> {
    let bytes = PREFIX_BYTES + body.len() + 2;
    if bytes > PACKET_BYTES_MAX {
        return Err(PacketError::TooLong { bytes });
    }
    let length = u16::try_from(body.len() + 2).expect("bounded by PACKET_BYTES_MAX");
    let mut out = Vec::with_capacity(bytes);
    out.extend_from_slice(&HEADER);
    out.push(id);
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(body);
    let crc = crc16(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    assert_eq!(out.len(), bytes, "frame length bookkeeping");
    Ok(out)
}

/// Wire time of `bytes` at `baud`: one start bit, eight data bits, one stop bit per byte.
pub fn wire_time_ns(bytes: usize, baud: u32) -> u64 {
    assert!(baud > 0, "baud rate must be positive");
    (bytes as u64) * 10 * 1_000_000_000 / u64::from(baud)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuffing_inserts_after_each_header_pattern() {
        // Goal: the stuffing rule of the e-manual. Method: hand-made bodies and their expected
        // stuffed forms, then unstuff back.
        let cases: [(&[u8], &[u8]); 4] = [
            (&[0x03, 0xFF, 0xFF, 0xFD], &[0x03, 0xFF, 0xFF, 0xFD, 0xFD]),
            (&[0xFF, 0xFF, 0xFD, 0xFD], &[0xFF, 0xFF, 0xFD, 0xFD, 0xFD]),
            (
                &[0xFF, 0xFF, 0xFF, 0xFD, 0x00],
                &[0xFF, 0xFF, 0xFF, 0xFD, 0xFD, 0x00],
            ),
            (&[0xFF, 0xFD, 0xFF, 0xFF], &[0xFF, 0xFD, 0xFF, 0xFF]),
        ];
        for (plain, stuffed) in cases {
            assert_eq!(stuff(plain), stuffed);
            assert_eq!(unstuff(stuffed).unwrap(), plain);
        }
    }

    #[test]
    fn unstuffing_rejects_a_bare_header_pattern() {
        // Goal: a body with FF FF FD not followed by FD is not a stuffed body. Method: decode one.
        assert_eq!(
            unstuff(&[0xFF, 0xFF, 0xFD, 0x01]),
            Err(PacketError::Stuffing { next: 0x01 })
        );
    }

    #[test]
    fn length_counts_stuffed_bytes() {
        // Goal: LEN and CRC are over the stuffed bytes. Method: a write whose data holds the
        // header pattern; LEN must include the added FD.
        let packet = encode(1, 0x03, &[0x74, 0x00, 0xFF, 0xFF, 0xFD]).unwrap();
        assert_eq!(u16::from_le_bytes([packet[5], packet[6]]), 1 + 6 + 2);
        let crc = crc16(&packet[..packet.len() - 2]);
        assert_eq!(packet[packet.len() - 2..], crc.to_le_bytes());
    }

    #[test]
    fn refuses_packets_over_the_limit() {
        // Goal: no packet larger than a device's buffer is built. Method: one byte too many.
        let params = vec![0u8; PACKET_BYTES_MAX - PREFIX_BYTES - 3 + 1];
        assert!(matches!(
            encode(1, 0x03, &params),
            Err(PacketError::TooLong { .. })
        ));
        assert!(encode(1, 0x03, &params[1..]).is_ok());
    }

    #[test]
    fn wire_time_is_ten_bits_per_byte() {
        // Goal: 10 bits a byte. Method: 1 Mbps gives 10 µs a byte; 57600 baud rounds down.
        assert_eq!(wire_time_ns(1, 1_000_000), 10_000);
        assert_eq!(wire_time_ns(14, 1_000_000), 140_000);
        assert_eq!(wire_time_ns(1, 57_600), 173_611);
    }
}
