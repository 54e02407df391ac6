//! Saga oracles (SG1, SG2, SG3, SG5, SG6): the orders' sagas, the moves they make, and what
//! the inventory and the motion services hold for them, judged on the services' own events.
//!
//! - **SG1** (at quiescence, in `finish`): every saga seen (`saga_started`, or any `saga_*`
//!   event naming an order) has ended `saga_completed` or `saga_compensated` by `end`. A
//!   completion must follow a success (or shortfall) of each of the five steps; a compensation
//!   must follow a failed step and name, in `saga_compensated_step`, exactly the compensatable
//!   steps up to and including the failed one (the failed step too: its outcome may be unknown),
//!   in reverse order. A saga ends once, and its orchestrators trace its end at most once. The
//!   facts come from two records of the same saga: its orchestrator's trace (each event traced
//!   once the journal's answer reached it) and the journal's own (`journal_append` with the
//!   batch's `kinds`, such as `step_succeeded:move`, then `journal_ack`: durable). An
//!   orchestrator that crashes between the journal's sync and its answer never traces that
//!   event, while its successor folds it in from the stream; the journal's record keeps the
//!   fact (flagship seed 51 found this).
//! - **SG2**: once a saga recorded its pivot (`saga_step` step `move` outcome `succeeded`, or
//!   the journal acknowledging `step_succeeded:move` on its stream, which an orchestrator that
//!   crashed before the answer never traces),
//!   nothing of it is compensated: no failed step, no `saga_compensating`,
//!   `saga_compensated_step` or `saga_compensated`, and the inventory releases nothing of it
//!   (`stock_released`, `release_tombstone` with `saga` = the order id). And whatever the saga
//!   recorded: a saga whose move physically completed (a motion host traced `move_completed`
//!   for the saga's move request id, which is its order id, see `orders::participants`;
//!   `recovered = true` ones too) is never compensated, before or after that event. A motion
//!   host that loses a completion in a crash and answers `Interrupted` makes its saga
//!   compensate a move that happened; this rule catches it even though the saga never
//!   recorded its pivot.
//! - **SG3**: at most one `move_accepted` (a motion service started a move) per request id, on
//!   any motion host. Orders use the order id as the move's request id; other clients' request
//!   ids never collide with order ids, and the motion service promises at-most-once per request
//!   id to every client, so every request id is judged.
//! - **SG5** (at quiescence): at `end`, no reservation (inventory: `stock_reserved` /
//!   `reservation_recovered` not followed by commit, release or expiry) and no lease of an order
//!   (motion: `lease_granted` / `lease_renewed` to holder `order-<id>`, not followed by
//!   `lease_released`, `lease_expired` or a `motion_started` of its host) is held for a saga
//!   that is not live (finished, or never seen). Legitimately in flight: a lease or reservation
//!   taken after its saga finished (a late retry of a deposed owner) until its own expiry
//!   (`expires_in_ms`, `ttl_ms` from the event); anything taken before the saga finished, or
//!   past its expiry at `end`, is a violation.
//! - **SG6**: per part, every inventory event's counts satisfy available + reserved + consumed
//!   = initial (the initial of the first `stock_initialized`), none negative, and each change
//!   moves the counts exactly as its kind says from the previous counts (reserve: available →
//!   reserved; commit: reserved → consumed, or available → consumed after expiry; release and
//!   expiry: reserved → available), for a saga whose reservation is in the state the change
//!   requires (one reservation per saga). Inventory events are traced when decided, so a crash
//!   can take changes back: a restart's `inventory_recovered` (counts per part) and
//!   `reservation_recovered` (open reservations) replace the model, and the recovered
//!   reservations must add up to the recovered reserved counts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{FirstViolation, Oracle, Violation};
use crate::trace::TraceEvent;

/// Every oracle of the family, in report order.
pub(crate) fn oracles() -> Vec<Box<dyn Oracle>> {
    vec![
        Box::new(SagaEnds::default()),
        Box::new(NoCompensationAfterPivot::default()),
        Box::new(OneMovePerOrder::default()),
        Box::new(NothingHeldWithoutSaga::default()),
        Box::new(StockConserved::default()),
    ]
}

const STEPS: [&str; 5] = [
    "reserve_part",
    "lease_axis",
    "move",
    "commit_part",
    "release_axis",
];

/// The order a `saga_*` event names, if it is one.
fn saga_order(e: &TraceEvent) -> Option<u64> {
    if !e.name.starts_with("saga_") {
        return None;
    }
    e.field_u64("order")
}

// ---------------------------------------------------------------------------------------------
// SG1

#[derive(Debug, Default)]
struct SagaRecord {
    succeeded: BTreeSet<&'static str>,
    failed: Option<&'static str>,
    compensated: Vec<&'static str>,
    ended: Option<&'static str>,
    /// The end its orchestrators traced (at most one may be).
    traced_end: Option<&'static str>,
}

fn step_name(e: &TraceEvent) -> &'static str {
    known_step(e.required("step"), e)
}

/// The compensations a saga that failed at `failed` must run, in order.
fn compensations_for(failed: &str) -> Vec<&'static str> {
    let index = STEPS
        .iter()
        .position(|s| *s == failed)
        .expect("a known step");
    STEPS[..=index]
        .iter()
        .rev()
        .copied()
        .filter(|s| matches!(*s, "reserve_part" | "lease_axis"))
        .collect()
}

/// SG1.
#[derive(Default)]
struct SagaEnds {
    sagas: BTreeMap<u64, SagaRecord>,
    journal: JournaledSagas,
    first: FirstViolation,
}

