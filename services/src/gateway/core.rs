//! The gateway's pure decisions: who is asking, may they, are they within their rate, where does
//! the request go, may the upstream be called, and what to answer or retry after each attempt.
//!
//! Owns `GatewayCore` (API keys, the per-consumer rate limiter, one circuit breaker and one retry
//! budget per upstream, round-robin instance choice), `RequestHead`, `Admission`, `Reply` and
//! `AfterAttempt`. Time is passed in; the random stream too. It does not own HTTP parsing, the
//! bulkheads (they park callers, so they live in the shell as `SharedBulkhead`s), discovery or
//! the calls themselves (the shell in `mod.rs`).
//!
//! Order of the checks (pattern-semantics.md §4): authentication (401 with `WWW-Authenticate`
//! when the key is missing or unknown) → method (405) → authorisation (403 when the role may not
//! use the method) → the consumer's token bucket (429 with `Retry-After`) → route (404) → then,
//! in the shell, discovery (503 with `Retry-After` when no instance passes) → bulkhead (503 with
//! `Retry-After`) → breaker (503 with `Retry-After`: the fallback) → the call with its per-attempt
//! timeout (504) and retries.
//!
//! What counts for the breaker: a transport error, a timeout or a 5xx answer is a failure; any
//! other answer (including a 4xx: the upstream is healthy, the request was not) is a success and
//! funds the retry budget. What may be retried: transient RPC errors and 502/503/504 answers,
//! only for requests with an `Idempotency-Key`, within attempts, deadline and budget
//! (`resilience::decide_retry`), after `Retry-After` if the upstream gave one. Each retry passes
//! through the breaker again; the bulkhead slot is held for the whole request.
//!
//! Events (INFO): `gateway_consumers` (consumers: `consumer:role` comma-separated, from the API
//! keys; never the keys) once at construction, `http_request` (consumer, role, method, route,
//! path, status, retry_after_s, attempts) once per request, `backend_call` (consumer, role, method, route, upstream,
//! instance, attempt, idempotency_key) before each call to an upstream, and the resilience
//! components' own events (`rate_*`, `breaker_*`, `retry_*`, `bulkhead_*`).

use std::collections::BTreeMap;
use std::time::Duration;

use rand_core::Rng;

use super::config::GatewayConfig;
use super::protocol::{HttpMethod, Role, UpstreamResponse};
use crate::registry::InstanceSpec;
use crate::resilience::retry::{Failure, RetrySchedule, Wait};
use crate::resilience::{
    BreakerPermit, BreakerState, BulkheadFull, CallResult, CircuitBreaker, RateLimiter,
    RetryBudget, decide_retry, retry_after_seconds,
};
use crate::rpc::RpcError;

/// The realm of the `WWW-Authenticate: Key realm="servocell"` challenge (Kong's key-auth style).
pub const AUTH_REALM: &str = "servocell";

/// What the shell extracted from an HTTP request's head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// `None` for a method the gateway does not forward.
    pub method: Option<HttpMethod>,
    /// The method as sent, for events.
    pub method_name: String,
    /// Path without the query.
    pub path: String,
    /// `X-Api-Key`.
    pub api_key: Option<String>,
    /// `Idempotency-Key`.
    pub idempotency_key: Option<String>,
}

/// A request that passed authentication, authorisation, rate limiting and routing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admission {
    pub consumer: String,
    pub role: Role,
    pub method: HttpMethod,
    pub route: String,
    /// The registry service name.
    pub upstream: String,
}

/// An HTTP answer the gateway sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body_json: String,
    /// `Retry-After`, rounded up to whole seconds on the wire.
    pub retry_after: Option<Duration>,
    /// Add `WWW-Authenticate: Key realm="servocell"` (401 only).
    pub challenge: bool,
}

