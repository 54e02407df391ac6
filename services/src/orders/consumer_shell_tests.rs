//! End-to-end test of motion events on the bus: the motion shell's outbox relay, the bus, and
//! an orders instance's consumer writing them to the journal, over TCP on 127.0.0.1 with
//! `TokioStorage` in a temporary directory. Wall-clock tokio time: every wait is for a traced
//! event or a state on disk, so what is asserted does not depend on timing.

use std::future::Future;
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

use super::config::OrdersConfig;
use super::consumer::{MOTION_EVENTS_GROUP, axis_stream, journal_event};
use super::run_orders;
use crate::bus::{BusClient, BusConfig, GroupName, TopicConfig, TopicName, run_bus};
use crate::journal::{ExpectedVersion, JournalClient, JournalConfig, JournalResponse, run_journal};
use crate::motion::{
    AxisName, MOTION_EVENTS_TOPIC, MotionConfig, MotionEvent, MotionRequest, MotionResponse,
    durable, run_motion,
};
use crate::retry::RetryPolicy;
use crate::rpc::RpcClient;
use crate::storage::{Storage, TokioStorage};
use crate::testing::{
    PortReporting, RigidDrive, TempRoot, Trace, record_trace, test_motion_config, until_traced,
};
use crate::transport::Endpoint;
use crate::transport::TokioTransport;

const TIMEOUT: Duration = Duration::from_secs(5);

/// A port nobody listens on now (bound and released), for the bus that starts later.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a loopback port")
        .port()
}

fn motion_config(bus_port: u16) -> MotionConfig {
    let mut config = test_motion_config(&["x"]);
    config.bus = Some(Endpoint::new("127.0.0.1", bus_port));
    config.bus_retry = RetryPolicy {
        attempts_max: 3,
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        jitter_ratio: 0.2,
        deadline: Duration::from_millis(300),
    };
    config.bus_relay_restart_delay = Duration::from_millis(100);
    config
}

async fn motion_call(port: u16, request: MotionRequest) -> MotionResponse {
    RpcClient::new(TokioTransport::loopback())
        .call("127.0.0.1", port, &request, TIMEOUT)
        .await
        .expect("motion answers")
}

