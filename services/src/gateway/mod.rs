//! The API gateway: the cell's only public entry, HTTP/1.1 with JSON bodies.
//!
//! Parts: `config` (`GatewayConfig` and its defaults), `protocol` (`UpstreamRequest` /
//! `UpstreamResponse`, the contract with upstream services), `core` (`GatewayCore`, every
//! decision, pure), `http_client` (`http_call`, for workload clients) and, here, the thin async
//! shell: `run_gateway` / `serve_gateway`.
//!
//! Design choices (for ARCHITECTURE.md):
//! - **hyper 1.x over the `Transport` trait.** Each accepted stream is wrapped in
//!   `hyper_util::rt::TokioIo` and served by `hyper::server::conn::http1::Builder::
//!   serve_connection`; the connection futures live in one `FuturesUnordered` polled by the
//!   accept loop (`tokio::select!`, `biased;`), so nothing is spawned and the gateway runs on a
//!   turmoil host's current-thread runtime. hyper's timer is `TokioTimer` (tokio time, simulated
//!   under turmoil; hyper asks the timer for `now`, so its deadlines are on the same clock) and
//!   its `Date` header is off because it is the wall clock (docs/DESIGN.md §3). hyper's server
//!   still refreshes its date cache from `SystemTime::now` on every poll (hyper 1.12,
//!   `proto/h1/dispatch.rs`), but with the header off that value never reaches a byte sent.
//! - **One task, shared state in `Rc`.** Requests on different connections interleave at await
//!   points; the core sits in a `RefCell` borrowed only between awaits, never across one.
//! - **Pipeline** (`core`'s docs): authentication → authorisation → per-consumer token bucket →
//!   route → bulkhead → discovery through the registry client's cache (after the bulkhead's
//!   wait, so the instance called is still passing) → breaker → call with a per-attempt
//!   timeout, retried only with an `Idempotency-Key`, within a budget. A request body is read
//!   only after admission: unauthenticated bytes are never buffered.
//! - **Upstreams speak `rpc`**, not HTTP: the gateway forwards an `UpstreamRequest` to the
//!   instance the registry returned (host and port from its registration) and maps the
//!   `UpstreamResponse` back. One connection per call, as every RPC here.
//! - **Headers**: `X-Api-Key` (authentication), `Idempotency-Key` (retries; forwarded),
//!   `Retry-After` in seconds on every 429 and 503 (oracle GW2), `WWW-Authenticate: Key
//!   realm="servocell"` on 401.
//! - **Limits**: `connections_max` open connections (accepting pauses beyond it),
//!   `header_read_timeout`, `BODY_BYTES_MAX` (413 beyond it), per-upstream bulkheads.
//!
//! Events: `core` (`http_request`, `backend_call`, `breaker_fallback`) and the resilience
//! components; here `gateway_started` (port) and `gateway_connection_error` (error).

pub mod config;
pub mod core;
pub mod http_client;
pub mod protocol;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;

pub use self::config::{
    ApiKeyConfig, BODY_BYTES_MAX, GATEWAY_PORT, GatewayConfig, RouteConfig, UpstreamConfig,
};
pub use self::core::{AUTH_REALM, Admission, AfterAttempt, GatewayCore, Reply, RequestHead};
pub use self::http_client::{HttpCall, HttpCallError, HttpReply, http_call};
pub use self::protocol::{HttpMethod, Role, UpstreamRequest, UpstreamResponse};
use crate::registry::RegistryClient;
use crate::resilience::{RetrySchedule, SharedBulkhead};
use crate::rpc::{ACCEPT_ERROR_BACKOFF, RpcClient};
use crate::transport::{Listener, Transport};

/// Why the gateway could not run.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("gateway: cannot listen on port {port}: {source}")]
    Bind {
        port: u16,
        #[source]
        source: io::Error,
    },
}

/// Binds `config.port` and serves until dropped; returns only if the port cannot be bound.
/// `rng` is the gateway's random stream (retry jitter), derived from the run's seed.
pub async fn run_gateway<T: Transport>(
    transport: T,
    config: GatewayConfig,
    rng: ChaCha8Rng,
) -> Result<Infallible, GatewayError> {
    let listener = transport
        .bind(config.port)
        .await
        .map_err(|source| GatewayError::Bind {
            port: config.port,
            source,
        })?;
    Ok(serve_gateway(transport, listener, config, rng).await)
}

