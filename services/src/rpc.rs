//! Internal RPC shared by every service: one request, one response, over any `Transport`.
//!
//! Owns the request and response envelopes, the client (`RpcClient::call`), the server
//! (`RpcServer`, and `serve` for services whose handler is all they do) and `RpcError`. It does
//! not own the message types (each service's protocol module does), retries (`retry`) or
//! idempotency (the service: a retried call is a new RPC carrying the same idempotency key in
//! its body).
//!
//! Design choices:
//! - **Frames**: `framing` (4-byte length + postcard payload, `FRAME_LENGTH_MAX`).
//! - **One connection per call.** The client connects, sends one `RequestEnvelope`, reads one
//!   `ResponseEnvelope`, and closes; the server closes after responding. This keeps failure
//!   handling trivial (a broken connection fails exactly one call) and makes every call visible
//!   to the simulator's per-connection faults. Connection reuse can come later without a wire
//!   change: the envelope's `request_id` already matches responses to requests on a shared
//!   connection.
//! - **Request ids** are per-`RpcClient` counters starting at 1: they match a response to its
//!   request. They are not idempotency keys; those live in the request body (for example
//!   `MotionRequest::Move::request_id`), because they must stay the same across retries while
//!   each RPC attempt is a new call.
//! - **Deadlines** travel as a relative budget, `deadline_ms`: what is left of the caller's
//!   timeout when the request is sent (gRPC's `grpc-timeout` convention). Hosts share no clock
//!   in real runs, so an absolute time would be meaningless to the server. The server turns the
//!   budget into a local deadline when it has read the request, and answers
//!   `Outcome::DeadlineExceeded` without calling the handler if that deadline has passed when the
//!   request is dispatched: a budget of 0, or a request that waited in `serve`'s queue behind a
//!   slow handler. Transit time is not subtracted (it cannot be measured without a shared clock);
//!   the client's own timeout covers it, so a late answer is never used.
//! - **No spawned tasks.** The server multiplexes its connections with `FuturesUnordered` inside
//!   the caller's task, so it runs unchanged on a current-thread runtime, in a turmoil host and
//!   inside another loop's `select!` (the motion service's control loop). Its work progresses
//!   only while `next_request` (or `flush`) is being polled.
//! - **Limits**: `CONNECTIONS_MAX` open connections (the server stops accepting beyond it), a
//!   request must arrive within `REQUEST_READ_TIMEOUT` of the connection, a response is written
//!   within `RESPONSE_WRITE_TIMEOUT`, `serve` queues at most `SERVE_QUEUE_MAX` requests behind a
//!   busy handler. A malformed or oversized request closes its connection and nothing else.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use crate::framing::{self, FrameError, FramedStream};
use crate::transport::{Listener, Transport};

/// Most connections the server keeps open (reading a request or writing a response).
pub const CONNECTIONS_MAX: usize = 256;

/// How long an accepted connection may take to deliver its request.
pub const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long writing a response may take before the connection is dropped.
pub const RESPONSE_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the server waits after a failed `accept` (for example out of file descriptors).
pub const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(10);

/// Most requests `serve` reads ahead while its handler is busy.
pub const SERVE_QUEUE_MAX: usize = 64;

/// What the client sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestEnvelope<Req> {
    /// Matches the response to this request; unique per client.
    pub request_id: u64,
    /// Budget left at send time, ms; the server refuses to start work after it.
    pub deadline_ms: u32,
    /// The service's request.
    pub body: Req,
}

/// What the server answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResponseEnvelope<Resp> {
    /// The `request_id` of the request this answers.
    pub request_id: u64,
    /// The handler's answer, or why there is none.
    pub outcome: Outcome<Resp>,
}

/// The server's side of a call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Outcome<Resp> {
    /// The handler ran and answered.
    Ok(Resp),
    /// The deadline passed before the handler was called: the request had no effect.
    DeadlineExceeded,
    /// The server could not answer (for example the response exceeded the frame limit).
    Remote(String),
}

