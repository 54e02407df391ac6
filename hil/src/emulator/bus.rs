//! The emulated bus: several emulated servos behind one line, fed raw bytes and answering with
//! timed transmissions. Owns instruction dispatch (unicast, broadcast, sync, bulk and fast
//! reads), the Status Return Level, the receiver's inter-byte timeout (the devices give up a
//! partial packet once the line has been idle too long, and find what it hid), and wire time:
//! a reply is due after the instruction's own wire time, the servo's Return Delay Time and the
//! reply's wire time at the configured baud, all on the emulator's clock (a pseudo-terminal
//! itself has no baud rate). Pure: time passed in, no I/O. The pseudo-terminal and the faults
//! on the link are `pty.rs`.

use std::time::Duration;

use crate::protocol::instruction::code;
use crate::protocol::packet::{BROADCAST_ID, wire_time_ns};
use crate::protocol::parser::inter_byte_timeout_ns;
use crate::protocol::status::encode_fast_reply;
use crate::protocol::{
    ErrorByte, ErrorCode, FastSyncEntry, Instruction, InstructionPacket, ParseError, Parser,
    StatusPacket,
};

use super::servo::{Answer, EmulatedServo};

/// Bytes queued for the host, due at a time on the emulator's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmission {
    pub due: Duration,
    pub bytes: Vec<u8>,
}

/// Counters of what the bus has seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BusStats {
    pub instructions: u64,
    pub crc_errors: u64,
    pub malformed: u64,
    /// Partial packets given up after an idle gap on the line.
    pub partials_given_up: u64,
}

/// Servos sharing one line.
#[derive(Debug)]
pub struct EmulatedBus {
    servos: Vec<EmulatedServo>,
    parser: Parser,
    baud: u32,
    /// The line is busy (the device side transmitting) until this time.
    line_free_ns: u64,
    stats: BusStats,
}

fn ns(t: Duration) -> u64 {
    u64::try_from(t.as_nanos()).expect("time fits in u64 ns")
}

impl EmulatedBus {
    pub fn new(servos: Vec<EmulatedServo>, baud: u32) -> EmulatedBus {
        assert!(!servos.is_empty(), "a bus needs at least one servo");
        assert!(baud > 0, "baud must be positive");
        EmulatedBus {
            servos,
            parser: Parser::with_inter_byte_timeout(inter_byte_timeout_ns(baud)),
            baud,
            line_free_ns: 0,
            stats: BusStats::default(),
        }
    }

    pub fn servos(&self) -> &[EmulatedServo] {
        &self.servos
    }

    pub fn servos_mut(&mut self) -> &mut [EmulatedServo] {
        &mut self.servos
    }

    pub fn stats(&self) -> BusStats {
        BusStats {
            partials_given_up: self.parser.stats().partials_given_up,
            ..self.stats
        }
    }

    /// When a partial packet held by the devices will be given up if the line stays idle: the
    /// serving loop calls [`EmulatedBus::idle`] by then.
    pub fn expiry(&self) -> Option<Duration> {
        self.parser.expiry_ns().map(Duration::from_nanos)
    }

    /// Runs every servo's firmware up to `t`.
    pub fn advance_to(&mut self, t: Duration) {
        for s in &mut self.servos {
            s.advance_to(t);
        }
    }

    fn index_of(&self, id: u8) -> Option<usize> {
        self.servos.iter().position(|s| s.id() == id)
    }

    /// Bytes that arrived from the host at `t` (the moment the host wrote them). Returns what
    /// the servos send back, in order, each with its due time.
    pub fn receive(&mut self, t: Duration, bytes: &[u8]) -> Vec<Transmission> {
        self.parser.push_at(ns(t), bytes);
        // The instruction has been on the wire for its own length before a device has it all.
        self.dispatch(ns(t), true)
    }

    /// The line was silent from the last bytes received up to `t` (the serving loop knows it
    /// from a read that found nothing): if that is longer than the inter-byte timeout, the
    /// partial packet held is given up and the packets it hid are answered now.
    pub fn idle(&mut self, t: Duration) -> Vec<Transmission> {
        if self.parser.expire(ns(t)) {
            self.dispatch(ns(t), false)
        } else {
            Vec::new()
        }
    }