/// Serves on an already bound listener until dropped (tests bind port 0 and read it back).
pub async fn serve_gateway<T: Transport>(
    transport: T,
    mut listener: T::Listener,
    config: GatewayConfig,
    rng: ChaCha8Rng,
) -> Infallible {
    let start = Instant::now();
    let shared = Rc::new(Shared {
        core: RefCell::new(GatewayCore::new(config.clone(), Duration::ZERO)),
        rpc: RpcClient::new(transport.clone()),
        registry: RegistryClient::new(transport, config.discovery.clone()),
        bulkheads: RefCell::new(BTreeMap::new()),
        rng: RefCell::new(rng),
        start,
        header_read_timeout: config.header_read_timeout,
    });
    tracing::info!(event = "gateway_started", port = config.port);
    let mut connections = FuturesUnordered::new();
    loop {
        let accepting = connections.len() < config.connections_max;
        tokio::select! {
            biased;
            Some(()) = connections.next(), if !connections.is_empty() => {}
            accepted = listener.accept(), if accepting => match accepted {
                Ok(stream) => connections.push(serve_connection(shared.clone(), stream).boxed_local()),
                Err(error) => {
                    tracing::warn!(event = "gateway_accept_failed", error = %error);
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            },
            else => unreachable!("connections_max ≥ 1: either a connection runs or we accept"),
        }
    }
}

/// What every request of the gateway's task shares.
struct Shared<T: Transport> {
    core: RefCell<GatewayCore>,
    rpc: RpcClient<T>,
    registry: RegistryClient<T>,
    bulkheads: RefCell<BTreeMap<String, SharedBulkhead>>,
    rng: RefCell<ChaCha8Rng>,
    start: Instant,
    header_read_timeout: Duration,
}

impl<T: Transport> Shared<T> {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn bulkhead(&self, upstream: &str) -> SharedBulkhead {
        let config = self
            .core
            .borrow()
            .config()
            .upstream_config(upstream)
            .bulkhead;
        self.bulkheads
            .borrow_mut()
            .entry(upstream.to_owned())
            .or_insert_with(|| SharedBulkhead::new(upstream, config))
            .clone()
    }
}

async fn serve_connection<T: Transport>(shared: Rc<Shared<T>>, stream: T::Stream) {
    let header_read_timeout = shared.header_read_timeout;
    let service = hyper::service::service_fn(move |request| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(&shared, request).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .auto_date_header(false);
    if let Err(error) = builder
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(event = "gateway_connection_error", error = %error);
    }
}

/// One request, start to end.
async fn handle<T: Transport>(
    shared: &Shared<T>,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let head = request_head(&request);
    let admitted = shared.core.borrow_mut().admit(shared.now(), &head);
    let (admission, reply, attempts) = match admitted {
        Err(reply) => (None, reply, 0),
        Ok(admission) => {
            let (reply, attempts) = match read_body(request.into_body()).await {
                Err(reply) => (reply, 0),
                Ok(body_json) => forward(shared, &head, &admission, body_json).await,
            };
            (Some(admission), reply, attempts)
        }
    };
    shared
        .core
        .borrow()
        .report(&head, admission.as_ref(), &reply, attempts);
    to_response(&reply)
}

fn request_head(request: &Request<Incoming>) -> RequestHead {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    };
    RequestHead {
        method: HttpMethod::parse(request.method().as_str()),
        method_name: request.method().as_str().to_owned(),
        path: request.uri().path().to_owned(),
        api_key: header("x-api-key"),
        idempotency_key: header("idempotency-key"),
    }
}

/// The body as JSON text (`null` when empty), or the error answer.
async fn read_body(body: Incoming) -> Result<String, Reply> {
    let bytes = match Limited::new(body, BODY_BYTES_MAX).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            return Err(Reply::error(
                413,
                "body_too_large",
                &format!("at most {BODY_BYTES_MAX} bytes"),
            ));
        }
        Err(_) => return Err(Reply::error(400, "bad_body", "the body could not be read")),
    };
    if bytes.is_empty() {
        return Ok("null".to_owned());
    }
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(_) => Ok(String::from_utf8(bytes.to_vec()).expect("valid JSON is UTF-8")),
        Err(_) => Err(Reply::error(400, "bad_json", "the body is not JSON")),
    }
}

