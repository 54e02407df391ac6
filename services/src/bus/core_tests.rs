//! Unit tests of `BusCore` and the outbox types, without a runtime: the disk is played by hand
//! (synced and unsynced bytes; a crash keeps the synced ones), time is set by the test, and
//! oracles MQ1–MQ3 are checked over the recorded trace.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use super::config::{BusConfig, TopicConfig};
use super::core::BusCore;
use super::outbox::{Outbox, OutboxEntry, ProcessedIds};
use super::protocol::{
    BusRequest, BusResponse, DeadReason, Delivery, GroupName, MessageId, RejectReason, TopicName,
};
use crate::durable_server::{DurableCore, ReplyTo, WriteMode};
use crate::testing::{TraceEvent, record_trace};

const WAIT_MS: u64 = 100;

fn topic() -> TopicName {
    TopicName::new("motion")
}

fn group(name: &str) -> GroupName {
    GroupName::new(name)
}

fn config(groups: &[&str]) -> BusConfig {
    let mut config = BusConfig::new(vec![TopicConfig {
        name: topic(),
        groups: groups.iter().map(|name| group(name)).collect(),
    }]);
    config.ack_waits = vec![
        Duration::from_millis(WAIT_MS),
        Duration::from_millis(2 * WAIT_MS),
    ];
    config.max_deliver = 3;
    config.duplicate_window = Duration::from_secs(10);
    config
}

fn publish(id: u128) -> BusRequest {
    BusRequest::Publish {
        topic: topic(),
        msg_id: MessageId(id),
        payload: id.to_le_bytes().to_vec(),
    }
}

fn fetch(name: &str) -> BusRequest {
    BusRequest::Fetch {
        topic: topic(),
        group: group(name),
        count_max: 4,
        wait_ms: 0,
    }
}

fn ack(name: &str, sequence: u64) -> BusRequest {
    BusRequest::Ack {
        topic: topic(),
        group: group(name),
        sequence,
    }
}

/// A bus core and its hand-played disk.
struct TestBus {
    config: BusConfig,
    core: BusCore,
    synced: Vec<u8>,
    unsynced: Vec<u8>,
    in_flight: Option<u64>,
    now: Duration,
    reply_next: u64,
    released: Vec<(ReplyTo, BusResponse)>,
}

impl TestBus {
    fn new(config: BusConfig) -> TestBus {
        TestBus {
            core: BusCore::recover(&config, None, Duration::ZERO).unwrap(),
            config,
            synced: Vec::new(),
            unsynced: Vec::new(),
            in_flight: None,
            now: Duration::ZERO,
            reply_next: 0,
            released: Vec::new(),
        }
    }

    fn crash(self) -> TestBus {
        let core =
            BusCore::recover(&self.config, Some(&self.synced), self.now).expect("recoverable");
        TestBus {
            core,
            config: self.config,
            synced: self.synced,
            unsynced: Vec::new(),
            in_flight: None,
            now: self.now,
            reply_next: 0,
            released: Vec::new(),
        }
    }

    fn send(&mut self, request: BusRequest) -> (ReplyTo, Option<BusResponse>) {
        let reply_to = ReplyTo(self.reply_next);
        self.reply_next += 1;
        (reply_to, self.core.handle(self.now, reply_to, request))
    }

    fn start_write(&mut self) -> bool {
        let Some(write) = self.core.next_write() else {
            return false;
        };
        match write.mode {
            WriteMode::Append => self.unsynced.extend_from_slice(&write.bytes),
            WriteMode::Replace => {
                self.synced = write.bytes;
                self.unsynced.clear();
            }
        }
        self.in_flight = Some(write.ticket);
        true
    }

    fn finish_write(&mut self) {
        let ticket = self.in_flight.take().expect("a write in flight");
        self.synced.append(&mut self.unsynced);
        let released = self.core.written(self.now, ticket);
        self.released.extend(released);
    }

    fn flush(&mut self) {
        while self.start_write() {
            self.finish_write();
        }
    }

