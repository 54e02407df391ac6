//! The motion service's logic as a pure state machine: `MotionCore`.
//!
//! Owns, per axis, the `control::AxisController`, the lease (`lease`), the running move; and,
//! for the service, the move-id table (`move_table`) and the bookkeeping of what is durable. It
//! receives time as `now` (a `Duration` since the service started) and does no I/O: the shell
//! (`run_motion`) reads requests, writes the durable state, and moves frames to and from the
//! drives. Every state change is traced with a stable `event` name and plain fields.
//!
//! Durability (write-ahead, group commit): a request whose effect must survive a crash changes
//! the in-memory state, bumps `version_wanted`, and leaves its answer pending. The shell writes
//! `durable_snapshot()` whenever `needs_persist()`, one write at a time, and reports success with
//! `persisted(version)`; only then are the pending answers released, new lease tokens revealed,
//! and recorded moves started. So:
//! - a token is revealed only once the newest token is on disk: a restarted core starts above it
//!   and never issues a token twice;
//! - a move starts only once its request id is on disk: after a crash the id is known and is
//!   never executed again (at most once per request id);
//! - a move's outcome (`Completed`, `Aborted`) is answered to a poll only once it is on disk,
//!   so an answer is never taken back by a crash: until then a poll hears `InProgress`.
//!
//! Recovery: a record still in progress after a restart is neither resumed nor declared lost at
//! once. Its move may have ended before the crash (the outcome was decided but not yet written)
//! or be cut off, with the axis left wherever the drive stopped it. The axis itself decides, on
//! its first valid feedback after the restart (`decide_recovered`): at rest (below the
//! supervisor's standstill velocity) within `in_position_tolerance_rad` of the target, the move
//! is `Completed` at that position (traced `move_completed` with `recovered = true`, announced
//! `MoveCompleted { recovered: true }`); anywhere else, or still moving, it is `Interrupted`
//! (`move_interrupted`). Without a valid feedback within `settle_time_max` of the first control
//! period after the restart (`Settings::recovery_feedback_wait`) it is `Interrupted` too. Until decided the
//! move holds its axis (new moves are `Busy`) and polls hear `InProgress`; the decision is
//! written like any outcome (record and announcement in one write) and answered once durable.
//!
//! A failed write changes nothing here; the shell retries it, the answers keep waiting, and the
//! client's deadline bounds the wait.
//!
//! With a bus (`MotionConfig::bus`), every announced change (move completed, aborted or
//! interrupted; lease granted, released or expired) also adds a `MotionEvent` to the outbox
//! (`event_outbox`) in the same call, so it is part of the same snapshot; `relayable` hands the
//! shell the messages already on disk, and `relayed` removes the ones the bus acknowledged
//! (and asks for the smaller state to be written). Without a bus none of this happens, and the
//! versions, writes and answers are exactly those of a core without an outbox.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use control::{AxisController, DriveState, Feedback, SafetyRequest};

use super::config::MotionConfig;
use super::durable::DurableState;
use super::event_outbox::EventOutbox;
use super::lease::{Acquired, Fence, LeaseSlot};
use super::move_table::{MoveOutcome, MoveRecord, MoveTable};
use super::protocol::{
    AbortReason, AxisName, AxisState, AxisStatus, HOLDER_LENGTH_MAX, LeaseView, MotionEvent,
    MotionRequest, MotionResponse, RejectReason,
};
use crate::bus::{MessageId, OutboxEntry};
use crate::fieldbus::{DriveCommandFrame, DriveFeedbackFrame};

/// Most answers that may wait for the disk at once; beyond, requests are refused `Overloaded`.
pub const PENDING_REPLIES_MAX: usize = 256;

/// The shell's handle for an answer that waits for the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReplyTo(pub u64);

