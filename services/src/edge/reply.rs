//! The answers every edge adapter shares: the error shapes, what a failed call to the native
//! service becomes, and how a path is taken apart.
//!
//! Owns `Plan` (call the native service, or answer at once), the JSON error bodies
//! (`{"error": code, "detail": detail}`, plus `"field"` when one field is at fault, the shape of
//! the gateway's own errors), `unavailable` (503 with `retry_after_s`) and `backend_failed` (what
//! an `RpcError` becomes). It does not own any route (`orders`, `inventory`, `axes`) or I/O
//! (the shell in `mod.rs`). Pure, tested without a runtime.

use crate::gateway::UpstreamResponse;
use crate::rpc::RpcError;

/// What the adapter does with a request: call the native service with `N`, or answer at once
/// (a malformed request, an unknown path: the native service is never bothered).
#[derive(Clone, Debug, PartialEq)]
pub enum Plan<N> {
    Call(N),
    Answer(UpstreamResponse),
}

/// 400 naming the field at fault (`field` is a JSON body field, a path segment such as
/// `order_id`, or a header such as `Idempotency-Key`).
pub fn invalid_field(field: &str, detail: &str) -> UpstreamResponse {
    UpstreamResponse::json(
        400,
        &serde_json::json!({ "error": "invalid_field", "field": field, "detail": detail }),
    )
}

/// 404 for a path no route of the adapter knows.
pub fn no_such_path(path: &str) -> UpstreamResponse {
    UpstreamResponse::error(404, "not_found", &format!("no resource at {path}"))
}

/// 405 for a method the resource does not take.
pub fn method_not_allowed(method: &str, path: &str) -> UpstreamResponse {
    UpstreamResponse::error(
        405,
        "method_not_allowed",
        &format!("{method} is not allowed on {path}"),
    )
}

/// 503 with `Retry-After`: the native service said it is unavailable or overloaded.
pub fn unavailable(code: &str, detail: &str, retry_after_s: u32) -> UpstreamResponse {
    UpstreamResponse {
        retry_after_s: Some(retry_after_s),
        ..UpstreamResponse::error(503, code, detail)
    }
}

/// What a failed call to the native service becomes. A timeout is 504 (the gateway's own answer
/// for a slow upstream); no connection is 503 with `Retry-After` (the service is down or
/// restarting: come back later); anything else (broken connection, undecodable answer, the
/// server's own error, the deadline passed before the service saw it) is 502. The gateway
/// retries all three for requests carrying an `Idempotency-Key`; every native request the
/// adapters send is idempotent (an order by its id, a move by its request id, reads).
pub fn backend_failed(error: &RpcError, retry_after_s: u32) -> UpstreamResponse {
    let detail = format!("the native service did not answer: {}", error.kind());
    match error {
        RpcError::Timeout => UpstreamResponse::error(504, "backend_timeout", &detail),
        RpcError::Connect(_) => unavailable("backend_unavailable", &detail, retry_after_s),
        RpcError::Io(_)
        | RpcError::Encode(_)
        | RpcError::Decode(_)
        | RpcError::DeadlineExceeded
        | RpcError::Remote(_) => UpstreamResponse::error(502, "bad_backend", &detail),
    }
}

/// The path's segments after the route's prefix, without the query: `/orders/17?x=1` under
/// `/orders` is `["17"]`; `None` when the path is not under the prefix. An empty trailing
/// segment (`/orders/`) is kept, so it matches no route.
pub fn segments<'p>(path: &'p str, prefix: &str) -> Option<Vec<&'p str>> {
    let path = path.split('?').next().unwrap_or_default();
    let rest = path.strip_prefix(prefix)?;
    if rest.is_empty() {
        return Some(Vec::new());
    }
    let rest = rest.strip_prefix('/')?;
    Some(rest.split('/').collect())
}

/// A JSON request body that must be an object, read field by field so a refusal names the
/// field at fault.
#[derive(Clone, Debug, PartialEq)]
pub struct Body(serde_json::Map<String, serde_json::Value>);

impl Body {
    /// The body as an object; 400 naming `body` otherwise (`null`, an array, a number).
    pub fn parse(body_json: &str) -> Result<Body, UpstreamResponse> {
        match serde_json::from_str::<serde_json::Value>(body_json) {
            Ok(serde_json::Value::Object(fields)) => Ok(Body(fields)),
            _ => Err(invalid_field("body", "the body must be a JSON object")),
        }
    }

    fn get(&self, field: &str) -> Result<&serde_json::Value, UpstreamResponse> {
        self.0
            .get(field)
            .ok_or_else(|| invalid_field(field, "missing"))
    }

    /// A non-negative integer field.
    pub fn u64(&self, field: &str) -> Result<u64, UpstreamResponse> {
        self.get(field)?
            .as_u64()
            .ok_or_else(|| invalid_field(field, "must be a non-negative integer"))
    }

