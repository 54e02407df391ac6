//! Circuit breaker with resilience4j's semantics (CircuitBreakerStateMachine, count-based window).
//!
//! Owns one breaker's state (closed, open, half-open), its sliding windows and its transitions.
//! It does not own the call, its timeout or the fallback: the caller asks `try_acquire` before a
//! call, runs its fallback on a `BreakerRejection`, and reports the call's end with `record`.
//! Time is a `Duration` since the owner's start, passed in; nothing here reads a clock.
//!
//! Semantics (pattern-semantics.md §1, resilience4j@af9e7c9):
//! - **Closed**: every call is admitted. Outcomes go into a count-based sliding window of the last
//!   `window_size_calls` calls. Rates are computed only once the window holds at least
//!   `min(calls_min, window_size_calls)` calls; the breaker opens when the failure rate **or** the
//!   slow-call rate is **≥** its threshold. A call is slow when it took strictly longer than
//!   `slow_call_duration_threshold` (failed or not).
//! - **Open**: every call is rejected until `wait_in_open` has passed. The move to half-open is
//!   lazy, on the first `try_acquire` strictly after `opened_at + wait_in_open` (resilience4j's
//!   `isAfter`; the automatic transition is off by default there and absent here).
//! - **Half-open**: exactly `half_open_calls_permitted` calls are admitted (a permit counter).
//!   Their outcomes go into a fresh window whose minimum is `min(calls_min, permitted)`; once it
//!   is reached the breaker opens if a threshold is met, otherwise closes. If the permitted calls
//!   do not all finish, the breaker goes back to open after `half_open_wait_max` (resilience4j's
//!   `maxWaitDurationInHalfOpenState`, which defaults to 0 = forever there; here it must be set,
//!   as the reference note advises).
//! - Every transition starts a fresh window (resilience4j builds new metrics per state).
//!
//! One deliberate difference: a permit remembers the state generation that issued it, and an
//! outcome reported after the breaker changed state is not counted (`breaker_outcome` with
//! `counted = false`). resilience4j records such late outcomes into whatever window is current,
//! so a slow call admitted while closed can close or open a half-open breaker it never took part
//! in; counting only the calls a state admitted keeps "exactly N calls decide half-open" true.
//!
//! Events (INFO): `breaker_transition` (breaker, from, to, reason), `breaker_admitted` (breaker,
//! state, half_open_admitted, half_open_permitted), `breaker_rejected` (breaker, state, retry_after_ms),
//! `breaker_outcome` (breaker, outcome, slow, counted, duration_ms).

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use super::millis;

/// Largest sliding window, in calls: a limit on the window's memory.
pub const WINDOW_SIZE_CALLS_MAX: u32 = 10_000;

/// Most calls a half-open breaker may permit.
pub const HALF_OPEN_CALLS_PERMITTED_MAX: u32 = 1_000;

/// The shortest `Retry-After` a rejection suggests.
pub const RETRY_AFTER_MIN: Duration = Duration::from_millis(1);

/// The numbers of one breaker. Defaults are resilience4j's (names in brackets) except where
/// noted.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BreakerConfig {
    /// Failure rate that opens the breaker, percent, compared with ≥ [failureRateThreshold 50].
    pub failure_rate_percent_threshold: f64,
    /// Slow-call rate that opens the breaker, percent, compared with ≥
    /// [slowCallRateThreshold 100].
    pub slow_call_rate_percent_threshold: f64,
    /// A call lasting strictly longer is slow [slowCallDurationThreshold 60 s].
    pub slow_call_duration_threshold: Duration,
    /// Time spent open before a call may probe [waitDurationInOpenState 60 s].
    pub wait_in_open: Duration,
    /// Calls admitted in half-open [permittedNumberOfCallsInHalfOpenState 10].
    pub half_open_calls_permitted: u32,
    /// Longest stay in half-open before reopening [maxWaitDurationInHalfOpenState]; resilience4j
    /// defaults to 0 (forever), we default to 60 s (as long as the open wait) and require > 0.
    pub half_open_wait_max: Duration,
    /// Calls recorded before a rate is computed [minimumNumberOfCalls 100].
    pub calls_min: u32,
    /// Calls the count-based window holds [slidingWindowSize 100].
    pub window_size_calls: u32,
    /// TEST ONLY: planted bug for oracle CB2. An open breaker admits every call instead of
    /// rejecting it (as if the state check were missing); default false. A correct breaker never
    /// sets it; a test sets it to show that CB2 (no call through while open) catches it.
    pub planted_admits_while_open: bool,
}

