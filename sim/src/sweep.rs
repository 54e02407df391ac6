//! Sweeps: many seeds of one or more scenarios, one whole simulation per worker thread.
//!
//! Owns the sweep plan (scenarios × a seed range, optionally one shard of it), the worker pool,
//! the per-seed result ([`SeedResult`], one JSON line each in `results.jsonl`), the sweep's
//! directory (`results.jsonl`, `coverage.json`, `coverage.txt`, `sweep.json`, `summary.txt`:
//! written as seeds finish, resumed after a stop, finished), the summary with a reproduction
//! command per failing seed, and JUnit XML. It does not judge (that is [`crate::run`] and the
//! oracles), does not count coverage ([`crate::coverage`]) and does not combine shards
//! ([`crate::merge`]).
//!
//! **Determinism.** Each simulation runs whole on one worker thread, alone on it: the trace
//! subscriber a run installs is thread-local (`tracing::subscriber::set_default`) and turmoil's
//! world is thread-local too, so runs on different workers never see each other. A result
//! depends only on (scenario, seed); the results are sorted by (scenario name, seed) before they
//! are written, so the files do not depend on the number of workers or their timing. Wall-clock
//! figures (seeds per second) go to the terminal only, never into the files.
//!
//! **A sweep keeps what it finds** ([`sweep_into`]). It writes its plan (`sweep.json`) before
//! the first seed runs, and appends each finished seed at once: its per-seed coverage to
//! `seed-coverage.jsonl`, then its result line to `results.jsonl` (in completion order), so a
//! crash, a kill or Ctrl-C loses only the seeds still running. A seed counts as done once both
//! lines are on disk; a torn last line (a kill in the middle of a write) is dropped. `--resume`
//! checks that the command's plan is the directory's (scenario names, paths and SHA-256 of their
//! text, seed range, shard, servocell version), keeps the done seeds and runs the rest. The
//! last step is the same however the seeds came: it reads both files back, checks that every
//! planned seed is there once, sorts the results, folds the coverage, writes every file anew
//! (temporary file, then rename) and removes `seed-coverage.jsonl`, whose presence is what marks
//! a directory as unfinished. A resumed sweep so ends with the files, byte for byte, that an
//! uninterrupted one writes.
//!
//! **Shards.** `--shard K/N` (K counted from 0, as a Kubernetes Indexed Job's completion index
//! is) keeps the seeds whose index in the range, `seed - A`, is K modulo N; every scenario of the
//! sweep runs those seeds. N shards partition the sweep exactly, and `sim merge` of their
//! directories gives the unsharded `results.jsonl` byte for byte.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::coverage::{Coverage, CoverageObserver, ScenarioCoverage};
use crate::report::{Expectation, Verdict};
use crate::run::{RunOptions, run_observed, schedule};
use crate::scenario::{Scenario, ScenarioError, Source};

/// Most runs (scenarios × seeds) one sweep process plans: results are kept in memory until they
/// are sorted and written (about 300 bytes each).
pub const SWEEP_RUN_COUNT_MAX: u64 = 10_000_000;
/// Most worker threads.
pub const JOBS_MAX: usize = 256;
/// Most shards a sweep may be split into.
pub const SHARD_COUNT_MAX: u64 = 1_000_000;
/// Failing seeds listed on the terminal; `summary.txt` lists every one.
pub const FAILURES_PRINTED_MAX: usize = 100;

pub const RESULTS_FILE: &str = "results.jsonl";
pub const COVERAGE_FILE: &str = "coverage.json";
/// The coverage table for people: every combination with its count, the unreached ones too.
pub const COVERAGE_TABLE_FILE: &str = "coverage.txt";
pub const MANIFEST_FILE: &str = "sweep.json";
pub const SUMMARY_FILE: &str = "summary.txt";
/// Per-seed coverage of a sweep not yet finished, one line per finished seed; folded into
/// `coverage.json` and removed by the last step. While it exists the directory is unfinished.
pub const SEED_COVERAGE_FILE: &str = "seed-coverage.jsonl";
/// The files a finished sweep's directory holds, in the order the last step writes them.
pub const SWEEP_FILES: [&str; 5] = [
    RESULTS_FILE,
    COVERAGE_FILE,
    COVERAGE_TABLE_FILE,
    SUMMARY_FILE,
    MANIFEST_FILE,
];

/// A sweep's inputs were wrong, or its files could not be written or read back.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("{0}")]
    Plan(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SweepError + '_ {
    move |source| SweepError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One shard of a sweep: `index` of `count`, `index` counted from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// Parses `K/N` with 0 <= K < N.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let bad = || {
            format!(
                "`--shard {text}`: expected K/N with 0 <= K < N <= {SHARD_COUNT_MAX}, K counted from 0 (as a Kubernetes completion index), e.g. 0/4 .. 3/4"
            )
        };
        let (k, n) = text.split_once('/').ok_or_else(bad)?;
        let index: u64 = k.trim().parse().map_err(|_| bad())?;
        let count: u64 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || count > SHARD_COUNT_MAX || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// Whether `seed` of a sweep whose range starts at `seeds_start` belongs to this shard.
    pub fn holds(&self, seeds_start: u64, seed: u64) -> bool {
        (seed - seeds_start) % self.count == self.index
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Parses a seed range `A..B` (B excluded, as a Rust range), A < B.
pub fn parse_seeds(text: &str) -> Result<Range<u64>, String> {
    let bad =
        || format!("`--seeds {text}`: expected A..B with A < B (B is excluded), e.g. 0..1000");
    let (a, b) = text.split_once("..").ok_or_else(bad)?;
    let start: u64 = a.trim().parse().map_err(|_| bad())?;
    let end: u64 = b.trim().parse().map_err(|_| bad())?;
    if start >= end {
        return Err(bad());
    }
    Ok(start..end)
}

/// A scenario of a sweep, with the path it was given as (for reproduction commands) and the
/// hash of its text (so that `--resume` refuses a file that changed under a stopped sweep).
#[derive(Debug, Clone)]
pub struct SweepScenario {
    pub path: String,
    pub scenario: Scenario,
    /// SHA-256 of the scenario file's text, 64 hex digits.
    pub sha256: String,
}

impl SweepScenario {
    /// Parses and checks scenario text; the path is the source's origin.
    pub fn from_source(source: &Source) -> Result<SweepScenario, ScenarioError> {
        Ok(SweepScenario {
            path: source.origin.clone(),
            scenario: Scenario::from_source(source)?,
            sha256: sha256_hex(source.text.as_bytes()),
        })
    }

    /// Reads, parses and checks a scenario file.
    pub fn load(path: &Path) -> Result<SweepScenario, ScenarioError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            origin: origin.clone(),
            source,
        })?;
        SweepScenario::from_source(&Source::new(origin, text))
    }
}

