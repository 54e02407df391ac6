//! The gateway end to end over real TCP on 127.0.0.1: a registry (`serve_registry`), a fake
//! upstream that registers itself (`run_registration`) and answers `UpstreamRequest`s through
//! `rpc::serve`, the gateway (`serve_gateway`), and hyper's HTTP/1.1 client (`http_call`), all in
//! one current-thread task as on a turmoil host.
//!
//! Each test builds its own small cell on ephemeral ports. They run on wall-clock tokio time
//! (real sockets cannot be paused); nothing asserted depends on timing except the 504 case,
//! whose upstream sleeps four times the gateway's per-attempt timeout.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use services::gateway::{
    ApiKeyConfig, GatewayConfig, HttpCall, HttpMethod, HttpReply, Role, UpstreamRequest,
    UpstreamResponse, http_call, serve_gateway,
};
use services::registry::{
    InstanceSpec, RegistrationConfig, RegistryConfig, run_registration, serve_registry,
};
use services::resilience::{BreakerConfig, BulkheadConfig, RetryPolicy, TokenBucketConfig};
use services::rpc;
use services::transport::{TokioTransport, Transport};
use tokio::sync::Notify;

const HOST: &str = "127.0.0.1";
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How the fake upstream answers.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// 200 with the request echoed.
    Echo,
    /// This status, with no body of interest.
    Status(u16),
    /// Waits for `Fake::release` before answering 200.
    Hold,
    /// Sleeps this long, then 200.
    SleepMs(u64),
}

/// A fake upstream: answers by `mode`, remembers what reached it.
#[derive(Debug)]
struct Fake {
    mode: Cell<Mode>,
    seen: RefCell<Vec<UpstreamRequest>>,
    release: Notify,
}

impl Fake {
    fn new() -> Rc<Fake> {
        Rc::new(Fake {
            mode: Cell::new(Mode::Echo),
            seen: RefCell::new(Vec::new()),
            release: Notify::new(),
        })
    }

    fn calls(&self) -> usize {
        self.seen.borrow().len()
    }
}

async fn answer(fake: &Fake, request: UpstreamRequest) -> UpstreamResponse {
    let echo = serde_json::json!({
        "route": request.route,
        "path": request.path,
        "consumer": request.consumer,
        "body": serde_json::from_str::<serde_json::Value>(&request.body_json).unwrap(),
    });
    fake.seen.borrow_mut().push(request);
    let ok = UpstreamResponse {
        status: 200,
        body_json: echo.to_string(),
        retry_after_s: None,
    };
    match fake.mode.get() {
        Mode::Echo => ok,
        Mode::Status(status) => UpstreamResponse {
            status,
            body_json: "{}".into(),
            retry_after_s: None,
        },
        Mode::Hold => {
            fake.release.notified().await;
            ok
        }
        Mode::SleepMs(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            ok
        }
    }
}

