//! Running a scenario: the fault schedule, the world, the oracles, the statistics, the report.
//!
//! [`run`] is the one entry point every command uses (`sim run`, the snapshot test, sweeps). It
//! draws the chaos schedule, runs the world once with the oracles and the statistics observing,
//! optionally runs it a second time to judge DT1 (same seed, same trace hash), and assembles the
//! [`Report`]. It owns the verdict rule: every expected oracle must come out as expected.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::fault::{Fault, draw_chaos};
use crate::oracle::{self, AxisSample, DETERMINISM_ID, DETERMINISM_STATEMENT, Oracle, Violation};
use crate::report::{
    AxisReport, Expectation, MoveCounts, OracleReport, OrderCounts, Report, Samples, Verdict,
};
use crate::scenario::Scenario;
use crate::seed::{Seed, Stream};
use crate::trace::{Trace, TraceEvent, TraceSubscriber};
use crate::world::{Observer, World};

/// Points per axis kept for plots; longer runs are decimated evenly.
pub const SERIES_POINT_COUNT_MAX: usize = 4000;

#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Run a second time and judge DT1 (doubles the cost).
    pub check_determinism: bool,
    /// Keep per-axis time series for plots.
    pub record_series: bool,
}

/// One axis's recorded time series, decimated, for plots.
#[derive(Debug, Clone, Default)]
pub struct AxisSeries {
    pub name: String,
    pub t_s: Vec<f64>,
    pub setpoint_rad: Vec<f64>,
    pub position_rad: Vec<f64>,
    pub current_a: Vec<f64>,
}

#[derive(Debug)]
pub struct RunOutput {
    pub report: Report,
    pub trace: Trace,
    pub series: Vec<AxisSeries>,
    /// The full fault schedule the run used (explicit and drawn).
    pub schedule: Vec<Fault>,
}

/// Checks that `[expect]` names only oracles that exist.
pub fn check_expectations(scenario: &Scenario) -> Result<(), String> {
    let catalogue = oracle::catalogue(scenario);
    let known = |id: &str| catalogue.iter().any(|(k, _)| *k == id);
    let listed = scenario
        .expect
        .oracles
        .iter()
        .flatten()
        .chain(&scenario.expect.failing);
    for id in listed {
        if !known(id) {
            let ids: Vec<_> = catalogue.iter().map(|(k, _)| *k).collect();
            return Err(format!(
                "{}: [expect] names oracle `{id}`, which does not exist; the oracles are {}",
                scenario.origin,
                ids.join(", ")
            ));
        }
    }
    Ok(())
}

/// The full fault schedule of a run: the explicit faults and those the seed draws.
pub fn schedule(scenario: &Scenario, seed: u64) -> Vec<Fault> {
    let mut faults = scenario.faults.clone();
    if let Some(chaos) = &scenario.chaos {
        let chaos = crate::swarm::effective_chaos(chaos, seed);
        faults.extend(draw_chaos(
            &chaos,
            &scenario.chaos_targets(),
            &mut Seed(seed).rng(Stream::Chaos),
        ));
    }
    faults.sort_by_key(|f| f.at);
    faults
}

/// Runs `scenario` under `seed` with its own fault schedule.
pub fn run(scenario: &Scenario, seed: u64, options: RunOptions) -> RunOutput {
    run_with_schedule(scenario, seed, schedule(scenario, seed), options)
}

/// Runs `scenario` under `seed` with the given fault schedule (shrinking replaces it).
pub fn run_with_schedule(
    scenario: &Scenario,
    seed: u64,
    schedule: Vec<Fault>,
    options: RunOptions,
) -> RunOutput {
    run_observed(scenario, seed, schedule, options, None)
}