/// SHA-256 of `bytes` as 64 hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The one-line command that reproduces a run.
pub fn reproduce_command(path: &str, seed: u64) -> String {
    format!("cargo run --release -p sim -- run {path} --seed {seed}")
}

/// What one seed of one scenario gave: one line of `results.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedResult {
    /// The scenario's `name`.
    pub scenario: String,
    pub seed: u64,
    /// `pass`, `fail`, or `panic` (the simulation panicked: a bug in the harness or a service).
    pub verdict: String,
    /// The oracles whose outcome differed from the scenario's `[expect]`.
    pub failed_oracles: Vec<String>,
    pub trace_hash: String,
    pub simulated_s: f64,
    /// The scenario file as the sweep was given it.
    pub path: String,
    /// Faults in the run's schedule.
    pub faults: usize,
    /// With swarm testing: the fault kinds this seed switched on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swarm_kinds: Option<Vec<String>>,
    /// The panic message, when the verdict is `panic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panic: Option<String>,
}

impl SeedResult {
    pub fn passed(&self) -> bool {
        self.verdict == "pass"
    }

    pub fn reproduce(&self) -> String {
        reproduce_command(&self.path, self.seed)
    }
}

/// Runs one seed of one scenario (no DT1 second run: `sim check-determinism` does that) with a
/// coverage counter beside the oracles. A panic inside the simulation is caught and becomes the
/// verdict `panic`, so one broken seed does not end the sweep.
pub fn run_seed(s: &SweepScenario, seed: u64) -> (SeedResult, ScenarioCoverage) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut coverage = CoverageObserver::new(&s.scenario);
        let output = run_observed(
            &s.scenario,
            seed,
            schedule(&s.scenario, seed),
            RunOptions::default(),
            Some(&mut coverage),
        );
        (output.report, coverage.into_counts())
    }));
    match outcome {
        Ok((report, coverage)) => {
            let failed_oracles = report
                .oracles
                .iter()
                .filter(|o| match o.expected {
                    Expectation::Holds => !o.holds,
                    Expectation::Fails => o.holds,
                    Expectation::Ignored => false,
                })
                .map(|o| o.id.clone())
                .collect();
            let result = SeedResult {
                scenario: report.scenario.clone(),
                seed,
                verdict: match report.verdict {
                    Verdict::Pass => "pass",
                    Verdict::Fail => "fail",
                }
                .to_owned(),
                failed_oracles,
                trace_hash: report.trace_hash.clone(),
                simulated_s: report.simulated_s,
                path: s.path.clone(),
                faults: report.faults.len(),
                swarm_kinds: report
                    .swarm
                    .as_ref()
                    .map(|c| c.kinds_on().into_iter().map(str::to_owned).collect()),
                panic: None,
            };
            (result, coverage)
        }
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "a panic without a message".to_owned());
            let result = SeedResult {
                scenario: s.scenario.name.clone(),
                seed,
                verdict: "panic".to_owned(),
                failed_oracles: Vec::new(),
                trace_hash: String::new(),
                simulated_s: s.scenario.duration.as_secs_f64(),
                path: s.path.clone(),
                faults: 0,
                swarm_kinds: None,
                panic: Some(message),
            };
            (result, ScenarioCoverage::universe(&s.scenario))
        }
    }
}

/// What a sweep (or a shard of one) covers: written as `sweep.json` before the first seed runs,
/// checked by `--resume`, read back by `sim merge`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: String,
    pub scenarios: Vec<ManifestScenario>,
    pub seeds_start: u64,
    pub seeds_end: u64,
    /// `None` for a whole sweep (or a merge of all its shards).
    pub shard: Option<Shard>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestScenario {
    pub name: String,
    pub path: String,
    /// SHA-256 of the scenario file's text when the sweep started.
    pub sha256: String,
}

impl Manifest {
    /// The plan of a sweep of `scenarios` over `seeds`, by this build of servocell.
    pub fn new(scenarios: &[SweepScenario], seeds: &Range<u64>, shard: Option<Shard>) -> Manifest {
        Manifest {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            scenarios: scenarios
                .iter()
                .map(|s| ManifestScenario {
                    name: s.scenario.name.clone(),
                    path: s.path.clone(),
                    sha256: s.sha256.clone(),
                })
                .collect(),
            seeds_start: seeds.start,
            seeds_end: seeds.end,
            shard,
        }
    }

