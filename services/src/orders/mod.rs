//! The orders service: the saga orchestrator, event-sourced in the journal (docs/DESIGN.md §6; see
//! `docs/reference/pattern-semantics.md` §8).
//!
//! Parts: `protocol` (orders, requests), `saga` (the pure saga state machine: events in,
//! commands out), `projection` (the pure view of all sagas and the resumption and takeover
//! rules), `participants` (commands as RPCs to inventory and motion, retried to a definitive
//! outcome), `config` (`OrdersConfig`) and, here, `run_orders`, the shell.
//!
//! Design choices (for ARCHITECTURE.md):
//! - **Event-sourced.** A saga is its journal stream `saga-<order id>`; its state is the fold of
//!   the stream (`Saga::replay`). Nothing else is stored: the orders service has no disk.
//! - **Decide, then record, then go on.** The shell runs the command `Saga::next_action` names,
//!   turns the definitive outcome into an event (`Saga::decide`) and appends it with the
//!   expected version `Exact(head)`; only when the journal acknowledged it (durable) does it fold
//!   the event in and trace it. A crash between a participant's effect and the append repeats
//!   the command after the restart: every participant is idempotent per order id.
//! - **One owner per saga through expected versions.** The `Started` event names the instance
//!   that owns the saga; `OwnerChanged` hands it over. Only the owner appends. Every instance
//!   appends a heartbeat to its own stream (`saga-owner-<instance>`) every `heartbeat_interval`.
//!   An instance takes over an open saga of another instance once neither the saga's stream nor
//!   its owner's heartbeats showed anything for `takeover_after` (so a live owner waiting on a
//!   participant keeps its sagas), by appending `OwnerChanged` at the head it saw: if the owner
//!   appended meanwhile the takeover fails, and an owner whose append meets a conflict re-reads the stream, sees the new
//!   owner, and stops (`saga_ownership_lost`). Participants are idempotent, so a command a
//!   deposed owner still had in flight does no harm (a lease it took without recording expires
//!   with its TTL; a reservation it made is released by the compensation, or expires).
//! - **Resumption.** Each instance follows every saga stream with a catch-up subscription from
//!   position 0 (its projection: owner, phase, last activity). After a restart it resumes every
//!   open saga it owns, from the stream.
//! - **No spawned tasks.** One task: the RPC server, the subscription's long poll, the request
//!   handlers, up to `sagas_driven_max` saga drivers and, with a bus, one round of the motion
//!   events' consumer (`consumer`), multiplexed with `FuturesUnordered` in a `biased;` select.
//! - **Motion events** (`OrdersConfig::bus`): each instance consumes `motion.events` in group
//!   `orders` and appends every message to the journal stream `axis-<axis>` under an event id
//!   derived from its message id, then acks: the journal's idempotent append makes each message
//!   take effect once (see `consumer`).
//!
//! Events (`tracing`, INFO, stable `event` field, plain fields), for SG1–SG6, each traced once
//! the journal acknowledged the event it reports: `saga_started` (order, instance, part,
//! quantity, axis, target_rad); `saga_step` (order, instance, step, outcome `succeeded` |
//! `shortfall` | `failed`, token, reason); `saga_compensating` (order, instance, step, reason);
//! `saga_compensated_step` (order, instance, step); `saga_completed` (order, instance,
//! shortfall); `saga_compensated` (order, instance); `saga_owner_claimed` (order, instance,
//! previous); `saga_ownership_lost` (order, instance, owner); `saga_resumed` (order, instance,
//! version); `saga_invalid` (order, instance, reason); `orders_started` (instance, port); and
//! the consumer's `bus_message_applied`, `bus_message_duplicate`, `bus_message_not_applied`,
//! `bus_message_undecodable` (fields in `consumer`).

pub mod config;
pub mod consumer;
pub mod participants;
pub mod projection;
pub mod protocol;
pub mod saga;

#[cfg(test)]
mod consumer_shell_tests;
#[cfg(test)]
mod saga_tests;
#[cfg(test)]
mod shell_tests;

use std::io;
use std::rc::Rc;
use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;

