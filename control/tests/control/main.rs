//! The control crate's one integration-test binary.
//!
//! - `trajectory`: property tests of both profiles (limits, exact end, closed-form time).
//! - `supervisor`: table-driven tests of every state transition and every safety function.

mod supervisor;
mod trajectory;
