//! The world: one scenario running inside turmoil, with its drives and its fault schedule.
//!
//! Owns everything of one run that has state: the turmoil `Sim` (service hosts, network, file
//! systems), the simulated drives and their fieldbuses, the disks' fault switches, the fault
//! schedule and the trace. [`World::run`] steps it tick by tick and hands each tick's trace
//! events and axis samples to an [`Observer`] (the oracles and the statistics, `run.rs`), which
//! can only look.
//!
//! One tick is turmoil's tick ([`Scenario::tick`]: the shortest control period unless the
//! scenario sets `network.tick_ms`). Per tick, in this order: faults due by the tick's end start
//! or heal; turmoil runs every host up to the tick's end (their control loops send commands
//! stamped with their send time, and each feedback read first runs its drive up to just before
//! the reader's instant, `sim::fieldbus`); then every drive runs up to the tick's end, applying
//! each command when it arrives. Only a drive's own motion host commands it, in time order, so
//! no command reaches a drive in its past; feedback it samples reaches the controller on its next
//! cycle (one period of transport delay, as on a real cyclic fieldbus). A tick of several control
//! periods changes nothing on the fieldbus side; it quantises service messages and fault
//! instants to the tick, and costs turmoil one step instead of several.
//!
//! Each drive records a sample per sample period ([`Scenario::sample_period`]); the observer gets
//! the tick's trace events and samples merged in time order, a sample after the events of its
//! instant.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use plant_model::{Plant, PlantFault};
use services::fieldbus::DriveCommandFrame;

use crate::drive::{DriveConfig, DriveEvent, DriveSample, SimDrive};
use crate::fault::{Fault, FaultKind, Target};
use crate::fieldbus::{Fieldbus, SimDriveLink};
use crate::hosts;
use crate::net::{Disk, SharedDisk};
use crate::oracle::AxisSample;
use crate::scenario::Scenario;
use crate::seed::{Seed, Stream};
use crate::trace::{HARNESS_HOST, SharedTrace, TraceEvent};

/// turmoil's epoch for every run: a fixed instant, never the wall clock (docs/DESIGN.md §3).
pub const EPOCH_UNIX_S: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z

/// Sees each tick of a run; cannot change it.
pub trait Observer {
    fn on_event(&mut self, event: &TraceEvent);
    fn on_sample(&mut self, sample: &AxisSample<'_>);
}

/// One axis of the world: its drive, its medium, and what the oracles need to see of it.
#[derive(Debug)]
pub(crate) struct AxisWorld {
    pub(crate) name: String,
    /// Shared with the motion host's [`SimDriveLink`], which runs it up to each read.
    pub(crate) drive: Rc<RefCell<SimDrive>>,
    pub(crate) bus: Rc<RefCell<Fieldbus>>,
    pub(crate) watchdog: Duration,
    /// The drive's own stop deceleration (for the watchdog-timing oracle).
    pub(crate) quick_stop_deceleration_rad_per_s2: f64,
}

pub struct World<'a> {
    scenario: &'a Scenario,
    sim: turmoil::Sim<'a>,
    tick: Duration,
    pub(crate) axes: Vec<AxisWorld>,
    disks: BTreeMap<String, SharedDisk>,
    /// Faults sorted by start; `starts` and `heals` index the next ones due.
    schedule: Vec<Fault>,
    next_start: usize,
    /// (heal time, index into schedule), sorted.
    heals: Vec<(Duration, usize)>,
    trace: SharedTrace,
    /// How many trace events the observer has been given.
    observed: usize,
    /// The tick's drive samples (axis index, sample), kept to reuse its allocation.
    samples: Vec<(usize, DriveSample)>,
}

impl std::fmt::Debug for World<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("scenario", &self.scenario.name)
            .field("tick", &self.tick)
            .field(
                "axes",
                &self.axes.iter().map(|a| &a.name).collect::<Vec<_>>(),
            )
            .field("faults", &self.schedule.len())
            .finish_non_exhaustive()
    }
}

