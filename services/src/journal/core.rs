//! The journal's logic as a pure state machine: `JournalCore`.
//!
//! Owns the global log (every event, in position order), the index of streams and event ids,
//! and the bookkeeping of what is durable. Time comes in as `now`; there is no I/O: the shell
//! (`durable_server`) writes what `next_write` hands it and reports back.
//!
//! Rules, in the order an append is judged:
//! 1. Malformed batches are refused (`Rejected`), answered at once.
//! 2. **Idempotency first.** If every event id of the batch is already stored, as exactly this
//!    batch (same stream, consecutive versions, same order) at a place the expected version
//!    allows, the answer is the first append's result with `duplicate: true`, and nothing is
//!    written. This holds for every expected version, `Any` included (stronger than KurrentDB,
//!    which is best-effort for `Any`: this journal indexes every id). Ids stored elsewhere, or
//!    only some of them, are `EventIdReused`.
//! 3. **Expected version** against the head, including events decided but not yet durable (they
//!    are ahead of any later append in the log, so they are durable before it). A mismatch is
//!    `WrongExpectedVersion` with the head.
//! 4. The batch gets the next versions of its stream and the next global positions, is encoded
//!    as one record and queued for the next write.
//!
//! **Every answer waits for the state it reports to be durable**: an append's answer for its own
//! write, a duplicate's for the original's, a conflict's for the head it names. So no client
//! ever learns of a version that a crash could take back, and an oracle can judge ES2 against
//! the acknowledged log alone. Reads return durable events only, for the same reason.
//!
//! Writes: the shell takes `next_write` (an append of every batch decided since the last one;
//! group commit) and reports `written` or `write_failed`. After a failure the bytes on disk are
//! unknown (part of an append may have landed), so the next write replaces the whole file with
//! every batch (`WriteMode::Replace`, atomic); the same happens once after a recovery that found
//! a torn tail.

use std::collections::BTreeMap;
use std::time::Duration;

use super::config::JournalConfig;
use super::durable::{self, BatchEvent, BatchRecord, LogError};
use super::protocol::{
    APPEND_DATA_LENGTH_MAX, EVENT_DATA_LENGTH_MAX, EVENT_KIND_LENGTH_MAX, EVENTS_PER_APPEND_MAX,
    EventData, EventId, ExpectedVersion, JournalRequest, JournalResponse, READ_COUNT_MAX,
    READ_DATA_LENGTH_MAX, RecordedEvent, RejectReason, StreamName,
};
use crate::durable_server::{DurableCore, ReplyTo, Write, WriteMode};

/// Most answers that may wait for the disk at once; beyond, appends are refused `Overloaded`.
pub const PENDING_REPLIES_MAX: usize = 1024;

/// Most `ReadAll` long polls waiting at once; beyond, a poll is answered at once (empty).
pub const WAITING_READS_MAX: usize = 256;

/// Most events one `ReadAll` examines (matching or not): bounds the work of one request.
pub const READ_SCAN_MAX: u64 = 65_536;

#[derive(Clone, Debug)]
struct Stored {
    stream: StreamName,
    version: u64,
    id: EventId,
    kind: String,
    data: Vec<u8>,
}

#[derive(Clone, Debug)]
struct PendingReply {
    reply_to: ReplyTo,
    /// Released once `durable_count >= upto`.
    upto: u64,
    response: JournalResponse,
    /// For an append (or duplicate): the stream, traced as `journal_ack` on release.
    acked_stream: Option<StreamName>,
}

#[derive(Clone, Debug)]
struct WaitingRead {
    reply_to: ReplyTo,
    position_from: u64,
    count_max: u32,
    stream_prefix: String,
    until: Duration,
}

/// The numbers of `JournalConfig` the core uses.
#[derive(Clone, Copy, Debug)]
struct Settings {
    events_max: u64,
    read_wait_max: Duration,
    ack_before_sync: bool,
}

