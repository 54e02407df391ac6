//! Fault coverage of a sweep: which fault kind hit which target in which axis phase or saga
//! step, how often, and which combinations no seed reached.
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
//! A target of the order path that reaches no axis (the gateway, registry, bus, journal,
//! inventory and orders hosts, and the links between them) has a saga step instead, from the
//! orchestrators' events (`saga_started`, `saga_step`, `saga_compensating`, `saga_completed`,
//! `saga_compensated`): the step some open saga is in when the fault starts, `saga:move` (the
//! pivot) before `saga:compensating`, then `saga:commit_part`, `saga:release_axis`,
//! `saga:lease_axis`, `saga:reserve_part`, and `saga:none` with no saga open. A saga whose
//! orchestrator crashed stays open at its step until a successor ends it: the system is in that
//! step, whoever drives it.
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

/// The step an open saga is in, as far as coverage cares; ordered from least to most critical,
/// so that the most critical step of the open sagas is their maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SagaPhase {
    None,
    ReservePart,
    LeaseAxis,
    ReleaseAxis,
    CommitPart,
    Compensating,
    Move,
}

pub const SAGA_PHASES: [SagaPhase; 7] = [
    SagaPhase::None,
    SagaPhase::ReservePart,
    SagaPhase::LeaseAxis,
    SagaPhase::Move,
    SagaPhase::CommitPart,
    SagaPhase::ReleaseAxis,
    SagaPhase::Compensating,
];

