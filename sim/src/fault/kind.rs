//! The fault kinds, one row each: what a kind is called, what it hits, the magnitude it takes
//! (with its accepted range, the range chaos draws it from and how the shrinker halves it), and
//! whether it lasts.
//!
//! [`KINDS`] is the one definition of a fault kind. The scenario parser, chaos drawing, the
//! shrinker's TOML writer and halving, coverage, the trace's `fault_injected` fields and the
//! README's fault table all read it; none of them names a kind. What a kind *does* is its start
//! and heal effect in `World::start_fault`/`heal_fault` (`world.rs`), the one other place that
//! knows it. Adding a kind is: a variant of [`FaultKind`], its row here (appended, so that the
//! table stays in variant order, which a compile-time check holds), and those two effects.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A fault kind: the row of [`KINDS`] it names. The variant order is the table's order, which is
/// also the order chaos draws kinds in (a new kind goes last, so that a scenario that lists it
/// next to older ones keeps the older ones' draws).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    Partition,
    PartitionOneway,
    Hold,
    Latency,
    Loss,
    Crash,
    Restart,
    DiskIoError,
    DiskCorruption,
    DiskLostWrites,
    FieldbusPartition,
    FieldbusLatency,
    FieldbusLoss,
    FieldbusCorruption,
    EncoderGlitch,
    EncoderDropout,
    LoadStep,
    TorqueLoss,
    Overheating,
    BusUnderVoltage,
}

/// What a kind of fault hits; it decides the target's keys in a `[[fault]]` entry, how chaos
/// picks one and how the target is written in the trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetClass {
    /// Both directions of the link between two hosts: `between = [a, b]`, traced `a<->b`.
    Link,
    /// One direction of a link: `from`, `to`, traced `from->to`.
    LinkOneway,
    /// A host (its processes): `host`.
    Host,
    /// The disk of a host: `host`.
    Disk,
    /// The fieldbus between an axis's drive and its motion host: `axis`, traced `axis:<name>`.
    Fieldbus,
    /// The plant of an axis (encoder, motor, load, drive electronics): `axis`, traced
    /// `axis:<name>`.
    Plant,
}

impl TargetClass {
    /// The `[[fault]]` keys that name the target.
    pub const fn keys(self) -> &'static [&'static str] {
        match self {
            TargetClass::Link => &["between"],
            TargetClass::LinkOneway => &["from", "to"],
            TargetClass::Host | TargetClass::Disk => &["host"],
            TargetClass::Fieldbus | TargetClass::Plant => &["axis"],
        }
    }

    /// How README names the class.
    pub const fn describe(self) -> &'static str {
        match self {
            TargetClass::Link => "link between two hosts",
            TargetClass::LinkOneway => "one direction of a link",
            TargetClass::Host => "host",
            TargetClass::Disk => "disk of a host",
            TargetClass::Fieldbus => "fieldbus of an axis",
            TargetClass::Plant => "plant of an axis",
        }
    }
}

/// How chaos draws a magnitude.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Draw {
    /// Uniform in `[low, high)`, drawn after the target (one `u64`).
    Uniform { low: f64, high: f64 },
    /// A whole number `1..=max` with a random sign (one `u32` each, size first), drawn *before*
    /// the target: the order chaos has always drawn encoder glitches in, kept so that every seed
    /// keeps its schedule.
    SignedWhole { max: u32 },
}

impl Draw {
    /// Whether the magnitude is drawn before the target.
    pub const fn precedes_target(self) -> bool {
        matches!(self, Draw::SignedWhole { .. })
    }

    /// The smallest and largest value a draw can give (the largest is excluded for `Uniform`).
    pub const fn bounds(self) -> (f64, f64) {
        match self {
            Draw::Uniform { low, high } => (low, high),
            Draw::SignedWhole { max } => (-(max as f64), max as f64),
        }
    }
}

