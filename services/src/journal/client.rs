//! Calling the journal: `JournalClient` (append and read over `rpc`) and `CatchUpSubscription`
//! (read the global log from a checkpoint, then follow it live).
//!
//! Owns the client-side conventions: how long a long poll may wait, and that a subscription's
//! checkpoint only moves forward. It does not own retries (the caller decides which calls are
//! safe to repeat: an append is, with the same event ids) or what the events mean.

use std::time::Duration;

use super::config::JOURNAL_PORT;
use super::protocol::{
    EventData, ExpectedVersion, JournalRequest, JournalResponse, READ_COUNT_MAX, RecordedEvent,
    StreamName,
};
use crate::rpc::{RpcClient, RpcError};
use crate::transport::Transport;

/// Extra time a long poll's RPC gets beyond its wait, for the answer to travel.
pub const LONG_POLL_MARGIN: Duration = Duration::from_millis(500);

/// Calls one journal.
#[derive(Debug)]
pub struct JournalClient<T: Transport> {
    rpc: RpcClient<T>,
    host: String,
    port: u16,
}

impl<T: Transport> JournalClient<T> {
    /// A client of the journal at `host`:`JOURNAL_PORT`.
    pub fn new(transport: T, host: impl Into<String>) -> JournalClient<T> {
        JournalClient::with_port(transport, host, JOURNAL_PORT)
    }

    pub fn with_port(transport: T, host: impl Into<String>, port: u16) -> JournalClient<T> {
        JournalClient {
            rpc: RpcClient::new(transport),
            host: host.into(),
            port,
        }
    }

    /// One call, answered within `timeout`.
    pub async fn call(
        &self,
        request: &JournalRequest,
        timeout: Duration,
    ) -> Result<JournalResponse, RpcError> {
        self.rpc.call(&self.host, self.port, request, timeout).await
    }

    /// Appends `events` to `stream` if `expected` holds. Safe to repeat with the same events.
    pub async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedVersion,
        events: Vec<EventData>,
        timeout: Duration,
    ) -> Result<JournalResponse, RpcError> {
        let request = JournalRequest::Append {
            stream: stream.clone(),
            expected,
            events,
        };
        self.call(&request, timeout).await
    }

    /// Every durable event of `stream` (several reads if needed) and its durable head.
    pub async fn read_stream(
        &self,
        stream: &StreamName,
        timeout: Duration,
    ) -> Result<(Vec<RecordedEvent>, Option<u64>), RpcError> {
        let mut events: Vec<RecordedEvent> = Vec::new();
        loop {
            let request = JournalRequest::ReadStream {
                stream: stream.clone(),
                version_from: events.len() as u64,
                count_max: READ_COUNT_MAX,
            };
            match self.call(&request, timeout).await? {
                JournalResponse::StreamEvents {
                    events: batch,
                    head,
                } => {
                    let done = batch.is_empty()
                        || head.is_none_or(|head| batch.last().is_some_and(|e| e.version >= head));
                    events.extend(batch);
                    if done {
                        return Ok((events, head));
                    }
                }
                other => {
                    return Err(RpcError::Decode(format!(
                        "ReadStream answered with {other:?}"
                    )));
                }
            }
        }
    }
}

/// A catch-up subscription to the global log: from a checkpoint through the history, then live
/// (KurrentDB's catch-up subscription). Delivery is at least once across restarts of the
/// subscriber (it resumes from the checkpoint it kept), exactly once within one subscription.
#[derive(Clone, Debug)]
pub struct CatchUpSubscription {
    checkpoint: u64,
    stream_prefix: String,
    wait: Duration,
}

impl CatchUpSubscription {
    /// Follows streams whose names start with `stream_prefix`, from global position
    /// `checkpoint` (0: the beginning); live polls wait up to `wait` for new events.
    pub fn new(checkpoint: u64, stream_prefix: impl Into<String>, wait: Duration) -> Self {
        CatchUpSubscription {
            checkpoint,
            stream_prefix: stream_prefix.into(),
            wait,
        }
    }

    /// The position the next read starts from.
    pub fn checkpoint(&self) -> u64 {
        self.checkpoint
    }

    /// The next events (possibly none, when a live poll's wait ended), advancing the checkpoint.
    pub async fn next<T: Transport>(
        &mut self,
        client: &JournalClient<T>,
    ) -> Result<Vec<RecordedEvent>, RpcError> {
        let wait_ms = u32::try_from(self.wait.as_millis()).unwrap_or(u32::MAX);
        let request = JournalRequest::ReadAll {
            position_from: self.checkpoint,
            count_max: READ_COUNT_MAX,
            stream_prefix: self.stream_prefix.clone(),
            wait_ms,
        };
        match client.call(&request, self.wait + LONG_POLL_MARGIN).await? {
            JournalResponse::AllEvents {
                events,
                position_next,
            } => {
                let mut previous = None;
                for event in &events {
                    let in_order = event.position >= self.checkpoint
                        && event.position < position_next
                        && previous.is_none_or(|p| event.position > p);
                    if !in_order {
                        return Err(RpcError::Decode(format!(
                            "event at position {} outside [{}, {position_next}) or out of order",
                            event.position, self.checkpoint
                        )));
                    }
                    previous = Some(event.position);
                }
                self.checkpoint = self.checkpoint.max(position_next);
                Ok(events)
            }
            other => Err(RpcError::Decode(format!("ReadAll answered with {other:?}"))),
        }
    }
}