#[derive(Clone, Copy, Debug, PartialEq)]
enum MovePhase {
    /// Recorded at this version; starts once it is durable.
    Recording { version: u64 },
    /// The trajectory is running.
    Running,
    /// The trajectory ended at `since`; waiting to be in position.
    Settling { since: Duration },
    /// Found in progress in the durable state after a restart: decided on the axis's first
    /// valid feedback (see the module docs). `since`: the first control period after the
    /// restart (`None` before it), from which `Settings::recovery_feedback_wait` runs.
    Recovering { since: Option<Duration> },
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct ActiveMove {
    request_id: u64,
    target_rad: f64,
    phase: MovePhase,
}

#[derive(Clone, Debug)]
struct AxisSlot {
    controller: AxisController,
    lease: LeaseSlot,
    active: Option<ActiveMove>,
    /// The newest feedback frame received (valid or not).
    last_feedback: Option<DriveFeedbackFrame>,
    /// Position of the newest valid feedback.
    position_rad: Option<f64>,
    command_sequence: u32,
}

#[derive(Clone, Debug)]
enum Pending {
    Lease { token: u64, ttl_ms: u32 },
    MoveStart { request_id: u64 },
}

#[derive(Clone, Debug)]
struct PendingReply {
    reply_to: ReplyTo,
    version: u64,
    pending: Pending,
}

/// The numbers of `MotionConfig` the core uses.
#[derive(Clone, Copy, Debug)]
struct Settings {
    lease_ttl_ms_max: u32,
    in_position_tolerance_rad: f64,
    settle_time_max: Duration,
    /// How long a move found in progress after a restart waits for a valid feedback of its
    /// axis before it is `Interrupted` without one: `MotionConfig::settle_time_max`, the time a
    /// move may take to get in position, reused as the bound for the drive's link to answer.
    recovery_feedback_wait: Duration,
    skip_fencing_check: bool,
    planted_moves_twice: bool,
}

/// The motion service's state machine (see the module docs).
#[derive(Clone, Debug)]
pub struct MotionCore {
    axes: BTreeMap<AxisName, AxisSlot>,
    /// Tokens of axes in the durable state that this configuration no longer has: kept so that
    /// re-adding the axis later never re-issues them.
    retired_tokens: BTreeMap<AxisName, u64>,
    moves: MoveTable,
    settings: Settings,
    version_wanted: u64,
    version_durable: u64,
    pending: Vec<PendingReply>,
    /// Moves whose outcome is decided but not yet on disk → the version that writes it: polls
    /// of them hear `InProgress` until then (an answer is never taken back by a crash).
    unwritten: BTreeMap<u64, u64>,
    /// Messages for the bus (empty and inert without one).
    events: EventOutbox,
    /// Request ids the planted double move (`planted_moves_twice`) already started again.
    planted_restarted: BTreeSet<u64>,
}

impl MotionCore {
    /// A core for `config`'s axes, resuming from `recovered` (the durable state read at start;
    /// `None` on first start). Moves that were in progress at the crash are decided from their
    /// axis's first valid feedback (see the module docs); one whose axis this configuration no
    /// longer has is `Interrupted` at once.
    pub fn new(config: &MotionConfig, recovered: Option<DurableState>) -> MotionCore {
        config.validate();
        let DurableState {
            tokens: mut retired_tokens,
            moves: recovered_moves,
            outbox,
            event_sequences,
        } = recovered.unwrap_or_default();
        let mut events = EventOutbox::new(config.bus.is_some(), outbox, event_sequences);
        let mut axes: BTreeMap<AxisName, AxisSlot> = config
            .axes
            .iter()
            .map(|(name, axis_config)| {
                let token_issued_max = retired_tokens.remove(name).unwrap_or(0);
                let slot = AxisSlot {
                    controller: AxisController::new(*axis_config),
                    lease: LeaseSlot::new(token_issued_max),
                    active: None,
                    last_feedback: None,
                    position_rad: None,
                    command_sequence: 0,
                };
                (name.clone(), slot)
            })
            .collect();
        let (mut moves, in_progress) = MoveTable::recover(recovered_moves);
        // Each move left in progress holds its axis until the axis decides it. At most one runs
        // per axis; should the table hold more, or name an axis no longer configured, the rest
        // cannot be decided from an axis and are interrupted, announced as part of version 1,
        // the first write after the restart (a crash before it finds them in progress again and
        // announces them again under the same ids).
        let mut version_wanted = 0;
        let mut unwritten = BTreeMap::new();
        for request_id in in_progress {
            let record = moves.get(request_id).expect("just recovered").clone();
            if let Some(slot) = axes.get_mut(&record.axis)
                && slot.active.is_none()
            {
                slot.active = Some(ActiveMove {
                    request_id,
                    target_rad: record.target_rad,
                    phase: MovePhase::Recovering { since: None },
                });
                continue;
            }
            tracing::info!(
                event = "move_interrupted",
                axis = record.axis.as_str(),
                request_id,
                target_rad = record.target_rad,
                reason = "axis_unavailable",
            );
            let event = MotionEvent::MoveInterrupted {
                axis: record.axis.clone(),
                request_id,
                target_rad: record.target_rad,
            };
            events.announce(1, &event);
            version_wanted = 1;
            moves.finish(request_id, MoveOutcome::Interrupted);
            unwritten.insert(request_id, 1);
        }
        MotionCore {
            axes,
            retired_tokens,
            moves,
            settings: Settings {
                lease_ttl_ms_max: config.lease_ttl_ms_max,
                in_position_tolerance_rad: config.in_position_tolerance_rad,
                settle_time_max: config.settle_time_max,
                recovery_feedback_wait: config.settle_time_max,
                skip_fencing_check: config.skip_fencing_check,
                planted_moves_twice: config.planted_moves_twice,
            },
            version_wanted,
            version_durable: 0,
            pending: Vec::new(),
            unwritten,
            events,
            planted_restarted: BTreeSet::new(),
        }
    }

