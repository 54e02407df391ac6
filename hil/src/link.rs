//! The host side of the Dynamixel bus over a serial port: one exchange at a time (send an
//! instruction, wait for its status packets), with timeouts, resynchronisation after garbage
//! (the parser's inter-byte timeout, and a rescan at each reply deadline), and counters of
//! everything that went wrong. Owns the serial port; the meaning of the bytes is `protocol`,
//! what an exchange costs on the line is `protocol::line_budget`. Real-time code: it reads the
//! clock to bound its waits.

// The link waits on the wall clock for replies: it is bench I/O, outside any simulation.
#![allow(clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::protocol::line_budget::{Exchange, fast_sync_reply_bytes, status_packet_bytes};
use crate::protocol::packet::BROADCAST_ID;
use crate::protocol::parser::inter_byte_timeout_ns;
use crate::protocol::status::decode_fast_sync_reply;
use crate::protocol::{
    ErrorByte, Instruction, InstructionPacket, PacketError, ParseError, Parser, RawPacket,
    StatusPacket, SyncWriteEntry,
};

/// Bytes read from the port at once.
const READ_CHUNK_BYTES: usize = 1024;
/// Shortest read timeout asked of the port (a zero timeout would not wait at all).
const READ_WAIT_US_MIN: u64 = 100;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("no reply from ID {id} within {waited_us} us")]
    Timeout { id: u8, waited_us: u64 },
    #[error("corrupted reply from ID {id}: {detail}")]
    Corrupt { id: u8, detail: String },
    #[error("ID {id} answered with {error}")]
    Status { id: u8, error: ErrorByte },
    #[error("unexpected reply: {0}")]
    Unexpected(String),
    #[error("serial port: {0}")]
    Io(#[from] std::io::Error),
    #[error("serial port {path}: {source}")]
    Open {
        path: String,
        source: serialport::Error,
    },
    #[error("packet: {0}")]
    Packet(#[from] PacketError),
}

impl LinkError {
    /// True for errors that say the line itself is gone (not one bad exchange).
    pub fn is_fatal(&self) -> bool {
        matches!(self, LinkError::Io(_) | LinkError::Open { .. })
    }
}

/// What went wrong on the link, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStats {
    pub exchanges: u64,
    pub timeouts: u64,
    pub crc_errors: u64,
    pub corrupt_replies: u64,
    pub status_errors: u64,
    pub io_errors: u64,
    pub discarded_bytes: u64,
}

/// The host end of a Dynamixel bus.
pub struct HostBus {
    port: Box<dyn serialport::SerialPort>,
    parser: Parser,
    /// The parser's clock starts here (it takes nanoseconds since the link opened).
    opened: Instant,
    baud: u32,
    /// Added to the modelled wire time of every exchange (adapter latency, scheduling).
    pub timeout_margin: Duration,
    /// Return Delay Time the devices are configured with (added to the wait).
    pub return_delay: Duration,
    stats: LinkStats,
}

impl std::fmt::Debug for HostBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostBus")
            .field("baud", &self.baud)
            .field("stats", &self.stats)
            .finish()
    }
}

impl HostBus {
    pub fn open(path: &str, baud: u32) -> Result<HostBus, LinkError> {
        let port = serialport::new(path, baud)
            .timeout(Duration::from_millis(1))
            .open()
            .map_err(|source| LinkError::Open {
                path: path.to_string(),
                source,
            })?;
        Ok(HostBus {
            port,
            parser: Parser::with_inter_byte_timeout(inter_byte_timeout_ns(baud)),
            opened: Instant::now(),
            baud,
            timeout_margin: Duration::from_millis(20),
            // Factory Return Delay Time: 250 × 2 µs.
            return_delay: Duration::from_micros(500),
            stats: LinkStats::default(),
        })
    }

    pub fn stats(&self) -> LinkStats {
        let mut s = self.stats;
        s.discarded_bytes = self.parser.stats().discarded_bytes;
        s
    }

    fn send(&mut self, packet: &InstructionPacket) -> Result<usize, LinkError> {
        // Stale bytes from an earlier, late reply must not be taken for this one's.
        let _ = self.port.clear(serialport::ClearBuffer::Input);
        self.parser.clear();
        let bytes = packet.encode()?;
        self.stats.exchanges += 1;
        if let Err(e) = self.port.write_all(&bytes).and_then(|()| self.port.flush()) {
            self.stats.io_errors += 1;
            return Err(e.into());
        }
        Ok(bytes.len())
    }