pub use self::config::{ORDERS_PORT, OrdersConfig};
pub use self::participants::{Participants, lease_holder};
pub use self::projection::{DriveEnd, DriveOrder, Projection};
pub use self::protocol::{
    OrderId, OrderRefusal, OrderSpec, OrdersRequest, OrdersResponse, SagaView,
};
pub use self::saga::{Action, Command, Phase, Saga, SagaError, SagaEvent, Step, StepOutcome};
use self::saga::{SAGA_STREAM_PREFIX, heartbeat_event, heartbeat_stream, stream_name};
use crate::bus::BusClient;
use crate::inventory::protocol::QUANTITY_MAX;
use crate::journal::{
    CatchUpSubscription, EventData, ExpectedVersion, JournalClient, JournalResponse, RecordedEvent,
    StreamName,
};
use crate::retry::{RetryPolicy, RetrySchedule};
use crate::rpc::{Incoming, Responder, RpcError, RpcServer};
use crate::transport::Transport;

/// Most requests handled at once; beyond, requests are refused `Overloaded`.
pub const REQUESTS_IN_FLIGHT_MAX: usize = 256;

/// Wait after a failed poll of the journal before the next.
pub const SUBSCRIPTION_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Why the orders service could not run.
#[derive(Debug, thiserror::Error)]
pub enum OrdersError {
    #[error("orders: cannot listen on port {port}: {source}")]
    Bind {
        port: u16,
        #[source]
        source: io::Error,
    },
}

/// What an instance shares between its drivers and handlers.
struct Context<T: Transport> {
    config: OrdersConfig,
    journal: JournalClient<T>,
    participants: Participants<T>,
    /// The bus of the motion events' consumer, if configured.
    bus: Option<BusClient<T>>,
    start: Instant,
}

impl<T: Transport> Context<T> {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Appends one event, re-sending it (same id) until the journal answers; `None` when a
    /// round of `policy` ran out.
    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedVersion,
        event: EventData,
        policy: RetryPolicy,
    ) -> Option<JournalResponse> {
        let mut schedule = RetrySchedule::new(policy, self.now());
        loop {
            schedule.begin_attempt(self.now()).ok()?;
            let timeout = self.config.call_timeout.min(schedule.remaining(self.now()));
            let answer = self
                .journal
                .append(stream, expected, vec![event.clone()], timeout)
                .await;
            match answer {
                Ok(JournalResponse::Rejected {
                    reason: crate::journal::RejectReason::Overloaded,
                }) => {}
                Ok(response) => return Some(response),
                // Idempotent by event id: any failure may be retried.
                Err(_) => {}
            }
            if !self.participants_back_off(&mut schedule).await {
                return None;
            }
        }
    }

    /// The saga's events; `None` when a round ran out.
    async fn read(&self, stream: &StreamName) -> Option<Vec<RecordedEvent>> {
        let mut schedule = RetrySchedule::new(self.config.must_retry, self.now());
        loop {
            schedule.begin_attempt(self.now()).ok()?;
            let timeout = self.config.call_timeout.min(schedule.remaining(self.now()));
            if let Ok((events, _head)) = self.journal.read_stream(stream, timeout).await {
                return Some(events);
            }
            if !self.participants_back_off(&mut schedule).await {
                return None;
            }
        }
    }

    async fn participants_back_off(&self, schedule: &mut RetrySchedule) -> bool {
        self.participants.back_off(schedule).await
    }
}

/// Runs one orders instance until dropped. `rng` is its random stream (backoff jitter),
/// derived from the run's seed by the caller. Returns only on a start-up failure. Panics on an
/// invalid configuration.
pub async fn run_orders<T: Transport>(
    transport: T,
    config: OrdersConfig,
    rng: ChaCha8Rng,
) -> Result<(), OrdersError> {
    config.validate();
    let listener = transport
        .bind(config.port)
        .await
        .map_err(|source| OrdersError::Bind {
            port: config.port,
            source,
        })?;
    tracing::info!(
        event = "orders_started",
        instance = config.instance.as_str(),
        port = config.port,
    );
    let context = Rc::new(Context {
        journal: JournalClient::with_port(
            transport.clone(),
            config.journal.host.clone(),
            config.journal.port,
        ),
        bus: config.bus.as_ref().map(|endpoint| {
            BusClient::with_port(transport.clone(), endpoint.host.clone(), endpoint.port)
        }),
        participants: Participants::new(transport, config.clone(), rng),
        start: Instant::now(),
        config,
    });
    serve(context, listener).await;
    Ok(())
}

/// A request being handled: its responder, the answer, and the saga it started, if any.
type Handling<S> = LocalBoxFuture<'static, (Responder<S>, OrdersResponse, Option<Saga>)>;

enum LoopEvent<S> {
    DriverEnded(OrderId, DriveEnd),
    Beat(Option<Option<u64>>),
    Handled(Responder<S>, OrdersResponse, Option<Saga>),
    Polled(CatchUpSubscription, Result<Vec<RecordedEvent>, RpcError>),
    Consumed(Duration),
    Due,
    Request(Incoming<S, OrdersRequest>),
}

