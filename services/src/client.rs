//! The workload client: issues a planned list of moves to a motion service, as a cell controller
//! would, retrying safely.
//!
//! Owns `ClientConfig`, `run_client` and the per-move decision of what to do with each answer.
//! It does not own the retry numbers (`retry`), the wire (`rpc`, `motion::protocol`) or what a
//! move means (the motion service).
//!
//! Per planned move, at its time:
//! 1. a lease on the axis is acquired first (kept and reused while the client believes it live:
//!    until `ttl` after the acquire was *sent*, which is never later than the service's expiry
//!    measured from the grant);
//! 2. with `enable_axes`, the axis is enabled once;
//! 3. the move is sent with one request id for the logical move, reused by every retry:
//!    `client_id << 32 | index`, unique per client and per move;
//! 4. once the service acknowledged it (`Accepted` / `InProgress`), the client polls by sending
//!    the same move again until it is `Completed`, `Aborted` or `Interrupted`. If a poll is
//!    answered as a new move would be (a fencing or busy refusal), the service lost a record that
//!    was not yet durable (`InProgress` can precede durability; the move had not started), and
//!    the client goes back to step 1 with the same request id.
//!
//! Every call before the acknowledgement (lease, enable, move) is an *attempt* counted against
//! `RetryPolicy::attempts_max`; after a failed attempt the client waits the policy's jittered
//! backoff, drawn from the `ChaCha8Rng` the caller hands in. Polls are not attempts (the move is
//! already recorded; asking again cannot move twice), but they, too, end at the deadline. One
//! deadline (`RetryPolicy::deadline`) covers the whole logical move; each call's timeout is the
//! smaller of `attempt_timeout` and what is left of it.
//!
//! Events (`tracing`, INFO, stable `event` field): `move_requested`, `move_retry`,
//! `move_succeeded`, `move_failed`, with plain fields (client, request_id, axis, attempt,
//! delay_ms, error kind, reason).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;

use crate::motion::{
    AbortReason, AxisName, AxisState, MOTION_PORT, MotionRequest, MotionResponse, Refusal,
    RejectReason,
};
use crate::resilience::retry::{GiveUp, RetryPolicy, RetrySchedule};
use crate::rpc::{RpcClient, RpcError};
use crate::transport::Transport;

/// Most moves one client plans (request ids hold the index in 32 bits; this is far below).
pub const MOVES_MAX: usize = 100_000;

/// One move of the workload.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedMove {
    pub axis: AxisName,
    pub target_rad: f64,
    /// When to issue it, from the client's start. Moves are issued in list order; a move whose
    /// time has passed (the previous one took longer) is issued at once.
    pub at: Duration,
}

/// Everything `run_client` needs besides the transport.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Distinguishes this client's request ids from other clients'.
    pub client_id: u32,
    /// The lease holder name (also the `client` field of events).
    pub holder: String,
    pub motion_host: String,
    pub motion_port: u16,
    pub moves: Vec<PlannedMove>,
    /// Attempts, backoff and the one deadline of each logical move.
    pub retry: RetryPolicy,
    /// Longest wait for one call's answer.
    pub attempt_timeout: Duration,
    /// Wait between polls of an acknowledged move.
    pub poll_interval: Duration,
    pub lease_ttl_ms: u32,
    /// Enable each axis before its first move, and acknowledge a drive fault (reset) before
    /// enabling an axis its supervisor stopped: the cell client is the operator of its axes.
    /// The supervisor still refuses `Enable` while the cause lasts (e.g. implausible feedback).
    pub enable_axes: bool,
    /// The client's random stream (backoff jitter), derived from the run's seed by the caller.
    pub rng: ChaCha8Rng,
}

impl ClientConfig {
    /// Defaults: holder `client-<id>`, `MOTION_PORT`, up to 10 attempts with 25 ms doubling to
    /// 500 ms (±50 %) within 10 s per move, 500 ms per call, polls every 20 ms, 5 s leases, axes
    /// enabled by the client.
    pub fn new(
        client_id: u32,
        motion_host: impl Into<String>,
        moves: Vec<PlannedMove>,
        rng: ChaCha8Rng,
    ) -> ClientConfig {
        ClientConfig {
            client_id,
            holder: format!("client-{client_id}"),
            motion_host: motion_host.into(),
            motion_port: MOTION_PORT,
            moves,
            retry: RetryPolicy {
                attempts_max: 10,
                backoff_initial: Duration::from_millis(25),
                backoff_max: Duration::from_millis(500),
                jitter_ratio: 0.5,
                deadline: Duration::from_secs(10),
            },
            attempt_timeout: Duration::from_millis(500),
            poll_interval: Duration::from_millis(20),
            lease_ttl_ms: 5_000,
            enable_axes: true,
            rng,
        }
    }

