//! The host link (`hil::link::HostBus`) as a receiver, against a scripted device behind a real
//! pseudo-terminal: a reply hidden behind a truncated packet is found once the line has been
//! idle for the inter-byte timeout, not only at the reply deadline.

// The scripted device serves in real time on its own thread; the test bounds its waits on the
// wall clock, as the link does.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use hil::emulator::pty::{Line, PtyLine};
use hil::link::HostBus;
use hil::protocol::{ErrorByte, InstructionPacket, Parser, StatusPacket};

/// A status header for ID 1 announcing a 300-byte packet (LEN 0x012C) whose body never comes.
const TRUNCATED_HEADER: [u8; 7] = [0xFF, 0xFF, 0xFD, 0x00, 0x01, 0x2C, 0x01];
/// The link's reply deadline margin in this test: long, so that a reply found only at the
/// deadline is told apart from one found after the inter-byte timeout (20 ms).
const DEADLINE_MARGIN_S: u64 = 3;
/// How long the scripted device waits for the host's ping.
const DEVICE_WAIT_S_MAX: u64 = 10;

#[test]
fn the_host_link_resynchronises_after_a_truncated_packet() {
    // Goal: issue 12's "the host link resynchronises after an idle gap": the link used to look
    // behind a garbage header only at its reply deadline. Method: a device thread on a pty
    // answers the host's ping with a truncated header followed at once by the real reply (ID 1,
    // model 1020, firmware 48); the link, with a 3 s deadline margin, must return the reply
    // well before the deadline (after the idle gap) and count the 7 header bytes discarded.
    let mut line = PtyLine::open().expect("a pseudo-terminal");
    let path = line.path().display().to_string();
    let device = std::thread::spawn(move || {
        let mut parser = Parser::new();
        let mut buf = [0u8; 256];
        let deadline = Instant::now() + Duration::from_secs(DEVICE_WAIT_S_MAX);
        while Instant::now() < deadline {
            if let Some(Ok(raw)) = parser.next_packet() {
                let ping = InstructionPacket::decode(&raw).expect("an instruction");
                assert_eq!(ping.id, 1, "{ping:?}");
                let reply = StatusPacket {
                    id: 1,
                    error: ErrorByte(0),
                    data: vec![0xFC, 0x03, 48],
                };
                let mut bytes = TRUNCATED_HEADER.to_vec();
                bytes.extend(reply.encode().unwrap());
                line.write_all(&bytes).expect("device writes");
                // The line stays open until the host has read: closing the master hangs up.
                return Some(line);
            }
            let n = line
                .read_timeout(&mut buf, Duration::from_millis(10))
                .expect("device reads");
            parser.push(&buf[..n]);
        }
        None
    });
    let mut bus = HostBus::open(&path, 1_000_000).expect("open the pty");
    bus.timeout_margin = Duration::from_secs(DEADLINE_MARGIN_S);
    let started = Instant::now();
    let answer = bus.ping(1);
    let waited = started.elapsed();
    let line = device.join().expect("device thread");
    assert!(line.is_some(), "the device never saw the ping");
    assert_eq!(
        answer.expect("the reply behind the truncated header"),
        (1020, 48)
    );
    assert!(
        waited < Duration::from_secs(DEADLINE_MARGIN_S),
        "found after {waited:?}: only at the reply deadline, not after the idle gap"
    );
    let stats = bus.stats();
    assert_eq!(
        stats.discarded_bytes,
        TRUNCATED_HEADER.len() as u64,
        "{stats:?}"
    );
    assert_eq!((stats.timeouts, stats.crc_errors), (0, 0), "{stats:?}");
}
