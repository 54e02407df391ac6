//! `sim bench`: how much faster than real time the simulator runs, measured against a baseline
//! in the same process, so that the ratio holds on a shared, noisy machine.
//!
//! The baseline is bare turmoil: two hosts exchanging one request/reply datagram per millisecond
//! (no plant, no control, no services), ticking at 1 ms like a cell at 1 kHz. The subject is any
//! scenario (the flagship by default), run once without the determinism re-run. The wall clock
//! is read here and only here in `sim`: a benchmark measures the machine, not the simulation.
//!
//! `--scaling` measures how a cell's cost grows with its hosts: cells of [`SCALING_HOSTS`]
//! hosts built by [`scaling_cell`] from one template (motion hosts with two axes each, orders
//! instances and clients in proportion, the order path on, a light storm), each run once.
//! They are generated rather than shipped as files so that the host count is the only thing
//! that differs between them: four hand-kept copies of one cell would drift apart.
#![allow(clippy::disallowed_methods)] // Instant::now: this module times runs; it is never simulated.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::run::{RunOptions, run};
use crate::scenario::services::ORDERS_INSTANCES_MAX;
use crate::scenario::{Scenario, Source};
use crate::world::EPOCH_UNIX_S;

/// One measured run.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    pub name: String,
    pub simulated_s: f64,
    pub wall_s: f64,
    /// Simulated seconds per wall-clock second.
    pub real_time_factor: f64,
    /// turmoil's tick, ms: its cost is per tick, so a figure means little without it.
    pub tick_ms: f64,
}

/// The baseline and the scenario, measured back to back.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub baseline: Measurement,
    pub scenario: Measurement,
    /// The scenario's real-time factor as a fraction of the baseline's.
    pub ratio_to_baseline: f64,
}

/// Runs bare turmoil for `simulated` with one request/reply datagram per millisecond.
pub fn baseline(simulated: Duration) -> Measurement {
    const TICK: Duration = Duration::from_millis(1);
    let start = Instant::now();
    let mut sim = turmoil::Builder::new()
        .rng_seed(1)
        .epoch(SystemTime::UNIX_EPOCH + Duration::from_secs(EPOCH_UNIX_S))
        .simulation_duration(simulated + Duration::from_secs(1))
        .tick_duration(TICK)
        // No link latency: a request and its reply fit in the millisecond between requests.
        .min_message_latency(Duration::ZERO)
        .max_message_latency(Duration::ZERO)
        .build();
    const PORT: u16 = 9000;
    sim.host("server", || async {
        let socket =
            turmoil::net::UdpSocket::bind((IpAddr::V4(Ipv4Addr::UNSPECIFIED), PORT)).await?;
        let mut buffer = [0u8; 64];
        loop {
            let (n, from) = socket.recv_from(&mut buffer).await?;
            socket.send_to(&buffer[..n], from).await?;
        }
    });
    let requests = simulated.as_millis() as u64;
    sim.host("client", move || async move {
        let socket =
            turmoil::net::UdpSocket::bind((IpAddr::V4(Ipv4Addr::UNSPECIFIED), PORT)).await?;
        let server = SocketAddr::new(turmoil::lookup("server"), PORT);
        let mut interval = tokio::time::interval(Duration::from_millis(1));
        let mut buffer = [0u8; 64];
        for k in 0..requests {
            interval.tick().await;
            socket.send_to(&k.to_le_bytes(), server).await?;
            socket.recv_from(&mut buffer).await?;
        }
        std::future::pending::<()>().await;
        Ok(())
    });
    while sim.elapsed() < simulated {
        sim.step().expect("the baseline simulation runs");
    }
    let simulated_s = sim.elapsed().as_secs_f64();
    let wall_s = start.elapsed().as_secs_f64();
    Measurement {
        name: "bare turmoil, 1 request/reply per ms".to_owned(),
        simulated_s,
        wall_s,
        real_time_factor: simulated_s / wall_s,
        tick_ms: TICK.as_secs_f64() * 1e3,
    }
}

/// Runs `scenario` once at its default seed.
pub fn scenario(scenario: &Scenario) -> Measurement {
    let start = Instant::now();
    let output = run(
        scenario,
        scenario.seed,
        RunOptions {
            check_determinism: false,
            record_series: false,
        },
    );
    let wall_s = start.elapsed().as_secs_f64();
    let simulated_s = output.report.simulated_s;
    Measurement {
        name: scenario.name.clone(),
        simulated_s,
        wall_s,
        real_time_factor: simulated_s / wall_s,
        tick_ms: scenario.tick().as_secs_f64() * 1e3,
    }
}

