//! A minimal HTTP/1.1 client for the gateway's public API, over any `Transport`: what workload
//! clients (and the tests) use to place orders and read state.
//!
//! Owns `HttpCall`, `HttpReply`, `HttpCallError` and `http_call`: one connection per call (as
//! `rpc` does), hyper's client connection driven inside the caller's task, no spawning. It does
//! not retry: a caller that retries reuses its `Idempotency-Key`.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper_util::rt::TokioIo;

use super::config::BODY_BYTES_MAX;
use super::protocol::HttpMethod;
use crate::transport::Transport;

/// Largest response body accepted, in bytes.
pub const RESPONSE_BYTES_MAX: usize = 256 * 1024;

/// One request to the gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpCall {
    pub method: HttpMethod,
    /// Path and query, for example `/orders/17`.
    pub path: String,
    /// Sent as `X-Api-Key`.
    pub api_key: Option<String>,
    /// Sent as `Idempotency-Key`.
    pub idempotency_key: Option<String>,
    /// JSON body, if any.
    pub body_json: Option<String>,
}

impl HttpCall {
    pub fn new(method: HttpMethod, path: impl Into<String>) -> HttpCall {
        HttpCall {
            method,
            path: path.into(),
            api_key: None,
            idempotency_key: None,
            body_json: None,
        }
    }
}

/// The gateway's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpReply {
    pub status: u16,
    /// `Retry-After`, when it is a number of seconds.
    pub retry_after_s: Option<u64>,
    /// `WWW-Authenticate`, verbatim.
    pub www_authenticate: Option<String>,
    pub body: String,
}

/// Why a call got no answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpCallError {
    #[error("http connect: {0}")]
    Connect(#[source] io::Error),
    #[error("http: {0}")]
    Http(String),
    #[error("http call timed out")]
    Timeout,
}

impl HttpCallError {
    /// A stable name for traces.
    pub fn kind(&self) -> &'static str {
        match self {
            HttpCallError::Connect(_) => "connect",
            HttpCallError::Http(_) => "http",
            HttpCallError::Timeout => "timeout",
        }
    }
}

/// Sends `call` to `host:port` and reads the whole answer, within `timeout`.
pub async fn http_call<T: Transport>(
    transport: &T,
    host: &str,
    port: u16,
    call: &HttpCall,
    timeout: Duration,
) -> Result<HttpReply, HttpCallError> {
    match tokio::time::timeout(timeout, exchange(transport, host, port, call)).await {
        Ok(result) => result,
        Err(_elapsed) => Err(HttpCallError::Timeout),
    }
}

async fn exchange<T: Transport>(
    transport: &T,
    host: &str,
    port: u16,
    call: &HttpCall,
) -> Result<HttpReply, HttpCallError> {
    let http = |error: &dyn std::fmt::Display| HttpCallError::Http(error.to_string());
    let stream = transport
        .connect(host, port)
        .await
        .map_err(HttpCallError::Connect)?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| http(&error))?;
    let body = call.body_json.clone().unwrap_or_default();
    assert!(
        body.len() <= BODY_BYTES_MAX,
        "a request body above the gateway's limit is a caller bug"
    );
    let mut request = Request::builder()
        .method(call.method.as_str())
        .uri(call.path.as_str())
        .header(hyper::header::HOST, format!("{host}:{port}"));
    if call.body_json.is_some() {
        request = request.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    if let Some(key) = &call.api_key {
        request = request.header("x-api-key", key.as_str());
    }
    if let Some(key) = &call.idempotency_key {
        request = request.header("idempotency-key", key.as_str());
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|error| http(&error))?;
    let exchange = async move {
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| http(&error))?;
        let header = |name: hyper::header::HeaderName| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        let status = response.status().as_u16();
        let retry_after_s = header(hyper::header::RETRY_AFTER).and_then(|v| v.parse().ok());
        let www_authenticate = header(hyper::header::WWW_AUTHENTICATE);
        let bytes = Limited::new(response.into_body(), RESPONSE_BYTES_MAX)
            .collect()
            .await
            .map_err(|error| http(&*error))?
            .to_bytes();
        Ok(HttpReply {
            status,
            retry_after_s,
            www_authenticate,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    };
    // The connection future drives the socket; it ends once the exchange dropped its sender.
    let (reply, _closed) = futures_util::future::join(exchange, connection).await;
    reply
}
