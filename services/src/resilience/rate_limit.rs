//! Token-bucket rate limiting with Envoy's local rate limit semantics, one bucket per consumer.
//!
//! Owns `TokenBucket` (one bucket) and `RateLimiter` (a bucket per consumer name, created on
//! first use). It does not own who the consumer is (the gateway authenticates first) or the
//! answer (the gateway turns a `RateLimited` into 429 with `Retry-After`).
//!
//! Semantics (Envoy `local_ratelimit`, `TokenBucket` proto): the bucket starts full with
//! `tokens_max`; every `fill_interval`, counted from the bucket's creation, `tokens_per_fill`
//! tokens are added, never beyond `tokens_max`; a request takes one token or is refused. Fills
//! are discrete (Envoy's timer), applied lazily when the bucket is next asked, so the result is
//! the same whenever it is asked. A refusal says when the next fill is due: the `Retry-After`.
//! This gives oracle RL1's bound: over any span Δ from one admission to another, admissions ≤
//! `tokens_max + tokens_per_fill · ⌈Δ / fill_interval⌉`.
//!
//! Events (INFO): `rate_admitted` (consumer, tokens_left, tokens_max, tokens_per_fill,
//! fill_interval_us), `rate_limited` (consumer, retry_after_ms).

use std::collections::BTreeMap;
use std::time::Duration;

use super::millis;

/// Most consumers a limiter tracks: consumers are configured API keys, far fewer than this.
pub const CONSUMERS_MAX: usize = 10_000;

/// Shortest fill interval accepted. Envoy refuses less than 50 ms; simulated scenarios may go
/// shorter, so the floor here only rules out a zero interval.
pub const FILL_INTERVAL_MIN: Duration = Duration::from_millis(1);

/// The numbers of one bucket. Envoy requires `max_tokens` and `fill_interval` and defaults only
/// `tokens_per_fill` (1); the other defaults are ours: bursts of 20, 10 requests/s sustained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenBucketConfig {
    /// Capacity and initial content [max_tokens].
    pub tokens_max: u32,
    /// Tokens added per fill [tokens_per_fill 1].
    pub tokens_per_fill: u32,
    /// Time between fills [fill_interval].
    pub fill_interval: Duration,
    /// TEST ONLY: planted bug for oracle RL1. An empty bucket admits the request anyway (the
    /// token count stays at zero), so a consumer is never limited; default false. A correct
    /// limiter never sets it; a test sets it to show that RL1 catches over-admission.
    pub planted_over_admits: bool,
}

impl Default for TokenBucketConfig {
    fn default() -> TokenBucketConfig {
        TokenBucketConfig {
            tokens_max: 20,
            tokens_per_fill: 1,
            fill_interval: Duration::from_millis(100),
            planted_over_admits: false,
        }
    }
}

impl TokenBucketConfig {
    /// Panics on a bucket that could never admit or never refill.
    pub fn validate(&self) {
        assert!(self.tokens_max >= 1, "tokens_max must be at least 1");
        assert!(
            self.tokens_per_fill >= 1,
            "tokens_per_fill must be at least 1"
        );
        assert!(
            self.fill_interval >= FILL_INTERVAL_MIN,
            "fill_interval must be at least {FILL_INTERVAL_MIN:?}, got {:?}",
            self.fill_interval
        );
    }
}

/// A refusal: no token left.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("rate limited: retry after {retry_after:?}")]
pub struct RateLimited {
    /// Until the next fill.
    pub retry_after: Duration,
}

/// One token bucket.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    config: TokenBucketConfig,
    tokens: u32,
    created_at: Duration,
    /// Fills applied since creation.
    fills_applied: u64,
}

impl TokenBucket {
    /// A full bucket created at `now`.
    pub fn new(config: TokenBucketConfig, now: Duration) -> TokenBucket {
        config.validate();
        TokenBucket {
            config,
            tokens: config.tokens_max,
            created_at: now,
            fills_applied: 0,
        }
    }

    /// Tokens in the bucket at `now`.
    pub fn tokens(&mut self, now: Duration) -> u32 {
        self.fill(now);
        self.tokens
    }

