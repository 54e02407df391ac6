//! Scenarios: a cell, its workload, its faults and what must hold, loaded from TOML and checked.
//!
//! [`Scenario::load`] reads a file, [`Scenario::from_source`] parses and checks text. The file
//! schema lives in `file.rs`; this module owns the checks that relate fields to each other and
//! the resolved form the world runs (SI units, `Duration`s, the cycles expanded into moves).
//! Every rejection is a [`ScenarioError`] that names the file, the line and column, and says
//! how to fix it. What a scenario *means* at run time (hosts, links, drives) is `world.rs`.

mod file;
mod keys;
pub mod services;
mod source;

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use plant_model::AxisParams;
use toml::Spanned;

use crate::fault::{Chaos, ChaosTargets, Fault, FaultKind, KINDS, Magnitude, Target, TargetClass};
use file::{AxisFile, ChaosFile, FaultFile, ProfileFile, ScenarioFile};
pub use source::{Location, Source};

/// A run may not be longer than this: limits keep a typo from running for a day.
pub const DURATION_S_MAX: f64 = 24.0 * 3600.0;
/// Upper bound on moves after cycles are expanded.
pub const MOVE_COUNT_MAX: usize = 100_000;
/// Host counts of a cell.
pub const CLIENT_COUNT_MAX: u32 = 16;
pub const MOTION_HOST_COUNT_MAX: u32 = 16;
/// Control rates a drive accepts, Hz.
pub const CONTROL_RATE_HZ_MIN: f64 = 10.0;
pub const CONTROL_RATE_HZ_MAX: f64 = 10_000.0;
/// The coarsest turmoil tick a scenario may ask for, in control periods.
pub const TICK_PERIODS_MAX: u64 = 20;

/// A scenario file was unreadable, malformed, or contradicts itself.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{origin}: cannot read the scenario: {source}")]
    Read {
        origin: String,
        source: std::io::Error,
    },
    #[error("{origin}:{location}: {message}")]
    Invalid {
        origin: String,
        location: Location,
        message: String,
    },
}

/// A checked scenario, ready to run.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    /// The path the scenario was loaded from, as given (used in reproduction commands).
    pub origin: String,
    pub duration: Duration,
    pub settle: Duration,
    pub seed: u64,
    pub clients: u32,
    pub motion_hosts: u32,
    pub network: Network,
    /// Sorted by name.
    pub axes: Vec<Axis>,
    /// Sorted by time, cycles expanded.
    pub moves: Vec<Move>,
    pub retry: Retry,
    /// The explicit `[[fault]]` entries, sorted by start time.
    pub faults: Vec<Fault>,
    pub chaos: Option<Chaos>,
    pub expect: Expect,
    /// TEST ONLY: planted bugs (`[planted]`); all off in any real scenario.
    pub planted: Planted,
    /// The order path of the cell (`[services]`), if it runs.
    pub services: Option<services::Services>,
    /// `[workload.orders]`, dealt to the clients in turn.
    pub order_workload: Option<services::OrderWorkload>,
    /// `[[workload.request]]`, in time order, dealt to the clients in turn.
    pub requests: Vec<services::Request>,
}

/// `[planted]` resolved: TEST ONLY switches that plant known bugs, so that tests can show the
/// oracles catching them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Planted {
    /// The motion service skips the fencing-token check on moves.
    pub motion_skips_fencing: bool,
    /// The drive firmware never trips its command watchdog.
    pub drive_ignores_watchdog: bool,
    /// The harness records a value that differs between runs.
    pub trace_nondeterministic: bool,
    /// The journal acknowledges appends before they are synced (ES6).
    pub journal_acks_before_sync: bool,
    /// The bus drops a message after its last delivery instead of dead-lettering it (MQ1).
    pub bus_drops_after_max_deliver: bool,
    /// The motion service starts a retried move again (SG3).
    pub motion_moves_twice: bool,
    /// An open breaker admits every call (CB2).
    pub breaker_admits_while_open: bool,
    /// An empty token bucket admits anyway (RL1).
    pub rate_limit_over_admits: bool,
    /// The bulkhead admits every call at once, whatever is in flight (BH1).
    pub bulkhead_ignores_limit: bool,
    /// The gateway retries requests without an idempotency key and non-retriable errors (R3).
    pub gateway_retries_unsafe: bool,
    /// The gateway forwards a viewer's POST, PUT and DELETE (GW1).
    pub gateway_skips_authorisation: bool,
    /// The gateway's 429s and 503s carry no Retry-After (GW2).
    pub gateway_omits_retry_after: bool,
    /// Discovery also returns critical instances (SR2).
    pub registry_discovers_critical: bool,
    /// The drive firmware never monitors its following error (the drive-side stop of an axis
    /// whose controller is gone; PH3). No file key: set by tests on a loaded scenario.
    pub drive_ignores_following_error: bool,
    /// The drive firmware's watchdog trips ten times later than configured (PH7; PH4 allows
    /// the whole stop time). No file key: set by tests on a loaded scenario.
    pub drive_watchdog_ten_times_late: bool,
    /// The gateway's discovery cache serves instances past their TTL (SR3).
    pub gateway_cache_ignores_ttl: bool,
    /// The motion-events consumer acks what it failed to append to the journal (MQ5).
    pub consumer_acks_unapplied: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    pub service_latency_min: Duration,
    pub service_latency_max: Duration,
    /// Links with their own latency and loss, overriding the defaults above.
    pub links: Vec<Link>,
    pub fieldbus_latency: Duration,
    pub fieldbus_loss: f64,
    pub fieldbus_corruption: f64,
    /// `tick_ms`, if the scenario sets it: see [`Scenario::tick`].
    pub tick: Option<Duration>,
}

/// One service link's own settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub a: String,
    pub b: String,
    pub latency_min: Duration,
    pub latency_max: Duration,
    pub loss: f64,
}

