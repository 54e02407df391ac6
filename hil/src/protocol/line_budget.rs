//! What bus traffic costs on the line: the bytes of each packet a host sends and its devices
//! answer, the time they take at a baud (10 bits a byte, `packet::wire_time_ns`) plus the
//! devices' Return Delay Time, for one exchange and for one control period's traffic, and
//! whether a period can carry it. Pure arithmetic over the Protocol 2.0 packet layout: no
//! clock, no I/O, and nothing of the bench runner beyond the shape of its cycle, which callers
//! pass in; so the simulator can charge a simulated bench link exactly what the real one costs.
//! The host link (`crate::link`) waits for its replies by these figures and the runner's
//! preflight refuses a control rate the baud cannot carry by them.
//!
//! Counts are of packets before byte stuffing (a `FD` after each `FF FF FD` in a body): exact
//! wherever the parameters cannot hold that pattern, which is the case of the bench's cycle
//! (checked against the encoder in the tests), and a lower bound otherwise.

use super::packet::{PREFIX_BYTES, wire_time_ns};

/// The CRC closing every packet.
const CRC_BYTES: usize = 2;
/// Address and data length opening the parameters of Sync Write and (Fast) Sync Read.
const GROUP_PARAMS_BYTES: usize = 4;

/// The share of a control period the line may be busy at most. The rest of the period is the
/// host's: waking at its deadline (tens to hundreds of microseconds without SCHED_FIFO), the
/// serial adapter's turnaround, the control step. A cycle whose traffic fills the whole period
/// overruns on every late wake-up, so some share must be left; a fifth is an engineering
/// allowance, not a measured figure. It makes the check necessary, not sufficient: a host
/// slower than that (a loaded machine, a USB latency timer left at 16 ms) still overruns, and
/// the loop's overrun counters say so. The link's reply-deadline margin is not charged here: it
/// bounds how long a lost reply is waited for, it is not time the line is busy.
pub const LINE_BUSY_SHARE_MAX: f64 = 0.8;

const _: () = assert!(LINE_BUSY_SHARE_MAX > 0.0 && LINE_BUSY_SHARE_MAX <= 1.0);

/// An instruction packet with `params_bytes` parameter bytes: header, ID, length, instruction,
/// parameters, CRC.
pub const fn instruction_packet_bytes(params_bytes: usize) -> usize {
    PREFIX_BYTES + 1 + params_bytes + CRC_BYTES
}

/// A status packet carrying `data_bytes`: header, ID, length, instruction 0x55, error, data,
/// CRC.
pub const fn status_packet_bytes(data_bytes: usize) -> usize {
    PREFIX_BYTES + 2 + data_bytes + CRC_BYTES
}

/// A Fast Sync Read instruction to `devices` devices: address, length, one ID each.
pub const fn fast_sync_read_bytes(devices: usize) -> usize {
    instruction_packet_bytes(GROUP_PARAMS_BYTES + devices)
}

/// The one combined reply to a Fast Sync Read of `data_bytes` from `devices` devices (not
/// stuffed): header, ID 0xFE, length, 0x55, then per device its error, ID, data and a CRC (the
/// last device's CRC is the packet's).
pub const fn fast_sync_reply_bytes(devices: usize, data_bytes: usize) -> usize {
    PREFIX_BYTES + 1 + devices * (2 + data_bytes + CRC_BYTES)
}

/// A Sync Write of `data_bytes` to each of `devices` devices: address, length, then ID and data
/// per device. No device answers it.
pub const fn sync_write_bytes(devices: usize, data_bytes: usize) -> usize {
    instruction_packet_bytes(GROUP_PARAMS_BYTES + devices * (1 + data_bytes))
}

/// One instruction and the replies it draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange {
    pub request_bytes: usize,
    /// Every byte the devices send back, all replies together.
    pub reply_bytes: usize,
    /// Status packets (or, for a Fast Sync Read, parts of one) the devices send: each follows
    /// its device's Return Delay Time.
    pub replies: usize,
}

impl Exchange {
    /// Bytes on the wire, both ways.
    pub fn bytes(&self) -> usize {
        self.request_bytes + self.reply_bytes
    }

    /// The time the exchange holds the line: every byte at `baud`, plus `return_delay_ns`
    /// before each reply (charged per reply, as a host must wait for the slowest case).
    pub fn line_time_ns(&self, baud: u32, return_delay_ns: u64) -> u64 {
        wire_time_ns(self.bytes(), baud) + self.replies as u64 * return_delay_ns
    }
}

