//! A run's trace in the Chrome trace-event format (the JSON object form, `traceEvents` and
//! `displayTimeUnit`), which Perfetto (ui.perfetto.dev) and chrome://tracing open as a timeline.
//!
//! Each host is one process (`pid`) named by a `process_name` metadata event; inside it, thread
//! 0 carries the host's events as instants (`"ph":"i"`) and further threads ("lanes") carry its
//! spans as complete events (`"ph":"X"`): sagas with their steps nested inside, moves per axis,
//! leases per axis, requests served by an edge adapter, the gateway's upstream calls, a client's
//! orders and move requests, and the harness's faults. Spans on one lane never overlap (a span
//! that would overlap one already there opens another lane), so every lane is well nested.
//! Faults and oracle violations are also global instants (`"s":"g"`), drawn across every track.
//!
//! Spans are read from the trace by [`SPAN_RULES`]: a begin event and its end events, matched
//! on the same host by key fields. The services log when a saga step ends, not when it begins,
//! so a step's span runs from the saga's previous step (or its start) to its outcome. A span
//! still open when its host crashes ends at the crash; one open at the end of the run ends
//! there; both say so in their args. The canonical trace (`trace.rs`) stays what the hash and
//! the oracles read; this module only reads it, and owns nothing but the picture of it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::report::OracleReport;
use crate::trace::{HARNESS_HOST, TraceEvent};

/// How a kind of span is found in the trace.
#[derive(Debug)]
pub struct SpanRule {
    /// The span's category (`cat`), and its name unless `name_field` says more.
    pub category: &'static str,
    /// Events that open the span.
    pub begin: &'static [&'static str],
    /// Events that close it.
    pub end: &'static [&'static str],
    /// Fields that must agree between the begin and the end (on the same host).
    pub key: &'static [&'static str],
    /// A field of the begin event appended to the span's name (`saga 42`, `move a`).
    pub name_field: Option<&'static str>,
    /// The lane: this text, followed by the value of `lane_field` when given.
    pub lane: &'static str,
    pub lane_field: Option<&'static str>,
    /// Events that end one step inside the span and begin the next: (event, name prefix); the
    /// step is named by the event's `step` field.
    pub steps: &'static [(&'static str, &'static str)],
    /// Whether several spans of one key may be open at once (matched first in, first out);
    /// otherwise a begin for an open key is an instant.
    pub concurrent: bool,
}

/// Every span kind the export knows, from the services' events (see each service's module
/// header for its events and fields).
pub const SPAN_RULES: &[SpanRule] = &[
    SpanRule {
        category: "saga",
        begin: &["saga_started", "saga_resumed", "saga_owner_claimed"],
        end: &[
            "saga_completed",
            "saga_compensated",
            "saga_ownership_lost",
            "saga_invalid",
        ],
        key: &["order"],
        name_field: Some("order"),
        lane: "sagas",
        lane_field: None,
        steps: &[("saga_step", ""), ("saga_compensated_step", "undo ")],
        concurrent: false,
    },
    SpanRule {
        category: "move",
        begin: &["move_accepted"],
        end: &["move_completed", "move_aborted", "move_interrupted"],
        key: &["axis", "request_id"],
        name_field: Some("axis"),
        lane: "moves ",
        lane_field: Some("axis"),
        steps: &[],
        concurrent: false,
    },
    SpanRule {
        category: "lease",
        begin: &["lease_granted"],
        end: &["lease_released", "lease_expired"],
        key: &["axis", "token"],
        name_field: Some("axis"),
        lane: "leases ",
        lane_field: Some("axis"),
        steps: &[],
        concurrent: false,
    },
    SpanRule {
        category: "rpc",
        begin: &["upstream_received"],
        end: &["upstream_answered"],
        key: &["edge", "route", "path"],
        name_field: Some("path"),
        lane: "requests served",
        lane_field: None,
        steps: &[],
        concurrent: true,
    },
    SpanRule {
        category: "rpc",
        begin: &["move_requested"],
        end: &["move_succeeded", "move_failed"],
        key: &["request_id"],
        name_field: Some("axis"),
        lane: "move requests",
        lane_field: None,
        steps: &[],
        concurrent: false,
    },
    SpanRule {
        category: "order",
        begin: &["order_submitted"],
        end: &["order_finished", "order_given_up"],
        key: &["order"],
        name_field: Some("order"),
        lane: "orders",
        lane_field: None,
        steps: &[],
        concurrent: false,
    },
    SpanRule {
        category: "fault",
        begin: &[FAULT_INJECTED],
        end: &["fault_healed"],
        key: &["kind", "target"],
        name_field: Some("target"),
        lane: "faults",
        lane_field: None,
        steps: &[],
        concurrent: true,
    },
];

