//! What runs on each turmoil host: the cell's services, wired to the simulator's transport,
//! storage and fieldbus.
//!
//! Each `register_*` builds the host's configuration once from the scenario and registers a
//! closure that turmoil calls at every (re)start: a restarted host starts from its durable state
//! on its simulated disk, with fresh in-memory state, as a real process would.

use std::rc::Rc;

use rand_chacha::ChaCha8Rng;
use services::bus::BUS_PORT;
use services::bus::run_bus;
use services::client::{ClientConfig, PlannedMove, run_client};
use services::edge::{
    AXES_EDGE_PORT, EdgeConfig, EdgeKind, INVENTORY_EDGE_PORT, ORDERS_EDGE_PORT, run_edge,
};
use services::gateway::run_gateway;
use services::http_workload::{
    HttpWorkloadConfig, PlannedOrder as HttpPlannedOrder, PlannedRequest, run_http_workload,
    workload_order_id,
};
use services::inventory::{INVENTORY_PORT, PartId, run_inventory};
use services::journal::run_journal;
use services::motion::MOTION_PORT;
use services::motion::{AxisName, MotionConfig, run_motion};
use services::orders::{ORDERS_PORT, run_orders};
use services::registry::run_registry;
use services::registry::{InstanceSpec, RegistrationConfig, run_registration};
use services::retry::RetryPolicy;
use services::transport::Endpoint;

use crate::fieldbus::SimDriveLink;
use crate::net::{SharedDisk, TurmoilStorage, TurmoilTransport};
use crate::scenario::Scenario;
use crate::scenario::services::Services;

/// Motion host `name`: the motion service with its drives' fieldbus links and, in a cell with
/// the order path, its bus (motion events), its axes edge adapter and its registration.
pub(crate) fn register_motion(
    sim: &mut turmoil::Sim<'_>,
    scenario: &Scenario,
    name: &str,
    disk: SharedDisk,
    links: Vec<(String, SimDriveLink)>,
    bus_jitter_seed: u64,
) {
    let axes: Vec<(AxisName, control::AxisConfig)> = links
        .iter()
        .map(|(axis, _)| {
            let axis = scenario
                .axis(axis)
                .expect("links are built from the scenario's axes");
            (AxisName::new(axis.name.clone()), axis.control_config())
        })
        .collect();
    let first = scenario.axis(&links[0].0).expect("a motion host has axes");
    let mut config = MotionConfig::new(axes);
    config.control_period = first.control_period;
    config.in_position_tolerance_rad = first.tolerance_rad;
    config.skip_fencing_check = scenario.planted.motion_skips_fencing;
    config.planted_moves_twice = scenario.planted.motion_moves_twice;
    let cell = scenario.services.as_ref().map(|services| {
        config.bus = Some(Endpoint::new("bus", BUS_PORT));
        config.bus_jitter_seed = bus_jitter_seed;
        let mut edge = EdgeConfig::new(EdgeKind::Axes, Endpoint::new(name, MOTION_PORT));
        edge.axis_backends = scenario
            .axes
            .iter()
            .map(|a| {
                (
                    AxisName::new(a.name.clone()),
                    Endpoint::new(a.motion_host.clone(), MOTION_PORT),
                )
            })
            .collect();
        (edge, registration(services, "motion", name, AXES_EDGE_PORT))
    });
    let config = Rc::new(config);
    let links = Rc::new(links);
    let cell = Rc::new(cell);
    sim.host(name, move || {
        let config = (*config).clone();
        let links: Vec<(AxisName, SimDriveLink)> = links
            .iter()
            .map(|(axis, link)| (AxisName::new(axis.clone()), link.clone()))
            .collect();
        let storage = TurmoilStorage::new(disk.clone());
        let cell = (*cell).clone();
        run_service(
            "motion",
            run_motion(TurmoilTransport, storage, links, config),
            async move {
                match cell {
                    Some((edge, registration)) => companions(edge, registration).await,
                    None => std::future::pending().await,
                }
            },
        )
    });
}