/// Bulkhead → discovery → (breaker → call → decide)*; returns the answer and the attempts made.
async fn forward<T: Transport>(
    shared: &Shared<T>,
    head: &RequestHead,
    admission: &Admission,
    body_json: String,
) -> (Reply, u32) {
    let upstream = admission.upstream.as_str();
    let bulkhead = shared.bulkhead(upstream);
    let _slot = match bulkhead.enter().await {
        Ok(slot) => slot,
        Err(full) => return (shared.core.borrow().bulkhead_full(full), 0),
    };
    // Discovered after the bulkhead's wait, never before it: an instance found before a wait
    // of up to `queue_wait_max` may have turned critical by the call (oracle SR3).
    let Some(mut instances) = discover(shared, upstream).await else {
        return (shared.core.borrow().no_instance(upstream), 0);
    };
    let upstream_config = *shared.core.borrow().config().upstream_config(upstream);
    let mut schedule = RetrySchedule::new(upstream_config.retry, shared.now());
    let idempotency_key = head.idempotency_key.as_deref();
    let request = UpstreamRequest {
        route: admission.route.clone(),
        method: admission.method,
        path: head.path.clone(),
        body_json,
        idempotency_key: head.idempotency_key.clone(),
        consumer: admission.consumer.clone(),
        role: admission.role,
    };
    loop {
        let now = shared.now();
        let attempt = match schedule.begin_attempt(now) {
            Ok(attempt) => attempt,
            // Only reachable after a retry wait that ended exactly at the deadline.
            Err(_) => {
                let reply = Reply::error(504, "upstream_timeout", "deadline reached");
                return (reply, schedule.attempts_made());
            }
        };
        let (permit, instance) = {
            let mut core = shared.core.borrow_mut();
            let permit = match core.acquire(now, upstream) {
                Ok(permit) => permit,
                Err(reply) => return (reply, schedule.attempts_made()),
            };
            let instance = core
                .pick_instance(upstream, &instances)
                .expect("discovery returned instances");
            core.backend_call(admission, &instance, attempt, idempotency_key);
            (permit, instance)
        };
        let timeout = upstream_config.attempt_timeout.min(schedule.remaining(now));
        let result = shared
            .rpc
            .call::<_, UpstreamResponse>(&instance.host, instance.port, &request, timeout)
            .await;
        if matches!(result, Err(crate::rpc::RpcError::Connect(_))) {
            // The instance is gone: ask the registry afresh next time.
            shared.registry.invalidate(upstream);
        }
        let next = {
            let mut rng = shared.rng.borrow_mut();
            shared.core.borrow_mut().after_attempt(
                shared.now(),
                admission,
                permit,
                result,
                &mut schedule,
                idempotency_key,
                &mut *rng,
            )
        };
        match next {
            AfterAttempt::Reply(reply) => return (reply, schedule.attempts_made()),
            AfterAttempt::Retry(wait) => {
                tokio::time::sleep(wait.delay).await;
                match discover(shared, upstream).await {
                    Some(fresh) => instances = fresh,
                    None => {
                        let reply = shared.core.borrow().no_instance(upstream);
                        return (reply, schedule.attempts_made());
                    }
                }
            }
        }
    }
}

/// Passing instances of `upstream`, or `None` when there are none or the registry is
/// unreachable.
async fn discover<T: Transport>(
    shared: &Shared<T>,
    upstream: &str,
) -> Option<Vec<crate::registry::InstanceSpec>> {
    match shared.registry.discover(upstream).await {
        Ok(instances) if !instances.is_empty() => Some(instances),
        _ => None,
    }
}

