//! The axes edge's translation between HTTP (as the gateway forwards it) and the motion
//! service's RPC protocol.
//!
//! Owns the `/axes` routes and the operator move's steps:
//! - `GET /axes/{axis}` → `Status` → 200 `{axis, state, position_rad, setpoint_rad, moving,
//!   active_request_id, lease: {holder, token, expires_in_ms} | null, token_issued_max,
//!   fault_code}`; 404 for an unknown axis.
//! - `POST /axes/{axis}/move` with `{target_rad}` and an `Idempotency-Key` header (400 naming
//!   `Idempotency-Key` without one, as the IETF idempotency-key draft advises): the shell takes
//!   the axis lease as holder `operator:<consumer>#<request id>` (`lease_step`; one holder per
//!   move, so two moves of one consumer never share a lease), sends `Move` under its
//!   fencing token with the request id `operator_move_request_id(consumer, key)`, re-sends the
//!   same `Move` until its outcome is known (`move_step`), then releases the lease. Outcomes:
//!   200 `{axis, request_id, outcome: "completed" | "aborted" | "interrupted", ...}`; 400
//!   naming `target_rad` for a target that is not finite or outside the soft limits; 404
//!   unknown axis; 409 `axis_leased` (another holder, with `holder` and `expires_in_ms`),
//!   `axis_busy`, `axis_not_enabled`, `lease_lost`, `drive_refused`; 422 `idempotency_key_reused`
//!   (the same key with another target); 503 with `Retry-After` when the motion service is
//!   overloaded.
//!
//! It does not own the calls, the polling or the release (the shell), nor leases and moves
//! (`motion`). Pure, tested without a runtime.
//!
//! Request ids of operator moves: `OPERATOR_MOVE_ID_BIT | fnv1a64(consumer, 0, key) mod 2^48`.
//! The same key from the same consumer is the same move, so a retried `POST` (the gateway's, or
//! the client's after a 504) never moves twice: the motion service answers the recorded outcome.
//! Bit 49 keeps them apart from order ids (the saga's move uses the order id; the HTTP workload's
//! order ids set bit 48 and stay below 2^49) and from the plain move client's
//! `client_id << 32 | index` while its client ids stay below 2^16. Two different keys collide
//! with probability 2^-48 per pair; a collision is answered 422, never a wrong move.

use super::reply::{Body, Plan, checked_name, invalid_field, method_not_allowed, no_such_path};
use crate::gateway::{HttpMethod, UpstreamRequest, UpstreamResponse};
use crate::motion::AxisName;
use crate::motion::protocol::{
    AXIS_NAME_LENGTH_MAX, AxisStatus, HOLDER_LENGTH_MAX, MotionResponse, RejectReason,
};

/// The route's path prefix.
pub const PREFIX: &str = "/axes";

/// Set in every operator move's request id (see the module docs).
pub const OPERATOR_MOVE_ID_BIT: u64 = 1 << 49;

/// The prefix of an operator move's lease holder name: `operator:<consumer>#<request id>`.
/// One holder per move, not per consumer: two moves of one consumer must not share a lease,
/// or the first to finish would release it under the other. A re-sent move (same
/// `Idempotency-Key`, same request id) is the same holder and renews its own lease.
pub const OPERATOR_HOLDER_PREFIX: &str = "operator:";

/// What the shell does for a request.
#[derive(Clone, Debug, PartialEq)]
pub enum AxesCall {
    /// Read the axis's status.
    Status { axis: AxisName },
    /// Lease the axis as `holder`, move it to `target_rad` as move `request_id`, release.
    Move {
        axis: AxisName,
        target_rad: f64,
        request_id: u64,
        holder: String,
    },
    /// Reset the drive's fault (CiA 402 Fault → Switch on disabled): an operator's
    /// acknowledgement that the cause is gone. The next move enables the axis again.
    ResetFault { axis: AxisName },
}

impl AxesCall {
    pub fn axis(&self) -> &AxisName {
        match self {
            AxesCall::Status { axis }
            | AxesCall::Move { axis, .. }
            | AxesCall::ResetFault { axis } => axis,
        }
    }
}

