//! Streaming packet parser: bytes in, whole packets out, in any chunking. Resynchronises after
//! garbage, rejects bad CRCs and impossible lengths, and never panics on any input. Owns framing
//! recognition only; it does not unstuff (a Fast Sync Read reply is not stuffed) nor interpret
//! the instruction.

use std::collections::VecDeque;

use super::crc::crc16;
use super::packet::{
    BROADCAST_ID, HEADER, LENGTH_FIELD_MAX, LENGTH_FIELD_MIN, PREFIX_BYTES, RawPacket,
};

/// Bytes the parser holds at most; older bytes are discarded (counted) when more arrive.
pub const BUFFER_BYTES_MAX: usize = 8192;

/// What the parser found that was not a packet. Each one is also counted in [`ParserStats`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error(
        "CRC mismatch on a packet from ID {id}: computed {computed:#06x}, received {received:#06x}"
    )]
    Crc {
        id: u8,
        computed: u16,
        received: u16,
    },
    #[error("impossible length field {length} in a packet header")]
    Length { length: usize },
    #[error("invalid ID {id:#04x} in a packet header")]
    Id { id: u8 },
}

/// Counters of what the parser has seen since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParserStats {
    pub packets: u64,
    pub crc_errors: u64,
    pub length_errors: u64,
    pub id_errors: u64,
    /// Bytes skipped while looking for a header (garbage, broken packets, overflow).
    pub discarded_bytes: u64,
}

