//! Retry policy: how many attempts, how long to wait between them, one deadline over all.
//!
//! Owns `RetryPolicy` (the numbers), `RetrySchedule` (one logical operation's attempts so far)
//! and the jittered exponential backoff. Pure: time comes in as a `Duration` since the caller's
//! start, randomness from the caller's `ChaCha8Rng` stream, so a seed fixes every wait. It does
//! not decide *whether* an error may be retried (the caller knows: only idempotent requests,
//! only transient errors, see `RpcError::is_transient`), and it does not sleep.
//!
//! Backoff: attempt `n` (1-based) that failed waits `min(initial · 2^(n−1), max)` scaled by a
//! uniform factor in `[1 − jitter, 1 + jitter]` (resilience4j's randomized interval), capped at
//! `backoff_max` again and never below `BACKOFF_MIN`. The jitter spreads clients that failed
//! together so they do not retry in lockstep.
//!
//! Issue 4's shared `resilience` module (budgets, breakers) is meant to grow out of this file.

use std::time::Duration;

use rand_core::Rng;

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
        assert!(attempt >= 1, "attempts are counted from 1");
        let doublings = (attempt - 1).min(31);
        let base = self
            .backoff_initial
            .saturating_mul(1u32 << doublings)
            .min(self.backoff_max);
        // 53 random bits give a uniform f64 in [0, 1).
        let unit = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let factor = 1.0 - self.jitter_ratio + 2.0 * self.jitter_ratio * unit;
        base.mul_f64(factor)
            .clamp(BACKOFF_MIN, self.backoff_max.max(BACKOFF_MIN))
    }
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
}

impl RetrySchedule {
    /// Starts an operation at `now`.
    pub fn new(policy: RetryPolicy, now: Duration) -> RetrySchedule {
        policy.validate();
        RetrySchedule {
            policy,
            started_at: now,
            attempts_made: 0,
        }
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
        assert!(self.attempts_made >= 1, "after_failure before any attempt");
        if self.attempts_made >= self.policy.attempts_max {
            return Err(GiveUp::AttemptsExhausted);
        }
        let wait = self.policy.backoff(self.attempts_made, rng);
        if now.saturating_add(wait) >= self.deadline_at() {
            return Err(GiveUp::DeadlineReached);
        }
        Ok(wait)
    }
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
}
