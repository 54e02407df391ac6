//! Shrinking: from a failing seed to the smallest explicit fault schedule that still fails.
//!
//! A seed that fails under chaos hands the engineer a schedule of dozens of faults, of which
//! one or two matter. [`shrink`] takes the concrete schedule that seed's run used (the explicit
//! `[[fault]]` entries and the ones `[chaos]` drew), and while the *same oracle* keeps failing
//! under the *same seed*:
//! 1. delta-debugs the set of faults (ddmin, Zeller and Hildebrandt 2002: try halves, then
//!    complements, then finer splits), after first trying no fault at all;
//! 2. halves each remaining fault's duration while it still fails (down to
//!    [`DURATION_S_MIN`]);
//! 3. halves each remaining magnitude toward harmless (latency, loss and corruption
//!    probabilities, encoder offset, load torque, torque-loss fraction). Over-heating's ambient
//!    and under-voltage's volts have no zero to shrink toward and are left as drawn.
//!
//! Every candidate is judged by writing it as a scenario file — the original text with
//! `[chaos]` and every `[[fault]]` removed, the candidate schedule appended as explicit
//! `[[fault]]` entries — parsing that text and running it. So what is judged is exactly what is
//! written, to the nanosecond the file can express. The other random streams of the run
//! (network, plant noise, client jitter) come from the seed and do not depend on the schedule
//! (`seed.rs`), so removing a fault changes nothing else. Runs are limited
//! ([`SHRINK_RUN_COUNT_MAX`] by default); when the limit is hit, the smallest schedule found so
//! far is kept and the result says so.
//!
//! This module does no file I/O: the caller writes [`Shrunk::text`] and checks it with
//! [`verify`].

use std::collections::BTreeMap;
use std::time::Duration;

use crate::fault::{Fault, FaultKind};
use crate::oracle::DETERMINISM_ID;
use crate::oracle::Violation;
use crate::report::{Expectation, Report};
use crate::run::{RunOptions, run, schedule};
use crate::scenario::{Scenario, ScenarioError, Source};

/// Default limit on the runs one shrink may make.
pub const SHRINK_RUN_COUNT_MAX: usize = 400;
/// A fault is never shortened below this.
pub const DURATION_S_MIN: f64 = 0.001;
/// Most halvings of one duration or one magnitude.
pub const HALVINGS_MAX: u32 = 16;

#[derive(Debug, thiserror::Error)]
pub enum ShrinkError {
    #[error("seed {seed} passes: no oracle that must hold fails, so there is nothing to shrink")]
    Passes { seed: u64 },
    #[error("oracle {oracle} holds under seed {seed}; the failing oracles are: {failing}")]
    OracleHolds {
        oracle: String,
        seed: u64,
        failing: String,
    },
    #[error(
        "oracle {oracle} fails under chaos but not with the same schedule written out explicitly; \
         the failure depends on something the schedule file cannot express (please report it)"
    )]
    NotReproducible { oracle: String },
    #[error("cannot rewrite the scenario's text: {0}")]
    Rewrite(String),
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
}

/// How to shrink.
#[derive(Debug, Clone)]
pub struct ShrinkOptions {
    /// The oracle that must keep failing; the first failing one when `None`.
    pub oracle: Option<String>,
    /// Most runs (each one whole simulation).
    pub runs_max: usize,
}

impl Default for ShrinkOptions {
    fn default() -> ShrinkOptions {
        ShrinkOptions {
            oracle: None,
            runs_max: SHRINK_RUN_COUNT_MAX,
        }
    }
}

/// The result of a shrink.
#[derive(Debug, Clone)]
pub struct Shrunk {
    pub seed: u64,
    pub oracle: String,
    /// The schedule the failing run used.
    pub original: Vec<Fault>,
    /// The smallest schedule found, as the new file states it.
    pub faults: Vec<Fault>,
    /// The new scenario file.
    pub text: String,
    /// Simulations run.
    pub runs: usize,
    /// The run limit ended the search early.
    pub budget_exhausted: bool,
    /// The oracle's first violation under the shrunk schedule.
    pub violation: Violation,
}