impl Reply {
    /// A gateway-generated error with a JSON body `{"error": code, "detail": detail}`.
    pub fn error(status: u16, code: &str, detail: &str) -> Reply {
        Reply {
            status,
            body_json: serde_json::json!({ "error": code, "detail": detail }).to_string(),
            retry_after: None,
            challenge: false,
        }
    }

    fn retry_after(mut self, wait: Duration) -> Reply {
        self.retry_after = Some(wait);
        self
    }

    /// The `Retry-After` header value, seconds.
    pub fn retry_after_s(&self) -> Option<u64> {
        self.retry_after.map(retry_after_seconds)
    }
}

/// What to do after an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AfterAttempt {
    /// Wait, then try again.
    Retry(Wait),
    /// Answer the client.
    Reply(Reply),
}

#[derive(Clone, Debug)]
struct Identity {
    consumer: String,
    role: Role,
}

#[derive(Clone, Debug)]
struct UpstreamGuards {
    breaker: CircuitBreaker,
    budget: RetryBudget,
    round_robin_next: u64,
}

/// The gateway's decisions.
#[derive(Clone, Debug)]
pub struct GatewayCore {
    config: GatewayConfig,
    keys: BTreeMap<String, Identity>,
    limiter: RateLimiter,
    upstreams: BTreeMap<String, UpstreamGuards>,
}

impl GatewayCore {
    /// A core for `config`, starting at `now`. Panics on an invalid configuration.
    pub fn new(config: GatewayConfig, now: Duration) -> GatewayCore {
        config.validate();
        let keys = config
            .api_keys
            .iter()
            .map(|key| {
                (
                    key.key.clone(),
                    Identity {
                        consumer: key.consumer.clone(),
                        role: key.role,
                    },
                )
            })
            .collect();
        let mut upstreams = BTreeMap::new();
        for route in &config.routes {
            let upstream = config.upstream_config(&route.upstream);
            upstreams
                .entry(route.upstream.clone())
                .or_insert_with(|| UpstreamGuards {
                    breaker: CircuitBreaker::new(route.upstream.clone(), upstream.breaker),
                    budget: RetryBudget::new(route.upstream.clone(), upstream.budget, now),
                    round_robin_next: 0,
                });
        }
        // The consumers and their roles, for oracle GW1 (which consumer may reach a backend, and
        // with which role); never the keys themselves.
        let consumers: Vec<String> = config
            .api_keys
            .iter()
            .map(|key| format!("{}:{}", key.consumer, key.role.as_str()))
            .collect();
        tracing::info!(
            event = "gateway_consumers",
            consumers = consumers.join(",").as_str(),
        );
        GatewayCore {
            limiter: RateLimiter::new(config.rate_limit),
            keys,
            upstreams,
            config,
        }
    }

    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    /// The breaker of `upstream` (for inspection).
    pub fn breaker(&self, upstream: &str) -> Option<&CircuitBreaker> {
        self.upstreams.get(upstream).map(|guards| &guards.breaker)
    }

    /// Authentication, method, authorisation, rate limit and route, in that order.
    pub fn admit(&mut self, now: Duration, head: &RequestHead) -> Result<Admission, Reply> {
        let identity = match head.api_key.as_deref() {
            None => {
                return Err(challenge("no API key found in request"));
            }
            Some(key) => match self.keys.get(key) {
                None => return Err(challenge("invalid API key")),
                Some(identity) => identity.clone(),
            },
        };
        let Some(method) = head.method else {
            return Err(Reply::error(
                405,
                "method_not_allowed",
                "GET, POST, PUT or DELETE",
            ));
        };
        // The planted bug (TEST ONLY, oracle GW1) skips this check.
        if !identity.role.permits(method) && !self.config.planted_skips_authorisation {
            return Err(Reply::error(
                403,
                "forbidden",
                &format!(
                    "role {} may not {}",
                    identity.role.as_str(),
                    method.as_str()
                ),
            ));
        }
        if let Err(limited) = self.limiter.try_take(now, &identity.consumer) {
            let reply = Reply::error(429, "rate_limited", "too many requests");
            return Err(self.with_retry_after(reply, limited.retry_after));
        }
        let Some(route) = self
            .config
            .routes
            .iter()
            .find(|route| route.matches(&head.path))
        else {
            return Err(Reply::error(404, "no_route", "no route for this path"));
        };
        Ok(Admission {
            consumer: identity.consumer,
            role: identity.role,
            method,
            route: route.name.clone(),
            upstream: route.upstream.clone(),
        })
    }

