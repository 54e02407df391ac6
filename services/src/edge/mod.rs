//! Edge adapters: the sidecars that let the gateway reach the cell's services over HTTP
//! semantics. The gateway forwards `gateway::UpstreamRequest` (over `rpc`) to the host and port
//! an upstream registered; on that host an edge adapter answers it by translating it into the
//! native service's request, calling the service (usually on the same host, over loopback) and
//! translating the answer back into a status and a JSON body.
//!
//! Parts: `reply` (shared error shapes, path splitting, body fields, `Plan`), one pure
//! translation module per upstream kind (`orders`, `inventory`, `axes`, each documenting its
//! routes and statuses) and, here, `EdgeConfig` and `run_edge`, the thin shell.
//!
//! Design choices (for ARCHITECTURE.md):
//! - **A sidecar per service, its own port.** The native services keep their RPC protocols;
//!   the edge is what registers in the registry for the gateway. Ports: the native port + 1
//!   (`ORDERS_EDGE_PORT` 7601 next to orders' 7600, `INVENTORY_EDGE_PORT` 7501 next to the
//!   inventory's 7500, `AXES_EDGE_PORT` 7101 next to motion's 7100); none is used by another
//!   service (registry 8500, gateway 8080, journal 7300, bus 7400).
//! - **Defence in depth.** The gateway authenticates and authorises; the edge checks the role
//!   again (403 for a viewer that is not reading) so a request that slipped past the gateway
//!   still changes nothing. Every request is traced as `upstream_received` **before** any check,
//!   so oracle GW1 sees everything that reached a backend's door.
//! - **Concurrent, bounded.** Requests are handled concurrently (an operator move waits for the
//!   axis for seconds; a slow journal must not hold up reads) in one task with a
//!   `FuturesUnordered`, at most `requests_in_flight_max` at once; beyond, 503 with
//!   `Retry-After`. Each native call has `call_timeout`.
//! - **Idempotent translations only.** Every native request the edge sends is idempotent (an
//!   order by its order id, an operator move by a request id derived from the consumer and the
//!   `Idempotency-Key`, reads), so the gateway's retries and the edge's re-sends never act
//!   twice.
//! - **Operator moves** (`POST /axes/{axis}/move`): lease as `operator:<consumer>#<move>` with
//!   `operator_lease_ttl_ms`, move under its fencing token (enabling a disabled axis first, as a
//!   saga does; a faulted one answers 409 `axis_not_enabled` until its fault is reset), re-send the move every
//!   `move_poll_interval` until its outcome is known, then release the lease. When the outcome
//!   is not known within `move_wait_max` (below the lease TTL) the edge answers 504 and keeps
//!   the lease: it expires by its TTL, after the move could have finished; re-sending the
//!   request with the same `Idempotency-Key` learns the outcome. The wait is the edge's own, not
//!   the caller's: a gateway that gave up does not leave the lease held for a whole TTL.
//! - **Fault reset** (`POST /axes/{axis}/reset`, operators only): the drive's fault is reset
//!   (`MotionRequest::ResetFault`, idempotent: resetting a healthy axis changes nothing); the
//!   next move enables the axis again. A faulted axis stays faulted until someone says its cause
//!   is gone: no service resets faults on its own.
//! - **Axes across motion hosts.** The gateway picks any passing `motion` instance; an axes
//!   edge forwards a request about an axis listed in `axis_backends` to that axis's motion
//!   service, any other to `backend`. So every axes edge can answer for every axis.
//!
//! Events (`tracing`, INFO, stable `event` field): `edge_started` (edge, port);
//! `upstream_received` (edge, route, method, path, consumer, role, idempotency_key) for every
//! request, before any check; `upstream_refused` (edge, route, method, path, consumer, role,
//! status, reason) when the edge answers without calling the native service (role, malformed
//! request, unknown path, overload); `edge_backend_failed` (edge, route, path, error) when the
//! native service did not answer; `operator_move` (axis, consumer, request_id, token, status,
//! lease) once per move request that got a lease, `lease` = `released` | `release_failed` |
//! `kept_until_ttl`. DEBUG: `upstream_answered` (edge, route, path, status, retry_after_s).

