//! The inventory's logic as a pure state machine: `InventoryCore`.
//!
//! Owns the stock of every part (`available + reserved + consumed == initial`, checked after
//! every change), one record per saga (its reservation and where it stands), and the bookkeeping
//! of what is durable. Time comes in as `now`; no I/O.
//!
//! Per saga (the idempotency key), requests move a record through
//! `none → Pending → Committed | Released | Expired`, plus `Expired → Committed` (below), and
//! never back:
//! - `Reserve` on `none` takes the pieces from `available` (or is refused, insufficient stock);
//!   on `Pending`/`Committed` it is a duplicate, answered with the record's state; on
//!   `Released`/`Expired` it is refused `AlreadyReleased` (a late duplicate after compensation
//!   must not lock stock again).
//! - `Commit` on `Pending` consumes the reserved pieces. On `Expired` (the saga was slower than
//!   the lifetime; commit comes after the pivot, so it must not fail lightly) it takes the pieces
//!   from `available` again if there are enough, otherwise it is refused with the shortfall.
//! - `Release` on `Pending` gives the pieces back; on a saga with no record it leaves a
//!   tombstone (`Released`, no part), so that a `Reserve` still in flight cannot land after its
//!   compensation; on `Committed` it is refused (no compensation after the pivot).
//! - `wake` expires `Pending` records whose lifetime ran out.
//!
//! Durability (write-ahead, group commit, like motion): a change bumps `version_wanted`; the
//! shell replaces the state file with `durable_state()` and reports the version. **Every answer
//! waits until the state it was decided on is durable**, so no client is told of stock a crash
//! could take back. Events are traced when a change is decided; after a restart
//! `inventory_recovered` restates every part's counts.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::config::InventoryConfig;
use super::durable::{self, DurableState, RecordState, SagaRecord, StateError};
use super::protocol::{
    InventoryRequest, InventoryResponse, PartId, QUANTITY_MAX, Refusal, SagaId, StockView,
};
use crate::durable_server::{DurableCore, ReplyTo, Write, WriteMode};

/// Most answers that may wait for the disk at once; beyond, requests are refused `Overloaded`.
pub const PENDING_REPLIES_MAX: usize = 1024;

#[derive(Clone, Debug)]
struct Record {
    part: Option<PartId>,
    quantity: u32,
    state: RecordState,
    /// For `Pending`: when it expires.
    expires_at: Option<Duration>,
}

#[derive(Clone, Debug)]
struct PendingReply {
    reply_to: ReplyTo,
    version: u64,
    response: InventoryResponse,
}

/// The inventory's state machine (see the module docs).
#[derive(Clone, Debug)]
pub struct InventoryCore {
    reservation_ttl: Duration,
    reservations_max: usize,
    parts: BTreeMap<PartId, StockView>,
    records: BTreeMap<SagaId, Record>,
    /// Saga ids, oldest record first.
    order: VecDeque<SagaId>,
    version_wanted: u64,
    version_durable: u64,
    in_flight: Option<u64>,
    pending: Vec<PendingReply>,
}

impl InventoryCore {
    /// The inventory as its state file describes it (`None`: first start, stock from the
    /// configuration). Open reservations get a fresh lifetime from `now`.
    pub fn recover(
        config: &InventoryConfig,
        bytes: Option<&[u8]>,
        now: Duration,
    ) -> Result<InventoryCore, StateError> {
        config.validate();
        let state = match bytes {
            None => DurableState::default(),
            Some(bytes) => durable::decode(bytes)?,
        };
        let mut core = InventoryCore {
            reservation_ttl: config.reservation_ttl,
            reservations_max: config.reservations_max,
            parts: state.parts,
            records: BTreeMap::new(),
            order: VecDeque::new(),
            version_wanted: 0,
            version_durable: 0,
            in_flight: None,
            pending: Vec::new(),
        };
        for record in state.records {
            let expires_at =
                (record.state == RecordState::Pending).then(|| now + core.reservation_ttl);
            core.order.push_back(record.saga);
            core.records.insert(
                record.saga,
                Record {
                    part: record.part,
                    quantity: record.quantity,
                    state: record.state,
                    expires_at,
                },
            );
        }
        for (part, stock) in &core.parts {
            tracing::info!(
                event = "inventory_recovered",
                part = part.as_str(),
                initial = stock.initial,
                available = stock.available,
                reserved = stock.reserved,
                consumed = stock.consumed,
            );
        }
        for (saga, record) in &core.records {
            if let (RecordState::Pending, Some(part)) = (record.state, &record.part) {
                tracing::info!(
                    event = "reservation_recovered",
                    saga = saga.0,
                    part = part.as_str(),
                    quantity = u64::from(record.quantity),
                    expires_in_ms = duration_ms(core.reservation_ttl),
                );
            }
        }
        for (part, initial) in &config.parts {
            if !core.parts.contains_key(part) {
                let stock = StockView {
                    initial: *initial,
                    available: *initial,
                    reserved: 0,
                    consumed: 0,
                };
                core.parts.insert(part.clone(), stock);
                core.version_wanted = 1;
                tracing::info!(
                    event = "stock_initialized",
                    part = part.as_str(),
                    initial = *initial,
                );
            }
        }
        durable::check(&core.durable_state()).expect("a recovered state holds its invariants");
        Ok(core)
    }

