//! Test support (test builds only): an in-memory `Transport` for runtime tests on tokio's paused
//! clock, and a trace capture that records events as `sim`'s trace does.
//!
//! Owns `MemoryNet`: hosts are names, a connection is a `tokio::io::duplex` pair handed to the
//! listener bound at `host:port`. Nothing touches the OS, so a test on a paused clock advances
//! time only when every future waits, exactly as simulated time does, and stays deterministic.
//! It does not simulate faults beyond "nobody listens" (connect is refused) and slow handlers.
//! `TraceCapture` keeps every event with an `event` field, its other fields and the tokio time it
//! happened at, while it is the thread's default subscriber.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use tokio::io::DuplexStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};

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

/// One captured event: its `event` name, its other fields in order, and when (ms since the
/// capture started, tokio time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Captured {
    pub(crate) name: String,
    pub(crate) fields: Vec<(String, String)>,
    pub(crate) at_ms: u128,
}

impl Captured {
    pub(crate) fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

#[derive(Default)]
struct FieldsVisitor(Vec<(String, String)>);

impl Visit for FieldsVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
}

/// A tracing layer (subscribers must be `Send + Sync`, hence the mutex; one thread uses it).
struct CaptureLayer {
    events: Arc<Mutex<Vec<Captured>>>,
    start: Instant,
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CaptureLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _context: Context<'_, S>) {
        let mut visitor = FieldsVisitor::default();
        event.record(&mut visitor);
        let mut fields = visitor.0;
        let Some(position) = fields.iter().position(|(key, _)| key == "event") else {
            return;
        };
        let (_, name) = fields.remove(position);
        self.events.lock().expect("one thread").push(Captured {
            name,
            fields,
            at_ms: self.start.elapsed().as_millis(),
        });
    }
}

/// Captures this thread's events until dropped.
pub(crate) struct TraceCapture {
    events: Arc<Mutex<Vec<Captured>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl TraceCapture {
    pub(crate) fn start() -> TraceCapture {
        let events = Arc::new(Mutex::new(Vec::new()));
        let layer = CaptureLayer {
            events: events.clone(),
            start: Instant::now(),
        };
        let guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
        TraceCapture {
            events,
            _guard: guard,
        }
    }

    /// Everything captured so far.
    pub(crate) fn events(&self) -> Vec<Captured> {
        self.events.lock().expect("one thread").clone()
    }
}
