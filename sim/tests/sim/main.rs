//! sim's integration tests, one binary: every scenario as a snapshot, bad input, planted
//! violations that the oracles must catch, and the command line's exit codes.

mod bad_input;
mod cli;
mod planted;
mod scenarios;
