//! sim's integration tests, one binary: every scenario as a snapshot, bad input, planted
//! violations that the oracles must catch, the command line's exit codes, and sweeps (shards,
//! merge, shrinking, determinism across processes), and regressions of the whole cell pinned to
//! the faults that found them, and what a person looks at (trace export, plots, the summary).

mod bad_input;
mod cli;
mod disk;
mod motion_recovery;
mod new_user;
mod operator;
mod planted;
mod planted_cell;
mod scenarios;
mod sweep;
mod transient_faults;

/// The oracles a report says failed, each with its first violation's detail: what a regression
/// test asserts empty.
fn failing(report: &sim::report::Report) -> Vec<(&str, Option<&String>)> {
    report
        .oracles
        .iter()
        .filter(|o| !o.holds)
        .map(|o| (o.id.as_str(), o.first_violation.as_ref().map(|v| &v.detail)))
        .collect()
}
