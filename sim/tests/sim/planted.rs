//! Planted violations (filled in below).