/// Shrinks the schedule of `seed` on the scenario `source` (whose checked form is `scenario`).
pub fn shrink(
    source: &Source,
    scenario: &Scenario,
    seed: u64,
    options: &ShrinkOptions,
) -> Result<Shrunk, ShrinkError> {
    let first = run(scenario, seed, RunOptions::default());
    let failing: Vec<&str> = first
        .report
        .oracles
        .iter()
        .filter(|o| o.expected == Expectation::Holds && !o.holds)
        .map(|o| o.id.as_str())
        .collect();
    let oracle = match &options.oracle {
        Some(id) => {
            if !first.report.oracles.iter().any(|o| o.id == *id && !o.holds) {
                return Err(ShrinkError::OracleHolds {
                    oracle: id.clone(),
                    seed,
                    failing: if failing.is_empty() {
                        "none".into()
                    } else {
                        failing.join(", ")
                    },
                });
            }
            id.clone()
        }
        None => failing
            .first()
            .map(|id| (*id).to_owned())
            .ok_or(ShrinkError::Passes { seed })?,
    };
    let original = schedule(scenario, seed);
    let base = explicit_base(&source.text, &source.origin, seed, &oracle, original.len())?;
    let mut search = Search {
        origin: source.origin.clone(),
        base,
        seed,
        oracle: oracle.clone(),
        runs: 1,
        runs_max: options.runs_max.max(2),
        exhausted: false,
        memo: BTreeMap::new(),
    };

    let all: Vec<Fault> = original.clone();
    if !search.fails(&all)? {
        return Err(ShrinkError::NotReproducible { oracle });
    }
    let mut faults = if search.fails(&[])? {
        Vec::new()
    } else {
        search.ddmin(all)?
    };
    // Shorter durations, one fault at a time.
    for i in 0..faults.len() {
        for _ in 0..HALVINGS_MAX {
            let Some(until) = faults[i].until else { break };
            let length_s = (until - faults[i].at).as_secs_f64();
            if length_s / 2.0 < DURATION_S_MIN {
                break;
            }
            let mut candidate = faults.clone();
            candidate[i].until = Some(faults[i].at + Duration::from_secs_f64(length_s / 2.0));
            if !search.fails(&candidate)? {
                break;
            }
            faults = candidate;
        }
    }
    // Smaller magnitudes.
    for i in 0..faults.len() {
        for _ in 0..HALVINGS_MAX {
            let Some(kind) = halved(&faults[i].kind) else {
                break;
            };
            let mut candidate = faults.clone();
            candidate[i].kind = kind;
            if !search.fails(&candidate)? {
                break;
            }
            faults = candidate;
        }
    }

    let text = search.text_with(&faults);
    let shrunk = Scenario::from_source(&Source::new(source.origin.clone(), text.clone()))?;
    let report = run(&shrunk, seed, RunOptions::default()).report;
    let violation = report
        .oracles
        .iter()
        .find(|o| o.id == oracle)
        .and_then(|o| o.first_violation.clone())
        .expect("the accepted schedule fails the oracle");
    Ok(Shrunk {
        seed,
        oracle,
        original,
        faults: shrunk.faults,
        text,
        runs: search.runs + 1,
        budget_exhausted: search.exhausted,
        violation,
    })
}

/// Runs a written shrunk scenario twice (DT1) and returns its report; the caller checks that
/// `oracle` fails and DT1 holds (see [`reproduces`]).
pub fn verify(scenario: &Scenario, seed: u64) -> Report {
    run(
        scenario,
        seed,
        RunOptions {
            check_determinism: true,
            record_series: false,
        },
    )
    .report
}

/// Whether a report shows `oracle` failing and the determinism check holding.
pub fn reproduces(report: &Report, oracle: &str) -> bool {
    let fails = report.oracles.iter().any(|o| o.id == oracle && !o.holds);
    let deterministic = report
        .oracles
        .iter()
        .any(|o| o.id == DETERMINISM_ID && o.holds);
    fails && deterministic
}

