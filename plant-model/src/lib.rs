//! servocell plant model (DESIGN.md §5).

pub mod characterize;
pub mod fault;
pub mod params;
pub mod plant;

pub use characterize::{Characterization, characterize};
pub use fault::PlantFault;
pub use params::{AxisParams, AxisParamsDoc, OutputShaft, PRESET_NAMES, ParamsError};
pub use plant::{DriveCommand, EnergyLedger, GroundTruth, Plant, SensorReading};
