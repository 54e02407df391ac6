//! Tests of `run_edge`: the defence-in-depth checks on the in-memory network and the paused
//! clock, and the whole path of an order through the cell over TCP on 127.0.0.1 (registry,
//! gateway, the three edges, orders, journal, inventory, motion with a rigid-body drive), driven
//! by the HTTP workload client. The end-to-end test runs on wall-clock tokio time (real sockets
//! cannot be paused): retries are short and deadlines generous, and what is asserted (statuses,
//! phases, counts, stock) does not depend on timing.

use std::future::Future;
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

use super::{EdgeConfig, EdgeKind, run_edge};
use crate::gateway::{
    ApiKeyConfig, GatewayConfig, HttpCall, HttpMethod, HttpReply, Role, UpstreamRequest,
    UpstreamResponse, http_call, serve_gateway,
};
use crate::http_workload::{
    HttpWorkloadConfig, Placement, PlannedOrder, run_http_workload, workload_order_id,
};
use crate::inventory::{InventoryConfig, PartId, run_inventory};
use crate::journal::{JournalConfig, run_journal};
use crate::motion::{AxisName, run_motion};
use crate::orders::{OrdersConfig, run_orders};
use crate::registry::test_net::MemoryNet;
use crate::registry::{
    InstanceSpec, RegistrationConfig, RegistryConfig, run_registration, serve_registry,
};
use crate::retry::RetryPolicy;
use crate::rpc::RpcClient;
use crate::storage::TokioStorage;
use crate::testing::{
    PortReporting, RigidDrive, TempRoot, Trace, record_trace, test_motion_config,
};
use crate::transport::Endpoint;
use crate::transport::{TokioTransport, Transport};

const HOST: &str = "127.0.0.1";
const TIMEOUT: Duration = Duration::from_secs(10);

fn upstream_request(
    method: HttpMethod,
    path: &str,
    body_json: &str,
    role: Role,
) -> UpstreamRequest {
    UpstreamRequest {
        route: "orders".into(),
        method,
        path: path.into(),
        body_json: body_json.into(),
        idempotency_key: None,
        consumer: "mallory".into(),
        role,
    }
}

