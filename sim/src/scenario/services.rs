//! The order path of the cell in a scenario: `[services]` (gateway, registry, bus, journal,
//! inventory, `orders-<k>`), `[workload.orders]` (orders placed through the gateway) and
//! `[[workload.request]]` (raw HTTP requests, for the gateway's checks).
//!
//! Owns the file schema of these tables and their resolution into the services' own
//! configuration types. Every key is optional and overrides one documented default of the
//! service (the defaults live with the services, in `services::*::config`, and are not repeated
//! here); values are checked before they reach a service, whose own `validate` panics on
//! nonsense, so that a bad number is an error naming the table and the key, never a panic.
//! What the hosts run with these is `hosts.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use services::bus::{BusConfig, GroupName, TopicConfig, TopicName};
use services::gateway::{ApiKeyConfig, GatewayConfig, HttpMethod, Role};
use services::inventory::{InventoryConfig, PartId};
use services::journal::JournalConfig;
use services::registry::RegistryConfig;
use toml::Spanned;

/// Most orders instances a cell may have.
pub const ORDERS_INSTANCES_MAX: u32 = 8;
/// Most orders one scenario places (each is a saga with a journal stream).
pub const ORDER_COUNT_MAX: u32 = 100_000;
/// Most raw requests.
pub const REQUEST_COUNT_MAX: usize = 10_000;

// ---------------------------------------------------------------------------------------------
// The file.

/// `[services]`: present, the whole cell runs; absent, only motion hosts and move clients.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServicesFile {
    #[serde(default = "ServicesFile::default_orders_instances")]
    pub(crate) orders_instances: u32,
    #[serde(default)]
    pub(crate) gateway: Option<Spanned<GatewayFile>>,
    #[serde(default)]
    pub(crate) registry: Option<Spanned<RegistryFile>>,
    #[serde(default)]
    pub(crate) bus: Option<Spanned<BusFile>>,
    #[serde(default)]
    pub(crate) inventory: Option<Spanned<InventoryFile>>,
    #[serde(default)]
    pub(crate) orders: Option<Spanned<OrdersFile>>,
}

impl ServicesFile {
    fn default_orders_instances() -> u32 {
        2
    }
}

/// `[services.gateway]`. Keys name the setting of the component they set (Envoy's local rate
/// limit, resilience4j's breaker, its bulkhead).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GatewayFile {
    #[serde(default, rename = "key")]
    pub(crate) keys: Vec<Spanned<KeyFile>>,
    pub(crate) rate_limit_tokens_max: Option<u32>,
    pub(crate) rate_limit_tokens_per_fill: Option<u32>,
    pub(crate) rate_limit_fill_interval_ms: Option<f64>,
    pub(crate) attempt_timeout_ms: Option<f64>,
    pub(crate) attempts_max: Option<u32>,
    pub(crate) backoff_ms_initial: Option<f64>,
    pub(crate) backoff_ms_max: Option<f64>,
    pub(crate) deadline_ms: Option<f64>,
    pub(crate) bulkhead_concurrency_max: Option<u32>,
    pub(crate) bulkhead_queue_max: Option<u32>,
    pub(crate) bulkhead_queue_wait_ms: Option<f64>,
    pub(crate) breaker_failure_rate_percent: Option<f64>,
    pub(crate) breaker_slow_call_rate_percent: Option<f64>,
    pub(crate) breaker_slow_call_ms: Option<f64>,
    pub(crate) breaker_open_wait_ms: Option<f64>,
    pub(crate) breaker_half_open_calls: Option<u32>,
    pub(crate) breaker_calls_min: Option<u32>,
    pub(crate) breaker_window_calls: Option<u32>,
    pub(crate) breaker_half_open_wait_ms: Option<f64>,
}

/// `[[services.gateway.key]]`: one API key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyFile {
    pub(crate) key: String,
    pub(crate) consumer: String,
    pub(crate) role: RoleFile,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum RoleFile {
    Operator,
    Viewer,
}

