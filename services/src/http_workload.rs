//! The HTTP workload client: drives the cell from outside, through the gateway's public API, as
//! a real client would.
//!
//! Owns `HttpWorkloadConfig`, `PlannedOrder`, `PlannedRequest`, `HttpWorkloadReport` and
//! `run_http_workload`. It does not own HTTP (`gateway::http_call`), the retry rules
//! (`retry::decide_retry`) or what an order does (the orders service).
//!
//! What it does:
//! - **Orders**: each `PlannedOrder` is placed at its `at` with `POST /orders`, the configured
//!   API key and `Idempotency-Key: order-<order id>` (the same on every re-send). A 429 or 503
//!   is re-sent no sooner than its `Retry-After`; a 502, a 504, a refused connection, a broken
//!   exchange or a call timeout after a jittered exponential backoff drawn from the run's
//!   `ChaCha8Rng`; all within `retry` (attempts including the first, one deadline per order).
//!   A 202 is the order accepted; any other status is final (the order is given up). Then, if
//!   `poll_interval` is set, `GET /orders/{id}` every `poll_interval` until the saga is
//!   `completed` or `compensated`, or until `poll_until` (since the start of the run).
//! - **Probes**: each `PlannedRequest` is sent once at its `at`, with its own key (or none),
//!   and its answer only traced: viewers posting, missing and wrong keys, reads (oracles GW1,
//!   GW2 and the gateway scenarios).
//!
//! Workload order ids (`workload_order_id`): `1 << 48 | client_index << 32 | n`. Bit 48 keeps
//! them apart from the plain move client's request ids (`client_id << 32 | index`, which stay
//! below 2^48 while client ids stay below 2^16) and below the edge's operator move ids (bit 49),
//! so the motion service, where an order id becomes the saga's move request id, never sees one
//! id for two moves.
//!
//! Deterministic: one task (a `FuturesUnordered` of orders and probes), `tokio::time` only, the
//! jitter from the `ChaCha8Rng` handed in, no hash-ordered collections.
//!
//! Events (`tracing`, INFO, stable `event` field): `order_submitted` (client, order, attempt);
//! `order_answered` (client, order, status, retry_after_s); `order_call_failed` (client, order,
//! attempt, error) when no answer came; `order_given_up` (client, order, reason, attempts) with
//! reason `status_<code>` for a final non-202 answer or the retry rule's (`attempts_exhausted`,
//! `deadline_reached`); `order_finished` (client, order, phase); `probe_answered` (client,
//! method, path, status, retry_after_s); `probe_failed` (client, method, path, error);
//! `http_workload_finished` (client and the report's counts). The retry rule adds its own
//! `retry_attempt` / `retry_refused` with operation `http_order`.

use std::cell::RefCell;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::LocalBoxFuture;
use futures_util::stream::FuturesUnordered;
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;

use crate::gateway::{GATEWAY_PORT, HttpCall, HttpCallError, HttpMethod, HttpReply, http_call};
use crate::inventory::PartId;
use crate::motion::AxisName;
use crate::orders::OrderId;
use crate::retry::{Failure, RetryPolicy, RetrySchedule, decide_retry};
use crate::transport::Endpoint;
use crate::transport::Transport;

/// Set in every workload order id (see the module docs).
pub const WORKLOAD_ORDER_ID_BIT: u64 = 1 << 48;

/// Most planned orders and most probes of one client.
pub const ORDERS_MAX: usize = 100_000;
pub const PROBES_MAX: usize = 10_000;

/// The `n`-th order id of workload client `client_index` (see the module docs).
pub fn workload_order_id(client_index: u16, n: u32) -> OrderId {
    OrderId(WORKLOAD_ORDER_ID_BIT | u64::from(client_index) << 32 | u64::from(n))
}

/// One order to place.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedOrder {
    /// When to place it, since the start of the run.
    pub at: Duration,
    pub order_id: OrderId,
    pub part: PartId,
    pub quantity: u32,
    pub axis: AxisName,
    pub target_rad: f64,
}