async fn serve<T: Transport>(context: Rc<Context<T>>, listener: T::Listener) {
    let config = &context.config;
    let mut server = RpcServer::<T::Listener, OrdersRequest>::new(listener);
    let mut projection = Projection::new(config);
    let mut drivers: FuturesUnordered<LocalBoxFuture<'static, (OrderId, DriveEnd)>> =
        FuturesUnordered::new();
    let mut handlers: FuturesUnordered<Handling<T::Stream>> = FuturesUnordered::new();
    let subscription = CatchUpSubscription::new(0, SAGA_STREAM_PREFIX, config.subscription_wait);
    let mut poll = Some(poll_journal(context.clone(), subscription, Duration::ZERO));
    let mut beat = Some(heartbeat(context.clone(), None, Duration::ZERO));
    let mut consume: Option<LocalBoxFuture<'static, Duration>> = context
        .bus
        .is_some()
        .then(|| consumer::consume_round(context.clone(), Duration::ZERO).boxed_local());
    loop {
        let (start, due) = projection.to_drive(context.now());
        for DriveOrder { order, claim } in start {
            drivers.push(drive(context.clone(), order, claim).boxed_local());
        }
        let wake = due.map(|at| context.start + at);

        let event = tokio::select! {
            biased;
            Some((order, end)) = drivers.next(), if !drivers.is_empty() => {
                LoopEvent::DriverEnded(order, end)
            }
            Some((responder, response, started)) = handlers.next(), if !handlers.is_empty() => {
                LoopEvent::Handled(responder, response, started)
            }
            head = async { beat.as_mut().expect("always beating").await } => LoopEvent::Beat(head),
            (subscription, result) = async { poll.as_mut().expect("always polling").await } => {
                LoopEvent::Polled(subscription, result)
            }
            delay = async { consume.as_mut().expect("guarded by is_some").await },
                if consume.is_some() => LoopEvent::Consumed(delay),
            () = tokio::time::sleep_until(wake.unwrap_or(context.start)), if wake.is_some() => {
                LoopEvent::Due
            }
            incoming = server.next_request() => LoopEvent::Request(incoming),
        };
        let now = context.now();
        match event {
            LoopEvent::DriverEnded(order, end) => projection.driver_ended(order, end, now),
            LoopEvent::Beat(head) => {
                beat = Some(heartbeat(context.clone(), head, config.heartbeat_interval));
            }
            LoopEvent::Handled(responder, response, started) => {
                server.respond(responder, &response);
                if let Some(saga) = started {
                    projection.started(saga, now);
                }
            }
            LoopEvent::Polled(subscription, result) => {
                let delay = match result {
                    Ok(events) => {
                        for event in &events {
                            projection.observe(event, now);
                        }
                        Duration::ZERO
                    }
                    Err(_) => SUBSCRIPTION_RETRY_DELAY,
                };
                poll = Some(poll_journal(context.clone(), subscription, delay));
            }
            LoopEvent::Consumed(delay) => {
                consume = Some(consumer::consume_round(context.clone(), delay).boxed_local());
            }
            LoopEvent::Due => {}
            LoopEvent::Request(Incoming { request, responder }) => {
                if handlers.len() >= REQUESTS_IN_FLIGHT_MAX {
                    let refused = OrdersResponse::Refused {
                        reason: OrderRefusal::Overloaded,
                    };
                    server.respond(responder, &refused);
                    continue;
                }
                let context = context.clone();
                handlers.push(
                    async move {
                        let (response, started) = handle(&context, request).await;
                        (responder, response, started)
                    }
                    .boxed_local(),
                );
            }
        }
    }
}

type Polling = LocalBoxFuture<'static, (CatchUpSubscription, Result<Vec<RecordedEvent>, RpcError>)>;

fn poll_journal<T: Transport>(
    context: Rc<Context<T>>,
    mut subscription: CatchUpSubscription,
    delay: Duration,
) -> Polling {
    async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let result = subscription.next(&context.journal).await;
        (subscription, result)
    }
    .boxed_local()
}

