//! The inventory: stock per part and reservations held by sagas (docs/DESIGN.md §6; the semantic
//! lock of Richardson's saga countermeasures, see `docs/reference/pattern-semantics.md` §8).
//!
//! Parts: `protocol` (parts, saga ids, requests), `config` (`InventoryConfig`), `durable` (the
//! state file), `core` (`InventoryCore`, the pure state machine) and, here, `run_inventory`,
//! which recovers the state and runs the core in `durable_server`.
//!
//! Design choices (for ARCHITECTURE.md):
//! - **Reservations are semantic locks** (`RESERVED_PENDING`): reserved pieces leave
//!   `available` at once, so no other saga can take them, and come back on release or expiry.
//! - **Idempotent per saga**: the saga id is the key of every request; a record per saga is
//!   kept (bounded window, open reservations never forgotten) and answers repeats. A finished
//!   record never changes again: a reservation released (compensated) or expired is never
//!   re-reserved, a committed one never released.
//! - **Expiry** frees what abandoned sagas hold. It runs on the service's clock; a restart gives
//!   open reservations a full lifetime again (a longer hold, never a shorter one). A commit
//!   after expiry takes the pieces again if they are still there (commit follows the pivot and
//!   must not fail lightly) and otherwise is refused with the shortfall.
//! - **Durable before answered**: the whole state is replaced atomically (it is small) and every
//!   answer waits for the write of the state it was decided on.
//!
//! Events (`tracing`, INFO, stable `event` field, plain fields), for SG5 and SG6:
//! `stock_reserved` (+ `expires_in_ms`), `stock_committed` (+ `after_expiry`), `stock_released`,
//! `reservation_expired`, each with saga, part, quantity and the part's counts after the change
//! (initial, available, reserved, consumed); `stock_refused` (saga, part, quantity, reason);
//! `release_tombstone` (saga); `inventory_duplicate` (saga, request, state, refused);
//! `stock_initialized` (part, initial); after a restart `inventory_recovered` (part and its
//! counts) and `reservation_recovered` (saga, part, quantity, expires_in_ms) for every open
//! reservation, before any other event of the new run; `inventory_started` (port); from the
//! shell `state_write_failed`.

pub mod config;
pub mod core;
pub mod durable;
pub mod protocol;

#[cfg(test)]
mod core_tests;

use std::io;

use tokio::time::Instant;

pub use self::config::{INVENTORY_PORT, InventoryConfig};
pub use self::core::InventoryCore;
pub use self::durable::StateError;
pub use self::protocol::{InventoryRequest, InventoryResponse, PartId, Refusal, SagaId, StockView};
use crate::durable_server::{ServerSettings, run_durable_server};
use crate::storage::Storage;
use crate::transport::Transport;

/// Why the inventory could not run.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("inventory: cannot listen on port {port}: {source}")]
    Bind {
        port: u16,
        #[source]
        source: io::Error,
    },
    #[error("inventory: cannot read the state: {0}")]
    Read(#[source] io::Error),
    /// The state file is damaged: starting would risk breaking stock conservation.
    #[error("inventory: state refused: {0}")]
    State(#[from] StateError),
}

/// Runs the inventory until dropped. Returns only on a start-up failure. Panics on an invalid
/// configuration.
pub async fn run_inventory<T: Transport, S: Storage>(
    transport: T,
    storage: S,
    config: InventoryConfig,
) -> Result<(), InventoryError> {
    config.validate();
    let bytes = storage
        .read(&config.state_path)
        .await
        .map_err(InventoryError::Read)?;
    let start = Instant::now();
    let core = InventoryCore::recover(&config, bytes.as_deref(), start.elapsed())?;
    let listener = transport
        .bind(config.port)
        .await
        .map_err(|source| InventoryError::Bind {
            port: config.port,
            source,
        })?;
    tracing::info!(event = "inventory_started", port = config.port);
    let settings = ServerSettings {
        service: "inventory",
        retry_delay: config.write_retry_delay,
    };
    run_durable_server(listener, storage, config.state_path, core, start, settings).await;
    Ok(())
}

#[cfg(test)]
mod shell_tests {
    use std::time::Duration;

    use super::*;
    use crate::rpc::RpcClient;
    use crate::storage::TokioStorage;
    use crate::testing::{PortReporting, TempRoot};
    use crate::transport::TokioTransport;

    #[tokio::test]
    async fn reservations_survive_a_restart() {
        // Goal: the inventory shell end to end: a reservation and a commit are answered over
        // TCP, and a restart on the same directory keeps the counts and the saga records.
        // Method: reserve 2 for saga 1 and commit, reserve 3 for saga 2; restart; the stock is
        // (initial 10, available 5, reserved 3, consumed 2) and a repeated reserve of saga 1 is
        // answered Committed.
        let root = TempRoot::new("inventory-shell");
        let storage = TokioStorage::new(&root.0);
        let transport = PortReporting::default();
        let part = PartId::new("bolt");
        let mut config = InventoryConfig::new(vec![(part.clone(), 10)]);
        config.port = 0;
        let timeout = Duration::from_secs(5);
        let reserve = |saga, quantity| InventoryRequest::Reserve {
            saga: SagaId(saga),
            part: part.clone(),
            quantity,
        };

        let first_run = async {
            let port = transport.port().await;
            let client = RpcClient::new(TokioTransport::loopback());
            let call = async |request: InventoryRequest| -> InventoryResponse {
                client
                    .call("127.0.0.1", port, &request, timeout)
                    .await
                    .unwrap()
            };
            assert!(matches!(
                call(reserve(1, 2)).await,
                InventoryResponse::Reserved { .. }
            ));
            assert_eq!(
                call(InventoryRequest::Commit { saga: SagaId(1) }).await,
                InventoryResponse::Committed
            );
            assert!(matches!(
                call(reserve(2, 3)).await,
                InventoryResponse::Reserved { .. }
            ));
        };
        tokio::select! {
            biased;
            result = run_inventory(transport.clone(), storage.clone(), config.clone()) => {
                panic!("inventory stopped: {result:?}")
            }
            () = first_run => {}
        }

        let second_run = async {
            let port = transport.port().await;
            let client = RpcClient::new(TokioTransport::loopback());
            let stock: InventoryResponse = client
                .call(
                    "127.0.0.1",
                    port,
                    &InventoryRequest::Stock { part: part.clone() },
                    timeout,
                )
                .await
                .unwrap();
            assert_eq!(
                stock,
                InventoryResponse::Stock(StockView {
                    initial: 10,
                    available: 5,
                    reserved: 3,
                    consumed: 2
                })
            );
            let again: InventoryResponse = client
                .call("127.0.0.1", port, &reserve(1, 2), timeout)
                .await
                .unwrap();
            assert_eq!(again, InventoryResponse::Committed);
        };
        tokio::select! {
            biased;
            result = run_inventory(transport.clone(), storage.clone(), config.clone()) => {
                panic!("inventory stopped: {result:?}")
            }
            () = second_run => {}
        }
    }
}