#[tokio::test(start_paused = true)]
async fn the_edge_traces_every_request_first_and_refuses_what_the_role_may_not_do() {
    // Goal: defence in depth and GW1's evidence: a viewer's POST that reached the edge (as if
    // the gateway had let it through) is refused 403 without any native call, and the request
    // is traced `upstream_received` before `upstream_refused`; a malformed order is 400 naming
    // the field; an unreachable native service is 503 with Retry-After (GW2). Method: an orders
    // edge on the in-memory network whose backend does not exist, called directly over rpc.
    let (trace, _recording) = record_trace();
    let net = MemoryNet::new("orders-1");
    let config = EdgeConfig::new(EdgeKind::Orders, Endpoint::new("orders-1", 1));
    let edge = run_edge(net.clone(), config);
    let client = async {
        let rpc = RpcClient::new(net.host("gateway"));
        let call = async |request: UpstreamRequest| -> UpstreamResponse {
            rpc.call("orders-1", super::ORDERS_EDGE_PORT, &request, TIMEOUT)
                .await
                .expect("the edge answers")
        };
        let body = r#"{"order_id":1,"part":"bolt","quantity":1,"axis":"x","target_rad":0}"#;
        let forbidden = call(upstream_request(
            HttpMethod::Post,
            "/orders",
            body,
            Role::Viewer,
        ))
        .await;
        assert_eq!(forbidden.status, 403);
        let malformed = call(upstream_request(
            HttpMethod::Post,
            "/orders",
            r#"{"order_id":1}"#,
            Role::Operator,
        ))
        .await;
        assert_eq!(malformed.status, 400);
        assert!(
            malformed.body_json.contains(r#""field":"part""#),
            "{}",
            malformed.body_json
        );
        let down = call(upstream_request(
            HttpMethod::Post,
            "/orders",
            body,
            Role::Operator,
        ))
        .await;
        assert_eq!((down.status, down.retry_after_s), (503, Some(1)));
    };
    tokio::select! {
        biased;
        result = edge => panic!("the edge stopped: {result:?}"),
        () = client => {}
    }

    let sequence: Vec<String> = trace
        .events()
        .into_iter()
        .filter(|event| event.name.starts_with("upstream_") || event.name == "edge_backend_failed")
        .map(
            |event| match event.field("reason").or(event.field("error")) {
                Some(reason) => format!("{} {reason}", event.name),
                None => event.name,
            },
        )
        .collect();
    assert_eq!(
        sequence,
        [
            "upstream_received",
            "upstream_refused role",
            "upstream_received",
            "upstream_refused invalid_field",
            "upstream_received",
            "edge_backend_failed connect",
            "upstream_answered",
        ]
    );
    let received = &trace.named("upstream_received")[0];
    assert_eq!(
        (
            received.field("consumer"),
            received.field("role"),
            received.field("method")
        ),
        (Some("mallory"), Some("viewer"), Some("POST"))
    );
}

/// Short retries and takeovers for wall-clock tests (as the orders service's own shell tests).
fn orders_config(journal: u16, inventory: u16, motion: u16) -> OrdersConfig {
    let local = |port| Endpoint::new(HOST, port);
    let mut config = OrdersConfig::new("orders-1", 1, [(AxisName::new("x"), local(motion))].into());
    config.port = 0;
    config.journal = local(journal);
    config.inventory = local(inventory);
    config.forward_retry = RetryPolicy {
        attempts_max: 10,
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(100),
        jitter_ratio: 0.2,
        deadline: Duration::from_secs(2),
    };
    config.must_retry = RetryPolicy {
        attempts_max: 50,
        deadline: Duration::from_secs(5),
        ..config.forward_retry
    };
    config.lease_ttl_ms = 5_000;
    config.heartbeat_interval = Duration::from_millis(150);
    config.takeover_after = Duration::from_millis(500);
    config.driver_restart_delay = Duration::from_millis(100);
    config.subscription_wait = Duration::from_millis(200);
    config
}

fn gateway_config(registry_port: u16) -> GatewayConfig {
    let mut config = GatewayConfig::new(HOST);
    config.port = 0;
    config.discovery.registry_port = registry_port;
    config.api_keys = vec![
        ApiKeyConfig {
            key: "op-secret".into(),
            consumer: "alice".into(),
            role: Role::Operator,
        },
        ApiKeyConfig {
            key: "view-secret".into(),
            consumer: "bob".into(),
            role: Role::Viewer,
        },
    ];
    // An operator move waits for the axis inside one attempt.
    config.upstream.attempt_timeout = Duration::from_secs(5);
    config
}

/// Keeps `service` registered at the edge that `edge` bound.
async fn register<T: Transport>(transport: T, registry_port: u16, service: &str, edge_port: u16) {
    let mut config = RegistrationConfig::new(
        HOST,
        InstanceSpec {
            service: service.into(),
            instance_id: format!("{service}-1"),
            host: HOST.into(),
            port: edge_port,
        },
    );
    config.registry_port = registry_port;
    config.ttl = Duration::from_millis(300);
    run_registration(transport, config).await;
}

/// Runs `future` beside `services` (each of which must run forever).
async fn beside<F: Future>(services: impl Future, future: F) -> F::Output {
    tokio::select! {
        biased;
        _ = services => panic!("a service stopped"),
        output = future => output,
    }
}

async fn get(gateway: u16, path: &str, key: &str) -> HttpReply {
    let call = HttpCall {
        api_key: Some(key.into()),
        ..HttpCall::new(HttpMethod::Get, path)
    };
    http_call(&TokioTransport::loopback(), HOST, gateway, &call, TIMEOUT)
        .await
        .expect("the gateway answers")
}

async fn operator_move(gateway: u16, key: &str, target_rad: f64) -> HttpReply {
    let call = HttpCall {
        api_key: Some("op-secret".into()),
        idempotency_key: Some(key.into()),
        body_json: Some(serde_json::json!({ "target_rad": target_rad }).to_string()),
        ..HttpCall::new(HttpMethod::Post, "/axes/x/move")
    };
    http_call(&TokioTransport::loopback(), HOST, gateway, &call, TIMEOUT)
        .await
        .expect("the gateway answers")
}

fn json(reply: &HttpReply) -> serde_json::Value {
    serde_json::from_str(&reply.body).unwrap_or_else(|_| panic!("not JSON: {}", reply.body))
}

fn moves_accepted(trace: &Trace, request_id: u64) -> usize {
    let request_id = request_id.to_string();
    trace
        .named("move_accepted")
        .iter()
        .filter(|event| event.field("request_id") == Some(&request_id))
        .count()
}

#[tokio::test]
async fn an_order_travels_from_http_through_the_cell_and_reads_back() {
    // Goal: the whole path of docs/DESIGN.md §6 outside the simulator: the HTTP workload client
    // places an order through the gateway, which finds the orders edge in the registry; the
    // edge starts the saga; the client polls it to `completed` through the same path. Then
    // reads through the inventory and axes edges show its effect (stock consumed, the axis at
    // the target, no lease left), an operator move through the axes edge completes, is not
    // repeated when re-sent with the same Idempotency-Key, and releases its lease; a viewer may
    // read but not move; unknown orders are 404. Method: every service on its own loopback
    // port, the edges registered under the upstream names the gateway routes to.
    let (trace, _recording) = record_trace();
    let root = TempRoot::new("edge-e2e");
    let (journal_t, inventory_t, motion_t) = (
        PortReporting::default(),
        PortReporting::default(),
        PortReporting::default(),
    );
    let drive = RigidDrive::new();
    let journal = run_journal(
        journal_t.clone(),
        TokioStorage::new(root.0.join("journal")),
        JournalConfig {
            port: 0,
            ..JournalConfig::default()
        },
    );
    let mut inventory_config = InventoryConfig::new(vec![(PartId::new("bolt"), 5)]);
    inventory_config.port = 0;
    let inventory = run_inventory(
        inventory_t.clone(),
        TokioStorage::new(root.0.join("inventory")),
        inventory_config,
    );
    let motion = run_motion(
        motion_t.clone(),
        TokioStorage::new(root.0.join("motion")),
        vec![(AxisName::new("x"), drive.clone())],
        test_motion_config(&["x"]),
    );
    let participants = async {
        tokio::select! {
            result = journal => panic!("journal stopped: {result:?}"),
            result = inventory => panic!("inventory stopped: {result:?}"),
            result = motion => panic!("motion stopped: {result:?}"),
        }
    };

    let cell = async {
        let (journal_port, inventory_port, motion_port) = (
            journal_t.port().await,
            inventory_t.port().await,
            motion_t.port().await,
        );
        let orders_t = PortReporting::default();
        let orders = run_orders(
            orders_t.clone(),
            orders_config(journal_port, inventory_port, motion_port),
            ChaCha8Rng::seed_from_u64(1),
        );
        let edge = |kind, port| {
            let transport = PortReporting::default();
            let mut config = EdgeConfig::new(kind, Endpoint::new(HOST, port));
            config.port = 0;
            (transport.clone(), run_edge(transport, config))
        };
        let registry_listener = TokioTransport::loopback().bind(0).await.unwrap();
        let registry_port = registry_listener.local_port().unwrap();
        let registry =
            serve_registry::<TokioTransport>(registry_listener, RegistryConfig::default());
        let gateway_listener = TokioTransport::loopback().bind(0).await.unwrap();
        let gateway_port = gateway_listener.local_port().unwrap();
        let gateway = serve_gateway(
            TokioTransport::loopback(),
            gateway_listener,
            gateway_config(registry_port),
            ChaCha8Rng::seed_from_u64(2),
        );
        let upper = async {
            let orders_port = orders_t.port().await;
            let (orders_edge_t, orders_edge) = edge(EdgeKind::Orders, orders_port);
            let (inventory_edge_t, inventory_edge) = edge(EdgeKind::Inventory, inventory_port);
            let (axes_edge_t, axes_edge) = edge(EdgeKind::Axes, motion_port);
            let registrations = async {
                let (orders_edge, inventory_edge, axes_edge) = (
                    orders_edge_t.port().await,
                    inventory_edge_t.port().await,
                    axes_edge_t.port().await,
                );
                let transport = TokioTransport::loopback();
                tokio::join!(
                    register(transport, registry_port, "orders", orders_edge),
                    register(transport, registry_port, "inventory", inventory_edge),
                    register(transport, registry_port, "motion", axes_edge),
                );
            };
            tokio::select! {
                result = orders_edge => panic!("orders edge stopped: {result:?}"),
                result = inventory_edge => panic!("inventory edge stopped: {result:?}"),
                result = axes_edge => panic!("axes edge stopped: {result:?}"),
                () = registrations => panic!("registrations stopped"),
            }
        };
        let services = async {
            tokio::select! {
                result = orders => panic!("orders stopped: {result:?}"),
                _ = registry => panic!("registry stopped"),
                _ = gateway => panic!("gateway stopped"),
                () = upper => {}
            }
        };
        beside(services, client(gateway_port)).await
    };
    beside(participants, cell).await;

    assert!(
        (drive.position_rad() - (-0.5)).abs() < 0.02,
        "the operator move ended at its target"
    );
    let order = workload_order_id(1, 1).0;
    assert_eq!(moves_accepted(&trace, order), 1, "the saga moved once");
    let operator = super::axes::operator_move_request_id("alice", "move-1");
    assert_eq!(
        moves_accepted(&trace, operator),
        1,
        "the re-sent operator move did not move again"
    );
    // Completed, re-sent, key reused (422), outside the limits (400): each took the lease.
    let moves = trace.named("operator_move");
    assert_eq!(moves.len(), 4);
    assert!(
        moves
            .iter()
            .all(|event| event.field("lease") == Some("released"))
    );
    assert!(
        trace
            .named("upstream_received")
            .iter()
            .all(|event| matches!(event.field("consumer"), Some("alice" | "bob"))),
        "only authenticated consumers reach an edge"
    );
}

/// The client's side of the end-to-end test (see its goal).
async fn client(gateway: u16) {
    let mut config = HttpWorkloadConfig::new("client-1", "op-secret");
    config.gateway = Endpoint::new(HOST, gateway);
    config.orders = vec![PlannedOrder {
        at: Duration::ZERO,
        order_id: workload_order_id(1, 1),
        part: PartId::new("bolt"),
        quantity: 2,
        axis: AxisName::new("x"),
        target_rad: 0.5,
    }];
    config.retry.backoff_initial = Duration::from_millis(20);
    config.retry.backoff_max = Duration::from_millis(200);
    config.poll_interval = Some(Duration::from_millis(50));
    config.poll_until = Duration::from_secs(20);
    config.call_timeout = TIMEOUT;
    let report = run_http_workload(
        TokioTransport::loopback(),
        config,
        ChaCha8Rng::seed_from_u64(3),
    )
    .await;
    let placed = &report.orders[0];
    assert_eq!(
        placed.placement,
        Placement::Accepted { duplicate: false },
        "{report:?}"
    );
    assert_eq!(placed.phase.as_deref(), Some("completed"));

    let order = get(
        gateway,
        &format!("/orders/{}", workload_order_id(1, 1)),
        "view-secret",
    )
    .await;
    assert_eq!(
        (order.status, json(&order)["phase"].as_str()),
        (200, Some("completed"))
    );
    assert_eq!(get(gateway, "/orders/999", "view-secret").await.status, 404);
    let stock = get(gateway, "/inventory/bolt", "view-secret").await;
    assert_eq!(stock.status, 200);
    assert_eq!(
        (
            json(&stock)["available"].as_u64(),
            json(&stock)["consumed"].as_u64()
        ),
        (Some(3), Some(2))
    );
    assert_eq!(
        get(gateway, "/inventory/nut", "view-secret").await.status,
        404
    );
    let axis = get(gateway, "/axes/x", "view-secret").await;
    assert_eq!(axis.status, 200);
    assert!(
        json(&axis)["lease"].is_null(),
        "the saga released its lease: {}",
        axis.body
    );
    let position = json(&axis)["position_rad"].as_f64().unwrap();
    assert!(
        (position - 0.5).abs() < 0.02,
        "the order moved the axis: {position}"
    );

    let viewer_move = HttpCall {
        api_key: Some("view-secret".into()),
        idempotency_key: Some("v".into()),
        body_json: Some(r#"{"target_rad":1}"#.into()),
        ..HttpCall::new(HttpMethod::Post, "/axes/x/move")
    };
    let refused = http_call(
        &TokioTransport::loopback(),
        HOST,
        gateway,
        &viewer_move,
        TIMEOUT,
    )
    .await
    .unwrap();
    assert_eq!(refused.status, 403);

    let moved = operator_move(gateway, "move-1", -0.5).await;
    assert_eq!(moved.status, 200, "{}", moved.body);
    assert_eq!(json(&moved)["outcome"], "completed");
    let again = operator_move(gateway, "move-1", -0.5).await;
    assert_eq!(
        (again.status, json(&again)["outcome"].as_str()),
        (200, Some("completed"))
    );
    let reused = operator_move(gateway, "move-1", 1.0).await;
    assert_eq!(reused.status, 422, "{}", reused.body);
    let outside = operator_move(gateway, "move-2", 10.0).await;
    assert_eq!(
        (outside.status, json(&outside)["field"].as_str()),
        (400, Some("target_rad"))
    );
    let axis = get(gateway, "/axes/x", "view-secret").await;
    assert!(
        json(&axis)["lease"].is_null(),
        "the operator released its lease: {}",
        axis.body
    );
}
