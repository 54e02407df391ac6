//! The motion service's side of the transactional outbox: which state changes it announces on
//! the bus, under which message ids, and how full it may get.
//!
//! Owns `EventOutbox`: the `bus::Outbox` of messages not yet acknowledged by the bus, the next
//! event sequence of each axis (both part of the durable state), and, in memory, the state
//! version each message was written with, so only messages already on disk are relayed. It does
//! not own the writes (the core bumps its version and the shell writes the snapshot) nor the
//! relaying (the shell runs `bus::relay` and reports what the bus acknowledged).
//!
//! Rules:
//! - **Same write.** A message is added by the same core call that makes the change it
//!   announces, so it lands in the same durable snapshot: a crash loses both or neither.
//! - **Deterministic ids.** A message's id is its axis and that axis's event sequence
//!   (`message_id`); sequences are durable, so a change re-derived after a crash (a move found
//!   interrupted again) gets the same id, and the bus stores it once. Axis names are unique in
//!   a cell, so ids of different motion services never collide.
//! - **Backpressure, never a drop.** Requests that would lead to new messages (a lease grant, a
//!   new move) are refused `Overloaded` once the outbox holds `OUTBOX_ADMIT_MAX` messages. The
//!   rest of the outbox is a reserve for what nobody asks for: each axis has at most one running
//!   move (one outcome to announce) and one live lease (one release or expiry), so
//!   `2 * AXES_MAX` messages always fit, and announcing never fails.
//! - Without a bus (`MotionConfig::bus` is `None`) nothing is announced and nothing changes:
//!   the durable state stays in its old format, byte for byte.

use std::collections::BTreeMap;

use super::config::AXES_MAX;
use super::protocol::{AxisName, MOTION_EVENTS_TOPIC, MotionEvent};
use crate::bus::outbox::OUTBOX_ENTRIES_MAX;
use crate::bus::{MessageId, Outbox, OutboxEntry, TopicName};

/// Most messages in the outbox at which requests that announce something are still admitted.
pub const OUTBOX_ADMIT_MAX: usize = OUTBOX_ENTRIES_MAX - 2 * AXES_MAX;

/// Tag in the top 32 bits of every motion message id (ASCII `moti`): keeps these ids (and the
/// journal event ids consumers derive from them) apart from the saga and heartbeat event ids.
pub const MESSAGE_ID_TAG: u32 = 0x6d6f_7469;

const AXIS_CHECKSUM: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// The id of `axis`'s `sequence`-th event: `MESSAGE_ID_TAG`, a CRC-32C of the axis name, and
/// the sequence (`motion-<axis>-<sequence>` packed in 128 bits).
pub fn message_id(axis: &AxisName, sequence: u64) -> MessageId {
    let axis_sum = AXIS_CHECKSUM.checksum(axis.as_str().as_bytes());
    let high = (u64::from(MESSAGE_ID_TAG) << 32) | u64::from(axis_sum);
    MessageId((u128::from(high) << 64) | u128::from(sequence))
}

/// The motion service's outbox (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct EventOutbox {
    enabled: bool,
    outbox: Outbox,
    /// The next event sequence per axis (retired axes keep theirs).
    sequences: BTreeMap<AxisName, u64>,
    /// The state version each message in the outbox was added at; recovered ones at 0.
    added_at: BTreeMap<MessageId, u64>,
}