    /// How `other` (a command's plan) differs from this one (a directory's), one sentence per
    /// difference; empty when they are the same plan.
    pub fn differences(&self, other: &Manifest) -> Vec<String> {
        let mut out = Vec::new();
        if self.version != other.version {
            out.push(format!(
                "the sweep was started by servocell {}, this is servocell {}",
                self.version, other.version
            ));
        }
        let list = |m: &Manifest| {
            m.scenarios
                .iter()
                .map(|s| format!("{} ({})", s.name, s.path))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if list(self) != list(other) {
            out.push(format!(
                "the sweep has scenarios {}, the command {}",
                list(self),
                list(other)
            ));
        } else {
            for (then, now) in self.scenarios.iter().zip(&other.scenarios) {
                if then.sha256 != now.sha256 {
                    out.push(format!(
                        "scenario `{}` ({}) changed since the sweep started (SHA-256 {} then, {} now)",
                        now.name,
                        now.path,
                        short_hash(&then.sha256),
                        short_hash(&now.sha256)
                    ));
                }
            }
        }
        if (self.seeds_start, self.seeds_end) != (other.seeds_start, other.seeds_end) {
            out.push(format!(
                "the sweep has seeds {}..{}, the command {}..{}",
                self.seeds_start, self.seeds_end, other.seeds_start, other.seeds_end
            ));
        }
        if self.shard != other.shard {
            let shard =
                |s: Option<Shard>| s.map_or("no shard".to_owned(), |s| format!("shard {s}"));
            out.push(format!(
                "the sweep has {}, the command {}",
                shard(self.shard),
                shard(other.shard)
            ));
        }
        out
    }
}

/// The first 12 hex digits of a hash, for messages.
fn short_hash(hex: &str) -> &str {
    &hex[..hex.len().min(12)]
}

/// A finished sweep: its plan, its results sorted by (scenario, seed), its coverage.
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    pub manifest: Manifest,
    pub results: Vec<SeedResult>,
    pub coverage: Coverage,
}

/// How a sweep runs: workers and whether to draw a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct SweepOptions {
    pub jobs: usize,
    /// Draw a progress bar on stderr (indicatif hides it when stderr is not a terminal).
    pub progress: bool,
}

/// Whether [`sweep_into`] starts a sweep afresh or continues a stopped one in its directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Discard whatever sweep the directory holds and run every planned seed.
    Fresh,
    /// Continue the directory's sweep: same plan, only the seeds not yet done.
    Resume,
}

/// The (scenario index, seed) pairs a sweep runs, in scenario-then-seed order.
pub fn plan(
    scenarios: &[SweepScenario],
    seeds: &Range<u64>,
    shard: Option<Shard>,
) -> Result<Vec<(usize, u64)>, SweepError> {
    if scenarios.is_empty() {
        return Err(SweepError::Plan(
            "a sweep needs at least one scenario".into(),
        ));
    }
    for (i, s) in scenarios.iter().enumerate() {
        if let Some(other) = scenarios[..i]
            .iter()
            .find(|o| o.scenario.name == s.scenario.name)
        {
            return Err(SweepError::Plan(format!(
                "{} and {} are both named `{}`: results are keyed by scenario name, give them different names",
                other.path, s.path, s.scenario.name
            )));
        }
    }
    let seed_count = (seeds.end - seeds.start).div_ceil(shard.map_or(1, |s| s.count));
    let runs = seed_count.saturating_mul(scenarios.len() as u64);
    if runs > SWEEP_RUN_COUNT_MAX {
        return Err(SweepError::Plan(format!(
            "{runs} runs in one sweep process; the limit is {SWEEP_RUN_COUNT_MAX}: split it with --shard"
        )));
    }
    let mut jobs = Vec::new();
    for index in 0..scenarios.len() {
        for seed in seeds.clone() {
            if shard.is_none_or(|s| s.holds(seeds.start, seed)) {
                jobs.push((index, seed));
            }
        }
    }
    Ok(jobs)
}

/// The progress bar of a sweep of `total` runs of which `done` are done already.
fn progress_bar(total: usize, done: usize, options: SweepOptions) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total as u64),
        if options.progress {
            indicatif::ProgressDrawTarget::stderr()
        } else {
            indicatif::ProgressDrawTarget::hidden()
        },
    )
    .with_position(done as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} seeds, {msg}",
        )
        .expect("a valid progress template")
        .progress_chars("=> "),
    );
    bar
}

/// What the progress bar says beside the count: the rate of the seeds this process ran (those
/// done before a resume took no time here) and the failures so far, resumed ones included.
fn progress_message(bar: &indicatif::ProgressBar, run: u64, failed: u64, resumed: usize) -> String {
    let rate = run as f64 / bar.elapsed().as_secs_f64().max(1e-3);
    if resumed > 0 {
        format!("{resumed} done before the resume, {rate:.1} seeds/s, {failed} failed")
    } else {
        format!("{rate:.1} seeds/s, {failed} failed")
    }
}

/// The coverage of a sweep: every scenario's universe (so that never-reached combinations are
/// zeros), plus each run's counts.
fn fold_coverage<'a>(
    scenarios: &[SweepScenario],
    runs: impl IntoIterator<Item = (&'a str, &'a ScenarioCoverage)>,
) -> Coverage {
    let mut coverage = Coverage::default();
    for s in scenarios {
        coverage.add(&s.scenario.name, &ScenarioCoverage::universe(&s.scenario));
    }
    for (scenario, counts) in runs {
        coverage.add(scenario, counts);
    }
    coverage
}