/// One raw request, sent once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedRequest {
    /// When to send it, since the start of the run.
    pub at: Duration,
    pub method: HttpMethod,
    pub path: String,
    pub body_json: Option<String>,
    /// `None`: no `X-Api-Key` at all.
    pub api_key: Option<String>,
    /// `None`: no `Idempotency-Key`.
    pub idempotency_key: Option<String>,
}

/// Everything `run_http_workload` needs besides the transport and its random stream.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpWorkloadConfig {
    /// This client's name in events (`client-1`).
    pub client: String,
    /// The gateway.
    pub gateway: Endpoint,
    /// The key orders and polls are sent with.
    pub api_key: String,
    pub orders: Vec<PlannedOrder>,
    pub probes: Vec<PlannedRequest>,
    /// Re-sends of one order: attempts including the first, backoff, one deadline per order.
    pub retry: RetryPolicy,
    /// Longest wait for one HTTP answer.
    pub call_timeout: Duration,
    /// Poll each accepted order until it ends; `None`: do not poll.
    pub poll_interval: Option<Duration>,
    /// No poll starts after this time since the start of the run.
    pub poll_until: Duration,
}

impl HttpWorkloadConfig {
    /// Defaults: the gateway at host `gateway`, `GATEWAY_PORT`; no orders and no probes; up to
    /// 10 attempts per order with backoff from 100 ms doubling to 2 s, ±50 % jitter, within
    /// 30 s; 2 s per call (above the gateway's 1 s attempt timeout, so the gateway's 504
    /// arrives before the client gives up on the call); polls every 100 ms until 10 minutes.
    pub fn new(client: impl Into<String>, api_key: impl Into<String>) -> HttpWorkloadConfig {
        HttpWorkloadConfig {
            client: client.into(),
            gateway: Endpoint::new("gateway", GATEWAY_PORT),
            api_key: api_key.into(),
            orders: Vec::new(),
            probes: Vec::new(),
            retry: RetryPolicy {
                attempts_max: 10,
                backoff_initial: Duration::from_millis(100),
                backoff_max: Duration::from_secs(2),
                jitter_ratio: 0.5,
                deadline: Duration::from_secs(30),
            },
            call_timeout: Duration::from_secs(2),
            poll_interval: Some(Duration::from_millis(100)),
            poll_until: Duration::from_secs(600),
        }
    }

    /// Panics on a configuration that cannot work.
    pub fn validate(&self) {
        assert!(!self.client.is_empty(), "client must not be empty");
        assert!(
            self.orders.len() <= ORDERS_MAX && self.probes.len() <= PROBES_MAX,
            "at most {ORDERS_MAX} orders and {PROBES_MAX} probes"
        );
        let mut ids: Vec<OrderId> = self.orders.iter().map(|order| order.order_id).collect();
        ids.sort_unstable();
        assert!(
            ids.windows(2).all(|pair| pair[0] != pair[1]),
            "planned order ids must be distinct"
        );
        self.retry.validate();
        assert!(
            !self.call_timeout.is_zero(),
            "call_timeout must be positive"
        );
        assert!(
            self.poll_interval
                .is_none_or(|interval| !interval.is_zero()),
            "poll_interval must be positive"
        );
    }
}

/// How placing one order ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// 202; `duplicate`: the orders service had it already (an earlier attempt got through).
    Accepted { duplicate: bool },
    /// A final answer other than 202 (400, 401, 403, 404, 409, 500, ...).
    Refused { status: u16 },
    /// Retries ran out (`attempts_exhausted`, `deadline_reached`, ...) without a final answer.
    GivenUp { reason: &'static str },
}

/// One order's story.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderReport {
    pub order_id: OrderId,
    pub placement: Placement,
    /// Attempts made to place it.
    pub attempts: u32,
    /// The terminal phase seen by polling (`completed`, `compensated`), if any.
    pub phase: Option<String>,
}

/// One probe's answer: its status, or the error kind when none came.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeReport {
    pub method: HttpMethod,
    pub path: String,
    pub answer: Result<u16, &'static str>,
}

/// What a run did, in plan order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpWorkloadReport {
    pub orders: Vec<OrderReport>,
    pub probes: Vec<ProbeReport>,
}

