//! The inventory edge's translation between HTTP (as the gateway forwards it) and the
//! inventory's RPC protocol.
//!
//! Owns the `/inventory` routes: `GET /inventory/{part}` → `Stock` → 200 `{part, initial,
//! available, reserved, consumed}`; 404 for an unknown part, 503 with `Retry-After` when the
//! inventory is overloaded. Reservations and commits belong to sagas (the orders service calls
//! the inventory directly) and are not exposed. It does not own the call (the shell) or the
//! stock (`inventory`). Pure, tested without a runtime.

use super::reply::{Plan, checked_name, invalid_field, method_not_allowed, no_such_path};
use crate::gateway::{HttpMethod, UpstreamRequest, UpstreamResponse};
use crate::inventory::protocol::PART_NAME_LENGTH_MAX;
use crate::inventory::{InventoryRequest, InventoryResponse, PartId, Refusal};

/// The route's path prefix.
pub const PREFIX: &str = "/inventory";

/// The native request for `request`, or the answer when there is none to make.
pub fn plan(request: &UpstreamRequest) -> Plan<InventoryRequest> {
    let Some(segments) = super::reply::segments(&request.path, PREFIX) else {
        return Plan::Answer(no_such_path(&request.path));
    };
    match (segments.as_slice(), request.method) {
        ([part], HttpMethod::Get) => match checked_name(part, PART_NAME_LENGTH_MAX) {
            Some(part) => Plan::Call(InventoryRequest::Stock {
                part: PartId::new(part),
            }),
            None => Plan::Answer(invalid_field(
                "part",
                &format!("a part name has 1..={PART_NAME_LENGTH_MAX} bytes"),
            )),
        },
        ([_], method) => Plan::Answer(method_not_allowed(method.as_str(), &request.path)),
        _ => Plan::Answer(no_such_path(&request.path)),
    }
}

/// The HTTP answer to the native `answer` to `native`.
pub fn respond(
    native: &InventoryRequest,
    answer: InventoryResponse,
    retry_after_s: u32,
) -> UpstreamResponse {
    let part = match native {
        InventoryRequest::Stock { part } => part.as_str(),
        other => panic!("the inventory edge only asks for stock, not {other:?}"),
    };
    match answer {
        InventoryResponse::Stock(view) => UpstreamResponse::json(
            200,
            &serde_json::json!({
                "part": part,
                "initial": view.initial,
                "available": view.available,
                "reserved": view.reserved,
                "consumed": view.consumed,
            }),
        ),
        InventoryResponse::Refused {
            reason: Refusal::UnknownPart,
        } => UpstreamResponse::error(404, "unknown_part", &format!("no part {part}")),
        InventoryResponse::Refused {
            reason: Refusal::Overloaded,
        } => super::reply::unavailable(
            "overloaded",
            "the inventory is busy; ask again",
            retry_after_s,
        ),
        other => UpstreamResponse::error(
            502,
            "bad_backend",
            &format!("the inventory answered a stock request with {other:?}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::Role;
    use crate::inventory::StockView;

    fn request(method: HttpMethod, path: &str) -> UpstreamRequest {
        UpstreamRequest {
            route: "inventory".into(),
            method,
            path: path.into(),
            body_json: "null".into(),
            idempotency_key: None,
            consumer: "bob".into(),
            role: Role::Viewer,
        }
    }

    fn status(plan: Plan<InventoryRequest>) -> u16 {
        match plan {
            Plan::Answer(response) => response.status,
            Plan::Call(native) => panic!("expected an answer, got {native:?}"),
        }
    }

    #[test]
    fn stock_reads_translate_both_ways() {
        // Goal: the one route, its refusals, and each native answer's status. Method: a table.
        let stock = InventoryRequest::Stock {
            part: PartId::new("bolt"),
        };
        assert_eq!(
            plan(&request(HttpMethod::Get, "/inventory/bolt")),
            Plan::Call(stock.clone())
        );
        assert_eq!(status(plan(&request(HttpMethod::Get, "/inventory/"))), 400);
        let long = format!("/inventory/{}", "b".repeat(PART_NAME_LENGTH_MAX + 1));
        assert_eq!(status(plan(&request(HttpMethod::Get, &long))), 400);
        assert_eq!(
            status(plan(&request(HttpMethod::Post, "/inventory/bolt"))),
            405
        );
        assert_eq!(status(plan(&request(HttpMethod::Get, "/inventory"))), 404);
        assert_eq!(
            status(plan(&request(HttpMethod::Get, "/inventory/a/b"))),
            404
        );

        let view = StockView {
            initial: 10,
            available: 7,
            reserved: 1,
            consumed: 2,
        };
        let shown = respond(&stock, InventoryResponse::Stock(view), 1);
        assert_eq!(shown.status, 200);
        let json: serde_json::Value = serde_json::from_str(&shown.body_json).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"part": "bolt", "initial": 10, "available": 7, "reserved": 1, "consumed": 2})
        );
        let refused = |reason| respond(&stock, InventoryResponse::Refused { reason }, 2);
        assert_eq!(refused(Refusal::UnknownPart).status, 404);
        let busy = refused(Refusal::Overloaded);
        assert_eq!((busy.status, busy.retry_after_s), (503, Some(2)));
        assert_eq!(respond(&stock, InventoryResponse::Committed, 1).status, 502);
    }
}
