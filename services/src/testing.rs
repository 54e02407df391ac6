//! Test support shared by the services' unit tests: a trace recorder (the events a test's code
//! emitted, as the simulator's trace would see them), temporary storage roots, and a loopback
//! transport that reports the port a service bound.
//!
//! Fakes only: nothing here judges; each test states what it checks.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Once;
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::span;

use crate::transport::{TokioListener, TokioTransport, Transport};

/// One recorded event: its `event` name and every other field as text.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TraceEvent {
    pub(crate) name: String,
    pub(crate) fields: BTreeMap<String, String>,
}

impl TraceEvent {
    pub(crate) fn field(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    /// A numeric field; panics if it is absent or not a number (the test expects it).
    pub(crate) fn u64(&self, key: &str) -> u64 {
        let text = self
            .field(key)
            .unwrap_or_else(|| panic!("event {} has no field {key}: {:?}", self.name, self));
        text.parse()
            .unwrap_or_else(|_| panic!("field {key} of {} is not a u64: {text}", self.name))
    }
}

/// What `record_trace` collected on this thread.
#[derive(Clone, Debug, Default)]
pub(crate) struct Trace {
    events: Rc<RefCell<Vec<TraceEvent>>>,
}

impl Trace {
    /// Every event recorded so far, in order.
    pub(crate) fn events(&self) -> Vec<TraceEvent> {
        self.events.borrow().clone()
    }

    /// The events named `name`.
    pub(crate) fn named(&self, name: &str) -> Vec<TraceEvent> {
        self.events()
            .into_iter()
            .filter(|event| event.name == name)
            .collect()
    }
}

thread_local! {
    /// Where this thread's events go while a test records them.
    static RECORDING: RefCell<Option<Trace>> = const { RefCell::new(None) };
}

/// Ends the recording of this thread when dropped.
#[derive(Debug)]
pub(crate) struct RecordingGuard(());

impl Drop for RecordingGuard {
    fn drop(&mut self) {
        RECORDING.with(|recording| recording.borrow_mut().take());
    }
}

/// Starts recording the events of this thread until the guard is dropped.
///
/// One global subscriber (installed once) hands each event to the recording of the thread that
/// emitted it. Thread-local *dispatchers* (`tracing::subscriber::set_default`) would be simpler,
/// but tests run on parallel threads, and `tracing` caches each callsite's interest globally:
/// a callsite first hit on a thread without a recorder, while another thread installs one, can
/// stay cached as "never" and silently drop that test's events.
pub(crate) fn record_trace() -> (Trace, RecordingGuard) {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        tracing::subscriber::set_global_default(Recorder)
            .expect("no other global subscriber in the services tests");
    });
    let trace = Trace::default();
    RECORDING.with(|recording| {
        let previous = recording.borrow_mut().replace(trace.clone());
        assert!(previous.is_none(), "one recording per thread at a time");
    });
    (trace, RecordingGuard(()))
}

/// The global subscriber: keeps events with an `event` field, for the thread's recording.
struct Recorder;

#[derive(Default)]
struct FieldText {
    name: Option<String>,
    fields: BTreeMap<String, String>,
}