/// Why a call failed. Business outcomes (a refused move, a held lease) are responses, not errors.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// No connection to the server.
    #[error("rpc connect: {0}")]
    Connect(#[source] io::Error),
    /// The connection failed after it was open (including closed without an answer).
    #[error("rpc i/o: {0}")]
    Io(#[source] io::Error),
    /// No answer within the caller's timeout. The request may or may not have taken effect.
    #[error("rpc timed out")]
    Timeout,
    /// The request could not be encoded (it exceeds the frame limit).
    #[error("rpc encode: {0}")]
    Encode(String),
    /// The answer was not a well-formed response to this request.
    #[error("rpc decode: {0}")]
    Decode(String),
    /// The server received the request after its deadline and did not act on it.
    #[error("rpc deadline exceeded at the server")]
    DeadlineExceeded,
    /// The server failed to answer.
    #[error("rpc remote error: {0}")]
    Remote(String),
}

impl RpcError {
    /// Whether trying again could succeed: the network or the server's timing failed, not the
    /// request itself. Only idempotent requests may be retried at all.
    pub fn is_transient(&self) -> bool {
        match self {
            RpcError::Connect(_)
            | RpcError::Io(_)
            | RpcError::Timeout
            | RpcError::DeadlineExceeded => true,
            RpcError::Encode(_) | RpcError::Decode(_) | RpcError::Remote(_) => false,
        }
    }

    /// A stable one-word name for traces (the `Display` form may carry OS text).
    pub fn kind(&self) -> &'static str {
        match self {
            RpcError::Connect(_) => "connect",
            RpcError::Io(_) => "io",
            RpcError::Timeout => "timeout",
            RpcError::Encode(_) => "encode",
            RpcError::Decode(_) => "decode",
            RpcError::DeadlineExceeded => "deadline_exceeded",
            RpcError::Remote(_) => "remote",
        }
    }
}

/// Calls services over a `Transport`, one connection per call.
#[derive(Debug)]
pub struct RpcClient<T: Transport> {
    transport: T,
    request_id_next: Cell<u64>,
}

impl<T: Transport> RpcClient<T> {
    pub fn new(transport: T) -> RpcClient<T> {
        RpcClient {
            transport,
            request_id_next: Cell::new(1),
        }
    }

    /// Sends `request` to `host:port` and waits for the response, all within `timeout`.
    pub async fn call<Req, Resp>(
        &self,
        host: &str,
        port: u16,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, RpcError>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let request_id = self.request_id_next.get();
        self.request_id_next.set(request_id + 1);
        let started = Instant::now();
        let attempt = self.exchange(host, port, request_id, request, started + timeout);
        match tokio::time::timeout(timeout, attempt).await {
            Ok(result) => result,
            Err(_elapsed) => Err(RpcError::Timeout),
        }
    }

    async fn exchange<Req, Resp>(
        &self,
        host: &str,
        port: u16,
        request_id: u64,
        request: &Req,
        deadline: Instant,
    ) -> Result<Resp, RpcError>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let stream = self
            .transport
            .connect(host, port)
            .await
            .map_err(RpcError::Connect)?;
        let mut stream = framing::framed(stream);
        let budget = deadline.saturating_duration_since(Instant::now());
        let envelope = RequestEnvelope {
            request_id,
            // Rounded down: the server never works past the caller's deadline.
            deadline_ms: u32::try_from(budget.as_millis()).unwrap_or(u32::MAX),
            body: request,
        };
        framing::send(&mut stream, &envelope)
            .await
            .map_err(|error| match error {
                FrameError::Io(error) => RpcError::Io(error),
                other => RpcError::Encode(other.to_string()),
            })?;
        let response: ResponseEnvelope<Resp> = match framing::receive(&mut stream).await {
            Ok(Some(response)) => response,
            Ok(None) => {
                return Err(RpcError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before the response",
                )));
            }
            Err(FrameError::Io(error)) => return Err(RpcError::Io(error)),
            Err(other) => return Err(RpcError::Decode(other.to_string())),
        };
        outcome_to_result(request_id, response)
    }
}

/// Maps a response envelope to what `call` returns.
fn outcome_to_result<Resp>(
    request_id: u64,
    response: ResponseEnvelope<Resp>,
) -> Result<Resp, RpcError> {
    if response.request_id != request_id {
        return Err(RpcError::Decode(format!(
            "response to request {} on the connection of request {request_id}",
            response.request_id
        )));
    }
    match response.outcome {
        Outcome::Ok(body) => Ok(body),
        Outcome::DeadlineExceeded => Err(RpcError::DeadlineExceeded),
        Outcome::Remote(message) => Err(RpcError::Remote(message)),
    }
}

