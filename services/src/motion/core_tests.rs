//! Unit tests of `MotionCore`, without a runtime: a test cell steps the core against a rigid-body
//! drive model at 1 kHz and plays the disk by hand, so each test decides exactly when the
//! durable state is written and when the service "crashes" (a new core from the last bytes
//! written).

use std::time::Duration;

use control::{AxisConfig, FaultCode, PlantConstants, TrajectoryLimits};

use super::config::MotionConfig;
use super::core::{MotionCore, PENDING_REPLIES_MAX, ReplyTo};
use super::durable;
use super::move_table::MoveOutcome;
use super::protocol::{
    AbortReason, AxisName, AxisState, MotionEvent, MotionRequest, MotionResponse, RejectReason,
};
use crate::fieldbus::{DriveCommandFrame, DriveFeedbackFrame, DriveStatus};

const PERIOD: Duration = Duration::from_millis(1);
const TTL_MS: u32 = 200;

fn plant() -> PlantConstants {
    PlantConstants {
        inertia_kg_m2: 0.01,
        torque_constant_nm_per_a: 1.8,
        viscous_nm_s_per_rad: 0.01,
        coulomb_nm: 0.0,
        current_a_max: 2.3,
    }
}

fn axis_config() -> AxisConfig {
    let limits = TrajectoryLimits {
        velocity_rad_per_s_max: 2.0,
        acceleration_rad_per_s2_max: 20.0,
        jerk_rad_per_s3_max: 400.0,
    };
    AxisConfig::from_plant(plant(), 20.0, limits, -3.0, 3.0)
}

fn x() -> AxisName {
    AxisName::new("x")
}

fn config() -> MotionConfig {
    MotionConfig::new(vec![(x(), axis_config())])
}

/// A rigid inertia with viscous friction, driven by the commanded current: enough physics for
/// moves to complete and faults to happen.
#[derive(Debug, Default)]
struct TestDrive {
    position_rad: f64,
    velocity_rad_per_s: f64,
    current_a: f64,
    sequence: u32,
    /// While true, the drive's frames never reach the service.
    silent: bool,
}

impl TestDrive {
    fn apply(&mut self, command: DriveCommandFrame, dt: Duration) {
        let plant = plant();
        self.current_a = if command.torque_enabled {
            command
                .current_a
                .clamp(-plant.current_a_max, plant.current_a_max)
        } else {
            0.0
        };
        const SUBSTEPS: u32 = 10;
        let h = dt.as_secs_f64() / f64::from(SUBSTEPS);
        for _ in 0..SUBSTEPS {
            let torque_nm = plant.torque_constant_nm_per_a * self.current_a
                - plant.viscous_nm_s_per_rad * self.velocity_rad_per_s;
            self.velocity_rad_per_s += torque_nm / plant.inertia_kg_m2 * h;
            self.position_rad += self.velocity_rad_per_s * h;
        }
    }

    fn feedback(&mut self) -> Option<DriveFeedbackFrame> {
        if self.silent {
            return None;
        }
        self.sequence = self.sequence.wrapping_add(1);
        Some(DriveFeedbackFrame {
            sequence: self.sequence,
            position_rad: self.position_rad,
            velocity_rad_per_s: self.velocity_rad_per_s,
            current_a: self.current_a,
            winding_temperature_c: 40.0,
            status: DriveStatus {
                torque_enabled: self.current_a != 0.0,
                watchdog_tripped: false,
                fault_code: 0,
            },
            valid: true,
        })
    }
}

/// One motion core, its drive, and a hand-played disk.
struct TestCell {
    config: MotionConfig,
    core: MotionCore,
    drive: TestDrive,
    now: Duration,
    /// The bytes of the last completed write, as `Storage::replace` would leave them.
    disk: Option<Vec<u8>>,
    reply_next: u64,
    /// Answers released by `persist` that no test call claimed yet.
    released: Vec<(ReplyTo, MotionResponse)>,
}

impl TestCell {
    fn new(config: MotionConfig) -> TestCell {
        let core = MotionCore::new(&config, None);
        let mut cell = TestCell {
            config,
            core,
            drive: TestDrive::default(),
            now: Duration::ZERO,
            disk: None,
            reply_next: 0,
            released: Vec::new(),
        };
        // Let the supervisor see valid feedback before anyone enables.
        cell.run_for(Duration::from_millis(10));
        cell
    }

    /// The service crashes and restarts from what is on disk; the drive (and its position)
    /// outlives it, as a real drive does.
    fn restart(self) -> TestCell {
        let recovered = self
            .disk
            .as_deref()
            .map(|bytes| durable::decode(bytes).expect("the disk holds what encode wrote"));
        TestCell {
            core: MotionCore::new(&self.config, recovered),
            config: self.config,
            drive: self.drive,
            now: self.now,
            disk: self.disk,
            reply_next: 0,
            released: Vec::new(),
        }
    }

    fn tick(&mut self) {
        self.now += PERIOD;
        self.core.expire_leases(self.now);
        let feedback = self.drive.feedback();
        let command = self.core.step(self.now, &x(), feedback);
        self.drive.apply(command, PERIOD);
    }

    fn run_for(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.now < end {
            self.tick();
        }
    }

