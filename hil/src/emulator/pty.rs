//! Serving an emulated bus in real time, behind a pseudo-terminal (`--pty`) or on a real serial
//! port (`--port`). Owns the line I/O, the real-time schedule of replies (each sent when its
//! modelled wire time says it would have finished), the clock of the devices' inter-byte
//! timeout (the loop tells the bus when the line stayed idle), link faults, and the summary
//! printed at exit. The device logic is `bus.rs` and `servo.rs`.

// This module is the emulator's real-time shell: its clock is the wall clock, by design.
#![allow(clippy::disallowed_methods)]

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, ppoll};
use nix::pty::openpty;
use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
use nix::sys::time::TimeSpec;
use serde::Serialize;

use super::bus::{EmulatedBus, Transmission};
use super::link_fault::LinkFaults;
use crate::control_table::address;

/// Longest the serving loop sleeps: the firmware period, so present registers stay fresh.
const POLL_INTERVAL_MS_MAX: u16 = 1;
/// Largest read from the line at once.
const READ_BYTES_MAX: usize = 4096;
/// Replies waiting to be sent, at most (a host that never reads cannot grow memory).
const QUEUE_LEN_MAX: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error("pseudo-terminal: {0}")]
    Pty(#[from] nix::Error),
    #[error("serial port {path}: {source}")]
    Port {
        path: String,
        source: serialport::Error,
    },
    #[error("line I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// A byte line the emulator serves on.
pub trait Line {
    /// Waits up to `timeout` for bytes; returns how many were read (0 on timeout).
    fn read_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, LineError>;
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), LineError>;
}

/// A pseudo-terminal pair: the emulator holds the master, clients open `path` (the slave). The
/// slave is kept open here too, so the master never sees a hang-up between clients.
#[derive(Debug)]
pub struct PtyLine {
    master: std::fs::File,
    _slave: OwnedFd,
    path: PathBuf,
}

impl PtyLine {
    pub fn open() -> Result<PtyLine, LineError> {
        let pair = openpty(None, None)?;
        let mut termios = tcgetattr(&pair.slave)?;
        cfmakeraw(&mut termios);
        tcsetattr(&pair.slave, SetArg::TCSANOW, &termios)?;
        let path = std::fs::read_link(format!("/proc/self/fd/{}", pair.slave.as_raw_fd()))?;
        Ok(PtyLine {
            master: std::fs::File::from(pair.master),
            _slave: pair.slave,
            path,
        })
    }

    /// The device path clients open.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Line for PtyLine {
    fn read_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, LineError> {
        // ppoll, not poll: poll counts whole milliseconds, so a reply due in 0.7 ms would be
        // waited for by spinning on a zero timeout, and a process that spins loses its turn on
        // a loaded machine; ppoll sleeps to the nanosecond.
        let mut fds = [PollFd::new(self.master.as_fd(), PollFlags::POLLIN)];
        let ready = match ppoll(&mut fds, Some(TimeSpec::from_duration(timeout)), None) {
            Err(nix::errno::Errno::EINTR) => return Ok(0),
            other => other?,
        };
        if ready == 0 {
            return Ok(0);
        }
        match self.master.read(buf) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), LineError> {
        self.master.write_all(bytes)?;
        Ok(())
    }
}

/// A real serial port (a second adapter wired to the host's, for instance).
#[derive(Debug)]
pub struct PortLine {
    port: Box<dyn serialport::SerialPort>,
}

impl PortLine {
    pub fn open(path: &str, baud: u32) -> Result<PortLine, LineError> {
        let port = serialport::new(path, baud)
            .timeout(Duration::from_millis(1))
            .open()
            .map_err(|source| LineError::Port {
                path: path.to_string(),
                source,
            })?;
        Ok(PortLine { port })
    }
}

impl Line for PortLine {
    fn read_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, LineError> {
        self.port
            .set_timeout(timeout.max(Duration::from_micros(100)))
            .ok();
        match self.port.read(buf) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), LineError> {
        self.port.write_all(bytes)?;
        Ok(())
    }
}

