//! Oracles: pure observers that judge a run.
//!
//! An oracle sees the run as it happens, through two read-only feeds: trace events
//! ([`Oracle::on_event`]) and ground-truth samples of every axis once per world tick
//! ([`Oracle::on_sample`]); at the end it gives its verdict ([`Oracle::finish`]). It changes
//! nothing, and it judges the plant's ground truth, never a sensor. Each has a stable id, used by
//! scenarios' `[expect]` and in reports, and a one-line statement of what it checks.
//!
//! Families live one per file: `physics.rs` (PH*), `liveness.rs` (LV*), `lease.rs` (SG4),
//! `saga.rs` (SG1–SG3, SG5, SG6), `journal.rs` (ES*), `bus.rs` (MQ*), `breaker.rs` (CB*),
//! `retry.rs` (R*), `gateway.rs` (RL1, BH1, GW*), `registry.rs` (SR*); the determinism oracle
//! (DT1) compares two whole runs and so lives with the runner (`run.rs`).

pub mod breaker;
pub mod bus;
pub mod gateway;
pub mod journal;
pub mod lease;
pub mod liveness;
pub mod physics;
pub mod registry;
pub mod retry;
pub mod saga;

use std::time::Duration;

use plant_model::GroundTruth;
use serde::Serialize;

use crate::scenario::Scenario;
use crate::trace::TraceEvent;

/// One axis at one instant, as the oracles see it.
#[derive(Debug, Clone)]
pub struct AxisSample<'a> {
    pub t: Duration,
    pub axis: &'a str,
    pub truth: GroundTruth,
    /// The position setpoint the drive last received, and whether a move was in progress.
    pub setpoint_rad: Option<f64>,
    pub moving: bool,
    pub torque_enabled: bool,
    pub watchdog_tripped: bool,
    /// The drive's latched fault code (0: none): non-zero while it stops or holds the axis by
    /// itself (watchdog `0x8130`, following error `0x8611`).
    pub drive_fault_code: u16,
    /// The deceleration of the drive's own stop, rad/s².
    pub quick_stop_deceleration_rad_per_s2: f64,
    /// When commands stopped reaching the drive, if they have: the last intact command's
    /// arrival plus the drive's watchdog time. Known to the harness, whatever the drive does.
    pub commands_lost_since: Option<Duration>,
}

/// The first time an oracle saw its statement broken, and how.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    #[serde(
        serialize_with = "crate::seconds::serialize_duration_s",
        rename = "t_s"
    )]
    pub t: Duration,
    pub detail: String,
}

/// A pure observer of a run.
pub trait Oracle {
    fn id(&self) -> &'static str;
    fn statement(&self) -> &'static str;
    fn on_event(&mut self, _event: &TraceEvent) {}
    fn on_sample(&mut self, _sample: &AxisSample<'_>) {}
    /// The first violation, if any; `end` is the simulated end of the run.
    fn finish(&mut self, end: Duration) -> Option<Violation>;
}

/// Every oracle for a scenario, in report order.
///
/// The families of the order path (sagas, journal, bus, resilience, gateway, registry) judge
/// only scenarios that run it (`[services]`): elsewhere they would pass without having seen
/// anything.
pub fn for_scenario(scenario: &Scenario) -> Vec<Box<dyn Oracle>> {
    let mut oracles = physics::for_scenario(scenario);
    oracles.extend(liveness::for_scenario(scenario));
    let mut sagas = lease::for_scenario(scenario);
    if scenario.services.is_some() {
        sagas.extend(saga::oracles());
        sagas.sort_by_key(|o| o.id());
        oracles.extend(sagas);
        oracles.extend(journal::oracles());
        oracles.extend(bus::oracles());
        oracles.extend(breaker::oracles());
        oracles.extend(retry::oracles());
        oracles.extend(gateway::oracles());
        oracles.extend(registry::oracles());
    } else {
        oracles.extend(sagas);
    }
    oracles
}

/// DT1, judged by [`crate::run`] (it runs a seed twice), not by an observer of one run.
pub const DETERMINISM_ID: &str = "DT1";
pub const DETERMINISM_STATEMENT: &str = "running the same seed again gives the same trace hash";

/// Every oracle id with its statement, including DT1: for `sim list` and `[expect]` checks.
pub fn catalogue(scenario: &Scenario) -> Vec<(&'static str, &'static str)> {
    let mut ids: Vec<_> = for_scenario(scenario)
        .iter()
        .map(|o| (o.id(), o.statement()))
        .collect();
    ids.push((DETERMINISM_ID, DETERMINISM_STATEMENT));
    ids
}

/// Keeps the first violation an oracle finds.
#[derive(Debug, Default, Clone)]
pub(crate) struct FirstViolation(Option<Violation>);

impl FirstViolation {
    pub(crate) fn record(&mut self, t: Duration, detail: impl FnOnce() -> String) {
        if self.0.is_none() {
            self.0 = Some(Violation {
                t,
                detail: detail(),
            });
        }
    }

    pub(crate) fn take(&mut self) -> Option<Violation> {
        self.0.take()
    }
}
