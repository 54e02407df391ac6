//! The journal's wire protocol: streams, events, expected versions, requests and answers.
//!
//! Owns the names and limits of what crosses the wire. It does not own any behaviour (`core`
//! decides the answers) or the on-disk form (`durable`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest stream name, bytes.
pub const STREAM_NAME_LENGTH_MAX: usize = 128;

/// Longest event kind (`"saga_started"`), bytes.
pub const EVENT_KIND_LENGTH_MAX: usize = 64;

/// Largest event payload, bytes.
pub const EVENT_DATA_LENGTH_MAX: usize = 8 * 1024;

/// Most events in one append (a batch is atomic: all or none).
pub const EVENTS_PER_APPEND_MAX: usize = 32;

/// Most bytes of event payloads in one append: with the envelope it stays inside one RPC frame.
pub const APPEND_DATA_LENGTH_MAX: usize = 48 * 1024;

/// Most events in one read answer.
pub const READ_COUNT_MAX: u32 = 256;

/// Most payload bytes in one read answer (it must fit one RPC frame); a read always returns at
/// least one event if one is due, and a single event is below this.
pub const READ_DATA_LENGTH_MAX: usize = 40 * 1024;

const _: () = assert!(EVENT_DATA_LENGTH_MAX <= READ_DATA_LENGTH_MAX);
const _: () = assert!(APPEND_DATA_LENGTH_MAX < crate::framing::FRAME_LENGTH_MAX);
const _: () = assert!(READ_DATA_LENGTH_MAX < crate::framing::FRAME_LENGTH_MAX);

/// The name of a stream (`"saga-42"`). Names are 1..=`STREAM_NAME_LENGTH_MAX` bytes; the core
/// refuses others from the wire.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StreamName(String);

impl StreamName {
    /// Panics on an invalid name: names built in code are a bug if invalid.
    pub fn new(name: impl Into<String>) -> StreamName {
        let name = StreamName(name.into());
        assert!(name.is_valid(), "invalid stream name {:?}", name.0);
        name
    }

    pub fn is_valid(&self) -> bool {
        !self.0.is_empty() && self.0.len() <= STREAM_NAME_LENGTH_MAX
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An event's identity (a UUID's 128 bits): the key of idempotent appends. The writer chooses
/// it and re-sends the same id when it retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventId(pub u128);

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// What the writer believes about the stream (KurrentDB's `ExpectedRevision`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream has no event yet.
    NoStream,
    /// The stream has at least one event.
    StreamExists,
    /// The stream's last event has exactly this version (versions count from 0).
    Exact(u64),
}

impl ExpectedVersion {
    /// A stable name for traces.
    pub fn kind(self) -> &'static str {
        match self {
            ExpectedVersion::Any => "any",
            ExpectedVersion::NoStream => "no_stream",
            ExpectedVersion::StreamExists => "stream_exists",
            ExpectedVersion::Exact(_) => "exact",
        }
    }

    /// The version of `Exact`, for traces.
    pub fn exact(self) -> Option<u64> {
        match self {
            ExpectedVersion::Exact(version) => Some(version),
            _ => None,
        }
    }

    /// Whether a stream whose last version is `head` (`None`: no stream) satisfies this.
    pub fn matches(self, head: Option<u64>) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => head.is_none(),
            ExpectedVersion::StreamExists => head.is_some(),
            ExpectedVersion::Exact(version) => head == Some(version),
        }
    }
}

/// An event as a writer proposes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventData {
    pub id: EventId,
    /// What happened, e.g. `"step_succeeded"`.
    pub kind: String,
    /// The payload, opaque to the journal.
    pub data: Vec<u8>,
}

/// An event as the journal stores and returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub stream: StreamName,
    /// Its place in the stream, from 0, without gaps.
    pub version: u64,
    /// Its place in the global log (`$all`), from 0, without gaps.
    pub position: u64,
    pub id: EventId,
    pub kind: String,
    pub data: Vec<u8>,
}

/// What a client asks the journal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JournalRequest {
    /// Append `events` to `stream`, atomically, if `expected` holds. Re-sending the same event
    /// ids is answered as the first append was (idempotent).
    Append {
        stream: StreamName,
        expected: ExpectedVersion,
        events: Vec<EventData>,
    },
    /// The stream's durable events from `version_from`, at most `count_max`.
    ReadStream {
        stream: StreamName,
        version_from: u64,
        count_max: u32,
    },
    /// The global log's durable events from `position_from` whose stream starts with
    /// `stream_prefix`, at most `count_max`. With `wait_ms > 0` and nothing to return, the
    /// answer waits up to `wait_ms` for new events (a catch-up subscription's live phase).
    ReadAll {
        position_from: u64,
        count_max: u32,
        stream_prefix: String,
        wait_ms: u32,
    },
}

/// What the journal answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JournalResponse {
    /// The events are durable at these versions and positions. `duplicate`: they were already
    /// there (this is a re-send); nothing was written.
    Appended {
        version_first: u64,
        position_first: u64,
        count: u32,
        duplicate: bool,
    },
    /// The expected version did not hold; `head` is the stream's last version (`None`: no
    /// stream). Nothing was written.
    WrongExpectedVersion { head: Option<u64> },
    /// Nothing was written, for the reason given.
    Rejected { reason: RejectReason },
    /// Answer to `ReadStream`: the events, and the stream's durable head.
    StreamEvents {
        events: Vec<RecordedEvent>,
        head: Option<u64>,
    },
    /// Answer to `ReadAll`: the matching events, and where the next read continues (the
    /// checkpoint; it moves past events the prefix filtered out, too).
    AllEvents {
        events: Vec<RecordedEvent>,
        position_next: u64,
    },
}

/// Why an append had no effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectReason {
    StreamNameInvalid,
    /// No events, more than `EVENTS_PER_APPEND_MAX`, or more than `APPEND_DATA_LENGTH_MAX`.
    BatchSize,
    /// An event's kind or payload is out of bounds.
    EventInvalid,
    /// The same event id twice in one batch.
    EventIdRepeated,
    /// Some of the event ids exist already, but not as exactly this batch at this place in this
    /// stream: the writer reused ids.
    EventIdReused,
    /// The journal holds its maximum number of events.
    JournalFull,
    /// Too many answers are waiting for the disk; try again later.
    Overloaded,
}

impl RejectReason {
    /// A stable name for traces.
    pub fn kind(self) -> &'static str {
        match self {
            RejectReason::StreamNameInvalid => "stream_name_invalid",
            RejectReason::BatchSize => "batch_size",
            RejectReason::EventInvalid => "event_invalid",
            RejectReason::EventIdRepeated => "event_id_repeated",
            RejectReason::EventIdReused => "event_id_reused",
            RejectReason::JournalFull => "journal_full",
            RejectReason::Overloaded => "overloaded",
        }
    }
}
