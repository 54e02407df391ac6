//! Retry policy: how many attempts, how long to wait between them, one deadline over all, and
//! whether a failure may be retried at all.
//!
//! Owns `RetryPolicy` (the numbers), `RetrySchedule` (one logical operation's attempts so far),
//! the jittered exponential backoff, and `decide_retry`, the one rule every caller applies after a
//! failed attempt. Pure: time comes in as a `Duration` since the caller's start, randomness from
//! the caller's `ChaCha8Rng` stream, so a seed fixes every wait. It does not sleep, and it does
//! not judge errors: the caller says whether an error is retriable (for RPC,
//! `RpcError::is_transient`; for HTTP, 502/503/504) and passes any `Retry-After` it was given.
//!
//! Backoff: attempt `n` (1-based) that failed waits `min(initial · 2^(n−1), max)` scaled by a
//! uniform factor in `[1 − jitter, 1 + jitter]` (resilience4j's randomized interval), capped at
//! `backoff_max` again and never below `BACKOFF_MIN`. The jitter spreads clients that failed
//! together so they do not retry in lockstep.
//!
//! `decide_retry` (oracles R1–R5), in this order: a request without an idempotency key is never
//! retried (a retry could apply it twice); a non-retriable error is never retried; attempts
//! (`attempts_max` includes the first call) and the one deadline bound the loop; a `Retry-After`
//! longer than the backoff replaces it (never retry before the server said); and last the retry
//! budget must pay for the retry (checked last so a refused retry costs the budget nothing).
//!
//! Events (INFO): `retry_attempt` (operation, attempt = the attempt about to be made, delay_ms,
//! backoff_ms, retry_after_ms, error, retriable, idempotency_key (whether the request had one),
//! attempts_max, delay_us, backoff_us, backoff_initial_us, backoff_max_us, jitter_ratio: the
//! policy, for oracles R1–R3), `retry_refused` (operation, reason, attempt = attempts
//! made, error).

use std::time::Duration;

use rand_core::Rng;

use super::budget::RetryBudget;
use super::millis;

/// No wait is shorter than this, whatever the jitter draws (resilience4j's floor).
pub const BACKOFF_MIN: Duration = Duration::from_millis(1);

/// Most attempts any policy may allow: a limit on every retry loop.
pub const ATTEMPTS_MAX_LIMIT: u32 = 100;

/// The numbers of a retry loop.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts including the first, 1..=`ATTEMPTS_MAX_LIMIT`.
    pub attempts_max: u32,
    /// Wait after the first failed attempt, before jitter.
    pub backoff_initial: Duration,
    /// Longest wait, after jitter.
    pub backoff_max: Duration,
    /// Relative spread of each wait, 0.0..=1.0.
    pub jitter_ratio: f64,
    /// One deadline over all attempts and waits, from the operation's start.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    /// resilience4j's three attempts and 0.5 randomization, with Envoy's 25 ms base and 250 ms
    /// cap (service links have millisecond latencies), within 5 s.
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts_max: 3,
            backoff_initial: Duration::from_millis(25),
            backoff_max: Duration::from_millis(250),
            jitter_ratio: 0.5,
            deadline: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// Panics when the numbers make no sense: a policy is configuration, checked once.
    pub fn validate(&self) {
        assert!(
            (1..=ATTEMPTS_MAX_LIMIT).contains(&self.attempts_max),
            "attempts_max must be in 1..={ATTEMPTS_MAX_LIMIT}, got {}",
            self.attempts_max
        );
        assert!(
            (0.0..=1.0).contains(&self.jitter_ratio),
            "jitter_ratio must be in 0..=1, got {}",
            self.jitter_ratio
        );
        assert!(
            self.backoff_initial <= self.backoff_max,
            "backoff_initial {:?} exceeds backoff_max {:?}",
            self.backoff_initial,
            self.backoff_max
        );
        assert!(self.deadline > Duration::ZERO, "deadline must be positive");
    }

    /// The wait after failed attempt `attempt` (1-based), drawn from `rng`.
    pub fn backoff(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let base = exponential_backoff(self.backoff_initial, self.backoff_max, attempt);
        // 53 random bits give a uniform f64 in [0, 1).
        let unit = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let factor = 1.0 - self.jitter_ratio + 2.0 * self.jitter_ratio * unit;
        base.mul_f64(factor)
            .clamp(BACKOFF_MIN, self.backoff_max.max(BACKOFF_MIN))
    }
}

