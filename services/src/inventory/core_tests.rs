//! Unit tests of `InventoryCore`, without a runtime: the disk is played by hand (the last
//! completed replace is what a crash leaves), so each test decides when the state is written and
//! when the host crashes.

use std::collections::BTreeMap;
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use super::config::InventoryConfig;
use super::core::InventoryCore;
use super::durable::{self, RecordState};
use super::protocol::{InventoryRequest, InventoryResponse, PartId, Refusal, SagaId, StockView};
use crate::durable_server::{DurableCore, ReplyTo};
use crate::testing::record_trace;

const TTL: Duration = Duration::from_secs(10);

fn bolt() -> PartId {
    PartId::new("bolt")
}

fn config(stock: u64) -> InventoryConfig {
    let mut config = InventoryConfig::new(vec![(bolt(), stock)]);
    config.reservation_ttl = TTL;
    config
}

fn reserve(saga: u64, quantity: u32) -> InventoryRequest {
    InventoryRequest::Reserve {
        saga: SagaId(saga),
        part: bolt(),
        quantity,
    }
}

fn commit(saga: u64) -> InventoryRequest {
    InventoryRequest::Commit { saga: SagaId(saga) }
}

fn release(saga: u64) -> InventoryRequest {
    InventoryRequest::Release { saga: SagaId(saga) }
}

fn refused(reason: Refusal) -> InventoryResponse {
    InventoryResponse::Refused { reason }
}

fn stock(available: u64, reserved: u64, consumed: u64) -> StockView {
    StockView {
        initial: available + reserved + consumed,
        available,
        reserved,
        consumed,
    }
}

/// An inventory core and its hand-played disk.
struct TestInventory {
    config: InventoryConfig,
    core: InventoryCore,
    disk: Option<Vec<u8>>,
    now: Duration,
    reply_next: u64,
    released: Vec<(ReplyTo, InventoryResponse)>,
}

impl TestInventory {
    fn new(config: InventoryConfig) -> TestInventory {
        let core = InventoryCore::recover(&config, None, Duration::ZERO).unwrap();
        let mut inventory = TestInventory {
            config,
            core,
            disk: None,
            now: Duration::ZERO,
            reply_next: 0,
            released: Vec::new(),
        };
        inventory.persist();
        inventory
    }

    fn crash(self) -> TestInventory {
        let core = InventoryCore::recover(&self.config, self.disk.as_deref(), self.now)
            .expect("the disk holds what encode wrote");
        TestInventory {
            core,
            config: self.config,
            disk: self.disk,
            now: self.now,
            reply_next: 0,
            released: Vec::new(),
        }
    }

    fn send(&mut self, request: InventoryRequest) -> (ReplyTo, Option<InventoryResponse>) {
        let reply_to = ReplyTo(self.reply_next);
        self.reply_next += 1;
        (reply_to, self.core.handle(self.now, reply_to, request))
    }

    fn persist(&mut self) {
        if let Some(write) = self.core.next_write() {
            self.disk = Some(write.bytes);
            let released = self.core.written(self.now, write.ticket);
            self.released.extend(released);
        }
    }

    fn call(&mut self, request: InventoryRequest) -> InventoryResponse {
        let (reply_to, answer) = self.send(request);
        if let Some(answer) = answer {
            return answer;
        }
        self.persist();
        let index = self
            .released
            .iter()
            .position(|(to, _)| *to == reply_to)
            .expect("an instant disk releases the answer");
        self.released.remove(index).1
    }

    fn advance(&mut self, duration: Duration) {
        self.now += duration;
        if self.core.next_wake().is_some_and(|at| at <= self.now) {
            assert!(self.core.wake(self.now).is_empty());
        }
        self.persist();
    }

    fn stock(&self) -> StockView {
        self.core.stock(&bolt()).unwrap()
    }
}

