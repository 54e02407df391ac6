//! The thin async shell shared by the services whose core acknowledges only durable state (the
//! journal, the bus, inventory): one task that serves RPC requests, writes what the core asks
//! to the disk, and releases the answers that waited for it.
//!
//! Owns the `DurableCore` trait (what such a core offers its shell), `Write` (what the core asks
//! to be written), `ReplyTo` (the shell's handle for an answer that waits) and
//! `run_durable_server` (the loop). It does not own any service's logic, file format or
//! recovery: each service reads its file, builds its core, and hands it here.
//!
//! Design choices:
//! - **Group commit, one write at a time.** When no write is in flight the shell asks the core
//!   for the next one (`next_write`): everything changed since the last write, as one append
//!   (then `sync`) or one atomic replace. While it runs, requests keep arriving; their answers
//!   wait in the core for the next write. So a burst costs one sync, not one per request.
//! - **Answers after durability.** A request whose effect must survive a crash is answered by
//!   `written` once the write holding it returned; `handle` answers at once only what depends on
//!   nothing unwritten. Requests that wait for something else (a long poll) are answered by
//!   `wake` at the instant `next_wake` named.
//! - **A failed write is not retried blindly.** The bytes of a failed append are unknown (some may
//!   be on disk), so the core is told (`write_failed`) and decides what to write next (the journal
//!   and the bus rewrite their whole file with an atomic replace). The shell waits
//!   `retry_delay` before the next write so a failing disk is not spun on.
//! - **One task, `biased;` select.** Write completion first (it releases answers and frees
//!   memory), then the retry and wake timers, then new requests. No spawning, no `Rc<RefCell>`:
//!   the core is owned by the loop.

use std::collections::BTreeMap;
use std::io;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::LocalBoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::rpc::{Incoming, Responder, RpcServer};
use crate::storage::Storage;
use crate::transport::Listener;

/// The shell's handle for an answer that waits (for the disk or for a wake-up).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReplyTo(pub u64);

/// How a write reaches the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    /// `Storage::append`, then `Storage::sync`.
    Append,
    /// `Storage::replace` (atomic and durable).
    Replace,
}

/// One write the core asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    pub mode: WriteMode,
    pub bytes: Vec<u8>,
    /// Handed back to `written` or `write_failed`: tells the core which state became durable.
    pub ticket: u64,
}

/// What a service core offers `run_durable_server`. Time is a `Duration` since the shell
/// started; the core does no I/O.
pub trait DurableCore {
    type Request: DeserializeOwned + 'static;
    type Response: Serialize;

    /// Handles one request at `now`: `Some` is the answer now, `None` means it comes later out
    /// of `written` or `wake` with `reply_to`.
    fn handle(
        &mut self,
        now: Duration,
        reply_to: ReplyTo,
        request: Self::Request,
    ) -> Option<Self::Response>;

    /// The next write, if anything changed since the last one. Called only while no write is in
    /// flight.
    fn next_write(&mut self) -> Option<Write>;

    /// The write with `ticket` is durable: the answers it releases.
    fn written(&mut self, now: Duration, ticket: u64) -> Vec<(ReplyTo, Self::Response)>;

    /// The write with `ticket` failed; what it held may or may not be on disk.
    fn write_failed(&mut self, now: Duration, ticket: u64);

    /// When the core wants `wake` called next (a long poll ends, a timer fires), if ever.
    fn next_wake(&self) -> Option<Duration>;

    /// Time passed: the answers that are due, and any internal timers handled.
    fn wake(&mut self, now: Duration) -> Vec<(ReplyTo, Self::Response)>;
}

/// The shell's numbers.
#[derive(Clone, Copy, Debug)]
pub struct ServerSettings {
    /// The service's name in events (`journal`, `bus`, `inventory`).
    pub service: &'static str,
    /// Wait after a failed write before the next one.
    pub retry_delay: Duration,
}

type WriteFuture = LocalBoxFuture<'static, (u64, io::Result<()>)>;

// One event per loop turn, consumed at once: boxing the large variant would only add an
// allocation per request.
#[allow(clippy::large_enum_variant)]
enum LoopEvent<S, Req> {
    Written { ticket: u64, result: io::Result<()> },
    RetryDue,
    WakeDue,
    Request(Incoming<S, Req>),
}

/// Serves `core` on `listener`, writing to `path` in `storage`, until dropped. `start` is the
/// instant the core's `Duration`s count from (the instant the service started).
pub async fn run_durable_server<L, S, C>(
    listener: L,
    storage: S,
    path: String,
    mut core: C,
    start: Instant,
    settings: ServerSettings,
) where
    L: Listener,
    S: Storage,
    C: DurableCore,
{
    assert!(
        !settings.retry_delay.is_zero(),
        "retry_delay must be positive (a zero delay would spin on a failing disk)"
    );
    let mut server = RpcServer::<L, C::Request>::new(listener);
    let mut waiting: BTreeMap<ReplyTo, Responder<L::Stream>> = BTreeMap::new();
    let mut reply_next: u64 = 0;
    let mut write: Option<WriteFuture> = None;
    let mut retry_at: Option<Instant> = None;
    loop {
        if write.is_none()
            && retry_at.is_none()
            && let Some(next) = core.next_write()
        {
            write = Some(start_write(storage.clone(), path.clone(), next));
        }
        let wake_at = core.next_wake().map(|at| start + at);
        let event = tokio::select! {
            biased;
            (ticket, result) = async { write.as_mut().expect("guarded by is_some").await },
                if write.is_some() => LoopEvent::Written { ticket, result },
            () = tokio::time::sleep_until(retry_at.unwrap_or(start)), if retry_at.is_some() => {
                LoopEvent::RetryDue
            }
            () = tokio::time::sleep_until(wake_at.unwrap_or(start)), if wake_at.is_some() => {
                LoopEvent::WakeDue
            }
            incoming = server.next_request() => LoopEvent::Request(incoming),
        };
        let now = start.elapsed();
        let released = match event {
            LoopEvent::Written { ticket, result } => {
                write = None;
                match result {
                    Ok(()) => core.written(now, ticket),
                    Err(error) => {
                        tracing::warn!(
                            event = "state_write_failed",
                            service = settings.service,
                            ticket,
                            error_kind = ?error.kind(),
                        );
                        core.write_failed(now, ticket);
                        retry_at = Some(Instant::now() + settings.retry_delay);
                        Vec::new()
                    }
                }
            }
            LoopEvent::RetryDue => {
                retry_at = None;
                Vec::new()
            }
            LoopEvent::WakeDue => core.wake(now),
            LoopEvent::Request(Incoming { request, responder }) => {
                let reply_to = ReplyTo(reply_next);
                reply_next += 1;
                match core.handle(now, reply_to, request) {
                    Some(response) => server.respond(responder, &response),
                    None => {
                        waiting.insert(reply_to, responder);
                    }
                }
                Vec::new()
            }
        };
        for (reply_to, response) in released {
            let responder = waiting
                .remove(&reply_to)
                .expect("every released answer has a waiting responder");
            server.respond(responder, &response);
        }
    }
}

fn start_write<S: Storage>(storage: S, path: String, write: Write) -> WriteFuture {
    async move {
        let result = match write.mode {
            WriteMode::Append => match storage.append(&path, &write.bytes).await {
                Ok(()) => storage.sync(&path).await,
                Err(error) => Err(error),
            },
            WriteMode::Replace => storage.replace(&path, &write.bytes).await,
        };
        (write.ticket, result)
    }
    .boxed_local()
}
