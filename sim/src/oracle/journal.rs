//! Event-store oracles (ES1–ES6): the journal's streams, expected versions, idempotent appends,
//! global order, replay and durability, judged on the journal's own events.
//!
//! Every oracle of this family keeps the same model per journal host, built from the trace
//! alone: the log of decided batches in position order (stream, first version, count, first
//! position, event ids), each stream's next version, the set of stored event ids, and the
//! batches the journal acknowledged. It reads:
//! - `journal_append` (stream, expected, expected_version, head, version_first, count,
//!   position, event_ids): a new batch, appended to the model;
//! - `journal_append_duplicate` (same fields but `head`): a re-send, which must change nothing;
//! - `journal_append_conflict` (stream, expected, expected_version, head, event_ids);
//! - `journal_ack` (stream, version_first, count, position, duplicate): an answer released;
//! - `journal_recovered` (count, head, streams, digest): a restart; batches at or above `head`
//!   were lost (legitimately only if never acknowledged) and the model is cut there.
//!
//! Each oracle reports only the findings of its own rule:
//! - ES1: a new batch starts at its stream's next version (0 for a new stream) and the `head`
//!   the journal names is the model's.
//! - ES2: an `exact` expected version is accepted iff it equals the head it was checked against
//!   (the stream's head for a new batch; the head before the stored batch for a re-send), and a
//!   conflict names the model's head; `no_stream` and `stream_exists` likewise.
//! - ES3: a new batch carries no stored event id (a re-send must not write again); a duplicate
//!   answer names exactly a stored batch (stream, versions, positions, ids).
//! - ES4: each new batch starts exactly at the log's next global position (strictly after the
//!   last, no gap); after a recovery the log continues at the recovered head.
//! - ES5: a recovery rebuilds exactly a prefix of the decided log, cut at a batch boundary:
//!   same event count, same number of streams, same digest (`JournalCore::digest`: FNV-1a 64
//!   over `"<stream> <version> <position> <id>\n"` per event). Kinds and payloads are not in
//!   the trace and so are not compared.
//! - ES6: an acknowledgement names a batch of the model, and every acknowledged batch lies below
//!   the head of every later recovery.
//!
//! In flight at the end: appends decided and never acknowledged may be lost by a later crash;
//! nothing here judges them. A journal that never restarts is judged by ES1–ES4 only.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{FirstViolation, Oracle, Violation};
use crate::trace::TraceEvent;

/// Every oracle of the family, in report order.
pub(crate) fn oracles() -> Vec<Box<dyn Oracle>> {
    Rule::ALL
        .iter()
        .map(|&rule| Box::new(JournalOracle::new(rule)) as Box<dyn Oracle>)
        .collect()
}

/// The rule one oracle of the family judges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    Es1,
    Es2,
    Es3,
    Es4,
    Es5,
    Es6,
}

impl Rule {
    const ALL: [Rule; 6] = [
        Rule::Es1,
        Rule::Es2,
        Rule::Es3,
        Rule::Es4,
        Rule::Es5,
        Rule::Es6,
    ];

    fn id(self) -> &'static str {
        match self {
            Rule::Es1 => "ES1",
            Rule::Es2 => "ES2",
            Rule::Es3 => "ES3",
            Rule::Es4 => "ES4",
            Rule::Es5 => "ES5",
            Rule::Es6 => "ES6",
        }
    }

    fn statement(self) -> &'static str {
        match self {
            Rule::Es1 => "stream versions gapless from 0",
            Rule::Es2 => "exact expected version succeeds iff it equals the head",
            Rule::Es3 => "re-appends are no-ops",
            Rule::Es4 => "global positions strictly increase",
            Rule::Es5 => "replay equals live state",
            Rule::Es6 => "every acknowledged append survives a crash",
        }
    }
}

/// One batch of the model.
#[derive(Clone, Debug, PartialEq)]
struct Batch {
    stream: String,
    version_first: u64,
    position: u64,
    ids: Vec<String>,
}

impl Batch {
    fn end(&self) -> u64 {
        self.position + self.ids.len() as u64
    }
}

