//! `hil run`: a bench scenario's motion program on real (or emulated) servos. Owns the
//! preflight (the line budget: does the baud carry the control rate; ping and model check,
//! current mode, limits, bus watchdog), the real-time loop on
//! its own thread (absolute deadlines; SCHED_FIFO and locked memory where permitted), the safe
//! stops (torque off on every way out: end of program, error, panic, Ctrl-C), and the figures
//! of the report. The control itself is `control::AxisController`, the same one the simulated
//! motion service runs.

// Real-time shell: this module reads the monotonic clock, sleeps to absolute deadlines and runs
// the loop on its own thread. None of it is reachable from the simulation.
#![allow(clippy::disallowed_methods)]

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use control::{
    AxisConfig, AxisController, DriveState, Feedback, PlantConstants, Profile, SafetyRequest,
    TrajectoryLimits,
};
use nix::time::{ClockId, ClockNanosleepFlags, clock_gettime, clock_nanosleep};

use crate::control_table::{BAUD_RATES, XM430_W350, address, operating_mode, unit};
use crate::link::{HostBus, LinkError};
use crate::protocol::SyncWriteEntry;
use crate::protocol::line_budget::{ControlCycle, CycleBudget, LINE_BUSY_SHARE_MAX};
use crate::report::{
    AxisReport, FaultRecord, MoveCounts, OracleReport, Report, SAMPLES_MAX, Samples, StopRecord,
    Verdict, Violation,
};
use crate::scenario::{Axis, ProfileFile, Scenario};
use crate::timing::{RealtimeSetup, TimingRecorder};

/// Feedback block read every cycle: Present Current (126) to Present Temperature (146).
const FEEDBACK_ADDRESS: u16 = address::PRESENT_CURRENT;
const FEEDBACK_BYTES: u16 = 21;
/// The command written every cycle: Goal Current (102), a signed 16-bit register.
const GOAL_CURRENT_BYTES: usize = size_of::<i16>();
/// Return Delay Time (register 9, 2 us units) preflight writes: the servos answer at once, and
/// the line budget counts no delay.
const RETURN_DELAY_TIME_UNITS: i64 = 0;
/// Attempts at each torque-off write before giving up on a servo.
const TORQUE_OFF_ATTEMPTS_MAX: u32 = 3;
/// SCHED_FIFO priority asked for (below the kernel's own threaded IRQs at 50 is usual advice
/// for user loops; 80 keeps the loop above ordinary work).
const SCHED_FIFO_PRIORITY: i32 = 80;
/// Margin on the present-current oracle: two register LSBs of quantisation.
const CURRENT_MARGIN_A: f64 = 2.0 * unit::CURRENT_A;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("preflight: {step}: {source}")]
    Preflight { step: String, source: LinkError },
    #[error("preflight: ID {id} is model {found}, expected {expected} ({name})")]
    WrongModel {
        id: u8,
        found: u16,
        expected: u16,
        name: &'static str,
    },
    #[error("preflight: ID {id} has firmware {found}; the bus watchdog needs 38 or later")]
    OldFirmware { id: u8, found: u8 },
    #[error("{0}")]
    Config(String),
    #[error("{}", line_budget_refusal(.axes, .rate_hz, .budget))]
    LineBudget {
        axes: usize,
        rate_hz: f64,
        budget: CycleBudget,
    },
    #[error(transparent)]
    Link(#[from] LinkError),
}

/// Options of `hil run` beyond the scenario.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub port: String,
    pub baud: u32,
    /// Servo IDs in axis-name order, replacing the scenario's.
    pub ids: Option<Vec<u8>>,
    /// Control rate, replacing the scenario's.
    pub rate_hz: Option<f64>,
    pub dry_run: bool,
}

/// One preflight action, as printed by `--dry-run`.
#[derive(Debug, Clone, PartialEq)]
pub struct PreflightStep {
    pub id: u8,
    pub what: String,
    pub address: u16,
    pub value: i64,
    pub size: u8,
}

/// The register writes that configure one servo for the loop (torque off first, torque on and
/// watchdog last). Pure: the plan is printed by `--dry-run` and executed by the runner.
pub fn preflight_plan(axis: &Axis, bus_watchdog_ms: f64) -> Vec<PreflightStep> {
    let id = axis.id;
    let counts = |rad: f64| {
        ((rad / unit::POSITION_RAD).round() as i64 + unit::POSITION_COUNT_AT_ZERO_RAD)
            .clamp(0, 4095)
    };
    let step = |what: &str, address: u16, size: u8, value: i64| PreflightStep {
        id,
        what: what.to_string(),
        address,
        value,
        size,
    };
    let current_units = (axis.current_a_max / unit::CURRENT_A).ceil().min(1193.0) as i64;
    let velocity_units = (axis.velocity_rad_per_s_max * 1.2 / unit::VELOCITY_RAD_PER_S)
        .ceil()
        .min(1023.0) as i64;
    vec![
        step("torque off", address::TORQUE_ENABLE, 1, 0),
        step("bus watchdog cleared", address::BUS_WATCHDOG, 1, 0),
        step(
            "return delay",
            address::RETURN_DELAY_TIME,
            1,
            RETURN_DELAY_TIME_UNITS,
        ),
        step(
            "operating mode: current",
            address::OPERATING_MODE,
            1,
            i64::from(operating_mode::CURRENT),
        ),
        step("current limit", address::CURRENT_LIMIT, 2, current_units),
        step("velocity limit", address::VELOCITY_LIMIT, 4, velocity_units),
        step(
            "max position limit",
            address::MAX_POSITION_LIMIT,
            4,
            counts(axis.position_rad_max),
        ),
        step(
            "min position limit",
            address::MIN_POSITION_LIMIT,
            4,
            counts(axis.position_rad_min),
        ),
        step(
            "temperature limit",
            address::TEMPERATURE_LIMIT,
            1,
            (axis.temperature_c_max.round() as i64).clamp(0, 100),
        ),
        step("goal current 0", address::GOAL_CURRENT, 2, 0),
        step("torque on", address::TORQUE_ENABLE, 1, 1),
        step(
            "bus watchdog armed",
            address::BUS_WATCHDOG,
            1,
            (bus_watchdog_ms / 20.0).round() as i64,
        ),
    ]
}

