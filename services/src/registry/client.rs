//! What other services use of the registry: staying registered, and finding instances.
//!
//! Owns `RegistrationConfig` and `run_registration` (register, then heartbeat every TTL/3,
//! re-registering when the registry forgot the instance), and `RegistryClient` (discovery through
//! a `DiscoveryCache`). It does not own the catalog (`core`) or its server (`run_registry`).
//!
//! `run_registration` never returns: a service runs it beside its own loop, for example as one
//! more `tokio::select!` branch or joined with its server future. Heartbeating at TTL/3 leaves
//! two heartbeats' slack before the registry marks the instance critical (the reference's
//! advice), so one lost heartbeat never makes a healthy instance disappear.
//!
//! Events (INFO): `registration_failed` (service, instance, request, error) when a register or
//! heartbeat call fails; `discovery_failed` (service, error) when discovery cannot reach the
//! registry. The registry itself reports registrations and heartbeats.

use std::cell::RefCell;
use std::convert::Infallible;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};

use super::cache::DiscoveryCache;
use super::protocol::{InstanceSpec, REGISTRY_PORT, RegistryRequest, RegistryResponse};
use crate::rpc::{RpcClient, RpcError};
use crate::transport::Transport;

/// How one instance registers itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrationConfig {
    pub registry_host: String,
    pub registry_port: u16,
    pub instance: InstanceSpec,
    /// The TTL check's period; heartbeats go every `ttl / 3` (ours: 3 s; Consul has no default).
    pub ttl: Duration,
    /// Removal after this long critical [Consul's minimum, 1 min].
    pub deregister_critical_after: Duration,
}

impl RegistrationConfig {
    /// Defaults: `REGISTRY_PORT`, TTL 3 s, deregistration after 1 min critical.
    pub fn new(registry_host: impl Into<String>, instance: InstanceSpec) -> RegistrationConfig {
        RegistrationConfig {
            registry_host: registry_host.into(),
            registry_port: REGISTRY_PORT,
            instance,
            ttl: Duration::from_secs(3),
            deregister_critical_after: Duration::from_secs(60),
        }
    }

    /// The heartbeat period, TTL/3.
    pub fn heartbeat_interval(&self) -> Duration {
        self.ttl / 3
    }

    /// Panics on numbers that cannot work.
    pub fn validate(&self) {
        assert!(
            self.ttl >= Duration::from_millis(3),
            "ttl must be at least 3 ms (heartbeats every ttl/3)"
        );
        assert!(
            u32::try_from(self.ttl.as_millis()).is_ok()
                && u32::try_from(self.deregister_critical_after.as_millis()).is_ok(),
            "ttl and deregister_critical_after must fit u32 milliseconds"
        );
    }

    fn register_request(&self) -> RegistryRequest {
        RegistryRequest::Register {
            instance: self.instance.clone(),
            ttl_ms: u32::try_from(self.ttl.as_millis()).expect("validated"),
            deregister_critical_after_ms: u32::try_from(self.deregister_critical_after.as_millis())
                .expect("validated"),
        }
    }
}

/// Keeps `config.instance` registered and passing, forever: registers, then heartbeats every
/// TTL/3; an `UnknownInstance` answer (the registry restarted or reaped it) registers again at
/// once. Each call's timeout is the heartbeat period, so calls never pile up.
pub async fn run_registration<T: Transport>(
    transport: T,
    config: RegistrationConfig,
) -> Infallible {
    config.validate();
    let rpc = RpcClient::new(transport);
    let period = config.heartbeat_interval();
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut registered = false;
    loop {
        ticks.tick().await;
        // At most one immediate re-registration per period: a bounded loop.
        for _ in 0..2 {
            let request = if registered {
                RegistryRequest::Heartbeat {
                    instance_id: config.instance.instance_id.clone(),
                }
            } else {
                config.register_request()
            };
            let kind = if registered { "heartbeat" } else { "register" };
            let answer: Result<RegistryResponse, RpcError> = rpc
                .call(
                    &config.registry_host,
                    config.registry_port,
                    &request,
                    period,
                )
                .await;
            match answer {
                Ok(RegistryResponse::Registered | RegistryResponse::HeartbeatAccepted) => {
                    registered = true;
                    break;
                }
                Ok(RegistryResponse::UnknownInstance) => {
                    registered = false;
                    continue;
                }
                Ok(other) => {
                    tracing::warn!(
                        event = "registration_failed",
                        service = config.instance.service.as_str(),
                        instance = config.instance.instance_id.as_str(),
                        request = kind,
                        error = format!("{other:?}").as_str(),
                    );
                    break;
                }
                Err(error) => {
                    tracing::info!(
                        event = "registration_failed",
                        service = config.instance.service.as_str(),
                        instance = config.instance.instance_id.as_str(),
                        request = kind,
                        error = error.kind(),
                    );
                    break;
                }
            }
        }
    }
}