/// Measures the baseline for as long as the scenario simulates, then the scenario.
pub fn compare(subject: &Scenario) -> BenchReport {
    let baseline = baseline(subject.duration);
    let scenario = scenario(subject);
    BenchReport {
        ratio_to_baseline: scenario.real_time_factor / baseline.real_time_factor,
        baseline,
        scenario,
    }
}

/// The host counts `sim bench --scaling` measures.
pub const SCALING_HOSTS: [u32; 4] = [4, 8, 16, 32];

/// Simulated length of each scaling cell: long enough for orders, faults and recoveries to
/// overlap, short enough that the 32-host cell takes seconds.
const SCALING_DURATION_S: f64 = 30.0;

/// The order path's fixed hosts: gateway, registry, bus, journal, inventory.
const ORDER_PATH_FIXED_HOSTS: u32 = 5;

/// How a scaling cell of `hosts` hosts is made up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CellShape {
    pub hosts: u32,
    pub motion_hosts: u32,
    pub clients: u32,
    /// Zero: the cell has no order path (too few hosts for its five fixed services).
    pub orders_instances: u32,
}

impl CellShape {
    /// Splits `hosts` into motion hosts, clients and orders instances in proportion (a third
    /// each) after the order path's five fixed hosts. There are as many clients as motion hosts
    /// (a client talks to one motion host) and at least one orders instance. A cell too small
    /// to hold the order path and one host of each kind (fewer than 8 hosts) is the motion path
    /// alone: half motion hosts, half clients.
    pub fn of(hosts: u32) -> CellShape {
        assert!(
            hosts >= 2,
            "a scaling cell needs at least a motion host and a client"
        );
        if hosts < ORDER_PATH_FIXED_HOSTS + 3 {
            return CellShape {
                hosts,
                motion_hosts: hosts.div_ceil(2),
                clients: hosts / 2,
                orders_instances: 0,
            };
        }
        let spread = hosts - ORDER_PATH_FIXED_HOSTS;
        let mut motion_hosts = spread.div_ceil(3).min((spread - 1) / 2);
        if spread - 2 * motion_hosts > ORDERS_INSTANCES_MAX {
            // The loader's limit on orders instances: the rest go to motion hosts and clients.
            motion_hosts = (spread - ORDERS_INSTANCES_MAX).div_ceil(2);
        }
        CellShape {
            hosts,
            motion_hosts,
            clients: motion_hosts,
            orders_instances: spread - 2 * motion_hosts,
        }
    }
}

/// The scenario file of the scaling cell of `shape`: the flagship's axes, services and tick,
/// two axes per motion host, a workload in proportion to the motion hosts, and a light storm
/// from 5 s to 25 s at one or two faults per minute of each kind (about four in all; the
/// flagship has about 30 over 235 s).
pub fn scaling_cell(shape: CellShape) -> String {
    use std::fmt::Write as _;
    let CellShape {
        hosts,
        motion_hosts,
        clients,
        orders_instances,
    } = shape;
    let mut toml = format!(
        "name = \"scaling-{hosts}\"\nduration_s = {SCALING_DURATION_S:?}\nsettle_s = 5.0\nseed = 7\n\n\
         [cell]\nclients = {clients}\nmotion_hosts = {motion_hosts}\n\n\
         [network]\ntick_ms = 4\n\n"
    );
    let mut axes = Vec::new();
    for m in 1..=motion_hosts {
        for (suffix, velocity, load) in [("a", 180.0, None), ("b", 120.0, Some(0.01))] {
            // Axes are dealt to clients round robin in name order: `a01`..`aNN`, `b01`..`bNN`
            // gives client k both axes of motion host k.
            let name = format!("{suffix}{m:02}");
            let _ = write!(
                toml,
                "[axis.{name}]\nmotion_host = \"motion-{m}\"\n\
                 velocity_deg_per_s_max = {velocity:?}\n\
                 acceleration_deg_per_s2_max = {:?}\njerk_deg_per_s3_max = {:?}\n\
                 position_deg_min = {:?}\nposition_deg_max = {velocity:?}\n\n\
                 [axis.{name}.plant]\npreset = \"xm430-w350\"\n\n",
                velocity * 4.0,
                velocity * 40.0,
                -velocity,
            );
            if let Some(inertia) = load {
                let _ = write!(
                    toml,
                    "[axis.{name}.plant.load]\ninertia_kg_m2 = {inertia:?}\n\n"
                );
            }
            axes.push(name);
        }
    }
    let chaos_kinds = if orders_instances > 0 {
        // One order about every second per motion host, as in the flagship.
        let _ = write!(
            toml,
            "[services]\norders_instances = {orders_instances}\n\n\
             [[services.gateway.key]]\nkey = \"op-7f3a9c\"\nconsumer = \"line-1\"\nrole = \"operator\"\n\n\
             [[services.inventory.part]]\nname = \"bracket\"\nstock = 4000\n\n\
             [[services.inventory.part]]\nname = \"flange\"\nstock = 4000\n\n\
             [services.orders]\ntakeover_after_ms = 4000.0\nheartbeat_ms = 1000.0\n\n\
             [services.registry]\nttl_ms = 3000.0\n\n\
             [workload.orders]\ncount = {}\nfrom_s = 1.0\ninterval_ms = {:?}\n\
             parts = [\"bracket\", \"flange\"]\ntargets_deg = [90.0, -90.0, 45.0, 0.0]\n\
             api_key = \"op-7f3a9c\"\npoll_interval_ms = 2000\ndeadline_ms = 30000.0\n\n",
            motion_hosts * 24,
            1000.0 / f64::from(motion_hosts),
        );
        "partition = 2.0\nlatency = 2.0\nloss = 1.0\ncrash = 2.0\nrestart = 1.0\n\
         fieldbus-loss = 2.0\nfieldbus-latency = 1.0\n"
    } else {
        for axis in &axes {
            let _ = write!(
                toml,
                "[[workload.cycle]]\naxis = \"{axis}\"\ntargets_deg = [90.0, -90.0, 45.0, 0.0]\n\
                 period_s = 2.0\nfrom_s = 1.0\nuntil_s = 24.0\n\n"
            );
        }
        "partition = 2.0\nlatency = 2.0\ncrash = 2.0\nfieldbus-loss = 2.0\nfieldbus-latency = 1.0\n"
    };
    let _ = write!(
        toml,
        "[chaos]\nfrom_s = 5.0\nuntil_s = 25.0\nfault_s_mean = 1.5\nfault_s_max = 5.0\n\n\
         [chaos.per_min]\n{chaos_kinds}"
    );
    toml
}

