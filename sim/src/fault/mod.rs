//! Faults: what can go wrong in a cell, and the schedule of when it does.
//!
//! A [`Fault`] is plain data: a kind (a row of the table [`KINDS`], `kind.rs`), its target and
//! magnitude, a start time and, for faults that heal, an end time. The schedule of a run is the
//! scenario's explicit `[[fault]]` entries plus the ones the seed draws from `[chaos]`
//! ([`draw_chaos`], `chaos.rs`); the world applies them on simulated time (`world.rs`), and
//! every one lands in the trace with the fields [`Fault::trace_fields`] gives. This module does
//! not touch the world.

mod chaos;
mod kind;

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::ser::SerializeMap;

pub use chaos::{CHAOS_FAULT_COUNT_MAX, Chaos, ChaosTargets, candidates, draw_chaos};
pub use kind::{Draw, FaultKind, KINDS, KindRow, Magnitude, Shrink, TargetClass};

/// What a fault hits. The text form ([`fmt::Display`], read back by [`Target::parse`]) is the
/// trace's `target` field and coverage's target.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// Both directions between two hosts: `a<->b`.
    Link { a: String, b: String },
    /// Messages from `from` to `to`: `from->to`.
    LinkOneway { from: String, to: String },
    /// A host, or its disk: the host's name.
    Host(String),
    /// An axis's fieldbus or plant: `axis:<name>`.
    Axis(String),
}

impl Target {
    /// Reads the text form back.
    pub fn parse(text: &str) -> Target {
        if let Some(axis) = text.strip_prefix("axis:") {
            Target::Axis(axis.to_owned())
        } else if let Some((a, b)) = text.split_once("<->") {
            Target::Link {
                a: a.to_owned(),
                b: b.to_owned(),
            }
        } else if let Some((from, to)) = text.split_once("->") {
            Target::LinkOneway {
                from: from.to_owned(),
                to: to.to_owned(),
            }
        } else {
            Target::Host(text.to_owned())
        }
    }

    /// The hosts a link joins (for a one-way link: from, to).
    pub fn link(&self) -> (&str, &str) {
        match self {
            Target::Link { a, b } => (a, b),
            Target::LinkOneway { from, to } => (from, to),
            other => panic!("a link's fault has a link target, not {other}"),
        }
    }

    /// The host of a host or disk fault.
    pub fn host(&self) -> &str {
        match self {
            Target::Host(host) => host,
            other => panic!("a host's fault has a host target, not {other}"),
        }
    }

    /// The axis of a fieldbus or plant fault.
    pub fn axis(&self) -> &str {
        match self {
            Target::Axis(axis) => axis,
            other => panic!("an axis's fault has an axis target, not {other}"),
        }
    }

    /// The hosts the target names (none for an axis).
    pub fn hosts(&self) -> Vec<&str> {
        match self {
            Target::Link { a, b } => vec![a, b],
            Target::LinkOneway { from, to } => vec![from, to],
            Target::Host(host) => vec![host],
            Target::Axis(_) => Vec::new(),
        }
    }

    /// The target's `[[fault]]` keys with their values, as a scenario file writes them.
    pub fn toml_lines(&self) -> Vec<String> {
        match self {
            Target::Link { a, b } => vec![format!("between = [\"{a}\", \"{b}\"]")],
            Target::LinkOneway { from, to } => {
                vec![format!("from = \"{from}\""), format!("to = \"{to}\"")]
            }
            Target::Host(host) => vec![format!("host = \"{host}\"")],
            Target::Axis(axis) => vec![format!("axis = \"{axis}\"")],
        }
    }

