//! The orders edge's translation between HTTP (as the gateway forwards it) and the orders
//! service's RPC protocol.
//!
//! Owns the `/orders` routes: `POST /orders` with `{order_id, part, quantity, axis, target_rad}`
//! → `PlaceOrder` → 202 `{order_id, duplicate}`; `GET /orders/{id}` → `OrderStatus` → 200
//! `{order_id, phase, step, owner, events, shortfall}`. Refusals: 400 naming the field for a
//! malformed order or an axis the service cannot reach, 404 for an unknown order, 409 for an
//! order id already used for a different order, 503 with `Retry-After` when the service is
//! unavailable or overloaded. It does not own the call (the shell) or the order's meaning
//! (`orders`). Pure, tested without a runtime.
//!
//! The order id is the idempotency key of the whole saga: a re-sent `POST` of the same order
//! (a gateway retry, a client re-send) is answered 202 with `duplicate: true`, never a second
//! saga. The `Idempotency-Key` header is therefore not needed here, but the gateway only
//! retries requests that carry one.

use super::reply::{Body, Plan, invalid_field, method_not_allowed, no_such_path};
use crate::gateway::{HttpMethod, UpstreamRequest, UpstreamResponse};
use crate::inventory::PartId;
use crate::inventory::protocol::{PART_NAME_LENGTH_MAX, QUANTITY_MAX};
use crate::motion::AxisName;
use crate::motion::protocol::AXIS_NAME_LENGTH_MAX;
use crate::orders::{OrderId, OrderRefusal, OrderSpec, OrdersRequest, OrdersResponse};

/// The route's path prefix.
pub const PREFIX: &str = "/orders";

/// The native request for `request`, or the answer when there is none to make.
pub fn plan(request: &UpstreamRequest) -> Plan<OrdersRequest> {
    let Some(segments) = super::reply::segments(&request.path, PREFIX) else {
        return Plan::Answer(no_such_path(&request.path));
    };
    let method = request.method;
    let planned = match (segments.as_slice(), method) {
        ([], HttpMethod::Post) => place(request).map(OrdersRequest::PlaceOrder),
        ([id], HttpMethod::Get) => match id.parse::<u64>() {
            Ok(id) => Ok(OrdersRequest::OrderStatus {
                order_id: OrderId(id),
            }),
            Err(_) => Err(invalid_field("order_id", "must be a non-negative integer")),
        },
        ([] | [_], _) => Err(method_not_allowed(method.as_str(), &request.path)),
        _ => Err(no_such_path(&request.path)),
    };
    match planned {
        Ok(native) => Plan::Call(native),
        Err(answer) => Plan::Answer(answer),
    }
}

/// The order in a `POST /orders` body, every field checked here so a refusal names it.
fn place(request: &UpstreamRequest) -> Result<OrderSpec, UpstreamResponse> {
    let body = Body::parse(&request.body_json)?;
    Ok(OrderSpec {
        order_id: OrderId(body.u64("order_id")?),
        part: PartId::new(body.name("part", PART_NAME_LENGTH_MAX)?),
        quantity: body.u32_in("quantity", 1, QUANTITY_MAX)?,
        axis: AxisName::new(body.name("axis", AXIS_NAME_LENGTH_MAX)?),
        target_rad: body.finite_f64("target_rad")?,
    })
}

/// The HTTP answer to the native `answer` to `native`.
pub fn respond(
    native: &OrdersRequest,
    answer: OrdersResponse,
    retry_after_s: u32,
) -> UpstreamResponse {
    let order_id = match native {
        OrdersRequest::PlaceOrder(spec) => spec.order_id,
        OrdersRequest::OrderStatus { order_id } => *order_id,
    };
    match answer {
        OrdersResponse::Accepted { duplicate } => UpstreamResponse::json(
            202,
            &serde_json::json!({ "order_id": order_id.0, "duplicate": duplicate }),
        ),
        OrdersResponse::Status(view) => UpstreamResponse::json(
            200,
            &serde_json::json!({
                "order_id": order_id.0,
                "phase": view.phase,
                "step": view.step,
                "owner": view.owner,
                "events": view.events,
                "shortfall": view.shortfall,
            }),
        ),
        OrdersResponse::Refused { reason } => refused(order_id, &reason, retry_after_s),
    }
}

