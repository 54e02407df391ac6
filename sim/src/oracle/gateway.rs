//! Gateway oracles: rate limiting (RL1), bulkheads (BH1), authentication and authorisation
//! (GW1), `Retry-After` (GW2). Judged on the gateway's events, its resilience components' and
//! the upstream edge adapters'.
//! - RL1, per (host, consumer) bucket: for any two `rate_admitted` events i ≤ j, the admissions
//!   from i to j number at most `tokens_max + tokens_per_fill · ⌈Δ / fill_interval⌉`, Δ = t_j −
//!   t_i (the bucket held at most `tokens_max` at i and gained at most that many fills by j).
//!   The numbers come from the event. A gateway restart (`gateway_started`) gives new, full
//!   buckets. Pairs more than `ADMISSIONS_CHECKED` admissions apart are not compared (a bound
//!   on the oracle's memory; an over-admitting bucket breaks the bound within `tokens_max + 1`
//!   admissions at one instant, far below it).
//! - BH1, per (host, bulkhead): every `bulkhead_in_flight` has `in_flight ≤ concurrency_max`.
//! - GW1: a request reaching a backend — the edge adapter's `upstream_received`, or the
//!   gateway's own `backend_call` just before it sends — must belong to an authenticated
//!   consumer (not empty, not `-`), known with that role (the gateway's `gateway_consumers`
//!   lists `consumer:role` from its API keys; once one is seen, other consumers are unknown), and
//!   authorised: a viewer only reads (GET).
//! - GW2: every `http_request` answered 429 or 503 carries `retry_after_s`.
//!
//! Planted bugs: `TokenBucketConfig::planted_over_admits` (RL1),
//! `BulkheadConfig::planted_ignores_limit` (BH1), `GatewayConfig::planted_skips_authorisation`
//! (GW1), `GatewayConfig::planted_omits_retry_after` (GW2).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::{FirstViolation, Oracle, Violation};
use crate::trace::TraceEvent;

/// Most recent admissions per bucket that RL1 compares each new one with.
pub const ADMISSIONS_CHECKED: usize = 4096;

/// Every oracle of this family, unconfigured: their parameters come from the events. `pub`
/// rather than `pub(crate)` until `for_scenario` wires them in (a crate-private function nobody
/// calls yet would be dead code).
pub(crate) fn oracles() -> Vec<Box<dyn Oracle>> {
    vec![
        Box::new(RateBounded::default()),
        Box::new(InFlightBounded::default()),
        Box::new(OnlyAuthorised::default()),
        Box::new(RetryAfterPresent::default()),
    ]
}

/// RL1.
#[derive(Default)]
struct RateBounded {
    /// (host, consumer) → times of its latest admissions, oldest first.
    admissions: BTreeMap<(String, String), VecDeque<Duration>>,
    first: FirstViolation,
}

impl Oracle for RateBounded {
    fn id(&self) -> &'static str {
        "RL1"
    }
    fn statement(&self) -> &'static str {
        "admitted ≤ bucket capacity + refill over any span"
    }
    fn on_event(&mut self, e: &TraceEvent) {
        if e.name == "gateway_started" {
            let host = e.host.clone();
            self.admissions.retain(|(h, _), _| *h != host);
            return;
        }
        if e.name != "rate_admitted" {
            return;
        }
        let consumer = e.required("consumer").to_owned();
        let tokens_max = e.required_u64("tokens_max");
        let tokens_per_fill = e.required_u64("tokens_per_fill");
        let fill_interval_ns = u128::from(e.required_u64("fill_interval_us").max(1)) * 1_000;
        let times = self
            .admissions
            .entry((e.host.clone(), consumer.clone()))
            .or_default();
        if times.len() == ADMISSIONS_CHECKED {
            times.pop_front();
        }
        times.push_back(e.t);
        let count = times.len() as u64;
        // From the oldest kept admission to this one: the first pair that breaks the bound.
        let broken = times.iter().enumerate().find_map(|(i, t_i)| {
            let admitted = count - i as u64;
            let span_ns = (e.t - *t_i).as_nanos();
            let fills = u64::try_from(span_ns.div_ceil(fill_interval_ns)).unwrap_or(u64::MAX);
            let bound = tokens_max.saturating_add(tokens_per_fill.saturating_mul(fills));
            (admitted > bound).then_some((admitted, *t_i, bound))
        });
        if let Some((admitted, since, bound)) = broken {
            let host = e.host.clone();
            self.first.record(e.t, || {
                format!(
                    "{host}: consumer {consumer} admitted {admitted} times from {since:?} to {:?}, bound {bound} ({tokens_max} + {tokens_per_fill} per {} µs)",
                    e.t,
                    fill_interval_ns / 1_000
                )
            });
        }
    }
    fn finish(&mut self, _end: Duration) -> Option<Violation> {
        self.first.take()
    }
}

