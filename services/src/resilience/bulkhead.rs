//! Bulkhead: bounded concurrency plus a bounded FIFO queue, one per compartment (for example per
//! upstream of the gateway), so one slow upstream cannot take every connection.
//!
//! Owns `Bulkhead`, the pure counter-and-queue state machine, and `SharedBulkhead`, its async
//! face: callers `enter().await` and get a `BulkheadPermit` that gives the slot back when dropped
//! (so a cancelled or failed call can never leak a slot). It does not own the call, its timeout
//! or the answer to a refusal (the gateway's 503 with `Retry-After`).
//!
//! Semantics: resilience4j's two bulkheads in one. Up to `concurrency_max` calls run at once
//! (SemaphoreBulkhead, maxConcurrentCalls 25); more wait in a FIFO queue of `queue_max`
//! (ThreadPoolBulkhead, queueCapacity 100) for at most `queue_wait_max`; a call that finds the
//! queue full, or whose wait runs out, is refused at once (resilience4j's abort policy). A
//! finishing call hands its slot straight to the head of the queue, so the count never dips and
//! no later arrival overtakes a waiter. `queue_wait_max` has no resilience4j equivalent for a
//! queue (a thread pool waits forever): we bound it, like everything, at 1 s by default.
//!
//! `SharedBulkhead` is single-threaded (`Rc<RefCell<…>>`, no `Send`): it lives inside one
//! service task, which is how every shell here runs. No borrow is held across an await.
//!
//! Events (INFO): `bulkhead_in_flight` (bulkhead, in_flight, queued, concurrency_max) after
//! every change,
//! `bulkhead_rejected` (bulkhead, in_flight, queued, retry_after_ms), `bulkhead_queue_timeout`
//! (bulkhead, queued).

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::millis;

/// Largest concurrency or queue a bulkhead may be configured with.
pub const BULKHEAD_SIZE_MAX: u32 = 100_000;

/// The numbers of one bulkhead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BulkheadConfig {
    /// Calls running at once [SemaphoreBulkhead maxConcurrentCalls 25].
    pub concurrency_max: u32,
    /// Calls waiting for a slot [ThreadPoolBulkhead queueCapacity 100]; 0 refuses at once.
    pub queue_max: u32,
    /// Longest wait in the queue (ours: 1 s).
    pub queue_wait_max: Duration,
    /// What a refusal suggests as `Retry-After` (ours: 1 s; a full compartment gives no better
    /// estimate).
    pub retry_after: Duration,
    /// TEST ONLY: planted bug for oracle BH1. Every call is admitted at once, whatever the
    /// number in flight (the limit is ignored; nothing queues); default false. A correct
    /// bulkhead never sets it; a test sets it to show that BH1 catches it.
    pub planted_ignores_limit: bool,
}

impl Default for BulkheadConfig {
    fn default() -> BulkheadConfig {
        BulkheadConfig {
            concurrency_max: 25,
            queue_max: 100,
            queue_wait_max: Duration::from_secs(1),
            retry_after: Duration::from_secs(1),
            planted_ignores_limit: false,
        }
    }
}

impl BulkheadConfig {
    /// Panics on a compartment that could never run a call.
    pub fn validate(&self) {
        assert!(
            (1..=BULKHEAD_SIZE_MAX).contains(&self.concurrency_max),
            "concurrency_max must be in 1..={BULKHEAD_SIZE_MAX}, got {}",
            self.concurrency_max
        );
        assert!(
            self.queue_max <= BULKHEAD_SIZE_MAX,
            "queue_max must be at most {BULKHEAD_SIZE_MAX}, got {}",
            self.queue_max
        );
        assert!(!self.retry_after.is_zero(), "retry_after must be positive");
    }
}

/// Identifies a queued caller.
pub type WaiterId = u64;

/// The answer to `Bulkhead::try_enter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BulkheadEntry {
    /// A slot is held: call `leave` when done.
    Admitted,
    /// Waiting; `leave` of another call will promote it, or `abandon` it.
    Queued(WaiterId),
    /// Slots and queue are full.
    Rejected(BulkheadFull),
}

/// A refusal: the compartment is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bulkhead full: retry after {retry_after:?}")]
pub struct BulkheadFull {
    pub retry_after: Duration,
}

/// The pure state: slots in use and the waiting line.
#[derive(Clone, Debug)]
pub struct Bulkhead {
    name: String,
    config: BulkheadConfig,
    in_flight: u32,
    queue: VecDeque<WaiterId>,
    waiter_next: WaiterId,
}