/// Runs a sweep in memory: every planned (scenario, seed) on `options.jobs` workers. Writes
/// nothing; [`sweep_into`] is the same sweep kept in a directory as it runs.
pub fn sweep(
    scenarios: &[SweepScenario],
    seeds: Range<u64>,
    shard: Option<Shard>,
    options: SweepOptions,
) -> Result<Sweep, SweepError> {
    let jobs = plan(scenarios, &seeds, shard)?;
    let bar = progress_bar(jobs.len(), 0, options);
    let mut failed = 0u64;
    let mut run = 0u64;
    let outputs = parallel_map(
        &jobs,
        options.jobs,
        |&(index, seed)| run_seed(&scenarios[index], seed),
        |(result, _)| {
            run += 1;
            if !result.passed() {
                failed += 1;
            }
            bar.inc(1);
            bar.set_message(progress_message(&bar, run, failed, 0));
        },
    );
    bar.finish_and_clear();
    let coverage = fold_coverage(
        scenarios,
        outputs.iter().map(|(r, c)| (r.scenario.as_str(), c)),
    );
    let mut results: Vec<SeedResult> = outputs.into_iter().map(|(r, _)| r).collect();
    sort_results(&mut results);
    Ok(Sweep {
        manifest: Manifest::new(scenarios, &seeds, shard),
        results,
        coverage,
    })
}

/// A sweep run by [`sweep_into`], and how much of it this call ran.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepRun {
    pub sweep: Sweep,
    /// Runs that were already done in the directory (0 for a fresh start).
    pub resumed: usize,
    /// Runs this call ran.
    pub ran: usize,
    /// A fresh start over an unfinished sweep: how many of its runs were discarded.
    pub discarded: Option<usize>,
}

/// One line of `seed-coverage.jsonl`: what one run covered, its non-zero counts only (the
/// zeros are the scenario's universe, added once when the sweep is finished).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SeedCoverage {
    scenario: String,
    seed: u64,
    counts: ScenarioCoverage,
}

impl SeedCoverage {
    fn of(result: &SeedResult, counts: &ScenarioCoverage) -> SeedCoverage {
        SeedCoverage {
            scenario: result.scenario.clone(),
            seed: result.seed,
            counts: ScenarioCoverage {
                counts: counts
                    .counts
                    .iter()
                    .filter(|(_, n)| **n > 0)
                    .map(|(k, n)| (k.clone(), *n))
                    .collect(),
            },
        }
    }
}

/// A line read back from one of the files a sweep appends to, with its exact text.
#[derive(Debug)]
struct JournalLine<T> {
    value: T,
    /// The line as written, newline included.
    text: Vec<u8>,
    line: usize,
}

/// The lines of a file a sweep appends to (missing: none). A last line without its newline is
/// torn (the sweep was killed in the middle of writing it) and dropped when `torn_ok`; every
/// other line must parse.
fn read_journal<T: DeserializeOwned>(
    path: &Path,
    torn_ok: bool,
) -> Result<Vec<JournalLine<T>>, SweepError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_error(path)(e)),
    };
    let mut lines = Vec::new();
    let mut rest = &bytes[..];
    let mut number = 0;
    while !rest.is_empty() {
        number += 1;
        let Some(end) = rest.iter().position(|b| *b == b'\n') else {
            if torn_ok {
                break;
            }
            return Err(SweepError::Parse {
                path: path.to_owned(),
                line: number,
                message: "the last line has no newline".into(),
            });
        };
        let (text, after) = rest.split_at(end + 1);
        rest = after;
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let value = serde_json::from_slice(text).map_err(|e| SweepError::Parse {
            path: path.to_owned(),
            line: number,
            message: format!(
                "{e} (only a last line without its newline is taken as torn by a stop; this one is damaged)"
            ),
        })?;
        lines.push(JournalLine {
            value,
            text: text.to_vec(),
            line: number,
        });
    }
    Ok(lines)
}

/// Writes `bytes` to `dir/name` whole or not at all: a temporary file beside it, synced, then
/// renamed over it.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), SweepError> {
    let path = dir.join(name);
    let temporary = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&temporary).map_err(io_error(&temporary))?;
    file.write_all(bytes).map_err(io_error(&temporary))?;
    file.sync_all().map_err(io_error(&temporary))?;
    drop(file);
    std::fs::rename(&temporary, &path).map_err(io_error(&path))
}

fn remove_if_present(path: &Path) -> Result<(), SweepError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(path)(e)),
    }
}

fn manifest_json(manifest: &Manifest) -> String {
    serde_json::to_string_pretty(manifest).expect("a manifest serializes") + "\n"
}

fn read_manifest(dir: &Path) -> Result<Manifest, SweepError> {
    let path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).map_err(io_error(&path))?;
    serde_json::from_str(&text).map_err(|e| SweepError::Parse {
        path,
        line: e.line(),
        message: e.to_string(),
    })
}

/// The two files a running sweep appends to, one line each per finished run.
#[derive(Debug)]
struct Appender {
    dir: PathBuf,
    results: std::fs::File,
    coverage: std::fs::File,
}