/// The traffic of one control period on a bus of `devices` servos, as the bench runs it: one
/// Fast Sync Read of each device's feedback block (`feedback_bytes` each), then one Sync Write
/// of each device's command (`command_bytes` each), which draws no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlCycle {
    pub devices: usize,
    pub feedback_bytes: usize,
    pub command_bytes: usize,
}

/// A control cycle against a period, with the figures a refusal states.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CycleBudget {
    pub baud: u32,
    pub period_ns: u64,
    /// Bytes of the cycle on the wire, both ways.
    pub cycle_bytes: usize,
    /// The line time of the cycle: wire time plus return delays.
    pub line_time_ns: u64,
    /// What the period allows the line: [`LINE_BUSY_SHARE_MAX`] of it.
    pub line_time_ns_max: u64,
    /// The highest control rate whose period this cycle fits at this baud.
    pub rate_hz_max: f64,
}

impl CycleBudget {
    pub fn fits(&self) -> bool {
        self.line_time_ns <= self.line_time_ns_max
    }
}

impl ControlCycle {
    /// The feedback read, then the command write.
    pub fn exchanges(&self) -> [Exchange; 2] {
        [
            Exchange {
                request_bytes: fast_sync_read_bytes(self.devices),
                reply_bytes: fast_sync_reply_bytes(self.devices, self.feedback_bytes),
                replies: self.devices,
            },
            Exchange {
                request_bytes: sync_write_bytes(self.devices, self.command_bytes),
                reply_bytes: 0,
                replies: 0,
            },
        ]
    }

    /// Bytes of the cycle on the wire, both ways.
    pub fn bytes(&self) -> usize {
        self.exchanges().iter().map(Exchange::bytes).sum()
    }

    /// The time the cycle holds the line at `baud`, the devices answering after
    /// `return_delay_ns`.
    pub fn line_time_ns(&self, baud: u32, return_delay_ns: u64) -> u64 {
        self.exchanges()
            .iter()
            .map(|e| e.line_time_ns(baud, return_delay_ns))
            .sum()
    }

    /// The cycle against a control period of `period_ns` at `baud`.
    pub fn budget(&self, baud: u32, return_delay_ns: u64, period_ns: u64) -> CycleBudget {
        assert!(
            self.devices > 0,
            "a control cycle serves at least one device"
        );
        assert!(period_ns > 0, "a control period must be positive");
        let line_time_ns = self.line_time_ns(baud, return_delay_ns);
        CycleBudget {
            baud,
            period_ns,
            cycle_bytes: self.bytes(),
            line_time_ns,
            line_time_ns_max: (period_ns as f64 * LINE_BUSY_SHARE_MAX).floor() as u64,
            rate_hz_max: LINE_BUSY_SHARE_MAX * 1e9 / line_time_ns as f64,
        }
    }