/// The journal's state machine (see the module docs).
#[derive(Clone, Debug)]
pub struct JournalCore {
    settings: Settings,
    /// The global log: index = position.
    events: Vec<Stored>,
    /// Position of each batch's first event, in order (to re-encode the whole log).
    batch_starts: Vec<u64>,
    /// Positions of each stream's events: index = version.
    streams: BTreeMap<StreamName, Vec<u64>>,
    ids: BTreeMap<EventId, u64>,
    /// `events[..durable_count]` are on disk.
    durable_count: u64,
    /// Encoded records of the batches decided since the last write was handed out.
    unsent: Vec<u8>,
    /// The ticket (event count) of the write in flight.
    in_flight: Option<u64>,
    /// The next write must replace the whole file (after a failed write or a torn tail).
    rewrite: bool,
    pending: Vec<PendingReply>,
    reads: Vec<WaitingRead>,
}

impl JournalCore {
    /// An empty journal (first start).
    pub fn new(config: &JournalConfig) -> JournalCore {
        config.validate();
        JournalCore {
            settings: Settings {
                events_max: config.events_max,
                read_wait_max: config.read_wait_max,
                ack_before_sync: config.ack_before_sync,
            },
            events: Vec::new(),
            batch_starts: Vec::new(),
            streams: BTreeMap::new(),
            ids: BTreeMap::new(),
            durable_count: 0,
            unsent: Vec::new(),
            in_flight: None,
            rewrite: false,
            pending: Vec::new(),
            reads: Vec::new(),
        }
    }

    /// The journal as its log file describes it (`None`: no file yet). A torn tail is dropped
    /// and the file rewritten by the first write; damage elsewhere is refused.
    pub fn recover(config: &JournalConfig, bytes: Option<&[u8]>) -> Result<JournalCore, LogError> {
        let mut core = JournalCore::new(config);
        let (batches, torn_length) = match bytes {
            None => (Vec::new(), 0),
            Some(bytes) => durable::decode_log(bytes)?,
        };
        for (index, batch) in batches.into_iter().enumerate() {
            core.restore(index, batch)?;
        }
        core.durable_count = core.events.len() as u64;
        core.rewrite = torn_length > 0;
        tracing::info!(
            event = "journal_recovered",
            count = core.events.len() as u64,
            head = core.events.len() as u64,
            streams = core.streams.len() as u64,
            truncated_bytes = torn_length as u64,
            digest = format!("{:016x}", core.digest()).as_str(),
        );
        Ok(core)
    }

    fn restore(&mut self, index: usize, batch: BatchRecord) -> Result<(), LogError> {
        let inconsistent = |reason: String| LogError::Inconsistent { index, reason };
        let position_next = self.events.len() as u64;
        if batch.position_first != position_next {
            return Err(inconsistent(format!(
                "starts at position {}, the log is at {position_next}",
                batch.position_first
            )));
        }
        let version_next = self
            .streams
            .get(&batch.stream)
            .map_or(0, |s| s.len() as u64);
        if batch.version_first != version_next {
            return Err(inconsistent(format!(
                "starts stream {} at version {}, the stream is at {version_next}",
                batch.stream, batch.version_first
            )));
        }
        if batch.events.is_empty() || !batch.stream.is_valid() {
            return Err(inconsistent("empty batch or invalid stream".to_owned()));
        }
        if self.events.len() as u64 + batch.events.len() as u64 > self.settings.events_max {
            return Err(inconsistent("more events than events_max".to_owned()));
        }
        for event in &batch.events {
            if self.ids.contains_key(&event.id) {
                return Err(inconsistent(format!("event id {} stored twice", event.id)));
            }
        }
        self.insert_batch(&batch.stream, batch.events);
        Ok(())
    }

    /// Stores a batch at the next versions and positions; returns (version_first,
    /// position_first).
    fn insert_batch(&mut self, stream: &StreamName, events: Vec<BatchEvent>) -> (u64, u64) {
        let position_first = self.events.len() as u64;
        let positions = self.streams.entry(stream.clone()).or_default();
        let version_first = positions.len() as u64;
        self.batch_starts.push(position_first);
        for (offset, event) in events.into_iter().enumerate() {
            let position = position_first + offset as u64;
            let version = version_first + offset as u64;
            let previous = self.ids.insert(event.id, position);
            assert!(previous.is_none(), "event id {} stored twice", event.id);
            positions.push(position);
            self.events.push(Stored {
                stream: stream.clone(),
                version,
                id: event.id,
                kind: event.kind,
                data: event.data,
            });
        }
        assert_eq!(
            self.events.len() as u64,
            position_first + (positions.len() as u64 - version_first),
            "positions and versions advance together"
        );
        (version_first, position_first)
    }

