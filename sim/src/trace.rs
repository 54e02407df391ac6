//! The canonical trace of a run, and its hash.
//!
//! Every state change worth judging is one [`TraceEvent`]: simulated time, the host it happened
//! on, an event name and its fields in the order they were written. Services emit theirs as
//! `tracing` events with an `event` field (they know nothing of this module); [`TraceSubscriber`]
//! captures them inside turmoil's `node` span, which names the host. The harness records its own
//! events (faults, drive watchdog trips) directly with [`Trace::record`].
//!
//! The hash is SHA-256 over the canonical text of every event, one line each
//! (`<t_ns> <host> <event> k=v ...`), so two runs agree on the hash exactly when they agree on
//! every event, byte for byte. The trace owns the events; oracles read them, and never write.

use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tracing::field::{Field, Visit};
use tracing::span;

/// Upper bound on recorded events: a run that emits more is broken (a loop logging each tick).
pub const TRACE_EVENT_COUNT_MAX: usize = 5_000_000;

/// Host name for events the harness records itself.
pub const HARNESS_HOST: &str = "harness";

/// One event of the trace.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceEvent {
    pub t: Duration,
    pub host: String,
    pub name: String,
    pub fields: Vec<(String, String)>,
}

impl TraceEvent {
    /// The value of a field, if the event has it.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A field parsed as a number, if present and numeric.
    pub fn field_f64(&self, key: &str) -> Option<f64> {
        self.field(key)?.parse().ok()
    }

    pub fn field_u64(&self, key: &str) -> Option<u64> {
        self.field(key)?.parse().ok()
    }

    /// A field an event of this name always carries: its absence is a broken contract between a
    /// service and the oracles, so it panics naming the event.
    pub fn required(&self, key: &str) -> &str {
        self.field(key)
            .unwrap_or_else(|| panic!("{} event without {key}: {self}", self.name))
    }

    /// A numeric field an event of this name always carries (see [`TraceEvent::required`]).
    pub fn required_u64(&self, key: &str) -> u64 {
        self.field_u64(key)
            .unwrap_or_else(|| panic!("{} event without a numeric {key}: {self}", self.name))
    }
}

impl fmt::Display for TraceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>12} {} {}", self.t.as_nanos(), self.host, self.name)?;
        for (key, value) in &self.fields {
            write!(f, " {key}={value}")?;
        }
        Ok(())
    }
}

/// The events of a run in the order they happened, and the running hash over them.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    events: Vec<TraceEvent>,
    hasher: Sha256,
}

impl Trace {
    pub fn record(&mut self, event: TraceEvent) {
        assert!(
            self.events.len() < TRACE_EVENT_COUNT_MAX,
            "trace exceeds {TRACE_EVENT_COUNT_MAX} events: something logs on every tick"
        );
        let mut line = event.to_string();
        line.push('\n');
        self.hasher.update(line.as_bytes());
        self.events.push(event);
    }

    pub fn events(&self) -> &[TraceEvent] {
        &self.events
    }

    /// The hash of the events so far, as 32 hex digits (the first 128 bits of SHA-256).
    pub fn hash(&self) -> String {
        let digest = self.hasher.clone().finalize();
        let mut hex = String::with_capacity(32);
        for byte in &digest[..16] {
            write!(hex, "{byte:02x}").expect("writing to a String cannot fail");
        }
        hex
    }
}

/// A trace shared between the harness and the `tracing` subscriber that feeds it.
pub type SharedTrace = Arc<Mutex<Trace>>;

/// A `tracing` subscriber that turns service events carrying an `event` field into trace
/// events.
///
/// The host is the `name` of the innermost entered turmoil `node` span; the time is turmoil's
/// simulated clock. Only `node` spans and events with an `event` field are ever built: the rest
/// (turmoil's own per-message logs, free-text logs) are disabled at their callsite and cost
/// nothing. A general-purpose span registry would allocate for each of the `node` spans turmoil
/// opens per host per tick; this subscriber only keeps a small table of host names (a span's id
/// is its host's index in it plus one) and the stack of entered hosts.
#[derive(Debug)]
pub struct TraceSubscriber {
    trace: SharedTrace,
    state: Mutex<SubscriberState>,
}