/// A request read by the server, with the means to answer it.
#[derive(Debug)]
pub struct Incoming<S, Req> {
    /// The service's request.
    pub request: Req,
    /// Hand this back to `RpcServer::respond`. Dropping it closes the connection unanswered.
    pub responder: Responder<S>,
}

/// The open connection of one request, waiting for its response.
#[derive(Debug)]
pub struct Responder<S> {
    request_id: u64,
    deadline: Instant,
    stream: FramedStream<S>,
}

impl<S> Responder<S> {
    /// The client's request id.
    pub fn request_id(&self) -> u64 {
        self.request_id
    }

    /// The local time after which the request must not start to take effect.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the deadline has passed at `now`.
    pub fn is_expired(&self, now: Instant) -> bool {
        now >= self.deadline
    }
}

type ReadFuture<S, Req> = LocalBoxFuture<'static, Option<Incoming<S, Req>>>;

/// The server side: accepts connections, reads requests, writes responses, all inside the
/// caller's task (see the module docs).
pub struct RpcServer<L: Listener, Req> {
    listener: L,
    reading: FuturesUnordered<ReadFuture<L::Stream, Req>>,
    writing: FuturesUnordered<LocalBoxFuture<'static, ()>>,
}

impl<L: Listener, Req> std::fmt::Debug for RpcServer<L, Req> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcServer")
            .field("reading", &self.reading.len())
            .field("writing", &self.writing.len())
            .finish_non_exhaustive()
    }
}

enum ServerEvent<S, Req> {
    Written,
    Read(Option<Incoming<S, Req>>),
    Accepted(io::Result<S>),
}

