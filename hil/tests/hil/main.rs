//! The one integration-test binary of the `hil` crate (STYLE.md, habit 9).

mod bench;
mod emulator;
mod link;
mod peer;
mod protocol;
