//! plant-model integration tests: one binary, one module per concern.

mod datasheets;
mod determinism;
mod faults;
mod params_toml;
mod physics;
mod sensors;
mod support;
