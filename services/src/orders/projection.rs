//! What one orders instance knows of every saga, and which sagas it should drive now: a pure
//! state machine fed with journal events, driver ends and time.
//!
//! Owns the projection of the saga streams (each saga's folded state and when it last
//! changed), when each instance last showed life, which sagas this instance drives, and the
//! rules that pick the next ones. It does not own the saga's rules (`saga`) or any I/O (the
//! shell feeds it and starts the drivers it names).
//!
//! Rules:
//! - A saga this instance owns and does not drive yet is driven at once (a new order, or every
//!   open saga after a restart: resumption).
//! - A saga another instance owns is claimed once both its stream and its owner's life signs
//!   (heartbeats, or events of any saga it owns) were silent for `takeover_after`.
//! - A driver that stopped without finishing (unreachable participant or journal, ownership
//!   lost, owner not this instance after all) is not restarted before `driver_restart_delay`.
//! - At most `sagas_driven_max` drivers at once; sagas are picked in order id order.
//! - Feeding the same event twice changes nothing (idempotent by stream version, ES7).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::config::OrdersConfig;
use super::protocol::OrderId;
use super::saga::{Saga, SagaEvent, instance_of_stream, order_of_stream};
use crate::journal::RecordedEvent;

/// Most sagas the projection remembers; beyond, finished ones are forgotten first.
pub const KNOWN_SAGAS_MAX: usize = 100_000;

/// How a saga driver ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriveEnd {
    Finished,
    /// Another instance owns it (and no takeover was asked).
    NotOwner,
    OwnershipLost,
    /// The journal or a participant could not be reached within a round: start again later.
    Unavailable,
    /// The stream does not make a saga.
    Invalid,
}

#[derive(Clone, Debug, PartialEq)]
enum KnownState {
    Open(Box<Saga>),
    Finished,
    Invalid,
}

#[derive(Clone, Debug)]
struct Known {
    state: KnownState,
    /// When this instance last saw the saga change.
    last_seen: Duration,
}

/// A driver to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DriveOrder {
    pub order: OrderId,
    /// The saga belongs to another instance: claim it first.
    pub claim: bool,
}

/// One instance's view of all sagas (see the module docs).
#[derive(Clone, Debug)]
pub struct Projection {
    me: String,
    takeover_after: Duration,
    driver_restart_delay: Duration,
    sagas_driven_max: usize,
    known: BTreeMap<OrderId, Known>,
    /// When each instance last showed life.
    instances_seen: BTreeMap<String, Duration>,
    driving: BTreeSet<OrderId>,
    restart_at: BTreeMap<OrderId, Duration>,
}

impl Projection {
    pub fn new(config: &OrdersConfig) -> Projection {
        Projection {
            me: config.instance.clone(),
            takeover_after: config.takeover_after,
            driver_restart_delay: config.driver_restart_delay,
            sagas_driven_max: config.sagas_driven_max,
            known: BTreeMap::new(),
            instances_seen: BTreeMap::new(),
            driving: BTreeSet::new(),
            restart_at: BTreeMap::new(),
        }
    }

    /// Folds in one event of the journal's global log.
    pub fn observe(&mut self, event: &RecordedEvent, now: Duration) {
        if let Some(instance) = instance_of_stream(&event.stream) {
            self.instances_seen.insert(instance.to_owned(), now);
            return;
        }
        let Some(order) = order_of_stream(&event.stream) else {
            return;
        };
        let decoded = SagaEvent::from_recorded(event);
        match (self.known.get_mut(&order), decoded) {
            (None, Ok(SagaEvent::Started { order: spec, owner })) if event.version == 0 => {
                self.instances_seen.insert(owner.clone(), now);
                let (saga, _) = Saga::start(spec, owner);
                self.insert(order, saga, now);
            }
            (Some(known), Ok(saga_event)) => {
                let KnownState::Open(saga) = &mut known.state else {
                    return;
                };
                if event.version <= saga.version {
                    return;
                }
                known.last_seen = now;
                if event.version != saga.version + 1 || saga.apply(&saga_event).is_err() {
                    known.state = KnownState::Invalid;
                    return;
                }
                // Only the owner appends: the event shows it alive.
                self.instances_seen.insert(saga.owner.clone(), now);
                if saga.is_finished() {
                    known.state = KnownState::Finished;
                }
            }
            (Some(known), Err(_)) => known.state = KnownState::Invalid,
            // A saga whose start this instance never saw (forgotten): nothing to do.
            (None, _) => {}
        }
    }