    /// The answer when discovery found no passing instance of the upstream.
    pub fn no_instance(&self, upstream: &str) -> Reply {
        let reply = Reply::error(
            503,
            "no_instance",
            &format!("no passing instance of {upstream}"),
        );
        self.with_retry_after(reply, self.config.retry_after_default)
    }

    /// The answer when the upstream's bulkhead is full.
    pub fn bulkhead_full(&self, full: BulkheadFull) -> Reply {
        let reply = Reply::error(503, "bulkhead_full", "too many requests in flight upstream");
        self.with_retry_after(reply, full.retry_after)
    }

    /// `reply` with `Retry-After: wait`, unless the planted bug (TEST ONLY, oracle GW2) drops it.
    fn with_retry_after(&self, reply: Reply, wait: Duration) -> Reply {
        if self.config.planted_omits_retry_after {
            reply
        } else {
            reply.retry_after(wait)
        }
    }

    /// Picks the next instance, round robin over the (id-ordered) list.
    pub fn pick_instance(
        &mut self,
        upstream: &str,
        instances: &[InstanceSpec],
    ) -> Option<InstanceSpec> {
        if instances.is_empty() {
            return None;
        }
        let guards = self.guards(upstream);
        let index = (guards.round_robin_next % instances.len() as u64) as usize;
        guards.round_robin_next = guards.round_robin_next.wrapping_add(1);
        Some(instances[index].clone())
    }

    /// Asks the upstream's breaker for a call; on refusal the fallback: 503 with `Retry-After`.
    ///
    /// Open, the hint is the rest of the open wait. Half-open with every probe out, the breaker
    /// only knows the longest the state may last (`half_open_wait_max`, a minute by default): a
    /// client told that gives up. But the probes are this gateway's own attempts, each admitted
    /// by now and bounded by `attempt_timeout`, so by then they have all ended and the breaker
    /// is closed or open again with a wait it knows: the hint is the shorter of the two.
    pub fn acquire(&mut self, now: Duration, upstream: &str) -> Result<BreakerPermit, Reply> {
        let attempt_timeout = self.config.upstream.attempt_timeout;
        let rejection = match self.guards(upstream).breaker.try_acquire(now) {
            Ok(permit) => return Ok(permit),
            Err(rejection) => rejection,
        };
        let retry_after = match rejection.state {
            BreakerState::HalfOpen => rejection.retry_after.min(attempt_timeout),
            _ => rejection.retry_after,
        };
        tracing::info!(event = "breaker_fallback", breaker = upstream);
        let reply = Reply::error(
            503,
            "circuit_open",
            &format!("{upstream} is failing; calls are suspended"),
        );
        Err(self.with_retry_after(reply, retry_after))
    }

    /// Reports a call to the trace before it is made (oracle GW1 checks each against the
    /// request's authentication).
    pub fn backend_call(
        &self,
        admission: &Admission,
        instance: &InstanceSpec,
        attempt: u32,
        idempotency_key: Option<&str>,
    ) {
        tracing::info!(
            event = "backend_call",
            consumer = admission.consumer.as_str(),
            role = admission.role.as_str(),
            method = admission.method.as_str(),
            route = admission.route.as_str(),
            upstream = admission.upstream.as_str(),
            instance = instance.instance_id.as_str(),
            attempt,
            idempotency_key = idempotency_key.is_some(),
        );
    }