impl EventOutbox {
    /// An outbox resuming from the durable parts; `enabled` is whether the service has a bus.
    /// Recovered messages are on disk already, so they are relayable at once.
    pub fn new(enabled: bool, outbox: Outbox, sequences: BTreeMap<AxisName, u64>) -> EventOutbox {
        let added_at = outbox.entries().map(|entry| (entry.msg_id, 0)).collect();
        EventOutbox {
            enabled,
            outbox,
            sequences,
            added_at,
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Whether a request that will announce something may be admitted now.
    pub fn admits(&self) -> bool {
        !self.enabled || self.outbox.len() < OUTBOX_ADMIT_MAX
    }

    /// Adds `event` to the outbox as part of state version `version` (the version the caller's
    /// change will be written with); a no-op without a bus. Returns whether it was added.
    pub fn announce(&mut self, version: u64, event: &MotionEvent) -> bool {
        if !self.enabled {
            return false;
        }
        let axis = event.axis();
        let sequence = self.sequences.entry(axis.clone()).or_insert(0);
        let msg_id = message_id(axis, *sequence);
        *sequence += 1;
        let payload = postcard::to_stdvec(event).expect("a motion event always serializes");
        let entry = OutboxEntry {
            msg_id,
            topic: TopicName::new(MOTION_EVENTS_TOPIC),
            payload,
        };
        if let Err(full) = self.outbox.push(entry) {
            panic!(
                "{full}: the reserve of {} messages was broken",
                2 * AXES_MAX
            );
        }
        self.added_at.insert(msg_id, version);
        true
    }

    /// The messages already on disk (written with a version up to `version_durable`), oldest
    /// first: the ones the relay may publish.
    pub fn relayable(&self, version_durable: u64) -> Vec<OutboxEntry> {
        self.outbox
            .entries()
            .take_while(|entry| self.added_at[&entry.msg_id] <= version_durable)
            .cloned()
            .collect()
    }

    /// Removes the messages the bus acknowledged; returns how many were still there.
    pub fn confirm(&mut self, msg_ids: &[MessageId]) -> usize {
        let mut removed = 0;
        for msg_id in msg_ids {
            if self.outbox.confirm(*msg_id) {
                self.added_at.remove(msg_id);
                removed += 1;
            }
        }
        removed
    }

    pub fn len(&self) -> usize {
        self.outbox.len()
    }

    pub fn is_empty(&self) -> bool {
        self.outbox.is_empty()
    }

    /// The durable parts: the outbox and the sequences.
    pub fn durable_parts(&self) -> (Outbox, BTreeMap<AxisName, u64>) {
        (self.outbox.clone(), self.sequences.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completed(axis: &str, request_id: u64) -> MotionEvent {
        MotionEvent::MoveCompleted {
            axis: AxisName::new(axis),
            request_id,
            target_rad: 0.5,
            final_position_rad: 0.499,
            recovered: false,
        }
    }

    #[test]
    fn ids_are_per_axis_sequences_and_never_collide_across_axes() {
        // Goal: deterministic, distinct ids: each axis counts its own events, and two axes'
        // ids differ even at equal sequences. Method: announce on x, y, x and inspect the ids
        // and payloads.
        let mut outbox = EventOutbox::new(true, Outbox::default(), BTreeMap::new());
        for (axis, request_id) in [("x", 1), ("y", 2), ("x", 3)] {
            assert!(outbox.announce(1, &completed(axis, request_id)));
        }
        let entries = outbox.relayable(1);
        let ids: Vec<MessageId> = entries.iter().map(|entry| entry.msg_id).collect();
        let x = AxisName::new("x");
        let y = AxisName::new("y");
        assert_eq!(
            ids,
            vec![message_id(&x, 0), message_id(&y, 0), message_id(&x, 1)]
        );
        assert_ne!(message_id(&x, 0), message_id(&y, 0));
        assert_eq!(ids[2].0 >> 96, u128::from(MESSAGE_ID_TAG));
        let decoded: MotionEvent = crate::framing::decode(&entries[2].payload).unwrap();
        assert_eq!(decoded, completed("x", 3));
        assert_eq!(entries[0].topic.as_str(), MOTION_EVENTS_TOPIC);
    }

    #[test]
    fn only_durable_messages_are_relayable_and_confirm_removes() {
        // Goal: the relay never publishes what a crash could still take back, and acknowledged
        // messages leave the outbox. Method: announce at versions 1 and 2, ask for what is
        // relayable at durable versions 0, 1, 2, confirm the first.
        let mut outbox = EventOutbox::new(true, Outbox::default(), BTreeMap::new());
        outbox.announce(1, &completed("x", 1));
        outbox.announce(2, &completed("x", 2));
        assert!(outbox.relayable(0).is_empty());
        assert_eq!(outbox.relayable(1).len(), 1);
        assert_eq!(outbox.relayable(2).len(), 2);
        let first = outbox.relayable(1)[0].msg_id;
        assert_eq!(
            outbox.confirm(&[first, first]),
            1,
            "a second confirm is a no-op"
        );
        assert_eq!(outbox.len(), 1);
        assert_eq!(
            outbox.relayable(2)[0].msg_id,
            message_id(&AxisName::new("x"), 1)
        );
    }

    #[test]
    fn recovered_outbox_continues_its_sequences() {
        // Goal: after a restart the outbox relays what it held and new ids continue the axis's
        // sequence (no id is reused for a different event). Method: announce twice, rebuild
        // from the durable parts, announce again.
        let mut outbox = EventOutbox::new(true, Outbox::default(), BTreeMap::new());
        outbox.announce(1, &completed("x", 1));
        outbox.announce(1, &completed("x", 2));
        let (saved, sequences) = outbox.durable_parts();
        let mut recovered = EventOutbox::new(true, saved, sequences);
        assert_eq!(
            recovered.relayable(0).len(),
            2,
            "recovered messages are on disk"
        );
        recovered.announce(5, &completed("x", 3));
        assert_eq!(
            recovered.relayable(5)[2].msg_id,
            message_id(&AxisName::new("x"), 2)
        );
    }

    #[test]
    fn without_a_bus_nothing_is_announced_and_everything_is_admitted() {
        // Goal: bus None changes nothing. Method: a disabled outbox takes an event: empty,
        // no sequence recorded, always admits.
        let mut outbox = EventOutbox::new(false, Outbox::default(), BTreeMap::new());
        assert!(!outbox.announce(1, &completed("x", 1)));
        assert!(outbox.is_empty() && outbox.admits());
        assert_eq!(outbox.durable_parts(), (Outbox::default(), BTreeMap::new()));
    }

    #[test]
    fn admission_stops_before_the_reserve() {
        // Goal: backpressure: requests are refused once the outbox reaches OUTBOX_ADMIT_MAX,
        // while the reserve still takes the unrequested announcements. Method: fill to the
        // admission limit, check admits() turns false, announce 2 * AXES_MAX more.
        let mut outbox = EventOutbox::new(true, Outbox::default(), BTreeMap::new());
        for request_id in 0..OUTBOX_ADMIT_MAX as u64 {
            assert!(outbox.admits());
            outbox.announce(1, &completed("x", request_id));
        }
        assert!(!outbox.admits());
        for request_id in 0..(2 * AXES_MAX) as u64 {
            outbox.announce(1, &completed("y", request_id));
        }
        assert_eq!(outbox.len(), OUTBOX_ENTRIES_MAX);
    }
}