impl<L, Req> RpcServer<L, Req>
where
    L: Listener,
    Req: DeserializeOwned + 'static,
{
    pub fn new(listener: L) -> RpcServer<L, Req> {
        RpcServer {
            listener,
            reading: FuturesUnordered::new(),
            writing: FuturesUnordered::new(),
        }
    }

    /// Open connections (reading a request or writing a response).
    pub fn connections(&self) -> usize {
        self.reading.len() + self.writing.len()
    }

    /// Waits for the next request whose deadline has not passed, meanwhile accepting
    /// connections and writing earlier responses. Expired requests are answered
    /// `DeadlineExceeded` here and never returned. Cancel-safe: dropping the future loses nothing.
    pub async fn next_request(&mut self) -> Incoming<L::Stream, Req> {
        loop {
            let accepting = self.connections() < CONNECTIONS_MAX;
            let event = tokio::select! {
                biased;
                // Finishing responses first frees connections for new requests.
                Some(()) = self.writing.next(), if !self.writing.is_empty() => ServerEvent::Written,
                Some(read) = self.reading.next(), if !self.reading.is_empty() => ServerEvent::Read(read),
                accepted = self.listener.accept(), if accepting => ServerEvent::Accepted(accepted),
                else => panic!("rpc server has no connection and does not accept: the limit must be above 0"),
            };
            match event {
                ServerEvent::Written | ServerEvent::Read(None) => {}
                ServerEvent::Read(Some(incoming)) => {
                    if let Some(incoming) = self.reject_if_expired(incoming) {
                        return incoming;
                    }
                }
                ServerEvent::Accepted(Ok(stream)) => {
                    self.reading.push(read_request(stream).boxed_local());
                }
                ServerEvent::Accepted(Err(error)) => {
                    tracing::warn!(event = "rpc_accept_failed", error = %error);
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            }
        }
    }

    /// Answers `DeadlineExceeded` and returns `None` if the request's deadline has passed;
    /// otherwise hands the request back. Call it right before acting on a request that waited.
    pub fn reject_if_expired(
        &mut self,
        incoming: Incoming<L::Stream, Req>,
    ) -> Option<Incoming<L::Stream, Req>> {
        if !incoming.responder.is_expired(Instant::now()) {
            return Some(incoming);
        }
        tracing::debug!(
            event = "rpc_deadline_exceeded",
            request_id = incoming.responder.request_id
        );
        self.push_response::<()>(incoming.responder, Outcome::DeadlineExceeded);
        None
    }

    /// Queues the response; it is written while `next_request` or `flush` is polled.
    pub fn respond<Resp: Serialize>(&mut self, responder: Responder<L::Stream>, response: &Resp) {
        self.push_response(responder, Outcome::Ok(response));
    }

    /// Writes every queued response (for a caller that stops polling `next_request`).
    pub async fn flush(&mut self) {
        while self.writing.next().await.is_some() {}
    }

    fn push_response<Resp: Serialize>(
        &mut self,
        responder: Responder<L::Stream>,
        outcome: Outcome<&Resp>,
    ) {
        let Responder {
            request_id,
            mut stream,
            ..
        } = responder;
        let payload = framing::encode(&ResponseEnvelope {
            request_id,
            outcome,
        })
        .or_else(|error| {
            tracing::warn!(event = "rpc_response_unencodable", request_id, error = %error);
            framing::encode(&ResponseEnvelope::<()> {
                request_id,
                outcome: Outcome::Remote(format!("response not sent: {error}")),
            })
        })
        .expect("an error response is far below the frame limit");
        let write = async move {
            let written = tokio::time::timeout(RESPONSE_WRITE_TIMEOUT, async {
                stream.send(payload).await?;
                stream.get_mut().shutdown().await
            })
            .await;
            // A client that went away is the client's problem: its call fails on its side.
            if !matches!(written, Ok(Ok(()))) {
                tracing::debug!(event = "rpc_response_not_delivered", request_id);
            }
        };
        self.writing.push(write.boxed_local());
    }
}

/// Reads the one request of a fresh connection; `None` if it never comes or is malformed.
async fn read_request<S, Req>(stream: S) -> Option<Incoming<S, Req>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
    Req: DeserializeOwned,
{
    let mut stream = framing::framed(stream);
    let received = tokio::time::timeout(
        REQUEST_READ_TIMEOUT,
        framing::receive::<_, RequestEnvelope<Req>>(&mut stream),
    )
    .await;
    let envelope = match received {
        Ok(Ok(Some(envelope))) => envelope,
        Ok(Ok(None)) => return None,
        Ok(Err(error)) => {
            tracing::debug!(event = "rpc_request_malformed", error = %error);
            return None;
        }
        Err(_elapsed) => {
            tracing::debug!(event = "rpc_request_read_timeout");
            return None;
        }
    };
    let deadline = Instant::now() + Duration::from_millis(u64::from(envelope.deadline_ms));
    Some(Incoming {
        request: envelope.body,
        responder: Responder {
            request_id: envelope.request_id,
            deadline,
            stream,
        },
    })
}

/// Serves `handler` on `listener` until dropped: for services that are nothing but a handler.
/// Requests are handled one at a time in arrival order; while the handler awaits, up to
/// `SERVE_QUEUE_MAX` further requests are read ahead, and a queued request whose deadline passes
/// before its turn is answered `DeadlineExceeded` without reaching the handler.
pub async fn serve<L, Req, Resp, H>(listener: L, mut handler: H)
where
    L: Listener,
    Req: DeserializeOwned + 'static,
    Resp: Serialize,
    H: AsyncFnMut(Req) -> Resp,
{
    let mut server = RpcServer::<L, Req>::new(listener);
    let mut queue = VecDeque::new();
    loop {
        let incoming = match queue.pop_front() {
            Some(queued) => queued,
            None => server.next_request().await,
        };
        let Some(Incoming { request, responder }) = server.reject_if_expired(incoming) else {
            continue;
        };
        let response = {
            let handling = handler(request);
            let mut handling = std::pin::pin!(handling);
            loop {
                tokio::select! {
                    biased;
                    response = &mut handling => break response,
                    more = server.next_request(), if queue.len() < SERVE_QUEUE_MAX => {
                        queue.push_back(more);
                    }
                }
            }
        };
        server.respond(responder, &response);
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::rc::Rc;

    use super::*;
    use crate::transport::{TokioListener, TokioTransport};

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    enum TestRequest {
        Echo(String),
        SleepMs(u64),
        Huge,
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    enum TestResponse {
        Echoed(String),
        Slept,
        Huge(Vec<u8>),
    }

    async fn bind() -> (TokioListener, u16) {
        let listener = TokioTransport::loopback().bind(0).await.unwrap();
        let port = listener.local_port().unwrap();
        (listener, port)
    }

    /// A handler that counts the requests it actually handled.
    fn handler(handled: Rc<Cell<u32>>) -> impl AsyncFnMut(TestRequest) -> TestResponse {
        async move |request| {
            handled.set(handled.get() + 1);
            match request {
                TestRequest::Echo(text) => TestResponse::Echoed(text),
                TestRequest::SleepMs(ms) => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    TestResponse::Slept
                }
                TestRequest::Huge => TestResponse::Huge(vec![1; framing::FRAME_LENGTH_MAX + 1]),
            }
        }
    }

    /// Runs `client` next to `serve` on the same current-thread task; returns the client's value.
    async fn with_server<F: Future>(
        listener: TokioListener,
        handled: Rc<Cell<u32>>,
        client: F,
    ) -> F::Output {
        tokio::select! {
            biased;
            () = serve(listener, handler(handled)) => unreachable!("serve runs until dropped"),
            output = client => output,
        }
    }

    #[tokio::test]
    async fn call_round_trips_and_ids_increase() {
        // Goal: a call over real TCP returns the handler's answer, repeatedly. Method: two echo
        // calls through RpcClient against `serve` on 127.0.0.1, then check the handler count.
        let (listener, port) = bind().await;
        let handled = Rc::new(Cell::new(0));
        let client = RpcClient::new(TokioTransport::loopback());
        let (first, second) = with_server(listener, handled.clone(), async {
            let timeout = Duration::from_secs(5);
            let first: TestResponse = client
                .call("127.0.0.1", port, &TestRequest::Echo("one".into()), timeout)
                .await
                .unwrap();
            let second: TestResponse = client
                .call("127.0.0.1", port, &TestRequest::Echo("two".into()), timeout)
                .await
                .unwrap();
            (first, second)
        })
        .await;
        assert_eq!(first, TestResponse::Echoed("one".into()));
        assert_eq!(second, TestResponse::Echoed("two".into()));
        assert_eq!(handled.get(), 2);
        assert_eq!(client.request_id_next.get(), 3);
    }

    #[tokio::test]
    async fn expired_budget_is_answered_without_effect() {
        // Goal: a request whose deadline has passed never reaches the handler. Method: send a
        // raw envelope with a budget of 0 ms and expect DeadlineExceeded with the same request
        // id and an untouched handler count.
        let (listener, port) = bind().await;
        let handled = Rc::new(Cell::new(0));
        let response = with_server(listener, handled.clone(), async {
            let stream = TokioTransport::loopback()
                .connect("127.0.0.1", port)
                .await
                .unwrap();
            let mut stream = framing::framed(stream);
            let envelope = RequestEnvelope {
                request_id: 41,
                deadline_ms: 0,
                body: TestRequest::Echo("late".into()),
            };
            framing::send(&mut stream, &envelope).await.unwrap();
            framing::receive::<_, ResponseEnvelope<TestResponse>>(&mut stream)
                .await
                .unwrap()
                .unwrap()
        })
        .await;
        assert_eq!(response.request_id, 41);
        assert_eq!(response.outcome, Outcome::DeadlineExceeded);
        assert_eq!(handled.get(), 0, "an expired request must have no effect");
        assert!(matches!(
            outcome_to_result(41, response),
            Err(RpcError::DeadlineExceeded)
        ));
    }

    #[tokio::test]
    async fn request_queued_past_its_deadline_is_not_handled() {
        // Goal: the deadline covers time spent waiting behind a busy handler. Method: one call
        // makes the handler sleep 300 ms; a second call with a 50 ms timeout arrives meanwhile.
        // The second times out at the client, and the handler never sees it.
        let (listener, port) = bind().await;
        let handled = Rc::new(Cell::new(0));
        let client = RpcClient::new(TokioTransport::loopback());
        let (slow, quick) = with_server(listener, handled.clone(), async {
            let slow = client.call::<_, TestResponse>(
                "127.0.0.1",
                port,
                &TestRequest::SleepMs(300),
                Duration::from_secs(5),
            );
            let quick = async {
                // Let the slow request reach the handler first.
                tokio::time::sleep(Duration::from_millis(50)).await;
                client
                    .call::<_, TestResponse>(
                        "127.0.0.1",
                        port,
                        &TestRequest::Echo("queued".into()),
                        Duration::from_millis(50),
                    )
                    .await
            };
            tokio::join!(slow, quick)
        })
        .await;
        assert_eq!(slow.unwrap(), TestResponse::Slept);
        assert!(matches!(quick, Err(RpcError::Timeout)), "{quick:?}");
        assert_eq!(handled.get(), 1, "the expired request must not be handled");
    }

    #[tokio::test]
    async fn slow_handler_times_out_at_the_client() {
        // Goal: `call` never waits past its timeout. Method: the handler sleeps 300 ms, the
        // call allows 50 ms and must fail with Timeout.
        let (listener, port) = bind().await;
        let client = RpcClient::new(TokioTransport::loopback());
        let result = with_server(listener, Rc::new(Cell::new(0)), async {
            client
                .call::<_, TestResponse>(
                    "127.0.0.1",
                    port,
                    &TestRequest::SleepMs(300),
                    Duration::from_millis(50),
                )
                .await
        })
        .await;
        assert!(matches!(result, Err(RpcError::Timeout)), "{result:?}");
        assert!(result.unwrap_err().is_transient());
    }

    #[tokio::test]
    async fn connect_to_a_closed_port_is_a_connect_error() {
        // Goal: a missing server is reported as Connect, which is transient. Method: bind a
        // port, close it, call it.
        let (listener, port) = bind().await;
        drop(listener);
        let client = RpcClient::new(TokioTransport::loopback());
        let result = client
            .call::<_, TestResponse>(
                "127.0.0.1",
                port,
                &TestRequest::Echo("x".into()),
                Duration::from_secs(5),
            )
            .await;
        assert!(matches!(result, Err(RpcError::Connect(_))), "{result:?}");
    }

    #[tokio::test]
    async fn garbage_and_oversized_frames_close_only_their_connection() {
        // Goal: a malformed peer cannot take the server down. Method: send garbage on one
        // connection and an oversized length prefix on another; both are closed without an
        // answer, and a proper call afterwards still succeeds.
        let (listener, port) = bind().await;
        let handled = Rc::new(Cell::new(0));
        let client = RpcClient::new(TokioTransport::loopback());
        let answer = with_server(listener, handled.clone(), async {
            let transport = TokioTransport::loopback();
            let bad_frames: [Vec<u8>; 2] = [
                vec![0, 0, 0, 3, 0xff, 0xff, 0xff],
                ((framing::FRAME_LENGTH_MAX + 1) as u32)
                    .to_be_bytes()
                    .to_vec(),
            ];
            for bad in bad_frames {
                let mut stream = transport.connect("127.0.0.1", port).await.unwrap();
                stream.write_all(&bad).await.unwrap();
                let mut rest = Vec::new();
                let read = tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut rest).await;
                // Closed by the server: either a clean EOF or a reset, never an answer.
                assert!(
                    rest.is_empty(),
                    "no answer to garbage, got {rest:?} ({read:?})"
                );
            }
            client
                .call::<_, TestResponse>(
                    "127.0.0.1",
                    port,
                    &TestRequest::Echo("still here".into()),
                    Duration::from_secs(5),
                )
                .await
        })
        .await;
        assert_eq!(answer.unwrap(), TestResponse::Echoed("still here".into()));
        assert_eq!(handled.get(), 1);
    }

    #[tokio::test]
    async fn unencodable_response_becomes_a_remote_error() {
        // Goal: a response above the frame limit is reported, not silently dropped. Method: the
        // handler answers more than FRAME_LENGTH_MAX bytes; the client gets Remote.
        let (listener, port) = bind().await;
        let client = RpcClient::new(TokioTransport::loopback());
        let result = with_server(listener, Rc::new(Cell::new(0)), async {
            client
                .call::<_, TestResponse>(
                    "127.0.0.1",
                    port,
                    &TestRequest::Huge,
                    Duration::from_secs(5),
                )
                .await
        })
        .await;
        assert!(matches!(result, Err(RpcError::Remote(_))), "{result:?}");
        assert!(!result.unwrap_err().is_transient());
    }

    #[test]
    fn response_to_another_request_is_a_decode_error() {
        // Goal: a response is only accepted for the request it names. Method: map an envelope
        // with a different id.
        let response = ResponseEnvelope {
            request_id: 7,
            outcome: Outcome::Ok(TestResponse::Slept),
        };
        assert!(matches!(
            outcome_to_result(8, response),
            Err(RpcError::Decode(_))
        ));
    }
}