impl HttpWorkloadReport {
    fn count(&self, select: impl Fn(&OrderReport) -> bool) -> usize {
        self.orders.iter().filter(|order| select(order)).count()
    }

    /// Orders answered 202 (duplicates included).
    pub fn accepted(&self) -> usize {
        self.count(|order| matches!(order.placement, Placement::Accepted { .. }))
    }

    /// Orders whose 202 said `duplicate`.
    pub fn duplicates(&self) -> usize {
        self.count(|order| order.placement == Placement::Accepted { duplicate: true })
    }

    /// Orders answered with a final status other than 202.
    pub fn refused(&self) -> usize {
        self.count(|order| matches!(order.placement, Placement::Refused { .. }))
    }

    /// Orders whose retries ran out.
    pub fn given_up(&self) -> usize {
        self.count(|order| matches!(order.placement, Placement::GivenUp { .. }))
    }

    /// Accepted orders seen in phase `phase`.
    pub fn in_phase(&self, phase: &str) -> usize {
        self.count(|order| order.phase.as_deref() == Some(phase))
    }

    /// Accepted orders not seen in a terminal phase (not polled, or polling ended first).
    pub fn unfinished(&self) -> usize {
        self.count(|order| {
            matches!(order.placement, Placement::Accepted { .. }) && order.phase.is_none()
        })
    }
}

/// Runs the workload until every order is placed or given up (and polled, if asked) and every
/// probe answered. Panics on an invalid configuration.
pub async fn run_http_workload<T: Transport>(
    transport: T,
    config: HttpWorkloadConfig,
    rng: ChaCha8Rng,
) -> HttpWorkloadReport {
    config.validate();
    let run = Run {
        transport,
        config,
        rng: RefCell::new(rng),
        start: Instant::now(),
    };
    let run = &run;
    let mut tasks: FuturesUnordered<LocalBoxFuture<'_, Done>> = FuturesUnordered::new();
    for (index, order) in run.config.orders.iter().enumerate() {
        tasks.push(Box::pin(async move {
            Done::Order(index, run.order(order).await)
        }));
    }
    for (index, probe) in run.config.probes.iter().enumerate() {
        tasks.push(Box::pin(async move {
            Done::Probe(index, run.probe(probe).await)
        }));
    }
    let mut orders = vec![None; run.config.orders.len()];
    let mut probes = vec![None; run.config.probes.len()];
    while let Some(done) = tasks.next().await {
        match done {
            Done::Order(index, report) => orders[index] = Some(report),
            Done::Probe(index, report) => probes[index] = Some(report),
        }
    }
    let report = HttpWorkloadReport {
        orders: orders
            .into_iter()
            .map(|o| o.expect("every order ran"))
            .collect(),
        probes: probes
            .into_iter()
            .map(|p| p.expect("every probe ran"))
            .collect(),
    };
    tracing::info!(
        event = "http_workload_finished",
        client = run.config.client.as_str(),
        orders = report.orders.len(),
        accepted = report.accepted(),
        duplicates = report.duplicates(),
        refused = report.refused(),
        given_up = report.given_up(),
        completed = report.in_phase("completed"),
        compensated = report.in_phase("compensated"),
        unfinished = report.unfinished(),
        probes = report.probes.len(),
    );
    report
}

enum Done {
    Order(usize, OrderReport),
    Probe(usize, ProbeReport),
}

/// What every order and probe of one run shares.
struct Run<T: Transport> {
    transport: T,
    config: HttpWorkloadConfig,
    rng: RefCell<ChaCha8Rng>,
    start: Instant,
}

impl<T: Transport> Run<T> {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn client(&self) -> &str {
        &self.config.client
    }

    async fn send(&self, call: &HttpCall, timeout: Duration) -> Result<HttpReply, HttpCallError> {
        let gateway = &self.config.gateway;
        http_call(&self.transport, &gateway.host, gateway.port, call, timeout).await
    }

