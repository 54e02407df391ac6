//! The bus: the cell's message broker (docs/DESIGN.md §6; semantics after NATS JetStream and
//! RabbitMQ, see `docs/reference/pattern-semantics.md` §7).
//!
//! Parts: `protocol` (topics, groups, message ids, requests), `config` (`BusConfig`),
//! `durable` (the log file), `core` (`BusCore`, the pure state machine), `client`
//! (`BusClient`), `outbox` (the transactional outbox and the consumers' processed ids) and,
//! here, `run_bus`, which recovers the log and runs the core in `durable_server`.
//!
//! Design choices (for ARCHITECTURE.md):
//! - **Topics and consumer groups are configured**, not created on the fly, so "every message
//!   reaches every group" is well defined from the first publish on.
//! - **At least once, explicit ack**: a fetched message is in flight until acked; after its ack
//!   wait (JetStream `BackOff` list, last value repeated) it is delivered again; after
//!   `max_deliver` deliveries it goes to the group's **dead-letter queue** — never dropped
//!   (JetStream has no DLQ and RabbitMQ drops without a DLX; this bus always has one).
//! - **Durable before answered**: publishes, deliveries, acks and dead-letterings are records
//!   of an append-only log (`record_log`), synced before the answer; deliveries are recorded
//!   before they are handed out, so the delivery count, and `max_deliver`, survive a crash.
//!   Compaction and the repair after a failed write rewrite the file with the records of the
//!   current state.
//! - **De-duplication window by message id** (JetStream `Nats-Msg-Id`, 2 min): a re-sent
//!   publish is stored once and answered with the first sequence. Producers publish through a
//!   transactional outbox, consumers de-duplicate in the same write as their effect (`outbox`).
//!
//! Events (`tracing`, INFO, stable `event` field, plain fields), for MQ1–MQ4:
//! `bus_published` (topic, sequence, msg_id, groups: the topic's groups, comma-separated) once
//! a publish is acknowledged; `bus_duplicate` (same fields) for a re-send; `bus_delivered`
//! (topic, group, sequence, msg_id, delivery, max_deliver, ack_wait_ms: the wait this delivery
//! got) once handed out; `bus_acked` (topic, group, sequence); `bus_dead_lettered` (topic, group,
//! sequence, msg_id, deliveries, reason `max_deliver` | `term`); `bus_rejected` (topic,
//! reason); `bus_recovered` (records, messages, truncated_bytes); `bus_started` (port);
//! `outbox_relayed` (topic, msg_id, sequence, duplicate, attempts) from producers; from the
//! shell `state_write_failed`. After a crash a dead-lettering that was not yet durable happens
//! (and is traced) again.

pub mod client;
pub mod config;
pub mod core;
pub mod durable;
pub mod outbox;
pub mod protocol;

#[cfg(test)]
mod core_tests;

use std::io;

use tokio::time::Instant;

pub use self::client::BusClient;
pub use self::config::{BUS_PORT, BusConfig, TopicConfig};
pub use self::core::BusCore;
pub use self::durable::LogError;
pub use self::outbox::{Outbox, OutboxEntry, ProcessedIds, relay};
pub use self::protocol::{
    BusRequest, BusResponse, DeadLetter, DeadReason, Delivery, GroupName, MessageId, RejectReason,
    TopicName,
};
use crate::durable_server::{ServerSettings, run_durable_server};
use crate::storage::Storage;
use crate::transport::Transport;

