//! `sim bench`: how much faster than real time the simulator runs, measured against a baseline
//! in the same process, so that the ratio holds on a shared, noisy machine.
//!
//! The baseline is bare turmoil: two hosts exchanging one request/reply datagram per millisecond
//! (no plant, no control, no services), ticking at 1 ms like a cell at 1 kHz. The subject is any
//! scenario (the flagship by default), run once without the determinism re-run. The wall clock
//! is read here and only here in `sim`: a benchmark measures the machine, not the simulation.
#![allow(clippy::disallowed_methods)] // Instant::now: this module times runs; it is never simulated.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::run::{RunOptions, run};
use crate::scenario::Scenario;
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