    /// Panics on a configuration that cannot work.
    pub fn validate(&self) {
        assert!(
            self.moves.len() <= MOVES_MAX,
            "at most {MOVES_MAX} moves per client, got {}",
            self.moves.len()
        );
        assert!(!self.holder.is_empty(), "holder must not be empty");
        assert!(self.lease_ttl_ms > 0, "lease_ttl_ms must be positive");
        assert!(
            !self.attempt_timeout.is_zero(),
            "attempt_timeout must be positive"
        );
        assert!(
            !self.poll_interval.is_zero(),
            "poll_interval must be positive"
        );
        self.retry.validate();
    }

    /// The request id of move `index`.
    pub fn request_id(&self, index: usize) -> u64 {
        let index = u32::try_from(index).expect("move index fits 32 bits (MOVES_MAX)");
        u64::from(self.client_id) << 32 | u64::from(index)
    }
}

/// How one planned move ended, from the client's side.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientOutcome {
    Succeeded { final_position_rad: f64 },
    Failed { reason: FailReason },
}

/// Why a planned move failed.
#[derive(Clone, Debug, PartialEq)]
pub enum FailReason {
    /// The service started it and it did not end in position.
    Aborted(AbortReason),
    /// The service restarted during it.
    Interrupted,
    /// The service refused it for a reason retrying cannot fix.
    Rejected(RejectReason),
    /// Attempts or time ran out; `last_error` is the kind of the last failure.
    GaveUp {
        give_up: GiveUp,
        last_error: &'static str,
    },
    /// The call failed in a way retrying cannot fix (`RpcError::kind`).
    Rpc(&'static str),
    /// The service answered something that makes no sense for the request.
    Protocol,
}

impl FailReason {
    /// A stable name for traces.
    pub fn kind(&self) -> &'static str {
        match self {
            FailReason::Aborted(_) => "aborted",
            FailReason::Interrupted => "interrupted",
            FailReason::Rejected(_) => "rejected",
            FailReason::GaveUp {
                give_up: GiveUp::AttemptsExhausted,
                ..
            } => "attempts_exhausted",
            FailReason::GaveUp {
                give_up: GiveUp::DeadlineReached,
                ..
            } => "deadline_reached",
            FailReason::Rpc(_) => "rpc",
            FailReason::Protocol => "protocol",
        }
    }
}

/// One planned move's result.
#[derive(Clone, Debug, PartialEq)]
pub struct MoveResult {
    pub request_id: u64,
    pub axis: AxisName,
    pub target_rad: f64,
    pub outcome: ClientOutcome,
    /// Attempts made (polls excluded).
    pub attempts: u32,
}

/// What `run_client` did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClientReport {
    pub results: Vec<MoveResult>,
}

impl ClientReport {
    pub fn succeeded(&self) -> usize {
        self.results
            .iter()
            .filter(|result| matches!(result.outcome, ClientOutcome::Succeeded { .. }))
            .count()
    }

    pub fn failed(&self) -> usize {
        self.results.len() - self.succeeded()
    }
}

/// What the client does next for the move in hand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    AcquireLease,
    /// Acknowledge the axis's fault (CiA 402 fault reset) before enabling it again.
    ResetFault,
    Enable,
    Move,
    Poll,
}

/// What one answer means for the move in hand.
#[derive(Clone, Debug, PartialEq)]
enum Verdict {
    LeaseGranted {
        token: u64,
        ttl_ms: u32,
    },
    Enabled,
    /// `Enable` was refused because the axis is in `Fault`: reset it first.
    Faulted,
    /// The fault is acknowledged: enable next.
    FaultReset,
    /// The move is recorded: from now on, poll.
    Acknowledged,
    Succeeded {
        final_position_rad: f64,
    },
    Failed(FailReason),
    /// Try again after a backoff; the lease or the enable may have to be redone first.
    Retry {
        error: &'static str,
        lease_lost: bool,
        enable_lost: bool,
    },
}

