//! An in-memory `Transport` for runtime tests on tokio's paused clock (test builds only).
//!
//! Owns `MemoryNet`: hosts are names, a connection is a `tokio::io::duplex` pair handed to the
//! listener bound at `host:port`. Nothing touches the OS, so a test on a paused clock advances
//! time only when every future waits, exactly as simulated time does, and stays deterministic.
//! It does not simulate faults beyond "nobody listens" (connect is refused) and slow handlers.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::rc::Rc;

use tokio::io::DuplexStream;
use tokio::sync::mpsc;

use crate::transport::{Listener, Transport};

/// Bytes buffered in each direction of a connection.
const PIPE_BYTES: usize = 64 * 1024;

type Listeners = BTreeMap<(String, u16), mpsc::UnboundedSender<DuplexStream>>;

/// One host's view of a shared in-memory network.
#[derive(Clone, Debug)]
pub(crate) struct MemoryNet {
    host: String,
    listeners: Rc<RefCell<Listeners>>,
}

impl MemoryNet {
    /// A fresh network, seen from host `host`.
    pub(crate) fn new(host: &str) -> MemoryNet {
        MemoryNet {
            host: host.to_owned(),
            listeners: Rc::default(),
        }
    }

    /// The same network seen from another host.
    pub(crate) fn host(&self, host: &str) -> MemoryNet {
        MemoryNet {
            host: host.to_owned(),
            listeners: self.listeners.clone(),
        }
    }
}

/// A bound in-memory port.
#[derive(Debug)]
pub(crate) struct MemoryListener {
    receiver: mpsc::UnboundedReceiver<DuplexStream>,
}

impl Listener for MemoryListener {
    type Stream = DuplexStream;

    async fn accept(&mut self) -> io::Result<DuplexStream> {
        // `recv` is cancel-safe, as the trait requires.
        self.receiver
            .recv()
            .await
            .ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "network gone"))
    }
}

impl Transport for MemoryNet {
    type Stream = DuplexStream;
    type Listener = MemoryListener;

    async fn bind(&self, port: u16) -> io::Result<MemoryListener> {
        let (sender, receiver) = mpsc::unbounded_channel();
        let mut listeners = self.listeners.borrow_mut();
        let key = (self.host.clone(), port);
        if listeners.get(&key).is_some_and(|old| !old.is_closed()) {
            return Err(io::Error::new(io::ErrorKind::AddrInUse, "port bound"));
        }
        listeners.insert(key, sender);
        Ok(MemoryListener { receiver })
    }

    async fn connect(&self, host: &str, port: u16) -> io::Result<DuplexStream> {
        let refused = || io::Error::new(io::ErrorKind::ConnectionRefused, "nobody listens");
        let listeners = self.listeners.borrow();
        let sender = listeners
            .get(&(host.to_owned(), port))
            .ok_or_else(refused)?;
        let (client, server) = tokio::io::duplex(PIPE_BYTES);
        sender.send(server).map_err(|_| refused())?;
        Ok(client)
    }
}