/// How the shrinker makes a magnitude less harmful.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shrink {
    /// Halved toward zero (a whole number truncated toward zero) while its size stays at least
    /// `floor`.
    Halve { floor: f64 },
    /// No harmless zero to shrink toward (an ambient temperature, a bus voltage): kept as drawn.
    Keep,
}

/// The one number a kind takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Magnitude {
    /// The `[[fault]]` key, also the trace field and the report's JSON key (unit in the name).
    pub key: &'static str,
    /// The unit, for people (empty for a probability or a fraction).
    pub unit: &'static str,
    /// A whole number (encoder counts): written and traced without a fraction.
    pub whole: bool,
    /// What a scenario may give, both ends included.
    pub accepted_min: f64,
    pub accepted_max: f64,
    pub draw: Draw,
    pub shrink: Shrink,
}

/// One fault kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KindRow {
    pub kind: FaultKind,
    /// The scenario name (`kind = "…"`, `[chaos.per_min]` keys), the trace's `kind` field.
    pub name: &'static str,
    pub target: TargetClass,
    pub magnitude: Option<Magnitude>,
    /// Instantaneous: takes no `for_s` and never heals.
    pub instant: bool,
    /// What it does, as README's fault table says it.
    pub effect: &'static str,
}

/// A probability of losing (or corrupting) each message or frame.
const fn probability(low: f64, high: f64) -> Option<Magnitude> {
    Some(Magnitude {
        key: "probability",
        unit: "",
        whole: false,
        accepted_min: 0.0,
        accepted_max: 1.0,
        draw: Draw::Uniform { low, high },
        shrink: Shrink::Halve { floor: 0.005 },
    })
}