    /// Writes the durable state if it is behind, as the shell does, and collects the answers.
    fn persist(&mut self) {
        if !self.core.needs_persist() {
            return;
        }
        let (version, state) = self.core.durable_snapshot();
        self.disk = Some(durable::encode(&state));
        let replies = self.core.persisted(self.now, version);
        self.released.extend(replies);
    }

    /// Sends a request without letting the disk catch up: `None` if the answer waits for it.
    fn send(&mut self, request: MotionRequest) -> (ReplyTo, Option<MotionResponse>) {
        let reply_to = ReplyTo(self.reply_next);
        self.reply_next += 1;
        (reply_to, self.core.handle(self.now, reply_to, request))
    }

    /// Sends a request with an instant disk and returns its answer.
    fn call(&mut self, request: MotionRequest) -> MotionResponse {
        let (reply_to, response) = self.send(request);
        if let Some(response) = response {
            return response;
        }
        self.persist();
        self.claim(reply_to)
            .expect("an instant disk releases every pending answer")
    }

    fn claim(&mut self, reply_to: ReplyTo) -> Option<MotionResponse> {
        let index = self.released.iter().position(|(to, _)| *to == reply_to)?;
        Some(self.released.remove(index).1)
    }

    fn acquire(&mut self, holder: &str) -> MotionResponse {
        self.call(MotionRequest::AcquireLease {
            axis: x(),
            holder: holder.into(),
            ttl_ms: TTL_MS,
        })
    }

    fn token(&mut self, holder: &str) -> u64 {
        match self.acquire(holder) {
            MotionResponse::Lease { token, .. } => token,
            other => panic!("expected a lease for {holder}, got {other:?}"),
        }
    }

    fn move_to(&mut self, request_id: u64, target_rad: f64, token: u64) -> MotionResponse {
        self.call(MotionRequest::Move {
            request_id,
            axis: x(),
            target_rad,
            token,
        })
    }

    fn enable(&mut self) {
        assert_eq!(
            self.call(MotionRequest::Enable { axis: x() }),
            MotionResponse::Done
        );
    }

    fn status(&mut self) -> super::protocol::AxisStatus {
        match self.call(MotionRequest::Status { axis: x() }) {
            MotionResponse::Status(status) => status,
            other => panic!("expected a status, got {other:?}"),
        }
    }

    /// Ticks (persisting as the shell would) until `request_id`'s move is finished, at most
    /// `limit`; returns the final answer to a duplicate of the move.
    fn run_move_to_end(
        &mut self,
        request_id: u64,
        target_rad: f64,
        limit: Duration,
    ) -> MotionResponse {
        let end = self.now + limit;
        while self.now < end {
            self.tick();
            self.persist();
            let response = self.core.handle(
                self.now,
                ReplyTo(u64::MAX),
                MotionRequest::Move {
                    request_id,
                    axis: x(),
                    target_rad,
                    token: 0,
                },
            );
            match response {
                Some(MotionResponse::InProgress) => continue,
                Some(done) => return done,
                None => panic!("a duplicate never waits for the disk"),
            }
        }
        panic!("move {request_id} did not finish within {limit:?}");
    }
}

fn assert_completed_near(response: &MotionResponse, target_rad: f64) -> f64 {
    match response {
        MotionResponse::Completed { final_position_rad } => {
            assert!(
                (final_position_rad - target_rad).abs() <= 0.01,
                "completed at {final_position_rad}, target {target_rad}"
            );
            *final_position_rad
        }
        other => panic!("expected Completed near {target_rad}, got {other:?}"),
    }
}

#[test]
fn lease_is_revealed_only_once_durable() {
    // Goal: a new token never leaves the core before the state holding it is written. Method:
    // acquire without persisting (no answer), check Status does not show it, then persist and
    // receive it.
    let mut cell = TestCell::new(config());
    let (reply_to, response) = cell.send(MotionRequest::AcquireLease {
        axis: x(),
        holder: "a".into(),
        ttl_ms: TTL_MS,
    });
    assert_eq!(response, None, "the grant waits for the disk");
    assert_eq!(cell.status().lease, None);
    assert!(cell.disk.is_none());
    cell.persist();
    assert_eq!(
        cell.claim(reply_to),
        Some(MotionResponse::Lease {
            token: 1,
            ttl_ms: TTL_MS
        })
    );
    let lease = cell.status().lease.expect("now visible");
    assert_eq!((lease.holder.as_str(), lease.token), ("a", 1));
}

#[test]
fn lease_grant_hold_renew_expire_release() {
    // Goal: the lease lifecycle through the core. Method: a gets token 1, b is refused, a
    // renews (same token), the lease expires after its ttl, b gets token 2 and releases it.
    let mut cell = TestCell::new(config());
    assert_eq!(cell.token("a"), 1);
    match cell.acquire("b") {
        MotionResponse::Rejected {
            reason: RejectReason::LeaseHeld { holder, .. },
        } => assert_eq!(holder, "a"),
        other => panic!("expected LeaseHeld, got {other:?}"),
    }
    cell.run_for(Duration::from_millis(100));
    assert_eq!(cell.token("a"), 1, "renewal keeps the token");
    cell.run_for(Duration::from_millis(u64::from(TTL_MS) - 1));
    assert!(cell.status().lease.is_some(), "renewed lease still live");
    cell.run_for(Duration::from_millis(1));
    assert_eq!(
        cell.status().lease,
        None,
        "expired exactly ttl after the renewal"
    );
    assert_eq!(cell.token("b"), 2);
    assert_eq!(
        cell.call(MotionRequest::ReleaseLease {
            axis: x(),
            token: 2
        }),
        MotionResponse::Released
    );
    assert_eq!(cell.status().lease, None);
    assert_eq!(cell.token("a"), 3, "tokens keep growing after a release");
}

