//! The bus's logic as a pure state machine: `BusCore`.
//!
//! Owns every topic's retained messages and duplicate window, every group's deliveries, acks
//! and dead-letter queue, and the bookkeeping of what is durable. Time comes in as `now`; no
//! I/O.
//!
//! One function changes the state: `apply(record)`. A request builds the `LogRecord` of its
//! change, applies it and queues it for the next write; recovery applies the records read from
//! the file. So the state replayed after a crash is, by construction, the state that was live
//! (up to what was durable).
//!
//! A message, per group: `new → in flight (delivery n, ack wait running) → acked | in flight
//! again after the wait (n + 1) | dead-lettered` — dead-lettered when its ack wait runs out
//! after `max_deliver` deliveries, or when the consumer terminates it. Never dropped: a message
//! leaves a topic only once every group acked it; a dead-lettered one stays, readable in the
//! group's dead-letter queue, and counts against `messages_max` (a full topic refuses publishes
//! rather than dropping anything).
//!
//! Answers wait for the durability of what they report: a publish for its record, a duplicate
//! for the original's, a fetch for the records of its deliveries (so the delivery count
//! survives a crash and `max_deliver` holds across restarts), an ack for its record. Messages
//! are delivered only once their publish is durable. Events about answered requests are traced
//! when the answer is released; a dead-lettering after `max_deliver` (nobody waits for it) is
//! traced when decided.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use super::config::{BusConfig, DUPLICATE_ENTRIES_MAX};
use super::durable::{self, LogError, LogRecord};
use super::protocol::{
    BusRequest, BusResponse, DeadLetter, DeadReason, Delivery, FETCH_COUNT_MAX, GroupName,
    MessageId, PAYLOAD_LENGTH_MAX, RejectReason, TopicName,
};
use crate::durable_server::{DurableCore, ReplyTo, Write, WriteMode};

/// Most answers that may wait for the disk at once; beyond, requests are refused `Overloaded`.
pub const PENDING_REPLIES_MAX: usize = 1024;

/// Most fetches waiting for messages at once; beyond, a fetch is answered at once (empty).
pub const WAITING_FETCHES_MAX: usize = 256;

#[derive(Clone, Debug)]
struct Message {
    msg_id: MessageId,
    payload: Vec<u8>,
    /// Durable once `records_durable` reaches this.
    durable_at: u64,
}

#[derive(Clone, Copy, Debug)]
struct InFlight {
    deliveries: u32,
    /// `Some`: waiting for the ack until then. `None`: the wait ran out; due for redelivery.
    due_at: Option<Duration>,
}

#[derive(Clone, Copy, Debug)]
struct Dead {
    deliveries: u32,
    reason: DeadReason,
}

#[derive(Clone, Debug, Default)]
struct Group {
    in_flight: BTreeMap<u64, InFlight>,
    /// Acked messages still retained (for another group).
    acked: BTreeSet<u64>,
    dead: BTreeMap<u64, Dead>,
}

#[derive(Clone, Debug, Default)]
struct Topic {
    messages: BTreeMap<u64, Message>,
    sequence_next: u64,
    /// The duplicate window: id → sequence.
    remembered: BTreeMap<MessageId, u64>,
    /// Expiry order of the window: (forget at, id, sequence).
    remembered_order: VecDeque<(Duration, MessageId, u64)>,
    groups: BTreeMap<GroupName, Group>,
}

/// What to trace when an answer is released.
#[derive(Clone, Debug)]
enum ReleaseTrace {
    None,
    Published {
        topic: TopicName,
        sequence: u64,
        msg_id: MessageId,
        duplicate: bool,
    },
    Delivered {
        topic: TopicName,
        group: GroupName,
    },
    Acked {
        topic: TopicName,
        group: GroupName,
        sequence: u64,
    },
    Termed {
        topic: TopicName,
        group: GroupName,
        sequence: u64,
        msg_id: MessageId,
        deliveries: u32,
    },
}

#[derive(Clone, Debug)]
struct PendingReply {
    reply_to: ReplyTo,
    upto: u64,
    response: BusResponse,
    trace: ReleaseTrace,
}