#[derive(Debug, Default)]
struct SubscriberState {
    hosts: Vec<String>,
    entered: Vec<usize>,
}

/// Upper bound on distinct host names a run may have.
pub const HOST_COUNT_MAX: usize = 1024;

impl TraceSubscriber {
    pub fn new(trace: SharedTrace) -> TraceSubscriber {
        TraceSubscriber {
            trace,
            state: Mutex::new(SubscriberState::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SubscriberState> {
        self.state.lock().expect("trace subscriber lock poisoned")
    }
}

impl tracing::Subscriber for TraceSubscriber {
    fn register_callsite(
        &self,
        metadata: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if self.enabled(metadata) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        if metadata.is_span() {
            metadata.name() == "node"
        } else {
            metadata.fields().field("event").is_some()
        }
    }

    fn new_span(&self, attrs: &span::Attributes<'_>) -> span::Id {
        // turmoil opens one span per host per tick: find its host without allocating, and
        // allocate its name only the first time it is seen.
        let mut state = self.state();
        let mut visitor = SpanHostVisitor {
            hosts: &state.hosts,
            found: None,
            name: None,
        };
        attrs.record(&mut visitor);
        let (found, name) = (visitor.found, visitor.name);
        let name = match found {
            Some(index) => return span::Id::from_u64(index as u64 + 1),
            None => name.unwrap_or_else(|| HARNESS_HOST.to_owned()),
        };
        let index = match state.hosts.iter().position(|h| *h == name) {
            Some(index) => index,
            None => {
                assert!(
                    state.hosts.len() < HOST_COUNT_MAX,
                    "more than {HOST_COUNT_MAX} hosts in one run"
                );
                state.hosts.push(name);
                state.hosts.len() - 1
            }
        };
        span::Id::from_u64(index as u64 + 1)
    }

    fn record(&self, _span: &span::Id, _values: &span::Record<'_>) {}

    fn record_follows_from(&self, _span: &span::Id, _follows: &span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut visitor = FieldVisitor::default();
        event.record(&mut visitor);
        let Some(name) = visitor.event_name.take() else {
            return;
        };
        let host = {
            let state = self.state();
            state
                .entered
                .last()
                .map_or_else(|| HARNESS_HOST.to_owned(), |i| state.hosts[*i].clone())
        };
        let t = turmoil::sim_elapsed().unwrap_or_default();
        let event = TraceEvent {
            t,
            host,
            name,
            fields: visitor.fields,
        };
        self.trace
            .lock()
            .expect("trace lock poisoned")
            .record(event);
    }

    fn enter(&self, span: &span::Id) {
        self.state().entered.push(span.into_u64() as usize - 1);
    }

    fn exit(&self, span: &span::Id) {
        let mut state = self.state();
        let popped = state.entered.pop();
        debug_assert_eq!(
            popped,
            Some(span.into_u64() as usize - 1),
            "spans exit in the order they entered"
        );
    }
}

#[derive(Default)]
struct FieldVisitor {
    event_name: Option<String>,
    fields: Vec<(String, String)>,
}

impl FieldVisitor {
    fn push(&mut self, field: &Field, value: String) {
        match field.name() {
            "event" => self.event_name = Some(value),
            // The free-text message is for humans; the trace keeps only structured fields.
            "message" => {}
            name => self.fields.push((name.to_owned(), value)),
        }
    }
}

impl Visit for FieldVisitor {
    fn record_f64(&mut self, field: &Field, value: f64) {
        // Round-trip exact: the shortest representation that parses back to the same bits.
        self.push(field, format!("{value:?}"));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, value.to_string());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, value.to_string());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, value.to_string());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            return;
        }
        self.push(field, format!("{value:?}"));
    }
}