#[test]
fn tokens_grow_across_restarts_from_the_durable_state() {
    // Goal: a restarted service never re-issues a token it revealed. Method: reveal tokens 1 and
    // 2, crash, restart from the written bytes and expect 3. Then take a grant that is never
    // written, crash again: its number may be reused, because it was never revealed.
    let mut cell = TestCell::new(config());
    assert_eq!(cell.token("a"), 1);
    cell.call(MotionRequest::ReleaseLease {
        axis: x(),
        token: 1,
    });
    assert_eq!(cell.token("b"), 2);

    let mut cell = cell.restart();
    assert_eq!(cell.status().lease, None, "leases do not survive a restart");
    assert_eq!(cell.status().token_issued_max, 2);
    assert_eq!(cell.token("c"), 3);
    cell.call(MotionRequest::ReleaseLease {
        axis: x(),
        token: 3,
    });

    let (_, response) = cell.send(MotionRequest::AcquireLease {
        axis: x(),
        holder: "d".into(),
        ttl_ms: TTL_MS,
    });
    assert_eq!(response, None);
    // No persist: the service crashes with token 4 decided but unwritten and unrevealed.
    let mut cell = cell.restart();
    assert_eq!(cell.status().token_issued_max, 3);
    assert_eq!(cell.token("d"), 4);
}

#[test]
fn stale_expired_and_unissued_tokens_are_refused_without_motion() {
    // Goal: fencing: only the current holder's token moves the axis. Method: a's lease expires,
    // b takes the axis; a's move with token 1 is StaleToken; b's token after its own expiry is
    // LeaseNotHeld; a made-up token is TokenNotIssued. The axis never moves.
    let mut cell = TestCell::new(config());
    cell.enable();
    let token_a = cell.token("a");
    cell.run_for(Duration::from_millis(u64::from(TTL_MS)));
    let token_b = cell.token("b");
    assert_eq!(
        cell.move_to(1, 1.0, token_a),
        MotionResponse::StaleToken {
            token_current: token_b
        }
    );
    cell.run_for(Duration::from_millis(u64::from(TTL_MS)));
    assert_eq!(
        cell.move_to(2, 1.0, token_b),
        MotionResponse::Rejected {
            reason: RejectReason::LeaseNotHeld
        }
    );
    assert_eq!(
        cell.move_to(3, 1.0, 99),
        MotionResponse::Rejected {
            reason: RejectReason::TokenNotIssued
        }
    );
    let status = cell.status();
    assert!(!status.moving);
    assert!(cell.drive.position_rad.abs() < 1e-3, "the axis stayed put");
    // Refused moves are not recorded: their ids stay free for a proper retry.
    let token_c = cell.token("c");
    assert_eq!(cell.move_to(1, 1.0, token_c), MotionResponse::Accepted);
}

#[test]
fn skip_fencing_check_really_accepts_stale_tokens() {
    // Goal: the planted bug does what it says, so oracle tests can rely on it. Method: the same
    // stale-token move on two cells, fencing on (StaleToken) and off (Accepted, and it moves).
    let stale_move = |skip_fencing_check: bool| {
        let mut config = config();
        config.skip_fencing_check = skip_fencing_check;
        let mut cell = TestCell::new(config);
        cell.enable();
        let token_a = cell.token("a");
        cell.run_for(Duration::from_millis(u64::from(TTL_MS)));
        cell.token("b");
        let response = cell.move_to(1, 0.2, token_a);
        if response == MotionResponse::Accepted {
            let done = cell.run_move_to_end(1, 0.2, Duration::from_secs(3));
            assert_completed_near(&done, 0.2);
        }
        response
    };
    assert_eq!(
        stale_move(false),
        MotionResponse::StaleToken { token_current: 2 }
    );
    assert_eq!(stale_move(true), MotionResponse::Accepted);
}

#[test]
fn duplicate_request_id_never_moves_twice() {
    // Goal: a retried move is answered from its record and never re-executed. Method: move to
    // 0.5 (id 7), resend id 7 while running (InProgress) and after (Completed); move to 0.0
    // (id 8); resend id 7 once more: answered Completed near 0.5, and the axis stays at 0.0.
    let mut cell = TestCell::new(config());
    cell.enable();
    let token = cell.token("a");
    assert_eq!(cell.move_to(7, 0.5, token), MotionResponse::Accepted);
    cell.run_for(Duration::from_millis(50));
    assert_eq!(cell.move_to(7, 0.5, token), MotionResponse::InProgress);
    let first = cell.run_move_to_end(7, 0.5, Duration::from_secs(3));
    let final_position_rad = assert_completed_near(&first, 0.5);

    let token = cell.token("a");
    assert_eq!(cell.move_to(8, 0.0, token), MotionResponse::Accepted);
    assert_completed_near(&cell.run_move_to_end(8, 0.0, Duration::from_secs(3)), 0.0);

    assert_eq!(
        cell.move_to(7, 0.5, token),
        MotionResponse::Completed { final_position_rad },
        "the duplicate gets the original outcome"
    );
    cell.run_for(Duration::from_millis(500));
    assert!(!cell.status().moving, "the duplicate started nothing");
    assert!(
        cell.drive.position_rad.abs() < 0.01,
        "the axis stayed at 0.0, at {}",
        cell.drive.position_rad
    );
    assert_eq!(
        cell.move_to(7, 0.6, token),
        MotionResponse::Rejected {
            reason: RejectReason::RequestIdReused
        },
        "an id is bound to its move"
    );
}

