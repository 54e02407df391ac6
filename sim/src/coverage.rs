//! Fault coverage of a sweep: which fault kind hit which target in which axis phase, how often,
//! and which combinations no seed reached.
//!
//! A sweep that never crashes a motion host *while its axis moves* has not tested the crash
//! that matters most, however many seeds it ran. [`CoverageObserver`] watches a run beside the
//! oracles (it sees the same trace events and ground-truth samples, and changes nothing); at each
//! `fault_injected` event it counts the combination
//! `kind × target × phase`, where the phase is that of the axes the target reaches, from their
//! newest ground-truth sample (the end of the tick before the fault starts):
//! - `moving`: a move is being commanded;
//! - `stopping`: no move commanded, but the output still turns faster than
//!   [`STOPPING_VELOCITY_RAD_PER_S_MIN`] (a quick stop, a drive watchdog stop, an aborted move);
//! - `idle`: otherwise.
//!
//! A target reaches: an axis itself; a motion host its axes; a client host the axes it drives;
//! a link the axes of both its ends. With several axes the most active phase counts (moving,
//! then stopping, then idle).
//!
//! Saga steps (DESIGN.md §6) do not exist yet: the cell has no orders service, so the phase is
//! the axis phase only. When sagas land, a step dimension belongs here.
//!
//! [`ScenarioCoverage::universe`] lists every combination a scenario's faults could reach (its
//! chaos kinds against every target chaos may draw, its explicit faults against theirs, each in
//! every phase); the counts start at zero for all of them, so a combination never reached is a
//! zero, and sums over shards stay exact.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::fault::FaultKind;
use crate::oracle::AxisSample;
use crate::scenario::Scenario;
use crate::trace::{HARNESS_HOST, TraceEvent};
use crate::world::Observer;

/// Below this output speed (rad/s, about 0.6 °/s) an axis with no move commanded is idle.
pub const STOPPING_VELOCITY_RAD_PER_S_MIN: f64 = 0.01;

/// What an axis was doing when a fault struck.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AxisPhase {
    Idle,
    Stopping,
    Moving,
}

pub const PHASES: [AxisPhase; 3] = [AxisPhase::Idle, AxisPhase::Moving, AxisPhase::Stopping];

impl AxisPhase {
    pub fn name(self) -> &'static str {
        match self {
            AxisPhase::Idle => "idle",
            AxisPhase::Moving => "moving",
            AxisPhase::Stopping => "stopping",
        }
    }

    fn of(sample: &AxisSample<'_>) -> AxisPhase {
        if sample.moving {
            AxisPhase::Moving
        } else if sample.truth.velocity_rad_per_s.abs() > STOPPING_VELOCITY_RAD_PER_S_MIN {
            AxisPhase::Stopping
        } else {
            AxisPhase::Idle
        }
    }
}

impl fmt::Display for AxisPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One combination: fault kind, target, axis phase.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Combination {
    pub kind: String,
    pub target: String,
    pub phase: String,
}

impl Combination {
    /// The key it is stored under: `kind target phase` (none of them contains a space).
    pub fn key(&self) -> String {
        format!("{} {} {}", self.kind, self.target, self.phase)
    }

    pub fn from_key(key: &str) -> Option<Combination> {
        let mut parts = key.split(' ');
        let (kind, target, phase) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        Some(Combination {
            kind: kind.to_owned(),
            target: target.to_owned(),
            phase: phase.to_owned(),
        })
    }
}

/// Counts of one scenario: combination key → faults injected in it (zeros included).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScenarioCoverage {
    pub counts: BTreeMap<String, u64>,
}

impl ScenarioCoverage {
    /// Every combination the scenario's faults could reach, each counted zero.
    pub fn universe(scenario: &Scenario) -> ScenarioCoverage {
        let mut pairs: Vec<(String, String)> = Vec::new();
        if let Some(chaos) = &scenario.chaos {
            let targets = scenario.chaos_targets();
            for (kind, rate) in &chaos.rates_per_min {
                if *rate <= 0.0 {
                    continue;
                }
                for target in chaos_targets_of(kind, &targets) {
                    pairs.push((kind.clone(), target));
                }
            }
        }
        for fault in &scenario.faults {
            pairs.push((fault.kind.name().to_owned(), fault.kind.target()));
        }
        let mut counts = BTreeMap::new();
        for (kind, target) in pairs {
            for phase in PHASES {
                let combination = Combination {
                    kind: kind.clone(),
                    target: target.clone(),
                    phase: phase.name().to_owned(),
                };
                counts.insert(combination.key(), 0);
            }
        }
        ScenarioCoverage { counts }
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &ScenarioCoverage) {
        for (key, count) in &other.counts {
            *self.counts.entry(key.clone()).or_insert(0) += count;
        }
    }

    /// Faults counted in all.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// The combinations with a zero count, in key order.
    pub fn never_reached(&self) -> Vec<&str> {
        self.counts
            .iter()
            .filter(|(_, c)| **c == 0)
            .map(|(k, _)| k.as_str())
            .collect()
    }
}

/// Coverage of a sweep: scenario name → its counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    pub scenarios: BTreeMap<String, ScenarioCoverage>,
}

impl Coverage {
    pub fn add(&mut self, scenario: &str, counts: &ScenarioCoverage) {
        self.scenarios
            .entry(scenario.to_owned())
            .or_default()
            .add(counts);
    }

    pub fn merge(&mut self, other: &Coverage) {
        for (name, counts) in &other.scenarios {
            self.add(name, counts);
        }
    }

