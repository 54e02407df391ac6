//! The gateway's parameters, each with a documented default, all overridable (the scenario file
//! carries them).
//!
//! Owns `GatewayConfig`, `ApiKeyConfig`, `RouteConfig` and `UpstreamConfig`. It does not own the
//! numbers' meaning (each resilience component documents its own) or their use (`core`, shell).

use std::collections::BTreeMap;
use std::time::Duration;

use super::protocol::Role;
use crate::registry::DiscoveryConfig;
use crate::resilience::{
    BreakerConfig, BulkheadConfig, RetryBudgetConfig, RetryPolicy, TokenBucketConfig,
};

/// The gateway's public HTTP port.
pub const GATEWAY_PORT: u16 = 8080;

/// Most API keys and most routes: configuration, bounded like everything.
pub const API_KEYS_MAX: usize = 1_000;
pub const ROUTES_MAX: usize = 64;

/// Largest request body, in bytes: it must fit one RPC frame with room for the envelope.
pub const BODY_BYTES_MAX: usize = 32 * 1024;

const _: () = assert!(
    BODY_BYTES_MAX < crate::framing::FRAME_LENGTH_MAX,
    "a forwarded body must fit one RPC frame"
);

/// One API key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyConfig {
    /// The secret the client sends in `X-Api-Key` (Kong's key-auth header name is `apikey`;
    /// `X-Api-Key` is the common convention).
    pub key: String,
    /// The consumer it identifies: the unit of rate limiting and the `consumer` of events.
    pub consumer: String,
    pub role: Role,
}

/// One route: requests whose path is `prefix` or starts with `prefix/` go to `upstream`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteConfig {
    /// The route's name, for events and `UpstreamRequest::route` (`"orders"`).
    pub name: String,
    /// Path prefix without a trailing slash (`"/orders"`).
    pub prefix: String,
    /// The registry service name of the upstream (`"orders"`).
    pub upstream: String,
}

impl RouteConfig {
    pub fn new(name: &str, prefix: &str, upstream: &str) -> RouteConfig {
        RouteConfig {
            name: name.into(),
            prefix: prefix.into(),
            upstream: upstream.into(),
        }
    }