pub mod axes;
pub mod inventory;
pub mod orders;
pub mod reply;

#[cfg(test)]
mod shell_tests;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use self::axes::{AxesCall, LeaseStep, MoveStep};
use self::reply::Plan;
use crate::gateway::{UpstreamRequest, UpstreamResponse};
use crate::inventory::INVENTORY_PORT;
use crate::motion::protocol::HOLDER_LENGTH_MAX;
use crate::motion::protocol::{AxisState, RejectReason};
use crate::motion::{AxisName, MOTION_PORT, MotionRequest, MotionResponse};
use crate::orders::ORDERS_PORT;
use crate::rpc::{Incoming, RpcClient, RpcError, RpcServer};
use crate::transport::Endpoint;
use crate::transport::Transport;

/// The orders edge's port: orders' own port + 1.
pub const ORDERS_EDGE_PORT: u16 = ORDERS_PORT + 1;
/// The inventory edge's port: the inventory's own port + 1.
pub const INVENTORY_EDGE_PORT: u16 = INVENTORY_PORT + 1;
/// The axes edge's port: motion's own port + 1.
pub const AXES_EDGE_PORT: u16 = MOTION_PORT + 1;

/// Upper bound of `EdgeConfig::requests_in_flight_max`.
pub const REQUESTS_IN_FLIGHT_LIMIT: usize = 4096;

/// Which native service an edge adapter fronts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum EdgeKind {
    /// `/orders` → the orders service.
    Orders,
    /// `/inventory` → the inventory.
    Inventory,
    /// `/axes` → the motion service.
    Axes,
}

impl EdgeKind {
    /// A stable name for events (`orders`, `inventory`, `axes`).
    pub fn name(self) -> &'static str {
        match self {
            EdgeKind::Orders => "orders",
            EdgeKind::Inventory => "inventory",
            EdgeKind::Axes => "axes",
        }
    }

    /// The kind's edge port (see the module docs).
    pub fn default_port(self) -> u16 {
        match self {
            EdgeKind::Orders => ORDERS_EDGE_PORT,
            EdgeKind::Inventory => INVENTORY_EDGE_PORT,
            EdgeKind::Axes => AXES_EDGE_PORT,
        }
    }
}

/// Everything `run_edge` needs besides the transport.
#[derive(Clone, Debug, PartialEq)]
pub struct EdgeConfig {
    pub kind: EdgeKind,
    /// The port the edge listens on (`kind.default_port()`).
    pub port: u16,
    /// The native service, usually on this host.
    pub backend: Endpoint,
    /// Axes edge only: the motion service of each axis; an axis not listed goes to `backend`.
    pub axis_backends: BTreeMap<AxisName, Endpoint>,
    /// Longest wait for one native call's answer.
    pub call_timeout: Duration,
    /// `Retry-After` of the 503s the edge answers (native unavailable or overloaded, edge
    /// overloaded, native service unreachable), seconds.
    pub retry_after_s: u32,
    /// Most requests handled at once; beyond, 503.
    pub requests_in_flight_max: usize,
    /// Lifetime of an operator's axis lease, ms (at most motion's `lease_ttl_ms_max`).
    pub operator_lease_ttl_ms: u32,
    /// Wait between re-sends of an operator move whose outcome is not known yet.
    pub move_poll_interval: Duration,
    /// Longest wait for an operator move's outcome (below the lease's lifetime).
    pub move_wait_max: Duration,
}

impl EdgeConfig {
    /// Defaults: the kind's edge port; native calls of 500 ms (the orders service's own call
    /// timeout, within the gateway's 1 s attempt timeout); `Retry-After: 1` (the gateway's
    /// default); 256 requests at once (the orders service's own limit); operator leases of
    /// 10 s, moves re-sent every 20 ms (the orders saga's poll) and awaited up to 8 s.
    pub fn new(kind: EdgeKind, backend: Endpoint) -> EdgeConfig {
        EdgeConfig {
            kind,
            port: kind.default_port(),
            backend,
            axis_backends: BTreeMap::new(),
            call_timeout: Duration::from_millis(500),
            retry_after_s: 1,
            requests_in_flight_max: 256,
            operator_lease_ttl_ms: 10_000,
            move_poll_interval: Duration::from_millis(20),
            move_wait_max: Duration::from_secs(8),
        }
    }