/// The streaming parser. Feed it with [`Parser::push`], take packets with [`Parser::next_packet`].
#[derive(Debug, Default)]
pub struct Parser {
    buffer: VecDeque<u8>,
    stats: ParserStats,
}

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    pub fn stats(&self) -> ParserStats {
        self.stats
    }

    /// Bytes held, not yet part of a returned packet.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend(bytes.iter().copied());
        let excess = self.buffer.len().saturating_sub(BUFFER_BYTES_MAX);
        if excess > 0 {
            self.buffer.drain(..excess);
            self.stats.discarded_bytes += excess as u64;
        }
    }

    /// Drops everything held (for instance after a timeout, when a partial packet will never
    /// complete).
    pub fn clear(&mut self) {
        self.stats.discarded_bytes += self.buffer.len() as u64;
        self.buffer.clear();
    }

    /// Gives up on a partial packet at the front: drops its first byte so the search for a
    /// header goes on inside it. Call after a timeout while [`Parser::buffered`] is non-zero;
    /// a garbage header with a long length would otherwise hide a real packet behind it.
    pub fn skip_partial(&mut self) {
        if self.buffer.pop_front().is_some() {
            self.stats.discarded_bytes += 1;
        }
    }

    /// The next whole packet, an error for a broken one, or `None` when more bytes are needed.
    /// After an error the parser has already moved past the broken header.
    pub fn next_packet(&mut self) -> Option<Result<RawPacket, ParseError>> {
        self.discard_to_header();
        if self.buffer.len() < PREFIX_BYTES {
            return None;
        }
        let id = self.buffer[4];
        let length = usize::from(u16::from_le_bytes([self.buffer[5], self.buffer[6]]));
        if id > BROADCAST_ID {
            self.drop_front(1);
            self.stats.id_errors += 1;
            return Some(Err(ParseError::Id { id }));
        }
        if !(LENGTH_FIELD_MIN..=LENGTH_FIELD_MAX).contains(&length) {
            self.drop_front(1);
            self.stats.length_errors += 1;
            return Some(Err(ParseError::Length { length }));
        }
        let total = PREFIX_BYTES + length;
        if self.buffer.len() < total {
            return None;
        }
        let frame: Vec<u8> = self.buffer.iter().take(total).copied().collect();
        let computed = crc16(&frame[..total - 2]);
        let received = u16::from_le_bytes([frame[total - 2], frame[total - 1]]);
        if computed != received {
            // The header may have been garbage that looked like one: search on from its
            // second byte, so a real packet inside the bad one is still found.
            self.drop_front(1);
            self.stats.crc_errors += 1;
            return Some(Err(ParseError::Crc {
                id,
                computed,
                received,
            }));
        }
        self.buffer.drain(..total);
        self.stats.packets += 1;
        let instruction = frame[PREFIX_BYTES];
        Some(Ok(RawPacket {
            id,
            instruction,
            frame,
        }))
    }

    /// Drops bytes until the buffer starts with the header or a prefix of it that may still
    /// complete.
    fn discard_to_header(&mut self) {
        let mut skip = 0;
        let len = self.buffer.len();
        while skip < len {
            let candidate =
                (0..HEADER.len().min(len - skip)).all(|k| self.buffer[skip + k] == HEADER[k]);
            if candidate {
                break;
            }
            skip += 1;
        }
        self.drop_front(skip);
    }

    fn drop_front(&mut self, count: usize) {
        self.buffer.drain(..count);
        self.stats.discarded_bytes += count as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::super::packet::encode;
    use super::*;

    fn collect(parser: &mut Parser) -> (Vec<RawPacket>, Vec<ParseError>) {
        let mut packets = Vec::new();
        let mut errors = Vec::new();
        while let Some(item) = parser.next_packet() {
            match item {
                Ok(p) => packets.push(p),
                Err(e) => errors.push(e),
            }
        }
        (packets, errors)
    }

    #[test]
    fn finds_a_packet_after_garbage_in_any_chunking() {
        // Goal: resynchronisation and chunk independence. Method: garbage (including partial
        // headers) before a ping, fed one byte at a time.
        let ping = encode(1, 0x01, &[]).unwrap();
        let mut stream = vec![0x00, 0xFF, 0xFF, 0x12, 0xFF, 0xFF, 0xFD, 0x01];
        stream.extend_from_slice(&ping);
        let mut parser = Parser::new();
        let mut packets = Vec::new();
        for b in &stream {
            parser.push(&[*b]);
            let (p, _) = collect(&mut parser);
            packets.extend(p);
        }
        assert_eq!(packets.len(), 1);
        assert_eq!(packets[0].frame, ping);
    }

    #[test]
    fn rejects_a_bad_crc_and_finds_the_next_packet() {
        // Goal: a corrupted packet is reported and counted, the following one still parses.
        let mut bad = encode(1, 0x02, &[0x84, 0x00, 0x04, 0x00]).unwrap();
        let last = bad.len() - 1;
        bad[last] ^= 0x01;
        let good = encode(2, 0x01, &[]).unwrap();
        let mut parser = Parser::new();
        parser.push(&bad);
        parser.push(&good);
        let (packets, errors) = collect(&mut parser);
        assert_eq!(packets.len(), 1);
        assert_eq!(packets[0].id, 2);
        assert!(matches!(errors[..], [ParseError::Crc { id: 1, .. }]));
        assert_eq!(parser.stats().crc_errors, 1);
    }

    #[test]
    fn rejects_impossible_lengths() {
        // Goal: LEN below 3 or beyond the packet limit is refused at once, not waited for.
        let mut parser = Parser::new();
        parser.push(&[0xFF, 0xFF, 0xFD, 0x00, 0x01, 0x02, 0x00]);
        parser.push(&[0xFF, 0xFF, 0xFD, 0x00, 0x01, 0xFF, 0xFF]);
        let (packets, errors) = collect(&mut parser);
        assert!(packets.is_empty());
        assert_eq!(
            errors,
            vec![
                ParseError::Length { length: 2 },
                ParseError::Length { length: 0xFFFF }
            ]
        );
    }

    #[test]
    fn skip_partial_unblocks_a_packet_hidden_behind_a_garbage_header() {
        // Goal: a garbage header that announces a long packet does not swallow a real one for
        // ever. Method: garbage header + ping; the parser waits; skip_partial finds the ping.
        let ping = encode(3, 0x01, &[]).unwrap();
        let mut parser = Parser::new();
        parser.push(&[0xFF, 0xFF, 0xFD, 0x00, 0x01, 0x00, 0x02]);
        parser.push(&ping);
        assert!(parser.next_packet().is_none());
        let mut found = None;
        while parser.buffered() > 0 && found.is_none() {
            parser.skip_partial();
            if let Some(Ok(p)) = parser.next_packet() {
                found = Some(p);
            }
        }
        assert_eq!(found.unwrap().frame, ping);
    }

    #[test]
    fn buffer_is_bounded() {
        // Goal: a flood of garbage never grows memory past the limit.
        let mut parser = Parser::new();
        for _ in 0..10 {
            parser.push(&[0xFF; BUFFER_BYTES_MAX]);
            assert!(parser.next_packet().is_none());
            assert!(parser.buffered() <= BUFFER_BYTES_MAX);
        }
    }
}
