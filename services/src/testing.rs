//! Test support shared by the services' unit tests: a trace recorder (the events a test's code
//! emitted, as the simulator's trace would see them), temporary storage roots, and a loopback
//! transport that reports the port a service bound.
//!
//! Fakes only: nothing here judges; each test states what it checks.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Once;
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

/// What `record_trace` collected on this thread.
#[derive(Clone, Debug, Default)]
pub(crate) struct Trace {
    events: Rc<RefCell<Vec<TraceEvent>>>,
}

impl Trace {
    /// Every event recorded so far, in order.
    pub(crate) fn events(&self) -> Vec<TraceEvent> {
        self.events.borrow().clone()
    }

    /// The events named `name`.
    pub(crate) fn named(&self, name: &str) -> Vec<TraceEvent> {
        self.events()
            .into_iter()
            .filter(|event| event.name == name)
            .collect()
    }
}

thread_local! {
    /// Where this thread's events go while a test records them.
    static RECORDING: RefCell<Option<Trace>> = const { RefCell::new(None) };
}

/// Ends the recording of this thread when dropped.
#[derive(Debug)]
pub(crate) struct RecordingGuard(());

impl Drop for RecordingGuard {
    fn drop(&mut self) {
        RECORDING.with(|recording| recording.borrow_mut().take());
    }
}

/// Starts recording the events of this thread until the guard is dropped.
///
/// One global subscriber (installed once) hands each event to the recording of the thread that
/// emitted it. Thread-local *dispatchers* (`tracing::subscriber::set_default`) would be simpler,
/// but tests run on parallel threads, and `tracing` caches each callsite's interest globally:
/// a callsite first hit on a thread without a recorder, while another thread installs one, can
/// stay cached as "never" and silently drop that test's events.
pub(crate) fn record_trace() -> (Trace, RecordingGuard) {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        tracing::subscriber::set_global_default(Recorder)
            .expect("no other global subscriber in the services tests");
    });
    let trace = Trace::default();
    RECORDING.with(|recording| {
        let previous = recording.borrow_mut().replace(trace.clone());
        assert!(previous.is_none(), "one recording per thread at a time");
    });
    (trace, RecordingGuard(()))
}

/// The global subscriber: keeps events with an `event` field, for the thread's recording.
struct Recorder;

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
        RECORDING.with(|recording| {
            let recording = recording.borrow();
            let Some(trace) = recording.as_ref() else {
                return;
            };
            let mut text = FieldText::default();
            event.record(&mut text);
            if let Some(name) = text.name {
                trace.events.borrow_mut().push(TraceEvent {
                    name,
                    fields: text.fields,
                });
            }
        });
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