/// A fact about a saga, from its orchestrator's trace or from the journal's.
enum SagaFact {
    Succeeded(&'static str),
    Failed(&'static str),
    Compensated(&'static str),
    Ended(&'static str),
}

fn known_step(step: &str, e: &TraceEvent) -> &'static str {
    STEPS
        .iter()
        .copied()
        .find(|s| *s == step)
        .unwrap_or_else(|| panic!("unknown saga step {step}: {e}"))
}

impl SagaEnds {
    /// The facts of one saga event's journal kind (`step_succeeded:move`, `saga_completed`).
    fn journal_facts(kind: &str, e: &TraceEvent) -> Option<SagaFact> {
        let (kind, step) = match kind.split_once(':') {
            Some((kind, step)) => (kind, Some(known_step(step, e))),
            None => (kind, None),
        };
        match (kind, step) {
            ("step_succeeded", Some(step)) => Some(SagaFact::Succeeded(step)),
            ("step_failed", Some(step)) => Some(SagaFact::Failed(step)),
            ("step_compensated", Some(step)) => Some(SagaFact::Compensated(step)),
            ("saga_completed", None) => Some(SagaFact::Ended("completed")),
            ("saga_compensated", None) => Some(SagaFact::Ended("compensated")),
            _ => None,
        }
    }

    /// Folds one fact in. The journal acknowledges an event before its orchestrator hears of it
    /// and traces it, and an orchestrator that crashes in between never does: so the same fact
    /// may arrive twice (once from each) or once (from the journal), and is taken once.
    fn apply(&mut self, order: u64, fact: SagaFact) -> Option<String> {
        let saga = self.sagas.entry(order).or_default();
        match fact {
            SagaFact::Succeeded(step) => {
                saga.succeeded.insert(step);
            }
            SagaFact::Failed(step) => saga.failed = Some(step),
            SagaFact::Compensated(step) => {
                if !saga.compensated.contains(&step) {
                    saga.compensated.push(step);
                }
            }
            SagaFact::Ended(end) => {
                if let Some(before) = saga.ended {
                    return (before != end)
                        .then(|| format!("saga {order} ended {end} after it ended {before}"));
                }
                saga.ended = Some(end);
                if end == "completed" {
                    let missing: Vec<&str> = STEPS
                        .iter()
                        .copied()
                        .filter(|s| !saga.succeeded.contains(s))
                        .collect();
                    if !missing.is_empty() || saga.failed.is_some() {
                        return Some(format!(
                            "saga {order} completed without steps {missing:?} (failed step: {:?})",
                            saga.failed
                        ));
                    }
                } else {
                    match saga.failed {
                        None => {
                            return Some(format!("saga {order} compensated without a failed step"));
                        }
                        Some(failed) => {
                            let wanted = compensations_for(failed);
                            if saga.compensated != wanted {
                                return Some(format!(
                                    "saga {order} failed at {failed} and compensated {:?}, not {wanted:?}",
                                    saga.compensated
                                ));
                            }
                        }
                    }
                }
            }
        }
        None
    }
}

impl Oracle for SagaEnds {
    fn id(&self) -> &'static str {
        "SG1"
    }
    fn statement(&self) -> &'static str {
        "every saga ends completed or compensated"
    }
    fn on_event(&mut self, e: &TraceEvent) {
        if matches!(e.name.as_str(), "journal_append" | "journal_ack") {
            if let Some((order, kinds)) = self.journal.on_event(e) {
                for kind in kinds {
                    if let Some(fact) = Self::journal_facts(&kind, e)
                        && let Some(detail) = self.apply(order, fact)
                    {
                        self.first.record(e.t, || detail);
                    }
                }
            }
            return;
        }
        let Some(order) = saga_order(e) else {
            return;
        };
        let fact = match e.name.as_str() {
            "saga_step" => {
                let step = step_name(e);
                match e.required("outcome") {
                    "failed" => SagaFact::Failed(step),
                    _ => SagaFact::Succeeded(step),
                }
            }
            "saga_compensated_step" => SagaFact::Compensated(step_name(e)),
            "saga_completed" | "saga_compensated" => {
                let end = if e.name == "saga_completed" {
                    "completed"
                } else {
                    "compensated"
                };
                let saga = self.sagas.entry(order).or_default();
                if let Some(before) = saga.traced_end.replace(end) {
                    self.first.record(e.t, || {
                        format!(
                            "saga {order} traced ended {end} after it was traced ended {before}"
                        )
                    });
                }
                SagaFact::Ended(end)
            }
            _ => {
                // Any other saga event (started, resumed, claimed) makes the saga known.
                self.sagas.entry(order).or_default();
                return;
            }
        };
        if let Some(detail) = self.apply(order, fact) {
            self.first.record(e.t, || detail);
        }
    }
    fn finish(&mut self, end: Duration) -> Option<Violation> {
        if let Some((order, saga)) = self.sagas.iter().find(|(_, saga)| saga.ended.is_none()) {
            let state = match (saga.failed, saga.succeeded.len()) {
                (Some(failed), _) => format!("compensating after {failed} failed"),
                (None, done) => format!("open after {done} steps"),
            };
            self.first
                .record(end, || format!("saga {order} still {state} at the end"));
        }
        self.first.take()
    }
}

// ---------------------------------------------------------------------------------------------
// SG2

/// The journal's record of saga streams, as its trace shows it: a batch's kinds when decided,
/// returned once acknowledged (durable).
#[derive(Default)]
struct JournaledSagas {
    /// (journal host, stream, first version) → the batch's event kinds.
    pending: BTreeMap<(String, String, u64), Vec<String>>,
}

impl JournaledSagas {
    /// For a `journal_ack` of a saga stream's batch: the order and the batch's kinds.
    fn on_event(&mut self, e: &TraceEvent) -> Option<(u64, Vec<String>)> {
        if !matches!(e.name.as_str(), "journal_append" | "journal_ack") {
            return None;
        }
        let stream = e.field("stream")?;
        let order: u64 = stream.strip_prefix("saga-")?.parse().ok()?;
        let key = (
            e.host.clone(),
            stream.to_owned(),
            e.required_u64("version_first"),
        );
        if e.name == "journal_append" {
            let kinds = e.required("kinds").split(',').map(str::to_owned).collect();
            self.pending.insert(key, kinds);
            return None;
        }
        self.pending.remove(&key).map(|kinds| (order, kinds))
    }
}

/// SG2.
#[derive(Default)]
struct NoCompensationAfterPivot {
    /// Order → when its pivot was recorded.
    pivoted: BTreeMap<u64, Duration>,
    /// Move request id (an order's is its order id) → when and where a motion host first traced
    /// it `move_completed`: the move physically happened.
    moved: BTreeMap<u64, (Duration, String)>,
    /// Order → when and what its first compensation was.
    compensated: BTreeMap<u64, (Duration, String)>,
    journal: JournaledSagas,
    first: FirstViolation,
}

impl NoCompensationAfterPivot {
    /// `what` (a compensation) happened to saga `order` at `t`: a violation if its pivot was
    /// recorded or its move completed.
    fn after_pivot(&mut self, order: u64, t: Duration, what: impl FnOnce() -> String) {
        let what = what();
        if let Some(&pivot_t) = self.pivoted.get(&order) {
            self.first.record(t, || {
                format!(
                    "saga {order}: {what} after its move succeeded at {:.3} s",
                    pivot_t.as_secs_f64()
                )
            });
        } else if let Some((moved_t, host)) = self.moved.get(&order) {
            self.first.record(t, || {
                format!(
                    "saga {order}: {what} after its move completed on {host} at {:.3} s",
                    moved_t.as_secs_f64()
                )
            });
        }
        self.compensated.entry(order).or_insert((t, what));
    }