    /// The axes, in name order.
    pub fn axis_names(&self) -> impl Iterator<Item = &AxisName> {
        self.axes.keys()
    }

    /// Handles one request at `now`. `Some` is the answer now; `None` means the answer waits for
    /// the disk and comes out of `persisted` with `reply_to`.
    pub fn handle(
        &mut self,
        now: Duration,
        reply_to: ReplyTo,
        request: MotionRequest,
    ) -> Option<MotionResponse> {
        self.expire_leases(now);
        if !self.axes.contains_key(request.axis()) {
            return Some(rejected(RejectReason::UnknownAxis));
        }
        match request {
            MotionRequest::AcquireLease {
                axis,
                holder,
                ttl_ms,
            } => self.acquire_lease(now, reply_to, axis, holder, ttl_ms),
            MotionRequest::ReleaseLease { axis, token } => {
                Some(self.release_lease(now, &axis, token))
            }
            MotionRequest::Move {
                request_id,
                axis,
                target_rad,
                token,
            } => self.request_move(now, reply_to, request_id, axis, target_rad, token),
            MotionRequest::Status { axis } => Some(MotionResponse::Status(self.status(now, &axis))),
            MotionRequest::Enable { axis } => Some(self.safety(now, &axis, SafetyRequest::Enable)),
            MotionRequest::Disable { axis } => {
                Some(self.safety(now, &axis, SafetyRequest::Disable))
            }
            MotionRequest::QuickStop { axis } => {
                Some(self.safety(now, &axis, SafetyRequest::QuickStop))
            }
            MotionRequest::ResetFault { axis } => {
                Some(self.safety(now, &axis, SafetyRequest::FaultReset))
            }
        }
    }

    fn acquire_lease(
        &mut self,
        now: Duration,
        reply_to: ReplyTo,
        axis: AxisName,
        holder: String,
        ttl_ms: u32,
    ) -> Option<MotionResponse> {
        if holder.is_empty() || holder.len() > HOLDER_LENGTH_MAX {
            return Some(rejected(RejectReason::HolderInvalid));
        }
        if ttl_ms == 0 || ttl_ms > self.settings.lease_ttl_ms_max {
            return Some(rejected(RejectReason::TtlOutOfRange {
                ttl_ms_max: self.settings.lease_ttl_ms_max,
            }));
        }
        if self.pending.len() >= PENDING_REPLIES_MAX {
            return Some(rejected(RejectReason::Overloaded));
        }
        let slot = self.axes.get_mut(&axis).expect("axis checked by handle");
        let renewal = slot
            .lease
            .live(now)
            .is_some_and(|lease| lease.holder == holder);
        if !renewal && !self.events.admits() {
            // Backpressure: a new lease would announce a grant the full outbox cannot take.
            return Some(rejected(RejectReason::Overloaded));
        }
        let ttl = Duration::from_millis(u64::from(ttl_ms));
        match slot
            .lease
            .acquire(now, &holder, ttl, self.version_wanted + 1)
        {
            Acquired::Granted { token } => {
                self.version_wanted += 1;
                let event = MotionEvent::LeaseGranted {
                    axis: axis.clone(),
                    holder: holder.clone(),
                    token,
                    ttl_ms,
                };
                self.events.announce(self.version_wanted, &event);
                self.wait_for(
                    reply_to,
                    self.version_wanted,
                    Pending::Lease { token, ttl_ms },
                );
                None
            }
            Acquired::Renewed {
                token,
                durable: true,
                ..
            } => {
                tracing::info!(
                    event = "lease_renewed",
                    axis = axis.as_str(),
                    holder = holder.as_str(),
                    token,
                    ttl_ms,
                );
                Some(MotionResponse::Lease { token, ttl_ms })
            }
            Acquired::Renewed {
                token,
                durable: false,
                durable_version,
            } => {
                self.wait_for(reply_to, durable_version, Pending::Lease { token, ttl_ms });
                None
            }
            Acquired::Held { holder, expires_in } => Some(rejected(RejectReason::LeaseHeld {
                holder,
                expires_in_ms: duration_ms(expires_in),
            })),
        }
    }