#[derive(Clone, Debug)]
struct WaitingFetch {
    reply_to: ReplyTo,
    topic: TopicName,
    group: GroupName,
    count_max: u32,
    until: Duration,
}

/// The bus's state machine (see the module docs).
#[derive(Clone, Debug)]
pub struct BusCore {
    config: BusConfig,
    topics: BTreeMap<TopicName, Topic>,
    /// Records decided since the log began (a logical count: compaction does not reset it).
    records_decided: u64,
    records_durable: u64,
    unsent: Vec<u8>,
    write_in_flight: Option<u64>,
    rewrite: bool,
    records_since_rewrite: u64,
    pending: Vec<PendingReply>,
    fetches: Vec<WaitingFetch>,
}

impl BusCore {
    /// The bus as its log file describes it (`None`: first start). A torn tail is dropped and
    /// the file rewritten by the first write. Deliveries in flight at the crash get a fresh ack
    /// wait from `now`.
    pub fn recover(
        config: &BusConfig,
        bytes: Option<&[u8]>,
        now: Duration,
    ) -> Result<BusCore, LogError> {
        config.validate();
        let topics = config
            .topics
            .iter()
            .map(|topic| {
                let groups = topic
                    .groups
                    .iter()
                    .map(|group| (group.clone(), Group::default()))
                    .collect();
                (
                    topic.name.clone(),
                    Topic {
                        groups,
                        ..Topic::default()
                    },
                )
            })
            .collect();
        let mut core = BusCore {
            config: config.clone(),
            topics,
            records_decided: 0,
            records_durable: 0,
            unsent: Vec::new(),
            write_in_flight: None,
            rewrite: false,
            records_since_rewrite: 0,
            pending: Vec::new(),
            fetches: Vec::new(),
        };
        let (records, torn_length) = match bytes {
            None => (Vec::new(), 0),
            Some(bytes) => durable::decode_log(bytes)?,
        };
        let count = records.len();
        for (index, record) in records.into_iter().enumerate() {
            core.check_replay(&record)
                .map_err(|reason| LogError::Inconsistent { index, reason })?;
            core.records_decided += 1;
            core.apply(&record, now);
        }
        core.records_durable = core.records_decided;
        core.records_since_rewrite = core.records_decided;
        core.rewrite = torn_length > 0;
        tracing::info!(
            event = "bus_recovered",
            records = count as u64,
            messages = core
                .topics
                .values()
                .map(|t| t.messages.len() as u64)
                .sum::<u64>(),
            truncated_bytes = torn_length as u64,
        );
        Ok(core)
    }