#[test]
fn reserve_commit_and_release_conserve_stock() {
    // Goal: SG6 on the happy paths and the trace carries the counts. Method: reserve for three
    // sagas, commit one, release one, refuse one for lack of stock; check the counts after each
    // step and in the events.
    let (trace, _guard) = record_trace();
    let mut inventory = TestInventory::new(config(10));
    assert_eq!(inventory.stock(), stock(10, 0, 0));
    assert!(matches!(
        inventory.call(reserve(1, 4)),
        InventoryResponse::Reserved {
            expires_in_ms: 10_000
        }
    ));
    assert!(matches!(
        inventory.call(reserve(2, 5)),
        InventoryResponse::Reserved { .. }
    ));
    assert_eq!(inventory.stock(), stock(1, 9, 0));
    assert_eq!(
        inventory.call(reserve(3, 2)),
        refused(Refusal::InsufficientStock { available: 1 })
    );
    assert_eq!(inventory.call(commit(1)), InventoryResponse::Committed);
    assert_eq!(inventory.stock(), stock(1, 5, 4));
    assert_eq!(inventory.call(release(2)), InventoryResponse::Released);
    assert_eq!(inventory.stock(), stock(6, 0, 4));

    let committed = trace.named("stock_committed");
    assert_eq!(committed.len(), 1);
    let event = &committed[0];
    assert_eq!(
        (
            event.u64("saga"),
            event.u64("quantity"),
            event.u64("available"),
            event.u64("reserved"),
            event.u64("consumed"),
            event.u64("initial")
        ),
        (1, 4, 1, 5, 4, 10)
    );
    assert_eq!(trace.named("stock_refused").len(), 1);
    assert_eq!(trace.named("stock_released").len(), 1);
}

#[test]
fn every_request_is_idempotent_per_saga() {
    // Goal: repeats never change stock twice, and finished records never move again. Method:
    // repeat each request, try a different reservation under the same saga, reserve after a
    // release, release after a commit, commit without a reservation, and release a saga that
    // never reserved (tombstone) before its reserve arrives.
    let mut inventory = TestInventory::new(config(10));
    inventory.call(reserve(1, 3));
    assert!(matches!(
        inventory.call(reserve(1, 3)),
        InventoryResponse::Reserved { .. }
    ));
    assert_eq!(inventory.call(reserve(1, 4)), refused(Refusal::Mismatch));
    assert_eq!(inventory.stock(), stock(7, 3, 0));
    assert_eq!(inventory.call(commit(1)), InventoryResponse::Committed);
    assert_eq!(inventory.call(commit(1)), InventoryResponse::Committed);
    assert_eq!(inventory.call(reserve(1, 3)), InventoryResponse::Committed);
    assert_eq!(
        inventory.call(release(1)),
        refused(Refusal::AlreadyCommitted)
    );
    assert_eq!(inventory.stock(), stock(7, 0, 3));

    inventory.call(reserve(2, 2));
    assert_eq!(inventory.call(release(2)), InventoryResponse::Released);
    assert_eq!(inventory.call(release(2)), InventoryResponse::Released);
    assert_eq!(
        inventory.call(reserve(2, 2)),
        refused(Refusal::AlreadyReleased)
    );
    assert_eq!(inventory.call(commit(2)), refused(Refusal::AlreadyReleased));
    assert_eq!(inventory.call(commit(9)), refused(Refusal::NotReserved));

    assert_eq!(inventory.call(release(3)), InventoryResponse::Released);
    assert_eq!(
        inventory.call(reserve(3, 1)),
        refused(Refusal::AlreadyReleased)
    );
    assert_eq!(inventory.stock(), stock(7, 0, 3));
    assert_eq!(
        inventory.core.record_state(SagaId(3)),
        Some(RecordState::Released)
    );
}

#[test]
fn reservations_expire_and_a_late_commit_retakes_what_is_left() {
    // Goal: expiry frees an abandoned lock exactly at its lifetime; a commit after expiry takes
    // the pieces again if they are there, and is refused with the shortfall if not. Method:
    // reserve for two sagas, let both expire (not before the lifetime), commit the first (the
    // pieces are back, taken again), let another saga take the rest, commit the second
    // (refused).
    let (trace, _guard) = record_trace();
    let mut inventory = TestInventory::new(config(5));
    inventory.call(reserve(1, 2));
    inventory.call(reserve(2, 3));
    inventory.advance(TTL - Duration::from_millis(1));
    assert_eq!(inventory.stock(), stock(0, 5, 0), "not yet expired");
    inventory.advance(Duration::from_millis(1));
    assert_eq!(inventory.stock(), stock(5, 0, 0));
    assert_eq!(trace.named("reservation_expired").len(), 2);
    assert_eq!(inventory.core.pending_count(), 0);

    assert_eq!(inventory.call(commit(1)), InventoryResponse::Committed);
    assert_eq!(inventory.stock(), stock(3, 0, 2));
    let late = trace.named("stock_committed");
    assert_eq!(late[0].field("after_expiry"), Some("true"));
    inventory.call(reserve(3, 2));
    assert_eq!(
        inventory.call(commit(2)),
        refused(Refusal::InsufficientStock { available: 1 })
    );
    assert_eq!(inventory.stock(), stock(1, 2, 2));
}

