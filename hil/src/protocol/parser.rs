//! Streaming packet parser: bytes in, whole packets out, in any chunking. Resynchronises after
//! garbage, rejects bad CRCs and impossible lengths, and never panics on any input. Owns framing
//! recognition and the receiver's inter-byte timeout (a partial packet is given up after the
//! line has been idle too long, as a UART receiver does); it does not unstuff (a Fast Sync Read
//! reply is not stuffed) nor interpret the instruction. Pure: the caller passes the time in.
//!
//! One receiver for both ends of the line: the emulated servos (`emulator::bus`) and the host
//! link (`link`) feed it with [`Parser::push_at`] and call [`Parser::expire`] while they wait.

use std::collections::VecDeque;

use super::crc::crc16;
use super::packet::{
    BROADCAST_ID, HEADER, LENGTH_FIELD_MAX, LENGTH_FIELD_MIN, PREFIX_BYTES, RawPacket, wire_time_ns,
};

/// Bytes the parser holds at most; older bytes are discarded (counted) when more arrive.
pub const BUFFER_BYTES_MAX: usize = 8192;

/// Character times of silence after which a receiver gives up a partial packet. Four is the
/// character timeout of the 16550 UART's receive FIFO, the classic hardware rule for "the sender
/// has stopped"; a sender that streams a packet (every ROBOTIS client writes a packet in one
/// go) leaves no gap of even one character inside it.
pub const INTER_BYTE_GAP_CHARACTERS: usize = 4;

/// The inter-byte timeout never goes below this. On the host, a USB serial adapter hands bytes
/// over in bursts: an FTDI chip (the U2D2's) holds a packet's tail until its latency timer runs
/// out, 16 ms by default, so two bytes that were adjacent on the wire can reach the host 16 ms
/// apart. On the emulator's pseudo-terminal, the gap between two writes of one sender is the
/// operating system's scheduling, milliseconds on a loaded machine. Four characters are 40 us at
/// 1 Mbps and 4.2 ms at 9600 baud, so this floor decides at every Dynamixel baud. ROBOTIS's own
/// device-side receiver (Dynamixel2Arduino's `dxlRxPacket2_0`) resets after 500 ms between two
/// bytes; 20 ms keeps above the adapter's burst gap and resynchronises 25 times sooner.
pub const INTER_BYTE_TIMEOUT_NS_MIN: u64 = 20_000_000;

/// The idle gap after which a partial packet is given up, at `baud`: [`INTER_BYTE_GAP_CHARACTERS`]
/// character times (10 bits each), at least [`INTER_BYTE_TIMEOUT_NS_MIN`].
pub fn inter_byte_timeout_ns(baud: u32) -> u64 {
    wire_time_ns(INTER_BYTE_GAP_CHARACTERS, baud).max(INTER_BYTE_TIMEOUT_NS_MIN)
}

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
    /// Partial packets given up: by the inter-byte timeout ([`Parser::expire`]) or by the
    /// caller ([`Parser::flush`]).
    pub partials_given_up: u64,
}

/// The streaming parser. Feed it with [`Parser::push`] (or [`Parser::push_at`] for a timed
/// receiver), take packets with [`Parser::next_packet`].
#[derive(Debug, Default)]
pub struct Parser {
    buffer: VecDeque<u8>,
    /// What the rescan of a given-up partial packet found, handed out before anything else. At
    /// most one item per byte of `buffer` (each item consumes at least one byte), so bounded by
    /// [`BUFFER_BYTES_MAX`].
    found: VecDeque<Result<RawPacket, ParseError>>,
    /// The inter-byte timeout of a timed receiver; `None` never gives a partial packet up.
    inter_byte_timeout_ns: Option<u64>,
    /// When the last bytes arrived (`push_at`), on the caller's clock.
    last_byte_ns: Option<u64>,
    stats: ParserStats,
}

impl Parser {
    /// An untimed parser, for bytes known to be whole (a captured reply, a test vector).
    pub fn new() -> Parser {
        Parser::default()
    }

