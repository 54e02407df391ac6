//! Sweeps: many seeds of one or more scenarios, one whole simulation per worker thread.
//!
//! Owns the sweep plan (scenarios × a seed range, optionally one shard of it), the worker pool,
//! the per-seed result ([`SeedResult`], one JSON line each in `results.jsonl`), the sweep's
//! files (`results.jsonl`, `coverage.json`, `sweep.json`, `summary.txt`), the summary with a
//! reproduction command per failing seed, and JUnit XML. It does not judge (that is
//! [`crate::run`] and the oracles) and does not combine shards ([`crate::merge`]).
//!
//! **Determinism.** Each simulation runs whole on one worker thread, alone on it: the trace
//! subscriber a run installs is thread-local (`tracing::subscriber::set_default`) and turmoil's
//! world is thread-local too, so runs on different workers never see each other. A result
//! depends only on (scenario, seed); the results are sorted by (scenario name, seed) before they
//! are written, so the files do not depend on the number of workers or their timing. Wall-clock
//! figures (seeds per second) go to the terminal only, never into the files.
//!
//! **Shards.** `--shard K/N` (K counted from 0, as a Kubernetes Indexed Job's completion index
//! is) keeps the seeds whose index in the range, `seed - A`, is K modulo N; every scenario of the
//! sweep runs those seeds. N shards partition the sweep exactly, and `sim merge` of their
//! directories gives the unsharded `results.jsonl` byte for byte.

use std::fmt;
use std::io::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use serde::{Deserialize, Serialize};

use crate::coverage::{Coverage, CoverageObserver, ScenarioCoverage};
use crate::report::{Expectation, Verdict};
use crate::run::{RunOptions, run_observed, schedule};
use crate::scenario::Scenario;

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
pub const MANIFEST_FILE: &str = "sweep.json";
pub const SUMMARY_FILE: &str = "summary.txt";

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

/// A scenario of a sweep, with the path it was given as (for reproduction commands).
#[derive(Debug, Clone)]
pub struct SweepScenario {
    pub path: String,
    pub scenario: Scenario,
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

/// What a sweep (or a shard of one) covered: written as `sweep.json`, read back by `sim merge`.
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

/// Runs a sweep: every planned (scenario, seed) on `options.jobs` workers.
pub fn sweep(
    scenarios: &[SweepScenario],
    seeds: Range<u64>,
    shard: Option<Shard>,
    options: SweepOptions,
) -> Result<Sweep, SweepError> {
    let jobs = plan(scenarios, &seeds, shard)?;
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(jobs.len() as u64),
        if options.progress {
            indicatif::ProgressDrawTarget::stderr()
        } else {
            indicatif::ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} seeds, {msg}",
        )
        .expect("a valid progress template")
        .progress_chars("=> "),
    );
    bar.set_message("0.0 seeds/s, 0 failed");
    let mut failed = 0u64;
    let outputs = parallel_map(
        &jobs,
        options.jobs,
        |&(index, seed)| run_seed(&scenarios[index], seed),
        |(result, _)| {
            if !result.passed() {
                failed += 1;
            }
            bar.inc(1);
            bar.set_message(format!("{:.1} seeds/s, {failed} failed", bar.per_sec()));
        },
    );
    bar.finish_and_clear();
    let mut coverage = Coverage::default();
    for s in scenarios {
        coverage.add(&s.scenario.name, &ScenarioCoverage::universe(&s.scenario));
    }
    let mut results = Vec::with_capacity(outputs.len());
    for (result, counts) in outputs {
        coverage.add(&result.scenario, &counts);
        results.push(result);
    }
    sort_results(&mut results);
    Ok(Sweep {
        manifest: Manifest {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            scenarios: scenarios
                .iter()
                .map(|s| ManifestScenario {
                    name: s.scenario.name.clone(),
                    path: s.path.clone(),
                })
                .collect(),
            seeds_start: seeds.start,
            seeds_end: seeds.end,
            shard,
        },
        results,
        coverage,
    })
}

