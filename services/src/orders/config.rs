//! The orders service's configuration: who this instance is, where its participants are, and
//! the numbers of its retries, leases and takeovers.
//!
//! Owns `OrdersConfig`, its defaults and validation.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::inventory::INVENTORY_PORT;
use crate::journal::JOURNAL_PORT;
use crate::motion::AxisName;
use crate::retry::RetryPolicy;
use crate::transport::Endpoint;

/// The port the orders service listens on unless configured otherwise.
pub const ORDERS_PORT: u16 = 7600;

/// Upper bound of `OrdersConfig::sagas_driven_max`.
pub const SAGAS_DRIVEN_LIMIT: usize = 4096;

/// Everything `run_orders` needs besides the transport and its random stream.
#[derive(Clone, Debug, PartialEq)]
pub struct OrdersConfig {
    /// This instance's name: the owner in saga events (`orders-1`).
    pub instance: String,
    /// This instance's number, mixed into its event ids (distinct per instance).
    pub instance_index: u16,
    /// RPC port.
    pub port: u16,
    pub journal: Endpoint,
    pub inventory: Endpoint,
    /// The motion service of each axis orders may move.
    pub motion: BTreeMap<AxisName, Endpoint>,
    /// Longest wait for one call's answer.
    pub call_timeout: Duration,
    /// Retries of the compensatable steps (reserve, lease) before they count as failed and the
    /// saga compensates. The lease step keeps retrying while another saga holds the axis.
    pub forward_retry: RetryPolicy,
    /// One round of retries of what must eventually succeed (the pivot's outcome, commit,
    /// release, compensations, journal appends). When a round runs out the saga's driver stops
    /// and starts again after `driver_restart_delay` from the journal: retries never end while
    /// the saga is open, but every loop is bounded.
    pub must_retry: RetryPolicy,
    /// Wait between polls of a move the motion service acknowledged.
    pub move_poll_interval: Duration,
    /// Wait before asking again for an axis another saga holds (not an attempt: the lease
    /// step waits for the axis until `forward_retry`'s deadline).
    pub lease_wait_interval: Duration,
    /// The axis lease's lifetime (it must cover a move).
    pub lease_ttl_ms: u32,
    /// A saga owned by another instance is taken over once neither the saga nor its owner's
    /// heartbeat stream showed a new event for this long.
    pub takeover_after: Duration,
    /// How often this instance appends a heartbeat to its own stream (below
    /// `takeover_after`, so a live owner is never taken over for waiting on a participant).
    pub heartbeat_interval: Duration,
    /// Wait before a stopped driver (journal or participant unreachable) starts again.
    pub driver_restart_delay: Duration,
    /// How long a live poll of the journal waits for new saga events.
    pub subscription_wait: Duration,
    /// Most sagas this instance drives at once; others wait their turn.
    pub sagas_driven_max: usize,
    /// The bus whose `motion.events` this instance consumes (group `orders`, see `consumer`);
    /// `None`: no consumer, and the instance behaves exactly as without this field.
    pub bus: Option<Endpoint>,
}

impl OrdersConfig {
    /// Defaults: Temporal's activity retry (initial 1 s, coefficient 2, maximum 100 × initial;
    /// unlimited attempts become 100 per round within 10 min) for what must succeed; the same
    /// curve with 10 attempts within 60 s for the compensatable steps; 500 ms per call; moves
    /// polled every 20 ms; 30 s leases (at most motion's `lease_ttl_ms_max`, 60 s by default);
    /// takeover after 10 s of silence (Temporal's workflow task timeout) with heartbeats every
    /// 3 s (about a third of it, as Consul's TTL/3); drivers restart after 1 s; live polls of
    /// 1 s; 64 sagas at once; no bus. Participants
    /// at their default ports on hosts `journal`, `inventory`; `motion` maps each axis.
    pub fn new(
        instance: impl Into<String>,
        instance_index: u16,
        motion: BTreeMap<AxisName, Endpoint>,
    ) -> OrdersConfig {
        let temporal = RetryPolicy {
            attempts_max: 100,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(100),
            jitter_ratio: 0.2,
            deadline: Duration::from_secs(600),
        };
        OrdersConfig {
            instance: instance.into(),
            instance_index,
            port: ORDERS_PORT,
            journal: Endpoint::new("journal", JOURNAL_PORT),
            inventory: Endpoint::new("inventory", INVENTORY_PORT),
            motion,
            call_timeout: Duration::from_millis(500),
            forward_retry: RetryPolicy {
                attempts_max: 10,
                deadline: Duration::from_secs(60),
                ..temporal
            },
            must_retry: temporal,
            move_poll_interval: Duration::from_millis(20),
            lease_wait_interval: Duration::from_millis(200),
            lease_ttl_ms: 30_000,
            takeover_after: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(3),
            driver_restart_delay: Duration::from_secs(1),
            subscription_wait: Duration::from_secs(1),
            sagas_driven_max: 64,
            bus: None,
        }
    }

    /// Panics on a configuration that cannot work.
    pub fn validate(&self) {
        assert!(!self.instance.is_empty(), "instance must not be empty");
        assert!(!self.motion.is_empty(), "at least one axis");
        assert!(
            !self.call_timeout.is_zero(),
            "call_timeout must be positive"
        );
        self.forward_retry.validate();
        self.must_retry.validate();
        assert!(
            !self.move_poll_interval.is_zero() && !self.lease_wait_interval.is_zero(),
            "move_poll_interval and lease_wait_interval must be positive"
        );
        assert!(self.lease_ttl_ms > 0, "lease_ttl_ms must be positive");
        assert!(
            !self.takeover_after.is_zero() && !self.driver_restart_delay.is_zero(),
            "takeover_after and driver_restart_delay must be positive"
        );
        assert!(
            !self.heartbeat_interval.is_zero() && self.heartbeat_interval < self.takeover_after,
            "heartbeat_interval {:?} must be positive and below takeover_after {:?}",
            self.heartbeat_interval,
            self.takeover_after
        );
        assert!(
            (1..=SAGAS_DRIVEN_LIMIT).contains(&self.sagas_driven_max),
            "sagas_driven_max must be in 1..={SAGAS_DRIVEN_LIMIT}"
        );
    }
}
