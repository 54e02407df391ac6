//! The scenario file as written: the TOML schema, field by field, with defaults.
//!
//! These types mirror the file one to one (README.md, "Scenario format", documents every field).
//! They are only parsed here; [`super::Scenario::from_source`] checks them against each other and
//! turns them into the resolved [`super::Scenario`]. Keys carry their unit (`_s`, `_ms`, `_us`,
//! `_deg`, `_hz`, `_a`, `_nm`), unknown keys are rejected, and the entries a later check may have
//! to point at are kept [`Spanned`] so that its message names their line.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScenarioFile {
    pub(crate) name: String,
    pub(crate) duration_s: Spanned<f64>,
    /// Fault-free tail of the run in which liveness is judged.
    #[serde(default)]
    pub(crate) settle_s: Option<Spanned<f64>>,
    #[serde(default = "default_seed")]
    pub(crate) seed: u64,
    #[serde(default)]
    pub(crate) cell: CellFile,
    /// The order path of the cell (`super::services`); absent: motion hosts and move clients only.
    #[serde(default)]
    pub(crate) services: Option<Spanned<super::services::ServicesFile>>,
    #[serde(default)]
    pub(crate) network: NetworkFile,
    pub(crate) axis: BTreeMap<String, Spanned<AxisFile>>,
    #[serde(default)]
    pub(crate) workload: WorkloadFile,
    #[serde(default, rename = "fault")]
    pub(crate) faults: Vec<Spanned<FaultFile>>,
    #[serde(default)]
    pub(crate) chaos: Option<Spanned<ChaosFile>>,
    #[serde(default)]
    pub(crate) expect: ExpectFile,
    /// TEST ONLY: switches that plant known bugs in the cell (see [`PlantedFile`]).
    #[serde(default)]
    pub(crate) planted: PlantedFile,
    /// What only a bench rig has (servo IDs, bus watchdog): read by `hil run`, and ignored by
    /// the simulator, so that one bench scenario runs in both.
    #[serde(default)]
    #[allow(dead_code)]
    pub(crate) bench: Option<toml::Table>,
}

fn default_seed() -> u64 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CellFile {
    #[serde(default = "one")]
    pub(crate) clients: u32,
    #[serde(default = "one")]
    pub(crate) motion_hosts: u32,
}

impl Default for CellFile {
    fn default() -> CellFile {
        CellFile {
            clients: 1,
            motion_hosts: 1,
        }
    }
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NetworkFile {
    #[serde(default = "NetworkFile::default_service_latency_ms_min")]
    pub(crate) service_latency_ms_min: f64,
    #[serde(default = "NetworkFile::default_service_latency_ms_max")]
    pub(crate) service_latency_ms_max: f64,
    #[serde(default = "NetworkFile::default_fieldbus_latency_us")]
    pub(crate) fieldbus_latency_us: f64,
    #[serde(default)]
    pub(crate) fieldbus_loss: f64,
    #[serde(default)]
    pub(crate) fieldbus_corruption: f64,
    /// turmoil's tick: the instants at which service messages are delivered and faults start.
    /// Absent: the shortest control period.
    #[serde(default)]
    pub(crate) tick_ms: Option<Spanned<f64>>,
    /// Per-link overrides of the service-link latency and loss.
    #[serde(default, rename = "link")]
    pub(crate) links: Vec<Spanned<LinkFile>>,
}

/// `[[network.link]]`: one service link's own latency and loss.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LinkFile {
    pub(crate) between: Vec<String>,
    #[serde(default)]
    pub(crate) latency_ms_min: Option<f64>,
    #[serde(default)]
    pub(crate) latency_ms_max: Option<f64>,
    #[serde(default)]
    pub(crate) loss: f64,
}

impl NetworkFile {
    fn default_service_latency_ms_min() -> f64 {
        1.0
    }
    fn default_service_latency_ms_max() -> f64 {
        3.0
    }
    fn default_fieldbus_latency_us() -> f64 {
        50.0
    }
}