    /// Records an attempt's outcome (breaker, budget) and decides: retry after a wait, or answer.
    #[allow(clippy::too_many_arguments)] // one call site; the pieces are distinct
    pub fn after_attempt(
        &mut self,
        now: Duration,
        admission: &Admission,
        permit: BreakerPermit,
        result: Result<UpstreamResponse, RpcError>,
        schedule: &mut RetrySchedule,
        idempotency_key: Option<&str>,
        rng: &mut impl Rng,
    ) -> AfterAttempt {
        let retry_after_default = self.config.retry_after_default;
        let omit_retry_after = self.config.planted_omits_retry_after;
        if self
            .config
            .upstream_config(&admission.upstream)
            .planted_retries_unsafe
        {
            schedule.plant_unsafe_retries();
        }
        let guards = self.guards(&admission.upstream);
        let call_result = match &result {
            Ok(response) if response.status < 500 => CallResult::Success,
            _ => CallResult::Failure,
        };
        guards.breaker.record(now, permit, call_result);
        if call_result == CallResult::Success {
            guards.budget.deposit(now);
        }
        let failure = match &result {
            Ok(response) if response.status < 500 => None,
            Ok(response) => Some(Failure {
                retriable: matches!(response.status, 502..=504),
                retry_after: response
                    .retry_after_s
                    .map(|seconds| Duration::from_secs(u64::from(seconds))),
                kind: status_kind(response.status),
            }),
            Err(error) => Some(Failure {
                retriable: error.is_transient(),
                retry_after: None,
                kind: error.kind(),
            }),
        };
        if let Some(failure) = failure {
            let decision = decide_retry(
                &admission.upstream,
                schedule,
                now,
                failure,
                idempotency_key,
                Some(&mut guards.budget),
                rng,
            );
            if let Ok(wait) = decision {
                return AfterAttempt::Retry(wait);
            }
        }
        AfterAttempt::Reply(match result {
            Ok(response) => {
                let retry_after = match response.status {
                    // The planted bug (TEST ONLY, oracle GW2) passes the answer on without one.
                    429 | 503 if omit_retry_after => None,
                    429 | 503 => Some(
                        response
                            .retry_after_s
                            .map_or(retry_after_default, |seconds| {
                                Duration::from_secs(u64::from(seconds))
                            }),
                    ),
                    _ => None,
                };
                Reply {
                    status: response.status,
                    body_json: response.body_json,
                    retry_after,
                    challenge: false,
                }
            }
            Err(RpcError::Timeout | RpcError::DeadlineExceeded) => Reply::error(
                504,
                "upstream_timeout",
                &format!("{} did not answer in time", admission.upstream),
            ),
            Err(error) => Reply::error(
                502,
                "upstream_unavailable",
                &format!("{}: {}", admission.upstream, error.kind()),
            ),
        })
    }

    /// Reports the answer to one request.
    pub fn report(
        &self,
        head: &RequestHead,
        admission: Option<&Admission>,
        reply: &Reply,
        attempts: u32,
    ) {
        tracing::info!(
            event = "http_request",
            consumer = admission.map_or("-", |admission| admission.consumer.as_str()),
            role = admission.map_or("-", |admission| admission.role.as_str()),
            method = head.method_name.as_str(),
            route = admission.map_or("-", |admission| admission.route.as_str()),
            path = head.path.as_str(),
            status = reply.status,
            retry_after_s = reply.retry_after_s(),
            attempts,
        );
    }

    fn guards(&mut self, upstream: &str) -> &mut UpstreamGuards {
        self.upstreams
            .get_mut(upstream)
            .expect("every upstream comes from a configured route")
    }
}

fn challenge(detail: &str) -> Reply {
    Reply {
        challenge: true,
        ..Reply::error(401, "unauthorized", detail)
    }
}