impl Default for BreakerConfig {
    fn default() -> BreakerConfig {
        BreakerConfig {
            failure_rate_percent_threshold: 50.0,
            slow_call_rate_percent_threshold: 100.0,
            slow_call_duration_threshold: Duration::from_secs(60),
            wait_in_open: Duration::from_secs(60),
            half_open_calls_permitted: 10,
            half_open_wait_max: Duration::from_secs(60),
            calls_min: 100,
            window_size_calls: 100,
            planted_admits_while_open: false,
        }
    }
}

impl BreakerConfig {
    /// Panics on numbers that make no sense: configuration is checked once.
    pub fn validate(&self) {
        for (name, value) in [
            (
                "failure_rate_percent_threshold",
                self.failure_rate_percent_threshold,
            ),
            (
                "slow_call_rate_percent_threshold",
                self.slow_call_rate_percent_threshold,
            ),
        ] {
            assert!(
                value > 0.0 && value <= 100.0,
                "{name} must be in (0, 100], got {value}"
            );
        }
        assert!(
            (1..=WINDOW_SIZE_CALLS_MAX).contains(&self.window_size_calls),
            "window_size_calls must be in 1..={WINDOW_SIZE_CALLS_MAX}, got {}",
            self.window_size_calls
        );
        assert!(self.calls_min >= 1, "calls_min must be at least 1");
        assert!(
            (1..=HALF_OPEN_CALLS_PERMITTED_MAX).contains(&self.half_open_calls_permitted),
            "half_open_calls_permitted must be in 1..={HALF_OPEN_CALLS_PERMITTED_MAX}, got {}",
            self.half_open_calls_permitted
        );
        assert!(
            !self.wait_in_open.is_zero(),
            "wait_in_open must be positive"
        );
        assert!(
            !self.half_open_wait_max.is_zero(),
            "half_open_wait_max must be positive: a half-open breaker must not wait forever"
        );
    }
}

/// The three states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// A stable name for traces.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    /// Whether `from → to` is one of the four legal transitions (oracle CB3).
    pub fn is_legal_transition(from: BreakerState, to: BreakerState) -> bool {
        use BreakerState::{Closed, HalfOpen, Open};
        matches!(
            (from, to),
            (Closed, Open) | (Open, HalfOpen) | (HalfOpen, Open) | (HalfOpen, Closed)
        )
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a call ended, as the caller judges it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallResult {
    /// The call worked (a business refusal is a success: the downstream answered).
    Success,
    /// The call failed in a way that says the downstream is unwell (timeout, connection error,
    /// 5xx).
    Failure,
    /// Neither (for example cancelled by the caller): not counted; a half-open permit is given
    /// back, as resilience4j's `releasePermission` does.
    Ignored,
}

impl CallResult {
    fn as_str(self) -> &'static str {
        match self {
            CallResult::Success => "success",
            CallResult::Failure => "failure",
            CallResult::Ignored => "ignored",
        }
    }
}

/// Leave to make one call; hand it back to `record`.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a permit must be handed back to `record`"]
pub struct BreakerPermit {
    generation: u64,
    admitted_at: Duration,
    state: BreakerState,
}

impl BreakerPermit {
    /// The state that admitted the call.
    pub fn state(&self) -> BreakerState {
        self.state
    }
}

/// The breaker refused the call: run the fallback.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker {state}: retry after {retry_after:?}")]
pub struct BreakerRejection {
    /// Open, or half-open with every permit taken.
    pub state: BreakerState,
    /// When a call may be admitted again at the earliest (what `Retry-After` says).
    pub retry_after: Duration,
}