/// Why the bus could not run.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus: cannot listen on port {port}: {source}")]
    Bind {
        port: u16,
        #[source]
        source: io::Error,
    },
    #[error("bus: cannot read the log: {0}")]
    Read(#[source] io::Error),
    /// The log is damaged outside its tail: starting could lose or repeat messages.
    #[error("bus: log refused: {0}")]
    Log(#[from] LogError),
}

/// Runs the bus until dropped. Returns only on a start-up failure. Panics on an invalid
/// configuration.
pub async fn run_bus<T: Transport, S: Storage>(
    transport: T,
    storage: S,
    config: BusConfig,
) -> Result<(), BusError> {
    config.validate();
    let bytes = storage
        .read(&config.log_path)
        .await
        .map_err(BusError::Read)?;
    let start = Instant::now();
    let core = BusCore::recover(&config, bytes.as_deref(), start.elapsed())?;
    let listener = transport
        .bind(config.port)
        .await
        .map_err(|source| BusError::Bind {
            port: config.port,
            source,
        })?;
    tracing::info!(event = "bus_started", port = config.port);
    let settings = ServerSettings {
        service: "bus",
        retry_delay: config.write_retry_delay,
    };
    run_durable_server(listener, storage, config.log_path, core, start, settings).await;
    Ok(())
}

#[cfg(test)]
mod shell_tests {
    use std::time::Duration;

    use rand_chacha::ChaCha8Rng;
    use rand_core::SeedableRng;

    use super::*;
    use crate::retry::RetryPolicy;
    use crate::storage::TokioStorage;
    use crate::testing::{PortReporting, TempRoot};
    use crate::transport::TokioTransport;

    #[tokio::test]
    async fn outbox_relay_fetch_ack_and_restart() {
        // Goal: the bus shell end to end: an outbox relays its messages (a re-relay is a
        // duplicate), a consumer fetches with a wait and acks, and after a restart only the
        // unacked message is delivered again, as its second delivery. Method: relay two
        // messages twice, fetch both, ack the first; restart on the same directory with a short
        // ack wait; fetch.
        let root = TempRoot::new("bus-shell");
        let storage = TokioStorage::new(&root.0);
        let transport = PortReporting::default();
        let topic = TopicName::new("motion");
        let group = GroupName::new("orders");
        let mut config = BusConfig::new(vec![TopicConfig {
            name: topic.clone(),
            groups: vec![group.clone()],
        }]);
        config.port = 0;
        config.ack_waits = vec![Duration::from_millis(200)];
        let timeout = Duration::from_secs(5);
        let mut outbox = Outbox::default();
        for id in [1u128, 2] {
            outbox
                .push(OutboxEntry {
                    msg_id: MessageId(id),
                    topic: topic.clone(),
                    payload: vec![id as u8],
                })
                .unwrap();
        }

        let first_run = async {
            let port = transport.port().await;
            let client = BusClient::with_port(TokioTransport::loopback(), "127.0.0.1", port);
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            let entries: Vec<OutboxEntry> = outbox.entries().cloned().collect();
            for _ in 0..2 {
                let (confirmed, stop) =
                    relay(&client, &entries, RetryPolicy::default(), timeout, &mut rng).await;
                assert_eq!(stop, None);
                assert_eq!(confirmed, vec![MessageId(1), MessageId(2)]);
            }
            let deliveries = client
                .fetch(&topic, &group, Duration::from_secs(1))
                .await
                .unwrap();
            assert_eq!(
                deliveries
                    .iter()
                    .map(|d| (d.sequence, d.delivery))
                    .collect::<Vec<_>>(),
                vec![(0, 1), (1, 1)],
                "stored once despite the re-relay"
            );
            let done = client
                .finish(&topic, &group, 0, false, timeout)
                .await
                .unwrap();
            assert_eq!(done, BusResponse::Done);
        };
        tokio::select! {
            biased;
            result = run_bus(transport.clone(), storage.clone(), config.clone()) => {
                panic!("bus stopped: {result:?}")
            }
            () = first_run => {}
        }

        let second_run = async {
            let port = transport.port().await;
            let client = BusClient::with_port(TokioTransport::loopback(), "127.0.0.1", port);
            let deliveries = client
                .fetch(&topic, &group, Duration::from_secs(2))
                .await
                .unwrap();
            assert_eq!(
                deliveries
                    .iter()
                    .map(|d| (d.sequence, d.delivery))
                    .collect::<Vec<_>>(),
                vec![(1, 2)]
            );
        };
        tokio::select! {
            biased;
            result = run_bus(transport.clone(), storage.clone(), config.clone()) => {
                panic!("bus stopped: {result:?}")
            }
            () = second_run => {}
        }
    }
}
