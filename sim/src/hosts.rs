//! What runs on each turmoil host: the cell's services, wired to the simulator's transport,
//! storage and fieldbus.
//!
//! Each `register_*` builds the host's configuration once from the scenario and registers a
//! closure that turmoil calls at every (re)start: a restarted host starts from its durable state
//! on its simulated disk, with fresh in-memory state, as a real process would.

use std::rc::Rc;

use rand_chacha::ChaCha8Rng;
use services::client::{ClientConfig, PlannedMove, run_client};
use services::motion::{AxisName, MotionConfig, run_motion};
use services::retry::RetryPolicy;

use crate::fieldbus::SimDriveLink;
use crate::net::{SharedDisk, TurmoilStorage, TurmoilTransport};
use crate::scenario::Scenario;

pub(crate) fn register_motion(
    sim: &mut turmoil::Sim<'_>,
    scenario: &Scenario,
    name: &str,
    disk: SharedDisk,
    links: Vec<(String, SimDriveLink)>,
) {
    let axes: Vec<(AxisName, control::AxisConfig)> = links
        .iter()
        .map(|(axis, _)| {
            let axis = scenario
                .axis(axis)
                .expect("links are built from the scenario's axes");
            (AxisName::new(axis.name.clone()), axis.control_config())
        })
        .collect();
    let first = scenario.axis(&links[0].0).expect("a motion host has axes");
    let mut config = MotionConfig::new(axes);
    config.control_period = first.control_period;
    config.in_position_tolerance_rad = first.tolerance_rad;
    config.skip_fencing_check = scenario.planted.motion_skips_fencing;
    let config = Rc::new(config);
    let links = Rc::new(links);
    sim.host(name, move || {
        let config = (*config).clone();
        let links: Vec<(AxisName, SimDriveLink)> = links
            .iter()
            .map(|(axis, link)| (AxisName::new(axis.clone()), link.clone()))
            .collect();
        let storage = TurmoilStorage::new(disk.clone());
        async move {
            // `run_motion` returns only when it cannot start (its port, or a damaged durable
            // state it refuses to trust). The process exits; the host stays down until the
            // world restarts it. That is a finding for the oracles, not a harness failure.
            if let Err(error) = run_motion(TurmoilTransport, storage, links, config).await {
                tracing::error!(event = "service_exited", service = "motion", error = %error);
            }
            Ok(())
        }
    });
}

/// The workload client `client-<k>`: the moves of the axes assigned to it (`Scenario::client_of`),
/// with the scenario's retry policy and its own jitter stream.
pub(crate) fn register_client(
    sim: &mut turmoil::Sim<'_>,
    scenario: &Scenario,
    k: u32,
    name: &str,
    rng: ChaCha8Rng,
) {
    let moves: Vec<PlannedMove> = scenario
        .moves
        .iter()
        .filter(|m| scenario.client_of(&m.axis) == k)
        .map(|m| PlannedMove {
            axis: AxisName::new(m.axis.clone()),
            target_rad: m.target_rad,
            at: m.at,
        })
        .collect();
    let Some(first) = moves.first() else {
        // A client with nothing to do stays idle (its host exists: faults may name it).
        sim.host(name, || async {
            std::future::pending::<turmoil::Result>().await
        });
        return;
    };
    let motion_host = scenario
        .axis(first.axis.as_str())
        .expect("moves name known axes")
        .motion_host
        .clone();
    let r = &scenario.retry;
    let mut config = ClientConfig::new(k, motion_host, moves, rng);
    config.retry = RetryPolicy {
        attempts_max: r.attempts_max,
        backoff_initial: r.backoff_initial,
        backoff_max: r.backoff_max,
        jitter_ratio: r.jitter,
        deadline: r.deadline,
    };
    config.attempt_timeout = r.timeout;
    let config = Rc::new(config);
    sim.host(name, move || {
        let config = (*config).clone();
        async move {
            run_client(TurmoilTransport, config).await;
            // The workload is done; the host idles so that a late fault can still name it.
            std::future::pending::<()>().await;
            Ok(())
        }
    });
}