/// [`run_with_schedule`] with `extra` watching the (first) run beside the oracles, as a sweep's
/// coverage counter does: it sees what they see, and cannot change the run.
pub fn run_observed(
    scenario: &Scenario,
    seed: u64,
    schedule: Vec<Fault>,
    options: RunOptions,
    extra: Option<&mut dyn Observer>,
) -> RunOutput {
    let first = run_once(
        scenario,
        seed,
        schedule.clone(),
        options.record_series,
        extra,
    );
    let determinism = options.check_determinism.then(|| {
        let second = run_once(scenario, seed, schedule.clone(), false, None);
        first_divergence(&first.trace, &second.trace)
    });
    let mut oracles: Vec<(String, String, Option<Violation>)> = first.verdicts;
    if let Some(divergence) = determinism {
        oracles.push((
            DETERMINISM_ID.to_owned(),
            DETERMINISM_STATEMENT.to_owned(),
            divergence,
        ));
    }
    let oracle_reports: Vec<OracleReport> = oracles
        .into_iter()
        .map(|(id, statement, violation)| OracleReport {
            expected: expectation(scenario, &id),
            holds: violation.is_none(),
            first_violation: violation,
            id,
            statement,
        })
        .collect();
    let verdict = if oracle_reports.iter().all(|o| match o.expected {
        Expectation::Holds => o.holds,
        Expectation::Fails => !o.holds,
        Expectation::Ignored => true,
    }) {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
    let report = Report {
        scenario: scenario.name.clone(),
        seed,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        verdict,
        simulated_s: scenario.duration.as_secs_f64(),
        trace_hash: first.trace.hash(),
        trace_events: first.trace.events().len(),
        oracles: oracle_reports,
        faults: schedule.clone(),
        swarm: scenario
            .chaos
            .as_ref()
            .and_then(|chaos| crate::swarm::for_seed(chaos, seed)),
        moves: first.stats.moves(),
        orders: first.stats.orders.as_ref().map(OrderStats::counts),
        axes: first.axes,
    };
    RunOutput {
        report,
        trace: first.trace,
        series: first.stats.series,
        schedule,
    }
}

fn expectation(scenario: &Scenario, id: &str) -> Expectation {
    if scenario.expect.failing.iter().any(|f| f == id) {
        return Expectation::Fails;
    }
    match &scenario.expect.oracles {
        None => Expectation::Holds,
        Some(ids) if ids.iter().any(|i| i == id) => Expectation::Holds,
        Some(_) => Expectation::Ignored,
    }
}

/// The first event at which two traces differ, as a violation of DT1.
pub fn first_divergence(a: &Trace, b: &Trace) -> Option<Violation> {
    if a.hash() == b.hash() {
        return None;
    }
    let index = a.events().iter().zip(b.events()).position(|(x, y)| x != y);
    let index = index.unwrap_or(a.events().len().min(b.events().len()));
    let show = |e: Option<&TraceEvent>| e.map_or("<end of trace>".to_owned(), |e| e.to_string());
    let (x, y) = (a.events().get(index), b.events().get(index));
    Some(Violation {
        t: x.or(y).map_or(Duration::ZERO, |e| e.t),
        detail: format!(
            "traces diverge at event {index}: first run `{}`, second run `{}`",
            show(x),
            show(y)
        ),
    })
}

struct Once {
    trace: Trace,
    verdicts: Vec<(String, String, Option<Violation>)>,
    stats: Statistics,
    axes: Vec<AxisReport>,
}

fn run_once(
    scenario: &Scenario,
    seed: u64,
    schedule: Vec<Fault>,
    record_series: bool,
    extra: Option<&mut dyn Observer>,
) -> Once {
    let shared = Arc::new(Mutex::new(Trace::default()));
    let _guard = tracing::subscriber::set_default(TraceSubscriber::new(shared.clone()));

    let mut observer = Observers {
        oracles: oracle::for_scenario(scenario),
        stats: Statistics::new(scenario, record_series),
        extra,
    };
    let mut world = World::new(scenario, Seed(seed), schedule, shared.clone());
    world.run(&mut observer);
    let axes = world
        .axes
        .iter()
        .map(|a| {
            observer.stats.axis_report(
                &a.name,
                a.drive.borrow().truth().position_rad,
                a.bus.borrow().stats,
            )
        })
        .collect();
    drop(world);
    let end = scenario.duration;
    let verdicts = observer
        .oracles
        .iter_mut()
        .map(|o| (o.id().to_owned(), o.statement().to_owned(), o.finish(end)))
        .collect();
    let trace = shared.lock().expect("trace lock").clone();
    Once {
        trace,
        verdicts,
        stats: observer.stats,
        axes,
    }
}

struct Observers<'x> {
    oracles: Vec<Box<dyn Oracle>>,
    stats: Statistics,
    extra: Option<&'x mut dyn Observer>,
}