struct Search {
    origin: String,
    base: String,
    seed: u64,
    oracle: String,
    runs: usize,
    runs_max: usize,
    exhausted: bool,
    /// Candidate file text → whether it fails.
    memo: BTreeMap<String, bool>,
}

impl Search {
    fn text_with(&self, faults: &[Fault]) -> String {
        let mut text = self.base.clone();
        for fault in faults {
            text.push('\n');
            text.push_str(&fault_toml(fault));
        }
        text
    }

    /// Whether the oracle fails with `faults`; `false` once the run limit is reached (the
    /// search then stops improving and keeps what it has).
    fn fails(&mut self, faults: &[Fault]) -> Result<bool, ShrinkError> {
        let text = self.text_with(faults);
        if let Some(known) = self.memo.get(&text) {
            return Ok(*known);
        }
        if self.runs >= self.runs_max {
            self.exhausted = true;
            return Ok(false);
        }
        self.runs += 1;
        let scenario = Scenario::from_source(&Source::new(self.origin.clone(), text.clone()))?;
        let report = run(&scenario, self.seed, RunOptions::default()).report;
        let fails = report
            .oracles
            .iter()
            .any(|o| o.id == self.oracle && !o.holds);
        self.memo.insert(text, fails);
        Ok(fails)
    }

    /// ddmin over the faults: the result fails, and removing any one of its faults would not
    /// (1-minimal) unless the run limit stopped the search.
    fn ddmin(&mut self, mut current: Vec<Fault>) -> Result<Vec<Fault>, ShrinkError> {
        let mut granularity = 2usize;
        while current.len() >= 2 {
            let chunks = split(&current, granularity);
            let mut reduced = false;
            for chunk in &chunks {
                if self.fails(chunk)? {
                    current = chunk.clone();
                    granularity = 2;
                    reduced = true;
                    break;
                }
            }
            if !reduced && granularity > 2 {
                for i in 0..chunks.len() {
                    let complement: Vec<Fault> = chunks
                        .iter()
                        .enumerate()
                        .filter(|(j, _)| *j != i)
                        .flat_map(|(_, c)| c.iter().cloned())
                        .collect();
                    if self.fails(&complement)? {
                        current = complement;
                        granularity = (granularity - 1).max(2);
                        reduced = true;
                        break;
                    }
                }
            }
            if !reduced {
                if granularity >= current.len() {
                    break;
                }
                granularity = (granularity * 2).min(current.len());
            }
            if self.exhausted {
                break;
            }
        }
        Ok(current)
    }
}

/// `items` in `n` contiguous chunks of near-equal size (order kept).
fn split(items: &[Fault], n: usize) -> Vec<Vec<Fault>> {
    let n = n.min(items.len()).max(1);
    let mut chunks = Vec::with_capacity(n);
    let mut start = 0;
    for k in 0..n {
        let end = start + (items.len() - start) / (n - k);
        chunks.push(items[start..end].to_vec());
        start = end;
    }
    chunks
}

/// The fault with its magnitude halved toward harmless, or `None` when it has none left to
/// halve.
fn halved(kind: &FaultKind) -> Option<FaultKind> {
    let half = |x: f64, floor: f64| (x.abs() / 2.0 >= floor).then_some(x / 2.0);
    Some(match kind.clone() {
        FaultKind::Latency { a, b, latency_ms } => FaultKind::Latency {
            a,
            b,
            latency_ms: half(latency_ms, 0.5)?,
        },
        FaultKind::Loss { a, b, probability } => FaultKind::Loss {
            a,
            b,
            probability: half(probability, 0.005)?,
        },
        FaultKind::FieldbusLatency { axis, latency_us } => FaultKind::FieldbusLatency {
            axis,
            latency_us: half(latency_us, 1.0)?,
        },
        FaultKind::FieldbusLoss { axis, probability } => FaultKind::FieldbusLoss {
            axis,
            probability: half(probability, 0.005)?,
        },
        FaultKind::FieldbusCorruption { axis, probability } => FaultKind::FieldbusCorruption {
            axis,
            probability: half(probability, 0.005)?,
        },
        FaultKind::EncoderGlitch {
            axis,
            offset_counts,
        } => {
            if offset_counts.abs() < 2 {
                return None;
            }
            FaultKind::EncoderGlitch {
                axis,
                offset_counts: offset_counts / 2,
            }
        }
        FaultKind::LoadStep { axis, torque_nm } => FaultKind::LoadStep {
            axis,
            torque_nm: half(torque_nm, 0.001)?,
        },
        FaultKind::TorqueLoss { axis, fraction } => FaultKind::TorqueLoss {
            axis,
            fraction: half(fraction, 0.01)?,
        },
        _ => return None,
    })
}

