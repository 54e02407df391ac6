//! Faults: what can go wrong in a cell, and the schedule of when it does.
//!
//! A [`Fault`] is plain data: a kind with its target and magnitude, a start time and, for faults
//! that heal, an end time. The schedule of a run is the scenario's explicit `[[fault]]` entries
//! plus the ones the seed draws from `[chaos]` ([`draw_chaos`]); the world applies them on
//! simulated time (`world.rs`), and every one lands in the trace. This module does not touch
//! the world.

use std::fmt;
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::Rng;
use serde::Serialize;

/// One fault, with its target and magnitude.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FaultKind {
    /// Both directions between two hosts are cut.
    Partition { a: String, b: String },
    /// Messages from `from` to `to` are dropped; the other direction works.
    PartitionOneway { from: String, to: String },
    /// Messages between two hosts are held back, then delivered when the fault heals.
    Hold { a: String, b: String },
    /// Extra latency on the link between two hosts.
    Latency {
        a: String,
        b: String,
        latency_ms: f64,
    },
    /// Each message between two hosts is lost with this probability.
    Loss {
        a: String,
        b: String,
        probability: f64,
    },
    /// The host stops; with an end time it restarts then (its durable state survives).
    Crash { host: String },
    /// The host's software restarts at once (a bounce).
    Restart { host: String },
    /// Every disk operation of the host fails.
    DiskIoError { host: String },
    /// Reads from the host's disk return flipped bytes.
    DiskCorruption { host: String },
    /// The host's disk drops every write not yet synced (a lying write cache).
    DiskLostWrites { host: String },
    /// The fieldbus of an axis is cut in both directions.
    FieldbusPartition { axis: String },
    /// Extra latency on the fieldbus of an axis.
    FieldbusLatency { axis: String, latency_us: f64 },
    /// Each fieldbus frame of an axis is lost with this probability.
    FieldbusLoss { axis: String, probability: f64 },
    /// Each fieldbus frame of an axis is corrupted (fails its CRC) with this probability.
    FieldbusCorruption { axis: String, probability: f64 },
    /// The encoder reading jumps by `offset_counts`.
    EncoderGlitch { axis: String, offset_counts: i32 },
    /// The encoder stops reporting (readings invalid).
    EncoderDropout { axis: String },
    /// An external torque step at the output shaft.
    LoadStep { axis: String, torque_nm: f64 },
    /// The motor's torque drops by `fraction` (1 = none left).
    TorqueLoss { axis: String, fraction: f64 },
    /// Cooling is lost: the ambient temperature rises to `ambient_c`.
    Overheating { axis: String, ambient_c: f64 },
    /// The drive's bus voltage sags to `volts`.
    BusUnderVoltage { axis: String, volts: f64 },
}

/// The fault kinds by their scenario name, in the order the README lists them.
pub const KIND_NAMES: &[&str] = &[
    "partition",
    "partition-oneway",
    "hold",
    "latency",
    "loss",
    "crash",
    "restart",
    "disk-io-error",
    "disk-corruption",
    "disk-lost-writes",
    "fieldbus-partition",
    "fieldbus-latency",
    "fieldbus-loss",
    "fieldbus-corruption",
    "encoder-glitch",
    "encoder-dropout",
    "load-step",
    "torque-loss",
    "overheating",
    "bus-under-voltage",
];