    /// The lowest of `bauds` at which the cycle fits a period of `period_ns`, if any.
    pub fn lowest_baud(&self, bauds: &[u32], return_delay_ns: u64, period_ns: u64) -> Option<u32> {
        bauds
            .iter()
            .copied()
            .filter(|&b| self.budget(b, return_delay_ns, period_ns).fits())
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::super::instruction::{Instruction, InstructionPacket, SyncWriteEntry};
    use super::super::packet::BROADCAST_ID;
    use super::super::status::{FastSyncEntry, encode_fast_reply};
    use super::super::{ErrorByte, StatusPacket};
    use super::*;

    /// The bench's cycle (`runner::bench_cycle`): 21 feedback bytes, a 2-byte Goal Current.
    fn bench(devices: usize) -> ControlCycle {
        ControlCycle {
            devices,
            feedback_bytes: 21,
            command_bytes: 2,
        }
    }

    #[test]
    fn packet_sizes_match_the_encoder() {
        // Goal: the counts are the packets the codec builds, so the budget cannot drift from
        // the wire. Method: encode each kind for 1 to 4 devices, with command data full of FF
        // (Goal Current -1) where stuffing would show, and compare lengths.
        for n in 1..=4usize {
            let ids: Vec<u8> = (1..=n as u8).collect();
            let read = InstructionPacket::new(
                BROADCAST_ID,
                Instruction::FastSyncRead {
                    address: 126,
                    length: 21,
                    ids: ids.clone(),
                },
            );
            assert_eq!(read.encode().unwrap().len(), fast_sync_read_bytes(n));
            let write = InstructionPacket::new(
                BROADCAST_ID,
                Instruction::SyncWrite {
                    address: 102,
                    entries: ids
                        .iter()
                        .map(|&id| SyncWriteEntry {
                            id,
                            data: (-1i16).to_le_bytes().to_vec(),
                        })
                        .collect(),
                },
            );
            assert_eq!(write.encode().unwrap().len(), sync_write_bytes(n, 2));
            let entries: Vec<FastSyncEntry> = ids
                .iter()
                .map(|&id| FastSyncEntry {
                    id,
                    error: ErrorByte(0),
                    data: vec![0xFF; 21],
                })
                .collect();
            assert_eq!(
                encode_fast_reply(&entries).unwrap().len(),
                fast_sync_reply_bytes(n, 21)
            );
        }
        let ping_reply = StatusPacket {
            id: 1,
            error: ErrorByte(0),
            data: vec![0x06, 0x04, 0x26],
        };
        assert_eq!(ping_reply.encode().unwrap().len(), status_packet_bytes(3));
        assert_eq!(
            InstructionPacket::new(1, Instruction::Ping)
                .encode()
                .unwrap()
                .len(),
            instruction_packet_bytes(0)
        );
    }

    #[test]
    fn the_bench_cycle_by_hand() {
        // Goal: the figures preflight prints, checked by hand. Method: one axis: the read is
        // 7 + 1 + 4 + 1 + 2 = 15 bytes, its reply 7 + 1 + (2 + 21 + 2) = 33, the write
        // 7 + 1 + 4 + 3 + 2 = 17: 65 bytes. At 57600 baud a byte is 10/57600 s = 173.611 us,
        // so 65 bytes are 11.285 ms (each exchange's wire time rounded down to the
        // nanosecond: 8 333 333 + 2 951 388 ns) against the 4 ms (80 %) of a 5 ms period: refused, and the
        // highest rate is 0.8 / 11.285 ms = 70.9 Hz. At 1 Mbps: 650 us, fits. Two axes: 16 +
        // 58 + 20 = 94 bytes; with the factory Return Delay (500 us) each of the two replies
        // adds 500 us.
        let one = bench(1);
        assert_eq!(one.bytes(), 65);
        let slow = one.budget(57_600, 0, 5_000_000);
        assert_eq!(slow.cycle_bytes, 65);
        assert_eq!(slow.line_time_ns, 11_284_721);
        assert_eq!(slow.line_time_ns_max, 4_000_000);
        assert!(!slow.fits());
        assert!(
            (slow.rate_hz_max - 70.89).abs() < 0.01,
            "{}",
            slow.rate_hz_max
        );
        let fast = one.budget(1_000_000, 0, 5_000_000);
        assert_eq!(fast.line_time_ns, 650_000);
        assert!(fast.fits());
        let two = bench(2);
        assert_eq!(two.bytes(), 94);
        assert_eq!(two.line_time_ns(1_000_000, 0), 940_000);
        assert_eq!(two.line_time_ns(1_000_000, 500_000), 1_940_000);
    }

    #[test]
    fn lowest_baud_is_the_first_standard_rate_that_fits() {
        // Goal: what preflight advises. Method: 200 Hz (4 ms of line per 5 ms period) on one
        // axis: 115200 baud gives 65 × 86.8 us = 5.64 ms, too long; 1 Mbps is the answer. At
        // 2000 Hz (400 us of line) 1 Mbps's 650 us is too long and 2 Mbps's 325 us fits. Ten
        // axes at 2000 Hz fit at no rate in the list.
        let bauds = [9_600, 57_600, 115_200, 1_000_000, 2_000_000, 4_500_000];
        assert_eq!(bench(1).lowest_baud(&bauds, 0, 5_000_000), Some(1_000_000));
        assert_eq!(bench(1).lowest_baud(&bauds, 0, 500_000), Some(2_000_000));
        assert_eq!(bench(10).lowest_baud(&bauds, 0, 500_000), None);
        assert!(bench(1).budget(115_200, 0, 5_000_000).line_time_ns > 4_000_000);
    }

    #[test]
    fn a_cycle_at_its_highest_rate_just_fits() {
        // Goal: the advised rate is one the check accepts (no advice that is refused again).
        // Method: for several bauds and axis counts, the period of floor(rate_hz_max) fits.
        for devices in 1..=6 {
            for baud in [9_600, 57_600, 115_200, 1_000_000] {
                let cycle = bench(devices);
                let rate = cycle.budget(baud, 0, 1_000_000).rate_hz_max.floor();
                let period_ns = (1e9 / rate).round() as u64;
                assert!(
                    cycle.budget(baud, 0, period_ns).fits(),
                    "{devices} devices at {baud} baud, {rate} Hz"
                );
            }
        }
    }
}