impl Appender {
    fn open(dir: &Path) -> Result<Appender, SweepError> {
        let open = |name: &str| {
            let path = dir.join(name);
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io_error(&path))
        };
        Ok(Appender {
            dir: dir.to_owned(),
            coverage: open(SEED_COVERAGE_FILE)?,
            results: open(RESULTS_FILE)?,
        })
    }

    /// Appends a finished run: its coverage first, then its result, each line in one write.
    /// A run counts as done once its result line is there, and its coverage is there by then.
    /// No fsync per line: what a killed process wrote is in the page cache and survives it;
    /// only a machine that loses power may lose the last seeds, and those run again.
    fn append(&mut self, result: &SeedResult, counts: &ScenarioCoverage) -> Result<(), SweepError> {
        let coverage = serde_json::to_string(&SeedCoverage::of(result, counts))
            .expect("coverage serializes")
            + "\n";
        let path = self.dir.join(SEED_COVERAGE_FILE);
        self.coverage
            .write_all(coverage.as_bytes())
            .map_err(io_error(&path))?;
        let line = serde_json::to_string(result).expect("a result always serializes") + "\n";
        let path = self.dir.join(RESULTS_FILE);
        self.results
            .write_all(line.as_bytes())
            .map_err(io_error(&path))
    }
}

/// (scenario name, seed): what results and coverage lines are keyed by.
type RunKey = (String, u64);

/// The runs of a stopped sweep that are done: both lines on disk. Rewrites both files to hold
/// exactly those lines (dropping a torn last line, and a coverage line whose result line was
/// never written), so that what is appended next follows whole lines.
fn take_done_runs(
    dir: &Path,
    planned: &BTreeSet<RunKey>,
) -> Result<(BTreeSet<RunKey>, u64), SweepError> {
    let results: Vec<JournalLine<SeedResult>> = read_journal(&dir.join(RESULTS_FILE), true)?;
    let coverage: Vec<JournalLine<SeedCoverage>> =
        read_journal(&dir.join(SEED_COVERAGE_FILE), true)?;
    let check_planned = |key: &RunKey, name: &str, line: usize| {
        if planned.contains(key) {
            return Ok(());
        }
        Err(SweepError::Parse {
            path: dir.join(name),
            line,
            message: format!(
                "scenario `{}` seed {} is not in the plan of {}",
                key.0,
                key.1,
                dir.join(MANIFEST_FILE).display()
            ),
        })
    };
    let mut covered: BTreeMap<RunKey, &JournalLine<SeedCoverage>> = BTreeMap::new();
    for line in &coverage {
        let key = (line.value.scenario.clone(), line.value.seed);
        check_planned(&key, SEED_COVERAGE_FILE, line.line)?;
        covered.entry(key).or_insert(line);
    }
    let mut done = BTreeSet::new();
    let (mut results_kept, mut coverage_kept) = (Vec::new(), Vec::new());
    let mut failed = 0;
    for line in &results {
        let key = (line.value.scenario.clone(), line.value.seed);
        check_planned(&key, RESULTS_FILE, line.line)?;
        let Some(coverage_line) = covered.get(&key) else {
            continue;
        };
        if !done.insert(key) {
            continue;
        }
        if !line.value.passed() {
            failed += 1;
        }
        results_kept.extend_from_slice(&line.text);
        coverage_kept.extend_from_slice(&coverage_line.text);
    }
    write_atomically(dir, SEED_COVERAGE_FILE, &coverage_kept)?;
    write_atomically(dir, RESULTS_FILE, &results_kept)?;
    Ok((done, failed))
}

/// Runs a sweep kept in `dir` as it runs (see the module docs): afresh, or continuing the
/// stopped sweep there. Either way it ends with the files an uninterrupted sweep writes.
pub fn sweep_into(
    dir: &Path,
    scenarios: &[SweepScenario],
    seeds: Range<u64>,
    shard: Option<Shard>,
    options: SweepOptions,
    start: Start,
) -> Result<SweepRun, SweepError> {
    let jobs = plan(scenarios, &seeds, shard)?;
    let manifest = Manifest::new(scenarios, &seeds, shard);
    let planned: BTreeSet<RunKey> = jobs
        .iter()
        .map(|&(index, seed)| (scenarios[index].scenario.name.clone(), seed))
        .collect();
    let unfinished = dir.join(SEED_COVERAGE_FILE).exists();
    let (done, failed_before, discarded) = match start {
        Start::Fresh => {
            let discarded = if unfinished {
                Some(read_journal::<SeedResult>(&dir.join(RESULTS_FILE), true)?.len())
            } else {
                None
            };
            std::fs::create_dir_all(dir).map_err(io_error(dir))?;
            for name in SWEEP_FILES {
                remove_if_present(&dir.join(name))?;
            }
            write_atomically(dir, SEED_COVERAGE_FILE, b"")?;
            write_atomically(dir, RESULTS_FILE, b"")?;
            write_atomically(dir, MANIFEST_FILE, manifest_json(&manifest).as_bytes())?;
            (BTreeSet::new(), 0, discarded)
        }
        Start::Resume => {
            let path = dir.join(MANIFEST_FILE);
            if !path.exists() {
                return Err(SweepError::Plan(format!(
                    "cannot resume: {} does not exist, so {} holds no sweep (start one without --resume)",
                    path.display(),
                    dir.display()
                )));
            }
            let theirs = read_manifest(dir)?;
            let differences = theirs.differences(&manifest);
            if !differences.is_empty() {
                return Err(SweepError::Plan(format!(
                    "cannot resume the sweep in {}: the command differs from its plan ({}): {}. Resume with the command that started it, or start afresh without --resume (which discards it) or in another --out directory",
                    dir.display(),
                    path.display(),
                    differences.join("; ")
                )));
            }
            if !unfinished {
                // Finished already: its files are whole; read them back and check them.
                let sweep = Sweep::read(dir)?;
                check_complete(dir, &planned, sweep.results.iter())?;
                let resumed = sweep.results.len();
                return Ok(SweepRun {
                    sweep,
                    resumed,
                    ran: 0,
                    discarded: None,
                });
            }
            let (done, failed) = take_done_runs(dir, &planned)?;
            (done, failed, None)
        }
    };

    let todo: Vec<(usize, u64)> = jobs
        .iter()
        .copied()
        .filter(|&(index, seed)| !done.contains(&(scenarios[index].scenario.name.clone(), seed)))
        .collect();
    let resumed = done.len();
    let bar = progress_bar(jobs.len(), resumed, options);
    bar.set_message(progress_message(&bar, 0, failed_before, resumed));
    let mut appender = Appender::open(dir)?;
    let (mut run, mut failed) = (0u64, failed_before);
    let outcome = parallel_try_for_each(
        &todo,
        options.jobs,
        |&(index, seed)| run_seed(&scenarios[index], seed),
        |_, (result, counts)| {
            appender.append(&result, &counts)?;
            run += 1;
            if !result.passed() {
                failed += 1;
            }
            bar.inc(1);
            bar.set_message(progress_message(&bar, run, failed, resumed));
            Ok(())
        },
    );
    bar.finish_and_clear();
    outcome?;
    drop(appender);
    let sweep = finish(dir, manifest, scenarios, &planned)?;
    Ok(SweepRun {
        sweep,
        resumed,
        ran: todo.len(),
        discarded,
    })
}

