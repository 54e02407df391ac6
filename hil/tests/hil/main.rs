//! The one integration-test binary of the `hil` crate (docs/STYLE.md, habit 9).

mod bench;
mod emulator;
mod link;
mod peer;
mod protocol;