/// The workload client `client-<k>`: the moves of the axes assigned to it (`Scenario::client_of`),
/// with the scenario's retry policy and its own jitter stream, and its share of the orders and
/// raw requests sent through the gateway (dealt to the clients in turn), with a second stream.
pub(crate) fn register_client(
    sim: &mut turmoil::Sim<'_>,
    scenario: &Scenario,
    k: u32,
    name: &str,
    rng: ChaCha8Rng,
    http_rng: ChaCha8Rng,
) {
    let moves: Vec<PlannedMove> = scenario
        .moves
        .iter()
        .filter(|m| scenario.client_of(&m.axis) == k)
        .map(|m| PlannedMove {
            axis: AxisName::new(m.axis.clone()),
            target_rad: m.target_rad,
            at: m.at,
        })
        .collect();
    let motion_host = moves.first().map(|first| {
        scenario
            .axis(first.axis.as_str())
            .expect("moves name known axes")
            .motion_host
            .clone()
    });
    let moves_config = motion_host.map(|motion_host| {
        let r = &scenario.retry;
        let mut config = ClientConfig::new(k, motion_host, moves, rng);
        config.retry = RetryPolicy {
            attempts_max: r.attempts_max,
            backoff_initial: r.backoff_initial,
            backoff_max: r.backoff_max,
            jitter_ratio: r.jitter,
            deadline: r.deadline,
        };
        config.attempt_timeout = r.timeout;
        config
    });
    let http_config = http_workload(scenario, k, name);
    let moves_config = Rc::new(moves_config);
    let http = Rc::new(http_config.map(|c| (c, http_rng)));
    sim.host(name, move || {
        let moves_config = (*moves_config).clone();
        let http = (*http).clone();
        async move {
            let moves = async {
                if let Some(config) = moves_config {
                    run_client(TurmoilTransport, config).await;
                }
            };
            let http = async {
                if let Some((config, rng)) = http {
                    run_http_workload(TurmoilTransport, config, rng).await;
                }
            };
            tokio::join!(moves, http);
            // The workload is done; the host idles so that a late fault can still name it.
            std::future::pending::<()>().await;
            Ok(())
        }
    });
}

/// Client `k`'s share of `[workload.orders]` and `[[workload.request]]`, if it has any.
fn http_workload(scenario: &Scenario, k: u32, name: &str) -> Option<HttpWorkloadConfig> {
    let clients = scenario.clients as usize;
    let dealt = |i: usize| i % clients == (k as usize - 1);
    let index = u16::try_from(k).expect("clients are few");
    let workload = scenario.order_workload.as_ref();
    let orders: Vec<HttpPlannedOrder> = workload
        .map(|w| {
            w.orders
                .iter()
                .enumerate()
                .filter(|(i, _)| dealt(*i))
                .enumerate()
                .map(|(n, (_, o))| HttpPlannedOrder {
                    at: o.at,
                    order_id: workload_order_id(index, n as u32),
                    part: PartId::new(o.part.clone()),
                    quantity: o.quantity,
                    axis: AxisName::new(o.axis.clone()),
                    target_rad: o.target_rad,
                })
                .collect()
        })
        .unwrap_or_default();
    let probes: Vec<PlannedRequest> = scenario
        .requests
        .iter()
        .enumerate()
        .filter(|(i, _)| dealt(*i))
        .map(|(_, r)| PlannedRequest {
            at: r.at,
            method: r.method,
            path: r.path.clone(),
            body_json: r.body_json.clone(),
            api_key: r.api_key.clone(),
            idempotency_key: r.idempotency_key.clone(),
        })
        .collect();
    if orders.is_empty() && probes.is_empty() {
        return None;
    }
    let api_key = workload.map_or_else(String::new, |w| w.api_key.clone());
    let mut config = HttpWorkloadConfig::new(name, api_key);
    config.orders = orders;
    config.probes = probes;
    if let Some(w) = workload {
        config.poll_interval = w.poll_interval;
        if let Some(deadline) = w.deadline {
            config.retry.deadline = deadline;
        }
        if let Some(attempts) = w.attempts_max {
            config.retry.attempts_max = attempts;
        }
    }
    config.poll_until = scenario.duration;
    Some(config)
}

/// Runs a host's service until it ends, beside its companions (its edge adapter, its
/// registration in the registry), which end with it: a process whose service died stops
/// heartbeating, and the registry turns it critical, as it would a real one. A service that
/// cannot start (its port, a damaged durable state it refuses to trust) is traced
/// `service_exited`; the host stays down until the world restarts it — a finding for the
/// oracles, not a harness failure.
async fn run_service<E: std::fmt::Display>(
    service: &'static str,
    main: impl Future<Output = Result<(), E>>,
    companions: impl Future<Output = ()>,
) -> turmoil::Result {
    tokio::select! {
        biased;
        result = main => {
            if let Err(error) = result {
                tracing::error!(event = "service_exited", service, error = %error);
            }
        }
        () = companions => {}
    }
    Ok(())
}

/// The registry host.
pub(crate) fn register_registry(sim: &mut turmoil::Sim<'_>, scenario: &Scenario) {
    let services = scenario.services.as_ref().expect("a cell with services");
    let mut config = services.registry;
    config.planted_discovers_critical = scenario.planted.registry_discovers_critical;
    sim.host("registry", move || {
        run_service(
            "registry",
            async move { run_registry(TurmoilTransport, config).await.map(|_| ()) },
            std::future::pending(),
        )
    });
}

/// The journal host, its log on its simulated disk.
pub(crate) fn register_journal(sim: &mut turmoil::Sim<'_>, scenario: &Scenario, disk: SharedDisk) {
    let services = scenario.services.as_ref().expect("a cell with services");
    let mut config = services.journal.clone();
    config.ack_before_sync = scenario.planted.journal_acks_before_sync;
    let config = Rc::new(config);
    sim.host("journal", move || {
        let config = (*config).clone();
        let storage = TurmoilStorage::new(disk.clone());
        run_service(
            "journal",
            run_journal(TurmoilTransport, storage, config),
            std::future::pending(),
        )
    });
}