    /// An integer field in `min..=max`.
    pub fn u32_in(&self, field: &str, min: u32, max: u32) -> Result<u32, UpstreamResponse> {
        let value = self.u64(field)?;
        u32::try_from(value)
            .ok()
            .filter(|value| (min..=max).contains(value))
            .ok_or_else(|| invalid_field(field, &format!("must be in {min}..={max}")))
    }

    /// A finite number field.
    pub fn finite_f64(&self, field: &str) -> Result<f64, UpstreamResponse> {
        self.get(field)?
            .as_f64()
            .filter(|value| value.is_finite())
            .ok_or_else(|| invalid_field(field, "must be a finite number"))
    }

    /// A name field of 1..=`length_max` bytes.
    pub fn name(&self, field: &str, length_max: usize) -> Result<String, UpstreamResponse> {
        let value = self.get(field)?;
        checked_name(value.as_str().unwrap_or_default(), length_max).ok_or_else(|| {
            invalid_field(
                field,
                &format!("must be a string of 1..={length_max} bytes"),
            )
        })
    }
}

/// `name` if it is 1..=`length_max` bytes: what part and axis names must be (their
/// constructors panic otherwise, so names from the wire are checked here first).
pub fn checked_name(name: &str, length_max: usize) -> Option<String> {
    (!name.is_empty() && name.len() <= length_max).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(response: &UpstreamResponse) -> serde_json::Value {
        serde_json::from_str(&response.body_json).unwrap()
    }

    #[test]
    fn error_shapes_name_the_field_and_carry_retry_after() {
        // Goal: the contract clients read: 400 names the field, 503 always has Retry-After
        // (oracle GW2), each transport failure has its status. Method: build each and look.
        let invalid = invalid_field("quantity", "must be at least 1");
        assert_eq!(invalid.status, 400);
        assert_eq!(body(&invalid)["field"], "quantity");
        assert_eq!(invalid.retry_after_s, None);

        let busy = unavailable("overloaded", "later", 2);
        assert_eq!((busy.status, busy.retry_after_s), (503, Some(2)));
        assert_eq!(body(&busy)["error"], "overloaded");

        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let down = backend_failed(&RpcError::Connect(refused), 1);
        assert_eq!((down.status, down.retry_after_s), (503, Some(1)));
        assert_eq!(backend_failed(&RpcError::Timeout, 1).status, 504);
        assert_eq!(backend_failed(&RpcError::Decode("x".into()), 1).status, 502);
        assert_eq!(backend_failed(&RpcError::DeadlineExceeded, 1).status, 502);
        assert_eq!(method_not_allowed("PUT", "/orders").status, 405);
        assert_eq!(no_such_path("/x").status, 404);
    }

    #[test]
    fn paths_split_under_their_prefix_only() {
        // Goal: routes see exactly the segments after their prefix, never a lookalike prefix.
        // Method: a table of paths.
        assert_eq!(segments("/orders", "/orders"), Some(vec![]));
        assert_eq!(segments("/orders/17", "/orders"), Some(vec!["17"]));
        assert_eq!(segments("/orders/17?x=1", "/orders"), Some(vec!["17"]));
        assert_eq!(segments("/axes/x/move", "/axes"), Some(vec!["x", "move"]));
        assert_eq!(segments("/orders/", "/orders"), Some(vec![""]));
        assert_eq!(segments("/ordersx", "/orders"), None);
        assert_eq!(segments("/inventory/bolt", "/orders"), None);
    }

    #[test]
    fn body_fields_are_checked_one_by_one_and_named() {
        // Goal: a refusal names the field at fault, for each way a field can be wrong.
        // Method: one body with good and bad fields, read each.
        let body =
            Body::parse(r#"{"id":7,"neg":-1,"big":5000000000,"x":1.5,"s":"bolt","e":"","t":"no"}"#)
                .unwrap();
        assert_eq!(body.u64("id"), Ok(7));
        assert_eq!(body.u32_in("id", 1, 10), Ok(7));
        let field = |result: Result<_, UpstreamResponse>| -> String {
            let response = result.map(|_: ()| ()).unwrap_err();
            assert_eq!(response.status, 400);
            serde_json::from_str::<serde_json::Value>(&response.body_json).unwrap()["field"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(field(body.u64("neg").map(drop)), "neg");
        assert_eq!(field(body.u32_in("big", 1, 10).map(drop)), "big");
        assert_eq!(field(body.u32_in("id", 8, 10).map(drop)), "id");
        assert_eq!(field(body.u64("missing").map(drop)), "missing");
        assert_eq!(body.finite_f64("x"), Ok(1.5));
        assert_eq!(field(body.finite_f64("t").map(drop)), "t");
        assert_eq!(body.name("s", 64), Ok("bolt".to_owned()));
        assert_eq!(field(body.name("e", 64).map(drop)), "e");
        assert_eq!(field(body.name("s", 3).map(drop)), "s");
        assert_eq!(field(body.name("id", 64).map(drop)), "id");
        for not_object in ["null", "[1]", "3"] {
            assert_eq!(field(Body::parse(not_object).map(drop)), "body");
        }
    }
}