impl Network {
    /// The latency range of the link between two hosts: its own, or the default.
    pub fn latency(&self, a: &str, b: &str) -> (Duration, Duration) {
        self.links
            .iter()
            .find(|l| (l.a == a && l.b == b) || (l.a == b && l.b == a))
            .map_or((self.service_latency_min, self.service_latency_max), |l| {
                (l.latency_min, l.latency_max)
            })
    }

    /// The message loss of the link between two hosts.
    pub fn loss(&self, a: &str, b: &str) -> f64 {
        self.links
            .iter()
            .find(|l| (l.a == a && l.b == b) || (l.a == b && l.b == a))
            .map_or(0.0, |l| l.loss)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Trapezoid,
    SCurve,
}

#[derive(Debug, Clone)]
pub struct Axis {
    pub name: String,
    pub motion_host: String,
    pub control_period: Duration,
    pub profile: Profile,
    pub velocity_rad_per_s_max: f64,
    pub acceleration_rad_per_s2_max: f64,
    pub jerk_rad_per_s3_max: f64,
    pub position_rad_min: f64,
    pub position_rad_max: f64,
    pub current_a_max: f64,
    pub following_error_rad_max: f64,
    pub tolerance_rad: f64,
    pub bandwidth_hz: f64,
    pub drive_watchdog: Duration,
    pub stop_time_s: f64,
    pub temperature_c_max: f64,
    pub plant: AxisParams,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Move {
    pub at: Duration,
    pub axis: String,
    pub target_rad: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Retry {
    pub attempts_max: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub jitter: f64,
    pub timeout: Duration,
    pub deadline: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expect {
    /// Oracle ids that must hold; `None` means every oracle.
    pub oracles: Option<Vec<String>>,
    /// Oracle ids the scenario shows failing on purpose.
    pub failing: Vec<String>,
    pub moves_completed_min: u32,
    pub orders_completed_min: u32,
}

impl Axis {
    /// The control core's configuration for this axis: gains from the plant and the bandwidth,
    /// the move limits, and the supervisor's limits from the scenario (the same numbers the
    /// oracles judge against).
    pub fn control_config(&self) -> control::AxisConfig {
        let shaft = self.plant.output_shaft();
        let plant = control::PlantConstants {
            inertia_kg_m2: shaft.inertia_kg_m2,
            torque_constant_nm_per_a: shaft.torque_constant_nm_per_a,
            viscous_nm_s_per_rad: shaft.viscous_nm_s_per_rad,
            coulomb_nm: shaft.coulomb_nm,
            current_a_max: self.current_a_max,
        };
        let limits = control::TrajectoryLimits {
            velocity_rad_per_s_max: self.velocity_rad_per_s_max,
            acceleration_rad_per_s2_max: self.acceleration_rad_per_s2_max,
            jerk_rad_per_s3_max: self.jerk_rad_per_s3_max,
        };
        let mut config = control::AxisConfig::from_plant(
            plant,
            self.bandwidth_hz,
            limits,
            self.position_rad_min,
            self.position_rad_max,
        );
        config.profile = match self.profile {
            Profile::Trapezoid => control::Profile::Trapezoid,
            Profile::SCurve => control::Profile::SCurve,
        };
        config.supervisor.following_error_rad_max = self.following_error_rad_max;
        config.supervisor.stop_time_s_max = self.stop_time_s;
        // The supervisor stops the axis a margin below the oracle's limit (PH6), as a drive's
        // warning threshold sits below its shutdown.
        config.supervisor.winding_temperature_c_max = self.temperature_c_max - TEMPERATURE_MARGIN_C;
        // Encoder plausibility from the drive this axis has: it sends a sample per control
        // period, its encoder's count, and its velocity reading's resolution (an encoder
        // difference resolves one count per sample period).
        let sensor = &self.plant.sensor;
        let count_rad = std::f64::consts::TAU / f64::from(sensor.encoder_counts_per_rev);
        let sensor_period_s = sensor.sample_period_ns as f64 * 1e-9;
        config.supervisor.feedback_period_s = self.control_period.as_secs_f64();
        config.supervisor.position_resolution_rad = count_rad;
        config.supervisor.velocity_resolution_rad_per_s = match sensor.velocity {
            plant_model::VelocitySource::Drive => sensor.velocity_lsb_rad_per_s,
            plant_model::VelocitySource::EncoderDifference => count_rad / sensor_period_s,
        };
        config
    }
}

/// How far below an axis's temperature limit its supervisor stops it.
pub const TEMPERATURE_MARGIN_C: f64 = 5.0;

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            origin: origin.clone(),
            source,
        })?;
        Scenario::from_source(&Source::new(origin, text))
    }

    /// Parses and checks scenario text.
    pub fn from_source(source: &Source) -> Result<Scenario, ScenarioError> {
        let file: ScenarioFile =
            toml::from_str(&source.text).map_err(|error| ScenarioError::Invalid {
                origin: source.origin.clone(),
                location: source.locate_span(error.span()),
                message: error.message().trim_end().to_owned(),
            })?;
        Checker { source }.check(file)
    }

    /// The shortest control period of the cell: the world samples every axis for the oracles
    /// at this period.
    pub fn sample_period(&self) -> Duration {
        self.axes
            .iter()
            .map(|a| a.control_period)
            .min()
            .expect("a scenario has axes")
    }

    /// turmoil's tick: service hosts exchange messages, and faults start and heal, on its
    /// instants; `network.tick_ms`, or else the shortest control period. Control loops keep
    /// their own period whatever the tick: a drive is advanced to each controller's instant
    /// when it reads its feedback (`sim::fieldbus`).
    pub fn tick(&self) -> Duration {
        self.network.tick.unwrap_or_else(|| self.sample_period())
    }