/// The traffic the loop puts on the bus each period (see `control_loop`) for `axes` servos: one
/// Fast Sync Read of the feedback block (registers 126..147), one Sync Write of Goal Current.
pub fn bench_cycle(axes: usize) -> ControlCycle {
    ControlCycle {
        devices: axes,
        feedback_bytes: usize::from(FEEDBACK_BYTES),
        command_bytes: GOAL_CURRENT_BYTES,
    }
}

/// The Return Delay Time the loop runs with (preflight writes it before torque on).
fn loop_return_delay_ns() -> u64 {
    RETURN_DELAY_TIME_UNITS as u64 * unit::RETURN_DELAY_NS
}

/// Preflight's first check, before the port is even opened: the bench's cycle for the
/// scenario's axes fits its control period at `baud` (`protocol::line_budget`). Pure.
pub fn check_line_budget(scenario: &Scenario, baud: u32) -> Result<CycleBudget, RunError> {
    let axes = scenario.axes.len();
    let rate_hz = scenario.axes[0].control_rate_hz;
    let budget = bench_cycle(axes).budget(baud, loop_return_delay_ns(), scenario.period_ns());
    if budget.fits() {
        Ok(budget)
    } else {
        Err(RunError::LineBudget {
            axes,
            rate_hz,
            budget,
        })
    }
}

fn ms(ns: u64) -> f64 {
    ns as f64 * 1e-6
}

/// The figures of a line budget, as preflight prints them.
fn line_budget_figures(axes: usize, rate_hz: f64, b: &CycleBudget) -> String {
    format!(
        "{rate_hz} Hz with {axes} axis(es) at {baud} baud: each {period:.3} ms period the loop \
         puts {bytes} bytes on the line (a Fast Sync Read of {feedback} bytes per axis, its \
         reply, a Sync Write of Goal Current), {line:.3} ms at 10 bits a byte with the servos' \
         return delay of {delay} us, against the {allowed:.3} ms ({share:.0} % of the period) \
         the line may take",
        baud = b.baud,
        period = ms(b.period_ns),
        bytes = b.cycle_bytes,
        feedback = FEEDBACK_BYTES,
        line = ms(b.line_time_ns),
        delay = loop_return_delay_ns() / 1000,
        allowed = ms(b.line_time_ns_max),
        share = LINE_BUSY_SHARE_MAX * 100.0,
    )
}

/// Why a control rate is refused and what to change: the highest rate this baud carries, the
/// lowest standard Dynamixel baud that carries this rate.
fn line_budget_refusal(axes: &usize, rate_hz: &f64, b: &CycleBudget) -> String {
    let rate_max = b.rate_hz_max.floor();
    let lower = if rate_max >= crate::scenario::CONTROL_RATE_HZ_MIN {
        format!(
            "lower the rate: at {} baud this bus carries at most {rate_max} Hz (--rate {rate_max})",
            b.baud
        )
    } else {
        format!(
            "lowering the rate will not do: at {} baud this bus carries at most {rate_max} Hz, \
             below the bench's {} Hz minimum",
            b.baud,
            crate::scenario::CONTROL_RATE_HZ_MIN
        )
    };
    let bauds: Vec<u32> = BAUD_RATES.iter().map(|&(_, baud)| baud).collect();
    let faster = match bench_cycle(*axes).lowest_baud(&bauds, loop_return_delay_ns(), b.period_ns) {
        Some(baud) => format!(
            "or raise the baud: {rate_hz} Hz needs {baud} baud or faster (write the servos' Baud Rate register 8, \
             e.g. with Dynamixel Wizard, and pass --baud {baud})"
        ),
        None => format!(
            "no standard Dynamixel baud carries {rate_hz} Hz with {axes} axis(es): lower the \
             rate or put fewer axes on this bus"
        ),
    };
    format!(
        "preflight: the baud cannot carry the control rate: {}. To change it, {lower}; {faster}. \
         Nothing was sent to the servos; torque is off",
        line_budget_figures(*axes, *rate_hz, b)
    )
}

/// Steps that change nothing physical (everything before torque on): what `--dry-run` executes.
fn is_dry_run_safe(step: &PreflightStep) -> bool {
    !(step.address == address::TORQUE_ENABLE && step.value == 1)
        && step.address != address::BUS_WATCHDOG
        || (step.address == address::BUS_WATCHDOG && step.value == 0)
}

fn now_ns() -> u64 {
    let t = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC is always available");
    u64::try_from(t.tv_sec()).expect("monotonic seconds are positive") * 1_000_000_000
        + u64::try_from(t.tv_nsec()).expect("nanoseconds are positive")
}

