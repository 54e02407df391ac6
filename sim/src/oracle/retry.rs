//! Retry oracles (R1–R3), judged on `retry_attempt`: the event every retry loop emits when it
//! decides to try again (`resilience::decide_retry`), carrying the attempt about to be made, the
//! wait, the failure's nature and the policy's numbers.
//! - R1: `attempt` ≤ `attempts_max` (attempts count the first call).
//! - R2: the backoff after failed attempt n = `attempt` − 1 lies in resilience4j's randomised
//!   interval: base = min(`backoff_initial` · 2^(n−1), `backoff_max`), backoff ∈ [base · (1 −
//!   `jitter_ratio`), min(base · (1 + `jitter_ratio`), `backoff_max`)], never below the 1 ms
//!   floor; and the wait (`delay_us`) is never shorter than the backoff. Times are whole
//!   microseconds in the event (truncated), so the bounds allow 1 µs.
//! - R3: no `retry_attempt` with `retriable = false` or `idempotency_key = false`.
//!
//! The planted bug `UpstreamConfig::planted_retries_unsafe` (gateway) /
//! `RetrySchedule::with_planted_unsafe_retries` retries what must not be retried: R3.

use std::time::Duration;

use super::{FirstViolation, Oracle, Violation};
use crate::trace::TraceEvent;

/// The backoff floor of `resilience::retry::BACKOFF_MIN`, in microseconds.
const BACKOFF_MIN_US: f64 = 1_000.0;