/// Every fault kind, in [`FaultKind`] order (README's order, chaos's draw order).
pub const KINDS: &[KindRow] = &[
    KindRow {
        kind: FaultKind::Partition,
        name: "partition",
        target: TargetClass::Link,
        magnitude: None,
        instant: false,
        effect: "both directions between two hosts cut",
    },
    KindRow {
        kind: FaultKind::PartitionOneway,
        name: "partition-oneway",
        target: TargetClass::LinkOneway,
        magnitude: None,
        instant: false,
        effect: "messages from `from` to `to` dropped",
    },
    KindRow {
        kind: FaultKind::Hold,
        name: "hold",
        target: TargetClass::Link,
        magnitude: None,
        instant: false,
        effect: "messages held, delivered when the fault heals",
    },
    KindRow {
        kind: FaultKind::Latency,
        name: "latency",
        target: TargetClass::Link,
        magnitude: Some(Magnitude {
            key: "latency_ms",
            unit: "ms",
            whole: false,
            accepted_min: 0.0,
            accepted_max: 60_000.0,
            draw: Draw::Uniform {
                low: 5.0,
                high: 200.0,
            },
            shrink: Shrink::Halve { floor: 0.5 },
        }),
        instant: false,
        effect: "the link's latency becomes `latency_ms`",
    },
    KindRow {
        kind: FaultKind::Loss,
        name: "loss",
        target: TargetClass::Link,
        magnitude: probability(0.05, 0.5),
        instant: false,
        effect: "each message lost with this probability (turmoil breaks the TCP connection)",
    },
    KindRow {
        kind: FaultKind::Crash,
        name: "crash",
        target: TargetClass::Host,
        magnitude: None,
        instant: false,
        effect: "the host stops, losing unsynced writes; with `for_s` it restarts then",
    },
    KindRow {
        kind: FaultKind::Restart,
        name: "restart",
        target: TargetClass::Host,
        magnitude: None,
        instant: true,
        effect: "the host's software restarts at once",
    },
    KindRow {
        kind: FaultKind::DiskIoError,
        name: "disk-io-error",
        target: TargetClass::Disk,
        magnitude: None,
        instant: false,
        effect: "every disk operation fails",
    },
    KindRow {
        kind: FaultKind::DiskCorruption,
        name: "disk-corruption",
        target: TargetClass::Disk,
        magnitude: None,
        instant: false,
        effect: "reads return a flipped bit",
    },
    KindRow {
        kind: FaultKind::DiskLostWrites,
        name: "disk-lost-writes",
        target: TargetClass::Disk,
        magnitude: None,
        instant: true,
        effect: "the disk drops every unsynced write (a lying write cache)",
    },
    KindRow {
        kind: FaultKind::FieldbusPartition,
        name: "fieldbus-partition",
        target: TargetClass::Fieldbus,
        magnitude: None,
        instant: false,
        effect: "the axis's fieldbus cut both ways",
    },
    KindRow {
        kind: FaultKind::FieldbusLatency,
        name: "fieldbus-latency",
        target: TargetClass::Fieldbus,
        magnitude: Some(Magnitude {
            key: "latency_us",
            unit: "µs",
            whole: false,
            accepted_min: 0.0,
            accepted_max: 1e6,
            draw: Draw::Uniform {
                low: 50.0,
                high: 2000.0,
            },
            shrink: Shrink::Halve { floor: 1.0 },
        }),
        instant: false,
        effect: "latency added to the fieldbus",
    },
    KindRow {
        kind: FaultKind::FieldbusLoss,
        name: "fieldbus-loss",
        target: TargetClass::Fieldbus,
        magnitude: probability(0.01, 0.3),
        instant: false,
        effect: "fieldbus frames lost",
    },
    KindRow {
        kind: FaultKind::FieldbusCorruption,
        name: "fieldbus-corruption",
        target: TargetClass::Fieldbus,
        magnitude: probability(0.01, 0.3),
        instant: false,
        effect: "fieldbus frames fail their CRC",
    },
    KindRow {
        kind: FaultKind::EncoderGlitch,
        name: "encoder-glitch",
        target: TargetClass::Plant,
        magnitude: Some(Magnitude {
            key: "offset_counts",
            unit: "counts",
            whole: true,
            accepted_min: i32::MIN as f64,
            accepted_max: i32::MAX as f64,
            draw: Draw::SignedWhole { max: 64 },
            shrink: Shrink::Halve { floor: 1.0 },
        }),
        instant: false,
        effect: "the encoder reads off by this many counts",
    },
    KindRow {
        kind: FaultKind::EncoderDropout,
        name: "encoder-dropout",
        target: TargetClass::Plant,
        magnitude: None,
        instant: false,
        effect: "the encoder stops reporting",
    },
    KindRow {
        kind: FaultKind::LoadStep,
        name: "load-step",
        target: TargetClass::Plant,
        magnitude: Some(Magnitude {
            key: "torque_nm",
            unit: "N·m",
            whole: false,
            accepted_min: -1e4,
            accepted_max: 1e4,
            draw: Draw::Uniform {
                low: -1.0,
                high: 1.0,
            },
            shrink: Shrink::Halve { floor: 0.001 },
        }),
        instant: false,
        effect: "external torque at the output (positive opposes positive motion)",
    },
    KindRow {
        kind: FaultKind::TorqueLoss,
        name: "torque-loss",
        target: TargetClass::Plant,
        magnitude: Some(Magnitude {
            key: "fraction",
            unit: "",
            whole: false,
            accepted_min: 0.0,
            accepted_max: 1.0,
            draw: Draw::Uniform {
                low: 0.2,
                high: 1.0,
            },
            shrink: Shrink::Halve { floor: 0.01 },
        }),
        instant: false,
        effect: "the motor loses this fraction of its torque (1: none left)",
    },
    KindRow {
        kind: FaultKind::Overheating,
        name: "overheating",
        target: TargetClass::Plant,
        magnitude: Some(Magnitude {
            key: "ambient_c",
            unit: "°C",
            whole: false,
            accepted_min: -40.0,
            accepted_max: 200.0,
            draw: Draw::Uniform {
                low: 40.0,
                high: 70.0,
            },
            shrink: Shrink::Keep,
        }),
        instant: false,
        effect: "cooling lost: the ambient temperature rises to `ambient_c`",
    },
    KindRow {
        kind: FaultKind::BusUnderVoltage,
        name: "bus-under-voltage",
        target: TargetClass::Plant,
        magnitude: Some(Magnitude {
            key: "volts",
            unit: "V",
            whole: false,
            accepted_min: 0.0,
            accepted_max: 1000.0,
            draw: Draw::Uniform {
                low: 8.0,
                high: 11.0,
            },
            shrink: Shrink::Keep,
        }),
        instant: false,
        effect: "the drive's bus voltage sags to `volts`",
    },
];

