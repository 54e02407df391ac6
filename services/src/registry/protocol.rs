//! The registry's wire types: what services and discovering clients send, what it answers.
//!
//! Owns `RegistryRequest`, `RegistryResponse`, `InstanceSpec` and `InstanceView`. Carried by
//! `rpc` in postcard frames. It does not own what the requests do (`core`).

use serde::{Deserialize, Serialize};

/// The registry's RPC port (Consul's HTTP API port).
pub const REGISTRY_PORT: u16 = 8500;

/// Where one instance of a service answers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InstanceSpec {
    /// The service's name, for example `"orders"`.
    pub service: String,
    /// Unique across the registry, for example `"orders-1"`.
    pub instance_id: String,
    /// The host name the network resolves.
    pub host: String,
    pub port: u16,
}

/// A requested change or question.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RegistryRequest {
    /// Registers (or re-registers) an instance with a TTL check; it starts passing (Consul's
    /// check `Status: passing`), as if it had just heartbeated.
    Register {
        instance: InstanceSpec,
        /// The instance turns critical this long after its last heartbeat.
        ttl_ms: u32,
        /// A critical instance is removed this long after it turned critical (Consul's
        /// `DeregisterCriticalServiceAfter`, raised to the registry's minimum).
        deregister_critical_after_ms: u32,
    },
    /// The TTL check passes (Consul's `PUT /v1/agent/check/pass/:id`).
    Heartbeat { instance_id: String },
    /// Removes the instance at once.
    Deregister { instance_id: String },
    /// The passing instances of `service` (Consul's `?passing`).
    Discover { service: String },
}

/// A passing instance as discovery returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceView {
    pub instance: InstanceSpec,
    /// How long the instance stays passing without another heartbeat, from the registry's
    /// `now`: a cache must not serve it longer.
    pub expires_in_ms: u32,
}

/// The registry's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RegistryResponse {
    Registered,
    HeartbeatAccepted,
    /// The instance is not registered (never, or reaped): register again.
    UnknownInstance,
    Deregistered,
    /// Passing instances, ordered by instance id.
    Instances(Vec<InstanceView>),
    /// The request breaks a limit; the text says which.
    Refused(String),
}