fn gateway_config(registry_port: u16) -> GatewayConfig {
    let mut config = GatewayConfig::new(HOST);
    config.discovery.registry_port = registry_port;
    config.api_keys = vec![
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
    // Generous unless a test is about the limit.
    config.rate_limit = TokenBucketConfig {
        tokens_max: 100,
        tokens_per_fill: 1,
        fill_interval: Duration::from_secs(3600),
        planted_over_admits: false,
    };
    config.upstream.attempt_timeout = Duration::from_millis(100);
    config.upstream.retry = RetryPolicy {
        attempts_max: 3,
        backoff_initial: Duration::from_millis(5),
        backoff_max: Duration::from_millis(20),
        jitter_ratio: 0.5,
        deadline: Duration::from_secs(2),
    };
    config
}

/// Runs `test` against a cell: registry, one fake `orders` upstream registered through
/// `run_registration`, and a gateway built by `configure` from the defaults above.
async fn with_cell<R>(
    configure: impl FnOnce(&mut GatewayConfig),
    test: impl AsyncFnOnce(u16, Rc<Fake>) -> R,
) -> R {
    let transport = TokioTransport::loopback();
    let registry_listener = transport.bind(0).await.unwrap();
    let registry_port = registry_listener.local_port().unwrap();
    let upstream_listener = transport.bind(0).await.unwrap();
    let upstream_port = upstream_listener.local_port().unwrap();
    let gateway_listener = transport.bind(0).await.unwrap();
    let gateway_port = gateway_listener.local_port().unwrap();

    let mut config = gateway_config(registry_port);
    configure(&mut config);
    let fake = Fake::new();
    let registration = RegistrationConfig {
        registry_port,
        ..RegistrationConfig::new(
            HOST,
            InstanceSpec {
                service: "orders".into(),
                instance_id: "orders-1".into(),
                host: HOST.into(),
                port: upstream_port,
            },
        )
    };
    let handler_fake = fake.clone();
    let upstream = rpc::serve(upstream_listener, async move |request| {
        answer(&handler_fake, request).await
    });
    let test = async {
        // The first heartbeat registers at once; give it a moment on a loaded machine.
        tokio::time::sleep(Duration::from_millis(50)).await;
        test(gateway_port, fake.clone()).await
    };
    tokio::select! {
        biased;
        _ = serve_registry::<TokioTransport>(registry_listener, RegistryConfig::default()) => unreachable!(),
        _ = run_registration(transport, registration) => unreachable!(),
        () = upstream => unreachable!(),
        _ = serve_gateway(transport, gateway_listener, config, ChaCha8Rng::seed_from_u64(7)) => unreachable!(),
        output = test => output,
    }
}

async fn send(port: u16, call: HttpCall) -> HttpReply {
    http_call(&TokioTransport::loopback(), HOST, port, &call, CALL_TIMEOUT)
        .await
        .expect("the gateway answers")
}

fn call(method: HttpMethod, path: &str, key: Option<&str>) -> HttpCall {
    HttpCall {
        api_key: key.map(str::to_owned),
        ..HttpCall::new(method, path)
    }
}

#[tokio::test]
async fn gateway_authenticates_authorises_and_forwards() {
    // Goal: GW1 and the happy path over real HTTP: 401 (with WWW-Authenticate) for a missing or
    // unknown key, 403 for a viewer's write, neither reaching the upstream; a viewer's read and
    // an operator's order are forwarded with consumer, role, body and Idempotency-Key; 404 for no
    // route, 400 for a body that is not JSON, 503 with Retry-After for a route whose upstream has
    // no passing instance. Method: one cell, a table of requests, then what the upstream saw.
    with_cell(
        |_| {},
        async |port, fake| {
            let missing = send(port, call(HttpMethod::Post, "/orders", None)).await;
            assert_eq!(missing.status, 401);
            assert_eq!(
                missing.www_authenticate.as_deref(),
                Some("Key realm=\"servocell\"")
            );
            let unknown = send(port, call(HttpMethod::Get, "/orders", Some("guess"))).await;
            assert_eq!(unknown.status, 401);
            let forbidden =
                send(port, call(HttpMethod::Post, "/orders", Some("view-secret"))).await;
            assert_eq!(forbidden.status, 403);
            assert_eq!(
                fake.calls(),
                0,
                "GW1: nothing unauthenticated or forbidden got through"
            );

            let read = send(
                port,
                call(HttpMethod::Get, "/orders/7", Some("view-secret")),
            )
            .await;
            assert_eq!(read.status, 200, "{read:?}");
            let echoed: serde_json::Value = serde_json::from_str(&read.body).unwrap();
            assert_eq!(echoed["path"], "/orders/7");
            assert_eq!(echoed["consumer"], "bob");

            let order = HttpCall {
                idempotency_key: Some("order-1".into()),
                body_json: Some(r#"{"part":"bolt","axis":"x","target_rad":1.5}"#.into()),
                ..call(HttpMethod::Post, "/orders", Some("op-secret"))
            };
            let placed = send(port, order).await;
            assert_eq!(placed.status, 200, "{placed:?}");
            {
                let seen = fake.seen.borrow();
                assert_eq!(seen.len(), 2);
                let forwarded = &seen[1];
                assert_eq!(forwarded.route, "orders");
                assert_eq!(forwarded.method, HttpMethod::Post);
                assert_eq!(forwarded.consumer, "alice");
                assert_eq!(forwarded.role, Role::Operator);
                assert_eq!(forwarded.idempotency_key.as_deref(), Some("order-1"));
                let body: serde_json::Value = serde_json::from_str(&forwarded.body_json).unwrap();
                assert_eq!(body["part"], "bolt");
            }

            let nowhere = send(port, call(HttpMethod::Get, "/elsewhere", Some("op-secret"))).await;
            assert_eq!(nowhere.status, 404);
            let garbage = HttpCall {
                body_json: Some("{not json".into()),
                ..call(HttpMethod::Post, "/orders", Some("op-secret"))
            };
            assert_eq!(send(port, garbage).await.status, 400);
            let no_instance =
                send(port, call(HttpMethod::Get, "/inventory", Some("op-secret"))).await;
            assert_eq!(no_instance.status, 503);
            assert_eq!(no_instance.retry_after_s, Some(1), "GW2");
            assert_eq!(fake.calls(), 2);
        },
    )
    .await;
}

#[tokio::test]
async fn gateway_rate_limits_each_consumer_with_retry_after() {
    // Goal: the per-consumer token bucket over HTTP: a consumer past its burst gets 429 with
    // Retry-After (GW2) and is not forwarded; another consumer is unaffected. Method: burst of 2
    // with a fill an hour away; alice sends 3, bob 1.
    with_cell(
        |config| {
            config.rate_limit = TokenBucketConfig {
                tokens_max: 2,
                tokens_per_fill: 1,
                fill_interval: Duration::from_secs(3600),
                planted_over_admits: false,
            };
        },
        async |port, fake| {
            for _ in 0..2 {
                let ok = send(port, call(HttpMethod::Get, "/orders", Some("op-secret"))).await;
                assert_eq!(ok.status, 200);
            }
            let limited = send(port, call(HttpMethod::Get, "/orders", Some("op-secret"))).await;
            assert_eq!(limited.status, 429);
            assert_eq!(limited.retry_after_s, Some(3600));
            let other = send(port, call(HttpMethod::Get, "/orders", Some("view-secret"))).await;
            assert_eq!(other.status, 200);
            assert_eq!(fake.calls(), 3);
        },
    )
    .await;
}

#[tokio::test]
async fn gateway_sheds_load_with_its_bulkhead_and_breaker() {
    // Goal: 503 with Retry-After from the bulkhead (one call in flight, no queue) while the
    // upstream is busy, and from the open breaker after upstream failures, neither reaching the
    // upstream (BH1, CB2, GW2). Method: hold the upstream on a request, send a second (refused),
    // release; then two 500s open a breaker with a 3-call window and the third request gets the
    // fallback.
    with_cell(
        |config| {
            config.upstream.bulkhead = BulkheadConfig {
                concurrency_max: 1,
                queue_max: 0,
                queue_wait_max: Duration::from_millis(100),
                retry_after: Duration::from_secs(2),
                planted_ignores_limit: false,
            };
            config.upstream.attempt_timeout = Duration::from_secs(5);
            // The held request's success is in the window too: S F F is 67 % ≥ 50 %.
            config.upstream.breaker = BreakerConfig {
                calls_min: 3,
                window_size_calls: 3,
                wait_in_open: Duration::from_secs(30),
                ..BreakerConfig::default()
            };
        },
        async |port, fake| {
            fake.mode.set(Mode::Hold);
            let held = send(port, call(HttpMethod::Get, "/orders/1", Some("op-secret")));
            let second = async {
                // Wait (bounded) until the first request holds the upstream.
                for _ in 0..500 {
                    if fake.calls() == 1 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                assert_eq!(fake.calls(), 1, "the first request reached the upstream");
                let refused =
                    send(port, call(HttpMethod::Get, "/orders/2", Some("op-secret"))).await;
                fake.release.notify_one();
                refused
            };
            let (held, refused) = futures_util::future::join(held, second).await;
            assert_eq!(held.status, 200);
            assert_eq!(refused.status, 503);
            assert_eq!(refused.retry_after_s, Some(2));
            assert!(refused.body.contains("bulkhead_full"), "{}", refused.body);
            assert_eq!(fake.calls(), 1);

            fake.mode.set(Mode::Status(500));
            for _ in 0..2 {
                let failed = send(port, call(HttpMethod::Get, "/orders", Some("op-secret"))).await;
                assert_eq!(failed.status, 500);
            }
            let open = send(port, call(HttpMethod::Get, "/orders", Some("op-secret"))).await;
            assert_eq!(open.status, 503);
            assert!(open.body.contains("circuit_open"), "{}", open.body);
            assert!(
                open.retry_after_s.is_some_and(|s| (29..=30).contains(&s)),
                "{open:?}"
            );
            assert_eq!(fake.calls(), 3, "CB2: no call while open");
        },
    )
    .await;
}

#[tokio::test]
async fn gateway_retries_only_keyed_requests_and_times_out_slow_upstreams() {
    // Goal: R1/R3 over HTTP: a keyed request failing 503 is tried 3 times (attempts_max) and
    // answered 503 with Retry-After; the same request without a key is tried once; an upstream
    // slower than the per-attempt timeout is answered 504. Method: count what reaches the
    // upstream per request.
    with_cell(
        |_| {},
        async |port, fake| {
            fake.mode.set(Mode::Status(503));
            let keyed = HttpCall {
                idempotency_key: Some("order-9".into()),
                body_json: Some("{}".into()),
                ..call(HttpMethod::Post, "/orders", Some("op-secret"))
            };
            let reply = send(port, keyed).await;
            assert_eq!(reply.status, 503);
            assert_eq!(reply.retry_after_s, Some(1), "GW2");
            assert_eq!(fake.calls(), 3, "R1: three attempts, the first included");
            assert!(
                fake.seen
                    .borrow()
                    .iter()
                    .all(|seen| seen.idempotency_key.as_deref() == Some("order-9")),
                "every retry carries the same key"
            );

            let unkeyed = call(HttpMethod::Post, "/orders", Some("op-secret"));
            assert_eq!(send(port, unkeyed).await.status, 503);
            assert_eq!(fake.calls(), 4, "R3: no retry without an Idempotency-Key");

            fake.mode.set(Mode::SleepMs(400));
            let slow = send(port, call(HttpMethod::Get, "/orders", Some("op-secret"))).await;
            assert_eq!(slow.status, 504, "{slow:?}");
        },
    )
    .await;
}