    fn release_lease(&mut self, now: Duration, axis: &AxisName, token: u64) -> MotionResponse {
        let slot = self.axes.get_mut(axis).expect("axis checked by handle");
        let holder = slot.lease.live(now).map(|lease| lease.holder.clone());
        match slot.lease.release(now, token) {
            Fence::Current => {
                let holder = holder.unwrap_or_default();
                tracing::info!(
                    event = "lease_released",
                    axis = axis.as_str(),
                    holder = holder.as_str(),
                    token,
                );
                self.announce_alone(MotionEvent::LeaseReleased {
                    axis: axis.clone(),
                    holder,
                    token,
                });
                MotionResponse::Released
            }
            Fence::Stale { token_current } => {
                tracing::info!(
                    event = "stale_token",
                    axis = axis.as_str(),
                    token,
                    token_current,
                    operation = "release",
                );
                MotionResponse::StaleToken { token_current }
            }
            Fence::NotHeld => rejected(RejectReason::LeaseNotHeld),
            Fence::NotIssued => rejected(RejectReason::TokenNotIssued),
        }
    }

    fn request_move(
        &mut self,
        now: Duration,
        reply_to: ReplyTo,
        request_id: u64,
        axis: AxisName,
        target_rad: f64,
        token: u64,
    ) -> Option<MotionResponse> {
        // Duplicates first: answering one has no effect, so no token is needed to learn the
        // outcome of one's own move (even after the lease moved on).
        if let Some(record) = self.moves.get(request_id) {
            if record.axis != axis || record.target_rad != target_rad {
                return Some(reject_move(
                    &axis,
                    request_id,
                    RejectReason::RequestIdReused,
                ));
            }
            if self.settings.planted_moves_twice
                && record.outcome.is_finished()
                && !self.planted_restarted.contains(&request_id)
                && self.could_start(now, &axis, token)
            {
                // PLANTED BUG (TEST ONLY, `planted_moves_twice`): the retry runs the move again.
                tracing::warn!(
                    event = "planted_move_restart",
                    axis = axis.as_str(),
                    request_id,
                    outcome = outcome_kind(&record.outcome),
                );
                self.planted_restarted.insert(request_id);
                self.moves.reopen_planted(request_id);
                return self.record_move(reply_to, request_id, axis, target_rad, token, false);
            }
            // An outcome not yet on disk is not told: a crash could still take it back.
            let outcome = if self.unwritten.contains_key(&request_id) {
                &MoveOutcome::InProgress
            } else {
                &record.outcome
            };
            let response = match outcome {
                MoveOutcome::InProgress => MotionResponse::InProgress,
                MoveOutcome::Completed { final_position_rad } => MotionResponse::Completed {
                    final_position_rad: *final_position_rad,
                },
                MoveOutcome::Aborted { reason } => MotionResponse::Aborted {
                    reason: reason.clone(),
                },
                MoveOutcome::Interrupted => MotionResponse::Interrupted,
            };
            tracing::info!(
                event = "move_duplicate",
                axis = axis.as_str(),
                request_id,
                token,
                outcome = outcome_kind(outcome),
            );
            return Some(response);
        }

        let slot = self.axes.get_mut(&axis).expect("axis checked by handle");
        if !self.settings.skip_fencing_check {
            match slot.lease.fence(now, token) {
                Fence::Current => {}
                Fence::Stale { token_current } => {
                    tracing::info!(
                        event = "stale_token",
                        axis = axis.as_str(),
                        request_id,
                        token,
                        token_current,
                        operation = "move",
                    );
                    return Some(MotionResponse::StaleToken { token_current });
                }
                Fence::NotHeld => {
                    return Some(reject_move(&axis, request_id, RejectReason::LeaseNotHeld));
                }
                Fence::NotIssued => {
                    return Some(reject_move(&axis, request_id, RejectReason::TokenNotIssued));
                }
            }
        }
        if !target_rad.is_finite() {
            return Some(reject_move(
                &axis,
                request_id,
                RejectReason::TargetNotFinite,
            ));
        }
        let supervisor = slot.controller.config().supervisor;
        if target_rad < supervisor.position_rad_min || target_rad > supervisor.position_rad_max {
            let reason = RejectReason::OutsideSoftLimits {
                position_rad_min: supervisor.position_rad_min,
                position_rad_max: supervisor.position_rad_max,
            };
            return Some(reject_move(&axis, request_id, reason));
        }
        let state = slot.controller.state();
        if state != DriveState::OperationEnabled {
            let reason = RejectReason::NotEnabled {
                state: state.into(),
            };
            return Some(reject_move(&axis, request_id, reason));
        }
        if slot.active.is_some() || slot.controller.is_moving() {
            return Some(reject_move(&axis, request_id, RejectReason::Busy));
        }
        // Backpressure of the outbox too: the move's outcome will be announced.
        if self.pending.len() >= PENDING_REPLIES_MAX || !self.events.admits() {
            return Some(reject_move(&axis, request_id, RejectReason::Overloaded));
        }
        self.record_move(reply_to, request_id, axis, target_rad, token, true)
    }

