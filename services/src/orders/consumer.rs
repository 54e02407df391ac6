//! The orders instances' consumer of the motion events: group `orders` of topic
//! `motion.events` (when `OrdersConfig::bus` is set).
//!
//! Owns the mapping of a delivery to a journal append (`journal_event`: stream `axis-<axis>`,
//! event id = the message id, kind = the event's kind, data = the payload as published) and one
//! consumer round (`consume_round`: fetch, append each, ack). It does not own the loop (the
//! shell, `run_orders`, runs one round at a time in its select and starts the next) nor any
//! de-duplication table: the journal's idempotent append by event id is the de-duplication, so
//! a message takes effect once however often it is delivered (oracle MQ3), and both instances of
//! the group may apply the same message without harm.
//!
//! Order of effects: append, then ack. A crash (or a lost ack) in between makes the bus deliver
//! the message again, to either instance; its append is then answered as a duplicate and it is
//! acked. A message the journal would not take (unreachable, full, refused) is not acked: the
//! bus redelivers it after its ack wait and dead-letters it after `max_deliver`, never drops
//! it. An undecodable payload can never be applied: it is terminated (dead-lettered at once).
//! Within an axis stream, events are in the order they were applied, which a redelivery can
//! make differ from the order they were published; each event carries its request id or token.
//!
//! Events (`tracing`, INFO): `bus_message_applied` (group, topic, msg_id, sequence, delivery,
//! instance, stream, version) when the journal stored the event new; `bus_message_duplicate`
//! (same fields) when it was a re-append; `bus_message_not_applied` (group, topic, msg_id,
//! sequence, delivery, instance, reason) when it stays unacked; `bus_message_undecodable`
//! (group, topic, msg_id, sequence, instance) before it is terminated.

use std::rc::Rc;
use std::time::Duration;

use super::Context;
use crate::bus::{BusResponse, Delivery, GroupName, TopicName};
use crate::journal::{EventData, EventId, ExpectedVersion, JournalResponse, StreamName};
use crate::motion::{AxisName, MOTION_EVENTS_TOPIC, MotionEvent};
use crate::transport::Transport;

/// The consumer group of the orders instances.
pub const MOTION_EVENTS_GROUP: &str = "orders";

/// Prefix of the journal stream of an axis's motion events.
pub const AXIS_STREAM_PREFIX: &str = "axis-";

/// Wait after a failed fetch (or an unreachable journal) before the next round.
pub const CONSUMER_RETRY_DELAY: Duration = Duration::from_millis(100);

/// The journal stream of `axis`'s motion events.
pub fn axis_stream(axis: &AxisName) -> StreamName {
    StreamName::new(format!("{AXIS_STREAM_PREFIX}{axis}"))
}

/// A payload that is not a `MotionEvent`.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("payload is not a motion event: {0}")]
pub struct Undecodable(String);

/// The append that applies `delivery`: its stream and event. The event id is the message id
/// (motion's ids carry their own tag, see `motion::event_outbox`), so every delivery of one
/// message is the same append.
pub fn journal_event(delivery: &Delivery) -> Result<(StreamName, EventData), Undecodable> {
    let event: MotionEvent = crate::framing::decode(&delivery.payload)
        .map_err(|error| Undecodable(error.to_string()))?;
    let data = EventData {
        id: EventId(delivery.msg_id.0),
        kind: event.kind().to_owned(),
        data: delivery.payload.clone(),
    };
    Ok((axis_stream(event.axis()), data))
}