fn status_kind(status: u16) -> &'static str {
    match status {
        500 => "status_500",
        502 => "status_502",
        503 => "status_503",
        504 => "status_504",
        _ => "status_5xx",
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use rand_chacha::ChaCha8Rng;
    use rand_core::SeedableRng;

    use super::*;
    use crate::gateway::config::ApiKeyConfig;
    use crate::resilience::{BreakerConfig, RetryPolicy, TokenBucketConfig};

    const MS: Duration = Duration::from_millis(1);

    fn config() -> GatewayConfig {
        let mut config = GatewayConfig::new("registry");
        config.api_keys = vec![
            ApiKeyConfig {
                key: "op-key".into(),
                consumer: "alice".into(),
                role: Role::Operator,
            },
            ApiKeyConfig {
                key: "view-key".into(),
                consumer: "bob".into(),
                role: Role::Viewer,
            },
        ];
        config.rate_limit = TokenBucketConfig {
            tokens_max: 2,
            tokens_per_fill: 1,
            fill_interval: 1000 * MS,
            planted_over_admits: false,
        };
        config.upstream.breaker = BreakerConfig {
            calls_min: 2,
            window_size_calls: 2,
            wait_in_open: 5000 * MS,
            half_open_calls_permitted: 1,
            ..BreakerConfig::default()
        };
        config.upstream.retry = RetryPolicy {
            attempts_max: 3,
            backoff_initial: 10 * MS,
            backoff_max: 100 * MS,
            jitter_ratio: 0.5,
            deadline: 2000 * MS,
        };
        config
    }

    fn head(method: &str, path: &str, key: Option<&str>) -> RequestHead {
        RequestHead {
            method: HttpMethod::parse(method),
            method_name: method.into(),
            path: path.into(),
            api_key: key.map(str::to_owned),
            idempotency_key: None,
        }
    }

    /// One row of the admission table: (method, path, key) → status (200 = admitted).
    fn check(core: &mut GatewayCore, now: Duration, row: (&str, &str, Option<&str>), status: u16) {
        let (method, path, key) = row;
        let result = core.admit(now, &head(method, path, key));
        let got = match &result {
            Ok(_) => 200,
            Err(reply) => reply.status,
        };
        assert_eq!(got, status, "{method} {path} key {key:?}: {result:?}");
        if let Err(reply) = result {
            assert_eq!(
                reply.challenge,
                status == 401,
                "WWW-Authenticate only on 401"
            );
            assert_eq!(
                reply.retry_after.is_some(),
                status == 429,
                "Retry-After on 429 (GW2)"
            );
        }
    }

    #[test]
    fn admission_follows_authentication_authorisation_rate_limit_route() {
        // Goal: the pipeline's order and status codes: 401 before anything (even for an unknown
        // route or method), 403 for a viewer's write, 429 with Retry-After when the consumer's
        // bucket is empty (per consumer), 404 for no route. Method: a table of requests against
        // one core at fixed times.
        let mut core = GatewayCore::new(config(), Duration::ZERO);
        let t = Duration::ZERO;
        check(&mut core, t, ("POST", "/orders", None), 401);
        check(&mut core, t, ("GET", "/nowhere", Some("stolen")), 401);
        check(&mut core, t, ("PATCH", "/orders", None), 401);
        check(&mut core, t, ("PATCH", "/orders", Some("op-key")), 405);
        check(&mut core, t, ("POST", "/orders", Some("view-key")), 403);
        check(&mut core, t, ("DELETE", "/axes/x", Some("view-key")), 403);
        check(
            &mut core,
            t,
            ("GET", "/inventory/bolt", Some("view-key")),
            200,
        );
        check(&mut core, t, ("POST", "/axes/x/move", Some("op-key")), 200);
        check(&mut core, t, ("GET", "/orders/1", Some("op-key")), 200);
        check(&mut core, t, ("GET", "/orders/2", Some("op-key")), 429);
        // The limit comes before routing: an unroutable request still costs a token.
        check(&mut core, t, ("GET", "/nowhere", Some("view-key")), 404);
        check(&mut core, t, ("GET", "/orders", Some("view-key")), 429);
        check(
            &mut core,
            1000 * MS,
            ("GET", "/ordersX", Some("op-key")),
            404,
        );
        check(
            &mut core,
            1000 * MS,
            ("GET", "/orders", Some("op-key")),
            429,
        );
    }

    #[test]
    fn the_planted_gateway_forwards_forbidden_requests_and_drops_retry_after() {
        // Goal: the TEST ONLY switches really break GW1 and GW2, and the consumers' roles are
        // in the trace for GW1. Method: with `planted_skips_authorisation` a viewer's POST is
        // admitted (a correct core answers 403); with `planted_omits_retry_after` the 429, the
        // no-instance 503 and the breaker's fallback 503 carry no Retry-After.
        let (trace, _guard) = crate::testing::record_trace();
        let mut correct = GatewayCore::new(config(), Duration::ZERO);
        check(
            &mut correct,
            Duration::ZERO,
            ("POST", "/orders", Some("view-key")),
            403,
        );
        let consumers = trace.named("gateway_consumers").pop().expect("traced");
        assert_eq!(
            consumers.field("consumers"),
            Some("alice:operator,bob:viewer")
        );
        let mut planted = GatewayCore::new(
            GatewayConfig {
                planted_skips_authorisation: true,
                planted_omits_retry_after: true,
                ..config()
            },
            Duration::ZERO,
        );
        let admitted = planted
            .admit(Duration::ZERO, &head("POST", "/orders", Some("view-key")))
            .expect("the planted bug forwards a viewer's write");
        assert_eq!(
            (admitted.role, admitted.method),
            (Role::Viewer, HttpMethod::Post)
        );
        planted
            .admit(Duration::ZERO, &head("GET", "/orders", Some("view-key")))
            .expect("second token");
        let limited = planted
            .admit(Duration::ZERO, &head("GET", "/orders", Some("view-key")))
            .unwrap_err();
        assert_eq!((limited.status, limited.retry_after), (429, None));
        let no_instance = planted.no_instance("orders");
        assert_eq!((no_instance.status, no_instance.retry_after), (503, None));
        let admission = admission(&mut planted);
        for status in [409, 500] {
            let mut schedule = RetrySchedule::new(planted.config().upstream.retry, Duration::ZERO);
            attempt(
                &mut planted,
                Duration::ZERO,
                &admission,
                &mut schedule,
                None,
                respond(status),
            );
        }
        let fallback = planted.acquire(1000 * MS, "orders").unwrap_err();
        assert_eq!((fallback.status, fallback.retry_after), (503, None));
    }

    #[test]
    fn the_planted_upstream_retries_keyless_requests() {
        // Goal: the TEST ONLY `UpstreamConfig::planted_retries_unsafe` really breaks R3 at the
        // gateway. Method: a 503 without an Idempotency-Key and a 500 with one are retried
        // (a correct gateway answers both at once, see the test above).
        for (key, status) in [(None, 503), (Some("k"), 500)] {
            let mut core = GatewayCore::new(
                GatewayConfig {
                    upstream: crate::gateway::UpstreamConfig {
                        planted_retries_unsafe: true,
                        ..config().upstream
                    },
                    ..config()
                },
                Duration::ZERO,
            );
            let admission = admission(&mut core);
            let mut schedule = RetrySchedule::new(core.config().upstream.retry, Duration::ZERO);
            let next = attempt(
                &mut core,
                Duration::ZERO,
                &admission,
                &mut schedule,
                key,
                respond(status),
            );
            assert!(
                matches!(next, AfterAttempt::Retry(_)),
                "key {key:?}, {status}: {next:?}"
            );
        }
    }

    #[test]
    fn routes_map_to_their_upstreams() {
        // Goal: prefixes match whole path segments only. Method: admit several paths.
        let mut core = GatewayCore::new(config(), Duration::ZERO);
        let admitted = core
            .admit(Duration::ZERO, &head("GET", "/axes/x", Some("op-key")))
            .unwrap();
        assert_eq!(
            (admitted.route.as_str(), admitted.upstream.as_str()),
            ("axes", "motion")
        );
        let admitted = core
            .admit(Duration::ZERO, &head("GET", "/inventory", Some("view-key")))
            .unwrap();
        assert_eq!(admitted.upstream, "inventory");
    }

    fn admission(core: &mut GatewayCore) -> Admission {
        core.admit(Duration::ZERO, &head("POST", "/orders", Some("op-key")))
            .unwrap()
    }

    fn respond(status: u16) -> Result<UpstreamResponse, RpcError> {
        Ok(UpstreamResponse {
            status,
            body_json: "{}".into(),
            retry_after_s: None,
        })
    }

    fn attempt(
        core: &mut GatewayCore,
        now: Duration,
        admission: &Admission,
        schedule: &mut RetrySchedule,
        key: Option<&str>,
        result: Result<UpstreamResponse, RpcError>,
    ) -> AfterAttempt {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        schedule.begin_attempt(now).unwrap();
        let permit = core.acquire(now, &admission.upstream).unwrap();
        core.after_attempt(now, admission, permit, result, schedule, key, &mut rng)
    }

    /// Idempotency key, the attempt's result, the status answered (`None`: retried).
    type Case = (
        Option<&'static str>,
        Result<UpstreamResponse, RpcError>,
        Option<u16>,
    );

    #[test]
    fn retries_only_keyed_requests_on_retriable_failures() {
        // Goal: R3 at the gateway: a 503 is retried with an Idempotency-Key, answered without
        // one; a 500 and a 4xx are never retried; a timeout becomes 504, a refused connection
        // 502. Method: one attempt per case on fresh cores (the breaker stays closed).
        let cases: Vec<Case> = vec![
            (Some("k"), respond(503), None),
            (None, respond(503), Some(503)),
            (Some("k"), respond(500), Some(500)),
            (Some("k"), respond(409), Some(409)),
            (None, Err(RpcError::Timeout), Some(504)),
            (
                None,
                Err(RpcError::Connect(io::Error::from(
                    io::ErrorKind::ConnectionRefused,
                ))),
                Some(502),
            ),
            (Some("k"), Err(RpcError::Remote("bug".into())), Some(502)),
        ];
        for (key, result, expected) in cases {
            let mut core = GatewayCore::new(config(), Duration::ZERO);
            let admission = admission(&mut core);
            let mut schedule = RetrySchedule::new(core.config().upstream.retry, Duration::ZERO);
            let next = attempt(
                &mut core,
                Duration::ZERO,
                &admission,
                &mut schedule,
                key,
                result,
            );
            match (next, expected) {
                (AfterAttempt::Retry(_), None) => {}
                (AfterAttempt::Reply(reply), Some(status)) => {
                    assert_eq!(reply.status, status);
                    assert_eq!(
                        reply.retry_after.is_some(),
                        status == 503,
                        "GW2: a 503 passed through carries Retry-After"
                    );
                }
                (next, expected) => panic!("key {key:?}: {next:?}, expected {expected:?}"),
            }
        }
    }

    /// A core whose `orders` breaker a 409 and a 500 at 0 s opened (calls_min 2, window 2:
    /// 50 % ≥ 50 %; the 4xx counts as a success).
    fn opened_breaker() -> GatewayCore {
        let mut core = GatewayCore::new(config(), Duration::ZERO);
        let admission = admission(&mut core);
        for status in [409, 500] {
            let mut schedule = RetrySchedule::new(core.config().upstream.retry, Duration::ZERO);
            attempt(
                &mut core,
                Duration::ZERO,
                &admission,
                &mut schedule,
                None,
                respond(status),
            );
        }
        core
    }

    #[test]
    fn failures_open_the_breaker_and_its_fallback_is_a_503_with_retry_after() {
        // Goal: upstream failures (5xx) open the breaker; then no call is admitted and the
        // fallback answers 503 with Retry-After until the wait is over (CB2, GW2); a 4xx is a
        // success for the breaker. Method: calls_min 2, window 2: a 409 and a 500 are 50 % ≥
        // 50 % and open it; acquire at 1 s is refused with Retry-After 4 s.
        let mut core = opened_breaker();
        let reply = core.acquire(1000 * MS, "orders").unwrap_err();
        assert_eq!(reply.status, 503);
        assert_eq!(reply.retry_after, Some(4000 * MS));
        assert_eq!(reply.retry_after_s(), Some(4));
        assert!(core.acquire(5001 * MS, "orders").is_ok(), "half-open probe");
    }

    #[test]
    fn a_half_open_breaker_with_its_probes_out_hints_at_most_one_attempt_timeout() {
        // Goal: while the half-open probe is out, the fallback's Retry-After is when the probe
        // must have ended (one attempt timeout, 1 s), not the longest half-open may last (the
        // default 60 s, which would make an honouring client give up); open, it stays the rest
        // of the open wait. Method: open the breaker as above, take the one half-open permit at
        // 5.001 s, ask again at 5.2 s.
        let mut core = opened_breaker();
        assert_eq!(
            core.acquire(4000 * MS, "orders").unwrap_err().retry_after,
            Some(1000 * MS),
            "open: the rest of the wait"
        );
        let _probe = core.acquire(5001 * MS, "orders").unwrap();
        let reply = core.acquire(5200 * MS, "orders").unwrap_err();
        assert_eq!(reply.status, 503);
        assert_eq!(core.config().upstream.attempt_timeout, 1000 * MS);
        assert_eq!(reply.retry_after, Some(1000 * MS));
        assert_eq!(reply.retry_after_s(), Some(1));
    }

    #[test]
    fn retries_stop_at_attempts_max_and_answer_the_last_failure() {
        // Goal: R1 through the gateway: three 503s with a key are two retries and then the
        // third 503 is answered, with Retry-After. Method: feed 503 three times.
        let mut core = GatewayCore::new(
            GatewayConfig {
                upstream: crate::gateway::UpstreamConfig {
                    breaker: BreakerConfig::default(),
                    ..config().upstream
                },
                ..config()
            },
            Duration::ZERO,
        );
        let admission = admission(&mut core);
        let mut schedule = RetrySchedule::new(core.config().upstream.retry, Duration::ZERO);
        let mut now = Duration::ZERO;
        for round in 1..=3 {
            match attempt(
                &mut core,
                now,
                &admission,
                &mut schedule,
                Some("k"),
                respond(503),
            ) {
                AfterAttempt::Retry(wait) => {
                    assert!(round < 3);
                    now += wait.delay;
                }
                AfterAttempt::Reply(reply) => {
                    assert_eq!(round, 3);
                    assert_eq!(reply.status, 503);
                    assert_eq!(reply.retry_after_s(), Some(1));
                }
            }
        }
        assert_eq!(schedule.attempts_made(), 3);
    }

    #[test]
    fn instances_are_picked_round_robin() {
        // Goal: load spreads over passing instances deterministically. Method: three picks over
        // two instances.
        let mut core = GatewayCore::new(config(), Duration::ZERO);
        let instance = |id: &str| InstanceSpec {
            service: "orders".into(),
            instance_id: id.into(),
            host: id.into(),
            port: 1,
        };
        let list = [instance("orders-1"), instance("orders-2")];
        let picks: Vec<String> = (0..3)
            .map(|_| core.pick_instance("orders", &list).unwrap().instance_id)
            .collect();
        assert_eq!(picks, ["orders-1", "orders-2", "orders-1"]);
        assert_eq!(core.pick_instance("orders", &[]), None);
    }
}