impl Default for NetworkFile {
    fn default() -> NetworkFile {
        NetworkFile {
            service_latency_ms_min: NetworkFile::default_service_latency_ms_min(),
            service_latency_ms_max: NetworkFile::default_service_latency_ms_max(),
            fieldbus_latency_us: NetworkFile::default_fieldbus_latency_us(),
            fieldbus_loss: 0.0,
            fieldbus_corruption: 0.0,
            tick_ms: None,
            links: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AxisFile {
    /// The motion host that owns this axis (`motion-<k>`).
    #[serde(default = "AxisFile::default_motion_host")]
    pub(crate) motion_host: String,
    #[serde(default = "AxisFile::default_control_rate_hz")]
    pub(crate) control_rate_hz: f64,
    #[serde(default = "AxisFile::default_profile")]
    pub(crate) profile: ProfileFile,
    pub(crate) velocity_deg_per_s_max: f64,
    pub(crate) acceleration_deg_per_s2_max: f64,
    #[serde(default)]
    pub(crate) jerk_deg_per_s3_max: Option<f64>,
    pub(crate) position_deg_min: f64,
    pub(crate) position_deg_max: f64,
    /// Defaults to the drive's own current limit from the plant parameters.
    #[serde(default)]
    pub(crate) current_a_max: Option<f64>,
    #[serde(default = "AxisFile::default_following_error_deg_max")]
    pub(crate) following_error_deg_max: f64,
    #[serde(default = "AxisFile::default_tolerance_deg")]
    pub(crate) tolerance_deg: f64,
    #[serde(default = "AxisFile::default_bandwidth_hz")]
    pub(crate) bandwidth_hz: f64,
    /// The drive firmware's command watchdog: torque off when commands stop for this long.
    #[serde(default = "AxisFile::default_drive_watchdog_ms")]
    pub(crate) drive_watchdog_ms: f64,
    /// The motion service's SS1 stop time, also the physics oracle's stop-time allowance.
    #[serde(default = "AxisFile::default_stop_time_s")]
    pub(crate) stop_time_s: f64,
    #[serde(default = "AxisFile::default_temperature_c_max")]
    pub(crate) temperature_c_max: f64,
    /// Plant parameters, the schema of `plant-model` (a `preset` plus overrides).
    pub(crate) plant: Spanned<plant_model::AxisParamsDoc>,
}

impl AxisFile {
    fn default_motion_host() -> String {
        "motion-1".to_owned()
    }
    fn default_control_rate_hz() -> f64 {
        1000.0
    }
    fn default_profile() -> ProfileFile {
        ProfileFile::SCurve
    }
    fn default_following_error_deg_max() -> f64 {
        10.0
    }
    fn default_tolerance_deg() -> f64 {
        0.5
    }
    fn default_bandwidth_hz() -> f64 {
        10.0
    }
    fn default_drive_watchdog_ms() -> f64 {
        20.0
    }
    fn default_stop_time_s() -> f64 {
        0.5
    }
    fn default_temperature_c_max() -> f64 {
        80.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ProfileFile {
    Trapezoid,
    SCurve,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WorkloadFile {
    #[serde(default, rename = "move")]
    pub(crate) moves: Vec<Spanned<MoveFile>>,
    #[serde(default, rename = "cycle")]
    pub(crate) cycles: Vec<Spanned<CycleFile>>,
    #[serde(default)]
    pub(crate) retry: RetryFile,
    /// Orders placed through the gateway (`super::services`).
    #[serde(default)]
    pub(crate) orders: Option<Spanned<super::services::OrderWorkloadFile>>,
    /// Raw HTTP requests through the gateway.
    #[serde(default, rename = "request")]
    pub(crate) requests: Vec<Spanned<super::services::RequestFile>>,
}

/// One move at a given time.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MoveFile {
    pub(crate) at_s: f64,
    pub(crate) axis: String,
    pub(crate) target_deg: f64,
}

/// Moves through `targets_deg` in turn, one every `period_s`, from `from_s` until `until_s`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CycleFile {
    pub(crate) axis: String,
    pub(crate) targets_deg: Vec<f64>,
    pub(crate) period_s: f64,
    #[serde(default)]
    pub(crate) from_s: f64,
    pub(crate) until_s: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetryFile {
    #[serde(default = "RetryFile::default_attempts_max")]
    pub(crate) attempts_max: u32,
    #[serde(default = "RetryFile::default_backoff_ms_initial")]
    pub(crate) backoff_ms_initial: f64,
    #[serde(default = "RetryFile::default_backoff_ms_max")]
    pub(crate) backoff_ms_max: f64,
    #[serde(default = "RetryFile::default_jitter")]
    pub(crate) jitter: f64,
    #[serde(default = "RetryFile::default_timeout_ms")]
    pub(crate) timeout_ms: f64,
    #[serde(default = "RetryFile::default_deadline_ms")]
    pub(crate) deadline_ms: f64,
}

impl RetryFile {
    fn default_attempts_max() -> u32 {
        5
    }
    fn default_backoff_ms_initial() -> f64 {
        100.0
    }
    fn default_backoff_ms_max() -> f64 {
        1000.0
    }
    fn default_jitter() -> f64 {
        0.5
    }
    fn default_timeout_ms() -> f64 {
        500.0
    }
    fn default_deadline_ms() -> f64 {
        5000.0
    }
}

impl Default for RetryFile {
    fn default() -> RetryFile {
        RetryFile {
            attempts_max: RetryFile::default_attempts_max(),
            backoff_ms_initial: RetryFile::default_backoff_ms_initial(),
            backoff_ms_max: RetryFile::default_backoff_ms_max(),
            jitter: RetryFile::default_jitter(),
            timeout_ms: RetryFile::default_timeout_ms(),
            deadline_ms: RetryFile::default_deadline_ms(),
        }
    }
}

/// One `[[fault]]` entry. Which of the optional fields a kind needs is checked after parsing,
/// so that the message can say exactly which field is missing for which kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FaultFile {
    pub(crate) at_s: f64,
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) for_s: Option<f64>,
    #[serde(default)]
    pub(crate) between: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) from: Option<String>,
    #[serde(default)]
    pub(crate) to: Option<String>,
    #[serde(default)]
    pub(crate) host: Option<String>,
    #[serde(default)]
    pub(crate) axis: Option<String>,
    #[serde(default)]
    pub(crate) latency_ms: Option<f64>,
    #[serde(default)]
    pub(crate) latency_us: Option<f64>,
    #[serde(default)]
    pub(crate) probability: Option<f64>,
    #[serde(default)]
    pub(crate) torque_nm: Option<f64>,
    #[serde(default)]
    pub(crate) offset_counts: Option<i32>,
    #[serde(default)]
    pub(crate) fraction: Option<f64>,
    #[serde(default)]
    pub(crate) ambient_c: Option<f64>,
    #[serde(default)]
    pub(crate) volts: Option<f64>,
}

/// `[chaos]`: fault kinds with a mean rate; the seed draws a concrete schedule from them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChaosFile {
    #[serde(default)]
    pub(crate) from_s: Option<f64>,
    #[serde(default)]
    pub(crate) until_s: Option<f64>,
    /// Mean number of faults per simulated minute, by fault kind.
    pub(crate) per_min: BTreeMap<String, f64>,
    #[serde(default = "ChaosFile::default_fault_s_mean")]
    pub(crate) fault_s_mean: f64,
    #[serde(default = "ChaosFile::default_fault_s_max")]
    pub(crate) fault_s_max: f64,
    /// Swarm testing: the seed also draws which kinds are on and their rates (`per_min` are
    /// then the maxima); see `sim/src/swarm.rs`.
    #[serde(default)]
    pub(crate) swarm: bool,
}

impl ChaosFile {
    fn default_fault_s_mean() -> f64 {
        1.0
    }
    fn default_fault_s_max() -> f64 {
        5.0
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExpectFile {
    /// Oracle ids that must hold; all of them when absent.
    #[serde(default)]
    pub(crate) oracles: Option<Spanned<Vec<String>>>,
    /// Oracle ids this scenario demonstrates failing (a planted violation).
    #[serde(default)]
    pub(crate) failing: Vec<String>,
    /// Liveness floor: at least this many moves completed.
    #[serde(default)]
    pub(crate) moves_completed_min: u32,
    /// Liveness floor of the order path: at least this many orders complete their saga.
    #[serde(default)]
    pub(crate) orders_completed_min: u32,
}

/// `[planted]`: TEST ONLY. Each switch plants a known bug in the cell, so that a test can show an
/// oracle catching it (and a sweep finding it, and the shrinker cutting it down). A real scenario
/// never sets one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlantedFile {
    /// The motion service accepts moves whatever their fencing token (stale, never issued, or
    /// with no live lease): `services::motion::MotionConfig::skip_fencing_check`.
    #[serde(default)]
    pub(crate) motion_skips_fencing: bool,
    /// The drive firmware never trips its command watchdog (PH4 must catch it).
    #[serde(default)]
    pub(crate) drive_ignores_watchdog: bool,
    /// The harness records an event whose value differs between runs (DT1 must catch it).
    #[serde(default)]
    pub(crate) trace_nondeterministic: bool,
    /// The journal acknowledges appends before syncing them:
    /// `services::journal::JournalConfig::ack_before_sync` (ES6 must catch it).
    #[serde(default)]
    pub(crate) journal_acks_before_sync: bool,
    /// The bus drops a message after its last delivery instead of dead-lettering it:
    /// `services::bus::BusConfig::drop_after_max_deliver` (MQ1 must catch it).
    #[serde(default)]
    pub(crate) bus_drops_after_max_deliver: bool,
    /// The motion service starts a retried move again instead of answering its outcome:
    /// `services::motion::MotionConfig::planted_moves_twice` (SG3 must catch it).
    #[serde(default)]
    pub(crate) motion_moves_twice: bool,
    /// An open breaker admits every call: `services::resilience::BreakerConfig::planted_admits_while_open` (CB2 must catch it).
    #[serde(default)]
    pub(crate) breaker_admits_while_open: bool,
    /// An empty token bucket admits anyway: `services::resilience::TokenBucketConfig::planted_over_admits` (RL1 must catch it).
    #[serde(default)]
    pub(crate) rate_limit_over_admits: bool,
    /// The bulkhead admits every call at once, whatever is in flight: `services::resilience::BulkheadConfig::planted_ignores_limit` (BH1 must catch it).
    #[serde(default)]
    pub(crate) bulkhead_ignores_limit: bool,
    /// The gateway retries requests without an idempotency key and non-retriable errors: `services::gateway::UpstreamConfig::planted_retries_unsafe` (R3 must catch it).
    #[serde(default)]
    pub(crate) gateway_retries_unsafe: bool,
    /// The gateway forwards a viewer's POST, PUT and DELETE: `services::gateway::GatewayConfig::planted_skips_authorisation` (GW1 must catch it).
    #[serde(default)]
    pub(crate) gateway_skips_authorisation: bool,
    /// The gateway's 429s and 503s carry no Retry-After: `services::gateway::GatewayConfig::planted_omits_retry_after` (GW2 must catch it).
    #[serde(default)]
    pub(crate) gateway_omits_retry_after: bool,
    /// Discovery also returns critical instances: `services::registry::RegistryConfig::planted_discovers_critical` (SR2 must catch it).
    #[serde(default)]
    pub(crate) registry_discovers_critical: bool,
    /// The gateway's discovery cache serves instances past their TTL: `services::registry::DiscoveryConfig::planted_cache_ignores_instance_ttl` (SR3 must catch it).
    #[serde(default)]
    pub(crate) gateway_cache_ignores_ttl: bool,
}