    fn claim(&mut self, reply_to: ReplyTo) -> Option<BusResponse> {
        let index = self.released.iter().position(|(to, _)| *to == reply_to)?;
        Some(self.released.remove(index).1)
    }

    fn call(&mut self, request: BusRequest) -> BusResponse {
        let (reply_to, answer) = self.send(request);
        if let Some(answer) = answer {
            return answer;
        }
        self.flush();
        self.claim(reply_to)
            .expect("an instant disk releases the answer")
    }

    /// Moves time on, running the timers that are due, and writes what they changed.
    fn advance_to(&mut self, now: Duration) {
        self.now = now;
        if self.core.next_wake().is_some_and(|at| at <= now) {
            let released = self.core.wake(now);
            self.released.extend(released);
        }
        self.flush();
    }

    fn fetched(&mut self, name: &str) -> Vec<Delivery> {
        match self.call(fetch(name)) {
            BusResponse::Messages { deliveries } => deliveries,
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// Oracle MQ1 at quiescence: every acknowledged publish was, for every group, acked or
/// dead-lettered. Returns the (group, sequence) pairs that were neither.
fn mq1_violations(trace: &[TraceEvent], groups: &[&str]) -> Vec<(String, u64)> {
    let published: BTreeSet<u64> = trace
        .iter()
        .filter(|e| e.name == "bus_published")
        .map(|e| e.u64("sequence"))
        .collect();
    let mut violations = Vec::new();
    for name in groups {
        let finished: BTreeSet<u64> = trace
            .iter()
            .filter(|e| {
                (e.name == "bus_acked" || e.name == "bus_dead_lettered")
                    && e.field("group") == Some(name)
            })
            .map(|e| e.u64("sequence"))
            .collect();
        for sequence in published.difference(&finished) {
            violations.push((name.to_string(), *sequence));
        }
    }
    violations
}

/// Oracle MQ2: no delivery count above `max_deliver`. Returns the offending deliveries.
fn mq2_violations(trace: &[TraceEvent], max_deliver: u32) -> Vec<String> {
    trace
        .iter()
        .filter(|e| e.name == "bus_delivered" && e.u64("delivery") > u64::from(max_deliver))
        .map(|e| format!("{e:?}"))
        .collect()
}

#[test]
fn a_publish_is_acknowledged_after_its_sync_and_stored_once_per_id() {
    // Goal: MQ4 and durability of publishes. Method: publish (no answer before the sync),
    // re-send the id (duplicate, same sequence, nothing new), let the window pass and re-send
    // (a new message); check the answers and the events.
    let (trace, _guard) = record_trace();
    let mut bus = TestBus::new(config(&["a"]));
    let (first, answer) = bus.send(publish(7));
    assert_eq!(answer, None);
    assert!(bus.start_write());
    assert!(
        trace.named("bus_published").is_empty(),
        "not before the sync"
    );
    bus.finish_write();
    assert_eq!(
        bus.claim(first),
        Some(BusResponse::Published {
            sequence: 0,
            duplicate: false
        })
    );
    assert_eq!(
        bus.call(publish(7)),
        BusResponse::Published {
            sequence: 0,
            duplicate: true
        }
    );
    assert_eq!(bus.core.retained(&topic()), 1);
    assert_eq!(trace.named("bus_duplicate").len(), 1);
    bus.now = Duration::from_secs(10);
    assert_eq!(
        bus.call(publish(7)),
        BusResponse::Published {
            sequence: 1,
            duplicate: false
        },
        "outside the window the id is new"
    );
    let published = trace.named("bus_published");
    assert_eq!(published.len(), 2);
    assert_eq!(published[0].field("topic"), Some("motion"));
}

#[test]
fn every_group_gets_every_message_and_a_message_leaves_when_all_acked() {
    // Goal: consumer-group semantics and retention. Method: two groups fetch the same
    // messages; acking in one group keeps the message; acking in both frees it; an ack of a
    // message never delivered is refused, a repeated ack answered Done.
    let mut bus = TestBus::new(config(&["a", "b"]));
    bus.call(publish(1));
    bus.call(publish(2));
    let a = bus.fetched("a");
    let b = bus.fetched("b");
    assert_eq!(a.iter().map(|d| d.sequence).collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(b.iter().map(|d| d.sequence).collect::<Vec<_>>(), vec![0, 1]);
    assert!(
        bus.fetched("a").is_empty(),
        "in flight: not delivered again before the wait"
    );
    assert_eq!(bus.call(ack("a", 0)), BusResponse::Done);
    assert_eq!(bus.call(ack("a", 0)), BusResponse::Done);
    assert_eq!(bus.core.retained(&topic()), 2);
    assert_eq!(bus.call(ack("b", 0)), BusResponse::Done);
    assert_eq!(bus.core.retained(&topic()), 1);
    assert_eq!(
        bus.call(ack("a", 5)),
        BusResponse::Rejected {
            reason: RejectReason::NotDelivered
        }
    );
}

#[test]
fn an_unacked_message_is_redelivered_after_its_backed_off_ack_wait() {
    // Goal: redelivery after the ack wait, with the BackOff list (100 ms, then 200 ms
    // repeated). Method: fetch and never ack; fetch again just before and at each wait's end.
    let mut bus = TestBus::new(BusConfig {
        max_deliver: 10,
        ..config(&["a"])
    });
    bus.call(publish(1));
    assert_eq!(bus.fetched("a")[0].delivery, 1);
    bus.advance_to(ms(WAIT_MS - 1));
    assert!(bus.fetched("a").is_empty());
    bus.advance_to(ms(WAIT_MS));
    assert_eq!(bus.fetched("a")[0].delivery, 2);
    bus.advance_to(ms(3 * WAIT_MS - 1));
    assert!(bus.fetched("a").is_empty(), "the second wait is 200 ms");
    bus.advance_to(ms(3 * WAIT_MS));
    assert_eq!(bus.fetched("a")[0].delivery, 3);
    bus.advance_to(ms(5 * WAIT_MS));
    assert_eq!(bus.fetched("a")[0].delivery, 4, "the last wait repeats");
}

#[test]
fn after_max_deliver_a_message_is_dead_lettered_never_dropped() {
    // Goal: MQ1 and MQ2 on the failure path: after max_deliver (3) deliveries without ack the
    // message goes to the dead-letter queue, is never delivered a fourth time, stays readable;
    // a terminated message goes there at once. Method: let message 0 exhaust its deliveries,
    // terminate message 1, ack message 2; check the DLQ, the trace, and both oracles.
    let (trace, _guard) = record_trace();
    let mut bus = TestBus::new(config(&["a"]));
    for id in [10, 11, 12] {
        bus.call(publish(id));
    }
    let first = bus.fetched("a");
    assert_eq!(first.len(), 3);
    let term = BusRequest::Term {
        topic: topic(),
        group: group("a"),
        sequence: 1,
    };
    assert_eq!(bus.call(term), BusResponse::Done);
    bus.call(ack("a", 2));
    let mut now = 0;
    for _ in 0..6 {
        now += 2 * WAIT_MS;
        bus.advance_to(ms(now));
        bus.fetched("a");
    }
    let dead = bus.core.dead_letters(&topic(), &group("a"));
    assert_eq!(
        dead.iter()
            .map(|d| (d.sequence, d.deliveries, d.reason))
            .collect::<Vec<_>>(),
        vec![(0, 3, DeadReason::MaxDeliver), (1, 1, DeadReason::Term)]
    );
    assert_eq!(bus.core.retained(&topic()), 2, "dead letters stay retained");
    assert_eq!(
        bus.call(ack("a", 0)),
        BusResponse::Rejected {
            reason: RejectReason::DeadLettered
        }
    );
    let events = trace.events();
    assert_eq!(mq1_violations(&events, &["a"]), Vec::<(String, u64)>::new());
    assert!(mq2_violations(&events, 3).is_empty());
    let deliveries_of_0 = trace
        .named("bus_delivered")
        .iter()
        .filter(|e| e.u64("sequence") == 0)
        .count();
    assert_eq!(deliveries_of_0, 3);
}

#[test]
fn planted_drop_after_max_deliver_is_caught_by_mq1() {
    // Goal: the MQ1 check is evidence: with the planted bug (an exhausted message vanishes
    // instead of going to the DLQ) it names the message. Method: the exhaustion path of the
    // test above with `drop_after_max_deliver`.
    let (trace, _guard) = record_trace();
    let mut bus = TestBus::new(BusConfig {
        drop_after_max_deliver: true,
        ..config(&["a"])
    });
    bus.call(publish(10));
    bus.fetched("a");
    let mut now = 0;
    for _ in 0..6 {
        now += 2 * WAIT_MS;
        bus.advance_to(ms(now));
        bus.fetched("a");
    }
    assert!(bus.core.dead_letters(&topic(), &group("a")).is_empty());
    assert_eq!(
        mq1_violations(&trace.events(), &["a"]),
        vec![("a".to_owned(), 0)]
    );
}

#[test]
fn delivery_counts_survive_crashes() {
    // Goal: MQ2 across restarts: a delivery is durable before it is handed out, so crashes
    // cannot reset the count. Method: deliver, crash, wait, deliver, crash, wait: the message
    // is dead-lettered after its third delivery, never delivered a fourth time.
    let (trace, _guard) = record_trace();
    let mut bus = TestBus::new(config(&["a"]));
    bus.call(publish(1));
    let mut now = 0;
    for expected in 1..=3 {
        let deliveries = bus.fetched("a");
        assert_eq!(deliveries[0].delivery, expected);
        bus = bus.crash();
        now += 3 * WAIT_MS;
        bus.advance_to(ms(now));
    }
    assert!(bus.fetched("a").is_empty());
    assert_eq!(bus.core.dead_letters(&topic(), &group("a")).len(), 1);
    assert!(mq2_violations(&trace.events(), 3).is_empty());
}

#[test]
fn a_waiting_fetch_is_served_by_a_durable_publish() {
    // Goal: a consumer's long poll gets a message as soon as it is durable, and an empty
    // answer when its wait ends. Method: fetch with a wait; publish (unsynced: still waiting);
    // sync: the fetch is answered after the delivery's own write; a second fetch times out.
    let mut bus = TestBus::new(config(&["a"]));
    let waiting_fetch = |wait_ms| BusRequest::Fetch {
        topic: topic(),
        group: group("a"),
        count_max: 4,
        wait_ms,
    };
    let (waiting, answer) = bus.send(waiting_fetch(1000));
    assert_eq!(answer, None);
    let (_, _) = bus.send(publish(1));
    assert!(bus.start_write());
    assert!(bus.claim(waiting).is_none());
    bus.finish_write();
    bus.flush();
    match bus.claim(waiting) {
        Some(BusResponse::Messages { deliveries }) => assert_eq!(deliveries.len(), 1),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(bus.call(ack("a", 0)), BusResponse::Done);
    let (timing_out, _) = bus.send(waiting_fetch(500));
    bus.advance_to(ms(499));
    assert!(bus.claim(timing_out).is_none());
    bus.advance_to(ms(500));
    assert_eq!(
        bus.claim(timing_out),
        Some(BusResponse::Messages {
            deliveries: Vec::new()
        })
    );
}

#[test]
fn replay_and_compaction_reproduce_the_live_state() {
    // Goal: recovery rebuilds exactly the live state, through appends, compactions (a low
    // threshold) and the repair of failed writes; and no acknowledged publish is lost by a
    // crash. Method: a seeded workload of publishes (ids repeat), fetches, acks, terms, time
    // steps, writes, failed writes (half their bytes land) and crashes. Half of the crashes come
    // right after a flush: the recovered state must equal the live one. After every crash each
    // acknowledged publish must still be retained, or have been acked by both groups.
    for seed in [21, 22, 23] {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut bus = TestBus::new(BusConfig {
            compact_after_records: 25,
            max_deliver: 4,
            ..config(&["a", "b"])
        });
        let (mut crashes, mut compared, mut compactions) = (0, 0, 0);
        let mut acknowledged: BTreeSet<u64> = BTreeSet::new();
        // Acks sent, answered or not: a failed write may land an ack nobody was told of.
        let mut acks_sent: BTreeSet<(&str, u64)> = BTreeSet::new();
        let mut delivered: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for _ in 0..600 {
            let name = if rng.next_u64() % 2 == 0 { "a" } else { "b" };
            let mut answers: Vec<BusResponse> = Vec::new();
            match rng.next_u64() % 11 {
                0..=2 => answers.extend(bus.send(publish(u128::from(rng.next_u64() % 60))).1),
                3 | 4 => answers.extend(bus.send(fetch(name)).1),
                5 => {
                    if let Some(sequence) = delivered.get_mut(name).and_then(|s| s.pop()) {
                        let request = if rng.next_u64() % 5 == 0 {
                            BusRequest::Term {
                                topic: topic(),
                                group: group(name),
                                sequence,
                            }
                        } else {
                            acks_sent.insert((name, sequence));
                            ack(name, sequence)
                        };
                        answers.extend(bus.send(request).1);
                    }
                }
                6 => {
                    let now = bus.now + ms(rng.next_u64() % (2 * WAIT_MS));
                    bus.now = now;
                    if bus.core.next_wake().is_some_and(|at| at <= now) {
                        let released = bus.core.wake(now);
                        bus.released.extend(released);
                    }
                }
                7 | 8 => {
                    if bus.in_flight.is_none() && bus.start_write() {
                        if bus.unsynced.is_empty() {
                            compactions += 1;
                        }
                        bus.finish_write();
                    }
                }
                9 => {
                    if bus.in_flight.is_none() && bus.start_write() {
                        let ticket = bus.in_flight.take().expect("started");
                        let half = bus.unsynced.len() / 2;
                        bus.unsynced.truncate(half);
                        bus.synced.append(&mut bus.unsynced);
                        bus.core.write_failed(bus.now, ticket);
                    }
                }
                _ => {
                    let flushed = rng.next_u64() % 2 == 0;
                    if flushed {
                        if bus.in_flight.is_some() {
                            bus.finish_write();
                        }
                        bus.flush();
                    }
                    answers.extend(bus.released.drain(..).map(|(_, answer)| answer));
                    let live = bus.core.digest();
                    bus = bus.crash();
                    crashes += 1;
                    delivered.clear();
                    if flushed {
                        assert_eq!(bus.core.digest(), live, "seed {seed}: replay differs");
                        compared += 1;
                    }
                    let retained = bus.core.retained_sequences(&topic());
                    for sequence in &acknowledged {
                        let acked_by = |group: &str| acks_sent.contains(&(group, *sequence));
                        assert!(
                            retained.contains(sequence) || (acked_by("a") && acked_by("b")),
                            "seed {seed}: acknowledged message {sequence} lost"
                        );
                    }
                }
            }
            answers.extend(bus.released.drain(..).map(|(_, answer)| answer));
            for answer in answers {
                match answer {
                    BusResponse::Published { sequence, .. } => {
                        acknowledged.insert(sequence);
                    }
                    BusResponse::Messages { deliveries } => {
                        // Deliveries to either group land in one list per group by their
                        // trace; for acking, remember them under both names (a wrong one is
                        // refused, which is fine).
                        for delivery in deliveries {
                            delivered.entry("a").or_default().push(delivery.sequence);
                            delivered.entry("b").or_default().push(delivery.sequence);
                        }
                    }
                    _ => {}
                }
            }
        }
        assert!(
            crashes > 10 && compared > 5 && compactions > 0,
            "seed {seed}: {crashes} crashes, {compared} compared, {compactions} compactions"
        );
    }
}

/// A toy producer: a counter whose every increment is announced on the bus, with its outbox in
/// the same state (the state is "written" by cloning it to `disk`).
#[derive(Clone, Debug, Default, PartialEq)]
struct Counter {
    count: u64,
    outbox: Outbox,
}

/// A toy consumer: sums the increments it applied, de-duplicating in the same state.
#[derive(Clone, Debug, Default, PartialEq)]
struct Summer {
    sum: u64,
    processed: ProcessedIds,
}

#[test]
fn outbox_and_processed_ids_give_each_message_one_effect_under_crashes() {
    // Goal: MQ3 end to end over the core: with a transactional outbox on the producer and
    // processed ids on the consumer, every increment takes effect exactly once although the
    // producer crashes between its write and the publish's acknowledgement and the consumer
    // crashes between its effect and its ack. Method: seeded schedule of increments, relays,
    // consumer steps and crashes of all three parties; at the end relay and consume until
    // quiet and compare the sum with the count.
    let (trace, _guard) = record_trace();
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    let mut bus = TestBus::new(BusConfig {
        max_deliver: 1000,
        ..config(&["sum"])
    });
    let (mut producer, mut producer_disk) = (Counter::default(), Counter::default());
    let (mut consumer, mut consumer_disk) = (Summer::default(), Summer::default());
    let mut unacked: Vec<u64> = Vec::new();
    for _ in 0..400 {
        match rng.next_u64() % 8 {
            0 | 1 => {
                // One transaction: the effect and its message, then the write.
                producer.count += 1;
                producer
                    .outbox
                    .push(OutboxEntry {
                        msg_id: MessageId(u128::from(producer.count)),
                        topic: topic(),
                        payload: 1u64.to_le_bytes().to_vec(),
                    })
                    .unwrap();
                producer_disk = producer.clone();
            }
            2 => {
                // Relay the oldest entry; the confirmation is written only sometimes before
                // the next crash.
                let oldest = producer.outbox.entries().next().cloned();
                if let Some(entry) = oldest {
                    let request = BusRequest::Publish {
                        topic: entry.topic,
                        msg_id: entry.msg_id,
                        payload: entry.payload,
                    };
                    if let BusResponse::Published { .. } = bus.call(request) {
                        producer.outbox.confirm(entry.msg_id);
                        if rng.next_u64() % 2 == 0 {
                            producer_disk = producer.clone();
                        }
                    }
                }
            }
            3 | 4 => {
                for delivery in bus.fetched("sum") {
                    if consumer.processed.first_time(delivery.msg_id) {
                        let amount = u64::from_le_bytes(delivery.payload[..8].try_into().unwrap());
                        consumer.sum += amount;
                    }
                    consumer_disk = consumer.clone();
                    unacked.push(delivery.sequence);
                }
                if rng.next_u64() % 2 == 0 {
                    for sequence in std::mem::take(&mut unacked) {
                        bus.call(ack("sum", sequence));
                    }
                }
            }
            5 => producer = producer_disk.clone(),
            6 => {
                consumer = consumer_disk.clone();
                unacked.clear();
            }
            _ => {
                let now = bus.now + ms(WAIT_MS);
                bus.advance_to(now);
                if rng.next_u64() % 3 == 0 {
                    bus = bus.crash();
                }
            }
        }
    }
    // Quiesce: relay everything, consume and ack until nothing is left.
    loop {
        let Some(entry) = producer.outbox.entries().next().cloned() else {
            break;
        };
        bus.call(BusRequest::Publish {
            topic: entry.topic,
            msg_id: entry.msg_id,
            payload: entry.payload,
        });
        producer.outbox.confirm(entry.msg_id);
    }
    for _ in 0..50 {
        let now = bus.now + ms(2 * WAIT_MS);
        bus.advance_to(now);
        for delivery in bus.fetched("sum") {
            if consumer.processed.first_time(delivery.msg_id) {
                consumer.sum += 1;
            }
            bus.call(ack("sum", delivery.sequence));
        }
    }
    assert!(producer.count > 50, "the workload produced");
    assert_eq!(
        consumer.sum, producer.count,
        "each increment took effect once"
    );
    assert!(
        !trace.named("bus_duplicate").is_empty(),
        "the schedule re-sent at least one publish"
    );
    let redelivered = trace
        .named("bus_delivered")
        .iter()
        .filter(|e| e.u64("delivery") > 1)
        .count();
    assert!(
        redelivered > 0,
        "the schedule redelivered at least one message"
    );
    assert_eq!(
        mq1_violations(&trace.events(), &["sum"]),
        Vec::<(String, u64)>::new()
    );
}
