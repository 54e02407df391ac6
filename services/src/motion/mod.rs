//! The motion service: owns the axes, runs their control loops, grants leases with fencing
//! tokens, and executes each move at most once.
//!
//! Parts: `protocol` (wire types), `config` (`MotionConfig`), `lease` (one axis's lease and
//! token), `move_table` (the idempotency table), `durable` (the on-disk state), `core`
//! (`MotionCore`, the pure state machine) and, here, `run_motion`, the thin async shell that
//! connects the core to a `Transport`, a `Storage` and one `DriveLink` per axis.
//!
//! Design choices (for ARCHITECTURE.md):
//! - **One task, no spawning.** `run_motion` is a single `tokio::select!` loop (`biased;`, so the
//!   order of readiness never depends on tokio's RNG) over: the control tick, the completion of
//!   the durable-state write, the write-retry timer, and the next RPC request. The control tick
//!   comes first: a control period is never delayed behind request handling. The core is owned
//!   by the loop (no `Rc<RefCell>`), and every branch is short and synchronous except the write,
//!   which runs as a future inside the loop while control continues.
//! - **Control rate.** One `tokio::time::interval` of `MotionConfig::control_period` with
//!   `MissedTickBehavior::Skip`: after a stall the loop resumes on the original period grid
//!   instead of firing the missed ticks back to back (`Burst` would run several control steps at
//!   the same instant on the same feedback, and a burst of current commands), and without
//!   shifting the grid as `Delay` would. The controller gets the real time of each tick, so it
//!   sees the longer step.
//! - **Leases and fencing.** A token is `token_issued_max + 1` per axis, written durably before it
//!   is revealed, so it only grows, across restarts too. Moves carry the token; one older than
//!   the newest is answered `StaleToken`, one whose lease expired `Rejected { LeaseNotHeld }`.
//!   Leases themselves are not durable (their expiry is on the service's own clock): a restart
//!   ends every lease, and holders must re-acquire, getting a higher token.
//! - **Idempotent moves.** A move's request id is recorded (write-ahead) before the move starts;
//!   a request with a known id is answered from the record (`InProgress`, `Completed`,
//!   `Aborted`, `Interrupted`) without any effect, even without a valid token. Moves running at a
//!   crash come back `Interrupted` and are never resumed: at most once, never twice. A client
//!   learns the outcome by re-sending the same move.
//! - **Deadlines.** The RPC layer refuses requests whose budget ran out before dispatch. Once a
//!   move is recorded it starts when its record is durable, whatever the client's deadline: the
//!   client may retry with the same id and learn the outcome.
//! - **Events.** Every state change is a `tracing` event at INFO with a stable `event` field:
//!   `lease_granted`, `lease_renewed`, `lease_released`, `lease_expired`, `stale_token`,
//!   `move_accepted`, `move_duplicate`, `move_rejected`, `move_completed`, `move_aborted`,
//!   `move_interrupted`, `axis_state`; and from the shell `motion_started`,
//!   `state_write_failed`. Fields are plain values (axis, holder, token, request_id, target_rad,
//!   final_position_rad, reason kinds): no addresses, no wall times.

pub mod config;
pub mod core;
pub mod durable;
pub mod lease;
pub mod move_table;
pub mod protocol;

#[cfg(test)]
mod core_tests;

use std::collections::BTreeMap;
use std::io;

use futures_util::FutureExt;
use futures_util::future::LocalBoxFuture;
use tokio::time::{Instant, MissedTickBehavior};

pub use self::config::{MOTION_PORT, MotionConfig};
pub use self::core::{MotionCore, ReplyTo};
pub use self::durable::{DurableState, StateError};
pub use self::move_table::{MoveOutcome, MoveRecord};
pub use self::protocol::{
    AbortReason, AxisName, AxisState, AxisStatus, LeaseView, MotionRequest, MotionResponse,
    Refusal, RejectReason,
};
use crate::fieldbus::DriveLink;
use crate::rpc::{Incoming, Responder, RpcServer};
use crate::storage::Storage;
use crate::transport::Transport;