/// An event that closes a span of its own length, given in a field of it (milliseconds): the
/// gateway's `breaker_outcome` ends each call to an upstream and says how long it took.
const DURATION_RULES: &[(&str, &str, &str)] = &[("breaker_outcome", "duration_ms", "breaker")];
const DURATION_LANE: &str = "upstream calls";

const FAULT_INJECTED: &str = "fault_injected";
/// Fault kinds that end their target host's tasks: its open spans end at the fault.
const HOST_ENDING_FAULT_KINDS: &[&str] = &["crash", "restart"];
/// The process that carries oracle violations.
pub const ORACLES_TRACK: &str = "oracles";

/// What the export reads.
#[derive(Debug)]
pub struct ExportInput<'a> {
    pub scenario: &'a str,
    pub seed: u64,
    /// Hosts in the order their tracks should appear; hosts the trace has beyond these follow
    /// in the order they first appear.
    pub hosts: &'a [String],
    pub events: &'a [TraceEvent],
    /// Every oracle's result; those with a first violation become instants.
    pub oracles: &'a [OracleReport],
    /// The end of the run: spans still open end here.
    pub end: Duration,
}

/// The whole file (Chrome's JSON object format).
#[derive(Debug, Serialize)]
pub struct ChromeTrace {
    #[serde(rename = "traceEvents")]
    pub trace_events: Vec<ChromeEvent>,
    #[serde(rename = "displayTimeUnit")]
    pub display_time_unit: &'static str,
    #[serde(rename = "otherData")]
    pub other_data: Map<String, Value>,
}

/// One trace event; `ts` and `dur` in microseconds, as the format wants.
#[derive(Debug, Clone, Serialize)]
pub struct ChromeEvent {
    pub name: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub cat: &'static str,
    pub ph: &'static str,
    pub ts: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dur: Option<f64>,
    pub pid: u32,
    pub tid: u32,
    /// An instant's scope: `t` (its thread) or `g` (global: drawn across every track).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s: Option<&'static str>,
    pub args: Map<String, Value>,
}