/// The call for `request`, or the answer when there is none to make.
pub fn plan(request: &UpstreamRequest) -> Plan<AxesCall> {
    let Some(segments) = super::reply::segments(&request.path, PREFIX) else {
        return Plan::Answer(no_such_path(&request.path));
    };
    let planned = match (segments.as_slice(), request.method) {
        ([axis], HttpMethod::Get) => axis_name(axis).map(|axis| AxesCall::Status { axis }),
        ([axis, "move"], HttpMethod::Post) => operator_move(request, axis),
        ([axis, "reset"], HttpMethod::Post) => {
            axis_name(axis).map(|axis| AxesCall::ResetFault { axis })
        }
        ([_] | [_, "move" | "reset"], method) => {
            Err(method_not_allowed(method.as_str(), &request.path))
        }
        _ => Err(no_such_path(&request.path)),
    };
    match planned {
        Ok(call) => Plan::Call(call),
        Err(answer) => Plan::Answer(answer),
    }
}

fn axis_name(segment: &str) -> Result<AxisName, UpstreamResponse> {
    checked_name(segment, AXIS_NAME_LENGTH_MAX)
        .map(AxisName::new)
        .ok_or_else(|| {
            invalid_field(
                "axis",
                &format!("an axis name has 1..={AXIS_NAME_LENGTH_MAX} bytes"),
            )
        })
}

fn operator_move(request: &UpstreamRequest, axis: &str) -> Result<AxesCall, UpstreamResponse> {
    let axis = axis_name(axis)?;
    let Some(key) = request.idempotency_key.as_deref() else {
        return Err(invalid_field(
            "Idempotency-Key",
            "a move must carry an Idempotency-Key: it makes a re-sent move the same move",
        ));
    };
    let target_rad = Body::parse(&request.body_json)?.finite_f64("target_rad")?;
    let request_id = operator_move_request_id(&request.consumer, key);
    let holder = format!(
        "{OPERATOR_HOLDER_PREFIX}{}#{request_id:x}",
        request.consumer
    );
    if holder.len() > HOLDER_LENGTH_MAX {
        return Err(UpstreamResponse::error(
            403,
            "consumer_name_too_long",
            &format!(
                "a lease holder name (`operator:<consumer>#<move>`) has at most \
                 {HOLDER_LENGTH_MAX} bytes"
            ),
        ));
    }
    Ok(AxesCall::Move {
        axis,
        target_rad,
        request_id,
        holder,
    })
}

/// The request id of `consumer`'s move under `idempotency_key` (see the module docs).
pub fn operator_move_request_id(consumer: &str, idempotency_key: &str) -> u64 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let bytes = consumer
        .bytes()
        .chain(std::iter::once(0))
        .chain(idempotency_key.bytes());
    let hash = bytes.fold(FNV_OFFSET, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
    });
    OPERATOR_MOVE_ID_BIT | (hash & ((1 << 48) - 1))
}

/// The HTTP answer to a `Status` request.
pub fn status_response(
    axis: &AxisName,
    answer: MotionResponse,
    retry_after_s: u32,
) -> UpstreamResponse {
    match answer {
        MotionResponse::Status(status) => UpstreamResponse::json(200, &status_json(axis, &status)),
        other => refusal(axis, other, retry_after_s),
    }
}

/// After `ResetFault`: 200 when the drive took the reset (also when there was no fault: a
/// reset is idempotent), 409 when its supervisor refused (a fault reaction still under way).
pub fn reset_response(
    axis: &AxisName,
    answer: MotionResponse,
    retry_after_s: u32,
) -> UpstreamResponse {
    match answer {
        MotionResponse::Done => UpstreamResponse::json(
            200,
            &serde_json::json!({ "axis": axis.as_str(), "reset": true }),
        ),
        other => refusal(axis, other, retry_after_s),
    }
}

fn status_json(axis: &AxisName, status: &AxisStatus) -> serde_json::Value {
    serde_json::json!({
        "axis": axis.as_str(),
        "state": format!("{:?}", status.state),
        "position_rad": status.position_rad,
        "setpoint_rad": status.setpoint_rad,
        "moving": status.moving,
        "active_request_id": status.active_request_id,
        "lease": status.lease.as_ref().map(|lease| serde_json::json!({
            "holder": lease.holder,
            "token": lease.token,
            "expires_in_ms": lease.expires_in_ms,
        })),
        "token_issued_max": status.token_issued_max,
        "fault_code": status.fault_code,
    })
}

/// After `AcquireLease`: the token to move under, or the answer.
#[derive(Clone, Debug, PartialEq)]
pub enum LeaseStep {
    Granted { token: u64 },
    Answer(UpstreamResponse),
}

/// The next step after the motion service answered `AcquireLease`.
pub fn lease_step(axis: &AxisName, answer: MotionResponse, retry_after_s: u32) -> LeaseStep {
    match answer {
        MotionResponse::Lease { token, .. } => LeaseStep::Granted { token },
        other => LeaseStep::Answer(refusal(axis, other, retry_after_s)),
    }
}

