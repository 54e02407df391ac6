//! End-to-end tests of `run_orders` with the real journal, inventory and motion shells over
//! TCP on 127.0.0.1, `TokioStorage` in a temporary directory and a rigid-body drive: orders
//! complete, compensate, survive an orchestrator crash, and move to the other instance when
//! theirs dies. Wall-clock tokio time (real sockets cannot be paused): retries and takeovers
//! are short, deadlines generous, and what is asserted (outcomes, counts, stock) does not
//! depend on timing.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

use super::config::OrdersConfig;
use super::protocol::{OrderId, OrderRefusal, OrderSpec, OrdersRequest, OrdersResponse, SagaView};
use super::run_orders;
use crate::inventory::{InventoryConfig, PartId, run_inventory};
use crate::journal::{JournalConfig, run_journal};
use crate::motion::{AxisName, MotionRequest, MotionResponse, run_motion};
use crate::retry::RetryPolicy;
use crate::rpc::RpcClient;
use crate::storage::TokioStorage;
use crate::testing::{
    PortReporting, RigidDrive, TempRoot, Trace, record_trace, test_motion_config, until_traced,
};
use crate::transport::Endpoint;
use crate::transport::{TokioListener, TokioTransport, Transport};

const TIMEOUT: Duration = Duration::from_secs(5);

/// The participants of the orders service, each on its own port.
struct TestCell {
    root: TempRoot,
    journal: PortReporting,
    inventory: PortReporting,
    motion: PortReporting,
    drive: RigidDrive,
    stock: u64,
}

/// The ports the participants bound.
#[derive(Clone, Copy, Debug)]
struct Ports {
    journal: u16,
    inventory: u16,
    motion: u16,
}

impl TestCell {
    fn new(test: &str, stock: u64) -> TestCell {
        TestCell {
            root: TempRoot::new(test),
            journal: PortReporting::default(),
            inventory: PortReporting::default(),
            motion: PortReporting::default(),
            drive: RigidDrive::new(),
            stock,
        }
    }

    /// Runs the participants next to `scenario` until it ends.
    async fn run<F: Future>(&self, scenario: F) -> F::Output {
        let journal = run_journal(
            self.journal.clone(),
            TokioStorage::new(self.root.0.join("journal")),
            JournalConfig {
                port: 0,
                ..JournalConfig::default()
            },
        );
        let mut inventory_config = InventoryConfig::new(vec![(PartId::new("bolt"), self.stock)]);
        inventory_config.port = 0;
        let inventory = run_inventory(
            self.inventory.clone(),
            TokioStorage::new(self.root.0.join("inventory")),
            inventory_config,
        );
        let motion = run_motion(
            self.motion.clone(),
            TokioStorage::new(self.root.0.join("motion")),
            vec![(AxisName::new("x"), self.drive.clone())],
            test_motion_config(&["x"]),
        );
        tokio::select! {
            biased;
            result = journal => panic!("journal stopped: {result:?}"),
            result = inventory => panic!("inventory stopped: {result:?}"),
            result = motion => panic!("motion stopped: {result:?}"),
            output = scenario => output,
        }
    }

    async fn ports(&self) -> Ports {
        Ports {
            journal: self.journal.port().await,
            inventory: self.inventory.port().await,
            motion: self.motion.port().await,
        }
    }
}

/// Short retries and takeovers for wall-clock tests.
fn orders_config(instance: &str, index: u16, ports: Ports) -> OrdersConfig {
    let local = |port| Endpoint::new("127.0.0.1", port);
    let mut config = OrdersConfig::new(
        instance,
        index,
        [(AxisName::new("x"), local(ports.motion))].into(),
    );
    config.port = 0;
    config.journal = local(ports.journal);
    config.inventory = local(ports.inventory);
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
    config.takeover_after = Duration::from_millis(500);
    config.heartbeat_interval = Duration::from_millis(150);
    config.driver_restart_delay = Duration::from_millis(100);
    config.subscription_wait = Duration::from_millis(200);
    config
}

fn spec(id: u64, quantity: u32, target_rad: f64) -> OrderSpec {
    OrderSpec {
        order_id: OrderId(id),
        part: PartId::new("bolt"),
        quantity,
        axis: AxisName::new("x"),
        target_rad,
    }
}

async fn call(port: u16, request: &OrdersRequest) -> OrdersResponse {
    RpcClient::new(TokioTransport::loopback())
        .call("127.0.0.1", port, request, TIMEOUT)
        .await
        .expect("the orders service answers")
}

