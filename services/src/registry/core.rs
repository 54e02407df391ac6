//! The registry's pure state machine: the catalog of instances and their TTL checks.
//!
//! Owns `RegistryCore` and `RegistryConfig`. Time comes in as `now` (since the registry's start);
//! nothing here does I/O. It does not own the wire (`protocol`), the timers that call `tick` and
//! `reap` (`run_registry`) or client-side caching (`cache`).
//!
//! Health is computed, not stored: an instance is passing while `now < last_pass + ttl` and
//! critical from that instant on, whether or not `tick` has run yet, so discovery can never
//! return an instance past its TTL (oracle SR2). `tick` only reports the change
//! (`instance_critical`); the shell calls it at the next expiry instant (`next_expiry`), so the
//! event comes at the TTL (SR1 asks for TTL + one tick). `reap` removes instances critical for at
//! least their deregistration delay; the shell calls it every `reap_interval` (Consul's reaper,
//! 30 s), so removal comes within `[critical + delay, critical + delay + reap_interval]`.
//!
//! Events (INFO): `instance_registered` (service, instance, host, port, ttl_ms,
//! deregister_critical_after_ms), `heartbeat` (service, instance, was_critical),
//! `instance_critical` (service, instance, last_pass_ms, ttl_ms), `instance_deregistered`
//! (service, instance, reason: requested | critical_timeout), `discovery` (service, count,
//! instances: comma-separated ids in order).

use std::collections::BTreeMap;
use std::time::Duration;

use super::protocol::{InstanceSpec, InstanceView, RegistryRequest, RegistryResponse};
use crate::resilience::millis;

/// Most registered instances.
pub const INSTANCES_MAX: usize = 1024;

/// Longest service name, instance id or host name, in bytes.
pub const NAME_LENGTH_MAX: usize = 64;

/// Longest TTL a registration may ask for.
pub const TTL_MAX: Duration = Duration::from_secs(3600);

/// Longest deregistration delay a registration may ask for.
pub const DEREGISTER_AFTER_MAX: Duration = Duration::from_secs(24 * 3600);

/// The registry's numbers. Defaults are Consul's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegistryConfig {
    /// The RPC port [`REGISTRY_PORT`].
    pub port: u16,
    /// Period of the reaper that removes long-critical instances [30 s].
    pub reap_interval: Duration,
    /// Smallest deregistration delay; shorter requests are raised to it [1 min].
    pub deregister_critical_after_min: Duration,
    /// The scheduler's time step: an expiry timer fires at most this late (turmoil's tick,
    /// 1 ms by default). Not used for any decision: `registry_started` reports it, so oracle SR1
    /// knows how late an `instance_critical` may come after the TTL [1 ms].
    pub tick: Duration,
    /// TEST ONLY: planted bug for oracle SR2. Discovery returns critical instances as well as
    /// passing ones (as if health were not checked); default false.
    pub planted_discovers_critical: bool,
}

impl Default for RegistryConfig {
    fn default() -> RegistryConfig {
        RegistryConfig {
            port: super::protocol::REGISTRY_PORT,
            reap_interval: Duration::from_secs(30),
            deregister_critical_after_min: Duration::from_secs(60),
            tick: Duration::from_millis(1),
            planted_discovers_critical: false,
        }
    }
}

impl RegistryConfig {
    /// Panics on numbers that cannot work.
    pub fn validate(&self) {
        assert!(
            !self.reap_interval.is_zero(),
            "reap_interval must be positive"
        );
    }
}

#[derive(Clone, Debug)]
struct Entry {
    spec: InstanceSpec,
    ttl: Duration,
    deregister_after: Duration,
    last_pass: Duration,
    /// `instance_critical` was reported for the current critical period.
    reported_critical: bool,
}

impl Entry {
    fn critical_since(&self) -> Duration {
        self.last_pass + self.ttl
    }

    fn is_passing(&self, now: Duration) -> bool {
        now < self.critical_since()
    }
}

/// The catalog.
#[derive(Clone, Debug)]
pub struct RegistryCore {
    config: RegistryConfig,
    /// By instance id.
    entries: BTreeMap<String, Entry>,
}