    /// Takes one token at `now`; returns the tokens left, or when to come back.
    pub fn try_take(&mut self, now: Duration) -> Result<u32, RateLimited> {
        self.fill(now);
        if self.tokens == 0 && self.config.planted_over_admits {
            // The planted bug (TEST ONLY, oracle RL1): admitted without a token.
            return Ok(0);
        }
        if self.tokens == 0 {
            let next_fill_at = self.fill_at(self.fills_applied + 1);
            return Err(RateLimited {
                retry_after: next_fill_at.saturating_sub(now),
            });
        }
        self.tokens -= 1;
        Ok(self.tokens)
    }

    fn fill_at(&self, fill: u64) -> Duration {
        let interval_ns = self.config.fill_interval.as_nanos();
        let offset_ns = interval_ns.saturating_mul(u128::from(fill));
        self.created_at.saturating_add(Duration::from_nanos(
            u64::try_from(offset_ns).unwrap_or(u64::MAX),
        ))
    }

    fn fill(&mut self, now: Duration) {
        let since = now.saturating_sub(self.created_at).as_nanos();
        let due = u64::try_from(since / self.config.fill_interval.as_nanos()).unwrap_or(u64::MAX);
        if due <= self.fills_applied {
            return;
        }
        let added =
            (due - self.fills_applied).saturating_mul(u64::from(self.config.tokens_per_fill));
        let tokens = u64::from(self.tokens).saturating_add(added);
        self.tokens = u32::try_from(tokens.min(u64::from(self.config.tokens_max)))
            .expect("tokens_max fits u32");
        self.fills_applied = due;
        assert!(
            self.tokens <= self.config.tokens_max,
            "never beyond capacity"
        );
    }
}

/// A bucket per consumer, all with the same numbers.
#[derive(Clone, Debug)]
pub struct RateLimiter {
    config: TokenBucketConfig,
    buckets: BTreeMap<String, TokenBucket>,
}