    /// A receiver that gives up a partial packet once the line has been idle for longer than
    /// `inter_byte_timeout_ns` (see [`inter_byte_timeout_ns`]).
    pub fn with_inter_byte_timeout(inter_byte_timeout_ns: u64) -> Parser {
        assert!(
            inter_byte_timeout_ns > 0,
            "an inter-byte timeout of zero would give up every packet"
        );
        Parser {
            inter_byte_timeout_ns: Some(inter_byte_timeout_ns),
            ..Parser::default()
        }
    }

    pub fn stats(&self) -> ParserStats {
        self.stats
    }

    /// Bytes held, not yet part of a returned packet.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Bytes that arrived, with no time attached: an untimed parser's input.
    pub fn push(&mut self, bytes: &[u8]) {
        assert!(
            self.inter_byte_timeout_ns.is_none(),
            "a timed receiver takes its bytes with push_at"
        );
        self.append(bytes);
    }

    /// Bytes that arrived by `now_ns` (the caller's clock, never going back): for a shell, the
    /// time its read returned them. This does not judge the gap before them: a read's time is
    /// only an upper bound of when its bytes arrived (a process descheduled for longer than the
    /// timeout finds contiguous bytes late), so the gap is judged by [`Parser::expire`] at the
    /// instants the caller knows the line was silent, and bytes pushed without one are taken
    /// to continue what is held.
    pub fn push_at(&mut self, now_ns: u64, bytes: &[u8]) {
        assert!(
            self.inter_byte_timeout_ns.is_some(),
            "push_at is for a timed receiver (Parser::with_inter_byte_timeout)"
        );
        if let Some(last) = self.last_byte_ns {
            assert!(
                now_ns >= last,
                "time went back: {now_ns} ns after {last} ns"
            );
        }
        if !bytes.is_empty() {
            self.last_byte_ns = Some(now_ns);
        }
        self.append(bytes);
    }

    /// When the bytes held will be given up if nothing more arrives: the last byte's time plus
    /// the inter-byte timeout, past which [`Parser::expire`] acts. `None` when nothing is held
    /// or the parser is untimed. A caller waiting for bytes sleeps no longer than this.
    pub fn expiry_ns(&self) -> Option<u64> {
        let timeout = self.inter_byte_timeout_ns?;
        let last = self.last_byte_ns?;
        (!self.buffer.is_empty()).then(|| last.saturating_add(timeout).saturating_add(1))
    }

    /// The inter-byte timeout: the caller knows the line was silent from the last bytes pushed
    /// up to `now_ns` (a read that found nothing started then). If that is longer than the
    /// timeout and a partial packet is held, the partial packet is given up and what it held is
    /// searched again ([`Parser::flush`]); the next bytes start afresh, as in a UART receiver.
    /// True when something was given up. A gap up to the timeout keeps what is held: the gap
    /// inside a packet may be that long.
    pub fn expire(&mut self, now_ns: u64) -> bool {
        match self.expiry_ns() {
            Some(expiry) if now_ns >= expiry => {
                self.flush();
                true
            }
            _ => false,
        }
    }

    /// Gives up the partial packet held (no more bytes will come for it: the line went idle, or
    /// the caller stopped waiting). A garbage header that announced a long packet must not hide
    /// the real packets behind it, so the search goes on from the byte after each header that
    /// cannot complete; every packet and error found is returned by [`Parser::next_packet`],
    /// in order, and nothing is held afterwards.
    pub fn flush(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        self.stats.partials_given_up += 1;
        loop {
            while let Some(item) = self.scan() {
                self.found.push_back(item);
            }
            if self.buffer.is_empty() {
                break;
            }
            // A header at the front that cannot complete: search on from its second byte.
            self.drop_front(1);
        }
        assert!(
            self.found.len() <= BUFFER_BYTES_MAX,
            "each item found consumed at least one held byte"
        );
    }

