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
