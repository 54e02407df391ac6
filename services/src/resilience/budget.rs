//! Retry budget: retries are paid for by recent successes, plus a small standing reserve.
//!
//! Owns `RetryBudget`, a port of tower's `TpsBudget` (tower 0.5.3, `retry/budget/tps_budget.rs`)
//! with time passed in instead of `Instant::now()` and plain integers instead of atomics. It does
//! not decide whether a request may be retried at all (`retry::decide_retry` asks the budget only
//! after the idempotency key, the error and the attempts allowed it).
//!
//! Semantics, as tower's: every success `deposit`s; every retry must `withdraw` first and is
//! refused when the balance is short. With `retry_ratio` r ≤ 1 a deposit adds 1 and a withdrawal
//! costs ⌊1/r⌋ (so each success funds r retries); with r > 1 a deposit adds 1000 and a withdrawal
//! costs ⌊1000/r⌋; with r = 0 deposits add nothing. Deposits and withdrawals live in ten slots
//! that each cover a tenth of `ttl`, so they expire after `ttl`. The reserve is
//! `reserve_per_s · ttl_s · withdrawal cost` and never expires, but withdrawals against it do: a
//! quiet caller may retry `reserve_per_s` times per second. The slot rotation is tower's, down to
//! its quirk that a generation starts at the rotation time, not on a fixed grid.
//!
//! Events (INFO): `retry_budget_exhausted` (budget, balance) when a withdrawal is refused.

use std::time::Duration;

/// Slots the window is cut into (tower's `windows`).
pub const SLOTS: usize = 10;

/// The numbers of a budget; defaults are `TpsBudget::default()`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryBudgetConfig {
    /// How long a deposit or withdrawal counts, 1..=60 s [ttl 10 s].
    pub ttl: Duration,
    /// Retries per second allowed without any success [min_per_sec 10].
    pub reserve_per_s: u32,
    /// Retries each success funds, 0..=1000 [retry_percent 0.2].
    pub retry_ratio: f64,
}

impl Default for RetryBudgetConfig {
    fn default() -> RetryBudgetConfig {
        RetryBudgetConfig {
            ttl: Duration::from_secs(10),
            reserve_per_s: 10,
            retry_ratio: 0.2,
        }
    }
}

impl RetryBudgetConfig {
    /// Panics outside tower's (finagle's) ranges.
    pub fn validate(&self) {
        assert!(
            self.ttl >= Duration::from_secs(1) && self.ttl <= Duration::from_secs(60),
            "ttl must be within 1..=60 s, got {:?}",
            self.ttl
        );
        assert!(
            (0.0..=1000.0).contains(&self.retry_ratio),
            "retry_ratio must be within 0..=1000, got {}",
            self.retry_ratio
        );
        assert!(
            self.reserve_per_s < i32::MAX as u32,
            "reserve_per_s must be below 2^31"
        );
    }
}

/// One budget (for example per upstream of the gateway).
#[derive(Clone, Debug)]
pub struct RetryBudget {
    name: String,
    reserve: i64,
    slots: [i64; SLOTS],
    /// Slot the writer will be stored into at the next rotation.
    index: usize,
    /// When the current generation started.
    generation_at: Duration,
    slot_length: Duration,
    writer: i64,
    deposit_amount: i64,
    withdraw_amount: i64,
}

impl RetryBudget {
    /// A budget named `name` (the `budget` field of its events), starting at `now`.
    pub fn new(name: impl Into<String>, config: RetryBudgetConfig, now: Duration) -> RetryBudget {
        config.validate();
        let (deposit_amount, withdraw_amount) = if config.retry_ratio == 0.0 {
            (0, 1)
        } else if config.retry_ratio <= 1.0 {
            (1, (1.0 / config.retry_ratio) as i64)
        } else {
            (1000, (1000.0 / config.retry_ratio) as i64)
        };
        let reserve = i64::from(config.reserve_per_s)
            .saturating_mul(config.ttl.as_secs() as i64)
            .saturating_mul(withdraw_amount);
        RetryBudget {
            name: name.into(),
            reserve,
            slots: [0; SLOTS],
            index: 0,
            generation_at: now,
            slot_length: config.ttl / SLOTS as u32,
            writer: 0,
            deposit_amount,
            withdraw_amount,
        }
    }

    /// A success at `now` funds future retries.
    pub fn deposit(&mut self, now: Duration) {
        self.expire(now);
        self.writer = self.writer.saturating_add(self.deposit_amount);
    }

    /// Asks to pay for one retry at `now`; `false` (and an event) when the balance is short.
    pub fn withdraw(&mut self, now: Duration) -> bool {
        self.expire(now);
        let balance = self.sum();
        if balance >= self.withdraw_amount {
            self.writer = self.writer.saturating_sub(self.withdraw_amount);
            true
        } else {
            tracing::info!(
                event = "retry_budget_exhausted",
                budget = self.name.as_str(),
                balance
            );
            false
        }
    }

    /// Whole retries the balance pays for at `now`.
    pub fn retries_available(&mut self, now: Duration) -> u64 {
        self.expire(now);
        u64::try_from(self.sum().max(0) / self.withdraw_amount).unwrap_or(0)
    }