impl Bulkhead {
    pub fn new(name: impl Into<String>, config: BulkheadConfig) -> Bulkhead {
        config.validate();
        Bulkhead {
            name: name.into(),
            config,
            in_flight: 0,
            queue: VecDeque::new(),
            waiter_next: 1,
        }
    }

    pub fn config(&self) -> &BulkheadConfig {
        &self.config
    }

    /// Calls holding a slot.
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// Callers waiting.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// A new call asks for a slot.
    pub fn try_enter(&mut self) -> BulkheadEntry {
        let free = self.in_flight < self.config.concurrency_max && self.queue.is_empty();
        // The planted bug (TEST ONLY, oracle BH1): admitted whatever the count.
        let entry = if free || self.config.planted_ignores_limit {
            self.in_flight += 1;
            BulkheadEntry::Admitted
        } else if self.queue.len() < self.config.queue_max as usize {
            let id = self.waiter_next;
            self.waiter_next += 1;
            self.queue.push_back(id);
            BulkheadEntry::Queued(id)
        } else {
            let full = BulkheadFull {
                retry_after: self.config.retry_after,
            };
            tracing::info!(
                event = "bulkhead_rejected",
                bulkhead = self.name.as_str(),
                in_flight = self.in_flight,
                queued = self.queue.len(),
                retry_after_ms = millis(full.retry_after),
            );
            return BulkheadEntry::Rejected(full);
        };
        self.check_and_report();
        entry
    }

    /// A call gives its slot back; returns the waiter promoted into it, if any.
    pub fn leave(&mut self) -> Option<WaiterId> {
        assert!(self.in_flight > 0, "leave without a slot held");
        let promoted = self.queue.pop_front();
        if promoted.is_none() {
            self.in_flight -= 1;
        }
        self.check_and_report();
        promoted
    }

    /// A waiter gives up; `false` if it was no longer queued (it was promoted and holds a slot).
    pub fn abandon(&mut self, id: WaiterId) -> bool {
        let Some(position) = self.queue.iter().position(|queued| *queued == id) else {
            return false;
        };
        self.queue.remove(position);
        self.check_and_report();
        true
    }

    fn check_and_report(&self) {
        assert!(
            self.in_flight <= self.config.concurrency_max || self.config.planted_ignores_limit,
            "bulkhead {}: {} in flight above the limit {}",
            self.name,
            self.in_flight,
            self.config.concurrency_max
        );
        assert!(
            self.queue.len() <= self.config.queue_max as usize,
            "bulkhead queue above its limit"
        );
        assert!(
            self.queue.is_empty() || self.in_flight == self.config.concurrency_max,
            "nobody waits while a slot is free"
        );
        tracing::info!(
            event = "bulkhead_in_flight",
            bulkhead = self.name.as_str(),
            in_flight = self.in_flight,
            queued = self.queue.len(),
            concurrency_max = self.config.concurrency_max,
        );
    }
}

#[derive(Debug)]
struct Shared {
    core: Bulkhead,
    wakers: BTreeMap<WaiterId, oneshot::Sender<()>>,
}

impl Shared {
    /// Gives a slot back and wakes the promoted waiter, if any.
    fn leave(&mut self) {
        if let Some(promoted) = self.core.leave() {
            let sender = self
                .wakers
                .remove(&promoted)
                .expect("every queued waiter has a waker");
            // A receiver that is gone belongs to a waiter being dropped right now; its guard sees
            // `abandon` fail and gives the slot back itself.
            let _ = sender.send(());
        }
    }
}

/// The async face of a `Bulkhead`, cloneable within one task.
#[derive(Clone, Debug)]
pub struct SharedBulkhead {
    shared: Rc<RefCell<Shared>>,
}

/// A held slot; dropping it gives the slot back.
#[derive(Debug)]
pub struct BulkheadPermit {
    shared: Rc<RefCell<Shared>>,
}

impl Drop for BulkheadPermit {
    fn drop(&mut self) {
        self.shared.borrow_mut().leave();
    }
}

/// A queued caller; if dropped before it is admitted it leaves the queue, or gives back the slot
/// it was promoted into.
struct Waiting {
    shared: Rc<RefCell<Shared>>,
    id: WaiterId,
    armed: bool,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut shared = self.shared.borrow_mut();
        shared.wakers.remove(&self.id);
        if !shared.core.abandon(self.id) {
            // Promoted between the wake-up and now: the slot is ours to give back.
            shared.leave();
        }
    }
}

