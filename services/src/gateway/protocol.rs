//! What the gateway sends to an upstream service, and what it expects back.
//!
//! Owns `UpstreamRequest`, `UpstreamResponse`, `HttpMethod` and `Role`: the contract between the
//! gateway and every HTTP-facing upstream (orders, motion's axes, inventory), carried by `rpc` in
//! postcard frames. An upstream answers `UpstreamRequest` on the port it registered in the
//! registry; the adapter from these to its own protocol is the upstream's.
//!
//! JSON travels as text (`body_json: String`), not `serde_json::Value`: postcard is not
//! self-describing and cannot carry a `Value` (which deserializes through `deserialize_any`),
//! and the gateway has already checked that the text is well-formed JSON.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The methods the gateway forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum HttpMethod {
    Get,
    Post,
    Put,
    Delete,
}

impl HttpMethod {
    /// Whether the method only reads (what a viewer may do).
    pub fn is_read(self) -> bool {
        self == HttpMethod::Get
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Delete => "DELETE",
        }
    }

    /// Parses an HTTP method name; `None` for one the gateway does not forward.
    pub fn parse(name: &str) -> Option<HttpMethod> {
        match name {
            "GET" => Some(HttpMethod::Get),
            "POST" => Some(HttpMethod::Post),
            "PUT" => Some(HttpMethod::Put),
            "DELETE" => Some(HttpMethod::Delete),
            _ => None,
        }
    }
}

/// What an API key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// May order, move and read.
    Operator,
    /// May only read.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }

    /// Whether this role may use `method`.
    pub fn permits(self, method: HttpMethod) -> bool {
        match self {
            Role::Operator => true,
            Role::Viewer => method.is_read(),
        }
    }
}

/// One HTTP request, as forwarded to an upstream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamRequest {
    /// The route's name (`"orders"`, `"axes"`, `"inventory"`).
    pub route: String,
    pub method: HttpMethod,
    /// Path and query as the client sent them, for example `/orders/17`.
    pub path: String,
    /// The request body, well-formed JSON (`null` when the client sent none).
    pub body_json: String,
    /// The client's `Idempotency-Key`: the same on every retry of one request.
    pub idempotency_key: Option<String>,
    /// Who asked (the authenticated consumer) and with which role.
    pub consumer: String,
    pub role: Role,
}

/// The upstream's answer, returned to the client as an HTTP response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamResponse {
    /// HTTP status, 100..=599.
    pub status: u16,
    /// Response body, JSON.
    pub body_json: String,
    /// For 429 / 503: when to come back, seconds.
    pub retry_after_s: Option<u32>,
}

impl UpstreamRequest {
    /// The body parsed as `T`: what an upstream's adapter calls first.
    pub fn body<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.body_json)
    }
}

impl UpstreamResponse {
    /// `status` with `body` serialized as JSON.
    pub fn json(status: u16, body: &impl Serialize) -> UpstreamResponse {
        assert!(
            (100..=599).contains(&status),
            "an HTTP status is in 100..=599, got {status}"
        );
        UpstreamResponse {
            status,
            body_json: serde_json::to_string(body).expect("a serializable body"),
            retry_after_s: None,
        }
    }

    /// `status` with the gateway's error shape, `{"error": code, "detail": detail}`.
    pub fn error(status: u16, code: &str, detail: &str) -> UpstreamResponse {
        UpstreamResponse::json(
            status,
            &serde_json::json!({ "error": code, "detail": detail }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapters_round_trip_json_and_the_envelope_survives_postcard() {
        // Goal: the contract an upstream adapter relies on: a typed body out of the request, a
        // typed body into the response, and both crossing `rpc`'s postcard frames unchanged.
        // Method: build, encode, decode, parse.
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Order {
            part: String,
            quantity: u32,
        }
        let request = UpstreamRequest {
            route: "orders".into(),
            method: HttpMethod::Post,
            path: "/orders".into(),
            body_json: r#"{"part":"bolt","quantity":2}"#.into(),
            idempotency_key: Some("k".into()),
            consumer: "alice".into(),
            role: Role::Operator,
        };
        let decoded: UpstreamRequest =
            crate::framing::decode(&crate::framing::encode(&request).unwrap()).unwrap();
        assert_eq!(decoded, request);
        assert_eq!(
            decoded.body::<Order>().unwrap(),
            Order {
                part: "bolt".into(),
                quantity: 2
            }
        );
        let response = UpstreamResponse::json(
            201,
            &Order {
                part: "nut".into(),
                quantity: 1,
            },
        );
        let decoded: UpstreamResponse =
            crate::framing::decode(&crate::framing::encode(&response).unwrap()).unwrap();
        assert_eq!(decoded.body_json, r#"{"part":"nut","quantity":1}"#);
        assert!(
            UpstreamResponse::error(409, "conflict", "x")
                .body_json
                .contains("conflict")
        );
    }
}
