//! The service registry: registration, TTL heartbeats, passing and critical health,
//! deregistration of long-critical instances, discovery of passing instances (Consul's
//! semantics, pattern-semantics.md §5).
//!
//! Parts: `protocol` (wire types), `core` (`RegistryCore`, the pure catalog), `cache`
//! (`DiscoveryCache`, the client side's bounded-age cache), `client` (`run_registration` for
//! services, `RegistryClient` for discovering callers) and, here, `run_registry`, the thin shell.
//!
//! Design choices:
//! - **TTL checks only.** Each instance has one TTL check, fed by its own heartbeats (Consul's
//!   `check/pass`); there are no agent-run HTTP or script checks, and no warning state.
//! - **Registered means passing.** A registration counts as the first heartbeat (Consul's check
//!   `Status: passing`), so an instance is discoverable as soon as it is registered. Consul's
//!   default of starting critical would only delay discovery by one heartbeat.
//! - **Health is computed from time**, never stale: see `core`. `run_registry` ticks at the next
//!   expiry instant (for the `instance_critical` event) and runs the reaper every
//!   `reap_interval`.
//! - **One node, in memory.** The registry is one host with no disk: Consul's anti-entropy is
//!   replaced by the agents themselves, whose next heartbeat after a registry restart is answered
//!   `UnknownInstance` and re-registers at once. A restarted registry is empty for at most one
//!   heartbeat period, during which discovery returns nothing and callers answer 503.
//! - **Client caches are bounded by TTLs** (`cache`): never an answer older than `cache_ttl`,
//!   never an instance past its own remaining TTL.
//!
//! Events: see `core` (`instance_registered`, `heartbeat`, `instance_critical`,
//! `instance_deregistered`, `discovery`) and `client` (`registration_failed`,
//! `discovery_failed`); here `registry_started` (port, tick_us: `RegistryConfig::tick`, the
//! slack oracle SR1 allows after a TTL).

pub mod cache;
pub mod client;
pub mod core;
pub mod protocol;

#[cfg(test)]
pub(crate) mod test_net;

use std::convert::Infallible;
use std::io;

use tokio::time::{Instant, MissedTickBehavior};

pub use self::cache::DiscoveryCache;
pub use self::client::{
    DiscoveryConfig, DiscoveryError, RegistrationConfig, RegistryClient, run_registration,
};
pub use self::core::{RegistryConfig, RegistryCore};
pub use self::protocol::{
    InstanceSpec, InstanceView, REGISTRY_PORT, RegistryRequest, RegistryResponse,
};
use crate::rpc::{Incoming, RpcServer};
use crate::transport::Transport;

/// Why the registry could not run.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry: cannot listen on port {port}: {source}")]
    Bind {
        port: u16,
        #[source]
        source: io::Error,
    },
}

// One event per loop turn, consumed at once: boxing the request would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum LoopEvent<S> {
    Reap,
    Expiry,
    Request(Incoming<S, RegistryRequest>),
}

/// Runs the registry until dropped; returns only if the port cannot be bound.
pub async fn run_registry<T: Transport>(
    transport: T,
    config: RegistryConfig,
) -> Result<Infallible, RegistryError> {
    let listener = transport
        .bind(config.port)
        .await
        .map_err(|source| RegistryError::Bind {
            port: config.port,
            source,
        })?;
    Ok(serve_registry::<T>(listener, config).await)
}

