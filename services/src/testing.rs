//! Test support shared by the services' unit tests: a trace recorder (the events a test's code
//! emitted, as the simulator's trace would see them), temporary storage roots, and a loopback
//! transport that reports the port a service bound.
//!
//! Fakes only: nothing here judges; each test states what it checks.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::span;

use crate::transport::{TokioListener, TokioTransport, Transport};

/// One recorded event: its `event` name and every other field as text.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TraceEvent {
    pub(crate) name: String,
    pub(crate) fields: BTreeMap<String, String>,
}

impl TraceEvent {
    pub(crate) fn field(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    /// A numeric field; panics if it is absent or not a number (the test expects it).
    pub(crate) fn u64(&self, key: &str) -> u64 {
        let text = self
            .field(key)
            .unwrap_or_else(|| panic!("event {} has no field {key}: {:?}", self.name, self));
        text.parse()
            .unwrap_or_else(|_| panic!("field {key} of {} is not a u64: {text}", self.name))
    }
}

/// What a `Recorder` collected.
#[derive(Clone, Debug, Default)]
pub(crate) struct Trace {
    events: Arc<Mutex<Vec<TraceEvent>>>,
}

impl Trace {
    /// Every event recorded so far, in order.
    pub(crate) fn events(&self) -> Vec<TraceEvent> {
        self.events.lock().expect("test trace lock").clone()
    }

    /// The events named `name`.
    pub(crate) fn named(&self, name: &str) -> Vec<TraceEvent> {
        self.events()
            .into_iter()
            .filter(|event| event.name == name)
            .collect()
    }
}

/// Starts recording the events of this thread until the guard is dropped.
pub(crate) fn record_trace() -> (Trace, tracing::subscriber::DefaultGuard) {
    let trace = Trace::default();
    let guard = tracing::subscriber::set_default(Recorder {
        trace: trace.clone(),
    });
    (trace, guard)
}

/// A minimal `tracing` subscriber that keeps events with an `event` field.
struct Recorder {
    trace: Trace,
}

#[derive(Default)]
struct FieldText {
    name: Option<String>,
    fields: BTreeMap<String, String>,
}

impl Visit for FieldText {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "event" {
            self.name = Some(value.to_owned());
        } else {
            self.fields
                .insert(field.name().to_owned(), value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.fields
            .insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl tracing::Subscriber for Recorder {
    fn enabled(&self, _metadata: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _span: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }

    fn record(&self, _span: &span::Id, _values: &span::Record<'_>) {}

    fn record_follows_from(&self, _span: &span::Id, _follows: &span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut text = FieldText::default();
        event.record(&mut text);
        if let Some(name) = text.name {
            self.trace
                .events
                .lock()
                .expect("test trace lock")
                .push(TraceEvent {
                    name,
                    fields: text.fields,
                });
        }
    }

    fn enter(&self, _span: &span::Id) {}

    fn exit(&self, _span: &span::Id) {}
}

/// A fresh directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub(crate) struct TempRoot(pub(crate) PathBuf);

impl TempRoot {
    pub(crate) fn new(test: &str) -> TempRoot {
        let path =
            std::env::temp_dir().join(format!("servocell-unit-{test}-{}", std::process::id()));
        // A leftover from a killed earlier run with the same pid must not leak into this one.
        let _ = std::fs::remove_dir_all(&path);
        TempRoot(path)
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `TokioTransport` on loopback that tells the test which port `bind(0)` got.
#[derive(Clone, Debug, Default)]
pub(crate) struct PortReporting {
    bound: Rc<Cell<Option<u16>>>,
}

impl PortReporting {
    /// Waits until the service has bound its port, and forgets it (a restarted service binds
    /// again).
    pub(crate) async fn port(&self) -> u16 {
        loop {
            if let Some(port) = self.bound.take() {
                return port;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

impl Transport for PortReporting {
    type Stream = tokio::net::TcpStream;
    type Listener = TokioListener;

    async fn bind(&self, port: u16) -> io::Result<TokioListener> {
        let listener = TokioTransport::loopback().bind(port).await?;
        self.bound.set(Some(listener.local_port()?));
        Ok(listener)
    }

    async fn connect(&self, host: &str, port: u16) -> io::Result<tokio::net::TcpStream> {
        TokioTransport::loopback().connect(host, port).await
    }
}
