//! servocell services (DESIGN.md §6).