/// Checks that `results` hold every planned run exactly once.
fn check_complete<'a>(
    dir: &Path,
    planned: &BTreeSet<RunKey>,
    results: impl Iterator<Item = &'a SeedResult>,
) -> Result<(), SweepError> {
    let mut seen = BTreeSet::new();
    for r in results {
        let key = (r.scenario.clone(), r.seed);
        if !planned.contains(&key) || !seen.insert(key) {
            return Err(SweepError::Plan(format!(
                "{}: scenario `{}` seed {} is there twice or is not in the plan",
                dir.join(RESULTS_FILE).display(),
                r.scenario,
                r.seed
            )));
        }
    }
    if let Some((scenario, seed)) = planned.difference(&seen).next() {
        return Err(SweepError::Plan(format!(
            "{}: {} planned runs are missing, the first scenario `{scenario}` seed {seed}",
            dir.join(RESULTS_FILE).display(),
            planned.len() - seen.len()
        )));
    }
    Ok(())
}

/// The last step of a sweep kept in `dir`, however its seeds came (one run or several resumed
/// ones): reads both appended files back, checks every planned run is there once, sorts the
/// results, folds the coverage, writes every file anew and removes `seed-coverage.jsonl`.
fn finish(
    dir: &Path,
    manifest: Manifest,
    scenarios: &[SweepScenario],
    planned: &BTreeSet<RunKey>,
) -> Result<Sweep, SweepError> {
    let results: Vec<JournalLine<SeedResult>> = read_journal(&dir.join(RESULTS_FILE), false)?;
    let coverage: Vec<JournalLine<SeedCoverage>> =
        read_journal(&dir.join(SEED_COVERAGE_FILE), false)?;
    check_complete(dir, planned, results.iter().map(|l| &l.value))?;
    let covered: BTreeSet<RunKey> = coverage
        .iter()
        .map(|l| (l.value.scenario.clone(), l.value.seed))
        .collect();
    if covered.len() != coverage.len() || &covered != planned {
        return Err(SweepError::Plan(format!(
            "{}: {} lines for {} planned runs: a run is missing or there twice",
            dir.join(SEED_COVERAGE_FILE).display(),
            coverage.len(),
            planned.len()
        )));
    }
    let coverage = fold_coverage(
        scenarios,
        coverage
            .iter()
            .map(|l| (l.value.scenario.as_str(), &l.value.counts)),
    );
    let mut results: Vec<SeedResult> = results.into_iter().map(|l| l.value).collect();
    sort_results(&mut results);
    let sweep = Sweep {
        manifest,
        results,
        coverage,
    };
    sweep.write(dir)?;
    remove_if_present(&dir.join(SEED_COVERAGE_FILE))?;
    Ok(sweep)
}

/// The order results are written in: by scenario name, then seed.
pub fn sort_results(results: &mut [SeedResult]) {
    results.sort_by(|a, b| a.scenario.cmp(&b.scenario).then(a.seed.cmp(&b.seed)));
}

/// Runs `work` on every item with `jobs` worker threads, and hands each result to `done` on the
/// calling thread as it arrives (completion order, for progress); returns the results in item
/// order. Workers take the next item from a shared counter, so a slow item never idles the rest.
pub fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    work: impl Fn(&T) -> R + Sync,
    mut done: impl FnMut(&R),
) -> Vec<R> {
    let mut slots: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
    let outcome = parallel_try_for_each(items, jobs, work, |i, result| {
        done(&result);
        slots[i] = Some(result);
        Ok::<(), std::convert::Infallible>(())
    });
    match outcome {
        Ok(()) => {}
        Err(never) => match never {},
    }
    slots
        .into_iter()
        .map(|slot| slot.expect("every item ran on a worker"))
        .collect()
}