    async fn order(&self, order: &PlannedOrder) -> OrderReport {
        tokio::time::sleep_until(self.start + order.at).await;
        let id = order.order_id.0;
        let body = serde_json::json!({
            "order_id": id,
            "part": order.part.as_str(),
            "quantity": order.quantity,
            "axis": order.axis.as_str(),
            "target_rad": order.target_rad,
        });
        let key = format!("order-{id}");
        let call = HttpCall {
            api_key: Some(self.config.api_key.clone()),
            idempotency_key: Some(key.clone()),
            body_json: Some(body.to_string()),
            ..HttpCall::new(HttpMethod::Post, "/orders")
        };
        let mut schedule = RetrySchedule::new(self.config.retry, self.now());
        let placement = loop {
            let attempt = match schedule.begin_attempt(self.now()) {
                Ok(attempt) => attempt,
                Err(give_up) => {
                    break Placement::GivenUp {
                        reason: give_up.kind(),
                    };
                }
            };
            tracing::info!(
                event = "order_submitted",
                client = self.client(),
                order = id,
                attempt
            );
            let timeout = self.config.call_timeout.min(schedule.remaining(self.now()));
            let failure = match self.send(&call, timeout).await {
                Ok(reply) => {
                    tracing::info!(
                        event = "order_answered",
                        client = self.client(),
                        order = id,
                        status = reply.status,
                        retry_after_s = reply.retry_after_s,
                    );
                    match judge(&reply) {
                        Ok(placement) => break placement,
                        Err(failure) => failure,
                    }
                }
                Err(error) => {
                    tracing::info!(
                        event = "order_call_failed",
                        client = self.client(),
                        order = id,
                        attempt,
                        error = error.kind(),
                    );
                    Failure {
                        retriable: true,
                        retry_after: None,
                        kind: error.kind(),
                    }
                }
            };
            let now = self.now();
            let decision = {
                let mut rng = self.rng.borrow_mut();
                decide_retry(
                    "http_order",
                    &mut schedule,
                    now,
                    failure,
                    Some(&key),
                    None,
                    &mut *rng,
                )
            };
            match decision {
                Ok(wait) => tokio::time::sleep(wait.delay).await,
                Err(refusal) => {
                    break Placement::GivenUp {
                        reason: refusal.kind(),
                    };
                }
            }
        };
        let attempts = schedule.attempts_made();
        let reason = match &placement {
            Placement::Accepted { .. } => None,
            Placement::Refused { status } => Some(format!("status_{status}")),
            Placement::GivenUp { reason } => Some((*reason).to_owned()),
        };
        if let Some(reason) = reason {
            tracing::info!(
                event = "order_given_up",
                client = self.client(),
                order = id,
                reason = reason.as_str(),
                attempts,
            );
        }
        let phase = match (&placement, self.config.poll_interval) {
            (Placement::Accepted { .. }, Some(interval)) => {
                self.poll(order.order_id, interval).await
            }
            _ => None,
        };
        OrderReport {
            order_id: order.order_id,
            placement,
            attempts,
            phase,
        }
    }

    /// Polls the order until its saga ended (its phase) or `poll_until` passed (`None`).
    async fn poll(&self, order: OrderId, interval: Duration) -> Option<String> {
        let call = HttpCall {
            api_key: Some(self.config.api_key.clone()),
            ..HttpCall::new(HttpMethod::Get, format!("/orders/{order}"))
        };
        loop {
            if self.now() + interval > self.config.poll_until {
                return None;
            }
            tokio::time::sleep(interval).await;
            let Ok(reply) = self.send(&call, self.config.call_timeout).await else {
                continue;
            };
            if reply.status != 200 {
                continue;
            }
            let phase = serde_json::from_str::<serde_json::Value>(&reply.body)
                .ok()
                .and_then(|body| body["phase"].as_str().map(str::to_owned));
            if let Some(phase) =
                phase.filter(|phase| phase == "completed" || phase == "compensated")
            {
                tracing::info!(
                    event = "order_finished",
                    client = self.client(),
                    order = order.0,
                    phase = phase.as_str(),
                );
                return Some(phase);
            }
        }
    }