    /// A table for people: per scenario, every reached combination with its count, then the
    /// ones never reached.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for (name, coverage) in &self.scenarios {
            let reached = coverage.counts.values().filter(|c| **c > 0).count();
            out.push_str(&format!(
                "coverage of {name}: {reached} of {} combinations (fault kind × target × axis phase) reached, {} faults\n",
                coverage.counts.len(),
                coverage.total()
            ));
            for (key, count) in &coverage.counts {
                if *count > 0 {
                    out.push_str(&format!("  {count:>8}  {key}\n"));
                }
            }
            let never = coverage.never_reached();
            if !never.is_empty() {
                out.push_str(&format!("  never reached ({}):\n", never.len()));
                for key in never {
                    out.push_str(&format!("            {key}\n"));
                }
            }
        }
        out
    }
}

/// The targets chaos may draw for `kind` (mirrors `fault::draw_kind`).
fn chaos_targets_of(kind: &str, targets: &crate::fault::ChaosTargets) -> Vec<String> {
    let link = |a: &str, b: &str| FaultKind::Partition {
        a: a.to_owned(),
        b: b.to_owned(),
    };
    match kind {
        "partition" | "hold" | "latency" | "loss" => targets
            .links
            .iter()
            .map(|(a, b)| link(a, b).target())
            .collect(),
        "partition-oneway" => targets
            .links
            .iter()
            .flat_map(|(a, b)| {
                [(a, b), (b, a)].map(|(from, to)| {
                    FaultKind::PartitionOneway {
                        from: from.clone(),
                        to: to.clone(),
                    }
                    .target()
                })
            })
            .collect(),
        "crash" | "restart" | "disk-io-error" | "disk-corruption" | "disk-lost-writes" => {
            targets.hosts.clone()
        }
        _ => targets.axes.iter().map(|a| format!("axis:{a}")).collect(),
    }
}

/// Counts the combinations of one run; see the module docs.
#[derive(Debug)]
pub struct CoverageObserver {
    /// Axis name → its motion host and its client host.
    hosts_of: Vec<(String, String, String)>,
    /// Newest phase per axis.
    phases: BTreeMap<String, AxisPhase>,
    counts: ScenarioCoverage,
}

impl CoverageObserver {
    pub fn new(scenario: &Scenario) -> CoverageObserver {
        CoverageObserver {
            hosts_of: scenario
                .axes
                .iter()
                .map(|a| {
                    (
                        a.name.clone(),
                        a.motion_host.clone(),
                        format!("client-{}", scenario.client_of(&a.name)),
                    )
                })
                .collect(),
            phases: BTreeMap::new(),
            counts: ScenarioCoverage::universe(scenario),
        }
    }

    pub fn into_counts(self) -> ScenarioCoverage {
        self.counts
    }

    /// The axes a fault target reaches.
    fn axes_of<'a>(&'a self, target: &'a str) -> Vec<&'a str> {
        if let Some(axis) = target.strip_prefix("axis:") {
            return vec![axis];
        }
        let hosts: Vec<&str> = if let Some((a, b)) = target.split_once("<->") {
            vec![a, b]
        } else if let Some((a, b)) = target.split_once("->") {
            vec![a, b]
        } else {
            vec![target]
        };
        self.hosts_of
            .iter()
            .filter(|(_, motion, client)| {
                hosts.contains(&motion.as_str()) || hosts.contains(&client.as_str())
            })
            .map(|(axis, _, _)| axis.as_str())
            .collect()
    }
}

impl Observer for CoverageObserver {
    fn on_event(&mut self, event: &TraceEvent) {
        if event.host != HARNESS_HOST || event.name != "fault_injected" {
            return;
        }
        let (Some(kind), Some(target)) = (event.field("kind"), event.field("target")) else {
            panic!("fault_injected without kind or target: {event}");
        };
        let phase = self
            .axes_of(target)
            .iter()
            .map(|axis| self.phases.get(*axis).copied().unwrap_or(AxisPhase::Idle))
            .max()
            .unwrap_or(AxisPhase::Idle);
        let key = Combination {
            kind: kind.to_owned(),
            target: target.to_owned(),
            phase: phase.name().to_owned(),
        }
        .key();
        *self.counts.counts.entry(key).or_insert(0) += 1;
    }

    fn on_sample(&mut self, sample: &AxisSample<'_>) {
        let phase = AxisPhase::of(sample);
        match self.phases.get_mut(sample.axis) {
            Some(p) => *p = phase,
            None => {
                self.phases.insert(sample.axis.to_owned(), phase);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: keys round-trip, and merging adds counts key by key (zeros kept, so a shard's
    // never-reached list shrinks only when another shard reached the combination).
    #[test]
    fn keys_round_trip_and_counts_add() {
        let c = Combination {
            kind: "partition-oneway".into(),
            target: "client-1->motion-1".into(),
            phase: "moving".into(),
        };
        assert_eq!(Combination::from_key(&c.key()), Some(c.clone()));
        assert_eq!(Combination::from_key("a b"), None);
        let mut a = ScenarioCoverage::default();
        a.counts.insert(c.key(), 2);
        a.counts.insert("crash motion-1 idle".into(), 0);
        let mut b = ScenarioCoverage::default();
        b.counts.insert("crash motion-1 idle".into(), 0);
        b.counts.insert("crash motion-1 moving".into(), 1);
        a.add(&b);
        assert_eq!(a.total(), 3);
        assert_eq!(a.never_reached(), vec!["crash motion-1 idle"]);
    }
}