fn retry(error: &'static str) -> Verdict {
    Verdict::Retry {
        error,
        lease_lost: false,
        enable_lost: false,
    }
}

/// The meaning of an answer to `step` (pure; `enable_axes` says whether the client may fix a
/// disabled axis itself).
fn judge(step: Step, answer: Result<MotionResponse, RpcError>, enable_axes: bool) -> Verdict {
    let response = match answer {
        Ok(response) => response,
        Err(error) if error.is_transient() => return retry(error.kind()),
        Err(error) => return Verdict::Failed(FailReason::Rpc(error.kind())),
    };
    match (step, response) {
        (Step::AcquireLease, MotionResponse::Lease { token, ttl_ms }) => {
            Verdict::LeaseGranted { token, ttl_ms }
        }
        (Step::Enable, MotionResponse::Done) => Verdict::Enabled,
        (Step::ResetFault, MotionResponse::Done) => Verdict::FaultReset,
        (
            Step::Enable,
            MotionResponse::Rejected {
                reason:
                    RejectReason::Refused {
                        refusal:
                            Refusal::NotAllowedIn {
                                state: AxisState::Fault,
                            },
                    },
            },
        ) => Verdict::Faulted,
        // The supervisor may refuse for a while (no valid feedback yet): worth another attempt.
        (
            Step::Enable,
            MotionResponse::Rejected {
                reason: RejectReason::Refused { .. },
            },
        ) => retry("enable_refused"),
        (Step::Move | Step::Poll, MotionResponse::Accepted | MotionResponse::InProgress) => {
            Verdict::Acknowledged
        }
        (Step::Move | Step::Poll, MotionResponse::Completed { final_position_rad }) => {
            Verdict::Succeeded { final_position_rad }
        }
        (Step::Move | Step::Poll, MotionResponse::Aborted { reason }) => {
            Verdict::Failed(FailReason::Aborted(reason))
        }
        (Step::Move | Step::Poll, MotionResponse::Interrupted) => {
            Verdict::Failed(FailReason::Interrupted)
        }
        (Step::Move, MotionResponse::StaleToken { .. }) => Verdict::Retry {
            error: "stale_token",
            lease_lost: true,
            enable_lost: false,
        },
        (_, MotionResponse::Rejected { reason }) => match reason {
            RejectReason::LeaseNotHeld | RejectReason::TokenNotIssued => Verdict::Retry {
                error: reason.kind(),
                lease_lost: true,
                enable_lost: false,
            },
            RejectReason::NotEnabled { .. } if enable_axes => Verdict::Retry {
                error: reason.kind(),
                lease_lost: false,
                enable_lost: true,
            },
            RejectReason::LeaseHeld { .. } | RejectReason::Busy | RejectReason::Overloaded => {
                retry(reason.kind())
            }
            other => Verdict::Failed(FailReason::Rejected(other)),
        },
        _ => Verdict::Failed(FailReason::Protocol),
    }
}

/// A lease the client believes it holds.
#[derive(Clone, Copy, Debug)]
struct HeldLease {
    token: u64,
    /// Client time until which it is surely live at the service.
    valid_until: Duration,
}

/// Runs the workload against the motion service and reports every move's outcome. Leases still
/// held at the end are released (one attempt each).
pub async fn run_client<T: Transport>(transport: T, config: ClientConfig) -> ClientReport {
    config.validate();
    let mut client = Client {
        rpc: RpcClient::new(transport),
        start: Instant::now(),
        leases: BTreeMap::new(),
        enabled: BTreeSet::new(),
        faulted: BTreeSet::new(),
        rng: config.rng.clone(),
        config,
    };
    let mut report = ClientReport::default();
    for index in 0..client.config.moves.len() {
        let planned = client.config.moves[index].clone();
        tokio::time::sleep_until(client.start + planned.at).await;
        let request_id = client.config.request_id(index);
        tracing::info!(
            event = "move_requested",
            client = client.config.holder.as_str(),
            request_id,
            axis = planned.axis.as_str(),
            target_rad = planned.target_rad,
        );
        let (outcome, attempts) = client.perform(request_id, &planned).await;
        match &outcome {
            ClientOutcome::Succeeded { final_position_rad } => tracing::info!(
                event = "move_succeeded",
                client = client.config.holder.as_str(),
                request_id,
                axis = planned.axis.as_str(),
                final_position_rad = *final_position_rad,
                attempts,
            ),
            ClientOutcome::Failed { reason } => tracing::info!(
                event = "move_failed",
                client = client.config.holder.as_str(),
                request_id,
                axis = planned.axis.as_str(),
                reason = reason.kind(),
                attempts,
            ),
        }
        report.results.push(MoveResult {
            request_id,
            axis: planned.axis,
            target_rad: planned.target_rad,
            outcome,
            attempts,
        });
    }
    client.release_all().await;
    report
}