impl Observer for Observers<'_> {
    fn on_event(&mut self, event: &TraceEvent) {
        self.oracles.iter_mut().for_each(|o| o.on_event(event));
        self.stats.on_event(event);
        if let Some(extra) = self.extra.as_mut() {
            extra.on_event(event);
        }
    }
    fn on_sample(&mut self, sample: &AxisSample<'_>) {
        self.oracles.iter_mut().for_each(|o| o.on_sample(sample));
        self.stats.on_sample(sample);
        if let Some(extra) = self.extra.as_mut() {
            extra.on_sample(sample);
        }
    }
}

/// Tracking figures and move counts, gathered while the run goes.
struct Statistics {
    axes: BTreeMap<String, AxisStats>,
    requested: BTreeMap<(String, u64), Duration>,
    latencies_ms: Vec<f64>,
    counts: MoveCounts,
    /// The order path, when the scenario runs it.
    orders: Option<OrderStats>,
    series: Vec<AxisSeries>,
    decimation: u64,
    record_series: bool,
}

#[derive(Default)]
struct OrderStats {
    counts: OrderCounts,
    /// Order → when its saga started (first `saga_started`), until it ends.
    running: BTreeMap<u64, Duration>,
    started: std::collections::BTreeSet<u64>,
    ended: std::collections::BTreeSet<u64>,
    saga_ms: Vec<f64>,
}

impl OrderStats {
    fn on_event(&mut self, e: &TraceEvent) {
        let order = || e.field_u64("order");
        match e.name.as_str() {
            "order_submitted" if e.field_u64("attempt") == Some(1) => self.counts.placed += 1,
            "order_given_up" => self.counts.given_up += 1,
            "saga_started" => {
                if let Some(order) = order()
                    && self.started.insert(order)
                {
                    self.counts.started += 1;
                    self.running.insert(order, e.t);
                }
            }
            "saga_completed" | "saga_compensated" => {
                if let Some(order) = order()
                    && self.ended.insert(order)
                {
                    if e.name == "saga_completed" {
                        self.counts.completed += 1;
                    } else {
                        self.counts.compensated += 1;
                    }
                    if let Some(at) = self.running.remove(&order) {
                        self.saga_ms.push((e.t - at).as_secs_f64() * 1e3);
                    }
                }
            }
            "saga_owner_claimed" => self.counts.takeovers += 1,
            "http_request" => {
                if let Some(status) = e.field_u64("status").and_then(|s| u16::try_from(s).ok()) {
                    *self.counts.gateway_statuses.entry(status).or_default() += 1;
                }
            }
            _ => {}
        }
    }

    fn counts(&self) -> OrderCounts {
        let mut counts = self.counts.clone();
        let mut sorted = self.saga_ms.clone();
        sorted.sort_by(f64::total_cmp);
        counts.saga_ms_p50 = quantile(&sorted, 0.5);
        counts.saga_ms_p99 = quantile(&sorted, 0.99);
        counts.saga_ms_max = sorted.last().copied();
        counts
    }
}

/// The `q` quantile of sorted values (nearest rank), `None` when there are none.
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    Some(sorted[index])
}

#[derive(Default)]
struct AxisStats {
    following_error_rad_max: f64,
    following_error_sq_sum: f64,
    following_error_count: u64,
    current_a_peak: f64,
    temperature_c_max: f64,
    watchdog_trips: u64,
    was_tripped: bool,
    samples: u64,
}

impl Statistics {
    fn new(scenario: &Scenario, record_series: bool) -> Statistics {
        let samples =
            (scenario.duration.as_nanos() / scenario.sample_period().as_nanos().max(1)) as u64;
        Statistics {
            axes: scenario
                .axes
                .iter()
                .map(|a| (a.name.clone(), AxisStats::default()))
                .collect(),
            requested: BTreeMap::new(),
            latencies_ms: Vec::new(),
            counts: MoveCounts::default(),
            orders: scenario.services.as_ref().map(|_| OrderStats::default()),
            series: scenario
                .axes
                .iter()
                .map(|a| AxisSeries {
                    name: a.name.clone(),
                    ..AxisSeries::default()
                })
                .collect(),
            decimation: samples.div_ceil(SERIES_POINT_COUNT_MAX as u64).max(1),
            record_series,
        }
    }