    /// The target's keys with their values, in the report's JSON.
    fn json_fields(&self) -> Vec<(&'static str, &str)> {
        match self {
            Target::Link { a, b } => vec![("a", a), ("b", b)],
            Target::LinkOneway { from, to } => vec![("from", from), ("to", to)],
            Target::Host(host) => vec![("host", host)],
            Target::Axis(axis) => vec![("axis", axis)],
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Link { a, b } => write!(f, "{a}<->{b}"),
            Target::LinkOneway { from, to } => write!(f, "{from}->{to}"),
            Target::Host(host) => f.write_str(host),
            Target::Axis(axis) => write!(f, "axis:{axis}"),
        }
    }
}

/// A fault in the schedule: what it hits and how hard, when it starts, when it heals, and
/// whether the seed drew it.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub kind: FaultKind,
    /// Of the kind's [`TargetClass`] (the parser and chaos hold that).
    pub target: Target,
    /// Present exactly when the kind's row has a [`Magnitude`], in its accepted range.
    pub magnitude: Option<f64>,
    pub at: Duration,
    pub until: Option<Duration>,
    /// True when `[chaos]` drew this fault from the seed.
    pub drawn: bool,
}

impl Fault {
    /// The magnitude of a kind that has one.
    pub fn magnitude(&self) -> f64 {
        self.magnitude
            .unwrap_or_else(|| panic!("{self}: a `{}` fault has a magnitude", self.kind.name()))
    }

    /// The fault with its magnitude one halving toward harmless, or `None` when it has none
    /// left to halve (the row's [`Shrink`]).
    pub fn halved(&self) -> Option<Fault> {
        let magnitude = self.kind.row().magnitude?.halved(self.magnitude?)?;
        Some(Fault {
            magnitude: Some(magnitude),
            ..self.clone()
        })
    }

    /// The fields of the trace's `fault_injected` and `fault_healed` events: `kind`, `target`,
    /// `drawn`, and the magnitude under its key.
    pub fn trace_fields(&self) -> Vec<(String, String)> {
        let mut fields = vec![
            ("kind".to_owned(), self.kind.name().to_owned()),
            ("target".to_owned(), self.target.to_string()),
            ("drawn".to_owned(), self.drawn.to_string()),
        ];
        if let (Some(m), Some(value)) = (self.kind.row().magnitude, self.magnitude) {
            fields.push((m.key.to_owned(), m.json_text(value)));
        }
        fields
    }
}

/// The report's form: `kind`, the target's keys, the magnitude's key, `at_s`, `until_s`,
/// `drawn`.
impl Serialize for Fault {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Value<'a>(&'a Magnitude, f64);
        impl Serialize for Value<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.0.serialize(self.1, s)
            }
        }
        struct At(Duration);
        impl Serialize for At {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                crate::seconds::serialize_duration_s(&self.0, s)
            }
        }
        struct Until(Option<Duration>);
        impl Serialize for Until {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                crate::seconds::serialize_option_duration_s(&self.0, s)
            }
        }
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("kind", self.kind.name())?;
        for (key, value) in self.target.json_fields() {
            map.serialize_entry(key, value)?;
        }
        if let (Some(m), Some(value)) = (self.kind.row().magnitude, self.magnitude) {
            map.serialize_entry(m.key, &Value(&m, value))?;
        }
        map.serialize_entry("at_s", &At(self.at))?;
        map.serialize_entry("until_s", &Until(self.until))?;
        map.serialize_entry("drawn", &self.drawn)?;
        map.end()
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} at {:.3}s",
            self.kind.name(),
            self.target,
            self.at.as_secs_f64()
        )?;
        if let Some(until) = self.until {
            write!(f, " until {:.3}s", until.as_secs_f64())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: the text form of every target shape reads back to the same target.
    #[test]
    fn targets_read_back() {
        for target in [
            Target::Link {
                a: "client-1".into(),
                b: "motion-1".into(),
            },
            Target::LinkOneway {
                from: "orders-2".into(),
                to: "bus".into(),
            },
            Target::Host("journal".into()),
            Target::Axis("x".into()),
        ] {
            assert_eq!(Target::parse(&target.to_string()), target);
        }
    }
}