fn sleep_until_ns(deadline_ns: u64) {
    let spec = nix::sys::time::TimeSpec::new(
        (deadline_ns / 1_000_000_000) as libc::time_t,
        (deadline_ns % 1_000_000_000) as libc::c_long,
    );
    // EINTR (a signal) just ends the sleep early; the loop checks its deadline again.
    let _ = clock_nanosleep(
        ClockId::CLOCK_MONOTONIC,
        ClockNanosleepFlags::TIMER_ABSTIME,
        &spec,
    );
}

/// Asks for SCHED_FIFO and locked memory; says plainly what it did not get.
fn setup_realtime() -> RealtimeSetup {
    let mut setup = RealtimeSetup::default();
    let param = libc::sched_param {
        sched_priority: SCHED_FIFO_PRIORITY,
    };
    #[allow(unsafe_code)]
    // SAFETY: sched_setscheduler reads a valid, initialised sched_param for the calling thread
    // (pid 0); nix has no wrapper for it. It has no other effect on memory.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if rc == 0 {
        setup.sched_fifo = true;
    } else {
        setup.warnings.push(format!(
            "SCHED_FIFO not granted ({}): the loop runs at normal priority and its jitter is the OS's; \
             run as root or grant CAP_SYS_NICE / an rtprio limit for bench timing",
            std::io::Error::last_os_error()
        ));
    }
    match nix::sys::mman::mlockall(
        nix::sys::mman::MlockAllFlags::MCL_CURRENT | nix::sys::mman::MlockAllFlags::MCL_FUTURE,
    ) {
        Ok(()) => setup.memory_locked = true,
        Err(e) => setup.warnings.push(format!(
            "memory not locked ({e}): page faults can delay cycles; raise RLIMIT_MEMLOCK or run as root"
        )),
    }
    setup
}

fn controller_for(axis: &Axis, link_loss_s: f64, period_s: f64) -> AxisController {
    let shaft = axis.params.output_shaft();
    let plant = PlantConstants {
        inertia_kg_m2: shaft.inertia_kg_m2,
        torque_constant_nm_per_a: shaft.torque_constant_nm_per_a,
        viscous_nm_s_per_rad: shaft.viscous_nm_s_per_rad,
        coulomb_nm: shaft.coulomb_nm,
        current_a_max: axis.current_a_max,
    };
    let limits = TrajectoryLimits {
        velocity_rad_per_s_max: axis.velocity_rad_per_s_max,
        acceleration_rad_per_s2_max: axis.acceleration_rad_per_s2_max,
        jerk_rad_per_s3_max: axis.jerk_rad_per_s3_max,
    };
    let mut config = AxisConfig::from_plant(
        plant,
        axis.bandwidth_hz,
        limits,
        axis.position_rad_min,
        axis.position_rad_max,
    );
    config.profile = match axis.profile {
        ProfileFile::Trapezoid => Profile::Trapezoid,
        ProfileFile::SCurve => Profile::SCurve,
    };
    config.supervisor.following_error_rad_max = axis.following_error_rad_max;
    config.supervisor.winding_temperature_c_max = axis.temperature_c_max;
    config.supervisor.stop_time_s_max = config.supervisor.stop_time_s_max.max(axis.stop_time_s);
    // The bench tolerates `comm_failures_consecutive_max` lost exchanges before it calls the
    // link lost; the supervisor's feedback and command watchdogs allow the same time, so the
    // two agree on when a link is gone.
    config.supervisor.feedback_invalid_s_max =
        config.supervisor.feedback_invalid_s_max.max(link_loss_s);
    config.supervisor.command_timeout_s = config.supervisor.command_timeout_s.max(link_loss_s);
    // Encoder plausibility: each cycle's read is a fresh sample (`decode_feedback`), and the
    // XM430 reports 4096 counts per revolution and velocity in 0.229 rpm units.
    config.supervisor.feedback_period_s = period_s;
    config.supervisor.position_resolution_rad = unit::POSITION_RAD;
    config.supervisor.velocity_resolution_rad_per_s = unit::VELOCITY_RAD_PER_S;
    AxisController::new(config)
}

fn i16_at(b: &[u8], at: usize) -> i64 {
    i64::from(i16::from_le_bytes([b[at], b[at + 1]]))
}

fn i32_at(b: &[u8], at: usize) -> i64 {
    i64::from(i32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]))
}

/// Feedback from the block at 126..147, read in cycle `cycle` (each read is a fresh sample).
fn decode_feedback(block: &[u8], cycle: u64) -> Feedback {
    let current = i16_at(block, 0) as f64 * unit::CURRENT_A;
    let velocity = i32_at(block, 2) as f64 * unit::VELOCITY_RAD_PER_S;
    let position =
        (i32_at(block, 6) - unit::POSITION_COUNT_AT_ZERO_RAD) as f64 * unit::POSITION_RAD;
    let temperature = f64::from(block[20]);
    Feedback {
        position_rad: position,
        velocity_rad_per_s: velocity,
        current_a: current,
        winding_temperature_c: temperature,
        valid: true,
        // Wrapping by design: the supervisor compares indices with wrapping_sub.
        sample_index: cycle as u32,
    }
}

/// Per-axis state of the loop.
#[derive(Debug)]
struct AxisRun {
    axis: Axis,
    controller: AxisController,
    next_move: usize,
    feedback: Feedback,
    samples: Samples,
    following_sq_sum: f64,
    following_n: u64,
    following_max: f64,
    current_peak: f64,
    temperature_max: f64,
    first_following_violation: Option<Violation>,
    first_current_violation: Option<Violation>,
    first_position_violation: Option<Violation>,
    moves_done: Vec<(f64, f64)>, // (target_rad, end_t_s)
    enabled: bool,
    moves: MoveCounts,
}