struct Client<T: Transport> {
    rpc: RpcClient<T>,
    start: Instant,
    leases: BTreeMap<AxisName, HeldLease>,
    enabled: BTreeSet<AxisName>,
    /// Axes whose `Enable` was refused in `Fault`: reset before enabling.
    faulted: BTreeSet<AxisName>,
    rng: ChaCha8Rng,
    config: ClientConfig,
}

impl<T: Transport> Client<T> {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    async fn perform(&mut self, request_id: u64, planned: &PlannedMove) -> (ClientOutcome, u32) {
        let axis = &planned.axis;
        let mut schedule = RetrySchedule::new(self.config.retry, self.now());
        let mut acknowledged = false;
        let mut last_error: &'static str = "none";
        let failed = |reason, schedule: &RetrySchedule| {
            (ClientOutcome::Failed { reason }, schedule.attempts_made())
        };
        loop {
            let now = self.now();
            let lease = self
                .leases
                .get(axis)
                .copied()
                .filter(|lease| now < lease.valid_until);
            let step = if acknowledged {
                Step::Poll
            } else if lease.is_none() {
                Step::AcquireLease
            } else if self.config.enable_axes && self.faulted.contains(axis) {
                Step::ResetFault
            } else if self.config.enable_axes && !self.enabled.contains(axis) {
                Step::Enable
            } else {
                Step::Move
            };
            if step == Step::Poll {
                if schedule.remaining(now).is_zero() {
                    let give_up = GiveUp::DeadlineReached;
                    return failed(
                        FailReason::GaveUp {
                            give_up,
                            last_error,
                        },
                        &schedule,
                    );
                }
            } else if let Err(give_up) = schedule.begin_attempt(now) {
                return failed(
                    FailReason::GaveUp {
                        give_up,
                        last_error,
                    },
                    &schedule,
                );
            }

            let request = match step {
                Step::AcquireLease => MotionRequest::AcquireLease {
                    axis: axis.clone(),
                    holder: self.config.holder.clone(),
                    ttl_ms: self.config.lease_ttl_ms,
                },
                Step::Enable => MotionRequest::Enable { axis: axis.clone() },
                Step::ResetFault => MotionRequest::ResetFault { axis: axis.clone() },
                Step::Move | Step::Poll => MotionRequest::Move {
                    request_id,
                    axis: axis.clone(),
                    target_rad: planned.target_rad,
                    token: lease.map_or(0, |lease| lease.token),
                },
            };
            let timeout = self.config.attempt_timeout.min(schedule.remaining(now));
            let answer = self
                .rpc
                .call(
                    &self.config.motion_host,
                    self.config.motion_port,
                    &request,
                    timeout,
                )
                .await;
            let service_answered = answer.is_ok();
            match judge(step, answer, self.config.enable_axes) {
                Verdict::LeaseGranted { token, ttl_ms } => {
                    // Counted from the send: the service's expiry counts from the grant, later.
                    let valid_until = now + Duration::from_millis(u64::from(ttl_ms));
                    self.leases
                        .insert(axis.clone(), HeldLease { token, valid_until });
                }
                Verdict::Enabled => {
                    self.enabled.insert(axis.clone());
                }
                Verdict::Faulted => {
                    self.faulted.insert(axis.clone());
                }
                Verdict::FaultReset => {
                    self.faulted.remove(axis);
                }
                Verdict::Acknowledged => {
                    acknowledged = true;
                    let wait = self
                        .config
                        .poll_interval
                        .min(schedule.remaining(self.now()));
                    tokio::time::sleep(wait).await;
                }
                Verdict::Succeeded { final_position_rad } => {
                    return (
                        ClientOutcome::Succeeded { final_position_rad },
                        schedule.attempts_made(),
                    );
                }
                Verdict::Failed(reason) => return failed(reason, &schedule),
                Verdict::Retry {
                    error,
                    lease_lost,
                    enable_lost,
                } => {
                    last_error = error;
                    if lease_lost {
                        self.leases.remove(axis);
                    }
                    if enable_lost {
                        self.enabled.remove(axis);
                    }
                    if step == Step::Poll {
                        if !service_answered {
                            // The move is recorded; asking again later is all there is to do.
                            let wait = self
                                .config
                                .poll_interval
                                .min(schedule.remaining(self.now()));
                            tokio::time::sleep(wait).await;
                            continue;
                        }
                        // The service treated the poll as a new move: it lost a record that was
                        // not durable yet (an `InProgress` answer can precede durability). That
                        // move never started, so sending it again as new cannot move twice.
                        acknowledged = false;
                    }
                    let delay = match schedule.after_failure(self.now(), &mut self.rng) {
                        Ok(delay) => delay,
                        Err(give_up) => {
                            return failed(
                                FailReason::GaveUp {
                                    give_up,
                                    last_error,
                                },
                                &schedule,
                            );
                        }
                    };
                    tracing::info!(
                        event = "move_retry",
                        client = self.config.holder.as_str(),
                        request_id,
                        axis = axis.as_str(),
                        attempt = schedule.attempts_made(),
                        delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        error,
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Gives back every lease still believed live; one attempt each, failures ignored (the
    /// lease expires anyway).
    async fn release_all(&mut self) {
        let now = self.now();
        let leases: Vec<(AxisName, HeldLease)> = std::mem::take(&mut self.leases)
            .into_iter()
            .filter(|(_, lease)| now < lease.valid_until)
            .collect();
        for (axis, lease) in leases {
            let request = MotionRequest::ReleaseLease {
                axis,
                token: lease.token,
            };
            let _ignored: Result<MotionResponse, RpcError> = self
                .rpc
                .call(
                    &self.config.motion_host,
                    self.config.motion_port,
                    &request,
                    self.config.attempt_timeout,
                )
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::io;
    use std::rc::Rc;

    use rand_core::SeedableRng;

    use super::*;
    use crate::motion::{AxisState, Refusal};
    use crate::rpc::serve;
    use crate::transport::TokioTransport;

    #[test]
    fn judge_sorts_answers_into_retry_fail_and_progress() {
        // Goal: each answer leads to the right next step, in particular no retry of what
        // retrying cannot fix (oracle R3) and re-leasing on fencing answers. Method: a table of
        // (step, answer) → verdict.
        let rejected = |reason| Ok(MotionResponse::Rejected { reason });
        let cases: Vec<(Step, Result<MotionResponse, RpcError>, Verdict)> = vec![
            (Step::Move, Err(RpcError::Timeout), retry("timeout")),
            (
                Step::Move,
                Err(RpcError::Connect(io::Error::from(
                    io::ErrorKind::ConnectionRefused,
                ))),
                retry("connect"),
            ),
            (
                Step::Move,
                Err(RpcError::Remote("x".into())),
                Verdict::Failed(FailReason::Rpc("remote")),
            ),
            (
                Step::Move,
                Ok(MotionResponse::Accepted),
                Verdict::Acknowledged,
            ),
            (
                Step::Poll,
                Ok(MotionResponse::InProgress),
                Verdict::Acknowledged,
            ),
            (
                Step::Poll,
                Ok(MotionResponse::Completed {
                    final_position_rad: 1.0,
                }),
                Verdict::Succeeded {
                    final_position_rad: 1.0,
                },
            ),
            (
                Step::Move,
                Ok(MotionResponse::StaleToken { token_current: 3 }),
                Verdict::Retry {
                    error: "stale_token",
                    lease_lost: true,
                    enable_lost: false,
                },
            ),
            (
                Step::Move,
                rejected(RejectReason::LeaseNotHeld),
                Verdict::Retry {
                    error: "lease_not_held",
                    lease_lost: true,
                    enable_lost: false,
                },
            ),
            (
                Step::Move,
                rejected(RejectReason::NotEnabled {
                    state: AxisState::Fault,
                }),
                Verdict::Retry {
                    error: "not_enabled",
                    lease_lost: false,
                    enable_lost: true,
                },
            ),
            (Step::Move, rejected(RejectReason::Busy), retry("busy")),
            (
                Step::Move,
                rejected(RejectReason::TargetNotFinite),
                Verdict::Failed(FailReason::Rejected(RejectReason::TargetNotFinite)),
            ),
            (
                Step::AcquireLease,
                rejected(RejectReason::LeaseHeld {
                    holder: "other".into(),
                    expires_in_ms: 5,
                }),
                retry("lease_held"),
            ),
            (
                Step::Enable,
                rejected(RejectReason::Refused {
                    refusal: Refusal::NoValidFeedback,
                }),
                retry("enable_refused"),
            ),
            (
                Step::AcquireLease,
                Ok(MotionResponse::Accepted),
                Verdict::Failed(FailReason::Protocol),
            ),
        ];
        for (step, answer, expected) in cases {
            let shown = format!("{step:?} {answer:?}");
            assert_eq!(judge(step, answer, true), expected, "{shown}");
        }
        assert_eq!(
            judge(
                Step::Move,
                rejected(RejectReason::NotEnabled {
                    state: AxisState::Fault
                }),
                false
            ),
            Verdict::Failed(FailReason::Rejected(RejectReason::NotEnabled {
                state: AxisState::Fault
            })),
            "without enable_axes a disabled axis is final"
        );
    }

    /// A scripted motion service: answers moves from a script, leases always, and records every
    /// move request it sees.
    async fn scripted(
        listener: crate::transport::TokioListener,
        script: Vec<MotionResponse>,
        seen: Rc<RefCell<Vec<MotionRequest>>>,
    ) {
        let script = RefCell::new(script.into_iter());
        serve(listener, async |request: MotionRequest| {
            seen.borrow_mut().push(request.clone());
            match request {
                MotionRequest::AcquireLease { .. } => MotionResponse::Lease {
                    token: seen.borrow().len() as u64,
                    ttl_ms: 60_000,
                },
                MotionRequest::Move { .. } => script
                    .borrow_mut()
                    .next()
                    .expect("the script covers every move request"),
                _ => MotionResponse::Done,
            }
        })
        .await;
    }

    fn fast_config(port: u16, moves: Vec<PlannedMove>) -> ClientConfig {
        let mut config = ClientConfig::new(3, "127.0.0.1", moves, ChaCha8Rng::seed_from_u64(1));
        config.motion_port = port;
        config.retry = RetryPolicy {
            attempts_max: 6,
            backoff_initial: Duration::from_millis(1),
            backoff_max: Duration::from_millis(4),
            jitter_ratio: 0.5,
            deadline: Duration::from_secs(5),
        };
        config.poll_interval = Duration::from_millis(1);
        config
    }

    #[tokio::test]
    async fn retries_reuse_the_request_id_and_re_lease_on_stale_token() {
        // Goal: one request id per logical move across every retry, and a fresh lease after a
        // stale-token answer. Method: a scripted service answers Busy, StaleToken, Accepted,
        // InProgress, Completed; check the outcome, the attempts, and every Move request seen.
        let listener = TokioTransport::loopback().bind(0).await.unwrap();
        let port = listener.local_port().unwrap();
        let seen = Rc::new(RefCell::new(Vec::new()));
        let script = vec![
            MotionResponse::Rejected {
                reason: RejectReason::Busy,
            },
            MotionResponse::StaleToken { token_current: 9 },
            MotionResponse::Accepted,
            MotionResponse::InProgress,
            MotionResponse::Completed {
                final_position_rad: 0.25,
            },
        ];
        let moves = vec![PlannedMove {
            axis: AxisName::new("x"),
            target_rad: 0.25,
            at: Duration::ZERO,
        }];
        let config = fast_config(port, moves);
        let expected_id = config.request_id(0);
        let report = tokio::select! {
            biased;
            () = scripted(listener, script, seen.clone()) => unreachable!("serve runs forever"),
            report = run_client(TokioTransport::loopback(), config) => report,
        };
        assert_eq!(
            report.results[0].outcome,
            ClientOutcome::Succeeded {
                final_position_rad: 0.25
            }
        );
        // lease, enable, move (busy), move (stale), lease, move (accepted); polls excluded.
        assert_eq!(report.results[0].attempts, 6);
        let seen = seen.borrow();
        let kinds: Vec<&str> = seen
            .iter()
            .map(|request| match request {
                MotionRequest::AcquireLease { .. } => "lease",
                MotionRequest::Enable { .. } => "enable",
                MotionRequest::Move { .. } => "move",
                MotionRequest::ReleaseLease { .. } => "release",
                _ => "other",
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "lease", "enable", "move", "move", "lease", "move", "move", "move", "release"
            ]
        );
        let move_ids_and_tokens: Vec<(u64, u64)> = seen
            .iter()
            .filter_map(|request| match request {
                MotionRequest::Move {
                    request_id, token, ..
                } => Some((*request_id, *token)),
                _ => None,
            })
            .collect();
        assert!(move_ids_and_tokens.iter().all(|(id, _)| *id == expected_id));
        assert_eq!(expected_id, 3 << 32);
        // The first lease was answered token 1; the second (after StaleToken) token 5.
        assert_eq!(
            move_ids_and_tokens
                .iter()
                .map(|(_, token)| *token)
                .collect::<Vec<_>>(),
            [1, 1, 5, 5, 5]
        );
    }

    #[tokio::test]
    async fn poll_answered_as_a_new_move_sends_the_move_again() {
        // Goal: when the service forgot an acknowledged move (its record was not durable when it
        // restarted), the client re-leases and re-sends it instead of polling until the deadline.
        // Method: the script answers InProgress, then LeaseNotHeld to the poll, then Accepted and
        // Completed; check the sequence of requests.
        let listener = TokioTransport::loopback().bind(0).await.unwrap();
        let port = listener.local_port().unwrap();
        let seen = Rc::new(RefCell::new(Vec::new()));
        let script = vec![
            MotionResponse::InProgress,
            MotionResponse::Rejected {
                reason: RejectReason::LeaseNotHeld,
            },
            MotionResponse::Accepted,
            MotionResponse::Completed {
                final_position_rad: -0.5,
            },
        ];
        let moves = vec![PlannedMove {
            axis: AxisName::new("x"),
            target_rad: -0.5,
            at: Duration::ZERO,
        }];
        let report = tokio::select! {
            biased;
            () = scripted(listener, script, seen.clone()) => unreachable!(),
            report = run_client(TokioTransport::loopback(), fast_config(port, moves)) => report,
        };
        assert_eq!(
            report.results[0].outcome,
            ClientOutcome::Succeeded {
                final_position_rad: -0.5
            }
        );
        let kinds: Vec<&str> = seen
            .borrow()
            .iter()
            .map(|request| match request {
                MotionRequest::AcquireLease { .. } => "lease",
                MotionRequest::Enable { .. } => "enable",
                MotionRequest::Move { .. } => "move",
                MotionRequest::ReleaseLease { .. } => "release",
                _ => "other",
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "lease", "enable", "move", "move", "lease", "move", "move", "release"
            ]
        );
        // Attempts: lease, enable, move, lease, move; polls are not attempts.
        assert_eq!(report.results[0].attempts, 5);
    }

    #[tokio::test]
    async fn attempts_are_capped_and_reported() {
        // Goal: a move that keeps failing stops at attempts_max (oracle R1) and says why.
        // Method: the script answers Busy forever; expect GaveUp/AttemptsExhausted after exactly
        // attempts_max calls (lease + enable + 4 moves).
        let listener = TokioTransport::loopback().bind(0).await.unwrap();
        let port = listener.local_port().unwrap();
        let seen = Rc::new(RefCell::new(Vec::new()));
        let busy = MotionResponse::Rejected {
            reason: RejectReason::Busy,
        };
        let moves = vec![PlannedMove {
            axis: AxisName::new("x"),
            target_rad: 0.25,
            at: Duration::ZERO,
        }];
        let report = tokio::select! {
            biased;
            () = scripted(listener, vec![busy; 10], seen.clone()) => unreachable!(),
            report = run_client(TokioTransport::loopback(), fast_config(port, moves)) => report,
        };
        assert_eq!(
            report.results[0].outcome,
            ClientOutcome::Failed {
                reason: FailReason::GaveUp {
                    give_up: GiveUp::AttemptsExhausted,
                    last_error: "busy"
                }
            }
        );
        assert_eq!(report.results[0].attempts, 6);
        let moves_sent = seen
            .borrow()
            .iter()
            .filter(|request| matches!(request, MotionRequest::Move { .. }))
            .count();
        assert_eq!(moves_sent, 4);
        assert_eq!(report.failed(), 1);
    }
}
