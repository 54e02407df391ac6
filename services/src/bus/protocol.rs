//! The bus's wire protocol: topics, consumer groups, messages, and the requests on them.
//!
//! Owns the names and limits of what crosses the wire. It does not own any behaviour (`core`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest topic or group name, bytes.
pub const NAME_LENGTH_MAX: usize = 64;

/// Largest message payload, bytes.
pub const PAYLOAD_LENGTH_MAX: usize = 8 * 1024;

/// Most messages in one fetch answer (payloads are bounded, so an answer fits one RPC frame).
pub const FETCH_COUNT_MAX: u32 = 4;

const _: () = assert!(
    FETCH_COUNT_MAX as usize * (PAYLOAD_LENGTH_MAX + 256) < crate::framing::FRAME_LENGTH_MAX,
    "a full fetch answer fits one frame"
);

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Panics on an empty name or one above `NAME_LENGTH_MAX` (names in code and
            /// configuration must be valid; names from the wire simply match nothing).
            pub fn new(name: impl Into<String>) -> $name {
                let name = name.into();
                assert!(
                    !name.is_empty() && name.len() <= NAME_LENGTH_MAX,
                    "name must be 1..={NAME_LENGTH_MAX} bytes, got {name:?}"
                );
                $name(name)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// A topic (`"motion"`): an ordered, durable sequence of messages.
    TopicName
);
name_type!(
    /// A consumer group of a topic: every group gets every message; the consumers of one group
    /// share them.
    GroupName
);

/// A message's identity, chosen by its producer (JetStream's `Nats-Msg-Id`): the key of the
/// duplicate window and of consumers' de-duplication.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MessageId(pub u128);

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// What a client asks the bus.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BusRequest {
    /// Store a message on `topic`; answered once it is synced. A `msg_id` seen within the
    /// duplicate window is answered with the first publish's sequence and stored once.
    Publish {
        topic: TopicName,
        msg_id: MessageId,
        payload: Vec<u8>,
    },
    /// Up to `count_max` messages for `group`: new ones, and ones whose ack wait ran out. With
    /// `wait_ms > 0` and none due, waits up to `wait_ms` for one.
    Fetch {
        topic: TopicName,
        group: GroupName,
        count_max: u32,
        wait_ms: u32,
    },
    /// The group processed the message: it is never delivered to the group again.
    Ack {
        topic: TopicName,
        group: GroupName,
        sequence: u64,
    },
    /// The group can never process the message: dead-letter it now (JetStream's `+TERM`).
    Term {
        topic: TopicName,
        group: GroupName,
        sequence: u64,
    },
    /// The group's dead-letter queue from `sequence_from`.
    DeadLetters {
        topic: TopicName,
        group: GroupName,
        sequence_from: u64,
    },
}

/// One message handed to a consumer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub sequence: u64,
    pub msg_id: MessageId,
    pub payload: Vec<u8>,
    /// 1 for the first delivery to this group, 2 for the first redelivery, ...
    pub delivery: u32,
}

/// One dead-lettered message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub sequence: u64,
    pub msg_id: MessageId,
    pub payload: Vec<u8>,
    /// How often it was delivered to the group.
    pub deliveries: u32,
    pub reason: DeadReason,
}

/// Why a message went to the dead-letter queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeadReason {
    /// Delivered `max_deliver` times, never acknowledged.
    MaxDeliver,
    /// The consumer terminated it.
    Term,
}

impl DeadReason {
    /// A stable name for traces.
    pub fn kind(self) -> &'static str {
        match self {
            DeadReason::MaxDeliver => "max_deliver",
            DeadReason::Term => "term",
        }
    }
}

/// What the bus answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BusResponse {
    /// The message is durable at `sequence`. `duplicate`: it was already there (a re-send
    /// within the window); nothing was stored.
    Published { sequence: u64, duplicate: bool },
    /// Answer to `Fetch` (possibly empty when its wait ended). Every delivery is recorded
    /// durably before it is handed out.
    Messages { deliveries: Vec<Delivery> },
    /// The ack (or term) is recorded.
    Done,
    /// Answer to `DeadLetters`, at most `FETCH_COUNT_MAX` of them.
    DeadLetters { dead: Vec<DeadLetter> },
    /// Nothing happened, for the reason given.
    Rejected { reason: RejectReason },
}

/// Why a request had no effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectReason {
    UnknownTopic,
    UnknownGroup,
    PayloadTooLong,
    /// The topic retains its maximum of messages (unprocessed or dead-lettered): publishing
    /// more would mean dropping some, which the bus never does.
    TopicFull,
    /// The message was never delivered to the group, or no longer exists.
    NotDelivered,
    /// The message was dead-lettered before this ack or term arrived.
    DeadLettered,
    /// Too many answers are waiting for the disk; try again later.
    Overloaded,
}

impl RejectReason {
    /// A stable name for traces.
    pub fn kind(self) -> &'static str {
        match self {
            RejectReason::UnknownTopic => "unknown_topic",
            RejectReason::UnknownGroup => "unknown_group",
            RejectReason::PayloadTooLong => "payload_too_long",
            RejectReason::TopicFull => "topic_full",
            RejectReason::NotDelivered => "not_delivered",
            RejectReason::DeadLettered => "dead_lettered",
            RejectReason::Overloaded => "overloaded",
        }
    }
}