/// Serves on an already bound listener until dropped (tests bind port 0 and read it back).
pub async fn serve_registry<T: Transport>(
    listener: T::Listener,
    config: RegistryConfig,
) -> Infallible {
    let mut core = RegistryCore::new(config);
    let mut server = RpcServer::<T::Listener, RegistryRequest>::new(listener);
    let start = Instant::now();
    let mut reaper = tokio::time::interval_at(start + config.reap_interval, config.reap_interval);
    reaper.set_missed_tick_behavior(MissedTickBehavior::Skip);
    tracing::info!(
        event = "registry_started",
        port = config.port,
        tick_us = u64::try_from(config.tick.as_micros()).unwrap_or(u64::MAX),
    );
    loop {
        let expiry = core.next_expiry().map(|at| start + at);
        let event = tokio::select! {
            biased;
            _ = reaper.tick() => LoopEvent::Reap,
            () = tokio::time::sleep_until(expiry.unwrap_or(start)), if expiry.is_some() => {
                LoopEvent::Expiry
            }
            incoming = server.next_request() => LoopEvent::Request(incoming),
        };
        let now = start.elapsed();
        match event {
            LoopEvent::Reap => core.reap(now),
            LoopEvent::Expiry => core.tick(now),
            LoopEvent::Request(Incoming { request, responder }) => {
                let response = core.handle(now, request);
                server.respond(responder, &response);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::test_net::{MemoryNet, TraceCapture};
    use super::*;

    fn spec(id: &str) -> InstanceSpec {
        InstanceSpec {
            service: "orders".into(),
            instance_id: id.into(),
            host: id.into(),
            port: 7000,
        }
    }

    fn registration(id: &str) -> RegistrationConfig {
        RegistrationConfig {
            ttl: Duration::from_millis(300),
            ..RegistrationConfig::new("registry", spec(id))
        }
    }

    fn ids(instances: &[InstanceSpec]) -> Vec<&str> {
        instances
            .iter()
            .map(|spec| spec.instance_id.as_str())
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn instances_register_heartbeat_go_critical_and_come_back_after_a_registry_restart() {
        // Goal: the whole loop over the RPC shell on simulated time: a registered instance is
        // discovered and stays so while it heartbeats (TTL 300 ms, heartbeats every 100 ms);
        // when its heartbeats stop it disappears within its TTL (SR1, SR2, cache bounded by
        // the TTL); after a registry restart the agent re-registers by itself. Method: an
        // in-memory network on tokio's paused clock; two instances, one of which is stopped;
        // the trace is judged as SR1 and SR2 will judge it.
        let capture = TraceCapture::start();
        let net = MemoryNet::new("registry");
        let config = RegistryConfig {
            reap_interval: Duration::from_millis(500),
            deregister_critical_after_min: Duration::from_secs(1),
            ..RegistryConfig::default()
        };
        let discovery = RegistryClient::new(
            net.host("gateway"),
            DiscoveryConfig {
                cache_ttl: Duration::from_millis(100),
                ..DiscoveryConfig::new("registry")
            },
        );
        let registry = run_registry(net.clone(), config);
        let stays = run_registration(net.host("orders-1"), registration("orders-1"));
        let stops = run_registration(net.host("orders-2"), registration("orders-2"));
        let mut registry = Box::pin(registry);
        let mut stays = std::pin::pin!(stays);
        let checks = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let found = discovery.discover("orders").await.unwrap();
            assert_eq!(ids(&found), ["orders-1", "orders-2"]);
            tokio::time::sleep(Duration::from_millis(1000)).await;
            let found = discovery.discover("orders").await.unwrap();
            assert_eq!(
                ids(&found),
                ["orders-1", "orders-2"],
                "heartbeats keep them"
            );
        };
        tokio::select! {
            biased;
            _ = registry.as_mut() => unreachable!("the registry runs forever"),
            _ = stays.as_mut() => unreachable!(),
            _ = stops => unreachable!(),
            () = checks => {}
        }
        // orders-2's agent is gone (its future dropped): within TTL + cache age it is not found.
        let checks = async {
            tokio::time::sleep(Duration::from_millis(300 + 100)).await;
            let found = discovery.discover("orders").await.unwrap();
            assert_eq!(ids(&found), ["orders-1"]);
        };
        tokio::select! {
            biased;
            _ = registry.as_mut() => unreachable!(),
            _ = stays.as_mut() => unreachable!(),
            () = checks => {}
        }
        // Restart the registry: a fresh, empty catalog on the same port.
        drop(registry);
        let registry = run_registry(net.clone(), config);
        let checks = async {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let found = discovery.discover("orders").await.unwrap();
            assert_eq!(ids(&found), ["orders-1"], "re-registered after the restart");
        };
        tokio::select! {
            biased;
            _ = registry => unreachable!(),
            _ = stays.as_mut() => unreachable!(),
            () = checks => {}
        }

        let events = capture.events();
        let critical: Vec<_> = events
            .iter()
            .filter(|event| event.name == "instance_critical")
            .collect();
        assert_eq!(
            critical.len(),
            1,
            "only orders-2 went critical: {critical:?}"
        );
        let field_ms = |name| -> u128 { critical[0].field(name).unwrap().parse().unwrap() };
        assert_eq!(critical[0].field("instance"), Some("orders-2"));
        assert_eq!(
            critical[0].at_ms,
            field_ms("last_pass_ms") + field_ms("ttl_ms"),
            "SR1: reported at the TTL's end, not a tick later"
        );
        for discovery in events.iter().filter(|event| event.name == "discovery") {
            if discovery.at_ms >= critical[0].at_ms {
                assert!(
                    !discovery.field("instances").unwrap().contains("orders-2"),
                    "SR2: {discovery:?}"
                );
            }
        }
    }
}