fn to_response(reply: &Reply) -> Response<Full<Bytes>> {
    let mut response = Response::builder()
        .status(reply.status)
        .header(hyper::header::CONTENT_TYPE, "application/json");
    if let Some(seconds) = reply.retry_after_s() {
        response = response.header(hyper::header::RETRY_AFTER, seconds);
    }
    if reply.challenge {
        response = response.header(
            hyper::header::WWW_AUTHENTICATE,
            format!("Key realm=\"{AUTH_REALM}\""),
        );
    }
    response
        .body(Full::new(Bytes::from(reply.body_json.clone())))
        .unwrap_or_else(|_| {
            // Only an out-of-range status from an upstream gets here.
            let mut fallback = Response::new(Full::new(Bytes::from_static(
                br#"{"error":"bad_upstream_status"}"#,
            )));
            *fallback.status_mut() = hyper::StatusCode::BAD_GATEWAY;
            fallback
        })
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use rand_core::SeedableRng;

    use super::*;
    use crate::registry::test_net::{Captured, MemoryNet, TraceCapture};
    use crate::registry::{
        InstanceSpec, REGISTRY_PORT, RegistrationConfig, RegistryConfig, run_registration,
        run_registry,
    };

    const ORDERS_PORT: u16 = 7000;

    fn config() -> GatewayConfig {
        let mut config = GatewayConfig::new("registry");
        config.api_keys = vec![ApiKeyConfig {
            key: "op-secret".into(),
            consumer: "alice".into(),
            role: Role::Operator,
        }];
        config.upstream.attempt_timeout = Duration::from_millis(1000);
        config
    }

    /// A cell on the in-memory network and tokio's paused clock (what turmoil gives a host):
    /// registry, a self-registering `orders` upstream that fails its first two calls with 503
    /// and answers `/orders/slow` after 5 s, and the gateway. Runs a fixed client script and
    /// returns the trace and the client's (status, simulated ms) per request.
    async fn run_cell(seed: u64) -> (Vec<Captured>, Vec<(u16, u128)>) {
        let capture = TraceCapture::start();

        let net = MemoryNet::new("registry");
        let registry = run_registry(net.clone(), RegistryConfig::default());
        let calls = Rc::new(Cell::new(0u32));
        let upstream_calls = calls.clone();
        let upstream_listener = net.host("orders-1").bind(ORDERS_PORT).await.unwrap();
        let upstream =
            crate::rpc::serve(upstream_listener, async move |request: UpstreamRequest| {
                upstream_calls.set(upstream_calls.get() + 1);
                if request.path == "/orders/slow" {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                let status = if upstream_calls.get() <= 2 { 503 } else { 200 };
                UpstreamResponse {
                    status,
                    body_json: "{}".into(),
                    retry_after_s: None,
                }
            });
        let registration = run_registration(
            net.host("orders-1"),
            RegistrationConfig {
                registry_port: REGISTRY_PORT,
                ..RegistrationConfig::new(
                    "registry",
                    InstanceSpec {
                        service: "orders".into(),
                        instance_id: "orders-1".into(),
                        host: "orders-1".into(),
                        port: ORDERS_PORT,
                    },
                )
            },
        );
        let gateway = run_gateway(
            net.host("gateway"),
            config(),
            ChaCha8Rng::seed_from_u64(seed),
        );
        let client = async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let transport = net.host("client");
            let mut results = Vec::new();
            let script = [
                HttpCall::new(HttpMethod::Post, "/orders"),
                HttpCall {
                    api_key: Some("op-secret".into()),
                    idempotency_key: Some("order-1".into()),
                    body_json: Some(r#"{"part":"bolt"}"#.into()),
                    ..HttpCall::new(HttpMethod::Post, "/orders")
                },
                HttpCall {
                    api_key: Some("op-secret".into()),
                    ..HttpCall::new(HttpMethod::Get, "/orders/slow")
                },
            ];
            for call in script {
                let sent = Instant::now();
                let reply = http_call(
                    &transport,
                    "gateway",
                    GATEWAY_PORT,
                    &call,
                    Duration::from_secs(30),
                )
                .await
                .unwrap();
                results.push((reply.status, sent.elapsed().as_millis()));
            }
            results
        };
        let results = tokio::select! {
            biased;
            _ = registry => unreachable!(),
            () = upstream => unreachable!(),
            _ = registration => unreachable!(),
            _ = gateway => unreachable!(),
            results = client => results,
        };
        (capture.events(), results)
    }

    #[tokio::test(start_paused = true)]
    async fn gateway_runs_on_simulated_time_and_its_trace_is_a_function_of_the_seed() {
        // Goal: the shell works where turmoil runs it (one task, paused tokio clock, no OS
        // network): 401 without a backend call, a keyed order retried through two 503s to a
        // 200, a slow upstream cut at exactly the 1 s attempt timeout (504); the events carry
        // what GW1, R1 and CB1 need; and the same seed gives the same trace, byte for byte.
        // Method: run the cell twice with seed 1 and once with seed 2 and compare the traces.
        let (events, results) = run_cell(1).await;
        assert_eq!(results[0].0, 401);
        assert_eq!(results[1].0, 200, "two retries carried the order through");
        assert_eq!(
            results[2],
            (504, 1000),
            "cut at the attempt timeout, simulated"
        );

        let named = |name: &str| -> Vec<&Captured> {
            events.iter().filter(|event| event.name == name).collect()
        };
        let backend_calls = named("backend_call");
        assert_eq!(
            backend_calls.len(),
            4,
            "3 attempts for the order, 1 for /slow"
        );
        assert!(
            backend_calls
                .iter()
                .all(|call| call.field("consumer") == Some("alice")),
            "GW1: every backend call belongs to an authenticated consumer"
        );
        let retries = named("retry_attempt");
        assert_eq!(retries.len(), 2);
        assert_eq!(retries[1].field("attempt"), Some("3"));
        let requests = named("http_request");
        let statuses: Vec<Option<&str>> = requests.iter().map(|r| r.field("status")).collect();
        assert_eq!(statuses, [Some("401"), Some("200"), Some("504")]);
        assert_eq!(requests[0].field("consumer"), Some("-"));
        assert!(
            !named("discovery").is_empty(),
            "the upstream was found through the registry"
        );

        let (again, _) = run_cell(1).await;
        assert_eq!(events, again, "same seed, same trace");
        let (other, _) = run_cell(2).await;
        let delays = |trace: &[Captured]| -> Vec<String> {
            trace
                .iter()
                .filter(|event| event.name == "retry_attempt")
                .map(|event| event.field("delay_ms").unwrap().to_owned())
                .collect()
        };
        assert_ne!(
            delays(&events),
            delays(&other),
            "the seed drives the jitter"
        );
    }
}