    /// The names of the service hosts of the cell, in a fixed order.
    pub fn hosts(&self) -> Vec<String> {
        let mut hosts = Vec::new();
        hosts.extend((1..=self.clients).map(|k| format!("client-{k}")));
        hosts.extend((1..=self.motion_hosts).map(|k| format!("motion-{k}")));
        hosts.extend(self.service_hosts());
        hosts
    }

    /// The hosts of the order path (`[services]`), in a fixed order; none without it.
    pub fn service_hosts(&self) -> Vec<String> {
        let Some(services) = &self.services else {
            return Vec::new();
        };
        let mut hosts: Vec<String> = ["gateway", "registry", "bus", "journal", "inventory"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        hosts.extend((1..=services.orders_instances).map(|k| format!("orders-{k}")));
        hosts
    }

    /// The orders instances' host names.
    pub fn orders_hosts(&self) -> Vec<String> {
        self.services.as_ref().map_or(Vec::new(), |s| {
            (1..=s.orders_instances)
                .map(|k| format!("orders-{k}"))
                .collect()
        })
    }

    /// The host pairs that talk to each other (the links network faults can hit).
    pub fn links(&self) -> Vec<(String, String)> {
        let mut links = Vec::new();
        for client in 1..=self.clients {
            for motion in 1..=self.motion_hosts {
                links.push((format!("client-{client}"), format!("motion-{motion}")));
            }
        }
        if self.services.is_some() {
            let motions: Vec<String> = (1..=self.motion_hosts)
                .map(|k| format!("motion-{k}"))
                .collect();
            let orders = self.orders_hosts();
            let mut pair = |a: &str, b: &str| links.push((a.to_owned(), b.to_owned()));
            for client in 1..=self.clients {
                pair(&format!("client-{client}"), "gateway");
            }
            for upstream in orders
                .iter()
                .chain(&motions)
                .chain(["inventory".to_owned()].iter())
            {
                pair("gateway", upstream);
                pair(upstream, "registry");
            }
            pair("gateway", "registry");
            for o in &orders {
                pair(o, "journal");
                pair(o, "inventory");
                pair(o, "bus");
                for m in &motions {
                    pair(o, m);
                }
            }
            for m in &motions {
                pair(m, "bus");
            }
        }
        links
    }

    /// What chaos may strike.
    pub fn chaos_targets(&self) -> ChaosTargets {
        ChaosTargets {
            hosts: (1..=self.motion_hosts)
                .map(|k| format!("motion-{k}"))
                .chain(self.service_hosts())
                .collect(),
            links: self.links(),
            axes: self.axes.iter().map(|a| a.name.clone()).collect(),
        }
    }

    /// The workload client (1-based) that drives an axis: axes are dealt to clients in name
    /// order, round robin.
    pub fn client_of(&self, axis: &str) -> u32 {
        let index = self
            .axes
            .iter()
            .position(|a| a.name == axis)
            .expect("a known axis");
        (index as u32 % self.clients) + 1
    }

    pub fn axis(&self, name: &str) -> Option<&Axis> {
        self.axes.iter().find(|a| a.name == name)
    }
}

/// Checks a parsed file against itself and resolves it; owns the error formatting.
struct Checker<'a> {
    source: &'a Source,
}