/// Polls the order's status until its saga ended.
async fn until_terminal(port: u16, order: u64) -> SagaView {
    let request = OrdersRequest::OrderStatus {
        order_id: OrderId(order),
    };
    let poll = async {
        loop {
            if let OrdersResponse::Status(view) = call(port, &request).await
                && (view.phase == "completed" || view.phase == "compensated")
            {
                return view;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), poll)
        .await
        .unwrap_or_else(|_| panic!("order {order} did not end"))
}

/// The saga lifecycle events of one order (with their step), in order.
fn saga_events(trace: &Trace, order: u64) -> Vec<String> {
    const LIFECYCLE: [&str; 6] = [
        "saga_started",
        "saga_step",
        "saga_compensating",
        "saga_compensated_step",
        "saga_completed",
        "saga_compensated",
    ];
    let order = order.to_string();
    trace
        .events()
        .into_iter()
        .filter(|event| {
            LIFECYCLE.contains(&event.name.as_str()) && event.field("order") == Some(&order)
        })
        .map(|event| match event.field("step") {
            Some(step) => format!("{} {step}", event.name),
            None => event.name,
        })
        .collect()
}

/// How many moves the motion service accepted for a request id (oracle SG3: at most one).
fn moves_accepted(trace: &Trace, request_id: u64) -> usize {
    let request_id = request_id.to_string();
    trace
        .named("move_accepted")
        .iter()
        .filter(|event| event.field("request_id") == Some(&request_id))
        .count()
}

async fn stock(ports: Ports) -> crate::inventory::StockView {
    let answer: crate::inventory::InventoryResponse = RpcClient::new(TokioTransport::loopback())
        .call(
            "127.0.0.1",
            ports.inventory,
            &crate::inventory::InventoryRequest::Stock {
                part: PartId::new("bolt"),
            },
            TIMEOUT,
        )
        .await
        .unwrap();
    match answer {
        crate::inventory::InventoryResponse::Stock(view) => view,
        other => panic!("unexpected {other:?}"),
    }
}

async fn axis_lease_holder(ports: Ports) -> Option<String> {
    let answer: MotionResponse = RpcClient::new(TokioTransport::loopback())
        .call(
            "127.0.0.1",
            ports.motion,
            &MotionRequest::Status {
                axis: AxisName::new("x"),
            },
            TIMEOUT,
        )
        .await
        .unwrap();
    match answer {
        MotionResponse::Status(status) => status.lease.map(|lease| lease.holder),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn orders_complete_or_compensate_end_to_end() {
    // Goal: the saga over the real participants: a feasible order completes (the axis moves,
    // the part is consumed, the lease released); an order without stock fails at the reserve
    // and compensates it; an order whose move is refused (outside the soft limits) compensates
    // lease and reserve in reverse; a re-sent order is a duplicate, a different order under a
    // used id is refused. Method: one orders instance; place the four orders, wait for each to
    // end, check phases, stock (SG6), the lease (SG5), the move count (SG3) and the order of
    // the saga events (SG1, SG2).
    let (trace, _guard) = record_trace();
    let cell = TestCell::new("orders-e2e", 5);
    let drive = cell.drive.clone();
    cell.run(async {
        let ports = cell.ports().await;
        let orders_transport = PortReporting::default();
        let orders = run_orders(
            orders_transport.clone(),
            orders_config("orders-1", 1, ports),
            ChaCha8Rng::seed_from_u64(1),
        );
        let client = async {
            let port = orders_transport.port().await;
            for order in [spec(1, 2, 0.5), spec(2, 10, 0.5), spec(3, 1, 10.0)] {
                assert_eq!(
                    call(port, &OrdersRequest::PlaceOrder(order)).await,
                    OrdersResponse::Accepted { duplicate: false }
                );
            }
            assert_eq!(
                call(port, &OrdersRequest::PlaceOrder(spec(1, 2, 0.5))).await,
                OrdersResponse::Accepted { duplicate: true }
            );
            assert_eq!(
                call(port, &OrdersRequest::PlaceOrder(spec(1, 3, 0.5))).await,
                OrdersResponse::Refused {
                    reason: OrderRefusal::OrderIdReused
                }
            );
            let completed = until_terminal(port, 1).await;
            assert_eq!(
                (completed.phase.as_str(), completed.shortfall),
                ("completed", false)
            );
            assert_eq!(until_terminal(port, 2).await.phase, "compensated");
            assert_eq!(until_terminal(port, 3).await.phase, "compensated");
            let stock = stock(ports).await;
            assert_eq!(
                (stock.available, stock.reserved, stock.consumed),
                (3, 0, 2),
                "only the completed order consumed"
            );
            assert_eq!(axis_lease_holder(ports).await, None, "no lease left behind");
        };
        tokio::select! {
            biased;
            result = orders => panic!("orders stopped: {result:?}"),
            () = client => {}
        }
    })
    .await;

    assert!((drive.position_rad() - 0.5).abs() < 0.02, "the axis moved");
    assert_eq!(moves_accepted(&trace, 1), 1);
    assert_eq!(moves_accepted(&trace, 3), 0, "refused, never started");
    assert_eq!(
        saga_events(&trace, 1),
        [
            "saga_started",
            "saga_step reserve_part",
            "saga_step lease_axis",
            "saga_step move",
            "saga_step commit_part",
            "saga_step release_axis",
            "saga_completed",
        ]
    );
    assert_eq!(
        saga_events(&trace, 2),
        [
            "saga_started",
            "saga_step reserve_part",
            "saga_compensating reserve_part",
            "saga_compensated_step reserve_part",
            "saga_compensated",
        ]
    );
    assert_eq!(
        saga_events(&trace, 3),
        [
            "saga_started",
            "saga_step reserve_part",
            "saga_step lease_axis",
            "saga_step move",
            "saga_compensating move",
            "saga_compensated_step lease_axis",
            "saga_compensated_step reserve_part",
            "saga_compensated",
        ]
    );
}

#[tokio::test]
async fn a_crashed_orchestrator_resumes_its_saga_from_the_journal() {
    // Goal: after a crash the instance resumes every open saga it owns from its stream, and
    // the pivot happens at most once. Method: place an order, stop the instance as soon as the
    // lease step is recorded (before or while the move is sent), start it again with the same
    // name; the saga is resumed and completes, with exactly one accepted move.
    let (trace, _guard) = record_trace();
    let cell = TestCell::new("orders-resume", 5);
    cell.run(async {
        let ports = cell.ports().await;
        let orders_transport = PortReporting::default();
        let config = orders_config("orders-1", 1, ports);
        let first_life = async {
            let port = orders_transport.port().await;
            assert_eq!(
                call(port, &OrdersRequest::PlaceOrder(spec(10, 1, 1.0))).await,
                OrdersResponse::Accepted { duplicate: false }
            );
            until_traced(&trace, "saga_step", &[("order", "10"), ("step", "lease_axis")]).await;
        };
        tokio::select! {
            biased;
            result = run_orders(orders_transport.clone(), config.clone(), ChaCha8Rng::seed_from_u64(2)) => {
                panic!("orders stopped: {result:?}")
            }
            () = first_life => {}
        }
        let second_life = async {
            let port = orders_transport.port().await;
            let view = until_terminal(port, 10).await;
            assert_eq!(view.phase, "completed");
            assert_eq!(view.owner, "orders-1");
            let stock = stock(ports).await;
            assert_eq!((stock.reserved, stock.consumed), (0, 1));
        };
        tokio::select! {
            biased;
            result = run_orders(orders_transport.clone(), config.clone(), ChaCha8Rng::seed_from_u64(3)) => {
                panic!("orders stopped: {result:?}")
            }
            () = second_life => {}
        }
    })
    .await;
    assert_eq!(trace.named("saga_resumed").len(), 1);
    assert_eq!(moves_accepted(&trace, 10), 1, "at most one move per order");
    assert_eq!(trace.named("saga_completed").len(), 1);
}

#[tokio::test]
async fn another_instance_takes_over_the_saga_of_a_dead_one() {
    // Goal: with two instances, a saga whose owner died is taken over by the other through an
    // owner change at the head of its stream, and completes once; the dead owner's lease is
    // renewed by the new owner (same holder), not fought over. Method: orders-1 and orders-2
    // run; orders-1 places an order and dies after its lease step; orders-2 claims the saga
    // after `takeover_after` and completes it.
    let (trace, _guard) = record_trace();
    let cell = TestCell::new("orders-takeover", 5);
    cell.run(async {
        let ports = cell.ports().await;
        let first = PortReporting::default();
        let second = PortReporting::default();
        let survivor = run_orders(
            second.clone(),
            orders_config("orders-2", 2, ports),
            ChaCha8Rng::seed_from_u64(5),
        );
        let dying = async {
            let life = async {
                let port = first.port().await;
                assert_eq!(
                    call(port, &OrdersRequest::PlaceOrder(spec(20, 1, -0.5))).await,
                    OrdersResponse::Accepted { duplicate: false }
                );
                until_traced(&trace, "saga_step", &[("order", "20"), ("step", "lease_axis")])
                    .await;
            };
            tokio::select! {
                biased;
                result = run_orders(first.clone(), orders_config("orders-1", 1, ports), ChaCha8Rng::seed_from_u64(4)) => {
                    panic!("orders stopped: {result:?}")
                }
                () = life => {}
            }
            // orders-1 is gone; ask orders-2 about the order.
            let port = second.port().await;
            let view = until_terminal(port, 20).await;
            assert_eq!((view.phase.as_str(), view.owner.as_str()), ("completed", "orders-2"));
        };
        tokio::select! {
            biased;
            result = survivor => panic!("orders stopped: {result:?}"),
            () = dying => {}
        }
    })
    .await;
    let claims = trace.named("saga_owner_claimed");
    assert_eq!(claims.len(), 1);
    assert_eq!(
        (claims[0].field("instance"), claims[0].field("previous")),
        (Some("orders-2"), Some("orders-1"))
    );
    assert_eq!(moves_accepted(&trace, 20), 1, "at most one move per order");
    let completed = trace.named("saga_completed");
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0].field("instance"), Some("orders-2"));
}

/// Loopback transport whose connections to one port can be cut: a partition from one service.
#[derive(Clone, Debug, Default)]
struct Cuttable {
    inner: PortReporting,
    cut: Rc<Cell<Option<u16>>>,
}

impl Transport for Cuttable {
    type Stream = tokio::net::TcpStream;
    type Listener = TokioListener;

    async fn bind(&self, port: u16) -> io::Result<TokioListener> {
        self.inner.bind(port).await
    }

    async fn connect(&self, host: &str, port: u16) -> io::Result<tokio::net::TcpStream> {
        if self.cut.get() == Some(port) {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "cut by the test",
            ));
        }
        self.inner.connect(host, port).await
    }
}