/// Why the motion service could not run.
#[derive(Debug, thiserror::Error)]
pub enum MotionError {
    /// The RPC port could not be bound.
    #[error("motion: cannot listen on port {port}: {source}")]
    Bind {
        port: u16,
        #[source]
        source: io::Error,
    },
    /// The durable state could not be read.
    #[error("motion: cannot read the durable state: {0}")]
    ReadState(#[source] io::Error),
    /// The durable state exists but is damaged: starting would risk re-issuing fencing tokens
    /// and re-running moves, so the service refuses to start.
    #[error("motion: durable state refused: {0}")]
    CorruptState(#[from] StateError),
}

// One event per loop turn, consumed at once: boxing the large variant would only add an
// allocation per request.
#[allow(clippy::large_enum_variant)]
enum LoopEvent<S> {
    Tick,
    Written {
        version: u64,
        result: io::Result<()>,
    },
    WriteRetryDue,
    Request(Incoming<S, MotionRequest>),
}

/// Runs the motion service until dropped: recovers the durable state, binds `config.port`, and
/// runs the control loop and the RPC server in one task (see the module docs). `links` holds one
/// drive link per configured axis, in `config.axes` order.
///
/// Returns only on a start-up failure. Panics on an invalid configuration.
pub async fn run_motion<T, S, L>(
    transport: T,
    storage: S,
    links: Vec<(AxisName, L)>,
    config: MotionConfig,
) -> Result<(), MotionError>
where
    T: Transport,
    S: Storage,
    L: DriveLink,
{
    config.validate();
    let link_names: Vec<&AxisName> = links.iter().map(|(name, _)| name).collect();
    let config_names: Vec<&AxisName> = config.axes.iter().map(|(name, _)| name).collect();
    assert_eq!(
        link_names, config_names,
        "one drive link per configured axis, in the same order"
    );

    let recovered = match storage
        .read(&config.state_path)
        .await
        .map_err(MotionError::ReadState)?
    {
        None => None,
        Some(bytes) => Some(durable::decode(&bytes)?),
    };
    let mut core = MotionCore::new(&config, recovered);
    let listener = transport
        .bind(config.port)
        .await
        .map_err(|source| MotionError::Bind {
            port: config.port,
            source,
        })?;
    let mut server = RpcServer::<T::Listener, MotionRequest>::new(listener);
    let mut links = links;

    let start = Instant::now();
    let mut control = tokio::time::interval(config.control_period);
    control.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut waiting: BTreeMap<ReplyTo, Responder<T::Stream>> = BTreeMap::new();
    let mut reply_next: u64 = 0;
    let mut write: Option<LocalBoxFuture<'static, (u64, io::Result<()>)>> = None;
    let mut write_retry_at: Option<Instant> = None;
    tracing::info!(
        event = "motion_started",
        port = config.port,
        axes = config.axes.len(),
        control_period_us = u64::try_from(config.control_period.as_micros()).unwrap_or(u64::MAX),
    );

    loop {
        if write.is_none() && write_retry_at.is_none() && core.needs_persist() {
            let (version, state) = core.durable_snapshot();
            let bytes = durable::encode(&state);
            let storage = storage.clone();
            let path = config.state_path.clone();
            write = Some(
                async move {
                    let result = storage.replace(&path, &bytes).await;
                    (version, result)
                }
                .boxed_local(),
            );
        }

        let event = tokio::select! {
            biased;
            _ = control.tick() => LoopEvent::Tick,
            (version, result) = async { write.as_mut().expect("guarded by is_some").await },
                if write.is_some() => LoopEvent::Written { version, result },
            () = tokio::time::sleep_until(write_retry_at.unwrap_or(start)),
                if write_retry_at.is_some() => LoopEvent::WriteRetryDue,
            incoming = server.next_request() => LoopEvent::Request(incoming),
        };

        let now = start.elapsed();
        match event {
            LoopEvent::Tick => {
                core.expire_leases(now);
                for (axis, link) in &mut links {
                    let feedback = link.latest_feedback();
                    let command = core.step(now, axis, feedback);
                    link.send(command);
                }
            }
            LoopEvent::Written { version, result } => {
                write = None;
                match result {
                    Ok(()) => {
                        for (reply_to, response) in core.persisted(now, version) {
                            let responder = waiting
                                .remove(&reply_to)
                                .expect("every pending answer has a waiting responder");
                            server.respond(responder, &response);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(
                            event = "state_write_failed",
                            version,
                            error_kind = ?error.kind(),
                        );
                        write_retry_at = Some(Instant::now() + config.persist_retry_delay);
                    }
                }
            }
            LoopEvent::WriteRetryDue => write_retry_at = None,
            LoopEvent::Request(Incoming { request, responder }) => {
                let reply_to = ReplyTo(reply_next);
                reply_next += 1;
                match core.handle(now, reply_to, request) {
                    Some(response) => server.respond(responder, &response),
                    None => {
                        waiting.insert(reply_to, responder);
                    }
                }
            }
        }
    }
}
