//! The one integration-test binary of the `hil` crate (STYLE.md, habit 9).

mod bench;
mod compare;
mod peer;
mod protocol;