    /// A motion host traced `move_completed` for `request_id` at `t`: a violation if the saga
    /// of that order already compensated.
    fn on_completed(&mut self, request_id: u64, t: Duration, host: &str) {
        if let Some((compensated_t, what)) = self.compensated.get(&request_id) {
            self.first.record(t, || {
                format!(
                    "saga {request_id}: its move completed on {host} after {what} at {:.3} s",
                    compensated_t.as_secs_f64()
                )
            });
        }
        self.moved
            .entry(request_id)
            .or_insert_with(|| (t, host.to_owned()));
    }
}

impl Oracle for NoCompensationAfterPivot {
    fn id(&self) -> &'static str {
        "SG2"
    }
    fn statement(&self) -> &'static str {
        "no compensation after the pivot"
    }
    fn on_event(&mut self, e: &TraceEvent) {
        if let Some((order, kinds)) = self.journal.on_event(e) {
            // The journal's record: a pivot its orchestrator never heard acknowledged still
            // happened, and a compensation it records is one.
            for kind in kinds {
                if kind == "step_succeeded:move" {
                    self.pivoted.entry(order).or_insert(e.t);
                } else if kind.starts_with("step_failed:")
                    || kind.starts_with("step_compensated:")
                    || kind == "saga_compensated"
                {
                    self.after_pivot(order, e.t, || format!("journal records {kind}"));
                }
            }
            return;
        }
        let (order, what) = match e.name.as_str() {
            "move_completed" => {
                self.on_completed(e.required_u64("request_id"), e.t, &e.host);
                return;
            }
            "saga_step" => {
                let order = e.required_u64("order");
                let step = step_name(e);
                let outcome = e.required("outcome");
                if step == "move" && outcome == "succeeded" {
                    self.pivoted.entry(order).or_insert(e.t);
                    return;
                }
                if outcome != "failed" {
                    return;
                }
                (order, format!("step {step} failed"))
            }
            "saga_compensating" | "saga_compensated_step" => (
                e.required_u64("order"),
                format!("{} {}", e.name, e.required("step")),
            ),
            "saga_compensated" => (e.required_u64("order"), e.name.clone()),
            "stock_released" | "release_tombstone" => (
                e.required_u64("saga"),
                format!("inventory {} on {}", e.name, e.host),
            ),
            _ => return,
        };
        self.after_pivot(order, e.t, || what);
    }
    fn finish(&mut self, _end: Duration) -> Option<Violation> {
        self.first.take()
    }
}

// ---------------------------------------------------------------------------------------------
// SG3

/// SG3.
#[derive(Default)]
struct OneMovePerOrder {
    /// Request id → (host, axis, time) of its first start.
    started: BTreeMap<u64, (String, String, Duration)>,
    first: FirstViolation,
}

impl Oracle for OneMovePerOrder {
    fn id(&self) -> &'static str {
        "SG3"
    }
    fn statement(&self) -> &'static str {
        "at most one move per order"
    }
    fn on_event(&mut self, e: &TraceEvent) {
        if e.name != "move_accepted" {
            return;
        }
        let request_id = e.required_u64("request_id");
        let axis = e.required("axis").to_owned();
        match self.started.get(&request_id) {
            Some((host, first_axis, t)) => {
                let (host, first_axis, t) = (host.clone(), first_axis.clone(), *t);
                self.first.record(e.t, || {
                    format!(
                        "move {request_id} started again on {} axis {axis}, first started on {host} axis {first_axis} at {:.3} s",
                        e.host,
                        t.as_secs_f64()
                    )
                });
            }
            None => {
                self.started.insert(request_id, (e.host.clone(), axis, e.t));
            }
        }
    }
    fn finish(&mut self, _end: Duration) -> Option<Violation> {
        self.first.take()
    }
}

// ---------------------------------------------------------------------------------------------
// SG5

/// Something held for a saga: since when (its last grant, renewal or reservation) and until.
#[derive(Clone, Debug)]
struct Hold {
    since: Duration,
    expires_at: Duration,
    what: String,
}

/// SG5.
#[derive(Default)]
struct NothingHeldWithoutSaga {
    /// Order → when it ended (`None`: live).
    sagas: BTreeMap<u64, Option<Duration>>,
    /// Inventory host → saga → its open reservation.
    reservations: BTreeMap<String, BTreeMap<u64, Hold>>,
    /// Inventory host in its recovery phase → when each reservation of the previous run was
    /// made (a recovered reservation keeps its age).
    recovering: BTreeMap<String, BTreeMap<u64, Duration>>,
    /// (motion host, axis) → (order, its live lease).
    leases: BTreeMap<(String, String), (u64, Hold)>,
}

/// The order of a lease holder named `order-<id>`.
fn holder_order(holder: &str) -> Option<u64> {
    holder.strip_prefix("order-")?.parse().ok()
}

fn ms(e: &TraceEvent, key: &str) -> Duration {
    Duration::from_millis(e.required_u64(key))
}

