//! What runs on each turmoil host: the cell's services, wired to the simulator's transport,
//! storage and fieldbus. (Being wired up: the services crate's motion service and client.)

use rand_chacha::ChaCha8Rng;

use crate::fieldbus::SimDriveLink;
use crate::net::SharedDisk;
use crate::scenario::Scenario;

pub(crate) fn register_motion(
    sim: &mut turmoil::Sim<'_>,
    _scenario: &Scenario,
    name: &str,
    _disk: SharedDisk,
    _links: Vec<(String, SimDriveLink)>,
) {
    sim.host(name, || async {
        std::future::pending::<turmoil::Result>().await
    });
}

pub(crate) fn register_client(
    sim: &mut turmoil::Sim<'_>,
    _scenario: &Scenario,
    _k: u32,
    name: &str,
    _rng: ChaCha8Rng,
) {
    sim.host(name, || async {
        std::future::pending::<turmoil::Result>().await
    });
}