/// The model of one journal host (see the module docs).
#[derive(Debug, Default)]
struct Log {
    batches: Vec<Batch>,
    /// Stream → next version.
    next_version: BTreeMap<String, u64>,
    /// Event id → index of its batch.
    ids: BTreeMap<String, usize>,
    /// (position, count) of acknowledged batches still in the model.
    acked: Vec<(u64, u64)>,
}

impl Log {
    fn next_position(&self) -> u64 {
        self.batches.last().map_or(0, Batch::end)
    }

    fn head(&self, stream: &str) -> Option<u64> {
        self.next_version.get(stream).map(|next| next - 1)
    }

    fn push(&mut self, batch: Batch) {
        let index = self.batches.len();
        for id in &batch.ids {
            self.ids.insert(id.clone(), index);
        }
        self.next_version.insert(
            batch.stream.clone(),
            batch.version_first + batch.ids.len() as u64,
        );
        self.batches.push(batch);
    }

    /// The stored batch holding exactly `ids`, if any.
    fn batch_of(&self, ids: &[String]) -> Option<&Batch> {
        let index = *self.ids.get(ids.first()?)?;
        let batch = &self.batches[index];
        (batch.ids == ids).then_some(batch)
    }

    /// Keeps the batches below `head`; returns whether `head` fell on a batch boundary.
    fn cut(&mut self, head: u64) -> bool {
        let keep = self.batches.partition_point(|batch| batch.end() <= head);
        let boundary = self
            .batches
            .get(keep)
            .is_none_or(|batch| batch.position >= head);
        let kept: Vec<Batch> = self.batches.drain(..).take(keep).collect();
        self.next_version.clear();
        self.ids.clear();
        for batch in kept {
            self.push(batch);
        }
        self.acked
            .retain(|(position, count)| position + count <= head);
        boundary
    }

    /// `JournalCore::digest` of the model.
    fn digest(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for batch in &self.batches {
            for (offset, id) in batch.ids.iter().enumerate() {
                let line = format!(
                    "{} {} {} {id}\n",
                    batch.stream,
                    batch.version_first + offset as u64,
                    batch.position + offset as u64
                );
                for byte in line.bytes() {
                    hash ^= u64::from(byte);
                    hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
                }
            }
        }
        hash
    }

    fn stream_count(&self) -> u64 {
        self.next_version.len() as u64
    }
}

/// One oracle of the family: the shared model, and the findings of its rule.
struct JournalOracle {
    rule: Rule,
    logs: BTreeMap<String, Log>,
    first: FirstViolation,
}

fn ids_of(e: &TraceEvent) -> Vec<String> {
    e.required("event_ids")
        .split(',')
        .map(str::to_owned)
        .collect()
}

fn describe_head(head: Option<u64>) -> String {
    head.map_or_else(|| "none (no stream)".to_owned(), |h| h.to_string())
}

/// Whether an expected version of `kind` (with `version` for `exact`) holds on `head`.
fn expected_matches(kind: &str, version: Option<u64>, head: Option<u64>) -> bool {
    match kind {
        "any" => true,
        "no_stream" => head.is_none(),
        "stream_exists" => head.is_some(),
        "exact" => version.is_some() && version == head,
        other => panic!("unknown expected version kind {other}"),
    }
}

impl JournalOracle {
    fn new(rule: Rule) -> JournalOracle {
        JournalOracle {
            rule,
            logs: BTreeMap::new(),
            first: FirstViolation::default(),
        }
    }