impl<'a> World<'a> {
    /// Builds the world for `scenario` under `seed` with the full fault `schedule`.
    pub fn new(
        scenario: &'a Scenario,
        seed: Seed,
        schedule: Vec<Fault>,
        trace: SharedTrace,
    ) -> World<'a> {
        let tick = scenario.tick();
        let mut builder = turmoil::Builder::new();
        builder
            .rng_seed(seed.derive_u64(Stream::Turmoil))
            .epoch(SystemTime::UNIX_EPOCH + Duration::from_secs(EPOCH_UNIX_S))
            .simulation_duration(scenario.duration + Duration::from_secs(1))
            .tick_duration(tick)
            .min_message_latency(scenario.network.service_latency_min)
            .max_message_latency(scenario.network.service_latency_max)
            .tcp_capacity(1024);
        let mut sim = builder.build();

        let mut axes = Vec::new();
        let mut links: BTreeMap<String, Vec<(String, SimDriveLink)>> = BTreeMap::new();
        for (k, axis) in scenario.axes.iter().enumerate() {
            let k = k as u32;
            let bus = Rc::new(RefCell::new(Fieldbus::new(
                scenario.network.fieldbus_latency,
                scenario.network.fieldbus_loss,
                scenario.network.fieldbus_corruption,
                seed.rng(Stream::Fieldbus(k)),
            )));
            let plant = Plant::new(axis.plant.clone(), seed.rng(Stream::PlantNoise(k)));
            let config = DriveConfig {
                current_a_max: axis.current_a_max,
                // PLANTED (tests only): a late watchdog; the oracles keep the configured one.
                watchdog: if scenario.planted.drive_watchdog_ten_times_late {
                    axis.drive_watchdog * 10
                } else {
                    axis.drive_watchdog
                },
                // PLANTED (tests only): no following-error monitoring at all.
                // A firmware planted to ignore its watchdog has no monitors at all, so that
                // PH4 still sees the runaway it plants.
                following_error_window_rad: if scenario.planted.drive_ignores_following_error
                    || scenario.planted.drive_ignores_watchdog
                {
                    f64::INFINITY
                } else {
                    axis.following_error_rad_max
                },
                following_error_time_out: Duration::ZERO,
                feedback_period: axis.control_period,
                sample_period: scenario.sample_period(),
                watchdog_enabled: !scenario.planted.drive_ignores_watchdog,
            };
            let drive = SimDrive::new(config, plant, bus.clone());
            let quick_stop_deceleration_rad_per_s2 = drive.quick_stop_deceleration_rad_per_s2();
            let drive = Rc::new(RefCell::new(drive));
            axes.push(AxisWorld {
                name: axis.name.clone(),
                drive: drive.clone(),
                bus: bus.clone(),
                watchdog: axis.drive_watchdog,
                quick_stop_deceleration_rad_per_s2,
            });
            links
                .entry(axis.motion_host.clone())
                .or_default()
                .push((axis.name.clone(), SimDriveLink::new(bus, drive)));
        }

        let mut disks = BTreeMap::new();
        for host in scenario.hosts() {
            disks.insert(host, Rc::new(RefCell::new(Disk::default())));
        }
        for k in 1..=scenario.motion_hosts {
            let name = format!("motion-{k}");
            let disk = disks[&name].clone();
            let host_links = links.remove(&name).unwrap_or_default();
            hosts::register_motion(
                &mut sim,
                scenario,
                &name,
                disk,
                host_links,
                seed.derive_u64(Stream::MotionBus(k)),
            );
        }
        for k in 1..=scenario.clients {
            let name = format!("client-{k}");
            hosts::register_client(
                &mut sim,
                scenario,
                k,
                &name,
                seed.rng(Stream::Client(k)),
                seed.rng(Stream::HttpClient(k)),
            );
        }
        if let Some(services) = &scenario.services {
            hosts::register_registry(&mut sim, scenario);
            hosts::register_journal(&mut sim, scenario, disks["journal"].clone());
            hosts::register_bus(&mut sim, scenario, disks["bus"].clone());
            hosts::register_inventory(&mut sim, services, disks["inventory"].clone());
            for k in 1..=services.orders_instances {
                hosts::register_orders(&mut sim, scenario, k, seed.rng(Stream::Orders(k)));
            }
            hosts::register_gateway(&mut sim, scenario, seed.rng(Stream::Gateway));
        }