impl RegistryCore {
    pub fn new(config: RegistryConfig) -> RegistryCore {
        config.validate();
        RegistryCore {
            config,
            entries: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// Registered instances, passing or critical.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `instance_id` is registered and passing at `now`.
    pub fn is_passing(&self, now: Duration, instance_id: &str) -> bool {
        self.entries
            .get(instance_id)
            .is_some_and(|entry| entry.is_passing(now))
    }

    /// Answers one request at `now`.
    pub fn handle(&mut self, now: Duration, request: RegistryRequest) -> RegistryResponse {
        match request {
            RegistryRequest::Register {
                instance,
                ttl_ms,
                deregister_critical_after_ms,
            } => self.register(now, instance, ttl_ms, deregister_critical_after_ms),
            RegistryRequest::Heartbeat { instance_id } => self.heartbeat(now, &instance_id),
            RegistryRequest::Deregister { instance_id } => {
                match self.entries.remove(&instance_id) {
                    Some(entry) => {
                        report_deregistered(&entry, "requested");
                        RegistryResponse::Deregistered
                    }
                    None => RegistryResponse::UnknownInstance,
                }
            }
            RegistryRequest::Discover { service } => {
                RegistryResponse::Instances(self.discover(now, &service))
            }
        }
    }

    fn register(
        &mut self,
        now: Duration,
        spec: InstanceSpec,
        ttl_ms: u32,
        deregister_critical_after_ms: u32,
    ) -> RegistryResponse {
        for (what, name) in [
            ("service", &spec.service),
            ("instance_id", &spec.instance_id),
            ("host", &spec.host),
        ] {
            if name.is_empty() || name.len() > NAME_LENGTH_MAX {
                return RegistryResponse::Refused(format!(
                    "{what} must be 1..={NAME_LENGTH_MAX} bytes"
                ));
            }
        }
        let ttl = Duration::from_millis(u64::from(ttl_ms));
        if ttl.is_zero() || ttl > TTL_MAX {
            return RegistryResponse::Refused(format!("ttl must be in (0, {TTL_MAX:?}]"));
        }
        if !self.entries.contains_key(&spec.instance_id) && self.entries.len() >= INSTANCES_MAX {
            return RegistryResponse::Refused(format!("at most {INSTANCES_MAX} instances"));
        }
        let deregister_after = Duration::from_millis(u64::from(deregister_critical_after_ms))
            .clamp(
                self.config.deregister_critical_after_min,
                DEREGISTER_AFTER_MAX,
            );
        tracing::info!(
            event = "instance_registered",
            service = spec.service.as_str(),
            instance = spec.instance_id.as_str(),
            host = spec.host.as_str(),
            port = spec.port,
            ttl_ms = millis(ttl),
            deregister_critical_after_ms = millis(deregister_after),
        );
        self.entries.insert(
            spec.instance_id.clone(),
            Entry {
                spec,
                ttl,
                deregister_after,
                last_pass: now,
                reported_critical: false,
            },
        );
        RegistryResponse::Registered
    }

    fn heartbeat(&mut self, now: Duration, instance_id: &str) -> RegistryResponse {
        let Some(entry) = self.entries.get_mut(instance_id) else {
            return RegistryResponse::UnknownInstance;
        };
        let was_critical = !entry.is_passing(now);
        entry.last_pass = now;
        entry.reported_critical = false;
        tracing::info!(
            event = "heartbeat",
            service = entry.spec.service.as_str(),
            instance = instance_id,
            was_critical,
        );
        RegistryResponse::HeartbeatAccepted
    }

    /// The passing instances of `service` at `now`, ordered by instance id.
    pub fn discover(&mut self, now: Duration, service: &str) -> Vec<InstanceView> {
        // Report any expiry first, so the trace never shows a discovery after an unreported one.
        self.tick(now);
        let instances: Vec<InstanceView> = self
            .entries
            .values()
            .filter(|entry| {
                // The planted bug (TEST ONLY, oracle SR2) skips the health check.
                entry.spec.service == service
                    && (entry.is_passing(now) || self.config.planted_discovers_critical)
            })
            .map(|entry| InstanceView {
                instance: entry.spec.clone(),
                expires_in_ms: u32::try_from(millis(entry.critical_since().saturating_sub(now)))
                    .unwrap_or(u32::MAX),
            })
            .collect();
        let ids: Vec<&str> = instances
            .iter()
            .map(|view| view.instance.instance_id.as_str())
            .collect();
        tracing::info!(
            event = "discovery",
            service,
            count = instances.len(),
            instances = ids.join(",").as_str(),
        );
        instances
    }

    /// Reports every instance that turned critical by `now` (once per critical period).
    pub fn tick(&mut self, now: Duration) {
        for entry in self.entries.values_mut() {
            if !entry.is_passing(now) && !entry.reported_critical {
                entry.reported_critical = true;
                tracing::info!(
                    event = "instance_critical",
                    service = entry.spec.service.as_str(),
                    instance = entry.spec.instance_id.as_str(),
                    last_pass_ms = millis(entry.last_pass),
                    ttl_ms = millis(entry.ttl),
                );
            }
        }
    }

    /// The next instant a passing instance turns critical, if any: when to `tick` next.
    pub fn next_expiry(&self) -> Option<Duration> {
        self.entries
            .values()
            .filter(|entry| !entry.reported_critical)
            .map(Entry::critical_since)
            .min()
    }

    /// The reaper: removes every instance critical for at least its deregistration delay.
    pub fn reap(&mut self, now: Duration) {
        self.tick(now);
        let expired: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, entry)| {
                !entry.is_passing(now) && now >= entry.critical_since() + entry.deregister_after
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            let entry = self.entries.remove(&id).expect("listed above");
            report_deregistered(&entry, "critical_timeout");
        }
    }
}

fn report_deregistered(entry: &Entry, reason: &'static str) {
    tracing::info!(
        event = "instance_deregistered",
        service = entry.spec.service.as_str(),
        instance = entry.spec.instance_id.as_str(),
        reason,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    fn spec(service: &str, id: &str) -> InstanceSpec {
        InstanceSpec {
            service: service.into(),
            instance_id: id.into(),
            host: id.into(),
            port: 9000,
        }
    }

    fn register(core: &mut RegistryCore, now: Duration, service: &str, id: &str) {
        let answer = core.handle(
            now,
            RegistryRequest::Register {
                instance: spec(service, id),
                ttl_ms: 3000,
                deregister_critical_after_ms: 0,
            },
        );
        assert_eq!(answer, RegistryResponse::Registered);
    }

    fn ids(views: &[InstanceView]) -> Vec<&str> {
        views
            .iter()
            .map(|view| view.instance.instance_id.as_str())
            .collect()
    }

    #[test]
    fn the_planted_registry_discovers_critical_instances() {
        // Goal: the TEST ONLY switch `planted_discovers_critical` really breaks SR2. Method: two
        // instances with a 3 s TTL, one heartbeats at 2 s; at 4 s the other is critical: a
        // correct registry returns only the live one, the planted one returns both, and its
        // `discovery` event names the critical one.
        let (trace, _guard) = crate::testing::record_trace();
        for (planted, expected) in [(false, vec!["a"]), (true, vec!["a", "b"])] {
            let mut core = RegistryCore::new(RegistryConfig {
                planted_discovers_critical: planted,
                ..RegistryConfig::default()
            });
            register(&mut core, Duration::ZERO, "orders", "a");
            register(&mut core, Duration::ZERO, "orders", "b");
            core.handle(
                2 * S,
                RegistryRequest::Heartbeat {
                    instance_id: "a".into(),
                },
            );
            assert!(!core.is_passing(4 * S, "b"));
            assert_eq!(ids(&core.discover(4 * S, "orders")), expected);
        }
        let discovery = trace.named("discovery").pop().expect("traced");
        assert_eq!(discovery.field("instances"), Some("a,b"));
    }

    #[test]
    fn discovery_returns_only_passing_instances_of_the_service() {
        // Goal: SR2: a registered, heartbeating instance is found; one past its TTL is not, at
        // the exact instant of expiry, even without a tick. Method: two orders instances and an
        // inventory one; orders-2 stops heartbeating.
        let mut core = RegistryCore::new(RegistryConfig::default());
        register(&mut core, Duration::ZERO, "orders", "orders-1");
        register(&mut core, Duration::ZERO, "orders", "orders-2");
        register(&mut core, Duration::ZERO, "inventory", "inventory-1");
        assert_eq!(
            ids(&core.discover(Duration::ZERO, "orders")),
            ["orders-1", "orders-2"]
        );
        assert_eq!(
            core.handle(
                2 * S,
                RegistryRequest::Heartbeat {
                    instance_id: "orders-1".into()
                }
            ),
            RegistryResponse::HeartbeatAccepted
        );
        let views = core.discover(3 * S - MS, "orders");
        assert_eq!(ids(&views), ["orders-1", "orders-2"]);
        assert_eq!(views[1].expires_in_ms, 1, "orders-2 has 1 ms left");
        assert_eq!(ids(&core.discover(3 * S, "orders")), ["orders-1"]);
        assert_eq!(ids(&core.discover(5 * S, "orders")), Vec::<&str>::new());
    }

    #[test]
    fn critical_instances_come_back_with_a_heartbeat() {
        // Goal: critical is a health state, not removal: a heartbeat before the reaper makes the
        // instance passing again. Method: let the TTL pass, heartbeat, discover.
        let mut core = RegistryCore::new(RegistryConfig::default());
        register(&mut core, Duration::ZERO, "orders", "orders-1");
        core.tick(4 * S);
        assert!(!core.is_passing(4 * S, "orders-1"));
        core.handle(
            5 * S,
            RegistryRequest::Heartbeat {
                instance_id: "orders-1".into(),
            },
        );
        assert_eq!(ids(&core.discover(5 * S, "orders")), ["orders-1"]);
    }

    #[test]
    fn the_reaper_removes_instances_critical_for_the_deregistration_delay() {
        // Goal: SR1's second half: removal within [critical + D, critical + D + reap interval],
        // with D raised to the 1 min minimum. Method: TTL 3 s, asked D = 0 (raised to 60 s);
        // critical at 3 s; a reap at 62.9 s keeps it, at 63 s removes it; a heartbeat after that
        // is answered UnknownInstance.
        let mut core = RegistryCore::new(RegistryConfig::default());
        register(&mut core, Duration::ZERO, "orders", "orders-1");
        core.reap(63 * S - 100 * MS);
        assert_eq!(core.len(), 1);
        core.reap(63 * S);
        assert!(core.is_empty());
        assert_eq!(
            core.handle(
                64 * S,
                RegistryRequest::Heartbeat {
                    instance_id: "orders-1".into()
                }
            ),
            RegistryResponse::UnknownInstance
        );
    }

    #[test]
    fn next_expiry_points_at_the_earliest_unreported_ttl() {
        // Goal: the shell can tick exactly at each expiry (SR1's first half). Method: two
        // instances registered at 0 and 1 s (TTL 3 s): next expiry 3 s, then 4 s after a tick
        // at 3 s, then none.
        let mut core = RegistryCore::new(RegistryConfig::default());
        register(&mut core, Duration::ZERO, "orders", "orders-1");
        register(&mut core, S, "orders", "orders-2");
        assert_eq!(core.next_expiry(), Some(3 * S));
        core.tick(3 * S);
        assert_eq!(core.next_expiry(), Some(4 * S));
        core.tick(4 * S);
        assert_eq!(core.next_expiry(), None);
    }

    #[test]
    fn limits_are_refused_not_stored() {
        // Goal: names, TTLs and the instance count are bounded. Method: an empty service, a
        // zero TTL and a long id are refused; INSTANCES_MAX + 1 registrations stop at the limit.
        let mut core = RegistryCore::new(RegistryConfig::default());
        let refused = |core: &mut RegistryCore, instance: InstanceSpec, ttl_ms| {
            matches!(
                core.handle(
                    Duration::ZERO,
                    RegistryRequest::Register {
                        instance,
                        ttl_ms,
                        deregister_critical_after_ms: 0
                    }
                ),
                RegistryResponse::Refused(_)
            )
        };
        assert!(refused(&mut core, spec("", "a"), 1000));
        assert!(refused(&mut core, spec("s", "a"), 0));
        assert!(refused(&mut core, spec("s", &"x".repeat(65)), 1000));
        for index in 0..INSTANCES_MAX {
            register(&mut core, Duration::ZERO, "s", &format!("i{index}"));
        }
        assert!(refused(&mut core, spec("s", "one-more"), 1000));
        // Re-registering a known instance is not a new one.
        register(&mut core, Duration::ZERO, "s", "i0");
        assert_eq!(core.len(), INSTANCES_MAX);
    }
}
