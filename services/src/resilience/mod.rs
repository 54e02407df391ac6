//! Resilience shared by every caller: circuit breaker, retry with backoff and a retry budget,
//! token-bucket rate limiting and bulkheads.
//!
//! Owns the decision logic of each pattern as a pure state machine with time passed in
//! (`Duration` since the owner's start) and randomness from the caller's `ChaCha8Rng`. It does not
//! own any I/O, any clock or what an error means: the caller says whether a call failed, whether
//! an error is retriable and whether a request carries an idempotency key. The one async piece is
//! `bulkhead::SharedBulkhead`, which parks queued callers on tokio channels (no timers of its own
//! beyond the queue wait).
//!
//! Parts:
//! - `breaker`: resilience4j's count-based circuit breaker (closed, open, half-open), exactly as
//!   `docs/reference/pattern-semantics.md` §1 describes it, with a maximum half-open wait.
//! - `retry`: attempts (the first included), seeded jittered exponential backoff, one deadline,
//!   `Retry-After` honoured, and the rule "only retriable errors, only requests with an
//!   idempotency key, only within the budget" (`decide_retry`).
//! - `budget`: tower's `TpsBudget` (a share of recent successes plus a reserve per second).
//! - `rate_limit`: Envoy's local rate limit token bucket, one bucket per consumer.
//! - `bulkhead`: bounded concurrency plus a bounded FIFO queue.
//!
//! Events (`tracing`, stable `event` field, plain fields; the oracle each serves in brackets):
//! `breaker_transition` (breaker, from, to, reason) [CB3], `breaker_admitted` (breaker, state,
//! half_open_admitted, half_open_permitted) [CB1, CB2], `breaker_rejected` (breaker, state,
//! retry_after_ms) [CB5], `breaker_outcome` (breaker, outcome, slow, counted), `retry_attempt`
//! (operation, attempt, delay_ms, backoff_ms, retry_after_ms, error, retriable, idempotency_key,
//! attempts_max, delay_us, backoff_us, backoff_initial_us, backoff_max_us, jitter_ratio) [R1, R2,
//! R3, R5], `retry_refused` (operation, reason, attempt, error) [R3], `retry_budget_exhausted`
//! (budget, balance), `rate_admitted` (consumer, tokens_left, tokens_max, tokens_per_fill,
//! fill_interval_us) and `rate_limited` (consumer, retry_after_ms) [RL1, RL2],
//! `bulkhead_in_flight` (bulkhead, in_flight, queued, concurrency_max) and `bulkhead_rejected`
//! (bulkhead, in_flight, queued, retry_after_ms) [BH1], `bulkhead_queue_timeout` (bulkhead,
//! queued). The oracles read each component's numbers from these fields, so every one a rule
//! needs is on the event itself.
//!
//! TEST ONLY planted bugs (default off; each documented on its field):
//! `BreakerConfig::planted_admits_while_open` [CB2], `TokenBucketConfig::planted_over_admits`
//! [RL1], `BulkheadConfig::planted_ignores_limit` [BH1],
//! `RetrySchedule::with_planted_unsafe_retries` [R3].

pub mod breaker;
pub mod budget;
pub mod bulkhead;
pub mod rate_limit;
pub mod retry;

pub use self::breaker::{
    BreakerConfig, BreakerPermit, BreakerRejection, BreakerState, CallResult, CircuitBreaker,
};
pub use self::budget::{RetryBudget, RetryBudgetConfig};
pub use self::bulkhead::{
    Bulkhead, BulkheadConfig, BulkheadEntry, BulkheadFull, BulkheadPermit, SharedBulkhead,
};
pub use self::rate_limit::{RateLimited, RateLimiter, TokenBucket, TokenBucketConfig};
pub use self::retry::{Failure, GiveUp, RetryPolicy, RetryRefusal, RetrySchedule, decide_retry};

use std::time::Duration;

/// Milliseconds of a duration for an event field, saturating.
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A `Retry-After` header value in whole seconds (RFC 9110 §10.2.3): rounded up, at least 1, so
/// a client that honours it never comes back before the wait is over.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    seconds.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        // Goal: a Retry-After value never tells a client to come back too early. Method: a table
        // of waits around whole seconds.
        for (wait_ms, seconds) in [(0, 1), (1, 1), (999, 1), (1000, 1), (1001, 2), (60_000, 60)] {
            assert_eq!(
                retry_after_seconds(Duration::from_millis(wait_ms)),
                seconds,
                "{wait_ms} ms"
            );
        }
    }
}