#[derive(Debug, Clone)]
enum StopCause {
    Interrupted,
    CommunicationLost(String),
    Overruns(u64),
    SupervisorFault(String),
}

impl StopCause {
    fn reason(&self) -> &'static str {
        match self {
            StopCause::Interrupted => "interrupted",
            StopCause::CommunicationLost(_) => "communication lost",
            StopCause::Overruns(_) => "overruns",
            StopCause::SupervisorFault(_) => "safety stop",
        }
    }

    fn detail(&self) -> String {
        match self {
            StopCause::Interrupted => "SIGINT or SIGTERM".into(),
            StopCause::CommunicationLost(d) | StopCause::SupervisorFault(d) => d.clone(),
            StopCause::Overruns(n) => format!("{n} consecutive overruns"),
        }
    }
}

/// Turns torque off on every servo when dropped: at the end of the loop, on an error, and
/// while unwinding from a panic.
struct TorqueOffGuard<'a> {
    bus: &'a mut HostBus,
    ids: Vec<u8>,
    confirmed: Option<bool>,
}

impl TorqueOffGuard<'_> {
    /// Writes Torque Enable 0 to every servo (a broadcast first, which needs no reply, then
    /// each ID with its status) and reads it back. True when every servo confirmed.
    fn torque_off(&mut self) -> bool {
        let _ = self.bus.sync_write(
            address::TORQUE_ENABLE,
            self.ids
                .iter()
                .map(|&id| SyncWriteEntry { id, data: vec![0] })
                .collect(),
        );
        let mut all = true;
        for &id in &self.ids {
            let mut ok = false;
            for _ in 0..TORQUE_OFF_ATTEMPTS_MAX {
                if self.bus.write(id, address::TORQUE_ENABLE, &[0]).is_ok()
                    && self
                        .bus
                        .read(id, address::TORQUE_ENABLE, 1)
                        .is_ok_and(|v| v == [0])
                {
                    ok = true;
                    break;
                }
            }
            all &= ok;
        }
        self.confirmed = Some(all);
        all
    }
}

impl Drop for TorqueOffGuard<'_> {
    fn drop(&mut self) {
        if self.confirmed.is_none() {
            self.torque_off();
        }
    }
}

/// The outcome of the loop thread.
#[derive(Debug)]
struct LoopOutcome {
    axes: Vec<AxisRun>,
    stop: Option<(f64, StopCause)>,
    duration_s: f64,
    timing: TimingRecorder,
    realtime: RealtimeSetup,
    link: crate::link::LinkStats,
    torque_off_confirmed: bool,
}

/// Runs preflight on `bus`; with `dry_run`, only the steps that leave torque off.
fn preflight(
    bus: &mut HostBus,
    scenario: &Scenario,
    dry_run: bool,
    log: &mut Vec<String>,
) -> Result<(), RunError> {
    for axis in &scenario.axes {
        let id = axis.id;
        let (model, firmware) = bus.ping(id).map_err(|source| RunError::Preflight {
            step: format!("ping ID {id}"),
            source,
        })?;
        if model != XM430_W350.number {
            return Err(RunError::WrongModel {
                id,
                found: model,
                expected: XM430_W350.number,
                name: XM430_W350.name,
            });
        }
        if firmware < 38 {
            return Err(RunError::OldFirmware {
                id,
                found: firmware,
            });
        }
        log.push(format!(
            "ID {id} (axis {}): ping ok, model {model} ({}), firmware {firmware}",
            axis.name, XM430_W350.name
        ));
        for step in preflight_plan(axis, scenario.bench.bus_watchdog_ms) {
            if dry_run && !is_dry_run_safe(&step) {
                log.push(format!(
                    "ID {id}: would write {} = {} (register {})",
                    step.what, step.value, step.address
                ));
                continue;
            }
            let bytes = step.value.to_le_bytes();
            bus.write(id, step.address, &bytes[..usize::from(step.size)])
                .map_err(|source| RunError::Preflight {
                    step: format!("ID {id}: {}", step.what),
                    source,
                })?;
            if step.address == address::RETURN_DELAY_TIME {
                bus.return_delay = std::time::Duration::from_nanos(loop_return_delay_ns());
            }
            log.push(format!(
                "ID {id}: wrote {} = {} (register {})",
                step.what, step.value, step.address
            ));
        }
    }
    Ok(())
}