    /// Panics on a configuration that cannot work.
    pub fn validate(&self) {
        assert!(
            !self.call_timeout.is_zero(),
            "call_timeout must be positive"
        );
        assert!(self.retry_after_s >= 1, "retry_after_s must be at least 1");
        assert!(
            (1..=REQUESTS_IN_FLIGHT_LIMIT).contains(&self.requests_in_flight_max),
            "requests_in_flight_max must be in 1..={REQUESTS_IN_FLIGHT_LIMIT}"
        );
        assert!(
            !self.move_poll_interval.is_zero(),
            "move_poll_interval must be positive"
        );
        assert!(
            self.move_wait_max < Duration::from_millis(u64::from(self.operator_lease_ttl_ms)),
            "move_wait_max {:?} must be below the operator lease's {} ms: the lease must outlive \
             the wait so no one else takes the axis while the edge still follows the move",
            self.move_wait_max,
            self.operator_lease_ttl_ms
        );
        assert!(
            self.axis_backends.is_empty() || self.kind == EdgeKind::Axes,
            "axis_backends is for an axes edge only"
        );
    }
}

/// Why an edge adapter could not run.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("{kind} edge: cannot listen on port {port}: {source}")]
    Bind {
        kind: &'static str,
        port: u16,
        #[source]
        source: io::Error,
    },
}

/// Binds `config.port` and serves until dropped; returns only if the port cannot be bound.
/// Panics on an invalid configuration.
pub async fn run_edge<T: Transport>(
    transport: T,
    config: EdgeConfig,
) -> Result<Infallible, EdgeError> {
    config.validate();
    let listener = transport
        .bind(config.port)
        .await
        .map_err(|source| EdgeError::Bind {
            kind: config.kind.name(),
            port: config.port,
            source,
        })?;
    tracing::info!(
        event = "edge_started",
        edge = config.kind.name(),
        port = config.port
    );
    let context = Rc::new(Context {
        rpc: RpcClient::new(transport),
        config,
    });
    let mut server = RpcServer::<T::Listener, UpstreamRequest>::new(listener);
    let mut handlers = FuturesUnordered::new();
    loop {
        tokio::select! {
            biased;
            Some((responder, response)) = handlers.next(), if !handlers.is_empty() => {
                server.respond(responder, &response);
            }
            incoming = server.next_request() => {
                context.received(&incoming.request);
                let Some(Incoming { request, responder }) = server.reject_if_expired(incoming)
                else {
                    continue;
                };
                if handlers.len() >= context.config.requests_in_flight_max {
                    let busy = reply::unavailable(
                        "edge_overloaded",
                        "too many requests in progress",
                        context.config.retry_after_s,
                    );
                    let busy = context.refused(&request, busy, "overloaded");
                    server.respond(responder, &busy);
                    continue;
                }
                let context = context.clone();
                handlers.push(
                    async move {
                        let response = context.handle(request).await;
                        (responder, response)
                    }
                    .boxed_local(),
                );
            }
        }
    }
}

/// What every handler of one edge shares.
struct Context<T: Transport> {
    rpc: RpcClient<T>,
    config: EdgeConfig,
}