#[test]
fn move_starts_only_after_its_record_is_durable() {
    // Goal: write-ahead: no motion before the request id is on disk. Method: send a move without
    // persisting, run 200 ms (nothing moves; a duplicate says InProgress), then persist: the
    // answer is Accepted and the axis moves.
    let mut cell = TestCell::new(config());
    cell.enable();
    let token = cell.token("a");
    let (reply_to, response) = cell.send(MotionRequest::Move {
        request_id: 5,
        axis: x(),
        target_rad: 0.3,
        token,
    });
    assert_eq!(response, None);
    cell.run_for(Duration::from_millis(200));
    assert!(
        cell.drive.position_rad.abs() < 1e-3,
        "no motion before durability"
    );
    let (_, duplicate) = cell.send(MotionRequest::Move {
        request_id: 5,
        axis: x(),
        target_rad: 0.3,
        token,
    });
    assert_eq!(duplicate, Some(MotionResponse::InProgress));
    cell.persist();
    assert_eq!(cell.claim(reply_to), Some(MotionResponse::Accepted));
    assert_completed_near(&cell.run_move_to_end(5, 0.3, Duration::from_secs(3)), 0.3);
}

#[test]
fn restart_during_a_move_answers_interrupted_and_never_resumes() {
    // Goal: a move cut by a crash is never run again, even when retried with a fresh lease.
    // Method: start a move to 1.0, crash mid-way, restart, re-acquire, resend the same id:
    // Interrupted, and the axis does not go on to 1.0.
    let mut cell = TestCell::new(config());
    cell.enable();
    let token = cell.token("a");
    assert_eq!(cell.move_to(9, 1.0, token), MotionResponse::Accepted);
    cell.run_for(Duration::from_millis(200));
    let mut cell = cell.restart();
    // The restarted controller starts disabled; the drive's own watchdog would stop it.
    cell.drive.velocity_rad_per_s = 0.0;
    cell.run_for(Duration::from_millis(10));
    cell.enable();
    let position_at_restart = cell.drive.position_rad;
    assert!(
        position_at_restart < 0.9,
        "crashed mid-way, at {position_at_restart}"
    );
    let token = cell.token("a");
    assert_eq!(cell.move_to(9, 1.0, token), MotionResponse::Interrupted);
    cell.run_for(Duration::from_millis(1000));
    assert!(
        (cell.drive.position_rad - position_at_restart).abs() < 0.01,
        "the interrupted move was not resumed: {} vs {position_at_restart}",
        cell.drive.position_rad
    );
}

#[test]
fn lost_feedback_aborts_the_move_with_a_fault() {
    // Goal: a cut fieldbus ends the move as Aborted with the supervisor's fault, recorded for
    // duplicates. Method: silence the drive mid-move; expect Aborted { Fault } with the
    // communication-loss code, and the axis in Fault.
    let mut cell = TestCell::new(config());
    cell.enable();
    let token = cell.token("a");
    assert_eq!(cell.move_to(11, 1.0, token), MotionResponse::Accepted);
    cell.run_for(Duration::from_millis(100));
    cell.drive.silent = true;
    let outcome = cell.run_move_to_end(11, 1.0, Duration::from_secs(3));
    assert_eq!(
        outcome,
        MotionResponse::Aborted {
            reason: AbortReason::Fault {
                code: FaultCode::CommunicationLoss.code()
            }
        }
    );
    let status = cell.status();
    assert_eq!(status.state, AxisState::Fault);
    assert_eq!(status.fault_code, Some(FaultCode::CommunicationLoss.code()));
}

#[test]
fn disable_during_a_move_aborts_it_as_stopped() {
    // Goal: a move ended by a state request is Aborted { Stopped }, not Completed. Method:
    // disable mid-move.
    let mut cell = TestCell::new(config());
    cell.enable();
    let token = cell.token("a");
    assert_eq!(cell.move_to(12, 1.0, token), MotionResponse::Accepted);
    cell.run_for(Duration::from_millis(100));
    assert_eq!(
        cell.call(MotionRequest::Disable { axis: x() }),
        MotionResponse::Done
    );
    assert_eq!(
        cell.run_move_to_end(12, 1.0, Duration::from_secs(1)),
        MotionResponse::Aborted {
            reason: AbortReason::Stopped {
                state: AxisState::SwitchOnDisabled
            }
        }
    );
}