fn control_loop(
    bus: &mut HostBus,
    scenario: &Scenario,
    period_ns: u64,
    stop_flag: &AtomicBool,
) -> LoopOutcome {
    let realtime = setup_realtime();
    let ids: Vec<u8> = scenario.axes.iter().map(|a| a.id).collect();
    let mut axes: Vec<AxisRun> = scenario
        .axes
        .iter()
        .map(|a| AxisRun {
            axis: a.clone(),
            controller: controller_for(
                a,
                f64::from(scenario.bench.comm_failures_consecutive_max) * period_ns as f64 * 1e-9,
                period_ns as f64 * 1e-9,
            ),
            next_move: 0,
            feedback: Feedback {
                position_rad: 0.0,
                velocity_rad_per_s: 0.0,
                current_a: 0.0,
                winding_temperature_c: 25.0,
                valid: false,
                sample_index: 0,
            },
            samples: Samples::default(),
            following_sq_sum: 0.0,
            following_n: 0,
            following_max: 0.0,
            current_peak: 0.0,
            temperature_max: f64::NEG_INFINITY,
            first_following_violation: None,
            first_current_violation: None,
            first_position_violation: None,
            moves_done: Vec::new(),
            enabled: false,
            moves: MoveCounts::default(),
        })
        .collect();
    let moves_of = |name: &str| {
        scenario
            .moves
            .iter()
            .filter(|m| m.axis == name)
            .cloned()
            .collect::<Vec<_>>()
    };
    let programs: Vec<Vec<crate::scenario::Move>> =
        axes.iter().map(|a| moves_of(&a.axis.name)).collect();
    for (a, p) in axes.iter_mut().zip(&programs) {
        a.moves.requested = p.len() as u64;
    }
    let cycles_total = (scenario.duration_s * 1e9 / period_ns as f64).ceil() as u64;
    let sample_every = (cycles_total as usize).div_ceil(SAMPLES_MAX).max(1) as u64;
    // The loop exchanges in well under a period; a reply later than half a period is lost.
    bus.timeout_margin = std::time::Duration::from_nanos(period_ns / 2);

    let mut guard = TorqueOffGuard {
        bus,
        ids: ids.clone(),
        confirmed: None,
    };
    let mut timing = TimingRecorder::new(period_ns);
    let mut comm_failures = 0u32;
    let mut stop: Option<(f64, StopCause)> = None;
    let mut stopping_since: Option<f64> = None;
    let start_ns = now_ns();
    let mut cycle: u64 = 0;
    let mut t_s = 0.0;
    while cycle < cycles_total {
        let scheduled_ns = start_ns + cycle * period_ns;
        sleep_until_ns(scheduled_ns);
        let started_ns = now_ns();
        t_s = (started_ns - start_ns) as f64 * 1e-9;

        // Feedback.
        let link_ok = match guard
            .bus
            .fast_sync_read(FEEDBACK_ADDRESS, FEEDBACK_BYTES, &ids)
        {
            Ok(blocks) => {
                for (a, block) in axes.iter_mut().zip(&blocks) {
                    a.feedback = decode_feedback(block, cycle);
                }
                comm_failures = 0;
                true
            }
            Err(e) => {
                comm_failures += 1;
                for a in &mut axes {
                    a.feedback.valid = false;
                }
                if (e.is_fatal() || comm_failures >= scenario.bench.comm_failures_consecutive_max)
                    && stop.is_none()
                {
                    stop = Some((
                        t_s,
                        StopCause::CommunicationLost(format!(
                            "{comm_failures} failed exchange(s) in a row, last: {e}"
                        )),
                    ));
                }
                false
            }
        };

        // Control.
        let mut entries = Vec::with_capacity(axes.len());
        for (a, program) in axes.iter_mut().zip(&programs) {
            if let Some(m) = program.get(a.next_move)
                && t_s >= m.at_s
                && !a.controller.is_moving()
                && a.controller.state() == DriveState::OperationEnabled
            {
                if a.next_move > 0 {
                    let previous = &program[a.next_move - 1];
                    a.moves_done.push((previous.target_rad, t_s));
                }
                match a.controller.start_move(t_s, m.target_rad) {
                    Ok(()) => a.moves.succeeded += 1,
                    Err(_) => a.moves.failed += 1,
                }
                a.next_move += 1;
            }
            let command = a.controller.step(t_s, &a.feedback, link_ok);
            // Enable once the controller has seen valid feedback (it holds that position).
            if !a.enabled && a.feedback.valid && stop.is_none() {
                a.enabled = a.controller.try_request(t_s, SafetyRequest::Enable).is_ok();
            }
            let goal = if command.torque_enabled {
                (command.current_a / unit::CURRENT_A).round() as i64
            } else {
                0
            };
            entries.push(SyncWriteEntry {
                id: a.axis.id,
                data: (goal.clamp(-1193, 1193) as i16).to_le_bytes().to_vec(),
            });
            if let Some(fault) = a.controller.fault()
                && stop.is_none()
            {
                stop = Some((
                    t_s,
                    StopCause::SupervisorFault(format!(
                        "axis {}: {} (0x{:04X}) at {:.3} s: value {:.4} beyond limit {:.4}",
                        a.axis.name,
                        fault.code.name(),
                        fault.code.code(),
                        fault.t_s,
                        fault.value,
                        fault.limit
                    )),
                ));
            }
            record(a, t_s, cycle.is_multiple_of(sample_every));
        }
        let _ = guard.bus.sync_write(address::GOAL_CURRENT, entries);

        if stop_flag.load(Ordering::Relaxed) && stop.is_none() {
            stop = Some((t_s, StopCause::Interrupted));
        }
        let finished_ns = now_ns();
        let outcome = timing.record(scheduled_ns, started_ns, finished_ns);
        if outcome.overruns_consecutive >= u64::from(scenario.bench.overruns_consecutive_max)
            && stop.is_none()
        {
            stop = Some((t_s, StopCause::Overruns(outcome.overruns_consecutive)));
        }
        if let Some((_, cause)) = &stop {
            // A supervisor fault runs its own controlled stop (SS1 then STO) while the link
            // works; everything else cuts torque at once.
            let controlled = matches!(cause, StopCause::SupervisorFault(_));
            let since = *stopping_since.get_or_insert(t_s);
            let all_off = axes.iter().all(|a| !a.controller.command().torque_enabled);
            let stop_time = axes
                .iter()
                .map(|a| a.controller.config().supervisor.stop_time_s_max)
                .fold(0.0, f64::max);
            if !controlled || all_off || t_s - since > stop_time {
                break;
            }
        }
        // Skip the periods an overrun has eaten: deadlines stay absolute.
        let next = (now_ns() - start_ns) / period_ns + 1;
        cycle = (cycle + 1).max(if outcome.overrun { next } else { cycle + 1 });
    }
    for (a, program) in axes.iter_mut().zip(&programs) {
        if a.next_move > 0 && a.moves_done.len() < a.next_move {
            a.moves_done
                .push((program[a.next_move - 1].target_rad, t_s));
        }
    }
    // Past the loop there is no deadline: give the torque-off exchanges time.
    guard.bus.timeout_margin = std::time::Duration::from_millis(50);
    let confirmed = guard.torque_off();
    let link = guard.bus.stats();
    drop(guard);
    LoopOutcome {
        axes,
        stop,
        duration_s: (now_ns() - start_ns) as f64 * 1e-9,
        timing,
        realtime,
        link,
        torque_off_confirmed: confirmed,
    }
}

