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
//!   `Aborted`, `Interrupted`) without any effect, even without a valid token. An outcome is told
//!   only once it is durable (until then a re-send hears `InProgress`), so no answer is ever
//!   taken back by a crash. A move in progress at a crash is never resumed (at most once, never
//!   twice): after the restart its axis decides it on its first valid feedback, `Completed`
//!   (recovered) if at rest within the in-position tolerance of the target, else (or with no
//!   valid feedback within `settle_time_max`) `Interrupted` (see `core`). A client learns the
//!   outcome by re-sending the same move.
//! - **Motion events on the bus** (`MotionConfig::bus`): each announced change is put in the
//!   outbox by the core in the same snapshot as the change (`event_outbox`). The loop runs at
//!   most one relay round at a time (`bus::relay`, in order, retried, ids fixed) over the
//!   messages already on disk; the acknowledged ones leave the outbox and the state is written
//!   again. A crash in between publishes them again after the restart, and the bus's duplicate
//!   window stores them once. A round that gave up is started again after
//!   `bus_relay_restart_delay`; meanwhile the outbox fills, and once it is nearly full new
//!   leases and moves are refused `Overloaded` (backpressure, never a drop).
//! - **Deadlines.** The RPC layer refuses requests whose budget ran out before dispatch. Once a
//!   move is recorded it starts when its record is durable, whatever the client's deadline: the
//!   client may retry with the same id and learn the outcome.
//! - **Events.** Every state change is a `tracing` event at INFO with a stable `event` field:
//!   `lease_granted`, `lease_renewed`, `lease_released`, `lease_expired`, `stale_token`,
//!   `move_accepted`, `move_duplicate`, `move_rejected`, `move_completed` (with `recovered`:
//!   decided after a restart), `move_aborted`, `move_interrupted` (with `reason`), `axis_state`; and from the shell `motion_started`,
//!   `state_write_failed` (and, while the state cannot be read at start-up, `durable_read_failed`
//!   then `durable_read_recovered`: the service starts once its disk heals, see
//!   `storage::read_durable`); with a bus, from the relay, `outbox_relayed` (topic, msg_id,
//!   sequence, duplicate, attempts) per acknowledged message and `motion_relay_stopped`
//!   (reason, outbox) when a relay round gave up; with the planted double move,
//!   `planted_move_restart` (axis, request_id, outcome) before the second `move_accepted`. Fields are plain values (axis, holder, token, request_id, target_rad,
//!   final_position_rad, reason kinds): no addresses, no wall times.

pub mod config;
pub mod core;
pub mod durable;
pub mod event_outbox;
pub mod lease;
pub mod move_table;
pub mod protocol;

#[cfg(test)]
mod core_tests;
#[cfg(test)]
mod shell_tests;

use std::collections::BTreeMap;
use std::io;

use futures_util::FutureExt;
use futures_util::future::LocalBoxFuture;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use tokio::time::{Instant, MissedTickBehavior};

pub use self::config::{MOTION_PORT, MotionConfig, RELAY_RNG_STREAM};
pub use self::core::{MotionCore, ReplyTo};
pub use self::durable::{DurableState, StateError};
pub use self::event_outbox::{EventOutbox, message_id};
pub use self::move_table::{MoveOutcome, MoveRecord};
pub use self::protocol::{
    AbortReason, AxisName, AxisState, AxisStatus, LeaseView, MOTION_EVENTS_TOPIC, MotionEvent,
    MotionRequest, MotionResponse, Refusal, RejectReason,
};
use crate::bus::outbox::RelayStop;
use crate::bus::{BusClient, MessageId};
use crate::fieldbus::DriveLink;
use crate::rpc::{Incoming, Responder, RpcServer};
use crate::storage::{ReadGaveUp, Storage, read_durable};
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
    /// The disk failed every read of the durable state within `MotionConfig::state_read_retry`.
    #[error("motion: cannot read the durable state: {0}")]
    ReadState(#[source] ReadGaveUp),
    /// The durable state exists but is damaged: starting would risk re-issuing fencing tokens
    /// and re-running moves, so the service refuses to start.
    #[error("motion: durable state refused: {0}")]
    CorruptState(#[from] StateError),
}

// One event per loop turn, consumed at once: boxing the large variant would only add an
// allocation per request.
#[allow(clippy::large_enum_variant)]
enum LoopEvent<S, T: Transport> {
    Tick,
    Written {
        version: u64,
        result: io::Result<()>,
    },
    WriteRetryDue,
    Relayed(RelayEnd<T>),
    RelayRetryDue,
    Request(Incoming<S, MotionRequest>),
}

/// The relay's tools, handed to each round and back.
struct Relay<T: Transport> {
    client: BusClient<T>,
    rng: ChaCha8Rng,
}

/// What a relay round gives back: its tools, the acknowledged ids, why it stopped early.
type RelayEnd<T> = (Relay<T>, Vec<MessageId>, Option<RelayStop>);

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

    let recovered = match read_durable(
        &storage,
        &config.state_path,
        config.state_read_retry,
        "motion",
    )
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
    // The relay's tools while no round runs (`None` without a bus, or while one runs).
    let mut relay_idle = config.bus.as_ref().map(|endpoint| {
        let mut rng = ChaCha8Rng::seed_from_u64(config.bus_jitter_seed);
        rng.set_stream(RELAY_RNG_STREAM);
        Relay {
            client: BusClient::with_port(transport.clone(), endpoint.host.clone(), endpoint.port),
            rng,
        }
    });
    let mut relay: Option<LocalBoxFuture<'static, RelayEnd<T>>> = None;
    let mut relay_retry_at: Option<Instant> = None;

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
        if relay_retry_at.is_none()
            && let Some(tools) = relay_idle.take_if(|_| !core.relayable().is_empty())
        {
            relay = Some(relay_round(tools, core.relayable(), &config));
        }

        let event = tokio::select! {
            biased;
            _ = control.tick() => LoopEvent::Tick,
            (version, result) = async { write.as_mut().expect("guarded by is_some").await },
                if write.is_some() => LoopEvent::Written { version, result },
            () = tokio::time::sleep_until(write_retry_at.unwrap_or(start)),
                if write_retry_at.is_some() => LoopEvent::WriteRetryDue,
            end = async { relay.as_mut().expect("guarded by is_some").await },
                if relay.is_some() => LoopEvent::Relayed(end),
            () = tokio::time::sleep_until(relay_retry_at.unwrap_or(start)),
                if relay_retry_at.is_some() => LoopEvent::RelayRetryDue,
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
            LoopEvent::Relayed((tools, confirmed, stop)) => {
                relay = None;
                relay_idle = Some(tools);
                core.relayed(&confirmed);
                if let Some(stop) = stop {
                    tracing::warn!(
                        event = "motion_relay_stopped",
                        reason = %stop,
                        outbox = core.outbox_len(),
                    );
                    relay_retry_at = Some(Instant::now() + config.bus_relay_restart_delay);
                }
            }
            LoopEvent::RelayRetryDue => relay_retry_at = None,
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

/// One relay round over `entries` (on disk, oldest first), owning its tools.
fn relay_round<T: Transport>(
    tools: Relay<T>,
    entries: Vec<crate::bus::OutboxEntry>,
    config: &MotionConfig,
) -> LocalBoxFuture<'static, RelayEnd<T>> {
    let (policy, timeout) = (config.bus_retry, config.bus_call_timeout);
    async move {
        let mut tools = tools;
        let (confirmed, stop) =
            crate::bus::relay(&tools.client, &entries, policy, timeout, &mut tools.rng).await;
        (tools, confirmed, stop)
    }
    .boxed_local()
}