/// After a `Move` (first or re-sent): wait and re-send, or the move's answer (and then the
/// lease is released).
#[derive(Clone, Debug, PartialEq)]
pub enum MoveStep {
    /// The move is recorded and running: re-send the same `Move` after the poll interval.
    Pending,
    /// The move ended, or never started: answer this and release the lease.
    Done(UpstreamResponse),
}

/// The next step after the motion service answered `Move` `request_id`.
pub fn move_step(
    axis: &AxisName,
    request_id: u64,
    answer: MotionResponse,
    retry_after_s: u32,
) -> MoveStep {
    let outcome = |outcome: &str, extra: serde_json::Value| {
        let mut body = serde_json::json!({
            "axis": axis.as_str(),
            "request_id": request_id,
            "outcome": outcome,
        });
        if let (Some(body), serde_json::Value::Object(extra)) = (body.as_object_mut(), extra) {
            body.extend(extra);
        }
        MoveStep::Done(UpstreamResponse::json(200, &body))
    };
    match answer {
        MotionResponse::Accepted | MotionResponse::InProgress => MoveStep::Pending,
        MotionResponse::Completed { final_position_rad } => outcome(
            "completed",
            serde_json::json!({ "final_position_rad": final_position_rad }),
        ),
        MotionResponse::Aborted { reason } => {
            outcome("aborted", serde_json::json!({ "reason": reason.kind() }))
        }
        MotionResponse::Interrupted => outcome("interrupted", serde_json::json!({})),
        other => MoveStep::Done(refusal(axis, other, retry_after_s)),
    }
}

