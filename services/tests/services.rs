//! End-to-end tests of the services over the real-run implementations: `run_motion` and
//! `run_client` on a tokio current-thread runtime, talking TCP on 127.0.0.1, with `TokioStorage`
//! in a temporary directory and a rigid-body drive model behind the `DriveLink` trait. They show
//! the shells work outside the simulator exactly as `sim` will drive them inside it.
//!
//! These run on wall-clock tokio time (real sockets cannot be paused), so the moves are short
//! and the deadlines generous; what is asserted (outcomes, tokens, positions) does not depend on
//! timing.

// Suites of other services, one file each, in this one test binary (docs/STYLE.md: one
// integration-test binary per crate).
#[path = "suites/gateway.rs"]
mod gateway;

use std::cell::{Cell, RefCell};
use std::io;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use control::{AxisConfig, PlantConstants, TrajectoryLimits};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use services::client::{ClientConfig, ClientOutcome, PlannedMove, run_client};
use services::fieldbus::{DriveCommandFrame, DriveFeedbackFrame, DriveLink, DriveStatus};
use services::motion::{
    AxisName, MotionConfig, MotionRequest, MotionResponse, durable, run_motion,
};
use services::rpc::RpcClient;
use services::storage::{Storage, TokioStorage};
use services::transport::{TokioListener, TokioTransport, Transport};
use tokio::time::Instant;

const TARGET_TOLERANCE_RAD: f64 = 0.01;

fn plant() -> PlantConstants {
    PlantConstants {
        inertia_kg_m2: 0.01,
        torque_constant_nm_per_a: 1.8,
        viscous_nm_s_per_rad: 0.01,
        coulomb_nm: 0.0,
        current_a_max: 2.3,
    }
}

