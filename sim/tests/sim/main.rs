//! sim's integration tests, one binary: every scenario as a snapshot, bad input, planted
//! violations that the oracles must catch, the command line's exit codes, and sweeps (shards,
//! merge, shrinking, determinism across processes).

mod bad_input;
mod cli;
mod disk;
mod operator;
mod planted;
mod planted_cell;
mod scenarios;
mod sweep;