    /// Whether a record read from the file fits the state before it.
    fn check_replay(&self, record: &LogRecord) -> Result<(), String> {
        let topic_name = match record {
            LogRecord::TopicHead { topic, .. }
            | LogRecord::Remembered { topic, .. }
            | LogRecord::Published { topic, .. }
            | LogRecord::Delivered { topic, .. }
            | LogRecord::Acked { topic, .. }
            | LogRecord::DeadLettered { topic, .. } => topic,
        };
        let Some(topic) = self.topics.get(topic_name) else {
            return Err(format!("topic {topic_name} is not configured"));
        };
        match record {
            LogRecord::Published { sequence, .. } if *sequence < topic.sequence_next => {
                Err(format!(
                    "sequence {sequence} below the topic's next {}",
                    topic.sequence_next
                ))
            }
            LogRecord::Delivered {
                group, sequence, ..
            }
            | LogRecord::Acked {
                group, sequence, ..
            }
            | LogRecord::DeadLettered {
                group, sequence, ..
            } => {
                if !topic.groups.contains_key(group) {
                    return Err(format!("group {group} is not configured"));
                }
                if !topic.messages.contains_key(sequence) {
                    return Err(format!("message {sequence} is not retained"));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The one place the state changes (see the module docs).
    fn apply(&mut self, record: &LogRecord, now: Duration) {
        let window = self.config.duplicate_window;
        match record {
            LogRecord::TopicHead {
                topic,
                sequence_next,
            } => {
                let topic = self.topics.get_mut(topic).expect("checked topic");
                topic.sequence_next = topic.sequence_next.max(*sequence_next);
            }
            LogRecord::Remembered {
                topic,
                msg_id,
                sequence,
            } => {
                let topic = self.topics.get_mut(topic).expect("checked topic");
                remember(topic, *msg_id, *sequence, now + window);
            }
            LogRecord::Published {
                topic,
                sequence,
                msg_id,
                payload,
            } => {
                let durable_at = self.records_decided;
                let topic = self.topics.get_mut(topic).expect("checked topic");
                assert!(
                    *sequence >= topic.sequence_next,
                    "sequences only grow: {sequence} after {}",
                    topic.sequence_next
                );
                topic.sequence_next = sequence + 1;
                topic.messages.insert(
                    *sequence,
                    Message {
                        msg_id: *msg_id,
                        payload: payload.clone(),
                        durable_at,
                    },
                );
                remember(topic, *msg_id, *sequence, now + window);
            }
            LogRecord::Delivered {
                topic,
                group,
                sequence,
                delivery,
            } => {
                let due_at = now + self.config.ack_wait(*delivery);
                let group = self.group_mut(topic, group);
                assert!(
                    !group.acked.contains(sequence) && !group.dead.contains_key(sequence),
                    "message {sequence} delivered after it was finished"
                );
                group.in_flight.insert(
                    *sequence,
                    InFlight {
                        deliveries: *delivery,
                        due_at: Some(due_at),
                    },
                );
            }
            LogRecord::Acked {
                topic: topic_name,
                group,
                sequence,
            } => {
                let group = self.group_mut(topic_name, group);
                group.in_flight.remove(sequence);
                group.acked.insert(*sequence);
                let topic = self.topics.get_mut(topic_name).expect("checked topic");
                if topic
                    .groups
                    .values()
                    .all(|group| group.acked.contains(sequence))
                {
                    topic.messages.remove(sequence);
                    for group in topic.groups.values_mut() {
                        group.acked.remove(sequence);
                    }
                }
            }
            LogRecord::DeadLettered {
                topic,
                group,
                sequence,
                deliveries,
                reason,
            } => {
                let group = self.group_mut(topic, group);
                group.in_flight.remove(sequence);
                group.dead.insert(
                    *sequence,
                    Dead {
                        deliveries: *deliveries,
                        reason: *reason,
                    },
                );
            }
        }
    }

    fn group_mut(&mut self, topic: &TopicName, group: &GroupName) -> &mut Group {
        self.topics
            .get_mut(topic)
            .and_then(|topic| topic.groups.get_mut(group))
            .expect("checked topic and group")
    }

    /// Applies a record and queues it for the next write.
    fn record(&mut self, record: LogRecord, now: Duration) {
        self.records_decided += 1;
        self.records_since_rewrite += 1;
        self.apply(&record, now);
        durable::encode_into(&record, &mut self.unsent);
    }

    /// Messages retained by a topic (unprocessed by some group, or dead-lettered).
    pub fn retained(&self, topic: &TopicName) -> usize {
        self.topics
            .get(topic)
            .map_or(0, |topic| topic.messages.len())
    }

    /// The sequences a topic retains, in order.
    pub fn retained_sequences(&self, topic: &TopicName) -> Vec<u64> {
        self.topics
            .get(topic)
            .map_or_else(Vec::new, |topic| topic.messages.keys().copied().collect())
    }

    /// A group's dead-letter queue, oldest first.
    pub fn dead_letters(&self, topic: &TopicName, group: &GroupName) -> Vec<DeadLetter> {
        let Some(topic) = self.topics.get(topic) else {
            return Vec::new();
        };
        let Some(group) = topic.groups.get(group) else {
            return Vec::new();
        };
        group
            .dead
            .iter()
            .map(|(&sequence, dead)| {
                let message = &topic.messages[&sequence];
                DeadLetter {
                    sequence,
                    msg_id: message.msg_id,
                    payload: message.payload.clone(),
                    deliveries: dead.deliveries,
                    reason: dead.reason,
                }
            })
            .collect()
    }

    /// The state without timers, as text: what replay must reproduce (tests only).
    #[cfg(test)]
    pub(crate) fn digest(&self) -> String {
        use std::fmt::Write as _;
        let mut text = String::new();
        for (name, topic) in &self.topics {
            let messages: Vec<(u64, MessageId)> =
                topic.messages.iter().map(|(s, m)| (*s, m.msg_id)).collect();
            let _ = writeln!(
                text,
                "{name}: next {} messages {messages:?} remembered {:?}",
                topic.sequence_next, topic.remembered
            );
            for (group_name, group) in &topic.groups {
                let in_flight: Vec<(u64, u32)> = group
                    .in_flight
                    .iter()
                    .map(|(s, f)| (*s, f.deliveries))
                    .collect();
                let dead: Vec<(u64, u32, DeadReason)> = group
                    .dead
                    .iter()
                    .map(|(s, d)| (*s, d.deliveries, d.reason))
                    .collect();
                let _ = writeln!(
                    text,
                    "  {group_name}: in flight {in_flight:?} acked {:?} dead {dead:?}",
                    group.acked
                );
            }
        }
        text
    }

    fn publish(
        &mut self,
        now: Duration,
        reply_to: ReplyTo,
        topic_name: TopicName,
        msg_id: MessageId,
        payload: Vec<u8>,
    ) -> Option<BusResponse> {
        let messages_max = self.config.messages_max;
        let Some(topic) = self.topics.get_mut(&topic_name) else {
            return Some(reject(&topic_name, RejectReason::UnknownTopic));
        };
        if payload.len() > PAYLOAD_LENGTH_MAX {
            return Some(reject(&topic_name, RejectReason::PayloadTooLong));
        }
        forget_expired(topic, now);
        if let Some(&sequence) = topic.remembered.get(&msg_id) {
            let upto = topic
                .messages
                .get(&sequence)
                .map_or(0, |message| message.durable_at);
            let trace = ReleaseTrace::Published {
                topic: topic_name,
                sequence,
                msg_id,
                duplicate: true,
            };
            let response = BusResponse::Published {
                sequence,
                duplicate: true,
            };
            return self.answer_when_durable(reply_to, upto, response, trace);
        }
        if topic.messages.len() >= messages_max {
            return Some(reject(&topic_name, RejectReason::TopicFull));
        }
        let sequence = topic.sequence_next;
        self.record(
            LogRecord::Published {
                topic: topic_name.clone(),
                sequence,
                msg_id,
                payload,
            },
            now,
        );
        let trace = ReleaseTrace::Published {
            topic: topic_name,
            sequence,
            msg_id,
            duplicate: false,
        };
        let response = BusResponse::Published {
            sequence,
            duplicate: false,
        };
        self.answer_when_durable(reply_to, self.records_decided, response, trace)
    }

    /// Ends the ack waits that ran out by `now`: due again, or dead-lettered after
    /// `max_deliver` deliveries.
    fn expire_deliveries(&mut self, now: Duration) {
        let mut exhausted = Vec::new();
        for (topic_name, topic) in &mut self.topics {
            for (group_name, group) in &mut topic.groups {
                for (&sequence, in_flight) in &mut group.in_flight {
                    if in_flight.due_at.is_some_and(|at| at <= now) {
                        in_flight.due_at = None;
                        if in_flight.deliveries >= self.config.max_deliver {
                            exhausted.push((
                                topic_name.clone(),
                                group_name.clone(),
                                sequence,
                                in_flight.deliveries,
                            ));
                        }
                    }
                }
            }
        }
        for (topic, group, sequence, deliveries) in exhausted {
            if self.config.drop_after_max_deliver {
                // The planted bug: gone without a trace, as if a consumer had acked it.
                self.record(
                    LogRecord::Acked {
                        topic,
                        group,
                        sequence,
                    },
                    now,
                );
                continue;
            }
            let msg_id = self.topics[&topic].messages[&sequence].msg_id;
            tracing::info!(
                event = "bus_dead_lettered",
                topic = topic.as_str(),
                group = group.as_str(),
                sequence,
                msg_id = %msg_id,
                deliveries = u64::from(deliveries),
                reason = DeadReason::MaxDeliver.kind(),
            );
            self.record(
                LogRecord::DeadLettered {
                    topic,
                    group,
                    sequence,
                    deliveries,
                    reason: DeadReason::MaxDeliver,
                },
                now,
            );
        }
    }

    /// Picks and records the next deliveries for a group (durable messages only, in sequence
    /// order, within `max_ack_pending`).
    fn deliver(
        &mut self,
        now: Duration,
        topic_name: &TopicName,
        group_name: &GroupName,
        count_max: u32,
    ) -> Vec<Delivery> {
        let count_max = count_max.clamp(1, FETCH_COUNT_MAX) as usize;
        let topic = &self.topics[topic_name];
        let group = &topic.groups[group_name];
        let awaiting = group
            .in_flight
            .values()
            .filter(|in_flight| in_flight.due_at.is_some())
            .count();
        let room = (self.config.max_ack_pending as usize).saturating_sub(awaiting);
        let mut chosen = Vec::new();
        for (&sequence, message) in &topic.messages {
            if chosen.len() >= count_max.min(room) || message.durable_at > self.records_durable {
                break;
            }
            if group.acked.contains(&sequence) || group.dead.contains_key(&sequence) {
                continue;
            }
            let delivery = match group.in_flight.get(&sequence) {
                None => 1,
                Some(InFlight {
                    due_at: None,
                    deliveries,
                }) => deliveries + 1,
                Some(InFlight {
                    due_at: Some(_), ..
                }) => continue,
            };
            assert!(
                delivery <= self.config.max_deliver,
                "an exhausted message is dead-lettered before it could be delivered again"
            );
            chosen.push(Delivery {
                sequence,
                msg_id: message.msg_id,
                payload: message.payload.clone(),
                delivery,
            });
        }
        for delivery in &chosen {
            self.record(
                LogRecord::Delivered {
                    topic: topic_name.clone(),
                    group: group_name.clone(),
                    sequence: delivery.sequence,
                    delivery: delivery.delivery,
                },
                now,
            );
        }
        chosen
    }

    fn fetch(
        &mut self,
        now: Duration,
        reply_to: ReplyTo,
        topic: TopicName,
        group: GroupName,
        count_max: u32,
        wait_ms: u32,
    ) -> Option<BusResponse> {
        if let Some(reason) = self.unknown(&topic, &group) {
            return Some(reject(&topic, reason));
        }
        self.expire_deliveries(now);
        let deliveries = self.deliver(now, &topic, &group, count_max);
        if !deliveries.is_empty() {
            let trace = ReleaseTrace::Delivered { topic, group };
            let response = BusResponse::Messages { deliveries };
            return self.answer_when_durable(reply_to, self.records_decided, response, trace);
        }
        if wait_ms == 0 || self.fetches.len() >= WAITING_FETCHES_MAX {
            return Some(BusResponse::Messages {
                deliveries: Vec::new(),
            });
        }
        let wait = Duration::from_millis(u64::from(wait_ms)).min(self.config.fetch_wait_max);
        self.fetches.push(WaitingFetch {
            reply_to,
            topic,
            group,
            count_max,
            until: now + wait,
        });
        None
    }

    /// Ack (`term: false`) or terminate (`term: true`) a delivered message.
    fn finish(
        &mut self,
        now: Duration,
        reply_to: ReplyTo,
        topic_name: TopicName,
        group_name: GroupName,
        sequence: u64,
        term: bool,
    ) -> Option<BusResponse> {
        if let Some(reason) = self.unknown(&topic_name, &group_name) {
            return Some(reject(&topic_name, reason));
        }
        let topic = &self.topics[&topic_name];
        let group = &topic.groups[&group_name];
        if group.dead.contains_key(&sequence) {
            return Some(reject(&topic_name, RejectReason::DeadLettered));
        }
        let dropped = sequence < topic.sequence_next && !topic.messages.contains_key(&sequence);
        if group.acked.contains(&sequence) || dropped {
            // Already acked (by this group, or by all when the message is gone): a repeat.
            let upto = self.records_decided;
            return self.answer_when_durable(reply_to, upto, BusResponse::Done, ReleaseTrace::None);
        }
        let Some(in_flight) = group.in_flight.get(&sequence).copied() else {
            return Some(reject(&topic_name, RejectReason::NotDelivered));
        };
        let msg_id = topic.messages[&sequence].msg_id;
        let (record, trace) = if term {
            (
                LogRecord::DeadLettered {
                    topic: topic_name.clone(),
                    group: group_name.clone(),
                    sequence,
                    deliveries: in_flight.deliveries,
                    reason: DeadReason::Term,
                },
                ReleaseTrace::Termed {
                    topic: topic_name,
                    group: group_name,
                    sequence,
                    msg_id,
                    deliveries: in_flight.deliveries,
                },
            )
        } else {
            (
                LogRecord::Acked {
                    topic: topic_name.clone(),
                    group: group_name.clone(),
                    sequence,
                },
                ReleaseTrace::Acked {
                    topic: topic_name,
                    group: group_name,
                    sequence,
                },
            )
        };
        self.record(record, now);
        self.answer_when_durable(reply_to, self.records_decided, BusResponse::Done, trace)
    }

    fn unknown(&self, topic: &TopicName, group: &GroupName) -> Option<RejectReason> {
        match self.topics.get(topic) {
            None => Some(RejectReason::UnknownTopic),
            Some(found) if !found.groups.contains_key(group) => Some(RejectReason::UnknownGroup),
            Some(_) => None,
        }
    }

    fn answer_when_durable(
        &mut self,
        reply_to: ReplyTo,
        upto: u64,
        response: BusResponse,
        trace: ReleaseTrace,
    ) -> Option<BusResponse> {
        if upto <= self.records_durable {
            trace_release(&self.config, &trace, &response);
            return Some(response);
        }
        self.pending.push(PendingReply {
            reply_to,
            upto,
            response,
            trace,
        });
        None
    }

    /// Serves the waiting fetches that have messages now or whose wait ended.
    fn serve_fetches(&mut self, now: Duration) -> Vec<(ReplyTo, BusResponse)> {
        let mut answered = Vec::new();
        for fetch in std::mem::take(&mut self.fetches) {
            let deliveries = self.deliver(now, &fetch.topic, &fetch.group, fetch.count_max);
            if !deliveries.is_empty() {
                let trace = ReleaseTrace::Delivered {
                    topic: fetch.topic,
                    group: fetch.group,
                };
                let response = BusResponse::Messages { deliveries };
                let upto = self.records_decided;
                if let Some(response) =
                    self.answer_when_durable(fetch.reply_to, upto, response, trace)
                {
                    answered.push((fetch.reply_to, response));
                }
            } else if now >= fetch.until {
                answered.push((
                    fetch.reply_to,
                    BusResponse::Messages {
                        deliveries: Vec::new(),
                    },
                ));
            } else {
                self.fetches.push(fetch);
            }
        }
        answered
    }

    /// The records that rebuild the current state (compaction).
    fn snapshot(&self) -> Vec<LogRecord> {
        let mut records = Vec::new();
        for (name, topic) in &self.topics {
            for (&sequence, message) in &topic.messages {
                records.push(LogRecord::Published {
                    topic: name.clone(),
                    sequence,
                    msg_id: message.msg_id,
                    payload: message.payload.clone(),
                });
            }
            records.push(LogRecord::TopicHead {
                topic: name.clone(),
                sequence_next: topic.sequence_next,
            });
            for (&msg_id, &sequence) in &topic.remembered {
                if !topic.messages.contains_key(&sequence) {
                    records.push(LogRecord::Remembered {
                        topic: name.clone(),
                        msg_id,
                        sequence,
                    });
                }
            }
            for (group_name, group) in &topic.groups {
                for (&sequence, in_flight) in &group.in_flight {
                    records.push(LogRecord::Delivered {
                        topic: name.clone(),
                        group: group_name.clone(),
                        sequence,
                        delivery: in_flight.deliveries,
                    });
                }
                for &sequence in &group.acked {
                    records.push(LogRecord::Acked {
                        topic: name.clone(),
                        group: group_name.clone(),
                        sequence,
                    });
                }
                for (&sequence, dead) in &group.dead {
                    records.push(LogRecord::DeadLettered {
                        topic: name.clone(),
                        group: group_name.clone(),
                        sequence,
                        deliveries: dead.deliveries,
                        reason: dead.reason,
                    });
                }
            }
        }
        records
    }
}

impl DurableCore for BusCore {
    type Request = BusRequest;
    type Response = BusResponse;

    fn handle(
        &mut self,
        now: Duration,
        reply_to: ReplyTo,
        request: BusRequest,
    ) -> Option<BusResponse> {
        if self.pending.len() >= PENDING_REPLIES_MAX {
            let topic = match &request {
                BusRequest::Publish { topic, .. }
                | BusRequest::Fetch { topic, .. }
                | BusRequest::Ack { topic, .. }
                | BusRequest::Term { topic, .. }
                | BusRequest::DeadLetters { topic, .. } => topic.clone(),
            };
            return Some(reject(&topic, RejectReason::Overloaded));
        }
        match request {
            BusRequest::Publish {
                topic,
                msg_id,
                payload,
            } => self.publish(now, reply_to, topic, msg_id, payload),
            BusRequest::Fetch {
                topic,
                group,
                count_max,
                wait_ms,
            } => self.fetch(now, reply_to, topic, group, count_max, wait_ms),
            BusRequest::Ack {
                topic,
                group,
                sequence,
            } => self.finish(now, reply_to, topic, group, sequence, false),
            BusRequest::Term {
                topic,
                group,
                sequence,
            } => self.finish(now, reply_to, topic, group, sequence, true),
            BusRequest::DeadLetters {
                topic,
                group,
                sequence_from,
            } => {
                if let Some(reason) = self.unknown(&topic, &group) {
                    return Some(reject(&topic, reason));
                }
                let dead = self
                    .dead_letters(&topic, &group)
                    .into_iter()
                    .filter(|dead| dead.sequence >= sequence_from)
                    .take(FETCH_COUNT_MAX as usize)
                    .collect();
                Some(BusResponse::DeadLetters { dead })
            }
        }
    }

    fn next_write(&mut self) -> Option<Write> {
        assert!(self.write_in_flight.is_none(), "one write at a time");
        let ticket = self.records_decided;
        let compact = self.records_since_rewrite > self.config.compact_after_records;
        let write = if self.rewrite || (compact && ticket > self.records_durable) {
            let mut bytes = Vec::new();
            let records = self.snapshot();
            for record in &records {
                durable::encode_into(record, &mut bytes);
            }
            tracing::debug!(event = "bus_compacted", records = records.len() as u64);
            self.rewrite = false;
            self.records_since_rewrite = records.len() as u64;
            self.unsent.clear();
            Write {
                mode: WriteMode::Replace,
                bytes,
                ticket,
            }
        } else if !self.unsent.is_empty() {
            Write {
                mode: WriteMode::Append,
                bytes: std::mem::take(&mut self.unsent),
                ticket,
            }
        } else {
            return None;
        };
        self.write_in_flight = Some(ticket);
        Some(write)
    }

    fn written(&mut self, now: Duration, ticket: u64) -> Vec<(ReplyTo, BusResponse)> {
        assert_eq!(
            self.write_in_flight,
            Some(ticket),
            "written reports the write in flight"
        );
        self.write_in_flight = None;
        assert!(ticket >= self.records_durable, "durable records only grow");
        self.records_durable = ticket;
        let mut released = Vec::new();
        self.pending.retain(|pending| {
            if pending.upto > ticket {
                return true;
            }
            trace_release(&self.config, &pending.trace, &pending.response);
            released.push((pending.reply_to, pending.response.clone()));
            false
        });
        // Messages that just became durable may serve waiting fetches.
        released.extend(self.serve_fetches(now));
        released
    }

    fn write_failed(&mut self, _now: Duration, ticket: u64) {
        assert_eq!(
            self.write_in_flight,
            Some(ticket),
            "write_failed reports the write in flight"
        );
        self.write_in_flight = None;
        // What reached the disk is unknown: the next write replaces the file with the state.
        self.rewrite = true;
    }

    fn next_wake(&self) -> Option<Duration> {
        let due = self
            .topics
            .values()
            .flat_map(|topic| topic.groups.values())
            .flat_map(|group| group.in_flight.values())
            .filter_map(|in_flight| in_flight.due_at);
        let fetches = self.fetches.iter().map(|fetch| fetch.until);
        due.chain(fetches).min()
    }

    fn wake(&mut self, now: Duration) -> Vec<(ReplyTo, BusResponse)> {
        self.expire_deliveries(now);
        self.serve_fetches(now)
    }
}

fn remember(topic: &mut Topic, msg_id: MessageId, sequence: u64, forget_at: Duration) {
    topic.remembered.insert(msg_id, sequence);
    topic
        .remembered_order
        .push_back((forget_at, msg_id, sequence));
    while topic.remembered.len() > DUPLICATE_ENTRIES_MAX {
        let (_, oldest, oldest_sequence) = topic
            .remembered_order
            .pop_front()
            .expect("more entries than the limit");
        if topic.remembered.get(&oldest) == Some(&oldest_sequence) {
            topic.remembered.remove(&oldest);
            tracing::warn!(event = "bus_duplicate_window_full", msg_id = %oldest);
        }
    }
}

fn forget_expired(topic: &mut Topic, now: Duration) {
    while let Some(&(forget_at, msg_id, sequence)) = topic.remembered_order.front() {
        if forget_at > now {
            break;
        }
        topic.remembered_order.pop_front();
        if topic.remembered.get(&msg_id) == Some(&sequence) {
            topic.remembered.remove(&msg_id);
        }
    }
}

fn reject(topic: &TopicName, reason: RejectReason) -> BusResponse {
    tracing::info!(
        event = "bus_rejected",
        topic = topic.as_str(),
        reason = reason.kind(),
    );
    BusResponse::Rejected { reason }
}

/// The consumer groups of `topic`, comma-separated (oracle MQ1: who must ack or dead-letter).
fn groups_of(config: &BusConfig, topic: &TopicName) -> String {
    config
        .topics
        .iter()
        .find(|configured| configured.name == *topic)
        .map(|configured| {
            configured
                .groups
                .iter()
                .map(GroupName::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn trace_release(config: &BusConfig, trace: &ReleaseTrace, response: &BusResponse) {
    match trace {
        ReleaseTrace::None => {}
        ReleaseTrace::Published {
            topic,
            sequence,
            msg_id,
            duplicate: false,
        } => tracing::info!(
            event = "bus_published",
            topic = topic.as_str(),
            sequence = *sequence,
            msg_id = %msg_id,
            groups = groups_of(config, topic).as_str(),
        ),
        ReleaseTrace::Published {
            topic,
            sequence,
            msg_id,
            duplicate: true,
        } => tracing::info!(
            event = "bus_duplicate",
            topic = topic.as_str(),
            sequence = *sequence,
            msg_id = %msg_id,
            groups = groups_of(config, topic).as_str(),
        ),
        ReleaseTrace::Delivered { topic, group } => {
            let BusResponse::Messages { deliveries } = response else {
                unreachable!("a delivery trace goes with a Messages answer");
            };
            for delivery in deliveries {
                tracing::info!(
                    event = "bus_delivered",
                    topic = topic.as_str(),
                    group = group.as_str(),
                    sequence = delivery.sequence,
                    msg_id = %delivery.msg_id,
                    delivery = u64::from(delivery.delivery),
                    max_deliver = u64::from(config.max_deliver),
                    ack_wait_ms = crate::resilience::millis(config.ack_wait(delivery.delivery)),
                );
            }
        }
        ReleaseTrace::Acked {
            topic,
            group,
            sequence,
        } => tracing::info!(
            event = "bus_acked",
            topic = topic.as_str(),
            group = group.as_str(),
            sequence = *sequence,
        ),
        ReleaseTrace::Termed {
            topic,
            group,
            sequence,
            msg_id,
            deliveries,
        } => tracing::info!(
            event = "bus_dead_lettered",
            topic = topic.as_str(),
            group = group.as_str(),
            sequence = *sequence,
            msg_id = %msg_id,
            deliveries = u64::from(*deliveries),
            reason = DeadReason::Term.kind(),
        ),
    }
}