/// One scaling cell, measured.
#[derive(Debug, Clone, Serialize)]
pub struct ScalingPoint {
    #[serde(flatten)]
    pub shape: CellShape,
    pub axes: u32,
    pub simulated_s: f64,
    pub wall_s: f64,
    pub wall_s_per_simulated_s: f64,
    /// This cell's cost per simulated second over the smallest cell's.
    pub cost_relative_to_smallest: f64,
}

/// The scaling cells, measured one after another.
#[derive(Debug, Clone, Serialize)]
pub struct ScalingReport {
    pub scaling: Vec<ScalingPoint>,
}

/// Builds and runs each cell of [`SCALING_HOSTS`] once.
pub fn scaling() -> ScalingReport {
    let mut points: Vec<ScalingPoint> = Vec::new();
    for hosts in SCALING_HOSTS {
        let shape = CellShape::of(hosts);
        let source = Source::new(
            format!("scaling cell of {hosts} hosts"),
            scaling_cell(shape),
        );
        let cell = Scenario::from_source(&source)
            .unwrap_or_else(|error| panic!("the generated scaling cell is invalid: {error}"));
        let m = scenario(&cell);
        let wall_s_per_simulated_s = m.wall_s / m.simulated_s;
        let smallest = points
            .first()
            .map_or(wall_s_per_simulated_s, |p| p.wall_s_per_simulated_s);
        points.push(ScalingPoint {
            shape,
            axes: cell.axes.len() as u32,
            simulated_s: m.simulated_s,
            wall_s: m.wall_s,
            wall_s_per_simulated_s,
            cost_relative_to_smallest: wall_s_per_simulated_s / smallest,
        });
    }
    ScalingReport { scaling: points }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: every scaling cell is a valid scenario of exactly its host count, with the order
    /// path from 8 hosts on. Method: build each, load it, count its hosts.
    #[test]
    fn every_scaling_cell_loads_with_its_host_count() {
        for hosts in SCALING_HOSTS {
            let shape = CellShape::of(hosts);
            let source = Source::new("test", scaling_cell(shape));
            let cell = Scenario::from_source(&source).unwrap_or_else(|e| panic!("{hosts}: {e}"));
            assert_eq!(cell.hosts().len() as u32, hosts, "{shape:?}");
            assert_eq!(cell.axes.len() as u32, 2 * shape.motion_hosts);
            assert_eq!(cell.services.is_some(), hosts >= 8, "{shape:?}");
            assert!(hosts < 8 || shape.orders_instances >= 1, "{shape:?}");
        }
    }
}
