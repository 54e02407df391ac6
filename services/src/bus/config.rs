//! The bus's configuration: its topics and their consumer groups, delivery and retention
//! numbers, where its log lives.
//!
//! Owns `BusConfig`, `TopicConfig`, their defaults and validation.

use std::collections::BTreeSet;
use std::time::Duration;

use super::protocol::{GroupName, TopicName};
use crate::storage::ReadRetry;

/// The port the bus listens on unless configured otherwise.
pub const BUS_PORT: u16 = 7400;

/// Most topics.
pub const TOPICS_MAX: usize = 64;

/// Most groups per topic.
pub const GROUPS_MAX: usize = 16;

/// Upper bound of `BusConfig::max_deliver`.
pub const MAX_DELIVER_LIMIT: u32 = 1000;

/// Upper bound of `BusConfig::messages_max`: a topic's retained messages live in memory.
pub const MESSAGES_MAX_LIMIT: usize = 1_000_000;

/// Most entries in a topic's duplicate window, whatever its duration.
pub const DUPLICATE_ENTRIES_MAX: usize = 100_000;

/// One topic and the groups that consume it.
#[derive(Clone, Debug, PartialEq)]
pub struct TopicConfig {
    pub name: TopicName,
    /// At least one: a topic nobody consumes would only fill up.
    pub groups: Vec<GroupName>,
}

/// Everything `run_bus` and `BusCore` need besides the traits.
#[derive(Clone, Debug, PartialEq)]
pub struct BusConfig {
    /// RPC port.
    pub port: u16,
    /// Where the log file lives in `Storage`.
    pub log_path: String,
    pub topics: Vec<TopicConfig>,
    /// The ack wait after each delivery: element `n − 1` after the `n`-th, the last one
    /// repeated (JetStream's `BackOff`, which overrides `AckWait`). A message not acked within
    /// it is delivered again, or dead-lettered after `max_deliver` deliveries.
    pub ack_waits: Vec<Duration>,
    /// Most deliveries of one message to one group; then it goes to the group's dead-letter
    /// queue.
    pub max_deliver: u32,
    /// Most messages delivered to a group and not yet acked (or due again) at once.
    pub max_ack_pending: u32,
    /// How long a message id is remembered for de-duplication of publishes.
    pub duplicate_window: Duration,
    /// Most messages a topic retains (not yet processed by every group, or dead-lettered).
    pub messages_max: usize,
    /// Longest a fetch may wait for a message.
    pub fetch_wait_max: Duration,
    /// Records appended since the last full rewrite after which the log is compacted (rewritten
    /// with only what the current state needs).
    pub compact_after_records: u64,
    /// Wait before the next write after a failed one.
    pub write_retry_delay: Duration,
    /// How reading the log at start-up rides out a failing disk.
    pub log_read_retry: ReadRetry,
    /// PLANTED BUG, for testing the oracles only: a message that exhausted `max_deliver` is
    /// dropped silently instead of dead-lettered. A correct bus never sets it; a test sets it to
    /// show that oracle MQ1 (every published message is acked or dead-lettered) catches it.
    pub drop_after_max_deliver: bool,
}

impl BusConfig {
    /// Defaults after JetStream: ack wait 30 s, duplicate window 2 min, 1000 pending acks;
    /// `max_deliver` 20 after RabbitMQ's quorum queues (JetStream's default is unlimited, which
    /// would never dead-letter); 10 000 retained messages per topic; fetches wait at most 30 s;
    /// compaction after 10 000 records; disk retry after 10 ms (start-up reads per `ReadRetry::default`); log
    /// at `bus/log`.
    pub fn new(topics: Vec<TopicConfig>) -> BusConfig {
        BusConfig {
            port: BUS_PORT,
            log_path: "bus/log".to_owned(),
            topics,
            ack_waits: vec![Duration::from_secs(30)],
            max_deliver: 20,
            max_ack_pending: 1000,
            duplicate_window: Duration::from_secs(120),
            messages_max: 10_000,
            fetch_wait_max: Duration::from_secs(30),
            compact_after_records: 10_000,
            write_retry_delay: Duration::from_millis(10),
            log_read_retry: ReadRetry::default(),
            drop_after_max_deliver: false,
        }
    }

    /// The ack wait after the `delivery`-th delivery (1-based).
    pub fn ack_wait(&self, delivery: u32) -> Duration {
        assert!(delivery >= 1, "deliveries count from 1");
        let index = (delivery as usize - 1).min(self.ack_waits.len() - 1);
        self.ack_waits[index]
    }

    /// Panics on a configuration that cannot work.
    pub fn validate(&self) {
        assert!(!self.log_path.is_empty(), "log_path must not be empty");
        assert!(
            !self.topics.is_empty() && self.topics.len() <= TOPICS_MAX,
            "1..={TOPICS_MAX} topics, got {}",
            self.topics.len()
        );
        let names: BTreeSet<&TopicName> = self.topics.iter().map(|t| &t.name).collect();
        assert_eq!(names.len(), self.topics.len(), "topic names must be unique");
        for topic in &self.topics {
            assert!(
                !topic.groups.is_empty() && topic.groups.len() <= GROUPS_MAX,
                "topic {}: 1..={GROUPS_MAX} groups, got {}",
                topic.name,
                topic.groups.len()
            );
            let groups: BTreeSet<&GroupName> = topic.groups.iter().collect();
            assert_eq!(
                groups.len(),
                topic.groups.len(),
                "topic {}: group names must be unique",
                topic.name
            );
        }
        assert!(
            !self.ack_waits.is_empty() && self.ack_waits.iter().all(|wait| !wait.is_zero()),
            "ack_waits must hold at least one positive wait"
        );
        assert!(
            (1..=MAX_DELIVER_LIMIT).contains(&self.max_deliver),
            "max_deliver must be in 1..={MAX_DELIVER_LIMIT}, got {}",
            self.max_deliver
        );
        assert!(self.max_ack_pending > 0, "max_ack_pending must be positive");
        assert!(
            (1..=MESSAGES_MAX_LIMIT).contains(&self.messages_max),
            "messages_max must be in 1..={MESSAGES_MAX_LIMIT}, got {}",
            self.messages_max
        );
        assert!(
            self.compact_after_records > 0,
            "compact_after_records must be positive"
        );
        assert!(
            !self.write_retry_delay.is_zero(),
            "write_retry_delay must be positive (a zero delay would spin on a failing disk)"
        );
        self.log_read_retry.validate();
    }
}
