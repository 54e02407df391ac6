//! The journal: the cell's event store (docs/DESIGN.md §6; semantics after KurrentDB, see
//! `docs/reference/pattern-semantics.md` §6).
//!
//! Parts: `protocol` (streams, event ids, expected versions, requests), `config`
//! (`JournalConfig`), `durable` (the log file: one checksummed record per batch), `core`
//! (`JournalCore`, the pure state machine), `client` (`JournalClient`, `CatchUpSubscription`)
//! and, here, `run_journal`, which recovers the log and runs the core in `durable_server`.
//!
//! Design choices (for ARCHITECTURE.md):
//! - **Streams and one global log.** Every event has a stream version (from 0, gapless) and a
//!   global position (from 0, gapless, the order of `$all`). Appends to a stream are guarded by
//!   an expected version (`Any`, `NoStream`, `StreamExists`, `Exact(n)`).
//! - **Idempotent appends by event id**, for every expected version (the journal indexes every
//!   id; KurrentDB only guarantees it for versions other than `Any`). A re-send returns the first
//!   append's versions and positions and writes nothing.
//! - **Acknowledged only when durable.** A batch is one record of an append-only file (length,
//!   CRC-32C of the payload, CRC-32C of the header; `record_log`), appended and then synced; its
//!   answer is released only after the sync returned. Answers that report state (conflicts,
//!   duplicates) also wait until that state is durable, and reads return durable events only.
//!   So a crash never takes back anything a client was told.
//! - **Recovery** scans the file, drops a torn tail (an unsynced append cut by the crash) and
//!   rewrites the file without it before appending again; damage anywhere else stops the
//!   journal from starting (`JournalError::Log`): dropping it could lose acknowledged events.
//! - **Catch-up subscriptions** are long polls: `ReadAll` from a checkpoint returns history at
//!   once and, when caught up, waits up to `wait_ms` for the next durable event.
//!
//! Events (`tracing`, INFO, stable `event` field, plain fields), enough for oracles ES1–ES6:
//! - `journal_append` (stream, expected, expected_version, head, version_first, count,
//!   position, event_ids): a batch was decided (not yet durable); `head` is the stream's last
//!   version the expected version was checked against (absent: no stream), `event_ids` the
//!   batch's ids (32 hex digits each, comma-separated), `kinds` their kinds (comma-separated);
//! - `journal_ack` (stream, version_first, count, position, duplicate): its answer was released
//!   (after the sync, unless `ack_before_sync` is planted);
//! - `journal_append_duplicate` (stream, expected, expected_version, version_first, count,
//!   position, event_ids): a re-send, nothing written;
//! - `journal_append_conflict` (stream, expected, expected_version, head, event_ids): wrong
//!   expected version, `head` absent when the stream does not exist (for a re-send whose ids are
//!   stored, the version was checked against the head before the stored batch);
//! - `journal_append_rejected` (stream, reason);
//! - `journal_recovered` (count, head, streams, truncated_bytes, digest): after a start; `head`
//!   is the next global position, so every `journal_append` at or above it was lost, and every
//!   `journal_ack` must lie below it (ES6); `digest` (16 hex digits) is `JournalCore::digest`
//!   of the recovered log, to compare with the log the appends built (ES5);
//! - `journal_started` (port), and from the shared shell `state_write_failed` (service, ticket,
//!   error_kind).

pub mod client;
pub mod config;
pub mod core;
pub mod durable;
pub mod protocol;

#[cfg(test)]
mod core_tests;
#[cfg(test)]
mod shell_tests;

use std::io;

use tokio::time::Instant;

pub use self::client::{CatchUpSubscription, JournalClient};
pub use self::config::{JOURNAL_PORT, JournalConfig};
pub use self::core::JournalCore;
pub use self::durable::LogError;
pub use self::protocol::{
    EventData, EventId, ExpectedVersion, JournalRequest, JournalResponse, RecordedEvent,
    RejectReason, StreamName,
};
use crate::durable_server::{ServerSettings, run_durable_server};
use crate::storage::Storage;
use crate::transport::Transport;

/// Why the journal could not run.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal: cannot listen on port {port}: {source}")]
    Bind {
        port: u16,
        #[source]
        source: io::Error,
    },
    #[error("journal: cannot read the log: {0}")]
    Read(#[source] io::Error),
    /// The log is damaged outside its tail: starting could lose acknowledged events.
    #[error("journal: log refused: {0}")]
    Log(#[from] LogError),
}

/// Runs the journal until dropped: recovers the log, binds `config.port`, serves. Returns only
/// on a start-up failure. Panics on an invalid configuration.
pub async fn run_journal<T: Transport, S: Storage>(
    transport: T,
    storage: S,
    config: JournalConfig,
) -> Result<(), JournalError> {
    config.validate();
    let bytes = storage
        .read(&config.log_path)
        .await
        .map_err(JournalError::Read)?;
    let core = JournalCore::recover(&config, bytes.as_deref())?;
    let listener = transport
        .bind(config.port)
        .await
        .map_err(|source| JournalError::Bind {
            port: config.port,
            source,
        })?;
    tracing::info!(event = "journal_started", port = config.port);
    let settings = ServerSettings {
        service: "journal",
        retry_delay: config.write_retry_delay,
    };
    run_durable_server(
        listener,
        storage,
        config.log_path,
        core,
        Instant::now(),
        settings,
    )
    .await;
    Ok(())
}