/// Where and how a client discovers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoveryConfig {
    pub registry_host: String,
    pub registry_port: u16,
    /// Longest an answer is served from the cache; also bounded per instance by its TTL
    /// (ours: 1 s, a third of the default TTL).
    pub cache_ttl: Duration,
    /// Longest wait for the registry's answer (ours: 500 ms).
    pub call_timeout: Duration,
    /// TEST ONLY: planted bug for oracle SR3 (`DiscoveryCache::planted_ignoring_instance_ttl`):
    /// instances are served past their TTL. A correct cell never sets it.
    pub planted_cache_ignores_instance_ttl: bool,
}

impl DiscoveryConfig {
    pub fn new(registry_host: impl Into<String>) -> DiscoveryConfig {
        DiscoveryConfig {
            registry_host: registry_host.into(),
            registry_port: REGISTRY_PORT,
            cache_ttl: Duration::from_secs(1),
            call_timeout: Duration::from_millis(500),
            planted_cache_ignores_instance_ttl: false,
        }
    }
}

/// Why discovery failed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The registry could not be asked.
    #[error("discovery: {0}")]
    Rpc(#[from] RpcError),
    /// The registry answered something else than a list.
    #[error("discovery: unexpected answer {0}")]
    Unexpected(String),
}

/// Finds passing instances through a cache; shared by every request of one task (`&self`).
#[derive(Debug)]
pub struct RegistryClient<T: Transport> {
    rpc: RpcClient<T>,
    config: DiscoveryConfig,
    cache: RefCell<DiscoveryCache>,
    start: Instant,
}

impl<T: Transport> RegistryClient<T> {
    pub fn new(transport: T, config: DiscoveryConfig) -> RegistryClient<T> {
        RegistryClient {
            rpc: RpcClient::new(transport),
            cache: RefCell::new(if config.planted_cache_ignores_instance_ttl {
                DiscoveryCache::planted_ignoring_instance_ttl(config.cache_ttl)
            } else {
                DiscoveryCache::new(config.cache_ttl)
            }),
            config,
            start: Instant::now(),
        }
    }

    /// The passing instances of `service` (possibly empty), from the cache while it is fresh.
    pub async fn discover(&self, service: &str) -> Result<Vec<InstanceSpec>, DiscoveryError> {
        let sent_at = self.start.elapsed();
        if let Some(cached) = self.cache.borrow().get(sent_at, service) {
            return Ok(cached);
        }
        let request = RegistryRequest::Discover {
            service: service.to_owned(),
        };
        let answer = self
            .rpc
            .call(
                &self.config.registry_host,
                self.config.registry_port,
                &request,
                self.config.call_timeout,
            )
            .await;
        match answer {
            Ok(RegistryResponse::Instances(views)) => {
                let mut cache = self.cache.borrow_mut();
                cache.put(sent_at, service, &views);
                Ok(cache.servable(sent_at, self.start.elapsed(), &views))
            }
            Ok(other) => Err(DiscoveryError::Unexpected(format!("{other:?}"))),
            Err(error) => {
                tracing::info!(event = "discovery_failed", service, error = error.kind());
                Err(error.into())
            }
        }
    }

    /// Drops the cached answer for `service`.
    pub fn invalidate(&self, service: &str) {
        self.cache.borrow_mut().invalidate(service);
    }
}