impl FaultKind {
    /// The scenario name of this kind (one of [`KIND_NAMES`]).
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::Partition { .. } => "partition",
            FaultKind::PartitionOneway { .. } => "partition-oneway",
            FaultKind::Hold { .. } => "hold",
            FaultKind::Latency { .. } => "latency",
            FaultKind::Loss { .. } => "loss",
            FaultKind::Crash { .. } => "crash",
            FaultKind::Restart { .. } => "restart",
            FaultKind::DiskIoError { .. } => "disk-io-error",
            FaultKind::DiskCorruption { .. } => "disk-corruption",
            FaultKind::DiskLostWrites { .. } => "disk-lost-writes",
            FaultKind::FieldbusPartition { .. } => "fieldbus-partition",
            FaultKind::FieldbusLatency { .. } => "fieldbus-latency",
            FaultKind::FieldbusLoss { .. } => "fieldbus-loss",
            FaultKind::FieldbusCorruption { .. } => "fieldbus-corruption",
            FaultKind::EncoderGlitch { .. } => "encoder-glitch",
            FaultKind::EncoderDropout { .. } => "encoder-dropout",
            FaultKind::LoadStep { .. } => "load-step",
            FaultKind::TorqueLoss { .. } => "torque-loss",
            FaultKind::Overheating { .. } => "overheating",
            FaultKind::BusUnderVoltage { .. } => "bus-under-voltage",
        }
    }

    /// The service host or axis the fault hits, for reports and coverage.
    pub fn target(&self) -> String {
        match self {
            FaultKind::Partition { a, b }
            | FaultKind::Hold { a, b }
            | FaultKind::Latency { a, b, .. }
            | FaultKind::Loss { a, b, .. } => format!("{a}<->{b}"),
            FaultKind::PartitionOneway { from, to } => format!("{from}->{to}"),
            FaultKind::Crash { host }
            | FaultKind::Restart { host }
            | FaultKind::DiskIoError { host }
            | FaultKind::DiskCorruption { host }
            | FaultKind::DiskLostWrites { host } => host.clone(),
            FaultKind::FieldbusPartition { axis }
            | FaultKind::FieldbusLatency { axis, .. }
            | FaultKind::FieldbusLoss { axis, .. }
            | FaultKind::FieldbusCorruption { axis, .. }
            | FaultKind::EncoderGlitch { axis, .. }
            | FaultKind::EncoderDropout { axis }
            | FaultKind::LoadStep { axis, .. }
            | FaultKind::TorqueLoss { axis, .. }
            | FaultKind::Overheating { axis, .. }
            | FaultKind::BusUnderVoltage { axis, .. } => format!("axis:{axis}"),
        }
    }

    /// Whether the fault is instantaneous (it has no duration to heal after).
    pub fn is_instant(&self) -> bool {
        matches!(
            self,
            FaultKind::Restart { .. } | FaultKind::DiskLostWrites { .. }
        )
    }
}

/// A fault in the schedule: when it starts, when it heals, and whether the seed drew it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fault {
    #[serde(flatten)]
    pub kind: FaultKind,
    #[serde(
        serialize_with = "crate::seconds::serialize_duration_s",
        rename = "at_s"
    )]
    pub at: Duration,
    #[serde(
        serialize_with = "crate::seconds::serialize_option_duration_s",
        rename = "until_s"
    )]
    pub until: Option<Duration>,
    /// True when `[chaos]` drew this fault from the seed.
    pub drawn: bool,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} at {:.3}s",
            self.kind.name(),
            self.kind.target(),
            self.at.as_secs_f64()
        )?;
        if let Some(until) = self.until {
            write!(f, " until {:.3}s", until.as_secs_f64())?;
        }
        Ok(())
    }
}

/// `[chaos]` resolved: per fault kind, a mean rate; the window it may strike in.
#[derive(Debug, Clone, PartialEq)]
pub struct Chaos {
    pub from: Duration,
    pub until: Duration,
    /// (kind name, mean faults per simulated minute), kinds in [`KIND_NAMES`] order.
    pub rates_per_min: Vec<(String, f64)>,
    pub fault_s_mean: f64,
    pub fault_s_max: f64,
    /// Swarm testing: the seed first draws which kinds are on and at what rates, the rates above
    /// being maxima (`crate::swarm`).
    pub swarm: bool,
}

/// What chaos may aim at: the cell's service hosts, the host pairs that have links, the axes.
#[derive(Debug, Clone)]
pub struct ChaosTargets {
    pub hosts: Vec<String>,
    pub links: Vec<(String, String)>,
    pub axes: Vec<String>,
}

/// Upper bound on drawn faults, whatever the rates: a run's schedule stays small.
pub const CHAOS_FAULT_COUNT_MAX: usize = 256;

