//! Cost of the plant step, per preset, against a hand-written scalar baseline (the group
//! lives in `shared/plant_step.rs`, which the `control` crate's bench includes too).
//!
//! Project target: one axis (plant + 1 kHz controller) under 1 ms of wall time per simulated
//! second, i.e. the plant well under 100 ns per step; the nalgebra step within 1.2× of the
//! scalar baseline. Figures: BENCHMARKS.md.

use criterion::{criterion_group, criterion_main};

#[path = "shared/plant_step.rs"]
mod plant_step;

criterion_group!(
    benches,
    plant_step::plant_step,
    plant_step::plant_step_interleaved
);
criterion_main!(benches);