    /// Applies the event to the model; returns every finding, tagged with its rule.
    fn observe(log: &mut Log, e: &TraceEvent) -> Vec<(Rule, String)> {
        let mut findings = Vec::new();
        match e.name.as_str() {
            "journal_append" => {
                let stream = e.required("stream").to_owned();
                let version_first = e.required_u64("version_first");
                let position = e.required_u64("position");
                let ids = ids_of(e);
                assert_eq!(
                    ids.len() as u64,
                    e.required_u64("count"),
                    "count and event_ids disagree: {e}"
                );
                let head = log.head(&stream);
                let next = head.map_or(0, |h| h + 1);
                if version_first != next {
                    findings.push((
                        Rule::Es1,
                        format!("stream {stream}: batch at version {version_first}, the stream's next version is {next}"),
                    ));
                }
                let named_head = e.field_u64("head");
                if named_head != head {
                    findings.push((
                        Rule::Es1,
                        format!(
                            "stream {stream}: the journal checked against head {}, the stream's head is {}",
                            describe_head(named_head),
                            describe_head(head)
                        ),
                    ));
                }
                let kind = e.required("expected");
                let expected_version = e.field_u64("expected_version");
                if !expected_matches(kind, expected_version, head) {
                    findings.push((
                        Rule::Es2,
                        format!(
                            "stream {stream}: expected {kind} {} accepted, the head is {}",
                            expected_version.map_or_else(String::new, |v| v.to_string()),
                            describe_head(head)
                        ),
                    ));
                }
                if let Some(id) = ids.iter().find(|id| log.ids.contains_key(*id)) {
                    let stored = &log.batches[log.ids[id]];
                    findings.push((
                        Rule::Es3,
                        format!(
                            "stream {stream}: event {id} written again at position {position}, already stored at position {} of stream {}",
                            stored.position, stored.stream
                        ),
                    ));
                }
                let next_position = log.next_position();
                if position != next_position {
                    findings.push((
                        Rule::Es4,
                        format!("stream {stream}: batch at global position {position}, the log's next position is {next_position}"),
                    ));
                }
                log.push(Batch {
                    stream,
                    version_first,
                    position,
                    ids,
                });
            }
            "journal_append_duplicate" => {
                let stream = e.required("stream");
                let ids = ids_of(e);
                let claimed = Batch {
                    stream: stream.to_owned(),
                    version_first: e.required_u64("version_first"),
                    position: e.required_u64("position"),
                    ids: ids.clone(),
                };
                match log.batch_of(&ids) {
                    Some(stored) if *stored == claimed => {
                        let before = stored.version_first.checked_sub(1);
                        let kind = e.required("expected");
                        let expected_version = e.field_u64("expected_version");
                        if !expected_matches(kind, expected_version, before) {
                            findings.push((
                                Rule::Es2,
                                format!(
                                    "stream {stream}: re-send with expected {kind} {} accepted, the stored batch followed head {}",
                                    expected_version.map_or_else(String::new, |v| v.to_string()),
                                    describe_head(before)
                                ),
                            ));
                        }
                    }
                    stored => findings.push((
                        Rule::Es3,
                        format!(
                            "stream {stream}: duplicate answered as version {} position {} of ids {ids:?}, stored: {stored:?}",
                            claimed.version_first, claimed.position
                        ),
                    )),
                }
            }
            "journal_append_conflict" => {
                let stream = e.required("stream");
                let ids = ids_of(e);
                let head = log.head(stream);
                let checked = match log.batch_of(&ids) {
                    Some(stored) if stored.stream == stream => stored.version_first.checked_sub(1),
                    _ => head,
                };
                let kind = e.required("expected");
                let expected_version = e.field_u64("expected_version");
                if expected_matches(kind, expected_version, checked) {
                    findings.push((
                        Rule::Es2,
                        format!(
                            "stream {stream}: expected {kind} {} refused, but the head it is checked against is {}",
                            expected_version.map_or_else(String::new, |v| v.to_string()),
                            describe_head(checked)
                        ),
                    ));
                }
                let named = e.field_u64("head");
                if named != head {
                    findings.push((
                        Rule::Es2,
                        format!(
                            "stream {stream}: conflict names head {}, the head is {}",
                            describe_head(named),
                            describe_head(head)
                        ),
                    ));
                }
            }
            "journal_ack" => {
                let stream = e.required("stream");
                let position = e.required_u64("position");
                let count = e.required_u64("count");
                let version_first = e.required_u64("version_first");
                let known = log
                    .batches
                    .binary_search_by_key(&position, |batch| batch.position)
                    .ok()
                    .map(|index| &log.batches[index])
                    .filter(|batch| {
                        batch.stream == stream
                            && batch.version_first == version_first
                            && batch.ids.len() as u64 == count
                    });
                if known.is_none() {
                    findings.push((
                        Rule::Es6,
                        format!("stream {stream}: acknowledged version {version_first} position {position} count {count}, which the log does not hold"),
                    ));
                } else {
                    log.acked.push((position, count));
                }
            }
            "journal_recovered" => {
                let head = e.required_u64("head");
                let decided = log.next_position();
                let lost: Vec<(u64, u64)> = log
                    .acked
                    .iter()
                    .copied()
                    .filter(|(position, count)| position + count > head)
                    .collect();
                for (position, count) in lost {
                    findings.push((
                        Rule::Es6,
                        format!("acknowledged batch at positions {position}..{} lost: recovered head {head}", position + count),
                    ));
                }
                if head > decided {
                    findings.push((
                        Rule::Es5,
                        format!(
                            "recovered head {head}, but only {decided} events were ever appended"
                        ),
                    ));
                }
                if !log.cut(head) {
                    findings.push((
                        Rule::Es5,
                        format!("recovered head {head} cuts a batch in two"),
                    ));
                }
                let count = e.required_u64("count");
                let streams = e.required_u64("streams");
                let digest = e.required("digest");
                let expected_digest = format!("{:016x}", log.digest());
                if count != head || streams != log.stream_count() || digest != expected_digest {
                    findings.push((
                        Rule::Es5,
                        format!(
                            "recovered {count} events in {streams} streams (digest {digest}), the log up to head {head} has {} in {} (digest {expected_digest})",
                            log.next_position(),
                            log.stream_count()
                        ),
                    ));
                }
            }
            _ => {}
        }
        findings
    }
}