impl Visit for FieldText {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "event" {
            self.name = Some(value.to_owned());
        } else {
            self.fields
                .insert(field.name().to_owned(), value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.fields
            .insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl tracing::Subscriber for Recorder {
    fn enabled(&self, _metadata: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _span: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }

    fn record(&self, _span: &span::Id, _values: &span::Record<'_>) {}

    fn record_follows_from(&self, _span: &span::Id, _follows: &span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        RECORDING.with(|recording| {
            let recording = recording.borrow();
            let Some(trace) = recording.as_ref() else {
                return;
            };
            let mut text = FieldText::default();
            event.record(&mut text);
            if let Some(name) = text.name {
                trace.events.borrow_mut().push(TraceEvent {
                    name,
                    fields: text.fields,
                });
            }
        });
    }

    fn enter(&self, _span: &span::Id) {}

    fn exit(&self, _span: &span::Id) {}
}

/// A fresh directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub(crate) struct TempRoot(pub(crate) PathBuf);

impl TempRoot {
    pub(crate) fn new(test: &str) -> TempRoot {
        let path =
            std::env::temp_dir().join(format!("servocell-unit-{test}-{}", std::process::id()));
        // A leftover from a killed earlier run with the same pid must not leak into this one.
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
#[derive(Clone, Debug, Default)]
pub(crate) struct PortReporting {
    bound: Rc<Cell<Option<u16>>>,
}

impl PortReporting {
    /// Waits until the service has bound its port, and forgets it (a restarted service binds
    /// again).
    pub(crate) async fn port(&self) -> u16 {
        loop {
            if let Some(port) = self.bound.take() {
                return port;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

impl Transport for PortReporting {
    type Stream = tokio::net::TcpStream;
    type Listener = TokioListener;

    async fn bind(&self, port: u16) -> io::Result<TokioListener> {
        let listener = TokioTransport::loopback().bind(port).await?;
        self.bound.set(Some(listener.local_port()?));
        Ok(listener)
    }

    async fn connect(&self, host: &str, port: u16) -> io::Result<tokio::net::TcpStream> {
        TokioTransport::loopback().connect(host, port).await
    }
}

/// The plant of the test axis: a rigid inertia with viscous friction.
pub(crate) fn test_plant() -> control::PlantConstants {
    control::PlantConstants {
        inertia_kg_m2: 0.01,
        torque_constant_nm_per_a: 1.8,
        viscous_nm_s_per_rad: 0.01,
        coulomb_nm: 0.0,
        current_a_max: 2.3,
    }
}

/// A motion configuration with one axis per name, soft limits ±3 rad, on port 0.
pub(crate) fn test_motion_config(axes: &[&str]) -> crate::motion::MotionConfig {
    let limits = control::TrajectoryLimits {
        velocity_rad_per_s_max: 2.0,
        acceleration_rad_per_s2_max: 20.0,
        jerk_rad_per_s3_max: 400.0,
    };
    let axis = control::AxisConfig::from_plant(test_plant(), 20.0, limits, -3.0, 3.0);
    let axes = axes
        .iter()
        .map(|name| (crate::motion::AxisName::new(*name), axis))
        .collect();
    let mut config = crate::motion::MotionConfig::new(axes);
    config.port = 0;
    config
}

/// A drive behind a `DriveLink`: the test plant integrated on tokio time (wall clock in these
/// tests). The same fake as `tests/services.rs`'s, which an integration test cannot share.
#[derive(Clone, Debug)]
pub(crate) struct RigidDrive(Rc<RefCell<RigidAxis>>);

#[derive(Debug)]
pub(crate) struct RigidAxis {
    position_rad: f64,
    velocity_rad_per_s: f64,
    current_a: f64,
    /// The instant of sample 0: the fake samples every millisecond from here.
    clock_origin: tokio::time::Instant,
    /// Samples integrated so far: the feedback frames' `sequence`, as a drive's sample
    /// counter (the supervisor's encoder plausibility reads the gap between two samples
    /// from it, so it must count samples, not reads).
    samples: u64,
}

impl RigidDrive {
    pub(crate) fn new() -> RigidDrive {
        RigidDrive(Rc::new(RefCell::new(RigidAxis {
            position_rad: 0.0,
            velocity_rad_per_s: 0.0,
            current_a: 0.0,
            clock_origin: tokio::time::Instant::now(),
            samples: 0,
        })))
    }

    pub(crate) fn position_rad(&self) -> f64 {
        self.0.borrow().position_rad
    }
}

impl RigidAxis {
    /// Integrates whole 1 ms sample periods up to now, 10 steps of 100 µs each.
    fn advance(&mut self) {
        const STEP_S: f64 = 1e-4;
        const STEPS_PER_SAMPLE: u64 = 10;
        const SAMPLES_PER_ADVANCE_MAX: u64 = 50;
        let due = u64::try_from((tokio::time::Instant::now() - self.clock_origin).as_millis())
            .unwrap_or(u64::MAX);
        let mut behind = due.saturating_sub(self.samples);
        if behind > SAMPLES_PER_ADVANCE_MAX {
            // A stalled test process must not integrate seconds in one go: the stall is
            // dropped from the fake's clock, so its samples still count integrated time.
            self.clock_origin += Duration::from_millis(behind - SAMPLES_PER_ADVANCE_MAX);
            behind = SAMPLES_PER_ADVANCE_MAX;
        }
        let plant = test_plant();
        for _ in 0..behind * STEPS_PER_SAMPLE {
            let torque_nm = plant.torque_constant_nm_per_a * self.current_a
                - plant.viscous_nm_s_per_rad * self.velocity_rad_per_s;
            self.velocity_rad_per_s += torque_nm / plant.inertia_kg_m2 * STEP_S;
            self.position_rad += self.velocity_rad_per_s * STEP_S;
        }
        self.samples += behind;
    }
}

impl crate::fieldbus::DriveLink for RigidDrive {
    fn send(&mut self, frame: crate::fieldbus::DriveCommandFrame) {
        let mut axis = self.0.borrow_mut();
        axis.advance();
        let limit = test_plant().current_a_max;
        axis.current_a = if frame.torque_enabled {
            frame.current_a.clamp(-limit, limit)
        } else {
            0.0
        };
    }

    fn latest_feedback(&mut self) -> Option<crate::fieldbus::DriveFeedbackFrame> {
        let mut axis = self.0.borrow_mut();
        axis.advance();
        Some(crate::fieldbus::DriveFeedbackFrame {
            // Wraps as a drive's 32-bit counter does.
            sequence: axis.samples as u32,
            position_rad: axis.position_rad,
            velocity_rad_per_s: axis.velocity_rad_per_s,
            current_a: axis.current_a,
            winding_temperature_c: 40.0,
            status: crate::fieldbus::DriveStatus {
                torque_enabled: axis.current_a != 0.0,
                watchdog_tripped: false,
                fault_code: 0,
            },
            valid: true,
        })
    }
}

/// Waits (polling every millisecond) until `trace` holds an event named `name` whose fields
/// include every `(key, value)` of `fields`.
pub(crate) async fn until_traced(trace: &Trace, name: &str, fields: &[(&str, &str)]) {
    loop {
        let found = trace.named(name).iter().any(|event| {
            fields
                .iter()
                .all(|(key, value)| event.field(key) == Some(*value))
        });
        if found {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A `Storage` whose every operation fails while its switch is on (a disk returning I/O errors),
/// over a real one: what a shell test needs to show a service riding out a failing disk.
#[derive(Clone, Debug)]
pub(crate) struct FailingDisk<S> {
    inner: S,
    failing: Rc<Cell<bool>>,
    /// Operations refused so far.
    failures: Rc<Cell<u64>>,
}

impl<S: crate::storage::Storage> FailingDisk<S> {
    /// `inner`, failing from the start.
    pub(crate) fn failing(inner: S) -> FailingDisk<S> {
        FailingDisk {
            inner,
            failing: Rc::new(Cell::new(true)),
            failures: Rc::new(Cell::new(0)),
        }
    }

    /// The disk heals: every later operation reaches `inner`.
    pub(crate) fn heal(&self) {
        self.failing.set(false);
    }

    /// Operations refused so far.
    pub(crate) fn failures(&self) -> u64 {
        self.failures.get()
    }

    fn check(&self) -> io::Result<()> {
        if self.failing.get() {
            self.failures.set(self.failures.get() + 1);
            return Err(io::Error::other("test disk: I/O error"));
        }
        Ok(())
    }
}

impl<S: crate::storage::Storage> crate::storage::Storage for FailingDisk<S> {
    async fn read(&self, path: &str) -> io::Result<Option<Vec<u8>>> {
        self.check()?;
        self.inner.read(path).await
    }

    async fn append(&self, path: &str, bytes: &[u8]) -> io::Result<()> {
        self.check()?;
        self.inner.append(path, bytes).await
    }

    async fn sync(&self, path: &str) -> io::Result<()> {
        self.check()?;
        self.inner.sync(path).await
    }

    async fn replace(&self, path: &str, bytes: &[u8]) -> io::Result<()> {
        self.check()?;
        self.inner.replace(path, bytes).await
    }
}

/// A read retry short enough for tests on the wall clock: 1 ms doubling to 4 ms, `attempts_max`
/// reads.
pub(crate) fn quick_read_retry(attempts_max: u32) -> crate::storage::ReadRetry {
    crate::storage::ReadRetry {
        backoff_initial: Duration::from_millis(1),
        backoff_max: Duration::from_millis(4),
        attempts_max,
    }
}

/// The first half of every "starts once its disk heals" shell test: waits until the service
/// (whose `started` event must not have been traced yet) failed three start-up reads of `disk`,
/// then heals the disk. The caller then waits for the port and makes a call that needs a
/// durable write.
pub(crate) async fn fail_three_reads_then_heal<S: crate::storage::Storage>(
    disk: &FailingDisk<S>,
    trace: &Trace,
    started: &str,
) {
    while trace.named("durable_read_failed").len() < 3 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(
        trace.named(started).is_empty(),
        "the service started on a disk it could not read"
    );
    assert!(trace.named("service_exited").is_empty());
    disk.heal();
}