fn record(a: &mut AxisRun, t_s: f64, keep_sample: bool) {
    let setpoint = a.controller.setpoint();
    let fb = a.feedback;
    if !fb.valid {
        return;
    }
    let error = (setpoint.position_rad - fb.position_rad).abs();
    if a.controller.command().torque_enabled {
        a.following_sq_sum += error * error;
        a.following_n += 1;
        a.following_max = a.following_max.max(error);
        if error > a.axis.following_error_rad_max && a.first_following_violation.is_none() {
            a.first_following_violation = Some(Violation {
                t_s,
                detail: format!(
                    "{:.2} deg > {:.2} deg",
                    error.to_degrees(),
                    a.axis.following_error_rad_max.to_degrees()
                ),
            });
        }
    }
    a.current_peak = a.current_peak.max(fb.current_a.abs());
    if fb.current_a.abs() > a.axis.current_a_max + CURRENT_MARGIN_A
        && a.first_current_violation.is_none()
    {
        a.first_current_violation = Some(Violation {
            t_s,
            detail: format!(
                "{:.3} A > {:.3} A",
                fb.current_a.abs(),
                a.axis.current_a_max
            ),
        });
    }
    if (fb.position_rad < a.axis.position_rad_min || fb.position_rad > a.axis.position_rad_max)
        && a.first_position_violation.is_none()
    {
        a.first_position_violation = Some(Violation {
            t_s,
            detail: format!(
                "{:.2} deg outside the soft limits",
                fb.position_rad.to_degrees()
            ),
        });
    }
    a.temperature_max = a.temperature_max.max(fb.winding_temperature_c);
    if keep_sample {
        a.samples.push(
            t_s,
            setpoint.position_rad.to_degrees(),
            fb.position_rad.to_degrees(),
            fb.current_a,
        );
    }
}

fn oracle(id: &str, statement: &str, violation: Option<Violation>) -> OracleReport {
    OracleReport {
        id: id.into(),
        statement: statement.into(),
        holds: violation.is_none(),
        first_violation: violation,
    }
}