/// The table's own invariants, checked when the crate compiles: rows in variant order; every
/// draw inside its accepted range; every halving floor positive.
const _: () = {
    let mut i = 0;
    while i < KINDS.len() {
        let row = &KINDS[i];
        assert!(
            row.kind as usize == i,
            "KINDS rows must follow FaultKind's order"
        );
        if let Some(m) = row.magnitude {
            let (low, high) = m.draw.bounds();
            assert!(m.accepted_min <= low && low < high && high <= m.accepted_max);
            if let Shrink::Halve { floor } = m.shrink {
                assert!(floor > 0.0);
            }
            if m.whole {
                assert!(matches!(m.draw, Draw::SignedWhole { .. }));
            }
        }
        i += 1;
    }
    assert!(KINDS.len() == FaultKind::BusUnderVoltage as usize + 1);
};

impl FaultKind {
    /// This kind's row.
    pub const fn row(self) -> &'static KindRow {
        &KINDS[self as usize]
    }

    /// The scenario name of this kind.
    pub const fn name(self) -> &'static str {
        self.row().name
    }

    /// The kind a scenario name names.
    pub fn from_name(name: &str) -> Option<FaultKind> {
        KINDS
            .iter()
            .find(|row| row.name == name)
            .map(|row| row.kind)
    }

    /// Whether the fault is instantaneous (it has no duration to heal after).
    pub const fn is_instant(self) -> bool {
        self.row().instant
    }

    /// Every kind's name, in table order, for messages.
    pub fn names() -> impl Iterator<Item = &'static str> {
        KINDS.iter().map(|row| row.name)
    }
}

impl Magnitude {
    /// `value` one halving toward harmless, or `None` when that would go below the floor (or
    /// the kind keeps its magnitude).
    pub fn halved(&self, value: f64) -> Option<f64> {
        let Shrink::Halve { floor } = self.shrink else {
            return None;
        };
        let half = if self.whole {
            (value / 2.0).trunc()
        } else {
            value / 2.0
        };
        (half.abs() >= floor).then_some(half)
    }

    /// The value as a scenario file writes it (and as `[[fault]]` parses it back exactly).
    pub fn toml_text(&self, value: f64) -> String {
        if self.whole {
            format!("{}", value as i64)
        } else {
            format!("{value:?}")
        }
    }

    /// The value as the trace and the report's JSON carry it: a whole number as an integer,
    /// any other as JSON writes an `f64` (the shortest text that reads back the same number).
    pub fn json_text(&self, value: f64) -> String {
        if self.whole {
            format!("{}", value as i64)
        } else {
            serde_json::to_string(&value).expect("a checked magnitude is finite")
        }
    }

    /// Serializes `value` as [`Magnitude::json_text`] writes it.
    pub(crate) fn serialize<S: Serializer>(&self, value: f64, s: S) -> Result<S::Ok, S::Error> {
        if self.whole {
            s.serialize_i64(value as i64)
        } else {
            s.serialize_f64(value)
        }
    }
}