    fn on_event(&mut self, e: &TraceEvent) {
        if let Some(orders) = self.orders.as_mut() {
            orders.on_event(e);
        }
        let key = || (e.host.clone(), e.field_u64("request_id").unwrap_or(0));
        match e.name.as_str() {
            "move_requested" => {
                self.counts.requested += 1;
                self.requested.insert(key(), e.t);
            }
            "move_succeeded" => {
                self.counts.succeeded += 1;
                if let Some(at) = self.requested.remove(&key()) {
                    self.latencies_ms.push((e.t - at).as_secs_f64() * 1e3);
                }
            }
            "move_failed" => {
                self.counts.failed += 1;
                self.requested.remove(&key());
            }
            "move_retry" => self.counts.retries += 1,
            _ => {}
        }
    }

    fn on_sample(&mut self, s: &AxisSample<'_>) {
        let stats = self.axes.get_mut(s.axis).expect("sample of a known axis");
        stats.samples += 1;
        if let (true, None, Some(setpoint)) = (s.moving, s.commands_lost_since, s.setpoint_rad) {
            let error = (setpoint - s.truth.position_rad).abs();
            stats.following_error_rad_max = stats.following_error_rad_max.max(error);
            stats.following_error_sq_sum += error * error;
            stats.following_error_count += 1;
        }
        stats.current_a_peak = stats.current_a_peak.max(s.truth.current_a.abs());
        stats.temperature_c_max = stats.temperature_c_max.max(s.truth.winding_temperature_c);
        if s.watchdog_tripped && !stats.was_tripped {
            stats.watchdog_trips += 1;
        }
        stats.was_tripped = s.watchdog_tripped;
        if self.record_series && stats.samples.is_multiple_of(self.decimation) {
            let series = self
                .series
                .iter_mut()
                .find(|x| x.name == s.axis)
                .expect("series of a known axis");
            series.t_s.push(s.t.as_secs_f64());
            series.setpoint_rad.push(s.setpoint_rad.unwrap_or(f64::NAN));
            series.position_rad.push(s.truth.position_rad);
            series.current_a.push(s.truth.current_a);
        }
    }

    fn axis_report(
        &self,
        name: &str,
        position_rad_final: f64,
        fieldbus: crate::fieldbus::FieldbusStats,
    ) -> AxisReport {
        let s = &self.axes[name];
        let rms = if s.following_error_count == 0 {
            0.0
        } else {
            (s.following_error_sq_sum / s.following_error_count as f64).sqrt()
        };
        AxisReport {
            name: name.to_owned(),
            following_error_deg_max: s.following_error_rad_max.to_degrees(),
            following_error_deg_rms: rms.to_degrees(),
            current_a_peak: s.current_a_peak,
            position_deg_final: position_rad_final.to_degrees(),
            winding_temperature_c_max: s.temperature_c_max,
            watchdog_trips: s.watchdog_trips,
            fieldbus,
            samples: self.record_series.then(|| {
                let series = self
                    .series
                    .iter()
                    .find(|x| x.name == name)
                    .expect("series of a known axis");
                Samples {
                    t_s: series.t_s.clone(),
                    setpoint_deg: series.setpoint_rad.iter().map(|x| x.to_degrees()).collect(),
                    position_deg: series.position_rad.iter().map(|x| x.to_degrees()).collect(),
                    current_a: series.current_a.clone(),
                }
            }),
        }
    }

    fn moves(&self) -> MoveCounts {
        let mut counts = self.counts.clone();
        let mut sorted = self.latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        counts.latency_ms_p50 = quantile(&sorted, 0.5);
        counts.latency_ms_p99 = quantile(&sorted, 0.99);
        counts.latency_ms_max = sorted.last().copied();
        counts
    }
}