    /// Executes every packet the parser has. `now_ns` is when the bytes arrived (`on_wire`: a
    /// packet is complete after its own wire time) or when they were found (already complete).
    fn dispatch(&mut self, now_ns: u64, on_wire: bool) -> Vec<Transmission> {
        let mut out = Vec::new();
        let arrived_ns = now_ns;
        while let Some(item) = self.parser.next_packet() {
            match item {
                Ok(raw) => {
                    let wire_ns = if on_wire {
                        wire_time_ns(raw.frame.len(), self.baud)
                    } else {
                        0
                    };
                    let done_ns = arrived_ns + wire_ns;
                    self.advance_to(Duration::from_nanos(done_ns));
                    match InstructionPacket::decode(&raw) {
                        Ok(packet) => {
                            self.stats.instructions += 1;
                            out.extend(self.execute(done_ns, &packet));
                        }
                        Err(_) => {
                            self.stats.malformed += 1;
                            out.extend(self.reject(done_ns, raw.id, raw.instruction));
                        }
                    }
                }
                Err(ParseError::Crc { id, .. }) => {
                    self.stats.crc_errors += 1;
                    if let Some(i) = self.index_of(id).filter(|_| id != BROADCAST_ID) {
                        let answer = Answer {
                            error: ErrorByte::new(false, Some(ErrorCode::Crc)),
                            data: Vec::new(),
                        };
                        out.extend(self.reply(arrived_ns, i, answer));
                    }
                }
                Err(_) => self.stats.malformed += 1,
            }
        }
        out
    }

    /// A decodable packet with undecodable parameters: unicast gets Instruction or Length
    /// errors back, as a device would.
    fn reject(&mut self, now_ns: u64, id: u8, instruction: u8) -> Option<Transmission> {
        let i = self.index_of(id)?;
        let code = match instruction {
            code::PING
            | code::READ
            | code::WRITE
            | code::REG_WRITE
            | code::ACTION
            | code::FACTORY_RESET
            | code::REBOOT
            | code::CLEAR => ErrorCode::DataLength,
            _ => ErrorCode::Instruction,
        };
        self.reply(
            now_ns,
            i,
            Answer {
                error: ErrorByte::new(false, Some(code)),
                data: Vec::new(),
            },
        )
    }

    /// Queues servo `i`'s status packet, honouring its Status Return Level and Return Delay.
    fn reply(&mut self, now_ns: u64, i: usize, answer: Answer) -> Option<Transmission> {
        let servo = &self.servos[i];
        let packet = StatusPacket {
            id: servo.id(),
            error: answer.error,
            data: answer.data,
        };
        let bytes = packet
            .encode()
            .expect("status packets fit the packet limit");
        let start = (now_ns + servo.return_delay_ns()).max(self.line_free_ns);
        let due = start + wire_time_ns(bytes.len(), self.baud);
        self.line_free_ns = due;
        Some(Transmission {
            due: Duration::from_nanos(due),
            bytes,
        })
    }

    fn answers_to(&self, i: usize, instruction: &Instruction) -> bool {
        match (self.servos[i].status_return_level(), instruction) {
            (_, Instruction::Ping) => true,
            (0, _) => false,
            (1, i) => matches!(
                i,
                Instruction::Read { .. }
                    | Instruction::SyncRead { .. }
                    | Instruction::FastSyncRead { .. }
                    | Instruction::BulkRead { .. }
                    | Instruction::FastBulkRead { .. }
            ),
            _ => true,
        }
    }