#[test]
fn invalid_requests_are_rejected_by_reason() {
    // Goal: each precondition has its own refusal and none has an effect. Method: one bad
    // request per reason on a fresh cell.
    let mut cell = TestCell::new(config());
    let reject = |reason| MotionResponse::Rejected { reason };
    assert_eq!(
        cell.call(MotionRequest::Status {
            axis: AxisName::new("nope")
        }),
        reject(RejectReason::UnknownAxis)
    );
    assert_eq!(
        cell.call(MotionRequest::AcquireLease {
            axis: x(),
            holder: String::new(),
            ttl_ms: TTL_MS
        }),
        reject(RejectReason::HolderInvalid)
    );
    assert_eq!(
        cell.call(MotionRequest::AcquireLease {
            axis: x(),
            holder: "a".into(),
            ttl_ms: 0
        }),
        reject(RejectReason::TtlOutOfRange { ttl_ms_max: 60_000 })
    );
    let token = cell.token("a");
    assert_eq!(
        cell.move_to(1, 0.5, token),
        reject(RejectReason::NotEnabled {
            state: AxisState::SwitchOnDisabled
        })
    );
    cell.enable();
    assert_eq!(
        cell.move_to(2, f64::NAN, token),
        reject(RejectReason::TargetNotFinite)
    );
    assert_eq!(
        cell.move_to(3, 5.0, token),
        reject(RejectReason::OutsideSoftLimits {
            position_rad_min: -3.0,
            position_rad_max: 3.0
        })
    );
    assert_eq!(cell.move_to(4, 0.5, token), MotionResponse::Accepted);
    assert_eq!(cell.move_to(5, -0.5, token), reject(RejectReason::Busy));
    assert_eq!(cell.status().token_issued_max, 1, "refusals issue nothing");
}

#[test]
fn pending_answers_are_bounded() {
    // Goal: a stuck disk cannot make the core queue answers without limit. Method: the holder
    // keeps renewing a grant that is never written until the limit; the next request is
    // Overloaded; once written, every waiting answer is released.
    let mut cell = TestCell::new(config());
    let mut waiting = Vec::new();
    for _ in 0..PENDING_REPLIES_MAX {
        let (reply_to, response) = cell.send(MotionRequest::AcquireLease {
            axis: x(),
            holder: "a".into(),
            ttl_ms: TTL_MS,
        });
        assert_eq!(response, None);
        waiting.push(reply_to);
    }
    let (_, overloaded) = cell.send(MotionRequest::AcquireLease {
        axis: x(),
        holder: "a".into(),
        ttl_ms: TTL_MS,
    });
    assert_eq!(
        overloaded,
        Some(MotionResponse::Rejected {
            reason: RejectReason::Overloaded
        })
    );
    cell.persist();
    for reply_to in waiting {
        assert_eq!(
            cell.claim(reply_to),
            Some(MotionResponse::Lease {
                token: 1,
                ttl_ms: TTL_MS
            })
        );
    }
}

/// `config()` with a bus (the core only needs to know there is one).
fn bus_config() -> MotionConfig {
    let mut config = config();
    config.bus = Some(crate::transport::Endpoint::new("bus", crate::bus::BUS_PORT));
    config
}

/// A lease of a minute (no expiry during a test's moves).
fn long_token(cell: &mut TestCell, holder: &str) -> u64 {
    let request = MotionRequest::AcquireLease {
        axis: x(),
        holder: holder.into(),
        ttl_ms: 60_000,
    };
    match cell.call(request) {
        MotionResponse::Lease { token, .. } => token,
        other => panic!("expected a lease for {holder}, got {other:?}"),
    }
}

/// The events in the payloads of `entries`, in order.
fn announced(entries: &[crate::bus::OutboxEntry]) -> Vec<MotionEvent> {
    entries
        .iter()
        .map(|entry| crate::framing::decode(&entry.payload).expect("a motion event"))
        .collect()
}

#[test]
fn bus_events_are_written_with_their_change_and_relayed_only_once_durable() {
    // Goal: the transactional outbox in the core: the announcement of a change is in the same
    // snapshot as the change, is relayable only once that snapshot is written, survives a
    // crash, and leaves the outbox once acknowledged. Method: with a bus, take a lease and run
    // a move to its end without writing; check the snapshot holds both the completed record and
    // its announcement while only the (written) grant is relayable; write, crash, restart from
    // the disk: both are relayable under the same ids; confirm them: the outbox empties and a
    // write is due.
    let mut cell = TestCell::new(bus_config());
    cell.enable();
    let token = long_token(&mut cell, "a");
    assert_eq!(cell.move_to(7, 0.5, token), MotionResponse::Accepted);
    let mut ticks = 0;
    while cell.status().moving {
        cell.tick();
        ticks += 1;
        assert!(ticks < 3000, "the move ends within 3 s");
    }
    let (_, state) = cell.core.durable_snapshot();
    let record = state.moves.iter().find(|r| r.request_id == 7).unwrap();
    assert!(matches!(record.outcome, MoveOutcome::Completed { .. }));
    let in_snapshot = announced(&state.outbox.entries().cloned().collect::<Vec<_>>());
    assert!(matches!(
        in_snapshot.as_slice(),
        [
            MotionEvent::LeaseGranted { token: 1, .. },
            MotionEvent::MoveCompleted { request_id: 7, .. }
        ]
    ));
    assert_eq!(
        announced(&cell.core.relayable()).len(),
        1,
        "the completion is not on disk yet: only the grant may be published"
    );
    cell.persist();
    let relayable = cell.core.relayable();
    assert_eq!(announced(&relayable), in_snapshot);

    let mut cell = cell.restart();
    let after_restart = cell.core.relayable();
    assert_eq!(
        after_restart, relayable,
        "same messages, same ids after a crash"
    );
    let ids: Vec<_> = after_restart.iter().map(|entry| entry.msg_id).collect();
    assert!(!cell.core.needs_persist());
    cell.core.relayed(&ids);
    assert_eq!(cell.core.outbox_len(), 0);
    assert!(cell.core.needs_persist(), "the smaller outbox is written");
    cell.persist();
    let cell = cell.restart();
    assert!(cell.core.relayable().is_empty());
}