fn build_report(scenario: &Scenario, out: LoopOutcome) -> Report {
    let first = |f: &dyn Fn(&AxisRun) -> Option<Violation>| {
        out.axes
            .iter()
            .filter_map(f)
            .min_by(|a, b| a.t_s.total_cmp(&b.t_s))
    };
    let following = first(&|a| a.first_following_violation.clone());
    let current = first(&|a| a.first_current_violation.clone());
    let position = first(&|a| a.first_position_violation.clone());
    // Every move that was started ends within tolerance of its target: judged on the position
    // just before the next move (or the end), from the recorded samples.
    let moves_on_target = first(&|a| {
        for &(target, end_t) in &a.moves_done {
            let s = &a.samples;
            let k = s.t_s.iter().rposition(|&t| t <= end_t)?;
            let error = (s.position_deg[k] - target.to_degrees()).abs();
            if error > a.axis.tolerance_rad.to_degrees() {
                return Some(Violation {
                    t_s: end_t,
                    detail: format!(
                        "axis {} ended {:.2} deg from {:.2} deg",
                        a.axis.name,
                        error,
                        target.to_degrees()
                    ),
                });
            }
        }
        None
    });
    let stopped = out.stop.as_ref().map(|(t, c)| Violation {
        t_s: *t,
        detail: format!("{}: {}", c.reason(), c.detail()),
    });
    let torque = (!out.torque_off_confirmed).then(|| Violation {
        t_s: out.duration_s,
        detail: "Torque Enable could not be read back as 0 on every servo".into(),
    });
    let oracles = vec![
        oracle(
            "physics.following_error_bounded",
            "following error stays within its limit while torque is on",
            following,
        ),
        oracle(
            "physics.current_within_limit",
            "present current stays within the current limit (+2 LSB)",
            current,
        ),
        oracle(
            "physics.position_within_soft_limits",
            "position stays inside the soft limits",
            position,
        ),
        oracle(
            "motion.moves_on_target",
            "every started move ends within tolerance of its target",
            moves_on_target,
        ),
        oracle(
            "hil.no_safety_stop",
            "the run ends without a safety stop, lost link, overrun stop or interruption",
            stopped,
        ),
        oracle(
            "hil.torque_off_at_end",
            "torque is read back as off on every servo after the run",
            torque,
        ),
    ];
    let verdict = if oracles.iter().all(|o| o.holds) {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
    let faults = out
        .stop
        .as_ref()
        .map(|(t, c)| {
            vec![FaultRecord {
                at_s: *t,
                kind: c.reason().replace(' ', "_"),
                detail: c.detail(),
            }]
        })
        .unwrap_or_default();
    let mut moves = MoveCounts::default();
    let axes = out
        .axes
        .iter()
        .map(|a| {
            moves.requested += a.moves.requested;
            moves.succeeded += a.moves.succeeded;
            moves.failed += a.moves.failed;
            AxisReport {
                name: a.axis.name.clone(),
                id: Some(a.axis.id),
                following_error_deg_max: a.following_max.to_degrees(),
                following_error_deg_rms: if a.following_n > 0 {
                    (a.following_sq_sum / a.following_n as f64)
                        .sqrt()
                        .to_degrees()
                } else {
                    0.0
                },
                current_a_peak: a.current_peak,
                position_deg_final: a
                    .samples
                    .position_deg
                    .last()
                    .copied()
                    .unwrap_or(a.feedback.position_rad.to_degrees()),
                winding_temperature_c_max: if a.temperature_max.is_finite() {
                    a.temperature_max
                } else {
                    0.0
                },
                samples: a.samples.clone(),
            }
        })
        .collect();
    Report {
        scenario: scenario.name.clone(),
        seed: 0,
        version: env!("CARGO_PKG_VERSION").to_string(),
        verdict,
        simulated_s: out.duration_s,
        trace_hash: None,
        oracles,
        faults,
        moves,
        axes,
        timing: Some(out.timing.report(&out.link, out.realtime)),
        stop: out.stop.map(|(t, c)| StopRecord {
            t_s: t,
            reason: c.reason().into(),
            detail: c.detail(),
        }),
        torque_off_confirmed: Some(out.torque_off_confirmed),
    }
}

/// What `hil run` produced: a report, or (dry run) the preflight log.
#[derive(Debug)]
pub enum RunOutcome {
    DryRun {
        log: Vec<String>,
        plan: Vec<String>,
    },
    Report {
        log: Vec<String>,
        report: Box<Report>,
    },
}

/// Runs `scenario` on the bench described by `options`. `stop` is raised by SIGINT/SIGTERM.
pub fn run(
    mut scenario: Scenario,
    options: &RunOptions,
    stop: Arc<AtomicBool>,
) -> Result<RunOutcome, RunError> {
    if let Some(ids) = &options.ids {
        if ids.len() != scenario.axes.len() {
            return Err(RunError::Config(format!(
                "--ids gives {} IDs for {} axes",
                ids.len(),
                scenario.axes.len()
            )));
        }
        for (a, &id) in scenario.axes.iter_mut().zip(ids) {
            a.id = id;
        }
    }
    if let Some(rate) = options.rate_hz {
        if !(crate::scenario::CONTROL_RATE_HZ_MIN..=crate::scenario::CONTROL_RATE_HZ_MAX)
            .contains(&rate)
        {
            return Err(RunError::Config(format!(
                "--rate {rate} outside [10, 2000] Hz"
            )));
        }
        for a in &mut scenario.axes {
            a.control_rate_hz = rate;
        }
    }
    // Before anything is sent: a rate the baud cannot carry would overrun from the first cycle.
    let budget = check_line_budget(&scenario, options.baud)?;
    let mut log = vec![format!(
        "line budget ok: {}",
        line_budget_figures(
            scenario.axes.len(),
            scenario.axes[0].control_rate_hz,
            &budget
        )
    )];
    let mut bus = HostBus::open(&options.port, options.baud)?;
    bus.timeout_margin = std::time::Duration::from_millis(50);
    if options.dry_run {
        let result = preflight(&mut bus, &scenario, true, &mut log);
        result?;
        let mut plan = vec![format!(
            "loop: {} Hz for {:.2} s; each period fast sync read of registers 126..147 (current, velocity, position, temperature) and sync write of Goal Current (102)",
            scenario.axes[0].control_rate_hz, scenario.duration_s
        )];
        for m in &scenario.moves {
            plan.push(format!(
                "at {:.2} s: axis {} to {:.1} deg",
                m.at_s,
                m.axis,
                m.target_rad.to_degrees()
            ));
        }
        plan.push("then torque off on every servo; torque was left off by this dry run".into());
        return Ok(RunOutcome::DryRun { log, plan });
    }
    // Torque off on every way out of preflight too.
    let ids: Vec<u8> = scenario.axes.iter().map(|a| a.id).collect();
    if let Err(e) = preflight(&mut bus, &scenario, false, &mut log) {
        let mut guard = TorqueOffGuard {
            bus: &mut bus,
            ids,
            confirmed: None,
        };
        guard.torque_off();
        return Err(e);
    }
    let period_ns = scenario.period_ns();
    let thread_scenario = scenario.clone();
    let thread_stop = Arc::clone(&stop);
    let handle = std::thread::Builder::new()
        .name("hil-loop".into())
        .spawn(move || {
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                control_loop(&mut bus, &thread_scenario, period_ns, &thread_stop)
            }));
            (result, bus)
        })
        .map_err(|e| RunError::Config(format!("cannot start the loop thread: {e}")))?;
    let (result, mut bus) = handle
        .join()
        .expect("the loop thread catches its own panics");
    let report = match result {
        Ok(outcome) => build_report(&scenario, outcome),
        Err(panic) => {
            // The guard inside the loop already tried torque off while unwinding; confirm.
            let mut guard = TorqueOffGuard {
                bus: &mut bus,
                ids,
                confirmed: None,
            };
            // Past the loop there is no deadline: give the torque-off exchanges time.
            guard.bus.timeout_margin = std::time::Duration::from_millis(50);
            let confirmed = guard.torque_off();
            let detail = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            panic_report(&scenario, detail, confirmed)
        }
    };
    Ok(RunOutcome::Report {
        log,
        report: Box::new(report),
    })
}