impl Checker<'_> {
    fn error(&self, span: std::ops::Range<usize>, message: impl Into<String>) -> ScenarioError {
        ScenarioError::Invalid {
            origin: self.source.origin.clone(),
            location: self.source.locate(span.start),
            message: message.into(),
        }
    }

    fn check(&self, file: ScenarioFile) -> Result<Scenario, ScenarioError> {
        let duration_s = *file.duration_s.get_ref();
        if !(duration_s > 0.0 && duration_s <= DURATION_S_MAX) {
            return Err(self.error(
                file.duration_s.span(),
                format!("`duration_s` must be in (0, {DURATION_S_MAX}] seconds, not {duration_s}"),
            ));
        }
        let settle_s = file.settle_s.as_ref().map_or(0.0, |s| *s.get_ref());
        if let Some(settle) = &file.settle_s
            && !(settle_s >= 0.0 && settle_s < duration_s)
        {
            return Err(self.error(
                settle.span(),
                format!(
                    "`settle_s` must be at least 0 and shorter than `duration_s` ({duration_s}), not {settle_s}"
                ),
            ));
        }
        if file.cell.clients == 0 || file.cell.clients > CLIENT_COUNT_MAX {
            return Err(self.error(
                0..0,
                format!(
                    "`cell.clients` must be 1 to {CLIENT_COUNT_MAX}, not {}",
                    file.cell.clients
                ),
            ));
        }
        if file.cell.motion_hosts == 0 || file.cell.motion_hosts > MOTION_HOST_COUNT_MAX {
            return Err(self.error(
                0..0,
                format!(
                    "`cell.motion_hosts` must be 1 to {MOTION_HOST_COUNT_MAX}, not {}",
                    file.cell.motion_hosts
                ),
            ));
        }
        let network = self.check_network(&file)?;
        if file.axis.is_empty() {
            return Err(self.error(0..0, "a scenario needs at least one `[axis.<name>]` table"));
        }
        let motion_hosts: BTreeSet<String> = (1..=file.cell.motion_hosts)
            .map(|k| format!("motion-{k}"))
            .collect();
        let mut axes = Vec::new();
        for (name, axis) in &file.axis {
            axes.push(self.check_axis(name, axis, &motion_hosts)?);
        }
        for axis in &axes {
            if let Some(other) = axes.iter().find(|o| {
                o.motion_host == axis.motion_host && o.control_period != axis.control_period
            }) {
                return Err(self.error(
                    file.axis[&axis.name].span(),
                    format!(
                        "[axis.{}]: axes `{}` and `{}` share `{}`, whose one control loop runs at one rate; \
                         give them the same `control_rate_hz` or different motion hosts",
                        axis.name, axis.name, other.name, axis.motion_host
                    ),
                ));
            }
        }
        let duration = Duration::from_secs_f64(duration_s);
        let network = Network {
            tick: self.check_tick(&file, &axes, duration)?,
            ..network
        };
        let mut scenario = Scenario {
            name: file.name.clone(),
            origin: self.source.origin.clone(),
            duration,
            settle: Duration::from_secs_f64(settle_s),
            seed: file.seed,
            clients: file.cell.clients,
            motion_hosts: file.cell.motion_hosts,
            network,
            axes,
            moves: Vec::new(),
            retry: self.check_retry(&file)?,
            faults: Vec::new(),
            chaos: None,
            expect: Expect {
                oracles: file.expect.oracles.as_ref().map(|o| o.get_ref().clone()),
                failing: file.expect.failing.clone(),
                moves_completed_min: file.expect.moves_completed_min,
                orders_completed_min: file.expect.orders_completed_min,
            },
            planted: Planted {
                motion_skips_fencing: file.planted.motion_skips_fencing,
                drive_ignores_watchdog: file.planted.drive_ignores_watchdog,
                trace_nondeterministic: file.planted.trace_nondeterministic,
                journal_acks_before_sync: file.planted.journal_acks_before_sync,
                bus_drops_after_max_deliver: file.planted.bus_drops_after_max_deliver,
                motion_moves_twice: file.planted.motion_moves_twice,
                breaker_admits_while_open: file.planted.breaker_admits_while_open,
                rate_limit_over_admits: file.planted.rate_limit_over_admits,
                bulkhead_ignores_limit: file.planted.bulkhead_ignores_limit,
                gateway_retries_unsafe: file.planted.gateway_retries_unsafe,
                gateway_skips_authorisation: file.planted.gateway_skips_authorisation,
                gateway_omits_retry_after: file.planted.gateway_omits_retry_after,
                registry_discovers_critical: file.planted.registry_discovers_critical,
                drive_ignores_following_error: false,
                drive_watchdog_ten_times_late: false,
                gateway_cache_ignores_ttl: file.planted.gateway_cache_ignores_ttl,
                consumer_acks_unapplied: file.planted.consumer_acks_unapplied,
            },
            services: None,
            order_workload: None,
            requests: Vec::new(),
        };
        self.check_services(&file, &mut scenario)?;
        scenario.moves = self.check_moves(&file, &scenario)?;
        // A client sends its direct moves (`[[workload.move]]`, `[[workload.cycle]]`) to one
        // motion host, so the axes it moves directly must share one. An axis moved only by
        // sagas (orders through the gateway) is no client's concern.
        let moved_directly = |axis: &str| scenario.moves.iter().any(|m| m.axis == axis);
        let direct: Vec<&Axis> = scenario
            .axes
            .iter()
            .filter(|a| moved_directly(&a.name))
            .collect();
        for (i, axis) in direct.iter().enumerate() {
            let client = scenario.client_of(&axis.name);
            if let Some(other) = direct[..i].iter().find(|o| {
                scenario.client_of(&o.name) == client && o.motion_host != axis.motion_host
            }) {
                return Err(self.error(
                    file.axis[&axis.name].span(),
                    format!(
                        "[axis.{}]: client-{client} drives axes `{}` (on {}) and `{}` (on {}), but a client talks to one \
                         motion host; raise `cell.clients` to the number of motion hosts",
                        axis.name, other.name, other.motion_host, axis.name, axis.motion_host
                    ),
                ));
            }
        }
        for fault in &file.faults {
            let checked = self.check_fault(fault, &scenario)?;
            scenario.faults.push(checked);
        }
        scenario.faults.sort_by_key(|f| f.at);
        if let Some(chaos) = &file.chaos {
            scenario.chaos = Some(self.check_chaos(chaos, &scenario)?);
        }
        Ok(scenario)
    }

    /// `network.tick_ms`: a whole number of the shortest control period (so every control
    /// instant is a sample instant of the world), at most [`TICK_PERIODS_MAX`] of them, and a
    /// whole number of ticks in `duration_s` (turmoil steps whole ticks).
    fn check_tick(
        &self,
        file: &ScenarioFile,
        axes: &[Axis],
        duration: Duration,
    ) -> Result<Option<Duration>, ScenarioError> {
        let period = axes
            .iter()
            .map(|a| a.control_period)
            .min()
            .expect("axes are checked first");
        let Some(spanned) = &file.network.tick_ms else {
            return Ok(None);
        };
        let tick_ms = *spanned.get_ref();
        let period_ms = period.as_secs_f64() * 1e3;
        let periods = tick_ms / period_ms;
        let whole = periods.round();
        if !(tick_ms > 0.0 && (periods - whole).abs() < 1e-9 && whole >= 1.0) {
            return Err(self.error(
                spanned.span(),
                format!(
                    "`network.tick_ms` ({tick_ms}) must be a whole number of the shortest control \
                     period ({period_ms} ms): 1 to {TICK_PERIODS_MAX} of them"
                ),
            ));
        }
        if whole as u64 > TICK_PERIODS_MAX {
            return Err(self.error(
                spanned.span(),
                format!(
                    "`network.tick_ms` ({tick_ms}) is {whole} control periods; at most \
                     {TICK_PERIODS_MAX} are allowed ({} ms), as service messages are delivered only on the tick",
                    TICK_PERIODS_MAX as f64 * period_ms
                ),
            ));
        }
        let tick = period * whole as u32;
        if !duration.as_nanos().is_multiple_of(tick.as_nanos()) {
            return Err(self.error(
                spanned.span(),
                format!(
                    "`duration_s` ({} s) is not a whole number of `network.tick_ms` ({tick_ms} ms) ticks",
                    duration.as_secs_f64()
                ),
            ));
        }
        Ok(Some(tick))
    }

    fn check_network(&self, file: &ScenarioFile) -> Result<Network, ScenarioError> {
        let n = &file.network;
        let here = 0..0;
        if !(n.service_latency_ms_min >= 0.0
            && n.service_latency_ms_min <= n.service_latency_ms_max)
        {
            return Err(self.error(
                here,
                format!(
                    "`network.service_latency_ms_min` ({}) must be at least 0 and at most `service_latency_ms_max` ({})",
                    n.service_latency_ms_min, n.service_latency_ms_max
                ),
            ));
        }
        if !(n.fieldbus_latency_us >= 0.0 && n.fieldbus_latency_us <= 100_000.0) {
            return Err(self.error(
                here,
                format!(
                    "`network.fieldbus_latency_us` must be in [0, 100000] µs, not {}",
                    n.fieldbus_latency_us
                ),
            ));
        }
        for (key, p) in [
            ("fieldbus_loss", n.fieldbus_loss),
            ("fieldbus_corruption", n.fieldbus_corruption),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(self.error(
                    here.clone(),
                    format!("`network.{key}` is a probability in [0, 1], not {p}"),
                ));
            }
        }
        let hosts: Vec<String> = (1..=file.cell.clients)
            .map(|k| format!("client-{k}"))
            .chain((1..=file.cell.motion_hosts).map(|k| format!("motion-{k}")))
            .collect();
        let mut links = Vec::new();
        for spanned in &n.links {
            let l = spanned.get_ref();
            let fail = |message: String| {
                Err(self.error(spanned.span(), format!("[[network.link]]: {message}")))
            };
            let [a, b] = l.between.as_slice() else {
                return fail("needs `between = [\"host-a\", \"host-b\"]`".to_owned());
            };
            for host in [a, b] {
                if !hosts.contains(host) {
                    return fail(format!(
                        "unknown host `{host}`; the hosts are {}",
                        hosts.join(", ")
                    ));
                }
            }
            if a == b {
                return fail(format!("`between` names `{a}` twice"));
            }
            let min = l.latency_ms_min.unwrap_or(n.service_latency_ms_min);
            let max = l
                .latency_ms_max
                .unwrap_or(n.service_latency_ms_max.max(min));
            if !(min >= 0.0 && min <= max) {
                return fail(format!(
                    "`latency_ms_min` ({min}) must be at least 0 and at most `latency_ms_max` ({max})"
                ));
            }
            if !(0.0..=1.0).contains(&l.loss) {
                return fail(format!("`loss` is a probability in [0, 1], not {}", l.loss));
            }
            links.push(Link {
                a: a.clone(),
                b: b.clone(),
                latency_min: Duration::from_secs_f64(min / 1e3),
                latency_max: Duration::from_secs_f64(max / 1e3),
                loss: l.loss,
            });
        }
        Ok(Network {
            service_latency_min: Duration::from_secs_f64(n.service_latency_ms_min / 1e3),
            service_latency_max: Duration::from_secs_f64(n.service_latency_ms_max / 1e3),
            links,
            fieldbus_latency: Duration::from_secs_f64(n.fieldbus_latency_us / 1e6),
            fieldbus_loss: n.fieldbus_loss,
            fieldbus_corruption: n.fieldbus_corruption,
            tick: None,
        })
    }

    fn check_axis(
        &self,
        name: &str,
        spanned: &Spanned<AxisFile>,
        motion_hosts: &BTreeSet<String>,
    ) -> Result<Axis, ScenarioError> {
        let a = spanned.get_ref();
        let span = spanned.span();
        let fail =
            |message: String| Err(self.error(span.clone(), format!("[axis.{name}]: {message}")));
        if !motion_hosts.contains(&a.motion_host) {
            return fail(format!(
                "`motion_host = \"{}\"` is not a host of this cell; it has {}",
                a.motion_host,
                motion_hosts.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        if !(CONTROL_RATE_HZ_MIN..=CONTROL_RATE_HZ_MAX).contains(&a.control_rate_hz) {
            return fail(format!(
                "`control_rate_hz` must be in [{CONTROL_RATE_HZ_MIN}, {CONTROL_RATE_HZ_MAX}], not {}",
                a.control_rate_hz
            ));
        }
        let period_ns = 1e9 / a.control_rate_hz;
        if (period_ns - period_ns.round()).abs() > 1e-6
            || !(period_ns.round() as u64).is_multiple_of(1000)
        {
            return fail(format!(
                "`control_rate_hz = {}` gives a period that is not a whole number of microseconds; \
                 use a rate such as 250, 500, 1000 or 2000",
                a.control_rate_hz
            ));
        }
        for (key, value) in [
            ("velocity_deg_per_s_max", a.velocity_deg_per_s_max),
            ("acceleration_deg_per_s2_max", a.acceleration_deg_per_s2_max),
            ("following_error_deg_max", a.following_error_deg_max),
            ("tolerance_deg", a.tolerance_deg),
            ("bandwidth_hz", a.bandwidth_hz),
            ("drive_watchdog_ms", a.drive_watchdog_ms),
            ("stop_time_s", a.stop_time_s),
        ] {
            if !(value > 0.0 && value.is_finite()) {
                return fail(format!("`{key}` must be a positive number, not {value}"));
            }
        }
        if let Some(jerk) = a.jerk_deg_per_s3_max
            && !(jerk > 0.0 && jerk.is_finite())
        {
            return fail(format!(
                "`jerk_deg_per_s3_max` must be a positive number, not {jerk}"
            ));
        }
        if a.profile == ProfileFile::SCurve && a.jerk_deg_per_s3_max.is_none() {
            return fail(
                "`profile = \"s-curve\"` needs `jerk_deg_per_s3_max`; give it, or use `profile = \"trapezoid\"`"
                    .to_owned(),
            );
        }
        if a.position_deg_min >= a.position_deg_max {
            return fail(format!(
                "`position_deg_min` ({}) must be below `position_deg_max` ({})",
                a.position_deg_min, a.position_deg_max
            ));
        }
        let decel_time_s = a.velocity_deg_per_s_max / a.acceleration_deg_per_s2_max;
        if decel_time_s > a.stop_time_s {
            return fail(format!(
                "`stop_time_s` ({}) is shorter than the {decel_time_s:.3} s the axis needs to stop from \
                 `velocity_deg_per_s_max` at `acceleration_deg_per_s2_max`; raise `stop_time_s` or the acceleration",
                a.stop_time_s
            ));
        }
        let plant = self.check_plant(name, &a.plant)?;
        let drive_current_a_max = plant.output_shaft().current_a_max;
        let current_a_max = a.current_a_max.unwrap_or(drive_current_a_max);
        if !(current_a_max > 0.0 && current_a_max <= drive_current_a_max) {
            return fail(format!(
                "`current_a_max` ({current_a_max} A) must be positive and at most the drive's limit ({drive_current_a_max} A)"
            ));
        }
        let velocity_rad_per_s_plant = plant.output_shaft().velocity_rad_per_s_max;
        if a.velocity_deg_per_s_max.to_radians() > velocity_rad_per_s_plant {
            return fail(format!(
                "`velocity_deg_per_s_max` ({}) is faster than the motor's no-load speed ({:.1} deg/s)",
                a.velocity_deg_per_s_max,
                velocity_rad_per_s_plant.to_degrees()
            ));
        }
        let axis = Axis {
            name: name.to_owned(),
            motion_host: a.motion_host.clone(),
            control_period: Duration::from_nanos(period_ns.round() as u64),
            profile: match a.profile {
                ProfileFile::Trapezoid => Profile::Trapezoid,
                ProfileFile::SCurve => Profile::SCurve,
            },
            velocity_rad_per_s_max: a.velocity_deg_per_s_max.to_radians(),
            acceleration_rad_per_s2_max: a.acceleration_deg_per_s2_max.to_radians(),
            // A trapezoid ignores jerk; the control core still wants a finite number.
            jerk_rad_per_s3_max: a
                .jerk_deg_per_s3_max
                .unwrap_or(a.acceleration_deg_per_s2_max * 1000.0)
                .to_radians(),
            position_rad_min: a.position_deg_min.to_radians(),
            position_rad_max: a.position_deg_max.to_radians(),
            current_a_max,
            following_error_rad_max: a.following_error_deg_max.to_radians(),
            tolerance_rad: a.tolerance_deg.to_radians(),
            bandwidth_hz: a.bandwidth_hz,
            drive_watchdog: Duration::from_secs_f64(a.drive_watchdog_ms / 1e3),
            stop_time_s: a.stop_time_s,
            temperature_c_max: a.temperature_c_max,
            plant,
        };
        if let Err(error) = axis.control_config().validate() {
            return fail(format!("the control core rejects this axis: {error}"));
        }
        Ok(axis)
    }

    fn check_plant(
        &self,
        axis: &str,
        doc: &Spanned<plant_model::AxisParamsDoc>,
    ) -> Result<AxisParams, ScenarioError> {
        // Unknown keys and wrong types were already reported with their line by the parser;
        // what is left is the plant's own checks, reported at the table.
        doc.get_ref()
            .clone()
            .resolve(&format!("[axis.{axis}.plant]"))
            .map_err(|error| self.error(doc.span(), error.to_string()))
    }

    fn check_retry(&self, file: &ScenarioFile) -> Result<Retry, ScenarioError> {
        let r = &file.workload.retry;
        let fail = |message: String| Err(self.error(0..0, format!("[workload.retry]: {message}")));
        if r.attempts_max == 0 || r.attempts_max > 100 {
            return fail(format!(
                "`attempts_max` counts the first call: 1 to 100, not {}",
                r.attempts_max
            ));
        }
        for (key, value) in [
            ("backoff_ms_initial", r.backoff_ms_initial),
            ("timeout_ms", r.timeout_ms),
            ("deadline_ms", r.deadline_ms),
        ] {
            if !(value > 0.0 && value.is_finite()) {
                return fail(format!("`{key}` must be a positive number, not {value}"));
            }
        }
        if r.backoff_ms_max < r.backoff_ms_initial {
            return fail(format!(
                "`backoff_ms_max` ({}) is below `backoff_ms_initial` ({})",
                r.backoff_ms_max, r.backoff_ms_initial
            ));
        }
        if !(0.0..1.0).contains(&r.jitter) {
            return fail(format!(
                "`jitter` is a fraction in [0, 1), not {}",
                r.jitter
            ));
        }
        if r.timeout_ms > r.deadline_ms {
            return fail(format!(
                "`timeout_ms` ({}) exceeds the deadline over all attempts, `deadline_ms` ({})",
                r.timeout_ms, r.deadline_ms
            ));
        }
        Ok(Retry {
            attempts_max: r.attempts_max,
            backoff_initial: Duration::from_secs_f64(r.backoff_ms_initial / 1e3),
            backoff_max: Duration::from_secs_f64(r.backoff_ms_max / 1e3),
            jitter: r.jitter,
            timeout: Duration::from_secs_f64(r.timeout_ms / 1e3),
            deadline: Duration::from_secs_f64(r.deadline_ms / 1e3),
        })
    }

    fn check_moves(
        &self,
        file: &ScenarioFile,
        scenario: &Scenario,
    ) -> Result<Vec<Move>, ScenarioError> {
        let duration_s = scenario.duration.as_secs_f64();
        let mut moves = Vec::new();
        let target = |span: std::ops::Range<usize>, axis: &str, target_deg: f64| {
            let Some(a) = scenario.axis(axis) else {
                return Err(self.error(
                    span,
                    format!(
                        "move on unknown axis `{axis}`; the axes are {}",
                        axis_names(scenario)
                    ),
                ));
            };
            let target_rad = target_deg.to_radians();
            if !(a.position_rad_min..=a.position_rad_max).contains(&target_rad) {
                return Err(self.error(
                    span,
                    format!(
                        "move target {target_deg} deg is outside axis `{axis}`'s soft limits [{}, {}] deg",
                        a.position_rad_min.to_degrees(),
                        a.position_rad_max.to_degrees()
                    ),
                ));
            }
            Ok(target_rad)
        };
        for spanned in &file.workload.moves {
            let m = spanned.get_ref();
            if !(m.at_s >= 0.0 && m.at_s < duration_s) {
                return Err(self.error(
                    spanned.span(),
                    format!("move `at_s` must be in [0, {duration_s}), not {}", m.at_s),
                ));
            }
            let target_rad = target(spanned.span(), &m.axis, m.target_deg)?;
            moves.push(Move {
                at: Duration::from_secs_f64(m.at_s),
                axis: m.axis.clone(),
                target_rad,
            });
        }
        for spanned in &file.workload.cycles {
            let c = spanned.get_ref();
            if c.targets_deg.is_empty() {
                return Err(self.error(spanned.span(), "cycle `targets_deg` is empty"));
            }
            if !(c.period_s > 0.0
                && c.from_s >= 0.0
                && c.from_s < c.until_s
                && c.until_s <= duration_s)
            {
                return Err(self.error(
                    spanned.span(),
                    format!(
                        "cycle needs `period_s` > 0 and 0 <= `from_s` < `until_s` <= `duration_s` ({duration_s}); \
                         got period_s {}, from_s {}, until_s {}",
                        c.period_s, c.from_s, c.until_s
                    ),
                ));
            }
            let targets_rad = c
                .targets_deg
                .iter()
                .map(|t| target(spanned.span(), &c.axis, *t))
                .collect::<Result<Vec<_>, _>>()?;
            let mut k = 0usize;
            loop {
                let at_s = c.from_s + k as f64 * c.period_s;
                if at_s >= c.until_s {
                    break;
                }
                if moves.len() >= MOVE_COUNT_MAX {
                    return Err(self.error(
                        spanned.span(),
                        format!("the workload expands to more than {MOVE_COUNT_MAX} moves"),
                    ));
                }
                moves.push(Move {
                    at: Duration::from_secs_f64(at_s),
                    axis: c.axis.clone(),
                    target_rad: targets_rad[k % targets_rad.len()],
                });
                k += 1;
            }
        }
        moves.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.axis.cmp(&b.axis)));
        Ok(moves)
    }

    /// One `[[fault]]` entry, checked against its kind's row of [`KINDS`]: the target keys of
    /// its class, its magnitude in the accepted range, no key another kind uses, `for_s` only
    /// for a lasting kind.
    fn check_fault(
        &self,
        spanned: &Spanned<FaultFile>,
        scenario: &Scenario,
    ) -> Result<Fault, ScenarioError> {
        let f = spanned.get_ref();
        // Every message names the entry and its kind; `tail` starts with ": " or " ".
        let fail =
            |tail: String| self.error(spanned.span(), format!("[[fault]] `{}`{tail}", f.kind));
        let Some(kind) = FaultKind::from_name(&f.kind) else {
            return Err(self.error(
                spanned.span(),
                format!(
                    "unknown fault kind `{}`; the kinds are {}",
                    f.kind,
                    FaultKind::names().collect::<Vec<_>>().join(", ")
                ),
            ));
        };
        let row = kind.row();
        let duration_s = scenario.duration.as_secs_f64();
        if !(f.at_s >= 0.0 && f.at_s < duration_s) {
            return Err(fail(format!(
                ": `at_s` must be in [0, {duration_s}), not {}",
                f.at_s
            )));
        }
        let target = check_fault_target(row.target, f, scenario).map_err(fail)?;
        let magnitude = match row.magnitude {
            None => None,
            Some(m) => Some(self.check_magnitude(&f.kind, &m, f.magnitude(m.key), spanned)?),
        };
        // A key the kind does not use is a typo'd kind or a copy-paste.
        let used: Vec<&str> = row
            .target
            .keys()
            .iter()
            .copied()
            .chain(row.magnitude.map(|m| m.key))
            .collect();
        if let Some(unused) = f.keys_given().into_iter().find(|k| !used.contains(k)) {
            let timing = if row.instant { "at_s" } else { "at_s, for_s" };
            return Err(fail(format!(
                " does not use `{unused}`; its fields are {timing}, {}",
                used.join(", ")
            )));
        }
        let until = match f.for_s {
            None => None,
            Some(_) if row.instant => {
                return Err(fail(": is instantaneous and takes no `for_s`".to_owned()));
            }
            Some(for_s) if for_s > 0.0 && f.at_s + for_s <= duration_s => {
                Some(Duration::from_secs_f64(f.at_s + for_s))
            }
            Some(for_s) => {
                return Err(fail(format!(
                    ": `for_s` must be positive and end by `duration_s` ({duration_s}); at_s {} + for_s {for_s} does not",
                    f.at_s
                )));
            }
        };
        Ok(Fault {
            kind,
            target,
            magnitude,
            at: Duration::from_secs_f64(f.at_s),
            until,
            drawn: false,
        })
    }

    /// A `[[fault]]` magnitude against its kind's row: given, in the accepted range, whole
    /// where the row says so. A bad value is reported where it stands, a missing one at the
    /// entry.
    fn check_magnitude(
        &self,
        kind: &str,
        m: &Magnitude,
        value: Option<&Spanned<f64>>,
        entry: &Spanned<FaultFile>,
    ) -> Result<f64, ScenarioError> {
        let Some(spanned) = value else {
            return Err(self.error(
                entry.span(),
                format!("[[fault]] `{kind}` needs `{}`", m.key),
            ));
        };
        let value = *spanned.get_ref();
        let fail = |message: String| {
            Err(self.error(
                spanned.span(),
                format!("[[fault]] `{kind}`: `{}` {message}", m.key),
            ))
        };
        if !(m.accepted_min..=m.accepted_max).contains(&value) {
            return fail(format!(
                "must be in [{}, {}], not {value}",
                m.accepted_min, m.accepted_max
            ));
        }
        if m.whole && value != value.trunc() {
            return fail(format!("must be a whole number of {}, not {value}", m.unit));
        }
        Ok(value)
    }

    /// `[services]`, `[workload.orders]` and `[[workload.request]]`.
    fn check_services(
        &self,
        file: &ScenarioFile,
        scenario: &mut Scenario,
    ) -> Result<(), ScenarioError> {
        let fail = |span: std::ops::Range<usize>, message: String| self.error(span, message);
        let checker = services::ServicesChecker { fail: &fail };
        let axes: Vec<String> = scenario.axes.iter().map(|a| a.name.clone()).collect();
        let Some(services_file) = &file.services else {
            if let Some(orders) = &file.workload.orders {
                return Err(self.error(
                    orders.span(),
                    "[workload.orders]: orders go through the gateway: add `[services]` to run the order path",
                ));
            }
            if let Some(request) = file.workload.requests.first() {
                return Err(self.error(
                    request.span(),
                    "[[workload.request]]: requests go to the gateway: add `[services]` to run it",
                ));
            }
            return Ok(());
        };
        let resolved = checker.check(services_file)?;
        if let Some(orders) = &file.workload.orders {
            scenario.order_workload =
                Some(checker.check_orders(orders, &resolved, &axes, scenario.duration)?);
        }
        scenario.requests = checker.check_requests(&file.workload.requests, scenario.duration)?;
        scenario.services = Some(resolved);
        Ok(())
    }

    fn check_chaos(
        &self,
        spanned: &Spanned<ChaosFile>,
        scenario: &Scenario,
    ) -> Result<Chaos, ScenarioError> {
        let c = spanned.get_ref();
        let fail = |message: String| Err(self.error(spanned.span(), format!("[chaos]: {message}")));
        let settle_start = scenario
            .duration
            .saturating_sub(scenario.settle)
            .as_secs_f64();
        let from_s = c.from_s.unwrap_or(0.0);
        let until_s = c.until_s.unwrap_or(settle_start);
        if !(from_s >= 0.0 && from_s < until_s && until_s <= settle_start) {
            return fail(format!(
                "the chaos window [{from_s}, {until_s}) must lie in [0, {settle_start}), before the settle tail"
            ));
        }
        let mut rates = Vec::new();
        for row in KINDS {
            if let Some(rate) = c.per_min.get(row.name) {
                if !(*rate >= 0.0 && rate.is_finite()) {
                    return fail(format!(
                        "`per_min.{}` must be a rate at least 0, not {rate}",
                        row.name
                    ));
                }
                rates.push((row.kind, *rate));
            }
        }
        if let Some(unknown) = c.per_min.keys().find(|k| FaultKind::from_name(k).is_none()) {
            return fail(format!(
                "unknown fault kind `{unknown}` in `per_min`; the kinds are {}",
                FaultKind::names().collect::<Vec<_>>().join(", ")
            ));
        }
        if !(c.fault_s_mean > 0.0 && c.fault_s_mean <= c.fault_s_max) {
            return fail(format!(
                "`fault_s_mean` ({}) must be positive and at most `fault_s_max` ({})",
                c.fault_s_mean, c.fault_s_max
            ));
        }
        Ok(Chaos {
            from: Duration::from_secs_f64(from_s),
            until: Duration::from_secs_f64(until_s),
            rates_per_min: rates,
            fault_s_mean: c.fault_s_mean,
            fault_s_max: c.fault_s_max,
            swarm: c.swarm,
        })
    }
}