/// The wait after failed attempt `attempt` (1-based) before jitter: `min(initial · 2^(n−1),
/// max)`. The one definition of the exponential curve, shared by `RetryPolicy::backoff` and by
/// the unjittered retries of a service reading its own disk (`storage::read_durable`).
pub fn exponential_backoff(initial: Duration, max: Duration, attempt: u32) -> Duration {
    assert!(attempt >= 1, "attempts are counted from 1");
    let doublings = (attempt - 1).min(31);
    initial.saturating_mul(1u32 << doublings).min(max)
}

/// Why a retry loop stopped trying.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GiveUp {
    /// `attempts_max` attempts were made.
    #[error("attempts exhausted")]
    AttemptsExhausted,
    /// The next attempt could not start before the deadline.
    #[error("deadline reached")]
    DeadlineReached,
}

impl GiveUp {
    /// A stable name for traces.
    pub fn kind(self) -> &'static str {
        match self {
            GiveUp::AttemptsExhausted => "attempts_exhausted",
            GiveUp::DeadlineReached => "deadline_reached",
        }
    }
}

/// One logical operation's progress through its policy.
#[derive(Clone, Debug)]
pub struct RetrySchedule {
    policy: RetryPolicy,
    started_at: Duration,
    attempts_made: u32,
    /// TEST ONLY: see `with_planted_unsafe_retries`.
    planted_unsafe_retries: bool,
}

impl RetrySchedule {
    /// Starts an operation at `now`.
    pub fn new(policy: RetryPolicy, now: Duration) -> RetrySchedule {
        policy.validate();
        RetrySchedule {
            policy,
            started_at: now,
            attempts_made: 0,
            planted_unsafe_retries: false,
        }
    }

    /// TEST ONLY: planted bug for oracle R3. `decide_retry` skips its first two rules and
    /// retries a request without an idempotency key, or after a non-retriable error, like any
    /// other (the events still say which it was). A correct caller never calls this; a test
    /// does, to show that R3 catches it.
    pub fn with_planted_unsafe_retries(mut self) -> RetrySchedule {
        self.planted_unsafe_retries = true;
        self
    }

    /// TEST ONLY: as `with_planted_unsafe_retries`, on a schedule already running (the
    /// gateway's planted `UpstreamConfig::planted_retries_unsafe`).
    pub fn plant_unsafe_retries(&mut self) {
        self.planted_unsafe_retries = true;
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Attempts started so far.
    pub fn attempts_made(&self) -> u32 {
        self.attempts_made
    }

    /// When the whole operation must be over.
    pub fn deadline_at(&self) -> Duration {
        self.started_at.saturating_add(self.policy.deadline)
    }

    /// Time left at `now` (zero once the deadline passed): the timeout of the next attempt.
    pub fn remaining(&self, now: Duration) -> Duration {
        self.deadline_at().saturating_sub(now)
    }

    /// Records the start of an attempt at `now`; refuses one past the limits.
    pub fn begin_attempt(&mut self, now: Duration) -> Result<u32, GiveUp> {
        if self.attempts_made >= self.policy.attempts_max {
            return Err(GiveUp::AttemptsExhausted);
        }
        if self.remaining(now).is_zero() {
            return Err(GiveUp::DeadlineReached);
        }
        self.attempts_made += 1;
        Ok(self.attempts_made)
    }

    /// After a failed attempt at `now`: how long to wait before the next one, or why there is
    /// none (no attempts left, or the wait would end at or after the deadline).
    pub fn after_failure(&mut self, now: Duration, rng: &mut impl Rng) -> Result<Duration, GiveUp> {
        self.after_failure_honouring(now, None, rng)
            .map(|wait| wait.delay)
    }

    /// As `after_failure`, but never sooner than `retry_after` (the server's `Retry-After`).
    pub fn after_failure_honouring(
        &mut self,
        now: Duration,
        retry_after: Option<Duration>,
        rng: &mut impl Rng,
    ) -> Result<Wait, GiveUp> {
        assert!(self.attempts_made >= 1, "after_failure before any attempt");
        if self.attempts_made >= self.policy.attempts_max {
            return Err(GiveUp::AttemptsExhausted);
        }
        let backoff = self.policy.backoff(self.attempts_made, rng);
        let delay = backoff.max(retry_after.unwrap_or(Duration::ZERO));
        if now.saturating_add(delay) >= self.deadline_at() {
            return Err(GiveUp::DeadlineReached);
        }
        Ok(Wait { delay, backoff })
    }
}

/// The wait before the next attempt, and the backoff it came from (longer when a `Retry-After`
/// asked for more).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wait {
    pub delay: Duration,
    pub backoff: Duration,
}

