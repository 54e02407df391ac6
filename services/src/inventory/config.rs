//! The inventory's configuration: its parts and their initial stock, the reservation lifetime,
//! where its state lives.
//!
//! Owns `InventoryConfig`, its defaults and its validation.

use std::collections::BTreeSet;
use std::time::Duration;

use super::protocol::PartId;
use crate::storage::ReadRetry;

/// The port the inventory listens on unless configured otherwise.
pub const INVENTORY_PORT: u16 = 7500;

/// Most part kinds.
pub const PARTS_MAX: usize = 1024;

/// Everything `run_inventory` and `InventoryCore` need besides the traits.
#[derive(Clone, Debug, PartialEq)]
pub struct InventoryConfig {
    /// RPC port.
    pub port: u16,
    /// Where the state lives in `Storage`.
    pub state_path: String,
    /// The parts and their stock at the first start. A part first seen later (a new line in
    /// the configuration) starts with its stock then; parts already on disk keep their counts.
    pub parts: Vec<(PartId, u64)>,
    /// How long a reservation holds its pieces unless committed or released. After a restart
    /// every open reservation gets this lifetime again, from the restart (expiry runs on the
    /// service's own clock, which restarts with it; a longer hold is the safe side).
    pub reservation_ttl: Duration,
    /// Most saga records kept (open reservations are never forgotten; finished ones are, oldest
    /// first, beyond this).
    pub reservations_max: usize,
    /// Wait before the next write after a failed one.
    pub write_retry_delay: Duration,
    /// How reading the state at start-up rides out a failing disk.
    pub state_read_retry: ReadRetry,
}

impl InventoryConfig {
    /// Defaults: port `INVENTORY_PORT`, state at `inventory/state`, 60 s reservations (no
    /// anchor has a default here: one minute is far above a saga's forward path of a few
    /// seconds, so only abandoned reservations expire), 10 000 records, disk retry after 10 ms (start-up
    /// reads per `ReadRetry::default`).
    pub fn new(parts: Vec<(PartId, u64)>) -> InventoryConfig {
        InventoryConfig {
            port: INVENTORY_PORT,
            state_path: "inventory/state".to_owned(),
            parts,
            reservation_ttl: Duration::from_secs(60),
            reservations_max: 10_000,
            write_retry_delay: Duration::from_millis(10),
            state_read_retry: ReadRetry::default(),
        }
    }

    /// Panics on a configuration that cannot work.
    pub fn validate(&self) {
        assert!(!self.state_path.is_empty(), "state_path must not be empty");
        assert!(
            self.parts.len() <= PARTS_MAX,
            "at most {PARTS_MAX} parts, got {}",
            self.parts.len()
        );
        let names: BTreeSet<&PartId> = self.parts.iter().map(|(part, _)| part).collect();
        assert_eq!(names.len(), self.parts.len(), "part names must be unique");
        assert!(
            !self.reservation_ttl.is_zero(),
            "reservation_ttl must be positive"
        );
        assert!(
            self.reservations_max > 0,
            "reservations_max must be positive"
        );
        assert!(
            !self.write_retry_delay.is_zero(),
            "write_retry_delay must be positive (a zero delay would spin on a failing disk)"
        );
        self.state_read_retry.validate();
    }
}