impl SagaPhase {
    pub fn name(self) -> &'static str {
        match self {
            SagaPhase::None => "saga:none",
            SagaPhase::ReservePart => "saga:reserve_part",
            SagaPhase::LeaseAxis => "saga:lease_axis",
            SagaPhase::Move => "saga:move",
            SagaPhase::CommitPart => "saga:commit_part",
            SagaPhase::ReleaseAxis => "saga:release_axis",
            SagaPhase::Compensating => "saga:compensating",
        }
    }

    /// The step after `step` (a `saga_step` kind) succeeded; `None` after the last one (the
    /// saga is about to complete: nothing more of it can be hit).
    fn after(step: &str) -> Option<SagaPhase> {
        match step {
            "reserve_part" => Some(SagaPhase::LeaseAxis),
            "lease_axis" => Some(SagaPhase::Move),
            "move" => Some(SagaPhase::CommitPart),
            "commit_part" => Some(SagaPhase::ReleaseAxis),
            _ => None,
        }
    }
}

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
    /// Every combination the scenario's faults could reach, each counted zero: a target that
    /// reaches an axis in every axis phase, one of the order path in every saga step.
    pub fn universe(scenario: &Scenario) -> ScenarioCoverage {
        let reach = Reach::new(scenario);
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
            let phases: Vec<&str> = if reach.by_saga_step(&target) {
                SAGA_PHASES.iter().map(|p| p.name()).collect()
            } else {
                PHASES.iter().map(|p| p.name()).collect()
            };
            for phase in phases {
                let combination = Combination {
                    kind: kind.clone(),
                    target: target.clone(),
                    phase: phase.to_owned(),
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
                "coverage of {name}: {reached} of {} combinations (fault kind × target × axis phase or saga step) reached, {} faults\n",
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

/// Fault kinds the short summary lists per scenario, least covered first.
pub const LEAST_COVERED_KINDS_LISTED: usize = 5;

impl Coverage {
    /// A few lines for the terminal, where [`Coverage::text`] would be thousands for a large
    /// cell: per scenario the combinations reached of all, how many were never reached, the
    /// faults counted, and the [`LEAST_COVERED_KINDS_LISTED`] fault kinds with the smallest share
    /// of their combinations reached. `table_file` names where the whole table is.
    pub fn summary(&self, table_file: &str) -> String {
        let mut out = format!(
            "coverage (fault kind × target × axis phase or saga step; every combination with its count in {table_file}):\n"
        );
        for (name, coverage) in &self.scenarios {
            let total = coverage.counts.len();
            let reached = coverage.counts.values().filter(|c| **c > 0).count();
            out.push_str(&format!(
                "  {name}: {reached} of {total} combinations reached, {} never reached, {} faults\n",
                total - reached,
                coverage.total()
            ));
            // kind → (combinations reached, combinations, faults)
            let mut kinds: BTreeMap<String, (usize, usize, u64)> = BTreeMap::new();
            for (key, count) in &coverage.counts {
                let kind = Combination::from_key(key).map_or_else(|| key.clone(), |c| c.kind);
                let entry = kinds.entry(kind).or_default();
                entry.0 += usize::from(*count > 0);
                entry.1 += 1;
                entry.2 += count;
            }
            let mut kinds: Vec<(String, (usize, usize, u64))> = kinds.into_iter().collect();
            // Smallest share reached first (compared exactly, by cross-multiplying), then fewest
            // faults, then by name (the map's order, kept by the stable sort).
            kinds.sort_by(|(_, a), (_, b)| (a.0 * b.1).cmp(&(b.0 * a.1)).then(a.2.cmp(&b.2)));
            if !kinds.is_empty() {
                let least: Vec<String> = kinds
                    .iter()
                    .take(LEAST_COVERED_KINDS_LISTED)
                    .map(|(kind, (reached, total, faults))| {
                        let s = if *faults == 1 { "" } else { "s" };
                        format!("{kind} {reached} of {total} ({faults} fault{s})")
                    })
                    .collect();
                out.push_str(&format!("    least covered kinds: {}\n", least.join(", ")));
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

/// Which axes a fault target reaches, and whether it is judged by saga step instead.
#[derive(Debug)]
struct Reach {
    /// Axis name → its motion host and its client host.
    hosts_of: Vec<(String, String, String)>,
    /// The scenario runs the order path.
    sagas: bool,
}

impl Reach {
    fn new(scenario: &Scenario) -> Reach {
        Reach {
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
            sagas: scenario.services.is_some(),
        }
    }

    /// A target of the order path that reaches no axis.
    fn by_saga_step(&self, target: &str) -> bool {
        self.sagas && self.axes_of(target).is_empty()
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

/// Counts the combinations of one run; see the module docs.
#[derive(Debug)]
pub struct CoverageObserver {
    reach: Reach,
    /// Newest phase per axis.
    phases: BTreeMap<String, AxisPhase>,
    /// Open sagas (order id) → the step each is in.
    sagas: BTreeMap<u64, SagaPhase>,
    counts: ScenarioCoverage,
}

impl CoverageObserver {
    pub fn new(scenario: &Scenario) -> CoverageObserver {
        CoverageObserver {
            reach: Reach::new(scenario),
            phases: BTreeMap::new(),
            sagas: BTreeMap::new(),
            counts: ScenarioCoverage::universe(scenario),
        }
    }

    pub fn into_counts(self) -> ScenarioCoverage {
        self.counts
    }

    /// Follows the orchestrators' events: which sagas are open, and in which step.
    fn follow_saga(&mut self, event: &TraceEvent) {
        let Some(order) = event.field_u64("order") else {
            return;
        };
        match event.name.as_str() {
            "saga_started" => {
                self.sagas.insert(order, SagaPhase::ReservePart);
            }
            "saga_step" => match event.field("outcome") {
                Some("succeeded" | "shortfall") => {
                    match event.field("step").and_then(SagaPhase::after) {
                        Some(next) => self.sagas.insert(order, next),
                        None => self.sagas.remove(&order),
                    };
                }
                _ => {
                    self.sagas.insert(order, SagaPhase::Compensating);
                }
            },
            "saga_compensating" => {
                self.sagas.insert(order, SagaPhase::Compensating);
            }
            "saga_completed" | "saga_compensated" => {
                self.sagas.remove(&order);
            }
            _ => {}
        }
    }
}

impl Observer for CoverageObserver {
    fn on_event(&mut self, event: &TraceEvent) {
        if event.name.starts_with("saga_") {
            self.follow_saga(event);
            return;
        }
        if event.host != HARNESS_HOST || event.name != "fault_injected" {
            return;
        }
        let (Some(kind), Some(target)) = (event.field("kind"), event.field("target")) else {
            panic!("fault_injected without kind or target: {event}");
        };
        let phase = if self.reach.by_saga_step(target) {
            let step = self.sagas.values().copied().max();
            step.unwrap_or(SagaPhase::None).name()
        } else {
            self.reach
                .axes_of(target)
                .iter()
                .map(|axis| self.phases.get(*axis).copied().unwrap_or(AxisPhase::Idle))
                .max()
                .unwrap_or(AxisPhase::Idle)
                .name()
        };
        let key = Combination {
            kind: kind.to_owned(),
            target: target.to_owned(),
            phase: phase.to_owned(),
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

    fn event(host: &str, name: &str, fields: &[(&str, &str)]) -> TraceEvent {
        crate::trace::test_event(0, host, name, fields)
    }

    fn crash(host: &str) -> TraceEvent {
        event(
            HARNESS_HOST,
            "fault_injected",
            &[("kind", "crash"), ("target", host)],
        )
    }

    fn step(order: &str, step: &str, outcome: &str) -> TraceEvent {
        event(
            "orders-1",
            "saga_step",
            &[("order", order), ("step", step), ("outcome", outcome)],
        )
    }

    // Goal: a service host of the order path is covered by saga step, not by an (unreachable)
    // axis phase: the universe lists its saga steps, and each crash counts the most critical
    // step of the sagas open at that instant (the pivot first, then compensation); a motion
    // host keeps its axis phase. Method: the flagship's universe, then a hand-built run of two
    // sagas with crashes of orders-1 between their steps.
    #[test]
    fn order_path_targets_are_covered_by_saga_step() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/flagship.toml");
        let scenario = Scenario::load(std::path::Path::new(path)).expect("flagship loads");
        let universe = ScenarioCoverage::universe(&scenario);
        for key in ["crash orders-1 saga:move", "crash journal saga:none"] {
            assert_eq!(universe.counts.get(key), Some(&0), "{key}");
        }
        assert!(!universe.counts.contains_key("crash orders-1 moving"));
        assert!(universe.counts.contains_key("crash motion-1 moving"));
        assert!(!universe.counts.contains_key("crash motion-1 saga:move"));

        let mut observer = CoverageObserver::new(&scenario);
        let mut run = |e: TraceEvent| observer.on_event(&e);
        run(crash("orders-1"));
        run(event("orders-1", "saga_started", &[("order", "1")]));
        run(crash("orders-1"));
        run(step("1", "reserve_part", "succeeded"));
        run(event("orders-2", "saga_started", &[("order", "2")]));
        run(crash("orders-1"));
        run(step("1", "lease_axis", "succeeded"));
        run(crash("orders-1"));
        run(step("1", "move", "succeeded"));
        run(step("2", "reserve_part", "succeeded"));
        run(step("2", "lease_axis", "failed"));
        run(crash("orders-1"));
        run(event("orders-2", "saga_compensated", &[("order", "2")]));
        run(crash("orders-1"));
        run(step("1", "commit_part", "succeeded"));
        run(crash("orders-1"));
        run(step("1", "release_axis", "succeeded"));
        run(event("orders-1", "saga_completed", &[("order", "1")]));
        run(crash("orders-1"));
        run(crash("motion-1"));
        let counts = observer.into_counts().counts;
        let reached: Vec<(&str, u64)> = counts
            .iter()
            .filter(|(_, c)| **c > 0)
            .map(|(k, c)| (k.as_str(), *c))
            .collect();
        assert_eq!(
            reached,
            vec![
                ("crash motion-1 idle", 1),
                ("crash orders-1 saga:commit_part", 1),
                ("crash orders-1 saga:compensating", 1),
                ("crash orders-1 saga:lease_axis", 1),
                ("crash orders-1 saga:move", 1),
                ("crash orders-1 saga:none", 2),
                ("crash orders-1 saga:release_axis", 1),
                ("crash orders-1 saga:reserve_part", 1),
            ]
        );
    }
}