/// Draws a concrete fault schedule from the chaos rates with the given stream.
///
/// Arrivals of each kind are a Poisson process (exponential gaps at the kind's rate); each
/// fault lasts an exponential time with mean `fault_s_mean`, capped at `fault_s_max` and at the
/// end of the chaos window. Targets are drawn uniformly. Kinds are drawn in a fixed order so
/// that the schedule is a pure function of the stream.
pub fn draw_chaos(chaos: &Chaos, targets: &ChaosTargets, rng: &mut ChaCha8Rng) -> Vec<Fault> {
    let mut faults = Vec::new();
    let window_s = chaos.until.saturating_sub(chaos.from).as_secs_f64();
    for (kind, rate_per_min) in &chaos.rates_per_min {
        if *rate_per_min <= 0.0 || window_s <= 0.0 {
            continue;
        }
        let rate_per_s = rate_per_min / 60.0;
        let mut t_s = 0.0;
        loop {
            t_s += exponential(rng, 1.0 / rate_per_s);
            if t_s >= window_s || faults.len() >= CHAOS_FAULT_COUNT_MAX {
                break;
            }
            let Some(fault_kind) = draw_kind(kind, targets, rng) else {
                break;
            };
            let at = chaos.from + Duration::from_secs_f64(t_s);
            let until = if fault_kind.is_instant() {
                None
            } else {
                let length_s = exponential(rng, chaos.fault_s_mean).min(chaos.fault_s_max);
                Some((at + Duration::from_secs_f64(length_s.max(0.001))).min(chaos.until))
            };
            faults.push(Fault {
                kind: fault_kind,
                at,
                until,
                drawn: true,
            });
        }
    }
    faults.sort_by(|a, b| {
        a.at.cmp(&b.at)
            .then_with(|| a.kind.name().cmp(b.kind.name()))
    });
    faults
}

