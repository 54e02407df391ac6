//! `hil emulate` as a receiver, through a real pseudo-terminal: it resynchronises after a
//! truncated packet, as a UART receiver does after an idle gap, and keeps a packet that reaches
//! it in several reads.

// These tests talk to a real-time process over a real line: they bound their waits on the wall
// clock (and sleep to make the silences they test), as the host link does.
#![allow(clippy::disallowed_methods)]

use std::io::Write;
use std::time::{Duration, Instant};

use hil::protocol::parser::inter_byte_timeout_ns;
use hil::protocol::{Instruction, InstructionPacket, Parser, StatusPacket};

use super::bench::Emulator;

/// A header for ID 1 that announces a 300-byte packet (LEN 0x012C) whose body never comes.
const TRUNCATED_HEADER: [u8; 7] = [0xFF, 0xFF, 0xFD, 0x00, 0x01, 0x2C, 0x01];
/// How long a test waits for one reply before calling the emulator deaf; far beyond the
/// inter-byte timeout, so a loaded machine does not fail it.
const REPLY_WAIT_S_MAX: u64 = 3;
/// The model number a ping of an XM430-W350 returns.
const MODEL_XM430_W350: u16 = 1020;

fn open(path: &str) -> Box<dyn serialport::SerialPort> {
    serialport::new(path, 1_000_000)
        .timeout(Duration::from_millis(10))
        .open()
        .unwrap_or_else(|e| panic!("open {path}: {e}"))
}

/// The first status packet from the line, or `None` after `REPLY_WAIT_S_MAX`.
fn status(port: &mut dyn serialport::SerialPort) -> Option<StatusPacket> {
    let mut parser = Parser::new();
    let deadline = Instant::now() + Duration::from_secs(REPLY_WAIT_S_MAX);
    let mut buf = [0u8; 256];
    while Instant::now() < deadline {
        if let Some(Ok(raw)) = parser.next_packet() {
            return Some(StatusPacket::decode(&raw).expect("a status packet"));
        }
        match port.read(&mut buf) {
            Ok(n) => parser.push(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("reading the pseudo-terminal: {e}"),
        }
    }
    None
}

fn ping() -> Vec<u8> {
    InstructionPacket::new(1, Instruction::Ping)
        .encode()
        .unwrap()
}

fn model(status: &StatusPacket) -> u16 {
    u16::from_le_bytes([status.data[0], status.data[1]])
}

#[test]
fn emulator_deaf_after_a_truncated_header() {
    // Goal: the bug of issue 12, pinned: after one header announcing 300 bytes, `hil emulate`
    // answered no ping again, not even after seconds of silence. Method: through the pty,
    // (1) the truncated header and a ping in one write: the ping, hidden inside what may still
    // be the long packet, is answered once the line has been idle for the inter-byte timeout,
    // and not before; (2) another truncated header, silence, then five pings one after the
    // other: each answered; the exit summary counts both partial packets given up.
    let emulator = Emulator::start(&[]);
    let mut port = open(&emulator.path);
    let mut write = TRUNCATED_HEADER.to_vec();
    write.extend_from_slice(&ping());
    let sent = Instant::now();
    port.write_all(&write).unwrap();
    let reply = status(port.as_mut()).expect("the ping behind the truncated header is answered");
    let waited = sent.elapsed();
    assert_eq!((reply.id, model(&reply)), (1, MODEL_XM430_W350));
    let timeout = Duration::from_nanos(inter_byte_timeout_ns(1_000_000));
    assert!(
        waited > timeout,
        "answered after {waited:?}, before the line was idle for {timeout:?}"
    );

    port.write_all(&TRUNCATED_HEADER).unwrap();
    std::thread::sleep(timeout * 5);
    for k in 0..5 {
        port.write_all(&ping()).unwrap();
        let reply = status(port.as_mut()).unwrap_or_else(|| panic!("ping {k} after silence"));
        assert_eq!((reply.id, model(&reply)), (1, MODEL_XM430_W350));
    }
    drop(port);
    let summary = emulator.stop();
    assert_eq!(summary["partials_given_up"], 2, "{summary}");
    assert_eq!(summary["instructions"], 6, "{summary}");
}

#[test]
fn a_packet_in_several_writes_within_the_timeout_is_answered() {
    // Goal: the inter-byte timeout gives up only a sender that went quiet: a packet written in
    // pieces with short pauses (a read reaching the emulator in several pty reads, each but
    // the last ending inside the packet) is answered once, and nothing is given up. Method: a
    // Read of Present Position written in three pieces (cut inside the header and inside the
    // parameters), 2 ms apart (a tenth of the timeout); one reply with four data bytes. Few
    // pieces: each pause is a chance for this shared machine to stall the writer past 20 ms.
    let emulator = Emulator::start(&[]);
    let mut port = open(&emulator.path);
    let read = InstructionPacket::new(
        1,
        Instruction::Read {
            address: 132,
            length: 4,
        },
    )
    .encode()
    .unwrap();
    for piece in [&read[..3], &read[3..9], &read[9..]] {
        port.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let reply = status(port.as_mut()).expect("the read written in pieces is answered");
    assert_eq!((reply.id, reply.data.len()), (1, 4));
    drop(port);
    let summary = emulator.stop();
    assert_eq!(summary["partials_given_up"], 0, "{summary}");
    assert_eq!(summary["instructions"], 1, "{summary}");
}