/// A count-based sliding window of call outcomes.
#[derive(Clone, Debug)]
struct Window {
    size_calls: u32,
    calls_min: u32,
    /// Oldest first: (failed, slow).
    calls: VecDeque<(bool, bool)>,
    failed: u32,
    slow: u32,
}

/// What a window says once enough calls are in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    BelowMinimumCalls,
    BelowThresholds,
    AboveThresholds { failure: bool },
}

impl Window {
    fn new(size_calls: u32, calls_min: u32) -> Window {
        Window {
            size_calls,
            calls_min: calls_min.min(size_calls),
            calls: VecDeque::with_capacity(size_calls as usize),
            failed: 0,
            slow: 0,
        }
    }

    fn record(&mut self, failed: bool, slow: bool) {
        if self.calls.len() == self.size_calls as usize {
            let (old_failed, old_slow) = self.calls.pop_front().expect("a full window");
            self.failed -= u32::from(old_failed);
            self.slow -= u32::from(old_slow);
        }
        self.calls.push_back((failed, slow));
        self.failed += u32::from(failed);
        self.slow += u32::from(slow);
        assert!(
            self.calls.len() <= self.size_calls as usize,
            "the window never holds more than its size"
        );
    }

    fn verdict(&self, config: &BreakerConfig) -> Verdict {
        let total = self.calls.len() as u32;
        if total < self.calls_min {
            return Verdict::BelowMinimumCalls;
        }
        // As resilience4j: a float percentage compared with ≥.
        let failure_rate = f64::from(self.failed) * 100.0 / f64::from(total);
        let slow_rate = f64::from(self.slow) * 100.0 / f64::from(total);
        let failure = failure_rate >= config.failure_rate_percent_threshold;
        if failure || slow_rate >= config.slow_call_rate_percent_threshold {
            Verdict::AboveThresholds { failure }
        } else {
            Verdict::BelowThresholds
        }
    }
}

#[derive(Clone, Debug)]
enum Inner {
    Closed {
        window: Window,
    },
    Open {
        /// Calls are refused while `now <= probe_after`.
        probe_after: Duration,
    },
    HalfOpen {
        entered_at: Duration,
        admitted: u32,
        window: Window,
    },
}

/// One circuit breaker (for example per upstream of the gateway).
#[derive(Clone, Debug)]
pub struct CircuitBreaker {
    name: String,
    config: BreakerConfig,
    inner: Inner,
    /// Increases at every transition; permits of an older generation are not counted.
    generation: u64,
}