impl Oracle for JournalOracle {
    fn id(&self) -> &'static str {
        self.rule.id()
    }
    fn statement(&self) -> &'static str {
        self.rule.statement()
    }
    fn on_event(&mut self, e: &TraceEvent) {
        if !e.name.starts_with("journal_") {
            return;
        }
        let log = self.logs.entry(e.host.clone()).or_default();
        let findings = JournalOracle::observe(log, e);
        for (rule, detail) in findings {
            if rule == self.rule {
                let host = &e.host;
                self.first.record(e.t, || format!("{host}: {detail}"));
            }
        }
    }
    fn finish(&mut self, _end: Duration) -> Option<Violation> {
        self.first.take()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use services::durable_server::{DurableCore, ReplyTo, WriteMode};
    use services::journal::{
        EventData, EventId, ExpectedVersion, JournalConfig, JournalCore, JournalRequest, StreamName,
    };

    use super::*;
    use crate::trace::{Trace, TraceSubscriber};

    fn event(t_ms: u64, name: &str, fields: &[(&str, String)]) -> TraceEvent {
        TraceEvent {
            t: Duration::from_millis(t_ms),
            host: "journal".to_owned(),
            name: name.to_owned(),
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        }
    }

    fn id(n: u128) -> String {
        format!("{n:032x}")
    }

    fn ids(list: &[u128]) -> String {
        list.iter().map(|&n| id(n)).collect::<Vec<_>>().join(",")
    }

    /// A `journal_append`: `expected` is "any", "no_stream", "stream_exists" or a number (exact).
    fn append(
        t: u64,
        stream: &str,
        expected: &str,
        head: Option<u64>,
        version_first: u64,
        position: u64,
        event_ids: &[u128],
    ) -> TraceEvent {
        let mut fields = vec![("stream", stream.to_owned())];
        fields.extend(expected_fields(expected));
        if let Some(head) = head {
            fields.push(("head", head.to_string()));
        }
        fields.extend([
            ("version_first", version_first.to_string()),
            ("count", event_ids.len().to_string()),
            ("position", position.to_string()),
            ("event_ids", ids(event_ids)),
        ]);
        event(t, "journal_append", &fields)
    }

    fn expected_fields(expected: &str) -> Vec<(&'static str, String)> {
        match expected.parse::<u64>() {
            Ok(version) => vec![
                ("expected", "exact".to_owned()),
                ("expected_version", version.to_string()),
            ],
            Err(_) => vec![("expected", expected.to_owned())],
        }
    }

    fn duplicate(
        t: u64,
        stream: &str,
        expected: &str,
        version_first: u64,
        position: u64,
        event_ids: &[u128],
    ) -> TraceEvent {
        let mut fields = vec![("stream", stream.to_owned())];
        fields.extend(expected_fields(expected));
        fields.extend([
            ("version_first", version_first.to_string()),
            ("count", event_ids.len().to_string()),
            ("position", position.to_string()),
            ("event_ids", ids(event_ids)),
        ]);
        event(t, "journal_append_duplicate", &fields)
    }

    fn conflict(
        t: u64,
        stream: &str,
        expected: &str,
        head: Option<u64>,
        event_ids: &[u128],
    ) -> TraceEvent {
        let mut fields = vec![("stream", stream.to_owned())];
        fields.extend(expected_fields(expected));
        if let Some(head) = head {
            fields.push(("head", head.to_string()));
        }
        fields.push(("event_ids", ids(event_ids)));
        event(t, "journal_append_conflict", &fields)
    }

    fn ack(t: u64, stream: &str, version_first: u64, position: u64, count: u64) -> TraceEvent {
        event(
            t,
            "journal_ack",
            &[
                ("stream", stream.to_owned()),
                ("version_first", version_first.to_string()),
                ("count", count.to_string()),
                ("position", position.to_string()),
                ("duplicate", "false".to_owned()),
            ],
        )
    }

    /// A `journal_recovered` whose count, streams and digest describe `log` (events as
    /// (stream, version, id) in position order) cut at `head`.
    fn recovered(t: u64, head: u64, log: &[(&str, u64, u128)]) -> TraceEvent {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut streams = std::collections::BTreeSet::new();
        for (position, (stream, version, n)) in log.iter().enumerate().take(head as usize) {
            streams.insert(*stream);
            for byte in format!("{stream} {version} {position} {}\n", id(*n)).bytes() {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        event(
            t,
            "journal_recovered",
            &[
                ("count", head.to_string()),
                ("head", head.to_string()),
                ("streams", streams.len().to_string()),
                ("truncated_bytes", "0".to_owned()),
                ("digest", format!("{hash:016x}")),
            ],
        )
    }

    fn judge(rule: Rule, events: &[TraceEvent]) -> Option<Violation> {
        let mut oracle = JournalOracle::new(rule);
        events.iter().for_each(|e| oracle.on_event(e));
        oracle.finish(Duration::from_secs(60))
    }

    /// A correct history: appends of each expected kind, a conflict, a re-send, acks, an
    /// unacknowledged batch lost in a crash, a recovery and appends after it.
    fn correct_history() -> Vec<TraceEvent> {
        let log = [("a", 0, 1), ("a", 1, 2), ("b", 0, 3), ("a", 2, 4)];
        vec![
            recovered(0, 0, &[]),
            append(1, "a", "no_stream", None, 0, 0, &[1, 2]),
            ack(2, "a", 0, 0, 2),
            append(3, "b", "any", None, 0, 2, &[3]),
            conflict(4, "a", "0", Some(1), &[4]),
            append(5, "a", "1", Some(1), 2, 3, &[4]),
            ack(6, "b", 0, 2, 1),
            duplicate(7, "a", "no_stream", 0, 0, &[1, 2]),
            // The re-send of [4] with its original expected version, and a re-send with a wrong
            // one: checked against the head before the stored batch (1), not the head now.
            duplicate(8, "a", "1", 2, 3, &[4]),
            conflict(9, "a", "2", Some(2), &[4]),
            // [4] was never acknowledged: a crash may take it.
            recovered(10, 3, &log),
            append(11, "a", "stream_exists", Some(1), 2, 3, &[5]),
            ack(12, "a", 2, 3, 1),
            recovered(13, 4, &[("a", 0, 1), ("a", 1, 2), ("b", 0, 3), ("a", 2, 5)]),
        ]
    }

    // Goal: every ES oracle holds on a correct journal history, and each rule fails on the
    // history that breaks it, naming what it found (positive and negative space). Method:
    // hand-built event sequences; for each rule the violating sequence is judged by every
    // oracle of the family and only the rule's own oracle (and the ones a case names) fails.
    #[test]
    fn judges_each_rule() {
        for rule in Rule::ALL {
            assert_eq!(judge(rule, &correct_history()), None, "{}", rule.id());
        }
        let one = [("a", 0, 1)];
        let cases: Vec<(Rule, &str, Vec<TraceEvent>)> = vec![
            (
                Rule::Es1,
                "next version",
                vec![
                    append(1, "a", "any", None, 0, 0, &[1]),
                    append(2, "a", "any", Some(0), 2, 1, &[2]),
                ],
            ),
            (
                Rule::Es1,
                "next version is 0",
                vec![append(1, "a", "any", None, 1, 0, &[1])],
            ),
            (
                Rule::Es2,
                "accepted, the head is 0",
                vec![
                    append(1, "a", "any", None, 0, 0, &[1]),
                    append(2, "a", "5", Some(0), 1, 1, &[2]),
                ],
            ),
            (
                Rule::Es2,
                "refused, but the head",
                vec![
                    append(1, "a", "any", None, 0, 0, &[1]),
                    conflict(2, "a", "0", Some(0), &[2]),
                ],
            ),
            (
                Rule::Es2,
                "accepted, the head is none",
                vec![append(1, "a", "stream_exists", None, 0, 0, &[1])],
            ),
            (
                Rule::Es3,
                "written again",
                vec![
                    append(1, "a", "any", None, 0, 0, &[1]),
                    append(2, "a", "any", Some(0), 1, 1, &[1]),
                ],
            ),
            (
                Rule::Es3,
                "duplicate answered",
                vec![
                    append(1, "a", "any", None, 0, 0, &[1]),
                    duplicate(2, "a", "any", 1, 1, &[1]),
                ],
            ),
            (
                Rule::Es4,
                "next position is 1",
                vec![
                    append(1, "a", "any", None, 0, 0, &[1]),
                    append(2, "b", "any", None, 0, 0, &[2]),
                ],
            ),
            (
                Rule::Es4,
                "next position is 1",
                vec![
                    append(1, "a", "any", None, 0, 0, &[1]),
                    append(2, "b", "any", None, 0, 2, &[2]),
                ],
            ),
            (
                Rule::Es5,
                "only 1 events were ever appended",
                vec![
                    append(1, "a", "any", None, 0, 0, &[1]),
                    recovered(2, 2, &[("a", 0, 1), ("a", 1, 2)]),
                ],
            ),
            (
                Rule::Es5,
                "(digest",
                vec![
                    append(1, "a", "any", None, 0, 0, &[1]),
                    // Replay put another event at position 0.
                    recovered(2, 1, &[("a", 0, 9)]),
                ],
            ),
            (
                Rule::Es5,
                "cuts a batch in two",
                vec![
                    append(1, "a", "any", None, 0, 0, &[1, 2]),
                    recovered(2, 1, &one),
                ],
            ),
            (
                Rule::Es6,
                "acknowledged batch at positions 1..2 lost",
                vec![
                    append(1, "a", "any", None, 0, 0, &[1]),
                    append(2, "a", "0", Some(0), 1, 1, &[2]),
                    ack(3, "a", 0, 0, 1),
                    ack(4, "a", 1, 1, 1),
                    recovered(5, 1, &one),
                ],
            ),
            (
                Rule::Es6,
                "which the log does not hold",
                vec![
                    append(1, "a", "any", None, 0, 0, &[1]),
                    ack(2, "a", 3, 0, 1),
                ],
            ),
        ];
        for (rule, needle, events) in cases {
            let violation = judge(rule, &events)
                .unwrap_or_else(|| panic!("{}: {needle}: not caught", rule.id()));
            assert!(
                violation.detail.contains(needle),
                "{}: expected {needle:?} in {:?}",
                rule.id(),
                violation.detail
            );
            assert_eq!(violation.t, events.last().expect("events").t, "{needle}");
        }
    }

    /// A journal core played by hand, its events recorded by the simulator's own subscriber.
    struct RealJournal {
        config: JournalConfig,
        core: JournalCore,
        synced: Vec<u8>,
        reply_next: u64,
        in_flight: Option<u64>,
    }

    impl RealJournal {
        fn append(&mut self, stream: &str, ids: &[u128]) {
            let request = JournalRequest::Append {
                stream: StreamName::new(stream),
                expected: ExpectedVersion::Any,
                events: ids
                    .iter()
                    .map(|&n| EventData {
                        id: EventId(n),
                        kind: "happened".to_owned(),
                        data: Vec::new(),
                    })
                    .collect(),
            };
            self.reply_next += 1;
            let _ = self
                .core
                .handle(Duration::ZERO, ReplyTo(self.reply_next), request);
        }

        /// Starts a write: its bytes reach the disk but are not synced (lost in a crash).
        fn start_write(&mut self) -> Vec<u8> {
            let write = self.core.next_write().expect("something to write");
            assert_eq!(write.mode, WriteMode::Append, "a plain append");
            self.in_flight = Some(write.ticket);
            write.bytes
        }

        /// Syncs the write in flight.
        fn sync(&mut self, bytes: Vec<u8>) {
            self.synced.extend(bytes);
            let ticket = self.in_flight.take().expect("a write in flight");
            let _ = self.core.written(Duration::ZERO, ticket);
        }

        /// Crash: the unsynced bytes are gone; a new core recovers from the synced ones.
        fn crash(&mut self) {
            self.core = JournalCore::recover(&self.config, Some(&self.synced)).expect("recover");
            self.in_flight = None;
        }
    }

    /// Runs appends, one synced write, one unsynced write and a crash through a real
    /// `JournalCore`; returns the trace its events make.
    fn real_trace(ack_before_sync: bool) -> Vec<TraceEvent> {
        let trace = Arc::new(Mutex::new(Trace::default()));
        let subscriber = TraceSubscriber::new(trace.clone());
        tracing::subscriber::with_default(subscriber, || {
            let config = JournalConfig {
                ack_before_sync,
                ..JournalConfig::default()
            };
            let mut journal = RealJournal {
                core: JournalCore::recover(&config, None).expect("empty"),
                config,
                synced: Vec::new(),
                reply_next: 0,
                in_flight: None,
            };
            journal.append("saga-1", &[1, 2]);
            journal.append("saga-2", &[3]);
            let bytes = journal.start_write();
            journal.sync(bytes);
            // A re-send, and a new batch whose write never syncs.
            journal.append("saga-1", &[1, 2]);
            journal.append("saga-1", &[4]);
            let _unsynced = journal.start_write();
            journal.crash();
            journal.append("saga-2", &[5]);
        });
        trace.lock().expect("trace").events().to_vec()
    }

    // Goal: the oracles judge what the real journal emits: a correct `JournalCore` passes all
    // six, and the planted bug `ack_before_sync` (an append answered before its write synced,
    // then lost in a crash) fails ES6 and only ES6. Method: drive the real core by hand (writes,
    // one sync, a crash that drops the unsynced write), record its `tracing` events with the
    // simulator's `TraceSubscriber`, and feed the trace to every oracle.
    #[test]
    fn judges_a_real_journal_trace() {
        let correct = real_trace(false);
        assert!(
            correct.iter().any(|e| e.name == "journal_recovered")
                && correct.iter().filter(|e| e.name == "journal_ack").count() >= 3,
            "the workload acknowledged and recovered: {correct:#?}"
        );
        for rule in Rule::ALL {
            assert_eq!(judge(rule, &correct), None, "{}", rule.id());
        }
        let planted = real_trace(true);
        for rule in Rule::ALL {
            let verdict = judge(rule, &planted);
            if rule == Rule::Es6 {
                let violation = verdict.expect("ES6 catches ack_before_sync");
                assert!(violation.detail.contains("lost"), "{}", violation.detail);
            } else {
                assert_eq!(verdict, None, "{}", rule.id());
            }
        }
    }
}