    /// Whether a move with `token` could start on `axis` now (the checks of a new move, without
    /// their traces): for the planted double move only.
    fn could_start(&self, now: Duration, axis: &AxisName, token: u64) -> bool {
        let slot = &self.axes[axis];
        (self.settings.skip_fencing_check || slot.lease.fence(now, token) == Fence::Current)
            && slot.controller.state() == DriveState::OperationEnabled
            && slot.active.is_none()
            && !slot.controller.is_moving()
            && self.pending.len() < PENDING_REPLIES_MAX
            && self.events.admits()
    }

    /// Records the move (a new record if `new`, else the planted double move's reopened one)
    /// and waits for the disk before starting it.
    fn record_move(
        &mut self,
        reply_to: ReplyTo,
        request_id: u64,
        axis: AxisName,
        target_rad: f64,
        token: u64,
        new: bool,
    ) -> Option<MotionResponse> {
        let slot = self.axes.get_mut(&axis).expect("axis checked by handle");
        self.version_wanted += 1;
        let version = self.version_wanted;
        slot.active = Some(ActiveMove {
            request_id,
            target_rad,
            phase: MovePhase::Recording { version },
        });
        if new {
            self.moves.insert(MoveRecord {
                request_id,
                axis: axis.clone(),
                target_rad,
                outcome: MoveOutcome::InProgress,
            });
        }
        tracing::debug!(
            event = "move_recording",
            axis = axis.as_str(),
            request_id,
            token,
            target_rad,
        );
        self.wait_for(reply_to, version, Pending::MoveStart { request_id });
        None
    }

    fn safety(&mut self, now: Duration, axis: &AxisName, request: SafetyRequest) -> MotionResponse {
        let slot = self.axes.get_mut(axis).expect("axis checked by handle");
        let before = slot.controller.state();
        match slot.controller.try_request(now.as_secs_f64(), request) {
            Ok(()) => {
                let after = slot.controller.state();
                if after != before {
                    tracing::info!(
                        event = "axis_state",
                        axis = axis.as_str(),
                        from = ?AxisState::from(before),
                        to = ?AxisState::from(after),
                        request = ?request,
                    );
                }
                MotionResponse::Done
            }
            Err(refusal) => rejected(RejectReason::Refused {
                refusal: refusal.into(),
            }),
        }
    }

    fn status(&self, now: Duration, axis: &AxisName) -> AxisStatus {
        let slot = &self.axes[axis];
        AxisStatus {
            state: slot.controller.state().into(),
            position_rad: slot.position_rad,
            setpoint_rad: slot.controller.setpoint().position_rad,
            moving: slot.active.is_some() || slot.controller.is_moving(),
            active_request_id: slot.active.map(|active| active.request_id),
            lease: slot
                .lease
                .live(now)
                .filter(|lease| lease.durable)
                .map(|lease| LeaseView {
                    holder: lease.holder.clone(),
                    token: lease.token,
                    expires_in_ms: duration_ms(lease.expires_at.saturating_sub(now)),
                }),
            token_issued_max: slot.lease.token_issued_max(),
            fault_code: slot.controller.fault().map(|fault| fault.code.code()),
        }
    }

    fn wait_for(&mut self, reply_to: ReplyTo, version: u64, pending: Pending) {
        assert!(
            version > self.version_durable,
            "waiting for version {version}, already durable up to {}",
            self.version_durable
        );
        assert!(
            self.pending.len() < PENDING_REPLIES_MAX,
            "pending limit checked before"
        );
        self.pending.push(PendingReply {
            reply_to,
            version,
            pending,
        });
    }

    /// Ends leases whose time is up (the shell calls this every control period; `handle` does
    /// too, so a decision never rests on an expired lease).
    pub fn expire_leases(&mut self, now: Duration) {
        let mut expired = Vec::new();
        for (axis, slot) in &mut self.axes {
            if let Some(lease) = slot.lease.expire(now) {
                tracing::info!(
                    event = "lease_expired",
                    axis = axis.as_str(),
                    holder = lease.holder.as_str(),
                    token = lease.token,
                );
                expired.push(MotionEvent::LeaseExpired {
                    axis: axis.clone(),
                    holder: lease.holder,
                    token: lease.token,
                });
            }
        }
        for event in expired {
            self.announce_alone(event);
        }
    }

    /// Announces a change that needs no write of its own (leases are not durable): with a bus,
    /// a new version carries the message; without, nothing happens.
    fn announce_alone(&mut self, event: MotionEvent) {
        if self.events.is_enabled() {
            self.version_wanted += 1;
            self.events.announce(self.version_wanted, &event);
        }
    }

    /// The outbox's messages that are on disk, oldest first: what the shell's relay publishes
    /// (empty without a bus).
    pub fn relayable(&self) -> Vec<OutboxEntry> {
        self.events.relayable(self.version_durable)
    }