impl CircuitBreaker {
    /// A closed breaker named `name` (the `breaker` field of its events).
    pub fn new(name: impl Into<String>, config: BreakerConfig) -> CircuitBreaker {
        config.validate();
        CircuitBreaker {
            name: name.into(),
            inner: Inner::Closed {
                window: Window::new(config.window_size_calls, config.calls_min),
            },
            config,
            generation: 0,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// The state as of the last call, without applying any transition that is due.
    pub fn state(&self) -> BreakerState {
        match self.inner {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Calls admitted in the current half-open state (0 in the others).
    pub fn half_open_admitted(&self) -> u32 {
        match self.inner {
            Inner::HalfOpen { admitted, .. } => admitted,
            _ => 0,
        }
    }

    /// Asks to make a call at `now`.
    pub fn try_acquire(&mut self, now: Duration) -> Result<BreakerPermit, BreakerRejection> {
        self.expire_half_open(now);
        if let Inner::Open { probe_after } = self.inner
            && now > probe_after
        {
            self.transition(now, BreakerState::HalfOpen, "wait_elapsed");
        }
        let generation = self.generation;
        let permitted = self.config.half_open_calls_permitted;
        let half_open_wait_max = self.config.half_open_wait_max;
        let planted_admits_while_open = self.config.planted_admits_while_open;
        let verdict = match &mut self.inner {
            Inner::Closed { .. } => Ok(0),
            // The planted bug (TEST ONLY, oracle CB2): the open state lets the call through.
            Inner::Open { .. } if planted_admits_while_open => Ok(0),
            Inner::Open { probe_after } => Err(BreakerRejection {
                state: BreakerState::Open,
                // Admitted strictly after `probe_after`.
                retry_after: (*probe_after - now).max(RETRY_AFTER_MIN),
            }),
            Inner::HalfOpen {
                entered_at,
                admitted,
                ..
            } => {
                if *admitted < permitted {
                    *admitted += 1;
                    Ok(*admitted)
                } else {
                    Err(BreakerRejection {
                        state: BreakerState::HalfOpen,
                        // The latest the half-open state can last.
                        retry_after: (*entered_at + half_open_wait_max)
                            .saturating_sub(now)
                            .max(RETRY_AFTER_MIN),
                    })
                }
            }
        };
        let state = self.state();
        match verdict {
            Ok(half_open_admitted) => {
                assert!(
                    half_open_admitted <= permitted,
                    "half-open admits at most {permitted} calls"
                );
                tracing::info!(
                    event = "breaker_admitted",
                    breaker = self.name.as_str(),
                    state = state.as_str(),
                    half_open_admitted,
                    half_open_permitted = permitted,
                );
                Ok(BreakerPermit {
                    generation,
                    admitted_at: now,
                    state,
                })
            }
            Err(rejection) => {
                tracing::info!(
                    event = "breaker_rejected",
                    breaker = self.name.as_str(),
                    state = state.as_str(),
                    retry_after_ms = millis(rejection.retry_after),
                );
                Err(rejection)
            }
        }
    }

    /// Reports the end of the call `permit` admitted, at `now`.
    pub fn record(&mut self, now: Duration, permit: BreakerPermit, result: CallResult) {
        assert!(
            permit.generation <= self.generation,
            "a permit from the future: this breaker did not issue it"
        );
        // A half-open state past its maximum wait is over before this outcome can decide it.
        self.expire_half_open(now);
        let duration = now.saturating_sub(permit.admitted_at);
        let slow = duration > self.config.slow_call_duration_threshold;
        let counted = permit.generation == self.generation && result != CallResult::Ignored;
        tracing::info!(
            event = "breaker_outcome",
            breaker = self.name.as_str(),
            outcome = result.as_str(),
            slow,
            counted,
            duration_ms = millis(duration),
        );
        if permit.generation != self.generation {
            // Admitted by an earlier state: that state is over (see the module docs).
            return;
        }
        let failed = result == CallResult::Failure;
        let config = self.config;
        let next = match &mut self.inner {
            // Only the planted bug issues permits while open; their outcomes count nowhere.
            Inner::Open { .. } if self.config.planted_admits_while_open => return,
            // A permit of the current generation cannot come from an open breaker.
            Inner::Open { .. } => unreachable!("an open breaker issues no permits"),
            Inner::Closed { window } => {
                if result == CallResult::Ignored {
                    return;
                }
                window.record(failed, slow);
                match window.verdict(&config) {
                    Verdict::AboveThresholds { failure } => Some((BreakerState::Open, failure)),
                    _ => None,
                }
            }
            Inner::HalfOpen {
                admitted, window, ..
            } => {
                if result == CallResult::Ignored {
                    // The permit goes back: another call may probe instead.
                    *admitted -= 1;
                    return;
                }
                window.record(failed, slow);
                match window.verdict(&config) {
                    Verdict::BelowMinimumCalls => None,
                    Verdict::BelowThresholds => Some((BreakerState::Closed, false)),
                    Verdict::AboveThresholds { failure } => Some((BreakerState::Open, failure)),
                }
            }
        };
        if let Some((to, failure)) = next {
            let reason = match (to, failure) {
                (BreakerState::Closed, _) => "below_thresholds",
                (_, true) => "failure_rate",
                (_, false) => "slow_call_rate",
            };
            self.transition(now, to, reason);
        }
    }

    /// Applies the half-open maximum wait at `now` (also done by `try_acquire`): for owners that
    /// want the transition in the trace when it is due rather than at the next call.
    pub fn tick(&mut self, now: Duration) {
        self.expire_half_open(now);
    }

    fn expire_half_open(&mut self, now: Duration) {
        if let Inner::HalfOpen { entered_at, .. } = self.inner
            && now >= entered_at + self.config.half_open_wait_max
        {
            self.transition(now, BreakerState::Open, "half_open_wait_max");
        }
    }

    fn transition(&mut self, now: Duration, to: BreakerState, reason: &'static str) {
        let from = self.state();
        assert!(
            BreakerState::is_legal_transition(from, to),
            "illegal breaker transition {from} -> {to}"
        );
        self.inner = match to {
            BreakerState::Closed => Inner::Closed {
                window: Window::new(self.config.window_size_calls, self.config.calls_min),
            },
            BreakerState::Open => Inner::Open {
                probe_after: now + self.config.wait_in_open,
            },
            BreakerState::HalfOpen => Inner::HalfOpen {
                entered_at: now,
                admitted: 0,
                window: Window::new(self.config.half_open_calls_permitted, self.config.calls_min),
            },
        };
        self.generation += 1;
        tracing::info!(
            event = "breaker_transition",
            breaker = self.name.as_str(),
            from = from.as_str(),
            to = to.as_str(),
            reason,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    fn config() -> BreakerConfig {
        BreakerConfig {
            failure_rate_percent_threshold: 50.0,
            slow_call_rate_percent_threshold: 100.0,
            slow_call_duration_threshold: 100 * MS,
            wait_in_open: 1000 * MS,
            half_open_calls_permitted: 3,
            half_open_wait_max: 5000 * MS,
            calls_min: 4,
            window_size_calls: 10,
            planted_admits_while_open: false,
        }
    }

    fn call(breaker: &mut CircuitBreaker, now: Duration, result: CallResult) {
        let permit = breaker.try_acquire(now).expect("admitted");
        breaker.record(now, permit, result);
    }

    #[test]
    fn opens_at_the_threshold_only_once_minimum_calls_are_in() {
        // Goal: no rate before min(calls_min, window) calls, and ≥ opens (CB4's minimum-calls
        // rule). Method: three failures stay closed (3 < 4 calls); a fourth call that is a
        // success makes 3/4 = 75 % ≥ 50 % and opens; a second breaker with exactly 2/4 = 50 %
        // opens too (≥, not >).
        let mut breaker = CircuitBreaker::new("b", config());
        for _ in 0..3 {
            call(&mut breaker, Duration::ZERO, CallResult::Failure);
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        call(&mut breaker, Duration::ZERO, CallResult::Success);
        assert_eq!(breaker.state(), BreakerState::Open);

        let mut exact = CircuitBreaker::new("b", config());
        for result in [
            CallResult::Success,
            CallResult::Failure,
            CallResult::Success,
            CallResult::Failure,
        ] {
            call(&mut exact, Duration::ZERO, result);
        }
        assert_eq!(exact.state(), BreakerState::Open);

        let mut below = CircuitBreaker::new("b", config());
        for result in [
            CallResult::Success,
            CallResult::Failure,
            CallResult::Success,
            CallResult::Success,
        ] {
            call(&mut below, Duration::ZERO, result);
        }
        assert_eq!(below.state(), BreakerState::Closed);
    }

    #[test]
    fn minimum_calls_is_capped_by_the_window_size() {
        // Goal: count-based windows use min(calls_min, window). Method: calls_min 100 with a
        // window of 2: two failures open the breaker.
        let mut breaker = CircuitBreaker::new(
            "b",
            BreakerConfig {
                calls_min: 100,
                window_size_calls: 2,
                ..config()
            },
        );
        call(&mut breaker, Duration::ZERO, CallResult::Failure);
        assert_eq!(breaker.state(), BreakerState::Closed);
        call(&mut breaker, Duration::ZERO, CallResult::Failure);
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[test]
    fn the_window_slides() {
        // Goal: only the last window_size calls count. Method: window 4, min 4: S F S S (25 %)
        // stays closed, two more successes push the failure out; then one failure is 1/4 and a
        // second is 2/4 = 50 %, which opens.
        let mut breaker = CircuitBreaker::new(
            "b",
            BreakerConfig {
                window_size_calls: 4,
                ..config()
            },
        );
        for result in [
            CallResult::Success,
            CallResult::Failure,
            CallResult::Success,
            CallResult::Success,
            CallResult::Success,
            CallResult::Success,
        ] {
            call(&mut breaker, Duration::ZERO, result);
            assert_eq!(breaker.state(), BreakerState::Closed);
        }
        call(&mut breaker, Duration::ZERO, CallResult::Failure);
        assert_eq!(breaker.state(), BreakerState::Closed, "1/4");
        call(&mut breaker, Duration::ZERO, CallResult::Failure);
        assert_eq!(breaker.state(), BreakerState::Open, "2/4 = 50 %");
    }

    #[test]
    fn slow_calls_open_the_breaker_even_when_they_succeed() {
        // Goal: the slow-call rate is a second threshold, and "slow" is strictly longer than the
        // threshold. Method: four successes each taking exactly the threshold stay closed; four
        // taking 1 ms more open (100 % ≥ 100 %).
        let mut breaker = CircuitBreaker::new("b", config());
        for _ in 0..4 {
            let permit = breaker.try_acquire(Duration::ZERO).unwrap();
            breaker.record(100 * MS, permit, CallResult::Success);
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        let mut breaker = CircuitBreaker::new("b", config());
        for _ in 0..4 {
            let permit = breaker.try_acquire(Duration::ZERO).unwrap();
            breaker.record(101 * MS, permit, CallResult::Success);
        }
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    fn opened_at(now: Duration) -> CircuitBreaker {
        let mut breaker = CircuitBreaker::new("b", config());
        for _ in 0..4 {
            call(&mut breaker, now, CallResult::Failure);
        }
        assert_eq!(breaker.state(), BreakerState::Open);
        breaker
    }

    #[test]
    fn open_rejects_until_strictly_after_the_wait_with_a_retry_after() {
        // Goal: no call while open (CB2), the probe lazily after the wait, and a Retry-After
        // that points at the end of the wait. Method: open at t = 10 ms; ask at 10 ms, at the
        // last instant (1010 ms) and 1 ms later.
        let start = 10 * MS;
        let mut breaker = opened_at(start);
        let rejection = breaker.try_acquire(start).unwrap_err();
        assert_eq!(rejection.state, BreakerState::Open);
        assert_eq!(rejection.retry_after, 1000 * MS);
        let rejection = breaker.try_acquire(start + 1000 * MS).unwrap_err();
        assert_eq!(rejection.retry_after, RETRY_AFTER_MIN);
        assert_eq!(breaker.state(), BreakerState::Open);
        let permit = breaker.try_acquire(start + 1001 * MS).unwrap();
        assert_eq!(permit.state(), BreakerState::HalfOpen);
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        breaker.record(start + 1001 * MS, permit, CallResult::Success);
    }

    #[test]
    fn the_planted_breaker_lets_calls_through_while_open() {
        // Goal: the TEST ONLY switch `planted_admits_while_open` really breaks CB2, so the
        // oracle's planted test has a fault to catch. Method: open the planted breaker, then ask
        // during the open wait: admitted, traced as `breaker_admitted` with state open, and the
        // call's outcome changes nothing; the wait still leads to half-open.
        let (trace, _guard) = crate::testing::record_trace();
        let mut breaker = CircuitBreaker::new(
            "b",
            BreakerConfig {
                planted_admits_while_open: true,
                ..config()
            },
        );
        for _ in 0..4 {
            call(&mut breaker, Duration::ZERO, CallResult::Failure);
        }
        assert_eq!(breaker.state(), BreakerState::Open);
        let permit = breaker
            .try_acquire(10 * MS)
            .expect("the planted bug admits");
        assert_eq!(permit.state(), BreakerState::Open);
        breaker.record(20 * MS, permit, CallResult::Failure);
        assert_eq!(breaker.state(), BreakerState::Open);
        let admitted = trace.named("breaker_admitted");
        let last = admitted.last().expect("admissions traced");
        assert_eq!(last.field("state"), Some("open"));
        assert_eq!(last.field("half_open_permitted"), Some("3"));
        let probe = breaker.try_acquire(1001 * MS).expect("half-open probe");
        assert_eq!(probe.state(), BreakerState::HalfOpen);
        breaker.record(1001 * MS, probe, CallResult::Success);
    }

    #[test]
    fn half_open_admits_exactly_n_then_decides_on_their_outcomes() {
        // Goal: exactly N calls in half-open (CB1), decided by a fresh window of N. Method: open,
        // pass the wait, take 3 permits, a 4th is refused; two successes and one failure
        // (33 % < 50 %) close the breaker. A second run with two failures reopens it.
        for (results, expected) in [
            (
                [
                    CallResult::Success,
                    CallResult::Success,
                    CallResult::Failure,
                ],
                BreakerState::Closed,
            ),
            (
                [
                    CallResult::Success,
                    CallResult::Failure,
                    CallResult::Failure,
                ],
                BreakerState::Open,
            ),
        ] {
            let mut breaker = opened_at(Duration::ZERO);
            let t = 2000 * MS;
            let permits: Vec<BreakerPermit> =
                (0..3).map(|_| breaker.try_acquire(t).unwrap()).collect();
            assert_eq!(breaker.half_open_admitted(), 3);
            let rejection = breaker.try_acquire(t).unwrap_err();
            assert_eq!(rejection.state, BreakerState::HalfOpen);
            for (index, (permit, result)) in permits.into_iter().zip(results).enumerate() {
                breaker.record(t, permit, result);
                if index < 2 {
                    assert_eq!(breaker.state(), BreakerState::HalfOpen, "undecided");
                }
            }
            assert_eq!(breaker.state(), expected);
        }
    }

    #[test]
    fn half_open_reopens_after_its_maximum_wait() {
        // Goal: a half-open breaker whose probes never finish does not wait forever. Method:
        // take all permits, never record them, and ask again at entered + half_open_wait_max.
        let mut breaker = opened_at(Duration::ZERO);
        let entered = 2000 * MS;
        let permits: Vec<BreakerPermit> = (0..3)
            .map(|_| breaker.try_acquire(entered).unwrap())
            .collect();
        let rejection = breaker.try_acquire(entered + 4999 * MS).unwrap_err();
        assert_eq!(rejection.state, BreakerState::HalfOpen);
        assert_eq!(rejection.retry_after, MS);
        let rejection = breaker.try_acquire(entered + 5000 * MS).unwrap_err();
        assert_eq!(rejection.state, BreakerState::Open);
        // The late outcomes of the old probes are not counted and change nothing.
        for permit in permits {
            breaker.record(entered + 5001 * MS, permit, CallResult::Success);
        }
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[test]
    fn ignored_results_give_the_half_open_permit_back() {
        // Goal: a cancelled probe does not use up a half-open permit. Method: take 3, ignore one,
        // and a 4th call is admitted.
        let mut breaker = opened_at(Duration::ZERO);
        let t = 2000 * MS;
        let first = breaker.try_acquire(t).unwrap();
        let _second = breaker.try_acquire(t).unwrap();
        let _third = breaker.try_acquire(t).unwrap();
        breaker.record(t, first, CallResult::Ignored);
        assert!(breaker.try_acquire(t).is_ok());
        assert!(breaker.try_acquire(t).is_err());
    }

    #[test]
    fn outcomes_from_an_earlier_state_are_not_counted() {
        // Goal: a call admitted while closed cannot decide a later half-open state. Method: admit
        // a call, open the breaker with other calls, reach half-open, then report the old call
        // as a success: the breaker stays half-open with its 3 permits intact.
        let mut breaker = CircuitBreaker::new("b", config());
        let old = breaker.try_acquire(Duration::ZERO).unwrap();
        for _ in 0..4 {
            call(&mut breaker, Duration::ZERO, CallResult::Failure);
        }
        let probe = breaker.try_acquire(2000 * MS).unwrap();
        breaker.record(2000 * MS, old, CallResult::Success);
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert_eq!(breaker.half_open_admitted(), 1);
        breaker.record(2000 * MS, probe, CallResult::Success);
    }

    #[test]
    fn only_the_four_transitions_are_legal() {
        // Goal: the CB3 relation is exactly C→O, O→H, H→O, H→C. Method: enumerate all pairs.
        use BreakerState::{Closed, HalfOpen, Open};
        let states = [Closed, Open, HalfOpen];
        let mut legal = Vec::new();
        for from in states {
            for to in states {
                if BreakerState::is_legal_transition(from, to) {
                    legal.push((from, to));
                }
            }
        }
        assert_eq!(
            legal,
            [
                (Closed, Open),
                (Open, HalfOpen),
                (HalfOpen, Closed),
                (HalfOpen, Open)
            ]
        );
    }

    #[test]
    #[should_panic(expected = "half_open_wait_max")]
    fn a_half_open_state_that_waits_forever_is_refused() {
        // Goal: the configuration cannot leave a breaker stuck half-open. Method: a zero wait.
        let _ = CircuitBreaker::new(
            "b",
            BreakerConfig {
                half_open_wait_max: Duration::ZERO,
                ..config()
            },
        );
    }

    /// One step of a random workload against a breaker.
    #[derive(Clone, Debug)]
    enum Op {
        /// Advance time by this many ms, then ask for a permit.
        Acquire(u64),
        /// Advance time, then report the held permit at this index (mod len) with a result.
        Record(u64, usize, u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u64..400).prop_map(Op::Acquire),
            (0u64..400, any::<usize>(), 0u8..3).prop_map(|(dt, i, r)| Op::Record(dt, i, r)),
        ]
    }

    proptest! {
        #[test]
        fn breaker_invariants_hold_under_any_workload(ops in proptest::collection::vec(op(), 1..300)) {
            // Goal: CB1 (≤ N admitted per half-open period), CB2 (no admission while open before
            // the wait), CB3 (only legal transitions) for any interleaving. Method: drive a
            // breaker with random acquires and outcomes (success, failure, ignored, some slow)
            // and check each step against an outside observer that only sees states and
            // admissions.
            let config = config();
            let mut breaker = CircuitBreaker::new("p", config);
            let mut now = Duration::ZERO;
            let mut held: Vec<BreakerPermit> = Vec::new();
            let mut opened_at: Option<Duration> = None;
            let mut half_open_admissions = 0u32;
            for op in ops {
                let before = breaker.state();
                match op {
                    Op::Acquire(dt) => {
                        now += Duration::from_millis(dt);
                        let result = breaker.try_acquire(now);
                        let after = breaker.state();
                        if after != before {
                            prop_assert!(BreakerState::is_legal_transition(before, after));
                        }
                        if after == BreakerState::HalfOpen && before != BreakerState::HalfOpen {
                            half_open_admissions = 0;
                        }
                        if let Ok(permit) = result {
                            prop_assert_ne!(permit.state(), BreakerState::Open);
                            if let Some(at) = opened_at {
                                prop_assert!(now > at + config.wait_in_open, "CB2");
                            }
                            if permit.state() == BreakerState::HalfOpen {
                                half_open_admissions += 1;
                            }
                            held.push(permit);
                        }
                    }
                    Op::Record(dt, index, result) => {
                        now += Duration::from_millis(dt);
                        breaker.tick(now);
                        let mid = breaker.state();
                        if mid != before {
                            prop_assert!(BreakerState::is_legal_transition(before, mid));
                            if mid == BreakerState::Open {
                                opened_at = Some(now);
                            }
                        }
                        if held.is_empty() {
                            continue;
                        }
                        let permit = held.swap_remove(index % held.len());
                        let result = [CallResult::Success, CallResult::Failure, CallResult::Ignored][result as usize];
                        if result == CallResult::Ignored && breaker.state() == BreakerState::HalfOpen {
                            // The observer counts net admissions, as the breaker does.
                            half_open_admissions = half_open_admissions.saturating_sub(
                                u32::from(permit.generation == breaker.generation));
                        }
                        breaker.record(now, permit, result);
                        let after = breaker.state();
                        if after != mid {
                            prop_assert!(BreakerState::is_legal_transition(mid, after));
                        }
                    }
                }
                let after = breaker.state();
                if after == BreakerState::Open && before != BreakerState::Open {
                    opened_at = Some(now);
                }
                if after != BreakerState::Open {
                    opened_at = None;
                }
                prop_assert!(half_open_admissions <= config.half_open_calls_permitted, "CB1");
                prop_assert_eq!(breaker.half_open_admitted() <= config.half_open_calls_permitted, true);
            }
        }
    }
}