    /// What is written to disk.
    pub fn durable_state(&self) -> DurableState {
        DurableState {
            parts: self.parts.clone(),
            records: self
                .order
                .iter()
                .map(|saga| {
                    let record = &self.records[saga];
                    SagaRecord {
                        saga: *saga,
                        part: record.part.clone(),
                        quantity: record.quantity,
                        state: record.state,
                    }
                })
                .collect(),
        }
    }

    /// One part's counts (durable or not).
    pub fn stock(&self, part: &PartId) -> Option<StockView> {
        self.parts.get(part).copied()
    }

    /// Where a saga's record stands, if it has one.
    pub fn record_state(&self, saga: SagaId) -> Option<RecordState> {
        self.records.get(&saga).map(|record| record.state)
    }

    /// Open reservations (the semantic locks held now).
    pub fn pending_count(&self) -> usize {
        self.records
            .values()
            .filter(|record| record.state == RecordState::Pending)
            .count()
    }

    fn reserve(
        &mut self,
        now: Duration,
        saga: SagaId,
        part: PartId,
        quantity: u32,
    ) -> InventoryResponse {
        if let Some(record) = self.records.get(&saga) {
            let same = record.part.as_ref() == Some(&part) && record.quantity == quantity;
            let response = match record.state {
                RecordState::Pending if same => InventoryResponse::Reserved {
                    expires_in_ms: duration_ms(
                        record
                            .expires_at
                            .expect("pending expires")
                            .saturating_sub(now),
                    ),
                },
                RecordState::Committed if same => InventoryResponse::Committed,
                RecordState::Pending | RecordState::Committed => refused(Refusal::Mismatch),
                RecordState::Released | RecordState::Expired => refused(Refusal::AlreadyReleased),
            };
            trace_duplicate(saga, "reserve", record.state, &response);
            return response;
        }
        let Some(stock) = self.parts.get(&part).copied() else {
            return self.refuse(saga, Some(&part), quantity, Refusal::UnknownPart);
        };
        if quantity == 0 || quantity > QUANTITY_MAX {
            return self.refuse(saga, Some(&part), quantity, Refusal::QuantityInvalid);
        }
        if stock.available < u64::from(quantity) {
            let reason = Refusal::InsufficientStock {
                available: stock.available,
            };
            return self.refuse(saga, Some(&part), quantity, reason);
        }
        if !self.make_room() {
            return self.refuse(saga, Some(&part), quantity, Refusal::Overloaded);
        }
        let expires_at = now + self.reservation_ttl;
        self.change(&part, |stock| {
            stock.available -= u64::from(quantity);
            stock.reserved += u64::from(quantity);
        });
        self.insert(
            saga,
            Record {
                part: Some(part.clone()),
                quantity,
                state: RecordState::Pending,
                expires_at: Some(expires_at),
            },
        );
        let stock = self.parts[&part];
        tracing::info!(
            event = "stock_reserved",
            saga = saga.0,
            part = part.as_str(),
            quantity = u64::from(quantity),
            initial = stock.initial,
            available = stock.available,
            reserved = stock.reserved,
            consumed = stock.consumed,
            expires_in_ms = duration_ms(self.reservation_ttl),
        );
        InventoryResponse::Reserved {
            expires_in_ms: duration_ms(self.reservation_ttl),
        }
    }