impl SharedBulkhead {
    pub fn new(name: impl Into<String>, config: BulkheadConfig) -> SharedBulkhead {
        SharedBulkhead {
            shared: Rc::new(RefCell::new(Shared {
                core: Bulkhead::new(name, config),
                wakers: BTreeMap::new(),
            })),
        }
    }

    /// Calls holding a slot.
    pub fn in_flight(&self) -> u32 {
        self.shared.borrow().core.in_flight()
    }

    /// Callers waiting.
    pub fn queued(&self) -> usize {
        self.shared.borrow().core.queued()
    }

    /// Waits for a slot, at most `queue_wait_max`; refused at once when the queue is full.
    pub async fn enter(&self) -> Result<BulkheadPermit, BulkheadFull> {
        let (entry, wait_max, retry_after) = {
            let mut shared = self.shared.borrow_mut();
            let entry = shared.core.try_enter();
            let config = *shared.core.config();
            (entry, config.queue_wait_max, config.retry_after)
        };
        let id = match entry {
            BulkheadEntry::Admitted => return Ok(self.permit()),
            BulkheadEntry::Rejected(full) => return Err(full),
            BulkheadEntry::Queued(id) => id,
        };
        let (sender, receiver) = oneshot::channel();
        self.shared.borrow_mut().wakers.insert(id, sender);
        let mut waiting = Waiting {
            shared: self.shared.clone(),
            id,
            armed: true,
        };
        match tokio::time::timeout(wait_max, receiver).await {
            Ok(Ok(())) => {
                waiting.armed = false;
                Ok(self.permit())
            }
            // The sender is only dropped by our own guard; treat it as a timeout.
            Ok(Err(_)) | Err(_) => {
                let queued = {
                    let shared = self.shared.borrow();
                    shared.core.queued()
                };
                tracing::info!(
                    event = "bulkhead_queue_timeout",
                    bulkhead = self.shared.borrow().core.name.as_str(),
                    queued,
                );
                drop(waiting);
                Err(BulkheadFull { retry_after })
            }
        }
    }