fn refused(order_id: OrderId, reason: &OrderRefusal, retry_after_s: u32) -> UpstreamResponse {
    match reason {
        OrderRefusal::UnknownAxis => {
            invalid_field("axis", "not an axis the orders service can move")
        }
        // Every field the service checks was checked by `place` already; this is a disagreement
        // about limits, so no single field can be named with certainty.
        OrderRefusal::Invalid => {
            invalid_field("order", "the orders service refused the order as invalid")
        }
        OrderRefusal::OrderIdReused => UpstreamResponse::error(
            409,
            "order_id_reused",
            &format!("order {order_id} was placed before with different contents"),
        ),
        OrderRefusal::UnknownOrder => {
            UpstreamResponse::error(404, "unknown_order", &format!("no order {order_id}"))
        }
        OrderRefusal::Unavailable => super::reply::unavailable(
            "unavailable",
            "the orders service cannot reach its journal; send the same order again",
            retry_after_s,
        ),
        OrderRefusal::Overloaded => super::reply::unavailable(
            "overloaded",
            "the orders service is busy; send the same order again",
            retry_after_s,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::Role;
    use crate::orders::SagaView;

    fn request(method: HttpMethod, path: &str, body_json: &str) -> UpstreamRequest {
        UpstreamRequest {
            route: "orders".into(),
            method,
            path: path.into(),
            body_json: body_json.into(),
            idempotency_key: Some("k".into()),
            consumer: "alice".into(),
            role: Role::Operator,
        }
    }

    fn answer(plan: Plan<OrdersRequest>) -> (u16, serde_json::Value) {
        match plan {
            Plan::Answer(response) => (
                response.status,
                serde_json::from_str(&response.body_json).unwrap(),
            ),
            Plan::Call(native) => panic!("expected an answer, got the call {native:?}"),
        }
    }

    const ORDER: &str = r#"{"order_id":7,"part":"bolt","quantity":2,"axis":"x","target_rad":1.25}"#;

    #[test]
    fn requests_become_native_calls_or_named_refusals() {
        // Goal: every route and every malformed input has its answer, and a refusal names the
        // field. Method: a table of requests, checked against the plan.
        let place = plan(&request(HttpMethod::Post, "/orders", ORDER));
        assert_eq!(
            place,
            Plan::Call(OrdersRequest::PlaceOrder(OrderSpec {
                order_id: OrderId(7),
                part: PartId::new("bolt"),
                quantity: 2,
                axis: AxisName::new("x"),
                target_rad: 1.25,
            }))
        );
        assert_eq!(
            plan(&request(HttpMethod::Get, "/orders/7", "null")),
            Plan::Call(OrdersRequest::OrderStatus {
                order_id: OrderId(7)
            })
        );
        let bad_bodies = [
            (
                r#"{"part":"bolt","quantity":2,"axis":"x","target_rad":1}"#,
                "order_id",
            ),
            (
                r#"{"order_id":7,"part":"","quantity":2,"axis":"x","target_rad":1}"#,
                "part",
            ),
            (
                r#"{"order_id":7,"part":"bolt","quantity":0,"axis":"x","target_rad":1}"#,
                "quantity",
            ),
            (
                r#"{"order_id":7,"part":"bolt","quantity":2,"axis":5,"target_rad":1}"#,
                "axis",
            ),
            (
                r#"{"order_id":7,"part":"bolt","quantity":2,"axis":"x","target_rad":"1"}"#,
                "target_rad",
            ),
            ("null", "body"),
        ];
        for (body, field) in bad_bodies {
            let (status, json) = answer(plan(&request(HttpMethod::Post, "/orders", body)));
            assert_eq!(
                (status, json["field"].as_str()),
                (400, Some(field)),
                "{body}"
            );
        }
        let (status, json) = answer(plan(&request(HttpMethod::Get, "/orders/x7", "null")));
        assert_eq!((status, json["field"].as_str()), (400, Some("order_id")));
        assert_eq!(
            answer(plan(&request(HttpMethod::Delete, "/orders/7", "null"))).0,
            405
        );
        assert_eq!(
            answer(plan(&request(HttpMethod::Get, "/orders", "null"))).0,
            405
        );
        assert_eq!(
            answer(plan(&request(HttpMethod::Get, "/orders/7/x", "null"))).0,
            404
        );
        assert_eq!(
            answer(plan(&request(HttpMethod::Get, "/axes/x", "null"))).0,
            404
        );
    }

    #[test]
    fn native_answers_become_statuses() {
        // Goal: each native answer maps to its documented status and body; 503s carry
        // Retry-After (oracle GW2). Method: feed each `OrdersResponse`.
        let place = OrdersRequest::PlaceOrder(OrderSpec {
            order_id: OrderId(7),
            part: PartId::new("bolt"),
            quantity: 2,
            axis: AxisName::new("x"),
            target_rad: 1.0,
        });
        let status = OrdersRequest::OrderStatus {
            order_id: OrderId(7),
        };
        let json = |response: &UpstreamResponse| -> serde_json::Value {
            serde_json::from_str(&response.body_json).unwrap()
        };
        let accepted = respond(&place, OrdersResponse::Accepted { duplicate: true }, 1);
        assert_eq!(accepted.status, 202);
        assert_eq!(
            json(&accepted),
            serde_json::json!({"order_id": 7, "duplicate": true})
        );
        let view = SagaView {
            phase: "completed".into(),
            step: None,
            owner: "orders-1".into(),
            events: 9,
            shortfall: false,
        };
        let shown = respond(&status, OrdersResponse::Status(view), 1);
        assert_eq!(shown.status, 200);
        assert_eq!(json(&shown)["phase"], "completed");
        assert_eq!(json(&shown)["order_id"], 7);
        let refusal = |reason| respond(&place, OrdersResponse::Refused { reason }, 3);
        assert_eq!(json(&refusal(OrderRefusal::UnknownAxis))["field"], "axis");
        assert_eq!(refusal(OrderRefusal::Invalid).status, 400);
        assert_eq!(refusal(OrderRefusal::OrderIdReused).status, 409);
        assert_eq!(refusal(OrderRefusal::UnknownOrder).status, 404);
        for reason in [OrderRefusal::Unavailable, OrderRefusal::Overloaded] {
            let answer = refusal(reason);
            assert_eq!((answer.status, answer.retry_after_s), (503, Some(3)));
        }
    }
}