impl NothingHeldWithoutSaga {
    fn on_inventory(&mut self, e: &TraceEvent) {
        let host = e.host.clone();
        let recovery = matches!(
            e.name.as_str(),
            "inventory_recovered" | "reservation_recovered" | "stock_initialized"
        );
        if !recovery {
            self.recovering.remove(&host);
        }
        let held = self.reservations.entry(host.clone()).or_default();
        if recovery && !self.recovering.contains_key(&host) {
            // A new run of the inventory: only what it recovers is held.
            let since = std::mem::take(held)
                .into_iter()
                .map(|(saga, hold)| (saga, hold.since))
                .collect();
            self.recovering.insert(host.clone(), since);
        }
        match e.name.as_str() {
            "stock_reserved" | "reservation_recovered" => {
                let saga = e.required_u64("saga");
                let since = self
                    .recovering
                    .get(&host)
                    .and_then(|since| since.get(&saga).copied())
                    .unwrap_or(e.t);
                held.insert(
                    saga,
                    Hold {
                        since,
                        expires_at: e.t + ms(e, "expires_in_ms"),
                        what: format!(
                            "{} of part {} reserved on {host}",
                            e.required("quantity"),
                            e.required("part")
                        ),
                    },
                );
            }
            "stock_committed" | "stock_released" | "reservation_expired" => {
                held.remove(&e.required_u64("saga"));
            }
            _ => {}
        }
    }

    fn on_motion(&mut self, e: &TraceEvent) {
        if e.name == "motion_started" {
            self.leases.retain(|(host, _), _| *host != e.host);
            return;
        }
        let key = (e.host.clone(), e.required("axis").to_owned());
        match e.name.as_str() {
            "lease_granted" | "lease_renewed" => {
                let holder = e.required("holder");
                let ttl = if e.name == "lease_granted" {
                    ms(e, "expires_in_ms")
                } else {
                    ms(e, "ttl_ms")
                };
                match holder_order(holder) {
                    Some(order) => {
                        let hold = Hold {
                            since: e.t,
                            expires_at: e.t + ttl,
                            what: format!(
                                "lease {} of axis {} on {}",
                                e.required("token"),
                                key.1,
                                key.0
                            ),
                        };
                        self.leases.insert(key, (order, hold));
                    }
                    None => {
                        self.leases.remove(&key);
                    }
                }
            }
            "lease_released" | "lease_expired" => {
                self.leases.remove(&key);
            }
            _ => {}
        }
    }

    /// Why `hold` of `order`'s saga is a violation at `end`, if it is.
    fn judge(&self, order: u64, hold: &Hold, end: Duration) -> Option<String> {
        let why = match self.sagas.get(&order) {
            Some(None) => return None,
            None => "no saga of that order was seen".to_owned(),
            Some(Some(ended)) if hold.since <= *ended => {
                format!(
                    "taken before its saga ended at {:.3} s",
                    ended.as_secs_f64()
                )
            }
            Some(Some(ended)) if hold.expires_at <= end => format!(
                "taken after its saga ended at {:.3} s, and past its expiry at {:.3} s",
                ended.as_secs_f64(),
                hold.expires_at.as_secs_f64()
            ),
            Some(Some(_)) => return None,
        };
        Some(format!(
            "order {order}: {} still held at the end: {why}",
            hold.what
        ))
    }
}

impl Oracle for NothingHeldWithoutSaga {
    fn id(&self) -> &'static str {
        "SG5"
    }
    fn statement(&self) -> &'static str {
        "nothing reserved or leased without a live saga at quiescence"
    }
    fn on_event(&mut self, e: &TraceEvent) {
        if let Some(order) = saga_order(e) {
            let ended = matches!(e.name.as_str(), "saga_completed" | "saga_compensated");
            let state = self.sagas.entry(order).or_insert(None);
            if ended && state.is_none() {
                *state = Some(e.t);
            }
            return;
        }
        match e.name.as_str() {
            "inventory_recovered"
            | "reservation_recovered"
            | "stock_initialized"
            | "stock_reserved"
            | "stock_committed"
            | "stock_released"
            | "reservation_expired"
            | "stock_refused"
            | "release_tombstone"
            | "inventory_duplicate"
            | "inventory_started" => self.on_inventory(e),
            "motion_started" | "lease_granted" | "lease_renewed" | "lease_released"
            | "lease_expired" => self.on_motion(e),
            _ => {}
        }
    }
    fn finish(&mut self, end: Duration) -> Option<Violation> {
        let reservations = self
            .reservations
            .values()
            .flat_map(|held| held.iter().map(|(saga, hold)| (*saga, hold)));
        let leases = self.leases.values().map(|(order, hold)| (*order, hold));
        let detail = reservations
            .chain(leases)
            .find_map(|(order, hold)| self.judge(order, hold, end))?;
        Some(Violation { t: end, detail })
    }
}

// ---------------------------------------------------------------------------------------------
// SG6

/// A part's counts; signed so that a count gone negative shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Counts {
    initial: i128,
    available: i128,
    reserved: i128,
    consumed: i128,
}

impl Counts {
    fn of(e: &TraceEvent) -> Counts {
        let count = |key| i128::from(e.required_u64(key));
        Counts {
            initial: count("initial"),
            available: count("available"),
            reserved: count("reserved"),
            consumed: count("consumed"),
        }
    }
}

/// Where a saga's reservation stands, as the inventory events tell.
#[derive(Clone, Debug, PartialEq)]
enum Reservation {
    Pending { part: String, quantity: i128 },
    Expired { part: String, quantity: i128 },
    Done,
}

/// The model of one inventory host.
#[derive(Debug, Default)]
struct Stock {
    parts: BTreeMap<String, Counts>,
    reservations: BTreeMap<u64, Reservation>,
    recovering: bool,
}

/// SG6.
#[derive(Default)]
struct StockConserved {
    /// Part → its initial stock, as first initialized.
    initial: BTreeMap<String, i128>,
    stocks: BTreeMap<String, Stock>,
    first: FirstViolation,
}

