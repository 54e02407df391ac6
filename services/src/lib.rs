//! servocell services (DESIGN.md §6).
pub mod client;
pub mod fieldbus;
pub mod framing;
pub mod motion;
pub mod retry;
pub mod rpc;
pub mod storage;
pub mod transport;