    /// Whether `path` (without the query) falls under this route.
    pub fn matches(&self, path: &str) -> bool {
        path.strip_prefix(self.prefix.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

/// How the gateway calls one upstream.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UpstreamConfig {
    /// Timeout of one attempt (Envoy's `per_try_timeout`; ours 1 s: service links have
    /// millisecond latencies). A timed-out request is answered 504.
    pub attempt_timeout: Duration,
    /// Attempts, backoff and the one deadline over all attempts (Envoy's route timeout, 15 s
    /// there; ours 5 s). Defaults: `RetryPolicy::default()`: 3 attempts, 25 ms doubling to 250 ms
    /// (Envoy's base and cap), ±50 % jitter.
    pub retry: RetryPolicy,
    /// Retries paid for by successes [tower `TpsBudget::default()`].
    pub budget: RetryBudgetConfig,
    /// [resilience4j defaults; see `BreakerConfig`].
    pub breaker: BreakerConfig,
    /// [resilience4j: 25 concurrent, queue 100; see `BulkheadConfig`].
    pub bulkhead: BulkheadConfig,
    /// TEST ONLY: planted bug for oracle R3. Calls to this upstream are retried even without an
    /// `Idempotency-Key` or after a non-retriable error
    /// (`RetrySchedule::with_planted_unsafe_retries`); default false.
    pub planted_retries_unsafe: bool,
}

impl Default for UpstreamConfig {
    fn default() -> UpstreamConfig {
        UpstreamConfig {
            attempt_timeout: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            budget: RetryBudgetConfig::default(),
            breaker: BreakerConfig::default(),
            bulkhead: BulkheadConfig::default(),
            planted_retries_unsafe: false,
        }
    }
}

impl UpstreamConfig {
    pub fn validate(&self) {
        assert!(
            !self.attempt_timeout.is_zero(),
            "attempt_timeout must be positive"
        );
        self.retry.validate();
        self.budget.validate();
        self.breaker.validate();
        self.bulkhead.validate();
    }
}

/// Everything the gateway needs besides its transport and random stream.
#[derive(Clone, Debug, PartialEq)]
pub struct GatewayConfig {
    /// The public port [`GATEWAY_PORT`].
    pub port: u16,
    pub api_keys: Vec<ApiKeyConfig>,
    /// Default: orders (`/orders` → `orders`), axes (`/axes` → `motion`), inventory
    /// (`/inventory` → `inventory`).
    pub routes: Vec<RouteConfig>,
    /// One bucket per consumer [Envoy local rate limit; see `TokenBucketConfig`].
    pub rate_limit: TokenBucketConfig,
    /// Calls to every upstream not listed in `upstream_overrides`.
    pub upstream: UpstreamConfig,
    /// Per upstream service name.
    pub upstream_overrides: BTreeMap<String, UpstreamConfig>,
    /// How upstreams are found.
    pub discovery: DiscoveryConfig,
    /// `Retry-After` added to an upstream's 429 / 503 that carries none, and to 503s for an
    /// upstream without a passing instance (ours: 1 s).
    pub retry_after_default: Duration,
    /// Open client connections at most (ours: 1024, Envoy's `max_connections`).
    pub connections_max: usize,
    /// A client must send its request head within this (hyper's default, 30 s).
    pub header_read_timeout: Duration,
    /// TEST ONLY: planted bug for oracle GW1. Authorisation is skipped: a role is forwarded
    /// whatever method it uses (a viewer's POST reaches the upstream); default false.
    pub planted_skips_authorisation: bool,
    /// TEST ONLY: planted bug for oracle GW2. The 429s and 503s the gateway answers carry no
    /// `Retry-After`; default false.
    pub planted_omits_retry_after: bool,
}

impl GatewayConfig {
    /// The defaults above, with the registry at `registry_host` and no API keys.
    pub fn new(registry_host: impl Into<String>) -> GatewayConfig {
        GatewayConfig {
            port: GATEWAY_PORT,
            api_keys: Vec::new(),
            routes: vec![
                RouteConfig::new("orders", "/orders", "orders"),
                RouteConfig::new("axes", "/axes", "motion"),
                RouteConfig::new("inventory", "/inventory", "inventory"),
            ],
            rate_limit: TokenBucketConfig::default(),
            upstream: UpstreamConfig::default(),
            upstream_overrides: BTreeMap::new(),
            discovery: DiscoveryConfig::new(registry_host),
            retry_after_default: Duration::from_secs(1),
            connections_max: 1024,
            header_read_timeout: Duration::from_secs(30),
            planted_skips_authorisation: false,
            planted_omits_retry_after: false,
        }
    }

    /// The numbers for calls to `upstream`.
    pub fn upstream_config(&self, upstream: &str) -> &UpstreamConfig {
        self.upstream_overrides
            .get(upstream)
            .unwrap_or(&self.upstream)
    }

    /// Panics on a configuration that cannot work.
    pub fn validate(&self) {
        assert!(
            self.api_keys.len() <= API_KEYS_MAX,
            "at most {API_KEYS_MAX} API keys"
        );
        assert!(
            self.routes.len() <= ROUTES_MAX,
            "at most {ROUTES_MAX} routes"
        );
        for (index, key) in self.api_keys.iter().enumerate() {
            assert!(
                !key.key.is_empty() && !key.consumer.is_empty(),
                "API key {index}: key and consumer must not be empty"
            );
            assert!(
                !self.api_keys[..index]
                    .iter()
                    .any(|other| other.key == key.key),
                "API key {index} ({}) is listed twice",
                key.consumer
            );
        }
        for route in &self.routes {
            assert!(
                route.prefix.starts_with('/') && !route.prefix.ends_with('/'),
                "route {}: prefix must start with / and not end with one",
                route.name
            );
        }
        self.rate_limit.validate();
        self.upstream.validate();
        for upstream in self.upstream_overrides.values() {
            upstream.validate();
        }
        assert!(
            !self.retry_after_default.is_zero(),
            "retry_after_default must be positive"
        );
        assert!(
            self.connections_max >= 1,
            "connections_max must be at least 1"
        );
    }
}