#[tokio::test]
async fn a_live_owner_that_was_taken_over_stops_at_its_next_append() {
    // Goal: one owner at a time while both instances live: an owner cut off from the journal
    // (no heartbeats, no appends) loses its saga to the other instance; when the cut heals,
    // its next append meets the new head, it re-reads the stream, sees the new owner and stops
    // (saga_ownership_lost); after the claim only the new owner records steps, and the saga
    // completes once. Method: orders-1 places an order; once its reserve is recorded, cut
    // orders-1 from the journal; wait for orders-2's claim; heal; wait for the end.
    let (trace, _guard) = record_trace();
    let cell = TestCell::new("orders-deposed", 5);
    cell.run(async {
        let ports = cell.ports().await;
        let first = Cuttable::default();
        let second = PortReporting::default();
        let both = async {
            tokio::select! {
                biased;
                result = run_orders(first.clone(), orders_config("orders-1", 1, ports), ChaCha8Rng::seed_from_u64(6)) => result,
                result = run_orders(second.clone(), orders_config("orders-2", 2, ports), ChaCha8Rng::seed_from_u64(7)) => result,
            }
        };
        let client = async {
            let port = first.inner.port().await;
            let survivor = second.port().await;
            assert_eq!(
                call(port, &OrdersRequest::PlaceOrder(spec(30, 1, 0.8))).await,
                OrdersResponse::Accepted { duplicate: false }
            );
            until_traced(&trace, "saga_step", &[("order", "30"), ("step", "reserve_part")]).await;
            first.cut.set(Some(ports.journal));
            until_traced(&trace, "saga_owner_claimed", &[("order", "30")]).await;
            first.cut.set(None);
            let view = until_terminal(survivor, 30).await;
            assert_eq!((view.phase.as_str(), view.owner.as_str()), ("completed", "orders-2"));
            until_traced(&trace, "saga_ownership_lost", &[("order", "30")]).await;
        };
        tokio::select! {
            biased;
            result = both => panic!("orders stopped: {result:?}"),
            () = client => {}
        }
    })
    .await;
    let lost = trace.named("saga_ownership_lost");
    assert_eq!(lost.len(), 1);
    assert_eq!(
        (lost[0].field("instance"), lost[0].field("owner")),
        (Some("orders-1"), Some("orders-2"))
    );
    // Every step orders-1 recorded precedes the claim; every later one is orders-2's.
    let mut claimed = false;
    for event in trace.events() {
        if event.field("order") != Some("30") {
            continue;
        }
        match event.name.as_str() {
            "saga_owner_claimed" => claimed = true,
            "saga_step" | "saga_completed" => {
                let expected = if claimed { "orders-2" } else { "orders-1" };
                assert_eq!(event.field("instance"), Some(expected), "{event:?}");
            }
            _ => {}
        }
    }
    assert!(claimed);
    assert_eq!(moves_accepted(&trace, 30), 1);
    assert_eq!(trace.named("saga_completed").len(), 1);
}
