//! The inventory's wire protocol: parts, sagas, reservations, and the answers about them.
//!
//! Owns the names and limits of what crosses the wire. It does not own any behaviour (`core`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest part name, bytes.
pub const PART_NAME_LENGTH_MAX: usize = 64;

/// Most pieces one reservation may hold.
pub const QUANTITY_MAX: u32 = 1_000_000;

/// The name of a part kind (`"bolt-m3"`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PartId(String);

impl PartId {
    /// Panics on an empty name or one above `PART_NAME_LENGTH_MAX` (names in code and
    /// configuration must be valid; names from the wire simply match no part).
    pub fn new(name: impl Into<String>) -> PartId {
        let name = name.into();
        assert!(
            !name.is_empty() && name.len() <= PART_NAME_LENGTH_MAX,
            "part name must be 1..={PART_NAME_LENGTH_MAX} bytes, got {name:?}"
        );
        PartId(name)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PartId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The saga a reservation belongs to: the idempotency key of every inventory request (the
/// order id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SagaId(pub u64);

impl fmt::Display for SagaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a client asks the inventory. Every request is idempotent per saga.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InventoryRequest {
    /// Hold `quantity` pieces of `part` for `saga` (a semantic lock, `RESERVED_PENDING`) until
    /// committed, released, or expired.
    Reserve {
        saga: SagaId,
        part: PartId,
        quantity: u32,
    },
    /// Consume the saga's reservation.
    Commit { saga: SagaId },
    /// Give the saga's reservation back (its compensation). Releasing a saga that never
    /// reserved leaves a tombstone, so a late `Reserve` of that saga is refused.
    Release { saga: SagaId },
    /// The counts of one part.
    Stock { part: PartId },
}

/// What the inventory answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InventoryResponse {
    /// The saga holds its reservation; it expires in `expires_in_ms` unless committed.
    Reserved { expires_in_ms: u64 },
    /// The saga's pieces are consumed.
    Committed,
    /// The saga holds nothing (released, expired, or never reserved).
    Released,
    /// Nothing changed, for the reason given.
    Refused { reason: Refusal },
    /// Answer to `Stock`.
    Stock(StockView),
}

/// Why a request changed nothing. Business outcomes, not errors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    UnknownPart,
    /// 0 or above `QUANTITY_MAX`.
    QuantityInvalid,
    /// Fewer pieces available than asked for.
    InsufficientStock {
        available: u64,
    },
    /// The saga already reserved a different part or quantity.
    Mismatch,
    /// The saga's reservation was released or expired: it is never re-reserved (a late
    /// duplicate must not lock stock again).
    AlreadyReleased,
    /// The saga's reservation was committed: it cannot be released any more.
    AlreadyCommitted,
    /// `Commit` for a saga that never reserved.
    NotReserved,
    /// Too many reservations or answers outstanding; try again later.
    Overloaded,
}

impl Refusal {
    /// A stable name for traces.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::UnknownPart => "unknown_part",
            Refusal::QuantityInvalid => "quantity_invalid",
            Refusal::InsufficientStock { .. } => "insufficient_stock",
            Refusal::Mismatch => "mismatch",
            Refusal::AlreadyReleased => "already_released",
            Refusal::AlreadyCommitted => "already_committed",
            Refusal::NotReserved => "not_reserved",
            Refusal::Overloaded => "overloaded",
        }
    }
}

/// One part's counts. Always `available + reserved + consumed == initial`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockView {
    pub initial: u64,
    pub available: u64,
    pub reserved: u64,
    pub consumed: u64,
}
