//! Faults on the emulated link, for proving the runner fails safe: garbage bytes before
//! replies, dropped replies, corrupted CRCs, and the device vanishing. Each is active from a
//! start time for a duration (or for ever). Owns the fault specification and its effect on a
//! transmission; when to apply it is `pty.rs`'s business. Garbage is drawn from a seeded
//! ChaCha8 stream, so a fault run is repeatable.

use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use super::bus::Transmission;

/// Garbage bytes added before each reply while a `Garbage` fault is active, at most.
pub const GARBAGE_BYTES_MAX: usize = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkFaultKind {
    /// Random bytes (rich in FF and FD) before every reply.
    Garbage,
    /// Replies are not sent (instructions still take effect).
    Drop,
    /// Every reply's CRC is flipped.
    Corrupt,
    /// The device disappears: the emulator closes the line and exits.
    Vanish,
}

/// One fault: a kind, active from `start` for `duration` (`None`: until the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkFault {
    pub kind: LinkFaultKind,
    pub start: Duration,
    pub duration: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "bad link fault {spec:?}: {reason} (expected KIND@START_S[+FOR_S], KIND one of garbage, drop, corrupt, vanish)"
)]
pub struct LinkFaultParseError {
    pub spec: String,
    pub reason: &'static str,
}

impl std::str::FromStr for LinkFault {
    type Err = LinkFaultParseError;

    /// `drop@1.5+0.5`: drop replies from 1.5 s for 0.5 s; `vanish@2`: gone at 2 s.
    fn from_str(spec: &str) -> Result<LinkFault, LinkFaultParseError> {
        let err = |reason| LinkFaultParseError {
            spec: spec.to_string(),
            reason,
        };
        let (kind, when) = spec.split_once('@').ok_or(err("missing '@'"))?;
        let kind = match kind {
            "garbage" => LinkFaultKind::Garbage,
            "drop" => LinkFaultKind::Drop,
            "corrupt" => LinkFaultKind::Corrupt,
            "vanish" => LinkFaultKind::Vanish,
            _ => return Err(err("unknown kind")),
        };
        let (start, duration) = match when.split_once('+') {
            Some((s, d)) => (s, Some(d)),
            None => (when, None),
        };
        let seconds = |text: &str| -> Result<Duration, LinkFaultParseError> {
            let v: f64 = text.parse().map_err(|_| err("time is not a number"))?;
            if !(0.0..=86_400.0).contains(&v) {
                return Err(err("time outside 0..=86400 s"));
            }
            Ok(Duration::from_secs_f64(v))
        };
        Ok(LinkFault {
            kind,
            start: seconds(start)?,
            duration: duration.map(seconds).transpose()?,
        })
    }
}

impl LinkFault {
    pub fn active_at(&self, t: Duration) -> bool {
        t >= self.start && self.duration.is_none_or(|d| t < self.start + d)
    }
}

/// The faults of one emulator run and the random stream garbage is drawn from.
#[derive(Debug)]
pub struct LinkFaults {
    faults: Vec<LinkFault>,
    rng: ChaCha8Rng,
    pub garbage_bytes: u64,
    pub dropped: u64,
    pub corrupted: u64,
}

impl LinkFaults {
    pub fn new(faults: Vec<LinkFault>, seed: u64) -> LinkFaults {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(0x11AB);
        LinkFaults {
            faults,
            rng,
            garbage_bytes: 0,
            dropped: 0,
            corrupted: 0,
        }
    }

    fn active(&self, kind: LinkFaultKind, t: Duration) -> bool {
        self.faults.iter().any(|f| f.kind == kind && f.active_at(t))
    }

    /// True once a `Vanish` fault has started.
    pub fn vanished(&self, t: Duration) -> bool {
        self.active(LinkFaultKind::Vanish, t)
    }

    /// The transmission as the faulty link delivers it, or `None` if it is lost. `t` is when
    /// the instruction that caused it arrived.
    pub fn apply(&mut self, t: Duration, mut tx: Transmission) -> Option<Transmission> {
        if self.active(LinkFaultKind::Drop, t) {
            self.dropped += 1;
            return None;
        }
        if self.active(LinkFaultKind::Corrupt, t) {
            let last = tx.bytes.len() - 1;
            tx.bytes[last] ^= 0x5A;
            self.corrupted += 1;
        }
        if self.active(LinkFaultKind::Garbage, t) {
            let count = 1 + (self.rng.next_u32() as usize % GARBAGE_BYTES_MAX);
            let mut bytes = Vec::with_capacity(count + tx.bytes.len());
            for _ in 0..count {
                bytes.push(match self.rng.next_u32() % 4 {
                    0 => 0xFF,
                    1 => 0xFD,
                    2 => 0x00,
                    _ => self.rng.next_u32() as u8,
                });
            }
            bytes.extend_from_slice(&tx.bytes);
            self.garbage_bytes += count as u64;
            tx.bytes = bytes;
        }
        Some(tx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        // Goal: the command-line form of a link fault. Method: good and bad specs.
        let f: LinkFault = "drop@1.5+0.25".parse().unwrap();
        assert_eq!(f.kind, LinkFaultKind::Drop);
        assert_eq!(f.start, Duration::from_millis(1500));
        assert_eq!(f.duration, Some(Duration::from_millis(250)));
        assert!(f.active_at(Duration::from_millis(1600)));
        assert!(!f.active_at(Duration::from_millis(1750)));
        let v: LinkFault = "vanish@2".parse().unwrap();
        assert!(v.active_at(Duration::from_secs(1000)));
        assert!("flood@1".parse::<LinkFault>().is_err());
        assert!("drop@x".parse::<LinkFault>().is_err());
        assert!("drop".parse::<LinkFault>().is_err());
    }
}