#[test]
fn an_interrupted_move_is_announced_under_the_same_id_after_every_crash_before_the_write() {
    // Goal: a change re-derived after a crash (a move found interrupted) is announced under a
    // deterministic id, so the bus stores it once however often the service restarts before
    // writing. Method: with a bus, crash mid-move; restart twice without writing, each time
    // letting the first feedback decide the move: both restarts announce the same message;
    // after a write and a third restart nothing new.
    let mut cell = TestCell::new(bus_config());
    cell.enable();
    let token = long_token(&mut cell, "a");
    assert_eq!(cell.move_to(9, 1.0, token), MotionResponse::Accepted);
    cell.run_for(Duration::from_millis(100));
    let mut cell = cell.restart();
    assert!(
        !cell.core.needs_persist(),
        "nothing decided before the axis is heard"
    );
    cell.tick();
    assert!(cell.core.needs_persist(), "the announcement wants a write");
    let (_, first) = cell.core.durable_snapshot();
    let mut cell = cell.restart();
    cell.tick();
    let (_, second) = cell.core.durable_snapshot();
    assert_eq!(first.outbox, second.outbox);
    let events = announced(&second.outbox.entries().cloned().collect::<Vec<_>>());
    assert!(matches!(
        events.as_slice(),
        [
            MotionEvent::LeaseGranted { .. },
            MotionEvent::MoveInterrupted { request_id: 9, .. }
        ]
    ));
    cell.persist();
    let cell = cell.restart();
    assert!(!cell.core.needs_persist(), "nothing new to announce");
    assert_eq!(cell.core.relayable().len(), 2);
}

#[test]
fn lease_release_and_expiry_are_announced_only_with_a_bus() {
    // Goal: lease changes are announced with a bus, and without one nothing is written for
    // them (leases are not durable: a cell without a bus keeps its writes). Method: grant,
    // release, grant, expire, with and without a bus; compare the announcements and whether a
    // write is due after the release and the expiry.
    for with_bus in [false, true] {
        let mut cell = TestCell::new(if with_bus { bus_config() } else { config() });
        let token = cell.token("a");
        assert_eq!(
            cell.call(MotionRequest::ReleaseLease { axis: x(), token }),
            MotionResponse::Released
        );
        assert_eq!(cell.core.needs_persist(), with_bus);
        cell.persist();
        cell.token("b");
        cell.run_for(Duration::from_millis(u64::from(TTL_MS) + 1));
        assert_eq!(cell.core.needs_persist(), with_bus);
        cell.persist();
        let kinds: Vec<&str> = announced(&cell.core.relayable())
            .iter()
            .map(MotionEvent::kind)
            .collect();
        let expected: &[&str] = if with_bus {
            &[
                "lease_granted",
                "lease_released",
                "lease_granted",
                "lease_expired",
            ]
        } else {
            &[]
        };
        assert_eq!(kinds, expected);
    }
}

#[test]
fn a_full_outbox_refuses_new_leases_and_moves_until_relayed() {
    // Goal: backpressure, never a drop: while the bus is unreachable the outbox fills, new
    // leases and moves are refused Overloaded at OUTBOX_ADMIT_MAX messages (the holder may
    // still renew and release), and admission resumes once messages are acknowledged.
    // Method: with a bus and no relay, one move (grant, completion, release: an odd count),
    // then grant and release until one below the limit; a last grant reaches it; check the
    // refusals and the renewal; confirm the relayable messages; a new lease is granted again.
    use super::event_outbox::OUTBOX_ADMIT_MAX;
    let mut cell = TestCell::new(bus_config());
    cell.enable();
    let mut token = long_token(&mut cell, "a");
    assert_eq!(cell.move_to(1, 0.5, token), MotionResponse::Accepted);
    cell.run_move_to_end(1, 0.5, Duration::from_secs(3));
    assert_eq!(
        cell.call(MotionRequest::ReleaseLease { axis: x(), token }),
        MotionResponse::Released
    );
    cell.persist();
    assert_eq!(cell.core.outbox_len(), 3);
    while cell.core.outbox_len() < OUTBOX_ADMIT_MAX - 1 {
        token = long_token(&mut cell, "a");
        assert_eq!(
            cell.call(MotionRequest::ReleaseLease { axis: x(), token }),
            MotionResponse::Released
        );
        cell.persist();
    }
    let granted = long_token(&mut cell, "a");
    assert_eq!(granted, token + 1, "granted one below the limit");
    token = granted;
    assert_eq!(cell.core.outbox_len(), OUTBOX_ADMIT_MAX);
    let overloaded = MotionResponse::Rejected {
        reason: RejectReason::Overloaded,
    };
    assert_eq!(cell.acquire("b"), overloaded, "a new lease is refused");
    assert_eq!(cell.move_to(2, 0.0, token), overloaded, "a new move too");
    assert_eq!(long_token(&mut cell, "a"), token, "the holder may renew");
    assert_eq!(
        cell.call(MotionRequest::ReleaseLease { axis: x(), token }),
        MotionResponse::Released,
        "and release (from the reserve)"
    );
    cell.persist();
    assert_eq!(
        cell.core.outbox_len(),
        OUTBOX_ADMIT_MAX + 1,
        "nothing dropped"
    );
    let ids: Vec<_> = cell
        .core
        .relayable()
        .iter()
        .map(|entry| entry.msg_id)
        .collect();
    cell.core.relayed(&ids);
    cell.persist();
    assert_eq!(long_token(&mut cell, "b"), token + 1);
}