/// The order results are written in: by scenario name, then seed.
pub fn sort_results(results: &mut [SeedResult]) {
    results.sort_by(|a, b| a.scenario.cmp(&b.scenario).then(a.seed.cmp(&b.seed)));
}

/// Runs `work` on every item with `jobs` worker threads, and hands each result to `done` on the
/// calling thread as it arrives (completion order, for progress); returns the results in item
/// order. Workers take the next item from a shared counter, so a slow item never idles the rest.
// The worker pool lives outside every simulation: each item is one whole single-threaded run,
// started and finished on one worker, so the determinism ban on threads (clippy.toml,
// docs/DESIGN.md §3) does not apply to it. This is the one place sim spawns threads.
#[allow(clippy::disallowed_methods)]
pub fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    work: impl Fn(&T) -> R + Sync,
    mut done: impl FnMut(&R),
) -> Vec<R> {
    let jobs = jobs.clamp(1, JOBS_MAX).min(items.len().max(1));
    let next = AtomicUsize::new(0);
    let mut slots: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
    let (sender, receiver) = mpsc::channel::<(usize, R)>();
    std::thread::scope(|scope| {
        for k in 0..jobs {
            let sender = sender.clone();
            let (next, work) = (&next, &work);
            std::thread::Builder::new()
                .name(format!("sweep-worker-{k}"))
                .spawn_scoped(scope, move || {
                    loop {
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
        for (i, result) in receiver {
            done(&result);
            slots[i] = Some(result);
        }
    });
    slots
        .into_iter()
        .map(|slot| slot.expect("every item ran on a worker"))
        .collect()
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

    /// Writes `results.jsonl`, `coverage.json`, `sweep.json` and `summary.txt` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), SweepError> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let write = |name: &str, text: String| {
            let path = dir.join(name);
            let mut file = std::fs::File::create(&path).map_err(io_error(&path))?;
            file.write_all(text.as_bytes()).map_err(io_error(&path))
        };
        write(RESULTS_FILE, self.results_jsonl())?;
        write(
            COVERAGE_FILE,
            serde_json::to_string_pretty(&self.coverage).expect("coverage serializes") + "\n",
        )?;
        write(
            MANIFEST_FILE,
            serde_json::to_string_pretty(&self.manifest).expect("a manifest serializes") + "\n",
        )?;
        write(SUMMARY_FILE, self.summary(usize::MAX))?;
        Ok(())
    }

    /// Reads a sweep directory back (what `write` wrote).
    pub fn read(dir: &Path) -> Result<Sweep, SweepError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path)
                .map(|text| (path.clone(), text))
                .map_err(io_error(&dir.join(name)))
        };
        let (path, text) = read(MANIFEST_FILE)?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| SweepError::Parse {
            path: path.clone(),
            line: e.line(),
            message: e.to_string(),
        })?;
        let (path, text) = read(COVERAGE_FILE)?;
        let coverage: Coverage = serde_json::from_str(&text).map_err(|e| SweepError::Parse {
            path: path.clone(),
            line: e.line(),
            message: e.to_string(),
        })?;
        let (path, text) = read(RESULTS_FILE)?;
        let mut results = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let result: SeedResult = serde_json::from_str(line).map_err(|e| SweepError::Parse {
                path: path.clone(),
                line: i + 1,
                message: e.to_string(),
            })?;
            results.push(result);
        }
        Ok(Sweep {
            manifest,
            results,
            coverage,
        })
    }

    /// The summary for people: counts, failures by oracle, every failing seed (up to
    /// `failures_max`) with the command that reproduces it, and coverage.
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
            let mut by_oracle: std::collections::BTreeMap<&str, u64> = Default::default();
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
        out.push_str(&self.coverage.text());
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

    // Goal: XML escaping covers markup characters and control characters XML cannot carry.
    #[test]
    fn xml_escape_covers_markup() {
        assert_eq!(
            xml_escape("a<b & \"c\" 'd'>\u{1}\n"),
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;?\n"
        );
    }
}