/// The run as a Chrome trace.
pub fn chrome_trace(input: &ExportInput<'_>) -> ChromeTrace {
    let mut hosts: Vec<String> = input.hosts.to_vec();
    let add_host = |host: &str, hosts: &mut Vec<String>| {
        if !hosts.iter().any(|h| h == host) {
            hosts.push(host.to_owned());
        }
    };
    for event in input.events {
        add_host(&event.host, &mut hosts);
    }
    add_host(HARNESS_HOST, &mut hosts);
    let violations: Vec<&OracleReport> = input
        .oracles
        .iter()
        .filter(|o| o.first_violation.is_some())
        .collect();
    if !violations.is_empty() {
        add_host(ORACLES_TRACK, &mut hosts);
    }
    let pid_of = |host: &str| -> u32 {
        let index = hosts
            .iter()
            .position(|h| h == host)
            .expect("hosts collected");
        u32::try_from(index + 1).expect("hosts are few")
    };

    let mut spans = Spans::default();
    let mut instants: Vec<ChromeEvent> = Vec::new();
    for event in input.events {
        let fault = event.name == FAULT_INJECTED;
        // A fault opens its span and is a global instant as well.
        if !spans.take(event) || fault {
            instants.push(instant(event, pid_of(&event.host), fault));
        }
        if fault
            && let (Some(kind), Some(target)) = (event.field("kind"), event.field("target"))
            && HOST_ENDING_FAULT_KINDS.contains(&kind)
        {
            spans.close_host(target, event.t, &format!("{kind} of {target}"));
        }
    }
    spans.close_all(input.end);
    for oracle in violations {
        let violation = oracle.first_violation.as_ref().expect("filtered");
        let mut args = Map::new();
        args.insert("oracle".into(), oracle.id.clone().into());
        args.insert("statement".into(), oracle.statement.clone().into());
        args.insert("detail".into(), violation.detail.clone().into());
        args.insert(
            "expected".into(),
            serde_json::to_value(oracle.expected).expect("an expectation serializes"),
        );
        instants.push(ChromeEvent {
            name: format!("{} violated", oracle.id),
            cat: "oracle",
            ph: "i",
            ts: micros(violation.t),
            dur: None,
            pid: pid_of(ORACLES_TRACK),
            tid: 0,
            s: Some("g"),
            args,
        });
    }

    // Lanes: per host and lane name, each span on the first lane that is free at its start.
    let mut lanes: BTreeMap<(u32, String), Vec<Vec<Span>>> = BTreeMap::new();
    let mut finished = std::mem::take(&mut spans.finished);
    finished.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
    for span in finished {
        let rows = lanes
            .entry((pid_of(&span.host), span.lane.clone()))
            .or_default();
        match rows
            .iter_mut()
            .find(|row| row.last().is_none_or(|last| last.end <= span.start))
        {
            Some(row) => row.push(span),
            None => rows.push(vec![span]),
        }
    }

    let mut metadata = Vec::new();
    for host in &hosts {
        let pid = pid_of(host);
        metadata.push(meta("process_name", pid, 0, host));
        metadata.push(meta_sort("process_sort_index", pid, 0, pid));
        metadata.push(meta("thread_name", pid, 0, "events"));
    }
    let mut tracks: BTreeMap<(u32, u32), Vec<ChromeEvent>> = BTreeMap::new();
    for event in instants {
        tracks
            .entry((event.pid, event.tid))
            .or_default()
            .push(event);
    }
    let mut next_tid: BTreeMap<u32, u32> = BTreeMap::new();
    for ((pid, lane), rows) in lanes {
        let count = rows.len();
        for (k, row) in rows.into_iter().enumerate() {
            let tid = next_tid.entry(pid).or_insert(0);
            *tid += 1;
            let tid = *tid;
            let name = if count == 1 {
                lane.clone()
            } else {
                format!("{lane} #{}", k + 1)
            };
            metadata.push(meta("thread_name", pid, tid, &name));
            metadata.push(meta_sort("thread_sort_index", pid, tid, tid));
            let events = tracks.entry((pid, tid)).or_default();
            for span in row {
                span.emit(pid, tid, events);
            }
        }
    }
    let mut trace_events = metadata;
    for (_, mut events) in tracks {
        // In time order; a parent before the children that start with it.
        events.sort_by(|a, b| {
            a.ts.total_cmp(&b.ts)
                .then(b.dur.unwrap_or(0.0).total_cmp(&a.dur.unwrap_or(0.0)))
        });
        trace_events.extend(events);
    }
    let mut other_data = Map::new();
    other_data.insert("scenario".into(), input.scenario.into());
    other_data.insert("seed".into(), input.seed.into());
    other_data.insert("servocell".into(), env!("CARGO_PKG_VERSION").into());
    ChromeTrace {
        trace_events,
        display_time_unit: "ms",
        other_data,
    }
}

fn micros(t: Duration) -> f64 {
    t.as_nanos() as f64 / 1e3
}

fn fields_args(event: &TraceEvent) -> Map<String, Value> {
    event
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect()
}

fn instant(event: &TraceEvent, pid: u32, global: bool) -> ChromeEvent {
    let name = match (event.field("kind"), event.field("target")) {
        (Some(kind), Some(target)) if event.name == FAULT_INJECTED => {
            format!("{FAULT_INJECTED} {kind} {target}")
        }
        _ => event.name.clone(),
    };
    ChromeEvent {
        name,
        cat: if event.name == FAULT_INJECTED {
            "fault"
        } else {
            "event"
        },
        ph: "i",
        ts: micros(event.t),
        dur: None,
        pid,
        tid: 0,
        s: Some(if global { "g" } else { "t" }),
        args: fields_args(event),
    }
}

fn meta(kind: &str, pid: u32, tid: u32, name: &str) -> ChromeEvent {
    let mut args = Map::new();
    args.insert("name".into(), name.into());
    ChromeEvent {
        name: kind.to_owned(),
        cat: "",
        ph: "M",
        ts: 0.0,
        dur: None,
        pid,
        tid,
        s: None,
        args,
    }
}

fn meta_sort(kind: &str, pid: u32, tid: u32, index: u32) -> ChromeEvent {
    let mut args = Map::new();
    args.insert("sort_index".into(), index.into());
    ChromeEvent {
        args,
        ..meta(kind, pid, tid, "")
    }
}