#[test]
fn planted_moves_twice_starts_a_retried_move_again() {
    // Goal: the planted bug for oracle SG3 really moves twice, visibly: with
    // `planted_moves_twice` a retry of a finished move (same request id, valid token) is
    // accepted again and traced as a second `move_accepted` with the same request id, once;
    // without it the same retry is answered from the record. Method: in both settings move
    // id 7 to 0.5 and back to 0.0 under id 8, then retry id 7; count `move_accepted` of id 7
    // and check where the axis went.
    for planted in [false, true] {
        let (trace, _guard) = crate::testing::record_trace();
        let mut config = config();
        config.planted_moves_twice = planted;
        let mut cell = TestCell::new(config);
        cell.enable();
        let token = long_token(&mut cell, "a");
        assert_eq!(cell.move_to(7, 0.5, token), MotionResponse::Accepted);
        cell.run_move_to_end(7, 0.5, Duration::from_secs(3));
        assert_eq!(cell.move_to(8, 0.0, token), MotionResponse::Accepted);
        cell.run_move_to_end(8, 0.0, Duration::from_secs(3));
        let retry = cell.move_to(7, 0.5, token);
        if planted {
            assert_eq!(retry, MotionResponse::Accepted, "planted: started again");
            let again = cell.run_move_to_end(7, 0.5, Duration::from_secs(3));
            assert_completed_near(&again, 0.5);
            assert!(
                matches!(
                    cell.move_to(7, 0.5, token),
                    MotionResponse::Completed { .. }
                ),
                "only once per request id"
            );
        } else {
            assert!(matches!(retry, MotionResponse::Completed { .. }));
            cell.run_for(Duration::from_millis(500));
        }
        let starts = trace
            .named("move_accepted")
            .iter()
            .filter(|event| event.field("request_id") == Some("7"))
            .count();
        assert_eq!(starts, if planted { 2 } else { 1 }, "planted {planted}");
        let expected_rad = if planted { 0.5 } else { 0.0 };
        assert!(
            (cell.drive.position_rad - expected_rad).abs() < 0.02,
            "planted {planted}: axis at {}",
            cell.drive.position_rad
        );
    }
}

/// Sends a duplicate of move `request_id` (answered at once, without a token) and returns the
/// answer.
fn poll(cell: &mut TestCell, request_id: u64, target_rad: f64) -> MotionResponse {
    let (_, response) = cell.send(MotionRequest::Move {
        request_id,
        axis: x(),
        target_rad,
        token: 0,
    });
    response.expect("a duplicate never waits for the disk")
}

#[test]
fn a_poll_never_hears_an_outcome_before_it_is_written() {
    // Goal: a terminal answer is never taken back by a crash: `Completed` and `Aborted` are told
    // only once on disk. Method: run a move to its end without writing, polling every period:
    // only `InProgress` until the write, then `Completed`. Then a move whose start is refused
    // (the axis disabled between recording and the disk): its start answer waits for the
    // write of the abort, and a poll before that write hears `InProgress`.
    let mut cell = TestCell::new(config());
    cell.enable();
    let token = cell.token("a");
    assert_eq!(cell.move_to(7, 0.5, token), MotionResponse::Accepted);
    let mut ticks = 0;
    while cell.status().moving {
        cell.tick();
        assert_eq!(poll(&mut cell, 7, 0.5), MotionResponse::InProgress);
        ticks += 1;
        assert!(ticks < 3000, "the move ends within 3 s");
    }
    assert!(
        cell.core.needs_persist(),
        "the completion waits for its write"
    );
    cell.run_for(Duration::from_millis(100));
    assert_eq!(
        poll(&mut cell, 7, 0.5),
        MotionResponse::InProgress,
        "decided, not written: not told"
    );
    cell.persist();
    assert_completed_near(&poll(&mut cell, 7, 0.5), 0.5);

    let token = cell.token("a");
    let (reply_to, response) = cell.send(MotionRequest::Move {
        request_id: 8,
        axis: x(),
        target_rad: 0.0,
        token,
    });
    assert_eq!(response, None);
    assert_eq!(
        cell.call(MotionRequest::Disable { axis: x() }),
        MotionResponse::Done
    );
    // Write the record alone: the start is refused, and its abort is a new, unwritten version.
    let (version, state) = cell.core.durable_snapshot();
    cell.disk = Some(durable::encode(&state));
    let released = cell.core.persisted(cell.now, version);
    assert!(
        released.is_empty(),
        "the start answer waits for the abort's write"
    );
    assert_eq!(poll(&mut cell, 8, 0.0), MotionResponse::InProgress);
    cell.persist();
    assert!(matches!(
        cell.claim(reply_to),
        Some(MotionResponse::Aborted {
            reason: AbortReason::StartRefused { .. }
        })
    ));
    assert!(matches!(
        poll(&mut cell, 8, 0.0),
        MotionResponse::Aborted { .. }
    ));
}