    fn commit(&mut self, saga: SagaId) -> InventoryResponse {
        let Some(record) = self.records.get(&saga) else {
            return self.refuse(saga, None, 0, Refusal::NotReserved);
        };
        let (part, quantity, state) = (record.part.clone(), record.quantity, record.state);
        match (state, part) {
            (RecordState::Committed, _) => {
                trace_duplicate(saga, "commit", state, &InventoryResponse::Committed);
                InventoryResponse::Committed
            }
            (RecordState::Released, part) | (RecordState::Expired, part @ None) => {
                self.refuse(saga, part.as_ref(), quantity, Refusal::AlreadyReleased)
            }
            (RecordState::Pending, Some(part)) => {
                self.change(&part, |stock| {
                    stock.reserved -= u64::from(quantity);
                    stock.consumed += u64::from(quantity);
                });
                self.finish(saga, RecordState::Committed);
                self.trace_commit(saga, &part, quantity, false);
                InventoryResponse::Committed
            }
            (RecordState::Expired, Some(part)) => {
                let available = self.parts[&part].available;
                if available < u64::from(quantity) {
                    let reason = Refusal::InsufficientStock { available };
                    return self.refuse(saga, Some(&part), quantity, reason);
                }
                self.change(&part, |stock| {
                    stock.available -= u64::from(quantity);
                    stock.consumed += u64::from(quantity);
                });
                self.finish(saga, RecordState::Committed);
                self.trace_commit(saga, &part, quantity, true);
                InventoryResponse::Committed
            }
            (RecordState::Pending, None) => unreachable!("a pending record has a part"),
        }
    }

    fn release(&mut self, saga: SagaId) -> InventoryResponse {
        let Some(record) = self.records.get(&saga) else {
            if !self.make_room() {
                return self.refuse(saga, None, 0, Refusal::Overloaded);
            }
            self.insert(
                saga,
                Record {
                    part: None,
                    quantity: 0,
                    state: RecordState::Released,
                    expires_at: None,
                },
            );
            tracing::info!(event = "release_tombstone", saga = saga.0);
            return InventoryResponse::Released;
        };
        let (part, quantity, state) = (record.part.clone(), record.quantity, record.state);
        match (state, part) {
            (RecordState::Released | RecordState::Expired, _) => {
                trace_duplicate(saga, "release", state, &InventoryResponse::Released);
                InventoryResponse::Released
            }
            (RecordState::Committed, part) => {
                self.refuse(saga, part.as_ref(), quantity, Refusal::AlreadyCommitted)
            }
            (RecordState::Pending, Some(part)) => {
                self.change(&part, |stock| {
                    stock.reserved -= u64::from(quantity);
                    stock.available += u64::from(quantity);
                });
                self.finish(saga, RecordState::Released);
                self.trace_change("stock_released", saga, &part, quantity);
                InventoryResponse::Released
            }
            (RecordState::Pending, None) => unreachable!("a pending record has a part"),
        }
    }

    /// Expires every pending reservation whose lifetime ended by `now`.
    fn expire(&mut self, now: Duration) {
        let due: Vec<SagaId> = self
            .records
            .iter()
            .filter(|(_, record)| record.expires_at.is_some_and(|at| at <= now))
            .map(|(saga, _)| *saga)
            .collect();
        for saga in due {
            let record = &self.records[&saga];
            let (part, quantity) = (
                record.part.clone().expect("pending has a part"),
                record.quantity,
            );
            self.change(&part, |stock| {
                stock.reserved -= u64::from(quantity);
                stock.available += u64::from(quantity);
            });
            self.finish(saga, RecordState::Expired);
            self.trace_change("reservation_expired", saga, &part, quantity);
        }
    }

    /// Applies a change to a part's counts, checking conservation, and marks the state dirty.
    fn change(&mut self, part: &PartId, apply: impl FnOnce(&mut StockView)) {
        let stock = self.parts.get_mut(part).expect("a known part");
        apply(stock);
        assert_eq!(
            stock.available + stock.reserved + stock.consumed,
            stock.initial,
            "stock of {part} not conserved: {stock:?}"
        );
        self.version_wanted += 1;
    }

    fn finish(&mut self, saga: SagaId, state: RecordState) {
        let record = self.records.get_mut(&saga).expect("a known saga");
        let legal = matches!(
            (record.state, state),
            (
                RecordState::Pending,
                RecordState::Committed | RecordState::Released | RecordState::Expired
            ) | (RecordState::Expired, RecordState::Committed)
        );
        assert!(
            legal,
            "saga {saga}: no transition from {:?} to {state:?}",
            record.state
        );
        record.state = state;
        record.expires_at = None;
    }

    /// Forgets the oldest finished record if the table is full; false if it is full of open
    /// reservations.
    fn make_room(&mut self) -> bool {
        if self.records.len() < self.reservations_max {
            return true;
        }
        let Some(index) = self
            .order
            .iter()
            .position(|saga| self.records[saga].state.is_finished())
        else {
            return false;
        };
        let saga = self.order.remove(index).expect("index in range");
        self.records.remove(&saga);
        true
    }