/// Enables axis x (once the drive's feedback is valid), takes a lease and moves to 0.5 under
/// request id 1 until it completed.
async fn move_once(port: u16) {
    let axis = AxisName::new("x");
    while motion_call(port, MotionRequest::Enable { axis: axis.clone() }).await
        != MotionResponse::Done
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let lease = MotionRequest::AcquireLease {
        axis: axis.clone(),
        holder: "test".into(),
        ttl_ms: 60_000,
    };
    let MotionResponse::Lease { token, .. } = motion_call(port, lease).await else {
        panic!("no lease");
    };
    let request = MotionRequest::Move {
        request_id: 1,
        axis,
        target_rad: 0.5,
        token,
    };
    loop {
        match motion_call(port, request.clone()).await {
            MotionResponse::Accepted | MotionResponse::InProgress => {}
            MotionResponse::Completed { .. } => return,
            other => panic!("move answered {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the motion state on disk holds `count` outbox messages.
async fn until_outbox_on_disk(storage: &TokioStorage, path: &str, count: usize) -> Vec<u8> {
    loop {
        if let Some(bytes) = storage.read(path).await.unwrap()
            && durable::decode(&bytes).unwrap().outbox.len() == count
        {
            return bytes;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs motion (with a bus at `bus_port`) until `scenario` ends; the service is then dropped,
/// as a crash would stop it.
async fn with_motion<F: Future>(
    storage: &TokioStorage,
    transport: &PortReporting,
    bus_port: u16,
    drive: &RigidDrive,
    scenario: F,
) -> F::Output {
    let motion = run_motion(
        transport.clone(),
        storage.clone(),
        vec![(AxisName::new("x"), drive.clone())],
        motion_config(bus_port),
    );
    tokio::select! {
        biased;
        result = motion => panic!("motion stopped: {result:?}"),
        output = scenario => output,
    }
}

fn count(trace: &Trace, name: &str, field: &str, value: &str) -> usize {
    trace
        .named(name)
        .iter()
        .filter(|event| event.field(field) == Some(value))
        .count()
}

#[tokio::test]
async fn motion_events_are_published_once_and_applied_to_the_journal_once() {
    // Goal: motion events end to end, exactly once in effect over at-least-once delivery:
    // (1) a completed move is announced through the outbox and kept while the bus is down;
    // (2) the relay publishes it once the bus is up, and re-publishing after a crash between
    // the publish and the outbox's rewrite is a bus duplicate (stored once); (3) an orders
    // instance's consumer appends each message to `axis-x`, and a redelivery of one already
    // appended (its consumer crashed before the ack) is a journal duplicate, not a second
    // event. Method: (1) motion with its bus port closed: move, wait for the two messages
    // (grant, completion) in the state on disk; stop. (2) start bus and journal; save the
    // motion state, restart motion: both relayed new and the outbox emptied; stop, put the
    // saved state back (the crash), restart: both relayed as duplicates. (3) a stand-in
    // consumer fetches both, appends the completion and crashes (no ack); an orders instance
    // gets both again after the ack wait: the grant applied, the completion a duplicate; the
    // stream holds two events.
    let (trace, _guard) = record_trace();
    let root = TempRoot::new("motion-bus");
    let motion_storage = TokioStorage::new(root.0.join("motion"));
    let motion_transport = PortReporting::default();
    let state_path = motion_config(0).state_path;
    let drive = RigidDrive::new();
    let bus_port = free_port();

    // (1) The bus is down: the messages wait in the durable outbox.
    with_motion(
        &motion_storage,
        &motion_transport,
        bus_port,
        &drive,
        async {
            move_once(motion_transport.port().await).await;
            until_outbox_on_disk(&motion_storage, &state_path, 2).await;
            until_traced(&trace, "motion_relay_stopped", &[]).await;
        },
    )
    .await;
    assert!(trace.named("outbox_relayed").is_empty());

    let bus_transport = PortReporting::default();
    let journal_transport = PortReporting::default();
    let topic = TopicName::new(MOTION_EVENTS_TOPIC);
    let group = GroupName::new(MOTION_EVENTS_GROUP);
    let mut bus_config = BusConfig::new(vec![TopicConfig {
        name: topic.clone(),
        groups: vec![group.clone()],
    }]);
    bus_config.port = bus_port;
    bus_config.ack_waits = vec![Duration::from_millis(300)];
    let bus = run_bus(
        bus_transport.clone(),
        TokioStorage::new(root.0.join("bus")),
        bus_config,
    );
    let journal = run_journal(
        journal_transport.clone(),
        TokioStorage::new(root.0.join("journal")),
        JournalConfig {
            port: 0,
            ..JournalConfig::default()
        },
    );
    let scenario = async {
        assert_eq!(bus_transport.port().await, bus_port);
        let journal_port = journal_transport.port().await;

        // (2) Published once the bus is up; a re-send after a crash is a duplicate.
        let saved = motion_storage.read(&state_path).await.unwrap().unwrap();
        with_motion(
            &motion_storage,
            &motion_transport,
            bus_port,
            &drive,
            async {
                until_outbox_on_disk(&motion_storage, &state_path, 0).await;
            },
        )
        .await;
        let relayed = trace.named("outbox_relayed");
        assert_eq!(relayed.len(), 2);
        assert!(
            relayed
                .iter()
                .all(|e| e.field("duplicate") == Some("false"))
        );
        motion_storage.replace(&state_path, &saved).await.unwrap();
        with_motion(
            &motion_storage,
            &motion_transport,
            bus_port,
            &drive,
            async {
                until_outbox_on_disk(&motion_storage, &state_path, 0).await;
            },
        )
        .await;
        let relayed = trace.named("outbox_relayed");
        assert_eq!(relayed.len(), 4);
        assert!(
            relayed[2..]
                .iter()
                .all(|e| e.field("duplicate") == Some("true"))
        );
        for event in &relayed[..2] {
            let msg_id = event.field("msg_id").unwrap();
            assert_eq!(count(&trace, "bus_published", "msg_id", msg_id), 1);
            assert_eq!(count(&trace, "bus_duplicate", "msg_id", msg_id), 1);
        }

        // (3) A consumer appends the completion and crashes before acking.
        let bus_client = BusClient::with_port(TokioTransport::loopback(), "127.0.0.1", bus_port);
        let deliveries = bus_client
            .fetch(&topic, &group, Duration::from_secs(1))
            .await
            .unwrap();
        let events: Vec<MotionEvent> = deliveries
            .iter()
            .map(|d| crate::framing::decode(&d.payload).unwrap())
            .collect();
        assert!(matches!(
            events.as_slice(),
            [
                MotionEvent::LeaseGranted { .. },
                MotionEvent::MoveCompleted { request_id: 1, .. }
            ]
        ));
        let journal_client =
            JournalClient::with_port(TokioTransport::loopback(), "127.0.0.1", journal_port);
        let (stream, completion) = journal_event(&deliveries[1]).unwrap();
        let answer = journal_client
            .append(&stream, ExpectedVersion::Any, vec![completion], TIMEOUT)
            .await
            .unwrap();
        assert!(matches!(
            answer,
            JournalResponse::Appended {
                duplicate: false,
                ..
            }
        ));

        let orders_transport = PortReporting::default();
        let mut config = OrdersConfig::new(
            "orders-1",
            1,
            [(AxisName::new("x"), Endpoint::new("127.0.0.1", 1))].into(),
        );
        config.port = 0;
        config.journal = Endpoint::new("127.0.0.1", journal_port);
        config.bus = Some(Endpoint::new("127.0.0.1", bus_port));
        config.subscription_wait = Duration::from_millis(200);
        let orders = run_orders(orders_transport, config, ChaCha8Rng::seed_from_u64(1));
        let [grant_id, completion_id] =
            [&deliveries[0], &deliveries[1]].map(|d| d.msg_id.to_string());
        let consumed = async {
            until_traced(&trace, "bus_message_applied", &[("msg_id", &grant_id)]).await;
            until_traced(
                &trace,
                "bus_message_duplicate",
                &[("msg_id", &completion_id)],
            )
            .await;
            let acked = |sequence: u64| {
                let sequence = sequence.to_string();
                trace.named("bus_acked").iter().any(|e| {
                    e.field("sequence") == Some(&sequence) && e.field("group") == Some("orders")
                })
            };
            while !(acked(deliveries[0].sequence) && acked(deliveries[1].sequence)) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::select! {
            biased;
            result = orders => panic!("orders stopped: {result:?}"),
            () = consumed => {}
        }
        let duplicate = &trace.named("bus_message_duplicate")[0];
        assert_eq!(duplicate.field("delivery"), Some("2"), "a redelivery");
        assert_eq!(duplicate.field("group"), Some("orders"));
        assert_eq!(duplicate.field("topic"), Some(MOTION_EVENTS_TOPIC));
        assert_eq!(
            duplicate.field("sequence"),
            Some(deliveries[1].sequence.to_string().as_str())
        );
        assert_eq!(
            count(&trace, "bus_message_applied", "msg_id", &completion_id),
            0,
            "the completion took effect once, before the crash"
        );
        let (stored, _) = journal_client
            .read_stream(&axis_stream(&AxisName::new("x")), TIMEOUT)
            .await
            .unwrap();
        let kinds: Vec<&str> = stored.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["move_completed", "lease_granted"]);
    };
    tokio::select! {
        biased;
        result = bus => panic!("bus stopped: {result:?}"),
        result = journal => panic!("journal stopped: {result:?}"),
        () = scenario => {}
    }
}
