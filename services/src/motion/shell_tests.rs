//! Tests of `run_motion`'s start-up over real TCP on 127.0.0.1 and `TokioStorage` in a temporary
//! directory, with the rigid test drive. Wall-clock tokio time (real sockets cannot be paused):
//! deadlines are generous, and nothing asserted depends on timing.

use std::time::Duration;

use super::protocol::{AxisName, MotionRequest, MotionResponse};
use super::{MotionError, run_motion};
use crate::rpc::RpcClient;
use crate::storage::{Storage, TokioStorage};
use crate::testing::{
    FailingDisk, PortReporting, RigidDrive, TempRoot, fail_three_reads_then_heal, quick_read_retry,
    record_trace, test_motion_config,
};
use crate::transport::TokioTransport;

const TIMEOUT: Duration = Duration::from_secs(5);

fn lease(holder: &str) -> MotionRequest {
    MotionRequest::AcquireLease {
        axis: AxisName::new("x"),
        holder: holder.to_owned(),
        ttl_ms: 1000,
    }
}

#[tokio::test]
async fn a_motion_service_restarted_on_a_failing_disk_serves_once_the_disk_heals() {
    // Goal: the regression of the motion host that stayed down after its disk healed: a motion
    // service (re)started while its disk returns I/O errors retries reading its state and serves
    // once the disk heals, with the state it had (its fencing tokens keep growing). Method: a
    // first run grants a lease (token 1, durable); restart on a disk failing from the start;
    // after three failed reads heal it; the service binds and grants a new lease with token 2.
    let root = TempRoot::new("motion-heals");
    let mut config = test_motion_config(&["x"]);
    config.state_read_retry = quick_read_retry(1000);
    let client = RpcClient::new(TokioTransport::loopback());
    let first = PortReporting::default();
    let grant_first = async {
        let port = first.port().await;
        let answer: MotionResponse = client
            .call("127.0.0.1", port, &lease("a"), TIMEOUT)
            .await
            .unwrap();
        assert!(
            matches!(answer, MotionResponse::Lease { token: 1, .. }),
            "{answer:?}"
        );
    };
    tokio::select! {
        biased;
        result = run_motion(
            first.clone(),
            TokioStorage::new(&root.0),
            vec![(AxisName::new("x"), RigidDrive::new())],
            config.clone(),
        ) => panic!("motion stopped: {result:?}"),
        () = grant_first => {}
    }

    let disk = FailingDisk::failing(TokioStorage::new(&root.0));
    let (trace, _guard) = record_trace();
    let transport = PortReporting::default();
    let check = async {
        fail_three_reads_then_heal(&disk, &trace, "motion_started").await;
        let port = transport.port().await;
        let answer: MotionResponse = client
            .call("127.0.0.1", port, &lease("b"), TIMEOUT)
            .await
            .unwrap();
        assert!(
            matches!(answer, MotionResponse::Lease { token: 2, .. }),
            "{answer:?}"
        );
    };
    tokio::select! {
        biased;
        result = run_motion(
            transport.clone(),
            disk.clone(),
            vec![(AxisName::new("x"), RigidDrive::new())],
            config,
        ) => panic!("motion stopped: {result:?}"),
        () = check => {}
    }
    assert_eq!(trace.named("durable_read_recovered").len(), 1);
}

#[tokio::test]
async fn a_damaged_state_keeps_the_motion_service_down_at_once() {
    // Goal: damage is not a transient fault: a state file that reads but does not decode stops
    // the service without retrying (re-issuing fencing tokens would be unsafe). Method: garbage
    // in the state file; `run_motion` returns `CorruptState` after one read.
    let root = TempRoot::new("motion-damaged");
    let storage = TokioStorage::new(&root.0);
    let config = test_motion_config(&["x"]);
    storage
        .replace(&config.state_path, b"not a motion state")
        .await
        .unwrap();
    let (trace, _guard) = record_trace();
    let result = run_motion(
        PortReporting::default(),
        storage,
        vec![(AxisName::new("x"), RigidDrive::new())],
        config,
    )
    .await;
    assert!(
        matches!(result, Err(MotionError::CorruptState(_))),
        "{result:?}"
    );
    assert!(trace.named("durable_read_failed").is_empty());
}

#[tokio::test]
async fn a_disk_that_never_heals_stops_the_motion_service_at_its_read_limit() {
    // Goal: the retry loop has a limit, and the error names it. Method: a disk that fails
    // forever, four reads allowed.
    let root = TempRoot::new("motion-never-heals");
    let disk = FailingDisk::failing(TokioStorage::new(&root.0));
    let mut config = test_motion_config(&["x"]);
    config.state_read_retry = quick_read_retry(4);
    let result = run_motion(
        PortReporting::default(),
        disk.clone(),
        vec![(AxisName::new("x"), RigidDrive::new())],
        config,
    )
    .await;
    let Err(MotionError::ReadState(gave_up)) = result else {
        panic!("{result:?}")
    };
    assert_eq!((gave_up.attempts, disk.failures()), (4, 4));
}