/// The bus host, its log on its simulated disk.
pub(crate) fn register_bus(sim: &mut turmoil::Sim<'_>, scenario: &Scenario, disk: SharedDisk) {
    let services = scenario.services.as_ref().expect("a cell with services");
    let mut config = services.bus.clone();
    config.drop_after_max_deliver = scenario.planted.bus_drops_after_max_deliver;
    let config = Rc::new(config);
    sim.host("bus", move || {
        let config = (*config).clone();
        let storage = TurmoilStorage::new(disk.clone());
        run_service(
            "bus",
            run_bus(TurmoilTransport, storage, config),
            std::future::pending(),
        )
    });
}

/// The gateway host: the cell's only public entry.
pub(crate) fn register_gateway(sim: &mut turmoil::Sim<'_>, scenario: &Scenario, rng: ChaCha8Rng) {
    let services = scenario.services.as_ref().expect("a cell with services");
    let planted = &scenario.planted;
    let mut config = services.gateway.clone();
    config.planted_skips_authorisation = planted.gateway_skips_authorisation;
    config.planted_omits_retry_after = planted.gateway_omits_retry_after;
    config.rate_limit.planted_over_admits = planted.rate_limit_over_admits;
    config.discovery.planted_cache_ignores_instance_ttl = planted.gateway_cache_ignores_ttl;
    for upstream in
        std::iter::once(&mut config.upstream).chain(config.upstream_overrides.values_mut())
    {
        upstream.planted_retries_unsafe = planted.gateway_retries_unsafe;
        upstream.breaker.planted_admits_while_open = planted.breaker_admits_while_open;
        upstream.bulkhead.planted_ignores_limit = planted.bulkhead_ignores_limit;
    }
    let config = Rc::new(config);
    sim.host("gateway", move || {
        let config = (*config).clone();
        let rng = rng.clone();
        run_service(
            "gateway",
            async move { run_gateway(TurmoilTransport, config, rng).await.map(|_| ()) },
            std::future::pending(),
        )
    });
}

/// The inventory host, its stock on its simulated disk.
pub(crate) fn register_inventory(
    sim: &mut turmoil::Sim<'_>,
    services: &Services,
    disk: SharedDisk,
) {
    let config = Rc::new(services.inventory.clone());
    let registration = Rc::new(registration(
        services,
        "inventory",
        "inventory",
        INVENTORY_EDGE_PORT,
    ));
    sim.host("inventory", move || {
        let config = (*config).clone();
        let registration = (*registration).clone();
        let storage = TurmoilStorage::new(disk.clone());
        run_service(
            "inventory",
            run_inventory(TurmoilTransport, storage, config),
            companions(
                EdgeConfig::new(
                    EdgeKind::Inventory,
                    Endpoint::new("inventory", INVENTORY_PORT),
                ),
                registration,
            ),
        )
    });
}

/// Orders instance `orders-<k>`: the saga orchestrator (no disk: its state is its journal
/// streams), its edge adapter and its registration.
pub(crate) fn register_orders(
    sim: &mut turmoil::Sim<'_>,
    scenario: &Scenario,
    k: u32,
    rng: ChaCha8Rng,
) {
    let services = scenario.services.as_ref().expect("a cell with services");
    let name = format!("orders-{k}");
    let motion = scenario
        .axes
        .iter()
        .map(|a| {
            (
                AxisName::new(a.name.clone()),
                Endpoint::new(a.motion_host.clone(), MOTION_PORT),
            )
        })
        .collect();
    let mut config = services.orders.clone();
    config.instance = name.clone();
    config.instance_index = u16::try_from(k).expect("orders instances are few");
    config.motion = motion;
    config.bus = Some(Endpoint::new("bus", BUS_PORT));
    let config = Rc::new(config);
    let registration = Rc::new(registration(services, "orders", &name, ORDERS_EDGE_PORT));
    let host = name.clone();
    sim.host(name.as_str(), move || {
        let config = (*config).clone();
        let registration = (*registration).clone();
        let rng = rng.clone();
        run_service(
            "orders",
            run_orders(TurmoilTransport, config, rng),
            companions(
                EdgeConfig::new(EdgeKind::Orders, Endpoint::new(host.clone(), ORDERS_PORT)),
                registration,
            ),
        )
    });
}

/// How an instance registers: as `service`, reached at its edge adapter's port.
fn registration(services: &Services, service: &str, host: &str, port: u16) -> RegistrationConfig {
    let mut config = services.registration.clone();
    config.instance = InstanceSpec {
        service: service.to_owned(),
        instance_id: host.to_owned(),
        host: host.to_owned(),
        port,
    };
    config
}

/// An upstream's companions: its edge adapter (the gateway's way in) and its registration.
async fn companions(edge: EdgeConfig, registration: RegistrationConfig) {
    tokio::select! {
        result = run_edge(TurmoilTransport, edge) => {
            let Err(error) = result;
            tracing::error!(event = "service_exited", service = "edge", error = %error);
        }
        _ = run_registration(TurmoilTransport, registration) => {}
    }
}