fn panic_report(scenario: &Scenario, detail: String, confirmed: bool) -> Report {
    Report {
        scenario: scenario.name.clone(),
        seed: 0,
        version: env!("CARGO_PKG_VERSION").to_string(),
        verdict: Verdict::Fail,
        simulated_s: 0.0,
        trace_hash: None,
        oracles: vec![oracle(
            "hil.no_safety_stop",
            "the run ends without a safety stop, lost link, overrun stop or interruption",
            Some(Violation {
                t_s: 0.0,
                detail: format!("panic: {detail}"),
            }),
        )],
        faults: vec![FaultRecord {
            at_s: 0.0,
            kind: "panic".into(),
            detail: detail.clone(),
        }],
        moves: MoveCounts::default(),
        axes: Vec::new(),
        timing: None,
        stop: Some(StopRecord {
            t_s: 0.0,
            reason: "panic".into(),
            detail,
        }),
        torque_off_confirmed: Some(confirmed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bench_scenario() -> Scenario {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scenarios/bench-xm430.toml"
        ))
        .unwrap();
        Scenario::from_toml_str(&text, "bench").unwrap()
    }

    #[test]
    fn the_cycle_is_what_the_loop_exchanges() {
        // Goal: the line budget counts the registers the loop really reads and writes. Method:
        // the feedback block runs from Present Current (126) to the end of Present Temperature
        // (146, one byte); the command is Goal Current's size in the control table.
        let temperature = XM430_W350.register(address::PRESENT_TEMPERATURE).unwrap();
        let end = temperature.address + u16::from(temperature.size);
        assert_eq!(end - FEEDBACK_ADDRESS, FEEDBACK_BYTES);
        let goal = XM430_W350.register(address::GOAL_CURRENT).unwrap();
        assert_eq!(usize::from(goal.size), GOAL_CURRENT_BYTES);
        let plan = preflight_plan(&bench_scenario().axes[0], 100.0);
        let delay = plan
            .iter()
            .find(|p| p.address == address::RETURN_DELAY_TIME)
            .unwrap();
        assert_eq!(
            delay.value, RETURN_DELAY_TIME_UNITS,
            "the delay budgeted is written"
        );
    }

    #[test]
    fn preflight_refuses_200_hz_at_the_factory_baud() {
        // Goal: issue 11's failure (at 57600 baud the bench scenario turned torque on and
        // stopped at 0.09 s on 10 overruns) is refused before anything is sent, with the
        // figures and what to change. Method: the bench scenario (200 Hz, one axis) at 57600:
        // 65 bytes, 11.285 ms of line against 4 ms (80 % of 5 ms); at most 70.9 Hz at that
        // baud; 115200 (5.64 ms) is too slow as well, so 1 Mbps is the advice. At 1 Mbps the
        // same cycle takes 0.650 ms and passes.
        let s = bench_scenario();
        assert_eq!((s.axes.len(), s.axes[0].control_rate_hz), (1, 200.0));
        let refused = check_line_budget(&s, 57_600).unwrap_err();
        let RunError::LineBudget { budget, .. } = &refused else {
            panic!("{refused:?}");
        };
        assert_eq!(
            (
                budget.cycle_bytes,
                budget.line_time_ns,
                budget.line_time_ns_max
            ),
            (65, 11_284_721, 4_000_000)
        );
        let message = refused.to_string();
        for figure in [
            "200 Hz with 1 axis(es) at 57600 baud",
            "5.000 ms period",
            "65 bytes",
            "11.285 ms",
            "4.000 ms (80 % of the period)",
            "at most 70 Hz (--rate 70)",
            "200 Hz needs 1000000 baud or faster",
            "--baud 1000000",
        ] {
            assert!(
                message.contains(figure),
                "{figure:?} missing from: {message}"
            );
        }
        assert!(check_line_budget(&s, 115_200).is_err());
        let ok = check_line_budget(&s, 1_000_000).unwrap();
        assert_eq!(ok.line_time_ns, 650_000);
    }

    #[test]
    fn preflight_plan_ends_with_torque_on_then_watchdog() {
        // Goal: the preflight order is safe: torque off first, mode and limits while off,
        // torque on and the watchdog last; a dry run never enables torque nor arms the watchdog.
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scenarios/bench-xm430.toml"
        ))
        .unwrap();
        let s = Scenario::from_toml_str(&text, "bench").unwrap();
        let plan = preflight_plan(&s.axes[0], s.bench.bus_watchdog_ms);
        assert_eq!(plan[0].address, address::TORQUE_ENABLE);
        assert_eq!(plan[0].value, 0);
        let n = plan.len();
        assert_eq!(
            (plan[n - 2].address, plan[n - 2].value),
            (address::TORQUE_ENABLE, 1)
        );
        assert_eq!(
            (plan[n - 1].address, plan[n - 1].value),
            (address::BUS_WATCHDOG, 5)
        );
        let mode = plan
            .iter()
            .position(|p| p.address == address::OPERATING_MODE)
            .unwrap();
        assert!(mode < n - 2 && plan[mode].value == 0);
        let safe: Vec<_> = plan.iter().filter(|p| is_dry_run_safe(p)).collect();
        assert!(
            safe.iter()
                .all(|p| !(p.address == address::TORQUE_ENABLE && p.value == 1))
        );
        assert!(
            safe.iter()
                .all(|p| p.address != address::BUS_WATCHDOG || p.value == 0)
        );
    }
}