impl RateLimiter {
    pub fn new(config: TokenBucketConfig) -> RateLimiter {
        config.validate();
        RateLimiter {
            config,
            buckets: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &TokenBucketConfig {
        &self.config
    }

    /// Takes a token from `consumer`'s bucket at `now` (a full bucket on first sight).
    pub fn try_take(&mut self, now: Duration, consumer: &str) -> Result<u32, RateLimited> {
        if !self.buckets.contains_key(consumer) {
            assert!(
                self.buckets.len() < CONSUMERS_MAX,
                "more than {CONSUMERS_MAX} consumers: consumers must be configured identities"
            );
            self.buckets
                .insert(consumer.to_owned(), TokenBucket::new(self.config, now));
        }
        let bucket = self.buckets.get_mut(consumer).expect("inserted above");
        let result = bucket.try_take(now);
        match result {
            Ok(tokens_left) => {
                // The bucket's numbers ride along so oracle RL1 can bound admissions from the
                // trace alone.
                tracing::info!(
                    event = "rate_admitted",
                    consumer,
                    tokens_left,
                    tokens_max = self.config.tokens_max,
                    tokens_per_fill = self.config.tokens_per_fill,
                    fill_interval_us =
                        u64::try_from(self.config.fill_interval.as_micros()).unwrap_or(u64::MAX),
                );
            }
            Err(limited) => {
                tracing::info!(
                    event = "rate_limited",
                    consumer,
                    retry_after_ms = millis(limited.retry_after)
                );
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    fn config() -> TokenBucketConfig {
        TokenBucketConfig {
            tokens_max: 3,
            tokens_per_fill: 2,
            fill_interval: 100 * MS,
            planted_over_admits: false,
        }
    }

    #[test]
    fn the_planted_bucket_over_admits() {
        // Goal: the TEST ONLY switch `planted_over_admits` really breaks RL1. Method: a planted
        // bucket of 3 asked 10 times at one instant admits all 10 (a correct one admits 3), and
        // the trace carries the bucket's numbers for the oracle.
        let (trace, _guard) = crate::testing::record_trace();
        let mut limiter = RateLimiter::new(TokenBucketConfig {
            planted_over_admits: true,
            ..config()
        });
        let admitted = (0..10)
            .filter(|_| limiter.try_take(Duration::ZERO, "alice").is_ok())
            .count();
        assert_eq!(admitted, 10);
        let events = trace.named("rate_admitted");
        assert_eq!(events.len(), 10);
        assert_eq!(events[9].field("tokens_max"), Some("3"));
        assert_eq!(events[9].field("tokens_per_fill"), Some("2"));
        assert_eq!(events[9].field("fill_interval_us"), Some("100000"));
        let mut correct = RateLimiter::new(config());
        let admitted = (0..10)
            .filter(|_| correct.try_take(Duration::ZERO, "alice").is_ok())
            .count();
        assert_eq!(admitted, 3);
    }

    #[test]
    fn starts_full_refills_on_the_grid_and_never_overflows() {
        // Goal: Envoy's bucket: max_tokens initially, tokens_per_fill per interval, capped.
        // Method: created at 50 ms; drain 3, refused with the wait to the fill at 150 ms; at
        // 150 ms two tokens; after a long idle, only 3.
        let start = 50 * MS;
        let mut bucket = TokenBucket::new(config(), start);
        assert_eq!(bucket.try_take(start), Ok(2));
        assert_eq!(bucket.try_take(start), Ok(1));
        assert_eq!(bucket.try_take(start), Ok(0));
        assert_eq!(
            bucket.try_take(start + 30 * MS),
            Err(RateLimited {
                retry_after: 70 * MS
            })
        );
        assert_eq!(
            bucket.try_take(start + 99 * MS).unwrap_err().retry_after,
            MS
        );
        assert_eq!(bucket.try_take(start + 100 * MS), Ok(1));
        assert_eq!(bucket.tokens(start + 10_000 * MS), 3);
    }

    #[test]
    fn consumers_have_separate_buckets() {
        // Goal: one consumer exhausting its bucket does not limit another (per-consumer limit).
        // Method: drain alice, bob still gets his three.
        let mut limiter = RateLimiter::new(config());
        for _ in 0..3 {
            limiter.try_take(Duration::ZERO, "alice").unwrap();
        }
        assert!(limiter.try_take(Duration::ZERO, "alice").is_err());
        for _ in 0..3 {
            limiter.try_take(Duration::ZERO, "bob").unwrap();
        }
    }

    proptest! {
        #[test]
        fn admissions_within_capacity_plus_refill_over_any_span(
            gaps_ms in proptest::collection::vec(0u64..120, 1..300),
            tokens_max in 1u32..6,
            tokens_per_fill in 1u32..4,
            interval_ms in 1u64..200,
        ) {
            // Goal: RL1: over any span Δ between two admissions, admitted ≤ tokens_max +
            // tokens_per_fill · ⌈Δ/interval⌉; and RL2: no refusal while a token is left.
            // Method: random request times; check every pair of admissions.
            let config = TokenBucketConfig {
                tokens_max,
                tokens_per_fill,
                fill_interval: Duration::from_millis(interval_ms),
                planted_over_admits: false,
            };
            let mut bucket = TokenBucket::new(config, Duration::ZERO);
            let mut now = Duration::ZERO;
            let mut admitted: Vec<Duration> = Vec::new();
            for gap in gaps_ms {
                now += Duration::from_millis(gap);
                let before = bucket.tokens(now);
                match bucket.try_take(now) {
                    Ok(_) => admitted.push(now),
                    Err(limited) => {
                        prop_assert_eq!(before, 0, "RL2");
                        prop_assert!(limited.retry_after > Duration::ZERO);
                        prop_assert!(limited.retry_after <= config.fill_interval);
                    }
                }
            }
            for (first, start) in admitted.iter().enumerate() {
                for (last, end) in admitted.iter().enumerate().skip(first) {
                    let span_ns = (*end - *start).as_nanos();
                    let fills = span_ns.div_ceil(config.fill_interval.as_nanos()) as u64;
                    let bound = u64::from(tokens_max) + u64::from(tokens_per_fill) * fills;
                    prop_assert!((last - first + 1) as u64 <= bound, "RL1");
                }
            }
        }
    }
}