impl<T: Transport> Context<T> {
    fn edge(&self) -> &'static str {
        self.config.kind.name()
    }

    fn received(&self, request: &UpstreamRequest) {
        tracing::info!(
            event = "upstream_received",
            edge = self.edge(),
            route = request.route.as_str(),
            method = request.method.as_str(),
            path = request.path.as_str(),
            consumer = request.consumer.as_str(),
            role = request.role.as_str(),
            idempotency_key = request.idempotency_key.as_deref(),
        );
    }

    /// Traces an answer the edge gives without calling the native service, and returns it.
    fn refused(
        &self,
        request: &UpstreamRequest,
        response: UpstreamResponse,
        reason: &str,
    ) -> UpstreamResponse {
        tracing::info!(
            event = "upstream_refused",
            edge = self.edge(),
            route = request.route.as_str(),
            method = request.method.as_str(),
            path = request.path.as_str(),
            consumer = request.consumer.as_str(),
            role = request.role.as_str(),
            status = response.status,
            reason,
        );
        response
    }

    /// Traces a refusal whose reason is the error code in its body.
    fn answered_at_once(
        &self,
        request: &UpstreamRequest,
        response: UpstreamResponse,
    ) -> UpstreamResponse {
        let code = serde_json::from_str::<serde_json::Value>(&response.body_json)
            .ok()
            .and_then(|body| body["error"].as_str().map(str::to_owned))
            .unwrap_or_default();
        self.refused(request, response, &code)
    }

    async fn handle(&self, request: UpstreamRequest) -> UpstreamResponse {
        if !request.role.permits(request.method) {
            let forbidden = UpstreamResponse::error(
                403,
                "forbidden",
                &format!(
                    "role {} may not {}",
                    request.role.as_str(),
                    request.method.as_str()
                ),
            );
            return self.refused(&request, forbidden, "role");
        }
        let response = match self.config.kind {
            EdgeKind::Orders => match orders::plan(&request) {
                Plan::Answer(answer) => return self.answered_at_once(&request, answer),
                Plan::Call(native) => {
                    match self.call(&request, &self.config.backend, &native).await {
                        Ok(answer) => orders::respond(&native, answer, self.config.retry_after_s),
                        Err(failed) => failed,
                    }
                }
            },
            EdgeKind::Inventory => match inventory::plan(&request) {
                Plan::Answer(answer) => return self.answered_at_once(&request, answer),
                Plan::Call(native) => {
                    match self.call(&request, &self.config.backend, &native).await {
                        Ok(answer) => {
                            inventory::respond(&native, answer, self.config.retry_after_s)
                        }
                        Err(failed) => failed,
                    }
                }
            },
            EdgeKind::Axes => match axes::plan(&request) {
                Plan::Answer(answer) => return self.answered_at_once(&request, answer),
                Plan::Call(call) => self.axes(&request, call).await,
            },
        };
        tracing::debug!(
            event = "upstream_answered",
            edge = self.edge(),
            route = request.route.as_str(),
            path = request.path.as_str(),
            status = response.status,
            retry_after_s = response.retry_after_s,
        );
        response
    }

    /// One native call; a failure is already the HTTP answer (and traced).
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        request: &UpstreamRequest,
        endpoint: &Endpoint,
        native: &Req,
    ) -> Result<Resp, UpstreamResponse> {
        self.rpc
            .call(
                &endpoint.host,
                endpoint.port,
                native,
                self.config.call_timeout,
            )
            .await
            .map_err(|error| self.backend_failed(request, &error))
    }

    fn backend_failed(&self, request: &UpstreamRequest, error: &RpcError) -> UpstreamResponse {
        tracing::info!(
            event = "edge_backend_failed",
            edge = self.edge(),
            route = request.route.as_str(),
            path = request.path.as_str(),
            error = error.kind(),
        );
        reply::backend_failed(error, self.config.retry_after_s)
    }

    fn motion(&self, axis: &AxisName) -> &Endpoint {
        self.config
            .axis_backends
            .get(axis)
            .unwrap_or(&self.config.backend)
    }

    async fn axes(&self, request: &UpstreamRequest, call: AxesCall) -> UpstreamResponse {
        let retry_after_s = self.config.retry_after_s;
        let endpoint = self.motion(call.axis());
        match call {
            AxesCall::Status { axis } => {
                let native = MotionRequest::Status { axis: axis.clone() };
                match self.call(request, endpoint, &native).await {
                    Ok(answer) => axes::status_response(&axis, answer, retry_after_s),
                    Err(failed) => failed,
                }
            }
            AxesCall::ResetFault { axis } => {
                let native = MotionRequest::ResetFault { axis: axis.clone() };
                match self.call(request, endpoint, &native).await {
                    Ok(answer) => axes::reset_response(&axis, answer, retry_after_s),
                    Err(failed) => failed,
                }
            }
            AxesCall::Move {
                axis,
                target_rad,
                request_id,
                holder,
            } => {
                assert!(holder.len() <= HOLDER_LENGTH_MAX, "checked by axes::plan");
                let lease = MotionRequest::AcquireLease {
                    axis: axis.clone(),
                    holder,
                    ttl_ms: self.config.operator_lease_ttl_ms,
                };
                let token = match self.call(request, endpoint, &lease).await {
                    Err(failed) => return failed,
                    Ok(answer) => match axes::lease_step(&axis, answer, retry_after_s) {
                        LeaseStep::Granted { token } => token,
                        LeaseStep::Answer(answer) => return answer,
                    },
                };
                let native = MotionRequest::Move {
                    request_id,
                    axis: axis.clone(),
                    target_rad,
                    token,
                };
                let (response, lease) = match self.follow_move(request, endpoint, &native).await {
                    Some(response) => {
                        let release = MotionRequest::ReleaseLease {
                            axis: axis.clone(),
                            token,
                        };
                        // Released, or already gone (expired, taken over): either way the edge
                        // holds nothing any more. A failed release expires by its TTL.
                        let released = self
                            .call::<_, MotionResponse>(request, endpoint, &release)
                            .await
                            .is_ok();
                        (
                            response,
                            if released {
                                "released"
                            } else {
                                "release_failed"
                            },
                        )
                    }
                    None => {
                        let pending = UpstreamResponse::error(
                            504,
                            "move_in_progress",
                            "the move's outcome is not known yet; send the same request with the \
                             same Idempotency-Key to learn it",
                        );
                        (pending, "kept_until_ttl")
                    }
                };
                tracing::info!(
                    event = "operator_move",
                    axis = axis.as_str(),
                    consumer = request.consumer.as_str(),
                    request_id,
                    token,
                    status = response.status,
                    lease,
                );
                response
            }
        }
    }

    /// Sends `native` (a `Move`) until its outcome is known; `None` when `move_wait_max` ran
    /// out first. The move is idempotent by its request id, so a lost answer is simply asked
    /// again.
    async fn follow_move(
        &self,
        request: &UpstreamRequest,
        endpoint: &Endpoint,
        native: &MotionRequest,
    ) -> Option<UpstreamResponse> {
        let MotionRequest::Move {
            request_id, axis, ..
        } = native
        else {
            panic!("follow_move follows a Move, not {native:?}");
        };
        let started = Instant::now();
        loop {
            match self.call(request, endpoint, native).await {
                Ok(MotionResponse::Rejected {
                    reason: RejectReason::NotEnabled { state },
                }) if !matches!(state, AxisState::Fault | AxisState::FaultReactionActive) => {
                    // Disabled, not faulted: an operator's move enables the axis as a saga's
                    // does, then sends the move again (a faulted axis needs its fault reset
                    // first: that answer is the 409 below). Enabling is idempotent.
                    let enable = MotionRequest::Enable { axis: axis.clone() };
                    let answer = self
                        .call::<_, MotionResponse>(request, endpoint, &enable)
                        .await;
                    if let Ok(refused @ MotionResponse::Rejected { .. }) = answer {
                        tracing::info!(event = "operator_enable_refused", axis = axis.as_str());
                        return Some(axes::refusal(axis, refused, self.config.retry_after_s));
                    }
                }
                Ok(answer) => {
                    match axes::move_step(axis, *request_id, answer, self.config.retry_after_s) {
                        MoveStep::Pending => {}
                        MoveStep::Done(response) => return Some(response),
                    }
                }
                // Trying again may tell: the edge's re-send is the same move.
                Err(_failed) => {}
            }
            if started.elapsed() + self.config.move_poll_interval >= self.config.move_wait_max {
                return None;
            }
            tokio::time::sleep(self.config.move_poll_interval).await;
        }
    }
}