    fn insert(&mut self, saga: SagaId, record: Record) {
        let previous = self.records.insert(saga, record);
        assert!(previous.is_none(), "saga {saga} recorded twice");
        self.order.push_back(saga);
        assert!(
            self.records.len() <= self.reservations_max,
            "room made before"
        );
        self.version_wanted += 1;
    }

    fn refuse(
        &self,
        saga: SagaId,
        part: Option<&PartId>,
        quantity: u32,
        reason: Refusal,
    ) -> InventoryResponse {
        tracing::info!(
            event = "stock_refused",
            saga = saga.0,
            part = part.map_or("", PartId::as_str),
            quantity = u64::from(quantity),
            reason = reason.kind(),
        );
        refused(reason)
    }

    fn trace_change(&self, name: &'static str, saga: SagaId, part: &PartId, quantity: u32) {
        let stock = self.parts[part];
        tracing::info!(
            event = name,
            saga = saga.0,
            part = part.as_str(),
            quantity = u64::from(quantity),
            initial = stock.initial,
            available = stock.available,
            reserved = stock.reserved,
            consumed = stock.consumed,
        );
    }

    fn trace_commit(&self, saga: SagaId, part: &PartId, quantity: u32, after_expiry: bool) {
        let stock = self.parts[part];
        tracing::info!(
            event = "stock_committed",
            saga = saga.0,
            part = part.as_str(),
            quantity = u64::from(quantity),
            initial = stock.initial,
            available = stock.available,
            reserved = stock.reserved,
            consumed = stock.consumed,
            after_expiry,
        );
    }
}

impl DurableCore for InventoryCore {
    type Request = InventoryRequest;
    type Response = InventoryResponse;

    fn handle(
        &mut self,
        now: Duration,
        reply_to: ReplyTo,
        request: InventoryRequest,
    ) -> Option<InventoryResponse> {
        self.expire(now);
        if self.pending.len() >= PENDING_REPLIES_MAX {
            return Some(refused(Refusal::Overloaded));
        }
        let response = match request {
            InventoryRequest::Reserve {
                saga,
                part,
                quantity,
            } => self.reserve(now, saga, part, quantity),
            InventoryRequest::Commit { saga } => self.commit(saga),
            InventoryRequest::Release { saga } => self.release(saga),
            InventoryRequest::Stock { part } => match self.parts.get(&part) {
                Some(stock) => InventoryResponse::Stock(*stock),
                None => refused(Refusal::UnknownPart),
            },
        };
        if self.version_wanted <= self.version_durable {
            return Some(response);
        }
        self.pending.push(PendingReply {
            reply_to,
            version: self.version_wanted,
            response,
        });
        None
    }

    fn next_write(&mut self) -> Option<Write> {
        assert!(self.in_flight.is_none(), "one write at a time");
        if self.version_wanted <= self.version_durable {
            return None;
        }
        self.in_flight = Some(self.version_wanted);
        Some(Write {
            mode: WriteMode::Replace,
            bytes: durable::encode(&self.durable_state()),
            ticket: self.version_wanted,
        })
    }

    fn written(&mut self, _now: Duration, ticket: u64) -> Vec<(ReplyTo, InventoryResponse)> {
        assert_eq!(
            self.in_flight,
            Some(ticket),
            "written reports the write in flight"
        );
        self.in_flight = None;
        assert!(ticket >= self.version_durable, "durable versions only grow");
        self.version_durable = ticket;
        let mut released = Vec::new();
        self.pending.retain(|pending| {
            if pending.version > ticket {
                return true;
            }
            released.push((pending.reply_to, pending.response.clone()));
            false
        });
        released
    }

    fn write_failed(&mut self, _now: Duration, ticket: u64) {
        // A replace is atomic: the old state is still on disk; the next write carries it all.
        assert_eq!(
            self.in_flight,
            Some(ticket),
            "write_failed reports the write in flight"
        );
        self.in_flight = None;
    }

    fn next_wake(&self) -> Option<Duration> {
        self.records
            .values()
            .filter_map(|record| record.expires_at)
            .min()
    }

    fn wake(&mut self, now: Duration) -> Vec<(ReplyTo, InventoryResponse)> {
        self.expire(now);
        Vec::new()
    }
}

fn refused(reason: Refusal) -> InventoryResponse {
    InventoryResponse::Refused { reason }
}

fn trace_duplicate(
    saga: SagaId,
    request: &'static str,
    state: RecordState,
    response: &InventoryResponse,
) {
    tracing::info!(
        event = "inventory_duplicate",
        saga = saga.0,
        request,
        state = state.kind(),
        refused = matches!(response, InventoryResponse::Refused { .. }),
    );
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
