//! Checking determinism across processes: the same seed in this process and in a fresh one.
//!
//! DT1 (`run.rs`) runs a seed twice in one process. That cannot catch what differs *between*
//! processes: a hash map's per-process random keys, an address-dependent order, an
//! uninitialised-memory read, an environment variable. [`check_seed`] runs the seed here and
//! then in a fresh process of the same binary (`sim run SCENARIO --seed N --json
//! --no-determinism-check`), and compares the trace hashes. On a divergence it runs the fresh
//! process again with `--trace` and names the first trace event that differs (the madsim habit:
//! name the first divergent step, not just "hashes differ").
//!
//! The subprocess is the only I/O here; the comparison itself is [`first_difference`].

use std::path::Path;
use std::process::Command;

use crate::run::{RunOptions, run};
use crate::scenario::Scenario;

/// What one seed gave in each process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedCheck {
    pub seed: u64,
    pub hash_here: String,
    pub hash_fresh: String,
    /// On a divergence: the first differing trace event, described.
    pub first_difference: Option<String>,
}

impl SeedCheck {
    pub fn agrees(&self) -> bool {
        self.hash_here == self.hash_fresh
    }
}

/// The fresh process could not be run or did not answer as `sim run` does.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("cannot start {exe}: {source}")]
    Spawn { exe: String, source: std::io::Error },
    #[error("the fresh process for seed {seed} failed ({status}): {stderr}")]
    Child {
        seed: u64,
        status: String,
        stderr: String,
    },
    #[error("the fresh process for seed {seed} printed no report with a trace hash: {detail}")]
    Output { seed: u64, detail: String },
}

/// Runs `seed` of `scenario` (loaded from `path`) here and in a fresh process of `exe`.
pub fn check_seed(
    exe: &Path,
    path: &Path,
    scenario: &Scenario,
    seed: u64,
) -> Result<SeedCheck, CheckError> {
    let here = run(scenario, seed, RunOptions::default());
    let hash_here = here.trace.hash();
    let report = fresh_run(exe, path, seed, false)?;
    let value: serde_json::Value =
        serde_json::from_str(&report).map_err(|e| CheckError::Output {
            seed,
            detail: e.to_string(),
        })?;
    let hash_fresh = value
        .get("trace_hash")
        .and_then(|h| h.as_str())
        .ok_or_else(|| CheckError::Output {
            seed,
            detail: "no `trace_hash` in the report".into(),
        })?
        .to_owned();
    let first_difference = if hash_fresh == hash_here {
        None
    } else {
        let output = fresh_run(exe, path, seed, true)?;
        let fresh: Vec<&str> = output
            .lines()
            .take_while(|line| !line.starts_with('{'))
            .collect();
        let mine: Vec<String> = here.trace.events().iter().map(|e| e.to_string()).collect();
        let mine: Vec<&str> = mine.iter().map(String::as_str).collect();
        Some(first_difference(&mine, &fresh))
    };
    Ok(SeedCheck {
        seed,
        hash_here,
        hash_fresh,
        first_difference,
    })
}

/// `sim run` in a fresh process: its stdout (the JSON report, after the trace with `trace`).
fn fresh_run(exe: &Path, path: &Path, seed: u64, trace: bool) -> Result<String, CheckError> {
    let mut command = Command::new(exe);
    command.arg("run").arg(path).args([
        "--seed",
        &seed.to_string(),
        "--json",
        "--no-determinism-check",
    ]);
    if trace {
        command.arg("--trace");
    }
    let output = command.output().map_err(|source| CheckError::Spawn {
        exe: exe.display().to_string(),
        source,
    })?;
    // 0: pass, 1: the verdict is fail (still a report); anything else is an error.
    if !matches!(output.status.code(), Some(0 | 1)) {
        return Err(CheckError::Child {
            seed,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The first line at which two traces differ, described for people.
pub fn first_difference(here: &[&str], fresh: &[&str]) -> String {
    let index = here
        .iter()
        .zip(fresh)
        .position(|(a, b)| a != b)
        .unwrap_or(here.len().min(fresh.len()));
    let show =
        |line: Option<&&str>| line.map_or("<end of trace>".to_owned(), |l| l.trim().to_owned());
    if index == here.len() && index == fresh.len() {
        return format!(
            "the {index} trace events are equal line by line, yet the hashes differ (the trace printer and the hash disagree)"
        );
    }
    format!(
        "first difference at trace event {index}: this process `{}`, fresh process `{}`",
        show(here.get(index)),
        show(fresh.get(index))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: the first differing event is named with both sides, including when one trace is a
    // prefix of the other.
    #[test]
    fn names_the_first_differing_event() {
        let a = ["1 h x", "2 h y", "3 h z"];
        let b = ["1 h x", "2 h Y", "3 h z"];
        assert_eq!(
            first_difference(&a, &b),
            "first difference at trace event 1: this process `2 h y`, fresh process `2 h Y`"
        );
        assert_eq!(
            first_difference(&a, &a[..2]),
            "first difference at trace event 2: this process `3 h z`, fresh process `<end of trace>`"
        );
    }
}
