//! servocell plant model (DESIGN.md §5).