    fn execute(&mut self, now_ns: u64, packet: &InstructionPacket) -> Vec<Transmission> {
        let mut out = Vec::new();
        let broadcast = packet.id == BROADCAST_ID;
        match &packet.instruction {
            Instruction::SyncWrite { address, entries } => {
                for e in entries {
                    if let Some(i) = self.index_of(e.id) {
                        self.servos[i].contact(now_ns);
                        // No status for sync write; errors are silent, as on the device.
                        let _ = self.servos[i].write(now_ns, *address, &e.data);
                    }
                }
            }
            Instruction::BulkWrite { entries } => {
                for e in entries {
                    if let Some(i) = self.index_of(e.id) {
                        self.servos[i].contact(now_ns);
                        let _ = self.servos[i].write(now_ns, e.address, &e.data);
                    }
                }
            }
            Instruction::SyncRead {
                address,
                length,
                ids,
            } => {
                for id in ids {
                    if let Some(i) = self.index_of(*id) {
                        self.servos[i].contact(now_ns);
                        let answer = self.servos[i].read(*address, *length);
                        out.extend(self.reply(now_ns, i, answer));
                    }
                }
            }
            Instruction::BulkRead { entries } => {
                for e in entries {
                    if let Some(i) = self.index_of(e.id) {
                        self.servos[i].contact(now_ns);
                        let answer = self.servos[i].read(e.address, e.length);
                        out.extend(self.reply(now_ns, i, answer));
                    }
                }
            }
            Instruction::FastSyncRead {
                address,
                length,
                ids,
            } => {
                let reads: Vec<(u8, u16, u16)> =
                    ids.iter().map(|&id| (id, *address, *length)).collect();
                out.extend(self.fast_read(now_ns, &reads));
            }
            Instruction::FastBulkRead { entries } => {
                let reads: Vec<(u8, u16, u16)> = entries
                    .iter()
                    .map(|e| (e.id, e.address, e.length))
                    .collect();
                out.extend(self.fast_read(now_ns, &reads));
            }
            instruction => {
                let targets: Vec<usize> = if broadcast {
                    (0..self.servos.len()).collect()
                } else {
                    self.index_of(packet.id).into_iter().collect()
                };
                for i in targets {
                    self.servos[i].contact(now_ns);
                    let answer = self.unicast(now_ns, i, instruction, broadcast);
                    // Broadcast: only ping answers (each device in turn).
                    let answers = self.answers_to(i, instruction)
                        && (!broadcast || matches!(instruction, Instruction::Ping));
                    if let (Some(answer), true) = (answer, answers) {
                        out.extend(self.reply(now_ns, i, answer));
                    }
                }
            }
        }
        out
    }

    fn unicast(
        &mut self,
        now_ns: u64,
        i: usize,
        instruction: &Instruction,
        broadcast: bool,
    ) -> Option<Answer> {
        let servo = &mut self.servos[i];
        Some(match instruction {
            Instruction::Ping => servo.ping(),
            Instruction::Read { address, length } => servo.read(*address, *length),
            Instruction::Write { address, data } => servo.write(now_ns, *address, data),
            Instruction::RegWrite { address, data } => servo.reg_write(*address, data),
            Instruction::Action => servo.action(now_ns),
            Instruction::Reboot => servo.reboot(),
            Instruction::FactoryReset { scope } => {
                // Firmware 42+: a broadcast Reset All is ignored.
                if broadcast && *scope == crate::protocol::ResetScope::All {
                    return None;
                }
                servo.factory_reset(*scope)
            }
            Instruction::Clear { payload } => servo.clear(*payload),
            _ => unreachable!("group instructions are dispatched in execute"),
        })
    }