fn exponential(rng: &mut ChaCha8Rng, mean: f64) -> f64 {
    // Inverse transform of a uniform in (0, 1]; 53 random bits, never exactly zero.
    let u = ((rng.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    -mean * libm::log(u)
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> Option<&'a T> {
    if items.is_empty() {
        return None;
    }
    Some(&items[(rng.next_u64() % items.len() as u64) as usize])
}

fn uniform(rng: &mut ChaCha8Rng, low: f64, high: f64) -> f64 {
    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    low + (high - low) * u
}

/// One fault of the named kind with a random target and magnitude; `None` when the cell has
/// nothing that kind could hit.
fn draw_kind(kind: &str, targets: &ChaosTargets, rng: &mut ChaCha8Rng) -> Option<FaultKind> {
    let link = |rng: &mut ChaCha8Rng| pick(rng, &targets.links).cloned();
    let host = |rng: &mut ChaCha8Rng| pick(rng, &targets.hosts).cloned();
    let axis = |rng: &mut ChaCha8Rng| pick(rng, &targets.axes).cloned();
    Some(match kind {
        "partition" => {
            let (a, b) = link(rng)?;
            FaultKind::Partition { a, b }
        }
        "partition-oneway" => {
            let (a, b) = link(rng)?;
            if rng.next_u32().is_multiple_of(2) {
                FaultKind::PartitionOneway { from: a, to: b }
            } else {
                FaultKind::PartitionOneway { from: b, to: a }
            }
        }
        "hold" => {
            let (a, b) = link(rng)?;
            FaultKind::Hold { a, b }
        }
        "latency" => {
            let (a, b) = link(rng)?;
            FaultKind::Latency {
                a,
                b,
                latency_ms: uniform(rng, 5.0, 200.0),
            }
        }
        "loss" => {
            let (a, b) = link(rng)?;
            FaultKind::Loss {
                a,
                b,
                probability: uniform(rng, 0.05, 0.5),
            }
        }
        "crash" => FaultKind::Crash { host: host(rng)? },
        "restart" => FaultKind::Restart { host: host(rng)? },
        "disk-io-error" => FaultKind::DiskIoError { host: host(rng)? },
        "disk-corruption" => FaultKind::DiskCorruption { host: host(rng)? },
        "disk-lost-writes" => FaultKind::DiskLostWrites { host: host(rng)? },
        "fieldbus-partition" => FaultKind::FieldbusPartition { axis: axis(rng)? },
        "fieldbus-latency" => FaultKind::FieldbusLatency {
            axis: axis(rng)?,
            latency_us: uniform(rng, 50.0, 2000.0),
        },
        "fieldbus-loss" => FaultKind::FieldbusLoss {
            axis: axis(rng)?,
            probability: uniform(rng, 0.01, 0.3),
        },
        "fieldbus-corruption" => FaultKind::FieldbusCorruption {
            axis: axis(rng)?,
            probability: uniform(rng, 0.01, 0.3),
        },
        "encoder-glitch" => {
            let magnitude = 1 + (rng.next_u32() % 64) as i32;
            let sign = if rng.next_u32().is_multiple_of(2) {
                1
            } else {
                -1
            };
            FaultKind::EncoderGlitch {
                axis: axis(rng)?,
                offset_counts: sign * magnitude,
            }
        }
        "encoder-dropout" => FaultKind::EncoderDropout { axis: axis(rng)? },
        "load-step" => FaultKind::LoadStep {
            axis: axis(rng)?,
            torque_nm: uniform(rng, -1.0, 1.0),
        },
        "torque-loss" => FaultKind::TorqueLoss {
            axis: axis(rng)?,
            fraction: uniform(rng, 0.2, 1.0),
        },
        "overheating" => FaultKind::Overheating {
            axis: axis(rng)?,
            ambient_c: uniform(rng, 40.0, 70.0),
        },
        "bus-under-voltage" => FaultKind::BusUnderVoltage {
            axis: axis(rng)?,
            volts: uniform(rng, 8.0, 11.0),
        },
        unknown => panic!("chaos kind `{unknown}` was not rejected when the scenario loaded"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    fn chaos(rates: &[(&str, f64)]) -> Chaos {
        Chaos {
            from: Duration::from_secs(1),
            until: Duration::from_secs(61),
            rates_per_min: rates.iter().map(|(k, r)| ((*k).to_owned(), *r)).collect(),
            fault_s_mean: 1.0,
            fault_s_max: 5.0,
            swarm: false,
        }
    }

    fn targets() -> ChaosTargets {
        ChaosTargets {
            hosts: vec!["motion-1".into()],
            links: vec![("client-1".into(), "motion-1".into())],
            axes: vec!["x".into(), "y".into()],
        }
    }

    // Goal: every kind name the scenario accepts can be drawn; the schedule is a function of
    // the stream, sorted, inside the window, and its length follows the rate.
    #[test]
    fn chaos_draws_every_kind_inside_the_window_deterministically() {
        let rates: Vec<(&str, f64)> = KIND_NAMES.iter().map(|k| (*k, 6.0)).collect();
        let chaos = chaos(&rates);
        let a = draw_chaos(&chaos, &targets(), &mut ChaCha8Rng::seed_from_u64(7));
        let b = draw_chaos(&chaos, &targets(), &mut ChaCha8Rng::seed_from_u64(7));
        let c = draw_chaos(&chaos, &targets(), &mut ChaCha8Rng::seed_from_u64(8));
        assert_eq!(a, b);
        assert_ne!(a, c);
        for kind in KIND_NAMES {
            assert!(
                a.iter().any(|f| f.kind.name() == *kind),
                "kind {kind} never drawn"
            );
        }
        assert!(a.windows(2).all(|w| w[0].at <= w[1].at));
        for fault in &a {
            assert!(fault.at >= chaos.from && fault.at < chaos.until);
            if let Some(until) = fault.until {
                assert!(until > fault.at && until <= chaos.until);
            }
        }
        // 20 kinds at 6/min over one minute: about 120 faults; a Poisson count stays well inside.
        assert!((60..=200).contains(&a.len()), "drew {} faults", a.len());
    }

    // Goal: a kind with no possible target is skipped, not drawn against a made-up target.
    #[test]
    fn chaos_skips_kinds_without_targets() {
        let empty = ChaosTargets {
            hosts: vec![],
            links: vec![],
            axes: vec![],
        };
        let drawn = draw_chaos(
            &chaos(&[("crash", 60.0)]),
            &empty,
            &mut ChaCha8Rng::seed_from_u64(1),
        );
        assert!(drawn.is_empty());
    }
}