/// A kind serializes as its name (swarm configurations, reports).
impl Serialize for FaultKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for FaultKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<FaultKind, D::Error> {
        let name = String::deserialize(d)?;
        FaultKind::from_name(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown fault kind `{name}`; the kinds are {}",
                FaultKind::names().collect::<Vec<_>>().join(", ")
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: names are unique and distinct from one another's prefixes of the trace format (no
    // space, as coverage keys split on spaces); every name resolves back to its kind.
    #[test]
    fn names_are_unique_and_resolve() {
        for (i, row) in KINDS.iter().enumerate() {
            assert_eq!(FaultKind::from_name(row.name), Some(row.kind));
            assert!(!row.name.contains(' '), "{}", row.name);
            for other in &KINDS[..i] {
                assert_ne!(other.name, row.name);
            }
        }
        assert_eq!(FaultKind::from_name("meteor"), None);
    }

    /// README's fault table, from the rows.
    fn readme_table() -> String {
        let mut out = String::from(
            "| kind | target | magnitude | accepted | chaos draws | shrinker | heals | effect |\n\
             |---|---|---|---|---|---|---|---|\n",
        );
        for row in KINDS {
            let keys: Vec<String> = row.target.keys().iter().map(|k| format!("`{k}`")).collect();
            let target = format!("{}: {}", row.target.describe(), keys.join(", "));
            let (magnitude, accepted, draw, shrink) = match row.magnitude {
                None => (
                    "—".to_owned(),
                    "—".to_owned(),
                    "—".to_owned(),
                    "—".to_owned(),
                ),
                Some(m) => (
                    if m.unit.is_empty() {
                        format!("`{}`", m.key)
                    } else {
                        format!("`{}` ({})", m.key, m.unit)
                    },
                    format!("[{}, {}]", m.accepted_min, m.accepted_max),
                    match m.draw {
                        Draw::Uniform { low, high } => format!("[{low}, {high})"),
                        Draw::SignedWhole { max } => format!("±1 to ±{max}"),
                    },
                    match m.shrink {
                        Shrink::Halve { floor } => format!("halved, down to {floor}"),
                        Shrink::Keep => "kept".to_owned(),
                    },
                ),
            };
            let heals = if row.instant {
                "instant"
            } else {
                "with `for_s`"
            };
            out.push_str(&format!(
                "| `{}` | {target} | {magnitude} | {accepted} | {draw} | {shrink} | {heals} | {} |\n",
                row.name, row.effect
            ));
        }
        out
    }

    // Goal: README's fault table is the table, row for row (it is generated from it: on a
    // change, paste the table this test prints).
    #[test]
    fn readme_fault_table_is_the_kind_table() {
        let readme = include_str!("../../../README.md");
        let table = readme_table();
        assert!(
            readme.contains(&table),
            "README.md's fault table differs from sim/src/fault/kind.rs; it should read:\n{table}"
        );
    }

    // Goal: halving goes toward zero and stops at the floor; whole numbers stay whole; a kept
    // magnitude is never halved. Method: halve every row's largest draw until it stops.
    #[test]
    fn halving_reaches_the_floor_and_stops() {
        for row in KINDS {
            let Some(m) = row.magnitude else { continue };
            let (low, high) = m.draw.bounds();
            for start in [low, high] {
                let mut value = start;
                let mut halvings = 0;
                while let Some(next) = m.halved(value) {
                    assert!(next.abs() < value.abs(), "{}: {value} -> {next}", row.name);
                    assert_eq!(next.signum(), value.signum(), "{}", row.name);
                    if m.whole {
                        assert_eq!(next, next.trunc());
                    }
                    value = next;
                    halvings += 1;
                    assert!(halvings < 64, "{} never stops", row.name);
                }
                match m.shrink {
                    Shrink::Halve { floor } => {
                        assert!(value.abs() >= floor, "{}", row.name);
                        let half = if m.whole {
                            (value / 2.0).trunc()
                        } else {
                            value / 2.0
                        };
                        assert!(half.abs() < floor, "{} stopped early at {value}", row.name);
                    }
                    Shrink::Keep => assert_eq!(halvings, 0, "{}", row.name),
                }
            }
        }
    }
}