    /// One combined reply for Fast Sync/Bulk Read. A device missing from the bus leaves the
    /// reply incomplete, as on a real line: the host's decode then fails.
    fn fast_read(&mut self, now_ns: u64, reads: &[(u8, u16, u16)]) -> Option<Transmission> {
        let mut entries = Vec::with_capacity(reads.len());
        let mut delay_ns = 0;
        for &(id, address, length) in reads {
            let i = self.index_of(id)?;
            self.servos[i].contact(now_ns);
            let answer = self.servos[i].read(address, length);
            let data = if answer.data.len() == usize::from(length) {
                answer.data
            } else {
                vec![0; usize::from(length)]
            };
            delay_ns = delay_ns.max(self.servos[i].return_delay_ns());
            entries.push(FastSyncEntry {
                id,
                error: answer.error,
                data,
            });
        }
        let bytes = encode_fast_reply(&entries).ok()?;
        let start = (now_ns + delay_ns).max(self.line_free_ns);
        let due = start + wire_time_ns(bytes.len(), self.baud);
        self.line_free_ns = due;
        Some(Transmission {
            due: Duration::from_nanos(due),
            bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control_table::{XM430_W350, address};
    use crate::protocol::{Parser, SyncWriteEntry};

    fn bus(ids: &[u8], baud: u32) -> EmulatedBus {
        let params = plant_model::AxisParams::preset("xm430-w350").unwrap();
        let servos = ids
            .iter()
            .map(|&id| EmulatedServo::new(XM430_W350, id, params.clone(), 7))
            .collect();
        EmulatedBus::new(servos, baud)
    }

    fn send(
        bus: &mut EmulatedBus,
        t_ms: u64,
        id: u8,
        instruction: Instruction,
    ) -> Vec<(Duration, StatusPacket)> {
        let bytes = InstructionPacket::new(id, instruction).encode().unwrap();
        bus.receive(Duration::from_millis(t_ms), &bytes)
            .into_iter()
            .map(|tx| {
                let mut p = Parser::new();
                p.push(&tx.bytes);
                (
                    tx.due,
                    StatusPacket::decode(&p.next_packet().unwrap().unwrap()).unwrap(),
                )
            })
            .collect()
    }

    fn code(status: &StatusPacket) -> Option<ErrorCode> {
        status.error.code().unwrap()
    }

    #[test]
    fn ping_reply_is_delayed_by_wire_time_and_return_delay() {
        // Goal: wire time at the configured baud plus Return Delay Time. Method: at 1 Mbps a
        // 10-byte ping takes 100 µs, the default delay is 250 × 2 µs, the 14-byte reply 140 µs.
        let mut b = bus(&[1], 1_000_000);
        let replies = send(&mut b, 10, 1, Instruction::Ping);
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].1.data, vec![0xFC, 0x03, 48]);
        assert_eq!(
            replies[0].0,
            Duration::from_micros(10_000 + 100 + 500 + 140)
        );
    }

    #[test]
    fn unknown_ids_and_broadcast_writes_stay_silent() {
        // Goal: only the addressed device answers; broadcast writes take effect without a reply.
        let mut b = bus(&[1, 2], 1_000_000);
        assert!(send(&mut b, 1, 9, Instruction::Ping).is_empty());
        let write = Instruction::Write {
            address: address::LED,
            data: vec![1],
        };
        assert!(send(&mut b, 2, BROADCAST_ID, write).is_empty());
        assert!(b.servos().iter().all(|s| s.table().get(address::LED) == 1));
        let pings = send(&mut b, 3, BROADCAST_ID, Instruction::Ping);
        assert_eq!(
            pings.iter().map(|(_, s)| s.id).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert!(
            pings[0].0 < pings[1].0,
            "devices answer one after the other"
        );
    }

    #[test]
    fn status_return_level_zero_answers_only_ping() {
        // Goal: register 68 decides which instructions get a status packet.
        let mut b = bus(&[1], 1_000_000);
        send(
            &mut b,
            1,
            1,
            Instruction::Write {
                address: address::STATUS_RETURN_LEVEL,
                data: vec![0],
            },
        );
        assert!(
            send(
                &mut b,
                2,
                1,
                Instruction::Read {
                    address: 132,
                    length: 4
                }
            )
            .is_empty()
        );
        assert_eq!(send(&mut b, 3, 1, Instruction::Ping).len(), 1);
    }

    #[test]
    fn bus_watchdog_cuts_torque_and_blocks_goals_until_cleared() {
        // Goal: register 98 semantics (reference notes §3): on expiry torque goes off, the
        // register reads -1, goal writes answer Data Range until 0 is written. Method: arm 1
        // (20 ms) with torque on in current mode, stay silent 50 ms, then probe.
        let mut b = bus(&[1], 1_000_000);
        send(
            &mut b,
            0,
            1,
            Instruction::Write {
                address: address::OPERATING_MODE,
                data: vec![0],
            },
        );
        send(
            &mut b,
            1,
            1,
            Instruction::Write {
                address: address::TORQUE_ENABLE,
                data: vec![1],
            },
        );
        send(
            &mut b,
            2,
            1,
            Instruction::Write {
                address: address::BUS_WATCHDOG,
                data: vec![1],
            },
        );
        // Regular contact keeps it alive.
        for t in (10..100).step_by(10) {
            let r = send(
                &mut b,
                t,
                1,
                Instruction::Write {
                    address: address::GOAL_CURRENT,
                    data: vec![10, 0],
                },
            );
            assert_eq!(code(&r[0].1), None);
        }
        assert!(b.servos()[0].torque_enabled());
        b.advance_to(Duration::from_millis(150));
        assert!(!b.servos()[0].torque_enabled(), "watchdog expired");
        let r = send(
            &mut b,
            151,
            1,
            Instruction::Read {
                address: address::BUS_WATCHDOG,
                length: 1,
            },
        );
        assert_eq!(r[0].1.data, vec![0xFF]);
        let r = send(
            &mut b,
            152,
            1,
            Instruction::Write {
                address: address::GOAL_CURRENT,
                data: vec![10, 0],
            },
        );
        assert_eq!(code(&r[0].1), Some(ErrorCode::DataRange));
        send(
            &mut b,
            153,
            1,
            Instruction::Write {
                address: address::BUS_WATCHDOG,
                data: vec![0],
            },
        );
        let r = send(
            &mut b,
            154,
            1,
            Instruction::Write {
                address: address::GOAL_CURRENT,
                data: vec![10, 0],
            },
        );
        assert_eq!(code(&r[0].1), None);
    }

    #[test]
    fn sync_write_and_fast_sync_read_reach_each_device() {
        // Goal: group instructions address each device's part. Method: sync write different
        // goal currents to IDs 1 and 2, fast sync read them back in one combined reply.
        let mut b = bus(&[1, 2], 1_000_000);
        let entries = vec![
            SyncWriteEntry {
                id: 1,
                data: 5i16.to_le_bytes().to_vec(),
            },
            SyncWriteEntry {
                id: 2,
                data: (-7i16).to_le_bytes().to_vec(),
            },
        ];
        assert!(
            send(
                &mut b,
                1,
                BROADCAST_ID,
                Instruction::SyncWrite {
                    address: address::GOAL_CURRENT,
                    entries
                }
            )
            .is_empty()
        );
        let bytes = InstructionPacket::new(
            BROADCAST_ID,
            Instruction::FastSyncRead {
                address: address::GOAL_CURRENT,
                length: 2,
                ids: vec![1, 2],
            },
        )
        .encode()
        .unwrap();
        let txs = b.receive(Duration::from_millis(2), &bytes);
        assert_eq!(txs.len(), 1);
        let mut p = Parser::new();
        p.push(&txs[0].bytes);
        let raw = p.next_packet().unwrap().unwrap();
        let entries = crate::protocol::status::decode_fast_sync_reply(&raw, 2).unwrap();
        assert_eq!(entries[0].data, 5i16.to_le_bytes());
        assert_eq!(entries[1].data, (-7i16).to_le_bytes());
    }

    #[test]
    fn reg_write_waits_for_action_and_reboot_clears_ram() {
        // Goal: Reg Write is held until Action; Action without one is an Instruction error;
        // Reboot restores RAM defaults and keeps EEPROM.
        let mut b = bus(&[1], 1_000_000);
        send(
            &mut b,
            1,
            1,
            Instruction::RegWrite {
                address: address::LED,
                data: vec![1],
            },
        );
        assert_eq!(b.servos()[0].table().get(address::LED), 0);
        assert_eq!(
            b.servos()[0].table().get(address::REGISTERED_INSTRUCTION),
            1
        );
        send(&mut b, 2, 1, Instruction::Action);
        assert_eq!(b.servos()[0].table().get(address::LED), 1);
        let r = send(&mut b, 3, 1, Instruction::Action);
        assert_eq!(code(&r[0].1), Some(ErrorCode::Instruction));
        send(
            &mut b,
            4,
            1,
            Instruction::Write {
                address: address::RETURN_DELAY_TIME,
                data: vec![0],
            },
        );
        send(&mut b, 5, 1, Instruction::Reboot);
        assert_eq!(b.servos()[0].table().get(address::LED), 0);
        assert_eq!(b.servos()[0].table().get(address::RETURN_DELAY_TIME), 0);
    }

    #[test]
    fn corrupted_instruction_gets_a_crc_error() {
        // Goal: a unicast instruction with a bad CRC is answered with error 3, not executed.
        let mut b = bus(&[1], 1_000_000);
        let mut bytes = InstructionPacket::new(
            1,
            Instruction::Write {
                address: address::LED,
                data: vec![1],
            },
        )
        .encode()
        .unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let txs = b.receive(Duration::from_millis(1), &bytes);
        let mut p = Parser::new();
        p.push(&txs[0].bytes);
        let status = StatusPacket::decode(&p.next_packet().unwrap().unwrap()).unwrap();
        assert_eq!(code(&status), Some(ErrorCode::Crc));
        assert_eq!(b.servos()[0].table().get(address::LED), 0);
    }
}
