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
use services::orders::OrdersConfig;
use services::registry::{InstanceSpec, RegistrationConfig, RegistryConfig};
use toml::Spanned;

use super::keys::{Count, KeyRow, Millis, Percent, Seconds, Unit, service_keys};

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

service_keys! {
    /// `[services.gateway]`. Keys name the setting of the component they set (Envoy's local rate
    /// limit, resilience4j's breaker, its bulkhead).
    GatewayFile in "services.gateway" {
        rate_limit_tokens_max: Count<1, 1_000_000> => gateway.rate_limit.tokens_max,
        rate_limit_tokens_per_fill: Count<1, 1_000_000> => gateway.rate_limit.tokens_per_fill,
        rate_limit_fill_interval_ms: Millis => gateway.rate_limit.fill_interval,
        attempt_timeout_ms: Millis => gateway.upstream.attempt_timeout,
        attempts_max: Count<1, 100> => gateway.upstream.retry.attempts_max,
        backoff_ms_initial: Millis => gateway.upstream.retry.backoff_initial,
        backoff_ms_max: Millis => gateway.upstream.retry.backoff_max,
        deadline_ms: Millis => gateway.upstream.retry.deadline,
        bulkhead_concurrency_max: Count<1, 100_000> => gateway.upstream.bulkhead.concurrency_max,
        bulkhead_queue_max: Count<0, 100_000> => gateway.upstream.bulkhead.queue_max,
        bulkhead_queue_wait_ms: Millis => gateway.upstream.bulkhead.queue_wait_max,
        breaker_failure_rate_percent: Percent
            => gateway.upstream.breaker.failure_rate_percent_threshold,
        breaker_slow_call_rate_percent: Percent
            => gateway.upstream.breaker.slow_call_rate_percent_threshold,
        breaker_slow_call_ms: Millis => gateway.upstream.breaker.slow_call_duration_threshold,
        breaker_open_wait_ms: Millis => gateway.upstream.breaker.wait_in_open,
        breaker_half_open_wait_ms: Millis => gateway.upstream.breaker.half_open_wait_max,
        breaker_half_open_calls: Count<1, 10_000>
            => gateway.upstream.breaker.half_open_calls_permitted,
        breaker_window_calls: Count<1, 10_000> => gateway.upstream.breaker.window_size_calls,
        breaker_calls_min: Count<1, 10_000> => gateway.upstream.breaker.calls_min,
    }
    extra {
        #[serde(default, rename = "key")]
        keys: Vec<Spanned<KeyFile>>,
    }
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

service_keys! {
    /// `[services.registry]`: the registry's own settings, every instance's registration (its
    /// check TTL, heartbeats every TTL/3, and its critical period) and the gateway's discovery
    /// cache.
    RegistryFile in "services.registry" {
        reap_interval_ms: Millis => registry.reap_interval,
        ttl_ms: Millis => registration.ttl,
        deregister_critical_after_ms: Millis => registration.deregister_critical_after,
        cache_ms: Millis => gateway.discovery.cache_ttl,
    }
}

service_keys! {
    /// `[services.bus]`.
    BusFile in "services.bus" {
        max_deliver: Count<1, { services::bus::config::MAX_DELIVER_LIMIT }> => bus.max_deliver,
        duplicate_window_s: Seconds => bus.duplicate_window,
    }
    extra {
        /// Ack waits of the first, second, ... delivery (the last repeats).
        ack_wait_ms: Option<Vec<f64>>,
    }
}

service_keys! {
    /// `[services.inventory]`.
    InventoryFile in "services.inventory" {
        reservation_ttl_s: Seconds => inventory.reservation_ttl,
    }
    extra {
        #[serde(default, rename = "part")]
        parts: Vec<Spanned<PartFile>>,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PartFile {
    pub(crate) name: String,
    pub(crate) stock: u64,
}

service_keys! {
    /// `[services.orders]`: every orders instance's settings (`services::orders::OrdersConfig`).
    OrdersFile in "services.orders" {
        lease_ttl_ms: Count<100, 60_000> => orders.lease_ttl_ms
            ["the motion service's longest lease"],
        takeover_after_ms: Millis => orders.takeover_after,
        heartbeat_ms: Millis => orders.heartbeat_interval,
        call_timeout_ms: Millis => orders.call_timeout,
        move_poll_ms: Millis => orders.move_poll_interval,
        driver_restart_ms: Millis => orders.driver_restart_delay,
    }
}

/// Every key of every `[services.*]` table, in the order each table applies them.
pub fn key_rows() -> Vec<KeyRow> {
    [
        GatewayFile::rows(),
        RegistryFile::rows(),
        BusFile::rows(),
        InventoryFile::rows(),
        OrdersFile::rows(),
    ]
    .concat()
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

/// The order path of the cell, resolved into the services' configurations: every key of the
/// file is applied here and only here. Host names are the cell's (docs/DESIGN.md §6): `gateway`,
/// `registry`, `bus`, `journal`, `inventory`, `orders-<k>`. `registration` and `orders` are what
/// every instance shares; `hosts.rs` fills in who each one is.
#[derive(Debug, Clone)]
pub struct Services {
    pub orders_instances: u32,
    pub gateway: GatewayConfig,
    pub registry: RegistryConfig,
    /// Every registered instance's TTL and critical period; `instance` is a placeholder.
    pub registration: RegistrationConfig,
    pub bus: BusConfig,
    pub journal: JournalConfig,
    pub inventory: InventoryConfig,
    /// Every orders instance's settings; `instance`, `instance_index`, `motion` and `bus` are
    /// placeholders.
    pub orders: OrdersConfig,
}

impl Services {
    /// Every service at its own defaults, with the inventory's `parts`.
    fn defaults(orders_instances: u32, parts: Vec<(PartId, u64)>) -> Services {
        let placeholder = InstanceSpec {
            service: String::new(),
            instance_id: String::new(),
            host: String::new(),
            port: 0,
        };
        Services {
            orders_instances,
            gateway: GatewayConfig::new("registry"),
            registry: RegistryConfig::default(),
            registration: RegistrationConfig::new("registry", placeholder),
            bus: BusConfig::new(vec![TopicConfig {
                name: TopicName::new(services::motion::MOTION_EVENTS_TOPIC),
                groups: vec![GroupName::new(
                    services::orders::consumer::MOTION_EVENTS_GROUP,
                )],
            }]),
            journal: JournalConfig::default(),
            inventory: InventoryConfig::new(parts),
            orders: OrdersConfig::new("orders", 0, BTreeMap::new()),
        }
    }
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
        value
            .map(|ms| {
                Millis::resolve(ms)
                    .map_err(|m| (self.fail)(span, format!("[{table}]: `{key}` {m}")))
            })
            .transpose()
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
        let (gateway, gateway_span) = table(&f.gateway, &defaults.0, file.span());
        let (registry, registry_span) = table(&f.registry, &defaults.1, file.span());
        let (bus, bus_span) = table(&f.bus, &defaults.2, file.span());
        let (inventory, inventory_span) = table(&f.inventory, &defaults.3, file.span());
        let (orders, orders_span) = table(&f.orders, &defaults.4, file.span());
        let parts = self.check_parts(inventory, inventory_span.clone())?;
        let mut services = Services::defaults(f.orders_instances, parts);
        // Every scalar key, row by row (`keys.rs`); then what the rows cannot say.
        let at = |span: std::ops::Range<usize>| move |message: String| (self.fail)(span, message);
        gateway
            .apply(&mut services)
            .map_err(at(gateway_span.clone()))?;
        registry
            .apply(&mut services)
            .map_err(at(registry_span.clone()))?;
        bus.apply(&mut services).map_err(at(bus_span.clone()))?;
        inventory.apply(&mut services).map_err(at(inventory_span))?;
        orders
            .apply(&mut services)
            .map_err(at(orders_span.clone()))?;
        self.check_gateway(gateway, gateway_span, &mut services.gateway)?;
        self.check_registry(registry, registry_span, &mut services)?;
        if let Some(waits) = &bus.ack_wait_ms {
            services.bus.ack_waits = self.check_ack_waits(waits, bus_span)?;
        }
        let t = OrdersFile::TABLE;
        let (heartbeat, takeover) = (
            services.orders.heartbeat_interval,
            services.orders.takeover_after,
        );
        if heartbeat >= takeover {
            return Err((self.fail)(
                orders_span,
                format!(
                    "[{t}]: `heartbeat_ms` ({} ms) must be below `takeover_after_ms` ({} ms), or a live owner is taken over",
                    heartbeat.as_millis(),
                    takeover.as_millis()
                ),
            ));
        }
        Ok(services)
    }

    /// The gateway's API keys and the checks across its keys.
    fn check_gateway(
        &self,
        g: &GatewayFile,
        span: std::ops::Range<usize>,
        config: &mut GatewayConfig,
    ) -> Result<(), E> {
        let t = GatewayFile::TABLE;
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
        let fill_interval_min = services::resilience::rate_limit::FILL_INTERVAL_MIN;
        if config.rate_limit.fill_interval < fill_interval_min {
            return Err((self.fail)(
                span,
                format!(
                    "[{t}]: `rate_limit_fill_interval_ms` must be at least {fill_interval_min:?}"
                ),
            ));
        }
        let retry = &config.upstream.retry;
        if retry.backoff_max < retry.backoff_initial {
            return Err((self.fail)(
                span,
                format!("[{t}]: `backoff_ms_max` is below `backoff_ms_initial`"),
            ));
        }
        let breaker = &config.upstream.breaker;
        if breaker.calls_min > breaker.window_size_calls {
            return Err((self.fail)(
                span,
                format!(
                    "[{t}]: `breaker_calls_min` ({}) exceeds `breaker_window_calls` ({}): the breaker could never judge",
                    breaker.calls_min, breaker.window_size_calls
                ),
            ));
        }
        Ok(())
    }

    /// The checks across the registry's keys.
    fn check_registry(
        &self,
        r: &RegistryFile,
        span: std::ops::Range<usize>,
        services: &mut Services,
    ) -> Result<(), E> {
        let t = RegistryFile::TABLE;
        if r.ttl_ms.is_some() && services.registration.ttl < Duration::from_millis(3) {
            return Err((self.fail)(
                span,
                format!("[{t}]: `ttl_ms` must be at least 3 (heartbeats every TTL/3)"),
            ));
        }
        if r.deregister_critical_after_ms.is_some() {
            // The registry never reaps sooner than its floor: a scenario that asks for less
            // lowers the floor with it.
            let registry = &mut services.registry;
            registry.deregister_critical_after_min = registry
                .deregister_critical_after_min
                .min(services.registration.deregister_critical_after);
        }
        Ok(())
    }

    fn check_ack_waits(
        &self,
        waits: &[f64],
        span: std::ops::Range<usize>,
    ) -> Result<Vec<Duration>, E> {
        let t = BusFile::TABLE;
        if waits.is_empty() || waits.len() > 32 {
            return Err((self.fail)(
                span,
                format!("[{t}]: `ack_wait_ms` lists 1 to 32 waits"),
            ));
        }
        waits
            .iter()
            .map(|&wait| {
                Millis::resolve(wait)
                    .map_err(|m| (self.fail)(span.clone(), format!("[{t}]: `ack_wait_ms` {m}")))
            })
            .collect()
    }

    fn check_parts(
        &self,
        inv: &InventoryFile,
        span: std::ops::Range<usize>,
    ) -> Result<Vec<(PartId, u64)>, E> {
        let t = InventoryFile::TABLE;
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
        Ok(parts)
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

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: README's table of the order path documents every key the file accepts, in the row
    // of its table (the rows are the one list of keys; README is checked against it, not copied
    // from it). Method: find each table's row in README and look for each key in it.
    #[test]
    fn readme_documents_every_service_key() {
        let readme = include_str!("../../../README.md");
        let rows = key_rows();
        assert!(rows.len() > 30, "every table has its rows");
        for row in rows {
            let line = readme
                .lines()
                .find(|l| l.starts_with(&format!("| `[{}]` |", row.table)))
                .unwrap_or_else(|| panic!("README has no row for [{}]", row.table));
            assert!(
                line.contains(&format!("`{}`", row.key)),
                "README's [{}] row does not document `{}` ({} in {}, sets {})",
                row.table,
                row.key,
                row.unit,
                row.range,
                row.field
            );
        }
    }

    // Goal: a row's reason reaches its error message, after the value refused.
    #[test]
    fn a_rows_reason_is_part_of_its_message() {
        let file = OrdersFile {
            lease_ttl_ms: Some(70_000),
            ..OrdersFile::default()
        };
        let mut services = Services::defaults(1, vec![(PartId::new("bolt"), 1)]);
        assert_eq!(
            file.apply(&mut services),
            Err("[services.orders]: `lease_ttl_ms` must be 100 to 60000, not 70000 (the motion service's longest lease)".to_owned())
        );
        let file = OrdersFile {
            lease_ttl_ms: Some(500),
            takeover_after_ms: Some(2500.0),
            ..OrdersFile::default()
        };
        file.apply(&mut services).expect("in range");
        assert_eq!(services.orders.lease_ttl_ms, 500);
        assert_eq!(services.orders.takeover_after, Duration::from_millis(2500));
    }
}