/// Runs `work` on every item with `jobs` worker threads and hands each result, with its item's
/// index, to `done` on the calling thread as it arrives. The first error `done` returns stops
/// the pool: no worker takes another item (those running finish and are dropped), and the error
/// is returned.
// The worker pool lives outside every simulation: each item is one whole single-threaded run,
// started and finished on one worker, so the determinism ban on threads (clippy.toml,
// docs/DESIGN.md §3) does not apply to it. This is the one place sim spawns threads.
#[allow(clippy::disallowed_methods)]
pub fn parallel_try_for_each<T: Sync, R: Send, E>(
    items: &[T],
    jobs: usize,
    work: impl Fn(&T) -> R + Sync,
    mut done: impl FnMut(usize, R) -> Result<(), E>,
) -> Result<(), E> {
    let jobs = jobs.clamp(1, JOBS_MAX).min(items.len().max(1));
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let (sender, receiver) = mpsc::channel::<(usize, R)>();
    std::thread::scope(|scope| {
        for k in 0..jobs {
            let sender = sender.clone();
            let (next, stop, work) = (&next, &stop, &work);
            std::thread::Builder::new()
                .name(format!("sweep-worker-{k}"))
                .spawn_scoped(scope, move || {
                    while !stop.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= items.len() {
                            break;
                        }
                        let result = work(&items[i]);
                        if sender.send((i, result)).is_err() {
                            break;
                        }
                    }
                })
                .expect("the OS refused a sweep worker thread");
        }
        drop(sender);
        for (i, result) in receiver.iter() {
            if let Err(error) = done(i, result) {
                stop.store(true, Ordering::Relaxed);
                return Err(error);
            }
        }
        Ok(())
    })
}

impl Sweep {
    pub fn failures(&self) -> impl Iterator<Item = &SeedResult> {
        self.results.iter().filter(|r| !r.passed())
    }

    /// `results.jsonl`: one JSON object per line, in (scenario, seed) order.
    pub fn results_jsonl(&self) -> String {
        let mut out = String::new();
        for result in &self.results {
            out.push_str(&serde_json::to_string(result).expect("a result always serializes"));
            out.push('\n');
        }
        out
    }

    /// Writes the files of a finished sweep into `dir` ([`SWEEP_FILES`]), each whole or not at
    /// all (a temporary file renamed over it).
    pub fn write(&self, dir: &Path) -> Result<(), SweepError> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let coverage =
            serde_json::to_string_pretty(&self.coverage).expect("coverage serializes") + "\n";
        for name in SWEEP_FILES {
            let text = match name {
                RESULTS_FILE => self.results_jsonl(),
                COVERAGE_FILE => coverage.clone(),
                COVERAGE_TABLE_FILE => self.coverage.text(),
                SUMMARY_FILE => self.summary(usize::MAX),
                MANIFEST_FILE => manifest_json(&self.manifest),
                _ => unreachable!("{name} is not a sweep file"),
            };
            write_atomically(dir, name, text.as_bytes())?;
        }
        Ok(())
    }

    /// Reads a finished sweep's directory back (what `write` wrote); refuses an unfinished one.
    pub fn read(dir: &Path) -> Result<Sweep, SweepError> {
        if dir.join(SEED_COVERAGE_FILE).exists() {
            return Err(SweepError::Plan(format!(
                "{} is an unfinished sweep ({SEED_COVERAGE_FILE} is there): finish it with `sim sweep ... --resume --out {}` (the command that started it, plus --resume)",
                dir.display(),
                dir.display()
            )));
        }
        let manifest = read_manifest(dir)?;
        let path = dir.join(COVERAGE_FILE);
        let text = std::fs::read_to_string(&path).map_err(io_error(&path))?;
        let coverage: Coverage = serde_json::from_str(&text).map_err(|e| SweepError::Parse {
            path: path.clone(),
            line: e.line(),
            message: e.to_string(),
        })?;
        let results = read_journal::<SeedResult>(&dir.join(RESULTS_FILE), false)?
            .into_iter()
            .map(|l| l.value)
            .collect();
        Ok(Sweep {
            manifest,
            results,
            coverage,
        })
    }

    /// The summary for people: counts, failures by oracle, every failing seed (up to
    /// `failures_max`) with the command that reproduces it, and a few lines of coverage (the
    /// whole table is `coverage.txt`).
    pub fn summary(&self, failures_max: usize) -> String {
        let m = &self.manifest;
        let names: Vec<&str> = m.scenarios.iter().map(|s| s.name.as_str()).collect();
        let failed: Vec<&SeedResult> = self.failures().collect();
        let mut out = format!(
            "sweep of {} over seeds {}..{}{}: {} runs, {} passed, {} failed\n",
            names.join(", "),
            m.seeds_start,
            m.seeds_end,
            m.shard.map_or(String::new(), |s| format!(" (shard {s})")),
            self.results.len(),
            self.results.len() - failed.len(),
            failed.len()
        );
        if !failed.is_empty() {
            let mut by_oracle: BTreeMap<&str, u64> = Default::default();
            for r in &failed {
                if r.verdict == "panic" {
                    *by_oracle.entry("panic").or_default() += 1;
                }
                for id in &r.failed_oracles {
                    *by_oracle.entry(id.as_str()).or_default() += 1;
                }
            }
            let counts: Vec<String> = by_oracle
                .iter()
                .map(|(id, n)| format!("{id} on {n} seeds"))
                .collect();
            out.push_str(&format!("failures: {}\n", counts.join(", ")));
            out.push_str("failing seeds, each with the command that reproduces it:\n");
            for r in failed.iter().take(failures_max) {
                let why = if r.verdict == "panic" {
                    format!("panic: {}", r.panic.as_deref().unwrap_or_default())
                } else {
                    r.failed_oracles.join(",")
                };
                out.push_str(&format!(
                    "  {} seed {} [{}]: {}\n",
                    r.scenario,
                    r.seed,
                    why,
                    r.reproduce()
                ));
            }
            if failed.len() > failures_max {
                out.push_str(&format!(
                    "  ... and {} more (every one is in {SUMMARY_FILE})\n",
                    failed.len() - failures_max
                ));
            }
        }
        out.push_str(&self.coverage.summary(COVERAGE_TABLE_FILE));
        out
    }

    /// JUnit XML: one test suite per scenario, one test case per seed; a failing seed's failure
    /// names its oracles and carries its reproduction command.
    pub fn junit(&self) -> String {
        let failures = self.results.iter().filter(|r| r.verdict == "fail").count();
        let errors = self.results.iter().filter(|r| r.verdict == "panic").count();
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        out.push_str(&format!(
            "<testsuites name=\"sim sweep\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\">\n",
            self.results.len()
        ));
        for scenario in &self.manifest.scenarios {
            let mine: Vec<&SeedResult> = self
                .results
                .iter()
                .filter(|r| r.scenario == scenario.name)
                .collect();
            out.push_str(&format!(
                "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\">\n",
                xml_escape(&scenario.name),
                mine.len(),
                mine.iter().filter(|r| r.verdict == "fail").count(),
                mine.iter().filter(|r| r.verdict == "panic").count(),
            ));
            for r in mine {
                let name = format!("seed {}", r.seed);
                out.push_str(&format!(
                    "    <testcase classname=\"sim.{}\" name=\"{}\"",
                    xml_escape(&r.scenario),
                    xml_escape(&name)
                ));
                match r.verdict.as_str() {
                    "pass" => out.push_str("/>\n"),
                    "panic" => out.push_str(&format!(
                        ">\n      <error message=\"{}\">reproduce: {}</error>\n    </testcase>\n",
                        xml_escape(r.panic.as_deref().unwrap_or_default()),
                        xml_escape(&r.reproduce())
                    )),
                    _ => out.push_str(&format!(
                        ">\n      <failure message=\"oracles failed: {}\">trace hash {}\nreproduce: {}</failure>\n    </testcase>\n",
                        xml_escape(&r.failed_oracles.join(", ")),
                        xml_escape(&r.trace_hash),
                        xml_escape(&r.reproduce())
                    )),
                }
            }
            out.push_str("  </testsuite>\n");
        }
        out.push_str("</testsuites>\n");
        out
    }
}