    /// The bus acknowledged these messages: they leave the outbox, and the smaller state is
    /// written (a crash before that write only makes the relay publish them again, which the
    /// bus answers as duplicates).
    pub fn relayed(&mut self, msg_ids: &[MessageId]) {
        if self.events.confirm(msg_ids) > 0 {
            self.version_wanted += 1;
        }
    }

    /// Messages in the outbox (acknowledged ones leave it).
    pub fn outbox_len(&self) -> usize {
        self.events.len()
    }

    /// Whether the in-memory state is ahead of what is on disk.
    pub fn needs_persist(&self) -> bool {
        self.version_wanted > self.version_durable
    }

    /// The state to write, and the version it makes durable.
    pub fn durable_snapshot(&self) -> (u64, DurableState) {
        let mut tokens = self.retired_tokens.clone();
        for (axis, slot) in &self.axes {
            tokens.insert(axis.clone(), slot.lease.token_issued_max());
        }
        let (outbox, event_sequences) = self.events.durable_parts();
        let state = DurableState {
            tokens,
            moves: self.moves.records().cloned().collect(),
            outbox,
            event_sequences,
        };
        (self.version_wanted, state)
    }

    /// The shell wrote `durable_snapshot`'s state of `version`: reveals new leases, starts the
    /// recorded moves, and returns the answers that were waiting for it, in request order.
    pub fn persisted(&mut self, now: Duration, version: u64) -> Vec<(ReplyTo, MotionResponse)> {
        assert!(
            version <= self.version_wanted,
            "persisted version {version} was never snapshotted (newest {})",
            self.version_wanted
        );
        if version <= self.version_durable {
            return Vec::new();
        }
        self.version_durable = version;
        let t_s = now.as_secs_f64();

        for (axis, slot) in &mut self.axes {
            if let Some(lease) = slot.lease.confirm_durable(version) {
                tracing::info!(
                    event = "lease_granted",
                    axis = axis.as_str(),
                    holder = lease.holder.as_str(),
                    token = lease.token,
                    expires_in_ms = duration_ms(lease.expires_at.saturating_sub(now)),
                );
            }
            let Some(active) = slot.active.as_mut() else {
                continue;
            };
            let MovePhase::Recording { version: recorded } = active.phase else {
                continue;
            };
            if recorded > version {
                continue;
            }
            match slot.controller.start_move(t_s, active.target_rad) {
                Ok(()) => {
                    active.phase = MovePhase::Running;
                    tracing::info!(
                        event = "move_accepted",
                        axis = axis.as_str(),
                        request_id = active.request_id,
                        target_rad = active.target_rad,
                    );
                }
                Err(error) => {
                    // The axis changed state between recording and the disk: the move never
                    // started, and its id is durable, so it ends here, not on a retry.
                    let reason = AbortReason::StartRefused {
                        state: slot.controller.state().into(),
                    };
                    tracing::info!(
                        event = "move_aborted",
                        axis = axis.as_str(),
                        request_id = active.request_id,
                        reason = reason.kind(),
                        detail = %error,
                    );
                    let request_id = active.request_id;
                    let target_rad = active.target_rad;
                    slot.active = None;
                    self.version_wanted += 1;
                    let event = MotionEvent::MoveAborted {
                        axis: axis.clone(),
                        request_id,
                        target_rad,
                        reason: reason.clone(),
                    };
                    self.events.announce(self.version_wanted, &event);
                    self.moves
                        .finish(request_id, MoveOutcome::Aborted { reason });
                    self.unwritten.insert(request_id, self.version_wanted);
                }
            }
        }
        self.unwritten.retain(|_, written_at| *written_at > version);

        let (ready, waiting): (Vec<PendingReply>, Vec<PendingReply>) =
            std::mem::take(&mut self.pending)
                .into_iter()
                .partition(|reply| reply.version <= version);
        self.pending = waiting;
        let (ready, unwritten): (Vec<PendingReply>, Vec<PendingReply>) =
            ready.into_iter().partition(|reply| match reply.pending {
                Pending::MoveStart { request_id } => !self.unwritten.contains_key(&request_id),
                Pending::Lease { .. } => true,
            });
        // A move that ended before its answer left (its start was refused) waits for the write
        // of that outcome: the answer would tell it.
        for mut reply in unwritten {
            let Pending::MoveStart { request_id } = reply.pending else {
                unreachable!("partitioned on MoveStart");
            };
            reply.version = self.unwritten[&request_id];
            self.pending.push(reply);
        }
        ready
            .into_iter()
            .map(|reply| {
                let response = match reply.pending {
                    Pending::Lease { token, ttl_ms } => MotionResponse::Lease { token, ttl_ms },
                    Pending::MoveStart { request_id } => {
                        match &self.moves.get(request_id).expect("recorded move").outcome {
                            MoveOutcome::Aborted { reason } => MotionResponse::Aborted {
                                reason: reason.clone(),
                            },
                            // Started (or even finished, if the disk was slower than the move).
                            _ => MotionResponse::Accepted,
                        }
                    }
                };
                (reply.reply_to, response)
            })
            .collect()
    }