/// A span found in the trace, with the steps inside it.
#[derive(Debug, Clone)]
struct Span {
    host: String,
    lane: String,
    category: &'static str,
    name: String,
    start: Duration,
    end: Duration,
    args: Map<String, Value>,
    children: Vec<Span>,
}

impl Span {
    fn emit(self, pid: u32, tid: u32, out: &mut Vec<ChromeEvent>) {
        out.push(ChromeEvent {
            name: self.name,
            cat: self.category,
            ph: "X",
            ts: micros(self.start),
            dur: Some(micros(self.end - self.start)),
            pid,
            tid,
            s: None,
            args: self.args,
        });
        for child in self.children {
            child.emit(pid, tid, out);
        }
    }
}

#[derive(Debug)]
struct Open {
    rule: usize,
    key: Vec<String>,
    span: Span,
    /// Where the next step begins.
    step_from: Duration,
}

#[derive(Debug, Default)]
struct Spans {
    /// Open spans per host, in the order they opened.
    open: BTreeMap<String, Vec<Open>>,
    finished: Vec<Span>,
}

impl Spans {
    /// Takes `event` into a span (as its begin, end or a step); false when no span wants it.
    fn take(&mut self, event: &TraceEvent) -> bool {
        if let Some((_, duration_field, name_field)) = DURATION_RULES
            .iter()
            .find(|(name, _, _)| *name == event.name)
            && let Some(ms) = event.field_f64(duration_field)
        {
            let length = Duration::from_secs_f64(ms.max(0.0) / 1e3);
            let name = event.field(name_field).unwrap_or("upstream");
            self.finished.push(Span {
                host: event.host.clone(),
                lane: DURATION_LANE.to_owned(),
                category: "rpc",
                name: format!("call {name}"),
                start: event.t.saturating_sub(length),
                end: event.t,
                args: with_end(Map::new(), event),
                children: Vec::new(),
            });
            return true;
        }
        for (index, rule) in SPAN_RULES.iter().enumerate() {
            let Some(key) = key_of(rule, event) else {
                continue;
            };
            let open = self.open.entry(event.host.clone()).or_default();
            let position = open.iter().position(|o| o.rule == index && o.key == key);
            if rule.begin.contains(&event.name.as_str()) {
                if position.is_some() && !rule.concurrent {
                    return false;
                }
                let lane = match rule.lane_field.and_then(|f| event.field(f)) {
                    Some(value) => format!("{}{value}", rule.lane),
                    None => rule.lane.trim_end().to_owned(),
                };
                let name = match rule.name_field.and_then(|f| event.field(f)) {
                    Some(value) => format!("{} {value}", rule.category),
                    None => rule.category.to_owned(),
                };
                let mut args = Map::new();
                args.insert("begin".into(), event.name.clone().into());
                args.extend(fields_args(event));
                open.push(Open {
                    rule: index,
                    key,
                    span: Span {
                        host: event.host.clone(),
                        lane,
                        category: rule.category,
                        name,
                        start: event.t,
                        end: event.t,
                        args,
                        children: Vec::new(),
                    },
                    step_from: event.t,
                });
                return true;
            }
            let Some(position) = position else {
                continue;
            };
            if rule.end.contains(&event.name.as_str()) {
                let mut done = open.remove(position);
                done.span.end = event.t;
                done.span.args = with_end(done.span.args, event);
                self.finished.push(done.span);
                return true;
            }
            if let Some((_, prefix)) = rule.steps.iter().find(|(name, _)| *name == event.name) {
                let current = &mut open[position];
                let step = event.field("step").unwrap_or(event.name.as_str());
                current.span.children.push(Span {
                    host: event.host.clone(),
                    lane: current.span.lane.clone(),
                    category: "step",
                    name: format!("{prefix}{step}"),
                    start: current.step_from,
                    end: event.t,
                    args: fields_args(event),
                    children: Vec::new(),
                });
                current.step_from = event.t;
                return true;
            }
        }
        false
    }

    /// Ends every open span of `host` at `t`: its tasks died with it.
    fn close_host(&mut self, host: &str, t: Duration, why: &str) {
        for open in self.open.remove(host).unwrap_or_default() {
            let mut span = open.span;
            span.end = t;
            span.args.insert("ended_by".into(), why.into());
            self.finished.push(span);
        }
    }