/// Every answer that is not the one the step expected.
pub(super) fn refusal(
    axis: &AxisName,
    answer: MotionResponse,
    retry_after_s: u32,
) -> UpstreamResponse {
    let conflict = |code: &str, detail: &str| UpstreamResponse::error(409, code, detail);
    let reason = match answer {
        MotionResponse::Rejected { reason } => reason,
        MotionResponse::StaleToken { .. } => {
            return conflict("lease_lost", "another holder took the axis meanwhile");
        }
        other => {
            return UpstreamResponse::error(
                502,
                "bad_backend",
                &format!("unexpected answer from the motion service: {other:?}"),
            );
        }
    };
    match reason {
        RejectReason::UnknownAxis => {
            UpstreamResponse::error(404, "unknown_axis", &format!("no axis {axis}"))
        }
        RejectReason::TargetNotFinite => invalid_field("target_rad", "must be finite"),
        RejectReason::OutsideSoftLimits {
            position_rad_min,
            position_rad_max,
        } => invalid_field(
            "target_rad",
            &format!("outside the soft limits {position_rad_min}..={position_rad_max} rad"),
        ),
        RejectReason::LeaseHeld {
            holder,
            expires_in_ms,
        } => UpstreamResponse::json(
            409,
            &serde_json::json!({
                "error": "axis_leased",
                "detail": "another holder has the axis lease",
                "holder": holder,
                "expires_in_ms": expires_in_ms,
            }),
        ),
        RejectReason::Busy => conflict("axis_busy", "another move is running on the axis"),
        RejectReason::NotEnabled { state } => conflict(
            "axis_not_enabled",
            &format!("moves start only when the axis is enabled; it is {state:?}"),
        ),
        RejectReason::LeaseNotHeld | RejectReason::TokenNotIssued => {
            conflict("lease_lost", "the lease expired or was released meanwhile")
        }
        RejectReason::Refused { refusal } => {
            conflict("drive_refused", &format!("the drive refused: {refusal:?}"))
        }
        RejectReason::RequestIdReused => UpstreamResponse::error(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was used for a different move",
        ),
        RejectReason::Overloaded => super::reply::unavailable(
            "overloaded",
            "the motion service is busy; send the same move again",
            retry_after_s,
        ),
        // The adapter's own configuration does not fit the motion service's.
        reason @ (RejectReason::HolderInvalid | RejectReason::TtlOutOfRange { .. }) => {
            UpstreamResponse::error(
                500,
                "edge_misconfigured",
                &format!(
                    "the motion service refused the edge's lease: {}",
                    reason.kind()
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::Role;
    use crate::motion::protocol::{AbortReason, AxisState, LeaseView};

    fn request(method: HttpMethod, path: &str, body: &str, key: Option<&str>) -> UpstreamRequest {
        UpstreamRequest {
            route: "axes".into(),
            method,
            path: path.into(),
            body_json: body.into(),
            idempotency_key: key.map(str::to_owned),
            consumer: "alice".into(),
            role: Role::Operator,
        }
    }

    fn answered(plan: Plan<AxesCall>) -> (u16, serde_json::Value) {
        match plan {
            Plan::Answer(response) => (
                response.status,
                serde_json::from_str(&response.body_json).unwrap(),
            ),
            Plan::Call(call) => panic!("expected an answer, got {call:?}"),
        }
    }

    fn json(response: &UpstreamResponse) -> serde_json::Value {
        serde_json::from_str(&response.body_json).unwrap()
    }

    #[test]
    fn routes_plan_reads_and_idempotent_operator_moves() {
        // Goal: status and move requests become calls; a move without an Idempotency-Key or
        // with a bad target is refused naming the field; the same key is the same move id,
        // another key or consumer another, all with bit 49 set and below 2^50. Method: a table.
        let x = AxisName::new("x");
        assert_eq!(
            plan(&request(HttpMethod::Get, "/axes/x", "null", None)),
            Plan::Call(AxesCall::Status { axis: x.clone() })
        );
        let moved = plan(&request(
            HttpMethod::Post,
            "/axes/x/move",
            r#"{"target_rad":0.5}"#,
            Some("k1"),
        ));
        let request_id = operator_move_request_id("alice", "k1");
        assert_eq!(
            moved,
            Plan::Call(AxesCall::Move {
                axis: x,
                target_rad: 0.5,
                request_id,
                holder: format!("operator:alice#{request_id:x}"),
            })
        );
        // Another move of the same consumer is another holder: it cannot renew, and then
        // release, the lease of a move still running.
        let Plan::Call(AxesCall::Move { holder: other, .. }) = plan(&request(
            HttpMethod::Post,
            "/axes/x/move",
            r#"{"target_rad":0.5}"#,
            Some("k2"),
        )) else {
            panic!("a move plans a call")
        };
        assert_ne!(other, format!("operator:alice#{request_id:x}"));
        assert!(other.starts_with("operator:alice#"), "{other}");
        assert_eq!(request_id, operator_move_request_id("alice", "k1"));
        assert_ne!(request_id, operator_move_request_id("alice", "k2"));
        assert_ne!(request_id, operator_move_request_id("alicek", "1"));
        for id in [request_id, operator_move_request_id("", "")] {
            assert!(id & OPERATOR_MOVE_ID_BIT != 0 && id < 1 << 50, "{id:#x}");
        }

        let (status, body) = answered(plan(&request(
            HttpMethod::Post,
            "/axes/x/move",
            r#"{"target_rad":0.5}"#,
            None,
        )));
        assert_eq!(
            (status, body["field"].as_str()),
            (400, Some("Idempotency-Key"))
        );
        let (status, body) = answered(plan(&request(
            HttpMethod::Post,
            "/axes/x/move",
            r#"{"target":0.5}"#,
            Some("k"),
        )));
        assert_eq!((status, body["field"].as_str()), (400, Some("target_rad")));
        let long_axis = format!("/axes/{}", "a".repeat(AXIS_NAME_LENGTH_MAX + 1));
        assert_eq!(
            answered(plan(&request(HttpMethod::Get, &long_axis, "null", None))).0,
            400
        );
        assert_eq!(
            answered(plan(&request(HttpMethod::Post, "/axes/x", "{}", Some("k")))).0,
            405
        );
        assert_eq!(
            answered(plan(&request(
                HttpMethod::Get,
                "/axes/x/move",
                "null",
                None
            )))
            .0,
            405
        );
        assert_eq!(
            answered(plan(&request(HttpMethod::Get, "/axes", "null", None))).0,
            404
        );
        assert_eq!(
            answered(plan(&request(HttpMethod::Get, "/axes/x/y", "null", None))).0,
            404
        );
        let mut long_consumer = request(
            HttpMethod::Post,
            "/axes/x/move",
            r#"{"target_rad":0}"#,
            Some("k"),
        );
        long_consumer.consumer = "c".repeat(HOLDER_LENGTH_MAX);
        assert_eq!(answered(plan(&long_consumer)).0, 403);
    }

    #[test]
    fn a_fault_reset_is_a_post_and_maps_the_drives_answer() {
        // Goal: `POST /axes/x/reset` becomes a reset of axis x (any other method is 405); the
        // drive taking it is 200, its supervisor refusing it 409 naming the refusal. Method: a
        // table over `plan` and `reset_response`.
        let x = AxisName::new("x");
        assert_eq!(
            plan(&request(HttpMethod::Post, "/axes/x/reset", "null", None)),
            Plan::Call(AxesCall::ResetFault { axis: x.clone() })
        );
        assert_eq!(
            answered(plan(&request(
                HttpMethod::Get,
                "/axes/x/reset",
                "null",
                None
            )))
            .0,
            405
        );
        let done = reset_response(&x, MotionResponse::Done, 1);
        assert_eq!(
            (done.status, json(&done)["reset"].as_bool()),
            (200, Some(true))
        );
        let refused = reset_response(
            &x,
            MotionResponse::Rejected {
                reason: RejectReason::UnknownAxis,
            },
            1,
        );
        assert_eq!(refused.status, 404);
    }

    #[test]
    fn motion_answers_become_steps_and_statuses() {
        // Goal: each motion answer at each step maps to its documented status: status view,
        // lease granted or refused, move pending, done or refused. Method: a table.
        let x = AxisName::new("x");
        let status = AxisStatus {
            state: AxisState::OperationEnabled,
            position_rad: Some(0.25),
            setpoint_rad: 0.25,
            moving: false,
            active_request_id: None,
            lease: Some(LeaseView {
                holder: "order-7".into(),
                token: 3,
                expires_in_ms: 900,
            }),
            token_issued_max: 3,
            fault_code: None,
        };
        let shown = status_response(&x, MotionResponse::Status(status), 1);
        assert_eq!(shown.status, 200);
        assert_eq!(json(&shown)["state"], "OperationEnabled");
        assert_eq!(json(&shown)["lease"]["holder"], "order-7");
        let unknown = MotionResponse::Rejected {
            reason: RejectReason::UnknownAxis,
        };
        assert_eq!(status_response(&x, unknown.clone(), 1).status, 404);

        assert_eq!(
            lease_step(
                &x,
                MotionResponse::Lease {
                    token: 4,
                    ttl_ms: 10
                },
                1
            ),
            LeaseStep::Granted { token: 4 }
        );
        let held = MotionResponse::Rejected {
            reason: RejectReason::LeaseHeld {
                holder: "order-7".into(),
                expires_in_ms: 500,
            },
        };
        let LeaseStep::Answer(held) = lease_step(&x, held, 1) else {
            panic!("a held lease is an answer")
        };
        assert_eq!(
            (held.status, json(&held)["holder"].clone()),
            (409, "order-7".into())
        );
        let LeaseStep::Answer(misfit) = lease_step(
            &x,
            MotionResponse::Rejected {
                reason: RejectReason::TtlOutOfRange { ttl_ms_max: 1 },
            },
            1,
        ) else {
            panic!("a refused TTL is an answer")
        };
        assert_eq!(misfit.status, 500);

        let step = |answer| move_step(&x, 9, answer, 2);
        assert_eq!(step(MotionResponse::Accepted), MoveStep::Pending);
        assert_eq!(step(MotionResponse::InProgress), MoveStep::Pending);
        let done = |answer| match step(answer) {
            MoveStep::Done(response) => response,
            MoveStep::Pending => panic!("expected an answer"),
        };
        let completed = done(MotionResponse::Completed {
            final_position_rad: 0.5,
        });
        assert_eq!(completed.status, 200);
        assert_eq!(json(&completed)["outcome"], "completed");
        assert_eq!(json(&completed)["final_position_rad"], 0.5);
        assert_eq!(json(&completed)["request_id"], 9);
        let aborted = done(MotionResponse::Aborted {
            reason: AbortReason::Fault { code: 1 },
        });
        assert_eq!(json(&aborted)["reason"], "fault");
        assert_eq!(
            json(&done(MotionResponse::Interrupted))["outcome"],
            "interrupted"
        );
        assert_eq!(
            done(MotionResponse::StaleToken { token_current: 5 }).status,
            409
        );
        let rejected = |reason| done(MotionResponse::Rejected { reason });
        assert_eq!(
            json(&rejected(RejectReason::TargetNotFinite))["field"],
            "target_rad"
        );
        let outside = rejected(RejectReason::OutsideSoftLimits {
            position_rad_min: -3.0,
            position_rad_max: 3.0,
        });
        assert_eq!(
            (outside.status, json(&outside)["field"].clone()),
            (400, "target_rad".into())
        );
        assert_eq!(rejected(RejectReason::Busy).status, 409);
        assert_eq!(rejected(RejectReason::LeaseNotHeld).status, 409);
        assert_eq!(
            rejected(RejectReason::NotEnabled {
                state: AxisState::Fault
            })
            .status,
            409
        );
        assert_eq!(rejected(RejectReason::RequestIdReused).status, 422);
        let busy = rejected(RejectReason::Overloaded);
        assert_eq!((busy.status, busy.retry_after_s), (503, Some(2)));
        assert_eq!(done(MotionResponse::Released).status, 502);
    }
}