impl StockConserved {
    fn observe(&mut self, e: &TraceEvent) -> Option<String> {
        let recovery = matches!(
            e.name.as_str(),
            "inventory_recovered" | "reservation_recovered" | "stock_initialized"
        );
        let stock = self.stocks.entry(e.host.clone()).or_default();
        if recovery && !stock.recovering {
            stock.recovering = true;
            stock.parts.clear();
            stock.reservations.clear();
        }
        if !recovery && stock.recovering {
            stock.recovering = false;
            // The recovered reservations must add up to the recovered reserved counts.
            for (part, counts) in &stock.parts {
                let held: i128 = stock
                    .reservations
                    .values()
                    .map(|r| match r {
                        Reservation::Pending { part: p, quantity } if p == part => *quantity,
                        _ => 0,
                    })
                    .sum();
                if held != counts.reserved {
                    return Some(format!(
                        "part {part}: recovered reserved {} but recovered reservations hold {held}",
                        counts.reserved
                    ));
                }
            }
        }
        match e.name.as_str() {
            "stock_initialized" => {
                let part = e.required("part").to_owned();
                let initial = i128::from(e.required_u64("initial"));
                let first = *self.initial.entry(part.clone()).or_insert(initial);
                stock.parts.insert(
                    part.clone(),
                    Counts {
                        initial,
                        available: initial,
                        reserved: 0,
                        consumed: 0,
                    },
                );
                (first != initial)
                    .then(|| format!("part {part}: initialized with {initial}, first {first}"))
            }
            "inventory_recovered" => {
                let part = e.required("part").to_owned();
                let counts = Counts::of(e);
                stock.parts.insert(part.clone(), counts);
                let first = self.initial.get(&part).copied();
                check_counts(&part, &counts, first)
            }
            "reservation_recovered" => {
                let saga = e.required_u64("saga");
                let reservation = Reservation::Pending {
                    part: e.required("part").to_owned(),
                    quantity: i128::from(e.required_u64("quantity")),
                };
                stock
                    .reservations
                    .insert(saga, reservation)
                    .map(|_| format!("saga {saga}: two reservations recovered"))
            }
            "stock_reserved" | "stock_committed" | "stock_released" | "reservation_expired" => {
                let first = self.initial.get(e.required("part")).copied();
                change(stock, e, first)
            }
            _ => None,
        }
    }
}

/// Conservation and signs of one part's counts.
fn check_counts(part: &str, counts: &Counts, initial: Option<i128>) -> Option<String> {
    let Counts {
        initial: own,
        available,
        reserved,
        consumed,
    } = *counts;
    if available < 0 || reserved < 0 || consumed < 0 {
        return Some(format!("part {part}: a count went negative: {counts:?}"));
    }
    if available + reserved + consumed != own {
        return Some(format!(
            "part {part}: available {available} + reserved {reserved} + consumed {consumed} != initial {own}"
        ));
    }
    match initial {
        Some(first) if first != own => Some(format!(
            "part {part}: initial {own}, but it was initialized with {first}"
        )),
        None => Some(format!("part {part}: counts of a part never initialized")),
        Some(_) => None,
    }
}

/// One change of stock: moves the model's counts and the saga's reservation, then compares
/// with the counts the event reports.
fn change(stock: &mut Stock, e: &TraceEvent, initial: Option<i128>) -> Option<String> {
    let saga = e.required_u64("saga");
    let part = e.required("part").to_owned();
    let quantity = i128::from(e.required_u64("quantity"));
    let Some(model) = stock.parts.get_mut(&part) else {
        return Some(format!("saga {saga}: {} of unknown part {part}", e.name));
    };
    let reservation = stock.reservations.get(&saga).cloned();
    let pending = Reservation::Pending {
        part: part.clone(),
        quantity,
    };
    let expired = Reservation::Expired {
        part: part.clone(),
        quantity,
    };
    let after_expiry = e.field("after_expiry") == Some("true");
    let (legal, next) = match e.name.as_str() {
        "stock_reserved" => {
            model.available -= quantity;
            model.reserved += quantity;
            (reservation.is_none(), pending)
        }
        "stock_committed" if after_expiry => {
            model.available -= quantity;
            model.consumed += quantity;
            // After a restart the inventory does not announce expired records: unknown is
            // accepted, a pending or finished reservation is not.
            (
                reservation.is_none() || reservation == Some(expired),
                Reservation::Done,
            )
        }
        "stock_committed" => {
            model.reserved -= quantity;
            model.consumed += quantity;
            (reservation == Some(pending), Reservation::Done)
        }
        "stock_released" => {
            model.reserved -= quantity;
            model.available += quantity;
            (reservation == Some(pending), Reservation::Done)
        }
        "reservation_expired" => {
            model.reserved -= quantity;
            model.available += quantity;
            (reservation == Some(pending), expired)
        }
        _ => unreachable!("filtered by the caller"),
    };
    let model = *model;
    stock.reservations.insert(saga, next);
    if !legal {
        return Some(format!(
            "saga {saga}: {} of {quantity} {part}, but its reservation is {reservation:?}",
            e.name
        ));
    }
    if let Some(broken) = check_counts(&part, &model, initial) {
        return Some(format!("saga {saga}: {}: {broken}", e.name));
    }
    let reported = Counts::of(e);
    if reported != model {
        stock.parts.insert(part.clone(), reported);
        return Some(format!(
            "saga {saga}: {} of {quantity} {part} reports {reported:?}, the counts before it make {model:?}",
            e.name
        ));
    }
    None
}

