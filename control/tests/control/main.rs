//! The control crate's one integration-test binary.
//!
//! - `trajectory`: property tests of both profiles (limits, exact end, closed-form time).
//! - `closed_loop`: the `AxisController` against both `plant-model` presets (`preset` holds
//!   their controller configuration, `rig` the lockstep loop; both shared with the benchmark).
//! - `supervisor`: table-driven tests of every state transition and every safety function.

mod closed_loop;
mod preset;
mod rig;
mod supervisor;
mod trajectory;
