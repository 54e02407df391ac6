//! servocell bench rig (docs/DESIGN.md §10): Dynamixel Protocol 2.0, the XM430 control table, an
//! emulated servo behind a pseudo-terminal, and the real-time runner with its timing report.
//! The only crate that opens a serial port.

pub mod compare;
pub mod control_table;
pub mod emulator;
pub mod link;
pub mod protocol;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod timing;