/// BH1.
#[derive(Default)]
struct InFlightBounded {
    first: FirstViolation,
}

impl Oracle for InFlightBounded {
    fn id(&self) -> &'static str {
        "BH1"
    }
    fn statement(&self) -> &'static str {
        "in-flight ≤ limit"
    }
    fn on_event(&mut self, e: &TraceEvent) {
        if e.name != "bulkhead_in_flight" {
            return;
        }
        let in_flight = e.required_u64("in_flight");
        let limit = e.required_u64("concurrency_max");
        if in_flight > limit {
            let bulkhead = e.required("bulkhead").to_owned();
            let host = e.host.clone();
            self.first.record(e.t, || {
                format!(
                    "{host}: bulkhead {bulkhead} has {in_flight} calls in flight, limit {limit}"
                )
            });
        }
    }
    fn finish(&mut self, _end: Duration) -> Option<Violation> {
        self.first.take()
    }
}

/// GW1.
#[derive(Default)]
struct OnlyAuthorised {
    /// consumer → role, from every gateway's `gateway_consumers`.
    consumers: BTreeMap<String, String>,
    /// A `gateway_consumers` was seen: consumers outside it are unknown.
    consumers_known: bool,
    first: FirstViolation,
}

impl OnlyAuthorised {
    /// What is wrong with a request of `consumer` as `role` using `method`, if anything.
    fn fault(&self, consumer: &str, role: &str, method: &str) -> Option<String> {
        if consumer.is_empty() || consumer == "-" {
            return Some("an unauthenticated request".to_owned());
        }
        if !matches!(role, "operator" | "viewer") {
            return Some(format!("consumer {consumer} with unknown role {role:?}"));
        }
        if self.consumers_known {
            match self.consumers.get(consumer) {
                None => return Some(format!("unknown consumer {consumer}")),
                Some(configured) if configured != role => {
                    return Some(format!(
                        "consumer {consumer} as {role}, but its key gives {configured}"
                    ));
                }
                Some(_) => {}
            }
        }
        if role == "viewer" && !method.eq_ignore_ascii_case("GET") {
            return Some(format!("viewer {consumer}'s {method}"));
        }
        None
    }
}

impl Oracle for OnlyAuthorised {
    fn id(&self) -> &'static str {
        "GW1"
    }
    fn statement(&self) -> &'static str {
        "no unauthenticated or unauthorised request reaches a backend"
    }
    fn on_event(&mut self, e: &TraceEvent) {
        match e.name.as_str() {
            "gateway_consumers" => {
                self.consumers_known = true;
                for entry in e.required("consumers").split(',').filter(|s| !s.is_empty()) {
                    let (consumer, role) = entry
                        .rsplit_once(':')
                        .unwrap_or_else(|| panic!("gateway_consumers entry {entry:?}: {e}"));
                    self.consumers.insert(consumer.to_owned(), role.to_owned());
                }
            }
            "upstream_received" | "backend_call" => {
                let consumer = e.field("consumer").unwrap_or("");
                let role = e.field("role").unwrap_or("");
                let method = e.required("method");
                if let Some(fault) = self.fault(consumer, role, method) {
                    let path = e
                        .field("path")
                        .or_else(|| e.field("route"))
                        .unwrap_or("?")
                        .to_owned();
                    let (host, name) = (e.host.clone(), e.name.clone());
                    self.first.record(e.t, || {
                        format!("{fault} reached a backend: {name} {method} {path} on {host}")
                    });
                }
            }
            _ => {}
        }
    }
    fn finish(&mut self, _end: Duration) -> Option<Violation> {
        self.first.take()
    }
}