    fn sum(&self) -> i64 {
        let windowed = self
            .slots
            .iter()
            .fold(0i64, |sum, slot| sum.saturating_add(*slot));
        self.writer
            .saturating_add(windowed)
            .saturating_add(self.reserve)
    }

    fn expire(&mut self, now: Duration) {
        let elapsed = now.saturating_sub(self.generation_at);
        if elapsed < self.slot_length {
            return;
        }
        self.slots[self.index] = std::mem::take(&mut self.writer);
        // tower loops `while elapsed > slot_length { clear; elapsed -= slot_length }`: that is
        // ⌈elapsed / slot⌉ − 1 slots cleared, computed here without the loop.
        let slot_ns = self.slot_length.as_nanos();
        let cleared = elapsed.as_nanos().div_ceil(slot_ns) - 1;
        for offset in 0..cleared.min(SLOTS as u128) as usize {
            self.slots[(self.index + 1 + offset) % SLOTS] = 0;
        }
        self.index = (self.index + 1 + (cleared % SLOTS as u128) as usize) % SLOTS;
        self.generation_at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_reserve_allows_reserve_per_s_retries_each_second() {
        // Goal: with no success at all, a caller may retry reserve_per_s · ttl times within a
        // ttl, and withdrawals expire after the ttl (tower's reserve). Method: default budget,
        // withdraw at t = 0 until refused (10 · 10 = 100), then again after the ttl.
        let mut budget = RetryBudget::new("b", RetryBudgetConfig::default(), Duration::ZERO);
        let mut granted = 0;
        while budget.withdraw(Duration::ZERO) {
            granted += 1;
            assert!(granted <= 1000, "the reserve is finite");
        }
        assert_eq!(granted, 100);
        assert!(!budget.withdraw(5 * S), "still within the ttl");
        assert!(budget.withdraw(11 * S), "the withdrawals expired");
    }

    #[test]
    fn each_success_funds_a_share_of_a_retry() {
        // Goal: retry_ratio 0.2 means five successes pay for one retry. Method: no reserve; 4
        // deposits do not pay for a retry, the 5th does, and only one.
        let config = RetryBudgetConfig {
            reserve_per_s: 0,
            ..RetryBudgetConfig::default()
        };
        let mut budget = RetryBudget::new("b", config, Duration::ZERO);
        for _ in 0..4 {
            budget.deposit(MS);
        }
        assert!(!budget.withdraw(MS));
        budget.deposit(MS);
        assert!(budget.withdraw(MS));
        assert!(!budget.withdraw(MS));
    }

    #[test]
    fn deposits_expire_after_the_ttl() {
        // Goal: only recent successes count. Method: 50 deposits (10 retries) at t = 0; after
        // the ttl none is left.
        let config = RetryBudgetConfig {
            reserve_per_s: 0,
            ..RetryBudgetConfig::default()
        };
        let mut budget = RetryBudget::new("b", config, Duration::ZERO);
        for _ in 0..50 {
            budget.deposit(Duration::ZERO);
        }
        assert_eq!(budget.retries_available(9 * S), 10);
        assert_eq!(budget.retries_available(20 * S), 0);
    }

    #[test]
    fn ratios_above_one_fund_several_retries_per_success() {
        // Goal: tower's r > 1 branch (deposit 1000, withdraw ⌊1000/r⌋). Method: r = 2, no
        // reserve: one success pays for exactly two retries.
        let config = RetryBudgetConfig {
            reserve_per_s: 0,
            retry_ratio: 2.0,
            ..RetryBudgetConfig::default()
        };
        let mut budget = RetryBudget::new("b", config, Duration::ZERO);
        budget.deposit(Duration::ZERO);
        assert!(budget.withdraw(Duration::ZERO));
        assert!(budget.withdraw(Duration::ZERO));
        assert!(!budget.withdraw(Duration::ZERO));
    }

    proptest! {
        #[test]
        fn retries_never_exceed_the_share_of_successes_plus_the_reserve(
            steps in proptest::collection::vec((0u64..3_000, any::<bool>()), 1..400),
        ) {
            // Goal: the budget never pays for more than the successes fund plus the reserve:
            // granted ≤ ⌊successes / 5⌋ + 100 per ttl started (one more for the slot grain).
            // Method: random deposits and withdrawals at increasing times, default budget.
            let mut budget = RetryBudget::new("p", RetryBudgetConfig::default(), Duration::ZERO);
            let mut now = Duration::ZERO;
            let (mut successes, mut granted) = (0u64, 0u64);
            for (dt_ms, success) in steps {
                now += Duration::from_millis(dt_ms);
                if success {
                    budget.deposit(now);
                    successes += 1;
                } else if budget.withdraw(now) {
                    granted += 1;
                }
                let ttls = now.as_secs() / 10 + 2;
                prop_assert!(granted <= successes / 5 + 100 * ttls,
                    "granted {} successes {} at {:?}", granted, successes, now);
            }
        }
    }
}
