//! The saga's participants as the orchestrator calls them: each `Command` becomes RPCs to the
//! inventory or a motion service, retried until the answer is definitive.
//!
//! Owns `Participants::execute` and the meaning of each participant answer for the saga
//! (`StepOutcome`). It does not own the saga's rules (`saga`) or the journal (the shell).
//!
//! What "definitive" means per command:
//! - **reserve, lease** (compensatable): success, or a refusal retrying cannot fix, or retries
//!   exhausted (`forward_retry`), which counts as a failure: the saga compensates, and the
//!   compensation also covers a reservation or lease the lost answers may have made. A lease
//!   held by another saga is waited for within the same retries.
//! - **move** (the pivot): only the motion service's record of the move (`Completed`,
//!   `Aborted`, `Interrupted`) or a refusal proving it never happened. Its request id is the
//!   order id, so every re-send is the same move (at most one move per order). An expired or
//!   taken lease is re-acquired (same holder, so a live lease is renewed with its token); a
//!   disabled axis is enabled; an acknowledged move is polled. A fenced refusal (stale or
//!   unknown token, lease not held) proves the move was not recorded; if the lease cannot be
//!   had back within `forward_retry`, the move fails and the saga compensates.
//! - **commit, release, compensations**: retried until done; a commit that finds its pieces
//!   gone is a shortfall.
//!
//! When a round of `must_retry` runs out, `execute` returns `Unavailable` and the driver stops;
//! it starts again later from the journal, so nothing is decided on a guess.

use std::cell::RefCell;
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use super::config::OrdersConfig;
use super::protocol::OrderSpec;
use super::saga::{Command, StepOutcome};
use crate::inventory::{InventoryRequest, InventoryResponse, Refusal, SagaId};
use crate::motion::{AxisName, AxisState, MotionRequest, MotionResponse, RejectReason};
use crate::retry::{RetryPolicy, RetrySchedule};
use crate::rpc::{RpcClient, RpcError};
use crate::transport::Endpoint;
use crate::transport::Transport;

/// A participant could not be reached (or answered nothing definitive) within a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unavailable;

/// The lease holder name of an order: the same for every instance, so a new owner renews the
/// saga's lease instead of competing with it.
pub fn lease_holder(order: &OrderSpec) -> String {
    format!("order-{}", order.order_id.0)
}

/// Calls the participants for one orders instance.
#[derive(Debug)]
pub struct Participants<T: Transport> {
    rpc: RpcClient<T>,
    config: OrdersConfig,
    rng: RefCell<ChaCha8Rng>,
    start: Instant,
}