/// Appends this instance's next heartbeat after `delay`. `head` is the heartbeat stream's
/// last version if known (`Some(None)`: no stream yet); returns the new head, or `None` if the
/// journal did not take it (the head is read again next time).
fn heartbeat<T: Transport>(
    context: Rc<Context<T>>,
    head: Option<Option<u64>>,
    delay: Duration,
) -> LocalBoxFuture<'static, Option<Option<u64>>> {
    async move {
        tokio::time::sleep(delay).await;
        let instance = context.config.instance.as_str();
        let stream = heartbeat_stream(instance);
        let head = match head {
            Some(head) => head,
            None => context
                .read(&stream)
                .await?
                .last()
                .map(|event| event.version),
        };
        let version = head.map_or(0, |head| head + 1);
        let expected = head.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let once = RetryPolicy {
            attempts_max: 1,
            deadline: context.config.heartbeat_interval,
            ..context.config.forward_retry
        };
        let answer = context
            .append(&stream, expected, heartbeat_event(instance, version), once)
            .await;
        match answer {
            Some(JournalResponse::Appended { .. }) => {
                tracing::debug!(event = "orders_heartbeat", instance, version);
                Some(Some(version))
            }
            _ => None,
        }
    }
    .boxed_local()
}

/// Answers one request.
async fn handle<T: Transport>(
    context: &Context<T>,
    request: OrdersRequest,
) -> (OrdersResponse, Option<Saga>) {
    let refused = |reason| OrdersResponse::Refused { reason };
    match request {
        OrdersRequest::PlaceOrder(spec) => {
            if !context.config.motion.contains_key(&spec.axis) {
                return (refused(OrderRefusal::UnknownAxis), None);
            }
            if spec.quantity == 0 || spec.quantity > QUANTITY_MAX || !spec.target_rad.is_finite() {
                return (refused(OrderRefusal::Invalid), None);
            }
            let order = spec.order_id;
            let stream = stream_name(order);
            let (saga, started) = Saga::start(spec.clone(), context.config.instance.clone());
            let data = started.to_event_data(order, 0, context.config.instance_index);
            let answer = context
                .append(
                    &stream,
                    ExpectedVersion::NoStream,
                    data,
                    context.config.forward_retry,
                )
                .await;
            match answer {
                Some(JournalResponse::Appended {
                    duplicate: false, ..
                }) => {
                    tracing::info!(
                        event = "saga_started",
                        order = order.0,
                        instance = context.config.instance.as_str(),
                        part = spec.part.as_str(),
                        quantity = u64::from(spec.quantity),
                        axis = spec.axis.as_str(),
                        target_rad = spec.target_rad,
                    );
                    (OrdersResponse::Accepted { duplicate: false }, Some(saga))
                }
                Some(
                    JournalResponse::Appended { .. } | JournalResponse::WrongExpectedVersion { .. },
                ) => {
                    // The order was placed before: the same order, or another under its id?
                    let Some(events) = context.read(&stream).await else {
                        return (refused(OrderRefusal::Unavailable), None);
                    };
                    match events.first().map(SagaEvent::from_recorded) {
                        Some(Ok(SagaEvent::Started { order: first, .. })) if first == spec => {
                            (OrdersResponse::Accepted { duplicate: true }, None)
                        }
                        _ => (refused(OrderRefusal::OrderIdReused), None),
                    }
                }
                Some(_) | None => (refused(OrderRefusal::Unavailable), None),
            }
        }
        OrdersRequest::OrderStatus { order_id } => {
            let Some(events) = context.read(&stream_name(order_id)).await else {
                return (refused(OrderRefusal::Unavailable), None);
            };
            if events.is_empty() {
                return (refused(OrderRefusal::UnknownOrder), None);
            }
            match Saga::replay_recorded(&events) {
                Ok(saga) => (OrdersResponse::Status(saga.view()), None),
                Err(_) => (refused(OrderRefusal::UnknownOrder), None),
            }
        }
    }
}

/// Drives one saga until it ends, this instance loses it, or a round of retries runs out.
async fn drive<T: Transport>(
    context: Rc<Context<T>>,
    order: OrderId,
    claim: bool,
) -> (OrderId, DriveEnd) {
    let end = drive_saga(&context, order, claim).await;
    (order, end)
}

