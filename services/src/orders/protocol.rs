//! The orders service's wire protocol: what a client (the gateway) may ask, and the order
//! itself.
//!
//! Owns `OrderId`, `OrderSpec`, `OrdersRequest`, `OrdersResponse` and `SagaView`. It does not own
//! the saga's steps or events (`saga`).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::inventory::PartId;
use crate::motion::AxisName;

/// An order's identity, chosen by the client: the idempotency key of the whole saga (its
/// stream, its reservation, its lease holder, its move's request id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OrderId(pub u64);

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What an order asks for: take `quantity` of `part`, move `axis` to `target_rad`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderSpec {
    pub order_id: OrderId,
    pub part: PartId,
    pub quantity: u32,
    pub axis: AxisName,
    pub target_rad: f64,
}

/// What a client asks the orders service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum OrdersRequest {
    /// Start the order's saga (idempotent per order id: a re-send is answered as the first).
    PlaceOrder(OrderSpec),
    /// Where the order's saga stands.
    OrderStatus { order_id: OrderId },
}

/// What the orders service answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum OrdersResponse {
    /// The saga is started (durably); it runs on. `duplicate`: it was started before.
    Accepted { duplicate: bool },
    /// Answer to `OrderStatus`.
    Status(SagaView),
    /// Nothing was started or found, for the reason given.
    Refused { reason: OrderRefusal },
}

/// Why a request had no effect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderRefusal {
    /// The axis is not one this orders service can reach.
    UnknownAxis,
    /// Quantity 0, or a target that is not finite.
    Invalid,
    /// The order id was already used for a different order.
    OrderIdReused,
    /// No saga with this order id.
    UnknownOrder,
    /// The journal could not be reached in time; try again (with the same order id).
    Unavailable,
    /// Too many requests in progress; try again later.
    Overloaded,
}

/// A saga as `OrderStatus` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SagaView {
    /// `running`, `compensating`, `completed`, `compensated`.
    pub phase: String,
    /// The next step (running) or compensation (compensating), if any.
    pub step: Option<String>,
    pub owner: String,
    /// Events in the saga's stream.
    pub events: u64,
    /// The commit found too few pieces (the reservation had expired and its pieces were gone).
    pub shortfall: bool,
}
