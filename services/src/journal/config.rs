//! The journal's configuration: where it listens, where its log lives, its limits.
//!
//! Owns `JournalConfig`, its defaults and its validation. Plain data built by the caller (the
//! simulator from a scenario, a deployment from its own file).

use std::time::Duration;

use crate::storage::ReadRetry;

/// The port the journal listens on unless configured otherwise.
pub const JOURNAL_PORT: u16 = 7300;

/// Upper bound of `JournalConfig::events_max`: the whole log is held in memory.
pub const EVENTS_MAX_LIMIT: u64 = 10_000_000;

/// Upper bound of `JournalConfig::read_wait_max`.
pub const READ_WAIT_MAX_LIMIT: Duration = Duration::from_secs(60);

/// Everything `run_journal` and `JournalCore` need besides the traits.
#[derive(Clone, Debug, PartialEq)]
pub struct JournalConfig {
    /// RPC port.
    pub port: u16,
    /// Where the log file lives in `Storage`.
    pub log_path: String,
    /// Most events the journal holds; appends beyond are refused `JournalFull`.
    pub events_max: u64,
    /// Longest a `ReadAll` may wait for new events (a longer `wait_ms` is cut to this).
    pub read_wait_max: Duration,
    /// Wait before the next write after a failed one.
    pub write_retry_delay: Duration,
    /// How reading the log at start-up rides out a failing disk.
    pub log_read_retry: ReadRetry,
    /// PLANTED BUG, for testing the oracles only: acknowledge an append as soon as it is
    /// decided, before its bytes are synced, so a crash can lose an acknowledged event. A
    /// correct journal never sets it; a test sets it to show that oracle ES6 (every acknowledged
    /// append survives a crash) catches the violation.
    pub ack_before_sync: bool,
}

impl Default for JournalConfig {
    /// Port `JOURNAL_PORT`, log at `journal/log`, up to 1 000 000 events, long polls of at most
    /// 30 s (KurrentDB's persistent-subscription message timeout), disk retry after 10 ms (start-up reads per
    /// `ReadRetry::default`), acks after sync.
    fn default() -> JournalConfig {
        JournalConfig {
            port: JOURNAL_PORT,
            log_path: "journal/log".to_owned(),
            events_max: 1_000_000,
            read_wait_max: Duration::from_secs(30),
            write_retry_delay: Duration::from_millis(10),
            log_read_retry: ReadRetry::default(),
            ack_before_sync: false,
        }
    }
}

impl JournalConfig {
    /// Panics on a configuration that cannot work.
    pub fn validate(&self) {
        assert!(!self.log_path.is_empty(), "log_path must not be empty");
        assert!(
            (1..=EVENTS_MAX_LIMIT).contains(&self.events_max),
            "events_max must be in 1..={EVENTS_MAX_LIMIT}, got {}",
            self.events_max
        );
        assert!(
            self.read_wait_max <= READ_WAIT_MAX_LIMIT,
            "read_wait_max {:?} is above {READ_WAIT_MAX_LIMIT:?}",
            self.read_wait_max
        );
        assert!(
            !self.write_retry_delay.is_zero(),
            "write_retry_delay must be positive (a zero delay would spin on a failing disk)"
        );
        self.log_read_retry.validate();
    }
}