    fn permit(&self) -> BulkheadPermit {
        BulkheadPermit {
            shared: self.shared.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn config(concurrency_max: u32, queue_max: u32) -> BulkheadConfig {
        BulkheadConfig {
            concurrency_max,
            queue_max,
            queue_wait_max: Duration::from_millis(100),
            retry_after: Duration::from_millis(500),
            planted_ignores_limit: false,
        }
    }

    #[test]
    fn the_planted_bulkhead_ignores_its_limit() {
        // Goal: the TEST ONLY switch `planted_ignores_limit` really breaks BH1. Method: a planted
        // compartment of 2 with a queue admits 5 calls at once; the trace reports 5 in flight
        // against a limit of 2, and leaving gives every slot back.
        let (trace, _guard) = crate::testing::record_trace();
        let mut bulkhead = Bulkhead::new(
            "orders",
            BulkheadConfig {
                planted_ignores_limit: true,
                ..config(2, 4)
            },
        );
        for _ in 0..5 {
            assert_eq!(bulkhead.try_enter(), BulkheadEntry::Admitted);
        }
        assert_eq!(bulkhead.in_flight(), 5);
        let last = trace.named("bulkhead_in_flight").pop().expect("traced");
        assert_eq!(last.field("in_flight"), Some("5"));
        assert_eq!(last.field("concurrency_max"), Some("2"));
        for _ in 0..5 {
            assert_eq!(bulkhead.leave(), None);
        }
        assert_eq!(bulkhead.in_flight(), 0);
    }

    #[test]
    fn admits_queues_then_rejects_and_promotes_in_order() {
        // Goal: concurrency bound, bounded FIFO queue, direct hand-over. Method: 2 slots, 2
        // queue places; 5 arrivals give A A Q1 Q2 R; two leaves promote Q1 then Q2.
        let mut bulkhead = Bulkhead::new("b", config(2, 2));
        assert_eq!(bulkhead.try_enter(), BulkheadEntry::Admitted);
        assert_eq!(bulkhead.try_enter(), BulkheadEntry::Admitted);
        let BulkheadEntry::Queued(first) = bulkhead.try_enter() else {
            panic!("queued")
        };
        let BulkheadEntry::Queued(second) = bulkhead.try_enter() else {
            panic!("queued")
        };
        assert_eq!(
            bulkhead.try_enter(),
            BulkheadEntry::Rejected(BulkheadFull {
                retry_after: Duration::from_millis(500)
            })
        );
        assert_eq!(bulkhead.leave(), Some(first));
        assert_eq!(bulkhead.in_flight(), 2);
        assert_eq!(bulkhead.leave(), Some(second));
        assert_eq!(bulkhead.leave(), None);
        assert_eq!(bulkhead.leave(), None);
        assert_eq!(bulkhead.in_flight(), 0);
    }

    #[test]
    fn abandoned_waiters_leave_the_queue() {
        // Goal: a waiter that gives up frees its place and is never promoted. Method: queue
        // two, abandon the first, a leave promotes the second.
        let mut bulkhead = Bulkhead::new("b", config(1, 2));
        assert_eq!(bulkhead.try_enter(), BulkheadEntry::Admitted);
        let BulkheadEntry::Queued(first) = bulkhead.try_enter() else {
            panic!()
        };
        let BulkheadEntry::Queued(second) = bulkhead.try_enter() else {
            panic!()
        };
        assert!(bulkhead.abandon(first));
        assert!(!bulkhead.abandon(first));
        assert_eq!(bulkhead.leave(), Some(second));
    }

    #[tokio::test(start_paused = true)]
    async fn shared_bulkhead_hands_over_times_out_and_never_leaks() {
        // Goal: the async face keeps the bound and gives every slot back: on drop, on queue
        // timeout and on cancellation of a queued caller. Method: 1 slot, 1 queue place on a
        // paused clock; a queued caller is promoted when the holder drops; a second queued caller
        // times out; a third is cancelled (its future dropped) after promotion was sent.
        let bulkhead = SharedBulkhead::new("b", config(1, 1));
        let holder = bulkhead.enter().await.unwrap();
        let mut waiter = Box::pin(bulkhead.enter());
        // Poll once so the waiter queues.
        assert!(futures_util::FutureExt::now_or_never(&mut waiter).is_none());
        assert_eq!(bulkhead.queued(), 1);
        assert!(
            bulkhead.enter().await.is_err(),
            "queue full: refused at once"
        );
        drop(holder);
        let promoted = waiter.await.unwrap();
        assert_eq!((bulkhead.in_flight(), bulkhead.queued()), (1, 0));

        // Times out after queue_wait_max.
        let refused = bulkhead.enter().await.unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_millis(500));
        assert_eq!((bulkhead.in_flight(), bulkhead.queued()), (1, 0));

        // Cancelled after being promoted but before it ran: the slot comes back.
        let mut cancelled = Box::pin(bulkhead.enter());
        assert!(futures_util::FutureExt::now_or_never(&mut cancelled).is_none());
        drop(promoted);
        assert_eq!((bulkhead.in_flight(), bulkhead.queued()), (1, 0));
        drop(cancelled);
        assert_eq!((bulkhead.in_flight(), bulkhead.queued()), (0, 0));
    }

    proptest! {
        #[test]
        fn in_flight_and_queue_never_exceed_their_limits(
            ops in proptest::collection::vec(0u8..3, 1..400),
            concurrency_max in 1u32..5,
            queue_max in 0u32..4,
        ) {
            // Goal: BH1: in flight ≤ limit and queue ≤ capacity at every instant, and slots are
            // conserved (admitted − left = in flight). Method: random enter / leave / abandon.
            let mut bulkhead = Bulkhead::new("p", config(concurrency_max, queue_max));
            let mut holding = 0u32;
            let mut waiting: Vec<WaiterId> = Vec::new();
            for op in ops {
                match op {
                    0 => match bulkhead.try_enter() {
                        BulkheadEntry::Admitted => holding += 1,
                        BulkheadEntry::Queued(id) => waiting.push(id),
                        BulkheadEntry::Rejected(_) => {
                            prop_assert_eq!(bulkhead.queued(), queue_max as usize);
                        }
                    },
                    1 if holding > 0 => {
                        if let Some(id) = bulkhead.leave() {
                            prop_assert_eq!(waiting.remove(0), id, "FIFO");
                        } else {
                            holding -= 1;
                        }
                    }
                    2 if !waiting.is_empty() => {
                        let id = waiting.pop().unwrap();
                        prop_assert!(bulkhead.abandon(id));
                    }
                    _ => {}
                }
                prop_assert!(bulkhead.in_flight() <= concurrency_max, "BH1");
                prop_assert!(bulkhead.queued() <= queue_max as usize, "BH1 queue");
                prop_assert_eq!(bulkhead.in_flight(), holding);
                prop_assert_eq!(bulkhead.queued(), waiting.len());
            }
        }
    }
}