async fn drive_saga<T: Transport>(context: &Context<T>, order: OrderId, claim: bool) -> DriveEnd {
    let config = &context.config;
    let me = config.instance.as_str();
    let stream = stream_name(order);
    let mut saga = match load(context, &stream, order).await {
        None => return DriveEnd::Unavailable,
        Some(None) => return DriveEnd::Invalid,
        Some(Some(saga)) => saga,
    };
    if saga.is_finished() {
        return DriveEnd::Finished;
    }
    if saga.owner != me {
        if !claim {
            return DriveEnd::NotOwner;
        }
        let previous = saga.owner.clone();
        let claim_event = SagaEvent::OwnerChanged {
            owner: me.to_owned(),
        };
        match append_event(context, &saga, &claim_event).await {
            Appended::Yes => {
                saga.apply(&claim_event)
                    .expect("an owner change is legal while open");
                tracing::info!(
                    event = "saga_owner_claimed",
                    order = order.0,
                    instance = me,
                    previous = previous.as_str(),
                );
            }
            Appended::Conflict => return DriveEnd::OwnershipLost,
            Appended::Unavailable => return DriveEnd::Unavailable,
        }
    } else if saga.version > 0 {
        tracing::info!(
            event = "saga_resumed",
            order = order.0,
            instance = me,
            version = saga.version,
        );
    }
    loop {
        let event = match saga.next_action() {
            Action::Finished => return DriveEnd::Finished,
            Action::Record(event) => event,
            Action::Run(command) => match context.participants.execute(&saga.order, &command).await
            {
                Ok(outcome) => saga.decide(outcome),
                Err(_unavailable) => return DriveEnd::Unavailable,
            },
        };
        match append_event(context, &saga, &event).await {
            Appended::Yes => {
                saga.apply(&event).expect("decided events are legal");
                trace_event(&saga, me, &event);
            }
            Appended::Conflict => {
                let Some(reloaded) = load(context, &stream, order).await else {
                    return DriveEnd::Unavailable;
                };
                let Some(reloaded) = reloaded else {
                    return DriveEnd::Invalid;
                };
                saga = reloaded;
                if saga.owner != me {
                    tracing::info!(
                        event = "saga_ownership_lost",
                        order = order.0,
                        instance = me,
                        owner = saga.owner.as_str(),
                    );
                    return DriveEnd::OwnershipLost;
                }
            }
            Appended::Unavailable => return DriveEnd::Unavailable,
        }
    }
}

/// The saga from its stream: `None` if the journal was unreachable, `Some(None)` if the stream
/// is not a valid saga.
async fn load<T: Transport>(
    context: &Context<T>,
    stream: &StreamName,
    order: OrderId,
) -> Option<Option<Saga>> {
    let events = context.read(stream).await?;
    match Saga::replay_recorded(&events) {
        Ok(saga) => Some(Some(saga)),
        Err(error) => {
            tracing::warn!(
                event = "saga_invalid",
                order = order.0,
                instance = context.config.instance.as_str(),
                reason = %error,
            );
            Some(None)
        }
    }
}

enum Appended {
    Yes,
    Conflict,
    Unavailable,
}

/// Appends the saga's next event at `Exact(head)`.
async fn append_event<T: Transport>(
    context: &Context<T>,
    saga: &Saga,
    event: &SagaEvent,
) -> Appended {
    let order = saga.order.order_id;
    let data = event.to_event_data(order, saga.version + 1, context.config.instance_index);
    let expected = ExpectedVersion::Exact(saga.version);
    match context
        .append(
            &stream_name(order),
            expected,
            data,
            context.config.must_retry,
        )
        .await
    {
        Some(JournalResponse::Appended { .. }) => Appended::Yes,
        Some(JournalResponse::WrongExpectedVersion { .. }) => Appended::Conflict,
        Some(other) => {
            tracing::warn!(event = "saga_append_refused", order = order.0, answer = ?other);
            Appended::Unavailable
        }
        None => Appended::Unavailable,
    }
}

/// Traces a saga event the journal acknowledged.
fn trace_event(saga: &Saga, instance: &str, event: &SagaEvent) {
    let order = saga.order.order_id.0;
    match event {
        SagaEvent::StepSucceeded {
            step,
            token,
            shortfall,
        } => tracing::info!(
            event = "saga_step",
            order,
            instance,
            step = step.kind(),
            outcome = if *shortfall { "shortfall" } else { "succeeded" },
            token = *token,
        ),
        SagaEvent::StepFailed { step, reason } => {
            tracing::info!(
                event = "saga_step",
                order,
                instance,
                step = step.kind(),
                outcome = "failed",
                reason = reason.as_str(),
            );
            tracing::info!(
                event = "saga_compensating",
                order,
                instance,
                step = step.kind(),
                reason = reason.as_str(),
            );
        }
        SagaEvent::StepCompensated { step } => tracing::info!(
            event = "saga_compensated_step",
            order,
            instance,
            step = step.kind(),
        ),
        SagaEvent::Completed => tracing::info!(
            event = "saga_completed",
            order,
            instance,
            shortfall = saga.shortfall,
        ),
        SagaEvent::Compensated => tracing::info!(event = "saga_compensated", order, instance),
        SagaEvent::Started { .. } | SagaEvent::OwnerChanged { .. } => {}
    }
}
