//! `hil emulate`: a virtual Dynamixel bus. `servo` is one device's firmware over the plant
//! model, `bus` dispatches packets and models wire time, `pty` serves it all in real time
//! behind a pseudo-terminal, with optional faults on the link.

pub mod bus;
pub mod link_fault;
pub mod pty;
pub mod servo;

pub use bus::{EmulatedBus, Transmission};
pub use link_fault::{LinkFault, LinkFaultKind, LinkFaults};
pub use servo::EmulatedServo;