/// The target of a `[[fault]]` entry, from the keys of its kind's class; `Err` is the tail of
/// the message (`check_fault` puts the entry and kind in front).
fn check_fault_target(
    class: TargetClass,
    f: &FaultFile,
    scenario: &Scenario,
) -> Result<Target, String> {
    let hosts = scenario.hosts();
    let host = |field: &str, value: &Option<String>| -> Result<String, String> {
        let Some(value) = value else {
            return Err(format!(" needs `{field}`"));
        };
        if !hosts.contains(value) {
            return Err(format!(
                ": unknown host `{value}`; the hosts are {}",
                hosts.join(", ")
            ));
        }
        Ok(value.clone())
    };
    Ok(match class {
        TargetClass::Link => match &f.between {
            Some(pair) if pair.len() == 2 => {
                let a = host("between", &Some(pair[0].clone()))?;
                let b = host("between", &Some(pair[1].clone()))?;
                if a == b {
                    return Err(format!(": `between` names `{a}` twice"));
                }
                Target::Link { a, b }
            }
            _ => return Err(" needs `between = [\"host-a\", \"host-b\"]`".to_owned()),
        },
        TargetClass::LinkOneway => {
            let from = host("from", &f.from)?;
            let to = host("to", &f.to)?;
            if from == to {
                return Err(format!(": `from` and `to` both name `{from}`"));
            }
            Target::LinkOneway { from, to }
        }
        TargetClass::Host | TargetClass::Disk => Target::Host(host("host", &f.host)?),
        TargetClass::Fieldbus | TargetClass::Plant => match &f.axis {
            Some(axis) if scenario.axis(axis).is_some() => Target::Axis(axis.clone()),
            Some(axis) => {
                return Err(format!(
                    ": unknown axis `{axis}`; the axes are {}",
                    axis_names(scenario)
                ));
            }
            None => return Err(" needs `axis`".to_owned()),
        },
    })
}

fn axis_names(scenario: &Scenario) -> String {
    scenario
        .axes
        .iter()
        .map(|a| a.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Profile::Trapezoid => "trapezoid",
            Profile::SCurve => "s-curve",
        })
    }
}