/// Escapes text for an XML attribute or element.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 allows no other control characters, escaped or not.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// This process's peak resident set size in KiB (`VmHWM` of `/proc/self/status`), where the
/// OS reports it (Linux).
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time this process has used, user plus system, in seconds (`/proc/self/stat`, in
/// USER_HZ ticks of 10 ms, the value on every mainstream Linux architecture), where the OS
/// reports it. With the wall time it shows how many cores a measurement really had.
pub fn process_cpu_s() -> Option<f64> {
    const USER_HZ: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name in parentheses (which may contain spaces); utime and
    // stime are fields 14 and 15 of the whole line, 12th and 13th after the name.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: shard and seed-range syntax: valid forms parse, every malformed one is refused with
    // a message, and N shards partition a range exactly.
    #[test]
    fn shards_partition_and_bad_syntax_is_refused() {
        assert_eq!(parse_seeds("3..10"), Ok(3..10));
        for bad in ["", "5", "10..3", "3..3", "a..b", "1...4", "-1..4"] {
            assert!(parse_seeds(bad).is_err(), "{bad}");
        }
        assert_eq!(Shard::parse("2/4"), Ok(Shard { index: 2, count: 4 }));
        for bad in ["4/4", "0/0", "1", "x/2", "1/2/3", "-1/2"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        let seeds = 7..50u64;
        for seed in seeds.clone() {
            let owners = (0..4)
                .filter(|k| {
                    Shard {
                        index: *k,
                        count: 4,
                    }
                    .holds(seeds.start, seed)
                })
                .count();
            assert_eq!(owners, 1, "seed {seed}");
        }
    }

    // Goal: the pool returns results in item order whatever the completion order, calls `done`
    // once per item, and works with more workers than items and with one.
    #[test]
    fn pool_keeps_item_order() {
        let items: Vec<u64> = (0..37).collect();
        for jobs in [1, 2, 5, 64] {
            let mut seen = 0;
            let out = parallel_map(&items, jobs, |x| x * x, |_| seen += 1);
            assert_eq!(seen, items.len());
            assert_eq!(out, items.iter().map(|x| x * x).collect::<Vec<_>>());
        }
        assert!(parallel_map(&[] as &[u64], 3, |x| *x, |_| {}).is_empty());
    }

    // Goal: the first error the caller's `done` returns stops the pool: it is returned and
    // `done` sees nothing after it (so a sweep whose disk is full ends there instead of running
    // on for hours with nothing written). Workers then take no new item; how many were already
    // done depends on timing, so it is not asserted.
    #[test]
    fn pool_stops_at_the_first_error() {
        let items: Vec<u64> = (0..1000).collect();
        for jobs in [1, 3] {
            let mut seen = 0;
            let outcome = parallel_try_for_each(
                &items,
                jobs,
                |x| *x,
                |_, _| {
                    seen += 1;
                    if seen == 5 { Err("disk full") } else { Ok(()) }
                },
            );
            assert_eq!(outcome, Err("disk full"));
            assert_eq!(seen, 5, "done is not called after an error");
        }
        let mut seen = 0;
        let all = parallel_try_for_each(
            &items,
            2,
            |x| *x,
            |_, _| {
                seen += 1;
                Ok::<(), ()>(())
            },
        );
        assert_eq!((all, seen), (Ok(()), 1000));
    }

    // Goal: XML escaping covers markup characters and control characters XML cannot carry.
    #[test]
    fn xml_escape_covers_markup() {
        assert_eq!(
            xml_escape("a<b & \"c\" 'd'>\u{1}\n"),
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;?\n"
        );
    }
}