    async fn probe(&self, probe: &PlannedRequest) -> ProbeReport {
        tokio::time::sleep_until(self.start + probe.at).await;
        let call = HttpCall {
            api_key: probe.api_key.clone(),
            idempotency_key: probe.idempotency_key.clone(),
            body_json: probe.body_json.clone(),
            ..HttpCall::new(probe.method, probe.path.clone())
        };
        let method = probe.method.as_str();
        let answer = match self.send(&call, self.config.call_timeout).await {
            Ok(reply) => {
                // The answer's error code, when its body names one (`axis_leased`, ...).
                let error = serde_json::from_str::<serde_json::Value>(&reply.body)
                    .ok()
                    .and_then(|body| body["error"].as_str().map(str::to_owned));
                tracing::info!(
                    event = "probe_answered",
                    client = self.client(),
                    method,
                    path = probe.path.as_str(),
                    status = reply.status,
                    retry_after_s = reply.retry_after_s,
                    error = error.as_deref(),
                );
                Ok(reply.status)
            }
            Err(error) => {
                tracing::info!(
                    event = "probe_failed",
                    client = self.client(),
                    method,
                    path = probe.path.as_str(),
                    error = error.kind(),
                );
                Err(error.kind())
            }
        };
        ProbeReport {
            method: probe.method,
            path: probe.path.clone(),
            answer,
        }
    }
}