fn motion_config() -> MotionConfig {
    let limits = TrajectoryLimits {
        velocity_rad_per_s_max: 2.0,
        acceleration_rad_per_s2_max: 20.0,
        jerk_rad_per_s3_max: 400.0,
    };
    let axis = AxisConfig::from_plant(plant(), 20.0, limits, -3.0, 3.0);
    let mut config = MotionConfig::new(vec![(AxisName::new("x"), axis)]);
    config.port = 0;
    config
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempRoot(PathBuf);

impl TempRoot {
    fn new(test: &str) -> TempRoot {
        let path =
            std::env::temp_dir().join(format!("servocell-services-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        TempRoot(path)
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `TokioTransport` on loopback that tells the test which port `bind(0)` got.
#[derive(Clone, Debug)]
struct PortReporting {
    inner: TokioTransport,
    bound: Rc<Cell<Option<u16>>>,
}

impl Transport for PortReporting {
    type Stream = tokio::net::TcpStream;
    type Listener = TokioListener;

    async fn bind(&self, port: u16) -> io::Result<TokioListener> {
        let listener = self.inner.bind(port).await?;
        self.bound.set(Some(listener.local_port()?));
        Ok(listener)
    }

    async fn connect(&self, host: &str, port: u16) -> io::Result<tokio::net::TcpStream> {
        self.inner.connect(host, port).await
    }
}

/// Waits until the motion service has bound its port.
async fn bound_port(bound: &Cell<Option<u16>>) -> u16 {
    loop {
        if let Some(port) = bound.get() {
            return port;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A rigid inertia with viscous friction integrated on tokio time: the drive behind the link.
#[derive(Debug)]
struct RigidAxis {
    position_rad: f64,
    velocity_rad_per_s: f64,
    current_a: f64,
    /// The instant of sample 0: the fake samples every millisecond from here.
    clock_origin: Instant,
    /// Samples integrated so far: the feedback frames' `sequence`, as a drive's sample
    /// counter (the supervisor's encoder plausibility reads the gap between two samples
    /// from it, so it must count samples, not reads).
    samples: u64,
}

impl RigidAxis {
    /// Integrates whole 1 ms sample periods up to now, 10 steps of 100 µs each.
    fn advance(&mut self) {
        const STEP_S: f64 = 1e-4;
        const STEPS_PER_SAMPLE: u64 = 10;
        const SAMPLES_PER_ADVANCE_MAX: u64 = 50;
        let due =
            u64::try_from((Instant::now() - self.clock_origin).as_millis()).unwrap_or(u64::MAX);
        let mut behind = due.saturating_sub(self.samples);
        if behind > SAMPLES_PER_ADVANCE_MAX {
            // A stalled test process must not integrate seconds in one go: the stall is
            // dropped from the fake's clock, so its samples still count integrated time.
            self.clock_origin += Duration::from_millis(behind - SAMPLES_PER_ADVANCE_MAX);
            behind = SAMPLES_PER_ADVANCE_MAX;
        }
        let plant = plant();
        for _ in 0..behind * STEPS_PER_SAMPLE {
            let torque_nm = plant.torque_constant_nm_per_a * self.current_a
                - plant.viscous_nm_s_per_rad * self.velocity_rad_per_s;
            self.velocity_rad_per_s += torque_nm / plant.inertia_kg_m2 * STEP_S;
            self.position_rad += self.velocity_rad_per_s * STEP_S;
        }
        self.samples += behind;
    }
}

#[derive(Clone, Debug)]
struct BenchDrive(Rc<RefCell<RigidAxis>>);

impl BenchDrive {
    fn new() -> BenchDrive {
        BenchDrive(Rc::new(RefCell::new(RigidAxis {
            position_rad: 0.0,
            velocity_rad_per_s: 0.0,
            current_a: 0.0,
            clock_origin: Instant::now(),
            samples: 0,
        })))
    }

    fn position_rad(&self) -> f64 {
        self.0.borrow().position_rad
    }
}

impl DriveLink for BenchDrive {
    fn send(&mut self, frame: DriveCommandFrame) {
        let mut axis = self.0.borrow_mut();
        axis.advance();
        let limit = plant().current_a_max;
        axis.current_a = if frame.torque_enabled {
            frame.current_a.clamp(-limit, limit)
        } else {
            0.0
        };
    }

    fn latest_feedback(&mut self) -> Option<DriveFeedbackFrame> {
        let mut axis = self.0.borrow_mut();
        axis.advance();
        Some(DriveFeedbackFrame {
            // Wraps as a drive's 32-bit counter does.
            sequence: axis.samples as u32,
            position_rad: axis.position_rad,
            velocity_rad_per_s: axis.velocity_rad_per_s,
            current_a: axis.current_a,
            winding_temperature_c: 40.0,
            status: DriveStatus {
                torque_enabled: axis.current_a != 0.0,
                watchdog_tripped: false,
                fault_code: 0,
            },
            valid: true,
        })
    }
}

fn planned(target_rad: f64) -> PlannedMove {
    PlannedMove {
        axis: AxisName::new("x"),
        target_rad,
        at: Duration::ZERO,
    }
}

#[tokio::test]
async fn client_moves_the_axis_through_the_motion_service() {
    // Goal: the whole path works outside the simulator: client → RPC → motion core → drive and
    // back, with the durable state written through TokioStorage. Method: run both shells on one
    // current-thread runtime, plan two moves, then check the outcomes, the drive's position and
    // the state file.
    let root = TempRoot::new("e2e");
    let storage = TokioStorage::new(&root.0);
    let bound = Rc::new(Cell::new(None));
    let transport = PortReporting {
        inner: TokioTransport::loopback(),
        bound: bound.clone(),
    };
    let drive = BenchDrive::new();
    let motion = run_motion(
        transport,
        storage.clone(),
        vec![(AxisName::new("x"), drive.clone())],
        motion_config(),
    );
    let client = async {
        let port = bound_port(&bound).await;
        let mut config = ClientConfig::new(
            1,
            "127.0.0.1",
            vec![planned(0.3), planned(-0.2)],
            ChaCha8Rng::seed_from_u64(11),
        );
        config.motion_port = port;
        let report = run_client(TokioTransport::loopback(), config).await;
        // Give the service time to write the completion records (they are written lazily).
        tokio::time::sleep(Duration::from_millis(200)).await;
        report
    };
    let report = tokio::select! {
        biased;
        result = motion => panic!("the motion service stopped: {result:?}"),
        report = client => report,
    };

    assert_eq!(report.succeeded(), 2, "{report:?}");
    for (result, target_rad) in report.results.iter().zip([0.3, -0.2]) {
        let ClientOutcome::Succeeded { final_position_rad } = result.outcome else {
            unreachable!("both succeeded");
        };
        assert!((final_position_rad - target_rad).abs() <= TARGET_TOLERANCE_RAD);
    }
    assert!((drive.position_rad() - (-0.2)).abs() <= 2.0 * TARGET_TOLERANCE_RAD);

    let bytes = storage
        .read("motion/state")
        .await
        .unwrap()
        .expect("state written");
    let state = durable::decode(&bytes).unwrap();
    assert_eq!(
        state.tokens[&AxisName::new("x")],
        1,
        "one lease for both moves"
    );
    let recorded: Vec<u64> = state.moves.iter().map(|record| record.request_id).collect();
    assert_eq!(recorded, [1 << 32, (1 << 32) + 1]);
}

#[tokio::test]
async fn restarted_service_keeps_tokens_and_move_outcomes() {
    // Goal: across a real restart (a new run_motion on the same directory) tokens keep growing
    // and a finished move is answered from its durable record, not re-run. Method: run one move,
    // stop the service, start a new one, acquire a lease and resend the first move's id.
    let root = TempRoot::new("restart");
    let storage = TokioStorage::new(&root.0);
    let drive = BenchDrive::new();

    let bound = Rc::new(Cell::new(None));
    let transport = PortReporting {
        inner: TokioTransport::loopback(),
        bound: bound.clone(),
    };
    let first_run = run_motion(
        transport,
        storage.clone(),
        vec![(AxisName::new("x"), drive.clone())],
        motion_config(),
    );
    let client = async {
        let port = bound_port(&bound).await;
        let mut config = ClientConfig::new(
            2,
            "127.0.0.1",
            vec![planned(0.25)],
            ChaCha8Rng::seed_from_u64(5),
        );
        config.motion_port = port;
        let report = run_client(TokioTransport::loopback(), config).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        report
    };
    let report = tokio::select! {
        biased;
        result = first_run => panic!("the motion service stopped: {result:?}"),
        report = client => report,
    };
    let ClientOutcome::Succeeded { final_position_rad } = report.results[0].outcome else {
        panic!("first move failed: {report:?}");
    };
    let request_id = report.results[0].request_id;

    let bound = Rc::new(Cell::new(None));
    let transport = PortReporting {
        inner: TokioTransport::loopback(),
        bound: bound.clone(),
    };
    let second_run = run_motion(
        transport,
        storage.clone(),
        vec![(AxisName::new("x"), drive.clone())],
        motion_config(),
    );
    let probe = async {
        let port = bound_port(&bound).await;
        let rpc = RpcClient::new(TokioTransport::loopback());
        let timeout = Duration::from_secs(5);
        let lease: MotionResponse = rpc
            .call(
                "127.0.0.1",
                port,
                &MotionRequest::AcquireLease {
                    axis: AxisName::new("x"),
                    holder: "probe".into(),
                    ttl_ms: 1_000,
                },
                timeout,
            )
            .await
            .unwrap();
        let duplicate: MotionResponse = rpc
            .call(
                "127.0.0.1",
                port,
                &MotionRequest::Move {
                    request_id,
                    axis: AxisName::new("x"),
                    target_rad: 0.25,
                    token: 0,
                },
                timeout,
            )
            .await
            .unwrap();
        (lease, duplicate)
    };
    let (lease, duplicate) = tokio::select! {
        biased;
        result = second_run => panic!("the restarted service stopped: {result:?}"),
        answers = probe => answers,
    };
    assert_eq!(
        lease,
        MotionResponse::Lease {
            token: 2,
            ttl_ms: 1_000
        },
        "token 1 went to the first run's client"
    );
    assert_eq!(duplicate, MotionResponse::Completed { final_position_rad });
}

#[tokio::test]
async fn corrupt_state_file_stops_the_service_from_starting() {
    // Goal: a damaged durable state is refused instead of silently resetting tokens. Method:
    // write garbage where the state lives and expect CorruptState before any port is bound.
    let root = TempRoot::new("corrupt");
    let storage = TokioStorage::new(&root.0);
    storage
        .replace("motion/state", b"not a motion state at all")
        .await
        .unwrap();
    let bound = Rc::new(Cell::new(None));
    let transport = PortReporting {
        inner: TokioTransport::loopback(),
        bound: bound.clone(),
    };
    let result = run_motion(
        transport,
        storage,
        vec![(AxisName::new("x"), BenchDrive::new())],
        motion_config(),
    )
    .await;
    assert!(
        matches!(result, Err(services::motion::MotionError::CorruptState(_))),
        "{result:?}"
    );
    assert_eq!(bound.get(), None, "refused before listening");
}