/// Why serving ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// SIGINT or SIGTERM.
    Signal,
    /// A `vanish` link fault: the device disappeared.
    Vanished,
}

/// One servo's state at exit, printed so that tests (and people) can check torque is off.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServoSummary {
    pub id: u8,
    pub torque_enabled: bool,
    pub operating_mode: i64,
    pub bus_watchdog: i64,
    pub hardware_error_status: i64,
    pub position_rad: f64,
}

/// What `hil emulate` prints as its last stdout line (JSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExitSummary {
    pub event: &'static str,
    pub reason: EndReason,
    pub served_s: f64,
    pub instructions: u64,
    pub instruction_crc_errors: u64,
    /// Partial packets the devices gave up after an idle gap (a truncated instruction).
    pub partials_given_up: u64,
    pub replies_dropped: u64,
    pub replies_corrupted: u64,
    pub garbage_bytes: u64,
    pub servos: Vec<ServoSummary>,
}

/// Queues the servos' replies made at `t`, through the link faults; the oldest reply goes when
/// the queue is full.
fn enqueue(
    queue: &mut VecDeque<Transmission>,
    faults: &mut LinkFaults,
    t: Duration,
    replies: Vec<Transmission>,
) {
    for tx in replies {
        if queue.len() >= QUEUE_LEN_MAX {
            queue.pop_front();
        }
        if let Some(tx) = faults.apply(t, tx) {
            queue.push_back(tx);
        }
    }
}

/// Serves `bus` on `line` in real time until `stop` is set or a vanish fault starts.
pub fn serve(
    bus: &mut EmulatedBus,
    faults: &mut LinkFaults,
    line: &mut dyn Line,
    stop: &AtomicBool,
) -> Result<ExitSummary, LineError> {
    let start = Instant::now();
    let mut queue: VecDeque<Transmission> = VecDeque::new();
    let mut buf = vec![0u8; READ_BYTES_MAX];
    let reason = loop {
        if stop.load(Ordering::Relaxed) {
            break EndReason::Signal;
        }
        let now = start.elapsed();
        if faults.vanished(now) {
            break EndReason::Vanished;
        }
        while queue.front().is_some_and(|tx| tx.due <= now) {
            let tx = queue.pop_front().expect("front checked");
            line.write_all(&tx.bytes)?;
        }
        bus.advance_to(now);
        let wait = [queue.front().map(|tx| tx.due), bus.expiry()]
            .into_iter()
            .flatten()
            .map(|due| due.saturating_sub(now))
            .fold(
                Duration::from_millis(u64::from(POLL_INTERVAL_MS_MAX)),
                Duration::min,
            );
        let n = line.read_timeout(&mut buf, wait)?;
        if n > 0 {
            let arrived = start.elapsed();
            let replies = bus.receive(arrived, &buf[..n]);
            enqueue(&mut queue, faults, arrived, replies);
        } else {
            // Nothing was pending when the read began at `now`: the line was silent up to
            // then (not up to the read's end: this process may have been descheduled since).
            // A partial packet whose sender went quiet is given up, what it hid answered.
            let found = bus.idle(now);
            enqueue(&mut queue, faults, now, found);
        }
    };
    let stats = bus.stats();
    let servos = bus
        .servos()
        .iter()
        .map(|s| ServoSummary {
            id: s.id(),
            torque_enabled: s.torque_enabled(),
            operating_mode: s.table().get(address::OPERATING_MODE),
            bus_watchdog: s.table().get(address::BUS_WATCHDOG),
            hardware_error_status: s.table().get(address::HARDWARE_ERROR_STATUS),
            position_rad: s.plant().truth().position_rad,
        })
        .collect();
    Ok(ExitSummary {
        event: "exit",
        reason,
        served_s: start.elapsed().as_secs_f64(),
        instructions: stats.instructions,
        instruction_crc_errors: stats.crc_errors,
        partials_given_up: stats.partials_given_up,
        replies_dropped: faults.dropped,
        replies_corrupted: faults.corrupted,
        garbage_bytes: faults.garbage_bytes,
        servos,
    })
}
