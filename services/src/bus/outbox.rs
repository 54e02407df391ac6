//! The two halves of exactly-once effects over an at-least-once bus: the transactional
//! outbox for producers, and the processed-id window for consumers.
//!
//! Owns `Outbox` (messages a producer has decided to publish), `relay` (publishes them with
//! retries until the bus acknowledges each) and `ProcessedIds` (the ids a consumer has applied).
//! It does not own the producer's or consumer's state or its writes: both types are plain serde
//! data the service embeds in its own durable state.
//!
//! How they are used (Richardson's transactional outbox; JetStream's `Nats-Msg-Id`):
//! - A producer that changes its state and must announce it adds the message to its `Outbox`
//!   **in the same durable write** as the change. A crash can then lose both or neither.
//! - After the write, `relay` publishes the outbox's messages in order, each with its fixed
//!   `msg_id`, retrying transient failures; the producer removes the acknowledged ones
//!   (`confirm`) and writes its state again. A crash between the publish and that write makes it
//!   publish again after the restart: the bus's duplicate window answers the re-send as a
//!   duplicate and stores the message once (oracle MQ4).
//! - A consumer applies a delivery and records its `msg_id` in its `ProcessedIds` **in the same
//!   durable write**, then acks. A redelivery (the ack was lost, or the consumer crashed before
//!   it) finds the id and is acked without applying it again (oracle MQ3).

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::client::BusClient;
use super::protocol::{BusResponse, MessageId, RejectReason, TopicName};
use crate::retry::{GiveUp, RetryPolicy, RetrySchedule};
use crate::transport::Transport;

/// Most messages an outbox holds; a producer whose outbox is full must stop producing until the
/// bus is reachable again (backpressure), never drop.
pub const OUTBOX_ENTRIES_MAX: usize = 1024;

/// Most ids a `ProcessedIds` remembers by default: far more than the messages that can be
/// redelivered to one consumer within the bus's ack waits.
pub const PROCESSED_IDS_DEFAULT: usize = 10_000;

/// One message waiting in an outbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub msg_id: MessageId,
    pub topic: TopicName,
    pub payload: Vec<u8>,
}

/// The outbox is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("outbox full ({OUTBOX_ENTRIES_MAX} messages): publish before producing more")]
pub struct OutboxFull;

/// Messages a producer decided to publish and the bus has not acknowledged yet, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outbox {
    entries: VecDeque<OutboxEntry>,
}

impl Outbox {
    /// Adds a message; write the producer's state (with this outbox) before relaying it.
    pub fn push(&mut self, entry: OutboxEntry) -> Result<(), OutboxFull> {
        if self.entries.len() >= OUTBOX_ENTRIES_MAX {
            return Err(OutboxFull);
        }
        assert!(
            self.entries.iter().all(|e| e.msg_id != entry.msg_id),
            "message id {} is already in the outbox",
            entry.msg_id
        );
        self.entries.push_back(entry);
        Ok(())
    }

    /// The messages still to publish, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = &OutboxEntry> {
        self.entries.iter()
    }

    /// Removes a message the bus acknowledged; false if it was not there.
    pub fn confirm(&mut self, msg_id: MessageId) -> bool {
        let before = self.entries.len();
        self.entries.retain(|entry| entry.msg_id != msg_id);
        self.entries.len() < before
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Why `relay` stopped before the end of the outbox.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RelayStop {
    /// Retries ran out for one message (`last_error` is the kind of the last failure).
    #[error("relay gave up ({give_up}) after {last_error}")]
    GaveUp {
        give_up: GiveUp,
        last_error: &'static str,
    },
    /// The bus refused a message for a reason retrying cannot fix.
    #[error("bus refused the message: {reason:?}")]
    Refused { reason: RejectReason },
}

/// Publishes `entries` in order, each retried under `policy` (transient RPC failures and a full
/// or overloaded bus are retried; publishes are idempotent by `msg_id`). Returns the ids the
/// bus acknowledged (to `confirm`), and why it stopped early, if it did. Messages stay in order:
/// it never skips one to publish a later one.
pub async fn relay<T: Transport>(
    client: &BusClient<T>,
    entries: &[OutboxEntry],
    policy: RetryPolicy,
    attempt_timeout: Duration,
    rng: &mut ChaCha8Rng,
) -> (Vec<MessageId>, Option<RelayStop>) {
    let start = tokio::time::Instant::now();
    let mut confirmed = Vec::new();
    for entry in entries {
        let mut schedule = RetrySchedule::new(policy, start.elapsed());
        let mut last_error: &'static str = "none";
        loop {
            if let Err(give_up) = schedule.begin_attempt(start.elapsed()) {
                return (
                    confirmed,
                    Some(RelayStop::GaveUp {
                        give_up,
                        last_error,
                    }),
                );
            }
            let timeout = attempt_timeout.min(schedule.remaining(start.elapsed()));
            let answer = client
                .publish(&entry.topic, entry.msg_id, entry.payload.clone(), timeout)
                .await;
            match answer {
                Ok(BusResponse::Published {
                    sequence,
                    duplicate,
                }) => {
                    tracing::info!(
                        event = "outbox_relayed",
                        topic = entry.topic.as_str(),
                        msg_id = %entry.msg_id,
                        sequence,
                        duplicate,
                        attempts = schedule.attempts_made(),
                    );
                    confirmed.push(entry.msg_id);
                    break;
                }
                Ok(BusResponse::Rejected {
                    reason: reason @ (RejectReason::TopicFull | RejectReason::Overloaded),
                }) => last_error = reason.kind(),
                Ok(BusResponse::Rejected { reason }) => {
                    return (confirmed, Some(RelayStop::Refused { reason }));
                }
                Ok(_) => last_error = "protocol",
                Err(error) if error.is_transient() => last_error = error.kind(),
                Err(error) => last_error = error.kind(),
            }
            match schedule.after_failure(start.elapsed(), rng) {
                Ok(wait) => tokio::time::sleep(wait).await,
                Err(give_up) => {
                    return (
                        confirmed,
                        Some(RelayStop::GaveUp {
                            give_up,
                            last_error,
                        }),
                    );
                }
            }
        }
    }
    (confirmed, None)
}

/// The message ids a consumer has applied, the newest `capacity` of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessedIds {
    capacity: usize,
    order: VecDeque<MessageId>,
    ids: BTreeSet<MessageId>,
}

impl ProcessedIds {
    pub fn new(capacity: usize) -> ProcessedIds {
        assert!(capacity > 0, "capacity must be positive");
        ProcessedIds {
            capacity,
            order: VecDeque::new(),
            ids: BTreeSet::new(),
        }
    }

    /// Records `msg_id`; true if it was not processed before (apply the message), false if it
    /// was (only ack it). Write the consumer's state before acking either way.
    pub fn first_time(&mut self, msg_id: MessageId) -> bool {
        if !self.ids.insert(msg_id) {
            return false;
        }
        self.order.push_back(msg_id);
        if self.order.len() > self.capacity {
            let oldest = self.order.pop_front().expect("above capacity");
            self.ids.remove(&oldest);
        }
        true
    }

    pub fn contains(&self, msg_id: MessageId) -> bool {
        self.ids.contains(&msg_id)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

impl Default for ProcessedIds {
    fn default() -> ProcessedIds {
        ProcessedIds::new(PROCESSED_IDS_DEFAULT)
    }
}