#[test]
fn a_move_completed_but_unwritten_at_a_crash_is_recovered_completed_from_the_axis() {
    // Goal: a crash between a move's physical completion and the write of its outcome does not
    // turn it into `Interrupted` (the saga would compensate a move that happened): the axis,
    // at rest at the target, decides it `Completed`, traced and announced as recovered, and it
    // is told only once written. Method: with a bus, run a move to its end and hold 300 ms
    // without writing; crash; the restarted core answers `InProgress` before and after the
    // first feedback decides it, until the write; then `Completed` at the axis's position, and
    // the outbox holds `MoveCompleted { recovered: true }`. No second move is started.
    let mut cell = TestCell::new(bus_config());
    cell.enable();
    let token = long_token(&mut cell, "a");
    assert_eq!(cell.move_to(7, 0.5, token), MotionResponse::Accepted);
    let mut ticks = 0;
    while cell.status().moving {
        cell.tick();
        ticks += 1;
        assert!(ticks < 3000, "the move ends within 3 s");
    }
    cell.run_for(Duration::from_millis(300));
    let mut cell = cell.restart();
    let (_, on_disk) = cell.core.durable_snapshot();
    let record = on_disk.moves.iter().find(|r| r.request_id == 7).unwrap();
    assert_eq!(record.outcome, MoveOutcome::InProgress, "the crash lost it");
    assert_eq!(poll(&mut cell, 7, 0.5), MotionResponse::InProgress);
    assert!(cell.status().moving, "the undecided move holds its axis");
    cell.tick();
    assert_eq!(
        poll(&mut cell, 7, 0.5),
        MotionResponse::InProgress,
        "decided, not written"
    );
    cell.persist();
    let position_rad = cell.drive.position_rad;
    let final_position_rad = assert_completed_near(&poll(&mut cell, 7, 0.5), 0.5);
    assert!((final_position_rad - position_rad).abs() < 1e-6);
    let (_, state) = cell.core.durable_snapshot();
    let events = announced(&state.outbox.entries().cloned().collect::<Vec<_>>());
    assert!(
        matches!(
            events.last(),
            Some(MotionEvent::MoveCompleted {
                request_id: 7,
                recovered: true,
                ..
            })
        ),
        "{events:?}"
    );
    assert!(!cell.status().moving);
    cell.run_for(Duration::from_millis(300));
    assert!(
        (cell.drive.position_rad - position_rad).abs() < 0.01,
        "nothing moved the axis"
    );
}

#[test]
fn a_recovered_move_away_from_its_target_or_still_moving_is_interrupted() {
    // Goal: recovery only says `Completed` for an axis at rest in position: elsewhere, or at
    // the target but still moving, it is `Interrupted`, and never resumed. Method: crash a move
    // to 1.0 mid-way; restart: the first feedback (mid-way) decides `Interrupted`. Then the
    // same crash with the drive put at the target but moving at 1 rad/s: `Interrupted` too.
    for at_target_moving in [false, true] {
        let mut cell = TestCell::new(config());
        cell.enable();
        let token = cell.token("a");
        assert_eq!(cell.move_to(9, 1.0, token), MotionResponse::Accepted);
        cell.run_for(Duration::from_millis(200));
        let mut cell = cell.restart();
        if at_target_moving {
            cell.drive.position_rad = 1.0;
            cell.drive.velocity_rad_per_s = 1.0;
        }
        assert_eq!(poll(&mut cell, 9, 1.0), MotionResponse::InProgress);
        cell.tick();
        cell.persist();
        assert_eq!(
            poll(&mut cell, 9, 1.0),
            MotionResponse::Interrupted,
            "at target and moving: {at_target_moving}"
        );
        assert!(!cell.status().moving, "the axis is free again");
    }
}

#[test]
fn a_recovered_move_without_feedback_is_interrupted_after_the_wait() {
    // Goal: with no valid feedback after a restart, a move in progress is not left undecided
    // for ever: `Interrupted` once `settle_time_max` has passed since the first control period.
    // Method: crash mid-move, restart with the drive silent: `InProgress` for 1000 periods
    // (999 ms after the first), `Interrupted` at the next.
    let mut cell = TestCell::new(config());
    cell.enable();
    let token = cell.token("a");
    assert_eq!(cell.move_to(9, 1.0, token), MotionResponse::Accepted);
    cell.run_for(Duration::from_millis(200));
    let mut cell = cell.restart();
    cell.drive.silent = true;
    assert_eq!(cell.config.settle_time_max, Duration::from_secs(1));
    for _ in 0..1000 {
        cell.tick();
        cell.persist();
        assert_eq!(poll(&mut cell, 9, 1.0), MotionResponse::InProgress);
    }
    cell.tick();
    assert!(cell.core.needs_persist(), "decided at the bound");
    cell.persist();
    assert_eq!(poll(&mut cell, 9, 1.0), MotionResponse::Interrupted);
}
