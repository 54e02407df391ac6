//! The network as a service sees it: listen on a port, connect to a host by name.
//!
//! Owns the `Transport` and `Listener` traits every service is written against, `Endpoint` (where
//! a service listens: a host name and a port), and `TokioTransport`, their implementation over
//! `tokio::net` for real runs. It does not own
//! framing (`framing`), request/response semantics (`rpc`) or any simulated network: the turmoil
//! implementation lives in `sim`, the only crate that depends on turmoil (docs/DESIGN.md §2).
//!
//! Neither trait is `Send`-bound: a turmoil host is single-threaded, and the services never
//! spawn threads (docs/DESIGN.md §3).

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncWrite};

/// Where a service listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn new(host: impl Into<String>, port: u16) -> Endpoint {
        Endpoint {
            host: host.into(),
            port,
        }
    }
}

/// A byte-stream network: the one thing a service needs to talk to other services.
pub trait Transport: Clone + 'static {
    /// A connected, bidirectional byte stream (TCP or its simulation).
    type Stream: AsyncRead + AsyncWrite + Unpin + 'static;
    /// What `bind` returns; yields accepted streams.
    type Listener: Listener<Stream = Self::Stream>;

    /// Listens on `port` of this host.
    fn bind(&self, port: u16) -> impl Future<Output = io::Result<Self::Listener>>;

    /// Opens a stream to `host:port`, `host` being a name the network resolves.
    fn connect(&self, host: &str, port: u16) -> impl Future<Output = io::Result<Self::Stream>>;
}

/// A bound port that accepts connections.
pub trait Listener: 'static {
    /// The accepted stream type (same as the transport's).
    type Stream: AsyncRead + AsyncWrite + Unpin + 'static;

    /// Waits for the next connection.
    ///
    /// Must be cancel-safe: the RPC server polls it inside `tokio::select!` and drops the future
    /// when another branch wins, so dropping it must never lose an accepted connection.
    /// (`tokio::net::TcpListener::accept` and turmoil's are.)
    fn accept(&mut self) -> impl Future<Output = io::Result<Self::Stream>>;
}

/// `Transport` over `tokio::net` for real runs; host names are resolved by the OS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokioTransport {
    /// The address `bind` listens on: unspecified (all interfaces) by default, loopback in tests.
    bind_ip: IpAddr,
}

impl TokioTransport {
    /// Listens on all interfaces.
    pub fn new() -> TokioTransport {
        TokioTransport {
            bind_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        }
    }

    /// Listens on 127.0.0.1 only: tests, and single-machine runs.
    pub fn loopback() -> TokioTransport {
        TokioTransport {
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }
}

impl Default for TokioTransport {
    fn default() -> TokioTransport {
        TokioTransport::new()
    }
}

impl Transport for TokioTransport {
    type Stream = tokio::net::TcpStream;
    type Listener = TokioListener;

    async fn bind(&self, port: u16) -> io::Result<TokioListener> {
        let inner = tokio::net::TcpListener::bind(SocketAddr::new(self.bind_ip, port)).await?;
        Ok(TokioListener { inner })
    }

    async fn connect(&self, host: &str, port: u16) -> io::Result<tokio::net::TcpStream> {
        let stream = tokio::net::TcpStream::connect((host, port)).await?;
        // RPC frames are small request/response pairs: Nagle's algorithm would only add latency.
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

/// A bound `tokio::net::TcpListener`.
#[derive(Debug)]
pub struct TokioListener {
    inner: tokio::net::TcpListener,
}

impl TokioListener {
    /// The port actually bound (useful after binding port 0).
    pub fn local_port(&self) -> io::Result<u16> {
        Ok(self.inner.local_addr()?.port())
    }
}

impl Listener for TokioListener {
    type Stream = tokio::net::TcpStream;

    async fn accept(&mut self) -> io::Result<tokio::net::TcpStream> {
        // `TcpListener::accept` is cancel-safe (tokio docs), as the trait requires.
        let (stream, _peer) = self.inner.accept().await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}