    /// One control period of `axis` at `now` with the feedback that arrived since the last one:
    /// returns the command frame to send. Also follows the axis's move to its end.
    ///
    /// Feedback mapping: a fresh frame is used as it is (`valid` is the medium's integrity
    /// flag); without one the last frame is held. The command link counts as working only when
    /// a fresh frame arrived and its drive reports no watchdog trip (the drive's watchdog trips
    /// when our commands stop reaching it), so a cut fieldbus in either direction trips the
    /// supervisor's communication-loss monitor after its timeout.
    pub fn step(
        &mut self,
        now: Duration,
        axis: &AxisName,
        feedback: Option<DriveFeedbackFrame>,
    ) -> DriveCommandFrame {
        let slot = self
            .axes
            .get_mut(axis)
            .unwrap_or_else(|| panic!("step for axis {axis}, which this core does not own"));
        let t_s = now.as_secs_f64();
        let link_ok = match feedback {
            Some(frame) => {
                slot.last_feedback = Some(frame);
                if frame.valid {
                    slot.position_rad = Some(frame.position_rad);
                }
                !frame.status.watchdog_tripped
            }
            None => false,
        };
        let measured = match slot.last_feedback {
            Some(frame) => Feedback {
                position_rad: frame.position_rad,
                velocity_rad_per_s: frame.velocity_rad_per_s,
                current_a: frame.current_a,
                winding_temperature_c: frame.winding_temperature_c,
                valid: frame.valid,
                sample_index: frame.sequence,
            },
            // Nothing heard from the drive yet: nothing usable.
            None => Feedback {
                position_rad: 0.0,
                velocity_rad_per_s: 0.0,
                current_a: 0.0,
                winding_temperature_c: 0.0,
                valid: false,
                sample_index: 0,
            },
        };
        let state_before = slot.controller.state();
        let command = slot.controller.step(t_s, &measured, link_ok);
        let state_after = slot.controller.state();
        if state_after != state_before {
            tracing::info!(
                event = "axis_state",
                axis = axis.as_str(),
                from = ?AxisState::from(state_before),
                to = ?AxisState::from(state_after),
                fault_code = slot.controller.fault().map(|fault| fault.code.code()),
            );
        }
        let frame = DriveCommandFrame {
            sequence: slot.command_sequence,
            current_a: command.current_a,
            torque_enabled: command.torque_enabled,
            position_setpoint_rad: slot.controller.setpoint().position_rad,
            moving: slot.controller.is_moving(),
        };
        slot.command_sequence = slot.command_sequence.wrapping_add(1);

        if let Some(outcome) = follow_move(slot, now, feedback, &self.settings) {
            let active = slot.active.take().expect("an outcome needs a move");
            let recovered = matches!(active.phase, MovePhase::Recovering { .. });
            match &outcome {
                MoveOutcome::Completed { final_position_rad } => tracing::info!(
                    event = "move_completed",
                    axis = axis.as_str(),
                    request_id = active.request_id,
                    target_rad = active.target_rad,
                    final_position_rad = *final_position_rad,
                    recovered,
                ),
                MoveOutcome::Aborted { reason } => tracing::info!(
                    event = "move_aborted",
                    axis = axis.as_str(),
                    request_id = active.request_id,
                    target_rad = active.target_rad,
                    reason = reason.kind(),
                ),
                MoveOutcome::Interrupted => tracing::info!(
                    event = "move_interrupted",
                    axis = axis.as_str(),
                    request_id = active.request_id,
                    target_rad = active.target_rad,
                    reason = if slot.position_rad.is_some() {
                        "not_in_position"
                    } else {
                        "no_feedback"
                    },
                    position_rad = slot.position_rad,
                ),
                MoveOutcome::InProgress => unreachable!("follow_move returns only final outcomes"),
            }
            // Written lazily (nobody waits for it), but told to no one before it is on disk
            // (`unwritten`): a crash before the write leaves the record in progress, and the
            // restarted core decides it again from the axis (the announcement is in the same
            // write).
            self.version_wanted += 1;
            let event = match &outcome {
                MoveOutcome::Completed { final_position_rad } => MotionEvent::MoveCompleted {
                    axis: axis.clone(),
                    request_id: active.request_id,
                    target_rad: active.target_rad,
                    final_position_rad: *final_position_rad,
                    recovered,
                },
                MoveOutcome::Aborted { reason } => MotionEvent::MoveAborted {
                    axis: axis.clone(),
                    request_id: active.request_id,
                    target_rad: active.target_rad,
                    reason: reason.clone(),
                },
                MoveOutcome::Interrupted => MotionEvent::MoveInterrupted {
                    axis: axis.clone(),
                    request_id: active.request_id,
                    target_rad: active.target_rad,
                },
                MoveOutcome::InProgress => unreachable!("follow_move returns only final outcomes"),
            };
            self.events.announce(self.version_wanted, &event);
            self.moves.finish(active.request_id, outcome);
            self.unwritten
                .insert(active.request_id, self.version_wanted);
        }
        frame
    }
}

/// Decides whether the axis's move has ended, and how; `feedback` is the frame that arrived
/// for this control period, if any (a recovered move is decided on a fresh valid one).
fn follow_move(
    slot: &mut AxisSlot,
    now: Duration,
    feedback: Option<DriveFeedbackFrame>,
    settings: &Settings,
) -> Option<MoveOutcome> {
    let active = slot.active.as_mut()?;
    let state = slot.controller.state();
    let abort = |controller: &AxisController| {
        let reason = match controller.fault() {
            Some(fault) => AbortReason::Fault {
                code: fault.code.code(),
            },
            None => AbortReason::Stopped {
                state: controller.state().into(),
            },
        };
        Some(MoveOutcome::Aborted { reason })
    };
    match active.phase {
        MovePhase::Recording { .. } => None,
        MovePhase::Recovering { since } => {
            let since = since.unwrap_or(now);
            active.phase = MovePhase::Recovering { since: Some(since) };
            let standstill_velocity_rad_per_s = slot
                .controller
                .config()
                .supervisor
                .standstill_velocity_rad_per_s;
            decide_recovered(
                feedback.filter(|frame| frame.valid),
                active.target_rad,
                standstill_velocity_rad_per_s,
                now.saturating_sub(since),
                settings,
            )
        }
        MovePhase::Running => {
            if slot.controller.is_moving() {
                return None;
            }
            if state != DriveState::OperationEnabled {
                return abort(&slot.controller);
            }
            active.phase = MovePhase::Settling { since: now };
            settle(slot.position_rad, active.target_rad, now, now, settings)
        }
        MovePhase::Settling { since } => {
            if state != DriveState::OperationEnabled {
                return abort(&slot.controller);
            }
            settle(slot.position_rad, active.target_rad, since, now, settings)
        }
    }
}

/// A move found in progress after a restart, `waited` since the first control period after it,
/// with this period's valid feedback if one came: at rest in position → completed there; any
/// other valid feedback → interrupted; none within `recovery_feedback_wait` → interrupted;
/// otherwise undecided.
fn decide_recovered(
    valid_feedback: Option<DriveFeedbackFrame>,
    target_rad: f64,
    standstill_velocity_rad_per_s: f64,
    waited: Duration,
    settings: &Settings,
) -> Option<MoveOutcome> {
    match valid_feedback {
        Some(frame) => {
            let at_rest = frame.velocity_rad_per_s.abs() <= standstill_velocity_rad_per_s;
            let in_position =
                (frame.position_rad - target_rad).abs() <= settings.in_position_tolerance_rad;
            Some(if at_rest && in_position {
                MoveOutcome::Completed {
                    final_position_rad: frame.position_rad,
                }
            } else {
                MoveOutcome::Interrupted
            })
        }
        None if waited >= settings.recovery_feedback_wait => Some(MoveOutcome::Interrupted),
        None => None,
    }
}

/// In position → completed; out of time → not settled; otherwise still settling.
fn settle(
    position_rad: Option<f64>,
    target_rad: f64,
    since: Duration,
    now: Duration,
    settings: &Settings,
) -> Option<MoveOutcome> {
    let error_rad = position_rad.map(|position| position - target_rad);
    if let (Some(position), Some(error)) = (position_rad, error_rad)
        && error.abs() <= settings.in_position_tolerance_rad
    {
        return Some(MoveOutcome::Completed {
            final_position_rad: position,
        });
    }
    if now.saturating_sub(since) >= settings.settle_time_max {
        return Some(MoveOutcome::Aborted {
            reason: AbortReason::NotSettled {
                error_rad: error_rad.unwrap_or(f64::INFINITY),
            },
        });
    }
    None
}

fn rejected(reason: RejectReason) -> MotionResponse {
    MotionResponse::Rejected { reason }
}

fn reject_move(axis: &AxisName, request_id: u64, reason: RejectReason) -> MotionResponse {
    tracing::info!(
        event = "move_rejected",
        axis = axis.as_str(),
        request_id,
        reason = reason.kind(),
    );
    rejected(reason)
}

fn outcome_kind(outcome: &MoveOutcome) -> &'static str {
    match outcome {
        MoveOutcome::InProgress => "in_progress",
        MoveOutcome::Completed { .. } => "completed",
        MoveOutcome::Aborted { .. } => "aborted",
        MoveOutcome::Interrupted => "interrupted",
    }
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