impl Oracle for StockConserved {
    fn id(&self) -> &'static str {
        "SG6"
    }
    fn statement(&self) -> &'static str {
        "stock conserved (available + reserved + consumed = initial) and never negative"
    }
    fn on_event(&mut self, e: &TraceEvent) {
        if !matches!(
            e.name.as_str(),
            "inventory_recovered"
                | "reservation_recovered"
                | "stock_initialized"
                | "stock_reserved"
                | "stock_committed"
                | "stock_released"
                | "reservation_expired"
                | "stock_refused"
                | "release_tombstone"
                | "inventory_duplicate"
                | "inventory_started"
        ) {
            return;
        }
        if let Some(detail) = self.observe(e) {
            let host = &e.host;
            self.first.record(e.t, || format!("{host}: {detail}"));
        }
    }
    fn finish(&mut self, _end: Duration) -> Option<Violation> {
        self.first.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::test_event as event;

    fn saga(t: u64, name: &str, order: &str, extra: &[(&str, &str)]) -> TraceEvent {
        let mut fields = vec![("order", order), ("instance", "orders-1")];
        fields.extend_from_slice(extra);
        event(t, "orders-1", name, &fields)
    }

    fn step(t: u64, order: &str, step: &str, outcome: &str) -> TraceEvent {
        saga(
            t,
            "saga_step",
            order,
            &[("step", step), ("outcome", outcome)],
        )
    }

    /// An inventory change of part `p` for saga `saga` with the counts after it.
    fn stock(t: u64, name: &str, saga: &str, q: &str, counts: [&str; 3]) -> TraceEvent {
        event(
            t,
            "inventory",
            name,
            &[
                ("saga", saga),
                ("part", "p"),
                ("quantity", q),
                ("initial", "10"),
                ("available", counts[0]),
                ("reserved", counts[1]),
                ("consumed", counts[2]),
                ("expires_in_ms", "60000"),
                ("after_expiry", "false"),
            ],
        )
    }

    fn lease(t: u64, name: &str, holder: &str, token: &str) -> TraceEvent {
        event(
            t,
            "motion-1",
            name,
            &[
                ("axis", "x"),
                ("holder", holder),
                ("token", token),
                ("expires_in_ms", "30000"),
                ("ttl_ms", "30000"),
            ],
        )
    }

    fn accepted(t: u64, request_id: &str) -> TraceEvent {
        event(
            t,
            "motion-1",
            "move_accepted",
            &[
                ("axis", "x"),
                ("request_id", request_id),
                ("target_rad", "1.0"),
            ],
        )
    }

    /// Order 1 completes; order 2 fails to lease and compensates; a late lease of order 2
    /// arrives after its end and is still within its TTL at the end.
    fn correct_history() -> Vec<TraceEvent> {
        vec![
            event(
                0,
                "inventory",
                "stock_initialized",
                &[("part", "p"), ("initial", "10")],
            ),
            event(1, "inventory", "inventory_started", &[("port", "7500")]),
            saga(10, "saga_started", "1", &[("axis", "x")]),
            stock(11, "stock_reserved", "1", "2", ["8", "2", "0"]),
            step(12, "1", "reserve_part", "succeeded"),
            lease(13, "lease_granted", "order-1", "1"),
            step(14, "1", "lease_axis", "succeeded"),
            accepted(15, "1"),
            step(16, "1", "move", "succeeded"),
            stock(17, "stock_committed", "1", "2", ["8", "0", "2"]),
            step(18, "1", "commit_part", "succeeded"),
            lease(19, "lease_released", "order-1", "1"),
            step(20, "1", "release_axis", "succeeded"),
            saga(21, "saga_completed", "1", &[("shortfall", "false")]),
            saga(30, "saga_started", "2", &[("axis", "x")]),
            stock(31, "stock_reserved", "2", "3", ["5", "3", "2"]),
            step(32, "2", "reserve_part", "succeeded"),
            step(33, "2", "lease_axis", "failed"),
            saga(33, "saga_compensating", "2", &[("step", "lease_axis")]),
            saga(34, "saga_compensated_step", "2", &[("step", "lease_axis")]),
            stock(35, "stock_released", "2", "3", ["8", "0", "2"]),
            saga(
                36,
                "saga_compensated_step",
                "2",
                &[("step", "reserve_part")],
            ),
            saga(37, "saga_compensated", "2", &[]),
            // A late acquire of the deposed order: legitimately held until its TTL.
            lease(40, "lease_granted", "order-2", "2"),
            // A restart of the inventory restates the same counts.
            event(
                50,
                "inventory",
                "inventory_recovered",
                &[
                    ("part", "p"),
                    ("initial", "10"),
                    ("available", "8"),
                    ("reserved", "0"),
                    ("consumed", "2"),
                ],
            ),
            event(51, "inventory", "inventory_started", &[("port", "7500")]),
        ]
    }

    fn judge(id: &str, events: &[TraceEvent], end_ms: u64) -> Option<Violation> {
        let mut oracle = oracles()
            .into_iter()
            .find(|o| o.id() == id)
            .expect("a known id");
        events.iter().for_each(|e| oracle.on_event(e));
        oracle.finish(Duration::from_millis(end_ms))
    }

    fn with(mut events: Vec<TraceEvent>, more: Vec<TraceEvent>) -> Vec<TraceEvent> {
        events.extend(more);
        events
    }

    /// The journal deciding (`journal_append`) and acknowledging (`journal_ack`) one event of
    /// saga `order`'s stream at `version`.
    fn journaled(t: u64, order: &str, version: &str, kind: &str, acked: bool) -> Vec<TraceEvent> {
        let stream = format!("saga-{order}");
        let mut events = vec![event(
            t,
            "journal",
            "journal_append",
            &[
                ("stream", &stream),
                ("version_first", version),
                ("count", "1"),
                ("kinds", kind),
            ],
        )];
        if acked {
            events.push(event(
                t + 1,
                "journal",
                "journal_ack",
                &[
                    ("stream", &stream),
                    ("version_first", version),
                    ("count", "1"),
                    ("duplicate", "false"),
                ],
            ));
        }
        events
    }

    #[test]
    fn sg2_learns_a_pivot_from_the_journal_alone() {
        // Goal: a pivot the journal acknowledged counts for SG2 although no orchestrator traced
        // it, and a compensation recorded after it is caught; an unacknowledged pivot append is
        // no pivot. Method: journal-only histories of saga 9.
        let pivot = journaled(10, "9", "3", "step_succeeded:move", true);
        let compensation = journaled(50, "9", "4", "step_compensated:lease_axis", true);
        let violation = judge("SG2", &with(pivot, compensation.clone()), 1000).expect("caught");
        assert!(
            violation
                .detail
                .contains("journal records step_compensated:lease_axis after its move"),
            "{}",
            violation.detail
        );
        let lost_pivot = journaled(10, "9", "3", "step_succeeded:move", false);
        assert_eq!(judge("SG2", &with(lost_pivot, compensation), 1000), None);
    }

    fn completed(t: u64, request_id: &str, recovered: &str) -> TraceEvent {
        event(
            t,
            "motion-1",
            "move_completed",
            &[
                ("axis", "x"),
                ("request_id", request_id),
                ("target_rad", "1.0"),
                ("final_position_rad", "0.999"),
                ("recovered", recovered),
            ],
        )
    }

    /// Saga 1 up to its move, which motion-1 accepted: what a crash of motion-1 then decides.
    fn saga_at_its_move() -> Vec<TraceEvent> {
        vec![
            saga(10, "saga_started", "1", &[("axis", "x")]),
            step(12, "1", "reserve_part", "succeeded"),
            step(14, "1", "lease_axis", "succeeded"),
            accepted(15, "1"),
        ]
    }

    /// Saga 1's pivot failing as `interrupted`, and its compensation.
    fn interrupted_and_compensated(t: u64) -> Vec<TraceEvent> {
        vec![
            saga(
                t,
                "saga_step",
                "1",
                &[
                    ("step", "move"),
                    ("outcome", "failed"),
                    ("reason", "interrupted"),
                ],
            ),
            saga(t, "saga_compensating", "1", &[("step", "move")]),
            saga(
                t + 1,
                "saga_compensated_step",
                "1",
                &[("step", "lease_axis")],
            ),
            event(t + 2, "inventory", "stock_released", &[("saga", "1")]),
            saga(
                t + 3,
                "saga_compensated_step",
                "1",
                &[("step", "reserve_part")],
            ),
            saga(t + 4, "saga_compensated", "1", &[]),
        ]
    }

    #[test]
    fn sg2_catches_compensation_of_a_move_that_physically_completed() {
        // Goal: SG2 judges the motion host's record of the move, not only the saga's: a saga
        // whose move request id (its order id) was traced `move_completed` by a motion host and
        // that compensates is a violation, whatever the saga recorded and in either order; a
        // saga whose move never completed may compensate, and another client's completed move
        // (a different request id) does not count. Method: saga 1 reaches its move; motion-1
        // traces `move_completed` for request 1, crashes, and the saga gets `interrupted` and
        // compensates (caught); the same with the completion traced after the compensation
        // began (caught); the same without any completion, or with request 2's (holds); a
        // recovered completion and the saga completing (holds).
        let caught = with(
            with(saga_at_its_move(), vec![completed(500, "1", "false")]),
            interrupted_and_compensated(900),
        );
        let violation = judge("SG2", &caught, 20_000).expect("caught");
        assert!(
            violation.detail.contains(
                "saga 1: step move failed after its move completed on motion-1 at 0.500 s"
            ),
            "{}",
            violation.detail
        );
        assert_eq!(violation.t, Duration::from_millis(900));

        let late = with(
            with(saga_at_its_move(), interrupted_and_compensated(900)),
            vec![completed(950, "1", "true")],
        );
        let violation = judge("SG2", &late, 20_000).expect("caught");
        assert!(
            violation.detail.contains(
                "saga 1: its move completed on motion-1 after step move failed at 0.900 s"
            ),
            "{}",
            violation.detail
        );

        let never_completed = with(saga_at_its_move(), interrupted_and_compensated(900));
        assert_eq!(judge("SG2", &never_completed, 20_000), None);
        let other_request = with(
            with(saga_at_its_move(), vec![completed(500, "2", "false")]),
            interrupted_and_compensated(900),
        );
        assert_eq!(judge("SG2", &other_request, 20_000), None);

        let recovered_and_completed = with(
            saga_at_its_move(),
            vec![
                completed(900, "1", "true"),
                step(950, "1", "move", "succeeded"),
                step(960, "1", "commit_part", "succeeded"),
                step(970, "1", "release_axis", "succeeded"),
                saga(980, "saga_completed", "1", &[("shortfall", "false")]),
            ],
        );
        assert_eq!(judge("SG2", &recovered_and_completed, 20_000), None);
    }

    #[test]
    fn sg1_takes_the_journals_record_of_steps_an_orchestrator_never_traced() {
        // Goal: a step the journal acknowledged counts although its orchestrator crashed before
        // hearing of it (flagship seed 51), the journal's record alone can break the rules, and
        // an append the journal never acknowledged (lost in a crash) is no fact. Method: one
        // saga whose `reserve_part` success is only in the journal's record; then the same with
        // that append unacknowledged; then a journal-recorded completion that skips steps; then
        // two traced ends.
        let order = "7";
        let mut steps = vec![saga(0, "saga_started", order, &[])];
        steps.extend(journaled(
            10,
            order,
            "1",
            "step_succeeded:reserve_part",
            true,
        ));
        for (i, name) in ["lease_axis", "move", "commit_part", "release_axis"]
            .into_iter()
            .enumerate()
        {
            let t = 100 + 10 * i as u64;
            steps.extend(journaled(
                t,
                order,
                &(i + 2).to_string(),
                &format!("step_succeeded:{name}"),
                true,
            ));
            steps.push(step(t + 2, order, name, "succeeded"));
        }
        let completed = with(
            journaled(200, order, "6", "saga_completed", true),
            vec![saga(
                202,
                "saga_completed",
                order,
                &[("shortfall", "false")],
            )],
        );
        assert_eq!(
            judge("SG1", &with(steps.clone(), completed.clone()), 1000),
            None
        );

        let mut lost = steps.clone();
        lost.splice(
            1..3,
            journaled(10, order, "1", "step_succeeded:reserve_part", false),
        );
        let violation = judge("SG1", &with(lost, completed.clone()), 1000).expect("caught");
        assert!(
            violation
                .detail
                .contains("completed without steps [\"reserve_part\"]"),
            "{}",
            violation.detail
        );

        let skipped = with(
            vec![saga(0, "saga_started", "8", &[])],
            journaled(50, "8", "1", "saga_completed", true),
        );
        let violation = judge("SG1", &skipped, 1000).expect("caught");
        assert!(
            violation.detail.contains("saga 8 completed without steps"),
            "{}",
            violation.detail
        );

        let twice = with(
            with(steps, completed),
            vec![saga(
                300,
                "saga_completed",
                order,
                &[("shortfall", "false")],
            )],
        );
        let violation = judge("SG1", &twice, 1000).expect("caught");
        assert!(
            violation.detail.contains("traced ended completed after"),
            "{}",
            violation.detail
        );
    }

    // Goal: every saga oracle holds on a correct history (a completed saga, a compensated one,
    // a late lease within its TTL, an inventory restart) and each rule fails on the history
    // that breaks it, naming what it found (positive and negative space). Method: hand-built
    // event sequences; each violating case is the correct history with one change.
    #[test]
    fn judges_each_rule() {
        for id in ["SG1", "SG2", "SG3", "SG5", "SG6"] {
            assert_eq!(judge(id, &correct_history(), 20_000), None, "{id}");
        }
        let base = correct_history;
        let drop_event = |name: &str, order: &str| -> Vec<TraceEvent> {
            base()
                .into_iter()
                .filter(|e| !(e.name == name && e.field("order") == Some(order)))
                .collect()
        };
        let cases: Vec<(&str, &str, Vec<TraceEvent>, u64)> = vec![
            (
                "SG1",
                "saga 3 still open after 1 steps",
                with(
                    base(),
                    vec![
                        saga(60, "saga_started", "3", &[]),
                        step(61, "3", "reserve_part", "succeeded"),
                    ],
                ),
                20_000,
            ),
            (
                "SG1",
                "compensated [\"reserve_part\"], not [\"lease_axis\", \"reserve_part\"]",
                base()
                    .into_iter()
                    .filter(|e| {
                        !(e.name == "saga_compensated_step"
                            && e.field("step") == Some("lease_axis"))
                    })
                    .collect(),
                20_000,
            ),
            (
                "SG1",
                "saga 1 completed without steps [\"commit_part\"]",
                base()
                    .into_iter()
                    .filter(|e| e.field("step") != Some("commit_part"))
                    .collect(),
                20_000,
            ),
            (
                "SG1",
                "saga 2 compensated without a failed step",
                base()
                    .into_iter()
                    .filter(|e| e.field("outcome") != Some("failed"))
                    .collect(),
                20_000,
            ),
            (
                "SG2",
                "saga 1: saga_compensating lease_axis after its move succeeded",
                with(
                    drop_event("saga_completed", "1"),
                    vec![saga(
                        60,
                        "saga_compensating",
                        "1",
                        &[("step", "lease_axis")],
                    )],
                ),
                20_000,
            ),
            (
                "SG2",
                "saga 1: inventory release_tombstone on inventory after its move",
                with(
                    base(),
                    vec![event(
                        60,
                        "inventory",
                        "release_tombstone",
                        &[("saga", "1")],
                    )],
                ),
                20_000,
            ),
            (
                "SG3",
                "move 1 started again on motion-1 axis x",
                with(base(), vec![accepted(60, "1")]),
                20_000,
            ),
            (
                "SG5",
                "order 2: 3 of part p reserved on inventory still held at the end: taken before",
                base()
                    .into_iter()
                    .filter(|e| e.name != "stock_released")
                    .filter(|e| e.name != "inventory_recovered")
                    .collect(),
                20_000,
            ),
            (
                "SG5",
                "order 1: lease 1 of axis x on motion-1 still held at the end: taken before",
                base()
                    .into_iter()
                    .filter(|e| e.name != "lease_released" && e.field("holder") != Some("order-2"))
                    .collect(),
                20_000,
            ),
            (
                "SG5",
                "order 2: lease 2 of axis x on motion-1 still held at the end: taken after its saga ended at 0.037 s, and past its expiry",
                base(),
                // The late lease expires at 30.04 s; no lease_expired by 31 s.
                31_000,
            ),
            (
                "SG5",
                "order 9: lease 3 of axis x on motion-1 still held at the end: no saga",
                with(base(), vec![lease(60, "lease_renewed", "order-9", "3")]),
                20_000,
            ),
            (
                "SG6",
                "reports Counts { initial: 10, available: 8, reserved: 3",
                with(
                    base(),
                    vec![stock(60, "stock_reserved", "4", "3", ["8", "3", "2"])],
                ),
                20_000,
            ),
            (
                "SG6",
                "saga 2: stock_released of 3 p, but its reservation is None",
                with(
                    base(),
                    vec![stock(60, "stock_released", "2", "3", ["11", "0", "2"])],
                ),
                20_000,
            ),
            (
                "SG6",
                "a count went negative",
                with(
                    base(),
                    vec![stock(60, "stock_reserved", "5", "9", ["0", "9", "2"])],
                ),
                20_000,
            ),
            (
                "SG6",
                "saga 6: stock_committed of 1 p, but its reservation is None",
                with(
                    base(),
                    vec![stock(60, "stock_committed", "6", "1", ["8", "0", "3"])],
                ),
                20_000,
            ),
            (
                "SG6",
                "available 9 + reserved 0 + consumed 2 != initial 10",
                with(
                    base(),
                    vec![event(
                        60,
                        "inventory",
                        "inventory_recovered",
                        &[
                            ("part", "p"),
                            ("initial", "10"),
                            ("available", "9"),
                            ("reserved", "0"),
                            ("consumed", "2"),
                        ],
                    )],
                ),
                20_000,
            ),
            (
                "SG6",
                "recovered reserved 0 but recovered reservations hold 4",
                with(
                    base(),
                    vec![
                        event(
                            60,
                            "inventory",
                            "inventory_recovered",
                            &[
                                ("part", "p"),
                                ("initial", "10"),
                                ("available", "8"),
                                ("reserved", "0"),
                                ("consumed", "2"),
                            ],
                        ),
                        event(
                            60,
                            "inventory",
                            "reservation_recovered",
                            &[
                                ("saga", "7"),
                                ("part", "p"),
                                ("quantity", "4"),
                                ("expires_in_ms", "60000"),
                            ],
                        ),
                        event(61, "inventory", "inventory_started", &[("port", "7500")]),
                    ],
                ),
                20_000,
            ),
        ];
        for (id, needle, events, end_ms) in cases {
            let violation =
                judge(id, &events, end_ms).unwrap_or_else(|| panic!("{id}: {needle}: not caught"));
            assert!(
                violation.detail.contains(needle),
                "{id}: expected {needle:?} in {:?}",
                violation.detail
            );
        }
    }
}