/// Seconds as the file states them: nine decimals, the nanosecond a `Duration` holds.
fn seconds(d: Duration) -> String {
    let text = format!("{:.9}", d.as_secs_f64());
    let text = text.trim_end_matches('0');
    if text.ends_with('.') {
        format!("{text}0")
    } else {
        text.to_owned()
    }
}

/// One `[[fault]]` entry (README, "Scenario format").
fn fault_toml(fault: &Fault) -> String {
    let mut lines = vec![
        "[[fault]]".to_owned(),
        format!("at_s = {}", seconds(fault.at)),
    ];
    if let Some(until) = fault.until {
        lines.push(format!("for_s = {}", seconds(until - fault.at)));
    }
    lines.push(format!("kind = \"{}\"", fault.kind.name()));
    let between = |a: &str, b: &str| format!("between = [\"{a}\", \"{b}\"]");
    let number = |key: &str, x: f64| format!("{key} = {x:?}");
    match &fault.kind {
        FaultKind::Partition { a, b } | FaultKind::Hold { a, b } => lines.push(between(a, b)),
        FaultKind::PartitionOneway { from, to } => {
            lines.push(format!("from = \"{from}\""));
            lines.push(format!("to = \"{to}\""));
        }
        FaultKind::Latency { a, b, latency_ms } => {
            lines.push(between(a, b));
            lines.push(number("latency_ms", *latency_ms));
        }
        FaultKind::Loss { a, b, probability } => {
            lines.push(between(a, b));
            lines.push(number("probability", *probability));
        }
        FaultKind::Crash { host }
        | FaultKind::Restart { host }
        | FaultKind::DiskIoError { host }
        | FaultKind::DiskCorruption { host }
        | FaultKind::DiskLostWrites { host } => lines.push(format!("host = \"{host}\"")),
        FaultKind::FieldbusPartition { axis } | FaultKind::EncoderDropout { axis } => {
            lines.push(format!("axis = \"{axis}\""))
        }
        FaultKind::FieldbusLatency { axis, latency_us } => {
            lines.push(format!("axis = \"{axis}\""));
            lines.push(number("latency_us", *latency_us));
        }
        FaultKind::FieldbusLoss { axis, probability }
        | FaultKind::FieldbusCorruption { axis, probability } => {
            lines.push(format!("axis = \"{axis}\""));
            lines.push(number("probability", *probability));
        }
        FaultKind::EncoderGlitch {
            axis,
            offset_counts,
        } => {
            lines.push(format!("axis = \"{axis}\""));
            lines.push(format!("offset_counts = {offset_counts}"));
        }
        FaultKind::LoadStep { axis, torque_nm } => {
            lines.push(format!("axis = \"{axis}\""));
            lines.push(number("torque_nm", *torque_nm));
        }
        FaultKind::TorqueLoss { axis, fraction } => {
            lines.push(format!("axis = \"{axis}\""));
            lines.push(number("fraction", *fraction));
        }
        FaultKind::Overheating { axis, ambient_c } => {
            lines.push(format!("axis = \"{axis}\""));
            lines.push(number("ambient_c", *ambient_c));
        }
        FaultKind::BusUnderVoltage { axis, volts } => {
            lines.push(format!("axis = \"{axis}\""));
            lines.push(number("volts", *volts));
        }
    }
    lines.join("\n") + "\n"
}