        for link in &scenario.network.links {
            sim.set_link_latency(link.a.as_str(), link.b.as_str(), link.latency_min);
            sim.set_link_max_message_latency(link.a.as_str(), link.b.as_str(), link.latency_max);
            if link.loss > 0.0 {
                sim.set_link_fail_rate(link.a.as_str(), link.b.as_str(), link.loss);
            }
        }

        let mut heals: Vec<(Duration, usize)> = schedule
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.until.map(|u| (u, i)))
            .collect();
        heals.sort();
        World {
            scenario,
            sim,
            tick,
            axes,
            disks,
            schedule,
            next_start: 0,
            heals,
            trace,
            observed: 0,
            samples: Vec::new(),
        }
    }

    /// Runs to the scenario's end, feeding the observer as it goes.
    pub fn run(&mut self, observer: &mut dyn Observer) {
        if self.scenario.planted.trace_nondeterministic {
            // Planted bug: a value that differs between two runs in one process, as a stray
            // global counter, hash-map order or wall-clock read would.
            static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.trace.lock().expect("trace lock").record(TraceEvent {
                t: Duration::ZERO,
                host: HARNESS_HOST.to_owned(),
                name: "planted_nondeterminism".to_owned(),
                fields: vec![("run".to_owned(), run.to_string())],
            });
        }
        let end = self.scenario.duration;
        let mut now = Duration::ZERO;
        while now < end {
            let tick_end = (now + self.tick).min(end);
            self.apply_faults_due(tick_end);
            self.sim
                .step()
                .unwrap_or_else(|error| panic!("turmoil stopped the simulation: {error}"));
            now = self.sim.elapsed();
            debug_assert_eq!(now, tick_end, "turmoil's clock and the world's disagree");
            let mut samples = std::mem::take(&mut self.samples);
            for (k, axis) in self.axes.iter().enumerate() {
                let mut drive = axis.drive.borrow_mut();
                drive.advance_to(now);
                samples.extend(drive.drain_samples().map(|s| (k, s)));
                for (t, event) in drive.drain_events() {
                    let (name, fields) = match event {
                        DriveEvent::WatchdogTripped { last_command_at } => (
                            "drive_watchdog_tripped",
                            vec![(
                                "last_command_s".to_owned(),
                                last_command_at.map_or("never".to_owned(), |t| {
                                    format!("{:?}", t.as_secs_f64())
                                }),
                            )],
                        ),
                        DriveEvent::FollowingErrorTripped { error_rad } => (
                            "drive_following_error_tripped",
                            vec![("error_rad".to_owned(), format!("{error_rad:?}"))],
                        ),
                        DriveEvent::QuickStopDone { braked } => (
                            "drive_quick_stop_done",
                            vec![("braked".to_owned(), braked.to_string())],
                        ),
                        DriveEvent::BrakeSlipped => ("drive_brake_slipped", vec![]),
                        DriveEvent::WatchdogCleared => ("drive_watchdog_cleared", vec![]),
                    };
                    self.trace.lock().expect("trace lock").record(TraceEvent {
                        t,
                        host: format!("drive-{}", axis.name),
                        name: name.to_owned(),
                        fields,
                    });
                }
            }
            self.feed(observer, &mut samples);
            samples.clear();
            self.samples = samples;
        }
    }

    /// Gives the observer the trace events recorded since the last call and the tick's samples
    /// (axis index, sample), in time order: a sample after every event at or before its instant.
    fn feed(&mut self, observer: &mut dyn Observer, samples: &mut [(usize, DriveSample)]) {
        let trace = self.trace.lock().expect("trace lock");
        let mut fresh: Vec<&TraceEvent> = trace.events()[self.observed..].iter().collect();
        // Host events and drive events of one tick are recorded in two passes: give them to
        // the observer in time order (stable, so equal times keep their recording order).
        fresh.sort_by_key(|e| e.t);
        samples.sort_by_key(|(k, s)| (s.t, *k));
        let mut events = fresh.into_iter().peekable();
        for (k, sample) in samples.iter() {
            while let Some(event) = events.next_if(|e| e.t <= sample.t) {
                observer.on_event(event);
            }
            let axis = &self.axes[*k];
            let command: Option<DriveCommandFrame> = sample.last_command;
            let commands_lost_since = sample
                .last_valid_command_at
                .map(|at| at + axis.watchdog)
                .filter(|since| *since < sample.t);
            observer.on_sample(&AxisSample {
                t: sample.t,
                axis: &axis.name,
                truth: sample.truth,
                setpoint_rad: command.map(|c| c.position_setpoint_rad),
                moving: command.is_some_and(|c| c.moving),
                torque_enabled: sample.status.torque_enabled,
                watchdog_tripped: sample.status.watchdog_tripped,
                drive_fault_code: sample.status.fault_code,
                quick_stop_deceleration_rad_per_s2: axis.quick_stop_deceleration_rad_per_s2,
                commands_lost_since,
            });
        }
        for event in events {
            observer.on_event(event);
        }
        self.observed = trace.events().len();
    }

    fn apply_faults_due(&mut self, until: Duration) {
        while self.next_start < self.schedule.len() && self.schedule[self.next_start].at <= until {
            let index = self.next_start;
            self.next_start += 1;
            self.start_fault(index);
        }
        while let Some(&(at, index)) = self.heals.first() {
            if at > until {
                break;
            }
            self.heals.remove(0);
            self.heal_fault(index);
        }
    }

    fn record_fault(&self, name: &str, index: usize) {
        let fields = self.schedule[index].trace_fields();
        let t = self.sim.elapsed();
        self.trace.lock().expect("trace lock").record(TraceEvent {
            t,
            host: HARNESS_HOST.to_owned(),
            name: name.to_owned(),
            fields,
        });
    }

    fn axis_mut(&mut self, name: &str) -> &mut AxisWorld {
        self.axes
            .iter_mut()
            .find(|a| a.name == name)
            .expect("fault axes are checked at load")
    }

    fn disk(&self, host: &str) -> &SharedDisk {
        self.disks
            .get(host)
            .expect("fault hosts are checked at load")
    }

    /// What each kind does when it starts: the one place besides its row (`fault/kind.rs`)
    /// that a kind is named.
    fn start_fault(&mut self, index: usize) {
        self.record_fault("fault_injected", index);
        let id = index as u64;
        let fault = self.schedule[index].clone();
        let target = &fault.target;
        match fault.kind {
            FaultKind::Partition => {
                let (a, b) = target.link();
                self.sim.partition(a, b)
            }
            FaultKind::PartitionOneway => {
                let (from, to) = target.link();
                self.sim.partition_oneway(from, to)
            }
            FaultKind::Hold => {
                let (a, b) = target.link();
                self.sim.hold(a, b)
            }
            FaultKind::Latency => {
                let (a, b) = target.link();
                let latency = Duration::from_secs_f64(fault.magnitude() / 1e3);
                self.sim.set_link_latency(a, b, latency);
            }
            FaultKind::Loss => {
                let (a, b) = target.link();
                self.sim.set_link_fail_rate(a, b, fault.magnitude())
            }
            FaultKind::Crash => {
                self.sim.crash(target.host());
                self.disk(target.host()).borrow_mut().on_crash();
            }
            FaultKind::Restart => self.sim.bounce(target.host()),
            FaultKind::DiskIoError => self.disk(target.host()).borrow_mut().faults.io_error = true,
            FaultKind::DiskCorruption => {
                self.disk(target.host()).borrow_mut().faults.corruption = true
            }
            FaultKind::DiskLostWrites => {
                self.disk(target.host()).borrow_mut().lose_unsynced_writes()
            }
            FaultKind::FieldbusPartition => {
                self.axis_mut(target.axis()).bus.borrow_mut().faults.cut = true
            }
            FaultKind::FieldbusLatency => {
                self.axis_mut(target.axis())
                    .bus
                    .borrow_mut()
                    .faults
                    .latency_extra = Duration::from_secs_f64(fault.magnitude() / 1e6);
            }
            FaultKind::FieldbusLoss => {
                self.axis_mut(target.axis()).bus.borrow_mut().faults.loss = fault.magnitude();
            }
            FaultKind::FieldbusCorruption => {
                self.axis_mut(target.axis())
                    .bus
                    .borrow_mut()
                    .faults
                    .corruption = fault.magnitude();
            }
            FaultKind::EncoderGlitch => {
                let offset_counts = fault.magnitude() as i32;
                self.start_plant_fault(target, id, PlantFault::EncoderGlitch { offset_counts })
            }
            FaultKind::EncoderDropout => {
                self.start_plant_fault(target, id, PlantFault::EncoderDropout)
            }
            FaultKind::LoadStep => {
                let torque_nm = fault.magnitude();
                self.start_plant_fault(target, id, PlantFault::LoadStep { torque_nm })
            }
            FaultKind::TorqueLoss => {
                let fraction = fault.magnitude();
                self.start_plant_fault(target, id, PlantFault::TorqueLoss { fraction })
            }
            FaultKind::Overheating => {
                let ambient_c = fault.magnitude();
                self.start_plant_fault(target, id, PlantFault::OverHeating { ambient_c })
            }
            FaultKind::BusUnderVoltage => {
                let volts = fault.magnitude();
                self.start_plant_fault(target, id, PlantFault::BusUnderVoltage { volts })
            }
        }
    }

    fn start_plant_fault(&mut self, target: &Target, id: u64, fault: PlantFault) {
        self.axis_mut(target.axis())
            .drive
            .borrow_mut()
            .start_fault(id, fault);
    }

    /// What each kind does when it heals (an instant kind never does).
    fn heal_fault(&mut self, index: usize) {
        self.record_fault("fault_healed", index);
        let id = index as u64;
        let base = self.scenario.network.clone();
        let fault = self.schedule[index].clone();
        let target = &fault.target;
        match fault.kind {
            FaultKind::Partition => {
                let (a, b) = target.link();
                self.sim.repair(a, b)
            }
            FaultKind::PartitionOneway => {
                let (from, to) = target.link();
                self.sim.repair_oneway(from, to)
            }
            FaultKind::Hold => {
                let (a, b) = target.link();
                self.sim.release(a, b)
            }
            FaultKind::Latency => {
                let (a, b) = target.link();
                let (min, max) = base.latency(a, b);
                self.sim.set_link_latency(a, b, min);
                self.sim.set_link_max_message_latency(a, b, max);
            }
            FaultKind::Loss => {
                let (a, b) = target.link();
                self.sim.set_link_fail_rate(a, b, base.loss(a, b));
            }
            FaultKind::Crash => self.sim.bounce(target.host()),
            FaultKind::Restart | FaultKind::DiskLostWrites => {
                unreachable!("instant faults have no heal time")
            }
            FaultKind::DiskIoError => self.disk(target.host()).borrow_mut().faults.io_error = false,
            FaultKind::DiskCorruption => {
                self.disk(target.host()).borrow_mut().faults.corruption = false
            }
            FaultKind::FieldbusPartition => {
                self.axis_mut(target.axis()).bus.borrow_mut().faults.cut = false
            }
            FaultKind::FieldbusLatency => {
                self.axis_mut(target.axis())
                    .bus
                    .borrow_mut()
                    .faults
                    .latency_extra = Duration::ZERO;
            }
            FaultKind::FieldbusLoss => {
                self.axis_mut(target.axis()).bus.borrow_mut().faults.loss = 0.0
            }
            FaultKind::FieldbusCorruption => {
                self.axis_mut(target.axis())
                    .bus
                    .borrow_mut()
                    .faults
                    .corruption = 0.0;
            }
            FaultKind::EncoderGlitch
            | FaultKind::EncoderDropout
            | FaultKind::LoadStep
            | FaultKind::TorqueLoss
            | FaultKind::Overheating
            | FaultKind::BusUnderVoltage => self
                .axis_mut(target.axis())
                .drive
                .borrow_mut()
                .end_fault(id),
        }
    }
}