    fn close_all(&mut self, end: Duration) {
        let hosts: Vec<String> = self.open.keys().cloned().collect();
        for host in hosts {
            for open in self.open.remove(&host).unwrap_or_default() {
                let mut span = open.span;
                span.end = end.max(span.start);
                span.args
                    .insert("ended_by".into(), "still open at the end of the run".into());
                self.finished.push(span);
            }
        }
    }
}

/// The end event's name and fields, under `end` and `end_fields`.
fn with_end(mut args: Map<String, Value>, event: &TraceEvent) -> Map<String, Value> {
    args.insert("end".into(), event.name.clone().into());
    args.insert("end_fields".into(), Value::Object(fields_args(event)));
    args
}

/// The key of `event` under `rule`, when the event is one of the rule's and has every key field.
fn key_of(rule: &SpanRule, event: &TraceEvent) -> Option<Vec<String>> {
    let name = event.name.as_str();
    let relevant = rule.begin.contains(&name)
        || rule.end.contains(&name)
        || rule.steps.iter().any(|(step, _)| *step == name);
    if !relevant {
        return None;
    }
    rule.key
        .iter()
        .map(|k| event.field(k).map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::test_event;

    fn export(events: &[TraceEvent], end_ms: u64) -> ChromeTrace {
        chrome_trace(&ExportInput {
            scenario: "unit",
            seed: 1,
            hosts: &[],
            events,
            oracles: &[],
            end: Duration::from_millis(end_ms),
        })
    }

    fn spans(trace: &ChromeTrace) -> Vec<(&str, f64, f64)> {
        trace
            .trace_events
            .iter()
            .filter(|e| e.ph == "X")
            .map(|e| (e.name.as_str(), e.ts, e.dur.unwrap()))
            .collect()
    }

    // Goal: a saga's steps are nested inside it, each from the previous step to its outcome.
    // Method: a saga of two steps on one host; read back the spans.
    #[test]
    fn saga_steps_nest_inside_the_saga() {
        let events = [
            test_event(10, "orders-1", "saga_started", &[("order", "7")]),
            test_event(
                15,
                "orders-1",
                "saga_step",
                &[("order", "7"), ("step", "reserve_part")],
            ),
            test_event(
                25,
                "orders-1",
                "saga_step",
                &[("order", "7"), ("step", "move")],
            ),
            test_event(30, "orders-1", "saga_completed", &[("order", "7")]),
        ];
        let trace = export(&events, 100);
        assert_eq!(
            spans(&trace),
            [
                ("saga 7", 10_000.0, 20_000.0),
                ("reserve_part", 10_000.0, 5_000.0),
                ("move", 15_000.0, 10_000.0)
            ]
        );
    }

    // Goal: a host's crash ends its open spans, and overlapping spans go to separate lanes.
    // Method: two moves overlapping on two axes, a crash of the host in the middle of one.
    #[test]
    fn a_crash_ends_the_hosts_spans_and_overlaps_take_lanes() {
        let m = |axis: &str| [("axis", axis.to_owned()), ("request_id", "1".to_owned())];
        let f = |fields: &[(&str, String)]| {
            fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect::<Vec<_>>()
        };
        let mut a = test_event(0, "motion-1", "move_accepted", &[]);
        a.fields = f(&m("a"));
        let mut b = test_event(5, "motion-1", "move_accepted", &[]);
        b.fields = f(&m("b"));
        let mut done = test_event(8, "motion-1", "move_completed", &[]);
        done.fields = f(&m("a"));
        let crash = test_event(
            20,
            HARNESS_HOST,
            FAULT_INJECTED,
            &[("kind", "crash"), ("target", "motion-1")],
        );
        let trace = export(&[a, b, done, crash], 100);
        let x: Vec<&ChromeEvent> = trace.trace_events.iter().filter(|e| e.ph == "X").collect();
        let b_span = x.iter().find(|e| e.name == "move b").expect("move b");
        assert_eq!(b_span.dur, Some(15_000.0));
        assert_eq!(b_span.args["ended_by"], "crash of motion-1");
        let a_span = x.iter().find(|e| e.name == "move a").expect("move a");
        assert_ne!(a_span.tid, b_span.tid, "moves of two axes, two lanes");
        let fault = trace
            .trace_events
            .iter()
            .find(|e| e.cat == "fault" && e.ph == "i")
            .expect("a fault instant");
        assert_eq!(fault.s, Some("g"));
    }
}