    /// Drops everything held, found or not yet returned (a new exchange: stale bytes from an
    /// earlier, late reply must not be taken for its reply).
    pub fn clear(&mut self) {
        self.stats.discarded_bytes += self.buffer.len() as u64;
        self.buffer.clear();
        self.found.clear();
    }

    /// The next whole packet, an error for a broken one, or `None` when more bytes are needed.
    /// After an error the parser has already moved past the broken header.
    pub fn next_packet(&mut self) -> Option<Result<RawPacket, ParseError>> {
        if let Some(item) = self.found.pop_front() {
            return Some(item);
        }
        self.scan()
    }

    fn append(&mut self, bytes: &[u8]) {
        self.buffer.extend(bytes.iter().copied());
        let excess = self.buffer.len().saturating_sub(BUFFER_BYTES_MAX);
        if excess > 0 {
            self.buffer.drain(..excess);
            self.stats.discarded_bytes += excess as u64;
        }
    }

    /// The framing search over `buffer`: the next packet or error, `None` when the front needs
    /// more bytes.
    fn scan(&mut self) -> Option<Result<RawPacket, ParseError>> {
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

    /// A header that announces a 300-byte packet (LEN 0x012C) and never delivers it.
    const TRUNCATED_HEADER: [u8; 7] = [0xFF, 0xFF, 0xFD, 0x00, 0x01, 0x2C, 0x01];
    const TIMEOUT_NS: u64 = 20_000_000;

    #[test]
    fn a_truncated_header_then_a_ping_yields_the_ping_once_the_gap_passes() {
        // Goal: the receiver is not deaf after a truncated packet (issue 12: `hil emulate`
        // ignored every ping after a header announcing 300 bytes). Method: the header, then a
        // ping 1 ms later; nothing while the line may still be inside the long packet; exactly
        // the ping once the line has been idle for longer than the timeout.
        let ping = encode(1, 0x01, &[]).unwrap();
        let mut parser = Parser::with_inter_byte_timeout(TIMEOUT_NS);
        parser.push_at(0, &TRUNCATED_HEADER);
        parser.push_at(1_000_000, &ping);
        assert!(
            parser.next_packet().is_none(),
            "the long packet may still come"
        );
        assert_eq!(parser.expiry_ns(), Some(1_000_000 + TIMEOUT_NS + 1));
        assert!(
            !parser.expire(1_000_000 + TIMEOUT_NS),
            "a gap of exactly the timeout is kept"
        );
        assert!(parser.next_packet().is_none());
        assert!(parser.expire(1_000_000 + TIMEOUT_NS + 1));
        let (packets, errors) = collect(&mut parser);
        assert_eq!(packets.len(), 1);
        assert_eq!(packets[0].frame, ping);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(parser.buffered(), 0);
        assert_eq!(parser.expiry_ns(), None, "nothing held, nothing to expire");
        let stats = parser.stats();
        assert_eq!(stats.partials_given_up, 1);
        assert_eq!(stats.discarded_bytes, TRUNCATED_HEADER.len() as u64);
    }

    #[test]
    fn a_ping_after_an_idle_gap_starts_afresh() {
        // Goal: bytes that arrive after the line was idle too long are a new packet (the pings
        // "after two seconds of silence" of issue 12), and are answered at once. Method: the
        // truncated header; the waiting shell's expire at 1 s gives it up; a ping at 2 s comes
        // out as soon as it is pushed.
        let ping = encode(1, 0x01, &[]).unwrap();
        let mut parser = Parser::with_inter_byte_timeout(TIMEOUT_NS);
        parser.push_at(0, &TRUNCATED_HEADER);
        assert!(parser.expire(1_000_000_000));
        assert!(
            parser.next_packet().is_none(),
            "the header alone hid nothing"
        );
        parser.push_at(2_000_000_000, &ping);
        let (packets, _) = collect(&mut parser);
        assert_eq!(packets.len(), 1);
        assert_eq!(packets[0].frame, ping);
    }

    #[test]
    fn bytes_pushed_late_without_a_silent_instant_continue_the_packet() {
        // Goal: a shell descheduled for longer than the timeout does not give up a packet whose
        // bytes were contiguous on the wire: only expire, called at an instant the line is
        // known silent, judges the gap. Method: half a ping at 0, the other half pushed 50 ms
        // later with no expire between: the ping comes out whole.
        let ping = encode(1, 0x01, &[]).unwrap();
        let mut parser = Parser::with_inter_byte_timeout(TIMEOUT_NS);
        parser.push_at(0, &ping[..5]);
        parser.push_at(50_000_000, &ping[5..]);
        let (packets, _) = collect(&mut parser);
        assert_eq!(packets.len(), 1);
        assert_eq!(packets[0].frame, ping);
        assert_eq!(parser.stats().partials_given_up, 0);
    }

    #[test]
    fn bytes_within_the_gap_are_not_dropped() {
        // Goal: the timeout only gives up a packet whose sender went quiet. Method: a read
        // reply fed one byte at a time, each byte exactly one timeout after the previous one,
        // with expire called just before each byte; the packet must come out whole.
        let status = encode(2, 0x55, &[0x00, 0xA6, 0x00, 0x00, 0x00]).unwrap();
        let mut parser = Parser::with_inter_byte_timeout(TIMEOUT_NS);
        let mut packets = Vec::new();
        for (k, b) in status.iter().enumerate() {
            let t = k as u64 * TIMEOUT_NS;
            assert!(!parser.expire(t), "byte {k}: a gap of the timeout is kept");
            parser.push_at(t, &[*b]);
            packets.extend(collect(&mut parser).0);
        }
        assert_eq!(packets.len(), 1);
        assert_eq!(packets[0].frame, status);
        assert_eq!(parser.stats().partials_given_up, 0);
    }

    #[test]
    fn flush_finds_every_packet_behind_a_garbage_header() {
        // Goal: giving a partial packet up rescans what it held: packets hidden behind a
        // garbage header come out, in order, and a broken one among them is reported. Method:
        // garbage header, a ping, a corrupted ping, a second ping; flush.
        let first = encode(3, 0x01, &[]).unwrap();
        let second = encode(4, 0x01, &[]).unwrap();
        let mut broken = encode(5, 0x01, &[]).unwrap();
        let last = broken.len() - 1;
        broken[last] ^= 0x01;
        let mut parser = Parser::new();
        parser.push(&[0xFF, 0xFF, 0xFD, 0x00, 0x01, 0x00, 0x02]);
        for p in [&first, &broken, &second] {
            parser.push(p);
        }
        assert!(parser.next_packet().is_none());
        parser.flush();
        assert_eq!(parser.buffered(), 0);
        let (packets, errors) = collect(&mut parser);
        assert_eq!(
            packets.iter().map(|p| p.id).collect::<Vec<_>>(),
            vec![3, 4],
            "both pings, in order"
        );
        assert!(
            matches!(errors[..], [ParseError::Crc { id: 5, .. }]),
            "{errors:?}"
        );
    }

    #[test]
    fn an_untimed_parser_never_gives_up() {
        // Goal: decoding a captured buffer is not subject to a clock. Method: a partial packet
        // in an untimed parser survives any expire.
        let mut parser = Parser::new();
        parser.push(&TRUNCATED_HEADER);
        assert_eq!(parser.expiry_ns(), None);
        assert!(!parser.expire(u64::MAX));
        assert_eq!(parser.buffered(), TRUNCATED_HEADER.len());
    }

    #[test]
    fn inter_byte_timeout_is_four_characters_with_a_floor() {
        // Goal: the timeout's rule, by hand. Method: at 1 Mbps four characters are 40 us, so
        // the 20 ms floor decides; at 1200 baud they are 4 × 10 / 1200 s = 33.3 ms.
        assert_eq!(inter_byte_timeout_ns(1_000_000), 20_000_000);
        assert_eq!(inter_byte_timeout_ns(9_600), 20_000_000);
        assert_eq!(inter_byte_timeout_ns(1_200), 33_333_333);
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