/// A final placement, or the failure to retry (429 and 503 after their `Retry-After`; 502 and
/// 504 after the backoff).
fn judge(reply: &HttpReply) -> Result<Placement, Failure> {
    let retry_after = reply.retry_after_s.map(Duration::from_secs);
    let retriable = |kind| {
        Err(Failure {
            retriable: true,
            retry_after,
            kind,
        })
    };
    match reply.status {
        202 => {
            let duplicate = serde_json::from_str::<serde_json::Value>(&reply.body)
                .ok()
                .and_then(|body| body["duplicate"].as_bool())
                .unwrap_or(false);
            Ok(Placement::Accepted { duplicate })
        }
        429 => retriable("status_429"),
        502 => retriable("status_502"),
        503 => retriable("status_503"),
        504 => retriable("status_504"),
        status => Ok(Placement::Refused { status }),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use rand_core::SeedableRng;

    use super::*;
    use crate::gateway::{ApiKeyConfig, GatewayConfig, Role, UpstreamRequest, UpstreamResponse};
    use crate::registry::test_net::MemoryNet;
    use crate::registry::{
        InstanceSpec, RegistrationConfig, RegistryConfig, run_registration, run_registry,
    };
    use crate::testing::{TraceEvent, record_trace};

    fn reply(status: u16, retry_after_s: Option<u64>, body: &str) -> HttpReply {
        HttpReply {
            status,
            retry_after_s,
            www_authenticate: None,
            body: body.into(),
        }
    }

    #[test]
    fn order_ids_never_meet_the_other_id_spaces() {
        // Goal: the documented id scheme: bit 48 set, client and number recoverable, above
        // every plain-client move id (client ids below 2^16) and below the operator moves'
        // bit 49. Method: the extremes.
        let id = workload_order_id(3, 17).0;
        assert_eq!(id, 1 << 48 | 3 << 32 | 17);
        let highest = workload_order_id(u16::MAX, u32::MAX).0;
        assert!(highest < crate::edge::axes::OPERATOR_MOVE_ID_BIT);
        let plain_client_highest = (u64::from(u16::MAX) << 32) | u64::from(u32::MAX);
        assert!(workload_order_id(0, 0).0 > plain_client_highest);
    }

    #[test]
    fn answers_are_judged_final_or_retriable() {
        // Goal: which answers end an order and which are re-sent, with Retry-After carried.
        // Method: a table of replies.
        assert_eq!(
            judge(&reply(202, None, r#"{"order_id":1,"duplicate":true}"#)),
            Ok(Placement::Accepted { duplicate: true })
        );
        assert_eq!(
            judge(&reply(202, None, "{}")),
            Ok(Placement::Accepted { duplicate: false })
        );
        for status in [400, 401, 403, 404, 409, 500] {
            assert_eq!(
                judge(&reply(status, None, "{}")),
                Ok(Placement::Refused { status })
            );
        }
        let busy = judge(&reply(503, Some(2), "{}")).unwrap_err();
        assert!(busy.retriable);
        assert_eq!(busy.retry_after, Some(Duration::from_secs(2)));
        assert_eq!(
            judge(&reply(429, Some(1), "{}")).unwrap_err().kind,
            "status_429"
        );
        for status in [502, 504] {
            let failure = judge(&reply(status, None, "{}")).unwrap_err();
            assert!(failure.retriable && failure.retry_after.is_none());
        }
    }

    #[test]
    #[should_panic(expected = "distinct")]
    fn a_plan_with_one_order_id_twice_is_refused() {
        // Goal: two planned orders under one id would be one saga; the plan is a bug. Method:
        // validate such a plan.
        let order = PlannedOrder {
            at: Duration::ZERO,
            order_id: workload_order_id(0, 1),
            part: PartId::new("bolt"),
            quantity: 1,
            axis: AxisName::new("x"),
            target_rad: 0.0,
        };
        let mut config = HttpWorkloadConfig::new("client-0", "key");
        config.orders = vec![order.clone(), order];
        config.validate();
    }

    const ORDERS_EDGE: u16 = crate::edge::ORDERS_EDGE_PORT;

    fn order(n: u32, at_ms: u64) -> PlannedOrder {
        PlannedOrder {
            at: Duration::from_millis(at_ms),
            order_id: workload_order_id(1, n),
            part: PartId::new("bolt"),
            quantity: 1,
            axis: AxisName::new("x"),
            target_rad: 0.5,
        }
    }

    /// The fake orders upstream: order 1's first two placements are 503 with `Retry-After: 1`,
    /// then 202; order 2 is 409 (its id was used before); a status read shows `running` once,
    /// then `completed`.
    async fn fake_orders(
        request: UpstreamRequest,
        placements: &Cell<u32>,
        reads: &Cell<u32>,
    ) -> UpstreamResponse {
        let json = |status, body: serde_json::Value| UpstreamResponse::json(status, &body);
        if request.path.starts_with("/orders/") {
            reads.set(reads.get() + 1);
            let phase = if reads.get() == 1 {
                "running"
            } else {
                "completed"
            };
            return json(200, serde_json::json!({ "phase": phase }));
        }
        let body: serde_json::Value = serde_json::from_str(&request.body_json).unwrap();
        if body["order_id"] == workload_order_id(1, 2).0 {
            return UpstreamResponse::error(409, "order_id_reused", "x");
        }
        placements.set(placements.get() + 1);
        if placements.get() <= 2 {
            return UpstreamResponse {
                retry_after_s: Some(1),
                ..UpstreamResponse::error(503, "unavailable", "x")
            };
        }
        json(
            202,
            serde_json::json!({ "order_id": body["order_id"], "duplicate": false }),
        )
    }

    /// Registry, gateway (no retries of its own, so the client's show) and the fake upstream
    /// on the in-memory network and the paused clock; runs one workload and returns its report
    /// and trace.
    async fn run_cell(seed: u64) -> (HttpWorkloadReport, Vec<TraceEvent>) {
        let (trace, _recording) = record_trace();
        let net = MemoryNet::new("registry");
        let registry = run_registry(net.clone(), RegistryConfig::default());
        let (placements, reads) = (Cell::new(0), Cell::new(0));
        let upstream_listener = net.host("orders-1").bind(ORDERS_EDGE).await.unwrap();
        let upstream = crate::rpc::serve(upstream_listener, async |request| {
            fake_orders(request, &placements, &reads).await
        });
        let registration = run_registration(
            net.host("orders-1"),
            RegistrationConfig::new(
                "registry",
                InstanceSpec {
                    service: "orders".into(),
                    instance_id: "orders-1".into(),
                    host: "orders-1".into(),
                    port: ORDERS_EDGE,
                },
            ),
        );
        let mut gateway_config = GatewayConfig::new("registry");
        gateway_config.api_keys = vec![
            ApiKeyConfig {
                key: "op-secret".into(),
                consumer: "alice".into(),
                role: Role::Operator,
            },
            ApiKeyConfig {
                key: "view-secret".into(),
                consumer: "bob".into(),
                role: Role::Viewer,
            },
        ];
        gateway_config.upstream.retry.attempts_max = 1;
        let gateway = crate::gateway::run_gateway(
            net.host("gateway"),
            gateway_config,
            ChaCha8Rng::seed_from_u64(seed),
        );
        let mut config = HttpWorkloadConfig::new("client-1", "op-secret");
        config.orders = vec![order(1, 10), order(2, 20)];
        config.probes = vec![
            PlannedRequest {
                at: Duration::from_millis(30),
                method: HttpMethod::Post,
                path: "/orders".into(),
                body_json: Some("{}".into()),
                api_key: Some("view-secret".into()),
                idempotency_key: None,
            },
            PlannedRequest {
                at: Duration::from_millis(40),
                method: HttpMethod::Get,
                path: "/orders/1".into(),
                body_json: None,
                api_key: None,
                idempotency_key: None,
            },
        ];
        config.poll_until = Duration::from_secs(60);
        let rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
        let workload = run_http_workload(net.host("client-1"), config, rng);
        let report = tokio::select! {
            biased;
            _ = registry => unreachable!("the registry serves forever"),
            () = upstream => unreachable!("the upstream serves forever"),
            _ = registration => unreachable!("registration runs forever"),
            _ = gateway => unreachable!("the gateway serves forever"),
            report = workload => report,
        };
        (report, trace.events())
    }

    #[tokio::test(start_paused = true)]
    async fn orders_are_resent_after_retry_after_polled_to_their_end_and_traced_deterministically()
    {
        // Goal: through a real gateway, an order answered 503 twice is re-sent with the same
        // Idempotency-Key no sooner than its Retry-After and accepted on the third attempt,
        // then polled to `completed`; a 409 is final; probes get their statuses (403 for a
        // viewer posting, 401 without a key); the same seed gives the same trace. Method: the
        // cell on the in-memory network and the paused clock, run twice with one seed.
        let (report, events) = run_cell(1).await;
        assert_eq!(
            report.orders[0],
            OrderReport {
                order_id: workload_order_id(1, 1),
                placement: Placement::Accepted { duplicate: false },
                attempts: 3,
                phase: Some("completed".into()),
            }
        );
        assert_eq!(
            report.orders[1].placement,
            Placement::Refused { status: 409 }
        );
        assert_eq!(
            (report.accepted(), report.refused(), report.given_up()),
            (1, 1, 0)
        );
        assert_eq!((report.in_phase("completed"), report.unfinished()), (1, 0));
        let probes: Vec<_> = report.probes.iter().map(|probe| probe.answer).collect();
        assert_eq!(probes, [Ok(403), Ok(401)]);

        let first = workload_order_id(1, 1).0.to_string();
        let of_first = |name: &str| -> Vec<TraceEvent> {
            events
                .iter()
                .filter(|event| event.name == name && event.field("order") == Some(&first))
                .cloned()
                .collect()
        };
        let attempts: Vec<u64> = of_first("order_submitted")
            .iter()
            .map(|e| e.u64("attempt"))
            .collect();
        assert_eq!(attempts, [1, 2, 3]);
        let statuses: Vec<u64> = of_first("order_answered")
            .iter()
            .map(|e| e.u64("status"))
            .collect();
        assert_eq!(statuses, [503, 503, 202]);
        let waits: Vec<u64> = events
            .iter()
            .filter(|event| {
                event.name == "retry_attempt" && event.field("operation") == Some("http_order")
            })
            .map(|event| event.u64("delay_ms"))
            .collect();
        assert_eq!(waits.len(), 2);
        assert!(
            waits.iter().all(|&ms| ms >= 1000),
            "Retry-After honoured: {waits:?}"
        );
        assert_eq!(
            of_first("order_finished")[0].field("phase"),
            Some("completed")
        );
        let given_up: Vec<_> = events
            .iter()
            .filter(|e| e.name == "order_given_up")
            .collect();
        assert_eq!(given_up.len(), 1);
        assert_eq!(given_up[0].field("reason"), Some("status_409"));
        assert!(
            events
                .iter()
                .filter(|event| event.name == "backend_call")
                .all(|event| event.field("consumer") == Some("alice")),
            "no probe reached the upstream"
        );

        let (_, again) = run_cell(1).await;
        assert_eq!(events, again, "same seed, same trace");
    }
}