/// GW2.
#[derive(Default)]
struct RetryAfterPresent {
    first: FirstViolation,
}

impl Oracle for RetryAfterPresent {
    fn id(&self) -> &'static str {
        "GW2"
    }
    fn statement(&self) -> &'static str {
        "every 429/503 carries Retry-After"
    }
    fn on_event(&mut self, e: &TraceEvent) {
        if e.name != "http_request" {
            return;
        }
        let status = e.required_u64("status");
        if matches!(status, 429 | 503) && e.field_u64("retry_after_s").is_none() {
            let method = e.field("method").unwrap_or("?").to_owned();
            let path = e.field("path").unwrap_or("?").to_owned();
            let host = e.host.clone();
            self.first.record(e.t, || {
                format!("{host}: {method} {path} answered {status} without Retry-After")
            });
        }
    }
    fn finish(&mut self, _end: Duration) -> Option<Violation> {
        self.first.take()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use services::resilience::{
        Bulkhead, BulkheadConfig, BulkheadEntry, RateLimiter, TokenBucketConfig,
    };

    use super::*;
    use crate::trace::test_event as event;
    use crate::trace::{Trace, TraceSubscriber};

    fn judge(id: &str, events: &[TraceEvent]) -> Option<Violation> {
        let mut oracle = oracles()
            .into_iter()
            .find(|o| o.id() == id)
            .expect("known id");
        events.iter().for_each(|e| oracle.on_event(e));
        oracle.finish(Duration::from_secs(100))
    }

    /// An admission from a bucket of 2, one token per 100 ms.
    fn admitted(t: u64, consumer: &str) -> TraceEvent {
        event(
            t,
            "gateway",
            "rate_admitted",
            &[
                ("consumer", consumer),
                ("tokens_left", "0"),
                ("tokens_max", "2"),
                ("tokens_per_fill", "1"),
                ("fill_interval_us", "100000"),
            ],
        )
    }

    fn in_flight(t: u64, count: &str) -> TraceEvent {
        event(
            t,
            "gateway",
            "bulkhead_in_flight",
            &[
                ("bulkhead", "orders"),
                ("in_flight", count),
                ("queued", "0"),
                ("concurrency_max", "2"),
            ],
        )
    }

    fn received(t: u64, consumer: &str, role: &str, method: &str) -> TraceEvent {
        event(
            t,
            "orders-1",
            "upstream_received",
            &[
                ("route", "orders"),
                ("method", method),
                ("path", "/orders"),
                ("consumer", consumer),
                ("role", role),
            ],
        )
    }

    fn answered(t: u64, status: &str, retry_after_s: Option<&str>) -> TraceEvent {
        let mut fields = vec![("method", "GET"), ("path", "/orders"), ("status", status)];
        if let Some(seconds) = retry_after_s {
            fields.push(("retry_after_s", seconds));
        }
        event(t, "gateway", "http_request", &fields)
    }

    fn consumers() -> TraceEvent {
        event(
            0,
            "gateway",
            "gateway_consumers",
            &[("consumers", "alice:operator,bob:viewer")],
        )
    }

    // Goal: RL1, BH1, GW1 and GW2 hold on correct histories and each fails on its own
    // violation, naming it (positive and negative space). Method: hand-written events; for RL1
    // the bound's edges (a burst of capacity, then one per fill; two consumers; a restart).
    #[test]
    fn judges_each_rule() {
        let correct = vec![
            consumers(),
            admitted(0, "alice"),
            admitted(0, "alice"),
            admitted(0, "bob"),
            admitted(100, "alice"),
            admitted(200, "alice"),
            event(250, "gateway", "gateway_started", &[]),
            admitted(250, "alice"),
            admitted(250, "alice"),
            in_flight(1, "1"),
            in_flight(2, "2"),
            received(3, "alice", "operator", "POST"),
            received(4, "bob", "viewer", "GET"),
            event(
                5,
                "gateway",
                "backend_call",
                &[("consumer", "bob"), ("role", "viewer"), ("method", "GET")],
            ),
            answered(6, "429", Some("1")),
            answered(7, "503", Some("2")),
            answered(8, "200", None),
        ];
        for id in ["RL1", "BH1", "GW1", "GW2"] {
            assert_eq!(judge(id, &correct), None, "{id}");
        }

        let burst = vec![
            admitted(0, "alice"),
            admitted(0, "alice"),
            admitted(0, "alice"),
        ];
        let violation = judge("RL1", &burst).expect("a burst above capacity");
        assert!(violation.detail.contains("3 times"), "{}", violation.detail);
        // 2 + 1 fill in 100 ms: a fourth admission within 100 ms is one too many.
        let fast = vec![
            admitted(0, "alice"),
            admitted(0, "alice"),
            admitted(50, "alice"),
            admitted(100, "alice"),
        ];
        let violation = judge("RL1", &fast).expect("faster than the refill");
        assert_eq!(violation.t, Duration::from_millis(100));

        let violation = judge("BH1", &[in_flight(1, "3")]).expect("above the limit");
        assert!(violation.detail.contains("3 calls in flight, limit 2"));

        let gw1: [(TraceEvent, &str); 5] = [
            (received(3, "", "viewer", "GET"), "unauthenticated"),
            (received(3, "-", "operator", "GET"), "unauthenticated"),
            (received(3, "bob", "viewer", "POST"), "viewer bob's POST"),
            (
                received(3, "mallory", "operator", "GET"),
                "unknown consumer",
            ),
            (
                received(3, "bob", "operator", "DELETE"),
                "its key gives viewer",
            ),
        ];
        for (event, expected) in gw1 {
            let violation = judge("GW1", &[consumers(), event]).expect(expected);
            assert!(violation.detail.contains(expected), "{}", violation.detail);
        }

        for status in ["429", "503"] {
            let violation = judge("GW2", &[answered(9, status, None)]).expect(status);
            assert!(violation.detail.contains("without Retry-After"));
            assert_eq!(violation.t, Duration::from_millis(9));
        }
    }

    /// Runs `script` under the simulator's trace subscriber and returns its events.
    fn record(script: impl FnOnce()) -> Vec<TraceEvent> {
        let trace = Arc::new(Mutex::new(Trace::default()));
        tracing::subscriber::with_default(TraceSubscriber::new(trace.clone()), script);
        trace.lock().expect("trace").events().to_vec()
    }

    // Goal: RL1 and BH1 judge the events the real components emit, and catch their planted
    // bugs. Method: a token bucket of 3 asked 6 times at one instant and a bulkhead of 2 entered
    // 3 times, each correct and then with its planted switch on.
    #[test]
    fn catch_the_planted_bucket_and_bulkhead_on_real_traces() {
        let bucket = |planted: bool| {
            record(|| {
                let mut limiter = RateLimiter::new(TokenBucketConfig {
                    tokens_max: 3,
                    tokens_per_fill: 1,
                    fill_interval: Duration::from_millis(100),
                    planted_over_admits: planted,
                });
                for _ in 0..6 {
                    let _ = limiter.try_take(Duration::ZERO, "alice");
                }
            })
        };
        assert_eq!(judge("RL1", &bucket(false)), None);
        let violation = judge("RL1", &bucket(true)).expect("the planted bucket is caught");
        assert!(violation.detail.contains("4 times"), "{}", violation.detail);

        let bulkhead = |planted: bool| {
            record(|| {
                let mut bulkhead = Bulkhead::new(
                    "orders",
                    BulkheadConfig {
                        concurrency_max: 2,
                        queue_max: 1,
                        planted_ignores_limit: planted,
                        ..BulkheadConfig::default()
                    },
                );
                let entries: Vec<BulkheadEntry> = (0..3).map(|_| bulkhead.try_enter()).collect();
                for entry in entries {
                    match entry {
                        BulkheadEntry::Admitted => {
                            bulkhead.leave();
                        }
                        BulkheadEntry::Queued(id) => {
                            bulkhead.abandon(id);
                        }
                        BulkheadEntry::Rejected(_) => {}
                    }
                }
            })
        };
        assert_eq!(judge("BH1", &bulkhead(false)), None);
        let violation = judge("BH1", &bulkhead(true)).expect("the planted bulkhead is caught");
        assert!(violation.detail.contains("3 calls in flight, limit 2"));
    }
}