/// A failed attempt, as the caller judged it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Trying again could succeed (a transient network or server error).
    pub retriable: bool,
    /// The server's `Retry-After`, if it sent one.
    pub retry_after: Option<Duration>,
    /// A stable name for traces (`RpcError::kind`, `"status_503"`, …).
    pub kind: &'static str,
}

/// Why a failed attempt is not retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RetryRefusal {
    /// The request carries no idempotency key: a retry could apply it twice.
    #[error("no idempotency key")]
    NoIdempotencyKey,
    /// The error says trying again cannot help.
    #[error("error not retriable")]
    NotRetriable,
    /// Attempts or the deadline are used up.
    #[error("{0}")]
    GaveUp(GiveUp),
    /// The retry budget cannot pay for another retry.
    #[error("retry budget exhausted")]
    BudgetExhausted,
}

impl RetryRefusal {
    /// A stable name for traces.
    pub fn kind(self) -> &'static str {
        match self {
            RetryRefusal::NoIdempotencyKey => "no_idempotency_key",
            RetryRefusal::NotRetriable => "not_retriable",
            RetryRefusal::GaveUp(give_up) => give_up.kind(),
            RetryRefusal::BudgetExhausted => "budget_exhausted",
        }
    }
}

/// After a failed attempt at `now`: the wait before the next attempt, or why there is none (see
/// the module docs for the order of the checks). `operation` names the loop in events.
pub fn decide_retry(
    operation: &str,
    schedule: &mut RetrySchedule,
    now: Duration,
    failure: Failure,
    idempotency_key: Option<&str>,
    budget: Option<&mut RetryBudget>,
    rng: &mut impl Rng,
) -> Result<Wait, RetryRefusal> {
    let checked = !schedule.planted_unsafe_retries;
    let decision = if checked && idempotency_key.is_none() {
        Err(RetryRefusal::NoIdempotencyKey)
    } else if checked && !failure.retriable {
        Err(RetryRefusal::NotRetriable)
    } else {
        match schedule.after_failure_honouring(now, failure.retry_after, rng) {
            Err(give_up) => Err(RetryRefusal::GaveUp(give_up)),
            Ok(wait) => {
                let paid = budget.is_none_or(|budget| budget.withdraw(now));
                if paid {
                    Ok(wait)
                } else {
                    Err(RetryRefusal::BudgetExhausted)
                }
            }
        }
    };
    let micros = |duration: Duration| u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
    match decision {
        // The policy's numbers and the failure's nature ride along so oracles R1–R3 judge from
        // the trace alone.
        Ok(wait) => tracing::info!(
            event = "retry_attempt",
            operation,
            attempt = schedule.attempts_made() + 1,
            delay_ms = millis(wait.delay),
            backoff_ms = millis(wait.backoff),
            retry_after_ms = failure.retry_after.map(millis),
            error = failure.kind,
            retriable = failure.retriable,
            idempotency_key = idempotency_key.is_some(),
            attempts_max = schedule.policy.attempts_max,
            delay_us = micros(wait.delay),
            backoff_us = micros(wait.backoff),
            backoff_initial_us = micros(schedule.policy.backoff_initial),
            backoff_max_us = micros(schedule.policy.backoff_max),
            jitter_ratio = schedule.policy.jitter_ratio,
        ),
        Err(refusal) => tracing::info!(
            event = "retry_refused",
            operation,
            reason = refusal.kind(),
            attempt = schedule.attempts_made(),
            error = failure.kind,
        ),
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha8Rng;
    use rand_core::SeedableRng;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            attempts_max: 5,
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_millis(100),
            jitter_ratio: 0.5,
            deadline: Duration::from_secs(1),
        }
    }

    #[test]
    fn backoff_stays_within_its_interval_bounds() {
        // Goal: every wait lies in [base·(1−j), base·(1+j)] capped at the max (oracle R2).
        // Method: draw many waits per attempt from a seeded stream and check the bounds, and
        // that the draws actually spread (jitter is not dead code).
        let policy = policy();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for attempt in 1..=6u32 {
            let base_ms = (10u64 << (attempt - 1)).min(100) as f64;
            let low = Duration::from_secs_f64(base_ms * 0.5 / 1000.0);
            let high = Duration::from_secs_f64((base_ms * 1.5).min(100.0) / 1000.0);
            let waits: Vec<Duration> = (0..200)
                .map(|_| policy.backoff(attempt, &mut rng))
                .collect();
            for wait in &waits {
                assert!(*wait >= low && *wait <= high, "attempt {attempt}: {wait:?}");
            }
            let spread = *waits.iter().max().unwrap() - *waits.iter().min().unwrap();
            assert!(
                spread > (high - low) / 2,
                "attempt {attempt}: spread {spread:?}"
            );
        }
    }

    #[test]
    fn backoff_is_a_function_of_the_seed() {
        // Goal: the same seed gives the same waits (determinism). Method: two streams from one
        // seed, one from another.
        let policy = policy();
        let draw = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (1..=5)
                .map(|n| policy.backoff(n, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }

    #[test]
    fn schedule_stops_at_attempts_max() {
        // Goal: attempts never exceed attempts_max (oracle R1). Method: fail every attempt at
        // time 0 (far from the deadline) and count.
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut schedule = RetrySchedule::new(policy(), Duration::ZERO);
        let mut attempts = 0;
        loop {
            schedule.begin_attempt(Duration::ZERO).unwrap();
            attempts += 1;
            match schedule.after_failure(Duration::ZERO, &mut rng) {
                Ok(_) => continue,
                Err(give_up) => {
                    assert_eq!(give_up, GiveUp::AttemptsExhausted);
                    break;
                }
            }
        }
        assert_eq!(attempts, 5);
        assert_eq!(
            schedule.begin_attempt(Duration::ZERO),
            Err(GiveUp::AttemptsExhausted)
        );
    }

    #[test]
    fn schedule_never_waits_past_the_deadline() {
        // Goal: one deadline covers all attempts and waits (oracle R4). Method: fail just
        // before the deadline, where any wait would cross it; and try to begin after it.
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let start = Duration::from_secs(10);
        let mut schedule = RetrySchedule::new(policy(), start);
        schedule.begin_attempt(start).unwrap();
        let almost = start + Duration::from_millis(999);
        assert_eq!(
            schedule.after_failure(almost, &mut rng),
            Err(GiveUp::DeadlineReached)
        );
        assert_eq!(
            schedule.remaining(start + Duration::from_secs(2)),
            Duration::ZERO
        );
        assert_eq!(
            schedule.begin_attempt(start + Duration::from_secs(1)),
            Err(GiveUp::DeadlineReached)
        );
        assert_eq!(schedule.attempts_made(), 1);
    }

    #[test]
    #[should_panic(expected = "attempts_max")]
    fn zero_attempts_is_a_configuration_bug() {
        // Goal: a policy that could never try is refused loudly. Method: attempts_max = 0.
        let _ = RetrySchedule::new(
            RetryPolicy {
                attempts_max: 0,
                ..policy()
            },
            Duration::ZERO,
        );
    }

    fn failure(retriable: bool, retry_after_ms: Option<u64>) -> Failure {
        Failure {
            retriable,
            retry_after: retry_after_ms.map(Duration::from_millis),
            kind: "test",
        }
    }

    #[test]
    fn no_retry_without_an_idempotency_key_or_for_a_non_retriable_error() {
        // Goal: R3: the two refusals come before anything else, and cost the budget nothing.
        // Method: decide on a fresh schedule without a key, then with a key and a non-retriable
        // error; a budget with a single retry in it still has it afterwards.
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let budget_config = crate::resilience::RetryBudgetConfig {
            reserve_per_s: 0,
            retry_ratio: 1.0,
            ..Default::default()
        };
        let mut budget = RetryBudget::new("b", budget_config, Duration::ZERO);
        budget.deposit(Duration::ZERO);
        let mut schedule = RetrySchedule::new(policy(), Duration::ZERO);
        schedule.begin_attempt(Duration::ZERO).unwrap();
        let refused = decide_retry(
            "op",
            &mut schedule,
            Duration::ZERO,
            failure(true, None),
            None,
            Some(&mut budget),
            &mut rng,
        );
        assert_eq!(refused, Err(RetryRefusal::NoIdempotencyKey));
        let refused = decide_retry(
            "op",
            &mut schedule,
            Duration::ZERO,
            failure(false, None),
            Some("key"),
            Some(&mut budget),
            &mut rng,
        );
        assert_eq!(refused, Err(RetryRefusal::NotRetriable));
        assert_eq!(budget.retries_available(Duration::ZERO), 1);
        let wait = decide_retry(
            "op",
            &mut schedule,
            Duration::ZERO,
            failure(true, None),
            Some("key"),
            Some(&mut budget),
            &mut rng,
        );
        assert!(wait.is_ok());
        schedule.begin_attempt(Duration::ZERO).unwrap();
        let refused = decide_retry(
            "op",
            &mut schedule,
            Duration::ZERO,
            failure(true, None),
            Some("key"),
            Some(&mut budget),
            &mut rng,
        );
        assert_eq!(refused, Err(RetryRefusal::BudgetExhausted));
    }

    #[test]
    fn the_planted_schedule_retries_what_must_not_be_retried() {
        // Goal: the TEST ONLY `with_planted_unsafe_retries` really breaks R3, and the trace says
        // so. Method: a planted schedule retries a keyless request and then a non-retriable
        // error; each `retry_attempt` carries the truth (no key / not retriable) and the policy.
        let (trace, _guard) = crate::testing::record_trace();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut schedule =
            RetrySchedule::new(policy(), Duration::ZERO).with_planted_unsafe_retries();
        schedule.begin_attempt(Duration::ZERO).unwrap();
        let keyless = decide_retry(
            "op",
            &mut schedule,
            Duration::ZERO,
            failure(true, None),
            None,
            None,
            &mut rng,
        );
        assert!(keyless.is_ok(), "the planted bug retries without a key");
        schedule.begin_attempt(Duration::ZERO).unwrap();
        let fatal = decide_retry(
            "op",
            &mut schedule,
            Duration::ZERO,
            failure(false, None),
            Some("key"),
            None,
            &mut rng,
        );
        assert!(
            fatal.is_ok(),
            "the planted bug retries a non-retriable error"
        );
        let attempts = trace.named("retry_attempt");
        assert_eq!(attempts.len(), 2);
        assert_eq!(attempts[0].field("idempotency_key"), Some("false"));
        assert_eq!(attempts[1].field("retriable"), Some("false"));
        assert_eq!(attempts[1].field("attempts_max"), Some("5"));
        assert_eq!(attempts[1].field("backoff_initial_us"), Some("10000"));
        assert_eq!(attempts[1].field("backoff_max_us"), Some("100000"));
        assert_eq!(attempts[1].field("jitter_ratio"), Some("0.5"));
    }

    #[test]
    fn retry_after_replaces_a_shorter_backoff_and_respects_the_deadline() {
        // Goal: R5: never retry before Retry-After; R4: a Retry-After beyond the deadline ends
        // the loop. Method: backoff ≤ 15 ms for the first failure; Retry-After 300 ms wins; a
        // Retry-After of 2 s crosses the 1 s deadline.
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let mut schedule = RetrySchedule::new(policy(), Duration::ZERO);
        schedule.begin_attempt(Duration::ZERO).unwrap();
        let wait = decide_retry(
            "op",
            &mut schedule,
            Duration::ZERO,
            failure(true, Some(300)),
            Some("key"),
            None,
            &mut rng,
        )
        .unwrap();
        assert_eq!(wait.delay, Duration::from_millis(300));
        assert!(wait.backoff <= Duration::from_millis(15));
        let refused = decide_retry(
            "op",
            &mut schedule,
            Duration::ZERO,
            failure(true, Some(2000)),
            Some("key"),
            None,
            &mut rng,
        );
        assert_eq!(refused, Err(RetryRefusal::GaveUp(GiveUp::DeadlineReached)));
    }

    proptest::proptest! {
        #[test]
        fn retry_loops_keep_attempts_and_waits_within_bounds(
            seed in 0u64..1_000,
            retry_after_ms in proptest::collection::vec(proptest::option::of(0u64..200), 10),
            elapsed_ms in 0u64..50,
        ) {
            // Goal: R1 (attempts ≤ max), R2 (each backoff within the interval bounds) and R5
            // (delay ≥ Retry-After) for any seed and any server hints. Method: fail every attempt
            // of a retriable keyed request until the loop gives up.
            let policy = policy();
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut schedule = RetrySchedule::new(policy, Duration::ZERO);
            let mut now = Duration::ZERO;
            let mut attempts = 0;
            for hint in retry_after_ms {
                schedule.begin_attempt(now).unwrap();
                attempts += 1;
                now += Duration::from_millis(elapsed_ms);
                let failure = failure(true, hint);
                match decide_retry("p", &mut schedule, now, failure, Some("k"), None, &mut rng) {
                    Ok(wait) => {
                        let base_ms = (10u64 << (attempts - 1)).min(100) as f64;
                        let low = Duration::from_secs_f64(base_ms * 0.5 / 1000.0);
                        let high = Duration::from_secs_f64((base_ms * 1.5).min(100.0) / 1000.0);
                        proptest::prop_assert!(wait.backoff >= low && wait.backoff <= high, "R2");
                        proptest::prop_assert!(wait.delay >= failure.retry_after.unwrap_or_default(), "R5");
                        proptest::prop_assert!(now + wait.delay < schedule.deadline_at(), "R4");
                        now += wait.delay;
                    }
                    Err(_) => break,
                }
            }
            proptest::prop_assert!(attempts <= policy.attempts_max, "R1");
        }
    }
}