/// `[services.registry]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegistryFile {
    /// Every instance's check TTL (heartbeats every TTL/3).
    pub(crate) ttl_ms: Option<f64>,
    pub(crate) deregister_critical_after_ms: Option<f64>,
    pub(crate) reap_interval_ms: Option<f64>,
    /// The gateway's discovery cache.
    pub(crate) cache_ms: Option<f64>,
}

/// `[services.bus]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BusFile {
    /// Ack waits of the first, second, ... delivery (the last repeats).
    pub(crate) ack_wait_ms: Option<Vec<f64>>,
    pub(crate) max_deliver: Option<u32>,
    pub(crate) duplicate_window_s: Option<f64>,
}

/// `[services.inventory]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InventoryFile {
    pub(crate) reservation_ttl_s: Option<f64>,
    #[serde(default, rename = "part")]
    pub(crate) parts: Vec<Spanned<PartFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PartFile {
    pub(crate) name: String,
    pub(crate) stock: u64,
}

/// `[services.orders]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OrdersFile {
    pub(crate) lease_ttl_ms: Option<u32>,
    pub(crate) takeover_after_ms: Option<f64>,
    pub(crate) heartbeat_ms: Option<f64>,
    pub(crate) call_timeout_ms: Option<f64>,
    pub(crate) move_poll_ms: Option<f64>,
    pub(crate) driver_restart_ms: Option<f64>,
}

/// `[workload.orders]`: `count` orders, one every `interval_ms` from `from_s`, on the axes in
/// turn (all axes unless `axes` is given), parts in turn, and each axis going through
/// `targets_deg` in turn (the n-th order on an axis moves it to the n-th target).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OrderWorkloadFile {
    pub(crate) count: u32,
    #[serde(default)]
    pub(crate) from_s: f64,
    pub(crate) interval_ms: f64,
    #[serde(default = "OrderWorkloadFile::default_quantity")]
    pub(crate) quantity: u32,
    pub(crate) parts: Vec<String>,
    pub(crate) targets_deg: Vec<f64>,
    #[serde(default)]
    pub(crate) axes: Option<Vec<String>>,
    /// The API key the clients order with (one of `[[services.gateway.key]]`).
    pub(crate) api_key: String,
    /// Poll each accepted order until its saga ends, this often.
    #[serde(default)]
    pub(crate) poll_interval_ms: Option<f64>,
    /// Give an order up if the gateway has not accepted it within this.
    #[serde(default)]
    pub(crate) deadline_ms: Option<f64>,
    /// Sends of one order at most, the first included.
    #[serde(default)]
    pub(crate) attempts_max: Option<u32>,
}

impl OrderWorkloadFile {
    fn default_quantity() -> u32 {
        1
    }
}

/// `[[workload.request]]`: one raw HTTP request through the gateway.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RequestFile {
    pub(crate) at_s: f64,
    pub(crate) method: String,
    pub(crate) path: String,
    #[serde(default)]
    pub(crate) api_key: Option<String>,
    #[serde(default)]
    pub(crate) body: Option<String>,
    #[serde(default)]
    pub(crate) idempotency_key: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Resolved.

/// The order path of the cell, resolved into the services' configurations. Host names are the
/// cell's (docs/DESIGN.md §6): `gateway`, `registry`, `bus`, `journal`, `inventory`, `orders-<k>`.
#[derive(Debug, Clone)]
pub struct Services {
    pub orders_instances: u32,
    pub gateway: GatewayConfig,
    pub registry: RegistryConfig,
    /// Every registered instance's TTL and critical period.
    pub registration_ttl: Option<Duration>,
    pub deregister_critical_after: Option<Duration>,
    pub bus: BusConfig,
    pub journal: JournalConfig,
    pub inventory: InventoryConfig,
    pub orders: OrdersParams,
}