/// Every oracle of this family, unconfigured: their parameters come from the events. `pub`
/// rather than `pub(crate)` until `for_scenario` wires them in (a crate-private function nobody
/// calls yet would be dead code).
pub(crate) fn oracles() -> Vec<Box<dyn Oracle>> {
    vec![
        Box::new(RetryOracle::new(Rule::AttemptsBounded)),
        Box::new(RetryOracle::new(Rule::BackoffBounded)),
        Box::new(RetryOracle::new(Rule::OnlySafeRetries)),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    AttemptsBounded,
    BackoffBounded,
    OnlySafeRetries,
}

struct RetryOracle {
    rule: Rule,
    first: FirstViolation,
}

impl RetryOracle {
    fn new(rule: Rule) -> RetryOracle {
        RetryOracle {
            rule,
            first: FirstViolation::default(),
        }
    }
}

fn number(e: &TraceEvent, field: &str) -> f64 {
    e.field_f64(field)
        .unwrap_or_else(|| panic!("retry_attempt without a numeric {field}: {e}"))
}

impl Oracle for RetryOracle {
    fn id(&self) -> &'static str {
        match self.rule {
            Rule::AttemptsBounded => "R1",
            Rule::BackoffBounded => "R2",
            Rule::OnlySafeRetries => "R3",
        }
    }
    fn statement(&self) -> &'static str {
        match self.rule {
            Rule::AttemptsBounded => "attempts ≤ max",
            Rule::BackoffBounded => "backoff within its bounds",
            Rule::OnlySafeRetries => {
                "no retry of a non-retriable error or a request without idempotency key"
            }
        }
    }
    fn on_event(&mut self, e: &TraceEvent) {
        if e.name != "retry_attempt" {
            return;
        }
        let operation = format!("{}/{}", e.host, e.field("operation").unwrap_or("?"));
        let attempt = e
            .field_u64("attempt")
            .unwrap_or_else(|| panic!("retry_attempt without attempt: {e}"));
        match self.rule {
            Rule::AttemptsBounded => {
                let attempts_max = number(e, "attempts_max") as u64;
                if attempt > attempts_max {
                    self.first.record(e.t, || {
                        format!("{operation}: attempt {attempt} of at most {attempts_max}")
                    });
                }
            }
            Rule::BackoffBounded => {
                let failed = attempt.saturating_sub(1).max(1);
                let initial = number(e, "backoff_initial_us");
                let cap = number(e, "backoff_max_us");
                let jitter = number(e, "jitter_ratio");
                let backoff = number(e, "backoff_us");
                let delay = number(e, "delay_us");
                let doublings = i32::try_from((failed - 1).min(31)).expect("small");
                let base = (initial * 2f64.powi(doublings)).min(cap);
                let low = (base * (1.0 - jitter)).max(BACKOFF_MIN_US);
                let high = (base * (1.0 + jitter)).min(cap).max(BACKOFF_MIN_US);
                // Truncated to whole microseconds: the true value is in [backoff, backoff + 1).
                if backoff + 1.0 < low || backoff > high {
                    self.first.record(e.t, || {
                        format!(
                            "{operation}: backoff {backoff} µs after failed attempt {failed}, outside [{low}, {high}] µs"
                        )
                    });
                }
                if delay < backoff {
                    self.first.record(e.t, || {
                        format!(
                            "{operation}: waits {delay} µs, shorter than its backoff {backoff} µs"
                        )
                    });
                }
            }
            Rule::OnlySafeRetries => {
                for (field, what) in [
                    ("retriable", "a non-retriable error"),
                    ("idempotency_key", "a request without idempotency key"),
                ] {
                    match e.field(field) {
                        Some("true") => {}
                        Some("false") => {
                            let error = e.field("error").unwrap_or("?").to_owned();
                            self.first.record(e.t, || {
                                format!(
                                    "{operation}: attempt {attempt} retries {what} (error {error})"
                                )
                            });
                        }
                        _ => panic!("retry_attempt without {field}: {e}"),
                    }
                }
            }
        }
    }
    fn finish(&mut self, _end: Duration) -> Option<Violation> {
        self.first.take()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use rand_chacha::ChaCha8Rng;
    use rand_core::SeedableRng;
    use services::resilience::{Failure, RetryPolicy, RetrySchedule, decide_retry};

    use super::*;
    use crate::trace::{Trace, TraceSubscriber};

    fn judge(id: &str, events: &[TraceEvent]) -> Option<Violation> {
        let mut oracle = oracles()
            .into_iter()
            .find(|o| o.id() == id)
            .expect("known id");
        events.iter().for_each(|e| oracle.on_event(e));
        oracle.finish(Duration::from_secs(100))
    }

    /// A retry of attempt `attempt` with a 10 ms initial backoff, 100 ms cap, ±50 % jitter,
    /// at most 3 attempts; `changes` overrides fields.
    fn retry(t_ms: u64, attempt: &str, changes: &[(&str, &str)]) -> TraceEvent {
        let mut fields: Vec<(String, String)> = [
            ("operation", "orders"),
            ("attempt", attempt),
            ("delay_ms", "12"),
            ("backoff_ms", "12"),
            ("error", "status_503"),
            ("retriable", "true"),
            ("idempotency_key", "true"),
            ("attempts_max", "3"),
            ("delay_us", "12000"),
            ("backoff_us", "12000"),
            ("backoff_initial_us", "10000"),
            ("backoff_max_us", "100000"),
            ("jitter_ratio", "0.5"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        for (key, value) in changes {
            let slot = fields
                .iter_mut()
                .find(|(k, _)| k == key)
                .expect("known field");
            slot.1 = (*value).to_owned();
        }
        TraceEvent {
            t: Duration::from_millis(t_ms),
            host: "gateway".to_owned(),
            name: "retry_attempt".to_owned(),
            fields,
        }
    }

    // Goal: R1–R3 hold on correct retries (both ends of the jitter interval, a Retry-After
    // longer than the backoff) and each fails on its own violation (positive and negative
    // space). Method: hand-written `retry_attempt` events.
    #[test]
    fn judges_each_rule() {
        let correct = vec![
            retry(1, "2", &[("backoff_us", "5000"), ("delay_us", "5000")]),
            // Attempt 3 follows failed attempt 2: base 20 ms, up to 30 ms; Retry-After 1 s.
            retry(2, "3", &[("backoff_us", "30000"), ("delay_us", "1000000")]),
        ];
        for id in ["R1", "R2", "R3"] {
            assert_eq!(judge(id, &correct), None, "{id}");
        }
        let cases: [(&str, TraceEvent, &str); 6] = [
            ("R1", retry(5, "4", &[]), "attempt 4 of at most 3"),
            ("R2", retry(5, "2", &[("backoff_us", "4998")]), "outside"),
            ("R2", retry(5, "3", &[("backoff_us", "30002")]), "outside"),
            ("R2", retry(5, "2", &[("delay_us", "1000")]), "shorter"),
            (
                "R3",
                retry(5, "2", &[("retriable", "false")]),
                "non-retriable",
            ),
            (
                "R3",
                retry(5, "2", &[("idempotency_key", "false")]),
                "without idempotency key",
            ),
        ];
        for (id, event, expected) in cases {
            let violation = judge(id, &[event]).unwrap_or_else(|| panic!("{id} {expected}"));
            assert!(violation.detail.contains(expected), "{}", violation.detail);
            assert_eq!(violation.t, Duration::from_millis(5));
        }
    }

    /// The `retry_attempt` events of `decide_retry` on real failures, recorded by the
    /// simulator's trace subscriber.
    fn record(planted: bool) -> Vec<TraceEvent> {
        let trace = Arc::new(Mutex::new(Trace::default()));
        tracing::subscriber::with_default(TraceSubscriber::new(trace.clone()), || {
            let mut rng = ChaCha8Rng::seed_from_u64(3);
            let policy = RetryPolicy {
                attempts_max: 4,
                ..RetryPolicy::default()
            };
            for (key, retriable) in [(Some("k"), true), (None, true), (Some("k"), false)] {
                let mut schedule = RetrySchedule::new(policy, Duration::ZERO);
                if planted {
                    schedule = schedule.with_planted_unsafe_retries();
                }
                let mut now = Duration::ZERO;
                while schedule.begin_attempt(now).is_ok() {
                    let failure = Failure {
                        retriable,
                        retry_after: None,
                        kind: "status_503",
                    };
                    match decide_retry("op", &mut schedule, now, failure, key, None, &mut rng) {
                        Ok(wait) => now += wait.delay,
                        Err(_) => break,
                    }
                }
            }
        });
        trace.lock().expect("trace").events().to_vec()
    }

    // Goal: the oracles judge the events the service really emits: the correct retry loop
    // passes R1–R3 with seeded jitter, and R3 catches the planted unsafe retries. Method: run
    // `decide_retry` loops (keyed and retriable, keyless, non-retriable) under the simulator's
    // trace subscriber.
    #[test]
    fn catch_the_planted_unsafe_retries_on_a_real_trace() {
        let correct = record(false);
        assert_eq!(
            correct.iter().filter(|e| e.name == "retry_attempt").count(),
            3,
            "the keyed, retriable request retried up to attempt 4"
        );
        for id in ["R1", "R2", "R3"] {
            assert_eq!(judge(id, &correct), None, "{id}");
        }
        let planted = record(true);
        let violation = judge("R3", &planted).expect("the planted retries are caught");
        assert!(violation.detail.contains("without idempotency key"));
        assert_eq!(judge("R1", &planted), None);
        assert_eq!(judge("R2", &planted), None);
    }
}
