//! servocell's simulation harness: a servo cell inside turmoil, under faults, judged by oracles.
//!
//! The only crate that depends on turmoil (docs/DESIGN.md §2). Code map:
//! - [`scenario`]: scenario files, their checks, the resolved [`scenario::Scenario`].
//! - [`seed`]: one seed in, one random stream per component out.
//! - [`swarm`]: swarm testing, the chaos kinds and rates each seed draws.
//! - [`fault`]: fault kinds, the schedule, chaos drawing.
//! - [`world`]: one run's state (turmoil, drives, disks, schedule) and its tick loop.
//! - [`hosts`]: what runs on each turmoil host (the services, wired to sim's transport/storage).
//! - [`drive`], [`fieldbus`]: the simulated drives and the medium between them and motion.
//! - [`net`]: turmoil implementations of the services' `Transport` and `Storage`, disk faults.
//! - [`trace`]: the canonical trace and its hash.
//! - [`oracle`]: the pure observers that judge a run.
//! - [`run`]: one run end to end, the verdict, the report's assembly.
//! - [`report`], [`plot`]: what a run produces for people and snapshots; [`seconds`] writes
//!   durations as seconds at the serde boundary.
//! - [`bench`]: `sim bench`, speed against a bare-turmoil baseline measured in the same run.
//! - [`sweep`]: many seeds on a worker pool, results (kept on disk as seeds finish, resumable),
//!   summary, JUnit; [`merge`] combines shards; [`coverage`] counts fault kind × target × axis
//!   phase; [`shrink`] cuts a failing schedule down; [`determinism`] compares a seed across
//!   processes.

pub mod bench;
pub mod coverage;
pub mod determinism;
pub mod drive;
pub mod fault;
pub mod fieldbus;
pub mod hosts;
pub mod merge;
pub mod net;
pub mod oracle;
pub mod plot;
pub mod report;
pub mod run;
pub mod scenario;
pub mod seconds;
pub mod seed;
pub mod shrink;
pub mod swarm;
pub mod sweep;
pub mod trace;
pub mod world;