/// Finds the host a `node` span names (its `name` field) among the hosts already seen; keeps
/// the name only if it is new.
struct SpanHostVisitor<'a> {
    hosts: &'a [String],
    found: Option<usize>,
    name: Option<String>,
}

impl SpanHostVisitor<'_> {
    fn host(&mut self, name: &str) {
        match self.hosts.iter().position(|h| h == name) {
            Some(index) => self.found = Some(index),
            None => self.name = Some(name.to_owned()),
        }
    }
}

impl Visit for SpanHostVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "name" {
            self.host(value);
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "name" {
            self.host(&format!("{value:?}"));
        }
    }
}

/// An event built by hand, `t_ms` milliseconds into a run: for the oracles' unit tests.
#[cfg(test)]
pub(crate) fn test_event(t_ms: u64, host: &str, name: &str, fields: &[(&str, &str)]) -> TraceEvent {
    TraceEvent {
        t: Duration::from_millis(t_ms),
        host: host.to_owned(),
        name: name.to_owned(),
        fields: fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(t_ms: u64, name: &str, fields: &[(&str, &str)]) -> TraceEvent {
        TraceEvent {
            t: Duration::from_millis(t_ms),
            host: "motion-1".into(),
            name: name.into(),
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        }
    }

    // Goal: the hash depends on every byte of every event (time, host, name, field order and
    // value), and equal traces hash equal.
    #[test]
    fn hash_covers_time_host_name_and_fields() {
        let base = vec![event(1, "a", &[("x", "1"), ("y", "2")]), event(2, "b", &[])];
        let hash = |events: &[TraceEvent]| {
            let mut trace = Trace::default();
            events.iter().cloned().for_each(|e| trace.record(e));
            trace.hash()
        };
        let reference = hash(&base);
        assert_eq!(reference, hash(&base));
        assert_eq!(reference.len(), 32);
        let mut later = base.clone();
        later[1].t = Duration::from_nanos(2_000_001);
        let mut other_host = base.clone();
        other_host[0].host = "motion-2".into();
        let mut swapped_fields = base.clone();
        swapped_fields[0].fields.reverse();
        let mut other_value = base.clone();
        other_value[0].fields[0].1 = "10".into();
        for variant in [
            later,
            other_host,
            swapped_fields,
            other_value,
            base[..1].to_vec(),
        ] {
            assert_ne!(hash(&variant), reference, "{variant:?}");
        }
    }

    // Goal: events emitted through `tracing` inside a `node` span are captured with that host
    // and their fields, outside any span with the harness as host; events without an `event`
    // field are not captured.
    #[test]
    fn subscriber_captures_structured_events_with_their_host() {
        let trace = SharedTrace::default();
        tracing::subscriber::with_default(TraceSubscriber::new(trace.clone()), || {
            for host in ["motion-1", "client-1", "motion-1"] {
                let span = tracing::info_span!("node", name = host);
                let _entered = span.enter();
                tracing::info!(
                    event = "move_accepted",
                    axis = "x",
                    target_rad = 1.5_f64,
                    request_id = 7_u64
                );
                tracing::info!("free text is not traced");
            }
            tracing::info!(event = "fault_injected");
        });
        let trace = trace.lock().unwrap();
        let hosts: Vec<&str> = trace.events().iter().map(|e| e.host.as_str()).collect();
        assert_eq!(hosts, ["motion-1", "client-1", "motion-1", HARNESS_HOST]);
        let e = &trace.events()[0];
        assert_eq!(
            (e.host.as_str(), e.name.as_str()),
            ("motion-1", "move_accepted")
        );
        assert_eq!(e.field("axis"), Some("x"));
        assert_eq!(e.field_f64("target_rad"), Some(1.5));
        assert_eq!(e.field_u64("request_id"), Some(7));
    }
}