#[test]
fn answers_wait_for_the_write_and_a_crash_keeps_what_was_answered() {
    // Goal: durable before answered. Method: reserve without writing (no answer), crash: the
    // reservation is gone and the stock whole; reserve and write, crash: the reservation is
    // there, with a fresh lifetime from the restart.
    let mut inventory = TestInventory::new(config(10));
    let (_, answer) = inventory.send(reserve(1, 4));
    assert_eq!(answer, None);
    let mut inventory = inventory.crash();
    assert_eq!(inventory.stock(), stock(10, 0, 0));
    assert_eq!(inventory.core.record_state(SagaId(1)), None);

    inventory.call(reserve(1, 4));
    inventory.now = Duration::from_secs(8);
    let mut inventory = inventory.crash();
    assert_eq!(inventory.stock(), stock(6, 4, 0));
    assert_eq!(
        inventory.core.next_wake(),
        Some(Duration::from_secs(8) + TTL)
    );
    assert!(matches!(
        inventory.call(reserve(1, 4)),
        InventoryResponse::Reserved {
            expires_in_ms: 10_000
        }
    ));
}

#[test]
fn stock_is_conserved_under_a_random_schedule_with_crashes() {
    // Goal: SG6 (conserved, never negative, reserved = what open reservations hold) and
    // durability of every answer, under a random mix of requests, expiries, writes and
    // crashes. Method: seeded workload; after every step check the invariants on the durable
    // form; keep the last answered state per saga and check it survives each crash.
    for seed in [5, 6, 7] {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut inventory = TestInventory::new(config(20));
        let mut answered: BTreeMap<u64, RecordState> = BTreeMap::new();
        let mut waiting: BTreeMap<ReplyTo, u64> = BTreeMap::new();
        let mut crashes = 0;
        for _ in 0..600 {
            let saga = rng.next_u64() % 12;
            let mut answers = Vec::new();
            match rng.next_u64() % 12 {
                0..=6 => {
                    let request = match rng.next_u64() % 3 {
                        0 => reserve(saga, 1 + (rng.next_u64() % 4) as u32),
                        1 => commit(saga),
                        _ => release(saga),
                    };
                    let (to, answer) = inventory.send(request);
                    waiting.insert(to, saga);
                    answers.extend(answer.map(|answer| (to, answer)));
                }
                7 | 8 => inventory.advance(Duration::from_millis(rng.next_u64() % 3000)),
                9 | 10 => inventory.persist(),
                _ => {
                    inventory = inventory.crash();
                    crashes += 1;
                    waiting.clear();
                    for (saga, state) in &answered {
                        let now = inventory.core.record_state(SagaId(*saga));
                        let survived = match state {
                            // A pending reservation may have expired or finished since.
                            RecordState::Pending => now.is_some(),
                            RecordState::Released => {
                                matches!(now, Some(RecordState::Released | RecordState::Expired))
                            }
                            other => now == Some(*other),
                        };
                        assert!(
                            survived,
                            "seed {seed}: saga {saga} was {state:?}, now {now:?}"
                        );
                    }
                }
            }
            answers.extend(std::mem::take(&mut inventory.released));
            for (to, answer) in answers {
                let saga = waiting.remove(&to).expect("asked");
                let state = match answer {
                    InventoryResponse::Reserved { .. } => RecordState::Pending,
                    InventoryResponse::Committed => RecordState::Committed,
                    InventoryResponse::Released => RecordState::Released,
                    _ => continue,
                };
                answered.insert(saga, state);
            }
            durable::check(&inventory.core.durable_state())
                .unwrap_or_else(|error| panic!("seed {seed}: {error}"));
        }
        assert!(crashes > 10, "seed {seed}: the workload must crash often");
        assert!(!answered.is_empty());
    }
}

#[test]
fn a_damaged_or_inconsistent_state_is_refused() {
    // Goal: the inventory never starts from stock it cannot trust. Method: flip a bit of a
    // valid state file; and write a well-formed file whose counts are not conserved.
    let mut inventory = TestInventory::new(config(10));
    inventory.call(reserve(1, 2));
    let mut bytes = inventory.disk.clone().unwrap();
    bytes[15] ^= 0x02;
    assert!(InventoryCore::recover(&inventory.config, Some(&bytes), Duration::ZERO).is_err());

    let mut state = inventory.core.durable_state();
    state.parts.get_mut(&bolt()).unwrap().available += 1;
    let bytes = durable::encode(&state);
    assert!(matches!(
        InventoryCore::recover(&inventory.config, Some(&bytes), Duration::ZERO),
        Err(durable::StateError::Inconsistent(_))
    ));
}
