//! The motion service's configuration: its axes, its rates, its limits.
//!
//! Owns `MotionConfig`, its defaults and its validation. Plain data built by the caller (the
//! simulator from a scenario, a real deployment from its own file); not serde, since
//! `control::AxisConfig` is not.

use std::collections::BTreeSet;
use std::time::Duration;

use control::AxisConfig;

use super::protocol::AxisName;
use crate::retry::RetryPolicy;
use crate::transport::Endpoint;

/// The port the motion service listens on unless configured otherwise.
pub const MOTION_PORT: u16 = 7100;

/// Most axes one motion service drives.
pub const AXES_MAX: usize = 16;

/// Fastest control rate accepted: 20 kHz (a 50 µs period) is above any servo drive's position
/// loop and keeps simulated runs tractable.
pub const CONTROL_PERIOD_MIN: Duration = Duration::from_micros(50);

/// Everything `run_motion` and `MotionCore` need besides the traits.
#[derive(Clone, Debug)]
pub struct MotionConfig {
    /// RPC port.
    pub port: u16,
    /// The control loop's period (1 ms = 1 kHz).
    pub control_period: Duration,
    /// The axes, in the order their drive links are handed to `run_motion`.
    pub axes: Vec<(AxisName, AxisConfig)>,
    /// Where the durable state lives in `Storage`.
    pub state_path: String,
    /// Longest lease a client may ask for, ms.
    pub lease_ttl_ms_max: u32,
    /// A move completes once the measured position is this close to the target, rad.
    pub in_position_tolerance_rad: f64,
    /// How long after the trajectory ends the axis may take to get in position.
    pub settle_time_max: Duration,
    /// Wait before writing the durable state again after a failed write.
    pub persist_retry_delay: Duration,
    /// PLANTED BUG, for testing the oracles only: accept moves whatever their fencing token
    /// (stale, never issued, or with no live lease). A correct cell never sets it; a scenario
    /// sets it to check that the lease and at-most-one-mover oracles catch the violation.
    pub skip_fencing_check: bool,
    /// The bus to publish motion events on (`MOTION_EVENTS_TOPIC`, through the transactional
    /// outbox, see `event_outbox`); `None`: no bus, nothing is announced, and the service
    /// behaves (and writes its state) exactly as without this field.
    pub bus: Option<Endpoint>,
    /// Longest wait for one publish's answer.
    pub bus_call_timeout: Duration,
    /// Retries of one relay round; when a round gives up, the relay starts again after
    /// `bus_relay_restart_delay` (the outbox keeps the messages meanwhile).
    pub bus_retry: RetryPolicy,
    /// Wait before a relay round that gave up starts again.
    pub bus_relay_restart_delay: Duration,
    /// Seed of the relay's backoff jitter (`ChaCha8Rng::seed_from_u64`, stream
    /// `RELAY_RNG_STREAM`): the caller derives it from the run's seed.
    pub bus_jitter_seed: u64,
    /// TEST ONLY: planted bug for oracle SG3 (at most one move per order). A retried move
    /// request (same request id) whose move already finished starts the move again instead of
    /// answering its recorded outcome, tracing a second `move_accepted` for the id. Once per
    /// request id (so a client that keeps polling does not move forever), and only when the
    /// move could start (valid token, axis enabled and idle). A correct cell never sets it.
    pub planted_moves_twice: bool,
}

/// The random stream of the relay's jitter within `bus_jitter_seed`.
pub const RELAY_RNG_STREAM: u64 = 0x6d6f_7469_6f6e;

impl MotionConfig {
    /// Defaults: port `MOTION_PORT`, 1 kHz, state at `motion/state`, leases up to 60 s,
    /// in position within 0.01 rad (about 6.5 counts of a 4096-count encoder) within 1 s,
    /// disk retry after 10 ms, fencing on; no bus (with one: 500 ms per publish, relay rounds
    /// of 10 attempts from 50 ms to 1 s within 10 s, restarted after 1 s); no planted bug.
    pub fn new(axes: Vec<(AxisName, AxisConfig)>) -> MotionConfig {
        MotionConfig {
            port: MOTION_PORT,
            control_period: Duration::from_millis(1),
            axes,
            state_path: "motion/state".to_owned(),
            lease_ttl_ms_max: 60_000,
            in_position_tolerance_rad: 0.01,
            settle_time_max: Duration::from_secs(1),
            persist_retry_delay: Duration::from_millis(10),
            skip_fencing_check: false,
            bus: None,
            bus_call_timeout: Duration::from_millis(500),
            bus_retry: RetryPolicy {
                attempts_max: 10,
                backoff_initial: Duration::from_millis(50),
                backoff_max: Duration::from_secs(1),
                jitter_ratio: 0.2,
                deadline: Duration::from_secs(10),
            },
            bus_relay_restart_delay: Duration::from_secs(1),
            bus_jitter_seed: 0,
            planted_moves_twice: false,
        }
    }

    /// Panics on a configuration that cannot work: configuration errors are bugs of the caller,
    /// caught once at start.
    pub fn validate(&self) {
        assert!(
            !self.axes.is_empty() && self.axes.len() <= AXES_MAX,
            "a motion service drives 1..={AXES_MAX} axes, got {}",
            self.axes.len()
        );
        let names: BTreeSet<&AxisName> = self.axes.iter().map(|(name, _)| name).collect();
        assert_eq!(names.len(), self.axes.len(), "axis names must be unique");
        for (name, axis) in &self.axes {
            if let Err(error) = axis.validate() {
                panic!("axis {name}: {error}");
            }
        }
        assert!(
            self.control_period >= CONTROL_PERIOD_MIN,
            "control period {:?} is below {CONTROL_PERIOD_MIN:?}",
            self.control_period
        );
        assert!(!self.state_path.is_empty(), "state path must not be empty");
        assert!(
            self.lease_ttl_ms_max > 0,
            "lease_ttl_ms_max must be positive"
        );
        assert!(
            self.in_position_tolerance_rad.is_finite() && self.in_position_tolerance_rad > 0.0,
            "in_position_tolerance_rad must be positive, got {}",
            self.in_position_tolerance_rad
        );
        assert!(
            !self.persist_retry_delay.is_zero(),
            "persist_retry_delay must be positive (a zero delay would spin on a failing disk)"
        );
        if self.bus.is_some() {
            assert!(
                !self.bus_call_timeout.is_zero() && !self.bus_relay_restart_delay.is_zero(),
                "bus_call_timeout and bus_relay_restart_delay must be positive"
            );
            self.bus_retry.validate();
        }
    }
}