    /// Events stored (durable or not): the head of the global log.
    pub fn event_count(&self) -> u64 {
        self.events.len() as u64
    }

    /// A digest of the log as the oracles see it (ES5): FNV-1a 64 over one line
    /// `"<stream> <version> <position> <event id>\n"` per event in position order (the id as 32
    /// hex digits, as `EventId` displays). Kinds and payloads are not in the trace, so not here.
    pub fn digest(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for (position, stored) in self.events.iter().enumerate() {
            let line = format!(
                "{} {} {position} {}\n",
                stored.stream, stored.version, stored.id
            );
            for byte in line.bytes() {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        hash
    }

    /// Events on disk.
    pub fn durable_count(&self) -> u64 {
        self.durable_count
    }

    /// The stream's last version, durable or not (`None`: no stream).
    pub fn head(&self, stream: &StreamName) -> Option<u64> {
        self.streams
            .get(stream)
            .map(|positions| positions.len() as u64 - 1)
    }

    /// Every stored event in position order (durable or not): what replay must reproduce.
    pub fn events(&self) -> impl Iterator<Item = RecordedEvent> + '_ {
        self.events
            .iter()
            .enumerate()
            .map(|(position, stored)| recorded(position as u64, stored))
    }

    fn durable_head(&self, stream: &StreamName) -> Option<u64> {
        let positions = self.streams.get(stream)?;
        let durable = positions.partition_point(|&p| p < self.durable_count);
        (durable as u64).checked_sub(1)
    }

    fn append(
        &mut self,
        reply_to: ReplyTo,
        stream: StreamName,
        expected: ExpectedVersion,
        events: Vec<EventData>,
    ) -> Option<JournalResponse> {
        if let Err(reason) = check_batch(&stream, &events) {
            return Some(self.reject(&stream, reason));
        }
        if self.pending.len() >= PENDING_REPLIES_MAX {
            return Some(self.reject(&stream, RejectReason::Overloaded));
        }
        let found: Vec<Option<u64>> = events
            .iter()
            .map(|event| self.ids.get(&event.id).copied())
            .collect();
        let found_count = found.iter().flatten().count();
        if found_count == events.len() {
            let positions: Vec<u64> = found.into_iter().flatten().collect();
            return self.duplicate(reply_to, &stream, expected, &positions);
        }
        if found_count > 0 {
            return Some(self.reject(&stream, RejectReason::EventIdReused));
        }
        let head = self.head(&stream);
        if !expected.matches(head) {
            tracing::info!(
                event = "journal_append_conflict",
                stream = stream.as_str(),
                expected = expected.kind(),
                expected_version = expected.exact(),
                head,
                event_ids = event_ids(&events.iter().map(|e| e.id).collect::<Vec<_>>()).as_str(),
            );
            let upto = self.streams.get(&stream).map_or(0, |positions| {
                positions.last().expect("a stream has an event") + 1
            });
            return self.answer_when_durable(
                reply_to,
                upto,
                JournalResponse::WrongExpectedVersion { head },
                None,
            );
        }
        let count = events.len() as u64;
        if self.events.len() as u64 + count > self.settings.events_max {
            return Some(self.reject(&stream, RejectReason::JournalFull));
        }
        let batch_events: Vec<BatchEvent> = events
            .into_iter()
            .map(|event| BatchEvent {
                id: event.id,
                kind: event.kind,
                data: event.data,
            })
            .collect();
        let record = BatchRecord {
            stream: stream.clone(),
            version_first: head.map_or(0, |h| h + 1),
            position_first: self.events.len() as u64,
            events: batch_events.clone(),
        };
        let (version_first, position_first) = self.insert_batch(&stream, batch_events);
        assert_eq!(
            (version_first, position_first),
            (record.version_first, record.position_first),
            "the record says where the batch went"
        );
        durable::encode_batch_into(&record, &mut self.unsent);
        tracing::info!(
            event = "journal_append",
            stream = stream.as_str(),
            expected = expected.kind(),
            expected_version = expected.exact(),
            head,
            version_first,
            count,
            position = position_first,
            event_ids = event_ids(&record.events.iter().map(|e| e.id).collect::<Vec<_>>()).as_str(),
            kinds = record
                .events
                .iter()
                .map(|e| e.kind.as_str())
                .collect::<Vec<_>>()
                .join(",")
                .as_str(),
        );
        let response = JournalResponse::Appended {
            version_first,
            position_first,
            count: count as u32,
            duplicate: false,
        };
        if self.settings.ack_before_sync {
            // The planted bug: the answer does not wait for the write.
            trace_ack(&stream, &response);
            return Some(response);
        }
        self.answer_when_durable(reply_to, self.events.len() as u64, response, Some(stream))
    }

    /// Every id of the batch is stored: a re-send if they form exactly this batch where
    /// `expected` allows it.
    fn duplicate(
        &mut self,
        reply_to: ReplyTo,
        stream: &StreamName,
        expected: ExpectedVersion,
        positions: &[u64],
    ) -> Option<JournalResponse> {
        let first = &self.events[positions[0] as usize];
        let same_batch = positions.iter().enumerate().all(|(offset, &position)| {
            let stored = &self.events[position as usize];
            position == positions[0] + offset as u64
                && stored.stream == *stream
                && stored.version == first.version + offset as u64
        });
        if !same_batch {
            return Some(self.reject(stream, RejectReason::EventIdReused));
        }
        let version_first = first.version;
        let head_before = version_first.checked_sub(1);
        let ids: Vec<EventId> = positions
            .iter()
            .map(|&position| self.events[position as usize].id)
            .collect();
        if !expected.matches(head_before) {
            let head = self.head(stream);
            tracing::info!(
                event = "journal_append_conflict",
                stream = stream.as_str(),
                expected = expected.kind(),
                expected_version = expected.exact(),
                head,
                event_ids = event_ids(&ids).as_str(),
            );
            let upto = self.streams[stream].last().expect("the stream exists") + 1;
            return self.answer_when_durable(
                reply_to,
                upto,
                JournalResponse::WrongExpectedVersion { head },
                None,
            );
        }
        let count = positions.len() as u64;
        tracing::info!(
            event = "journal_append_duplicate",
            stream = stream.as_str(),
            expected = expected.kind(),
            expected_version = expected.exact(),
            version_first,
            count,
            position = positions[0],
            event_ids = event_ids(&ids).as_str(),
        );
        let response = JournalResponse::Appended {
            version_first,
            position_first: positions[0],
            count: count as u32,
            duplicate: true,
        };
        let upto = positions[0] + count;
        self.answer_when_durable(reply_to, upto, response, Some(stream.clone()))
    }

    fn reject(&self, stream: &StreamName, reason: RejectReason) -> JournalResponse {
        tracing::info!(
            event = "journal_append_rejected",
            stream = stream.as_str(),
            reason = reason.kind(),
        );
        JournalResponse::Rejected { reason }
    }

    fn answer_when_durable(
        &mut self,
        reply_to: ReplyTo,
        upto: u64,
        response: JournalResponse,
        acked_stream: Option<StreamName>,
    ) -> Option<JournalResponse> {
        if upto <= self.durable_count {
            if let Some(stream) = &acked_stream {
                trace_ack(stream, &response);
            }
            return Some(response);
        }
        self.pending.push(PendingReply {
            reply_to,
            upto,
            response,
            acked_stream,
        });
        None
    }

    fn read_stream(
        &self,
        stream: &StreamName,
        version_from: u64,
        count_max: u32,
    ) -> JournalResponse {
        let head = self.durable_head(stream);
        let mut events = Vec::new();
        if let (Some(positions), Some(head)) = (self.streams.get(stream), head) {
            let count_max = count_max.clamp(1, READ_COUNT_MAX) as usize;
            let mut data_length = 0;
            for version in version_from..=head {
                let stored = &self.events[positions[version as usize] as usize];
                if events.len() >= count_max
                    || (!events.is_empty()
                        && data_length + stored.data.len() > READ_DATA_LENGTH_MAX)
                {
                    break;
                }
                data_length += stored.data.len();
                events.push(recorded(positions[version as usize], stored));
            }
        }
        JournalResponse::StreamEvents { events, head }
    }

    /// The durable events from `position_from` matching `prefix`, and where to continue.
    fn read_all(
        &self,
        position_from: u64,
        count_max: u32,
        prefix: &str,
    ) -> (Vec<RecordedEvent>, u64) {
        let count_max = count_max.clamp(1, READ_COUNT_MAX) as usize;
        let end = self
            .durable_count
            .min(position_from.saturating_add(READ_SCAN_MAX));
        let mut events = Vec::new();
        let mut data_length = 0;
        let mut position = position_from;
        while position < end {
            let stored = &self.events[position as usize];
            if stored.stream.as_str().starts_with(prefix) {
                if events.len() >= count_max
                    || (!events.is_empty()
                        && data_length + stored.data.len() > READ_DATA_LENGTH_MAX)
                {
                    break;
                }
                data_length += stored.data.len();
                events.push(recorded(position, stored));
            }
            position += 1;
        }
        (events, position.max(position_from))
    }

    /// Answers the waiting reads that have events now (or, with `expired_at`, whose wait ended).
    fn release_reads(&mut self, expired_at: Option<Duration>) -> Vec<(ReplyTo, JournalResponse)> {
        let mut released = Vec::new();
        let mut still = Vec::new();
        for mut read in std::mem::take(&mut self.reads) {
            let (events, position_next) =
                self.read_all(read.position_from, read.count_max, &read.stream_prefix);
            let expired = expired_at.is_some_and(|now| now >= read.until);
            if events.is_empty() && !expired {
                read.position_from = position_next;
                still.push(read);
            } else {
                released.push((
                    read.reply_to,
                    JournalResponse::AllEvents {
                        events,
                        position_next,
                    },
                ));
            }
        }
        self.reads = still;
        released
    }
}

impl DurableCore for JournalCore {
    type Request = JournalRequest;
    type Response = JournalResponse;