/// One round: fetches (waiting up to `subscription_wait`), applies and acks what came. Returns
/// the wait before the next round.
pub(super) async fn consume_round<T: Transport>(
    context: Rc<Context<T>>,
    delay: Duration,
) -> Duration {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let bus = context
        .bus
        .as_ref()
        .expect("a consumer runs only with a bus");
    let config = &context.config;
    let topic = TopicName::new(MOTION_EVENTS_TOPIC);
    let group = GroupName::new(MOTION_EVENTS_GROUP);
    let instance = config.instance.as_str();
    let Ok(deliveries) = bus.fetch(&topic, &group, config.subscription_wait).await else {
        return CONSUMER_RETRY_DELAY;
    };
    for delivery in deliveries {
        let msg_id = delivery.msg_id;
        let sequence = delivery.sequence;
        let Ok((stream, event)) = journal_event(&delivery) else {
            tracing::warn!(
                event = "bus_message_undecodable",
                group = group.as_str(),
                topic = topic.as_str(),
                %msg_id,
                sequence,
                instance,
            );
            // Best effort: if the term is lost, the message comes again and is terminated then.
            let _ = bus
                .finish(&topic, &group, sequence, true, config.call_timeout)
                .await;
            continue;
        };
        let answer = context
            .append(&stream, ExpectedVersion::Any, event, config.forward_retry)
            .await;
        let (duplicate, version) = match answer {
            Some(JournalResponse::Appended {
                duplicate,
                version_first,
                ..
            }) => (duplicate, version_first),
            other => {
                let reason = match other {
                    Some(JournalResponse::Rejected { reason }) => reason.kind(),
                    Some(_) => "unexpected_answer",
                    None => "journal_unavailable",
                };
                tracing::warn!(
                    event = "bus_message_not_applied",
                    group = group.as_str(),
                    topic = topic.as_str(),
                    %msg_id,
                    sequence,
                    delivery = delivery.delivery,
                    instance,
                    reason,
                );
                if config.planted_acks_unapplied {
                    let _ = bus
                        .finish(&topic, &group, sequence, false, config.call_timeout)
                        .await;
                    continue;
                }
                // Unacked, it comes back after its ack wait; the rest of this fetch too.
                return CONSUMER_RETRY_DELAY;
            }
        };
        let name = if duplicate {
            "bus_message_duplicate"
        } else {
            "bus_message_applied"
        };
        tracing::info!(
            event = name,
            group = group.as_str(),
            topic = topic.as_str(),
            %msg_id,
            sequence,
            delivery = delivery.delivery,
            instance,
            stream = stream.as_str(),
            version,
        );
        // A lost ack only means a redelivery, which is then a duplicate append.
        let acked = bus
            .finish(&topic, &group, sequence, false, config.call_timeout)
            .await;
        if !matches!(acked, Ok(BusResponse::Done)) {
            tracing::debug!(event = "bus_ack_failed", %msg_id, sequence, instance);
        }
    }
    Duration::ZERO
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::MessageId;
    use crate::motion::message_id;

    #[test]
    fn a_delivery_maps_to_its_axis_stream_under_its_message_id() {
        // Goal: the pure half of the consumer: the stream, id, kind and data of the append,
        // identical for every delivery of one message (so the journal de-duplicates), and an
        // undecodable payload refused. Method: build a delivery of a completed move, map it
        // as first and third delivery; map a garbage payload.
        let axis = AxisName::new("x");
        let event = MotionEvent::MoveCompleted {
            axis: axis.clone(),
            request_id: 7,
            target_rad: 0.5,
            final_position_rad: 0.499,
            recovered: false,
        };
        let payload = postcard::to_stdvec(&event).unwrap();
        let msg_id = message_id(&axis, 3);
        let first = Delivery {
            sequence: 12,
            msg_id,
            payload: payload.clone(),
            delivery: 1,
        };
        let (stream, data) = journal_event(&first).unwrap();
        assert_eq!(stream.as_str(), "axis-x");
        assert_eq!(data.id, EventId(msg_id.0));
        assert_eq!(data.kind, "move_completed");
        assert_eq!(data.data, payload);
        let third = Delivery {
            delivery: 3,
            ..first.clone()
        };
        assert_eq!(journal_event(&third).unwrap(), (stream, data));
        let garbage = Delivery {
            sequence: 13,
            msg_id: MessageId(1),
            payload: vec![0xff; 3],
            delivery: 1,
        };
        assert!(journal_event(&garbage).is_err());
    }
}