    /// A saga this instance just started (before the subscription shows it).
    pub fn started(&mut self, saga: Saga, now: Duration) {
        let order = saga.order.order_id;
        if !self.known.contains_key(&order) {
            self.insert(order, saga, now);
        }
    }

    fn insert(&mut self, order: OrderId, saga: Saga, now: Duration) {
        self.known.insert(
            order,
            Known {
                state: KnownState::Open(Box::new(saga)),
                last_seen: now,
            },
        );
        if self.known.len() > KNOWN_SAGAS_MAX {
            let forgettable = self
                .known
                .iter()
                .find(|(_, known)| !matches!(known.state, KnownState::Open(_)))
                .map(|(order, _)| *order);
            if let Some(forgotten) = forgettable {
                self.known.remove(&forgotten);
            }
        }
    }

    /// The drivers to start now (marked as driving), and when to ask again if nothing else
    /// happens before.
    pub fn to_drive(&mut self, now: Duration) -> (Vec<DriveOrder>, Option<Duration>) {
        let mut start = Vec::new();
        let mut due: Option<Duration> = None;
        let mut wake_at = |at: Duration| due = Some(due.map_or(at, |d| d.min(at)));
        for (order, known) in &self.known {
            if self.driving.len() + start.len() >= self.sagas_driven_max {
                break;
            }
            let KnownState::Open(saga) = &known.state else {
                continue;
            };
            if self.driving.contains(order) {
                continue;
            }
            if let Some(&at) = self.restart_at.get(order)
                && at > now
            {
                wake_at(at);
                continue;
            }
            let claim = saga.owner != self.me;
            if claim {
                let owner_seen = self.instances_seen.get(&saga.owner).copied();
                let silent_since = known.last_seen.max(owner_seen.unwrap_or_default());
                if now < silent_since + self.takeover_after {
                    wake_at(silent_since + self.takeover_after);
                    continue;
                }
            }
            start.push(DriveOrder {
                order: *order,
                claim,
            });
        }
        for drive in &start {
            self.driving.insert(drive.order);
        }
        (start, due)
    }

    /// A driver ended.
    pub fn driver_ended(&mut self, order: OrderId, end: DriveEnd, now: Duration) {
        let was_driving = self.driving.remove(&order);
        assert!(was_driving, "order {order} ended a driver it did not have");
        let known = self.known.get_mut(&order);
        match end {
            DriveEnd::Finished => {
                if let Some(known) = known {
                    known.state = KnownState::Finished;
                }
                self.restart_at.remove(&order);
            }
            DriveEnd::Invalid => {
                if let Some(known) = known {
                    known.state = KnownState::Invalid;
                }
                self.restart_at.remove(&order);
            }
            DriveEnd::NotOwner | DriveEnd::OwnershipLost | DriveEnd::Unavailable => {
                self.restart_at
                    .insert(order, now + self.driver_restart_delay);
                if let Some(known) = known {
                    known.last_seen = known.last_seen.max(now);
                }
            }
        }
    }

    /// Sagas driven now.
    pub fn driving(&self) -> usize {
        self.driving.len()
    }