    fn handle(
        &mut self,
        now: Duration,
        reply_to: ReplyTo,
        request: JournalRequest,
    ) -> Option<JournalResponse> {
        match request {
            JournalRequest::Append {
                stream,
                expected,
                events,
            } => self.append(reply_to, stream, expected, events),
            JournalRequest::ReadStream {
                stream,
                version_from,
                count_max,
            } => Some(self.read_stream(&stream, version_from, count_max)),
            JournalRequest::ReadAll {
                position_from,
                count_max,
                stream_prefix,
                wait_ms,
            } => {
                let (events, position_next) =
                    self.read_all(position_from, count_max, &stream_prefix);
                if !events.is_empty() || wait_ms == 0 || self.reads.len() >= WAITING_READS_MAX {
                    return Some(JournalResponse::AllEvents {
                        events,
                        position_next,
                    });
                }
                let wait =
                    Duration::from_millis(u64::from(wait_ms)).min(self.settings.read_wait_max);
                self.reads.push(WaitingRead {
                    reply_to,
                    position_from: position_next,
                    count_max,
                    stream_prefix,
                    until: now + wait,
                });
                None
            }
        }
    }

    fn next_write(&mut self) -> Option<Write> {
        assert!(self.in_flight.is_none(), "one write at a time");
        let ticket = self.events.len() as u64;
        let write = if self.rewrite {
            let mut bytes = Vec::new();
            for (index, &start) in self.batch_starts.iter().enumerate() {
                let end = self.batch_starts.get(index + 1).copied().unwrap_or(ticket);
                let first = &self.events[start as usize];
                let record = BatchRecord {
                    stream: first.stream.clone(),
                    version_first: first.version,
                    position_first: start,
                    events: self.events[start as usize..end as usize]
                        .iter()
                        .map(|stored| BatchEvent {
                            id: stored.id,
                            kind: stored.kind.clone(),
                            data: stored.data.clone(),
                        })
                        .collect(),
                };
                durable::encode_batch_into(&record, &mut bytes);
            }
            self.rewrite = false;
            self.unsent.clear();
            Write {
                mode: WriteMode::Replace,
                bytes,
                ticket,
            }
        } else if !self.unsent.is_empty() {
            Write {
                mode: WriteMode::Append,
                bytes: std::mem::take(&mut self.unsent),
                ticket,
            }
        } else {
            return None;
        };
        self.in_flight = Some(ticket);
        Some(write)
    }