/// What one answer means while a command is being executed.
enum Next<O> {
    Finished(O),
    /// Try again after a backoff (counts as an attempt).
    Retry(&'static str),
    /// The participant serves someone else (an axis leased to another saga): ask again after
    /// `lease_wait_interval`. Not a failure, so not an attempt, and no growing backoff — a
    /// saga that backed off exponentially would let every later saga take the axis first —
    /// but bounded by the policy's deadline.
    Wait(&'static str),
}

impl<T: Transport> Participants<T> {
    pub fn new(transport: T, config: OrdersConfig, rng: ChaCha8Rng) -> Participants<T> {
        Participants {
            rpc: RpcClient::new(transport),
            config,
            rng: RefCell::new(rng),
            start: Instant::now(),
        }
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        endpoint: &Endpoint,
        request: &Req,
        schedule: &RetrySchedule,
    ) -> Result<Resp, RpcError> {
        let timeout = self
            .config
            .call_timeout
            .min(schedule.remaining(self.now()))
            .max(Duration::from_millis(1));
        self.rpc
            .call(&endpoint.host, endpoint.port, request, timeout)
            .await
    }

    /// Waits the backoff after a failed attempt (jitter from this instance's stream); false
    /// when the schedule is exhausted.
    pub async fn back_off(&self, schedule: &mut RetrySchedule) -> bool {
        let wait = {
            let mut rng = self.rng.borrow_mut();
            schedule.after_failure(self.now(), &mut *rng)
        };
        match wait {
            Ok(wait) => {
                tokio::time::sleep(wait).await;
                true
            }
            Err(_give_up) => false,
        }
    }

    fn motion(&self, axis: &AxisName) -> &Endpoint {
        self.config
            .motion
            .get(axis)
            .expect("orders are checked for a known axis when placed")
    }

    /// Runs `command` of `order`'s saga until its outcome is definitive.
    pub async fn execute(
        &self,
        order: &OrderSpec,
        command: &Command,
    ) -> Result<StepOutcome, Unavailable> {
        let saga = SagaId(order.order_id.0);
        match command {
            Command::Reserve { part, quantity } => {
                let request = InventoryRequest::Reserve {
                    saga,
                    part: part.clone(),
                    quantity: *quantity,
                };
                let outcome = self
                    .retry(
                        self.config.forward_retry,
                        async |schedule: &RetrySchedule| {
                            let answer =
                                self.call(&self.config.inventory, &request, schedule).await;
                            match answer {
                                Ok(
                                    InventoryResponse::Reserved { .. }
                                    | InventoryResponse::Committed,
                                ) => Next::Finished(StepOutcome::Done { token: None }),
                                Ok(InventoryResponse::Refused {
                                    reason: Refusal::Overloaded,
                                }) => Next::Retry("overloaded"),
                                Ok(InventoryResponse::Refused { reason }) => {
                                    Next::Finished(failed(reason.kind()))
                                }
                                Ok(_) => Next::Finished(failed("protocol")),
                                Err(error) if error.is_transient() => Next::Retry(error.kind()),
                                Err(error) => Next::Finished(failed(error.kind())),
                            }
                        },
                    )
                    .await;
                Ok(outcome.unwrap_or_else(failed))
            }
            Command::AcquireLease { axis } => {
                let outcome = self
                    .retry(
                        self.config.forward_retry,
                        async |schedule: &RetrySchedule| match self
                            .acquire(order, axis, schedule)
                            .await
                        {
                            Ok(token) => Next::Finished(StepOutcome::Done { token: Some(token) }),
                            Err(next) => next,
                        },
                    )
                    .await;
                Ok(outcome.unwrap_or_else(failed))
            }
            Command::Move {
                axis,
                target_rad,
                token,
            } => self.pivot(order, axis, *target_rad, *token).await,
            Command::Commit => {
                let request = InventoryRequest::Commit { saga };
                self.retry(self.config.must_retry, async |schedule: &RetrySchedule| {
                    match self.call(&self.config.inventory, &request, schedule).await {
                        Ok(InventoryResponse::Committed) => {
                            Next::Finished(StepOutcome::Done { token: None })
                        }
                        Ok(InventoryResponse::Refused {
                            reason: Refusal::Overloaded,
                        }) => Next::Retry("overloaded"),
                        // Insufficient stock after expiry, or a reservation the inventory no
                        // longer holds: the pieces cannot be consumed.
                        Ok(InventoryResponse::Refused { .. }) => {
                            Next::Finished(StepOutcome::Shortfall)
                        }
                        Ok(_) => Next::Retry("protocol"),
                        Err(error) => Next::Retry(error.kind()),
                    }
                })
                .await
                .map_err(|_| Unavailable)
            }
            Command::ReleaseLease { axis, token } => self.release_lease(order, axis, *token).await,
            Command::CompensateLease { axis } => self.release_lease(order, axis, None).await,
            Command::CompensateReserve => {
                let request = InventoryRequest::Release { saga };
                self.retry(self.config.must_retry, async |schedule: &RetrySchedule| {
                    match self.call(&self.config.inventory, &request, schedule).await {
                        Ok(InventoryResponse::Released) => {
                            Next::Finished(StepOutcome::Done { token: None })
                        }
                        Ok(InventoryResponse::Refused {
                            reason: Refusal::AlreadyCommitted,
                        }) => {
                            // Impossible before the pivot; the stock is consumed either way.
                            tracing::warn!(
                                event = "saga_compensation_refused",
                                order = order.order_id.0,
                                step = "reserve_part",
                            );
                            Next::Finished(StepOutcome::Done { token: None })
                        }
                        Ok(_) => Next::Retry("refused"),
                        Err(error) => Next::Retry(error.kind()),
                    }
                })
                .await
                .map_err(|_| Unavailable)
            }
        }
    }

    /// Runs `attempt` under `policy` until it finishes; `Err(last error)` when retries run out.
    async fn retry<O>(
        &self,
        policy: RetryPolicy,
        mut attempt: impl AsyncFnMut(&RetrySchedule) -> Next<O>,
    ) -> Result<O, &'static str> {
        let mut schedule = RetrySchedule::new(policy, self.now());
        let mut last: &'static str = "none";
        loop {
            if schedule.begin_attempt(self.now()).is_err() {
                return Err(last);
            }
            loop {
                match attempt(&schedule).await {
                    Next::Finished(outcome) => return Ok(outcome),
                    Next::Retry(error) => {
                        last = error;
                        break;
                    }
                    Next::Wait(reason) => {
                        last = reason;
                        let wait = self.config.lease_wait_interval;
                        if schedule.remaining(self.now()) <= wait {
                            return Err(last);
                        }
                        tokio::time::sleep(wait).await;
                    }
                }
            }
            if !self.back_off(&mut schedule).await {
                return Err(last);
            }
        }
    }

    /// One lease acquisition for the order's holder: the token, or what to do next.
    async fn acquire(
        &self,
        order: &OrderSpec,
        axis: &AxisName,
        schedule: &RetrySchedule,
    ) -> Result<u64, Next<StepOutcome>> {
        let request = MotionRequest::AcquireLease {
            axis: axis.clone(),
            holder: lease_holder(order),
            ttl_ms: self.config.lease_ttl_ms,
        };
        match self.call(self.motion(axis), &request, schedule).await {
            Ok(MotionResponse::Lease { token, .. }) => Ok(token),
            Ok(MotionResponse::Rejected {
                reason: reason @ RejectReason::LeaseHeld { .. },
            }) => Err(Next::Wait(reason.kind())),
            Ok(MotionResponse::Rejected {
                reason: reason @ RejectReason::Overloaded,
            }) => Err(Next::Retry(reason.kind())),
            Ok(MotionResponse::Rejected { reason }) => Err(Next::Finished(failed(reason.kind()))),
            Ok(_) => Err(Next::Finished(failed("protocol"))),
            Err(error) if error.is_transient() => Err(Next::Retry(error.kind())),
            Err(error) => Err(Next::Finished(failed(error.kind()))),
        }
    }

    /// The pivot (see the module docs).
    async fn pivot(
        &self,
        order: &OrderSpec,
        axis: &AxisName,
        target_rad: f64,
        recorded_token: Option<u64>,
    ) -> Result<StepOutcome, Unavailable> {
        let endpoint = self.motion(axis);
        let mut token = recorded_token;
        let mut reacquired = false;
        // Rounds of `must_retry` for unknown outcomes; fenced refusals count against
        // `forward_retry` (getting the lease back), after which the move provably failed.
        let mut schedule = RetrySchedule::new(self.config.must_retry, self.now());
        let mut lease_schedule = RetrySchedule::new(self.config.forward_retry, self.now());
        // Polls of an acknowledged move are not attempts, but end at the round's deadline.
        let mut polling = false;
        loop {
            let Some(current) = token else {
                // No token: get the lease (back) first.
                if lease_schedule.begin_attempt(self.now()).is_err() {
                    return Ok(failed("lease_lost"));
                }
                match self.acquire(order, axis, &lease_schedule).await {
                    Ok(new) => {
                        token = Some(new);
                        reacquired = true;
                        continue;
                    }
                    Err(Next::Finished(StepOutcome::Failed { reason })) => {
                        // A refusal of the lease: the move was not recorded (it was fenced).
                        return Ok(StepOutcome::Failed { reason });
                    }
                    Err(_) => {
                        if !self.back_off(&mut lease_schedule).await {
                            return Ok(failed("lease_lost"));
                        }
                        continue;
                    }
                }
            };
            if polling {
                if schedule.remaining(self.now()).is_zero() {
                    return Err(Unavailable);
                }
            } else if schedule.begin_attempt(self.now()).is_err() {
                return Err(Unavailable);
            }
            polling = false;
            let request = MotionRequest::Move {
                request_id: order.order_id.0,
                axis: axis.clone(),
                target_rad,
                token: current,
            };
            let answer: Result<MotionResponse, RpcError> =
                self.call(endpoint, &request, &schedule).await;
            let retry = match answer {
                Ok(MotionResponse::Completed { .. }) => {
                    let token = reacquired.then_some(current);
                    return Ok(StepOutcome::Done { token });
                }
                Ok(MotionResponse::Aborted { reason }) => return Ok(failed(reason.kind())),
                Ok(MotionResponse::Interrupted) => return Ok(failed("interrupted")),
                Ok(MotionResponse::Accepted | MotionResponse::InProgress) => {
                    // Recorded and running: poll (not an attempt).
                    tokio::time::sleep(self.config.move_poll_interval).await;
                    polling = true;
                    continue;
                }
                Ok(
                    MotionResponse::StaleToken { .. }
                    | MotionResponse::Rejected {
                        reason: RejectReason::LeaseNotHeld | RejectReason::TokenNotIssued,
                    },
                ) => {
                    // Fenced: not recorded. Get the lease back and send the move again.
                    token = None;
                    continue;
                }
                Ok(MotionResponse::Rejected {
                    reason:
                        RejectReason::NotEnabled {
                            state: AxisState::Fault | AxisState::FaultReactionActive,
                        },
                }) => {
                    // The drive faulted (following error, over-temperature, ...): the move
                    // never started, and only an operator's fault reset can enable the axis
                    // again. Failing the pivot here is safe, and the saga compensates.
                    return Ok(failed("axis_faulted"));
                }
                Ok(MotionResponse::Rejected {
                    reason: RejectReason::NotEnabled { .. },
                }) => {
                    let enable = MotionRequest::Enable { axis: axis.clone() };
                    let answer: Result<MotionResponse, RpcError> =
                        self.call(endpoint, &enable, &schedule).await;
                    if let Ok(MotionResponse::Rejected {
                        reason: RejectReason::Refused { .. },
                    }) = answer
                    {
                        // The drive's supervisor will not enable the axis (outside its limits,
                        // a fault reaction under way): the move never started, and asking
                        // again would hold the lease for nothing. Fail the pivot; compensate.
                        return Ok(failed("enable_refused"));
                    }
                    "not_enabled"
                }
                Ok(MotionResponse::Rejected {
                    reason: reason @ (RejectReason::Busy | RejectReason::Overloaded),
                }) => reason.kind(),
                Ok(MotionResponse::Rejected { reason }) => return Ok(failed(reason.kind())),
                Ok(_) => "protocol",
                // Unknown outcome: the same request id again is safe.
                Err(error) => error.kind(),
            };
            tracing::debug!(
                event = "saga_move_retry",
                order = order.order_id.0,
                error = retry,
                attempt = schedule.attempts_made(),
            );
            if !self.back_off(&mut schedule).await {
                return Err(Unavailable);
            }
        }
    }

    /// Releases the order's lease: with the recorded token (after the pivot), or by holder
    /// (`None`, compensation): take the lease as its holder, which renews a live one with its
    /// current token, and give it back. Done whenever the order holds no lease any more.
    async fn release_lease(
        &self,
        order: &OrderSpec,
        axis: &AxisName,
        recorded_token: Option<u64>,
    ) -> Result<StepOutcome, Unavailable> {
        let endpoint = self.motion(axis);
        self.retry(self.config.must_retry, async |schedule: &RetrySchedule| {
            let token = match recorded_token {
                Some(token) => token,
                None => match self.acquire(order, axis, schedule).await {
                    Ok(token) => token,
                    // Held by someone else, or refused: this order holds nothing.
                    Err(Next::Wait(_)) | Err(Next::Finished(_)) => {
                        return Next::Finished(StepOutcome::Done { token: None });
                    }
                    Err(Next::Retry(error)) => return Next::Retry(error),
                },
            };
            let request = MotionRequest::ReleaseLease {
                axis: axis.clone(),
                token,
            };
            match self.call(endpoint, &request, schedule).await {
                Ok(
                    MotionResponse::Released
                    | MotionResponse::StaleToken { .. }
                    | MotionResponse::Rejected { .. },
                ) => Next::Finished(StepOutcome::Done { token: None }),
                Ok(_) => Next::Retry("protocol"),
                Err(error) => Next::Retry(error.kind()),
            }
        })
        .await
        .map_err(|_| Unavailable)
    }
}

fn failed(reason: &str) -> StepOutcome {
    StepOutcome::Failed {
        reason: reason.to_owned(),
    }
}