    /// Open sagas known.
    pub fn open(&self) -> usize {
        self.known
            .values()
            .filter(|known| matches!(known.state, KnownState::Open(_)))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::inventory::PartId;
    use crate::journal::RecordedEvent;
    use crate::motion::AxisName;
    use crate::orders::protocol::OrderSpec;
    use crate::orders::saga::{Step, heartbeat_event, heartbeat_stream, stream_name};

    const TAKEOVER: Duration = Duration::from_secs(10);
    const RESTART: Duration = Duration::from_secs(1);

    fn config(max: usize) -> OrdersConfig {
        let mut config = OrdersConfig::new("orders-1", 1, BTreeMap::new());
        config.takeover_after = TAKEOVER;
        config.driver_restart_delay = RESTART;
        config.sagas_driven_max = max;
        config
    }

    fn secs(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn recorded(order: u64, version: u64, event: &SagaEvent) -> RecordedEvent {
        let data = event.to_event_data(OrderId(order), version, 9);
        RecordedEvent {
            stream: stream_name(OrderId(order)),
            version,
            position: 0,
            id: data.id,
            kind: data.kind,
            data: data.data,
        }
    }

    fn started(order: u64, owner: &str) -> RecordedEvent {
        let spec = OrderSpec {
            order_id: OrderId(order),
            part: PartId::new("bolt"),
            quantity: 1,
            axis: AxisName::new("x"),
            target_rad: 0.0,
        };
        let (_, event) = Saga::start(spec, owner);
        recorded(order, 0, &event)
    }

    fn heartbeat(instance: &str, version: u64) -> RecordedEvent {
        let data = heartbeat_event(instance, version);
        RecordedEvent {
            stream: heartbeat_stream(instance),
            version,
            position: 0,
            id: data.id,
            kind: data.kind,
            data: data.data,
        }
    }

    fn orders(start: &[DriveOrder]) -> Vec<(u64, bool)> {
        start.iter().map(|d| (d.order.0, d.claim)).collect()
    }

    #[test]
    fn own_sagas_are_driven_at_once_and_others_after_silence() {
        // Goal: resumption and takeover timing. Method: an own saga and another instance's;
        // the own one is driven at once; the other only at takeover_after after its last
        // event, and the answer names that instant as the next due time.
        let mut projection = Projection::new(&config(10));
        projection.observe(&started(1, "orders-1"), secs(0));
        projection.observe(&started(2, "orders-2"), secs(0));
        let (start, due) = projection.to_drive(secs(1));
        assert_eq!(orders(&start), vec![(1, false)]);
        assert_eq!(due, Some(TAKEOVER));
        assert_eq!(projection.to_drive(secs(9)).0, vec![]);
        let (start, due) = projection.to_drive(TAKEOVER);
        assert_eq!(orders(&start), vec![(2, true)]);
        assert_eq!(due, None);
        assert_eq!(projection.driving(), 2);
    }

    #[test]
    fn a_heartbeating_owner_keeps_its_silent_saga() {
        // Goal: a live owner waiting on a participant is not taken over. Method: another
        // instance's saga without events for 30 s whose owner heartbeats every 3 s is never
        // claimed; once the heartbeats stop, it is claimed takeover_after after the last.
        let mut projection = Projection::new(&config(10));
        projection.observe(&started(2, "orders-2"), secs(0));
        for beat in 0..10 {
            let now = secs(3 * beat);
            projection.observe(&heartbeat("orders-2", beat), now);
            assert!(projection.to_drive(now).0.is_empty(), "claimed at {now:?}");
        }
        assert!(
            projection
                .to_drive(secs(27) + TAKEOVER - secs(1))
                .0
                .is_empty()
        );
        assert_eq!(
            orders(&projection.to_drive(secs(27) + TAKEOVER).0),
            vec![(2, true)]
        );
    }

    #[test]
    fn finished_invalid_and_duplicate_events_are_handled() {
        // Goal: finished sagas are never driven, a stream that breaks the saga's rules is never
        // driven, and feeding an event twice changes nothing. Method: finish saga 1 by events,
        // feed one of them again, corrupt saga 2 with an out-of-order event.
        let mut projection = Projection::new(&config(10));
        projection.observe(&started(1, "orders-1"), secs(0));
        let failed = SagaEvent::StepFailed {
            step: Step::ReservePart,
            reason: "x".to_owned(),
        };
        let compensated_step = SagaEvent::StepCompensated {
            step: Step::ReservePart,
        };
        projection.observe(&recorded(1, 1, &failed), secs(0));
        projection.observe(&recorded(1, 1, &failed), secs(0));
        projection.observe(&recorded(1, 2, &compensated_step), secs(0));
        projection.observe(&recorded(1, 3, &SagaEvent::Compensated), secs(0));
        projection.observe(&started(2, "orders-1"), secs(0));
        projection.observe(&recorded(2, 1, &SagaEvent::Completed), secs(0));
        assert_eq!(projection.open(), 0);
        assert!(projection.to_drive(secs(100)).0.is_empty());
    }

    #[test]
    fn drivers_are_bounded_and_restart_after_their_delay() {
        // Goal: the drive limit and the restart delay. Method: three own sagas with a limit of
        // two; end one Unavailable: it is not restarted before the delay, the third is started
        // instead; at the delay it is started again; a finished one never again.
        let mut projection = Projection::new(&config(2));
        for order in 1..=3 {
            projection.observe(&started(order, "orders-1"), secs(0));
        }
        assert_eq!(
            orders(&projection.to_drive(secs(0)).0),
            vec![(1, false), (2, false)]
        );
        projection.driver_ended(OrderId(1), DriveEnd::Unavailable, secs(5));
        let (start, due) = projection.to_drive(secs(5));
        assert_eq!(orders(&start), vec![(3, false)]);
        assert_eq!(due, Some(secs(5) + RESTART));
        projection.driver_ended(OrderId(2), DriveEnd::Finished, secs(5));
        assert!(projection.to_drive(secs(5)).0.is_empty());
        assert_eq!(
            orders(&projection.to_drive(secs(5) + RESTART).0),
            vec![(1, false)]
        );
    }
}