    fn written(&mut self, _now: Duration, ticket: u64) -> Vec<(ReplyTo, JournalResponse)> {
        assert_eq!(
            self.in_flight,
            Some(ticket),
            "written reports the write in flight"
        );
        self.in_flight = None;
        assert!(
            ticket >= self.durable_count && ticket <= self.events.len() as u64,
            "durable count {} moves to {ticket} within the log of {}",
            self.durable_count,
            self.events.len()
        );
        self.durable_count = ticket;
        let mut released = Vec::new();
        let durable_count = self.durable_count;
        self.pending.retain(|pending| {
            if pending.upto > durable_count {
                return true;
            }
            if let Some(stream) = &pending.acked_stream {
                trace_ack(stream, &pending.response);
            }
            released.push((pending.reply_to, pending.response.clone()));
            false
        });
        released.extend(self.release_reads(None));
        released
    }

    fn write_failed(&mut self, _now: Duration, ticket: u64) {
        assert_eq!(
            self.in_flight,
            Some(ticket),
            "write_failed reports the write in flight"
        );
        self.in_flight = None;
        // What reached the disk is unknown: the next write replaces the file with the whole log.
        self.rewrite = true;
    }

    fn next_wake(&self) -> Option<Duration> {
        self.reads.iter().map(|read| read.until).min()
    }