/// `[services.orders]` resolved: overrides of `services::orders::OrdersConfig::new`'s defaults.
#[derive(Debug, Clone, Default)]
pub struct OrdersParams {
    pub lease_ttl_ms: Option<u32>,
    pub takeover_after: Option<Duration>,
    pub heartbeat_interval: Option<Duration>,
    pub call_timeout: Option<Duration>,
    pub move_poll_interval: Option<Duration>,
    pub driver_restart_delay: Option<Duration>,
}

/// One order the workload places.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedOrder {
    pub at: Duration,
    pub part: String,
    pub quantity: u32,
    pub axis: String,
    pub target_rad: f64,
}

/// `[workload.orders]` resolved.
#[derive(Debug, Clone)]
pub struct OrderWorkload {
    /// In time order.
    pub orders: Vec<PlannedOrder>,
    pub api_key: String,
    pub poll_interval: Option<Duration>,
    pub deadline: Option<Duration>,
    pub attempts_max: Option<u32>,
}

/// `[[workload.request]]` resolved.
#[derive(Debug, Clone)]
pub struct Request {
    pub at: Duration,
    pub method: HttpMethod,
    pub path: String,
    pub api_key: Option<String>,
    pub body_json: Option<String>,
    pub idempotency_key: Option<String>,
}

/// A sub-table and the span errors about it point at: its own, or its parent's when absent.
fn table<'a, T>(
    given: &'a Option<Spanned<T>>,
    default: &'a T,
    parent: std::ops::Range<usize>,
) -> (&'a T, std::ops::Range<usize>) {
    match given {
        Some(t) => (t.get_ref(), t.span()),
        None => (default, parent),
    }
}

/// Checks the tables above; `fail(span, message)` makes the located error.
pub(crate) struct ServicesChecker<'a, E> {
    pub(crate) fail: &'a dyn Fn(std::ops::Range<usize>, String) -> E,
}