    /// How long to wait for the replies of `exchange`: its time on the line, plus the margin.
    fn wait_for(&self, exchange: Exchange) -> Duration {
        let return_delay_ns = u64::try_from(self.return_delay.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(exchange.line_time_ns(self.baud, return_delay_ns))
            + self.timeout_margin
    }

    /// `t` on the parser's clock.
    fn clock_ns(&self, t: Instant) -> u64 {
        u64::try_from(t.duration_since(self.opened).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The next packet from the line, or an error at `deadline`.
    fn receive(
        &mut self,
        id: u8,
        deadline: Instant,
        started: Instant,
    ) -> Result<RawPacket, LinkError> {
        let mut buf = [0u8; READ_CHUNK_BYTES];
        let mut crc_seen = false;
        loop {
            while let Some(item) = self.parser.next_packet() {
                match item {
                    Ok(raw) => return Ok(raw),
                    Err(ParseError::Crc { .. }) => crc_seen = true,
                    Err(_) => {}
                }
            }
            let now = Instant::now();
            if now >= deadline {
                // No more bytes will be waited for: a garbage header may hide the reply behind
                // it, so give the partial packet up and search what it held.
                self.parser.flush();
                while let Some(item) = self.parser.next_packet() {
                    match item {
                        Ok(raw) => return Ok(raw),
                        Err(ParseError::Crc { .. }) => crc_seen = true,
                        Err(_) => {}
                    }
                }
                if crc_seen {
                    self.stats.crc_errors += 1;
                    return Err(LinkError::Corrupt {
                        id,
                        detail: "CRC mismatch".into(),
                    });
                }
                self.stats.timeouts += 1;
                let waited_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                return Err(LinkError::Timeout { id, waited_us });
            }
            let mut remaining = deadline - now;
            if let Some(expiry_ns) = self.parser.expiry_ns() {
                let expiry = self.opened + Duration::from_nanos(expiry_ns);
                remaining = remaining.min(expiry.saturating_duration_since(now));
            }
            let _ = self
                .port
                .set_timeout(remaining.max(Duration::from_micros(READ_WAIT_US_MIN)));
            match self.port.read(&mut buf) {
                Ok(0) => {
                    // End of file: the device side closed the line.
                    self.stats.io_errors += 1;
                    return Err(LinkError::Io(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "serial line closed",
                    )));
                }
                Ok(n) => {
                    let arrived_ns = self.clock_ns(Instant::now());
                    self.parser.push_at(arrived_ns, &buf[..n]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    // Nothing was pending when the read began: the line was silent up to `now`.
                    // A partial packet whose sender went quiet is given up here, not at the
                    // deadline, and what it hid is searched at the top of the loop.
                    self.parser.expire(self.clock_ns(now));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.stats.io_errors += 1;
                    return Err(e.into());
                }
            }
        }
    }

    /// One status packet from `id`, checked for ID, CRC and error byte.
    fn status_from(
        &mut self,
        id: u8,
        deadline: Instant,
        started: Instant,
    ) -> Result<StatusPacket, LinkError> {
        loop {
            let raw = self.receive(id, deadline, started)?;
            if raw.id != id {
                // An echo or another device's late reply: not ours, keep waiting.
                continue;
            }
            let status = StatusPacket::decode(&raw).map_err(|e| {
                self.stats.corrupt_replies += 1;
                LinkError::Corrupt {
                    id,
                    detail: e.to_string(),
                }
            })?;
            if status.error.code() != Ok(None) {
                self.stats.status_errors += 1;
                return Err(LinkError::Status {
                    id,
                    error: status.error,
                });
            }
            return Ok(status);
        }
    }

    fn exchange(
        &mut self,
        packet: InstructionPacket,
        reply_data_bytes: usize,
    ) -> Result<StatusPacket, LinkError> {
        let id = packet.id;
        let sent = self.send(&packet)?;
        let started = Instant::now();
        let deadline = started
            + self.wait_for(Exchange {
                request_bytes: sent,
                reply_bytes: status_packet_bytes(reply_data_bytes),
                replies: 1,
            });
        self.status_from(id, deadline, started)
    }

    /// Ping: model number and firmware version.
    pub fn ping(&mut self, id: u8) -> Result<(u16, u8), LinkError> {
        let status = self.exchange(InstructionPacket::new(id, Instruction::Ping), 3)?;
        if status.data.len() != 3 {
            return Err(LinkError::Unexpected(format!(
                "ping reply of {} bytes",
                status.data.len()
            )));
        }
        Ok((
            u16::from_le_bytes([status.data[0], status.data[1]]),
            status.data[2],
        ))
    }

    pub fn read(&mut self, id: u8, address: u16, length: u16) -> Result<Vec<u8>, LinkError> {
        let status = self.exchange(
            InstructionPacket::new(id, Instruction::Read { address, length }),
            usize::from(length),
        )?;
        if status.data.len() != usize::from(length) {
            self.stats.corrupt_replies += 1;
            return Err(LinkError::Corrupt {
                id,
                detail: format!("{} bytes for a read of {length}", status.data.len()),
            });
        }
        Ok(status.data)
    }

    pub fn write(&mut self, id: u8, address: u16, data: &[u8]) -> Result<(), LinkError> {
        self.exchange(
            InstructionPacket::new(
                id,
                Instruction::Write {
                    address,
                    data: data.to_vec(),
                },
            ),
            0,
        )?;
        Ok(())
    }

    /// Sync Write: no reply.
    pub fn sync_write(
        &mut self,
        address: u16,
        entries: Vec<SyncWriteEntry>,
    ) -> Result<(), LinkError> {
        self.send(&InstructionPacket::new(
            BROADCAST_ID,
            Instruction::SyncWrite { address, entries },
        ))?;
        Ok(())
    }

    /// Fast Sync Read: one combined reply, the data of each ID in order.
    pub fn fast_sync_read(
        &mut self,
        address: u16,
        length: u16,
        ids: &[u8],
    ) -> Result<Vec<Vec<u8>>, LinkError> {
        let packet = InstructionPacket::new(
            BROADCAST_ID,
            Instruction::FastSyncRead {
                address,
                length,
                ids: ids.to_vec(),
            },
        );
        let sent = self.send(&packet)?;
        let started = Instant::now();
        let deadline = started
            + self.wait_for(Exchange {
                request_bytes: sent,
                reply_bytes: fast_sync_reply_bytes(ids.len(), usize::from(length)),
                replies: ids.len(),
            });
        let first = ids.first().copied().unwrap_or(BROADCAST_ID);
        loop {
            let raw = self.receive(first, deadline, started)?;
            if raw.id != BROADCAST_ID {
                continue;
            }
            let entries = decode_fast_sync_reply(&raw, usize::from(length)).map_err(|e| {
                self.stats.corrupt_replies += 1;
                LinkError::Corrupt {
                    id: first,
                    detail: e.to_string(),
                }
            })?;
            if entries.len() != ids.len() || entries.iter().zip(ids).any(|(e, id)| e.id != *id) {
                self.stats.corrupt_replies += 1;
                return Err(LinkError::Corrupt {
                    id: first,
                    detail: "fast sync reply names other IDs".into(),
                });
            }
            if let Some(e) = entries.iter().find(|e| e.error.code() != Ok(None)) {
                self.stats.status_errors += 1;
                return Err(LinkError::Status {
                    id: e.id,
                    error: e.error,
                });
            }
            return Ok(entries.into_iter().map(|e| e.data).collect());
        }
    }

    /// Sync Read: one status packet per ID, in order.
    pub fn sync_read(
        &mut self,
        address: u16,
        length: u16,
        ids: &[u8],
    ) -> Result<Vec<Vec<u8>>, LinkError> {
        let packet = InstructionPacket::new(
            BROADCAST_ID,
            Instruction::SyncRead {
                address,
                length,
                ids: ids.to_vec(),
            },
        );
        let sent = self.send(&packet)?;
        let started = Instant::now();
        let deadline = started
            + self.wait_for(Exchange {
                request_bytes: sent,
                reply_bytes: ids.len() * status_packet_bytes(usize::from(length)),
                replies: ids.len(),
            });
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            let status = self.status_from(id, deadline, started)?;
            if status.data.len() != usize::from(length) {
                self.stats.corrupt_replies += 1;
                return Err(LinkError::Corrupt {
                    id,
                    detail: "short sync read reply".into(),
                });
            }
            out.push(status.data);
        }
        Ok(out)
    }
}