    fn wake(&mut self, now: Duration) -> Vec<(ReplyTo, JournalResponse)> {
        self.release_reads(Some(now))
    }
}

fn check_batch(stream: &StreamName, events: &[EventData]) -> Result<(), RejectReason> {
    if !stream.is_valid() {
        return Err(RejectReason::StreamNameInvalid);
    }
    let data_length: usize = events.iter().map(|event| event.data.len()).sum();
    if events.is_empty()
        || events.len() > EVENTS_PER_APPEND_MAX
        || data_length > APPEND_DATA_LENGTH_MAX
    {
        return Err(RejectReason::BatchSize);
    }
    for (index, event) in events.iter().enumerate() {
        if event.kind.is_empty()
            || event.kind.len() > EVENT_KIND_LENGTH_MAX
            || event.data.len() > EVENT_DATA_LENGTH_MAX
        {
            return Err(RejectReason::EventInvalid);
        }
        if events[..index].iter().any(|other| other.id == event.id) {
            return Err(RejectReason::EventIdRepeated);
        }
    }
    Ok(())
}

fn recorded(position: u64, stored: &Stored) -> RecordedEvent {
    RecordedEvent {
        stream: stored.stream.clone(),
        version: stored.version,
        position,
        id: stored.id,
        kind: stored.kind.clone(),
        data: stored.data.clone(),
    }
}

/// Event ids for traces: 32 hex digits each, comma-separated, in batch order.
fn event_ids(ids: &[EventId]) -> String {
    let mut text = String::with_capacity(ids.len() * 33);
    for (index, id) in ids.iter().enumerate() {
        if index > 0 {
            text.push(',');
        }
        text.push_str(&id.to_string());
    }
    text
}

fn trace_ack(stream: &StreamName, response: &JournalResponse) {
    let JournalResponse::Appended {
        version_first,
        position_first,
        count,
        duplicate,
    } = response
    else {
        unreachable!("only appends are acknowledged");
    };
    tracing::info!(
        event = "journal_ack",
        stream = stream.as_str(),
        version_first = *version_first,
        count = u64::from(*count),
        position = *position_first,
        duplicate = *duplicate,
    );
}