/// The name of a TOML table header line (`[a.b]` or `[[a]]`), if the line is one.
fn header_name(line: &str) -> Option<&str> {
    let line = line.trim();
    let line = match line.find('#') {
        Some(i) => line[..i].trim_end(),
        None => line,
    };
    let inner = line
        .strip_prefix("[[")
        .and_then(|l| l.strip_suffix("]]"))
        .or_else(|| line.strip_prefix('[').and_then(|l| l.strip_suffix(']')))?
        .trim();
    let bare = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '"');
    (inner.starts_with(|c: char| c.is_ascii_alphabetic() || c == '"') && inner.chars().all(bare))
        .then_some(inner)
}

/// The scenario text without `[chaos]` (and its sub-tables) and without any `[[fault]]`, with a
/// line in its opening comment that says where it came from. Comment lines directly above a
/// removed table go with it.
fn explicit_base(
    text: &str,
    origin: &str,
    seed: u64,
    oracle: &str,
    fault_count: usize,
) -> Result<String, ShrinkError> {
    let mut out: Vec<String> = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let header_end = lines
        .iter()
        .position(|l| !l.trim_start().starts_with('#'))
        .unwrap_or(lines.len());
    out.extend(lines[..header_end].iter().map(|l| (*l).to_owned()));
    out.push(format!("# Shrunk by `sim shrink` from seed {seed} of"));
    out.push(format!("#   {origin}"));
    out.push(format!(
        "# ({fault_count} faults): the smallest explicit fault schedule found on which oracle {oracle}"
    ));
    out.push(format!("# still fails. Run it with --seed {seed}."));
    let mut skipping = false;
    let mut top_level = true;
    let mut comments: Vec<String> = Vec::new();
    for line in &lines[header_end..] {
        let trimmed = line.trim();
        // Top-level keys (before any table): `name` gets a suffix, so that the shrunk scenario
        // and its original can be swept side by side; `seed` becomes the shrunk seed, so that
        // `sim run FILE` alone reproduces it.
        if top_level && let Some((key, value)) = trimmed.split_once('=') {
            let value = value.trim();
            match key.trim() {
                "name" => {
                    let name = value.trim_matches('"');
                    out.append(&mut comments);
                    out.push(format!("name = \"{name}-seed{seed}-shrunk\""));
                    out.push(format!("seed = {seed}"));
                    continue;
                }
                "seed" => continue,
                _ => {}
            }
        }
        if trimmed.starts_with('[') {
            top_level = false;
        }
        if let Some(name) = header_name(line) {
            let removed = name == "chaos" || name.starts_with("chaos.") || name == "fault";
            if removed {
                comments.clear();
            } else {
                out.append(&mut comments);
            }
            skipping = removed;
            if !removed {
                out.push((*line).to_owned());
            }
            continue;
        }
        if skipping {
            continue;
        }
        if trimmed.starts_with('#') {
            comments.push((*line).to_owned());
        } else {
            out.append(&mut comments);
            out.push((*line).to_owned());
        }
    }
    out.append(&mut comments);
    // Removed tables leave their blank separators behind: keep at most one in a row.
    out.dedup_by(|b, a| a.trim().is_empty() && b.trim().is_empty());
    while out.last().is_some_and(|l| l.trim().is_empty()) {
        out.pop();
    }
    let base = out.join("\n") + "\n";
    let check =
        Scenario::from_source(&Source::new(origin.to_owned(), base.clone())).map_err(|e| {
            ShrinkError::Rewrite(format!(
                "the text without [chaos] and [[fault]] does not load: {e}"
            ))
        })?;
    if check.chaos.is_some() || !check.faults.is_empty() {
        return Err(ShrinkError::Rewrite(
            "[chaos] or [[fault]] is written in a form this rewriter does not recognise (inline or dotted keys); write them as [chaos] and [[fault]] tables".into(),
        ));
    }
    Ok(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# Goal: a test.
# Second line.
name = "t"
duration_s = 5.0
settle_s = 1.0

[axis.x]
velocity_deg_per_s_max = 180.0
acceleration_deg_per_s2_max = 720.0
jerk_deg_per_s3_max = 7200.0
position_deg_min = -180.0
position_deg_max = 180.0

[axis.x.plant]
preset = "xm430-w350"

# The storm.
[chaos]
from_s = 0.5
until_s = 3.0

[chaos.per_min]
restart = 10.0

[[fault]]
# an explicit one
at_s = 1.0
kind = "restart"
host = "motion-1"

[expect]
moves_completed_min = 0
"#;

    // Goal: the rewrite drops [chaos], its sub-table, every [[fault]] and the comments that
    // belong to them, keeps everything else and the opening comment, and says where it came
    // from; fault entries written back parse to the same faults.
    #[test]
    fn rewrites_schedule_explicitly() {
        let base = explicit_base(TEXT, "t.toml", 9, "SG4", 3).expect("rewrites");
        assert!(
            base.starts_with("# Goal: a test.\n# Second line.\n# Shrunk by `sim shrink` from seed 9 of\n#   t.toml\n"),
            "{base}"
        );
        assert!(
            base.contains("\nname = \"t-seed9-shrunk\"\nseed = 9\n"),
            "{base}"
        );
        assert!(!base.contains("\n\n\n"), "{base}");
        for gone in ["[chaos]", "per_min", "restart", "The storm", "explicit one"] {
            assert!(!base.contains(gone), "{gone} left in:\n{base}");
        }
        for kept in ["[axis.x.plant]", "[expect]", "moves_completed_min = 0"] {
            assert!(base.contains(kept), "{kept} missing from:\n{base}");
        }
        let faults = vec![
            Fault {
                kind: FaultKind::Latency {
                    a: "client-1".into(),
                    b: "motion-1".into(),
                    latency_ms: 123.456789,
                },
                at: Duration::from_nanos(1_234_567_891),
                until: Some(Duration::from_nanos(2_000_000_000)),
                drawn: true,
            },
            Fault {
                kind: FaultKind::EncoderGlitch {
                    axis: "x".into(),
                    offset_counts: -7,
                },
                at: Duration::from_millis(2500),
                until: Some(Duration::from_millis(2600)),
                drawn: true,
            },
            Fault {
                kind: FaultKind::Restart {
                    host: "motion-1".into(),
                },
                at: Duration::from_millis(3000),
                until: None,
                drawn: false,
            },
        ];
        let mut text = base.clone();
        for f in &faults {
            text.push('\n');
            text.push_str(&fault_toml(f));
        }
        let parsed = Scenario::from_source(&Source::new("t.toml", text)).expect("parses");
        assert_eq!(parsed.faults.len(), 3);
        for (got, want) in parsed.faults.iter().zip(&faults) {
            assert_eq!(got.kind, want.kind);
            assert_eq!(got.at, want.at);
            let (a, b) = (
                got.until.unwrap_or_default(),
                want.until.unwrap_or_default(),
            );
            assert!(a.abs_diff(b) <= Duration::from_nanos(1), "{a:?} vs {b:?}");
        }
    }

    // Goal: header detection accepts table headers and refuses array values that look alike.
    #[test]
    fn header_lines_only() {
        assert_eq!(header_name("[chaos]"), Some("chaos"));
        assert_eq!(header_name("  [[fault]]  # why"), Some("fault"));
        assert_eq!(header_name("[chaos.per_min]"), Some("chaos.per_min"));
        assert_eq!(header_name("[1.0, 2.0]"), None);
        assert_eq!(header_name("targets = [1.0]"), None);
        assert_eq!(header_name("# [chaos]"), None);
    }

    // Goal: chunks cover the list in order with near-equal sizes.
    #[test]
    fn split_covers_in_order() {
        let f = |k: u64| Fault {
            kind: FaultKind::Restart {
                host: "motion-1".into(),
            },
            at: Duration::from_secs(k),
            until: None,
            drawn: true,
        };
        let items: Vec<Fault> = (0..7).map(f).collect();
        let chunks = split(&items, 3);
        let sizes: Vec<usize> = chunks.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![2, 2, 3]);
        assert_eq!(chunks.concat(), items);
        assert_eq!(split(&items, 10).len(), 7);
    }
}