impl<E> ServicesChecker<'_, E> {
    fn duration_ms(
        &self,
        span: std::ops::Range<usize>,
        table: &str,
        key: &str,
        value: Option<f64>,
    ) -> Result<Option<Duration>, E> {
        match value {
            None => Ok(None),
            Some(ms) if ms > 0.0 && ms.is_finite() && ms <= 24.0 * 3600e3 => {
                Ok(Some(Duration::from_secs_f64(ms / 1e3)))
            }
            Some(ms) => Err((self.fail)(
                span,
                format!(
                    "[{table}]: `{key}` must be a positive number of milliseconds up to a day, not {ms}"
                ),
            )),
        }
    }

    /// A key in seconds (`_s`): checked and worded in seconds, as the file says it.
    fn duration_s(
        &self,
        span: std::ops::Range<usize>,
        table: &str,
        key: &str,
        value: Option<f64>,
    ) -> Result<Option<Duration>, E> {
        match value {
            None => Ok(None),
            Some(s) if s > 0.0 && s.is_finite() && s <= 24.0 * 3600.0 => {
                Ok(Some(Duration::from_secs_f64(s)))
            }
            Some(s) => Err((self.fail)(
                span,
                format!(
                    "[{table}]: `{key}` must be a positive number of seconds up to a day, not {s}"
                ),
            )),
        }
    }

    fn count(
        &self,
        span: std::ops::Range<usize>,
        table: &str,
        key: &str,
        value: Option<u32>,
        max: u32,
    ) -> Result<Option<u32>, E> {
        match value {
            None => Ok(None),
            Some(n) if (1..=max).contains(&n) => Ok(Some(n)),
            Some(n) => Err((self.fail)(
                span,
                format!("[{table}]: `{key}` must be 1 to {max}, not {n}"),
            )),
        }
    }

    fn percent(
        &self,
        span: std::ops::Range<usize>,
        table: &str,
        key: &str,
        value: Option<f64>,
    ) -> Result<Option<f64>, E> {
        match value {
            None => Ok(None),
            Some(p) if p > 0.0 && p <= 100.0 => Ok(Some(p)),
            Some(p) => Err((self.fail)(
                span,
                format!("[{table}]: `{key}` is a percentage in (0, 100], not {p}"),
            )),
        }
    }

    pub(crate) fn check(&self, file: &Spanned<ServicesFile>) -> Result<Services, E> {
        let f = file.get_ref();
        if f.orders_instances == 0 || f.orders_instances > ORDERS_INSTANCES_MAX {
            return Err((self.fail)(
                file.span(),
                format!(
                    "[services]: `orders_instances` must be 1 to {ORDERS_INSTANCES_MAX}, not {}",
                    f.orders_instances
                ),
            ));
        }
        let defaults = (
            GatewayFile::default(),
            RegistryFile::default(),
            BusFile::default(),
            InventoryFile::default(),
            OrdersFile::default(),
        );
        let gateway_table = table(&f.gateway, &defaults.0, file.span());
        let registry_table = table(&f.registry, &defaults.1, file.span());
        let bus_table = table(&f.bus, &defaults.2, file.span());
        let inventory_table = table(&f.inventory, &defaults.3, file.span());
        let (orders_file, orders_span) = table(&f.orders, &defaults.4, file.span());
        let (registry_file, span) = registry_table.clone();
        let t = "services.registry";
        let mut registry = RegistryConfig::default();
        if let Some(d) = self.duration_ms(
            span.clone(),
            t,
            "reap_interval_ms",
            registry_file.reap_interval_ms,
        )? {
            registry.reap_interval = d;
        }
        let registration_ttl = self.duration_ms(span.clone(), t, "ttl_ms", registry_file.ttl_ms)?;
        if registration_ttl.is_some_and(|ttl| ttl < Duration::from_millis(3)) {
            return Err((self.fail)(
                span,
                format!("[{t}]: `ttl_ms` must be at least 3 (heartbeats every TTL/3)"),
            ));
        }
        let deregister_critical_after = self.duration_ms(
            span.clone(),
            t,
            "deregister_critical_after_ms",
            registry_file.deregister_critical_after_ms,
        )?;
        if let Some(d) = deregister_critical_after {
            // The registry never reaps sooner than its floor: a scenario that asks for less
            // lowers the floor with it.
            registry.deregister_critical_after_min = registry.deregister_critical_after_min.min(d);
        }
        let gateway = self.check_gateway(gateway_table, registry_table)?;
        let bus = self.check_bus(bus_table)?;
        let inventory = self.check_inventory(inventory_table)?;
        let span = orders_span;
        let t = "services.orders";
        let orders = OrdersParams {
            lease_ttl_ms: match orders_file.lease_ttl_ms {
                Some(ms) if !(100..=60_000).contains(&ms) => {
                    return Err((self.fail)(
                        span,
                        format!(
                            "[{t}]: `lease_ttl_ms` must be 100 to 60000 (the motion service's longest lease), not {ms}"
                        ),
                    ));
                }
                other => other,
            },
            takeover_after: self.duration_ms(
                span.clone(),
                t,
                "takeover_after_ms",
                orders_file.takeover_after_ms,
            )?,
            heartbeat_interval: self.duration_ms(
                span.clone(),
                t,
                "heartbeat_ms",
                orders_file.heartbeat_ms,
            )?,
            call_timeout: self.duration_ms(
                span.clone(),
                t,
                "call_timeout_ms",
                orders_file.call_timeout_ms,
            )?,
            move_poll_interval: self.duration_ms(
                span.clone(),
                t,
                "move_poll_ms",
                orders_file.move_poll_ms,
            )?,
            driver_restart_delay: self.duration_ms(
                span.clone(),
                t,
                "driver_restart_ms",
                orders_file.driver_restart_ms,
            )?,
        };
        let defaults = services::orders::OrdersConfig::new("defaults", 1, Default::default());
        let heartbeat = orders
            .heartbeat_interval
            .unwrap_or(defaults.heartbeat_interval);
        let takeover = orders.takeover_after.unwrap_or(defaults.takeover_after);
        if heartbeat >= takeover {
            return Err((self.fail)(
                span,
                format!(
                    "[{t}]: `heartbeat_ms` ({} ms) must be below `takeover_after_ms` ({} ms), or a live owner is taken over",
                    heartbeat.as_millis(),
                    takeover.as_millis()
                ),
            ));
        }
        Ok(Services {
            orders_instances: f.orders_instances,
            gateway,
            registry,
            registration_ttl,
            deregister_critical_after,
            bus,
            journal: JournalConfig::default(),
            inventory,
            orders,
        })
    }

    fn check_gateway(
        &self,
        (g, span): (&GatewayFile, std::ops::Range<usize>),
        (registry_file, registry_span): (&RegistryFile, std::ops::Range<usize>),
    ) -> Result<GatewayConfig, E> {
        let t = "services.gateway";
        let mut config = GatewayConfig::new("registry");
        for key in &g.keys {
            let k = key.get_ref();
            if k.key.is_empty() || k.consumer.is_empty() {
                return Err((self.fail)(
                    key.span(),
                    format!("[[{t}.key]]: `key` and `consumer` must not be empty"),
                ));
            }
            if config.api_keys.iter().any(|other| other.key == k.key) {
                return Err((self.fail)(
                    key.span(),
                    format!("[[{t}.key]]: the key of `{}` is listed twice", k.consumer),
                ));
            }
            config.api_keys.push(ApiKeyConfig {
                key: k.key.clone(),
                consumer: k.consumer.clone(),
                role: match k.role {
                    RoleFile::Operator => Role::Operator,
                    RoleFile::Viewer => Role::Viewer,
                },
            });
        }
        let bucket = &mut config.rate_limit;
        if let Some(n) = self.count(
            span.clone(),
            t,
            "rate_limit_tokens_max",
            g.rate_limit_tokens_max,
            1_000_000,
        )? {
            bucket.tokens_max = n;
        }
        if let Some(n) = self.count(
            span.clone(),
            t,
            "rate_limit_tokens_per_fill",
            g.rate_limit_tokens_per_fill,
            1_000_000,
        )? {
            bucket.tokens_per_fill = n;
        }
        if let Some(d) = self.duration_ms(
            span.clone(),
            t,
            "rate_limit_fill_interval_ms",
            g.rate_limit_fill_interval_ms,
        )? {
            if d < services::resilience::rate_limit::FILL_INTERVAL_MIN {
                return Err((self.fail)(
                    span,
                    format!(
                        "[{t}]: `rate_limit_fill_interval_ms` must be at least {:?}",
                        services::resilience::rate_limit::FILL_INTERVAL_MIN
                    ),
                ));
            }
            bucket.fill_interval = d;
        }
        let up = &mut config.upstream;
        if let Some(d) =
            self.duration_ms(span.clone(), t, "attempt_timeout_ms", g.attempt_timeout_ms)?
        {
            up.attempt_timeout = d;
        }
        if let Some(n) = self.count(span.clone(), t, "attempts_max", g.attempts_max, 100)? {
            up.retry.attempts_max = n;
        }
        if let Some(d) =
            self.duration_ms(span.clone(), t, "backoff_ms_initial", g.backoff_ms_initial)?
        {
            up.retry.backoff_initial = d;
        }
        if let Some(d) = self.duration_ms(span.clone(), t, "backoff_ms_max", g.backoff_ms_max)? {
            up.retry.backoff_max = d;
        }
        if up.retry.backoff_max < up.retry.backoff_initial {
            return Err((self.fail)(
                span,
                format!("[{t}]: `backoff_ms_max` is below `backoff_ms_initial`"),
            ));
        }
        if let Some(d) = self.duration_ms(span.clone(), t, "deadline_ms", g.deadline_ms)? {
            up.retry.deadline = d;
        }
        if let Some(n) = self.count(
            span.clone(),
            t,
            "bulkhead_concurrency_max",
            g.bulkhead_concurrency_max,
            100_000,
        )? {
            up.bulkhead.concurrency_max = n;
        }
        match g.bulkhead_queue_max {
            Some(n) if n > 100_000 => {
                return Err((self.fail)(
                    span,
                    format!("[{t}]: `bulkhead_queue_max` must be 0 to 100000, not {n}"),
                ));
            }
            Some(n) => up.bulkhead.queue_max = n,
            None => {}
        }
        if let Some(d) = self.duration_ms(
            span.clone(),
            t,
            "bulkhead_queue_wait_ms",
            g.bulkhead_queue_wait_ms,
        )? {
            up.bulkhead.queue_wait_max = d;
        }
        let breaker = &mut up.breaker;
        if let Some(p) = self.percent(
            span.clone(),
            t,
            "breaker_failure_rate_percent",
            g.breaker_failure_rate_percent,
        )? {
            breaker.failure_rate_percent_threshold = p;
        }
        if let Some(p) = self.percent(
            span.clone(),
            t,
            "breaker_slow_call_rate_percent",
            g.breaker_slow_call_rate_percent,
        )? {
            breaker.slow_call_rate_percent_threshold = p;
        }
        if let Some(d) = self.duration_ms(
            span.clone(),
            t,
            "breaker_slow_call_ms",
            g.breaker_slow_call_ms,
        )? {
            breaker.slow_call_duration_threshold = d;
        }
        if let Some(d) = self.duration_ms(
            span.clone(),
            t,
            "breaker_open_wait_ms",
            g.breaker_open_wait_ms,
        )? {
            breaker.wait_in_open = d;
        }
        if let Some(d) = self.duration_ms(
            span.clone(),
            t,
            "breaker_half_open_wait_ms",
            g.breaker_half_open_wait_ms,
        )? {
            breaker.half_open_wait_max = d;
        }
        if let Some(n) = self.count(
            span.clone(),
            t,
            "breaker_half_open_calls",
            g.breaker_half_open_calls,
            10_000,
        )? {
            breaker.half_open_calls_permitted = n;
        }
        if let Some(n) = self.count(
            span.clone(),
            t,
            "breaker_window_calls",
            g.breaker_window_calls,
            10_000,
        )? {
            breaker.window_size_calls = n;
        }
        if let Some(n) = self.count(
            span.clone(),
            t,
            "breaker_calls_min",
            g.breaker_calls_min,
            10_000,
        )? {
            breaker.calls_min = n;
        }
        if breaker.calls_min > breaker.window_size_calls {
            return Err((self.fail)(
                span,
                format!(
                    "[{t}]: `breaker_calls_min` ({}) exceeds `breaker_window_calls` ({}): the breaker could never judge",
                    breaker.calls_min, breaker.window_size_calls
                ),
            ));
        }
        if let Some(d) = self.duration_ms(
            registry_span,
            "services.registry",
            "cache_ms",
            registry_file.cache_ms,
        )? {
            config.discovery.cache_ttl = d;
        }
        Ok(config)
    }

    fn check_bus(&self, (b, span): (&BusFile, std::ops::Range<usize>)) -> Result<BusConfig, E> {
        let t = "services.bus";
        let mut config = BusConfig::new(vec![TopicConfig {
            name: TopicName::new(services::motion::MOTION_EVENTS_TOPIC),
            groups: vec![GroupName::new(
                services::orders::consumer::MOTION_EVENTS_GROUP,
            )],
        }]);
        if let Some(waits) = &b.ack_wait_ms {
            if waits.is_empty() || waits.len() > 32 {
                return Err((self.fail)(
                    span,
                    format!("[{t}]: `ack_wait_ms` lists 1 to 32 waits"),
                ));
            }
            let mut resolved = Vec::new();
            for wait in waits {
                resolved.push(
                    self.duration_ms(span.clone(), t, "ack_wait_ms", Some(*wait))?
                        .expect("given"),
                );
            }
            config.ack_waits = resolved;
        }
        if let Some(n) = self.count(
            span.clone(),
            t,
            "max_deliver",
            b.max_deliver,
            services::bus::config::MAX_DELIVER_LIMIT,
        )? {
            config.max_deliver = n;
        }
        if let Some(d) =
            self.duration_s(span.clone(), t, "duplicate_window_s", b.duplicate_window_s)?
        {
            config.duplicate_window = d;
        }
        Ok(config)
    }

    fn check_inventory(
        &self,
        (inv, span): (&InventoryFile, std::ops::Range<usize>),
    ) -> Result<InventoryConfig, E> {
        let t = "services.inventory";
        if inv.parts.is_empty() {
            return Err((self.fail)(
                span,
                format!("[{t}]: list the parts in stock with `[[{t}.part]]` (name, stock)"),
            ));
        }
        let mut parts: Vec<(PartId, u64)> = Vec::new();
        for part in &inv.parts {
            let p = part.get_ref();
            if p.name.is_empty() || parts.iter().any(|(id, _)| id.as_str() == p.name) {
                return Err((self.fail)(
                    part.span(),
                    format!(
                        "[[{t}.part]]: part names are non-empty and unique, `{}` is not",
                        p.name
                    ),
                ));
            }
            parts.push((PartId::new(p.name.clone()), p.stock));
        }
        if parts.len() > services::inventory::config::PARTS_MAX {
            return Err((self.fail)(
                span,
                format!(
                    "[{t}]: at most {} parts",
                    services::inventory::config::PARTS_MAX
                ),
            ));
        }
        let mut config = InventoryConfig::new(parts);
        if let Some(d) = self.duration_s(span, t, "reservation_ttl_s", inv.reservation_ttl_s)? {
            config.reservation_ttl = d;
        }
        Ok(config)
    }

    /// Resolves `[workload.orders]` against the services and axes.
    pub(crate) fn check_orders(
        &self,
        file: &Spanned<OrderWorkloadFile>,
        services: &Services,
        axes: &[String],
        duration: Duration,
    ) -> Result<OrderWorkload, E> {
        let w = file.get_ref();
        let span = file.span();
        let t = "workload.orders";
        if w.count == 0 || w.count > ORDER_COUNT_MAX {
            return Err((self.fail)(
                span,
                format!(
                    "[{t}]: `count` must be 1 to {ORDER_COUNT_MAX}, not {}",
                    w.count
                ),
            ));
        }
        if !(w.from_s >= 0.0 && w.from_s.is_finite()) {
            return Err((self.fail)(
                span,
                format!("[{t}]: `from_s` must be at least 0, not {}", w.from_s),
            ));
        }
        let interval = self
            .duration_ms(span.clone(), t, "interval_ms", Some(w.interval_ms))?
            .expect("given");
        if w.quantity == 0 || w.quantity > services::inventory::protocol::QUANTITY_MAX {
            return Err((self.fail)(
                span,
                format!(
                    "[{t}]: `quantity` must be 1 to {}, not {}",
                    services::inventory::protocol::QUANTITY_MAX,
                    w.quantity
                ),
            ));
        }
        if w.parts.is_empty() {
            return Err((self.fail)(
                span,
                format!("[{t}]: `parts` names at least one part"),
            ));
        }
        for part in &w.parts {
            if !services
                .inventory
                .parts
                .iter()
                .any(|(id, _)| id.as_str() == part)
            {
                return Err((self.fail)(
                    span,
                    format!("[{t}]: part `{part}` is not in `[[services.inventory.part]]`"),
                ));
            }
        }
        if w.targets_deg.is_empty() || w.targets_deg.iter().any(|t| !t.is_finite()) {
            return Err((self.fail)(
                span,
                format!("[{t}]: `targets_deg` lists at least one finite target"),
            ));
        }
        let order_axes = match &w.axes {
            Some(named) => {
                for axis in named {
                    if !axes.contains(axis) {
                        return Err((self.fail)(
                            span,
                            format!("[{t}]: no axis `{axis}` (axes: {})", axes.join(", ")),
                        ));
                    }
                }
                named.clone()
            }
            None => axes.to_vec(),
        };
        if order_axes.is_empty() {
            return Err((self.fail)(
                span,
                format!("[{t}]: `axes` names at least one axis"),
            ));
        }
        if !services.gateway.api_keys.iter().any(|k| k.key == w.api_key) {
            return Err((self.fail)(
                span,
                format!("[{t}]: `api_key` is not one of `[[services.gateway.key]]`"),
            ));
        }
        let mut orders = Vec::new();
        let mut on_axis: BTreeMap<&str, usize> = BTreeMap::new();
        for n in 0..w.count {
            let at = Duration::from_secs_f64(w.from_s) + interval * n;
            if at >= duration {
                return Err((self.fail)(
                    span,
                    format!(
                        "[{t}]: order {n} would be placed at {:.3} s, after the run ends ({:.3} s): fewer orders or a shorter interval",
                        at.as_secs_f64(),
                        duration.as_secs_f64()
                    ),
                ));
            }
            let i = n as usize;
            let axis = &order_axes[i % order_axes.len()];
            let nth = on_axis.entry(axis).or_default();
            let target_deg = w.targets_deg[*nth % w.targets_deg.len()];
            *nth += 1;
            orders.push(PlannedOrder {
                at,
                part: w.parts[i % w.parts.len()].clone(),
                quantity: w.quantity,
                axis: axis.clone(),
                target_rad: target_deg.to_radians(),
            });
        }
        Ok(OrderWorkload {
            orders,
            api_key: w.api_key.clone(),
            attempts_max: self.count(span.clone(), t, "attempts_max", w.attempts_max, 1000)?,
            poll_interval: self.duration_ms(
                span.clone(),
                t,
                "poll_interval_ms",
                w.poll_interval_ms,
            )?,
            deadline: self.duration_ms(span, t, "deadline_ms", w.deadline_ms)?,
        })
    }

    /// Resolves `[[workload.request]]`.
    pub(crate) fn check_requests(
        &self,
        files: &[Spanned<RequestFile>],
        duration: Duration,
    ) -> Result<Vec<Request>, E> {
        if files.len() > REQUEST_COUNT_MAX {
            return Err((self.fail)(
                0..0,
                format!("at most {REQUEST_COUNT_MAX} `[[workload.request]]`"),
            ));
        }
        let mut requests = Vec::new();
        for file in files {
            let r = file.get_ref();
            let t = "[workload.request]";
            if !(r.at_s >= 0.0 && r.at_s < duration.as_secs_f64()) {
                return Err((self.fail)(
                    file.span(),
                    format!("[{t}]: `at_s` must be within the run, not {}", r.at_s),
                ));
            }
            let Some(method) = HttpMethod::parse(&r.method) else {
                return Err((self.fail)(
                    file.span(),
                    format!(
                        "[{t}]: `method` must be GET, POST, PUT or DELETE, not `{}`",
                        r.method
                    ),
                ));
            };
            if !r.path.starts_with('/') {
                return Err((self.fail)(
                    file.span(),
                    format!("[{t}]: `path` starts with `/`, not `{}`", r.path),
                ));
            }
            if let Some(body) = &r.body
                && let Err(error) = serde_json::from_str::<serde_json::Value>(body)
            {
                return Err((self.fail)(
                    file.span(),
                    format!("[{t}]: `body` is not JSON: {error}"),
                ));
            }
            requests.push(Request {
                at: Duration::from_secs_f64(r.at_s),
                method,
                path: r.path.clone(),
                api_key: r.api_key.clone(),
                body_json: r.body.clone(),
                idempotency_key: r.idempotency_key.clone(),
            });
        }
        requests.sort_by_key(|r| r.at);
        Ok(requests)
    }
}
